//! [`DirBlob`]: a [`Blob`] over the files of one directory, read through read-only memory maps.
//!
//! Write protocol of one object `NAME` through [`Blob::create`] (the manifest): create `NAME.tmp`, write,
//! `fsync` it, rename it to `NAME`, `fsync` the directory. A crash before the rename leaves `NAME.tmp`
//! (removed by the store on the next open); after the directory fsync the object survives any crash.
//!
//! Through [`Blob::create_new`] (batch files: a fresh name each): create `NAME` itself, write, `fsync` it;
//! no rename and no directory fsync of its own. Its directory entry becomes durable with the next
//! `create` commit's directory fsync (the manifest naming it, in this same directory), before which a
//! crash leaves it unnamed by any manifest (partial, whole, or absent), and the store removes it on the
//! next open. This relies on the directory fsync making every earlier entry change of the directory
//! durable, and on a rename in a directory not becoming durable before an earlier creation in it (true
//! of journaling file systems, ext4, XFS, btrfs, which commit directory changes in order; DESIGN.md §3).
//!
//! **Space reserve** ([`DirBlob::with_reserve`], which a store's open asks for): a file of zeros,
//! [`RESERVE_NAME`], kept so that a full disk (`ENOSPC`) does not also block the small manifest commits
//! that free space (`drop_stream`, `allow_compaction`, a merge whose output was written before the disk
//! filled). A [`Blob::set`] that fails for want of space removes the reserve and tries once more; the
//! first `set` that commits with twice the reserve's size free again (the space the commit it served let
//! the store free: a dropped stream's files, a merge's inputs) writes a new one (not after a quota's
//! refusal, which `statvfs` cannot see), and so does the next open if there is room; one that
//! `fill_reserve` could not write is written the same way. [`Blob::set_optional`] (the open's fold of
//! manifest edits, which can be skipped) never takes it. A commit that fails before its rename removes
//! its partial temporary. Batch files (`create_new`) never use it, so a merge that still has its output to
//! write does not get through; nor does a snapshot larger than the reserve (about 10,000 streams or
//! 17,000 batches). Until it is renewed, a commit on a full disk poisons the store. (CockroachDB keeps a
//! "ballast" file for the same reason.)

use super::{check_name, Blob, BlobBytes, BlobWriter, TMP_SUFFIX};
use crate::error::{Error, Result};
use crate::fs::{sync_dir, Appender, Fs, OpenHow, StdFs};
use parking_lot::Mutex;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size of the write buffer in front of each object file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Write-behind step (RocksDB's `bytes_per_sync` with `strict_bytes_per_sync`): once this many bytes of an
/// object are in the page cache and not yet under writeback, the writer waits for the step it handed to
/// writeback before (if still in flight) and starts writing back the new bytes (`FsFile::write_behind`:
/// `sync_file_range(SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere).
/// So a large object (a merge output) goes to disk as it is written, with at most about two steps (plus
/// the write buffer) in flight or dirty, and its commit's fsync finds little left to write. Why bounded and
/// small: the WAL's `fdatasync`s queue behind whatever writeback is in flight on the device; with 8 MiB
/// handed over at once and never waited for, a durable writer's p99 write beside merges took 5.4–6.1 ms
/// against 2.9–3.4 ms with this, and ingest up to 10% longer (BENCHMARKS.md, "Write-behind"). Writes larger
/// than a step are handed over a step at a time. Durability is still the commit's fsync; a write error
/// the wait reports (and so takes from that fsync, on Linux) fails the write and the commit.
const WRITEBACK_BYTES: u64 = 1 << 20;

/// Steps end on a page boundary: the partly written last page is left dirty, so the next write to it
/// neither writes it twice nor waits for its writeback (on devices that keep pages stable under I/O).
const WRITEBACK_ALIGN: u64 = 4096;

/// Which bytes of an object a [`DirWriter`] hands to writeback next (`WRITEBACK_BYTES` at a time, ending on
/// a page boundary), and which earlier hand-off that must first wait for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct WriteBehind {
    /// Start of the bytes last handed to writeback, which may still be in flight.
    in_flight_from: u64,
    /// Bytes before this offset have been handed to writeback.
    handed_to: u64,
}

