//! Segment files of [`FileLog`]: creating one (header written and synced, then the directory), starting
//! it as the active segment (at a rollover, or an idle rotation when every record is released), and
//! removing released ones. Every step (and each group commit's write + `fdatasync`) is behind an optional fault hook
//! ([`SegmentFaultHook`]) so that tests can fail each step in turn (`tests/durability/wal_faults.rs`).
//!
//! When a segment passes its size limit it is fsync'd and closed, and a new one is created and fsync'd
//! together with the directory before any record is written to it. So only the last segment can have a
//! torn tail. When every record is released (all sealed) and the active segment holds at least
//! [`IDLE_ROTATE_BYTES`], a new segment is started too, so the old one is deleted and a restart replays
//! almost nothing.
//!
//! Recycling (WAL version 6): up to [`RECYCLE_KEEP`] released segments are renamed `{first_lsn:020}.free`
//! instead of deleted, and a rollover makes one of them the new segment (header rewritten and synced,
//! then renamed to the segment's name and the directory synced) instead of creating a file. Its records
//! then overwrite blocks already allocated and written, so each group commit's `fdatasync` writes no file
//! metadata (on ext4 an appending `fdatasync` also writes the inode: BENCHMARKS.md). Past the log's end
//! the file holds the earlier incarnation's records, whose checksums fail: they are seeded with their
//! LSN, which differs (FORMAT.md §4, "Recycled segments"; RocksDB's recyclable log records carry the log
//! number for the same reason). An idle rotation starts a fresh, small file (a restart reads the last
//! segment whole), and a recycled segment is truncated to its records before its successor exists, so
//! only the last segment can hold an earlier incarnation's bytes.

use super::file::FileLog;
use super::format::{
    reseed_records, segment_header, SEEDED_VERSION, SEGMENT_FLAG_RECYCLED, SEGMENT_FLAG_ZERO_FILLED,
    SEGMENT_HEADER_BYTES, WAL_VERSION,
};
use super::scan::{list_numbered_on, Segment};
use super::Lsn;
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile, OpenHow};
use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A fully released active segment at least this large is replaced by a fresh one (see
/// `FileLog::release_segments`), so restarts do not replay sealed records.
pub(crate) const IDLE_ROTATE_BYTES: u64 = 8 << 20;

/// At most this many released segments are kept for recycling; further ones are deleted.
pub(crate) const RECYCLE_KEEP: usize = 2;

/// The suffix of a released segment kept for recycling: `{first_lsn:020}.free`.
pub(crate) const FREE_SUFFIX: &str = ".free";

/// A step of segment management, as seen by a [`SegmentFaultHook`]. Non-exhaustive: new steps come with
/// new segment operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentStep {
    /// Creating a new segment file.
    Create,
    /// Writing a new segment's header.
    WriteHeader,
    /// `fsync` of a segment file: a new one's header (a recycled one's: `fdatasync`), the old one before
    /// an idle rotation, or a recycled one cut to its records before its successor.
    SyncFile,
    /// `fsync` of the WAL directory, after a segment was created, renamed or removed, or when an open
    /// adopts kept files.
    SyncDir,
    /// Removing a segment file (a released one, or a new one whose creation failed).
    Remove,
    /// Renaming a file: a released segment kept for recycling, or a kept one becoming a new segment.
    Rename,
    /// A group commit's write and `fdatasync` of the records to the active segment.
    Flush,
}

/// Called before each [`SegmentStep`] with the file (or directory) it concerns; an error fails the step as
/// if the system call had failed. For fault-injection tests ([`super::FileLog::with_segment_fault_hook`]).
pub type SegmentFaultHook = Arc<dyn Fn(SegmentStep, &Path) -> io::Result<()> + Send + Sync>;

/// The segment files in one directory.
pub(crate) struct SegmentFiles {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) hook: Option<SegmentFaultHook>,
    /// Released segment files kept for recycling (`*.free`), oldest first; at most [`RECYCLE_KEEP`] are
    /// added by releases (an open adopts whatever it finds).
    pub(crate) free: Mutex<Vec<PathBuf>>,
    /// The log's start as last recorded in its start file by this process (`start.rs`), if any.
    pub(crate) start: Mutex<Option<super::Lsn>>,
    /// The store's id (`Log::bind_store`; 0 until bound), which seeds the header checksum of every segment
    /// created.
    pub(crate) store_id: std::sync::atomic::AtomicU32,
}

