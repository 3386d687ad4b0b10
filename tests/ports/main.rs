//! Ports of differential dataflow's own tests to persisted arrangements.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod dd_ports;
mod dd_ports_arrange;
mod dd_ports_cursors;
mod dd_ports_dd_tests;
mod dd_ports_scc;
mod dd_ports_typed;
