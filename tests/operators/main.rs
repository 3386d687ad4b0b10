//! The operator API: DD's API on persisted arrangements, typed operators, traces, arrangements, upsert
//! edge cases and models, and diff overflow.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod arrangement;
mod dd_api;
mod overflow;
mod trace;
mod typed_operators;
mod upsert_edge_values;
mod upsert_edges;
mod upsert_model;
mod upsert_schedules;
mod upsert_u32_max;
mod upsert_unordered;
