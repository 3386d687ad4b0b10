//! Runs of the chain every test here builds (see `schedule` for the chain, its input schedules and its
//! oracle): one run per plan, ended as the plan says, and the checks of each run's log and of what the
//! persisted streams hold.

use crate::common;
use ddpersist::operators::{ArrangeTyped, Persist, PersistTime, UpsertPersisted};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input as _, Inspect, Probe};
use timely::dataflow::ProbeHandle;

pub use crate::schedule::*;

/// How a run ends.
#[derive(Clone, Debug)]
pub enum Ending {
    /// Advance past the last slot fed, step until the probe passes it, drop the dataflow.
    Clean,
    /// Advance past the last slot fed (or, with `give_last`, feed one more slot without advancing past
    /// it), then worker `w` steps `steps[w]` times and drops its dataflow (a crash of a process would
    /// stop the workers at such uneven moments).
    Uneven { steps: Vec<u32>, give_last: bool },
    /// Feed every slot, close the inputs (the source ends), step until done.
    Close,
    /// As `Close`, but slot `end_slot`'s updates are given at its time first, without advancing past
    /// it: the inputs close with data at their frontier (busy workers then finish one past it, idle
    /// ones at it).
    CloseGiving,
    /// As `Close` (every slot below `end_slot` fed and advanced past), but then worker `w` steps only
    /// `steps[w]` times and drops its dataflow: a crash while the workers finish their streams.
    CloseUneven { steps: Vec<u32> },
}

/// One run (a dataflow built, fed, ended).
#[derive(Clone, Debug)]
pub struct Plan {
    /// Feed slots below this index (from the resume point on).
    pub end_slot: usize,
    pub ending: Ending,
    pub with_dst: bool,
    pub with_dst2: bool,
    /// dst's collection mapped to `(x % 5, key)` → `arrange_by_key_persisted` ("dst3"): a persisted
    /// arrangement downstream of a persisted arrangement (needs `with_dst`).
    pub with_dst3: bool,
    /// src is `arrange_by_key_persisted` ("srcA", its since advancing with compaction) and its
    /// `as_collection`, instead of `persist` ("src").
    pub src_arranged: bool,
    /// src is `upsert_persisted` ("srcU") over the slots' upserts (`to_upserts`), instead.
    pub src_upsert: bool,
    /// Who feeds src: `None` each slot's updates by the worker `slot % peers`; `Some(w)` worker `w`.
    pub feeder: Option<usize>,
}

/// What one run saw.
#[derive(Clone, Debug, Default)]
pub struct Out {
    /// The agreed resume point (store time).
    pub resume: u64,
    /// Every worker's resume point.
    pub resumes: Vec<u64>,
    pub log: Vec<Upd>,
    pub log2: Vec<Upd2>,
    /// The greatest probe frontier a worker read when it ended (store time; `u64::MAX` when done).
    pub passed: u64,
    /// Errors of the handles, or of the build.
    pub errors: Vec<String>,
    /// What dst's and dst2's streams held once every worker had dropped the run's dataflow: updates,
    /// least upper, greatest since.
    pub dst: (Vec<Upd>, u64, u64),
    pub dst2: (Vec<Upd2>, u64, u64),
    pub log3: Vec<Upd2>,
    pub dst3: (Vec<Upd2>, u64, u64),
}

