//! The restart protocol of persisted operators: runs, rebuilds, schedules, acknowledgements, chains,
//! clusters, imports and joins.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod restart;
mod restart_acknowledged;
mod restart_acknowledged_rebuild;
mod restart_build_order;
mod restart_chain;
mod restart_chain_sweep;
mod restart_cluster;
mod restart_dropped_downstream;
mod restart_durable_ahead;
mod restart_durable_chain;
mod restart_durable_chain_build;
mod restart_durable_runs;
mod restart_empty_sources;
mod restart_import;
mod restart_joins;
mod restart_protocol;
mod restart_rebuild;
mod restart_rebuild_staggered;
mod restart_retire;
mod restart_runs;
mod restart_schedules;
mod restart_sweeps;
mod restart_two_sources;
mod restart_uneven_workers;
