//! Drop-in ports (from an adversarial round, all answering as DD): DD 0.26's own tests (`tests/import.rs`, `tests/threshold.rs`,
//! `tests/reduce.rs`) with their `arrange_by_key()` / `arrange_by_self()` replaced by the persisted
//! arrangement, everything else as DD wrote it. Expectations are DD's own (the vectors its tests assert).

use crate::common;

use common::ports::{dd_reduce, only_batch};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistOptions, SealMode};
use ddpersist::Store;
use differential_dataflow::input::InputSession;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::AsCollection;
use std::collections::BTreeMap;
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::{Exchange, Input, Probe};

type Expected = Vec<(usize, Vec<((u64, i64), i64)>)>;

fn input_epochs() -> Vec<Vec<((u64, u64), i64)>> {
    vec![
        vec![((2, 0), 1), ((1, 0), 1), ((1, 3), 1), ((4, 2), 1)],
        vec![((2, 0), -1), ((1, 0), -1)],
        vec![((2, 0), 1), ((1, 3), -1)],
        vec![((1, 0), 1), ((1, 3), 1), ((2, 0), -1), ((4, 2), -1)],
        vec![((2, 0), 1), ((4, 2), 1), ((1, 3), -1)],
        vec![((1, 3), 1), ((4, 2), -1)],
    ]
}

fn expected() -> Expected {
    vec![
        (0, vec![((1, 2), 1), ((2, 1), 1), ((4, 1), 1)]),
        (1, vec![((1, 1), 1), ((1, 2), -1), ((2, 1), -1)]),
        (2, vec![((1, 1), -1), ((2, 1), 1)]),
        (3, vec![((1, 2), 1), ((2, 1), -1), ((4, 1), -1)]),
        (4, vec![((1, 1), 1), ((1, 2), -1), ((2, 1), 1), ((4, 1), 1)]),
        (5, vec![((1, 1), -1), ((1, 2), 1), ((4, 1), -1)]),
    ]
}

