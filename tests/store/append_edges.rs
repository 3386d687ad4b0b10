//! Store-level edges of `write`, `seal`, `seal_logged` and `append`: mismatched lowers and uppers, times
//! outside the interval, empty appends, appends over memtable writes, refusals that must change nothing,
//! concurrent writers on different streams; reopen after each.

use ddpersist::{Error, Options, Store, StreamOptions};
use std::path::Path;

type Up = (u32, u32, u64, i64);

fn options() -> Options {
    Options {
        compaction_threads: 0,
        ..Options::default()
    }
}

fn reopen(store: Store, dir: &Path) -> Store {
    drop(store);
    Store::open_with(dir, options()).unwrap()
}

fn content(store: &Store, id: &str) -> Vec<Up> {
    let mut v: Vec<Up> = store.snapshot(id).unwrap().decode::<u32, u32>().unwrap();
    v.sort();
    v
}

fn files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(dir) {
        out.push(e.strip_prefix(dir).unwrap().display().to_string());
    }
    out.retain(|f| !f.contains("wal") && !f.contains("LOCK") && !f.to_lowercase().contains("manifest"));
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn append_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store
        .append("s", &[(1u32, 1u32, 0, 1), (2, 2, 1, 1)], 0, 2)
        .unwrap();
    store.write("s", &[(3u32, 3u32, 2, 1)]).unwrap();
    let before = content(&store, "s");
    let files_before = files(dir.path());

    // lower is not the upper.
    let e = store.append("s", &[(4u32, 4u32, 3, 1)], 1, 4).unwrap_err();
    assert!(
        matches!(e, Error::UpperMismatch { .. }),
        "lower below upper: {e:?}"
    );
    let e = store.append("s", &[(4u32, 4u32, 3, 1)], 3, 4).unwrap_err();
    assert!(
        matches!(e, Error::UpperMismatch { .. }),
        "lower above upper: {e:?}"
    );
    // upper not above lower.
    let e = store.append::<u32, u32>("s", &[], 2, 2).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "empty interval: {e:?}");
    let e = store.append::<u32, u32>("s", &[], 2, 1).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "upper below lower: {e:?}");
    // times outside [lower, upper), at either end, after good updates.
    let e = store
        .append("s", &[(4u32, 4u32, 2, 1), (5, 5, 5, 1)], 2, 5)
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "time at upper: {e:?}");
    let e = store.append("s", &[(4u32, 4u32, 1, 1)], 2, 5).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "time below lower: {e:?}");
    // unsorted, repeated, zero diff.
    let e = store
        .append("s", &[(5u32, 5u32, 2, 1), (4, 4, 2, 1)], 2, 5)
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "unsorted: {e:?}");
    let e = store
        .append("s", &[(5u32, 5u32, 2, 1), (5, 5, 2, 1)], 2, 5)
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "repeated: {e:?}");
    let e = store.append("s", &[(5u32, 5u32, 2, 0)], 2, 5).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "zero diff: {e:?}");

    assert_eq!(store.upper("s").unwrap(), 2);
    assert_eq!(content(&store, "s"), before);
    assert_eq!(files(dir.path()), files_before, "a refused append left files");
    store = reopen(store, dir.path());
    assert_eq!(store.upper("s").unwrap(), 2);
    assert_eq!(content(&store, "s"), before);

    // A good append now seals the memtable write with it.
    store.append("s", &[(4u32, 4u32, 4, 1)], 2, 5).unwrap();
    assert_eq!(store.upper("s").unwrap(), 5);
    assert_eq!(store.unsealed_len("s").unwrap(), 0);
    let want = vec![(1, 1, 0, 1), (2, 2, 1, 1), (3, 3, 2, 1), (4, 4, 4, 1)];
    assert_eq!(content(&store, "s"), want);
    store = reopen(store, dir.path());
    assert_eq!(content(&store, "s"), want);
    assert_eq!(store.get::<u32, u32>("s", &3, 4).unwrap(), vec![(3, 1)]);
}

#[test]
fn empty_append_moves_upper_and_refuses_later_writes_below() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(dir.path(), options()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    let info = store.append::<u32, u32>("s", &[], 0, 7).unwrap();
    assert_eq!(info.update_count, 0);
    assert_eq!(store.upper("s").unwrap(), 7);
    let e = store.write("s", &[(1u32, 1u32, 6, 1)]).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "write below upper: {e:?}");
    store = reopen(store, dir.path());
    assert_eq!(store.upper("s").unwrap(), 7);
    store.write("s", &[(1u32, 1u32, 7, 1)]).unwrap();
    store.append::<u32, u32>("s", &[], 7, 8).unwrap();
    assert_eq!(content(&store, "s"), vec![(1, 1, 7, 1)]);
}

/// Appended updates that cancel memtable writes of the same (key, val, time): the batch holds neither.
#[test]
fn append_cancelling_memtable_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u32, 1u32, 0, 2), (2, 2, 1, 1)]).unwrap();
    store
        .append("s", &[(1u32, 1u32, 0, -2), (2, 2, 1, 4)], 0, 3)
        .unwrap();
    assert_eq!(content(&store, "s"), vec![(2, 2, 1, 5)]);
    assert_eq!(store.get::<u32, u32>("s", &1, 2).unwrap(), vec![]);
    assert_eq!(store.first_time::<u32>("s", &1).unwrap(), None);
    store = reopen(store, dir.path());
    assert_eq!(content(&store, "s"), vec![(2, 2, 1, 5)]);
    assert_eq!(store.first_time::<u32>("s", &2).unwrap(), Some(1));
}

