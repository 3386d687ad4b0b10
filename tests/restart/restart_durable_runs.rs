//! Adversarial round 11 (adopted; passes): many short runs of a durable persisted arrangement (an input that cannot
//! replay: each run continues with new rows from the agreed `greatest_upper`, README "Restarting"), two
//! workers, rows sent at random times ahead of the frontier in every run (some cancelling each other,
//! some landing at the times a later run feeds), merges forced (tiny blocks, fan-in 2), each run stopped
//! (dataflow dropped, input open) once every row it sent is taken in; the last run closes its input. Each
//! run's outputs (as_collection, count_total, reduce, a join) are compared with DD's in-memory program
//! fed every row ever sent, at every time from the run's resume point on.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{log, rec, same_at_every_time, Logs};
use common::Rng;
use ddpersist::operators::{agree_resume_state, worker_stream_id, ArrangeTyped, PersistOptions};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

type Row = (u32, String);
/// Every row sent: `(row, time, diff, worker that sent it)`.
type Sent = Vec<(Row, u64, isize, usize)>;

const WORKERS: usize = 2;

fn options() -> Options {
    Options {
        block_target_bytes: 96,
        merge_fan_in: 2,
        ..Options::default()
    }
}

/// The rows run `run` sends at round `t` (from worker `w`): some at `t`, some ahead.
fn rows(seed: u64, run: u64, t: u64, w: usize) -> Vec<(Row, u64, isize)> {
    let mut rng = Rng(seed * 1_000_003 + run * 7919 + t * 31 + w as u64);
    (0..rng.below(5))
        .map(|_| {
            let k = rng.below(6) as u32;
            let v = format!("v{}", rng.below(3));
            let at = if rng.below(3) == 0 {
                t + 1 + rng.below(12)
            } else {
                t
            };
            ((k, v), at, [1, 1, 2, -1][rng.below(4) as usize])
        })
        .collect()
}

/// A stream's updates at or beyond `from`, consolidated: `(key, val, time) -> diff`.
fn unsealed(store: &Store, stream: &str, from: u64) -> BTreeMap<(u32, String, u64), i64> {
    let mut out = BTreeMap::new();
    for (k, v, t, d) in store.snapshot(stream).unwrap().decode::<u32, String>().unwrap() {
        if t >= from {
            *out.entry((k, v, t)).or_insert(0) += d;
        }
    }
    out.retain(|_, d| *d != 0);
    out
}

/// One run: continues from the agreed greatest upper with `rounds` rounds, then stops (or, `last`, closes
/// its input). `sent` holds every row of earlier runs; this run's are added. Returns the agreed state.
/// What the runs share: every row sent, per run the workers that published their rows, per run the
/// output logs.
#[derive(Clone)]
struct Shared {
    sent: Arc<Mutex<Sent>>,
    published: Arc<Vec<std::sync::atomic::AtomicUsize>>,
    logs: Arc<Vec<Logs>>,
}

impl Shared {
    fn new(runs: u64) -> Self {
        Shared {
            sent: Default::default(),
            published: Arc::new((0..runs).map(|_| Default::default()).collect()),
            logs: Arc::new((0..runs).map(|_| Default::default()).collect()),
        }
    }
}