impl WriteBehind {
    /// With the object's first `in_file` bytes in the page cache: the range to pass to
    /// `FsFile::write_behind` (the last hand-off's bytes, to wait for, and the new whole pages, to start),
    /// if a step's worth is new.
    fn next(&mut self, in_file: u64) -> Option<std::ops::Range<u64>> {
        let end = in_file - in_file % WRITEBACK_ALIGN;
        if end.saturating_sub(self.handed_to) < WRITEBACK_BYTES {
            return None;
        }
        let range = self.in_flight_from..end;
        *self = WriteBehind {
            in_flight_from: self.handed_to,
            handed_to: end,
        };
        Some(range)
    }
}

/// Objects as files in one directory, through an [`Fs`] (the real file system unless built with
/// [`DirBlob::on`]).
#[derive(Clone)]
pub struct DirBlob {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    /// The space reserve's path, if this blob keeps one (see the module docs).
    reserve: Option<PathBuf>,
    /// Whether the reserve is to be renewed. Held while the reserve is written or removed, so that
    /// concurrent `set`s and `fill_reserve` take turns.
    reserve_state: Arc<Mutex<ReserveState>>,
}

/// What a [`DirBlob`] knows of its space reserve.
#[derive(Clone, Copy, Debug, Default)]
struct ReserveState {
    /// Its size in bytes (the last `fill_reserve`'s).
    bytes: u64,
    /// Missing, to be written by the next `set` that commits with room for it: a `set` removed it for
    /// want of space (`ENOSPC`), or `fill_reserve` found too little room.
    missing: bool,
}

/// The name of a store directory's space reserve (see the module docs); not an object: [`Blob::list`]
/// does not report it.
pub const RESERVE_NAME: &str = "RESERVE";

/// The size of the space reserve a store keeps, in bytes (1 MiB: a manifest edit is some hundred bytes,
/// a snapshot about 100 bytes a stream and 60 a batch).
pub const RESERVE_BYTES: usize = 1 << 20;

impl std::fmt::Debug for DirBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirBlob").field("dir", &self.dir).finish()
    }
}

