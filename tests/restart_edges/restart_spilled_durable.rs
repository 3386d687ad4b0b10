//! Restart checks (from an adversarial round) of durable persisted operators whose unsealed updates were spilled to
//! sorted runs before the restart (the memtable passed `Options::memtable_budget_bytes` while the input's
//! frontier stalled). A durable stream keeps those updates across a restart (README: "what was written
//! survives"); a restarted run that ends its input at once (the source ends) must seal them and serve
//! them, as it does for unsealed updates recovered into the memtable from the WAL.
//!
//! The fault these found (fixed: `Store::holds_unsealed` counts spilled runs and a flush in progress):
//! `operators::unsealed_times` asked `Store::unsealed_len`, which counts the memtable only; when every
//! unsealed update was spilled it reported no pending time, so the persister's
//! `seal_point` at the input's end sealed at its old upper and marked the stream *finished* with the
//! spilled updates still beyond the upper: the arrangement's trace closes without them (its output
//! misses them), and the manifest claims "no update at or beyond the upper" for a stream that has some.

use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist, PersistOptions};
use ddpersist::{Codec, ManagerOptions, Options, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);

/// A small memtable budget: a few thousand updates spill.
fn options() -> Options {
    Options {
        memtable_budget_bytes: 64 << 10,
        ..Options::default()
    }
}

/// Rows written at time 5 (after one row at time 0, sealed at 1): enough to pass the budget several times.
fn rows_at_5() -> Vec<Row> {
    (0..6000).map(|i| (format!("key-{i:06}"), i)).collect()
}

/// Waits until stream `stream` of `store` has spilled runs (at most ~10 s).
fn wait_for_spill(store: &Store, stream: &str) -> usize {
    for _ in 0..1000 {
        let spills = store.manifest().stream(stream).map_or(0, |m| m.spills.len());
        if spills > 0 {
            return spills;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    0
}

/// The first runs' input: one row at time 0, the input advanced to 1 and `worker` stepped until `probe`
/// passes 1 (sealed), then the rows of time 5 written with the input at 5 (its frontier stalls there) and
/// 50 steps. Returns nothing.
fn feed_first_run(
    worker: &mut timely::worker::Worker,
    input: &mut differential_dataflow::input::InputSession<u64, Row, i64>,
    probe: &ProbeHandle<u64>,
) {
    input.update(("first".to_string(), 0), 1);
    input.advance_to(1);
    input.flush();
    worker.step_while(|| probe.less_than(&1));
    input.advance_to(5);
    for row in rows_at_5() {
        input.update(row, 1);
    }
    input.flush();
    for _ in 0..50 {
        worker.step();
    }
}

/// Run 1 of a durable arrangement "x": one row at time 0 sealed (input advanced to 1), then the rows of
/// time 5 written while the frontier stays at 5 (spilled), then the process stops with the input open
/// (the dataflow dropped: a crash after the writes would leave the same state). Returns the spill count.
fn first_run_arrange(dir: &Path) -> usize {
    let store = Store::open_with(dir, options()).unwrap();
    let spills = Arc::new(Mutex::new(0));
    let s = spills.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let options = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let (arranged, handle) = rows.arrange_persisted_with(&store, "x", options).unwrap();
            arranged.stream.probe_with(&probe);
            (input, handle)
        });
        feed_first_run(worker, &mut input, &probe);
        *s.lock().unwrap() = wait_for_spill(&store, &worker_stream_id("x", 0, 1));
        assert_eq!(handle.error(), None);
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    });
    let n = *spills.lock().unwrap();
    n
}

/// Run 2: the durable arrangement "x" again; the source ends at once (its input closes with no new
/// update). Returns the arrangement's output, accumulated, and the stream's `(upper, finished)`.
fn second_run_arrange(dir: &Path) -> (BTreeMap<Row, i64>, (u64, bool)) {
    let store = Store::open_with(dir, options()).unwrap();
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let o = out.clone();
    let s = store.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let options = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let (arranged, handle) = rows.arrange_persisted_with(&s, "x", options).unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |(row, _, d)| *o.lock().unwrap().entry(row.clone()).or_insert(0) += *d)
                .probe_with(&probe);
            (input, handle)
        });
        drop(input);
        worker.step_while(|| !probe.done());
        assert_eq!(handle.error(), None);
    });
    let meta = store
        .manifest()
        .stream(&worker_stream_id("x", 0, 1))
        .cloned()
        .unwrap();
    let mut out = out.lock().unwrap().clone();
    out.retain(|_, d| *d != 0);
    (out, (meta.upper, meta.finished))
}

#[test]
fn a_durable_arrangement_serves_its_spilled_updates_when_the_source_ends_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spills = first_run_arrange(dir.path());
    assert!(
        spills > 0,
        "the first run spilled nothing: the test's premise failed"
    );
    let (out, (upper, finished)) = second_run_arrange(dir.path());
    let mut want: BTreeMap<Row, i64> = rows_at_5().into_iter().map(|r| (r, 1)).collect();
    want.insert(("first".to_string(), 0), 1);
    assert_eq!(
        (out.len(), upper, finished),
        (want.len(), 6, true),
        "rows served, stream upper, finished (want every written row, sealed through time 5)"
    );
    assert_eq!(out, want);
}

/// The same through `persist` (durable, from a `PersistManager`): its output replays the spilled rows
/// (the snapshot includes them), but the stream finishes at its old upper with them beyond it.
#[test]
fn a_durable_persist_finishes_past_its_spilled_updates_when_the_source_ends_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manager_options = ManagerOptions {
        max_bytes_per_sec: None,
        durable: true,
    };
    {
        let manager =
            PersistManager::with_options(Store::open_with(dir.path(), options()).unwrap(), manager_options);
        let spills = Arc::new(Mutex::new(0));
        let s = spills.clone();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let token = manager.token("p", 0).unwrap();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<Row, i64>();
                let (persisted, _handle) = rows.persist(token).unwrap();
                persisted.inner.probe_with(&probe);
                input
            });
            feed_first_run(worker, &mut input, &probe);
            *s.lock().unwrap() = wait_for_spill(manager.store(), &worker_stream_id("p", 0, 1));
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        });
        assert!(
            *spills.lock().unwrap() > 0,
            "nothing spilled: the test's premise failed"
        );
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    let manager = PersistManager::with_options(store.clone(), manager_options);
    let out = Arc::new(Mutex::new(0i64));
    let o = out.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("p", 0).unwrap();
        let o = o.clone();
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, _handle) = rows.persist(token).unwrap();
            persisted
                .inner
                .inspect(move |(_, _, d)| *o.lock().unwrap() += *d)
                .probe_with(&probe);
            input
        });
        drop(input);
        worker.step_while(|| !probe.done());
    });
    let meta = store
        .manifest()
        .stream(&worker_stream_id("p", 0, 1))
        .cloned()
        .unwrap();
    let beyond = store
        .snapshot(&worker_stream_id("p", 0, 1))
        .unwrap()
        .decode::<String, u64>()
        .unwrap()
        .into_iter()
        .filter(|u| u.2 >= meta.upper)
        .count();
    assert_eq!(*out.lock().unwrap(), 6001, "rows replayed");
    assert_eq!(
        (meta.upper, meta.finished, beyond),
        (6, true, 0),
        "a finished stream (upper, finished, updates at or beyond its upper)"
    );
}
