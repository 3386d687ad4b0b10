//! `Store::get` / `get_many_bytes` / `first_time` against a model of every update, through writes,
//! seals, logged seals, appends, since advances (also beyond the upper), `compact`, `major_compact`,
//! spills (a tiny memtable budget) and reopens. A lookup as of a time below the since must be refused
//! (`BadInput`), never answered.

use crate::common::Rng;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::path::Path;

type Up = (u32, u32, u64, i64);

#[derive(Default)]
struct Model {
    updates: Vec<Up>,
    upper: u64,
    since: u64,
}

impl Model {
    fn get(&self, key: u32, as_of: u64) -> Vec<(u32, i64)> {
        let mut acc: BTreeMap<u32, i64> = BTreeMap::new();
        for u in self.updates.iter().filter(|u| u.0 == key && u.2 <= as_of) {
            *acc.entry(u.1).or_insert(0) += u.3;
        }
        acc.into_iter().filter(|x| x.1 != 0).collect()
    }

    /// The least time (advanced to the since) at which some val's updates of `key` sum to nonzero.
    fn first_time(&self, key: u32) -> Option<u64> {
        let mut acc: BTreeMap<(u64, u32), i64> = BTreeMap::new();
        for u in self.updates.iter().filter(|u| u.0 == key) {
            *acc.entry((u.2.max(self.since), u.1)).or_insert(0) += u.3;
        }
        acc.into_iter().find(|x| x.1 != 0).map(|((t, _), _)| t)
    }
}

const KEYS: u32 = 12;

fn options(tiny: bool) -> Options {
    Options {
        compaction_threads: 0,
        memtable_budget_bytes: if tiny {
            600
        } else {
            Options::default().memtable_budget_bytes
        },
        logged_flush_bytes: 0,
        ..Options::default()
    }
}

fn check(store: &Store, id: &str, model: &Model, what: &str) {
    let max_t = model.updates.iter().map(|u| u.2).max().unwrap_or(0) + 2;
    for key in 0..KEYS {
        for as_of in 0..=max_t.max(model.since + 1) {
            let got = store.get::<u32, u32>(id, &key, as_of);
            if as_of < model.since {
                match got {
                    Err(Error::BadInput { .. }) => {}
                    other => panic!(
                        "{what}: get({key}) as of {as_of} below since {}: {other:?}, want BadInput",
                        model.since
                    ),
                }
            } else {
                let got = got.unwrap_or_else(|e| panic!("{what}: get({key}) as of {as_of}: {e}"));
                assert_eq!(
                    got,
                    model.get(key, as_of),
                    "{what}: get({key}) as of {as_of} (since {})",
                    model.since
                );
            }
        }
        let first = store.first_time::<u32>(id, &key).unwrap();
        assert_eq!(
            first,
            model.first_time(key),
            "{what}: first_time({key}) (since {})",
            model.since
        );
    }
    // Many keys at once, duplicates included.
    let keys: Vec<Vec<u8>> = [3u32, 0, 3, 11, 7]
        .iter()
        .map(ddpersist::Codec::to_bytes)
        .collect();
    let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
    let as_of = model.since.max(max_t / 2);
    let many = store.get_many_bytes(id, &refs, as_of).unwrap();
    for (i, k) in [3u32, 0, 3, 11, 7].iter().enumerate() {
        let want: Vec<(Vec<u8>, i64)> = model
            .get(*k, as_of)
            .into_iter()
            .map(|(v, d)| (ddpersist::Codec::to_bytes(&v), d))
            .collect();
        assert_eq!(many[i], want, "{what}: get_many key {k} as of {as_of}");
    }
}