/// DD's `run_test` grouping: by time, each time's `(record, diff)` pairs sorted (consolidated here, so
/// that a split of one update over two batches is not counted against the port).
fn by_time(results: Vec<((u64, i64), usize, i64)>) -> Expected {
    let mut acc: BTreeMap<usize, BTreeMap<(u64, i64), i64>> = BTreeMap::new();
    for (d, t, r) in results {
        *acc.entry(t).or_default().entry(d).or_default() += r;
    }
    acc.into_iter()
        .map(|(t, m)| (t, m.into_iter().filter(|(_, r)| *r != 0).collect::<Vec<_>>()))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// A worker's trace of the `import` arrangement of DD's import tests (`usize` times, `i64` diffs).
type ImportTrace = ddpersist::operators::TypedTrace<
    differential_dataflow::operators::arrange::TraceAgent<ddpersist::trace::PersistedTrace<usize>>,
    u64,
    u64,
    i64,
>;

/// The capture of DD's import tests' output: `(record, time, diff)` batches by time.
type Captured = std::sync::mpsc::Receiver<
    timely::dataflow::operators::capture::Event<usize, Vec<((u64, i64), usize, i64)>>,
>;

/// The input handle of DD's import tests: `((src, dst), time, diff)` updates at `usize` times.
type ImportInput = timely::dataflow::InputHandle<
    usize,
    timely::container::CapacityContainerBuilder<Vec<((u64, u64), usize, i64)>>,
>;

/// Sends `input_epochs` into `input` as DD's import tests do: epoch `t` at time `t`, each worker the
/// changes whose source is its own (`src % peers == index`). Returns nothing.
fn send_epochs(input: &mut ImportInput, input_epochs: &[Vec<((u64, u64), i64)>], index: usize, peers: usize) {
    for (t, changes) in input_epochs.iter().enumerate() {
        if &t != input.time() {
            input.advance_to(t);
        }
        let &time = input.time();
        for &((src, dst), w) in changes
            .iter()
            .filter(|&&((src, _), _)| (src as usize) % peers == index)
        {
            input.send(((src, dst), time, w));
        }
    }
}

/// DD's import tests' second dataflow on `worker`: imports `trace` (then drops it), reduces each key's
/// vals to their sum with `reduce_abelian::<_, ValBuilder, ValSpine<u64, i64, _, _>>`, exchanges the
/// output to worker 0 and captures it. Returns the capture.
fn reduce_imported(worker: &mut timely::worker::Worker, mut trace: ImportTrace) -> Captured {
    worker.dataflow(move |scope| {
        let imported = trace.import(scope);
        std::mem::drop(trace);
        imported
            .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<u64, i64, _, _>>("Reduce", |_k, s, t| {
                t.push((s.iter().map(|&(_, w)| w).sum(), 1i64))
            })
            .as_collection(|k, v| (*k, *v))
            .inner
            .exchange(|_| 0)
            .capture()
    })
}

/// The updates worker 0 captured (every worker's output is exchanged to it), from the guards of a
/// `timely::execute` whose workers return their capture.
fn worker_0_results(guards: timely::communication::WorkerGuards<Captured>) -> Vec<((u64, i64), usize, i64)> {
    let captured = guards.join().into_iter().map(|x| x.unwrap()).next().unwrap();
    captured.extract().into_iter().flat_map(|(_, d)| d).collect()
}

/// DD's `tests/import.rs` `test_import_vanilla`: 4 workers, raw `new_input` at `usize` times with `i64`
/// diffs, the arrangement's trace imported into a second dataflow and reduced there with
/// `reduce_abelian::<_, ValBuilder, ValSpine<u64, i64, _, _>>`.
#[test]
fn dd_test_import_vanilla() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let epochs = input_epochs();
    let captured = timely::execute(timely::Config::process(4), move |worker| {
        let (mut input, trace) = worker.dataflow::<usize, _, _>(|scope| {
            let (input, edges) = scope.new_input::<Vec<((u64, u64), usize, i64)>>();
            let arranged = edges
                .as_collection()
                .arrange_by_key_persisted(&store, "import")
                .unwrap();
            (input, arranged.trace.clone())
        });
        let captured = reduce_imported(worker, trace);
        send_epochs(&mut input, &epochs, worker.index(), worker.peers());
        input.close();
        captured
    })
    .unwrap();
    let results = worker_0_results(captured);
    assert_eq!(by_time(results), expected());
}

/// DD's `tests/import.rs` `test_import_completed_dataflow`: the first dataflow runs to completion (input
/// closed, probe done) before the second imports its trace.
#[test]
fn dd_test_import_completed_dataflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let epochs = input_epochs();
    let captured = timely::execute(timely::Config::process(4), move |worker| {
        let (mut input, trace, probe) = worker.dataflow::<usize, _, _>(|scope| {
            let (input, edges) = scope.new_input::<Vec<((u64, u64), usize, i64)>>();
            let arranged = edges
                .as_collection()
                .arrange_by_key_persisted(&store, "import")
                .unwrap();
            let (probe, _) = arranged.stream.clone().probe();
            (input, arranged.trace.clone(), probe)
        });
        send_epochs(&mut input, &epochs, worker.index(), worker.peers());
        input.close();
        worker.step_while(|| !probe.done());
        reduce_imported(worker, trace)
    })
    .unwrap();
    let results = worker_0_results(captured);
    assert_eq!(by_time(results), expected());
}

