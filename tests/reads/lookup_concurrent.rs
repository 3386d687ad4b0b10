//! Point and timestamp lookups (`get_bytes`, `get_many_bytes`, `first_time_bytes`) on two reader threads
//! while a writer thread writes, seals (plain and logged), raises the since, and merges run in the
//! background (a small memtable budget makes spills too): every answer must equal a model of what was
//! written at or before the asked time (as of the since), or be the documented refusal below the since.

use crate::common;

use common::Rng;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Per key: `(val, time, diff)` in write order.
type Log = BTreeMap<u8, Vec<(u8, u64, i64)>>;

fn model_get(log: &Log, key: u8, as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut sums: BTreeMap<u8, i64> = BTreeMap::new();
    for &(v, t, d) in log.get(&key).into_iter().flatten() {
        if t <= as_of {
            *sums.entry(v).or_insert(0) += d;
        }
    }
    sums.into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|(v, d)| (vec![v], d))
        .collect()
}

/// The first time, below `upto`, with a nonzero sum of some val, times advanced to `since`.
fn model_first(log: &Log, key: u8, since: u64, upto: u64) -> Option<u64> {
    let mut sums: BTreeMap<(u64, u8), i64> = BTreeMap::new();
    for &(v, t, d) in log.get(&key).into_iter().flatten() {
        if t < upto {
            *sums.entry((t.max(since), v)).or_insert(0) += d;
        }
    }
    sums.into_iter().find(|(_, d)| *d != 0).map(|((t, _), _)| t)
}

#[test]
fn lookups_during_writes_seals_and_merges_match_the_model() {
    let options = Options {
        merge_fan_in: 2,
        memtable_budget_bytes: 16 << 10,
        logged_flush_bytes: 8 << 10,
        logged_flush_delay: std::time::Duration::from_millis(2),
        ..Options::default()
    };
    check(options, true, 200);
}

/// Not durable (`seal_logged` falls back to `seal`), merges inside the seals, the whole stream rewritten
/// by the size-amplification trigger, `append`s of whole intervals and `major_compact`.
#[test]
fn lookups_during_appends_and_major_compactions_match_the_model() {
    let options = Options {
        merge_fan_in: 3,
        memtable_budget_bytes: 8 << 10,
        compaction_threads: 0,
        max_space_amplification_percent: Some(50),
        ..Options::default()
    };
    check(options, false, 300);
}

fn check(options: Options, durable: bool, times: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions { durable }).unwrap();
    let log: Arc<Mutex<Log>> = Arc::default();
    // Every write at a time below it is done (and in `log`).
    let written = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicU64::new(0));

    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let (store, log, written, done, checks) =
                (store.clone(), log.clone(), written.clone(), done.clone(), checks.clone());
            std::thread::spawn(move || {
                let mut rng = Rng(0x5eed + r);
                while !done.load(Ordering::SeqCst) {
                    let w = written.load(Ordering::SeqCst);
                    if w == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let as_of = w - 1 - rng.below(w.min(30));
                    let key = rng.below(40) as u8;
                    let key2 = rng.below(40) as u8;
                    let since_before = store.since("s").unwrap();
                    let got = store.get_bytes("s", &[key], as_of);
                    let many = store.get_many_bytes("s", &[&[key], &[key2]], as_of);
                    let first = store.first_time_bytes("s", &[key]).unwrap();
                    let since_after = store.since("s").unwrap();
                    let log = log.lock().unwrap().clone();
                    match (got, many) {
                        (Ok(got), Ok(many)) => {
                            assert_eq!(got, model_get(&log, key, as_of), "get {key} as of {as_of}");
                            assert_eq!(many[0], got, "get_many {key} as of {as_of}");
                            assert_eq!(many[1], model_get(&log, key2, as_of), "get_many {key2} as of {as_of}");
                        }
                        (got, many) => {
                            for e in [got.err(), many.err()].into_iter().flatten() {
                                assert!(
                                    matches!(e, Error::BadInput { .. }) && as_of < since_after,
                                    "as of {as_of}, since {since_before}..{since_after}: {e:?}"
                                );
                            }
                        }
                    }
                    // Writes at `w` and later may be under way: only an answer below `w` is settled.
                    let ok = (since_before..=since_after).any(|since| {
                        let expected = model_first(&log, key, since, w);
                        match expected {
                            Some(_) => first == expected,
                            None => first.is_none_or(|f| f >= w.max(since)),
                        }
                    });
                    assert!(
                        ok,
                        "first_time {key}: {first:?}, since {since_before}..{since_after}, written below {w}: \
                         model {:?}",
                        model_first(&log, key, since_before, w)
                    );
                    checks.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();

    let mut rng = Rng(7);
    let mut since = 0;
    for t in 0..times {
        let mut batch: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = Vec::new();
        for _ in 0..rng.below(12) {
            let (k, v) = (rng.below(40) as u8, rng.below(4) as u8);
            let d = if rng.below(3) == 0 { -1 } else { 1 };
            batch.push((vec![k], vec![v], t, d));
        }
        // Every 5th time of the second variant: one `append` of the interval [t, t + 1) (sorted, each
        // (key, val, time) once: consolidated first), when the stream's upper is `t`.
        let append = !durable && t % 5 == 0 && store.upper("s").unwrap() == t;
        if append {
            let mut sums: BTreeMap<(Vec<u8>, Vec<u8>), i64> = BTreeMap::new();
            for (k, v, _, d) in &batch {
                *sums.entry((k.clone(), v.clone())).or_insert(0) += d;
            }
            sums.retain(|_, d| *d != 0);
            let sorted: Vec<_> = sums.into_iter().collect();
            store
                .append_bytes(
                    "s",
                    sorted.iter().map(|((k, v), d)| (&k[..], &v[..], t, *d)),
                    t,
                    t + 1,
                )
                .unwrap();
        } else {
            store
                .write_bytes("s", batch.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
                .unwrap();
        }
        {
            let mut log = log.lock().unwrap();
            for (k, v, t, d) in &batch {
                log.entry(k[0]).or_default().push((v[0], *t, *d));
            }
        }
        written.store(t + 1, Ordering::SeqCst);
        match if append { 5 } else { rng.below(6) } {
            0 | 1 => {
                store.seal("s", t + 1).unwrap();
            }
            2 | 3 => store.seal_logged("s", t + 1).unwrap(),
            _ => {}
        }
        if t % 37 == 36 {
            since = t - 20;
            store.allow_compaction("s", since).unwrap();
        }
        if t % 53 == 52 {
            store.compact("s").unwrap();
        }
        if !durable && t % 71 == 70 {
            store.major_compact("s").unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    done.store(true, Ordering::SeqCst);
    for r in readers {
        r.join().unwrap();
    }
    assert!(checks.load(Ordering::SeqCst) > 100, "{checks:?}");
    assert!(since > 0);
    assert_eq!(store.background_error(), None);
}
