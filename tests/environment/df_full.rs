//! A full disk (a small tmpfs) under a running persisted dataflow: `arrange_by_key_persisted`,
//! `arrange_persisted`, `persist` and `upsert_persisted`, with 1 and 2 workers.
//!
//! What a user expects (README "Restarting", DESIGN §3 "Failures while running", §5 fail-stop):
//! - no panic in the library; the operator reports the full disk in its handle (`error()`, naming
//!   `No space left on device`) and stops, holding its frontier: the probe never passes a time that was
//!   not sealed by every worker, and does not move after the error;
//! - nothing acknowledged is lost: after growing the tmpfs and restarting, `resume_at()` is at or above
//!   the probe frontier the failed run reached (the source may have dropped everything below it);
//! - fed from `resume_at()` on, the restarted dataflow's output equals DD's in-memory answer at every time
//!   from the resume point on, and the run finishes without error.

use crate::common::compare::{at, Log};
use crate::env::{msg_is_disk_full, Tmpfs};
use ddpersist::operators::{
    ArrangePersisted, ArrangeTyped, Persist, PersistOptions, SealMode, UpsertPersisted,
};
use ddpersist::{Codec, Options, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input as TInput, Inspect, Probe};
use timely::dataflow::ProbeHandle;

pub type Row = (String, u64);

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    ArrangeTyped,
    ArrangeBytes,
    /// `arrange_by_key_persisted_with`, seals always on the seal thread.
    ArrangePipelined,
    /// `arrange_by_key_persisted_with`, seals always on the worker's thread.
    ArrangeInline,
    Persist,
    Upsert,
}

pub const ROWS: u64 = 100;

fn pad() -> String {
    "x".repeat(120)
}

/// Round `t` of the collection kinds: 100 new rows at `t` (+1), and round `t - 2`'s rows retracted.
pub fn round(t: u64) -> Vec<(Row, i64)> {
    let mut out: Vec<(Row, i64)> = (0..ROWS)
        .map(|i| ((format!("k{t:05}-{i:03}-{}", pad()), t), 1))
        .collect();
    if t >= 2 {
        out.extend((0..ROWS).map(|i| ((format!("k{:05}-{i:03}-{}", t - 2, pad()), t - 2), -1)));
    }
    out
}

/// Round `t` of upserts: 100 keys of 1000, set to `t`, every seventh deleted.
pub fn upserts(t: u64) -> Vec<(String, Option<u64>)> {
    (0..ROWS)
        .map(|i| {
            let k = (t * 37 + i) % 1000;
            let v = if (t + i).is_multiple_of(7) { None } else { Some(t) };
            (format!("u{k:04}-{}", pad()), v)
        })
        .collect()
}