/// DD's `tests/import.rs` `test_import_stalled_dataflow`: the input is advanced (not closed), the
/// trace imported, four `worker.step()`s, and the import's probe must have reached the input's time.
#[test]
fn dd_test_import_stalled_dataflow() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    timely::execute(timely::Config::thread(), move |worker| {
        let mut input = InputSession::new();
        let (mut trace, probe1) = worker.dataflow(|scope| {
            let arranged = input
                .to_collection(scope)
                .arrange_by_self_persisted(&store, "stalled")
                .unwrap();
            let (probe, _) = arranged.stream.clone().probe();
            (arranged.trace, probe)
        });
        input.insert("Hello".to_owned());
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe1.less_than(input.time()));
        input.advance_to(2);
        input.flush();
        worker.step_while(|| probe1.less_than(input.time()));
        let probe2 = worker.dataflow(|scope| {
            let (probe, _) = trace.import(scope).stream.probe();
            probe
        });
        worker.step();
        worker.step();
        worker.step();
        worker.step();
        assert!(!probe2.less_than(input.time()));
    })
    .expect("Timely computation failed");
}

/// DD's `tests/threshold.rs` `run`, over `arrange_by_self_persisted`: updates at times ahead of the
/// input's, fed at once (`per_time = false`) or time by time.
fn run_threshold<F>(updates: &[(u64, u64, isize)], per_time: bool, logic: F) -> Vec<(u64, u64, isize)>
where
    F: for<'scope> FnOnce(
            ddpersist::operators::TypedPersisted<'scope, u64, (), u64, isize>,
        ) -> differential_dataflow::VecCollection<'scope, u64, u64, isize>
        + Send
        + Sync
        + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let updates = updates.to_vec();
    let (send, recv) = std::sync::mpsc::channel();
    timely::execute_directly(move |worker| {
        let mut input = InputSession::<u64, u64, isize>::new();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let arranged = input
                .to_collection(scope)
                .arrange_by_self_persisted(&store, "threshold")
                .unwrap();
            let (probe, output) = logic(arranged).probe();
            output.inner.capture_into(send);
            probe
        });
        for (key, time, diff) in updates {
            input.update_at(key, time, diff);
            if per_time {
                input.advance_to(time + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(time + 1)));
            }
        }
    });
    let mut output: Vec<_> = recv.extract().into_iter().flat_map(|(_, data)| data).collect();
    differential_dataflow::consolidation::consolidate_updates(&mut output);
    output
}

/// DD's `distinct_total_zero_count`.
#[test]
fn dd_test_distinct_total_zero_count() {
    let updates = [(0, 1, 1), (0, 2, -1), (0, 3, 1), (0, 4, 1), (0, 5, -2)];
    let expected = vec![(0, 1, 1), (0, 2, -1), (0, 3, 1), (0, 5, -1)];
    for per_time in [false, true] {
        assert_eq!(
            run_threshold(&updates, per_time, |c| c.distinct_total()),
            expected,
            "per_time: {per_time}"
        );
    }
}

/// DD's `threshold_total_zero_count`.
#[test]
fn dd_test_threshold_total_zero_count() {
    let updates = [(0, 1, 1), (0, 2, -1), (0, 3, 2)];
    let expected = vec![(0, 1, 2), (0, 2, -2), (0, 3, 3)];
    for per_time in [false, true] {
        assert_eq!(
            run_threshold(&updates, per_time, |c| c.threshold_total(|_, c| c + 1)),
            expected,
            "per_time: {per_time}"
        );
    }
}

/// DD's `tests/reduce.rs` `reduce`: `to_stream` of updates at the default time, reduced.
#[test]
fn dd_test_reduce() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        only_batch(dd_reduce(store, "reduce")),
        vec![((0, 0), Default::default(), 1), ((1, 1), Default::default(), 2)]
    );
}

/// DD's `tests/reduce.rs` `reduce_frontier_ahead_of_trace`: the persisted arrangement built in the outer
/// scope inside `region`'s closure, entered into the region and reduced there.
#[test]
fn dd_test_reduce_frontier_ahead_of_trace() {
    for seals in [SealMode::Adaptive, SealMode::Pipelined, SealMode::Inline] {
        reduce_frontier_ahead_of_trace(seals);
    }
}

