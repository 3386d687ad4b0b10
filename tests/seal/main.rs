//! Seals: logged seals (edges, faults, flush, kill, promises, concurrency), seal modes, shared key
//! prefixes. (`tests/seal_logged_retry.rs` is a binary of its own: it measures the process's CPU time.)
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod seal_logged;
mod seal_logged_concurrent;
mod seal_logged_edges;
mod seal_logged_faults;
mod seal_logged_flush;
mod seal_logged_kill;
mod seal_logged_kill_model;
mod seal_logged_promises;
mod seal_modes;
mod seal_shared_prefix;
mod write_seal_race;
