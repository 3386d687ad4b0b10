//! Differential-dataflow trace over persisted batches: the store's batch files served, straight from their
//! memory maps, as a DD 0.26 arrangement.
//!
//! - [`batch`]: [`PersistedBatch`], one batch file (or none) with its DD description;
//! - [`check`]: [`SpanChecker`], the background checksum pass behind fail-stop;
//! - [`cursor`]: [`PersistedCursor`], DD's `Cursor` over a batch (keys and vals are `&[u8]`, times the
//!   dataflow's [`PersistTime`] `T`, `u64` by default, diffs `i64`);
//! - [`persisted`]: [`PersistedTrace`], DD's `TraceReader` + `Trace` over a stream's batches;
//! - [`containers`]: the byte-string containers the cursor names, and [`BytesSpine`], DD's in-memory
//!   arrangement with the same key type (for joins against persisted arrangements).
//!
//! Times: the store keeps `u64` times; the trace, its batches and cursors serve them as any
//! [`PersistTime`] `T` (`u64`, `u32`, `usize`, ...; the type parameter defaults to `u64`), converting each
//! time as it is read. Frontiers: the store keeps a frontier as one `u64` (times are totally ordered), with
//! [`FRONTIER_CLOSED`] standing for the empty antichain; DD uses `Antichain<T>`. [`antichain`] and
//! [`frontier_value`] convert between the two and are the only place that knows the correspondence (a
//! store frontier beyond `T`'s range is `T`'s empty antichain: every time of `T` is below it).

pub mod batch;
pub mod check;
pub mod containers;
pub mod cursor;
pub mod persisted;

pub use batch::{description, PersistedBatch};
pub use check::{CheckedBatch, SpanChecker};
pub use containers::{
    BytesBatch, BytesBatcher, BytesBuilder, BytesContainer, BytesLayout, BytesSpine, BytesUpdate,
    CopyContainer,
};
pub use cursor::PersistedCursor;
pub use persisted::{PersistedSpan, PersistedTrace};

use crate::error::Error;
use crate::operators::PersistTime;
use crate::FRONTIER_CLOSED;
use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;

/// The antichain for a store frontier value: `[value]` (as a `T`), or the empty antichain for
/// [`FRONTIER_CLOSED`] and for values beyond `T`'s range (every time of `T` is below them).
pub fn antichain<T: PersistTime>(value: u64) -> Antichain<T> {
    if value == FRONTIER_CLOSED {
        Antichain::new()
    } else {
        T::from_u64(value).map_or_else(Antichain::new, Antichain::from_elem)
    }
}

/// The store frontier value of an antichain of `T`s: its least element as a `u64`, or
/// [`FRONTIER_CLOSED`] when it is empty. (Antichains of a total order have at most one element.)
pub fn frontier_value<T: PersistTime>(frontier: AntichainRef<'_, T>) -> u64 {
    frontier
        .iter()
        .map(|t| t.to_u64())
        .min()
        .unwrap_or(FRONTIER_CLOSED)
}

/// Where code that cannot return errors (DD's trace maintenance and cursors, a timely operator) records
/// them. The first error is kept; later ones are counted. Clones share the slot; it is `Send + Sync`, so a
/// clone can be handed to any thread that waits on a dataflow (see [`ErrorSlot::wait`]).
///
/// An error recorded by [`fail_stop`](Self::fail_stop) (a persisted block failed its checksum under a
/// trace) also *stops* the slot for good: the arranging operator holds its frontier
/// ([`is_stopped`](Self::is_stopped); taking the error does not restart it).
#[derive(Clone, Default)]
pub struct ErrorSlot(Arc<Inner>);

/// An [`ErrorSlot`]'s shared state.
#[derive(Default)]
struct Inner {
    held: Mutex<Held>,
    arrived: Condvar,
    /// Set by [`ErrorSlot::fail_stop`]; never cleared.
    stopped: AtomicBool,
}

/// What an [`ErrorSlot`] holds: the first error not taken yet, and how many were recorded in all.
type Held = (Option<Error>, usize);

impl ErrorSlot {
    /// Records `error`, unless an earlier one is still held (then only the count grows).
    pub fn record(&self, error: Error) {
        let mut slot = self.0.held.lock();
        slot.1 += 1;
        if slot.0.is_none() {
            slot.0 = Some(error);
        }
        self.0.arrived.notify_all();
    }

    /// Records `error` and stops the slot (fail-stop: see the type's docs). The stop is visible to
    /// [`is_stopped`](Self::is_stopped) before the error is to [`wait`](Self::wait).
    pub fn fail_stop(&self, error: Error) {
        self.0.stopped.store(true, Ordering::Release);
        self.record(error);
    }

    /// Whether [`fail_stop`](Self::fail_stop) was called on this slot (one atomic load).
    #[inline]
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` for an error to be recorded; returns its message if one is (or was) held.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<String> {
        let mut slot = self.0.held.lock();
        if slot.0.is_none() {
            let _ = self.0.arrived.wait_for(&mut slot, timeout);
        }
        slot.0.as_ref().map(|e| e.to_string())
    }

    /// Whether an error is held.
    pub fn is_set(&self) -> bool {
        self.0.held.lock().0.is_some()
    }

    /// The held error's message, if any.
    pub fn message(&self) -> Option<String> {
        self.0.held.lock().0.as_ref().map(|e| e.to_string())
    }

    /// Takes the held error out of the slot.
    pub fn take(&self) -> Option<Error> {
        self.0.held.lock().0.take()
    }

    /// Whether `self` and `other` are clones of one slot.
    pub fn same(&self, other: &ErrorSlot) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// How many errors have been recorded in all (including taken ones).
    pub fn count(&self) -> usize {
        self.0.held.lock().1
    }
}

impl std::fmt::Debug for ErrorSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let slot = self.0.held.lock();
        f.debug_struct("ErrorSlot")
            .field("error", &slot.0)
            .field("count", &slot.1)
            .field("stopped", &self.is_stopped())
            .finish()
    }
}
