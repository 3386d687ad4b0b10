//! [`PersistedBatch`]: one batch file (or none, for an update-free interval) with its differential
//! dataflow [`Description`], served to DD through [`Navigable`] at a [`PersistTime`] `T` (`u64` by
//! default): the file's `u64` times are read as `T`s.
//!
//! Invariants, established by the constructors and kept for the life of the value:
//! - a batch with a file holds a file on which [`BatchFile::verify`] succeeded, so every block is marked
//!   verified and [`BatchFile::verified_block`] returns `Some` for each of them (the cursor relies on it
//!   to read without errors; it treats `None` as an empty block all the same);
//! - every update in the file has a time in the description's `[lower, upper)` (times not beyond `since`
//!   may have been advanced to `since`): the file's own description lies within the DD description;
//! - every time in the file fits `T` (its description's upper is at most one past `T`'s greatest time).
//!
//! Clones share the file (`Arc`); the mmap stays valid for as long as any clone lives, whatever the
//! store's compaction does meanwhile.

use super::cursor::PersistedCursor;
use super::{antichain, frontier_value};
use crate::batch::BatchFile;
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

impl<T: PersistTime> PersistedBatch<T> {
    /// Serves `file` under the DD description `desc`, after checking every block of the file
    /// ([`BatchFile::verify`]; cheap for blocks already verified) and that the file's own description lies
    /// within `desc` (a file may start earlier than `desc` when the interval between them had no updates).
    ///
    /// Errors: [`Error::Corrupt`] from verification; [`Error::BadInput`] if the descriptions disagree, or
    /// the file holds times beyond `T`'s range (written by a dataflow with a wider timestamp).
    pub fn new(file: Arc<BatchFile>, desc: Description<T>) -> Result<Self> {
        file.verify()?;
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
        Ok(PersistedBatch {
            block_count: file.block_count(),
            file: Some(file),
            desc,
        })
    }

    /// Serves `file` under its own description (see [`new`](Self::new)).
    pub fn from_file(file: Arc<BatchFile>) -> Result<Self> {
        let d = file.description();
        let desc = description(d.lower, d.upper, d.since)?;
        Self::new(file, desc)
    }

    /// A batch with no updates over `desc`.
    pub fn empty(desc: Description<T>) -> Self {
        PersistedBatch {
            file: None,
            desc,
            block_count: 0,
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
