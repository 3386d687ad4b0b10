//! Reads: point lookups (concurrent, since ahead) and persisted trace handles.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.
//!
//! `trace_handles` is the only module here that runs persisted operators:
//! `a_restored_compacted_trace_reads_right_from_its_since` checks a since advanced, which any other
//! live persisted operator of the process would hold back (`operators::resume::compaction_since`).

#[path = "../common/mod.rs"]
mod common;

mod lookup;
mod lookup_beside_background;
mod lookup_byte_keys;
mod lookup_concurrent;
mod lookup_edge_times;
mod lookup_model;
mod lookup_since_ahead;
mod trace_handles;
