//! Bad input to the persisting operators: an update whose time lies before the time of the message that
//! carries it (timely's contract: never). Each operator (de-upsert, `arrange_by_key_persisted`, `persist`)
//! reports a `BadInput` in its handle naming its stream, stops and holds its frontier; none panics, and
//! none drops the update silently (adversarial round 9: the de-upsert operator panicked in timely's
//! `delayed`; the others took the update for a replay of persisted input and dropped it).

use ddpersist::operators::{ArrangeTyped, Persist, Upsert, UpsertPersisted};
use ddpersist::{PersistManager, Store};
use differential_dataflow::AsCollection;
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::ProbeHandle;

type Rec = Upsert<u32, String, u64>;

/// Steps `worker` until every handle reports an error or the probe passes `until` (or 10 s); returns the
/// probe's frontier.
fn step_until_reported(
    worker: &mut timely::worker::Worker,
    probe: &ProbeHandle<u64>,
    until: u64,
    reported: impl Fn() -> bool,
) -> Vec<u64> {
    let start = Instant::now();
    while probe.less_than(&until) && !reported() && start.elapsed() < Duration::from_secs(10) {
        worker.step();
    }
    for _ in 0..50 {
        worker.step();
    }
    let frontier = probe.with_frontier(|f| f.to_vec());
    // A stopped operator holds its frontier for good: drop the dataflows, or the worker never finishes.
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
    frontier
}

fn assert_refused(error: Option<String>, stream: &str) {
    let error = error.unwrap_or_else(|| panic!("{stream}: the update before its message's time is reported"));
    assert!(
        error.contains("never before their message's time"),
        "{stream}: {error}"
    );
    assert!(
        error.contains(stream),
        "{stream}: the error names the stream: {error}"
    );
}

/// A record at time 2 sent in a message at time 5 (the input advanced to 5 first).
#[test]
fn an_upsert_below_its_message_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (error, frontier) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<Rec>>();
            let (coll, handle) = ups.upsert_persisted(&store, "u").unwrap();
            coll.inner.probe_with(&probe);
            (input, handle)
        });
        input.send((1, Some("a".to_string()), 1));
        input.advance_to(5);
        input.send((1, Some("b".to_string()), 2));
        input.advance_to(10);
        let frontier = step_until_reported(worker, &probe, 10, || handle.errors().is_set());
        (handle.error(), frontier)
    });
    assert_refused(error, "u/w0of1");
    assert!(
        frontier.iter().all(|&t| t < 10),
        "the upsert's frontier is held: {frontier:?}"
    );
}

/// The same bad input into `arrange_by_key_persisted` and `persist` (through a manager's token).
#[test]
fn updates_below_their_message_time_into_arrange_and_persist_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let manager = PersistManager::new(store.clone());
    let (errors, frontier) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("p", 0).unwrap();
        let (mut input, h1, h2) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, s) = scope.new_input::<Vec<((u32, String), u64, i64)>>();
            let c = s.as_collection();
            let a = c.clone().arrange_by_key_persisted(&store, "a").unwrap();
            let (p, h2) = c.persist(token).unwrap();
            let h1 = a.handle().unwrap().clone();
            a.as_collection(|k, v| (*k, v.clone())).inner.probe_with(&probe);
            p.inner.probe_with(&probe);
            (input, h1, h2)
        });
        input.send(((1, "a".to_string()), 1, 1));
        input.advance_to(5);
        input.send(((1, "b".to_string()), 2, 1));
        input.advance_to(10);
        let frontier = step_until_reported(worker, &probe, 10, || {
            h1.errors().is_set() && h2.errors().is_set()
        });
        ((h1.error(), h2.error()), frontier)
    });
    assert_refused(errors.0, "a/w0of1");
    assert_refused(errors.1, "p/w0of1");
    assert!(
        frontier.iter().all(|&t| t < 10),
        "the operators' frontiers are held: {frontier:?}"
    );
}

/// The control: updates at or beyond their message's time (a replay below the persisted upper among
/// them, after a restart) are taken, and nothing is reported.
#[test]
fn updates_at_their_message_time_are_taken() {
    let dir = tempfile::tempdir().unwrap();
    for run in 0..2u64 {
        let store = Store::open(dir.path()).unwrap();
        let (error, frontier) = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, s) = scope.new_input::<Vec<((u32, String), u64, i64)>>();
                let a = s.as_collection().arrange_by_key_persisted(&store, "a").unwrap();
                let handle = a.handle().unwrap().clone();
                a.stream.probe_with(&probe);
                (input, handle)
            });
            // Both runs send time 1; the second's is a replay of what the first persisted.
            input.send(((1, "a".to_string()), 1, 1));
            input.advance_to(5 + run);
            input.send(((2, "b".to_string()), 5 + run, 1));
            input.advance_to(10);
            let frontier = step_until_reported(worker, &probe, 10, || handle.errors().is_set());
            (handle.error(), frontier)
        });
        assert_eq!(error, None, "run {run}");
        assert!(frontier.iter().all(|&t| t >= 10), "run {run}: {frontier:?}");
    }
}
