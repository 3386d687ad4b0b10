//! Segment files of [`super::FileLog`]: creating one (header written and synced, then the directory)
//! and removing released ones, every step (and each group commit's flush) behind an optional fault hook ([`SegmentFaultHook`]) so that tests
//! can fail each step in turn (`tests/wal_faults.rs`).

use super::file::{SEGMENT_FLAG_ZERO_FILLED, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, WAL_VERSION};
use super::scan::Segment;
use super::Lsn;
use crate::encoding::{checksum, PutLe};
use crate::error::{Error, Result};
use crate::fs::{Fs, FsFile, OpenHow};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
        let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.put_u32(WAL_VERSION.0);
        header.put_u32(if zero_filled { SEGMENT_FLAG_ZERO_FILLED } else { 0 });
        header.put_u64(first_lsn);
        header.put_u64(checksum(&header));
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