/// The file name of the segment starting at `first_lsn`.
pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

impl SegmentFiles {
    /// The store's id new segment headers are seeded with.
    pub(crate) fn store_id(&self) -> u32 {
        self.store_id.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs the fault hook for `step` on `path`.
    pub(crate) fn step(&self, step: SegmentStep, path: &Path) -> io::Result<()> {
        match &self.hook {
            Some(hook) => hook(step, path),
            None => Ok(()),
        }
    }

    /// `fsync`s the directory.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        let ctx = || format!("fsync directory {}", self.dir.display());
        self.step(SegmentStep::SyncDir, &self.dir)
            .map_err(|e| Error::io(ctx(), e))?;
        crate::fs::sync_dir(&*self.fs, &self.dir)
    }

    /// Renames `from` to `to` (no directory sync).
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.step(SegmentStep::Rename, from)
            .and_then(|_| self.fs.rename(from, to))
            .map_err(|e| Error::io(format!("rename {} to {}", from.display(), to.display()), e))
    }

    /// The released segment files kept for recycling in the directory (`{first_lsn:020}.free`), oldest
    /// first.
    pub(crate) fn list_free(&self) -> Result<Vec<PathBuf>> {
        let free = list_numbered_on(&*self.fs, &self.dir, FREE_SUFFIX)?;
        Ok(free.into_iter().map(|(_, path)| path).collect())
    }

    /// Makes a kept file the segment starting at `first_lsn`: header (flag [`SEGMENT_FLAG_RECYCLED`])
    /// written over the old one, the file cut to `max_bytes` if longer (a kept file of a store that had
    /// larger segments), synced, then renamed to the segment's name and the directory synced; the caller
    /// guarantees no segment of the log has that name. Returns the segment, its open file and the file's
    /// length in bytes after the cut. `None` when no file is kept, or when a step failed:
    /// the file is then dropped from the pool and removed (best effort) if still under its free name (the
    /// caller creates a fresh segment, which replaces a file left under the segment's name), so that
    /// repeated failures leave no files behind.
    pub(crate) fn recycle(&self, first_lsn: Lsn, max_bytes: u64) -> Option<(Segment, Arc<dyn FsFile>, u64)> {
        let free = {
            let mut pool = self.free.lock();
            if pool.is_empty() {
                return None;
            }
            pool.remove(0)
        };
        let path = self.dir.join(segment_name(first_lsn));
        let header = segment_header(first_lsn, SEGMENT_FLAG_RECYCLED, self.store_id());
        let renamed = || -> Result<(Arc<dyn FsFile>, u64)> {
            let ctx = |what: &str| format!("{what} {}", free.display());
            let file = self
                .fs
                .open(&free, OpenHow::Existing)
                .map_err(|e| Error::io(ctx("open"), e))?;
            self.step(SegmentStep::WriteHeader, &free)
                .and_then(|_| file.write_at(&header, 0))
                .map_err(|e| Error::io(ctx("write"), e))?;
            let len = file.len().map_err(|e| Error::io(ctx("stat"), e))?;
            let cut = len > max_bytes;
            if cut {
                file.set_len(max_bytes)
                    .map_err(|e| Error::io(ctx("truncate"), e))?;
            }
            // A new length needs the inode written too; a header alone, only the data.
            self.step(SegmentStep::SyncFile, &free)
                .and_then(|_| if cut { file.sync_all() } else { file.sync_data() })
                .map_err(|e| Error::io(ctx("fdatasync"), e))?;
            self.rename(&free, &path)?;
            self.sync_dir()?;
            Ok((file, len.min(max_bytes)))
        };
        match renamed() {
            Ok((file, len)) => Some((Segment { first_lsn, path }, file, len)),
            // The caller's fresh creation removes a file left under the segment's name; one left under
            // its free name holds nothing the log needs, and goes.
            Err(_) => {
                if self.fs.exists(&free) && self.remove(&free).is_ok() {
                    let _ = self.sync_dir();
                }
                None
            }
        }
    }

    /// Keeps the released segment `seg` for recycling (renamed to its free name, which it returns) if
    /// `keep`, else removes it; no directory sync.
    pub(crate) fn release(&self, seg: &Segment, keep: bool) -> Result<Option<PathBuf>> {
        let kept = self.dir.join(format!("{:020}{FREE_SUFFIX}", seg.first_lsn));
        // A kept file of that name (left by an earlier run) is never replaced: one is enough.
        if !keep || self.fs.exists(&kept) {
            return self.remove(&seg.path).map(|_| None);
        }
        self.rename(&seg.path, &kept)?;
        Ok(Some(kept))
    }

    /// Removes a segment file (no directory sync).
    pub(crate) fn remove(&self, path: &Path) -> Result<()> {
        self.step(SegmentStep::Remove, path)
            .and_then(|_| self.fs.remove(path))
            .map_err(|e| Error::io(format!("remove {}", path.display()), e))
    }

    /// Creates the segment starting at `first_lsn`: header written and synced, then the directory. The
    /// caller guarantees no segment of the log has that name, so a file of that name is a stray of an
    /// earlier failed creation (no record is ever written to a segment before it is created whole): it is
    /// replaced. On failure, removes what it created (best effort: replay also recognises the leftover
    /// as a stray, see [`super::scan::Scan::strays`]).
    pub(crate) fn create(&self, first_lsn: Lsn, zero_filled: bool) -> Result<(Segment, Arc<dyn FsFile>)> {
        let flags = if zero_filled { SEGMENT_FLAG_ZERO_FILLED } else { 0 };
        let path = self.dir.join(segment_name(first_lsn));
        if self.fs.exists(&path) {
            self.remove(&path)?;
        }
        match self.try_create(&path, first_lsn, flags) {
            Ok(file) => Ok((Segment { first_lsn, path }, file)),
            Err(e) => {
                if self.fs.exists(&path) && self.remove(&path).is_ok() {
                    let _ = self.sync_dir();
                }
                Err(e)
            }
        }
    }

    fn try_create(&self, path: &Path, first_lsn: Lsn, flags: u32) -> Result<Arc<dyn FsFile>> {
        let header = segment_header(first_lsn, flags, self.store_id());
        let ctx = |what: &str| format!("{what} {}", path.display());
        let file = self
            .step(SegmentStep::Create, path)
            .and_then(|_| self.fs.open(path, OpenHow::CreateNew))
            .map_err(|e| Error::io(ctx("create"), e))?;
        self.step(SegmentStep::WriteHeader, path)
            .and_then(|_| file.append(&header))
            .map_err(|e| Error::io(ctx("write"), e))?;
        self.step(SegmentStep::SyncFile, path)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io(ctx("fsync"), e))?;
        self.sync_dir()?;
        Ok(file)
    }
}

