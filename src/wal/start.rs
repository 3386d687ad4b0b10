//! The log's start (`wal/START`): the first LSN the log still holds, kept durable so that an open can tell
//! a log whose oldest segments were lost (deleted, or never copied) from one whose segments were released.
//!
//! Without it a missing *oldest* segment is invisible: the remaining segments form a contiguous log that
//! merely starts later, and replay would serve the store without the lost records (adversarial round 15).
//! The same role as RocksDB's minimum log number kept in its MANIFEST; here the WAL keeps it beside its
//! segments, since only the WAL decides when segments go.
//!
//! Protocol (DESIGN.md §3, FORMAT.md §4 "Start file"): the file is written when the log's first segment
//! is created (or at the first open of a log from an older release, which has none: then from its oldest
//! segment), and before any release removes segments it is rewritten, durably (temporary file, `fsync`,
//! rename, directory `fsync`), to the first LSN of the oldest segment kept. It never moves back. An open
//! then requires the oldest segment to start at or before it (later segments are checked for gaps as
//! before): one that starts after it is [`Error::Corrupt`] naming the missing segment.

use super::segments::{SegmentFiles, SegmentStep};
use super::Lsn;
use crate::encoding::{checksum, le_u64};
use crate::error::{Error, Result};
use crate::fs::{Fs, OpenHow};
use std::path::Path;

/// The start file's name in the WAL directory.
pub(crate) const START_FILE: &str = "START";
/// The name it is written under before its rename.
const START_TMP: &str = "START.tmp";
/// First 8 bytes of the start file.
const START_MAGIC: &[u8; 8] = b"DDPWALST";
/// Its length: magic, LSN, checksum.
const START_BYTES: usize = 24;

/// The start recorded in `dir`'s start file, or `None` if there is none (a log of an older release).
///
/// Errors: [`Error::Io`] reading it; [`Error::Corrupt`] (naming the file) if it is not 24 bytes with the
/// magic and a matching checksum.
pub(crate) fn read_start(fs: &dyn Fs, dir: &Path) -> Result<Option<Lsn>> {
    let path = dir.join(START_FILE);
    if !fs.exists(&path) {
        return Ok(None);
    }
    let name = path.display().to_string();
    let bytes = fs.read(&path).map_err(|e| Error::io(format!("read {name}"), e))?;
    if bytes.len() != START_BYTES || &bytes[..8] != START_MAGIC {
        return Err(Error::corrupt(name, 0, "not a WAL start file"));
    }
    if le_u64(&bytes, 16) != checksum(&bytes[..16]) {
        return Err(Error::corrupt(name, 16, "WAL start file checksum mismatch"));
    }
    Ok(Some(le_u64(&bytes, 8)))
}

/// The check an open makes: the log's oldest segment (its first LSN; `None` when there is no segment)
/// must start at or before the recorded `start`.
///
/// Errors: [`Error::Corrupt`] naming the missing segment (`{start:020}.wal`) otherwise.
pub(crate) fn check_start(dir: &Path, start: Lsn, oldest: Option<Lsn>) -> Result<()> {
    match oldest {
        Some(first) if first <= start => Ok(()),
        _ => Err(Error::corrupt(
            dir.join(super::segments::segment_name(start))
                .display()
                .to_string(),
            0,
            format!(
                "WAL segment missing: the log starts at LSN {start} ({START_FILE}), its oldest segment {}",
                oldest.map_or("is gone".to_string(), |f| format!("at {f}"))
            ),
        )),
    }
}

impl SegmentFiles {
    /// Records `start` durably as the log's start, unless a start at or past it is recorded already
    /// (it never moves back). Call before removing any segment below it.
    ///
    /// Errors: [`Error::Io`] writing, syncing or renaming the file, or syncing the directory.
    pub(crate) fn write_start(&self, start: Lsn) -> Result<()> {
        let mut recorded = self.start.lock();
        if recorded.is_some_and(|r| r >= start) {
            return Ok(());
        }
        let (tmp, path) = (self.dir.join(START_TMP), self.dir.join(START_FILE));
        let mut bytes = Vec::with_capacity(START_BYTES);
        bytes.extend_from_slice(START_MAGIC);
        bytes.extend_from_slice(&start.to_le_bytes());
        bytes.extend_from_slice(&checksum(&bytes).to_le_bytes());
        let ctx = |what: &str| format!("{what} {}", tmp.display());
        self.step(SegmentStep::WriteHeader, &tmp)
            .and_then(|_| self.fs.open(&tmp, OpenHow::CreateTruncate))
            .and_then(|file| {
                file.write_at(&bytes, 0)?;
                self.step(SegmentStep::SyncFile, &tmp)?;
                file.sync_all()
            })
            .map_err(|e| Error::io(ctx("write"), e))?;
        self.rename(&tmp, &path)?;
        self.sync_dir()?;
        *recorded = Some(start);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::StdFs;
    use parking_lot::Mutex;
    use std::sync::Arc;

    fn files(dir: &Path) -> SegmentFiles {
        SegmentFiles {
            fs: StdFs::shared(),
            dir: dir.to_path_buf(),
            hook: None,
            free: Mutex::new(Vec::new()),
            store_id: Default::default(),
            start: Mutex::new(None),
        }
    }

    #[test]
    fn a_start_round_trips_never_moves_back_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Fs> = StdFs::shared();
        assert_eq!(read_start(&*fs, dir.path()).unwrap(), None);
        let f = files(dir.path());
        f.write_start(4096).unwrap();
        assert_eq!(read_start(&*fs, dir.path()).unwrap(), Some(4096));
        f.write_start(100).unwrap();
        assert_eq!(read_start(&*fs, dir.path()).unwrap(), Some(4096));
        f.write_start(9000).unwrap();
        assert_eq!(read_start(&*fs, dir.path()).unwrap(), Some(9000));
        assert!(!dir.path().join(START_TMP).exists());
        let path = dir.path().join(START_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[9] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match read_start(&*fs, dir.path()) {
            Err(Error::Corrupt { file, offset, .. }) => assert!(file.ends_with(START_FILE) && offset == 16),
            other => panic!("{other:?}"),
        }
        assert!(check_start(dir.path(), 10, Some(0)).is_ok());
        assert!(check_start(dir.path(), 10, Some(10)).is_ok());
        match check_start(dir.path(), 10, Some(20)) {
            Err(Error::Corrupt { file, .. }) => assert!(file.ends_with("00000000000000000010.wal")),
            other => panic!("{other:?}"),
        }
        assert!(check_start(dir.path(), 10, None).is_err());
    }
}
