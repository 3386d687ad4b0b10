//! Power-loss crash states of persisted *dataflows* (DESIGN.md §8's "operator workloads over `SimFs`"), in
//! the way of `tests/durability/crash_states.rs` for the store: one timely worker runs `arrange_persisted`, `persist`
//! (through a `PersistManager` token) and the de-upsert operator over a store on a recording `SimFs`, a
//! time at a time; then, for every crash point and each power-loss state there (only synced data; synced
//! plus a prefix of the later operations; a random subset of unsynced pages), the restart protocol runs as
//! README says: the store opens, the dataflow is built again, the source replays from the operators'
//! least `resume_at()` to its end and closes. Each state must hold:
//! - every time the first run saw complete (the probe past it) is in every operator's stream: its upper is
//!   at least that time (the seal is the durability point of a replayable source);
//! - the restarted run's output of each operator (what was persisted, re-emitted first, then the replay)
//!   accumulates at every time from its resume point on to the source's collection at that time (the
//!   upsert: to the upserted state, every multiplicity 0 or 1): nothing lost, nothing twice;
//! - a second restart after the source's end re-emits the same collection and resumes at the end.
//!
//! A source that cannot replay, `persist`ed into a durable stream (each time in two activations), is
//! explored the same way: the store holds only updates it sent, each once, and every time the first run
//! saw complete whole; restarted, the source continues after the last time the store holds anything of,
//! and the operator emits exactly what the store holds plus the new input (DESIGN.md §5: exactly once).
//!
//! The default run checks a sample of states (`common::states`) at every third crash point (with two
//! workers, every tenth); `DDPERSIST_CRASH_STATES=full` checks every crash point, every prefix and more
//! page subsets.

use crate::common;