/// An append after logged seals: its lower is the logged upper (not the committed one), and writes below
/// the logged upper are refused.
#[test]
fn append_after_logged_seals() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options {
        logged_flush_bytes: 1 << 20,
        logged_flush_delay: std::time::Duration::from_secs(30),
        ..Options::default()
    };
    let mut store = Store::open_with(dir.path(), opts.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u32, 1u32, 0, 1)]).unwrap();
    store.seal_logged("s", 2).unwrap();
    store.write("s", &[(2u32, 2u32, 2, 1)]).unwrap();
    store.seal_logged("s", 4).unwrap();
    let e = store.write("s", &[(3u32, 3u32, 3, 1)]).unwrap_err();
    assert!(
        matches!(e, Error::BadInput { .. }),
        "write below the logged upper: {e:?}"
    );
    let e = store.seal("s", 3).unwrap_err();
    assert!(
        matches!(e, Error::BadInput { .. }),
        "seal below the logged upper: {e:?}"
    );
    let e = store.append::<u32, u32>("s", &[], 2, 5).unwrap_err();
    assert!(
        matches!(e, Error::UpperMismatch { .. }),
        "append at an older upper: {e:?}"
    );
    store.append("s", &[(4u32, 4u32, 4, 1)], 4, 6).unwrap();
    assert_eq!(store.upper("s").unwrap(), 6);
    let want = vec![(1, 1, 0, 1), (2, 2, 2, 1), (4, 4, 4, 1)];
    assert_eq!(content(&store, "s"), want);
    drop(store);
    store = Store::open_with(dir.path(), opts).unwrap();
    assert_eq!(store.upper("s").unwrap(), 6);
    assert_eq!(content(&store, "s"), want);
    // Logged seal, then reopen before the flush: the upper survives through the WAL.
    store.write("s", &[(5u32, 5u32, 6, 1)]).unwrap();
    store.seal_logged("s", 9).unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 9);
    let e = store.write("s", &[(5u32, 5u32, 8, 1)]).unwrap_err();
    assert!(
        matches!(e, Error::BadInput { .. }),
        "write below the recovered logged upper: {e:?}"
    );
    store.append("s", &[(6u32, 6u32, 9, 1)], 9, 10).unwrap();
    let mut want = want;
    want.extend([(5, 5, 6, 1), (6, 6, 9, 1)]);
    assert_eq!(content(&store, "s"), want);
}

/// Threads each own a stream and mix writes, seals, logged seals and appends; the snapshot of every
/// stream matches its thread's model, before and after a reopen.
#[test]
fn concurrent_writers_on_their_own_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            logged_flush_bytes: 0,
            ..Options::default()
        },
    )
    .unwrap();
    let threads = 4;
    for i in 0..threads as u32 {
        store
            .create_stream(
                &format!("s{i}"),
                StreamOptions {
                    durable: i.is_multiple_of(2),
                },
            )
            .unwrap();
    }
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                let id = format!("s{i}");
                let mut model: Vec<Up> = Vec::new();
                let mut upper = 0u64;
                for round in 0..60u64 {
                    let k = (round * 7 + i as u64) as u32 % 13;
                    match round % 4 {
                        0 | 1 => {
                            let ups = [(k, round as u32, upper, 1i64), (k + 1, 0, upper + 1, 1)];
                            store.write(&id, &ups).unwrap();
                            model.extend(ups);
                        }
                        2 => {
                            upper += 2;
                            if round % 8 == 2 {
                                store.seal(&id, upper).unwrap();
                            } else {
                                store.seal_logged(&id, upper).unwrap();
                            }
                        }
                        _ => {
                            let ups = [(k, 1000u32, upper, 1i64)];
                            store.append(&id, &ups, upper, upper + 1).unwrap();
                            model.extend(ups);
                            upper += 1;
                        }
                    }
                }
                store.complete_seals(&id).unwrap();
                (model, upper)
            })
        })
        .collect();
    let models: Vec<(Vec<Up>, u64)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let consolidate = |v: &[Up]| {
        let mut acc = std::collections::BTreeMap::new();
        for (k, val, t, d) in v {
            *acc.entry((*k, *val, *t)).or_insert(0i64) += d;
        }
        acc.into_iter()
            .filter(|x| x.1 != 0)
            .map(|((k, v, t), d)| (k, v, t, d))
            .collect::<Vec<Up>>()
    };
    let check = |store: &Store, what: &str| {
        for (i, (model, upper)) in models.iter().enumerate() {
            let id = format!("s{i}");
            assert_eq!(store.upper(&id).unwrap(), *upper, "{what}: upper of {id}");
            assert_eq!(content(store, &id), consolidate(model), "{what}: {id}");
        }
    };
    check(&store, "running");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    check(&store, "reopened");
}

/// Seals that do not advance the upper are refused and change nothing; a seal at `u64::MAX` is refused.
#[test]
fn seal_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u32, 1u32, 3, 1)]).unwrap();
    store.seal("s", 4).unwrap();
    for up in [0, 3, 4] {
        let e = store.seal("s", up).unwrap_err();
        assert!(matches!(e, Error::BadInput { .. }), "seal {up}: {e:?}");
        let e = store.seal_logged("s", up).unwrap_err();
        assert!(matches!(e, Error::BadInput { .. }), "seal_logged {up}: {e:?}");
    }
    let e = store.write("s", &[(1u32, 1u32, u64::MAX, 1)]).unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "write at u64::MAX: {e:?}");
    assert_eq!(store.upper("s").unwrap(), 4);
    let e = store.seal("nope", 4).unwrap_err();
    assert!(matches!(e, Error::UnknownStream { .. }), "{e:?}");
    let e = store.append::<u32, u32>("nope", &[], 0, 4).unwrap_err();
    assert!(matches!(e, Error::UnknownStream { .. }), "{e:?}");
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(content(&store, "s"), vec![(1, 1, 3, 1)]);
}