const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `plans` one after the other in one `timely::execute` of `peers` workers over `store` (each
/// dataflow dropped on every worker, a barrier, then the next one built: a rebuild in the same
/// process). Returns what each run saw; a build error ends the sequence (returned in `errors`).
pub fn run_seq<T: PersistTime + Send + Sync>(
    store: &Store,
    peers: usize,
    slots: &[Slot],
    plans: &[Plan],
) -> Vec<Out> {
    let outs: Arc<Mutex<Vec<Out>>> = Arc::new(Mutex::new(vec![Out::default(); plans.len()]));
    let barrier = Arc::new(Barrier::new(peers));
    type Logs = Vec<(Arc<Mutex<Vec<Upd>>>, Arc<Mutex<Vec<Upd2>>>, Arc<Mutex<Vec<Upd2>>>)>;
    let logs: Logs = (0..plans.len()).map(|_| Default::default()).collect();
    let logs = Arc::new(logs);
    let failed = common::BuildFailed::default();
    let (o, slots, plans, store) = (outs.clone(), slots.to_vec(), plans.to_vec(), store.clone());
    timely::execute(timely::Config::process(peers), move |worker| {
        let index = worker.index();
        for (p, plan) in plans.iter().enumerate() {
            let probe = ProbeHandle::<T>::new();
            let manager = PersistManager::new(store.clone());
            let (l1, l2, l3) = logs[p].clone();
            let (c1, c2, c3) = (l1.clone(), l2.clone(), l3.clone());
            let st = store.clone();
            let built = worker.dataflow::<T, _, _>(|scope| -> Result<_, String> {
                let e = |e: ddpersist::Error| e.to_string();
                let (si, src) = scope.new_collection::<Row, i64>();
                let (di, dim) = scope.new_collection::<Row, i64>();
                let (ui, ups) = scope.new_input::<Vec<(String, Option<u64>, T)>>();
                let mut uh = None;
                let (src, hs) = if plan.src_upsert {
                    let (u, h) = ups.upsert_persisted(&st, "srcU").map_err(e)?;
                    uh = Some(h);
                    // A handle for the rows input too (it persists nothing: an empty id never built).
                    (u, None)
                } else if plan.src_arranged {
                    let a = src.arrange_by_key_persisted(&st, "srcA").map_err(e)?;
                    let h = a.handle().unwrap().clone();
                    (a.as_collection(|k: &String, v: &u64| (k.clone(), *v)), Some(h))
                } else {
                    let token = manager.token("src", index).map_err(e)?;
                    let (c, h) = src.persist(token).map_err(e)?;
                    (c, Some(h))
                };
                let out = middle(src, dim);
                let mut handles: Vec<_> = hs.into_iter().collect();
                if plan.with_dst {
                    let dst = out.clone().arrange_by_key_persisted(&st, "dst").map_err(e)?;
                    handles.push(dst.handle().unwrap().clone());
                    let coll = dst.as_collection(|k: &String, v: &u64| (k.clone(), *v));
                    if plan.with_dst3 {
                        let dst3 = coll
                            .clone()
                            .map(|(k, x)| (x % 5, k))
                            .arrange_by_key_persisted(&st, "dst3")
                            .map_err(e)?;
                        handles.push(dst3.handle().unwrap().clone());
                        dst3.as_collection(|x: &u64, k: &String| (*x, k.clone()))
                            .inner
                            .inspect(move |(r, t, d)| c3.lock().unwrap().push((r.clone(), t.to_u64(), *d)))
                            .probe_with(&probe);
                    }
                    coll.inner
                        .inspect(move |(r, t, d)| c1.lock().unwrap().push((r.clone(), t.to_u64(), *d)))
                        .probe_with(&probe);
                }
                if plan.with_dst2 {
                    let token = manager.token("dst2", index).map_err(e)?;
                    let (d2, h2) = out.clone().map(|(k, x)| (x % 7, k)).persist(token).map_err(e)?;
                    handles.push(h2);
                    d2.inner
                        .inspect(move |(r, t, d)| c2.lock().unwrap().push((r.clone(), t.to_u64(), *d)))
                        .probe_with(&probe);
                }
                out.inner.probe_with(&probe);
                Ok((si, di, ui, handles, uh))
            });
            let (mut si, mut di, mut ui, handles, uh) = match built {
                Ok(b) => b,
                Err(err) => {
                    let err = failed.fail(worker, err);
                    o.lock().unwrap()[p]
                        .errors
                        .push(format!("worker {index}: build: {err}"));
                    barrier.wait();
                    barrier.wait();
                    break;
                }
            };
            let errs = {
                let (handles, uh) = (handles.clone(), uh.clone());
                move || {
                    let mut e: Vec<String> = handles.iter().filter_map(|h| h.error()).collect();
                    e.extend(uh.as_ref().and_then(|h| h.error()));
                    e
                }
            };
            let resumes = handles
                .iter()
                .map(|h| h.resume_at())
                .chain(uh.iter().map(|h| h.resume_at()));
            let resume = resumes.min().unwrap();
            o.lock().unwrap()[p].resumes.push(resume);
            let at = |t: u64| T::from_u64(t).expect("a slot time fits the timestamp type");
            // dim: its whole history again (it is not persisted), by worker 0; below the resume point
            // first, the rest with the slots.
            if index == 0 {
                for s in slots.iter().take(plan.end_slot).filter(|s| s.time < resume) {
                    di.advance_to(at(s.time));
                    for (r, d) in &s.dim {
                        di.update(r.clone(), *d);
                    }
                }
            }
            if let Some(r) = T::from_u64(resume) {
                si.advance_to(r);
                ui.advance_to(r);
            }
            let peers = worker.peers();
            let feeds = |s: usize| match plan.feeder {
                None => s % peers == index,
                Some(w) => w == index,
            };
            let pace_ms: u64 = std::env::var("DDPERSIST_CHAINS_PACE_MS").map_or(0, |v| v.parse().unwrap());
            let deadline = Instant::now() + DEADLINE;
            let mut stopped = false;
            let step_until = |worker: &mut timely::worker::Worker, t: T, failed: &common::BuildFailed| {
                while probe.less_than(&t) && !failed.is_set() {
                    assert!(Instant::now() < deadline, "worker {index}: hang in run {p}");
                    if !errs().is_empty() {
                        return false;
                    }
                    worker.step();
                }
                true
            };
            let mut last = None;
            for (s, slot) in slots.iter().enumerate().take(plan.end_slot) {
                if slot.time < resume {
                    continue;
                }
                si.advance_to(at(slot.time));
                ui.advance_to(at(slot.time));
                di.advance_to(at(slot.time));
                if feeds(s) {
                    give(&mut si, &mut ui, slot, plan.src_upsert);
                }
                if index == 0 {
                    for (r, d) in &slot.dim {
                        di.update(r.clone(), *d);
                    }
                }
                let next = at(slot.time + 1);
                si.advance_to(next);
                ui.advance_to(next);
                di.advance_to(next);
                si.flush();
                ui.flush();
                di.flush();
                last = Some(next);
                // A child process killed by its parent at a random moment paces itself (`kills`).
                if pace_ms > 0 {
                    if index == 0 {
                        println!("complete {}", slot.time + 1);
                    }
                    std::thread::sleep(Duration::from_millis(pace_ms));
                }
                // Clean runs complete each slot before the next (a stop may come at any one).
                if matches!(plan.ending, Ending::Clean) && !step_until(worker, next, &failed) {
                    stopped = true;
                    break;
                }
            }
            match &plan.ending {
                Ending::Clean => {
                    if let (false, Some(t)) = (stopped, last) {
                        step_until(worker, t, &failed);
                    }
                    drop((si, di, ui));
                }
                Ending::Uneven { steps, give_last } => {
                    if *give_last {
                        if let Some(slot) = slots.get(plan.end_slot) {
                            if slot.time >= resume && feeds(plan.end_slot) {
                                si.advance_to(at(slot.time));
                                ui.advance_to(at(slot.time));
                                di.advance_to(at(slot.time));
                                give(&mut si, &mut ui, slot, plan.src_upsert);
                                if index == 0 {
                                    for (r, d) in &slot.dim {
                                        di.update(r.clone(), *d);
                                    }
                                }
                                si.flush();
                                ui.flush();
                                di.flush();
                            }
                        }
                    }
                    for _ in 0..steps[index] {
                        worker.step();
                    }
                    drop((si, di, ui));
                }
                Ending::CloseUneven { steps } => {
                    drop((si, di, ui));
                    for _ in 0..steps[index] {
                        worker.step();
                    }
                }
                Ending::Close | Ending::CloseGiving => {
                    if let (Ending::CloseGiving, Some(slot)) = (&plan.ending, slots.get(plan.end_slot)) {
                        if slot.time >= resume {
                            si.advance_to(at(slot.time));
                            ui.advance_to(at(slot.time));
                            di.advance_to(at(slot.time));
                            if feeds(plan.end_slot) {
                                give(&mut si, &mut ui, slot, plan.src_upsert);
                            }
                            if index == 0 {
                                for (r, d) in &slot.dim {
                                    di.update(r.clone(), *d);
                                }
                            }
                        }
                    }
                    drop((si, di, ui));
                    while !probe.done() && !failed.is_set() {
                        assert!(
                            Instant::now() < deadline,
                            "worker {index}: hang at close of run {p}"
                        );
                        if !errs().is_empty() {
                            break;
                        }
                        worker.step();
                    }
                }
            }
            let passed = probe.with_frontier(|f| f.first().map_or(u64::MAX, |t| t.to_u64()));
            {
                let mut o = o.lock().unwrap();
                let out = &mut o[p];
                out.passed = out.passed.max(passed);
                out.errors.extend(errs());
            }
            common::drop_dataflows(worker);
            // Every worker has dropped this run's dataflow before any builds the next.
            barrier.wait();
            if index == 0 {
                let mut o = o.lock().unwrap();
                let out = &mut o[p];
                out.log = l1.lock().unwrap().clone();
                out.log2 = l2.lock().unwrap().clone();
                out.dst = stored::<String, u64>(&store, "dst", peers);
                out.dst2 = stored::<u64, String>(&store, "dst2", peers);
                out.log3 = l3.lock().unwrap().clone();
                out.dst3 = stored::<u64, String>(&store, "dst3", peers);
            }
            barrier.wait();
            // A build failed (on any worker): the sequence ends here, on every worker alike.
            if failed.is_set() {
                break;
            }
        }
    })
    .unwrap();
    let mut outs = outs.lock().unwrap().clone();
    for out in &mut outs {
        if !out.resumes.is_empty() {
            out.resume = *out.resumes.iter().min().unwrap();
        }
    }
    outs
}

/// The de-upsert source's input: `(key, Some(val) or None, time)`.
type UpsertInput<T> = timely::dataflow::InputHandle<
    T,
    timely::container::CapacityContainerBuilder<Vec<(String, Option<u64>, T)>>,
>;

/// Gives `slot`'s src input at the inputs' time: its updates, or (`upsert`) its upserts.
fn give<T: PersistTime>(
    si: &mut differential_dataflow::input::InputSession<T, Row, i64>,
    ui: &mut UpsertInput<T>,
    slot: &Slot,
    upsert: bool,
) {
    if upsert {
        let t = *ui.time();
        for (k, v) in &slot.ups {
            ui.send((k.clone(), *v, t));
        }
    } else {
        for (r, d) in &slot.src {
            si.update(r.clone(), *d);
        }
    }
}

/// Checks a run's log against the oracle: accumulated at every slot time in `[resume, passed)` (every
/// time the run completed). Returns a description of the first difference.
pub fn check_log<R: Ord + Clone + std::fmt::Debug>(
    what: &str,
    log: &[(R, u64, i64)],
    expected: &[(R, u64, i64)],
    slots: &[Slot],
    resume: u64,
    passed: u64,
) -> Result<(), String> {
    for s in slots {
        if s.time < resume || s.time >= passed {
            continue;
        }
        let (got, want) = (acc_at(log, s.time), acc_at(expected, s.time));
        if got != want {
            return Err(format!(
                "{what}: at time {} (resume {resume}, passed {passed}): got {got:?}, expected {want:?}",
                s.time
            ));
        }
    }
    Ok(())
}

/// Stored updates decoded: `((key, val), time, diff)`.
pub type Stored<K, V> = Vec<((K, V), u64, i64)>;

/// The updates of every worker stream of operator `id` (`peers` workers), decoded as `(K, V)`, with the
/// least upper and the greatest since of those streams.
pub fn stored<K: ddpersist::Codec + Ord + Clone, V: ddpersist::Codec + Ord + Clone>(
    store: &Store,
    id: &str,
    peers: usize,
) -> (Stored<K, V>, u64, u64) {
    let (mut out, mut upper, mut since) = (Vec::new(), u64::MAX, 0);
    for w in 0..peers {
        let stream = ddpersist::operators::worker_stream_id(id, w, peers);
        if !store.has_stream(&stream) {
            return (Vec::new(), 0, 0);
        }
        upper = upper.min(store.upper(&stream).unwrap());
        since = since.max(store.since(&stream).unwrap());
        for (k, v, t, d) in store.snapshot(&stream).unwrap().decode::<K, V>().unwrap() {
            out.push(((k, v), t, d));
        }
    }
    (out, upper, since)
}

/// Checks what an operator stored (`stored`'s answer) against `expected`, accumulated at every slot time
/// in `[since, upper)` of its streams.
pub fn check_stored<R: Ord + Clone + std::fmt::Debug>(
    id: &str,
    stored: &(Vec<(R, u64, i64)>, u64, u64),
    expected: &[(R, u64, i64)],
    slots: &[Slot],
) -> Result<(), String> {
    let (got, upper, since) = stored;
    check_log(&format!("stored {id}"), got, expected, slots, *since, *upper)
}
