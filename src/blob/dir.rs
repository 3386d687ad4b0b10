//! [`DirBlob`]: a [`Blob`] over the files of one directory, read through read-only memory maps.
//!
//! Write protocol of one object `NAME` through [`Blob::create`] (the manifest): create `NAME.tmp`, write,
//! `fsync` it, rename it to `NAME`, `fsync` the directory. A crash before the rename leaves `NAME.tmp`
//! (removed by the store on the next open); after the directory fsync the object survives any crash.
//!
//! Through [`Blob::create_new`] (batch files: a fresh name each): create `NAME` itself, write; its commit
//! hands the `fsync` to a helper thread and returns. [`Blob::sync_new`] joins that thread. The pointer
//! commit [`Blob::set_after`] (the manifest naming it) writes and fsyncs `MANIFEST.tmp` while the batch's
//! fsync runs, joins it, then renames and fsyncs the directory: one directory fsync makes both names
//! durable, and the batch's fsync overlaps the manifest's. Before that a crash leaves the batch unnamed by
//! any manifest (partial, whole, or absent), and the store removes it on the next open. A failed batch
//! fsync fails the pointer commit before its rename. This relies on the directory fsync making every
//! earlier entry change of the directory durable, and on a rename in a directory not becoming durable
//! before an earlier creation in it (true of journaling file systems, ext4, XFS, btrfs, which commit
//! directory changes in order; DESIGN.md §3).

use super::{check_name, Blob, BlobBytes, BlobWriter, TMP_SUFFIX};
use crate::error::{Error, Result};
use crate::fs::{sync_dir, Appender, Fs, OpenHow, StdFs};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

