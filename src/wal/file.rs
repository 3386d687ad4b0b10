//! [`FileLog`]: the durable write-ahead log, as numbered segment files in one directory: the log's state
//! and its replay at open. The byte format is in [`super::format`], appends and group commit in
//! [`super::group_commit`], segment creation, rollover and release in [`super::segments`], the read-only
//! scan replay applies in [`super::scan`].
//!
//! Zero-filling ahead (opt-in with [`FileLog::with_zero_fill`]; segments created with it carry header
//! flag bit 0): a background thread keeps the active segment filled with zeros ahead of the log, and
//! records are written over them at explicit offsets ([`super::zero_fill`]; the bytes and the zero-tail
//! rule, which applies to those segments only, are in FORMAT.md §4; the reasons in DESIGN.md §6; its
//! effect in BENCHMARKS.md, "Figures behind the formats").
//!
//! Replay ([`super::scan`]): every record of every segment is checked. A bad segment header, a gap in the
//! LSN space, or a bad record in any segment but the last is corruption: open fails naming the file and
//! offset, and nothing is changed, under either [`WalRecovery`]. In the last segment, a bad record is a
//! torn tail — the file is truncated there (and fsync'd) and the cut is reported — when no later sync mark
//! covers it (versions 3 and later), when no valid record follows it (versions 1 and 2), or always in a zero-filled
//! version 2 segment (written in place, so a power loss may keep any subset of a group commit's pages). Otherwise
//! (a mark covers it, or, in an appended version 1 or 2 segment, a valid record follows it) it is
//! corruption — unless [`WalRecovery::PointInTime`] asks to cut the last segment there instead.
//!
//! Recycled segments (version 6, [`super::segments`]): a rollover may reuse a released segment file, so
//! past the last segment's records may lie an earlier incarnation's bytes, which fail their checksums
//! (seeded with the LSN). There, bad bytes with no valid record anywhere after them end the records
//! without a cut or a report; with a valid record after them (and no sync mark covering them) they are a
//! torn group commit, cut and reported as above. Replay adopts the kept files (`*.free`) it finds.

use super::format::{SEGMENT_HEADER_BYTES, WAL_VERSION};
use super::record::RecordFormat;
use super::scan::{scan_on, Cut, Segment};
use super::segments::{SegmentFaultHook, SegmentFiles};
use super::zero_fill::{FillState, ZeroFill};
use super::{Log, Lsn, ReplayReport};
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile, OpenHow, StdFs};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What to do with a bad record in the last segment that is not taken for a torn write: a sync mark
/// covers it (versions 3 and later), or valid records follow it in an appended version 1 or 2 segment (in the last
/// zero-filled version 2 segment a bad record is a torn tail under both modes). Corruption anywhere else
/// (a bad header, an LSN gap, a bad record in an earlier segment) fails the open under both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalRecovery {
    /// Fail the open with [`Error::Corrupt`], changing nothing (the default).
    #[default]
    Strict,
    /// Keep the last segment up to its first bad record, and cut off (and report) everything after it. Loses
    /// acknowledged writes if the bad record was in the synced part of the log; use to recover a store
    /// by hand after inspecting it.
    PointInTime,
}

/// The durable write-ahead log. See the module docs for format and protocol.
pub struct FileLog {
    pub(super) dir: PathBuf,
    /// Creates and removes segment files (with the fault-injection hook).
    pub(super) files: SegmentFiles,
    pub(super) segment_bytes: u64,
    pub(super) recovery: WalRecovery,
    /// Appended records not yet written, and the log's end.
    pub(super) state: Mutex<State>,
    /// Held while writing and syncing; the holder writes for everyone (group commit).
    pub(super) sync_lock: Mutex<Vec<u8>>,
    /// Every record ending at or before this LSN is durable.
    pub(super) durable_lsn: AtomicU64,
    /// The WAL version of the active segment (0 before `replay`): which record tags an append made now
    /// may use — tag 1 always, tag 2 (varint updates) from version 4, tag 3 (seals) from version 5; an
    /// older segment, reopened, takes only what its readers know. Set under `state` when a segment becomes
    /// the active one, and only ever raised, so an append after reading it lands in a segment at least as
    /// new.
    pub(super) active_version: AtomicU32,
    /// Shared with the zero-filling thread.
    pub(super) fill: Arc<ZeroFill>,
    /// The zero-filling thread, started by `replay` when zero-filling is on; stopped and joined on drop.
    pub(super) filler: Mutex<Option<JoinHandle<()>>>,
    /// Whether [`Log::bind_store`] named the store (`files.store_id`): replay then checks version 7
    /// segment headers against it; unbound, their checksum is not checked (the id is unknown).
    pub(super) bound: std::sync::atomic::AtomicBool,
}

