//! Adversarial round 6: `Store` API edges a user meets: a since set beyond the upper before the writes,
//! lookups as of the greatest times, empty and multi-MiB keys through logged seals and a reopen, and a
//! second open of a store held in the same process.

use ddpersist::{Error, Store, StreamOptions};

fn vals(store: &Store, key: &Vec<u8>, as_of: u64) -> Vec<(Vec<u8>, i64)> {
    store.get::<Vec<u8>, Vec<u8>>("s", key, as_of).unwrap()
}

/// A since set beyond the upper before any write: updates written below it read as at the since, lookups
/// below it are refused (never answered from partial history), before and after seals, merges and a reopen.
#[test]
fn a_since_beyond_the_upper_advances_later_writes_and_refuses_lookups_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let k = b"k".to_vec();
    let check = |store: &Store, what: &str| {
        assert_eq!(vals(store, &k, 10), vec![(b"a".to_vec(), 1)], "{what}");
        assert_eq!(vals(store, &k, u64::MAX - 1), vec![(b"b".to_vec(), 1)], "{what}");
        assert_eq!(vals(store, &k, u64::MAX), vec![(b"b".to_vec(), 1)], "{what}");
        for below in [0, 5, 9] {
            let refused = store.get::<Vec<u8>, Vec<u8>>("s", &k, below);
            assert!(
                matches!(refused, Err(Error::BadInput { .. })),
                "{what}: as of {below}: {refused:?}"
            );
        }
        assert_eq!(store.first_time("s", &k).unwrap(), Some(10), "{what}");
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.allow_compaction("s", 10).unwrap();
        store
            .write(
                "s",
                &[
                    (k.clone(), b"a".to_vec(), 5, 1),
                    (k.clone(), b"a".to_vec(), 12, -1),
                ],
            )
            .unwrap();
        store
            .write(
                "s",
                &[
                    (k.clone(), b"b".to_vec(), 12, 1),
                    (k.clone(), b"x".to_vec(), 3, 1),
                ],
            )
            .unwrap();
        store.write("s", &[(k.clone(), b"x".to_vec(), 7, -1)]).unwrap();
        check(&store, "unsealed");
        store.seal("s", 8).unwrap();
        check(&store, "sealed to 8");
        store.seal_logged("s", 13).unwrap();
        check(&store, "logged to 13");
        store.compact("s").unwrap();
        store.major_compact("s").unwrap();
        check(&store, "compacted");
        let snapshot: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
        assert_eq!(
            snapshot,
            vec![
                (k.clone(), b"a".to_vec(), 10, 1),
                (k.clone(), b"a".to_vec(), 12, -1),
                (k.clone(), b"b".to_vec(), 12, 1)
            ]
        );
    }
    let store = Store::open(dir.path()).unwrap();
    check(&store, "reopened");
}

/// An empty key and val and a 3 MiB key with a 2 MiB val beside small keys, through a logged seal, a
/// second open in the same process (refused: the store is locked), and a reopen.
#[test]
fn empty_and_huge_records_through_logged_seals_and_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let huge_key: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
    let huge_val: Vec<u8> = (0..2 << 20).map(|i| (i % 241) as u8).collect();
    let mut expected = vec![
        (Vec::new(), Vec::new(), 0, 2),
        (huge_key.clone(), huge_val.clone(), 1, 1),
        (huge_key.clone(), Vec::new(), 2, -1),
    ];
    for i in 0..50u8 {
        expected.push((vec![i], vec![i; i as usize], u64::from(1 + i % 2), 1));
    }
    let check = |store: &Store, what: &str| {
        assert_eq!(vals(store, &Vec::new(), 3), vec![(Vec::new(), 2)], "{what}");
        assert_eq!(
            vals(store, &huge_key, 3),
            vec![(Vec::new(), -1), (huge_val.clone(), 1)],
            "{what}"
        );
        assert_eq!(vals(store, &huge_key, 1), vec![(huge_val.clone(), 1)], "{what}");
        assert_eq!(vals(store, &vec![49], 3), vec![(vec![49; 49], 1)], "{what}");
        assert_eq!(store.first_time("s", &huge_key).unwrap(), Some(1), "{what}");
        let mut all: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
        let mut want = expected.clone();
        all.sort();
        want.sort();
        assert_eq!(all.len(), want.len(), "{what}");
        assert!(all == want, "{what}: snapshot differs");
    };
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &expected[..1]).unwrap();
        store.seal_logged("s", 1).unwrap();
        store.write("s", &expected[1..]).unwrap();
        check(&store, "unsealed");
        store.seal_logged("s", 3).unwrap();
        check(&store, "logged");
        let second = Store::open(dir.path());
        assert!(matches!(second, Err(Error::Locked { .. })), "{:?}", second.err());
        check(&store, "after a refused second open");
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 3);
    check(&store, "reopened");
    store.major_compact("s").unwrap();
    check(&store, "merged");
}
