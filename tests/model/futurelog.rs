//! The FutureLog: unsealed updates past the memory budget spill to sorted runs on disk, which later
//! seals draw from; memory stays bounded while a stream's frontier stalls. On a store whose WAL keeps
//! nothing (`MemLog`), spilled runs do not outlive the rest of the memtable.

use crate::common;

use common::{blob_files, named_files, Model, Rng};
use ddpersist::blob::MemBlob;
use ddpersist::wal::MemLog;
use ddpersist::{Options, Store, StreamOptions};
use std::sync::Arc;

const BUDGET: usize = 64 << 10;

fn options() -> Options {
    Options {
        memtable_budget_bytes: BUDGET,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// Writes `n` updates at times in `[from, from + spread)`, 50 per call.
fn write_future(store: &Store, model: &mut Model, rng: &mut Rng, n: u64, from: u64, spread: u64) {
    for _ in 0..n / 50 {
        let ups: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = (0..50)
            .map(|_| {
                let k = format!("key{:04}", rng.below(2000)).into_bytes();
                (
                    k,
                    vec![b'v'; 20],
                    from + rng.below(spread),
                    1 - 2 * (rng.below(4) == 0) as i64,
                )
            })
            .collect();
        for (k, v, t, d) in &ups {
            model.write(k, v, *t, *d);
        }
        store
            .write_bytes("s", ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        assert!(store.memtable_bytes("s").unwrap() <= BUDGET, "memory over budget");
    }
}

/// The blob holds the manifest and exactly the files it names.
fn assert_no_leftovers(store: &Store) {
    assert_eq!(blob_files(&**store.blob()), named_files(store));
}

#[test]
fn a_stalled_frontier_spills_and_later_seals_draw_from_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let (mut model, mut rng) = (Model::default(), Rng(21));
    // The frontier stalls at 0 while 20000 updates (about 1.2 MB) arrive for times 0..100.
    write_future(&store, &mut model, &mut rng, 20_000, 0, 100);
    let spills = store.manifest().stream("s").unwrap().spills.len();
    assert!(spills >= 4, "only {spills} spilled runs");
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    assert_eq!(
        store.get_bytes("s", b"key0007", 50).unwrap(),
        model_get(&model, b"key0007", 50)
    );
    // Restart: spilled runs come back, and WAL records already in them are not replayed twice.
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // The frontier moves in steps that cut through runs; more future updates keep arriving.
    for upper in [10u64, 35, 36, 70] {
        store.seal("s", upper).unwrap();
        write_future(&store, &mut model, &mut rng, 1_000, upper, 60);
        assert_eq!(
            store.snapshot("s").unwrap().to_vec().unwrap(),
            model.expected(),
            "after seal {upper}"
        );
        let m = store.manifest();
        let s = m.stream("s").unwrap();
        assert!(
            s.spills.iter().all(|r| r.lower >= upper),
            "a spilled run below the upper"
        );
        assert_no_leftovers(&store);
    }
    store.seal("s", 1000).unwrap();
    assert!(store.manifest().stream("s").unwrap().spills.is_empty());
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    assert_no_leftovers(&store);
}

fn model_get(model: &Model, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut acc = std::collections::BTreeMap::new();
    for (k, v, t, d) in model.expected() {
        if k == key && t <= as_of {
            *acc.entry(v).or_insert(0) += d;
        }
    }
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

#[test]
fn a_non_durable_stream_forgets_its_spills_at_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    let (mut model, mut rng) = (Model::default(), Rng(22));
    write_future(&store, &mut model, &mut rng, 5_000, 0, 20);
    store.seal("s", 10).unwrap();
    write_future(&store, &mut model, &mut rng, 5_000, 10, 20);
    assert!(!store.manifest().stream("s").unwrap().spills.is_empty());
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    drop(store);
    // Unsealed updates, spilled or not, are gone; sealed ones stay.
    let store = Store::open_with(dir.path(), options()).unwrap();
    model.forget_from(10);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    assert!(store.manifest().stream("s").unwrap().spills.is_empty());
    assert_no_leftovers(&store);
}

/// Millions of updates behind a stalled frontier: `cargo test --release --test model -- --ignored futurelog::`.
#[test]
#[ignore = "long: run with --ignored (release build recommended)"]
fn millions_of_updates_behind_a_stalled_frontier_stay_within_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 8 << 20,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut rng = Rng(23);
    let val = [b'x'; 100];
    for _ in 0..3_000 {
        let keys: Vec<[u8; 16]> = (0..1000).map(|_| (rng.next() as u128).to_be_bytes()).collect();
        let t = 1 + rng.below(1_000_000);
        store
            .write_bytes("s", keys.iter().map(|k| (&k[..], &val[..], t, 1)))
            .unwrap();
        assert!(store.memtable_bytes("s").unwrap() <= 8 << 20);
    }
    let spilled: u64 = store
        .manifest()
        .stream("s")
        .unwrap()
        .spills
        .iter()
        .map(|r| r.update_count)
        .sum();
    assert!(spilled > 2_000_000, "{spilled}");
    // Anonymous memory (heap) as the kernel counts it, for the record: the data is about 400 MB.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status
        .lines()
        .filter(|l| l.starts_with("RssAnon") || l.starts_with("VmHWM"))
    {
        println!("{line}");
    }
}

#[test]
fn a_non_durable_stream_writes_no_wal_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    store.create_stream("d", StreamOptions::default()).unwrap();
    let wal_bytes = || -> u64 {
        common::wal_segments(dir.path())
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    };
    let before = wal_bytes();
    let (mut model, mut rng) = (Model::default(), Rng(24));
    write_future(&store, &mut model, &mut rng, 2_000, 0, 20);
    assert_eq!(wal_bytes(), before, "the non-durable writes reached the WAL");
    // They are in the memtable all the same, and a durable stream's write does reach the WAL.
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    store.write_bytes("d", [(&b"k"[..], &b"v"[..], 1, 1)]).unwrap();
    assert!(wal_bytes() > before);
}

