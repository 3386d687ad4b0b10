//! Unit tests of `DirBlob` (`blob/dir.rs`).

use super::*;
use crate::fs::FsFile;

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
fn write_behind_waits_for_the_previous_step_and_starts_the_new_pages() {
    let (step, page) = (WRITEBACK_BYTES, WRITEBACK_ALIGN);
    let mut w = WriteBehind::default();
    assert_eq!(w.next(0), None);
    assert_eq!(w.next(step - 1), None, "less than a step is left dirty");
    // The first step: nothing in flight to wait for; the partly written last page stays dirty.
    assert_eq!(w.next(step + 10), Some(0..step));
    assert_eq!(w.next(2 * step - 1), None, "not a step of whole pages yet");
    // Each later one waits for the step before it (still maybe in flight), never for older bytes,
    // and starts exactly the whole pages not handed over yet: the ranges tile the object.
    assert_eq!(w.next(3 * step + 10), Some(0..3 * step));
    assert_eq!(w.next(5 * step + page), Some(step..5 * step + page));
    assert_eq!(w.next(6 * step + page), Some(3 * step..6 * step + page));
    assert_eq!(
        w,
        WriteBehind {
            in_flight_from: 5 * step + page,
            handed_to: 6 * step + page
        }
    );
}

/// A file system whose files' write-behind fails with `kind` (Linux reports an earlier failed write
/// of the file to the call that waits for its writeback: `EIO` here).
struct FailingBehind(std::io::ErrorKind, FullOnce);

/// One call of [`FailingBehind`]'s, `rename` or the directory fsync, failed once with `ENOSPC` while armed;
/// and the free bytes its file system reports when `full` (the real ones otherwise).
#[derive(Default)]
struct FullOnce {
    fails: &'static str,
    armed: std::sync::atomic::AtomicBool,
    full: std::sync::atomic::AtomicBool,
}

impl FullOnce {
    fn fail(&self, call: &str) -> std::io::Result<()> {
        let fire = call == self.fails && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst);
        match fire {
            true => Err(std::io::Error::from(std::io::ErrorKind::StorageFull)),
            false => Ok(()),
        }
    }
}

struct FailingBehindFile(Arc<dyn FsFile>, std::io::ErrorKind);

impl FsFile for FailingBehindFile {
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
        self.0.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.0.sync_all()
    }
    fn len(&self) -> std::io::Result<u64> {
        self.0.len()
    }
    fn write_behind(&self, _range: std::ops::Range<u64>) -> std::io::Result<()> {
        Err(std::io::Error::new(self.1, "write-behind refused by the test"))
    }
}

impl Fs for FailingBehind {
    fn open(&self, path: &Path, how: OpenHow) -> std::io::Result<Arc<dyn FsFile>> {
        Ok(Arc::new(FailingBehindFile(StdFs.open(path, how)?, self.0)))
    }
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        StdFs.read(path)
    }
    fn map(&self, path: &Path) -> std::io::Result<Option<BlobBytes>> {
        StdFs.map(path)
    }
    fn len(&self, path: &Path) -> std::io::Result<u64> {
        StdFs.len(path)
    }
    fn exists(&self, path: &Path) -> bool {
        StdFs.exists(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.1.fail("rename")?;
        StdFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> std::io::Result<()> {
        StdFs.remove(path)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        self.1.fail("sync_dir")?;
        StdFs.sync_dir(dir)
    }
    fn free_bytes(&self, dir: &Path) -> Option<u64> {
        match self.1.full.load(std::sync::atomic::Ordering::SeqCst) {
            true => Some(4096),
            false => StdFs.free_bytes(dir),
        }
    }
}

/// Writes `steps` steps' worth of bytes (in pieces of a step and a half, so that pieces cross steps)
/// and commits; returns the first error.
fn write_steps(blob: &DirBlob, name: &str, steps: usize) -> Result<()> {
    let mut w = blob.create(name)?;
    let piece = vec![7u8; WRITEBACK_BYTES as usize * 3 / 2];
    for _ in 0..(steps * 2).div_ceil(3) {
        w.write(&piece)?;
    }
    w.commit()
}

#[test]
fn a_failed_write_reported_by_write_behind_fails_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(FailingBehind(std::io::ErrorKind::Other, FullOnce::default()));
    let blob = DirBlob::on(fs, dir.path()).unwrap();
    let mut w = blob.create("a.batch").unwrap();
    let piece = vec![7u8; 3 * WRITEBACK_BYTES as usize];
    let err = w.write(&piece).unwrap_err();
    assert!(format!("{err}").contains("write-behind"), "{err}");
    // Nothing more is taken, and the object can never be committed (its fsync might succeed).
    assert!(w.write(b"more").is_err());
    assert!(w.commit().is_err());
    assert!(blob.get("a.batch").unwrap().is_none());
    assert!(write_steps(&blob, "b.batch", 4).is_err());
    assert!(blob.get("b.batch").unwrap().is_none());
}

