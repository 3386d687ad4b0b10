//! From adversarial round 17 (no fault found). `upsert_persisted` against an explicit model across many restarts: `(String, u8)` keys, `Vec<u8>` vals
//! (empty, with zero bytes), `u32` times that jump and repeat, records dated ahead of their round, a key
//! upserted several times in one time (the last sent wins), deletes of absent keys, re-insertion of the
//! value a key already has, three workers fed from one; runs that close, drop, or abandon rounds. The
//! de-upserted collection and a persisted arrangement of it (a chain) with `count_total` are compared
//! with the model at every time from each run's resume point.

use crate::common::compare::{deadline, Log};
use crate::common::Rng;
use crate::dd_dropin_jumping_times::End;
use ddpersist::operators::{ArrangeTyped, UpsertPersisted};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;

type K = (String, u8);
type V = Vec<u8>;
type Rec = (K, Option<V>, u32);

/// Rounds: `(round time, records)`; times strictly increase between blocks of 4 rounds.
fn plan(seed: u64, rounds: usize) -> Vec<(u32, Vec<Rec>)> {
    let mut rng = Rng(seed);
    let mut times = Vec::new();
    let mut t = 0u32;
    for r in 0..rounds + 4 {
        if r > 0 {
            t += if r % 4 == 0 {
                if rng.below(3) == 0 {
                    1 << rng.below(24)
                } else {
                    1
                }
            } else {
                rng.below(2) as u32
            };
        }
        times.push(t);
    }
    let mut rng = Rng(seed ^ 0xFEED);
    (0..rounds)
        .map(|r| {
            let block_end = (r / 4) * 4 + 3;
            let recs = (0..rng.below(7))
                .map(|_| {
                    let key = (
                        ["", "a", "a\0", "b"][rng.below(4) as usize].to_string(),
                        rng.below(2) as u8,
                    );
                    let val = match rng.below(5) {
                        0 => None,
                        1 => Some(vec![]),
                        2 => Some(vec![0, 0]),
                        _ => Some(vec![rng.below(3) as u8]),
                    };
                    let target = r + rng.below(3) as usize;
                    let time = times[target.min(block_end)];
                    (key, val, time)
                })
                .collect();
            (times[r], recs)
        })
        .collect()
}

/// The model's collection at `at`: records applied by time, then in the order they were sent.
fn model(rounds: &[(u32, Vec<Rec>)], at: u32) -> BTreeMap<String, i64> {
    let mut recs: Vec<(u32, usize, &Rec)> = Vec::new();
    for (_, rs) in rounds {
        for r in rs {
            recs.push((r.2, recs.len(), r));
        }
    }
    recs.sort_by_key(|x| (x.0, x.1));
    let mut state: BTreeMap<K, V> = BTreeMap::new();
    for (t, _, (k, v, _)) in recs {
        if t > at {
            break;
        }
        match v {
            Some(v) => state.insert(k.clone(), v.clone()),
            None => state.remove(k),
        };
    }
    state.into_iter().map(|kv| (format!("{kv:?}"), 1)).collect()
}

fn acc(log: &Log<String, u32>, at: u32) -> BTreeMap<String, i64> {
    crate::common::compare::at(log, &at)
}

