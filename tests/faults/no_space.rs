//! A store opened on a disk with no space left (`ENOSPC`), without root or a small file system: a blob
//! wrapper ([`FullBlob`]) over the directory blob refuses every object it would create while "full", with
//! the error a full disk gives (`ErrorKind::StorageFull`); the WAL is the real one. The open folds the
//! manifest's edits into a new snapshot when it can, and on a full disk opens on the snapshot and its edits
//! as they are (`RecoveryReport::fold_skipped`), serving everything; its next edits follow them, and a
//! later open with space folds them all. (`tests/environment` fills a real tmpfs.)

use ddpersist::blob::{Blob, BlobBytes, BlobWriter, DirBlob};
use ddpersist::wal::{FileLog, WalRecovery};
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// What [`FullBlob`] does with a create: `OK`, or fail it with `FULL` (a full disk's error) or `DENIED`,
/// or fail only a manifest snapshot's (`MANIFEST`) with a full disk's error (`NO_SNAPSHOT`).
const OK: u8 = 0;
const FULL: u8 = 1;
const DENIED: u8 = 2;
const NO_SNAPSHOT: u8 = 3;

/// A directory blob that fails `create` and `create_new` (and so `set`) as `mode` says; reads, listings
/// and deletes go through.
#[derive(Clone)]
struct FullBlob {
    inner: DirBlob,
    mode: Arc<AtomicU8>,
}

impl FullBlob {
    fn refuse(&self, name: &str) -> ddpersist::error::Result<()> {
        let kind = match self.mode.load(Ordering::SeqCst) {
            FULL => ErrorKind::StorageFull,
            DENIED => ErrorKind::PermissionDenied,
            NO_SNAPSHOT if name == "MANIFEST" => ErrorKind::StorageFull,
            _ => return Ok(()),
        };
        Err(Error::Io {
            context: format!("create {name} (injected)"),
            source: std::io::Error::from(kind),
        })
    }
}

impl Blob for FullBlob {
    fn get(&self, name: &str) -> ddpersist::error::Result<Option<BlobBytes>> {
        self.inner.get(name)
    }
    fn create(&self, name: &str) -> ddpersist::error::Result<Box<dyn BlobWriter>> {
        self.refuse(name)?;
        self.inner.create(name)
    }
    fn create_new(&self, name: &str) -> ddpersist::error::Result<Box<dyn BlobWriter>> {
        self.refuse(name)?;
        self.inner.create_new(name)
    }
    fn delete(&self, name: &str) -> ddpersist::error::Result<()> {
        self.inner.delete(name)
    }
    fn sync_deletes(&self) -> ddpersist::error::Result<()> {
        self.inner.sync_deletes()
    }
    fn list(&self) -> ddpersist::error::Result<Vec<String>> {
        self.inner.list()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

fn options() -> Options {
    Options {
        compaction_threads: 0,
        ..Default::default()
    }
}

/// Opens the store in `dir` over a [`FullBlob`] sharing `mode`.
fn open(dir: &Path, mode: &Arc<AtomicU8>) -> ddpersist::error::Result<Store> {
    let blob = FullBlob {
        inner: DirBlob::open(dir)?,
        mode: mode.clone(),
    };
    let log = FileLog::open(dir.join("wal"), 1 << 20, WalRecovery::Strict)?;
    Store::open_on(Arc::new(blob), Arc::new(log), options())
}

/// The manifest edit objects in `dir`.
fn edit_objects(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("MANIFEST-EDIT"))
        .collect();
    names.sort();
    names
}

/// Every `(key, diff)` stream `id` holds as of every time (sealed or not).
fn held(store: &Store, id: &str) -> BTreeMap<u64, i64> {
    let mut got = BTreeMap::new();
    for (k, v, _t, d) in store.snapshot(id).unwrap().decode::<u64, u64>().unwrap() {
        assert_eq!(v, k * 7, "key {k}");
        *got.entry(k).or_insert(0) += d;
    }
    got.retain(|_, d| *d != 0);
    got
}

/// Writes keys `[from, to)` at time `t` (durable) to stream `id`.
fn write(store: &Store, id: &str, (from, to): (u64, u64), t: u64) {
    let ups: Vec<(u64, u64, u64, i64)> = (from..to).map(|k| (k, k * 7, t, 1)).collect();
    store.write(id, &ups).unwrap();
}

/// A store whose manifest has edits after its snapshot opens on a full disk without folding them, serves
/// every sealed and unsealed update with the right uppers, refuses a seal with the full disk's error
/// (changing nothing), and once space is back seals on (its edit following the kept ones); the next open
/// folds every edit into the snapshot. Before the fix the open failed with the full disk's error.
#[test]
fn a_store_with_edits_to_fold_opens_on_a_full_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let full = Arc::new(AtomicU8::new(OK));
    let mut want: BTreeMap<&str, BTreeMap<u64, i64>> = BTreeMap::new();
    {
        let store = open(&dir, &full).unwrap();
        for id in ["a", "b"] {
            store.create_stream(id, StreamOptions::default()).unwrap();
            for t in 0..4u64 {
                write(&store, id, (t * 100, t * 100 + 100), t);
                store.seal(id, t + 1).unwrap();
            }
            // Unsealed, in the WAL only.
            write(&store, id, (1_000, 1_050), 4);
            want.insert(id, (0..400).chain(1_000..1_050).map(|k| (k, 1)).collect());
        }
    }
    let edits_before = edit_objects(&dir);
    assert!(
        edits_before.len() >= 8,
        "the manifest has edits to fold: {edits_before:?}"
    );
    full.store(FULL, Ordering::SeqCst);
    for round in 0..2 {
        let store = open(&dir, &full).unwrap_or_else(|e| panic!("open {round} on the full disk: {e}"));
        let skipped = store.recovery_report().fold_skipped.clone();
        assert!(
            skipped.as_deref().is_some_and(|s| s.contains("MANIFEST")),
            "{skipped:?}"
        );
        assert_eq!(
            edit_objects(&dir),
            edits_before,
            "the edits are kept as they were"
        );
        for (id, keys) in &want {
            assert_eq!(store.upper(id).unwrap(), 4, "{id}");
            assert_eq!(&held(&store, id), keys, "{id}");
        }
        // A seal needs a batch file: it fails with the full disk's error and changes nothing.
        let e = store.seal("a", 5).unwrap_err();
        assert!(e.is_no_space(), "{e}");
        assert_eq!(store.upper("a").unwrap(), 4);
        assert_eq!(store.background_error(), None);
    }
    // Space again (the same open goes on).
    let store = open(&dir, &full).unwrap();
    assert!(store.recovery_report().fold_skipped.is_some());
    full.store(OK, Ordering::SeqCst);
    store.seal("a", 5).unwrap();
    write(&store, "b", (2_000, 2_010), 5);
    store.seal("b", 6).unwrap();
    want.get_mut("b").unwrap().extend((2_000..2_010).map(|k| (k, 1)));
    let edits_after = edit_objects(&dir);
    assert_eq!(edits_after.len(), edits_before.len() + 2, "{edits_after:?}");
    // Within 64 edits the run writes a snapshot, which covers the kept edits: they go.
    for t in 7..71u64 {
        store.seal("b", t).unwrap();
    }
    let left = edit_objects(&dir);
    assert!(
        edits_before.iter().all(|e| !left.contains(e)),
        "kept edits outlived the run's snapshot: {left:?}"
    );
    drop(store);
    let store = open(&dir, &full).unwrap();
    assert_eq!(store.recovery_report().fold_skipped, None);
    assert!(edit_objects(&dir).is_empty(), "folded: {:?}", edit_objects(&dir));
    assert_eq!(store.upper("a").unwrap(), 5);
    assert_eq!(store.upper("b").unwrap(), 70);
    for (id, keys) in &want {
        assert_eq!(&held(&store, id), keys, "{id}");
    }
}

