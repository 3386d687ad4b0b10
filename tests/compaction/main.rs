//! Compaction: merges, policies, uneven streams, back pressure, the since, and a chain of persisted
//! arrangements restarted after compaction.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.
//!
//! `restart_compaction` is the only module here that runs persisted operators: its check that `x`'s
//! since advanced needs no other persisted operator live in the process
//! (`operators::resume::compaction_since` holds every operator's since below the least upper of all
//! live ones).

#[path = "../common/mod.rs"]
mod common;

mod back_pressure;
mod compaction;
mod compaction_policy_props;
mod compaction_readers;
mod compaction_uneven;
mod restart_compaction;
mod since_props;
