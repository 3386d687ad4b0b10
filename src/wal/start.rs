//! The log's start (`wal/START`): the first LSN the log still holds, kept durable so that an open can tell
//! a log whose oldest segments were lost (deleted, or never copied) from one whose segments were released.
//!
//! Without it a missing *oldest* segment is invisible: the remaining segments form a contiguous log that
//! merely starts later, and replay would serve the store without the lost records (adversarial round 15).
//! The same role as RocksDB's minimum log number kept in its MANIFEST; here the WAL keeps it beside its
//! segments, since only the WAL decides when segments go.
//!
//! Protocol (DESIGN.md §3, FORMAT.md §4 "Start file"): the file is written at the end of the first replay
//! of a log that has none (a new log, or one of an older release: from its oldest segment), and before
//! any release removes segments it is rewritten, durably (temporary file, `fsync`,
//! rename, directory `fsync`), to the first LSN of the oldest segment kept. It never moves back. A strict
//! open ([`WalRecovery::Strict`](super::WalRecovery)) then requires the oldest segment to start at or
//! before it (later segments are checked for gaps as before): one that starts after it is
//! [`Error::Corrupt`] naming the missing segment. A point-in-time open accepts the loss, as it accepts a
//! cut log. An older release ignores the file: its releases do not move it, so a store it ran on since is
//! refused as missing its front until the file is removed (the error says so).

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
/// The format version written (and the newest read).
const START_VERSION: u32 = 1;
/// Its length: magic, version, reserved, LSN, checksum.
const START_BYTES: usize = 32;

/// The start recorded in `dir`'s start file, or `None` if there is none (a log of an older release).
///
/// Errors: [`Error::Io`] reading it; [`Error::Corrupt`] (naming the file) if it is not 32 bytes with the
/// magic and a matching checksum; [`Error::VersionTooNew`] for a newer version.
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
    if le_u64(&bytes, 24) != checksum(&bytes[..24]) {
        return Err(Error::corrupt(name, 24, "WAL start file checksum mismatch"));
    }
    let version = crate::encoding::le_u32(&bytes, 8);
    if version > START_VERSION {
        return Err(Error::VersionTooNew {
            file: name,
            found: version,
            supported: START_VERSION,
        });
    }
    Ok(Some(le_u64(&bytes, 16)))
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
                "WAL segment missing: the log starts at LSN {start} ({START_FILE}), its oldest segment {} \
                 (if a release older than the start file ran on this store since, its releases did not \
                 move the start: remove {START_FILE}; to accept the loss, open with \
                 WalRecovery::PointInTime)",
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
        bytes.extend_from_slice(&START_VERSION.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
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
        bytes[17] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        match read_start(&*fs, dir.path()) {
            Err(Error::Corrupt { file, offset, .. }) => assert!(file.ends_with(START_FILE) && offset == 24),
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
