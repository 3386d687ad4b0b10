//! # ddpersist
//!
//! Persistence for timely / differential dataflow: an LSM-style store of differential updates
//! `(key, val, time, diff)` on local disk.
//!
//! Data path (one module per stage; DESIGN.md is the map):
//! 1. [`Store::write`] frames the updates as one WAL record in the [`wal`] `Log` (fsync'd, with group
//!    commit, for durable streams) and adds them to the stream's [`memtable`] (the FutureLog, by time);
//! 2. [`Store::seal`] turns every update below the new upper into one immutable, sorted, checksummed
//!    [`batch`] file, read back through a read-only mmap from the [`blob`] store, and commits the new
//!    manifest ([`version`]) atomically, publishing the stream's new [`Version`];
//! 3. [`read`]: [`Store::snapshot`] reads batches and memtable as one consolidated, sorted sequence, and
//!    [`Store::get`] looks up one key; a dataflow reads the same batches through the DD [`trace`];
//! 4. [`compaction`] merges a stream's batches in the background.
//!
//! ```
//! use ddpersist::{Store, StreamOptions};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path()).unwrap();
//! store.create_stream("orders", StreamOptions::default()).unwrap();
//! store.write("orders", &[("apple".to_string(), 3u64, 0, 1), ("pear".to_string(), 1u64, 1, 1)]).unwrap();
//! store.seal("orders", 2).unwrap();
//! drop(store);
//! let store = Store::open(dir.path()).unwrap();
//! let all: Vec<(String, u64, u64, i64)> = store.snapshot("orders").unwrap().decode().unwrap();
//! assert_eq!(all, vec![("apple".to_string(), 3, 0, 1), ("pear".to_string(), 1, 1, 1)]);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod batch;
pub mod blob;
pub mod codec;
pub mod compaction;
pub mod encoding;
pub mod error;
pub mod fs;
pub mod manager;
pub mod memtable;
pub mod operators;
pub mod read;
pub mod store;
pub mod trace;
pub mod version;
pub mod wal;

pub use batch::{Description, FRONTIER_CLOSED};
pub use codec::Codec;
pub use error::{Error, Result};
pub use manager::{ManagerOptions, PersistManager, Token};
pub use read::{Sealed, Snapshot};
pub use store::{
    HeldAtOpen, Options, RecoveryReport, SealInfo, SealOptions, Store, StreamOptions, WriterClaim,
};
pub use version::Version;
pub use wal::record::{OwnedUpdate, UpdateRef};