/// On a store whose WAL keeps nothing (`MemLog`), a reopen loses every unsealed update of every
/// stream, durable or not, except the ones a durable stream's memtable happened to spill to runs (the
/// manifest keeps those; `drop_volatile_spills` drops spills only for streams created with
/// `durable: false`). The stream then holds an arbitrary subset of its unsealed updates: a dataflow that
/// recomputes its unsealed state after the restart writes the spilled ones twice — the very hazard
/// `drop_volatile_spills` guards against for non-durable streams. With a log that is not durable, spills
/// should be dropped for every stream (or every unsealed update kept, which a `MemLog` cannot do).
#[test]
fn spilled_runs_on_a_non_durable_buffer_do_not_outlive_the_rest_of_the_memtable() {
    let blob = MemBlob::new();
    let options = Options {
        memtable_budget_bytes: 40,
        compaction_threads: 0,
        ..Options::default()
    };
    let open = || Store::open_on(Arc::new(blob.clone()), Arc::new(MemLog::new()), options.clone()).unwrap();
    let store = open();
    store.create_stream("s", StreamOptions { durable: true }).unwrap();
    // 2 × (24 + 2) bytes: over the budget, spilled.
    store.write("s", &[(1u8, 1u8, 5, 1), (2u8, 2u8, 6, 1)]).unwrap();
    // 26 bytes: stays in the memtable.
    store.write("s", &[(3u8, 3u8, 7, 1)]).unwrap();
    assert!(
        !store.snapshot("s").unwrap().spills().is_empty(),
        "the first write did not spill"
    );
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap().len(), 3);
    drop(store);
    let store = open();
    let after = store.snapshot("s").unwrap().decode::<u8, u8>().unwrap();
    // All or nothing: a `MemLog` cannot keep the memtable's update, so nothing unsealed.
    assert_eq!(after, vec![], "unsealed updates after reopen on a MemLog");
}
