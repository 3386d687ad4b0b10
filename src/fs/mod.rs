//! `Fs`: the seam under the store's file I/O, so that the same code runs on the real file system
//! ([`StdFs`]) and on a simulated one that can crash ([`SimFs`]).
//!
//! Only [`crate::blob::DirBlob`] (batch files and the manifest) and [`crate::wal::FileLog`] (WAL
//! segments) touch files, and only through the handful of operations here: open (create, truncate or
//! existing), positioned and appending writes, `set_len`, `fdatasync`/`fsync`, rename, remove, whole-file
//! reads and read-only maps, listing and `fsync` of a directory. Errors are plain [`std::io::Error`]s; the
//! callers add the file name and the operation, as before the seam.
//!
//! [`StdFs`] is `std::fs` one call for one call (batch files are still read through `mmap`), so the bytes
//! written and the system calls made are those of the code before the seam. [`SimFs`] keeps in memory what
//! each file and directory holds now apart from what was made durable, and produces the states a power
//! loss could leave (see [`sim`]), in the way of ALICE (Pillai et al., OSDI '14) and CrashMonkey (Mohan et
//! al., OSDI '18).
//!
//! The seam is a trait object (`Arc<dyn Fs>`, files as `Arc<dyn FsFile>`) rather than a generic
//! parameter: every call through it is followed by a system call (or, for `DirBlob`'s buffered writes,
//! made once per MiB), so the dynamic dispatch costs nothing measurable, and `DirBlob` and `FileLog`
//! keep their non-generic public types.

pub mod sim;

pub use sim::{CrashPoint, CrashState, SimFs};

use crate::blob::BlobBytes;
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Fs::open`] opens a file (always for writing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenHow {
    /// Create it; fail with `AlreadyExists` if it exists (`O_CREAT | O_EXCL`).
    CreateNew,
    /// Create it, or truncate it to zero bytes if it exists (`O_CREAT | O_TRUNC`).
    CreateTruncate,
    /// Open an existing file without changing it; `NotFound` if absent.
    Existing,
}

/// A file system: the operations `DirBlob` and `FileLog` need. Paths are absolute or relative to the
/// process's working directory, as for `std::fs`.
pub trait Fs: Send + Sync + 'static {
    /// Opens `path` for writing (positioned writes, and appends from offset 0 on).
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn FsFile>>;
    /// The whole contents of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The contents of an immutable file for reading in place (a read-only `mmap` for [`StdFs`]), or
    /// `None` if there is no such file.
    fn map(&self, path: &Path) -> io::Result<Option<BlobBytes>>;
    /// The length of a file in bytes.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Whether anything (file or directory) exists at `path`.
    fn exists(&self, path: &Path) -> bool;
    /// Renames a file within its directory, atomically replacing any file at `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Names of the regular files in `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and any missing ancestors.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// `fsync`s a directory: the creations, renames and removals of its entries become durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The bytes free to an unprivileged writer on the file system holding `dir` (`statvfs`: `f_bavail`
    /// blocks of `f_frsize` bytes), if known. The default asks the real file system, so a simulated one
    /// whose paths do not exist there answers `None`.
    fn free_bytes(&self, dir: &Path) -> Option<u64> {
        statvfs_free_bytes(dir)
    }
}

/// [`Fs::free_bytes`] of the real file system.
#[cfg(unix)]
fn statvfs_free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: all-zero bytes are a valid `statvfs` (a plain C struct of integers).
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stat` a valid, writable `statvfs`, both live for
    // the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn statvfs_free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// An open file of an [`Fs`]. Shared between threads (the WAL's writer and zero-filler).
