//! The persisted arrangement against DD's in-memory arrangements: `join_core`, `reduce_abelian`,
//! `as_collection` and [`CountPersisted::count`] (against DD's `count`) give the same results, with 1 and 2 workers, before and after restarts (served from the
//! store without replaying old input, and with an idempotent replay); plus imports of the trace into
//! another dataflow, worker-count checks and error reporting. The trace's mechanics (the cursor against a
//! model, adoption of merged batches, readers advancing the since): `tests/operators/trace.rs`.

use ddpersist::operators::{
    worker_stream_id, ArrangeEncoded, ArrangePersisted, CountPersisted, PersistOptions, SealCounts, SealMode,
};
use ddpersist::trace::{BytesBuilder, BytesSpine, BytesUpdate};
use ddpersist::{Codec, Error, Store, StreamOptions};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

type Shared<D> = Arc<Mutex<Vec<(D, u64, i64)>>>;
type Join = (String, u64, String);
/// Consolidated outputs of join, reduce, collection and count.
type Normalized = (
    Vec<(Join, u64, i64)>,
    Vec<((String, i64), u64, i64)>,
    Vec<((String, u64), u64, i64)>,
    Vec<((String, i64), u64, i64)>,
);
/// A worker's persist handle after a run: `(resume_at, upper, seals, replayed updates)`.
type HandleState = (u64, u64, SealCounts, u64);

/// What one pipeline (ours or the reference) produced.
#[derive(Clone, Default)]
struct Outputs {
    join: Shared<Join>,
    count: Shared<(String, i64)>,
    coll: Shared<(String, u64)>,
    /// Records per key: `CountPersisted::count` (ours), DD's `count` (reference).
    tally: Shared<(String, i64)>,
}

impl Outputs {
    /// Every output with times advanced to `floor` and consolidated: the accumulations at times `>= floor`.
    fn normalized(&self, floor: u64) -> Normalized {
        (
            normalize(&self.join, floor),
            normalize(&self.count, floor),
            normalize(&self.coll, floor),
            normalize(&self.tally, floor),
        )
    }
}

fn normalize<D: Ord + Clone>(out: &Shared<D>, floor: u64) -> Vec<(D, u64, i64)> {
    let mut sums = BTreeMap::new();
    for (d, t, r) in out.lock().unwrap().iter() {
        *sums.entry((d.clone(), (*t).max(floor))).or_insert(0i64) += r;
    }
    sums.into_iter()
        .filter(|(_, r)| *r != 0)
        .map(|((d, t), r)| (d, t, r))
        .collect()
}

fn sink<D: Clone + 'static, R: Copy + TryInto<i64>>(out: &Shared<D>) -> impl FnMut(&(D, u64, R)) + 'static {
    let out = out.clone();
    move |(d, t, r)| {
        let r = (*r).try_into().unwrap_or_else(|_| panic!("diff out of range"));
        out.lock().unwrap().push((d.clone(), *t, r))
    }
}

/// The input of one time: updates to the persisted collection `a` and to the join partner `b`.
#[derive(Clone)]
struct Round {
    time: u64,
    a: Vec<((String, u64), i64)>,
    b: Vec<((String, String), i64)>,
}

/// Deterministic rounds at times `from..to`, with insertions and retractions of earlier insertions.
fn rounds(from: u64, to: u64) -> Vec<Round> {
    (from..to)
        .map(|t| {
            let mut a = Vec::new();
            for i in 0..12u64 {
                a.push(((format!("k{}", (t * 7 + i) % 10), (t + i) % 5), 1));
            }
            if t > 0 {
                // Retract one of last round's insertions.
                a.push(((format!("k{}", (t * 7 - 7 + 3) % 10), (t - 1 + 3) % 5), -1));
            }
            let b = vec![
                ((format!("k{}", t % 10), format!("b{t}")), 1),
                ((format!("k{}", (t + 5) % 10), "x".into()), 1),
            ];
            Round { time: t, a, b }
        })
        .collect()
}

