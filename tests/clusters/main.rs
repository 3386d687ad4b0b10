//! Timely clusters of processes (two processes over 127.0.0.1, one or two workers each, a store directory
//! each) running persisted chains through DD's operators against DD in memory, killed with SIGKILL at
//! random points and restarted; durable sources in clusters; and the reliability edges a storage user
//! meets (damaged or missing files between runs, two opens of one directory, very large keys and vals,
//! many streams, empty keys and vals). From adversarial round 15, which found the lost-oldest-WAL-segment
//! fault (`tests/durability/wal_start.rs`). Longer variants are `#[ignore]`d.

#[path = "../common/mod.rs"]
mod common;

mod cluster;
mod cluster_edges;
mod cluster_killed;
mod cluster_process;
mod durable;
mod ops_edges;
#[allow(dead_code)]
#[path = "../chains/schedule.rs"]
mod schedule;
mod storage;