impl DirBlob {
    /// Uses `dir` on the real file system, creating it (and its parents) if missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        Self::on(StdFs::shared(), dir)
    }

    /// Uses `dir` on the file system `fs` (for example a [`crate::fs::SimFs`]), creating it (and its
    /// parents) if missing.
    ///
    /// Errors: [`Error::Io`] if the directory cannot be created or synced into its parent.
    pub fn on(fs: Arc<dyn Fs>, dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        crate::fs::create_dir_durable(&*fs, &dir)?;
        Ok(DirBlob {
            fs,
            dir,
            reserve: None,
            reserve_state: Arc::new(Mutex::new(ReserveState::default())),
        })
    }

    /// Keeps a space reserve in the directory (see the module docs): [`set`](Blob::set) may remove it to
    /// make room; [`fill_reserve`](Self::fill_reserve) writes it.
    pub fn with_reserve(mut self) -> Self {
        self.reserve = Some(self.path(RESERVE_NAME));
        self
    }

    /// Writes the space reserve durably, `bytes` bytes, if this blob keeps one and it is missing (or
    /// shorter). Best effort, and only with room to spare: with less than twice `bytes` free on the file
    /// system (`statvfs`, where there is one) it writes nothing, as the reserve would take the last bytes
    /// the WAL and batch files need; a failed write leaves no temporary. The bytes are pseudo-random, not
    /// zeros, so that a compressing file system (btrfs, ZFS) gives back what the reserve held when it
    /// is removed.
    pub fn fill_reserve(&self, bytes: usize) {
        let mut state = self.reserve_state.lock();
        state.bytes = bytes as u64;
        state.missing = !self.write_reserve(bytes as u64, true);
    }

    /// Writes the reserve of `bytes` unless it is there: whether it is there now. Only with twice `bytes`
    /// free, or (with `unknown_is_room`) where the free space is unknown. The caller holds `reserve_state`.
    fn write_reserve(&self, bytes: u64, unknown_is_room: bool) -> bool {
        let Some(path) = &self.reserve else { return true };
        if self.fs.len(path).is_ok_and(|len| len >= bytes) {
            return true;
        }
        match self.fs.free_bytes(&self.dir) {
            Some(free) if free < 2 * bytes => return false,
            None if !unknown_is_room => return false,
            _ => {}
        }
        let write = || -> Result<()> {
            let mut writer = self.create(RESERVE_NAME)?;
            writer.write(&incompressible(bytes as usize))?;
            writer.commit()
        };
        write().is_ok()
    }

    /// Removes the space reserve for a `set` that failed with `e`, if there is one: whether space was
    /// freed. A quota's refusal (`EDQUOT`) takes it for the rest of the run: `statvfs` cannot see a
    /// quota, so nothing tells when renewing it would not take what the WAL and batch files need.
    fn release_reserve(&self, e: &Error) -> bool {
        let Some(path) = &self.reserve else { return false };
        let mut state = self.reserve_state.lock();
        if !self.fs.exists(path) || self.fs.remove(path).is_err() {
            return false;
        }
        let quota =
            matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::QuotaExceeded);
        if state.bytes == 0 {
            // Not filled by this blob (`fill_reserve` sets its size): the store's.
            state.bytes = RESERVE_BYTES as u64;
        }
        state.missing = !quota;
        true
    }

    /// After a `set` committed: writes the reserve if it is missing and twice its size is free (known to
    /// be: the space a `drop_stream` or a merge freed). A `statvfs` call per commit while it is missing.
    fn renew_reserve(&self) {
        let mut state = self.reserve_state.lock();
        if state.missing {
            state.missing = !self.write_reserve(state.bytes, false);
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A writer of the file `path`, renamed to `dest` (then the directory fsync'd) at commit if given.
    /// A temporary (`dest` given) is truncated if a crash left one; a new object (`create_new`) must not
    /// exist: it is opened `O_EXCL`, so a file number taken twice (a bug, or a stray file) fails the write
    /// instead of truncating a file a manifest may name and a reader may have mapped.
    fn writer(&self, path: PathBuf, dest: Option<PathBuf>) -> Result<Box<dyn BlobWriter>> {
        let how = if dest.is_some() {
            OpenHow::CreateTruncate
        } else {
            OpenHow::CreateNew
        };
        let file = self
            .fs
            .open(&path, how)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(Box::new(DirWriter {
            fs: self.fs.clone(),
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Appender(file))),
            path,
            dest,
            dir: self.dir.clone(),
            len: 0,
            write_behind: Some(WriteBehind::default()),
            failed: None,
        }))
    }
}

/// [`crate::fs::create_dir_durable`] on the real file system.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<Vec<PathBuf>> {
    crate::fs::create_dir_durable(&StdFs, dir)
}

