//! `PersistManager` -> `Token` -> `persist` with two streams per worker in one manager, a rate limit, and
//! durable streams: a dataflow dropped (not closed) with unsealed updates taken in, rebuilt in the same
//! process and fed new updates from `resume_state().greatest_upper`, then the store reopened and read
//! back once more. What is passed through (replay + new input) and what the store holds must equal the
//! model of every update fed, exactly once.

use crate::common;

use ddpersist::operators::{worker_stream_id, Persist, PersistHandle};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::{Input, InputSession};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

type Row = (u64, String);
type Update = (Row, u64, i64);
type Out = Arc<Mutex<Vec<(usize, Update)>>>;

/// Stream `s`'s (0 or 1) input at time `t`: inserts and a retraction of the previous time's first row.
fn input(s: usize, t: u64) -> Vec<Update> {
    let mut r: Vec<Update> = (0..5)
        .map(|i| ((t * 7 + i + s as u64 * 100, format!("v{}", t % 3)), t, 1))
        .collect();
    if t > 0 {
        r.push((((t - 1) * 7 + s as u64 * 100, format!("v{}", (t - 1) % 3)), t, -1));
    }
    r
}

fn consolidate<'a>(updates: impl IntoIterator<Item = &'a Update>) -> BTreeMap<(Row, u64), i64> {
    let mut sums = BTreeMap::new();
    for (d, t, r) in updates {
        *sums.entry((d.clone(), *t)).or_insert(0) += r;
    }
    sums.retain(|_, r| *r != 0);
    sums
}

struct Built {
    inputs: Vec<InputSession<u64, Row, i64>>,
    handles: Vec<PersistHandle>,
    probe: ProbeHandle<u64>,
}

impl Built {
    /// Round `t`: worker 0 gives each stream `s` (of "a", "b") the updates `updates(s)` at time `t`,
    /// every worker advances its inputs past `t` and steps until the probe passes it.
    fn round(&mut self, worker: &mut timely::worker::Worker, t: u64, updates: impl Fn(usize) -> Vec<Update>) {
        for (s, input) in self.inputs.iter_mut().enumerate() {
            input.advance_to(t);
            if worker.index() == 0 {
                for (d, _, r) in updates(s) {
                    input.update(d, r);
                }
            }
            input.advance_to(t + 1);
            input.flush();
        }
        worker.step_while(|| self.probe.less_than(&(t + 1)));
    }

    /// Closes the inputs, steps until the dataflow is done, and checks that no handle met an error.
    fn finish(mut self, worker: &mut timely::worker::Worker) {
        self.inputs.clear();
        worker.step_while(|| !self.probe.done());
        for h in &self.handles {
            assert_eq!(h.error(), None);
        }
    }
}

fn build(worker: &mut timely::worker::Worker, manager: &PersistManager, out: &Out) -> Built {
    let probe = ProbeHandle::new();
    let tokens: Vec<_> = ["a", "b"]
        .iter()
        .map(|id| manager.token(id, worker.index()).unwrap())
        .collect();
    let (inputs, handles) = worker.dataflow::<u64, _, _>(|scope| {
        let mut inputs = Vec::new();
        let mut handles = Vec::new();
        for (s, token) in tokens.into_iter().enumerate() {
            let (input, coll) = scope.new_collection::<Row, i64>();
            let (persisted, handle) = coll.map(|r| r).persist(token).unwrap();
            let out = out.clone();
            persisted
                .inspect(move |x| out.lock().unwrap().push((s, x.clone())))
                .probe_with(&probe);
            inputs.push(input);
            handles.push(handle);
        }
        (inputs, handles)
    });
    Built {
        inputs,
        handles,
        probe,
    }
}

/// Updates at time `t` written (sealed or not) to the worker streams of `id`.
fn written_at(store: &Store, id: &str, workers: usize, t: u64) -> usize {
    (0..workers)
        .map(|w| {
            let snapshot = store.snapshot(&worker_stream_id(id, w, workers)).unwrap();
            snapshot
                .decode::<u64, String>()
                .unwrap()
                .into_iter()
                .filter(|u| u.2 == t)
                .count()
        })
        .sum()
}

