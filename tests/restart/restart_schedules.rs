//! Adversarial round 9: a persisted arrangement (two workers, replayable input) through random schedules of
//! runs: each run feeds a random number of rounds from the agreed resume point, with some updates at
//! future times (beyond the input's frontier), and ends with a stop (dataflow dropped, input open), a
//! close (the source ends: it continues at the resume point next time) or after reading only. Every run's
//! `as_collection`, `count_total` and a `join` against itself accumulate, at every time from its resume
//! point on, to exactly what the source produced up to that time (the model drops nothing below `R`, and
//! keeps what a close skipped out: a source that ends skips nothing it produced).
#![allow(clippy::type_complexity)]

use crate::common;

use common::runs::{end_run, step_past};

use common::Rng;
use ddpersist::operators::{ArrangeTyped, PersistOptions};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (u32, u32);
/// What the source produces: `(row, time, diff)`, deterministic per seed and round (the replay of a round
/// produces the same updates, with the same future times).
type Up = (Row, u64, isize);

fn round_updates(seed: u64, round: u64) -> Vec<Up> {
    let mut rng = Rng(seed * 1_000_003 + round * 7 + 1);
    (0..6)
        .map(|_| {
            let row = (rng.below(6) as u32, rng.below(3) as u32);
            let future = if rng.below(5) == 0 { 1 + rng.below(4) } else { 0 };
            let d = [1, 1, -1, 2][rng.below(4) as usize];
            (row, round + future, d)
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Stop,
    Close,
}

type Out = Arc<Mutex<Vec<(String, u64, i64)>>>;

/// One run: rounds `from..to` fed (`from` the agreed resume point), ended by `end`. Returns `from`.
fn run(dir: &Path, seed: u64, to: u64, end: End, durable: bool, out: &Out) -> u64 {
    let store = Store::open_with(
        dir,
        Options {
            merge_fan_in: 2,
            block_target_bytes: 128,
            ..Options::default()
        },
    )
    .unwrap();
    let out = out.clone();
    let froms: Vec<u64> = timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let o = out.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<Row, isize>();
            let options = PersistOptions {
                durable,
                ..PersistOptions::default()
            };
            let p = c.arrange_by_key_persisted_with(&store, "x", options).unwrap();
            let handle = p.handle().unwrap().clone();
            let o1 = o.clone();
            p.clone()
                .as_collection(|k, v| format!("row {k} {v}"))
                .inner
                .inspect(move |(d, t, r)| o1.lock().unwrap().push((d.clone(), *t, *r as i64)))
                .probe_with(&probe);
            let o2 = o.clone();
            p.clone()
                .count_total()
                .inner
                .inspect(move |((k, c), t, r)| {
                    o2.lock().unwrap().push((format!("count {k} {c}"), *t, *r as i64))
                })
                .probe_with(&probe);
            let o3 = o.clone();
            let other = p.clone().as_collection(|k: &u32, v: &u32| (*k, *v + 10));
            p.join(other)
                .inner
                .inspect(move |((k, (a, b)), t, r)| {
                    o3.lock()
                        .unwrap()
                        .push((format!("join {k} {a} {b}"), *t, *r as i64))
                })
                .probe_with(&probe);
            (input, handle)
        });
        // A replayable source replays from `resume_at`; a durable stream's source continues with new
        // updates only, at `greatest_upper`.
        let from = if durable {
            handle.resume_state().greatest_upper
        } else {
            handle.resume_at()
        };
        input.advance_to(from);
        input.flush();
        step_past(worker, &probe, from, &format!("replaying to {from}"));
        // Replay from `from`: every round at or past it, and the future updates of earlier rounds
        // that land at or past it (a replayable source re-produces what lies at or beyond `from`).
        let first = if durable { from } else { from.saturating_sub(4) };
        for round in first..to {
            for (i, (row, t, d)) in round_updates(seed, round).into_iter().enumerate() {
                if i % 2 == worker.index() && t >= from && round.max(from) <= t {
                    input.update_at(row, t, d);
                }
            }
            if round < from {
                continue;
            }
            input.advance_to(round + 1);
            input.flush();
            step_past(worker, &probe, round + 1, &format!("at round {round}"));
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
    assert_eq!(froms[0], froms[1], "workers disagree on the resume point");
    froms[0]
}

/// The source's collection at time `at` (every update fed and kept, `fed`), as the three outputs.
fn model(fed: &[Up], at: u64) -> BTreeMap<String, i64> {
    let mut rows: BTreeMap<Row, i64> = BTreeMap::new();
    for (row, t, d) in fed {
        if *t <= at {
            *rows.entry(*row).or_insert(0) += *d as i64;
        }
    }
    rows.retain(|_, d| *d != 0);
    let mut out = BTreeMap::new();
    let mut counts: BTreeMap<u32, i64> = BTreeMap::new();
    for ((k, v), d) in &rows {
        out.insert(format!("row {k} {v}"), *d);
        *counts.entry(*k).or_insert(0) += d;
    }
    for (k, c) in counts {
        if c != 0 {
            out.insert(format!("count {k} {c}"), 1);
        }
    }
    for ((k, a), d1) in &rows {
        for ((k2, b), d2) in &rows {
            if k == k2 {
                *out.entry(format!("join {k} {a} {}", b + 10)).or_insert(0) += d1 * d2;
            }
        }
    }
    out.retain(|_, d| *d != 0);
    out
}

fn acc(out: &Out, at: u64) -> BTreeMap<String, i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in out.lock().unwrap().iter() {
        if *t <= at {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

fn schedule(seed: u64, durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    // Every update the source fed to some run, each once: (row, time, diff).
    let mut fed: Vec<Up> = Vec::new();
    let mut log = Vec::new();
    let mut expect_from = 0u64;
    for run_no in 0..6 {
        let to = expect_from + rng.below(5);
        let end = if rng.below(3) == 0 { End::Close } else { End::Stop };
        let out: Out = Arc::default();
        let from = run(dir.path(), seed, to, end, durable, &out);
        log.push((from, to, end));
        assert_eq!(
            from, expect_from,
            "seed {seed}, run {run_no}: resume point (schedule {log:?})"
        );
        // The updates this run fed (each worker its half): every update produced by rounds up to `to`
        // whose time lies at or past `from` (rounds at or past `from`, and the future ones of earlier
        // rounds), not fed before.
        let mut now: Vec<Up> = Vec::new();
        let first = if durable { from } else { from.saturating_sub(4) };
        for round in first..to {
            for (row, t, d) in round_updates(seed, round) {
                if t >= from && round.max(from) <= t {
                    now.push((row, t, d));
                }
            }
        }
        // The model: what earlier runs persisted below `from` (all they fed, for a durable stream) plus
        // what this run fed.
        if !durable {
            fed.retain(|u| u.1 < from);
        }
        fed.extend(now);
        // The times this run saw complete: all of them after a close, those below its last frontier after
        // a stop.
        let top = match end {
            End::Close => fed.iter().map(|u| u.1).max().unwrap_or(0).max(to) + 1,
            End::Stop => to.max(from),
        };
        for at in from..top {
            assert_eq!(
                acc(&out, at),
                model(&fed, at),
                "seed {seed}, run {run_no} (schedule {log:?}): differs at time {at}"
            );
        }
        expect_from = match end {
            // A close seals what was pending: the next run resumes past every update fed.
            End::Close => fed.iter().map(|u| u.1 + 1).max().unwrap_or(0).max(to),
            End::Stop => to.max(from),
        };
    }
}

fn seeds() -> u64 {
    std::env::var("ADV9_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6)
}

#[test]
fn random_run_schedules_of_a_persisted_arrangement() {
    for seed in 1..=seeds() {
        schedule(seed, false);
    }
}

#[test]
fn random_run_schedules_of_a_durable_persisted_arrangement() {
    for seed in 1..=seeds() {
        schedule(seed, true);
    }
}