/// The fold's other failures still fail the open: an I/O error that is not for want of space.
#[test]
fn a_fold_that_fails_otherwise_fails_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let full = Arc::new(AtomicU8::new(OK));
    {
        let store = open(&dir, &full).unwrap();
        store.create_stream("a", StreamOptions::default()).unwrap();
        write(&store, "a", (0, 10), 0);
        store.seal("a", 1).unwrap();
    }
    let edits = edit_objects(&dir);
    assert!(!edits.is_empty());
    full.store(DENIED, Ordering::SeqCst);
    let e = open(&dir, &full).err().expect("the open fails");
    assert!(e.to_string().contains("MANIFEST") && !e.is_no_space(), "{e}");
    assert_eq!(edit_objects(&dir), edits, "nothing changed");
    full.store(OK, Ordering::SeqCst);
    let store = open(&dir, &full).unwrap();
    assert_eq!(held(&store, "a"), (0..10).map(|k| (k, 1)).collect());
}

/// A commit due to be a new snapshot (after 64 edits) on a disk where the snapshot does not fit commits
/// as an edit object instead: no poisoned store, every seal durable, and the next open with room folds.
#[test]
fn a_snapshot_that_does_not_fit_commits_as_an_edit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    std::fs::create_dir_all(&dir).unwrap();
    let mode = Arc::new(AtomicU8::new(OK));
    {
        let store = open(&dir, &mode).unwrap();
        store.create_stream("a", StreamOptions::default()).unwrap();
        mode.store(NO_SNAPSHOT, Ordering::SeqCst);
        for t in 0..150u64 {
            write(&store, "a", (t * 10, t * 10 + 10), t);
            store.seal("a", t + 1).unwrap();
        }
        assert!(edit_objects(&dir).len() >= 150, "every seal an edit");
        assert!(store.background_error().is_none());
    }
    // Still no room for a snapshot: the open keeps them all, and serves everything.
    let store = open(&dir, &mode).unwrap();
    assert!(store.recovery_report().fold_skipped.is_some());
    assert_eq!(store.upper("a").unwrap(), 150);
    assert_eq!(held(&store, "a"), (0..1_500).map(|k| (k, 1)).collect());
    drop(store);
    mode.store(OK, Ordering::SeqCst);
    let store = open(&dir, &mode).unwrap();
    assert_eq!(store.recovery_report().fold_skipped, None);
    assert!(edit_objects(&dir).is_empty());
    assert_eq!(held(&store, "a"), (0..1_500).map(|k| (k, 1)).collect());
}
