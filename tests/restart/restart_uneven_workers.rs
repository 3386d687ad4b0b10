//! Adversarial round 12, topic 1: the restart protocol with uneven workers. Three and four workers, each
//! feeding its own part of a replayable source: one worker feeds only at two early times and closes its
//! input early in the first run (and at once in later runs), one owns keys that get data only after many
//! idle rounds, times advance by big jumps (to 2^33 and 2^40), runs restart right after a seal with
//! nothing new (twice in a row), one run closes its input (streams finished) and a later run continues.
//! Every run's outputs (as_collection, count_total, threshold_total, reduce, a self join) are compared
//! with DD's in-memory answer over the whole history at every event time from the run's resume point on.

use crate::common;

use common::compare::{at, rec, same_at_every_time, Log};
use common::kill::key_on;
use common::Rng;
use ddpersist::operators::{ArrangeTyped, Persist};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::AsCollection;
use differential_dataflow::VecCollection;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::ProbeHandle;

/// The times at which a source may have data: small steps, then big jumps.
const EVENTS: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    100,
    101,
    5_000,
    1_000_000,
    1_000_001,
    1 << 33,
    (1 << 33) + 1,
    1 << 40,
    (1 << 40) + 1,
    (1 << 40) + 2,
];

type Row = (String, u64);

/// Worker `w`'s updates at time `t` with `peers` workers: worker 0 feeds at every event time keys owned by
/// workers 0 and 1; worker 1 feeds only at times 0 and 3; worker 2 feeds only from time 1_000_000 on,
/// keys owned by the last worker (idle before); worker 3 (if any) never feeds. Diffs insert, retract
/// (also below zero) and repeat.
fn data(w: usize, t: u64, peers: usize) -> Vec<(Row, isize)> {
    let feeds = match w {
        0 => true,
        1 => t == 0 || t == 3,
        2 => t >= 1_000_000,
        _ => false,
    };
    if !feeds {
        return Vec::new();
    }
    let mut rng = Rng(t.wrapping_mul(7919) ^ (w as u64 * 104_729) ^ 0x5eed);
    let owners: Vec<usize> = match w {
        0 => vec![0, 1],
        1 => vec![0, 1, peers - 1],
        _ => vec![peers - 1],
    };
    (0..6)
        .map(|_| {
            let owner = owners[rng.below(owners.len() as u64) as usize];
            let key = key_on(owner, peers, rng.below(3) as usize);
            let val = rng.below(3);
            let diff = [1isize, 1, -1, 2, -1][rng.below(5) as usize];
            ((key, val), diff)
        })
        .collect()
}

/// Every update of the whole source up to time `to` (inclusive).
fn history(peers: usize, to: u64) -> Vec<(Row, u64, isize)> {
    let mut out = Vec::new();
    for &t in EVENTS.iter().filter(|t| **t <= to) {
        for w in 0..peers {
            for (r, d) in data(w, t, peers) {
                out.push((r, t, d));
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum End {
    /// Advance past `to`, wait for it, drop the dataflow with the input open.
    Drop,
    /// Advance past `to`, wait for it, close the input and run to completion.
    Close,
    /// Feed nothing: advance to the resume point, wait, drop.
    ReadOnly,
    /// Advance past `to`, then each worker steps a few times (a different number per worker, from the
    /// seed) and drops the dataflow: a stop part way, workers' seals uneven.
    Abrupt(u64),
    /// Close the input, then each worker steps a few times and drops the dataflow: a stop while some
    /// workers' streams may be finished and others not.
    AbruptClose(u64),
}

fn red(_k: &String, s: &[(&u64, isize)], out: &mut Vec<(String, isize)>) {
    // The vals in the order given, with their multiplicities, and the least val.
    let text: Vec<String> = s.iter().map(|(v, d)| format!("{v}*{d}")).collect();
    out.push((text.join(","), 1));
    out.push((format!("min {}", s[0].0), 1));
}

fn thresh(_k: &String, c: &isize) -> isize {
    if *c > 0 {
        1
    } else if *c < 0 {
        -1
    } else {
        0
    }
}

/// The operators compared, over the collection `rows` (DD side; `x` the persisted arrangement or `None`).
fn outputs_dd<'s>(rows: VecCollection<'s, u64, Row, isize>, log: &Log<String>, probe: &ProbeHandle<u64>) {
    rec(rows.clone().map(|(k, v)| format!("row {k}={v}")), log, probe);
    rec(
        rows.clone()
            .map(|x| x.0)
            .count_total()
            .map(|x| format!("count {x:?}")),
        log,
        probe,
    );
    rec(
        rows.clone()
            .map(|x| x.0)
            .threshold_total(thresh)
            .map(|x| format!("threshold {x:?}")),
        log,
        probe,
    );
    rec(
        rows.clone().reduce(red).map(|x| format!("reduce {x:?}")),
        log,
        probe,
    );
    rec(
        rows.clone().join(rows.clone()).map(|x| format!("join {x:?}")),
        log,
        probe,
    );
}

/// DD's in-memory answer over the whole history up to `to`, one worker.
fn reference(peers: usize, to: u64) -> Log<String> {
    let log: Log<String> = Default::default();
    let l = log.clone();
    let hist = history(peers, to);
    timely::execute(timely::Config::thread(), move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            outputs_dd(rows, &l, &probe);
            input
        });
        for (r, t, d) in hist.iter() {
            input.advance_to(*t);
            input.update_at(r.clone(), *t, *d);
        }
        input.advance_to(to + 1);
        input.flush();
        worker.step_while(|| probe.less_than(&(to + 1)));
    })
    .unwrap();
    log
}

