//! Point lookups and timestamp lookups against a model, across sealed, unsealed and merged data.

use crate::common;

use common::Rng;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;

type Written = Vec<(Vec<u8>, Vec<u8>, u64, i64)>;

fn model_get(written: &Written, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut acc: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (k, v, t, d) in written {
        if k == key && *t <= as_of {
            *acc.entry(v.clone()).or_insert(0) += d;
        }
    }
    acc.into_iter().filter(|(_, d)| *d != 0).collect()
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

/// A stream with many batches (merges disabled by a huge bound so lookups cross many files), plus
/// unsealed updates.
fn populated(dir: &std::path::Path, compaction_threads: usize) -> (Store, Written) {
    let options = Options {
        compaction_threads,
        ..Options::default()
    };
    let store = Store::open_with(dir, options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut rng = Rng(11);
    let mut written = Vec::new();
    for t in 0..40u64 {
        let ups: Written = (0..50)
            .map(|_| {
                let k = key(rng.below(500) * 2); // even keys only: odd keys are absent
                (
                    k,
                    vec![b'a' + rng.below(4) as u8],
                    t,
                    if rng.below(4) == 0 { -1 } else { 1 },
                )
            })
            .collect();
        store
            .write_bytes("s", ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        written.extend(ups);
        if t < 35 {
            store.seal("s", t + 1).unwrap();
        }
    }
    (store, written)
}

#[test]
fn get_matches_the_model_at_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let (store, written) = populated(dir.path(), 0);
    for as_of in [0, 5, 17, 34, 35, 38, 100] {
        for i in (0..1000).step_by(7) {
            let k = key(i);
            assert_eq!(
                store.get_bytes("s", &k, as_of).unwrap(),
                model_get(&written, &k, as_of),
                "{i} @ {as_of}"
            );
        }
    }
    let keys: Vec<Vec<u8>> = (0..200).map(key).collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| &k[..]).collect();
    let many = store.get_many_bytes("s", &refs, 20).unwrap();
    for (k, got) in keys.iter().zip(many) {
        assert_eq!(got, model_get(&written, k, 20));
    }
    // After a restart (unsealed part replayed from the WAL) the answers are the same.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    for i in (0..1000).step_by(13) {
        assert_eq!(
            store.get_bytes("s", &key(i), 39).unwrap(),
            model_get(&written, &key(i), 39)
        );
    }
}

#[test]
fn absent_keys_skip_batches_without_reading_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compaction_threads: 0,
        max_batches_per_stream: 1000,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    // 20 batches of distinct, interleaved key ranges, equal sizes so merges leave several batches.
    for t in 0..20u64 {
        let ups: Vec<Vec<u8>> = (0..500).map(|i| key((i * 20 + t) * 2)).collect();
        store
            .write_bytes("s", ups.iter().map(|k| (&k[..], &b"v"[..], t, 1)))
            .unwrap();
        store.seal("s", t + 1).unwrap();
    }
    let sealed = store.sealed("s").unwrap();
    let before: u64 = sealed.batches.iter().map(|b| b.block_reads()).sum();
    let lookups = 2000u64;
    for i in 0..lookups {
        assert!(store.get_bytes("s", &key(i * 2 + 1), 100).unwrap().is_empty());
    }
    let reads: u64 = sealed.batches.iter().map(|b| b.block_reads()).sum::<u64>() - before;
    let probes = lookups * sealed.batches.len() as u64;
    // The filter admits about 1% of absent keys; allow 3%.
    assert!(
        reads * 100 <= probes * 3,
        "{reads} block reads for {probes} batch probes"
    );
    // Present keys are found.
    assert_eq!(
        store.get_bytes("s", &key(40), 100).unwrap(),
        vec![(b"v".to_vec(), 1)]
    );
}

#[test]
fn typed_get_and_first_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            compaction_threads: 0,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("ts", StreamOptions::default()).unwrap();
    store
        .write("ts", &[("a".to_string(), 1u32, 3, 1), ("b".to_string(), 2, 5, 1)])
        .unwrap();
    store.seal("ts", 6).unwrap();
    store
        .write(
            "ts",
            &[
                ("a".to_string(), 1u32, 7, -1),
                ("a".to_string(), 9, 7, 1),
                ("c".to_string(), 3, 8, 1),
            ],
        )
        .unwrap();
    assert_eq!(
        store.get::<String, u32>("ts", &"a".to_string(), 6).unwrap(),
        vec![(1, 1)]
    );
    assert_eq!(
        store.get::<String, u32>("ts", &"a".to_string(), 7).unwrap(),
        vec![(9, 1)]
    );
    assert_eq!(
        store.get::<String, u32>("ts", &"zz".to_string(), 9).unwrap(),
        vec![]
    );
    assert_eq!(store.first_time("ts", &"a".to_string()).unwrap(), Some(3));
    assert_eq!(store.first_time("ts", &"b".to_string()).unwrap(), Some(5));
    assert_eq!(store.first_time("ts", &"c".to_string()).unwrap(), Some(8));
    assert_eq!(store.first_time("ts", &"d".to_string()).unwrap(), None);
    assert!(matches!(
        store.get_bytes("nope", b"a", 1),
        Err(ddpersist::Error::UnknownStream { .. })
    ));
}
