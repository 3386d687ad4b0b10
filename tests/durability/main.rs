//! The WAL and crashes: WAL bounds, faults, lost segments, recycling, store ids; kill -9 loops of the
//! store and the crash states of the file system.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.
//!
//! `crash_states_operators` is the only module here that runs persisted operators (it runs its
//! explorations one at a time: a persisted operator's compaction waits for every live one in the
//! process).

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod crash_states;
mod crash_states_operators;
mod disk_faults;
mod wal_bound;
mod wal_faults;
mod wal_lost;
mod wal_recycle_crash;
mod wal_start;
mod wal_store_id;
