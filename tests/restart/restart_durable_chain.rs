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
fn collection(store: &Store, stream: &str) -> BTreeMap<(u32, String), i64> {
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

/// A durable operator built directly over the output of a persisted operator (which replays on restart)
/// is refused at build, before it holds anything: `persist`, `upsert_persisted` and a persisted
/// arrangement's `as_collection` feeding `arrange_by_key_persisted_with`, `arrange_by_self_persisted_with`
/// and `persist` through a durable manager. The same chains built not durable are taken.
#[test]
fn a_durable_operator_built_directly_over_a_persisted_output_is_refused_at_build() {
    use ddpersist::operators::typed_arrange::ArrangeTypedBySelf;
    use ddpersist::operators::UpsertPersisted;
    use timely::dataflow::operators::Input as _;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let outcomes = timely::execute_directly(move |worker| {
        let durable = PersistManager::with_options(
            store.clone(),
            ManagerOptions {
                durable: true,
                ..Default::default()
            },
        );
        let plain = PersistManager::new(store.clone());
        let opts = |durable| PersistOptions {
            durable,
            ..Default::default()
        };
        let outcomes = worker.dataflow::<u64, _, _>(|scope| {
            let (_input, rows) = scope.new_collection::<(u32, String), i64>();
            let (persisted, _) = rows.clone().persist(durable.token("src", 0).unwrap()).unwrap();
            let (_upserts_in, upserts) = scope.new_input::<Vec<(u32, Option<String>, u64)>>();
            let (upserted, _) = upserts.upsert_persisted(&store, "ups").unwrap();
            let arranged = rows.arrange_by_key_persisted(&store, "arr").unwrap();
            let as_collection = arranged.as_collection(|k: &u32, v: &String| (*k, v.clone()));
            let refused = |r: Result<(), ddpersist::Error>| match r {
                Err(ddpersist::Error::BadInput { detail }) => detail.contains("replays"),
                _ => false,
            };
            let arrange =
                |c: &differential_dataflow::VecCollection<_, (u32, String), i64>, id: &str, durable| {
                    c.clone()
                        .arrange_by_key_persisted_with(&store, id, opts(durable))
                        .map(|_| ())
                };
            vec![
                refused(arrange(&persisted, "a1", true)),
                refused(arrange(&upserted, "a2", true)),
                refused(arrange(&as_collection, "a3", true)),
                refused(
                    persisted
                        .clone()
                        .arrange_by_self_persisted_with(&store, "a4", opts(true))
                        .map(|_| ()),
                ),
                refused(
                    persisted
                        .clone()
                        .persist(durable.token("p5", 0).unwrap())
                        .map(|_| ()),
                ),
                // Not durable: taken.
                arrange(&persisted, "b1", false).is_ok(),
                arrange(&as_collection, "b2", false).is_ok(),
                persisted.clone().persist(plain.token("b3", 0).unwrap()).is_ok(),
            ]
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        outcomes
    });
    assert_eq!(outcomes, vec![true; 8]);
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

/// A store whose WAL keeps nothing (`Store::in_memory`) resumes a durable stream as one that is not (its
/// unsealed updates are dropped at build and its input replays): a durable operator over a persisted
/// output builds there, and takes a replay below its upper as a replay (review of the fix).
#[test]
fn over_a_log_that_keeps_nothing_a_durable_chain_is_taken() {
    let store = Store::in_memory().unwrap();
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            durable: true,
            ..Default::default()
        },
    );
    let rows = |run: u64| -> Vec<((u32, String), u64, i64)> {
        (0..=run)
            .map(|t| ((t as u32, format!("row {t}")), t, 1))
            .collect()
    };
    for run in 0..3u64 {
        let (store, manager) = (store.clone(), manager.clone());
        let error = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, handles) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, String), i64>();
                let (passed, up) = c.persist(manager.token("up", 0).unwrap()).unwrap();
                let o = PersistOptions {
                    durable: true,
                    ..Default::default()
                };
                let down = passed.arrange_by_key_persisted_with(&store, "down", o).unwrap();
                let handle = down.handle().unwrap().clone();
                down.stream.probe_with(&probe);
                (input, (up, handle))
            });
            // A replayable input: every row from the resume point, then the run's new row.
            input.advance_to(handles.0.resume_at());
            for (row, t, d) in rows(run).into_iter().filter(|r| r.1 >= handles.0.resume_at()) {
                input.update_at(row, t, d);
            }
            input.advance_to(run + 1);
            input.flush();
            let deadline = Instant::now() + Duration::from_secs(30);
            while probe.less_than(&(run + 1)) && handles.1.error().is_none() {
                assert!(Instant::now() < deadline, "hang in run {run}");
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
            handles.1.error()
        });
        assert_eq!(error, None, "run {run}");
    }
    let down = collection(&store, &worker_stream_id("down", 0, 1));
    let expected: BTreeMap<(u32, String), i64> = rows(2).into_iter().map(|(row, _, d)| (row, d)).collect();
    assert_eq!(down, expected);
}