/// The seal mode of a run: in the random plans, pipelined or inline seals for some runs (by `to`), else
/// the default.
fn seals_of(random_plan: bool, to: u64) -> ddpersist::operators::SealMode {
    use ddpersist::operators::SealMode;
    match (random_plan, to % 3) {
        (true, 0) => SealMode::Pipelined,
        (true, 1) => SealMode::Inline,
        _ => SealMode::Adaptive,
    }
}

fn options() -> Options {
    Options {
        block_target_bytes: 128,
        merge_fan_in: 2,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// The store options of a run of the random plans, changed from run to run (by `to`): tiny memtable
/// budgets that spill unsealed updates to runs on disk, lz4 from level 0, other block sizes and fan-ins,
/// back-pressure at few batches per stream.
fn options_of(to: u64) -> Options {
    match to % 4 {
        0 => Options {
            memtable_budget_bytes: 256,
            ..options()
        },
        1 => Options {
            compress_from_level: Some(0),
            block_target_bytes: 40,
            merge_fan_in: 3,
            ..Options::default()
        },
        2 => Options {
            memtable_budget_bytes: 1,
            max_batches_per_stream: 2,
            compress_from_level: Some(1),
            ..options()
        },
        _ => options(),
    }
}

/// One run with `peers` workers over `dir`: every worker feeds its own `data` at the event times from the
/// resume point up to `to`, then ends as `end` says; the arrangement durable or not (a durable input
/// continues at the greatest upper), or through `persist` (a `PersistManager` token) if `via_persist`.
/// Returns the run's output log and the resume point.
#[allow(clippy::too_many_arguments)]
fn run_kind(
    dir: &Path,
    peers: usize,
    to: u64,
    end: End,
    first_run: bool,
    random_plan: bool,
    durable: bool,
    via_persist: bool,
) -> (Log<String>, u64) {
    // Random plans vary the options; durable runs spill their unsealed updates (a tiny memtable budget).
    let opts = match (random_plan, durable) {
        (true, _) => options_of(to),
        (false, true) => Options {
            memtable_budget_bytes: 64,
            ..options()
        },
        _ => options(),
    };
    let store = Store::open_with(dir, opts).unwrap();
    let manager = ddpersist::PersistManager::with_options(
        store.clone(),
        ddpersist::ManagerOptions {
            durable,
            ..Default::default()
        },
    );
    let log: Log<String> = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let (l, rs) = (log.clone(), resumes.clone());
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let w = worker.index();
        let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            if via_persist {
                // The pass-through `persist` (i64 diffs), DD's in-memory operators downstream.
                let token = manager.token("x", w).unwrap();
                let rows64 = rows.inner.map(|(d, t, r)| (d, t, r as i64)).as_collection();
                let (out, handle) = rows64.persist(token).unwrap();
                let out = out.inner.map(|(d, t, r)| (d, t, r as isize)).as_collection();
                outputs_dd(out, &l, &probe);
                return (input, handle);
            }
            let o = ddpersist::operators::PersistOptions {
                durable,
                seals: seals_of(random_plan, to),
            };
            let x = rows.arrange_by_key_persisted_with(&store, "x", o).unwrap();
            rec(x.clone().as_collection(|k, v| format!("row {k}={v}")), &l, &probe);
            rec(
                x.clone().count_total().map(|x| format!("count {x:?}")),
                &l,
                &probe,
            );
            rec(
                x.clone()
                    .threshold_total(thresh)
                    .map(|x| format!("threshold {x:?}")),
                &l,
                &probe,
            );
            rec(x.clone().reduce(red).map(|x| format!("reduce {x:?}")), &l, &probe);
            rec(
                x.clone().join(x.clone()).map(|x| format!("join {x:?}")),
                &l,
                &probe,
            );
            (input, x.handle().unwrap().clone())
        });
        // A durable input continues at the greatest upper with new updates only.
        let resume = if durable {
            handle.resume_state().greatest_upper
        } else {
            handle.resume_at()
        };
        rs.lock().unwrap().push(resume);
        let mut input = Some(input);
        // Worker 1 closes its input after its last data (time 3) in the first run, at once in later runs
        // (in the random plans: once past time 3, after replaying what it must).
        if w == 1 && !first_run && (!random_plan || resume > 3) {
            input = None;
        }
        let last = if end == End::ReadOnly { resume } else { to + 1 };
        if end != End::ReadOnly {
            for &t in EVENTS.iter().filter(|t| **t >= resume && **t <= to) {
                if let Some(i) = input.as_mut() {
                    i.advance_to(t);
                    for (r, d) in data(w, t, peers) {
                        i.update(r, d);
                    }
                }
                if w == 1 && t >= 3 {
                    input = None;
                }
            }
        }
        if let Some(i) = input.as_mut() {
            i.advance_to(last);
            i.flush();
        }
        let deadline = common::compare::deadline(20);
        let stop_steps = |seed: u64| Rng(seed ^ (w as u64 * 0x9e37) ^ 77).below(12);
        match end {
            End::Abrupt(seed) => {
                for _ in 0..stop_steps(seed) {
                    worker.step();
                }
                assert_eq!(handle.error(), None, "worker {w}");
                common::drop_dataflows(worker);
                return;
            }
            End::AbruptClose(seed) => {
                drop(input);
                for _ in 0..stop_steps(seed) {
                    worker.step();
                }
                assert_eq!(handle.error(), None, "worker {w}");
                common::drop_dataflows(worker);
                return;
            }
            _ => {}
        }
        worker.step_while(|| deadline() && probe.less_than(&last));
        assert_eq!(handle.error(), None, "worker {w}");
        if end == End::Close {
            drop(input);
            worker.step_while(|| deadline() && !probe.done());
        } else {
            common::drop_dataflows(worker);
        }
    })
    .unwrap();
    let resumes = resumes.lock().unwrap().clone();
    assert!(
        resumes.iter().all(|r| *r == resumes[0]),
        "workers disagree on the resume point: {resumes:?}"
    );
    (log, resumes[0])
}