/// One run on `worker` over `st`: builds the dataflow, continues from the agreed greatest upper with
/// `rounds` rounds, then stops (drops its dataflows; or, `last`, closes its input). Returns where it
/// continued from.
fn one_run(
    worker: &mut timely::worker::Worker,
    st: &Store,
    (seed, run_no, rounds, last): (u64, u64, u64, bool),
    shared: &Shared,
) -> u64 {
    let logs = &shared.logs[run_no as usize];
    let published = &shared.published[run_no as usize];
    let sent = &shared.sent;
    let probe = ProbeHandle::new();
    let (mut pin, mut din, mut oin, handle) = worker.dataflow::<u64, _, _>(|scope| {
        let (pin, pdata) = scope.new_collection::<Row, isize>();
        let (din, ddata) = scope.new_collection::<Row, isize>();
        let (oin, oth) = scope.new_collection::<(u32, u8), isize>();
        let o = PersistOptions {
            durable: true,
            ..Default::default()
        };
        let pd = pdata.arrange_by_key_persisted_with(st, "data", o).unwrap();
        let handle = pd.handle().unwrap().clone();
        let (a, b) = log(logs, "as_collection");
        rec(pd.clone().as_collection(|k, v| format!("{k}={v}")), &a, &probe);
        rec(ddata.clone().map(|(k, v)| format!("{k}={v}")), &b, &probe);
        let (a, b) = log(logs, "count_total");
        rec(pd.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
        rec(
            ddata.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
            &b,
            &probe,
        );
        let red = |_k: &u32, s: &[(&String, isize)], out: &mut Vec<((String, isize), isize)>| {
            let total: isize = s.iter().map(|x| x.1).sum();
            out.push(((s[s.len() - 1].0.clone(), total), 1));
        };
        let (a, b) = log(logs, "reduce");
        rec(pd.clone().reduce(red).map(|x| format!("{x:?}")), &a, &probe);
        rec(ddata.clone().reduce(red).map(|x| format!("{x:?}")), &b, &probe);
        let (a, b) = log(logs, "join");
        rec(pd.join(oth.clone()).map(|x| format!("{x:?}")), &a, &probe);
        rec(ddata.join(oth).map(|x| format!("{x:?}")), &b, &probe);
        (pin, din, oin, handle)
    });
    let state = agree_resume_state(worker, &[handle.resume_state()]);
    let from = state.greatest_upper;
    let to = from + rounds;
    let index = worker.index();
    for k in 0..6u32 {
        if k as usize % WORKERS == index {
            oin.update((k, (k % 2) as u8), 1);
        }
    }
    // DD's side: every row of earlier runs (at their times, ahead ones included).
    let earlier: Sent = sent.lock().unwrap().clone();
    for (row, at, d, w) in earlier {
        if w == index {
            din.update_at(row, at, d);
        }
    }
    pin.advance_to(from);
    din.advance_to(from);
    let mine: Arc<Mutex<Vec<(Row, u64, isize)>>> = Default::default();
    for t in from..to {
        for (row, at, d) in rows(seed, run_no, t, index) {
            pin.update_at(row.clone(), at, d);
            din.update_at(row.clone(), at, d);
            mine.lock().unwrap().push((row, at, d));
        }
        pin.advance_to(t + 1);
        din.advance_to(t + 1);
        oin.advance_to(t + 1);
        pin.flush();
        din.flush();
        oin.flush();
        let start = Instant::now();
        while probe.less_than(&(t + 1)) {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "hang at {t}: {:?}",
                handle.error()
            );
            worker.step();
        }
    }
    {
        let mut all = sent.lock().unwrap();
        for (row, at, d) in mine.lock().unwrap().drain(..) {
            all.push((row, at, d, index));
        }
    }
    published.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    if last {
        drop((pin, din, oin));
        let start = Instant::now();
        while !probe.done() {
            assert!(start.elapsed() < Duration::from_secs(30), "hang at the close");
            worker.step();
        }
        return from;
    }
    // Every row sent ahead is taken in (in the durable streams) before the stop; the other
    // worker's rows arrive through the exchange, so both step until the stores hold them all.
    let start = Instant::now();
    loop {
        // Wait for both workers to have published their rows.
        let all = sent.lock().unwrap().clone();
        let mut want: BTreeMap<(u32, String, u64), i64> = BTreeMap::new();
        let run_rows = all.iter().filter(|(_, at, _, _)| *at >= to);
        for ((k, v), at, d, _) in run_rows {
            *want.entry((*k, v.clone(), *at)).or_insert(0) += *d as i64;
        }
        want.retain(|_, d| *d != 0);
        let mut held: BTreeMap<(u32, String, u64), i64> = BTreeMap::new();
        for w in 0..WORKERS {
            for (key, d) in unsealed(st, &worker_stream_id("data", w, WORKERS), to) {
                *held.entry(key).or_insert(0) += d;
            }
        }
        let all_published = published.load(std::sync::atomic::Ordering::SeqCst) == WORKERS;
        if held == want && all_published {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "rows ahead never all taken in: held {held:?}, want {want:?}"
        );
        worker.step();
    }
    // A stop: every worker waits for the others to see their rows in, then drops the dataflow.
    let _ = agree_resume_state(worker, &[]);
    for df in worker.installed_dataflows() {
        worker.drop_dataflow(df);
    }
    from
}

