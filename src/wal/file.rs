//! [`FileLog`]: the durable write-ahead log, as numbered segment files in one directory.
//!
//! Segment file `{first_lsn:020}.wal` (format version 3 written; 1 and 2 read; little-endian):
//! ```text
//! header, 32 bytes:
//!   0  magic      [u8; 8] = "DDPWALSG"
//!   8  version    u32     = 3 (1: appended, 2: zero-filled, both read)
//!   12 flags      u32     version 3: bit 0 = zero-filled ahead of the log; before: reserved, 0
//!   16 first_lsn  u64     LSN of the first record in this segment
//!   24 checksum   u64     xxh3 of bytes 0..24
//! records, back to back:
//!   0  checksum   u64     xxh3 of bytes 8..16 of this header followed by the payload
//!   8  len        u32     payload length in bytes
//!   12 magic      u32     = 0x4C50_4444 ("DDPL" little-endian)
//!   16 payload    [u8; len]
//! sync mark (version 3), in the LSN space like a record, never replayed:
//!   0  checksum   u64     xxh3 of bytes 8..24
//!   8  len        u32     = 8
//!   12 magic      u32     = 0x4D50_4444 ("DDPM" little-endian)
//!   16 durable    u64     every record ending at or before this LSN was fdatasync'd before the mark
//! zero bytes to the end of the file (zero-filled segments): space filled ahead of the log, not yet used
//! ```
//! After each group commit's `fdatasync`, before anyone is acknowledged, the leader writes a sync mark
//! naming the LSN synced (not synced itself: the next flush syncs it). A mark on disk proves the bytes
//! before it were durable, which is how replay tells damage to acknowledged records (an error) from a torn,
//! never acknowledged flush (cut): see [`super::scan::scan`] and FORMAT.md §4.
//! The LSN of a record is `first_lsn` of its segment plus its offset past the segment header; the LSN
//! space is contiguous across segments.
//!
//! Zero-filling ahead (version 2, opt-in with [`FileLog::with_zero_fill`]): `fdatasync` after an
//! append must also write the file's new size (an inode update); after an overwrite of blocks already
//! written and synced it writes only the data, which measured 1.3–4× faster here. (But an `fdatasync`
//! also waits for the filler's dirty zeros in the same file, which made four concurrent writers slower;
//! hence opt-in.) So a background thread keeps the active segment filled with zeros
//! (written, then `fdatasync`'d) a few MiB ahead of the log's end, and records are written over them at
//! explicit offsets. A run of zeros to the end of a file is therefore the end of its records: it holds
//! no record (a record's magic is not zero). Version 1 files hold such a tail only after a crash (size
//! extended, data not written: never acknowledged), so this reader applies the rule to both versions; a
//! version 1 reader would take the zeros for a torn or bad record, so segments created with zero-filling
//! are version 2 (and only those are ever filled). Durability never depends on the zero-filling: each
//! sync is still a full `fdatasync` of the records written, and a failed zero-fill only stops the filling.
//!
//! Durability: appends go to an in-memory pending buffer; `sync(lsn)` takes the sync lock, and the first
//! caller writes everything pending and calls `fdatasync` once for all waiting writers (group commit).
//! When a segment passes its size limit it is fsync'd and closed, and a new one is created and fsync'd
//! together with the directory before any record is written to it. So only the last segment can have a
//! torn tail. When every record is released (all sealed) and the active segment holds at least 8 MiB, a
//! new segment is started too, so the old one is deleted and a restart replays almost nothing.
//!
//! Replay: every record of every segment is checked. In the last segment, a bad record that no later sync
//! mark covers (in versions 1 and 2: with no valid record after it) is a torn tail: the file is truncated
//! there (and fsync'd) and the cut is reported. A bad record a mark covers (versions 1 and 2: followed by
//! a valid one), a bad segment header, a gap in the LSN space, or a torn tail in any segment but the last
//! is corruption: open fails naming the file and offset, and nothing is changed — unless
//! [`WalRecovery::PointInTime`] asks to truncate at the first bad record instead.

