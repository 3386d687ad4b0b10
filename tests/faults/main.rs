//! Damage and fail-stop: corrupted files, stray objects, fail-stop of operators and imports, and the
//! `inspect` tool.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod corruption;
mod damage_strays;
mod fail_stop;
mod fail_stop_imports;
mod inspect;
mod inspect_damage;
mod inspect_damage_sweep;
mod inspect_dropped_stream;
mod inspect_get;
mod inspect_live;
mod inspect_live_changes;
mod inspect_live_runs;
mod inspect_output;
mod inspect_recreated_stream;
mod no_space;