/// The fsyncs of new objects in flight, by name (see [`Blob::sync_new`]).
type PendingSyncs = Arc<Mutex<HashMap<String, JoinHandle<std::io::Result<()>>>>>;

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
    /// Shared by clones: a clone may wait for an object another clone wrote.
    pending: PendingSyncs,
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
        Ok(DirBlob {
            fs,
            dir,
            pending: PendingSyncs::default(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A writer of the file `path`: renamed to `dest` (then the directory fsync'd) at commit if given,
    /// else (`create_new`) fsync'd by a helper thread registered under `name` in `pending`.
    fn writer(&self, name: &str, path: PathBuf, dest: Option<PathBuf>) -> Result<DirWriter> {
        let file = self
            .fs
            .open(&path, OpenHow::CreateTruncate)
            .map_err(|e| Error::io(format!("create {}", path.display()), e))?;
        Ok(DirWriter {
            fs: self.fs.clone(),
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Appender(file))),
            name: name.to_string(),
            path,
            dest,
            dir: self.dir.clone(),
            pending: self.pending.clone(),
            len: 0,
            writeback_from: 0,
        })
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
        Ok(Box::new(self.writer(name, tmp, Some(self.path(name)))?))
    }

    fn create_new(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        check_name(name)?;
        Ok(Box::new(self.writer(name, self.path(name), None)?))
    }

    fn sync_new(&self, names: &[String]) -> Result<()> {
        for name in names {
            // Taken out of the map first: the lock is not held while joining.
            let Some(sync) = self.pending.lock().remove(name) else {
                continue;
            };
            let path = self.path(name);
            match sync.join() {
                Ok(synced) => synced.map_err(|e| Error::io(format!("fsync {}", path.display()), e))?,
                Err(_) => {
                    let e = std::io::Error::other("the fsync thread panicked");
                    return Err(Error::io(format!("fsync {}", path.display()), e));
                }
            }
        }
        Ok(())
    }

    fn set_after(&self, name: &str, bytes: &[u8], new: &[String]) -> Result<()> {
        check_name(name)?;
        let tmp = self.path(&format!("{name}{TMP_SUFFIX}"));
        let mut w = self.writer(name, tmp, Some(self.path(name)))?;
        w.write(bytes)?;
        w.commit_after(|| self.sync_new(new))
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.path(name);
        // No directory fsync: the store only deletes objects no manifest names (orphans, merged-away
        // batches), and one that a crash resurrects is an orphan again, removed at the next open.
        // A new object's fsync still in flight is left to finish on its own: nothing will publish it.
        drop(self.pending.lock().remove(name));
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
    /// The object's name (`pending`'s key).
    name: String,
    /// The file written.
    path: PathBuf,
    /// The name it is renamed to at commit (`create`); `None` when written under its name (`create_new`).
    dest: Option<PathBuf>,
    dir: PathBuf,
    pending: PendingSyncs,
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

    fn commit(self: Box<Self>) -> Result<()> {
        self.commit_after(|| Ok(()))
    }
}

impl DirWriter {
    /// Commits: for `create`, fsync, then `before_rename` (on error the temporary is removed and nothing
    /// is renamed), rename, fsync the directory; for `create_new`, the fsync starts on a helper thread
    /// (registered in `pending` for [`Blob::sync_new`]) and `before_rename` is not called.
    fn commit_after(mut self, before_rename: impl FnOnce() -> Result<()>) -> Result<()> {
        let writer = self.file.take().ok_or_else(|| Error::bad_input("commit twice"))?;
        let ctx = |what: &str, p: &Path| format!("{what} {}", p.display());
        let Appender(file) = writer
            .into_inner()
            .map_err(|e| Error::io(ctx("flush", &self.path), e.into_error()))?;
        let Some(dest) = &self.dest else {
            // `create_new`: every byte is in the file; the fsync runs beside the caller's next steps (the
            // checks of the new batch, the manifest's write and fsync), and the name becomes durable with
            // the pointer commit's directory fsync.
            let sync = std::thread::Builder::new()
                .name("ddpersist-blob-sync".into())
                .spawn(move || file.sync_all());
            let sync = match sync {
                Ok(handle) => handle,
                Err(e) => return Err(Error::io(ctx("start the fsync of", &self.path), e)),
            };
            self.pending.lock().insert(self.name.clone(), sync);
            return Ok(());
        };
        file.sync_all()
            .map_err(|e| Error::io(ctx("fsync", &self.path), e))?;
        drop(file);
        if let Err(e) = before_rename() {
            let _ = self.fs.remove(&self.path);
            return Err(e);
        }
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

    /// A file system whose file fsyncs fail for paths ending in `.batch`.
    struct BatchSyncFails(Arc<dyn Fs>);

    struct FailingFile(Arc<dyn crate::fs::FsFile>);

    impl crate::fs::FsFile for FailingFile {
        fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
            self.0.write_at(buf, offset)
        }
        fn append(&self, buf: &[u8]) -> std::io::Result<()> {
            self.0.append(buf)
        }
        fn set_len(&self, len: u64) -> std::io::Result<()> {
            self.0.set_len(len)
        }
        fn sync_data(&self) -> std::io::Result<()> {
            Err(std::io::Error::other("injected fsync failure"))
        }
        fn sync_all(&self) -> std::io::Result<()> {
            Err(std::io::Error::other("injected fsync failure"))
        }
        fn len(&self) -> std::io::Result<u64> {
            self.0.len()
        }
    }

    impl Fs for BatchSyncFails {
        fn open(&self, path: &Path, how: OpenHow) -> std::io::Result<Arc<dyn crate::fs::FsFile>> {
            let file = self.0.open(path, how)?;
            if path.extension().is_some_and(|e| e == "batch") {
                return Ok(Arc::new(FailingFile(file)));
            }
            Ok(file)
        }
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.0.read(path)
        }
        fn map(&self, path: &Path) -> std::io::Result<Option<BlobBytes>> {
            self.0.map(path)
        }
        fn len(&self, path: &Path) -> std::io::Result<u64> {
            self.0.len(path)
        }
        fn exists(&self, path: &Path) -> bool {
            self.0.exists(path)
        }
        fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
            self.0.rename(from, to)
        }
        fn remove(&self, path: &Path) -> std::io::Result<()> {
            self.0.remove(path)
        }
        fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
            self.0.list(dir)
        }
        fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
            self.0.create_dir_all(dir)
        }
        fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
            self.0.sync_dir(dir)
        }
    }

    /// A new object's fsync runs beside the pointer's write; a failed one fails the pointer commit before
    /// its rename: the old pointer stands and no temporary is left.
    #[test]
    fn a_pointer_is_not_published_over_a_new_object_whose_fsync_failed() {
        let sim = crate::fs::SimFs::new();
        let blob = DirBlob::on(Arc::new(BatchSyncFails(sim.shared())), "/store").unwrap();
        blob.set("MANIFEST", b"old").unwrap();
        let mut w = blob.create_new("1.batch").unwrap();
        w.write(b"data").unwrap();
        w.commit().unwrap();
        let new = ["1.batch".to_string()];
        let err = blob.set_after("MANIFEST", b"new", &new).unwrap_err();
        assert!(err.to_string().contains("1.batch"), "{err}");
        assert_eq!(&*blob.get("MANIFEST").unwrap().unwrap(), b"old");
        let mut names = blob.list().unwrap();
        names.sort();
        assert_eq!(names, vec!["1.batch".to_string(), "MANIFEST".to_string()]);
    }

    /// Once the pointer commit returns, the new object's bytes and name and the pointer are durable
    /// together: the power-loss state that keeps only what was synced holds all of them.
    #[test]
    fn a_pointer_commit_makes_the_new_objects_it_waited_for_durable() {
        let sim = crate::fs::SimFs::new();
        let blob = DirBlob::on(sim.shared(), "/store").unwrap();
        blob.set("MANIFEST", b"old").unwrap();
        let mut w = blob.create_new("1.batch").unwrap();
        w.write(&[7u8; 10_000]).unwrap();
        w.commit().unwrap();
        sim.record_crash_points(true);
        blob.set_after("MANIFEST", b"new", &["1.batch".to_string()])
            .unwrap();
        let last = sim.take_crash_points().pop().unwrap();
        let synced = last.state(crate::fs::CrashState::Synced);
        let after = DirBlob::on(synced.shared(), "/store").unwrap();
        assert_eq!(&*after.get("MANIFEST").unwrap().unwrap(), b"new");
        assert_eq!(&*after.get("1.batch").unwrap().unwrap(), &[7u8; 10_000][..]);
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