use super::scan::{scan_on, Cut, Scan, Segment};
use super::segments::{SegmentFaultHook, SegmentFiles, SegmentStep};
use super::zero_fill::{FillState, ZeroFill};
use super::{Log, Lsn, ReplayReport};
use crate::encoding::{checksum, FormatVersion};
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile, OpenHow, StdFs};
use parking_lot::{Condvar, Mutex};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DDPWALSG";
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const RECORD_MAGIC: u32 = 0x4C50_4444;
pub(crate) const RECORD_HEADER_BYTES: u64 = 16;
/// A fully released active segment at least this large is replaced by a fresh one (see
/// `FileLog::release_before`), so restarts do not replay sealed records.
pub const IDLE_ROTATE_BYTES: u64 = 8 << 20;
/// The WAL format version this library writes, and the newest it reads (it reads 1, 2 and 3): version 3
/// adds sync marks and the header's flags.
pub const WAL_VERSION: FormatVersion = FormatVersion(3);
/// Segment header flag (version 3): the segment is zero-filled ahead of the log, so zeros to its end are
/// the end of its records.
pub(crate) const SEGMENT_FLAG_ZERO_FILLED: u32 = 1;
/// Magic of a sync mark (version 3), in place of a record's: "DDPM" little-endian.
pub(crate) const MARK_MAGIC: u32 = 0x4D50_4444;
/// A sync mark's payload: the LSN it names, `u64`.
pub(crate) const MARK_PAYLOAD_BYTES: u64 = 8;

/// What to do with a bad record that is provably not a torn write (a sync mark covers it, or, in a version
/// 1 or 2 segment, valid records follow it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalRecovery {
    /// Fail the open with [`Error::Corrupt`], changing nothing (the default).
    #[default]
    Strict,
    /// Keep the log up to the first bad record, and cut off (and report) everything after it. Loses
    /// acknowledged writes if the bad record was in the synced part of the log; use to recover a store
    /// by hand after inspecting it.
    PointInTime,
}

