//! Persisted operators as drop-in replacements of DD's, compared with DD's in-memory results.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod dd_dropin_churn;
mod dd_dropin_cycle;
mod dd_dropin_dataflows;
mod dd_dropin_edges;
mod dd_dropin_idioms;
mod dd_dropin_ids;
mod dd_dropin_import;
mod dd_dropin_jumping_times;
mod dd_dropin_loops;
mod dd_dropin_mixed;
mod dd_dropin_mixed_load;
mod dd_dropin_operators;
mod dd_dropin_park;
mod dd_dropin_persist;
mod dd_dropin_persist_diffs;
mod dd_dropin_rebuild;
mod dd_dropin_restart_loop;
mod dd_dropin_rounds;
mod dd_dropin_seek;
mod dd_dropin_signed_close;
mod dd_dropin_signed_types;
mod dd_dropin_time_types;
mod dd_dropin_times;
mod dd_dropin_two_dataflows;
mod dd_dropin_typed_restart;
mod dd_dropin_types;
mod dd_dropin_upsert;
mod dd_dropin_upsert_diffs;
mod dd_dropin_upsert_restarts;
