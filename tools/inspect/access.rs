//! Read-only access to a store directory: the manifest, the batch files it names, a batch file given by
//! path, and the WAL segment files.
//!
//! Nothing here takes the store's `LOCK` or writes anything: files are read through
//! [`DirBlob::get`] (a read-only mmap) or plain reads, and no directory is created (`DirBlob::open`
//! creates a missing directory, so the directory's existence is checked first).

use crate::error::{corrupt, io};
use ddpersist::batch::{batch_file_name, BatchFile};
use ddpersist::blob::{Blob, BlobBytes, DirBlob};
use ddpersist::store::WAL_DIR;
use ddpersist::version::{BatchMeta, Manifest, MANIFEST_NAME};
use ddpersist::{Error, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A store directory opened for reading, with its decoded manifest.
pub struct StoreDir {
    /// The directory's files.
    pub blob: DirBlob,
    /// The decoded (and checksum-verified) manifest.
    pub manifest: Manifest,
}

/// The names of the manifest's edit objects in `blob`, sorted.
fn edit_objects(blob: &DirBlob) -> Result<Vec<String>> {
    let mut names: Vec<String> = blob
        .list()?
        .into_iter()
        .filter(|n| ddpersist::version::edit::parse_edit_name(n).is_some())
        .collect();
    names.sort();
    Ok(names)
}

impl StoreDir {
    /// Reads and decodes `dir/MANIFEST` and the edits after it (`ddpersist::version::read_manifest`).
    pub fn open(dir: &Path) -> Result<Self> {
        let blob = existing_dir_blob(dir)?;
        let path = format!("{}/{MANIFEST_NAME}", blob.location());
        let missing = || not_found(&path, "no such file: not a ddpersist store");
        // A live store may commit an edit, or rewrite its snapshot and remove the edits it covers, while
        // they are read: a failure while the edit objects changed starts over (up to 20 times).
        let mut tries = 0;
        loop {
            let before = edit_objects(&blob)?;
            match ddpersist::version::read_manifest(&blob) {
                Ok(read) => {
                    return Ok(StoreDir {
                        manifest: read.ok_or_else(missing)?.manifest,
                        blob,
                    })
                }
                Err(e) => {
                    tries += 1;
                    if tries == 20 || edit_objects(&blob)? == before {
                        return Err(e);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(tries));
                }
            }
        }
    }

    /// The path of the batch file `meta` names, as errors name it.
    pub fn batch_path(&self, meta: &BatchMeta) -> String {
        format!("{}/{}", self.blob.location(), batch_file_name(meta.file_no))
    }

    /// Opens the batch file `meta` names (header, footer and index checked; blocks not yet), or `None`
    /// when the file is missing.
    pub fn open_batch_if_present(&self, meta: &BatchMeta) -> Result<Option<BatchFile>> {
        match self.blob.get(&batch_file_name(meta.file_no))? {
            Some(bytes) => BatchFile::open(self.batch_path(meta), bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The error for a batch file the manifest names that is not there.
    pub fn missing_batch(&self, meta: &BatchMeta) -> Error {
        corrupt(
            &self.batch_path(meta),
            0,
            "batch file named by the manifest is missing",
        )
    }

    /// The store's WAL directory.
    pub fn wal_dir(&self) -> PathBuf {
        self.blob.dir().join(WAL_DIR)
    }
}

/// A [`DirBlob`] over `dir`, which must already exist (so that nothing is created).
fn existing_dir_blob(dir: &Path) -> Result<DirBlob> {
    let meta = fs::metadata(dir).map_err(|e| io(format!("stat {}", dir.display()), e))?;
    if !meta.is_dir() {
        let e = std::io::Error::new(ErrorKind::NotADirectory, "not a directory");
        return Err(io(format!("open {}", dir.display()), e));
    }
    DirBlob::open(dir)
}

/// An [`Error::Io`] saying `path` is not there, with `why`.
fn not_found(path: &str, why: &str) -> Error {
    io(
        format!("read {path}"),
        std::io::Error::new(ErrorKind::NotFound, why),
    )
}

/// Opens the batch file at `path`: mapped through a [`DirBlob`] on its directory, or read whole when its
/// name is not one a blob accepts.
pub fn open_batch_path(path: &Path) -> Result<BatchFile> {
    let shown = path.display().to_string();
    let meta = fs::metadata(path).map_err(|e| io(format!("stat {shown}"), e))?;
    if !meta.is_file() {
        let e = std::io::Error::new(ErrorKind::InvalidInput, "not a regular file");
        return Err(io(format!("open {shown}"), e));
    }
    let bytes = match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(parent), Some(name)) => mapped_or_read(parent, name, path)?,
        _ => read_whole(path)?,
    };
    BatchFile::open(shown, bytes)
}

/// The bytes of `dir/name` through a read-only map, falling back to a plain read of `path`.
fn mapped_or_read(dir: &Path, name: &str, path: &Path) -> Result<BlobBytes> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    match existing_dir_blob(dir)?.get(name) {
        Ok(Some(bytes)) => Ok(bytes),
        // An invalid blob name (or the file vanished meanwhile): read it directly.
        Ok(None) | Err(Error::BadInput { .. }) => read_whole(path),
        Err(e) => Err(e),
    }
}

fn read_whole(path: &Path) -> Result<BlobBytes> {
    let bytes = fs::read(path).map_err(|e| io(format!("read {}", path.display()), e))?;
    Ok(BlobBytes::Heap(Arc::from(bytes)))
}

/// One WAL segment file.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    /// File name, `{first_lsn:020}.wal`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

/// The size of the file at `path` in bytes, or `None` if it is not there: on a live store a file listed a
/// moment ago may be gone (a released WAL segment, a committed or removed in-progress batch file).
///
/// Errors: [`Error::Io`] ("stat PATH") for any other failure.
pub fn size_if_present(path: &Path) -> Result<Option<u64>> {
    match fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.len())),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(format!("stat {}", path.display()), e)),
    }
}