impl Drop for FileLog {
    fn drop(&mut self) {
        self.fill.state.lock().stop = true;
        self.fill.changed.notify_all();
        if let Some(filler) = self.filler.lock().take() {
            // A panic in the filler has nothing to report here; the log is unaffected by it.
            let _ = filler.join();
        }
    }
}

pub(super) struct State {
    /// Encoded records appended since the last write; they start at `pending_lsn`.
    pub(super) pending: Vec<u8>,
    pub(super) pending_lsn: Lsn,
    /// LSN just past the last appended record or sync mark.
    pub(super) next_lsn: Lsn,
    /// LSN just past the last appended record (sync marks excluded): releasing up to here releases all.
    pub(super) records_end: Lsn,
    /// Segments, oldest first; the last one is active. Empty until `replay`.
    pub(super) segments: Vec<Segment>,
    /// The active segment, open for appending; `None` until `replay`.
    pub(super) active: Option<Arc<dyn FsFile>>,
    /// Bytes in the active segment file.
    pub(super) active_bytes: u64,
    /// The active segment is of version 3 or later, so sync marks may be written to it (an older one,
    /// reopened, is only appended records: its readers would take a mark for a bad record).
    pub(super) active_marks: bool,
    /// The active segment is a recycled file (header flag bit 1): it may be longer than its records, and
    /// is truncated to them before a successor is started.
    pub(super) active_recycled: bool,
    /// Set after a failed write or sync; every later call fails.
    pub(super) poisoned: Option<String>,
    /// Records ending at or before this LSN were in a group commit that failed.
    pub(super) failed_upto: Lsn,
}

impl FileLog {
    /// A log in `dir` (created if missing) whose segments roll over at about `segment_bytes`.
    /// Call [`Log::replay`] before appending.
    pub fn open(dir: impl AsRef<Path>, segment_bytes: u64, recovery: WalRecovery) -> Result<Self> {
        Self::on(StdFs::shared(), dir, segment_bytes, recovery)
    }

    /// As [`FileLog::open`], on the file system `fs` (for example a [`crate::fs::SimFs`]).
    ///
    /// Errors: [`Error::Io`] if the directory cannot be created or synced into its parent.
    pub fn on(
        fs: Arc<dyn Fs>,
        dir: impl AsRef<Path>,
        segment_bytes: u64,
        recovery: WalRecovery,
    ) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        // A new WAL directory's entry in the store directory must survive a power loss like its segments.
        crate::fs::create_dir_durable(&*fs, &dir)?;
        Ok(FileLog {
            files: SegmentFiles {
                fs,
                dir: dir.clone(),
                hook: None,
                free: Mutex::new(Vec::new()),
                store_id: AtomicU32::new(0),
                start: Mutex::new(None),
            },
            dir,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER_BYTES + 1),
            recovery,
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_lsn: 0,
                next_lsn: 0,
                records_end: 0,
                segments: Vec::new(),
                active: None,
                active_bytes: 0,
                active_marks: true,
                active_recycled: false,
                poisoned: None,
                failed_upto: 0,
            }),
            sync_lock: Mutex::new(Vec::new()),
            durable_lsn: AtomicU64::new(0),
            active_version: AtomicU32::new(0),
            fill: Arc::new(ZeroFill {
                state: Mutex::new(FillState {
                    limit: segment_bytes,
                    disabled: true,
                    ..FillState::default()
                }),
                changed: Condvar::new(),
            }),
            filler: Mutex::new(None),
            bound: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Whether to keep the active segment zero-filled ahead of the log (default false; see the module
    /// docs). Takes effect at [`replay`](Log::replay), which starts the filling thread only when it is on:
    /// call it before. Every new segment is of the current format version; those created with it carry
    /// header flag bit 0, and a segment created without it (or by an older release) is never zero-filled,
    /// even when reopened with this on.
    pub fn with_zero_fill(self, on: bool) -> Self {
        self.fill.state.lock().disabled = !on;
        self
    }

    /// Whether new segments are zero-filled (their header's flag).
    pub(super) fn new_segment_zero_filled(&self) -> bool {
        !self.fill.state.lock().disabled
    }

    /// Calls `hook` before every step of creating, syncing and removing segment files, failing the step
    /// if it returns an error: a fault-injection seam for tests (`tests/durability/wal_faults.rs`).
    pub fn with_segment_fault_hook(mut self, hook: SegmentFaultHook) -> Self {
        self.files.hook = Some(hook);
        self
    }
}

