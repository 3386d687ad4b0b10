//! Adversarial round 11: a chain of *durable* persisted operators (for an input that cannot replay, README
//! "Restarting": "Inputs that cannot replay use durable streams ... what was written survives, and the input
//! continues with new updates only, at or beyond `handle.resume_state().greatest_upper`").
//!
//! Run 1 feeds one row at time 0 and one row ahead of the frontier (time 20), steps until every operator
//! of the chain has taken both in (each durable stream holds the row ahead unsealed), and stops (drops
//! the dataflow, its input open). Run 2 continues with no new rows and closes the input. Each downstream
//! stream must then hold what its upstream holds, once.
//!
//! A durable downstream must not be fed by an input that replays: on restart its stream recovers its own
//! unsealed copy of the row ahead from its WAL, and its input (a durable `persist` re-emits its recovered
//! unsealed updates; a `persist` that is not durable passes its input's replay; an arrangement re-emits
//! its batches) gives the row again at a time at or beyond the downstream's upper, which it would take
//! as new and count twice. Adversarial round 11 found that (a count of 2 for a row sent once); now such a
//! downstream refuses its input's replay (an update below its upper, which a source that cannot replay
//! never sends) with `BadInput` in its handle, stops and holds its frontier, before it seals anything
//! twice (the chains below pass through a `map`, which hides the upstream from the build's check). Chains
//! with a downstream that is not durable hold every row once. A durable operator built directly over a
//! persisted operator's output is refused at build; with two workers, every worker stops when one
//! refuses (review of the fix: a worker given only rows ahead took them as new).
//!
//! The checks within one process (at build, a later worker on the same thread, a WAL that keeps nothing, an
//! operator rebuilt in the same process) are in `restart_durable_chain_build.rs`.

use ddpersist::operators::{worker_stream_id, ArrangeTyped, Persist, PersistOptions, UpsertPersisted};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

#[derive(Clone, Copy, Debug)]
enum Upstream {
    /// A durable `persist` (through a `PersistManager` with `durable: true`).
    Persist,
    /// A durable arrangement, read back with `as_collection`.
    Arrange,
    /// A `persist` that is not durable, its input replayed from the resume point (README: a replayable
    /// input replays from `resume_at()`).
    ReplayedPersist,
}

/// The downstream operator.
#[derive(Clone, Copy, Debug)]
enum Down {
    /// A persisted arrangement, durable or not.
    Arrange { durable: bool },
    /// A de-upsert (its state stream is never durable) of the rows as upserts `(k, Some(v))`.
    Upsert,
}

/// One run. `first`: feeds the two rows, steps until every stream holds the row ahead, drops the
/// dataflow; else closes the input at once and runs to the end, or until the downstream operator reports
/// an error (then drops the dataflow): returns that error.
fn run(dir: &Path, upstream: Upstream, down: Down, first: bool) -> Option<String> {
    let downstream_durable = matches!(down, Down::Arrange { durable: true });
    let store = Store::open(dir).unwrap();
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            durable: !matches!(upstream, Upstream::ReplayedPersist),
            ..Default::default()
        },
    );
    let errors = timely::execute(timely::Config::process(1), move |worker| {
        let probe = ProbeHandle::new();
        let st = store.clone();
        let token = manager.token("up", worker.index()).unwrap();
        let (mut input, state, errors) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u32, String), i64>();
            let (passed, state) = match upstream {
                Upstream::Persist | Upstream::ReplayedPersist => {
                    let (passed, handle) = rows.persist(token).unwrap();
                    (passed, handle.resume_state())
                }
                Upstream::Arrange => {
                    let durable = PersistOptions {
                        durable: true,
                        ..Default::default()
                    };
                    let arranged = rows.arrange_by_key_persisted_with(&st, "up", durable).unwrap();
                    let state = arranged.handle().unwrap().resume_state();
                    let rows = arranged.as_collection(|k: &u32, v: &String| (*k, v.clone()));
                    (rows, state)
                }
            };
            let state = match down {
                Down::Arrange { durable } => {
                    let o = PersistOptions {
                        durable,
                        ..Default::default()
                    };
                    // Through a `map`, which hides the replaying upstream from the build's check (the
                    // direct chains are refused at build: below); the replay is refused while running.
                    let passed = passed.map(|row| row);
                    let down = passed.arrange_by_key_persisted_with(&st, "down", o).unwrap();
                    let handle = down.handle().unwrap();
                    let (state, errors) = (state.merge(handle.resume_state()), handle.errors().clone());
                    down.stream.probe_with(&probe);
                    (state, errors)
                }
                Down::Upsert => {
                    let upserts = passed.inner.map(|((k, v), t, d)| {
                        assert!(d > 0, "rows are only inserted here");
                        (k, Some(v), t)
                    });
                    let (out, handle) = upserts.upsert_persisted(&st, "down").unwrap();
                    out.inner.probe_with(&probe);
                    (state.merge(handle.resume_state()), handle.errors().clone())
                }
            };
            (input, state.0, state.1)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        if first {
            input.update((1, "now".to_string()), 1);
            input.update_at((2, "ahead".to_string()), 20, 1);
            input.advance_to(5);
            input.flush();
            while probe.less_than(&5) {
                assert!(Instant::now() < deadline, "hang in the first run");
                worker.step();
            }
            // Every stream of the chain took the row ahead in (its durable copy, unsealed); an
            // arrangement passes on only what it sealed, so downstream of one it is not there yet.
            let holds = |id: &str| st.unsealed_len(&worker_stream_id(id, 0, 1)).unwrap_or(0);
            let reaches_down = !matches!(upstream, Upstream::Arrange) && downstream_durable;
            while holds("up") == 0 || (reaches_down && holds("down") == 0) {
                assert!(
                    Instant::now() < deadline,
                    "the row ahead never reached every stream"
                );
                worker.step();
            }
            // A stop: the dataflow dropped, the input open.
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        } else if matches!(upstream, Upstream::ReplayedPersist) {
            // A replayable input replays every time from the resume point: here the row ahead.
            let from = state.resume_at();
            assert!(from <= 5, "resume point {from}");
            input.advance_to(from);
            input.update_at((2, "ahead".to_string()), 20, 1);
            drop(input);
            while !probe.done() && errors.message().is_none() {
                assert!(Instant::now() < deadline, "hang in the second run");
                worker.step();
            }
        } else {
            // A durable input continues at or beyond the greatest upper, with nothing new here.
            input.advance_to(state.greatest_upper);
            drop(input);
            while !probe.done() && errors.message().is_none() {
                assert!(Instant::now() < deadline, "hang in the second run");
                worker.step();
            }
        }
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        errors.message()
    })
    .unwrap()
    .join();
    errors.into_iter().next().and_then(|e| e.ok().flatten())
}