/// Runs one dataflow over the store in `dir` with `workers` workers. The reference pipeline (DD's own
/// in-memory arrangements) gets every round; the persisted one only the rounds at times `>= ours_from`.
/// Returns our outputs, the reference's, and each worker's persist handle state `(resume_at, upper,
/// seals)`. Every round waits for its output, so `SealMode::Adaptive` runs most seals inline.
fn run(
    dir: &Path,
    workers: usize,
    ours_from: u64,
    input: Vec<Round>,
    seals: SealMode,
) -> (Outputs, Outputs, Vec<HandleState>) {
    let store = Store::open(dir).unwrap();
    let (ours, reference) = (Outputs::default(), Outputs::default());
    let (o, r) = (ours.clone(), reference.clone());
    let guards = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (mut in_ours, mut in_ref, mut in_b, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (in_ours, a_ours) = scope.new_collection::<(String, u64), i64>();
            let (in_ref, a_ref) = scope.new_collection::<(String, u64), i64>();
            let (in_b, b) = scope.new_collection::<(String, String), i64>();

            let options = PersistOptions {
                seals,
                ..PersistOptions::default()
            };
            let (persisted, handle) = a_ours.arrange_persisted_with(&store, "a", options).unwrap();
            let partner = b.clone().arrange_encoded();
            persisted
                .clone()
                .join_core(partner, |k: &[u8], v1: &[u8], v2: &[u8]| {
                    Some((
                        String::decode(k).unwrap(),
                        u64::decode(v1).unwrap(),
                        String::decode(v2).unwrap(),
                    ))
                })
                .inspect(sink(&o.join))
                .probe_with(&probe);
            persisted
                .clone()
                .reduce_abelian::<_, BytesBuilder, BytesSpine, _, _>(
                    "Count",
                    |_k, input: &[(&[u8], i64)], output: &mut Vec<(Vec<u8>, i64)>| {
                        output.push((input.iter().map(|(_, d)| *d).sum::<i64>().to_bytes(), 1))
                    },
                    |vec: &mut Vec<BytesUpdate>, key: &[u8], upds: &mut Vec<(Vec<u8>, u64, i64)>| {
                        vec.clear();
                        vec.extend(upds.drain(..).map(|(v, t, r)| ((key.to_vec(), v), t, r)));
                    },
                )
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), i64::decode(v).unwrap()))
                .inspect(sink(&o.count))
                .probe_with(&probe);
            persisted
                .clone()
                .count()
                .map(|(k, n)| (String::decode(&k).unwrap(), n))
                .inspect(sink(&o.tally))
                .probe_with(&probe);
            persisted
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inspect(sink(&o.coll))
                .probe_with(&probe);

            let ra = a_ref.clone().arrange_by_key();
            ra.clone()
                .join_core(b.arrange_by_key(), |k: &String, v1: &u64, v2: &String| {
                    Some((k.clone(), *v1, v2.clone()))
                })
                .inspect(sink(&r.join))
                .probe_with(&probe);
            a_ref
                .clone()
                .reduce(|_k, input: &[(&u64, i64)], output: &mut Vec<(i64, i64)>| {
                    output.push((input.iter().map(|(_, d)| *d).sum::<i64>(), 1))
                })
                .inspect(sink(&r.count))
                .probe_with(&probe);
            a_ref
                .map(|(k, _)| k)
                .count()
                .inspect(sink(&r.tally))
                .probe_with(&probe);
            ra.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inspect(sink(&r.coll))
                .probe_with(&probe);
            (in_ours, in_ref, in_b, handle)
        });
        let feeder = worker.index() == 0;
        for round in &input {
            in_ours.advance_to(round.time);
            in_ref.advance_to(round.time);
            in_b.advance_to(round.time);
            if feeder {
                for (d, r) in &round.a {
                    if round.time >= ours_from {
                        in_ours.update(d.clone(), *r);
                    }
                    in_ref.update(d.clone(), *r);
                }
                for (d, r) in &round.b {
                    in_b.update(d.clone(), *r);
                }
            }
            let next = round.time + 1;
            in_ours.advance_to(next);
            in_ref.advance_to(next);
            in_b.advance_to(next);
            in_ours.flush();
            in_ref.flush();
            in_b.flush();
            worker.step_while(|| probe.less_than(&next));
        }
        drop((in_ours, in_ref, in_b));
        worker.step_while(|| !probe.done());
        assert_eq!(handle.error(), None);
        let replayed = handle.replayed_updates();
        (handle.resume_at(), handle.upper(), handle.seals(), replayed)
    })
    .unwrap();
    let handles = guards.join().into_iter().map(|r| r.unwrap()).collect();
    (ours, reference, handles)
}

fn assert_same(ours: &Outputs, reference: &Outputs, floor: u64, what: &str) {
    let (a, b) = (ours.normalized(floor), reference.normalized(floor));
    assert!(
        !b.0.is_empty() && !b.1.is_empty() && !b.2.is_empty() && !b.3.is_empty(),
        "{what}: empty reference"
    );
    assert_eq!(a.0, b.0, "{what}: join_core");
    assert_eq!(a.1, b.1, "{what}: reduce_abelian");
    assert_eq!(a.2, b.2, "{what}: as_collection");
    assert_eq!(a.3, b.3, "{what}: count");
}