#[test]
fn a_file_system_without_write_behind_still_writes_whole_objects() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(FailingBehind(
        std::io::ErrorKind::Unsupported,
        FullOnce::default(),
    ));
    let blob = DirBlob::on(fs, dir.path()).unwrap();
    write_steps(&blob, "a.batch", 4).unwrap();
    let bytes = blob.get("a.batch").unwrap().unwrap();
    assert_eq!(bytes.len(), 3 * WRITEBACK_BYTES as usize * 3 / 2);
    assert!(bytes.iter().all(|b| *b == 7));
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

/// A `set` that finds the disk full before its rename (not applied) or in the directory fsync after it
/// (applied, not yet durable) removes the space reserve and succeeds on its second attempt, leaving the
/// new bytes under the name and no temporary; without a reserve it fails with the full disk's error.
/// The reserve is renewed by the first `set` that commits with twice its size free.
#[test]
fn a_set_on_a_full_disk_takes_the_reserve_until_space_is_back() {
    for fails in ["rename", "sync_dir"] {
        let dir = tempfile::tempdir().unwrap();
        // Write-behind refused (`Unsupported`: a file system without it), which the writer tolerates.
        let fs = Arc::new(FailingBehind(
            std::io::ErrorKind::Unsupported,
            FullOnce {
                fails,
                ..FullOnce::default()
            },
        ));
        let blob = DirBlob::on(fs.clone(), dir.path()).unwrap().with_reserve();
        blob.fill_reserve(4096);
        let reserve = dir.path().join(RESERVE_NAME);
        assert_eq!(std::fs::metadata(&reserve).unwrap().len(), 4096, "{fails}");
        assert!(blob.list().unwrap().is_empty(), "the reserve is no object");
        blob.set("MANIFEST", b"old").unwrap();
        let set = std::sync::atomic::Ordering::SeqCst;
        fs.1.full.store(true, set);
        fs.1.armed.store(true, set);
        blob.set("MANIFEST", b"new").unwrap();
        assert!(!reserve.exists(), "{fails}: the reserve was not taken");
        assert_eq!(&*blob.get("MANIFEST").unwrap().unwrap(), b"new", "{fails}");
        assert_eq!(blob.list().unwrap(), vec!["MANIFEST".to_string()], "{fails}");
        // Still full: a commit does not renew it, and the next full disk is the caller's error.
        blob.set("OTHER", b"x").unwrap();
        assert!(!reserve.exists(), "{fails}: renewed on a full disk");
        fs.1.armed.store(true, set);
        let e = blob.set("MANIFEST", b"newer").unwrap_err();
        assert!(e.is_no_space(), "{fails}: {e}");
        // Space is back: the next commit renews it, at its size, and it serves again.
        fs.1.full.store(false, set);
        blob.set("OTHER", b"y").unwrap();
        assert_eq!(
            std::fs::metadata(&reserve).unwrap().len(),
            4096,
            "{fails}: renewed"
        );
        fs.1.full.store(true, set);
        fs.1.armed.store(true, set);
        blob.set("MANIFEST", b"newest").unwrap();
        assert!(!reserve.exists(), "{fails}: the renewed reserve was not taken");
        assert_eq!(&*blob.get("MANIFEST").unwrap().unwrap(), b"newest", "{fails}");
    }
}

/// A commit that fails before its rename (here the rename itself, for want of space) removes its
/// partial temporary, which would otherwise hold a full disk's last bytes until the next open; an
/// optional `set` (the open's manifest fold) fails there without taking the space reserve.
#[test]
fn a_failed_commit_leaves_no_temporary_and_an_optional_set_no_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FailingBehind(
        std::io::ErrorKind::Unsupported,
        FullOnce {
            fails: "rename",
            ..FullOnce::default()
        },
    ));
    let blob = DirBlob::on(fs.clone(), dir.path()).unwrap().with_reserve();
    blob.fill_reserve(4096);
    let reserve = dir.path().join(RESERVE_NAME);
    let set = std::sync::atomic::Ordering::SeqCst;
    fs.1.armed.store(true, set);
    let e = blob.set_optional("MANIFEST", b"folded").unwrap_err();
    assert!(e.is_no_space(), "{e}");
    assert_eq!(
        std::fs::metadata(&reserve).unwrap().len(),
        4096,
        "the reserve was taken"
    );
    assert!(blob.list().unwrap().is_empty(), "left {:?}", blob.list().unwrap());
    assert!(blob.get("MANIFEST").unwrap().is_none());
    // Without a reserve to take, a `set` fails the same way, leaving nothing either.
    let bare = DirBlob::on(fs.clone(), dir.path().join("bare")).unwrap();
    fs.1.armed.store(true, set);
    assert!(bare.set("MANIFEST", b"x").unwrap_err().is_no_space());
    assert!(bare.list().unwrap().is_empty(), "left {:?}", bare.list().unwrap());
}