fn run(seed: u64, durable: bool, tiny: bool) {
    let dir = tempfile::tempdir().unwrap();
    let id = "s";
    let open = |p: &Path| Store::open_with(p, options(tiny)).unwrap();
    let mut store = open(dir.path());
    store.create_stream(id, StreamOptions { durable }).unwrap();
    let mut model = Model::default();
    let mut rng = Rng(seed);
    for step in 0..60 {
        let what = format!("seed {seed} durable {durable} tiny {tiny} step {step}");
        match rng.below(10) {
            0..=3 => {
                // A write at times in [upper, upper + 4), some cancelling each other.
                let mut ups = Vec::new();
                for _ in 0..rng.below(8) + 1 {
                    let k = rng.below(KEYS as u64) as u32;
                    let v = rng.below(3) as u32;
                    let t = model.upper + rng.below(4);
                    let d = rng.below(5) as i64 - 2;
                    ups.push((k, v, t, d));
                }
                store
                    .write(id, &ups)
                    .unwrap_or_else(|e| panic!("{what}: write {ups:?}: {e}"));
                model.updates.extend(ups.iter().filter(|u| u.3 != 0));
            }
            4 => {
                let up = model.upper + rng.below(3) + 1;
                store
                    .seal(id, up)
                    .unwrap_or_else(|e| panic!("{what}: seal {up}: {e}"));
                model.upper = up;
            }
            5 => {
                let up = model.upper + rng.below(3) + 1;
                store
                    .seal_logged(id, up)
                    .unwrap_or_else(|e| panic!("{what}: seal_logged {up}: {e}"));
                model.upper = up;
            }
            6 => {
                // An append of a sorted interval [upper, upper + n).
                let n = rng.below(3) + 1;
                let (lower, upper) = (model.upper, model.upper + n);
                let mut acc: BTreeMap<(u32, u32, u64), i64> = BTreeMap::new();
                for _ in 0..rng.below(6) {
                    let k = rng.below(KEYS as u64) as u32;
                    let v = rng.below(3) as u32;
                    *acc.entry((k, v, lower + rng.below(n))).or_insert(0) += 1;
                }
                let ups: Vec<Up> = acc.into_iter().map(|((k, v, t), d)| (k, v, t, d)).collect();
                store
                    .append(id, &ups, lower, upper)
                    .unwrap_or_else(|e| panic!("{what}: append {ups:?} [{lower},{upper}): {e}"));
                model.updates.extend(ups);
                model.upper = upper;
            }
            7 => {
                // A since up to two past the upper.
                let since = model.since.max(model.upper.saturating_sub(2) + rng.below(5));
                store
                    .allow_compaction(id, since)
                    .unwrap_or_else(|e| panic!("{what}: allow_compaction {since}: {e}"));
                model.since = since;
            }
            8 => match rng.below(2) {
                0 => drop(
                    store
                        .compact(id)
                        .unwrap_or_else(|e| panic!("{what}: compact: {e}")),
                ),
                _ => drop(
                    store
                        .major_compact(id)
                        .unwrap_or_else(|e| panic!("{what}: major_compact: {e}")),
                ),
            },
            _ => {
                drop(store);
                store = open(dir.path());
                if !durable {
                    let upper = model.upper;
                    model.updates.retain(|u| u.2 < upper);
                }
                assert_eq!(
                    store.upper(id).unwrap(),
                    model.upper,
                    "{what}: upper after reopen"
                );
                assert_eq!(
                    store.since(id).unwrap(),
                    model.since,
                    "{what}: since after reopen"
                );
            }
        }
        check(&store, id, &model, &format!("{what} (after op)"));
    }
}

#[test]
fn lookups_match_model_durable() {
    for seed in 1..6 {
        run(seed, true, false);
    }
}

#[test]
fn lookups_match_model_not_durable() {
    for seed in 11..16 {
        run(seed, false, false);
    }
}

#[test]
fn lookups_match_model_with_spills() {
    for seed in 21..26 {
        run(seed, true, true);
        run(seed + 100, false, true);
    }
}

/// A since far beyond the upper, then writes below it: lookups as of the since and later see them, the
/// first time of each key reads as the since; after seal, merge and reopen the same.
#[test]
fn since_beyond_upper_then_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(false)).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.allow_compaction("s", 10).unwrap();
    store
        .write(
            "s",
            &[(1u32, 5u32, 2, 1), (1, 6, 3, 1), (1, 6, 4, -1), (2, 1, 12, 1)],
        )
        .unwrap();
    let look = |store: &Store, what: &str| {
        assert!(
            matches!(store.get::<u32, u32>("s", &1, 9), Err(Error::BadInput { .. })),
            "{what}"
        );
        assert_eq!(
            store.get::<u32, u32>("s", &1, 10).unwrap(),
            vec![(5, 1)],
            "{what}"
        );
        assert_eq!(store.first_time::<u32>("s", &1).unwrap(), Some(10), "{what}");
        assert_eq!(store.first_time::<u32>("s", &2).unwrap(), Some(12), "{what}");
        assert_eq!(store.get::<u32, u32>("s", &2, 11).unwrap(), vec![], "{what}");
        assert_eq!(
            store.get::<u32, u32>("s", &2, 12).unwrap(),
            vec![(1, 1)],
            "{what}"
        );
    };
    look(&store, "unsealed");
    store.seal("s", 5).unwrap();
    look(&store, "sealed to 5");
    store.seal("s", 13).unwrap();
    store.major_compact("s").unwrap();
    look(&store, "major compacted");
    drop(store);
    let store = Store::open_with(dir.path(), options(false)).unwrap();
    look(&store, "reopened");
}
