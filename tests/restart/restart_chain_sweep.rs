//! From an adversarial round: chains of persisted operators (arrange → arrange → count_total; upsert → arrange → reduce)
//! with two workers, restarted many times at uneven points (each worker drops its dataflow at its own
//! time, after a random number of steps), fed from the chain's least `resume_at` each time. The last run's
//! output, accumulated at every time at or past its resume point, must equal DD's in-memory answer for
//! the whole input. Timestamps `u64`, `u32` and `usize`. `DDPERSIST_CHAIN_SWEEP=long` runs 60 seeds of
//! each `u64` chain and 8 of the others (17 s in a debug build on a quiet machine); by default a fifth.

use crate::common;

use common::Rng;
use ddpersist::operators::{ArrangeTyped, PersistTime, UpsertPersisted};
use ddpersist::Store;
use differential_dataflow::input::Input as _;
use differential_dataflow::input::InputSession;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::{Input as _, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

type Out = (u64, i64);
/// One output update: `(out, time, diff)`.
type Update = (Out, u64, i64);
type Log = Arc<Mutex<Vec<Update>>>;
/// The upsert chain's input: `(key, value or deletion, time)` records.
type UpsertInput<T> = InputHandle<T, CapacityContainerBuilder<Vec<(u64, Option<u64>, T)>>>;

/// Input: per time, `((key, val), diff)` rows; keys 0..12, insertions and retractions of earlier rows.
pub fn history(times: u64, seed: u64) -> Vec<Vec<((u64, u64), isize)>> {
    let mut rng = Rng(seed);
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..times {
        let mut at = Vec::new();
        for _ in 0..rng.below(5) {
            let row = (rng.below(12), rng.below(50));
            live.push(row);
            at.push((row, 1));
        }
        for _ in 0..rng.below(3) {
            if !live.is_empty() {
                let i = rng.below(live.len() as u64) as usize;
                let row = live.swap_remove(i);
                at.push((row, -1));
            }
        }
        out.push(at);
    }
    out
}

/// Upserts per time: `(key, Some(val) | None)`, one per key and time at most.
pub fn upserts(times: u64, seed: u64) -> Vec<Vec<(u64, Option<u64>)>> {
    let mut rng = Rng(seed);
    (0..times)
        .map(|_| {
            let mut keys = BTreeMap::new();
            for _ in 0..rng.below(5) {
                let k = rng.below(10);
                let v = rng.below(40);
                keys.insert(k, (!v.is_multiple_of(7)).then_some(v));
            }
            keys.into_iter().collect()
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Chain {
    /// rows → arrange "a" → (v % 3, k) → arrange "b" → count_total
    ArrangeArrangeCount,
    /// upserts → upsert "u" → (v % 4, k) → arrange "b" → reduce(max k)
    UpsertArrangeReduce,
}

/// Who feeds the input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Feed {
    /// Worker 0 feeds everything; the others are idle.
    Worker0,
    /// Each worker feeds its share (row index modulo workers).
    Spread,
}

/// How a run ends: per worker, `Some(t)`: drop the dataflow after feeding time `t` and stepping
/// `steps[w]` more times; `None`: complete the input through `times` and drop with the input open.
#[derive(Clone, Debug)]
pub struct Plan {
    pub stop: Vec<Option<u64>>,
    pub steps: Vec<u32>,
    /// Every worker feeds through `stop[0]` (inclusive), then closes the input (the source ends there)
    /// and runs the dataflow to completion.
    pub close: bool,
}

const DEADLINE: Duration = Duration::from_secs(20);

/// One run over `dir`; returns the output log (times as store times) and the agreed resume point.
pub fn run<T: PersistTime + Sync + Send>(
    dir: &Path,
    workers: usize,
    chain: Chain,
    feed: Feed,
    times: u64,
    seed: u64,
    plan: Plan,
) -> Result<(Vec<Update>, u64), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let log: Log = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = common::BuildFailed::default();
    let (l, r, errs) = (log.clone(), resumes.clone(), errors.clone());
    let rows = history(times, seed);
    let ups = upserts(times, seed);
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let probe = ProbeHandle::<T>::new();
        let l = l.clone();
        let built = worker.dataflow::<T, _, _>(|scope| -> Result<_, String> {
            let sink = move |c: differential_dataflow::VecCollection<'_, T, Out, isize>,
                             probe: &ProbeHandle<T>| {
                let l = l.clone();
                c.inner
                    .inspect(move |(x, t, d)| l.lock().unwrap().push((*x, t.to_u64(), *d as i64)))
                    .probe_with(probe);
            };
            match chain {
                Chain::ArrangeArrangeCount => {
                    let (input, rows) = scope.new_collection::<(u64, u64), isize>();
                    let a = rows
                        .arrange_by_key_persisted(&store, "a")
                        .map_err(|e| e.to_string())?;
                    let ha = a.handle().unwrap().clone();
                    let mid = a.as_collection(|k: &u64, v: &u64| (v % 3, *k));
                    let b = mid
                        .arrange_by_key_persisted(&store, "b")
                        .map_err(|e| e.to_string())?;
                    let hb = b.handle().unwrap().clone();
                    let counted = b.count_total().map(|(k, c)| (k, c as i64));
                    sink(counted, &probe);
                    let handles = vec![ha, hb];
                    let greatest = handles
                        .iter()
                        .map(|h| h.resume_state().greatest_upper)
                        .max()
                        .unwrap();
                    Ok((
                        Some(input),
                        None,
                        greatest,
                        handles.iter().map(|h| h.resume_at()).min().unwrap(),
                        handles.iter().map(|h| h.error()).collect::<Vec<_>>(),
                        handles
                            .into_iter()
                            .map(|h| h.errors().clone())
                            .collect::<Vec<_>>(),
                    ))
                }
                Chain::UpsertArrangeReduce => {
                    let (input, stream) = scope.new_input::<Vec<(u64, Option<u64>, T)>>();
                    let (cur, hu) = stream.upsert_persisted(&store, "u").map_err(|e| e.to_string())?;
                    let mid = cur.map(|(k, v)| (v % 4, k));
                    let b = mid
                        .arrange_by_key_persisted(&store, "b")
                        .map_err(|e| e.to_string())?;
                    let hb = b.handle().unwrap().clone();
                    let reduced = b
                        .as_collection(|k: &u64, v: &u64| (*k, *v))
                        .reduce(|_k, vals, out| out.push((*vals.last().unwrap().0 as i64, 1isize)));
                    sink(reduced.map(|(k, v)| (k, v)), &probe);
                    let resume = hu.resume_at().min(hb.resume_at());
                    let greatest = hu
                        .resume_state()
                        .greatest_upper
                        .max(hb.resume_state().greatest_upper);
                    Ok((
                        None,
                        Some(input),
                        greatest,
                        resume,
                        vec![hu.error(), hb.error()],
                        vec![hu.errors().clone(), hb.errors().clone()],
                    ))
                }
            }
        });
        let (mut rows_in, mut ups_in, greatest, resume, _e, slots) = match built {
            Ok(b) => b,
            Err(e) => {
                errs.lock().unwrap().push(failed.fail(worker, e));
                return;
            }
        };
        r.lock().unwrap().push((index, resume));
        let deadline = Instant::now() + DEADLINE;
        let all_alive = plan.stop.iter().map(|s| s.unwrap_or(u64::MAX)).min().unwrap();
        let at = |t: u64| T::from_u64(t).unwrap();
        // Feeds this worker's share of time `t` to whichever input the chain has, then closes time `t`.
        let mine = |j: usize| match feed {
            Feed::Worker0 => index == 0,
            Feed::Spread => j % peers == index,
        };
        let feed_time = |rows_in: &mut Option<_>, ups_in: &mut Option<_>, t: u64| {
            if let Some(i) = rows_in.as_mut() {
                let i: &mut InputSession<T, (u64, u64), isize> = i;
                i.advance_to(at(t));
                for (_, (row, d)) in rows[t as usize].iter().enumerate().filter(|(j, _)| mine(*j)) {
                    i.update(*row, *d);
                }
                i.advance_to(at(t + 1));
                i.flush();
            }
            if let Some(i) = ups_in.as_mut() {
                let i: &mut UpsertInput<T> = i;
                i.advance_to(at(t));
                for (_, (k, v)) in ups[t as usize].iter().enumerate().filter(|(j, _)| mine(*j)) {
                    i.send((*k, *v, at(t)));
                }
                i.advance_to(at(t + 1));
                i.flush();
            }
        };
        let mut stopped = false;
        if plan.close {
            // README: a close must not skip the gap a crash left: feed through the greatest upper first.
            let end = plan.stop[0].unwrap().max(greatest.saturating_sub(1));
            for t in resume..=end.min(times - 1) {
                feed_time(&mut rows_in, &mut ups_in, t);
            }
            drop(rows_in.take());
            drop(ups_in.take());
            worker.step_while(|| {
                !probe.done() && Instant::now() < deadline && slots.iter().all(|s| !s.is_set())
            });
            if !probe.done() {
                errs.lock()
                    .unwrap()
                    .push(format!("worker {index}: closed run did not complete"));
            }
            for d in worker.installed_dataflows() {
                worker.drop_dataflow(d);
            }
            return;
        }
        for t in resume..times {
            feed_time(&mut rows_in, &mut ups_in, t);
            if t < all_alive {
                worker.step_while(|| {
                    probe.less_than(&at(t + 1))
                        && Instant::now() < deadline
                        && !failed.is_set()
                        && slots.iter().all(|s| !s.is_set())
                });
            }
            if plan.stop[index].is_some_and(|s| t >= s) {
                for _ in 0..plan.steps[index] {
                    worker.step();
                }
                stopped = true;
                break;
            }
            if t >= all_alive {
                for _ in 0..3 {
                    worker.step();
                }
            }
        }
        if !stopped && plan.stop[index].is_some() {
            // Resumed beyond this worker's stop: nothing fed; drop at once.
            for _ in 0..plan.steps[index] {
                worker.step();
            }
        } else if !stopped {
            // (An input resumed at the end: still advance it there.)
            if let Some(i) = rows_in.as_mut() {
                i.advance_to(at(times));
                i.flush();
            }
            if let Some(i) = ups_in.as_mut() {
                i.advance_to(at(times));
                i.flush();
            }
            worker.step_while(|| {
                probe.less_than(&at(times))
                    && Instant::now() < deadline
                    && !failed.is_set()
                    && slots.iter().all(|s| !s.is_set())
            });
            if probe.less_than(&at(times)) {
                let msgs: Vec<_> = slots.iter().map(|s| s.message()).collect();
                errs.lock().unwrap().push(format!(
                    "worker {index}: run did not complete through {times} (errors {msgs:?}, failed {})",
                    failed.is_set()
                ));
                failed.fail(worker, ());
            }
        }
        for s in &slots {
            if let Some(m) = s.message() {
                errs.lock().unwrap().push(format!("worker {index}: {m}"));
            }
        }
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
    })
    .map_err(|e| e.to_string())?;
    let errors = errors.lock().unwrap().clone();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let resumes = resumes.lock().unwrap().clone();
    let resume = resumes.iter().map(|r| r.1).min().unwrap_or(0);
    assert!(
        resumes.iter().all(|r| r.1 == resume),
        "workers read different resume points: {resumes:?}"
    );
    let log = log.lock().unwrap().clone();
    Ok((log, resume))
}

