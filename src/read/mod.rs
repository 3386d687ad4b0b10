//! The read side: what a stream serves outside a dataflow, from its current [`Version`] (batch files,
//! spilled runs) and the memtable's buckets, taken under the state lock and read after releasing it.
//!
//! - `snapshot`: [`Snapshot`], a consistent view of one stream ([`Store::snapshot`]), read through
//!   [`MergeIter`] (`merge_iter`): a k-way merge of sorted sources, consolidated, with times advanced to a
//!   `since` (also used by seals that draw from spilled runs);
//! - `lookup`: point lookups ([`Store::get`], [`Store::get_many_bytes`]) and timestamp lookups
//!   ([`Store::first_time`]): per batch, bounds, Bloom filter, fence search, one block.
//!
//! A dataflow reads the same batches through DD's trace and cursor traits instead: `crate::trace`.

mod lookup;
mod merge_iter;
mod snapshot;

pub use lookup::Vals;
pub use merge_iter::MergeIter;
pub use snapshot::{Sealed, Snapshot};

use crate::error::Result;
use crate::memtable::Buckets;
use crate::store::Store;
use crate::version::Version;
use std::sync::Arc;

/// What readers of one stream see ([`Store::read_view`]): nothing in it changes after it is taken.
pub(crate) struct ReadView {
    /// The durable state.
    pub(crate) version: Arc<Version>,
    /// The buckets a flush in progress is writing (not yet in `version`).
    pub(crate) flushing: Option<Arc<Buckets>>,
    /// The memtable's buckets in the requested time range.
    pub(crate) buckets: Buckets,
}

impl Store {
    /// What readers of stream `id` see: its current version, and the memtable's buckets with times in
    /// `times` and those of a flush in progress, shared (copy on write: a later write into one of them
    /// copies that bucket), so the lock is held for a clone of the bucket index only.
    pub(crate) fn read_view(&self, id: &str, times: impl std::ops::RangeBounds<u64>) -> Result<ReadView> {
        self.with_stream(id, |s| ReadView {
            version: s.version.clone(),
            flushing: s.flushing.clone(),
            buckets: s.memtable.share(times),
        })
    }
}