pub trait FsFile: Send + Sync {
    /// Writes all of `buf` at `offset` (`pwrite`), extending the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at the file's cursor and advances it (`write`); the cursor starts at 0.
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data (and size) become durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: data and metadata become durable (not the file's directory entry).
    fn sync_all(&self) -> io::Result<()>;
    /// The file's length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Write-behind, for I/O scheduling (it promises no durability): waits until every page of `range`
    /// already under writeback is written, then starts writeback of the range's dirty pages (which may
    /// itself block while the device's queue is full). Default: nothing.
    ///
    /// Errors: [`io::ErrorKind::Unsupported`] where the file system or kernel cannot do it (the caller may
    /// go on without); any other error is a failed earlier write of this file, which the caller must treat
    /// as the file's own failure: on Linux the wait reports it to this call and not again to a later
    /// `fsync` of the same open file (`file_check_and_advance_wb_err`).
    fn write_behind(&self, _range: std::ops::Range<u64>) -> io::Result<()> {
        Ok(())
    }
}

/// An [`FsFile`] as a [`std::io::Write`] that appends (for a `BufWriter` in front of it).
pub(crate) struct Appender(pub(crate) Arc<dyn FsFile>);

impl Write for Appender {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.append(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The real file system, through `std::fs` (and `mmap` for [`Fs::map`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

impl StdFs {
    /// A shared handle, as `DirBlob` and `FileLog` take it.
    pub fn shared() -> Arc<dyn Fs> {
        Arc::new(StdFs)
    }
}

impl Fs for StdFs {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn FsFile>> {
        let mut o = OpenOptions::new();
        o.write(true);
        match how {
            OpenHow::CreateNew => o.create_new(true),
            OpenHow::CreateTruncate => o.create(true).truncate(true),
            OpenHow::Existing => &mut o,
        };
        Ok(Arc::new(StdFile(o.open(path)?)))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn map(&self, path: &Path) -> io::Result<Option<BlobBytes>> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() == 0 {
            return Ok(Some(BlobBytes::Heap(Arc::from(&[][..]))));
        }
        // SAFETY: the store maps only immutable files: batch files and manifests are written under a
        // temporary name, renamed into place and never opened for writing again (a replacement is a new
        // inode renamed over the name, which leaves this mapping intact). The map is read-only. Modifying
        // the store's files from outside the library is outside its contract (FORMAT.md §6), as for every
        // mmap-based store.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Some(BlobBytes::Mmap(Arc::new(map))))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Some(name) = entry.file_name().to_str() {
                    out.push(name.to_string());
                }
            }
        }
        Ok(out)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir).and_then(|d| d.sync_all())
    }
}

/// A file of [`StdFs`].
struct StdFile(File);

impl FsFile for StdFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&self.0).write_all(buf)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync_all()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    #[cfg(target_os = "linux")]
    fn write_behind(&self, range: std::ops::Range<u64>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = range.end.saturating_sub(range.start);
        let (Ok(offset), Ok(len)) = (i64::try_from(range.start), i64::try_from(len)) else {
            return Ok(()); // Past any file this can write: nothing to hand over.
        };
        if len == 0 {
            return Ok(()); // A zero length would mean "to the end of the file".
        }
        let how = libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE;
        // SAFETY: `sync_file_range` reads no memory of ours; the descriptor is open for as long as `self`
        // is borrowed, and any offset and positive length are valid arguments (the kernel clips them).
        if unsafe { libc::sync_file_range(self.0.as_raw_fd(), offset, len, how) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSYS | libc::EINVAL | libc::ESPIPE | libc::EOPNOTSUPP) => {
                Err(io::Error::new(io::ErrorKind::Unsupported, e))
            }
            _ => Err(e),
        }
    }
}

/// Creates `dir` and any missing ancestors, durably: each directory created is `fsync`'d into its parent
/// (the parent's entry for it survives a power loss), top down. Returns the directories whose entries it
/// made durable that way (the parents it synced), for tests; nothing when `dir` existed.
///
/// Errors: [`Error::Io`] naming the directory that could not be created or synced.
pub(crate) fn create_dir_durable(fs: &dyn Fs, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !fs.exists(at) {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => break,
        }
    }
    fs.create_dir_all(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    let mut synced = Vec::new();
    for created in missing.iter().rev() {
        let parent = match created.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        sync_dir(fs, &parent)?;
        synced.push(parent);
    }
    Ok(synced)
}

/// `fsync`s a directory, making the creations, renames and removals in it durable.
///
/// Errors: [`Error::Io`] naming the directory.
pub(crate) fn sync_dir(fs: &dyn Fs, dir: &Path) -> Result<()> {
    fs.sync_dir(dir)
        .map_err(|e| Error::io(format!("fsync directory {}", dir.display()), e))
}