/// DD's in-memory answer for the whole input (one worker, one run).
pub fn in_memory(chain: Chain, times: u64, seed: u64) -> Vec<(Out, u64, i64)> {
    let log: Log = Default::default();
    let l = log.clone();
    let rows = history(times, seed);
    let ups = upserts(times, seed);
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::<u64>::new();
        let l = l.clone();
        let (mut rows_in, mut state_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (rows_in, rows) = scope.new_collection::<(u64, u64), isize>();
            let (state_in, state) = scope.new_collection::<(u64, u64), isize>();
            let out = match chain {
                Chain::ArrangeArrangeCount => {
                    use differential_dataflow::operators::CountTotal;
                    rows.map(|(_k, v)| v % 3)
                        .count_total()
                        .map(|(k, c)| (k, c as i64))
                }
                Chain::UpsertArrangeReduce => state
                    .map(|(k, v)| (v % 4, k))
                    .reduce(|_k, vals, out| out.push((*vals.last().unwrap().0 as i64, 1isize))),
            };
            out.inner
                .inspect(move |(x, t, d)| l.lock().unwrap().push((*x, *t, *d as i64)))
                .probe_with(&probe);
            (rows_in, state_in)
        });
        // The upsert model: the state's changes per time.
        let mut state: BTreeMap<u64, u64> = BTreeMap::new();
        for t in 0..times {
            rows_in.advance_to(t);
            state_in.advance_to(t);
            for (row, d) in &rows[t as usize] {
                rows_in.update(*row, *d);
            }
            for (k, v) in &ups[t as usize] {
                if let Some(old) = state.remove(k) {
                    state_in.update((*k, old), -1);
                }
                if let Some(v) = v {
                    state.insert(*k, *v);
                    state_in.update((*k, *v), 1);
                }
            }
        }
        rows_in.advance_to(times);
        state_in.advance_to(times);
        rows_in.flush();
        state_in.flush();
        worker.step_while(|| probe.less_than(&times));
    });
    let log = log.lock().unwrap().clone();
    log
}

