//! From adversarial round 17 (no fault found). A DD program of rounds whose times jump (by up to 2^40), repeat (several rounds at one time, the
//! frontier not moving between them) and carry future-dated updates (`update_at` a later round's time),
//! over 1–3 workers with a small key pool (idle workers), restarted many times: each run ends by closing
//! its inputs (as DD programs end), by dropping its dataflows, or by feeding a few rounds it does not wait
//! for and then dropping (a replay covers them). Operators: `as_collection`, a join with an in-memory
//! collection, `reduce`, the reduce's output persisted again (a chain) and joined back with its source
//! (persisted with persisted), `count_total`, `threshold_total`, `semijoin`. Every run's outputs are
//! compared with DD's in-memory program over the whole input at every time from the run's resume point.

use crate::common::compare::{deadline, same_at_every_time, Log, Logs};
use crate::common::Rng;
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, Persist};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type K = (u64, u32);
type V = Option<String>;
/// One round: its time, and updates `((key, val), time, diff)` with `time` at or after the round's.
#[derive(Clone, Debug)]
pub struct Round {
    pub time: u64,
    pub updates: Vec<((K, V), u64, isize)>,
    pub other: Vec<((K, char), isize)>,
}

#[derive(Clone, Copy, Debug)]
pub enum End {
    /// The closure returns: inputs close, the dataflow runs to completion.
    Close,
    /// Every dataflow dropped after the last round completed.
    Drop,
    /// `n` more rounds fed (not waited for), a few steps, then every dataflow dropped.
    Abandon(usize, usize),
}

/// Rounds in blocks of 4: times strictly increase from block to block (by 1 or a jump) and may repeat
/// within one; future-dated updates land on a later round's time of the same block.
pub fn plan(seed: u64, rounds: usize, keys: u64) -> Vec<Round> {
    let mut rng = Rng(seed);
    let mut times = Vec::new();
    let mut t = rng.below(3);
    // Times for a few rounds past the last (a future-dated update's target), and the updates from a
    // second generator, so that a plan's first rounds do not depend on how many it has.
    for r in 0..rounds + 4 {
        if r > 0 {
            let step = if r % 4 == 0 {
                match rng.below(4) {
                    0 => 1u64 << (rng.below(40)),
                    _ => 1 + rng.below(3),
                }
            } else {
                rng.below(3) // 0: the time stays put
            };
            t += step;
        }
        times.push(t);
    }
    let mut rng = Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B);
    let mut out = Vec::new();
    let mut live: Vec<((K, V), u64)> = Vec::new();
    for r in 0..rounds {
        let block_end = (r / 4) * 4 + 3;
        let mut updates = Vec::new();
        for _ in 0..rng.below(6) {
            let key = (rng.below(keys) * 1_000_003, (rng.below(keys) % 2) as u32);
            let val = match rng.below(4) {
                0 => None,
                _ => Some(format!("v{}", rng.below(5))),
            };
            let target = r + rng.below(3) as usize;
            let time = if target <= block_end {
                times[target]
            } else {
                times[r]
            };
            let diff = [1isize, 1, 2, -1, 3][rng.below(5) as usize];
            updates.push(((key, val.clone()), time, diff));
            live.push(((key, val), time));
        }
        // Retract to zero something inserted before (at a time not after this round's).
        if !live.is_empty() && rng.below(2) == 0 {
            let i = rng.below(live.len() as u64) as usize;
            let (kv, _) = live[i].clone();
            updates.push((kv.clone(), times[r], -1));
            if rng.below(2) == 0 {
                updates.push((kv, times[r], 1)); // and back again at the same time
            }
        }
        let other = (0..rng.below(3))
            .map(|_| {
                let key = (rng.below(keys) * 1_000_003, (rng.below(keys) % 2) as u32);
                (
                    (key, char::from(b'a' + rng.below(3) as u8)),
                    if rng.below(4) == 0 { -1 } else { 1 },
                )
            })
            .collect();
        out.push(Round {
            time: times[r],
            updates,
            other,
        });
    }
    out
}

type S = Log<String, u64>;