fn run(dir: &Path, workers: usize) {
    let manager = PersistManager::with_options(
        Store::open(dir).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: Some(20_000),
            durable: true,
        },
    );
    let runs: [Out; 2] = [Arc::default(), Arc::default()];
    let barrier = Arc::new(Barrier::new(workers));
    let (m, r, b) = (manager.clone(), runs.clone(), barrier.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (manager, barrier) = (&m, &b);
        let index = worker.index();
        // Run 1: times 0..6 sealed, then time 6's updates taken in but not sealed; dropped, not closed.
        let mut built = build(worker, manager, &r[0]);
        for t in 0..6 {
            built.round(worker, t, |s| input_of(s, t));
        }
        for (s, input) in built.inputs.iter_mut().enumerate() {
            if index == 0 {
                for (d, _, r) in input_of(s, 6) {
                    input.update(d, r);
                }
            }
            input.flush();
        }
        let expected = input_of(0, 6).len();
        while written_at(manager.store(), "a", workers, 6) < expected
            || written_at(manager.store(), "b", workers, 6) < expected
        {
            worker.step();
        }
        for _ in 0..10 {
            worker.step();
        }
        barrier.wait();
        for h in &built.handles {
            assert_eq!(h.error(), None);
        }
        drop(built);
        common::drop_dataflows(worker);
        barrier.wait();

        // Run 2 (same process, same manager): the durable streams replay 0..=6; new input from the
        // greatest upper on (6: the updates at 6 are recovered, not sealed), to time 10, then closed.
        let mut built = build(worker, manager, &r[1]);
        let from = built.handles[0]
            .resume_state()
            .greatest_upper
            .max(built.handles[1].resume_state().greatest_upper);
        assert_eq!(from, 6, "worker {index}");
        for t in 6..10 {
            // Time 6's input was given already; new updates at 6 use another key range.
            built.round(worker, t, |s| if t == 6 { extra(s) } else { input_of(s, t) });
        }
        built.finish(worker);
    })
    .unwrap();
    drop(manager);

    let mut all: [Vec<Update>; 2] = Default::default();
    for (s, all) in all.iter_mut().enumerate() {
        for t in 0..10 {
            all.extend(input_of(s, t));
        }
        all.extend(extra(s));
    }
    for (s, all) in all.iter().enumerate() {
        let second: Vec<Update> = runs[1]
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.0 == s)
            .map(|x| x.1.clone())
            .collect();
        assert_eq!(
            consolidate(&second),
            consolidate(all),
            "stream {s}: the rebuilt dataflow's output (replay and new input)"
        );
    }
    // The store holds each stream's input exactly once.
    let store = Store::open(dir).unwrap();
    for (s, id) in ["a", "b"].iter().enumerate() {
        let mut persisted = Vec::new();
        for w in 0..workers {
            let snap = store.snapshot(&worker_stream_id(id, w, workers)).unwrap();
            for (k, v, t, d) in snap.decode::<u64, String>().unwrap() {
                persisted.push(((k, v), t, d));
            }
        }
        assert_eq!(
            consolidate(&persisted),
            consolidate(&all[s]),
            "stream {id} in the store"
        );
    }
}

fn input_of(s: usize, t: u64) -> Vec<Update> {
    input(s, t)
}

/// New updates at time 6 in the rebuilt run.
fn extra(s: usize) -> Vec<Update> {
    (0..3)
        .map(|i| ((1000 + i + s as u64 * 100, "new".to_string()), 6, 1))
        .collect()
}

#[test]
fn durable_streams_rebuilt_after_a_drop_pass_through_exactly_once_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 1);
}

#[test]
fn durable_streams_rebuilt_after_a_drop_pass_through_exactly_once_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 2);
}

/// The manager's rate limit holds over all its streams and workers together: 2 workers × 2 streams
/// writing at least 18,600 bytes (vals of 100 bytes, plus 24 bytes of framing an update) under 12,000
/// bytes a second (one second's worth in the bucket at first) take at least about 0.55 s, and pass the
/// input through and persist it exactly.
#[test]
fn the_rate_limit_spans_every_stream_and_worker_of_a_manager() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::with_options(
        Store::open(dir.path()).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: Some(12_000),
            durable: false,
        },
    );
    let out: Out = Arc::default();
    let rows = |s: usize| -> Vec<Update> {
        (0..75u64)
            .map(|i| ((i + 1000 * s as u64, "x".repeat(100)), i % 3, 1))
            .collect()
    };
    let (m, o) = (manager.clone(), out.clone());
    let start = std::time::Instant::now();
    timely::execute(timely::Config::process(2), move |worker| {
        let mut built = build(worker, &m, &o);
        for t in 0..3 {
            built.round(worker, t, |s| rows(s).into_iter().filter(|u| u.1 == t).collect());
        }
        built.finish(worker);
    })
    .unwrap();
    let took = start.elapsed();
    assert!(took >= std::time::Duration::from_millis(450), "took {took:?}");
    for (s, id) in ["a", "b"].iter().enumerate() {
        let passed: Vec<Update> = out
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.0 == s)
            .map(|x| x.1.clone())
            .collect();
        assert_eq!(
            consolidate(&passed),
            consolidate(&rows(s)),
            "stream {id} passed through"
        );
        let mut persisted = Vec::new();
        for w in 0..2 {
            let snap = manager.store().snapshot(&worker_stream_id(id, w, 2)).unwrap();
            for (k, v, t, d) in snap.decode::<u64, String>().unwrap() {
                persisted.push(((k, v), t, d));
            }
        }
        assert_eq!(
            consolidate(&persisted),
            consolidate(&rows(s)),
            "stream {id} persisted"
        );
    }
}