/// The durable write-ahead log. See the module docs for format and protocol.
pub struct FileLog {
    dir: PathBuf,
    /// Creates and removes segment files (with the fault-injection hook).
    files: SegmentFiles,
    segment_bytes: u64,
    recovery: WalRecovery,
    /// Appended records not yet written, and the log's end.
    state: Mutex<State>,
    /// Held while writing and syncing; the holder writes for everyone (group commit).
    sync_lock: Mutex<Vec<u8>>,
    /// Every record ending at or before this LSN is durable.
    durable_lsn: AtomicU64,
    /// Shared with the zero-filling thread.
    fill: Arc<ZeroFill>,
    /// The zero-filling thread, started by `replay`; stopped and joined on drop.
    filler: Mutex<Option<JoinHandle<()>>>,
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

struct State {
    /// Encoded records appended since the last write; they start at `pending_lsn`.
    pending: Vec<u8>,
    pending_lsn: Lsn,
    /// LSN just past the last appended record or sync mark.
    next_lsn: Lsn,
    /// LSN just past the last appended record (sync marks excluded): releasing up to here releases all.
    records_end: Lsn,
    /// Segments, oldest first; the last one is active. Empty until `replay`.
    segments: Vec<Segment>,
    /// The active segment, open for appending; `None` until `replay`.
    active: Option<Arc<dyn FsFile>>,
    /// Bytes in the active segment file.
    active_bytes: u64,
    /// The active segment is of version 3 or later, so sync marks may be written to it (an older one,
    /// reopened, is only appended records: its readers would take a mark for a bad record).
    active_marks: bool,
    /// Set after a failed write or sync; every later call fails.
    poisoned: Option<String>,
    /// Records ending at or before this LSN were in a flush that failed.
    failed_upto: Lsn,
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
                poisoned: None,
                failed_upto: 0,
            }),
            sync_lock: Mutex::new(Vec::new()),
            durable_lsn: AtomicU64::new(0),
            fill: Arc::new(ZeroFill {
                state: Mutex::new(FillState {
                    limit: segment_bytes,
                    disabled: true,
                    ..FillState::default()
                }),
                changed: Condvar::new(),
            }),
            filler: Mutex::new(None),
        })
    }

    /// Whether to keep the active segment zero-filled ahead of the log (default false; see the module
    /// docs). Segments created with it are format version 2; without it, version 1 (plain appends). A
    /// version 1 segment is never zero-filled, even when reopened with this on.
    pub fn with_zero_fill(self, on: bool) -> Self {
        self.fill.state.lock().disabled = !on;
        self
    }

    /// Whether new segments are zero-filled (their header's flag).
    fn new_segment_zero_filled(&self) -> bool {
        !self.fill.state.lock().disabled
    }

    fn create_segment(&self, first_lsn: Lsn) -> Result<(Segment, Arc<dyn FsFile>)> {
        self.files.create(first_lsn, self.new_segment_zero_filled())
    }

    /// Calls `hook` before every step of creating, syncing and removing segment files, failing the step
    /// if it returns an error: a fault-injection seam for tests (`tests/wal_faults.rs`).
    pub fn with_segment_fault_hook(mut self, hook: SegmentFaultHook) -> Self {
        self.files.hook = Some(hook);
        self
    }

    /// When every record is released (nothing unsealed anywhere) and the active segment holds at least
    /// [`IDLE_ROTATE_BYTES`], starts a new segment, so the old one can be deleted right away: a restart then
    /// replays (almost) nothing instead of a segment of sealed records.
    fn rotate_if_all_released(&self, lsn: Lsn) -> Result<()> {
        // The sync lock orders this with writes of pending records, as a rollover in `sync` does.
        let _sync = self.sync_lock.lock();
        let end = {
            let state = self.state.lock();
            let idle = state.pending.is_empty()
                && lsn >= state.records_end
                && state.active.is_some()
                && state.poisoned.is_none();
            if !idle || state.active_bytes < IDLE_ROTATE_BYTES {
                return Ok(());
            }
            state.next_lsn
        };
        // The old segment ends in a sync mark written without a sync: sync it first, so that it is whole
        // on disk before its successor exists (only the last segment may have a torn tail, and the new
        // segment's first LSN must follow on from it).
        let old = {
            let state = self.state.lock();
            state
                .active
                .clone()
                .zip(state.segments.last().map(|s| s.path.clone()))
        };
        if let Some((old, path)) = old {
            self.files
                .step(SegmentStep::SyncFile, &path)
                .and_then(|_| old.sync_data())
                .map_err(|e| Error::io(format!("fsync {}", path.display()), e))?;
        }
        // Records appended from here on start at `end` or later, and go to the new segment.
        let (seg, file) = self.create_segment(end)?;
        let mut state = self.state.lock();
        state.segments.push(seg);
        state.active = Some(file.clone());
        state.active_bytes = SEGMENT_HEADER_BYTES;
        state.active_marks = true;
        let zero_filled = self.new_segment_zero_filled();
        self.fill
            .set_active(file, zero_filled, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES);
        Ok(())
    }

    /// Appends a sync mark naming `durable` (every record ending at or before it is synced) and writes it,
    /// with any records appended meanwhile, without syncing: the next flush syncs them. Called by the
    /// group commit leader (holding `sync_lock`, whose buffer `spare` is) right after its `fdatasync`.
    fn write_sync_mark(&self, durable: Lsn, spare: &mut Vec<u8>) -> std::io::Result<()> {
        let (mut bytes, offset, file) = {
            let mut state = self.state.lock();
            let Some(file) = state.active.clone().filter(|_| state.active_marks) else {
                return Ok(());
            };
            let start = state.next_lsn;
            let Some(end) = start.checked_add(RECORD_HEADER_BYTES + MARK_PAYLOAD_BYTES) else {
                // The LSN space is used up; appends fail from here on anyway.
                return Ok(());
            };
            let mut mark = [0u8; (RECORD_HEADER_BYTES + MARK_PAYLOAD_BYTES) as usize];
            mark[8..12].copy_from_slice(&(MARK_PAYLOAD_BYTES as u32).to_le_bytes());
            mark[12..16].copy_from_slice(&MARK_MAGIC.to_le_bytes());
            mark[16..24].copy_from_slice(&durable.to_le_bytes());
            let sum = checksum(&mark[8..]);
            mark[0..8].copy_from_slice(&sum.to_le_bytes());
            state.pending.extend_from_slice(&mark);
            state.next_lsn = end;
            spare.clear();
            let bytes = std::mem::replace(&mut state.pending, std::mem::take(spare));
            state.pending_lsn = state.next_lsn;
            let offset = state.active_bytes;
            state.active_bytes += bytes.len() as u64;
            (bytes, offset, file)
        };
        self.fill.before_write(offset..offset + bytes.len() as u64);
        let result = file.write_at(&bytes, offset);
        bytes.clear();
        *spare = bytes;
        result
    }

    /// Refuses every later call because of `detail`; records ending at or before `failed_upto` were in
    /// the flush that failed (their `sync` reports that failure as its own).
    fn poison(&self, detail: String, failed_upto: Lsn) {
        let mut state = self.state.lock();
        state.poisoned.get_or_insert(detail);
        state.failed_upto = state.failed_upto.max(failed_upto);
    }
}

