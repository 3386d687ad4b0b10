//! Adversarial round 11 (adopted; passes): misuse and edge values of the store API, each against a model: seals backwards and
//! to the closed frontier, appends racing logged seals, keys and vals at their size limits (MB-sized, and
//! one byte over), empty keys and zero-sized vals, lookups as of `u64::MAX`, empty writes and empty
//! seals, across merges and a reopen.

use ddpersist::{Error, Options, Store, StreamOptions, FRONTIER_CLOSED};
use std::collections::BTreeMap;

fn inline() -> Options {
    Options {
        compaction_threads: 0,
        merge_fan_in: 2,
        ..Options::default()
    }
}

#[test]
fn seals_backwards_equal_and_to_the_closed_frontier() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, 1u64, 3, 1)]).unwrap();
    store.seal("s", 5).unwrap();
    for bad in [0, 4, 5] {
        assert!(
            matches!(store.seal("s", bad), Err(Error::BadInput { .. })),
            "seal to {bad}"
        );
        assert!(
            matches!(store.seal_logged("s", bad), Err(Error::BadInput { .. })),
            "logged seal to {bad}"
        );
    }
    assert_eq!(store.upper("s").unwrap(), 5);
    // Writes below the upper are refused whole (a good update beside a bad one is not written).
    let r = store.write("s", &[(2u64, 1u64, 9, 1), (2u64, 1u64, 4, 1)]);
    assert!(matches!(r, Err(Error::BadInput { .. })), "{r:?}");
    assert_eq!(store.get::<u64, u64>("s", &2, 100).unwrap(), vec![]);
    // Sealing up to the closed frontier finishes the stream: every time below is sealed.
    store.write("s", &[(2u64, 7u64, FRONTIER_CLOSED - 1, 1)]).unwrap();
    store.seal("s", FRONTIER_CLOSED).unwrap();
    assert_eq!(store.upper("s").unwrap(), FRONTIER_CLOSED);
    assert!(store.write("s", &[(3u64, 1u64, 10, 1)]).is_err());
    assert!(store.seal("s", FRONTIER_CLOSED).is_err());
    assert_eq!(store.get::<u64, u64>("s", &2, u64::MAX).unwrap(), vec![(7, 1)]);
    assert_eq!(
        store.get::<u64, u64>("s", &2, FRONTIER_CLOSED - 2).unwrap(),
        vec![]
    );
    assert_eq!(store.first_time("s", &2u64).unwrap(), Some(FRONTIER_CLOSED - 1));
    drop(store);
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    assert_eq!(store.upper("s").unwrap(), FRONTIER_CLOSED);
    let all: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(all, vec![(1, 1, 3, 1), (2, 7, FRONTIER_CLOSED - 1, 1)]);
}

#[test]
fn append_below_a_pending_logged_seal_is_refused_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let options = Options {
        // The logged seal stays pending (its batch not written) for the test's length.
        logged_flush_delay: std::time::Duration::from_secs(30),
        ..Options::default()
    };
    let store = Store::open_with(tmp.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, 1u64, 2, 1)]).unwrap();
    store.seal_logged("s", 10).unwrap();
    let upper = store.upper("s").unwrap();
    // An append at the committed upper, below the logged one: must not move the upper backwards nor
    // lose the logged seal's update.
    let r = store.append("s", &[(5u64, 5u64, upper, 1)], upper, upper + 1);
    let r2 = store.append("s", &[(6u64, 6u64, 10, 1)], 10, 11);
    let all: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    let after = store.upper("s").unwrap();
    assert!(after >= 10, "upper {after} after {r:?} / {r2:?}");
    if upper < 10 {
        assert!(
            r.is_err(),
            "an append at {upper}, below the logged seal to 10: {r:?}"
        );
    }
    let mut expect = vec![(1, 1, 2, 1)];
    if r2.is_ok() {
        expect.push((6, 6, 10, 1));
    }
    assert_eq!(all, expect, "{r:?} {r2:?}");
    drop(store);
    let store = Store::open(tmp.path()).unwrap();
    let again: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(again, expect);
}