impl Log for FileLog {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        let mut state = self.state.lock();
        if state.active.is_some() {
            return Err(Error::bad_input("WAL replayed twice"));
        }
        let store = Some(self.files.store_id()).filter(|_| self.bound.load(Ordering::Relaxed));
        let scan = scan_on(&*self.files.fs, &self.dir, self.recovery, store, f)?;
        let (next_lsn, cut) = (scan.end_lsn, scan.cut);
        // Leftovers of failed segment creations hold no record: remove them, so that a later segment of
        // the same name can be created. (A failure here changes nothing the log needs.)
        if !scan.strays.is_empty() {
            for stray in &scan.strays {
                self.files.remove(&stray.path)?;
            }
            self.files.sync_dir()?;
        }
        // Everything checked: now cut the torn tail (the only change replay makes) and open for append.
        let mut segments = scan.segments;
        if cut == Some(Cut::RemovePartialSegment) {
            if let Some(partial) = segments.pop() {
                self.files.remove(&partial.path)?;
                self.files.sync_dir()?;
            }
        }
        // Released segments kept for recycling by an earlier run. Their names may not be durable yet (a
        // crash before the release's directory fsync): sync the directory before a rollover writes a new
        // header into one, or a power loss could bring it back under its segment name with that header.
        let free = self.files.list_free()?;
        if !free.is_empty() {
            self.files.sync_dir()?;
        }
        *self.files.free.lock() = free;
        let segments_were_new = segments.is_empty();
        let (segments, active, zero_filled, active_bytes, file_len) = match segments.last() {
            Some(last) => {
                let ctx = |what: &str| format!("{what} {}", last.path.display());
                // Not O_APPEND: records are written at explicit offsets, over the zero-filled tail.
                let file = self
                    .files
                    .fs
                    .open(&last.path, OpenHow::Existing)
                    .map_err(|e| Error::io(ctx("open"), e))?;
                if let Some(Cut::TruncateLast { offset }) = cut {
                    file.set_len(offset).map_err(|e| Error::io(ctx("truncate"), e))?;
                    file.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
                }
                let len = file.len().map_err(|e| Error::io(ctx("stat"), e))?;
                (segments, file, scan.last_zero_filled, scan.end_offset, len)
            }
            None => {
                let (seg, file) = self.create_segment(next_lsn)?;
                (
                    vec![seg],
                    file,
                    self.new_segment_zero_filled(),
                    SEGMENT_HEADER_BYTES,
                    SEGMENT_HEADER_BYTES,
                )
            }
        };
        // The log's start, recorded now if the log has none (a new log's, or an older release's, whose
        // oldest segment is taken as its start), or moved up to its oldest segment if a point-in-time
        // open accepted a front lost (`start.rs`).
        let oldest = segments.first().map(|s| s.first_lsn);
        match (scan.start, oldest) {
            (Some(start), Some(oldest)) if start >= oldest => *self.files.start.lock() = Some(start),
            (_, Some(oldest)) => self.files.write_start(oldest)?,
            (start, None) => *self.files.start.lock() = start,
        }
        self.fill
            .set_active(active.clone(), zero_filled, active_bytes, file_len);
        // Only with zero-filling on: a waiting filler would be woken by every write for nothing.
        if self.new_segment_zero_filled() {
            let fill = self.fill.clone();
            let filler = std::thread::Builder::new()
                .name("ddpersist-wal-zero".into())
                .spawn(move || fill.run())
                .map_err(|e| Error::io("start the WAL zero-filling thread", e))?;
            *self.filler.lock() = Some(filler);
        }
        state.segments = segments;
        state.active = Some(active);
        state.active_bytes = active_bytes;
        // A reopened segment of an older version gets no sync marks (before version 3), only tag 1
        // records (before version 4) and no seal records (before version 5); a new one gets them all.
        state.active_marks = segments_were_new || scan.last_version >= 3;
        state.active_recycled = !segments_were_new && scan.last_recycled;
        let version = match segments_were_new {
            true => WAL_VERSION.0,
            false => scan.last_version,
        };
        self.active_version.store(version, Ordering::Release);
        state.next_lsn = next_lsn;
        state.records_end = next_lsn;
        state.pending_lsn = next_lsn;
        self.durable_lsn.store(next_lsn, Ordering::Release);
        Ok(scan.report)
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        self.append_record(payload)
    }

    fn next_lsn(&self) -> Option<Lsn> {
        Some(self.state.lock().next_lsn)
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        self.group_commit(lsn)
    }

    fn release_before(&self, lsn: Lsn) -> Result<()> {
        self.release_segments(lsn)
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn record_format(&self) -> RecordFormat {
        match self.active_version.load(Ordering::Acquire) >= 4 {
            true => RecordFormat::Varint,
            false => RecordFormat::Fixed,
        }
    }

    fn takes_seal_records(&self) -> bool {
        self.active_version.load(Ordering::Acquire) >= 5
    }

    fn bind_store(&self, store_id: u32) {
        self.files.store_id.store(store_id, Ordering::Relaxed);
        self.bound.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
