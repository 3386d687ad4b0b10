//! The manifest as a snapshot and edit objects (`version::edit`, FORMAT.md §3.1): commits write only what
//! they changed, the snapshot is rewritten after `MAX_EDITS` edits, an open folds the edits into a new
//! snapshot, and what the disk holds is always the store's manifest. Crash states of every commit:
//! `tests/durability/crash_states.rs`; decoders: `fuzz/` (`manifest_edit`).

use ddpersist::version::edit::{parse_edit_name, MAX_EDITS};
use ddpersist::version::read_manifest;
use ddpersist::{Options, Store, StreamOptions};
use std::path::Path;
use std::time::Instant;

fn options() -> Options {
    Options {
        compaction_threads: 0,
        ..Options::default()
    }
}

/// The edit objects in `dir`.
fn edits(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| parse_edit_name(n).is_some())
        .collect();
    names.sort();
    names
}

/// What the directory holds (snapshot and edits) is the store's manifest.
fn assert_disk_agrees(dir: &Path, store: &Store) {
    let blob = ddpersist::blob::DirBlob::open(dir).unwrap();
    let read = read_manifest(&blob).unwrap().unwrap();
    assert_eq!(read.manifest, store.manifest());
    assert!(read.edits.len() <= MAX_EDITS, "{} edits", read.edits.len());
}

#[test]
fn commits_write_edits_the_snapshot_is_rewritten_and_an_open_folds_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    for s in 0..20 {
        store
            .create_stream(&format!("s{s}"), StreamOptions { durable: s % 2 == 0 })
            .unwrap();
    }
    assert_eq!(edits(dir.path()).len(), 20, "one edit object per commit");
    let mut most = 0;
    for t in 0..(3 * MAX_EDITS as u64) {
        let id = format!("s{}", t % 20);
        store.write(&id, &[(t, t * 2, t, 1i64)]).unwrap();
        store.seal(&id, t + 1).unwrap();
        most = most.max(edits(dir.path()).len());
        if t % 37 == 0 {
            assert_disk_agrees(dir.path(), &store);
        }
    }
    assert!(
        most <= MAX_EDITS,
        "at most {MAX_EDITS} edits after a snapshot, saw {most}"
    );
    store.drop_stream("s3").unwrap();
    assert_disk_agrees(dir.path(), &store);
    let before = store.manifest();
    let contents = |store: &Store| -> Vec<_> {
        (0..20)
            .filter(|s| *s != 3)
            .map(|s| {
                store
                    .snapshot(&format!("s{s}"))
                    .unwrap()
                    .decode::<u64, u64>()
                    .unwrap()
            })
            .collect()
    };
    let expected = contents(&store);
    drop(store);
    assert!(!edits(dir.path()).is_empty());
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.manifest(), before);
    assert_eq!(contents(&store), expected);
    assert!(
        edits(dir.path()).is_empty(),
        "the open folded the edits into the snapshot"
    );
    assert_disk_agrees(dir.path(), &store);
}

/// Figures for BENCHMARKS.md ("Manifest commits"): stream creation and seal cost with many streams, on
/// disk (with the commits' fsyncs) and in memory (`MemBlob` and `MemLog`: what a commit costs beside its
/// I/O, which is what grows with the number of streams), and the bytes one seal's commit writes. Run:
/// `cargo test --release --test format -- --ignored --nocapture manifest_edits::`.
#[test]
#[ignore]
fn manifest_commit_cost() {
    for streams in [200usize, 2_000, 20_000] {
        let in_memory = || {
            let blob = std::sync::Arc::new(ddpersist::blob::MemBlob::new());
            let log = std::sync::Arc::new(ddpersist::wal::MemLog::new());
            Store::open_on(blob, log, options()).unwrap()
        };
        let (create, seal) = commit_cost(&in_memory(), streams);
        println!(
            "{streams} streams, in memory: create {:.1} µs/stream; seal {:.1} µs",
            create * 1e6,
            seal * 1e6
        );
        if streams > 2_000 {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let (create, seal) = commit_cost(&Store::open_with(dir.path(), options()).unwrap(), streams);
        let snapshot = std::fs::metadata(dir.path().join("MANIFEST")).unwrap().len();
        let edit_bytes: Vec<u64> = edits(dir.path())
            .iter()
            .map(|n| std::fs::metadata(dir.path().join(n)).unwrap().len())
            .collect();
        let edit = edit_bytes.iter().max().copied().unwrap_or(0);
        println!(
            "{streams} streams, on disk: create {:.2} ms/stream; seal {:.2} ms; snapshot {snapshot} B, \
             largest edit {edit} B",
            create * 1e3,
            seal * 1e3,
        );
    }
}

/// Creates `streams` durable streams in `store`, then writes and seals the newest 200 times: seconds per
/// create and per seal.
fn commit_cost(store: &Store, streams: usize) -> (f64, f64) {
    let start = Instant::now();
    for s in 0..streams {
        store
            .create_stream(&format!("stream-{s:05}"), StreamOptions { durable: true })
            .unwrap();
    }
    let create = start.elapsed().as_secs_f64() / streams as f64;
    let seals = 200u64;
    // The newest stream: an edit's search for it by id passes every other one.
    let last = format!("stream-{:05}", streams - 1);
    let start = Instant::now();
    for t in 0..seals {
        store.write(&last, &[(t, t, t, 1i64)]).unwrap();
        store.seal(&last, t + 1).unwrap();
    }
    (create, start.elapsed().as_secs_f64() / seals as f64)
}