impl Blob for DirBlob {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        check_name(name)?;
        let path = self.path(name);
        self.fs
            .map(&path)
            .map_err(|e| Error::io(format!("open or mmap {}", path.display()), e))
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        check_name(name)?;
        let tmp = self.path(&format!("{name}{TMP_SUFFIX}"));
        self.writer(tmp, Some(self.path(name)))
    }

    fn create_new(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        check_name(name)?;
        self.writer(self.path(name), None)
    }

    /// As the trait's, and on a full disk (`ENOSPC`) once more after removing the space reserve, if
    /// there is one: a `set` of the same bytes under the same name is idempotent, wherever the first
    /// attempt failed. After a commit, renews a reserve removed earlier once there is room (module docs).
    /// The reserve's removal and renewal take turns with other `set`s' and with `fill_reserve`.
    fn set(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let attempt = || self.set_optional(name, bytes);
        let result = match attempt() {
            Err(e) if e.is_no_space() && self.release_reserve(&e) => attempt(),
            result => result,
        };
        if result.is_ok() {
            self.renew_reserve();
        }
        result
    }

    /// As the trait's: the space reserve is neither taken nor renewed.
    fn set_optional(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut writer = self.create(name)?;
        writer.write(bytes)?;
        writer.commit()
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.path(name);
        // No directory fsync: the store only deletes objects no manifest names (orphans, merged-away
        // batches), and one that a crash resurrects is an orphan again, removed at the next open.
        match self.fs.remove(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    fn sync_deletes(&self) -> Result<()> {
        sync_dir(&*self.fs, &self.dir)
    }

    fn list(&self) -> Result<Vec<String>> {
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|e| Error::io(format!("list {}", self.dir.display()), e))?;
        let object = |n: &String| check_name(n).is_ok() && n != RESERVE_NAME;
        Ok(names.into_iter().filter(object).collect())
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

struct DirWriter {
    fs: Arc<dyn Fs>,
    /// `None` once committed.
    file: Option<BufWriter<Appender>>,
    /// The file written.
    path: PathBuf,
    /// The name it is renamed to at commit (`create`); `None` when written under its name (`create_new`).
    dest: Option<PathBuf>,
    dir: PathBuf,
    len: u64,
    /// `None` once the file system said it cannot write behind.
    write_behind: Option<WriteBehind>,
    /// Set when write-behind reported a failed write: the object can never be committed.
    failed: Option<String>,
}

impl BlobWriter for DirWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        if let Some(failed) = &self.failed {
            return Err(failed_write(&self.path, failed));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::bad_input("write after commit"))?;
        // A step at a time, so that a large write (a merge output's index and filter) is handed to
        // writeback as it goes, not all at once at the commit.
        for piece in bytes.chunks(WRITEBACK_BYTES as usize) {
            file.write_all(piece)
                .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
            self.len += piece.len() as u64;
            // The bytes still in the buffer are not in the page cache yet; only those before them are.
            let in_file = self.len - file.buffer().len() as u64;
            let Some(range) = self.write_behind.as_mut().and_then(|w| w.next(in_file)) else {
                continue;
            };
            match file.get_ref().0.write_behind(range) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Unsupported => self.write_behind = None,
                Err(e) => {
                    // An earlier write of this file failed, and the commit's fsync may no longer say so.
                    let what = format!("write-behind (sync_file_range) of {}", self.path.display());
                    self.failed = Some(e.to_string());
                    return Err(Error::io(what, e));
                }
            }
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        if let Some(failed) = &self.failed {
            return Err(failed_write(&self.path, failed));
        }
        let writer = self.file.take().ok_or_else(|| Error::bad_input("commit twice"))?;
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let written = || -> Result<()> {
            let Appender(file) = writer
                .into_inner()
                .map_err(|e| Error::io(ctx("flush", &self.path), e.into_error()))?;
            file.sync_all()
                .map_err(|e| Error::io(ctx("fsync", &self.path), e))?;
            drop(file);
            if let Some(dest) = &self.dest {
                self.fs
                    .rename(&self.path, dest)
                    .map_err(|e| Error::io(ctx("rename", &self.path), e))?;
            }
            Ok(())
        };
        if let Err(e) = written() {
            // Not renamed: the partial file would hold the space it took (a full disk's last bytes) until
            // the next open; `Drop` no longer can remove it, the writer being taken. Best effort.
            let _ = self.fs.remove(&self.path);
            return Err(e);
        }
        match &self.dest {
            Some(_) => sync_dir(&*self.fs, &self.dir),
            // `create_new`: the name becomes durable with the next `create` commit's directory fsync.
            None => Ok(()),
        }
    }
}

/// `n` bytes of a xorshift sequence: no file system compresses them away.
fn incompressible(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The error of every call on a writer after write-behind reported a failed write of its file.
fn failed_write(path: &Path, detail: &str) -> Error {
    Error::io(
        format!("write {} (an earlier write failed)", path.display()),
        std::io::Error::other(detail.to_string()),
    )
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: discard the file (a temporary, or a new object under its name that no
            // manifest names). Failure is harmless (it is an orphan the next open removes), so it is
            // ignored here where no error can be returned.
            let _ = self.fs.remove(&self.path);
        }
    }
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
