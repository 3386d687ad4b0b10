//! `upsert_persisted` against a model, with keys and values at the codec's edges: empty strings, strings
//! holding NUL bytes and 0xff-ish chars, values `Option<String>` (so an upsert `Some(None)` sets the value
//! `None`, distinct from the delete `None`), re-inserts of the value a key holds already (no change),
//! deletes of absent keys, many upserts of one key within one time ending where it started. Runs are cut
//! (dataflow dropped part way through a time's input) and rebuilt in the same process, or the whole
//! timely computation ends and the store is reopened; 1–3 workers. The last run's output must accumulate
//! to the model's state at every time from its resume point on, each row with multiplicity 1.

use crate::common::{self, Rng};
use ddpersist::operators::{worker_stream_id, UpsertPersisted};
use ddpersist::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

type K = String;
type V = Option<String>;
type In = (K, Option<V>, u64);
type Out = ((K, V), u64, i64);

const TIMES: u64 = 16;

fn key(i: u64) -> K {
    [
        "",
        "\0",
        "\0\0",
        "a",
        "a\0",
        "a\0b",
        "\u{ff}",
        "\u{10ffff}",
        "b",
        "ab",
    ][i as usize % 10]
        .to_string()
}

fn val(i: u64) -> V {
    match i % 5 {
        0 => None,
        1 => Some(String::new()),
        2 => Some("\0".into()),
        3 => Some("x".into()),
        _ => Some("x\0".into()),
    }
}

fn upserts(seed: u64) -> Vec<In> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for t in 0..TIMES {
        for _ in 0..rng.below(12) {
            let k = key(rng.below(10));
            let v = match rng.below(4) {
                0 => None,
                _ => Some(val(rng.below(5))),
            };
            out.push((k.clone(), v, t));
            if rng.below(6) == 0 {
                // The same key again within the time: set something else, then back.
                out.push((k.clone(), Some(Some("tmp".into())), t));
                out.push((k, None, t));
            }
        }
    }
    out
}

fn state_at(input: &[In], t: u64) -> BTreeMap<K, V> {
    let mut state = BTreeMap::new();
    for (k, v, _) in input.iter().filter(|u| u.2 <= t) {
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
    state
}

fn accumulate(updates: &[Out], t: u64) -> BTreeMap<K, V> {
    let mut acc: BTreeMap<(K, V), i64> = BTreeMap::new();
    for ((k, v), _, d) in updates.iter().filter(|u| u.1 <= t) {
        *acc.entry((k.clone(), v.clone())).or_insert(0) += d;
    }
    let mut state = BTreeMap::new();
    for ((k, v), d) in acc.into_iter().filter(|(_, d)| *d != 0) {
        assert_eq!(d, 1, "({k:?}, {v:?}) has multiplicity {d} at {t}");
        assert!(
            state.insert(k.clone(), v).is_none(),
            "{k:?} has two values at {t}"
        );
    }
    state
}

/// One timely computation over `store`: runs cut at `cuts` (time, upserts of it sent), each dropped and
/// rebuilt; the last one runs to `end` (closing the input if `end == TIMES`, else dropping it at `end`
/// with its times complete). Returns the last run's output and resume point.
fn execute(
    store: &Store,
    workers: usize,
    input: &Arc<Vec<In>>,
    cuts: &[(u64, usize)],
    end: u64,
) -> (Vec<Out>, u64) {
    let last: Arc<Mutex<Vec<Out>>> = Arc::default();
    let resume = Arc::new(Mutex::new(u64::MAX));
    let barrier = Arc::new(Barrier::new(workers));
    let (s, i, l, r, b, cuts) = (
        store.clone(),
        input.clone(),
        last.clone(),
        resume.clone(),
        barrier,
        cuts.to_vec(),
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        for run in 0..=cuts.len() {
            let cut = cuts.get(run).copied();
            let mut handle: InputHandle<u64, CapacityContainerBuilder<Vec<In>>> = InputHandle::new();
            let probe = ProbeHandle::new();
            let out = Arc::new(Mutex::new(Vec::new()));
            let o = out.clone();
            let upsert = worker.dataflow::<u64, _, _>(|scope| {
                let (collection, upsert) = scope.input_from(&mut handle).upsert_persisted(&s, "u").unwrap();
                collection
                    .inner
                    .inspect(move |x| o.lock().unwrap().push(x.clone()))
                    .probe_with(&probe);
                upsert
            });
            let from = upsert.resume_at();
            handle.advance_to(from);
            let stop = cut.map_or(end, |c| c.0);
            for t in from..stop {
                if worker.index() == 0 {
                    for u in i.iter().filter(|u| u.2 == t) {
                        handle.send(u.clone());
                    }
                }
                handle.advance_to(t + 1);
                if t.is_multiple_of(2) {
                    while probe.less_than(&(t + 1)) {
                        worker.step();
                    }
                }
            }
            assert_eq!(upsert.error(), None);
            match cut {
                Some((t, part)) => {
                    if worker.index() == 0 {
                        for u in i.iter().filter(|u| u.2 == t).take(part) {
                            handle.send(u.clone());
                        }
                    }
                    handle.flush();
                    for _ in 0..10 {
                        worker.step();
                    }
                    b.wait();
                    common::drop_dataflows(worker);
                    drop(handle);
                    b.wait();
                }
                None if end == TIMES => {
                    drop(handle);
                    while !probe.done() {
                        worker.step();
                    }
                    assert_eq!(upsert.error(), None);
                    let mut r = r.lock().unwrap();
                    *r = (*r).min(from);
                    l.lock().unwrap().extend(out.lock().unwrap().drain(..));
                }
                None => {
                    while probe.less_than(&end) {
                        worker.step();
                    }
                    assert_eq!(upsert.error(), None);
                    {
                        let mut r = r.lock().unwrap();
                        *r = (*r).min(from);
                    }
                    l.lock().unwrap().extend(out.lock().unwrap().drain(..));
                    b.wait();
                    common::drop_dataflows(worker);
                    drop(handle);
                    b.wait();
                }
            }
        }
    })
    .unwrap();
    let out = last.lock().unwrap().clone();
    let from = *resume.lock().unwrap();
    (out, from)
}