/// Each worker's seals in the three runs of `restarts` (17, 9 and 7 seals: the rounds and the close), by
/// `mode`: with `Adaptive` the first 16 of a run are inline, the 17th pipelined (it looks at the input).
fn expected_seals(mode: SealMode) -> [SealCounts; 3] {
    let counts = |inline, pipelined| SealCounts { inline, pipelined };
    match mode {
        SealMode::Adaptive => [counts(16, 1), counts(9, 0), counts(7, 0)],
        SealMode::Pipelined => [counts(0, 17), counts(0, 9), counts(0, 7)],
        SealMode::Inline => [counts(17, 0), counts(9, 0), counts(7, 0)],
    }
}

/// Fresh run, restart with only new input, restart with a replay of everything: equal results each time,
/// with seals placed by `mode`.
fn restarts(workers: usize, mode: SealMode) {
    let dir = tempfile::tempdir().unwrap();
    let expected = expected_seals(mode);
    let seals = |handles: &[HandleState]| handles.iter().map(|h| h.2).collect::<Vec<_>>();
    let replayed = |handles: &[HandleState]| handles.iter().map(|h| h.3).sum::<u64>();
    let (ours, reference, handles) = run(dir.path(), workers, 0, rounds(0, 16), mode);
    assert_same(&ours, &reference, 0, "fresh run, exact times");
    assert!(handles
        .iter()
        .all(|&(resume, upper, _, _)| resume == 0 && upper == ddpersist::FRONTIER_CLOSED));
    assert_eq!(seals(&handles), vec![expected[0]; workers]);
    assert_eq!(replayed(&handles), 0);

    // Restart: the persisted part is served from the store; `a` gets only the new rounds.
    let (ours, reference, handles) = run(dir.path(), workers, 16, rounds(0, 24), mode);
    assert_same(&ours, &reference, 16, "restart with new input only");
    assert_eq!(handles.iter().map(|h| h.0).max(), Some(16), "{handles:?}");
    assert_eq!(seals(&handles), vec![expected[1]; workers]);
    assert_eq!(replayed(&handles), 0, "the input starts at the resume point");

    // Restart again, replaying all of `a`'s input: updates below the persisted upper are skipped.
    let (ours, reference, handles) = run(dir.path(), workers, 0, rounds(0, 30), mode);
    assert_same(&ours, &reference, 24, "restart with a full replay");
    assert_eq!(handles.iter().map(|h| h.0).max(), Some(24), "{handles:?}");
    assert_eq!(seals(&handles), vec![expected[2]; workers]);
    // Every update of `a` below the persisted upper 24 was dropped as a replay.
    let below: usize = rounds(0, 24).iter().map(|r| r.a.len()).sum();
    assert_eq!(replayed(&handles), below as u64);

    // The store holds exactly `a`'s input (merged across the workers' streams).
    let store = Store::open(dir.path()).unwrap();
    let mut persisted = BTreeMap::new();
    for w in 0..workers {
        for (k, v, _t, d) in store
            .snapshot(&worker_stream_id("a", w, workers))
            .unwrap()
            .decode::<String, u64>()
            .unwrap()
        {
            *persisted.entry((k, v)).or_insert(0i64) += d;
        }
    }
    let mut expected = BTreeMap::new();
    for round in rounds(0, 30) {
        for ((k, v), d) in round.a {
            *expected.entry((k, v)).or_insert(0i64) += d;
        }
    }
    persisted.retain(|_, d| *d != 0);
    expected.retain(|_, d| *d != 0);
    assert_eq!(persisted, expected);
}

#[test]
fn one_worker_matches_in_memory_across_restarts() {
    restarts(1, SealMode::Adaptive);
}

#[test]
fn two_workers_match_in_memory_across_restarts() {
    restarts(2, SealMode::Adaptive);
}

#[test]
fn pipelined_and_inline_seals_match_in_memory_across_restarts() {
    restarts(2, SealMode::Pipelined);
    restarts(1, SealMode::Inline);
}

#[test]
fn a_different_worker_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 2, 0, rounds(0, 2), SealMode::Adaptive);
    let store = Store::open(dir.path()).unwrap();
    let refused = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, a) = scope.new_collection::<(String, u64), i64>();
            a.arrange_persisted(&store, "a").map(|_| ()).err()
        })
    });
    assert!(matches!(refused, Some(Error::BadInput { .. })), "{refused:?}");
}

