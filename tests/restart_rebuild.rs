//! From an adversarial round: a persisted dataflow dropped (`worker.drop_dataflow`) in the middle of a time — its
//! operator has written that time's updates to its (not durable) stream but not sealed them — and rebuilt
//! in the same process with the same id, fed from `resume_at` as after a restart
//! (`tests/dd_dropin_rebuild.rs` rebuilds only after every time was sealed).
//!
//! A restart of the process loses a non-durable stream's unsealed updates, and the protocol relies on
//! that: the input replays from the stream's upper. In one process the store keeps them in its memtable;
//! the rebuilt operator takes them as pending (`unsealed_times` counts any stream's memtable), re-emits
//! them (`persist`: the snapshot holds them), and persists the replayed input at those times again.
//! (Fixed: a persisted operator taking over a stream that is not durable discards what an earlier one
//! left unsealed, `Store::discard_volatile_unsealed`.)

mod common;

use common::accumulate_rows;

use ddpersist::operators::{ArrangePersisted, Persist};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
type Update = (Row, u64, i64);

fn rows_at(t: u64) -> Vec<Row> {
    (0..3).map(|i| (format!("k{i}"), t * 10 + i)).collect()
}

fn expected(end: u64) -> BTreeMap<Row, i64> {
    (0..end).flat_map(rows_at).map(|r| (r, 1)).collect()
}

/// `arrange_persisted`: times 0 and 1 complete, time 2 fed and taken in but not complete; the dataflow is
/// dropped and rebuilt, fed from its `resume_at` (2) to 4. The rebuilt arrangement (persisted spans plus
/// new input) must hold every row once; and a later process restart reads the same.
#[test]
fn arrangement_dropped_mid_time_and_rebuilt_holds_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let out = Arc::new(Mutex::new((Vec::<Update>::new(), Vec::<u64>::new())));
    let o = out.clone();
    let s = store.clone();
    timely::execute_directly(move |worker| {
        let build = |worker: &mut timely::worker::Worker, log: bool| {
            let probe = ProbeHandle::new();
            let o = o.clone();
            let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<Row, i64>();
                let (arranged, handle) = rows.arrange_persisted(&s, "x").unwrap();
                arranged
                    .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                    .inner
                    .inspect(move |u| {
                        if log {
                            o.lock().unwrap().0.push(u.clone())
                        }
                    })
                    .probe_with(&probe);
                (input, handle)
            });
            (input, handle, probe)
        };
        let (mut input, handle, probe) = build(worker, false);
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
        drop((input, handle));
        // Rebuilt as after a restart: fed from resume_at.
        let (mut input, handle, probe) = build(worker, true);
        let resume = handle.resume_at();
        o.lock().unwrap().1.push(resume);
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
    });
    let (output, resumes) = out.lock().unwrap().clone();
    let got = accumulate_rows(&output);
    let doubled: Vec<_> = got.iter().filter(|(_, d)| **d != 1).collect();
    assert_eq!(
        got,
        expected(4),
        "rebuilt after a drop mid-time (resume_at {resumes:?}): rows with a multiplicity other than 1: \
         {doubled:?}"
    );
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
    let out = Arc::new(Mutex::new((Vec::<Update>::new(), Vec::<u64>::new())));
    let o = out.clone();
    timely::execute_directly(move |worker| {
        let build = |worker: &mut timely::worker::Worker, log: bool| {
            let probe = ProbeHandle::new();
            let o = o.clone();
            let token = manager.token("p", worker.index()).unwrap();
            let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<Row, i64>();
                let (persisted, handle) = rows.persist(token).unwrap();
                persisted
                    .inner
                    .inspect(move |u| {
                        if log {
                            o.lock().unwrap().0.push(u.clone())
                        }
                    })
                    .probe_with(&probe);
                (input, handle)
            });
            (input, handle, probe)
        };
        let (mut input, handle, probe) = build(worker, false);
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
        drop((input, handle));
        let (mut input, handle, probe) = build(worker, true);
        let resume = handle.resume_at();
        o.lock().unwrap().1.push(resume);
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
    });
    let (output, resumes) = out.lock().unwrap().clone();
    let got = accumulate_rows(&output);
    let doubled: Vec<_> = got.iter().filter(|(_, d)| **d != 1).collect();
    assert_eq!(
        got,
        expected(4),
        "rebuilt after a drop mid-time (resume_at {resumes:?}): rows with a multiplicity other than 1: \
         {doubled:?}"
    );
}
