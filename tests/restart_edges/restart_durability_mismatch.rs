//! Adversarial round 7: a `PersistManager`'s `durable` option against the durability its streams were
//! created with. Before, it applied only to streams it created: a stream persisted durable and reopened
//! by a manager with `durable: false` kept its WAL-recovered unsealed updates while the input, following
//! the protocol of a manager that is not durable, replayed its source from `resume_at()` (the recovered
//! time's rows came out and were stored twice); the reverse lost the rows a durable manager's operator
//! had taken in. Now the build is refused, as for other types or another worker count, and the run with
//! the stream's own durability answers as the model.

use crate::common;

use ddpersist::operators::{worker_stream_id, Persist};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

type Update = (u64, u64, i64);
/// Consolidated `(row, time)`s.
type Rows = BTreeMap<(u64, u64), i64>;

fn rows(t: u64) -> Vec<u64> {
    (0..3).map(|i| t * 10 + i).collect()
}

/// Feeds `from..to` (each time complete), then, if `dangling`, time `to`'s rows without advancing past
/// it, and drops the dataflow without closing the input. Returns the output (consolidated) and the
/// handle's `resume_at`, or the build error.
/// With `first_new`, feeds no time below it (a source of new rows only).
fn run(dir: &Path, durable: bool, to: u64, dangling: bool, first_new: u64) -> Result<(Rows, u64), String> {
    let manager = PersistManager::with_options(
        Store::open(dir).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: None,
            durable,
        },
    );
    let out: Arc<Mutex<Vec<Update>>> = Arc::default();
    let o = out.clone();
    let resume = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", 0).unwrap();
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u64, u64), i64>();
            let (persisted, handle) = rows.persist(token).map_err(|e| e.to_string())?;
            persisted
                .map(|(k, _)| k)
                .inspect(move |x| o.lock().unwrap().push(*x))
                .probe_with(&probe);
            Ok::<_, String>((input, handle))
        });
        let (mut input, handle) = built?;
        // The protocol of a stream that is not durable: replay the source from `resume_at`.
        let from = if durable {
            handle.resume_state().greatest_upper
        } else {
            handle.resume_at()
        };
        input.advance_to(from);
        for t in from..to {
            input.advance_to(t);
            for r in rows(t).into_iter().filter(|_| t >= first_new) {
                input.update((r, 0), 1);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
        }
        if dangling {
            for r in rows(to) {
                input.update((r, 0), 1);
            }
            input.flush();
            for _ in 0..20 {
                worker.step();
            }
            // A crash: the dataflow goes without its input closing.
            common::drop_dataflows(worker);
        } else {
            input.close();
            worker.step_while(|| !probe.done());
        }
        assert_eq!(handle.error(), None);
        Ok::<u64, String>(handle.resume_at())
    })?;
    let mut sums = BTreeMap::new();
    for (k, t, d) in out.lock().unwrap().iter() {
        *sums.entry((*k, *t)).or_insert(0) += d;
    }
    sums.retain(|_, d| *d != 0);
    Ok((sums, resume))
}

/// Each row of `0..to` once, at its time.
fn model(to: u64) -> BTreeMap<(u64, u64), i64> {
    (0..to)
        .flat_map(|t| rows(t).into_iter().map(move |r| ((r, t), 1)))
        .collect()
}

#[test]
fn a_durable_stream_reopened_by_a_manager_that_is_not_durable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1, durable: times 0..3 sealed, time 3's rows written but not sealed, then dropped (a crash of
    // the dataflow; the store is closed when the manager goes).
    run(dir.path(), true, 3, true, 0).unwrap();
    assert_eq!(
        stored(dir.path()),
        (3, model(4)),
        "time 3's rows are written, not sealed"
    );
    // Run 2, a manager that is not durable (its source would replay time 3 from `resume_at`): refused.
    let err = run(dir.path(), false, 5, false, 0).unwrap_err();
    assert!(
        err.contains("created durable") && err.contains("src/w0of1"),
        "{err}"
    );
    // Run 2 again, durable as created: time 3 was kept, the source goes on with new rows from 4.
    let (out, _) = run(dir.path(), true, 5, false, 4).unwrap();
    assert_eq!(out, model(5), "the output of run 2 (replay and new rows)");
    assert_eq!(stored(dir.path()).1, model(5), "the store after run 2");
}

/// The stream's upper and its consolidated `(row, time)`s.
fn stored(dir: &Path) -> (u64, BTreeMap<(u64, u64), i64>) {
    let store = Store::open(dir).unwrap();
    let id = worker_stream_id("src", 0, 1);
    let mut stored = BTreeMap::new();
    for (k, _, t, d) in store.snapshot(&id).unwrap().decode::<u64, u64>().unwrap() {
        *stored.entry((k, t)).or_insert(0) += d;
    }
    stored.retain(|_, d| *d != 0);
    (store.upper(&id).unwrap(), stored)
}

#[test]
fn a_stream_created_not_durable_is_refused_by_a_durable_manager() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1, not durable: times 0..2, complete, closed.
    run(dir.path(), false, 2, false, 0).unwrap();
    // Run 2 with `durable: true` (a source that cannot replay): refused, since the stream would lose what
    // it takes in and does not seal (time 4's rows were lost before, without an error).
    let err = run(dir.path(), true, 4, true, 0).unwrap_err();
    assert!(err.contains("created not durable"), "{err}");
    // As created (not durable): the source replays from `resume_at`, crashes with time 4 taken in, and
    // replays again.
    run(dir.path(), false, 4, true, 0).unwrap();
    let (out, _) = run(dir.path(), false, 7, false, 0).unwrap();
    let expected = model(7);
    assert_eq!(out, expected, "run 3's output (replay and new rows)");
    assert_eq!(stored(dir.path()).1, expected, "the store after run 3");
}