fn compare(persisted: &Log<String>, dd: &Log<String>, times: &[u64], what: &str) {
    same_at_every_time(persisted, dd, times, what)
}

fn uneven_runs(peers: usize) {
    uneven_runs_with(peers, false)
}

fn uneven_runs_with(peers: usize, durable: bool) {
    uneven_runs_kind(peers, durable, false)
}

fn uneven_runs_kind(peers: usize, durable: bool, via_persist: bool) {
    let dir = tempfile::tempdir().unwrap();
    let plan: &[(u64, End)] = &[
        (8, End::Drop),
        (0, End::ReadOnly),
        (0, End::ReadOnly),
        (1_000_001, End::Drop),
        (0, End::ReadOnly),
        (1 << 33, End::Close),
        (0, End::ReadOnly),
        ((1 << 40) + 2, End::Close),
        (0, End::ReadOnly),
    ];
    let final_to = (1 << 40) + 2;
    let dd = reference(peers, final_to);
    let mut fed_to = 0;
    for (i, &(to, end)) in plan.iter().enumerate() {
        let (log, resume) = run_kind(dir.path(), peers, to, end, i == 0, false, durable, via_persist);
        let what = format!("{peers} workers, run {i} ({end:?} to {to}), resume at {resume}");
        if end == End::ReadOnly {
            // Everything fed so far, served at the resume point.
            assert!(
                resume > fed_to,
                "{what}: resume point {resume} not past the fed {fed_to}"
            );
            let dd_now = at(&dd, &fed_to);
            assert_eq!(at(&log, &resume), dd_now, "{what}");
        } else {
            assert!(resume <= fed_to + 1 || fed_to == 0, "{what}");
            let mut times: Vec<u64> = EVENTS
                .iter()
                .copied()
                .filter(|t| *t >= resume && *t <= to)
                .collect();
            times.push(resume);
            compare(&log, &dd, &times, &what);
            // Past the last fed time, nothing new (the next event time may hold data not fed yet).
            assert_eq!(at(&log, &(to + 1)), at(&dd, &to), "{what}: at {}", to + 1);
            fed_to = to;
        }
    }
}

#[test]
fn three_uneven_workers_across_restarts_match_dd_at_every_time() {
    uneven_runs(3);
}

#[test]
fn four_uneven_workers_across_restarts_match_dd_at_every_time() {
    uneven_runs(4);
}

/// The same runs over a durable arrangement (clean stops only: every run's input is taken in and sealed),
/// its input continuing at the greatest upper.
#[test]
fn three_uneven_workers_durable_across_restarts_match_dd_at_every_time() {
    uneven_runs_with(3, true);
}

/// The same runs through the pass-through `persist` (a manager's tokens), DD's operators downstream.
#[test]
fn three_uneven_workers_through_persist_match_dd_at_every_time() {
    uneven_runs_kind(3, false, true);
}