fn run(
    dir: &Path,
    workers: usize,
    rounds: &[(u32, Vec<Rec>)],
    end: usize,
    how: End,
) -> (u32, Log<String, u32>, Log<String, u32>) {
    let store = crate::dd_dropin_jumping_times::open_tiny(dir);
    let rounds = rounds.to_vec();
    let (out, counts): (Log<String, u32>, Log<String, u32>) = Default::default();
    let (o, c) = (out.clone(), counts.clone());
    let resume = Arc::new(Mutex::new(u32::MAX));
    let r = resume.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (o, c, s) = (o.clone(), c.clone(), store.clone());
        let (mut input, from) = worker.dataflow::<u32, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<Rec>>();
            let (coll, h) = ups.upsert_persisted(&s, "u").unwrap();
            let arranged = coll.clone().arrange_by_key_persisted(&s, "u_arr").unwrap();
            let from = h.resume_at().min(arranged.handle().unwrap().resume_at());
            coll.map(|kv| format!("{kv:?}"))
                .inner
                .inspect(move |(x, t, d)| o.lock().unwrap().push((x.clone(), *t, *d)))
                .probe_with(&probe);
            arranged
                .count_total()
                .map(|x| format!("{x:?}"))
                .inner
                .inspect(move |(x, t, d)| c.lock().unwrap().push((x.clone(), *t, *d as i64)))
                .probe_with(&probe);
            (input, u32::try_from(from).unwrap())
        });
        {
            let mut r = r.lock().unwrap();
            assert!(*r == u32::MAX || *r == from);
            *r = from;
        }
        input.advance_to(from);
        let alive = deadline(60);
        let feed = |input: &mut timely::dataflow::operators::core::input::Handle<u32, _>, i: usize| {
            let (time, recs) = &rounds[i];
            if *time > *input.time() {
                input.advance_to(*time);
            }
            for rec in recs {
                if rec.2 >= from {
                    input.send(rec.clone());
                }
            }
        };
        let feeds = worker.index() == 0;
        for i in 0..end {
            if feeds {
                feed(&mut input, i);
            } else if rounds[i].0 > *input.time() {
                input.advance_to(rounds[i].0);
            }
            let next = rounds.get(i + 1).map_or(rounds[i].0 + 1, |r| r.0);
            if next > *input.time() {
                input.advance_to(next);
            }
            input.flush();
            if next > rounds[i].0 {
                worker.step_while(|| alive() && probe.less_than(&next));
            }
        }
        match how {
            End::Close => {}
            End::Drop => crate::common::drop_dataflows(worker),
            End::Abandon(n, steps) => {
                for i in end..(end + n).min(rounds.len()) {
                    if feeds {
                        feed(&mut input, i);
                    }
                    let next = rounds.get(i + 1).map_or(rounds[i].0 + 1, |r| r.0);
                    if next > *input.time() {
                        input.advance_to(next);
                    }
                    input.flush();
                }
                for _ in 0..steps {
                    worker.step();
                }
                crate::common::drop_dataflows(worker);
            }
        }
    })
    .unwrap();
    let from = *resume.lock().unwrap();
    (from, out, counts)
}

fn scenario(seed: u64, workers: usize, ends: &[(usize, End)]) {
    let total = ends.iter().map(|e| e.0).max().unwrap() + 8;
    let rounds = plan(seed, total);
    let dir = tempfile::tempdir().unwrap();
    for (run_no, &(end, how)) in ends.iter().enumerate() {
        let (from, out, counts) = run(dir.path(), workers, &rounds, end, how);
        let completed = rounds.get(end).map_or(rounds[end - 1].0 + 1, |r| r.0);
        let mut ts: BTreeSet<u32> = rounds[..end]
            .iter()
            .flat_map(|(t, rs)| std::iter::once(*t).chain(rs.iter().map(|r| r.2)))
            .collect();
        ts.insert(from);
        for t in ts.into_iter().filter(|t| *t >= from && *t < completed) {
            let want = model(&rounds[..end], t);
            assert_eq!(
                acc(&out, t),
                want,
                "seed {seed}, run {run_no} ({how:?} at {end}, resume {from}): upserted collection at {t}"
            );
            let mut per_key: BTreeMap<String, i64> = BTreeMap::new();
            for kv in want.keys() {
                // "((key, n), val)" -> key part
                let key = kv[1..kv.rfind(", [").unwrap()].to_string();
                *per_key.entry(key).or_default() += 1;
            }
            let want_counts: BTreeMap<String, i64> = per_key
                .into_iter()
                .map(|(k, n)| (format!("({k}, {n})"), 1))
                .collect();
            assert_eq!(
                acc(&counts, t),
                want_counts,
                "seed {seed}, run {run_no}: count_total of the persisted upsert output at {t}"
            );
        }
    }
}

#[test]
fn upserts_across_mixed_restarts_three_workers() {
    let ends = [
        (4, End::Drop),
        (8, End::Close),
        (12, End::Abandon(2, 3)),
        (16, End::Abandon(3, 40)),
        (20, End::Close),
        (24, End::Drop),
        (28, End::Close),
    ];
    for seed in 0..3 {
        scenario(seed, 3, &ends);
    }
}

#[test]
fn upserts_across_mixed_restarts_one_worker() {
    let ends = [
        (4, End::Close),
        (8, End::Abandon(2, 1)),
        (12, End::Close),
        (16, End::Drop),
        (20, End::Abandon(1, 0)),
    ];
    for seed in 5..8 {
        scenario(seed, 1, &ends);
    }
}