use common::{states, BuildFailed, Rng};
use ddpersist::blob::DirBlob;
use ddpersist::fs::{CrashPoint, SimFs};
use ddpersist::operators::{ArrangePersisted, Persist, Upsert, UpsertPersisted};
use ddpersist::wal::{FileLog, WalRecovery};
use ddpersist::{Codec, Options, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

type Row = (String, u64);
type Update = (Row, u64, i64);
/// `(t, calls)`: the probe passed `t` once `calls` file-system calls had returned.
type Completed = Vec<(u64, u64)>;

/// The source's times: `0..TIMES`.
const TIMES: u64 = 8;
const OPERATORS: [&str; 3] = ["arrange", "persist", "upsert"];

fn options() -> Options {
    Options {
        memtable_budget_bytes: 600,
        max_wal_bytes: Some(4000),
        merge_fan_in: 2,
        compaction_threads: 0,
        block_target_bytes: 256,
        ..Options::default()
    }
}

fn open(fs: &SimFs) -> ddpersist::Result<Store> {
    let blob = DirBlob::on(fs.shared(), "/store")?;
    let wal = FileLog::on(fs.shared(), "/store/wal", 1024, WalRecovery::Strict)?;
    Store::open_on(Arc::new(blob), Arc::new(wal), options())
}

/// The collection's updates at time `t`: inserts, and retractions of rows inserted two times before.
fn rows(t: u64) -> Vec<Update> {
    let mut out: Vec<Update> = (0..5)
        .map(|i| ((format!("k{}", (t * 3 + i) % 7), t * 10 + i), t, 1))
        .collect();
    if t >= 2 {
        let s = t - 2;
        out.extend(
            (0..5)
                .step_by(2)
                .map(|i| ((format!("k{}", (s * 3 + i) % 7), s * 10 + i), t, -1)),
        );
    }
    out
}

/// The upserts at time `t`: sets, overwrites and deletes of a few keys.
fn upserts(t: u64) -> Vec<Upsert<String, u64>> {
    (0..4)
        .map(|i| {
            let key = format!("u{}", (t * 2 + i) % 5);
            let val = if (t + i) % 4 == 3 { None } else { Some(t * 100 + i) };
            (key, val, t)
        })
        .collect()
}

/// The source's collection at time `t` (every update at or before it).
fn collection_at(t: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    for u in (0..=t.min(TIMES - 1)).flat_map(rows) {
        *acc.entry(u.0).or_insert(0) += u.2;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// The upserted state at time `t`, as a collection of `(key, val)` with multiplicity 1.
fn upserted_at(t: u64) -> BTreeMap<Row, i64> {
    let mut state = BTreeMap::new();
    for (k, v, _) in (0..=t.min(TIMES - 1)).flat_map(upserts) {
        match v {
            Some(v) => state.insert(k, v),
            None => state.remove(&k),
        };
    }
    state.into_iter().map(|kv| (kv, 1)).collect()
}

/// Accumulates an operator's output at time `t`.
fn accumulate(out: &[Update], t: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    for (row, _, d) in out.iter().filter(|u| u.1 <= t) {
        *acc.entry(row.clone()).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// What a run saw: each operator's output, its resume point, and (with `on_complete`) the file-system call
/// counts at which each time was complete at the probe.
#[derive(Default)]
struct Run {
    outputs: [Vec<Update>; 3],
    resume: [u64; 3],
    complete: Completed,
}

/// Runs the dataflow over `store` with `workers` workers (worker 0 feeds; with two, the other is idle):
/// the source replays from the operators' least resume point to its end and closes, or (with `read_only`)
/// only advances to that point and drops the dataflow. `calls` reads the file system's call count after
/// each completed time.
fn run(
    store: Store,
    workers: usize,
    read_only: bool,
    calls: impl Fn() -> u64 + Send + Sync + 'static,
) -> Result<Run, String> {
    let outs: [Arc<Mutex<Vec<Update>>>; 3] = Default::default();
    let o = outs.clone();
    let manager = PersistManager::new(store.clone());
    let failed = BuildFailed::default();
    let guards = timely::execute(
        timely::Config::process(workers),
        move |worker| -> Result<([u64; 3], Completed), String> {
            let probe = ProbeHandle::new();
            let index = worker.index();
            let token = manager
                .token("persist", index)
                .map_err(|e| failed.fail(worker, e.to_string()))?;
            let mut upsert_input = InputHandle::new();
            let built = worker.dataflow::<u64, _, _>(|scope| -> Result<_, String> {
                let (input, rows) = scope.new_collection::<Row, i64>();
                let (arranged, a) = rows
                    .clone()
                    .arrange_persisted(&store, "arrange")
                    .map_err(|e| e.to_string())?;
                let o0 = o[0].clone();
                arranged
                    .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                    .inner
                    .inspect(move |u| o0.lock().unwrap().push(u.clone()))
                    .probe_with(&probe);
                let (persisted, p) = rows.persist(token).map_err(|e| e.to_string())?;
                let o1 = o[1].clone();
                persisted
                    .inner
                    .inspect(move |u| o1.lock().unwrap().push(u.clone()))
                    .probe_with(&probe);
                let (upserted, u) = scope
                    .input_from(&mut upsert_input)
                    .upsert_persisted(&store, "upsert")
                    .map_err(|e| e.to_string())?;
                let o2 = o[2].clone();
                upserted
                    .inner
                    .inspect(move |x| o2.lock().unwrap().push(x.clone()))
                    .probe_with(&probe);
                Ok((input, a, p, u))
            });
            let (mut input, a, p, u) = built.map_err(|e| failed.fail(worker, e))?;
            let resume = [a.resume_at(), p.resume_at(), u.resume_at()];
            let from = *resume.iter().min().unwrap();
            input.advance_to(from);
            upsert_input.advance_to(from);
            let mut complete = Vec::new();
            if read_only {
                input.flush();
                worker.step_while(|| probe.less_than(&from) && !failed.is_set());
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            } else {
                for t in from..TIMES {
                    input.advance_to(t);
                    upsert_input.advance_to(t);
                    if index == 0 {
                        for (row, _, d) in rows(t) {
                            input.update(row, d);
                        }
                        for x in upserts(t) {
                            upsert_input.send(x);
                        }
                    }
                    input.advance_to(t + 1);
                    upsert_input.advance_to(t + 1);
                    input.flush();
                    worker.step_while(|| probe.less_than(&(t + 1)) && !failed.is_set());
                    complete.push((t + 1, calls()));
                }
                drop(input);
                drop(upsert_input);
                worker.step_while(|| !probe.done() && !failed.is_set());
            }
            failed.check(worker)?;
            for (name, e) in OPERATORS.iter().zip([a.error(), p.error(), u.error()]) {
                if let Some(e) = e {
                    return Err(format!("{name}: {e}"));
                }
            }
            Ok((resume, complete))
        },
    )
    .map_err(|e| format!("timely: {e}"))?;
    let mut results = joined(guards.join())?;
    let (resume, complete) = results.swap_remove(0);
    if let Some(other) = results.iter().find(|r| r.0 != resume) {
        return Err(format!("workers resumed at {resume:?} and {:?}", other.0));
    }
    let outputs = outs.map(|o| o.lock().unwrap().clone());
    Ok(Run {
        outputs,
        resume,
        complete,
    })
}

/// Every worker's result, or every worker's error (a worker that failed to build and the others that
/// stopped waiting for it: `BuildFailed`).
fn joined<T>(results: Vec<Result<Result<T, String>, String>>) -> Result<Vec<T>, String> {
    let mut errors = Vec::new();
    let mut ok = Vec::new();
    for (index, r) in results.into_iter().enumerate() {
        match r {
            Ok(Ok(t)) => ok.push(t),
            Ok(Err(e)) => errors.push(format!("worker {index}: {e}")),
            Err(e) => errors.push(format!("worker {index} panicked: {e}")),
        }
    }
    match errors.is_empty() {
        true => Ok(ok),
        false => Err(errors.join("; ")),
    }
}

/// Each operator's output against the source from `run.resume[i]` on (the persisted part re-emitted at or
/// below it, the replay after it).
fn check_outputs(run: &Run, what: &str) -> Result<(), String> {
    for (i, name) in OPERATORS.iter().enumerate() {
        for t in run.resume[i]..=TIMES {
            let want = if i == 2 { upserted_at(t) } else { collection_at(t) };
            let got = accumulate(&run.outputs[i], t);
            if got != want {
                return Err(format!(
                    "{what}: {name} (resumed at {}) at time {t}: output {got:?}, source {want:?}",
                    run.resume[i]
                ));
            }
        }
    }
    Ok(())
}

/// The restart protocol on the store of one crash state at call `k` of the first run.
fn check(state: &SimFs, workers: usize, k: u64, first: &Run) -> Result<(), String> {
    let store = open(state).map_err(|e| format!("open failed: {e}"))?;
    let acked = first
        .complete
        .iter()
        .filter(|c| c.1 <= k)
        .map(|c| c.0)
        .max()
        .unwrap_or(0);
    for name in OPERATORS {
        for w in 0..workers {
            let id = format!("{name}/w{w}of{workers}");
            let upper = if store.has_stream(&id) {
                store.upper(&id).map_err(|e| e.to_string())?
            } else {
                0
            };
            if upper < acked {
                return Err(format!(
                    "{id}: upper {upper}, but the first run saw {acked} complete"
                ));
            }
        }
    }
    let again = run(store.clone(), workers, false, || 0).map_err(|e| format!("the restarted run: {e}"))?;
    check_outputs(&again, "the restarted run")?;
    drop(store);
    let store = open(state).map_err(|e| format!("the second reopen failed: {e}"))?;
    let read = run(store, workers, true, || 0).map_err(|e| format!("the read-only run: {e}"))?;
    if read.resume != [TIMES; 3] {
        return Err(format!(
            "the read-only run resumed at {:?}, not at the end",
            read.resume
        ));
    }
    check_outputs(&read, "the read-only run")
}

/// One exploration at a time: a persisted operator's compaction waits for every live one in the process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Explores the crash states of a first run with `workers` workers.
fn explore(workers: usize) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fs = SimFs::new();
    fs.record_crash_points(true);
    let store = open(&fs).unwrap();
    let counter = fs.clone();
    let first = run(store, workers, false, move || counter.calls()).unwrap();
    check_outputs(&first, "the first run").unwrap();
    let points = fs.take_crash_points();
    let checked = check_points(&points, workers, "replayable sources", |state, k| {
        check(state, workers, k, &first)
    });
    let acked = points
        .iter()
        .filter(|p| first.complete.iter().any(|c| c.1 <= p.call))
        .count();
    assert!(acked > 0 && checked > 0);
}

/// Checks states of every crash point of `points` (a sample by default: every third point with one worker,
/// every tenth with two, since each check runs the dataflow; `DDPERSIST_CRASH_STATES=full`: every point
/// and more states of each) with `check(state, call)`; returns how many states it checked.
fn check_points(
    points: &[CrashPoint],
    workers: usize,
    what: &str,
    check: impl Fn(&SimFs, u64) -> Result<(), String>,
) -> u64 {
    let full = std::env::var("DDPERSIST_CRASH_STATES").is_ok_and(|v| v == "full");
    let mut rng = Rng(11);
    let stride = match (full, workers) {
        (true, _) => 1,
        (false, 1) => 3,
        (false, _) => 10,
    };
    let mut checked = 0u64;
    for point in points.iter().step_by(stride) {
        for which in states(point, full, &mut rng) {
            checked += 1;
            if let Err(e) = check(&point.state(which), point.call) {
                panic!(
                    "{what}, {workers} workers, crash after call {} ({which:?}): {e}",
                    point.call
                );
            }
        }
    }
    eprintln!(
        "crash_states_operators: {what}, {workers} workers: {} crash points (checked 1 in {stride}), {checked} states",
        points.len()
    );
    assert!(checked > (points.len() / stride) as u64);
    checked
}

#[test]
fn every_crash_state_of_persisted_dataflows_restarts_with_nothing_lost_or_doubled() {
    explore(1);
}

/// Two workers, one of them idle (its streams sealed by its frontier only): the case where a restart once
/// lost data (README, "Restarting").
#[test]
fn every_crash_state_with_an_idle_worker_restarts_with_nothing_lost_or_doubled() {
    explore(2);
}

/// A source that cannot replay, persisted into a durable stream (`ManagerOptions::durable`): each time's
/// updates in two activations (so a crash can fall inside a time). Returns the operator's output and, with
/// `calls`, the file-system call counts at which each time was complete. With `stagger`, the other
/// workers build only once worker 0 has written its first updates, so that crash states fall between a
/// write and another worker's stream creation (the case `tests/restart/restart_build_order.rs` found; without it
/// only some interleavings have them).
fn run_durable(
    store: Store,
    workers: usize,
    times: std::ops::Range<u64>,
    stagger: bool,
    calls: impl Fn() -> u64 + Send + Sync + 'static,
) -> Result<(Vec<Update>, Completed), String> {
    let wrote = Arc::new(std::sync::atomic::AtomicBool::new(!stagger));
    let first_stream = store.clone();
    let out: Arc<Mutex<Vec<Update>>> = Arc::default();
    let o = out.clone();
    let options = ddpersist::ManagerOptions {
        max_bytes_per_sec: None,
        durable: true,
    };
    let manager = PersistManager::with_options(store, options);
    let failed = BuildFailed::default();
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while index != 0 && !wrote.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let token = manager
            .token("durable", index)
            .map_err(|e| failed.fail(worker, e.to_string()))?;
        let o = o.clone();
        let built = worker.dataflow::<u64, _, _>(|scope| -> Result<_, String> {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, handle) = rows.persist(token).map_err(|e| e.to_string())?;
            persisted
                .inner
                .inspect(move |u| o.lock().unwrap().push(u.clone()))
                .probe_with(&probe);
            Ok((input, handle))
        });
        let (mut input, handle) = built.map_err(|e| failed.fail(worker, e))?;
        let mut complete = Vec::new();
        input.advance_to(times.start);
        for t in times.clone() {
            input.advance_to(t);
            let all = rows(t);
            for half in all.chunks(all.len().div_ceil(2)) {
                if index == 0 {
                    for (row, _, d) in half {
                        input.update(row.clone(), *d);
                    }
                }
                input.flush();
                worker.step();
                let own = format!("durable/w0of{workers}");
                while index == 0 && !wrote.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                    if first_stream.holds_unsealed(&own).unwrap_or(true) {
                        wrote.store(true, Ordering::SeqCst);
                    }
                    worker.step();
                }
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)) && !failed.is_set());
            complete.push((t + 1, calls()));
        }
        drop(input);
        worker.step_while(|| !probe.done() && !failed.is_set());
        failed.check(worker)?;
        match handle.error() {
            Some(e) => Err(e),
            None => Ok(complete),
        }
    })
    .map_err(|e| format!("timely: {e}"))?;
    let complete = joined(guards.join())?.swap_remove(0);
    let out = out.lock().unwrap().clone();
    Ok((out, complete))
}