/// A durable stream keeps unsealed updates across restarts: the operator finds them (recovered from the
/// WAL), seals them with the input and serves them.
#[test]
fn durable_stream_serves_recovered_updates() {
    let dir = tempfile::tempdir().unwrap();
    let id = worker_stream_id("d", 0, 1);
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream(&id, StreamOptions { durable: true }).unwrap();
        store.write(&id, &[("old".to_string(), 1u64, 0, 1)]).unwrap();
        store.seal(&id, 1).unwrap();
        store.write(&id, &[("unsealed".to_string(), 2u64, 2, 1)]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.unsealed_len(&id).unwrap(), 1);
    let out: Shared<(String, u64)> = Default::default();
    let o = out.clone();
    let resume = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let options = PersistOptions {
                durable: true,
                ..PersistOptions::default()
            };
            let (arranged, handle) = a.arrange_persisted_with(&store, "d", options).unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inspect(sink(&o))
                .probe_with(&probe);
            (input, handle)
        });
        // A durable stream's input does not replay (tests/restart_durable_chain.rs): new updates only.
        input.advance_to(3);
        input.update(("new".to_string(), 3), 1);
        input.advance_to(5);
        input.flush();
        worker.step_while(|| probe.less_than(&5));
        assert_eq!(handle.sealed_upper(), 5);
        drop(input);
        worker.step_while(|| !probe.done());
        handle.resume_at()
    });
    assert_eq!(resume, 1);
    assert_eq!(
        normalize(&out, 0),
        vec![
            (("new".into(), 3), 3, 1),
            (("old".into(), 1), 0, 1),
            (("unsealed".into(), 2), 2, 1)
        ]
    );
}

/// The arrangement's `TraceAgent` imports into a second dataflow like any DD trace: the import replays the
/// persisted and the new batches.
#[test]
fn trace_imports_into_another_dataflow() {
    let dir = tempfile::tempdir().unwrap();
    run(dir.path(), 1, 0, rounds(0, 3), SealMode::Adaptive);
    let store = Store::open(dir.path()).unwrap();
    let out: Shared<(String, u64)> = Default::default();
    let o = out.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let (arranged, _handle) = a.arrange_persisted(&store, "a").unwrap();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace)
        });
        input.advance_to(3);
        input.update(("late".to_string(), 7), 1);
        input.advance_to(4);
        input.flush();
        worker.step_while(|| probe.less_than(&4));
        let probe2 = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            trace
                .import(scope)
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inspect(sink(&o))
                .probe_with(&probe2);
        });
        drop(trace);
        drop(input);
        worker.step_while(|| !probe.done() || !probe2.done());
    });
    let mut expected = BTreeMap::new();
    for round in rounds(0, 3) {
        for ((k, v), d) in round.a {
            *expected.entry((k, v)).or_insert(0i64) += d;
        }
    }
    expected.insert(("late".to_string(), 7), 1);
    expected.retain(|_, d| *d != 0);
    let got: BTreeMap<(String, u64), i64> = normalize(&out, 4).into_iter().map(|(d, _, r)| (d, r)).collect();
    assert_eq!(got, expected);
}

/// An update the store cannot hold stops the operator; the error reaches the handle, the arrangement's
/// frontier stays at the last good upper until the input ends, and the dataflow still shuts down.
#[test]
fn errors_reach_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (error, stopped, upper) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(Vec<u8>, u64), i64>();
            let (arranged, handle) = a.arrange_persisted(&store, "e").unwrap();
            arranged.stream.probe_with(&probe);
            (input, handle)
        });
        input.update((b"small".to_vec(), 1), 1);
        input.advance_to(3);
        input.flush();
        worker.step_while(|| probe.less_than(&3));
        // A key over the store's 16 MiB limit.
        input.update((vec![7u8; 17 << 20], 2), 1);
        input.advance_to(4);
        input.flush();
        for _ in 0..20 {
            worker.step();
        }
        assert!(handle.is_stopped());
        assert!(
            probe.less_than(&4),
            "the frontier must not pass the last good upper"
        );
        // A failed operator holds its frontier for good, also once its input is exhausted: the dataflow
        // must be dropped.
        drop(input);
        for _ in 0..20 {
            worker.step();
        }
        assert!(
            !probe.done() && probe.less_than(&4),
            "the failed operator holds its frontier"
        );
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        (handle.error(), handle.is_stopped(), handle.sealed_upper())
    });
    assert!(
        error.as_ref().is_some_and(|e| e.contains("over the limit")),
        "{error:?}"
    );
    assert!(stopped);
    assert_eq!(upper, 3);
}