impl Log for FileLog {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        let mut state = self.state.lock();
        if state.active.is_some() {
            return Err(Error::bad_input("WAL replayed twice"));
        }
        let Scan {
            report,
            end_lsn: next_lsn,
            end_offset,
            last_zero_filled,
            last_version,
            segments,
            strays,
            cut,
        } = scan_on(&*self.files.fs, &self.dir, self.recovery, f)?;
        // Leftovers of failed segment creations hold no record: remove them, so that a later segment of
        // the same name can be created. (A failure here changes nothing the log needs.)
        if !strays.is_empty() {
            for stray in &strays {
                self.files.remove(&stray.path)?;
            }
            self.files.sync_dir()?;
        }
        // Everything checked: now cut the torn tail (the only change replay makes) and open for append.
        let mut segments = segments;
        if cut == Some(Cut::RemovePartialSegment) {
            if let Some(partial) = segments.pop() {
                self.files.remove(&partial.path)?;
                self.files.sync_dir()?;
            }
        }
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
                (segments, file, last_zero_filled, end_offset, len)
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
        self.fill
            .set_active(active.clone(), zero_filled, active_bytes, file_len);
        let fill = self.fill.clone();
        let filler = std::thread::Builder::new()
            .name("ddpersist-wal-zero".into())
            .spawn(move || fill.run())
            .map_err(|e| Error::io("start the WAL zero-filling thread", e))?;
        *self.filler.lock() = Some(filler);
        state.segments = segments;
        state.active = Some(active);
        state.active_bytes = active_bytes;
        // A reopened segment of an older version gets no sync marks; a new one (version 3) does.
        state.active_marks = segments_were_new || last_version >= 3;
        state.next_lsn = next_lsn;
        state.records_end = next_lsn;
        state.pending_lsn = next_lsn;
        self.durable_lsn.store(next_lsn, Ordering::Release);
        Ok(report)
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        if payload.len() > u32::MAX as usize {
            return Err(Error::bad_input("WAL record larger than 4 GiB"));
        }
        let mut state = self.state.lock();
        if let Some(p) = &state.poisoned {
            return Err(Error::Poisoned { detail: p.clone() });
        }
        if state.active.is_none() {
            return Err(Error::bad_input("WAL append before replay"));
        }
        let mut header = [0u8; RECORD_HEADER_BYTES as usize];
        header[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&header[8..16]);
        h.update(payload);
        header[0..8].copy_from_slice(&h.digest().to_le_bytes());
        let start = state.next_lsn;
        let Some(end) = start.checked_add(RECORD_HEADER_BYTES + payload.len() as u64) else {
            // Only reachable with a segment named near u64::MAX: the log's LSN space is used up.
            return Err(Error::corrupt(
                self.dir.display().to_string(),
                start,
                "WAL LSN space exhausted",
            ));
        };
        state.pending.extend_from_slice(&header);
        state.pending.extend_from_slice(payload);
        state.next_lsn = end;
        state.records_end = end;
        Ok((start, end))
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        if self.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut spare = self.sync_lock.lock();
        if self.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        // We are the leader: write everything appended so far, for every waiting writer.
        let (mut pending, end_lsn, file, rotate_at) = {
            let mut state = self.state.lock();
            if let Some(p) = &state.poisoned {
                if lsn <= state.failed_upto {
                    // This record was in the flush that failed: that is its own failure, not an earlier one.
                    let context = format!("WAL flush up to LSN {}", state.failed_upto);
                    return Err(Error::io(context, std::io::Error::other(p.clone())));
                }
                return Err(Error::Poisoned { detail: p.clone() });
            }
            let Some(file) = state.active.clone() else {
                return Err(Error::bad_input("WAL sync before replay"));
            };
            if lsn > state.next_lsn {
                // Not a position of this log (a ticket of another one?): nothing to wait for.
                return Err(Error::bad_input(format!(
                    "WAL sync to LSN {lsn}, past the end of the log at {}",
                    state.next_lsn
                )));
            }
            spare.clear();
            let pending = std::mem::replace(&mut state.pending, std::mem::take(&mut *spare));
            state.pending_lsn = state.next_lsn;
            let offset = state.active_bytes;
            state.active_bytes += pending.len() as u64;
            let rotate = state.active_bytes >= self.segment_bytes;
            (pending, state.next_lsn, (file, offset), rotate)
        };
        let (file, offset) = file;
        self.fill.before_write(offset..offset + pending.len() as u64);
        let path = || {
            self.state
                .lock()
                .segments
                .last()
                .map(|s| s.path.display().to_string())
        };
        let active_path = self.state.lock().segments.last().map(|s| s.path.clone());
        let flushed = match &active_path {
            Some(p) => self.files.step(SegmentStep::Flush, p),
            None => Ok(()),
        };
        if let Err(e) = flushed.and_then(|_| file.write_at(&pending, offset).and_then(|_| file.sync_data())) {
            let what = format!("WAL write/fdatasync of {:?}", path());
            self.poison(format!("{what} failed: {e}"), end_lsn);
            // This call's own failure (later calls get `Poisoned`).
            return Err(Error::io(what, e));
        }
        pending.clear();
        *spare = pending;
        if !rotate_at {
            // The sync mark: once on disk, proof that everything before `end_lsn` was made durable, so
            // that damage there is never taken for a torn write. Written before anyone is acknowledged
            // (a process crash keeps it), synced by the next flush. A failure poisons the log for later
            // calls; this flush is durable all the same.
            let marked = self.write_sync_mark(end_lsn, &mut spare);
            self.durable_lsn.store(end_lsn, Ordering::Release);
            if let Err(e) = marked {
                self.poison(format!("WAL sync mark write of {:?} failed: {e}", path()), 0);
            }
            return Ok(());
        }
        self.durable_lsn.store(end_lsn, Ordering::Release);
        {
            // The old segment is fully synced; records appended meanwhile start at `end_lsn` and go to
            // the new segment.
            let (seg, new_file) = match self.create_segment(end_lsn) {
                Ok(x) => x,
                Err(e) => {
                    self.poison(format!("WAL segment rollover failed: {e}"), 0);
                    return Err(e);
                }
            };
            let mut state = self.state.lock();
            state.segments.push(seg);
            state.active = Some(new_file.clone());
            state.active_bytes = SEGMENT_HEADER_BYTES;
            state.active_marks = true;
            let zero_filled = self.new_segment_zero_filled();
            self.fill
                .set_active(new_file, zero_filled, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES);
        }
        Ok(())
    }

    fn release_before(&self, lsn: Lsn) -> Result<()> {
        self.rotate_if_all_released(lsn)?;
        let doomed: Vec<Segment> = {
            let mut state = self.state.lock();
            // Past the last record there are only sync marks, which need not be kept.
            let lsn = if lsn >= state.records_end {
                lsn.max(state.next_lsn)
            } else {
                lsn
            };
            // Segment i holds LSNs [first_lsn(i), first_lsn(i + 1)); it may go once that end is <= lsn.
            // The active (last) segment always stays.
            let keep_from = (1..state.segments.len())
                .find(|&i| state.segments[i].first_lsn > lsn)
                .map_or(state.segments.len().saturating_sub(1), |i| i - 1);
            state.segments.drain(..keep_from).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        // Oldest first, so that what stays is always a contiguous log.
        for (i, seg) in doomed.iter().enumerate() {
            if let Err(e) = self.files.remove(&seg.path) {
                // Keep the segments not removed in the list, so that a later release removes them (a
                // segment left on disk but forgotten would break the LSN chain at the next open).
                let mut state = self.state.lock();
                let rest = doomed[i..].iter().cloned();
                state.segments.splice(0..0, rest);
                return Err(e);
            }
        }
        self.files.sync_dir()
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[path = "file_tests.rs"]
mod tests;
