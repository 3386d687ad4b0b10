//! Restart checks at the ends of the time range and other corners of the restart protocol (from an
//! adversarial round): an upsert at the greatest time is refused, never an overflow; negative `i32` times
//! and a `u8` source ending at its last time restart exactly.

use ddpersist::operators::{worker_stream_id, ArrangePersisted, PersistTime, UpsertPersisted};
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

/// An upsert operator's output, `((key, val), time, diff)`.
type Output = Vec<((String, u64), u64, i64)>;

/// Runs `upsert_persisted(store, "u")` at `u64` times over `dir` with one worker, sending `upserts` at
/// their times, then closing the input. Returns the output and the handle's error.
fn upsert_run(dir: &Path, upserts: Vec<(String, Option<u64>, u64)>) -> (Output, Option<String>) {
    let store = Store::open(dir).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let err = Arc::new(Mutex::new(None));
    let (o, e) = (out.clone(), err.clone());
    timely::execute_directly(move |worker| {
        let mut input = InputHandle::new();
        let probe = ProbeHandle::new();
        let o = o.clone();
        let handle = worker.dataflow::<u64, _, _>(|scope| {
            let (current, handle) = UpsertPersisted::<String, u64, u64>::upsert_persisted(
                scope.input_from(&mut input),
                &store,
                "u",
            )
            .unwrap();
            current
                .inner
                .inspect(move |x| o.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            handle
        });
        for (k, v, t) in upserts {
            input.advance_to(t);
            input.send((k, v, t));
        }
        drop(input);
        for _ in 0..200 {
            worker.step();
            if probe.done() {
                break;
            }
        }
        *e.lock().unwrap() = handle.error();
        // After an error the operator holds its frontier for good (fail-stop): drop the dataflow, as the
        // docs say, or the worker would wait for it at shutdown.
        if handle.error().is_some() {
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        }
    });
    let out = out.lock().unwrap().clone();
    let err = err.lock().unwrap().clone();
    (out, err)
}

/// A deletion of a key that has no value, at the greatest `u64` time: an upsert that changes nothing and
/// writes nothing, so the store accepts it. The operator must not panic (an error in the handle, or
/// nothing at all, would do). Today `applied_upto.max(t.to_u64() + 1)` in `operators/upsert/mod.rs`
/// overflows at `t = u64::MAX` (a panic in debug builds, a silent wrap to 0 in release ones).
#[test]
fn upsert_of_nothing_at_the_greatest_time_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let result = std::panic::catch_unwind(move || {
        upsert_run(
            &path,
            vec![("a".to_string(), Some(1), 5), ("b".to_string(), None, u64::MAX)],
        )
    });
    let (out, err) = result.expect("upsert_persisted panicked on an upsert at u64::MAX");
    assert_eq!(out, vec![(("a".to_string(), 1), 5, 1)], "error: {err:?}");
    // Refused as a write there is (the store keeps u64::MAX for the closed frontier).
    assert!(err.is_some_and(|e| e.contains("u64::MAX")), "no error");
}

/// The same at the greatest `i64` time (stored as `u64::MAX`, DD's signed timestamps).
#[test]
fn upsert_of_nothing_at_the_greatest_i64_time_does_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let result = std::panic::catch_unwind(move || {
        let store = Store::open(&path).unwrap();
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::new();
            let probe = ProbeHandle::new();
            let handle = worker.dataflow::<i64, _, _>(|scope| {
                let (current, handle) = UpsertPersisted::<String, u64, i64>::upsert_persisted(
                    scope.input_from(&mut input),
                    &store,
                    "u",
                )
                .unwrap();
                current.inner.probe_with(&probe);
                handle
            });
            input.advance_to(i64::MAX);
            input.send(("b".to_string(), None, i64::MAX));
            drop(input);
            for _ in 0..200 {
                worker.step();
            }
            let error = handle.error();
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            error
        })
    });
    let error = result.expect("upsert_persisted panicked on an upsert at i64::MAX");
    // Refused as a write there is (the store keeps u64::MAX for the closed frontier).
    assert!(error.is_some_and(|e| e.contains("u64::MAX")), "no error");
}