/// Updates as a multiset of `(row, time)`.
fn multiset(updates: &[Update]) -> BTreeMap<(Row, u64), i64> {
    let mut acc = BTreeMap::new();
    for (row, t, d) in updates {
        *acc.entry((row.clone(), *t)).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// One crash state of the durable source's first run at call `k`: what the store holds is what the source
/// sent, once, with every time the first run saw complete whole; the restarted run (the source continuing
/// after the last time the store holds anything of, as it cannot replay) emits exactly that plus the new
/// input.
fn check_durable(state: &SimFs, workers: usize, k: u64, complete: &[(u64, u64)]) -> Result<(), String> {
    let store = open(state).map_err(|e| format!("open failed: {e}"))?;
    let sent: BTreeMap<(Row, u64), i64> = (0..TIMES + 3)
        .flat_map(rows)
        .map(|(r, t, d)| ((r, t), d))
        .collect();
    let mut stored = Vec::new();
    for w in 0..workers {
        let id = format!("durable/w{w}of{workers}");
        if !store.has_stream(&id) {
            continue;
        }
        let snapshot = store.snapshot(&id).and_then(|s| s.decode::<String, u64>());
        let snapshot = snapshot.map_err(|e| format!("{id}: {e}"))?;
        stored.extend(snapshot.into_iter().map(|(k, v, t, d)| ((k, v), t, d)));
    }
    let held = multiset(&stored);
    if stored.len() != held.len() {
        return Err(format!("an update stored twice: {stored:?}"));
    }
    if let Some((u, d)) = held.iter().find(|(u, d)| sent.get(*u) != Some(*d)) {
        return Err(format!("stored {u:?} with diff {d}, never sent so"));
    }
    let acked = complete
        .iter()
        .filter(|c| c.1 <= k)
        .map(|c| c.0)
        .max()
        .unwrap_or(0);
    if let Some(u) = sent.keys().find(|u| u.1 < acked && !held.contains_key(*u)) {
        return Err(format!("{u:?} lost: time {acked} was complete"));
    }
    let next = held.keys().map(|u| u.1 + 1).max().unwrap_or(0);
    let (out, _) = run_durable(store, workers, next..TIMES + 3, false, || 0)
        .map_err(|e| format!("the restarted run: {e}"))?;
    let mut want = held.clone();
    want.extend((next..TIMES + 3).flat_map(rows).map(|(r, t, d)| ((r, t), d)));
    let got = multiset(&out);
    if got != want {
        return Err(format!(
            "the restarted run emitted {got:?}, the store and the new input hold {want:?}"
        ));
    }
    Ok(())
}

/// Explores the crash states of a durable source's first run with `workers` workers.
fn explore_durable(workers: usize) {
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let fs = SimFs::new();
    fs.record_crash_points(true);
    let store = open(&fs).unwrap();
    let counter = fs.clone();
    let (out, complete) = run_durable(store, workers, 0..TIMES, true, move || counter.calls()).unwrap();
    assert_eq!(
        multiset(&out),
        multiset(&(0..TIMES).flat_map(rows).collect::<Vec<_>>())
    );
    let points = fs.take_crash_points();
    check_points(&points, workers, "a durable source", |state, k| {
        check_durable(state, workers, k, &complete)
    });
}

/// The durable source (DESIGN.md §5: exactly once for a source that cannot replay), one worker and two.
#[test]
fn every_crash_state_of_a_durable_source_keeps_what_it_wrote_once() {
    explore_durable(1);
    explore_durable(2);
}