impl FileLog {
    /// Creates the segment starting at `first_lsn` (not yet the active one).
    pub(super) fn create_segment(&self, first_lsn: Lsn) -> Result<(Segment, Arc<dyn FsFile>)> {
        self.files.create(first_lsn, self.new_segment_zero_filled())
    }

    /// Starts the segment starting at `first_lsn` and makes it the active one (the previous active
    /// segment must be synced whole: only the last segment may have a torn tail): a kept file recycled
    /// when `recycle` (a rollover) and one is kept, else a new file. A recycled previous segment is first
    /// truncated to its records, so that only the last segment holds an earlier incarnation's bytes.
    pub(super) fn start_segment(&self, first_lsn: Lsn, recycle: bool) -> Result<()> {
        self.trim_recycled_active()?;
        let recycled = recycle
            .then(|| self.files.recycle(first_lsn, self.segment_bytes))
            .flatten();
        let is_recycled = recycled.is_some();
        // A recycled file's length is what `recycle` left it (read there, cut to the segment size).
        let (seg, file, file_len) = match recycled {
            Some(found) => found,
            None => {
                let (seg, file) = self.create_segment(first_lsn)?;
                (seg, file, SEGMENT_HEADER_BYTES)
            }
        };
        // No fill of the old segment may outlive its being active (it may be recycled next); wait for one
        // in progress now, before `state` is taken (records go through `sync_lock`, which the caller holds,
        // so none is written to the old segment meanwhile).
        self.fill.retire();
        let mut state = self.state.lock();
        state.segments.push(seg);
        state.active = Some(file.clone());
        state.active_bytes = SEGMENT_HEADER_BYTES;
        state.active_marks = true;
        state.active_recycled = is_recycled;
        // Records appended since the rollover's flush was taken were encoded for the old segment: re-seed
        // them if its version seeded differently (only a reopened segment older than version 6).
        let old_version = self.active_version.load(Ordering::Acquire);
        if old_version < SEEDED_VERSION && !state.pending.is_empty() {
            let first = state.pending_lsn;
            reseed_records(&mut state.pending, first, WAL_VERSION.0);
        }
        self.active_version.store(WAL_VERSION.0, Ordering::Release);
        let zero_filled = !is_recycled && self.new_segment_zero_filled();
        self.fill
            .set_active(file, zero_filled, SEGMENT_HEADER_BYTES, file_len);
        Ok(())
    }