/// The build's check knows a replaying stream by its worker, scope address and source operator and port:
/// a later worker on the same thread (`execute_directly` again), whose indices start at 0 again, does
/// not mistake a stream at the same place for one (review of the fix: a stale entry refused an unrelated
/// durable arrangement).
#[test]
fn a_later_worker_on_the_same_thread_is_not_refused_for_an_earlier_ones_replaying_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let manager = PersistManager::new(store.clone());
    let place = timely::execute_directly(move |worker| {
        let place = worker.dataflow::<u64, _, _>(|scope| {
            let (_input, rows) = scope.new_collection::<(u32, String), i64>();
            let (passed, _) = rows.persist(manager.token("p", 0).unwrap()).unwrap();
            let name = passed.inner.name();
            (name.node, name.port)
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        place
    });
    let built = timely::execute_directly(move |worker| {
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (_input, mut rows) = scope.new_collection::<(u32, String), i64>();
            // Operators until the stream sits where the earlier worker's replaying one did.
            while (rows.inner.name().node, rows.inner.name().port) != place {
                assert!(rows.inner.name().node < place.0, "passed the place {place:?}");
                rows = rows.map(|row| row);
            }
            let o = PersistOptions {
                durable: true,
                ..Default::default()
            };
            rows.arrange_by_key_persisted_with(&store, "d", o)
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        built
    });
    assert_eq!(built, Ok(()));
}

/// One run over `store` (kept open across runs, as a process that rebuilds its dataflow keeps it): a
/// durable arrangement "down" fed through a `map` by a `persist` that is not durable (`replayed`), or by
/// an input that does not replay. Feeds `rows` at their times, advances the input to `to` and steps until
/// "down" holds `unsealed` updates unsealed; closes the input first if `close`. Returns its error.
fn run_down(
    store: &Store,
    replayed: bool,
    rows: &[(u32, &'static str, u64)],
    to: u64,
    unsealed: usize,
    close: bool,
) -> Option<String> {
    let (store, rows) = (store.clone(), rows.to_vec());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let manager = PersistManager::new(store.clone());
        let (mut input, state, errors) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u32, String), i64>();
            let (rows, up) = match replayed {
                true => {
                    let (passed, handle) = rows.persist(manager.token("up", 0).unwrap()).unwrap();
                    (passed.map(|row| row), Some(handle.resume_state()))
                }
                false => (rows, None),
            };
            let o = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let down = rows.arrange_by_key_persisted_with(&store, "down", o).unwrap();
            let handle = down.handle().unwrap();
            let state = match up {
                Some(up) => up.merge(handle.resume_state()),
                None => handle.resume_state(),
            };
            let errors = handle.errors().clone();
            down.stream.probe_with(&probe);
            (input, state, errors)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        input.advance_to(state.greatest_upper);
        for &(k, v, t) in &rows {
            input.update_at((k, v.to_string()), t, 1);
        }
        input.advance_to(to);
        if close {
            drop(input);
            while !probe.done() && errors.message().is_none() {
                assert!(Instant::now() < deadline, "hang");
                worker.step();
            }
        } else {
            input.flush();
            let down = worker_stream_id("down", 0, 1);
            while errors.message().is_none() && store.unsealed_len(&down).unwrap_or(0) < unsealed {
                assert!(Instant::now() < deadline, "hang");
                worker.step();
            }
        }
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        errors.message()
    })
}

/// The replay mark belongs to the operator that saw the replay: a durable arrangement that held nothing
/// unsealed takes a replay (and marks its stream), then is stopped holding a row ahead; rebuilt in the same
/// process over an input that does not replay, it takes its new rows and holds each row once (review of the
/// fix: the mark outlived the operator and stopped the rebuilt one at once).
#[test]
fn a_durable_arrangement_rebuilt_in_the_same_process_is_not_stopped_by_an_earlier_operators_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    // Sealed and closed: "down" holds nothing unsealed.
    assert_eq!(run_down(&store, true, &[(1, "a", 0)], 5, 0, true), None);
    // The persist re-emits the row at 0, below "down"'s upper: dropped (and the stream marked); the row
    // at 20, ahead of the frontier, stays unsealed when the dataflow is dropped.
    assert_eq!(run_down(&store, true, &[(2, "b", 20)], 10, 1, false), None);
    // Rebuilt over an input that does not replay.
    assert_eq!(run_down(&store, false, &[(3, "c", 30)], 40, 0, true), None);
    let expected: BTreeMap<_, _> = [((1, "a"), 1), ((2, "b"), 1), ((3, "c"), 1)]
        .into_iter()
        .map(|((k, v), d)| ((k, v.to_string()), d))
        .collect();
    assert_eq!(collection(&store, &worker_stream_id("down", 0, 1)), expected);
}
