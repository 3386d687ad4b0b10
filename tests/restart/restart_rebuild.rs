//! From an adversarial round: a persisted dataflow dropped (`worker.drop_dataflow`) in the middle of a time — its
//! operator has written that time's updates to its (not durable) stream but not sealed them — and rebuilt
//! in the same process with the same id, fed from `resume_at` as after a restart
//! (`tests/dropin/dd_dropin_rebuild.rs` rebuilds only after every time was sealed).
//!
//! A restart of the process loses a non-durable stream's unsealed updates, and the protocol relies on
//! that: the input replays from the stream's upper. In one process the store keeps them in its memtable;
//! the rebuilt operator takes them as pending (`unsealed_times` counts any stream's memtable), re-emits
//! them (`persist`: the snapshot holds them), and persists the replayed input at those times again.
//! (Fixed: a persisted operator taking over a stream that is not durable discards what an earlier one
//! left unsealed, `Store::discard_volatile_unsealed`.)

use crate::common;

use common::accumulate_rows;

use ddpersist::operators::{ArrangePersisted, Persist};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::{Input as _, InputSession};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

type Row = (String, u64);
type Update = (Row, u64, i64);

fn rows_at(t: u64) -> Vec<Row> {
    (0..3).map(|i| (format!("k{i}"), t * 10 + i)).collect()
}

fn expected(end: u64) -> BTreeMap<Row, i64> {
    (0..end).flat_map(rows_at).map(|r| (r, 1)).collect()
}

/// A built dataflow: its input, its operator's `resume_at` (the closure owns the operator's handle) and
/// the probe of its output.
type Built = (
    InputSession<u64, Row, i64>,
    Box<dyn Fn() -> u64>,
    ProbeHandle<u64>,
);
/// Where a built dataflow logs its output (`None`: it does not).
type Log = Option<Arc<Mutex<Vec<Update>>>>;

/// Builds a dataflow with `build`, feeds it times 0 to 2, steps until times 0 and 1 complete and time 2
/// was taken in but not completed, drops it, rebuilds it with its output logged and feeds it from its
/// `resume_at` to 4. Returns the logged output and the resume point.
fn dropped_mid_time_and_rebuilt(
    build: impl Fn(&mut Worker, Log) -> Built + Send + Sync + 'static,
) -> (Vec<Update>, u64) {
    timely::execute_directly(move |worker| {
        let (mut input, resume_at, probe) = build(worker, None);
        for t in 0..3 {
            input.advance_to(t);
            for r in rows_at(t) {
                input.update(r, 1);
            }
        }
        input.flush();
        worker.step_while(|| probe.less_than(&2));
        for _ in 0..50 {
            worker.step();
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        drop((input, resume_at));
        // Rebuilt as after a restart: fed from resume_at.
        let log = Arc::new(Mutex::new(Vec::new()));
        let (mut input, resume_at, probe) = build(worker, Some(log.clone()));
        let resume = resume_at();
        for t in resume..4 {
            input.advance_to(t);
            for r in rows_at(t) {
                input.update(r, 1);
            }
        }
        input.advance_to(4);
        input.flush();
        worker.step_while(|| probe.less_than(&4));
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        let output = log.lock().unwrap().clone();
        (output, resume)
    })
}

/// The rows `output` accumulates to must be every row of times 0 to 3 once.
fn assert_each_row_once(output: &[Update], resume: u64) {
    let got = accumulate_rows(output);
    let doubled: Vec<_> = got.iter().filter(|(_, d)| **d != 1).collect();
    assert_eq!(
        got,
        expected(4),
        "rebuilt after a drop mid-time (resume_at {resume}): rows with a multiplicity other than 1: {doubled:?}"
    );
}

/// An `inspect` closure logging each update into `log`, if any.
fn logger(log: Log) -> impl FnMut(&Update) + 'static {
    move |u| {
        if let Some(log) = &log {
            log.lock().unwrap().push(u.clone())
        }
    }
}

/// `arrange_persisted`: times 0 and 1 complete, time 2 fed and taken in but not complete; the dataflow is
/// dropped and rebuilt, fed from its `resume_at` (2) to 4. The rebuilt arrangement (persisted spans plus
/// new input) must hold every row once; and a later process restart reads the same.
#[test]
fn arrangement_dropped_mid_time_and_rebuilt_holds_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.clone();
    let (output, resume) = dropped_mid_time_and_rebuilt(move |worker, log| {
        let probe = ProbeHandle::new();
        let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (arranged, handle) = rows.arrange_persisted(&s, "x").unwrap();
            let rows = arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()));
            rows.inner.inspect(logger(log)).probe_with(&probe);
            (input, handle)
        });
        (input, Box::new(move || handle.resume_at()), probe)
    });
    assert_each_row_once(&output, resume);
    // And what a restart of the process reads back.
    let snapshot: Vec<(String, u64, u64, i64)> = store
        .snapshot("x/w0of1")
        .unwrap()
        .decode::<String, u64>()
        .unwrap();
    let mut persisted = BTreeMap::new();
    for (k, v, _, d) in snapshot {
        *persisted.entry((k, v)).or_insert(0i64) += d;
    }
    persisted.retain(|_, d| *d != 0);
    assert_eq!(persisted, expected(4), "the stream after the rebuild");
}

/// The pass-through `persist`, dropped in the middle of time 2 and rebuilt (a new token, the dropped
/// operator's returned): its output (replay plus new input from `resume_at`) must hold every row once.
#[test]
fn persist_dropped_mid_time_and_rebuilt_passes_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let (output, resume) = dropped_mid_time_and_rebuilt(move |worker, log| {
        let probe = ProbeHandle::new();
        let token = manager.token("p", worker.index()).unwrap();
        let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, handle) = rows.persist(token).unwrap();
            persisted.inner.inspect(logger(log)).probe_with(&probe);
            (input, handle)
        });
        (input, Box::new(move || handle.resume_at()), probe)
    });
    assert_each_row_once(&output, resume);
}