/// One run in a process of its own (the store opened for it, a `timely::execute` of its own).
fn run(dir: &Path, run: (u64, u64, u64, bool), shared: &Shared) -> u64 {
    let store = Store::open_with(dir, options()).unwrap();
    let shared = shared.clone();
    let from = Arc::new(Mutex::new(0u64));
    let f2 = from.clone();
    timely::execute(timely::Config::process(WORKERS), move |worker| {
        let at = one_run(worker, &store, run, &shared);
        *f2.lock().unwrap() = at;
    })
    .unwrap();
    let from = *from.lock().unwrap();
    from
}

/// The runs' plan: `(seed, run, rounds, last)`.
fn plan(seed: u64, runs: u64) -> Vec<(u64, u64, u64, bool)> {
    let mut rng = Rng(seed);
    (0..runs)
        .map(|r| (seed, r, 1 + rng.below(6), r + 1 == runs))
        .collect()
}

fn compare(shared: &Shared, plan: &[(u64, u64, u64, bool)], froms: &[u64], what: &str) {
    for (&(seed, r, rounds, last), &from) in plan.iter().zip(froms) {
        let end = if last { from + rounds + 20 } else { from + rounds };
        let times: Vec<u64> = (from..end).collect();
        for (name, a, b) in shared.logs[r as usize].lock().unwrap().iter() {
            same_at_every_time(
                a,
                b,
                &times,
                &format!("{what}: seed {seed}, run {r} (from {from}), {name}"),
            );
        }
    }
}

/// Each run a process of its own over the directory.
fn check(seed: u64, runs: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Shared::new(runs);
    let plan = plan(seed, runs);
    let froms: Vec<u64> = plan.iter().map(|&r| run(tmp.path(), r, &shared)).collect();
    compare(&shared, &plan, &froms, "restarts");
}

/// Every run a dataflow rebuilt in one process over one open store (README: a persisted operator rebuilt
/// in the same process; workers agree on the state with `agree_resume_state`).
fn check_rebuilt(seed: u64, runs: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let shared = Shared::new(runs);
    let plan = plan(seed, runs);
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let froms: Arc<Mutex<Vec<u64>>> = Default::default();
    let (s2, f2, p2) = (shared.clone(), froms.clone(), plan.clone());
    timely::execute(timely::Config::process(WORKERS), move |worker| {
        for &r in &p2 {
            let from = one_run(worker, &store, r, &s2);
            if worker.index() == 0 {
                f2.lock().unwrap().push(from);
            }
        }
    })
    .unwrap();
    let froms = froms.lock().unwrap().clone();
    compare(&shared, &plan, &froms, "rebuilt in one process");
}

#[test]
fn many_dataflows_rebuilt_in_one_process_over_a_durable_arrangement_with_rows_ahead() {
    for seed in 1..=3 {
        check_rebuilt(seed, 5);
    }
}

#[test]
fn many_short_runs_of_a_durable_arrangement_with_rows_ahead() {
    for seed in 1..=3 {
        check(seed, 5);
    }
}

#[test]
#[ignore]
fn many_short_runs_of_a_durable_arrangement_with_rows_ahead_long() {
    for seed in 10..=40 {
        check(seed, 8);
        check_rebuilt(seed, 8);
    }
}
