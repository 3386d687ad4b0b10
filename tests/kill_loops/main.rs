//! Kill loops: persisted operators killed (`kill -9`) at random points and restarted, checked against a
//! model.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod kill_loops_chain;
mod kill_loops_durable;
mod kill_loops_manager;
mod kill_loops_upsert;