#[test]
fn three_uneven_workers_through_durable_persist_match_dd_at_every_time() {
    uneven_runs_kind(3, true, true);
}

#[test]
fn two_uneven_workers_across_restarts_match_dd_at_every_time() {
    uneven_runs(2);
}

/// Random plans of runs over 2 and 3 workers: each run feeds from its resume point to a later event time
/// (or only reads) and ends completed, closed, or stopped part way with uneven steps per worker (its
/// input open or closed). Every run's output from its resume point up to the fed time equals DD's.
#[test]
fn random_uneven_stops_match_dd_at_every_time() {
    let seeds: u64 = std::env::var("ADV12_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let only: Option<u64> = std::env::var("ADV12_SEED").ok().and_then(|s| s.parse().ok());
    for seed in 0..seeds {
        if only.is_some_and(|o| o != seed) {
            continue;
        }
        let peers = 2 + (seed % 2) as usize;
        // Seeds 2, 3 of every 4 through `persist` instead of an arrangement.
        let via_persist = seed % 4 >= 2;
        let dir = tempfile::tempdir().unwrap();
        let final_to = (1 << 40) + 2;
        let dd = reference(peers, final_to);
        let mut rng = Rng(seed * 31 + 7);
        let mut fed_to = 0u64;
        let mut ends = Vec::new();
        for i in 0..7 {
            let end = match rng.below(6) {
                0 => End::Drop,
                1 => End::Close,
                2 => End::ReadOnly,
                3 | 4 => End::Abrupt(rng.next()),
                _ => End::AbruptClose(rng.next()),
            };
            // A later event time than the last fed one (or the last one again).
            let next = EVENTS
                .iter()
                .copied()
                .filter(|t| *t >= fed_to)
                .nth(rng.below(3) as usize)
                .unwrap_or(final_to);
            let to = if i == 0 {
                EVENTS[rng.below(6) as usize]
            } else {
                next
            };
            ends.push((to, end));
            let (log, resume) = run_kind(dir.path(), peers, to, end, i == 0, true, false, via_persist);
            if only.is_some() {
                dump(
                    dir.path(),
                    peers,
                    &format!("after run {i} ({to}, {end:?}), resume {resume}"),
                );
            }
            let what = format!(
                "seed {seed} (persist {via_persist}), {peers} workers, runs {ends:?}, resume at {resume}"
            );
            if i > 0 && end == End::ReadOnly {
                // Everything below the resume point is served (time `resume` itself may be partly
                // persisted, by workers ahead: not complete, not compared).
                assert!(
                    resume <= fed_to + 1,
                    "{what}: resume point past what was fed ({fed_to})"
                );
                if resume > 0 {
                    assert_eq!(
                        at(&log, &(resume - 1)),
                        at(&dd, &(resume - 1)),
                        "{what}: read only"
                    );
                }
                continue;
            }
            if end == End::ReadOnly || to < resume {
                continue;
            }
            let mut times: Vec<u64> = EVENTS
                .iter()
                .copied()
                .filter(|t| *t >= resume && *t <= to)
                .collect();
            match end {
                End::Drop | End::Close => {
                    times.push(resume);
                    compare(&log, &dd, &times, &what);
                    assert_eq!(at(&log, &(to + 1)), at(&dd, &to), "{what}: at {}", to + 1);
                }
                _ => {}
            }
            fed_to = fed_to.max(to);
        }
        // A last run completes everything up to the end.
        let (log, resume) = run_kind(
            dir.path(),
            peers,
            final_to,
            End::Drop,
            false,
            true,
            false,
            via_persist,
        );
        let what = format!(
            "seed {seed} (persist {via_persist}), {peers} workers, runs {ends:?}, last resume at {resume}"
        );
        let mut times: Vec<u64> = EVENTS.iter().copied().filter(|t| *t >= resume).collect();
        times.push(resume);
        compare(&log, &dd, &times, &what);
    }
}

/// Prints each worker stream's upper, since, finished flag and updates by time (debugging a seed).
fn dump(dir: &Path, peers: usize, what: &str) {
    let store = Store::open_with(dir, options()).unwrap();
    eprintln!("== {what}");
    for w in 0..peers {
        let id = ddpersist::operators::worker_stream_id("x", w, peers);
        let Ok(v) = store.version(&id) else { continue };
        let m = v.meta();
        let mut rows: Vec<(u64, String, u64, i64)> = store
            .snapshot(&id)
            .unwrap()
            .decode::<String, u64>()
            .unwrap()
            .into_iter()
            .map(|(k, v, t, d)| (t, k, v, d))
            .collect();
        rows.sort();
        eprintln!(
            "  {id}: upper {} since {} finished {} rows {rows:?}",
            m.upper, m.since, m.finished
        );
    }
}
