//! On-disk formats: batch files, key codecs, older releases' formats, the version and manifest edits,
//! and dropping streams from the manifest.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.
//!
//! `drop_stream` is the only module here that runs persisted operators:
//! `a_dropped_operator_stream_no_longer_holds_compaction_back` checks a since advanced, which any other
//! live persisted operator of the process would hold back (`operators::resume::compaction_since`).

#[path = "../common/mod.rs"]
mod common;

mod batch_format;
/// What `codec` and `codec_serde` check of each pair of values, and their strategies.
#[path = "codec/check.rs"]
mod check;
mod codec;
mod codec_nested;
mod codec_serde;
mod drop_stream;
mod manifest_churn;
mod manifest_edits;
mod manifest_older_release;
mod older_formats;
mod version;