/// One run over `dir`: rounds `0..end` (the persisted input from the agreed resume point on, by update
/// time), then `how`. Returns the resume point.
pub fn run(
    dir: &Path,
    options: &Options,
    workers: usize,
    rounds: &[Round],
    end: usize,
    how: End,
    logs: &Logs,
) -> u64 {
    let store = Store::open_with(dir, options.clone()).unwrap();
    let manager = ddpersist::PersistManager::new(store.clone());
    let rounds = rounds.to_vec();
    let logs = logs.clone();
    let resume = Arc::new(Mutex::new(u64::MAX));
    let r = resume.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let s = store.clone();
        let l = logs.clone();
        let token = manager.token("passed", worker.index()).unwrap();
        let (mut pin, mut iin, mut din, mut oin, from) = worker.dataflow::<u64, _, _>(|scope| {
            let (pin, p) = scope.new_collection::<(K, V), isize>();
            // The same input with `i64` diffs, through `persist` (the `isize` one goes through the
            // arrangements; `persist` of `isize` is `dd_dropin_persist_diffs`).
            let (iin, i) = scope.new_collection::<(K, V), i64>();
            let (passed, passed_handle) = i.persist(token).unwrap();
            let passed_arr = passed.clone().arrange_by_key_persisted(&s, "passed_arr").unwrap();
            let (din, d) = scope.new_collection::<(K, V), isize>();
            let (oin, o) = scope.new_collection::<(K, char), isize>();
            let pa = p.clone().arrange_by_key_persisted(&s, "pairs").unwrap();
            let pk = p.map(|(k, _)| k).arrange_by_self_persisted(&s, "keys").unwrap();
            let red = |_k: &K, s: &[(&V, isize)], out: &mut Vec<((V, u32), isize)>| {
                let n: isize = s.iter().map(|x| x.1).sum();
                out.push(((s[0].0.clone(), s.len() as u32), 1));
                if n < 0 {
                    out.push(((None, 0), 2));
                }
            };
            let reduced = pa.clone().reduce(red);
            let q = reduced.arrange_by_key_persisted(&s, "reduced").unwrap();
            let from = [
                pa.handle(),
                pk.handle(),
                q.handle(),
                passed_arr.handle(),
                Some(&passed_handle),
            ]
            .iter()
            .map(|h| h.unwrap().resume_at())
            .min()
            .unwrap();
            let dk = d.clone().map(|(k, _)| k);
            let ok = o.clone().map(|(k, _)| k);
            let mut pairs: Vec<(&'static str, S, S)> = Vec::new();
            macro_rules! both {
                ($name:literal, $p:expr, $d:expr) => {{
                    let (a, b) = crate::common::compare::log(&l, $name);
                    let (a2, b2) = (a.clone(), b.clone());
                    $p.map(|x| format!("{x:?}"))
                        .inner
                        .inspect(move |(x, t, r)| a2.lock().unwrap().push((x.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    $d.map(|x| format!("{x:?}"))
                        .inner
                        .inspect(move |(x, t, r)| b2.lock().unwrap().push((x.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    pairs.push(($name, a, b));
                }};
            }
            both!(
                "as_collection",
                pa.clone().as_collection(|k, v| (*k, v.clone())),
                d.clone()
            );
            both!(
                "join memory",
                pa.clone().join(o.clone()),
                d.clone().join(o.clone())
            );
            both!(
                "semijoin",
                pa.clone().semijoin(ok.clone()),
                d.clone().semijoin(ok.clone())
            );
            both!(
                "reduce chain",
                q.clone().as_collection(|k, v| (*k, v.clone())),
                d.clone().reduce(red)
            );
            both!(
                "chain join source",
                q.clone().join(pa.clone()),
                d.clone().reduce(red).join(d.clone())
            );
            both!("count_total", pk.clone().count_total(), dk.clone().count_total());
            both!(
                "threshold_total",
                pk.clone()
                    .threshold_total(|_, c| if *c >= 2 { 1isize } else { 0 }),
                dk.clone()
                    .threshold_total(|_, c| if *c >= 2 { 1isize } else { 0 })
            );
            both!("persist", passed.clone(), d.clone());
            both!(
                "persist then arranged count",
                passed_arr.clone().count_total(),
                d.clone()
                    .map(|(k, _)| k)
                    .count_total()
                    .map(|(k, c)| (k, c as i64))
            );
            (pin, iin, din, oin, from)
        });
        {
            let mut r = r.lock().unwrap();
            assert!(
                *r == u64::MAX || *r == from,
                "workers disagree on the resume point"
            );
            *r = from;
        }
        pin.advance_to(from);
        iin.advance_to(from);
        let feeds = worker.index() == 0;
        let feed = |pin: &mut differential_dataflow::input::InputSession<u64, (K, V), isize>,
                    iin: &mut differential_dataflow::input::InputSession<u64, (K, V), i64>,
                    din: &mut differential_dataflow::input::InputSession<u64, (K, V), isize>,
                    oin: &mut differential_dataflow::input::InputSession<u64, (K, char), isize>,
                    round: &Round| {
            din.advance_to(round.time);
            oin.advance_to(round.time);
            pin.advance_to(round.time.max(from));
            iin.advance_to(round.time.max(from));
            if feeds {
                for (x, t, d) in &round.updates {
                    din.update_at(x.clone(), *t, *d);
                    if *t >= from {
                        pin.update_at(x.clone(), *t, *d);
                        iin.update_at(x.clone(), *t, *d as i64);
                    }
                }
                for (x, d) in &round.other {
                    oin.update(*x, *d);
                }
            }
        };
        let alive = deadline(60);
        for i in 0..end {
            feed(&mut pin, &mut iin, &mut din, &mut oin, &rounds[i]);
            let next = rounds.get(i + 1).map_or(rounds[i].time + 1, |r| r.time);
            din.advance_to(next);
            oin.advance_to(next);
            pin.advance_to(next.max(from));
            iin.advance_to(next.max(from));
            iin.flush();
            din.flush();
            oin.flush();
            pin.flush();
            if next > rounds[i].time {
                worker.step_while(|| alive() && probe.less_than(&next));
                if worker.index() == 0 {
                    println!("complete {next}");
                }
            }
        }
        match how {
            End::Close => {}
            End::Drop => crate::common::drop_dataflows(worker),
            End::Abandon(n, steps) => {
                for i in end..(end + n).min(rounds.len()) {
                    feed(&mut pin, &mut iin, &mut din, &mut oin, &rounds[i]);
                    let next = rounds.get(i + 1).map_or(rounds[i].time + 1, |r| r.time);
                    din.advance_to(next);
                    oin.advance_to(next);
                    pin.advance_to(next.max(from));
                    iin.advance_to(next.max(from));
                    pin.flush();
                    iin.flush();
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
    from
}

/// The times at which to compare a run that fed rounds `0..end` and resumed at `from`: `from` and every
/// update time in `[from, completed)`.
pub fn times(rounds: &[Round], end: usize, from: u64) -> Vec<u64> {
    let completed = rounds.get(end).map_or(rounds[end - 1].time + 1, |r| r.time);
    let mut ts: BTreeSet<u64> = BTreeSet::new();
    ts.insert(from);
    for r in &rounds[..end] {
        ts.insert(r.time);
        for (_, t, _) in &r.updates {
            ts.insert(*t);
        }
    }
    ts.into_iter().filter(|t| *t >= from && *t < completed).collect()
}

pub fn scenario(seed: u64, workers: usize, keys: u64, options: Options, ends: &[(usize, End)]) {
    let total = ends.iter().map(|(e, _)| *e).max().unwrap() + 8;
    let rounds = plan(seed, total, keys);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = 0;
    let mut compared = 0;
    for (run_no, &(end, how)) in ends.iter().enumerate() {
        let logs: Logs = Default::default();
        let from = run(dir.path(), &options, workers, &rounds, end, how, &logs);
        // A probe on the persisted outputs passed `acknowledged` in the run before: everything below it
        // was sealed by every worker, so the resume point is not below it (README, "acknowledged").
        assert!(
            from >= acknowledged,
            "seed {seed}, run {run_no}: resume point {from} below the last acknowledged time {acknowledged}"
        );
        acknowledged = rounds
            .get(end)
            .map_or(rounds[end - 1].time + 1, |r| r.time)
            .max(acknowledged);
        let ts = times(&rounds, end, from);
        compared += ts.len();
        for (name, a, b) in logs.lock().unwrap().iter() {
            same_at_every_time(
                a,
                b,
                &ts,
                &format!("seed {seed}, {workers} workers, run {run_no} ({how:?} at round {end}, resume {from}): {name}"),
            );
        }
    }
    assert!(
        compared >= ends.len(),
        "seed {seed}: too few times compared ({compared})"
    );
}

/// A store in `dir` with 64-byte blocks and pairwise merges (many blocks and merges from little data).
pub fn open_tiny(dir: &Path) -> Store {
    let options = Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        ..Options::default()
    };
    Store::open_with(dir, options).unwrap()
}

fn small() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compaction_threads: 1,
        ..Options::default()
    }
}

fn ends_mixed() -> Vec<(usize, End)> {
    vec![
        (4, End::Close),
        (8, End::Drop),
        (12, End::Abandon(3, 5)),
        (16, End::Close),
        (16, End::Drop),
        (20, End::Abandon(4, 0)),
        (24, End::Abandon(2, 50)),
        (28, End::Close),
        (32, End::Drop),
    ]
}

#[test]
fn jumping_times_mixed_ends_one_worker() {
    for seed in 0..3 {
        scenario(seed, 1, 3, Options::default(), &ends_mixed());
    }
}

#[test]
fn jumping_times_mixed_ends_two_workers_two_keys() {
    for seed in 10..13 {
        scenario(seed, 2, 2, small(), &ends_mixed());
    }
}

#[test]
fn jumping_times_mixed_ends_three_workers_one_key() {
    for seed in 20..22 {
        scenario(seed, 3, 1, small(), &ends_mixed());
    }
}

/// More seeds of [`jumping_times_mixed_ends_three_workers_one_key`] (about 10 s a seed in debug).
#[test]
#[ignore]
fn jumping_times_mixed_ends_three_workers_one_key_more_seeds() {
    for seed in 22..40 {
        scenario(seed, 3, 1, small(), &ends_mixed());
    }
}

fn every_boundary() -> Vec<(usize, End)> {
    (1..=10)
        .map(|b| (b * 4, [End::Close, End::Drop, End::Abandon(1, 3)][b % 3]))
        .collect()
}

#[test]
fn jumping_times_every_round_boundary_three_workers() {
    scenario(30, 3, 4, small(), &every_boundary());
}

/// More seeds of [`jumping_times_every_round_boundary_three_workers`] (about 17 s a seed in debug).
#[test]
#[ignore]
fn jumping_times_every_round_boundary_three_workers_more_seeds() {
    for seed in 31..45 {
        scenario(seed, 3, 4, small(), &every_boundary());
    }
}

/// The child of [`killed_at_random_moments_then_restarted`]: runs rounds `0..A17_END` over `A17_DIR`,
/// printing `complete N` as each round's output completes, then closes.
#[test]
#[ignore]
fn child_run() {
    let Some(dir) = crate::common::child_var("A17_DIR") else {
        return;
    };
    let seed: u64 = std::env::var("A17_SEED").unwrap().parse().unwrap();
    let workers: usize = std::env::var("A17_WORKERS").unwrap().parse().unwrap();
    let end: usize = std::env::var("A17_END").unwrap().parse().unwrap();
    let rounds = plan(seed, end + 8, 3);
    let logs: Logs = Default::default();
    run(
        Path::new(&dir),
        &small(),
        workers,
        &rounds,
        end,
        End::Close,
        &logs,
    );
    println!("done");
}

/// SIGKILL at random moments of a two-worker run (a child process), then a clean run: the resume point
/// is at or past every time the killed run's probe acknowledged, and the outputs are DD's.
#[test]
fn killed_at_random_moments_then_restarted() {
    killed(40..42);
}

/// More seeds of [`killed_at_random_moments_then_restarted`] (about 8 s a seed in debug).
#[test]
#[ignore]
fn killed_at_random_moments_then_restarted_more_seeds() {
    killed(42..60);
}

fn killed(seeds: std::ops::Range<u64>) {
    let mut rng = Rng(0xA17 ^ seeds.start);
    for seed in seeds {
        let dir = tempfile::tempdir().unwrap();
        let workers = 2;
        let mut acknowledged = 0;
        for kill in 0..3usize {
            let end = 8 + 8 * kill;
            let mut child = crate::common::spawn_child(
                module_path!(),
                "child_run",
                &[
                    ("A17_DIR", dir.path().display().to_string()),
                    ("A17_SEED", seed.to_string()),
                    ("A17_WORKERS", workers.to_string()),
                    ("A17_END", end.to_string()),
                ],
            );
            let killed = crate::common::kill::kill_at_random(&mut child, &mut rng);
            crate::common::assert_killed_or_succeeded(killed.status, "child_run");
            acknowledged = acknowledged.max(killed.complete.unwrap_or(0));
        }
        let end = 32;
        let rounds = plan(seed, end + 8, 3);
        let logs: Logs = Default::default();
        let from = run(dir.path(), &small(), workers, &rounds, end, End::Drop, &logs);
        assert!(
            from >= acknowledged,
            "seed {seed}: resume point {from} below acknowledged {acknowledged}"
        );
        let ts = times(&rounds, end, from);
        for (name, a, b) in logs.lock().unwrap().iter() {
            same_at_every_time(
                a,
                b,
                &ts,
                &format!("seed {seed} after kills (resume {from}): {name}"),
            );
        }
    }
}
