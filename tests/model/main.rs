//! Whole-store models: random operations against a model, writes into the future, and the de-upsert
//! operator.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.
//!
//! `upsert` is the only module here that runs persisted operators:
//! `the_state_is_compacted_to_one_value_per_key` checks its state's since advanced, which any other
//! live persisted operator of the process would hold back (`operators::resume::compaction_since`).

#[path = "../common/mod.rs"]
mod common;

mod futurelog;
mod model;
mod store_model_ops;
mod upsert;
