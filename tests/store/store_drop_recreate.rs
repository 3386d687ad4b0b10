//! Adversarial round 11 (adopted; passes): a stream dropped and created again, over and over, while its background work is in
//! flight — merges on the compaction thread, logged seals waiting for the flush thread, spills — and while
//! another thread reads it. Each incarnation writes vals naming it, so a read that mixes two incarnations,
//! or an incarnation that shows another's updates or upper (after the drop, and after a reopen), is
//! caught. Compared with a model of the live incarnation.

use crate::common;

use common::Rng;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

fn options() -> Options {
    Options {
        compaction_threads: 1,
        merge_fan_in: 2,
        block_target_bytes: 128,
        memtable_budget_bytes: 2048,
        logged_flush_bytes: 0,
        logged_flush_delay: Duration::from_millis(2),
        max_space_amplification_percent: Some(0),
        ..Options::default()
    }
}

type Model = BTreeMap<(u32, u32, u64), i64>;

fn snapshot(store: &Store, id: &str) -> ddpersist::Result<Model> {
    let mut m = Model::new();
    for (k, v, t, d) in store.snapshot(id)?.decode::<u32, u32>()? {
        *m.entry((k, v, t)).or_default() += d;
    }
    Ok(m)
}

#[test]
fn a_stream_dropped_and_created_again_amid_its_background_work_holds_only_its_own_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(tmp.path(), options()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // A reader: every read sees one incarnation only (vals all equal), or an unknown stream.
    // The reader's store, taken away while the main thread reopens (a clone would hold the lock).
    let shared: Arc<RwLock<Option<Store>>> = Arc::new(RwLock::new(Some(store.clone())));
    let reader = {
        let (stop, shared) = (stop.clone(), shared.clone());
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let guard = shared.read().unwrap();
                let Some(store) = guard.as_ref() else {
                    drop(guard);
                    std::thread::yield_now();
                    continue;
                };
                match snapshot(store, "s") {
                    Ok(m) => {
                        let vals: std::collections::BTreeSet<u32> = m.keys().map(|(_, v, _)| *v).collect();
                        assert!(vals.len() <= 1, "a snapshot mixes incarnations {vals:?}");
                        reads += 1;
                    }
                    Err(Error::UnknownStream { .. }) => {}
                    Err(e) => panic!("snapshot: {e}"),
                }
                match store.get::<u32, u32>("s", &3, u64::MAX - 1) {
                    Ok(vals) => assert!(vals.len() <= 1, "a lookup mixes incarnations {vals:?}"),
                    Err(Error::UnknownStream { .. }) => {}
                    // Between the drop and the create, or below a since: nothing to check.
                    Err(Error::BadInput { .. }) => {}
                    Err(e) => panic!("get: {e}"),
                }
            }
            reads
        })
    };
    let mut rng = Rng(11);
    let mut total_reopens = 0;
    for inc in 0..60u32 {
        let durable = rng.below(2) == 0;
        store.create_stream("s", StreamOptions { durable }).unwrap();
        let mut model = Model::new();
        let mut upper = 0u64;
        let rounds = 1 + rng.below(8);
        for _ in 0..rounds {
            let ups: Vec<(u32, u32, u64, i64)> = (0..1 + rng.below(40))
                .map(|_| (rng.below(16) as u32, inc, upper + rng.below(3), 1))
                .collect();
            store.write("s", &ups).unwrap();
            for (k, v, t, d) in ups {
                *model.entry((k, v, t)).or_default() += d;
            }
            let next = upper + 1 + rng.below(2);
            match rng.below(3) {
                0 => {
                    store.seal("s", next).unwrap();
                }
                1 => store.seal_logged("s", next).unwrap(),
                _ => {
                    store.seal("s", next).unwrap();
                    store.allow_compaction("s", upper).unwrap();
                }
            }
            upper = next;
        }
        let since = store.since("s").unwrap();
        let advanced = |m: &Model| {
            let mut out = Model::new();
            for ((k, v, t), d) in m {
                *out.entry((*k, *v, (*t).max(since))).or_default() += d;
            }
            out.retain(|_, d| *d != 0);
            out
        };
        let got = snapshot(&store, "s").unwrap();
        assert_eq!(advanced(&got), advanced(&model), "incarnation {inc}");
        if rng.below(4) == 0 {
            // A reopen with this incarnation's logged seals maybe still pending.
            let mut guard = shared.write().unwrap();
            *guard = None;
            drop(store);
            store = Store::open_with(tmp.path(), options()).unwrap();
            *guard = Some(store.clone());
            drop(guard);
            total_reopens += 1;
            let got = snapshot(&store, "s").unwrap();
            let expect = if durable {
                model.clone()
            } else {
                model
                    .iter()
                    .filter(|((_, _, t), _)| *t < store.upper("s").unwrap())
                    .map(|(k, d)| (*k, *d))
                    .collect()
            };
            let since = store.since("s").unwrap();
            let adv = |m: &Model| {
                let mut out = Model::new();
                for ((k, v, t), d) in m {
                    *out.entry((*k, *v, (*t).max(since))).or_default() += d;
                }
                out.retain(|_, d| *d != 0);
                out
            };
            assert_eq!(adv(&got), adv(&expect), "incarnation {inc} after a reopen");
            assert!(store.upper("s").unwrap() <= upper, "incarnation {inc}");
            if durable {
                assert_eq!(
                    store.upper("s").unwrap(),
                    upper,
                    "incarnation {inc}: logged seals"
                );
            }
        }
        store.drop_stream("s").unwrap();
        assert!(matches!(store.snapshot("s"), Err(Error::UnknownStream { .. })));
    }
    // The last incarnation's files are gone once merges settle: no batch file is named by no stream.
    store.create_stream("s", StreamOptions::default()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 0);
    assert!(snapshot(&store, "s").unwrap().is_empty());
    stop.store(true, Ordering::Relaxed);
    let reads = reader.join().unwrap();
    *shared.write().unwrap() = None;
    assert!(reads > 0);
    assert!(total_reopens > 0);
    drop(store);
    let store = Store::open_with(tmp.path(), options()).unwrap();
    assert!(snapshot(&store, "s").unwrap().is_empty());
    assert_eq!(store.upper("s").unwrap(), 0);
    assert_eq!(store.background_error(), None);
}
