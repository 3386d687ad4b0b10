//! [`PersistedBatch`]: one batch file (or none, for an update-free interval) with its differential
//! dataflow [`Description`], served to DD through [`Navigable`] at a [`PersistTime`] `T` (`u64` by
//! default): the file's `u64` times are read as `T`s.
//!
//! Invariants, established by the constructors and kept for the life of the value:
//! - every update in the file has a time in the description's `[lower, upper)` (times not beyond `since`
//!   may have been advanced to `since`): the file's own description lies within the DD description;
//! - every time in the file fits `T` (its description's upper is at most one past `T`'s greatest time).
//!
//! Blocks are *not* checked up front (that made opening a trace O(data)). A cursor checks a block's
//! checksum on first touch (`PersistedBatch::view`; one atomic "verified" state per block, shared with
//! lookups through the `BatchFile`). A DD cursor cannot return an error, so a block that fails is
//! *fail-stop*: the error (naming file and offset) goes to the batch's [`ErrorSlot`] with
//! [`ErrorSlot::fail_stop`], and the cursor stops serving the batch (it moves to its end: nothing at or
//! after the bad block is served). The arranging operator shares the slot and holds its frontier once it
//! is stopped, and it never lets a time complete before every block of the spans below it passed its
//! checksum ([`SpanChecker`](super::SpanChecker)); a block that
//! passed is served from then on. So a cursor can only ever cut short a batch at times not yet
//! complete, and what it skipped is never passed on at a complete time (DESIGN.md §5, "Fail-stop").
//!
//! Clones share the file (`Arc`); the mmap stays valid for as long as any clone lives, whatever the
//! store's compaction does meanwhile.

use super::cursor::PersistedCursor;
use super::{antichain, frontier_value, ErrorSlot};
use crate::batch::{BatchFile, BlockView};
use crate::error::{Error, Result};
use crate::operators::PersistTime;
use differential_dataflow::trace::{Description, Navigable};
use std::sync::Arc;

/// A batch of persisted updates: see the module docs. Cheap to clone.
#[derive(Clone)]
pub struct PersistedBatch<T = u64> {
    file: Option<Arc<BatchFile>>,
    desc: Description<T>,
    /// `file`'s block count (0 without a file), cached for the cursor's hot `key_valid`.
    block_count: usize,
    /// The description's since as a store time when it is beyond the file's own (0 otherwise: the file's
    /// times are at or beyond it already): a cursor reads every time below it as it (consolidated), as if
    /// the file were merged there (DD: a batch's times are advanced by its since).
    since: u64,
    /// Where a cursor reports a block that fails its checksum (and stops serving): the trace's slot.
    errors: ErrorSlot,
}

impl<T: std::fmt::Debug> std::fmt::Debug for PersistedBatch<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistedBatch")
            .field("file", &self.file.as_ref().map(|b| b.name()))
            .field("lower", self.desc.lower())
            .field("upper", self.desc.upper())
            .field("since", self.desc.since())
            .finish()
    }
}

/// The refusal of a batch read as of a `since` beyond `T`'s range (every time would read as it).
fn beyond_range<T>(file: &BatchFile, since: u64) -> Error {
    Error::bad_input(format!(
        "batch {} is read as of since {since}, beyond the range of the dataflow's timestamp type {}",
        file.name(),
        std::any::type_name::<T>()
    ))
}

impl<T: PersistTime> PersistedBatch<T> {
    /// Serves `file` under the DD description `desc`, after checking that the file's own description lies
    /// within `desc` (a file may start earlier than `desc` when the interval between them had no updates).
    /// Reads no block: each is checked on first touch (see the module docs). Cursor errors go to a slot of
    /// the batch's own until [`reporting_to`](Self::reporting_to) names the trace's.
    ///
    /// Errors: [`Error::BadInput`] if the descriptions disagree, or the file holds times beyond `T`'s
    /// range (written by a dataflow with a wider timestamp), or `desc`'s since (beyond the file's own, so
    /// times below it read as it) is beyond `T`'s range.
    pub fn new(file: Arc<BatchFile>, desc: Description<T>) -> Result<Self> {
        let d = file.description();
        if d.upper > 0 && T::from_u64(d.upper - 1).is_none() {
            return Err(Error::bad_input(format!(
                "batch {} holds times up to {}, beyond the range of the dataflow's timestamp type {}",
                file.name(),
                d.upper - 1,
                std::any::type_name::<T>()
            )));
        }
        let (lower, upper) = (
            frontier_value(desc.lower().borrow()),
            frontier_value(desc.upper().borrow()),
        );
        if d.lower > lower || antichain::<T>(d.upper) != *desc.upper() {
            return Err(Error::bad_input(format!(
                "batch {} covers [{}, {}), which does not fit the description [{lower}, {upper})",
                file.name(),
                d.lower,
                d.upper
            )));
        }
        let since = Some(frontier_value(desc.since().borrow()))
            .filter(|&s| s > d.since)
            .unwrap_or(0);
        if since > 0 && T::from_u64(since).is_none() {
            // Every time would read as one `T` cannot hold: refuse rather than read nothing.
            return Err(beyond_range::<T>(&file, since));
        }
        Ok(PersistedBatch {
            block_count: file.block_count(),
            since,
            file: Some(file),
            desc,
            errors: ErrorSlot::default(),
        })
    }