/// Keys and vals of a few MB, sharing long prefixes, through seals, merges, lookups and a reopen; the
/// limits themselves (16 MiB keys, 64 MiB vals) and one byte past them.
#[test]
fn megabyte_keys_and_vals_and_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let big = |c: u8, n: usize, last: u8| {
        let mut v = vec![c; n];
        *v.last_mut().unwrap() = last;
        v
    };
    let mut model: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
    let mut t = 0;
    for round in 0..6u8 {
        let k = big(b'k', (3 << 20) + usize::from(round), round % 3);
        let v = big(b'v', 1 << 20, round);
        let small = vec![round];
        let ups = vec![
            (k.clone(), v.clone(), t, 1i64),
            (small.clone(), v.clone(), t, 2),
            (k.clone(), small.clone(), t, -1),
        ];
        store
            .write_bytes("s", ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        for (k, v, t, d) in ups {
            *model.entry((k, v, t)).or_default() += d;
        }
        t += 1;
        store.seal("s", t).unwrap();
    }
    store.allow_compaction("s", 2).unwrap();
    store.major_compact("s").unwrap();
    let check = |store: &Store| {
        let since = store.since("s").unwrap();
        let mut adv: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
        for ((k, v, t), d) in &model {
            *adv.entry((k.clone(), v.clone(), (*t).max(since))).or_default() += d;
        }
        adv.retain(|_, d| *d != 0);
        let mut got: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
        for (k, v, t, d) in store.snapshot("s").unwrap().to_vec().unwrap() {
            *got.entry((k, v, t.max(since))).or_default() += d;
        }
        got.retain(|_, d| *d != 0);
        let brief = |m: &BTreeMap<(Vec<u8>, Vec<u8>, u64), i64>| {
            m.iter()
                .map(|((k, v, t), d)| (k.len(), k[k.len() - 1], v.len(), v[v.len() - 1], *t, *d))
                .collect::<Vec<_>>()
        };
        assert!(
            got == adv,
            "snapshot differs from the model (since {since}; key len, last byte, val len, last byte, \
             time, diff):\n got {:?}\nwant {:?}",
            brief(&got),
            brief(&adv)
        );
        for ((k, _, _), _) in model.iter().take(4) {
            for as_of in [since, 4, 100] {
                let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
                for ((k2, v, t), d) in &model {
                    if k2 == k && *t <= as_of {
                        *want.entry(v.clone()).or_default() += d;
                    }
                }
                want.retain(|_, d| *d != 0);
                let got: BTreeMap<Vec<u8>, i64> =
                    store.get_bytes("s", k, as_of).unwrap().into_iter().collect();
                assert!(got == want, "get of a {}-byte key as of {as_of}", k.len());
            }
        }
    };
    check(&store);
    drop(store);
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    check(&store);
    // The limits: a 16 MiB key is taken, one byte more is refused (as are vals past 64 MiB).
    store.create_stream("lim", StreamOptions::default()).unwrap();
    let key = vec![7u8; 16 << 20];
    store.write_bytes("lim", [(&key[..], &b""[..], 0, 1)]).unwrap();
    let over = vec![7u8; (16 << 20) + 1];
    let r = store.write_bytes("lim", [(&over[..], &b""[..], 0, 1)]);
    assert!(matches!(r, Err(Error::BadInput { .. })), "{r:?}");
    let val = vec![1u8; (64 << 20) + 1];
    let r = store.write_bytes("lim", [(&b"k"[..], &val[..], 0, 1)]);
    assert!(matches!(r, Err(Error::BadInput { .. })), "{r:?}");
    store.seal("lim", 1).unwrap();
    assert_eq!(store.get_bytes("lim", &key, 0).unwrap(), vec![(Vec::new(), 1)]);
    assert_eq!(store.first_time_bytes("lim", &key).unwrap(), Some(0));
    drop(store);
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    assert_eq!(store.get_bytes("lim", &key, 0).unwrap(), vec![(Vec::new(), 1)]);
}

/// Empty keys, `()` vals, empty writes, writes whose diffs cancel, and seals with nothing to seal.
#[test]
fn empty_keys_unit_vals_and_empty_seals() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write::<String, ()>("s", &[]).unwrap();
    store.seal("s", 1).unwrap();
    store
        .write("s", &[(String::new(), (), 1, 1), (String::new(), (), 1, -1)])
        .unwrap();
    store.seal("s", 2).unwrap();
    store
        .write("s", &[(String::new(), (), 2, 3), ("a".to_string(), (), 2, 0)])
        .unwrap();
    store.seal("s", 3).unwrap();
    store.seal("s", 10).unwrap();
    assert_eq!(
        store.get::<String, ()>("s", &String::new(), 5).unwrap(),
        vec![((), 3)]
    );
    assert_eq!(store.get::<String, ()>("s", &"a".into(), 5).unwrap(), vec![]);
    assert_eq!(store.first_time("s", &String::new()).unwrap(), Some(2));
    assert_eq!(store.first_time("s", &"a".to_string()).unwrap(), None);
    drop(store);
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    let all: Vec<(String, (), u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(all, vec![(String::new(), (), 2, 3)]);
    assert_eq!(store.upper("s").unwrap(), 10);
}

/// `get_many_bytes` with no keys, repeated keys and keys out of order: one answer per key, in order.
#[test]
fn get_many_with_repeated_and_unordered_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), inline()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let ups: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = vec![
        (b"b".to_vec(), b"1".to_vec(), 0, 1),
        (b"a".to_vec(), b"2".to_vec(), 1, 2),
        (b"b".to_vec(), b"1".to_vec(), 3, -1),
    ];
    store
        .write_bytes("s", ups[..2].iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
        .unwrap();
    store.seal("s", 2).unwrap();
    store
        .write_bytes("s", ups[2..].iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
        .unwrap();
    assert!(store.get_many_bytes("s", &[], 5).unwrap().is_empty());
    let keys: [&[u8]; 5] = [b"b", b"a", b"b", b"zz", b"a"];
    for as_of in [0, 1, 2, 3, 9] {
        let got = store.get_many_bytes("s", &keys, as_of).unwrap();
        let want: Vec<_> = keys
            .iter()
            .map(|k| store.get_bytes("s", k, as_of).unwrap())
            .collect();
        assert_eq!(got, want, "as of {as_of}");
    }
    assert_eq!(
        store.get_many_bytes("s", &keys, 1).unwrap()[0],
        vec![(b"1".to_vec(), 1)]
    );
    assert_eq!(store.get_many_bytes("s", &keys, 3).unwrap()[2], vec![]);
}

/// A store is locked against a second open through another spelling of its path (a symlink, `dir/.`),
/// and opens again once the first is dropped.
#[test]
fn a_second_open_through_another_path_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&dir, &link).unwrap();
    for other in [link.clone(), dir.join("."), dir.join("wal").join("..")] {
        let r = Store::open(&other);
        assert!(matches!(r, Err(Error::Locked { .. })), "{other:?}: {:?}", r.err());
    }
    drop(store);
    let again = Store::open(&link).unwrap();
    drop(again);
}
