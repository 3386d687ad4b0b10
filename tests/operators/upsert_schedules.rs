//! Adversarial round 9: the de-upsert operator (two workers) through random schedules of runs: each run
//! replays from the agreed `resume_at` and feeds a random number of rounds, with records at future times
//! (beyond the input's frontier, so stashed when a run stops), the same key upserted several times at one
//! time (the last wins), deletions of absent keys, and ends with a stop (dataflow dropped, input open) or
//! a close (the source ends). Every run's output accumulates, at every time it saw complete from its
//! resume point on, to the upserted state at that time.

use crate::common;

use common::runs::{end_run, step_past};

use common::Rng;
use ddpersist::operators::{Upsert, UpsertPersisted};
use ddpersist::Store;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Rec = Upsert<u32, u32, u64>;
type Out = Arc<Mutex<Vec<((u32, u32), u64, i64)>>>;

/// The records the source produces in round `round` (deterministic): `(record, index)`; keys `k` are sent
/// by worker `k % 2`, so a key's records reach its worker in the order produced.
fn round_records(seed: u64, round: u64) -> Vec<Rec> {
    let mut rng = Rng(seed * 999_983 + round * 13 + 7);
    (0..7)
        .map(|_| {
            let k = rng.below(6) as u32;
            let v = if rng.below(4) == 0 {
                None
            } else {
                Some(rng.below(3) as u32)
            };
            let t = round + if rng.below(4) == 0 { 1 + rng.below(3) } else { 0 };
            (k, v, t)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Stop,
    Close,
}

fn run(dir: &Path, seed: u64, to: u64, end: End, out: &Out) -> u64 {
    let store = Store::open(dir).unwrap();
    let out = out.clone();
    let froms: Vec<u64> = timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let o = out.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<Rec>>();
            let (coll, handle) = ups.upsert_persisted(&store, "u").unwrap();
            coll.inner
                .inspect(move |x| o.lock().unwrap().push(*x))
                .probe_with(&probe);
            (input, handle)
        });
        let from = handle.resume_at();
        input.advance_to(from);
        for round in from.saturating_sub(3)..to {
            for (k, v, t) in round_records(seed, round) {
                if k as usize % 2 == worker.index() && t >= from {
                    input.send((k, v, t));
                }
            }
            if round < from {
                continue;
            }
            input.advance_to(round + 1);
            step_past(worker, &probe, round + 1, &format!("at round {round}"));
        }
        if matches!(end, End::Stop) {
            step_past(worker, &probe, from, "replaying");
        }
        end_run(worker, input, &probe, matches!(end, End::Close));
        assert_eq!(handle.error(), None);
        from
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert_eq!(froms[0], froms[1]);
    froms[0]
}

fn acc(out: &Out, at: u64) -> BTreeMap<(u32, u32), i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in out.lock().unwrap().iter() {
        if *t <= at {
            *acc.entry(*d).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// The state at `at` from `applied`: records in the order the operator applies them (by time, then as
/// produced).
fn state(applied: &[(u64, u64, usize, Rec)], at: u64) -> BTreeMap<(u32, u32), i64> {
    let mut sorted: Vec<_> = applied.iter().filter(|r| r.0 <= at).collect();
    sorted.sort_by_key(|r| (r.0, r.1, r.2));
    let mut s: BTreeMap<u32, u32> = BTreeMap::new();
    for (_, _, _, (k, v, _)) in sorted {
        match v {
            Some(v) => {
                s.insert(*k, *v);
            }
            None => {
                s.remove(k);
            }
        }
    }
    s.into_iter().map(|(k, v)| ((k, v), 1)).collect()
}

fn schedule(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed + 100);
    // Records applied so far: (time, round produced, index in round, record).
    let mut applied: Vec<(u64, u64, usize, Rec)> = Vec::new();
    let mut next_from = 0u64;
    let mut log = Vec::new();
    for run_no in 0..6 {
        let to = next_from + rng.below(5);
        let end = if rng.below(3) == 0 { End::Close } else { End::Stop };
        let out: Out = Arc::default();
        let from = run(dir.path(), seed, to, end, &out);
        log.push((from, to, end));
        assert_eq!(
            from, next_from,
            "seed {seed} run {run_no}: resume point ({log:?})"
        );
        applied.retain(|r| r.0 < from);
        for round in from.saturating_sub(3)..to {
            for (i, r) in round_records(seed, round).into_iter().enumerate() {
                if r.2 >= from {
                    applied.push((r.2, round, i, r));
                }
            }
        }
        // The times the run saw complete: after a close, every time up to one past the last record
        // applied (where the operator seals a finished stream); after a stop, those below its frontier.
        let top = match end {
            End::Close => applied.iter().map(|r| r.0 + 1).max().unwrap_or(0).max(to),
            End::Stop => to.max(from),
        };
        for at in from..top {
            assert_eq!(
                acc(&out, at),
                state(&applied, at),
                "seed {seed} run {run_no} ({log:?}): time {at}"
            );
        }
        next_from = top;
    }
}

#[test]
fn random_run_schedules_of_the_de_upsert_operator() {
    let seeds: u64 = std::env::var("ADV9_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=seeds {
        schedule(seed);
    }
}