fn reduce_frontier_ahead_of_trace(seals: SealMode) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (send, recv) = std::sync::mpsc::channel();
    timely::execute_directly(move |worker| {
        let mut input = InputSession::<u64, (u64, u64), isize>::new();
        let probe = worker.dataflow::<u64, _, _>(|scope| {
            let collection = input.to_collection(scope);
            scope.region(|inner| {
                let (probe, output) = collection
                    .arrange_by_key_persisted_with(
                        &store,
                        "ahead",
                        PersistOptions {
                            seals,
                            ..Default::default()
                        },
                    )
                    .unwrap()
                    .enter_region(inner)
                    .reduce_abelian::<_, ValBuilder<u64, u64, u64, isize>, ValSpine<u64, u64, u64, isize>>(
                        "Reduce",
                        |_key, src, dst| dst.push((src.len() as u64, 1)),
                    )
                    .as_collection(|k, v| (*k, *v))
                    .leave_region(scope)
                    .probe();
                output.inner.capture_into(send);
                probe
            })
        });
        input.update_at((0, 0), 7, 1);
        input.advance_to(6);
        input.flush();
        worker.step_while(|| probe.less_than(&6));
        input.advance_to(10);
        input.flush();
        worker.step_while(|| probe.less_than(&10));
    });
    let updates: Vec<_> = recv.extract().into_iter().flat_map(|(_, data)| data).collect();
    assert_eq!(updates, vec![((0, 1), 7, 1)], "{seals:?}");
}

/// DD's doc example of `TraceAgent::import_frontier` (agent.rs), `arrange_by_self()` replaced: one
/// `worker.step()` per round, the trace compacted to 5, imported with `import_frontier`; every time out
/// of the import is at or past 5; after `shutdown.press()` and two steps the import's probe is done.
#[test]
fn dd_doc_import_frontier_and_shutdown_button() {
    use timely::dataflow::operators::Inspect;
    use timely::dataflow::ProbeHandle;
    use timely::progress::frontier::AntichainRef;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    timely::execute(timely::Config::thread(), move |worker| {
        let probe = ProbeHandle::new();
        let (mut handle, mut trace) = worker.dataflow::<u32, _, _>(|scope| {
            let (handle, stream) = differential_dataflow::input::Input::new_collection::<u32, isize>(&scope);
            let trace = stream
                .arrange_by_self_persisted(&store, "frontier")
                .unwrap()
                .trace;
            (handle, trace)
        });
        handle.insert(0u32);
        handle.advance_to(1);
        handle.flush();
        worker.step();
        handle.remove(0);
        handle.advance_to(2);
        handle.flush();
        worker.step();
        handle.insert(1);
        handle.advance_to(3);
        handle.flush();
        worker.step();
        handle.remove(1);
        handle.advance_to(4);
        handle.flush();
        worker.step();
        handle.insert(0);
        handle.advance_to(5);
        handle.flush();
        worker.step();
        use differential_dataflow::trace::TraceReader;
        trace.set_logical_compaction(AntichainRef::new(&[5]));
        let s = s.clone();
        let mut shutdown = worker.dataflow(|scope| {
            let (arrange, button) = trace.import_frontier(scope, "Import");
            arrange
                .as_collection(|k, v| (*k, *v))
                .inner
                .inspect(move |(d, t, r)| s.lock().unwrap().push((*d, *t, *r)))
                .probe_with(&probe);
            button
        });
        worker.step();
        worker.step();
        assert!(!probe.done());
        shutdown.press();
        worker.step();
        worker.step();
        assert!(
            probe.done(),
            "the import's probe is done two steps after the button is pressed"
        );
    })
    .unwrap();
    for (_, t, _) in seen.lock().unwrap().iter() {
        assert!(
            *t >= 5,
            "a time out of import_frontier below the compaction frontier 5: {t}"
        );
    }
}