    /// Truncates the active segment to its records if it is recycled and longer (the earlier
    /// incarnation's bytes past them), syncing the new length: called before a successor is started.
    fn trim_recycled_active(&self) -> Result<()> {
        let (file, end, path) = {
            let state = self.state.lock();
            match (&state.active, state.segments.last()) {
                (Some(file), Some(seg)) if state.active_recycled => {
                    (file.clone(), state.active_bytes, seg.path.clone())
                }
                _ => return Ok(()),
            }
        };
        let ctx = |what: &str| format!("{what} {}", path.display());
        let len = file.len().map_err(|e| Error::io(ctx("stat"), e))?;
        if len > end {
            file.set_len(end).map_err(|e| Error::io(ctx("truncate"), e))?;
            self.files
                .step(SegmentStep::SyncFile, &path)
                .and_then(|_| file.sync_all())
                .map_err(|e| Error::io(ctx("fsync"), e))?;
        }
        Ok(())
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
        // Records appended from here on start at `end` or later, and go to the new segment: a fresh,
        // small file, so that a restart reads little (not a recycled one, which a restart reads whole).
        self.start_segment(end, false)
    }

    /// [`Log::release_before`](super::Log::release_before): removes the segments wholly before `lsn`
    /// (after an idle rotation, when everything is released).
    pub(super) fn release_segments(&self, lsn: Lsn) -> Result<()> {
        self.rotate_if_all_released(lsn)?;
        // The segments that go, and the log's new start: its oldest segment kept (the active one always
        // stays), read in the same critical section.
        let (doomed, new_start): (Vec<Segment>, Option<Lsn>) = {
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
            let doomed = state.segments.drain(..keep_from).collect();
            (doomed, state.segments.first().map(|s| s.first_lsn))
        };
        if doomed.is_empty() {
            return Ok(());
        }
        // The new start is recorded before any segment goes (`start.rs`).
        if let Err(e) = new_start.map_or(Ok(()), |s| self.files.write_start(s)) {
            self.state.lock().segments.splice(0..0, doomed);
            return Err(e);
        }
        // Oldest first, so that what stays is always a contiguous log. Each is kept for recycling or
        // removed; the kept ones join the pool once the directory is synced.
        let mut kept = Vec::new();
        let room = RECYCLE_KEEP.saturating_sub(self.files.free.lock().len());
        for (i, seg) in doomed.iter().enumerate() {
            // The newest `room` of them are kept.
            let keep = doomed.len() - i <= room;
            match self.files.release(seg, keep) {
                Ok(Some(path)) => kept.push(path),
                Ok(None) => {}
                Err(e) => {
                    // Keep the segments not released in the list, so that a later release removes them
                    // (a segment left on disk but forgotten would break the LSN chain at the next open).
                    let mut state = self.state.lock();
                    let rest = doomed[i..].iter().cloned();
                    state.segments.splice(0..0, rest);
                    return Err(e);
                }
            }
        }
        self.files.sync_dir()?;
        self.files.free.lock().extend(kept);
        Ok(())
    }
}

#[cfg(test)]
#[path = "recycle_tests.rs"]
mod tests;
