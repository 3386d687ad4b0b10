//! Lookups (`get_bytes`, `first_time_bytes`) against a model on one thread, where the since is raised
//! beyond the stream's upper (allowed: updates written later below it are advanced too) between writes,
//! plain and logged seals, merges inside the seals (fan-in 2) and a reopen: every lookup at or beyond the
//! since equals the model with times advanced to the since, and one below it is refused.

use crate::common;

use common::Rng;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;

#[test]
fn lookups_with_the_since_ahead_of_the_upper_match_the_model() {
    for seed in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let options = || Options {
            merge_fan_in: 2,
            compaction_threads: 0,
            memtable_budget_bytes: 2 << 10,
            ..Options::default()
        };
        let mut store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let mut rng = Rng(seed);
        let mut log: Vec<(u8, u8, u64, i64)> = Vec::new();
        let (mut upper, mut since, mut t) = (0u64, 0u64, 0u64);
        for step in 0..150 {
            match rng.below(10) {
                0 => {
                    since = since.max(t + rng.below(6));
                    store.allow_compaction("s", since).unwrap();
                }
                1 | 2 if t > upper => {
                    upper = t;
                    if rng.below(2) == 0 {
                        store.seal("s", upper).unwrap();
                    } else {
                        store.seal_logged("s", upper).unwrap();
                    }
                }
                3 if step % 40 == 3 => {
                    drop(store);
                    store = Store::open_with(dir.path(), options()).unwrap();
                }
                _ => {
                    let (k, v) = (rng.below(6) as u8, rng.below(3) as u8);
                    let d = if rng.below(3) == 0 { -1 } else { 1 };
                    store.write_bytes("s", [(&[k][..], &[v][..], t, d)]).unwrap();
                    log.push((k, v, t, d));
                }
            }
            t += rng.below(2);
            t = t.max(upper);
            let k = rng.below(6) as u8;
            let as_of = rng.below(t + 3);
            let got = store.get_bytes("s", &[k], as_of);
            if as_of < since {
                assert!(
                    matches!(got, Err(Error::BadInput { .. })),
                    "seed {seed}: as of {as_of} < {since}: {got:?}"
                );
            } else {
                assert_eq!(
                    got.unwrap(),
                    model_get(&log, k, as_of),
                    "seed {seed}, step {step}: get {k} as of {as_of}, since {since}"
                );
            }
            assert_eq!(
                store.first_time_bytes("s", &[k]).unwrap(),
                model_first(&log, k, since),
                "seed {seed}, step {step}: first time of {k}, since {since}"
            );
        }
        // After every merge (times below the since advanced in the files now): the same answers.
        store.seal("s", t + 1).unwrap();
        store.compact("s").unwrap();
        store.major_compact("s").unwrap();
        for k in 0..6u8 {
            let as_of = since.max(t);
            // Every logged update counts (all are below the final upper).
            assert_eq!(
                store.get_bytes("s", &[k], as_of).unwrap(),
                model_get(&log, k, u64::MAX),
                "seed {seed}: merged, get {k}"
            );
            assert_eq!(
                store.first_time_bytes("s", &[k]).unwrap(),
                model_first(&log, k, since),
                "seed {seed}: merged, first {k}"
            );
        }
    }
}

/// The model's answer to `get k as of as_of`: `(val, diff)` sums of the logged `(key, val, time, diff)`s of
/// `k` at times at or below `as_of`, zeros dropped, in val order.
fn model_get(log: &[(u8, u8, u64, i64)], k: u8, as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut sums: BTreeMap<u8, i64> = BTreeMap::new();
    for &(lk, lv, lt, ld) in log {
        if lk == k && lt <= as_of {
            *sums.entry(lv).or_insert(0) += ld;
        }
    }
    sums.into_iter()
        .filter(|e| e.1 != 0)
        .map(|(v, d)| (vec![v], d))
        .collect()
}

/// The model's first time of `k`: the earliest time (times below `since` advanced to it) at which some
/// `(k, val)` has a nonzero consolidated diff.
fn model_first(log: &[(u8, u8, u64, i64)], k: u8, since: u64) -> Option<u64> {
    let mut sums: BTreeMap<(u64, u8), i64> = BTreeMap::new();
    for &(lk, lv, lt, ld) in log {
        if lk == k {
            *sums.entry((lt.max(since), lv)).or_insert(0) += ld;
        }
    }
    sums.into_iter().find(|e| e.1 != 0).map(|((t, _), _)| t)
}