/// The segment files in `wal_dir`, oldest first; none when the directory does not exist. On a live store
/// a seal's release deletes (or renames for reuse) the oldest segments at any time: a segment gone between
/// the listing and its `stat` was released, and is left out.
pub fn wal_segments(wal_dir: &Path) -> Result<Vec<SegmentFile>> {
    let mut out = Vec::new();
    for seg in segment_paths(wal_dir)? {
        let Some(size) = size_if_present(&seg)? else {
            continue;
        };
        let name = seg
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.push(SegmentFile { name, size });
    }
    Ok(out)
}

/// The paths of the segment files in `wal_dir`, oldest first; none when the directory does not exist.
fn segment_paths(wal_dir: &Path) -> Result<Vec<PathBuf>> {
    if !wal_dir.is_dir() {
        return Ok(Vec::new());
    }
    let segments = ddpersist::wal::scan::list_segments(wal_dir)?;
    Ok(segments.into_iter().map(|s| s.path).collect())
}

/// Runs `read` until it succeeds, or it fails while the store in `dir` did not move ([`LiveMark`]), or
/// [`LIVE_RETRY_FOR`] passed; a little later each time (at most 50 ms between tries). Returns `read`'s
/// first success or its last error.
pub fn while_moving<T>(dir: &Path, mut read: impl FnMut() -> Result<T>) -> Result<T> {
    let start = std::time::Instant::now();
    let mut tries = 0u64;
    let mut mark = LiveMark::read(dir)?;
    loop {
        let failure = match read() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        tries += 1;
        // The mark after the failure: the next try's mark when the store moved. A mark that cannot be
        // read now leaves the read's own error to report.
        match LiveMark::read(dir) {
            Ok(now) if now != mark && start.elapsed() <= LIVE_RETRY_FOR => mark = now,
            _ => return Err(failure),
        }
        std::thread::sleep(std::time::Duration::from_millis((5 * tries).min(50)));
    }
}

/// How long [`while_moving`] starts a read over on a store that keeps moving.
pub const LIVE_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// What a live store changes under a reader that takes no lock: the manifest's generation (a seal or
/// merge committed; a merge then deletes its inputs) and the WAL's segment files (a release deletes or
/// renames the oldest; a rollover adds one). A read that failed while this changed read a store in
/// motion, not a damaged one, and is started over; one that failed while it did not is a real failure.
#[derive(Debug, PartialEq, Eq)]
pub struct LiveMark {
    generation: u64,
    segments: Vec<PathBuf>,
}

impl LiveMark {
    /// The mark of the store in `dir` now. Errors: those of [`StoreDir::open`] and of listing the WAL
    /// directory.
    pub fn read(dir: &Path) -> Result<Self> {
        let generation = StoreDir::open(dir)?.manifest.generation;
        let segments = segment_paths(&dir.join(WAL_DIR))?;
        Ok(LiveMark { generation, segments })
    }
}

/// The file name of the batch file `meta` names.
pub fn batch_name(meta: &BatchMeta) -> String {
    batch_file_name(meta.file_no)
}
