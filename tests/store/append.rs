//! `Store::append`: a sealed interval written at once, without the WAL: what it keeps, what it refuses,
//! and that a refused append changes nothing.

use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;

type Contents = BTreeMap<(Vec<u8>, Vec<u8>, u64), i64>;

fn contents(store: &Store, id: &str) -> Contents {
    let mut out = BTreeMap::new();
    for (k, v, t, d) in store.snapshot(id).unwrap().to_vec().unwrap() {
        *out.entry((k, v, t)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// `n` sorted updates `(key i, val "v", time lower + i % span, 1)`, encoded as the typed API would.
fn sorted(n: u64, lower: u64, span: u64) -> Vec<(u64, String, u64, i64)> {
    (0..n)
        .map(|i| (i, "v".to_string(), lower + i % span, 1))
        .collect()
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("batch"))
        .collect();
    names.sort();
    names
}

#[test]
fn an_append_is_one_batch_durable_without_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let first = sorted(1000, 0, 10);
    let info = store.append("s", &first, 0, 10).unwrap();
    assert_eq!(info.update_count, 1000);
    assert_eq!((info.description.lower, info.description.upper), (0, 10));
    let second = sorted(500, 10, 5);
    store.append("s", &second, 10, 20).unwrap();
    assert_eq!(store.upper("s").unwrap(), 20);
    // An empty interval moves the upper only.
    let info = store.append::<u64, String>("s", &[], 20, 30).unwrap();
    assert_eq!((info.update_count, info.file), (0, None));
    let expected = contents(&store, "s");
    assert_eq!(expected.len(), 1500);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery_report().wal_records,
        0,
        "nothing went through the WAL"
    );
    assert_eq!(store.upper("s").unwrap(), 30);
    assert_eq!(contents(&store, "s"), expected);
    assert_eq!(
        store.get::<u64, String>("s", &7, 29).unwrap(),
        vec![("v".to_string(), 2)]
    );
}

#[test]
fn an_append_seals_what_writes_put_below_its_upper_too() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 2 << 10, // spills: the seal draws from spilled runs as well
        compaction_threads: 0,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    // Written: some inside the appended interval (one cancels an appended update), some beyond it.
    let written: Vec<(u64, String, u64, i64)> = (0..200)
        .map(|i| (i % 50, "v".to_string(), i % 40, if i == 0 { -1 } else { 1 }))
        .collect();
    store.write("s", &written).unwrap();
    assert!(
        !store.version("s").unwrap().spills().is_empty(),
        "the write spilled"
    );
    let appended = sorted(30, 0, 20);
    store.append("s", &appended, 0, 20).unwrap();
    let sealed: u64 = store
        .sealed("s")
        .unwrap()
        .batches
        .iter()
        .map(|b| b.update_count())
        .sum();
    let expected_sealed = {
        let mut m: BTreeMap<(u64, u64), i64> = BTreeMap::new();
        for (k, _, t, d) in written.iter().chain(&appended) {
            if *t < 20 {
                *m.entry((*k, *t)).or_insert(0) += d;
            }
        }
        m.values().filter(|d| **d != 0).count() as u64
    };
    assert_eq!(sealed, expected_sealed);
    // Everything, sealed and not, equals the typed model after a reopen too.
    let typed = |store: &Store| -> BTreeMap<(u64, u64), i64> {
        let mut m = BTreeMap::new();
        for (k, _v, t, d) in store.snapshot("s").unwrap().decode::<u64, String>().unwrap() {
            *m.entry((k, t)).or_insert(0) += d;
        }
        m.retain(|_, d| *d != 0);
        m
    };
    let mut want: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    for (k, _, t, d) in written.iter().chain(&appended) {
        *want.entry((*k, *t)).or_insert(0) += d;
    }
    want.retain(|_, d| *d != 0);
    assert_eq!(typed(&store), want);
    drop(store);
    let store = Store::open_with(dir.path(), Options::default()).unwrap();
    assert_eq!(typed(&store), want);
}