/// The collection `log` accumulates to at time `t`.
pub fn at_time(log: &[(Out, u64, i64)], t: u64) -> BTreeMap<Out, i64> {
    let mut acc = BTreeMap::new();
    for (x, time, d) in log {
        if *time <= t {
            *acc.entry(*x).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// Runs `plans` in order then a completing run; checks the completing run against the in-memory answer
/// at every time from its resume point on.
pub fn scenario<T: PersistTime + Sync + Send>(
    chain: Chain,
    feed: Feed,
    times: u64,
    seed: u64,
    plans: &[Plan],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let workers = plans.first().map_or(2, |p| p.stop.len());
    let mut trail = Vec::new();
    for plan in plans {
        let (_, resume) = run::<T>(dir.path(), workers, chain, feed, times, seed, plan.clone())?;
        trail.push((resume, plan.stop.clone()));
    }
    let last = Plan {
        stop: vec![None; workers],
        steps: vec![0; workers],
        close: false,
    };
    let (log, resume) = run::<T>(dir.path(), workers, chain, feed, times, seed, last)?;
    let expected = in_memory(chain, times, seed);
    for t in resume..times {
        let got = at_time(&log, t);
        let want = at_time(&expected, t);
        if got != want {
            return Err(format!(
                "{chain:?} {feed:?} seed {seed}: at time {t} (final resume {resume}; runs {trail:?}):\n got  {got:?}\n want {want:?}"
            ));
        }
    }
    Ok(())
}

fn random_plans(rng: &mut Rng, workers: usize, times: u64, n: usize) -> Vec<Plan> {
    (0..n)
        .map(|_| Plan {
            stop: (0..workers).map(|_| Some(rng.below(times))).collect(),
            steps: (0..workers).map(|_| rng.below(12) as u32).collect(),
            close: rng.below(3) == 0,
        })
        .collect()
}

/// Runs `rounds` seeds of `chain` (a fifth of them, at least 2, unless `DDPERSIST_CHAIN_SWEEP=long`).
fn sweep<T: PersistTime + Sync + Send>(chain: Chain, rounds: u64) {
    let long = std::env::var("DDPERSIST_CHAIN_SWEEP").is_ok_and(|v| v == "long");
    let rounds = if long { rounds } else { (rounds / 5).max(2) };
    let mut failures = Vec::new();
    for seed in 0..rounds {
        let mut rng = Rng(seed * 7919 + 1);
        let feed = if seed % 2 == 0 {
            Feed::Worker0
        } else {
            Feed::Spread
        };
        let n = 1 + rng.below(4) as usize;
        let plans = random_plans(&mut rng, 2, 16, n);
        if let Err(e) = scenario::<T>(chain, feed, 16, seed, &plans) {
            failures.push(format!("seed {seed} plans {plans:?}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn arrange_chain_u64_uneven_restarts() {
    sweep::<u64>(Chain::ArrangeArrangeCount, 60);
}

#[test]
fn arrange_chain_u32_uneven_restarts() {
    sweep::<u32>(Chain::ArrangeArrangeCount, 8);
}

#[test]
fn upsert_chain_u64_uneven_restarts() {
    sweep::<u64>(Chain::UpsertArrangeReduce, 60);
}

#[test]
fn upsert_chain_usize_uneven_restarts() {
    sweep::<usize>(Chain::UpsertArrangeReduce, 8);
}
