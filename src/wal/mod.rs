//! The write-ahead `Log`: where updates land first, before they are sealed into batch files.
//!
//! A [`Log`] is an append-only sequence of opaque records, each named by its [`Lsn`] (log sequence
//! number: the logical byte position of the record in the log). Two implementations:
//! - [`FileLog`]: segment files with length-prefixed, checksummed records and group commit (writers on
//!   several threads share one `fdatasync`); released segments are recycled by rollovers, so that syncs
//!   overwrite allocated blocks. Durable: after `sync(lsn)` returns, every record before `lsn` survives a
//!   crash.
//! - [`MemLog`]: records are dropped; nothing survives a restart. For operator state that a dataflow can
//!   recompute, where the WAL's fsyncs would be wasted.
//!
//! [`FaultyLog`] wraps either to fail every call from a chosen point on (tests).
//!
//! The store decides what a record means ([`record`]); the log only frames, checksums and replays — and
//! says which record format its active segment's readers understand ([`Log::record_format`]).

pub mod fault;
mod file;
mod format;
mod group_commit;
mod mem;
pub mod record;
pub mod scan;
mod segments;
mod start;
mod varint;
mod zero_fill;

pub use fault::FaultyLog;
pub use file::{FileLog, WalRecovery};
pub use format::WAL_VERSION;
pub use mem::MemLog;
pub use scan::{scan, scan_of_store};
pub use segments::{SegmentFaultHook, SegmentStep};

use crate::error::Result;
use record::RecordFormat;

/// A log sequence number: the logical byte position of a record in the log. Strictly increasing.
pub type Lsn = u64;

/// What an open found at the end of the log.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records handed to the replay callback.
    pub records: u64,
    /// A partial last record that was cut off, if there was one.
    pub torn_tail: Option<TornTail>,
    /// Segment files removed (or, by a read-only scan, to be removed) as strays of a failed segment
    /// creation: at most a header long, so they held no record (see `scan::Scan::strays`).
    pub strays: Vec<String>,
}

/// Bytes cut off the end of the log on open: a partial record (a write cut short by a crash), or, under
/// point-in-time recovery, everything from the first bad record on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub file: String,
    /// Offset in that file where the partial record started; the file now ends here.
    pub offset: u64,
    /// How many bytes were cut off.
    pub dropped_bytes: u64,
    /// What is known about the cut bytes.
    pub kind: CutKind,
}

/// What the log knows about bytes replay cut off (FORMAT.md §4: torn writes and damage told apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutKind {
    /// Never acknowledged: no sync mark after them names an LSN past their start, so no `sync` covering
    /// them returned (a torn write of the last flush, or a crash while creating a segment).
    Unacknowledged,
    /// In a segment written before sync marks (format version 1 or 2): a torn write or damage to
    /// acknowledged bytes, which that format cannot tell apart.
    Unknown,
    /// Records a sync mark proves were made durable (so possibly acknowledged), cut because
    /// [`WalRecovery::PointInTime`] asked for it: data loss.
    DataLoss,
}

/// Where updates wait until they are sealed. See the module docs.
pub trait Log: Send + Sync + 'static {
    /// Reads every record back, in order, calling `f(lsn, payload)` for each. Called once, on open, before
    /// any `append`. Cuts off a torn tail; fails on corruption (naming file and offset) without deleting
    /// anything. An [`Error::Corrupt`](crate::Error::Corrupt) returned by `f` names an offset within the payload; [`FileLog`]
    /// returns it naming the segment file and the offset in it (the payload's start added).
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport>;

    /// Appends one record and returns `(start, end)`: its LSN and the LSN just past it. The record is
    /// durable only once `sync(end)` has returned.
    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)>;

    /// Returns once every record ending at or before `lsn` is durable. Concurrent callers share one sync.
    fn sync(&self, lsn: Lsn) -> Result<()>;

    /// Allows the log to drop every record that starts before `lsn` (their contents are sealed).
    /// Dropping is by whole segments, so some older records may be kept. Calls must not overlap: a
    /// release that fails puts its segments back, which a concurrent release could interleave with (the
    /// store calls it only under its edit lock).
    fn release_before(&self, lsn: Lsn) -> Result<()>;

    /// Whether records survive a restart.
    fn is_durable(&self) -> bool;

    /// The record payload format an append made now may use ([`record`]): [`RecordFormat::Varint`]
    /// unless the log appends to a segment whose readers know only the fixed-width format — for
    /// [`FileLog`], a segment of WAL version 3 or older reopened as the last one, until the next rollover
    /// or rotation. Once `Varint`, it never goes back, so a caller may read it before `append`. The
    /// default is [`RecordFormat::Fixed`], which every reader knows: a log that wraps another must pass
    /// the question through to get the denser records.
    fn record_format(&self) -> RecordFormat {
        RecordFormat::Fixed
    }

    /// Whether an append made now may be a seal record (tag 3, [`record::encode_seal`]): for
    /// [`FileLog`], unless the active segment is of WAL version 4 or older (reopened as the last one,
    /// until the next rollover or rotation), whose readers do not know tag 3. Once `true`, it stays so.
    /// The default is `false` (the store then seals synchronously instead): a log that wraps another
    /// must pass the question through. A log that keeps nothing ([`MemLog`]) answers `false`.
    fn takes_seal_records(&self) -> bool {
        false
    }

    /// The LSN the next [`append`](Self::append) gets (the end of the log), once replayed. The store
    /// compares it with the spill marks of its manifest (`spilled_lsn`: records below one are in a
    /// stream's spilled runs and skipped at replay): a log that restarts below a mark — cut by
    /// [`WalRecovery::PointInTime`], or its directory lost — would give new records LSNs the next replay
    /// skips, so the open lowers such marks to this first. `None` (the default) when the log cannot tell:
    /// the store then cannot check. A log that wraps another must pass it through.
    fn next_lsn(&self) -> Option<Lsn> {
        None
    }

    /// Binds the log to its store's identity (the manifest's `store_id`; 0: none recorded), before
    /// [`replay`](Self::replay): [`FileLog`] seeds the header checksum of every segment it creates with it
    /// (WAL version 7) and refuses at replay, as [`Error::Corrupt`](crate::Error::Corrupt) naming the
    /// segment, a version 7 segment whose header checksum matches neither it nor the plain checksum — a
    /// segment of another store (or damage). The default does nothing: a log that wraps another must pass
    /// it through, or its segments carry no id (checksummed plain: accepted, not checked).
    fn bind_store(&self, store_id: u32) {
        let _ = store_id;
    }
}