/// DD's answer (the collection) at time `t`.
pub fn expected(kind: Kind, t: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    if kind == Kind::Upsert {
        let mut state = BTreeMap::new();
        for r in 0..=t {
            for (k, v) in upserts(r) {
                match v {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
        }
        return state.into_iter().map(|kv| (kv, 1)).collect();
    }
    for r in 0..=t {
        for (row, d) in round(r) {
            *acc.entry(row).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

pub fn options() -> Options {
    Options {
        block_target_bytes: 4096,
        merge_fan_in: 4,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// Checks that no worker's probe passed, after the failure, the frontier the workers had seen when they
/// stopped feeding: each `frontier_later` at or below the greatest `frontier` (an empty frontier, `None`,
/// above every time). The greatest, not each worker's own: the workers stop at their own moments, and a
/// worker's probe learns of progress later than the worker that made it (a CI run saw worker 1 stop at 67
/// while worker 0 had stopped at 68, sealed before the failure; both then read 68).
pub fn assert_frontier_held(runs: &[WorkerRun]) {
    let at = |f: Option<u64>| f.unwrap_or(u64::MAX);
    let held = runs.iter().map(|w| at(w.frontier)).max().unwrap_or(0);
    for w in runs {
        assert!(
            at(w.frontier_later) <= held,
            "the frontier moved after the error: {runs:?}"
        );
    }
}

/// What one run of one worker saw.
#[derive(Debug, Clone)]
pub struct WorkerRun {
    pub resume_at: u64,
    pub error: Option<String>,
    /// The probe's frontier when the run stopped feeding (the failure, or the end).
    pub frontier: Option<u64>,
    /// The probe's frontier after 300 more steps.
    pub frontier_later: Option<u64>,
    /// A round that neither completed nor reported an error in time.
    pub stalled: Option<u64>,
    pub fed_to: u64,
}

enum In {
    Coll(differential_dataflow::input::InputSession<u64, Row, i64>),
    Ups(UpsertInput),
}

/// The input of the upsert source: `(key, value or deletion, time)` records.
type UpsertInput = timely::dataflow::InputHandle<
    u64,
    timely::container::CapacityContainerBuilder<Vec<(String, Option<u64>, u64)>>,
>;

enum H {
    P(ddpersist::operators::PersistHandle),
    U(ddpersist::operators::UpsertHandle),
}

impl H {
    fn error(&self) -> Option<String> {
        match self {
            H::P(h) => h.error(),
            H::U(h) => h.error(),
        }
    }
    fn resume_at(&self) -> u64 {
        match self {
            H::P(h) => h.resume_at(),
            H::U(h) => h.resume_at(),
        }
    }
}

/// Restarts the dataflow of `kind` over `dir` with `peers` workers and runs it to `acked + 5`, after a
/// failure that stopped it once the rounds below `acked` were acknowledged (the probe passed them): every
/// worker runs without an error to the end, resumes at or beyond `acked` (nothing acknowledged lost), and
/// the output from the resume point on is DD's in-memory answer.
pub fn restart_and_check(dir: &Path, peers: usize, kind: Kind, acked: u64) {
    let end = acked + 5;
    let log: Log<Row> = Default::default();
    let restarted = run(dir, peers, kind, end, &log).unwrap();
    for w in &restarted {
        assert_eq!(w.error, None);
        assert!(
            w.resume_at >= acked,
            "acknowledged lost: resume_at {} below {acked}, what the probe passed before the failure",
            w.resume_at
        );
        assert_eq!(w.frontier, Some(end));
    }
    for t in restarted[0].resume_at..end {
        assert_eq!(at(&log, &t), expected(kind, t), "restarted output at {t}");
    }
}

/// One run of `peers` workers over the store in `dir`: builds the dataflow of `kind`, feeds rounds from
/// `resume_at()` to `to` (exclusive), each worker its share, waiting for each round to complete; stops
/// at the first error any worker's handle reports. Returns each worker's view and the output log.
pub fn run(dir: &Path, peers: usize, kind: Kind, to: u64, log: &Log<Row>) -> Result<Vec<WorkerRun>, String> {
    run_with(dir, peers, kind, to, log, Arc::new(|_| {}))
}

/// [`run`], calling `on_round(t)` on worker 0 once round `t` completed.
pub fn run_with(
    dir: &Path,
    peers: usize,
    kind: Kind,
    to: u64,
    log: &Log<Row>,
    on_round: Arc<dyn Fn(u64) + Send + Sync>,
) -> Result<Vec<WorkerRun>, String> {
    let store = Store::open_with(dir, options()).map_err(|e| format!("open: {e}"))?;
    let manager = PersistManager::new(store.clone());
    let failed = Arc::new(AtomicBool::new(false));
    let log = log.clone();
    let guards = timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let (index, peers) = (worker.index(), worker.peers());
        let l = log.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let push = move |(d, t, r): &(Row, u64, i64)| l.lock().unwrap().push((d.clone(), *t, *r));
            match kind {
                Kind::Upsert => {
                    let (input, ups) = scope.new_input::<Vec<(String, Option<u64>, u64)>>();
                    let (coll, h) = ups.upsert_persisted(&store, "u").unwrap();
                    coll.inner.inspect(push).probe_with(&probe);
                    (In::Ups(input), H::U(h))
                }
                _ => {
                    let (input, c) = scope.new_collection::<Row, i64>();
                    let h = match kind {
                        Kind::ArrangeTyped => {
                            let a = c.arrange_by_key_persisted(&store, "a").unwrap();
                            let h = a.handle().unwrap().clone();
                            a.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                                .inner
                                .inspect(push)
                                .probe_with(&probe);
                            h
                        }
                        Kind::ArrangePipelined | Kind::ArrangeInline => {
                            let seals = if kind == Kind::ArrangeInline {
                                SealMode::Inline
                            } else {
                                SealMode::Pipelined
                            };
                            let o = PersistOptions {
                                seals,
                                ..Default::default()
                            };
                            let a = c.arrange_by_key_persisted_with(&store, "m", o).unwrap();
                            let h = a.handle().unwrap().clone();
                            a.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                                .inner
                                .inspect(push)
                                .probe_with(&probe);
                            h
                        }
                        Kind::ArrangeBytes => {
                            let (a, h) = c.arrange_persisted(&store, "b").unwrap();
                            a.as_collection(|k: &[u8], v: &[u8]| {
                                (String::decode(k).unwrap(), u64::decode(v).unwrap())
                            })
                            .inner
                            .inspect(push)
                            .probe_with(&probe);
                            h
                        }
                        Kind::Persist => {
                            let token = manager.token("p", index).unwrap();
                            let (out, h) = c.persist(token).unwrap();
                            out.inner.inspect(push).probe_with(&probe);
                            h
                        }
                        Kind::Upsert => unreachable!(),
                    };
                    (In::Coll(input), H::P(h))
                }
            }
        });
        let from = handle.resume_at();
        let mut me = WorkerRun {
            resume_at: from,
            error: None,
            frontier: None,
            frontier_later: None,
            stalled: None,
            fed_to: from,
        };
        match &mut input {
            In::Coll(i) => i.advance_to(from),
            In::Ups(i) => i.advance_to(from),
        }
        let start = Instant::now();
        for t in from..to {
            match &mut input {
                In::Coll(i) => {
                    for (n, (row, d)) in round(t).into_iter().enumerate() {
                        if n % peers == index {
                            i.update(row, d);
                        }
                    }
                    i.advance_to(t + 1);
                    i.flush();
                }
                In::Ups(i) => {
                    for (n, (k, v)) in upserts(t).into_iter().enumerate() {
                        if n % peers == index {
                            i.send((k, v, t));
                        }
                    }
                    i.advance_to(t + 1);
                }
            }
            me.fed_to = t + 1;
            let round_start = Instant::now();
            worker.step_or_park_while(Some(Duration::from_millis(10)), || {
                if handle.error().is_some() {
                    failed.store(true, Ordering::SeqCst);
                }
                !failed.load(Ordering::SeqCst)
                    && probe.less_than(&(t + 1))
                    && round_start.elapsed() < Duration::from_secs(5)
            });
            if failed.load(Ordering::SeqCst) {
                break;
            }
            if probe.less_than(&(t + 1)) {
                me.stalled = Some(t);
                failed.store(true, Ordering::SeqCst);
                break;
            }
            if index == 0 {
                on_round(t);
            }
            if start.elapsed() > Duration::from_secs(40) {
                break;
            }
        }
        me.frontier = probe.with_frontier(|f| f.first().copied());
        for _ in 0..300 {
            worker.step();
            if handle.error().is_some() {
                failed.store(true, Ordering::SeqCst);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..100 {
            worker.step();
        }
        me.frontier_later = probe.with_frontier(|f| f.first().copied());
        me.error = handle.error();
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
        drop(input);
        me
    })
    .map_err(|e| format!("execute: {e}"))?;
    let mut out = Vec::new();
    for r in guards.join() {
        out.push(r.map_err(|e| format!("worker panicked: {e}"))?);
    }
    Ok(out)
}

/// Fills a small tmpfs under a dataflow of `kind` and `peers` workers, checks the fail-stop, grows the
/// tmpfs, restarts and checks the output against DD's.
pub fn fill_and_restart(kind: Kind, peers: usize, kib: u64) {
    let Some(fs) = Tmpfs::mount_kib(kib) else { return };
    let dir = fs.0.join("store");
    let to = 2000;
    let log: Log<Row> = Default::default();
    let first = run(&dir, peers, kind, to, &log).unwrap();
    eprintln!("{kind:?} x{peers}: first run {first:?}, tmpfs used {}", fs.used());
    let errors: Vec<&String> = first.iter().filter_map(|w| w.error.as_ref()).collect();
    assert!(
        first.iter().all(|w| w.stalled.is_none()),
        "a round stalled without an error: {first:?}"
    );
    assert!(
        !errors.is_empty(),
        "{kib} KiB never filled in {to} rounds: {first:?}"
    );
    for e in &errors {
        assert!(msg_is_disk_full(e), "not the full disk's error: {e}");
    }
    let acked = first.iter().filter_map(|w| w.frontier).min().unwrap_or(0);
    assert_frontier_held(&first);
    // Everything below the acknowledged frontier is persisted: the output up to it was right too.
    let log0 = log.clone();
    let upto = acked.min(first[0].fed_to);
    let sample: Vec<u64> = (0..upto)
        .step_by((upto as usize / 8).max(1))
        .chain(upto.checked_sub(1))
        .collect();
    for t in sample {
        assert_eq!(
            at(&log0, &t),
            expected(kind, t),
            "first run at acknowledged time {t}"
        );
    }
    // Reopen on the still full disk: the open either works or fails with the full disk's error.
    match Store::open_with(&dir, options()) {
        Ok(s) => drop(s),
        Err(e) => assert!(msg_is_disk_full(&e.to_string()), "reopen on the full disk: {e}"),
    }
    fs.resize_kib(kib * 16);
    let end = acked + 5;
    let log2: Log<Row> = Default::default();
    let second = run(&dir, peers, kind, end, &log2).unwrap();
    eprintln!("{kind:?} x{peers}: second run {second:?}");
    for w in &second {
        assert_eq!(w.error, None, "the restarted run failed");
        assert!(
            w.resume_at >= acked,
            "acknowledged times lost: resume_at {} below the probe frontier {acked} the failed run reached",
            w.resume_at
        );
        assert_eq!(w.frontier, Some(end), "the restarted run did not complete");
    }
    let from = second[0].resume_at;
    for t in from..end {
        let got = at(&log2, &t);
        let want = expected(kind, t);
        if got != want {
            let only_a: Vec<_> = got
                .iter()
                .filter(|(k, v)| want.get(*k) != Some(v))
                .take(3)
                .collect();
            let only_b: Vec<_> = want
                .iter()
                .filter(|(k, v)| got.get(*k) != Some(v))
                .take(3)
                .collect();
            panic!(
                "restarted output differs from DD's at time {t} (resume {from}): persisted-only {only_a:?}, dd-only {only_b:?} (sizes {} vs {})",
                got.len(),
                want.len()
            );
        }
    }
}

#[test]
fn full_disk_arrange_typed_1_worker() {
    fill_and_restart(Kind::ArrangeTyped, 1, 2048);
}

#[test]
fn full_disk_arrange_typed_2_workers() {
    fill_and_restart(Kind::ArrangeTyped, 2, 2048);
}

#[test]
fn full_disk_arrange_bytes_2_workers() {
    fill_and_restart(Kind::ArrangeBytes, 2, 2048);
}

#[test]
fn full_disk_persist_1_worker() {
    fill_and_restart(Kind::Persist, 1, 2048);
}

#[test]
fn full_disk_persist_2_workers() {
    fill_and_restart(Kind::Persist, 2, 2048);
}

#[test]
fn full_disk_upsert_1_worker() {
    fill_and_restart(Kind::Upsert, 1, 1024);
}

#[test]
fn full_disk_upsert_2_workers() {
    fill_and_restart(Kind::Upsert, 2, 1024);
}

#[test]
fn full_disk_arrange_pipelined_seals_2_workers() {
    fill_and_restart(Kind::ArrangePipelined, 2, 2048);
}

#[test]
fn full_disk_arrange_inline_seals_1_worker() {
    fill_and_restart(Kind::ArrangeInline, 1, 2048);
}

/// The disk fills again and again: each restart gets only a little more room (256 KiB), fills it,
/// fail-stops, and the next restart resumes at or beyond what the probe had passed; a final restart with
/// room equals DD's answer.
fn repeated_fills(kind: Kind, peers: usize) {
    let Some(fs) = Tmpfs::mount_kib(1024) else { return };
    let dir = fs.0.join("store");
    let mut acked = 0;
    let mut kib = 1024;
    for cycle in 0..5 {
        let log: Log<Row> = Default::default();
        let r = run(&dir, peers, kind, 3000, &log);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                // The open itself may fail on the full disk (it folds the manifest): the full disk's error.
                assert!(msg_is_disk_full(&e), "cycle {cycle}: {e}");
                kib += 256;
                fs.resize_kib(kib);
                continue;
            }
        };
        eprintln!("{kind:?} x{peers} cycle {cycle}: {r:?}");
        assert!(
            r.iter().all(|w| w.stalled.is_none()),
            "cycle {cycle}: stalled without an error: {r:?}"
        );
        for w in &r {
            assert!(
                w.resume_at >= acked,
                "cycle {cycle}: resume_at {} below acknowledged {acked}",
                w.resume_at
            );
            if let Some(e) = &w.error {
                assert!(
                    msg_is_disk_full(e),
                    "cycle {cycle}: not the full disk's error: {e}"
                );
            }
        }
        acked = acked.max(r.iter().filter_map(|w| w.frontier).min().unwrap());
        if r.iter().all(|w| w.error.is_none()) {
            // Room enough now (an upsert's state stays small once compacted): nothing more to fill.
            assert!(cycle > 0, "the disk never filled");
            break;
        }
        kib += 256;
        fs.resize_kib(kib);
    }
    fs.resize_kib(64 * 1024);
    restart_and_check(&dir, peers, kind, acked);
}

#[test]
fn repeated_fills_arrange_typed_2_workers() {
    repeated_fills(Kind::ArrangeTyped, 2);
}

#[test]
fn repeated_fills_upsert_1_worker() {
    repeated_fills(Kind::Upsert, 1);
}

#[test]
fn repeated_fills_persist_2_workers() {
    repeated_fills(Kind::Persist, 2);
}
