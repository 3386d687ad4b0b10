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

use super::{check_name, Blob, BlobBytes, BlobWriter, TMP_SUFFIX};
use crate::error::{Error, Result};
use crate::fs::{sync_dir, Appender, Fs, OpenHow, StdFs};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size of the write buffer in front of each object file.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Once this many bytes of an object are written and not yet under writeback, the writer asks the kernel
/// to start writing them to disk (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux; nothing elsewhere), so
/// the commit's fsync finds most of a large object (a merge output) already on its way instead of
/// starting all of it then. It does not wait and promises nothing: durability is still the commit's fsync.
const WRITEBACK_BYTES: u64 = 8 << 20;

/// Objects as files in one directory, through an [`Fs`] (the real file system unless built with
/// [`DirBlob::on`]).
#[derive(Clone)]
pub struct DirBlob {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
}

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
        Ok(DirBlob { fs, dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A writer of the file `path`, renamed to `dest` (then the directory fsync'd) at commit if given.
    fn writer(&self, path: PathBuf, dest: Option<PathBuf>) -> Result<Box<dyn BlobWriter>> {
        let file = self
            .fs
            .open(&path, OpenHow::CreateTruncate)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(Box::new(DirWriter {
            fs: self.fs.clone(),
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Appender(file))),
            path,
            dest,
            dir: self.dir.clone(),
            len: 0,
            writeback_from: 0,
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

    fn list(&self) -> Result<Vec<String>> {
        let names = self
            .fs
            .list(&self.dir)
            .map_err(|e| Error::io(format!("list {}", self.dir.display()), e))?;
        Ok(names.into_iter().filter(|n| check_name(n).is_ok()).collect())
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
    /// Bytes before this offset have been handed to writeback.
    writeback_from: u64,
}

impl BlobWriter for DirWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::bad_input("write after commit"))?;
        file.write_all(bytes)
            .map_err(|e| Error::io(format!("write {}", self.path.display()), e))?;
        self.len += bytes.len() as u64;
        // The bytes still in the buffer are not in the page cache yet; only those before them are.
        let in_file = self.len - file.buffer().len() as u64;
        if in_file - self.writeback_from >= WRITEBACK_BYTES {
            file.get_ref()
                .0
                .start_writeback(self.writeback_from, in_file - self.writeback_from);
            self.writeback_from = in_file;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn commit(mut self: Box<Self>) -> Result<()> {
        let writer = self.file.take().ok_or_else(|| Error::bad_input("commit twice"))?;
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let Appender(file) = writer
            .into_inner()
            .map_err(|e| Error::io(ctx("flush", &self.path), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(ctx("fsync", &self.path), e))?;
        drop(file);
        let Some(dest) = &self.dest else {
            // `create_new`: the name becomes durable with the next `create` commit's directory fsync.
            return Ok(());
        };
        self.fs
            .rename(&self.path, dest)
            .map_err(|e| Error::io(ctx("rename", &self.path), e))?;
        sync_dir(&*self.fs, &self.dir)
    }
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
mod tests {
    use super::*;

    #[test]
    fn a_large_object_under_early_writeback_reads_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let blob = DirBlob::open(dir.path()).unwrap();
        let mut w = blob.create("big.batch").unwrap();
        let piece: Vec<u8> = (0..(1 << 20) + 17).map(|i| (i % 251) as u8).collect();
        let pieces = (3 * WRITEBACK_BYTES as usize) / piece.len() + 2;
        for _ in 0..pieces {
            w.write(&piece).unwrap();
        }
        w.write(b"tail").unwrap();
        w.commit().unwrap();
        let bytes = blob.get("big.batch").unwrap().unwrap();
        assert_eq!(bytes.len(), pieces * piece.len() + 4);
        assert!(bytes.chunks(piece.len()).take(pieces).all(|c| c == &piece[..]));
        assert_eq!(&bytes[bytes.len() - 4..], b"tail");
    }

    #[test]
    fn a_created_directory_is_synced_into_each_new_parent() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a").join("b");
        let synced = create_dir_durable(&dir).unwrap();
        assert!(dir.is_dir());
        // Top down: the entry of "a" in the temp dir, then that of "b" in "a".
        assert_eq!(synced, vec![tmp.path().to_path_buf(), tmp.path().join("a")]);
        // An existing directory: nothing to do.
        assert!(create_dir_durable(&dir).unwrap().is_empty());
    }
}