fn check(input: &[In], out: &[Out], from: u64, to: u64, what: &str) {
    // From one before the resume point (the replayed state) on.
    for t in from.saturating_sub(1)..to {
        assert_eq!(
            accumulate(out, t),
            state_at(input, t),
            "{what}: state at {t} (resumed at {from})"
        );
    }
}

fn consolidated(out: Vec<Out>) -> Vec<Out> {
    let mut acc: BTreeMap<((K, V), u64), i64> = BTreeMap::new();
    for (d, t, r) in out {
        *acc.entry((d, t)).or_insert(0) += r;
    }
    acc.into_iter()
        .filter(|x| x.1 != 0)
        .map(|((d, t), r)| (d, t, r))
        .collect()
}

fn run(seed: u64, workers: usize, cuts: &[(u64, usize)], reopen_at: Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let input = Arc::new(upserts(seed));
    let what = format!("seed {seed}, {workers} workers, cuts {cuts:?}, reopen at {reopen_at:?}");
    if let Some(at) = reopen_at {
        let store = Store::open(dir.path()).unwrap();
        let (out, from) = execute(&store, workers, &input, &[], at);
        check(&input, &out, from, at, &format!("{what}, first computation"));
    }
    let store = Store::open(dir.path()).unwrap();
    let (out, from) = execute(&store, workers, &input, cuts, TIMES);
    check(&input, &out, from, TIMES, &what);
    // The state streams hold the final state.
    let mut held: Vec<((K, V), u64, i64)> = Vec::new();
    for w in 0..workers {
        for (k, v, t, d) in store
            .snapshot(&worker_stream_id("u", w, workers))
            .unwrap()
            .decode::<K, V>()
            .unwrap()
        {
            held.push(((k, v), t, d));
        }
    }
    assert_eq!(
        accumulate(&held, u64::MAX),
        state_at(&input, TIMES),
        "{what}: the stored state"
    );
}

#[test]
fn upsert_edge_values_one_worker() {
    for seed in 1..4 {
        run(seed, 1, &[], None);
        run(seed, 1, &[(3, 2), (3, 0), (9, 5)], None);
        run(seed, 1, &[(6, 1)], Some(4));
    }
}

#[test]
fn upsert_edge_values_two_workers() {
    for seed in 11..13 {
        run(seed, 2, &[(2, 3), (7, 100)], None);
        run(seed, 2, &[(10, 2)], Some(5));
    }
}

#[test]
fn upsert_edge_values_three_workers() {
    for seed in 21..23 {
        run(seed, 3, &[(1, 1), (1, 4), (12, 0)], Some(8));
    }
}

/// A key set to a value and then to the same value again at later times emits nothing more; a delete
/// of an absent key emits nothing; within one time the last upsert wins; across a reopen.
#[test]
fn upsert_no_change_emits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input: Arc<Vec<In>> = Arc::new(vec![
        ("k".into(), Some(Some("v".into())), 0),
        ("gone".into(), None, 0),
        ("k".into(), Some(Some("v".into())), 1),
        ("k".into(), Some(None), 2),
        ("k".into(), Some(Some("w".into())), 2),
        ("k".into(), Some(Some("v".into())), 2),
        ("k".into(), None, 3),
        ("k".into(), None, 4),
        ("k".into(), Some(None), 5),
    ]);
    let store = Store::open(dir.path()).unwrap();
    let (out, _) = execute(&store, 1, &input, &[], 3);
    assert_eq!(
        consolidated(out),
        vec![(("k".into(), Some("v".into())), 0, 1)],
        "before the reopen"
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let (out, from) = execute(&store, 1, &input, &[], TIMES);
    assert_eq!(from, 3);
    assert_eq!(
        consolidated(out.into_iter().filter(|u| u.1 >= 3).collect()),
        vec![
            (("k".into(), None), 5, 1),
            (("k".into(), Some("v".into())), 3, -1)
        ],
        "after the reopen"
    );
}
