//! Persisted chains through DD's own operators, against DD in memory: a persisted source (`persist`
//! through a manager token, an arrangement, or de-upsert) → filter, map, a join with an in-memory
//! collection, reduce → persisted arrangements downstream, restarted in the process and in separate runs,
//! killed with SIGKILL at random points, with idle workers, with dataflows changed between runs (operators
//! added, removed, another worker count) and at time types near their maximum. Every run is checked
//! against DD's in-memory answer over the same input (`schedule::oracle`). From adversarial round 14
//! (which found the worker-count fault `changes::refused_worker_count_leaves_no_stray_streams` checks).
//! `DDPERSIST_CHAINS_LONG=1` runs more seeds and kills.

#[path = "../common/mod.rs"]
mod common;

mod chains;
mod changes;
mod durable;
mod harness;
mod idle;
mod kills;
mod schedule;
mod times;
