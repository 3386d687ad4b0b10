//! Adversarial round 11's durable chains (`restart_durable_chain.rs`), the checks within one process: a
//! durable operator built directly over a persisted operator's output is refused at build; the build's
//! check does not take a later worker's stream for an earlier one's on the same thread; over a store whose
//! WAL keeps nothing a durable chain builds and takes its replay; and the replay mark belongs to the
//! operator that saw the replay, so one rebuilt in the same process is not stopped by it.

use crate::restart_durable_chain::collection;
use ddpersist::operators::{worker_stream_id, ArrangeTyped, Persist, PersistOptions};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

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
