//! `upsert_persisted` fed through timely's unordered input: upserts of many times open at once, sent
//! in reverse time order and interleaved (a key's later value arrives before its earlier one), several
//! messages per time, capabilities released out of order; 1 and 3 workers; then a second computation
//! over the reopened store, again unordered, from `resume_at()`. The output must accumulate to the
//! model's state at every time.

use crate::common::Rng;
use ddpersist::operators::UpsertPersisted;
use ddpersist::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::vec::UnorderedInput;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type In = (u32, Option<u32>, u64);
type Out = ((u32, u32), u64, i64);

fn upserts(seed: u64, from: u64, to: u64) -> Vec<In> {
    let mut rng = Rng(seed);
    let mut out = Vec::new();
    for t in from..to {
        for _ in 0..rng.below(10) {
            let v = if rng.below(4) == 0 {
                None
            } else {
                Some(rng.below(4) as u32)
            };
            out.push((rng.below(9) as u32, v, t));
        }
    }
    out
}

fn state_at(input: &[In], t: u64) -> BTreeMap<u32, u32> {
    let mut s = BTreeMap::new();
    for (k, v, _) in input.iter().filter(|u| u.2 <= t) {
        match v {
            Some(v) => s.insert(*k, *v),
            None => s.remove(k),
        };
    }
    s
}

fn accumulate(out: &[Out], t: u64) -> BTreeMap<u32, u32> {
    let mut acc: BTreeMap<(u32, u32), i64> = BTreeMap::new();
    for ((k, v), _, d) in out.iter().filter(|u| u.1 <= t) {
        *acc.entry((*k, *v)).or_insert(0) += d;
    }
    let mut s = BTreeMap::new();
    for ((k, v), d) in acc.into_iter().filter(|x| x.1 != 0) {
        assert_eq!(d, 1, "({k}, {v}) multiplicity {d} at {t}");
        assert!(s.insert(k, v).is_none(), "{k} has two values at {t}");
    }
    s
}

/// One computation: all of `input` (times `>= resume`) sent through an unordered input on worker 0, times
/// in reverse order, each time's upserts in two messages sent apart; returns the output and resume point.
fn execute(store: &Store, workers: usize, input: Arc<Vec<In>>, close: bool) -> (Vec<Out>, u64) {
    let out: Arc<Mutex<Vec<Out>>> = Arc::default();
    let resume = Arc::new(Mutex::new(0u64));
    let (s, o, r) = (store.clone(), out.clone(), resume.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let ((mut handle, cap), handle_u) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_unordered_input::<In>();
            let (c, u) = stream.upsert_persisted(&s, "u").unwrap();
            c.inner
                .inspect(move |x| o.lock().unwrap().push(*x))
                .probe_with(&probe);
            (input, u)
        });
        let from = handle_u.resume_at();
        *r.lock().unwrap() = from;
        let end = input.iter().map(|u| u.2 + 1).max().unwrap_or(from).max(from);
        let mut caps: Vec<_> = (from..end).map(|t| cap.delayed(&t)).collect();
        let final_cap = cap.delayed(&end);
        drop(cap);
        if worker.index() == 0 {
            // Reverse time order; first halves, then second halves.
            for half in 0..2 {
                for t in (from..end).rev() {
                    let ups: Vec<In> = input.iter().filter(|u| u.2 == t).copied().collect();
                    let (a, b) = ups.split_at(ups.len() / 2);
                    let part = if half == 0 { a } else { b };
                    if !part.is_empty() {
                        handle
                            .activate()
                            .session(&caps[(t - from) as usize])
                            .give_iterator(part.iter().copied());
                    }
                    worker.step();
                }
            }
        }
        // Release capabilities out of order: odd times first, then even.
        let mut odd = Vec::new();
        let mut even = Vec::new();
        for (i, c) in caps.drain(..).enumerate() {
            if i % 2 == 1 {
                odd.push(c)
            } else {
                even.push(c)
            }
        }
        drop(odd);
        for _ in 0..5 {
            worker.step();
        }
        drop(even);
        if close {
            drop(final_cap);
            drop(handle);
            while !probe.done() {
                worker.step();
            }
        } else {
            while probe.less_than(&end) {
                worker.step();
            }
            drop(final_cap);
            // Leave without closing: drop the dataflow.
            crate::common::drop_dataflows(worker);
        }
        assert_eq!(handle_u.error(), None);
    })
    .unwrap();
    let out = out.lock().unwrap().clone();
    let from = *resume.lock().unwrap();
    (out, from)
}

fn run(seed: u64, workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let first = upserts(seed, 0, 8);
    let store = Store::open(dir.path()).unwrap();
    let (out, from) = execute(&store, workers, Arc::new(first.clone()), false);
    assert_eq!(from, 0);
    for t in 0..8 {
        assert_eq!(
            accumulate(&out, t),
            state_at(&first, t),
            "seed {seed}, {workers} workers, first run at {t}"
        );
    }
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let mut all = first.clone();
    all.extend(upserts(seed + 1000, 8, 16));
    let second: Vec<In> = all.iter().filter(|u| u.2 >= 8).copied().collect();
    let (out, from) = execute(&store, workers, Arc::new(second), true);
    assert_eq!(from, 8, "seed {seed}, {workers} workers");
    for t in 7..16 {
        assert_eq!(
            accumulate(&out, t),
            state_at(&all, t),
            "seed {seed}, {workers} workers, second run at {t}"
        );
    }
}

#[test]
fn upsert_unordered_one_worker() {
    for seed in 1..4 {
        run(seed, 1);
    }
}

#[test]
fn upsert_unordered_three_workers() {
    for seed in 11..13 {
        run(seed, 3);
    }
}