/// A stream's contents as a collection: `(key, val) -> diff` summed over all times.
pub(crate) fn collection(store: &Store, stream: &str) -> BTreeMap<(u32, String), i64> {
    let mut out = BTreeMap::new();
    for (k, v, _, d) in store.snapshot(stream).unwrap().decode::<u32, String>().unwrap() {
        *out.entry((k, v)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// Runs the chain twice. A durable downstream holding unsealed rows, fed by an input that replays (every
/// upstream here), must refuse the replay (an error naming it) without counting a row twice; any other
/// holds each row once.
fn check(upstream: Upstream, down: Down) {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(run(tmp.path(), upstream, down, true), None);
    let error = run(tmp.path(), upstream, down, false);
    let store = Store::open(tmp.path()).unwrap();
    let up = collection(&store, &worker_stream_id("up", 0, 1));
    let downstream = collection(&store, &worker_stream_id("down", 0, 1));
    let sent: BTreeMap<(u32, String), i64> =
        [((1, "now".to_string()), 1), ((2, "ahead".to_string()), 1)].into();
    // An arrangement passes on only what it sealed: the downstream holds nothing unsealed from run 1, so
    // the replay doubles nothing there and is taken (dropped below the upper).
    let recovered = !matches!(upstream, Upstream::Arrange);
    if matches!(down, Down::Arrange { durable: true }) && recovered {
        let error = error.unwrap_or_default();
        assert!(
            error.contains("replays") && error.contains("below its upper"),
            "{upstream:?} -> {down:?}: the replay was not refused: {error:?}"
        );
        // Stopped at the replay's first message: nothing counted twice (and the run ended there, so a
        // stream that is not durable may lack what it had not sealed).
        for (row, diff) in downstream.iter().chain(&up) {
            assert_eq!(
                sent.get(row),
                Some(diff),
                "{upstream:?} -> {down:?}: {up:?}, {downstream:?}"
            );
        }
    } else {
        assert_eq!(error, None, "{upstream:?} -> {down:?}");
        assert_eq!(up, sent, "{upstream:?}: the upstream stream");
        assert_eq!(
            downstream, sent,
            "{upstream:?} -> {down:?}: the downstream stream"
        );
    }
}

#[test]
fn a_durable_persist_feeding_an_arrangement_that_is_not_durable_holds_each_row_once() {
    check(Upstream::Persist, Down::Arrange { durable: false });
}

#[test]
fn a_durable_arrangement_feeding_an_arrangement_that_is_not_durable_holds_each_row_once() {
    check(Upstream::Arrange, Down::Arrange { durable: false });
}

/// Round 11's fault: `(2, "ahead")` was held twice downstream.
#[test]
fn a_durable_arrangement_fed_by_a_durable_persist_refuses_its_replay() {
    check(Upstream::Persist, Down::Arrange { durable: true });
}

/// A `persist` that is not durable, its input replayed from `resume_at()` as the README asks: the durable
/// downstream recovered its unsealed copy and took the replayed one as new (round 11's fault).
#[test]
fn a_durable_arrangement_fed_by_a_replayed_persist_refuses_its_replay() {
    check(Upstream::ReplayedPersist, Down::Arrange { durable: true });
}

#[test]
fn a_replayed_persist_feeding_an_arrangement_that_is_not_durable_holds_each_row_once() {
    check(Upstream::ReplayedPersist, Down::Arrange { durable: false });
}

/// An arrangement re-emits its batches on restart: a replay too, which the downstream here takes, since it
/// held nothing unsealed (it would refuse it had it taken in, unsealed, rows the upstream had sealed).
#[test]
fn a_durable_arrangement_fed_by_a_durable_arrangement_holding_nothing_unsealed_takes_its_replay() {
    check(Upstream::Arrange, Down::Arrange { durable: true });
}

/// A durable `persist` feeding a de-upsert (whose state is never durable): each row once.
#[test]
fn a_durable_persist_feeding_an_upsert_holds_each_row_once() {
    check(Upstream::Persist, Down::Upsert);
}

#[test]
fn a_durable_arrangement_feeding_an_upsert_holds_each_row_once() {
    check(Upstream::Arrange, Down::Upsert);
}

/// One run of two workers: a durable `persist` of `rows`, through a `map`, into a durable arrangement.
/// `first`: feeds one row at time 0 and 40 rows ahead at time 20, advances to 5, steps until both
/// workers' downstream streams hold rows ahead unsealed and drops the dataflow. Else: advances the input
/// to the agreed greatest upper, steps until a worker reports an error, then advances the input to 30 and
/// steps until its own handle reports one. Returns each worker's error.
fn run_two_workers(dir: &Path, first: bool) -> Vec<Option<String>> {
    use ddpersist::trace::ErrorSlot;
    use std::sync::{Arc, Mutex};
    let store = Store::open(dir).unwrap();
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            durable: true,
            ..Default::default()
        },
    );
    let slots: Arc<Mutex<Vec<ErrorSlot>>> = Arc::default();
    let outcome = timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let (st, index) = (store.clone(), worker.index());
        let token = manager.token("up", index).unwrap();
        let (mut input, state, errors) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u32, String), i64>();
            let (passed, up) = rows.persist(token).unwrap();
            let o = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let down = passed
                .map(|row| row)
                .arrange_by_key_persisted_with(&st, "down", o)
                .unwrap();
            let handle = down.handle().unwrap();
            let out = (
                up.resume_state().merge(handle.resume_state()),
                handle.errors().clone(),
            );
            down.stream.probe_with(&probe);
            (input, out.0, out.1)
        });
        slots.lock().unwrap().push(errors.clone());
        let deadline = Instant::now() + Duration::from_secs(30);
        let step = |worker: &mut timely::worker::Worker, what: &str| {
            assert!(Instant::now() < deadline, "hang: {what}");
            worker.step();
        };
        if first {
            if index == 0 {
                input.update((1, "now".to_string()), 1);
                for k in 100..140 {
                    input.update_at((k, "ahead".to_string()), 20, 1);
                }
            }
            input.advance_to(5);
            input.flush();
            while probe.less_than(&5) {
                step(worker, "the first run's seal");
            }
            let holds = |w| st.unsealed_len(&worker_stream_id("down", w, 2)).unwrap_or(0);
            while holds(0) == 0 || holds(1) == 0 {
                step(worker, "rows ahead on both workers");
            }
        } else {
            input.advance_to(state.greatest_upper);
            input.flush();
            let refused =
                |slots: &Mutex<Vec<ErrorSlot>>| slots.lock().unwrap().iter().any(|s| s.message().is_some());
            while !refused(&slots) {
                step(worker, "a worker refusing the replay");
            }
            input.advance_to(30);
            input.flush();
            while errors.message().is_none() {
                step(worker, "every worker stopping");
            }
        }
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        errors.message()
    })
    .unwrap()
    .join();
    outcome.into_iter().map(|r| r.unwrap()).collect()
}

/// Two workers, the replay exchanged between them: the worker given the row below its upper refuses it;
/// the other, given only rows ahead (at or beyond its upper, which it cannot tell from new ones), stops
/// too (its sibling marked the operator in the store), before it seals them a second time.
#[test]
fn every_worker_of_a_durable_arrangement_stops_when_one_refuses_the_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let first = run_two_workers(tmp.path(), true);
    assert_eq!(first, vec![None, None]);
    let errors = run_two_workers(tmp.path(), false);
    for error in &errors {
        let error = error.as_deref().unwrap_or_default();
        assert!(error.contains("replay"), "{errors:?}");
    }
    let store = Store::open(tmp.path()).unwrap();
    for w in 0..2 {
        let upper = store.upper(&worker_stream_id("down", w, 2)).unwrap();
        assert!(
            upper <= 20,
            "worker {w} sealed the rows ahead (time 20) again: upper {upper}"
        );
    }
}