#[test]
fn a_refused_append_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.append("s", &sorted(10, 0, 5), 0, 5).unwrap();
    let (before, before_files) = (contents(&store, "s"), files(dir.path()));
    let bad_input = |r: ddpersist::Result<ddpersist::SealInfo>| match r {
        Err(Error::BadInput { .. }) => {}
        other => panic!("expected BadInput, got {other:?}"),
    };
    let v = |s: &str| s.to_string();
    // The lower is not the stream's upper (compare-and-append), or the interval is empty.
    for lower in [0, 6] {
        match store.append("s", &sorted(3, lower, 1), lower, 9) {
            Err(Error::UpperMismatch {
                stream,
                expected,
                current,
            }) => assert_eq!((stream.as_str(), expected, current), ("s", lower, 5)),
            other => panic!("expected UpperMismatch, got {other:?}"),
        }
    }
    bad_input(store.append::<u64, String>("s", &[], 5, 5));
    // Out of order (failing late, after a block's worth was written), a repeat, a zero diff, times outside.
    let mut unsorted = sorted(5000, 5, 5);
    unsorted.swap(4000, 4001);
    bad_input(store.append("s", &unsorted, 5, 10));
    bad_input(store.append("s", &[(1u64, v("a"), 6, 1), (1, v("a"), 6, 1)], 5, 10));
    bad_input(store.append("s", &[(1u64, v("a"), 6, 0)], 5, 10));
    bad_input(store.append("s", &[(1u64, v("a"), 4, 1)], 5, 10));
    bad_input(store.append("s", &[(1u64, v("a"), 10, 1)], 5, 10));
    assert!(matches!(
        store.append("nope", &[(1u64, v("a"), 6, 1)], 0, 10),
        Err(Error::UnknownStream { .. })
    ));
    assert_eq!(store.upper("s").unwrap(), 5);
    assert_eq!(contents(&store, "s"), before);
    assert_eq!(files(dir.path()), before_files, "no file left behind");
    // The stream still takes a good append and writes at its upper.
    store.append("s", &[(1u64, v("a"), 6, 1)], 5, 10).unwrap();
    store.write("s", &[(2u64, v("b"), 10, 1)]).unwrap();
    assert_eq!(contents(&store, "s").len(), before.len() + 2);
}

/// The three ways an append's batch is built: streamed (exact size hint), collected first (an iterator
/// that does not know its length), and merged with updates `write` put in the memtable below the upper.
#[test]
fn appends_stream_collect_or_merge_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let owned: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = (0u32..300)
        .map(|i| (i.to_be_bytes().to_vec(), b"v".to_vec(), u64::from(i % 3), 1))
        .collect();
    let refs = || owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
    // Exact: streamed. Unknown length (filter): collected first. Both hold every update.
    store.append_bytes("s", refs(), 0, 3).unwrap();
    let unknown = refs().map(|(k, v, t, d)| (k, v, t + 3, d)).filter(|_| true);
    assert_eq!(unknown.size_hint(), (0, Some(300)));
    store.append_bytes("s", unknown, 3, 6).unwrap();
    // With a write below the upper, not spilled: merged with it (and one of them cancelled).
    store
        .write_bytes(
            "s",
            [(&owned[0].0[..], &b"v"[..], 6, -1), (&b"w"[..], &b"x"[..], 7, 1)],
        )
        .unwrap();
    store
        .append_bytes("s", refs().map(|(k, v, t, d)| (k, v, t + 6, d)), 6, 9)
        .unwrap();
    assert!(store.version("s").unwrap().spills().is_empty());
    let counts: Vec<u64> = store
        .sealed("s")
        .unwrap()
        .batches
        .iter()
        .map(|b| b.update_count())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 300 + 300 + 300, "{counts:?}");
    assert_eq!(contents(&store, "s").len(), 900);
    assert_eq!(store.get_bytes("s", b"w", 9).unwrap(), vec![(b"x".to_vec(), 1)]);
}

/// A refused or panicking append leaves the stream as it was: its upper, its memtable (writes below the
/// refused upper stay, and writes at the upper are taken again) and its files.
#[test]
fn a_refused_or_panicking_append_restores_the_memtable_and_the_upper() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, "w".to_string(), 2, 1)]).unwrap();
    let before = (contents(&store, "s"), files(dir.path()));
    // Refused midway (out of order) and panicking midway, each with a memtable update below its upper.
    let bad = [(5u64, "a".to_string(), 1, 1), (4, "a".to_string(), 1, 1)];
    assert!(matches!(
        store.append("s", &bad, 0, 5),
        Err(Error::BadInput { .. })
    ));
    let keys: Vec<[u8; 8]> = (0u64..10_000).map(|i| i.to_be_bytes()).collect();
    let panicking = keys.iter().enumerate().map(|(i, k)| {
        assert!(i < 9_000, "the caller's iterator fails");
        (&k[..], &b"v"[..], 3u64, 1i64)
    });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.append_bytes("s", panicking, 0, 5)
    }));
    assert!(caught.is_err());
    assert_eq!(store.upper("s").unwrap(), 0);
    assert_eq!((contents(&store, "s"), files(dir.path())), before);
    // Writes below the refused upper are taken again, and the next append seals them with its own.
    store.write("s", &[(2u64, "w".to_string(), 3, 1)]).unwrap();
    store.append("s", &[(0u64, "a".to_string(), 4, 1)], 0, 5).unwrap();
    assert_eq!(store.sealed("s").unwrap().batches[0].update_count(), 3);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(contents(&store, "s").len(), 3);
}
