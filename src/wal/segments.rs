//! Segment files of [`FileLog`]: creating one (header written and synced, then the directory), starting
//! it as the active segment (at a rollover, or an idle rotation when every record is released), and
//! removing released ones. Every step (and each group commit's write + `fdatasync`) is behind an optional fault hook
//! ([`SegmentFaultHook`]) so that tests can fail each step in turn (`tests/wal_faults.rs`).
//!
//! When a segment passes its size limit it is fsync'd and closed, and a new one is created and fsync'd
//! together with the directory before any record is written to it. So only the last segment can have a
//! torn tail. When every record is released (all sealed) and the active segment holds at least
//! [`IDLE_ROTATE_BYTES`], a new segment is started too, so the old one is deleted and a restart replays
//! almost nothing.

use super::file::FileLog;
use super::format::{segment_header, SEGMENT_HEADER_BYTES, WAL_VERSION};
use super::scan::Segment;
use super::Lsn;
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile, OpenHow};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A fully released active segment at least this large is replaced by a fresh one (see
/// `FileLog::release_segments`), so restarts do not replay sealed records.
pub(crate) const IDLE_ROTATE_BYTES: u64 = 8 << 20;

/// A step of segment management, as seen by a [`SegmentFaultHook`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegmentStep {
    /// Creating a new segment file.
    Create,
    /// Writing a new segment's header.
    WriteHeader,
    /// `fsync` of a segment file: a new one's header, or the old one before an idle rotation.
    SyncFile,
    /// `fsync` of the WAL directory, after a segment was created or removed.
    SyncDir,
    /// Removing a segment file (a released one, or a new one whose creation failed).
    Remove,
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
}

/// The file name of the segment starting at `first_lsn`.
pub(crate) fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

impl SegmentFiles {
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
        let path = self.dir.join(segment_name(first_lsn));
        if self.fs.exists(&path) {
            self.remove(&path)?;
        }
        match self.try_create(&path, first_lsn, zero_filled) {
            Ok(file) => Ok((Segment { first_lsn, path }, file)),
            Err(e) => {
                if self.fs.exists(&path) && self.remove(&path).is_ok() {
                    let _ = self.sync_dir();
                }
                Err(e)
            }
        }
    }

    fn try_create(&self, path: &Path, first_lsn: Lsn, zero_filled: bool) -> Result<Arc<dyn FsFile>> {
        let header = segment_header(first_lsn, zero_filled);
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

    /// Creates the segment starting at `first_lsn` and makes it the active one (the previous active
    /// segment must be synced whole: only the last segment may have a torn tail).
    pub(super) fn start_segment(&self, first_lsn: Lsn) -> Result<()> {
        let (seg, file) = self.create_segment(first_lsn)?;
        let mut state = self.state.lock();
        state.segments.push(seg);
        state.active = Some(file.clone());
        state.active_bytes = SEGMENT_HEADER_BYTES;
        state.active_marks = true;
        self.active_version.store(WAL_VERSION.0, Ordering::Release);
        let zero_filled = self.new_segment_zero_filled();
        self.fill
            .set_active(file, zero_filled, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES);
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
        // Records appended from here on start at `end` or later, and go to the new segment.
        self.start_segment(end)
    }

    /// [`Log::release_before`](super::Log::release_before): removes the segments wholly before `lsn`
    /// (after an idle rotation, when everything is released).
    pub(super) fn release_segments(&self, lsn: Lsn) -> Result<()> {
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
}