type Row = (String, u64);

/// Runs `arrange_persisted(store, "x")` at times `T` with `peers` workers: worker 0 feeds `rows` at
/// their times (every worker advances through them), then the input closes (`close`) or the dataflow is
/// dropped once `until` is complete. Returns the accumulated output and each worker's `resume_at`.
fn arrange_run<T: PersistTime + Sync>(
    dir: &Path,
    peers: usize,
    rows: Vec<(Row, T)>,
    until: Option<T>,
) -> (BTreeMap<Row, i64>, Vec<u64>) {
    let store = Store::open(dir).unwrap();
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let (o, r) = (out.clone(), resumed.clone());
    let rows = Arc::new(rows);
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let (mut input, handle) = worker.dataflow::<T, _, _>(|scope| {
            let (input, c) = scope.new_collection::<Row, i64>();
            let (arranged, handle) = c.arrange_persisted(&store, "x").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |(row, _, d)| *o.lock().unwrap().entry(row.clone()).or_insert(0) += *d)
                .probe_with(&probe);
            (input, handle)
        });
        r.lock().unwrap().push(handle.resume_at());
        for (row, t) in rows.iter() {
            if T::from_u64(handle.resume_at()).is_some_and(|r| *t < r) {
                continue;
            }
            input.advance_to(*t);
            if worker.index() == 0 {
                input.update(row.clone(), 1);
            }
        }
        match until {
            None => {
                drop(input);
                worker.step_while(|| !probe.done());
            }
            Some(until) => {
                input.advance_to(until);
                input.flush();
                worker.step_while(|| probe.less_than(&until));
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
        }
        assert_eq!(handle.error(), None);
    })
    .unwrap();
    let mut out = out.lock().unwrap().clone();
    out.retain(|_, d| *d != 0);
    let r = resumed.lock().unwrap().clone();
    (out, r)
}

fn row(k: &str, v: u64) -> Row {
    (k.to_string(), v)
}

/// Negative `i32` times over two workers, restarted twice: the second run replays from the resume point
/// and continues; every row once.
#[test]
fn negative_i32_times_restart_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<(Row, i32)> = (0..6)
        .map(|i| (row(&format!("k{i}"), i), -10 + i as i32))
        .collect();
    let (out, _) = arrange_run(dir.path(), 2, first.clone(), Some(-3));
    assert_eq!(out.len(), 6);
    let mut second = first.clone();
    // New rows at and after the resume point (-3): times below it were declared complete.
    second.extend((6..9).map(|i| (row(&format!("k{i}"), i), -9 + i as i32)));
    let (out, resumed) = arrange_run(dir.path(), 2, second, Some(2));
    let r = i32::from_u64(resumed[0]).unwrap();
    assert_eq!(r, -3, "resume point");
    assert_eq!(out.len(), 9, "{out:?}");
    assert!(out.values().all(|d| *d == 1), "{out:?}");
}

/// A `u8`-time arrangement whose source ends with data at 255: the streams finish at 256, beyond `u8`'s
/// range. A later run (nothing to feed: the source ended at the end of the range) serves every row once
/// and completes, on every worker.
#[test]
fn u8_source_ending_at_the_last_time_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<(Row, u8)> = vec![(row("a", 1), 250), (row("b", 2), 255), (row("c", 3), 255)];
    let (out, _) = arrange_run(dir.path(), 2, rows.clone(), None);
    assert_eq!(out.len(), 3);
    let store = Store::open(dir.path()).unwrap();
    let finished: Vec<(u64, bool)> = (0..2)
        .map(|w| {
            let meta = store
                .manifest()
                .stream(&worker_stream_id("x", w, 2))
                .cloned()
                .unwrap();
            (meta.upper, meta.finished)
        })
        .collect();
    drop(store);
    assert!(finished.iter().all(|f| f.1), "{finished:?}");
    let (out, resumed) = arrange_run::<u8>(dir.path(), 2, Vec::new(), None);
    assert_eq!(out.len(), 3, "{out:?} (resume points {resumed:?})");
}