    /// This batch, reporting cursor errors to `errors` (the trace's and the arranging operator's slot).
    pub fn reporting_to(mut self, errors: ErrorSlot) -> Self {
        self.errors = errors;
        self
    }

    /// Where cursor errors go.
    pub fn errors(&self) -> &ErrorSlot {
        &self.errors
    }

    /// Block `i` for a cursor: its checksum and shape checked on first touch (an atomic load after that).
    /// `None` when `i` is out of range or the block fails its check: then the error, naming file and
    /// offset, is recorded with [`ErrorSlot::fail_stop`].
    #[inline]
    pub(crate) fn view(&self, i: usize) -> Option<BlockView<'_>> {
        let file = self.file.as_ref()?;
        if i >= self.block_count {
            return None;
        }
        // `block_view` serves a verified block first (an atomic load), and checks the others.
        self.fail_stop(file.block_view(i))
    }

    /// `result`'s value, or `None` with its error recorded with [`ErrorSlot::fail_stop`] (a cursor
    /// cannot return it).
    #[inline]
    pub(crate) fn fail_stop<V>(&self, result: Result<V>) -> Option<V> {
        result.map_err(|e| self.errors.fail_stop(e)).ok()
    }

    /// Serves `file` under its own description (see [`new`](Self::new)).
    pub fn from_file(file: Arc<BatchFile>) -> Result<Self> {
        Self::from_file_as_of(file, 0)
    }

    /// [`from_file`](Self::from_file), its times read as of `since` (the stream's since, when that is
    /// beyond the file's): every time below it reads as `since`, a `(key, val)`'s diffs there summed, so
    /// the batch reads the same before and after a merge at that since would rewrite it. What a trace
    /// opened at a restart emits thus depends on the stream's since only, not on which merges have run.
    pub fn from_file_as_of(file: Arc<BatchFile>, since: u64) -> Result<Self> {
        let d = file.description();
        if since > d.since && T::from_u64(since).is_none() {
            return Err(beyond_range::<T>(&file, since));
        }
        let desc = description(d.lower, d.upper, d.since.max(since))?;
        Self::new(file, desc)
    }

    /// The store time every time below which a cursor reads as it (0: none).
    pub(crate) fn since(&self) -> u64 {
        self.since
    }

    /// A batch with no updates over `desc`.
    pub fn empty(desc: Description<T>) -> Self {
        PersistedBatch {
            file: None,
            since: 0, // no times to read
            desc,
            block_count: 0,
            errors: ErrorSlot::default(),
        }
    }

    /// The batch file, if the batch has updates.
    pub fn file(&self) -> Option<&Arc<BatchFile>> {
        self.file.as_ref()
    }

    /// The DD description: the batch holds every update of its stream with time in `[lower, upper)`.
    pub fn description(&self) -> &Description<T> {
        &self.desc
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.file.as_ref().map_or(0, |f| f.update_count() as usize)
    }

    /// Whether the batch has no updates.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of blocks in the file (0 without one).
    #[inline(always)]
    pub(crate) fn block_count(&self) -> usize {
        self.block_count
    }
}

impl<T: PersistTime> Navigable for PersistedBatch<T> {
    type Cursor = PersistedCursor<T>;

    fn cursor(&self) -> PersistedCursor<T> {
        PersistedCursor::new(self)
    }
}

/// The DD description `[lower, upper)` with `since` over times `T`, from our `u64` frontier values
/// (converted by [`antichain`]: [`FRONTIER_CLOSED`](crate::FRONTIER_CLOSED), and values beyond `T`'s
/// range, are the empty antichain).
///
/// Errors with [`Error::BadInput`] if `lower` is closed or beyond `T`'s range (DD requires a non-empty
/// lower) or above `upper`.
pub fn description<T: PersistTime>(lower: u64, upper: u64, since: u64) -> Result<Description<T>> {
    let lower_frontier = antichain::<T>(lower);
    if lower_frontier.is_empty() || lower > upper {
        return Err(Error::bad_input(format!("no batch can cover [{lower}, {upper})")));
    }
    Ok(Description::new(
        lower_frontier,
        antichain(upper),
        antichain(since),
    ))
}
