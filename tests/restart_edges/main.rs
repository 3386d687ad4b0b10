//! Restarts at the edges: time types and ranges, durability mismatches, spilled durable streams, and
//! the manager and durable `persist` across restarts.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod durable_persist;
mod manager;
mod manager_edges;
mod manager_restarts;
mod manager_tokens;
mod restart_durability_mismatch;
mod restart_durable_time_types;
mod restart_near_max;
mod restart_spilled_durable;
mod restart_time_edges;
mod restart_time_range;
mod restart_time_range_wider;
mod restart_time_type_edges;
mod restart_time_types_switch;
mod worker_count_changes;
