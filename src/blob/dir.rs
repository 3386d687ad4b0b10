//! [`DirBlob`]: a [`Blob`] over the files of one directory, read through read-only memory maps.
//!
//! Write protocol of one object `NAME`: create `NAME.tmp`, write, `fsync` it, rename it to `NAME`, `fsync`
//! the directory. A crash before the rename leaves `NAME.tmp` (removed by the store on the next open); after
//! the directory fsync the object survives any crash.

use super::{check_name, Blob, BlobBytes, BlobWriter, TMP_SUFFIX};
use crate::error::{Error, Result};
use std::fs::{self, File, OpenOptions};
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

/// Starts writeback of `len` bytes at `offset` of `file` without waiting for it. A hint: errors are ignored
/// (an I/O error on these pages is reported again by the commit's fsync).
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: `sync_file_range` reads no memory of ours; the descriptor is open for as long as `file` is
    // borrowed, and any offset and length are valid arguments (the kernel clips them to the file).
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Objects as files in one directory.
#[derive(Clone, Debug)]
pub struct DirBlob {
    dir: PathBuf,
}

impl DirBlob {
    /// Uses `dir`, creating it (and its parents) if missing.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        create_dir_durable(&dir)?;
        Ok(DirBlob { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Creates `dir` and any missing ancestors, durably: each directory created is `fsync`'d into its parent
/// (the parent's entry for it survives a power loss), top down. Returns the directories whose entries it
/// made durable that way (the parents it synced), for tests; nothing when `dir` existed.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    while fs::symlink_metadata(at).is_err() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut synced = Vec::new();
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sync_dir(&parent)?;
        synced.push(parent);
    }
    Ok(synced)
}

/// `fsync`s a directory, making the renames and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}

impl Blob for DirBlob {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        check_name(name)?;
        let path = self.path(name);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("open {}", path.display()), e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if len == 0 {
            return Ok(Some(BlobBytes::Heap(Arc::from(&[][..]))));
        }
        // SAFETY: objects are immutable once committed: they are written under a temporary name, renamed
        // into place and never opened for writing again (a replacement is a new inode renamed over the
        // name, which leaves this mapping intact). The map is read-only. Modifying the store's files from
        // outside the library is outside its contract, as for every mmap-based store.
        let map = unsafe { memmap2::Mmap::map(&file) }
            .map_err(|e| Error::io(format!("mmap {}", path.display()), e))?;
        Ok(Some(BlobBytes::Mmap(Arc::new(map))))
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        check_name(name)?;
        let tmp = self.path(&format!("{name}{TMP_SUFFIX}"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        Ok(Box::new(DirWriter {
            file: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, file)),
            tmp,
            dest: self.path(name),
            dir: self.dir.clone(),
            len: 0,
            writeback_from: 0,
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(name)?;
        let path = self.path(name);
        // No directory fsync: the store only deletes objects no manifest names (orphans, merged-away
        // batches), and one that a crash resurrects is an orphan again, removed at the next open.
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", path.display()), e)),
        }
    }

    fn list(&self) -> Result<Vec<String>> {
        let ctx = || format!("list {}", self.dir.display());
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(ctx(), e))? {
            let entry = entry.map_err(|e| Error::io(ctx(), e))?;
            let is_file = entry.file_type().map_err(|e| Error::io(ctx(), e))?.is_file();
            if let (true, Some(name)) = (is_file, entry.file_name().to_str()) {
                if check_name(name).is_ok() {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

struct DirWriter {
    /// `None` once committed.
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    dest: PathBuf,
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
            .map_err(|e| Error::io(format!("write {}", self.tmp.display()), e))?;
        self.len += bytes.len() as u64;
        // The bytes still in the buffer are not in the page cache yet; only those before them are.
        let in_file = self.len - file.buffer().len() as u64;
        if in_file - self.writeback_from >= WRITEBACK_BYTES {
            start_writeback(file.get_ref(), self.writeback_from, in_file - self.writeback_from);
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
        let file = writer
            .into_inner()
            .map_err(|e| Error::io(ctx("flush", &self.tmp), e.into_error()))?;
        file.sync_all()
            .map_err(|e| Error::io(ctx("fsync", &self.tmp), e))?;
        drop(file);
        fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(ctx("rename", &self.tmp), e))?;
        sync_dir(&self.dir)
    }
}

impl Drop for DirWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Not committed: discard the temporary file. Failure is harmless (it is an orphan the next
            // open removes), so it is ignored here where no error can be returned.
            let _ = fs::remove_file(&self.tmp);
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
