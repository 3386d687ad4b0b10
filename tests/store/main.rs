//! The store's API at its edges: streams, records, typed misuse, unsynced writes, appends, concurrent
//! use, bad input and message times.
//!
//! One test binary of several modules, one per former `tests/*.rs` file (the suite links a few binaries
//! instead of one per file). A child process a test spawns (`common::spawn_child`) is named by its
//! module path.

#[path = "../common/mod.rs"]
mod common;

mod append;
mod append_edges;
mod bad_input;
mod bad_input_message_times;
mod concurrent;
mod message_times_dd_operators;
mod readme_store;
mod store_api_edges;
mod store_bad_paths_and_sizes;
mod store_concurrent_streams;
mod store_drop_recreate;
mod store_edges;
mod store_edges_lifecycle;
mod store_edges_records;
mod store_option_edges;
mod store_typed_misuse;
mod stream_types;
mod unsynced;
mod unsynced_close;
mod unsynced_close_threads;
