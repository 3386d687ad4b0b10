//! `upsert_persisted` against a model map: many keys per time, several upserts of one key within a
//! time (the last wins), deletes and re-inserts, at `u32` and `u64` times with one and three workers;
//! the dataflow is dropped (not closed) at arbitrary points, part way through a time's input, and rebuilt
//! in the same process, fed from `resume_at()`. The last run's output (the persisted state, then the new
//! upserts) must accumulate to the model's state at every time from its resume point on, every
//! multiplicity 1, and the store's state streams must hold the final state.

use crate::common;

use common::Rng;
use ddpersist::operators::{worker_stream_id, PersistTime, UpsertPersisted};
use ddpersist::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

const TIMES: u64 = 24;

/// An output update, at store times.
type Out = ((u32, u64), u64, i64);
/// The upserts' input handle at times `T`.
type Upserts<T> = InputHandle<T, CapacityContainerBuilder<Vec<(u32, Option<u64>, T)>>>;

/// `(key, value or delete, time)`, in send order; several per key and time.
fn upserts(seed: u64) -> Vec<(u32, Option<u64>, u64)> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for t in 0..TIMES {
        for _ in 0..rng.below(25) {
            let key = rng.below(30) as u32;
            let val = match rng.below(4) {
                0 => None,
                _ => Some(rng.below(5)),
            };
            out.push((key, val, t));
        }
    }
    out
}

fn state_at(input: &[(u32, Option<u64>, u64)], t: u64) -> BTreeMap<u32, u64> {
    let mut state = BTreeMap::new();
    for (k, v, _) in input.iter().filter(|u| u.2 <= t) {
        match v {
            Some(v) => state.insert(*k, *v),
            None => state.remove(k),
        };
    }
    state
}

fn accumulate(updates: &[((u32, u64), u64, i64)], t: u64) -> BTreeMap<u32, u64> {
    let mut acc: BTreeMap<(u32, u64), i64> = BTreeMap::new();
    for ((k, v), _, d) in updates.iter().filter(|u| u.1 <= t) {
        *acc.entry((*k, *v)).or_insert(0) += d;
    }
    let mut state = BTreeMap::new();
    for ((k, v), d) in acc.into_iter().filter(|(_, d)| *d != 0) {
        assert_eq!(d, 1, "({k}, {v}) has multiplicity {d} at {t}");
        assert!(state.insert(k, v).is_none(), "{k} has two values at {t}");
    }
    state
}

/// Runs 1..: each stops at a cut (after `cut.1` of time `cut.0`'s upserts are sent, not sealed) and is
/// dropped; the last one runs to the end and closes its input. Returns the last run's output (as store
/// times) and its resume point.
fn run<T: PersistTime>(workers: usize, seed: u64, cuts: &[(u64, usize)]) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let input = Arc::new(upserts(seed));
    let last: Arc<Mutex<Vec<Out>>> = Arc::default();
    let resume = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(Barrier::new(workers));
    let cuts_v = cuts.to_vec();
    let (s, i, l, r, b) = (
        store.clone(),
        input.clone(),
        last.clone(),
        resume.clone(),
        barrier.clone(),
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        let cuts = &cuts_v;
        for run in 0..=cuts.len() {
            let cut = cuts.get(run).copied();
            let mut handle: Upserts<T> = InputHandle::new();
            let probe = ProbeHandle::new();
            let out = Arc::new(Mutex::new(Vec::new()));
            let o = out.clone();
            let upsert = worker.dataflow::<T, _, _>(|scope| {
                let (collection, upsert) = scope.input_from(&mut handle).upsert_persisted(&s, "u").unwrap();
                collection
                    .inner
                    .inspect(move |x| o.lock().unwrap().push(*x))
                    .probe_with(&probe);
                upsert
            });
            let from = upsert.resume_at();
            let t_of = |t: u64| T::from_u64(t).unwrap();
            handle.advance_to(t_of(from));
            let end = cut.map_or(TIMES, |c| c.0);
            for t in from..end {
                if worker.index() == 0 {
                    for u in i.iter().filter(|u| u.2 == t) {
                        handle.send((u.0, u.1, t_of(t)));
                    }
                }
                handle.advance_to(t_of(t + 1));
                // Sometimes run ahead without waiting for the output.
                if t % 3 != 1 {
                    while probe.less_than(&t_of(t + 1)) {
                        worker.step();
                    }
                }
            }
            assert_eq!(upsert.error(), None);
            match cut {
                Some((t, part)) => {
                    if worker.index() == 0 {
                        for u in i.iter().filter(|u| u.2 == t).take(part) {
                            handle.send((u.0, u.1, t_of(t)));
                        }
                    }
                    handle.flush();
                    for _ in 0..20 {
                        worker.step();
                    }
                    b.wait();
                    common::drop_dataflows(worker);
                    drop(handle);
                    b.wait();
                }
                None => {
                    drop(handle);
                    while !probe.done() {
                        worker.step();
                    }
                    assert_eq!(upsert.error(), None);
                    let mine: Vec<_> = out
                        .lock()
                        .unwrap()
                        .iter()
                        .map(|((k, v), t, d): &((u32, u64), T, i64)| ((*k, *v), t.to_u64(), *d))
                        .collect();
                    l.lock().unwrap().extend(mine);
                    *r.lock().unwrap() = from;
                }
            }
        }
    })
    .unwrap();
    let out = last.lock().unwrap().clone();
    let from = *resume.lock().unwrap();
    for t in from..TIMES {
        assert_eq!(
            accumulate(&out, t),
            state_at(&input, t),
            "the last run's output at {t} (resumed at {from}, cuts {cuts:?}, {workers} workers)"
        );
    }
    // The state streams hold the final state.
    let mut persisted = Vec::new();
    for w in 0..workers {
        let snap = store.snapshot(&worker_stream_id("u", w, workers)).unwrap();
        for (k, v, t, d) in snap.decode::<u32, u64>().unwrap() {
            persisted.push(((k, v), t, d));
        }
    }
    assert_eq!(accumulate(&persisted, u64::MAX - 1), state_at(&input, TIMES));
}

#[test]
fn upsert_u64_one_worker_dropped_at_arbitrary_points() {
    run::<u64>(1, 1, &[(3, 4), (3, 0), (9, 100), (15, 2)]);
}

#[test]
fn upsert_u32_three_workers_dropped_at_arbitrary_points() {
    run::<u32>(3, 2, &[(0, 3), (5, 7), (6, 1), (13, 0), (20, 9)]);
}

#[test]
fn upsert_u64_three_workers_many_seeds() {
    for seed in 3..6 {
        let c = seed * 2;
        run::<u64>(3, seed, &[(c, 5), (c + 3, 2), (c + 4, 50)]);
    }
}
