//! The restart protocol of persisted dataflows (`operators::resume`): one resume point for all workers,
//! idle workers' frontiers recorded, uneven uppers after a crash, finished streams, the directory layout
//! of a cluster, and one live operator per id. Every run's output is compared with the in-memory answer.
//! (Failed operators holding their frontier so chained operators converge after a restart:
//! `tests/restart/restart_chain.rs`.)

use crate::common;

use common::restart::{accumulate, persist_part, worker_of, Collection, Row, Update};
use ddpersist::operators::{resume_at, worker_stream_id, ArrangePersisted, PersistHandle};
use ddpersist::{Codec, Error, Store};
use differential_dataflow::input::Input as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

fn row(key: &str, val: u64) -> Row {
    (key.to_string(), val)
}

/// What one run saw: the arrangement's whole output (persisted spans first), and each worker's
/// `resume_at` and own upper.
struct RunResult {
    output: Vec<Update>,
    resume_at: Vec<u64>,
    own_upper: Vec<u64>,
}

/// How a run ends.
#[derive(Clone, Copy, PartialEq)]
enum End {
    /// The input closes and the dataflow completes.
    Close,
    /// The dataflow is dropped once the last time is complete (the process stops with the input open).
    Drop,
    /// A run that only reads: nothing fed, the input advanced to the resume point only (the persisted
    /// data complete), and the dataflow dropped with its input open (closing it would declare that the
    /// source ends at the resume point).
    ReadOnly,
}

/// Runs `arrange_persisted(store, "x")` with `workers` workers over `dir`. Worker 0 feeds `feed(resume_at)`
/// (updates at times at or beyond the resume point it is given); every worker advances its input through
/// the fed times; then the run ends as `end` says.
fn run(dir: &Path, workers: usize, feed: fn(u64) -> Vec<Update>, end: End) -> RunResult {
    let store = Store::open(dir).unwrap();
    let output = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (o, s) = (output.clone(), seen.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let (mut input, handle): (_, PersistHandle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (arranged, handle) = rows.arrange_persisted(&store, "x").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |u| o.lock().unwrap().push(u.clone()))
                .probe_with(&probe);
            (input, handle)
        });
        let resume = handle.resume_at();
        s.lock()
            .unwrap()
            .push((worker.index(), resume, handle.own_upper()));
        if end == End::ReadOnly {
            // Up to the resume point only: nothing at or beyond it is declared.
            input.advance_to(resume);
            input.flush();
            worker.step_while(|| probe.less_than(&resume));
            assert_eq!(handle.error(), None);
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            return;
        }
        let updates = feed(resume);
        let last = updates.iter().map(|u| u.1).max().unwrap_or(resume);
        input.advance_to(resume);
        for t in resume..=last {
            input.advance_to(t);
            if worker.index() == 0 {
                for (r, _, d) in updates.iter().filter(|u| u.1 == t) {
                    input.update(r.clone(), *d);
                }
            }
        }
        input.advance_to(last + 1);
        input.flush();
        worker.step_while(|| probe.less_than(&(last + 1)));
        assert_eq!(handle.error(), None);
        if end == End::Close {
            drop(input);
            worker.step_while(|| !probe.done());
        } else {
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        }
    })
    .unwrap();
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let output = output.lock().unwrap().clone();
    RunResult {
        output,
        resume_at: seen.iter().map(|s| s.1).collect(),
        own_upper: seen.iter().map(|s| s.2).collect(),
    }
}

/// The input: worker 1 idle, worker 0 feeding at its `resume_at`; each run retracts the last
/// run's row and inserts the next. Every run's output (persisted spans plus new input) is the one row.
#[test]
fn an_idle_worker_does_not_drop_new_input() {
    let dir = tempfile::tempdir().unwrap();
    let feeds: [fn(u64) -> Vec<Update>; 4] = [
        |t| vec![(row("solo", 0), t, 1)],
        |t| vec![(row("solo", 0), t, -1), (row("solo", 1), t, 1)],
        |t| vec![(row("solo", 1), t, -1), (row("solo", 2), t, 1)],
        |t| vec![(row("solo", 2), t, -1), (row("solo", 3), t, 1)],
    ];
    for (i, feed) in feeds.into_iter().enumerate() {
        let result = run(dir.path(), 2, feed, End::Close);
        assert_eq!(
            result.resume_at[0], result.resume_at[1],
            "run {i}: one resume point for every worker"
        );
        let expected: Collection = [(row("solo", i as u64), 1)].into();
        assert_eq!(accumulate(&result.output), expected, "run {i}");
    }
    // Every stream recorded the same upper, the idle worker's too.
    let store = Store::open(dir.path()).unwrap();
    let uppers: Vec<u64> = (0..2)
        .map(|w| store.upper(&worker_stream_id("x", w, 2)).unwrap())
        .collect();
    assert_eq!(uppers[0], uppers[1]);
}

/// A stopped process (input still open) leaves every stream at the last complete time, idle workers
/// included, so the next run resumes there and loses nothing.
#[test]
fn every_frontier_advance_is_recorded_with_or_without_data() {
    let dir = tempfile::tempdir().unwrap();
    // All rows on one worker: the other records advances without data.
    let first = run(
        dir.path(),
        2,
        |_| (0..6).map(|t| (row("solo", t), t, 1)).collect(),
        End::Drop,
    );
    assert_eq!(first.resume_at, vec![0, 0]);
    let store = Store::open(dir.path()).unwrap();
    for w in 0..2 {
        assert_eq!(
            store.upper(&worker_stream_id("x", w, 2)).unwrap(),
            6,
            "worker {w}"
        );
    }
    drop(store);
    let second = run(dir.path(), 2, |t| vec![(row("solo", 9), t, 1)], End::Close);
    assert_eq!(second.resume_at, vec![6, 6]);
    let mut expected: Collection = (0..6).map(|t| (row("solo", t), 1)).collect();
    expected.insert(row("solo", 9), 1);
    assert_eq!(accumulate(&second.output), expected);
}

/// Rows of `keys` at times `0..times`, one insertion per key and time and a retraction two times later.
fn history(keys: &[&str], times: u64) -> Vec<Update> {
    let mut out = Vec::new();
    for t in 0..times {
        for (i, k) in keys.iter().enumerate() {
            out.push((row(k, t * 10 + i as u64), t, 1));
            if t >= 2 {
                out.push((row(k, (t - 2) * 10 + i as u64), t, -1));
            }
        }
    }
    out
}

const KEYS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// After a crash the workers' uppers differ: the input resumes at the least, the same on every worker;
/// each worker drops the replay only below its own upper; the result equals the whole input's.
#[test]
fn uneven_uppers_resume_at_the_least_and_lose_nothing() {
    assert!(
        KEYS.iter().any(|k| worker_of(k, 2) == 0) && KEYS.iter().any(|k| worker_of(k, 2) == 1),
        "the test needs keys on both workers"
    );
    let dir = tempfile::tempdir().unwrap();
    let all = history(&KEYS, 10);
    {
        let store = Store::open(dir.path()).unwrap();
        persist_part(&store, 0, &all, 5, false);
        persist_part(&store, 1, &all, 8, false);
    }
    let result = run(
        dir.path(),
        2,
        |t| history(&KEYS, 10).into_iter().filter(|u| u.1 >= t).collect(),
        End::Close,
    );
    assert_eq!(result.resume_at, vec![5, 5]);
    assert_eq!(result.own_upper, vec![5, 8]);
    assert_eq!(accumulate(&result.output), accumulate(&all));

    // A run that only reads in between leaves the gap to the next replay: it drops its dataflow with the
    // input open, as README says (closing the input would declare that the source ends at 5: the streams
    // would be marked finished at 5 and 8 and the next run would resume at 8).
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        persist_part(&store, 0, &all, 5, false);
        persist_part(&store, 1, &all, 8, false);
    }
    let read = run(dir.path(), 2, |_| Vec::new(), End::ReadOnly);
    assert_eq!(read.resume_at, vec![5, 5]);
    assert_eq!(
        accumulate(&read.output),
        accumulate(
            all.iter()
                .filter(|u| u.1 < 5 || worker_of(&u.0 .0, 2) == 1 && u.1 < 8)
        )
    );
    let result = run(
        dir.path(),
        2,
        |t| history(&KEYS, 10).into_iter().filter(|u| u.1 >= t).collect(),
        End::Close,
    );
    assert_eq!(result.resume_at, vec![5, 5], "the gap is replayed");
    assert_eq!(accumulate(&result.output), accumulate(&all));
}

/// A crash after one worker finished (its last seal one past data at the input's last time) and before
/// the other, idle at that time, did: the replay from the resume point ends the same way, the idle
/// worker's stream finishes below the other's upper, the run completes, and the next run resumes at the
/// greatest upper and keeps new input on both workers. (A rule tried and dropped this session, finishing
/// a stream only at or beyond the greatest upper, made this legitimate replay wait forever.)
#[test]
fn a_replay_that_ends_as_the_crashed_run_did_completes_and_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let last: Vec<Update> = KEYS
        .iter()
        .filter(|k| worker_of(k, 2) == 1)
        .map(|k| (row(k, 10), 10, 1))
        .collect();
    {
        let store = Store::open(dir.path()).unwrap();
        persist_part(&store, 0, &[], 10, false);
        persist_part(&store, 1, &last, 11, true);
    }
    let replay = run(
        dir.path(),
        2,
        |t| {
            let keys = KEYS.iter().filter(|k| worker_of(k, 2) == 1);
            keys.map(|k| (row(k, 10), 10, 1)).filter(|u| u.1 >= t).collect()
        },
        End::Close,
    );
    assert_eq!(replay.resume_at, vec![10, 10]);
    assert_eq!(replay.own_upper, vec![10, 11]);
    let next = run(
        dir.path(),
        2,
        |t| KEYS.iter().map(|k| (row(k, 100 + t), t, 1)).collect(),
        End::Close,
    );
    assert_eq!(next.resume_at, vec![11, 11]);
    let mut expected = accumulate(&last);
    expected.extend(KEYS.iter().map(|k| (row(k, 111), 1)));
    assert_eq!(accumulate(&next.output), expected);
}

/// Streams whose input was exhausted are finished: the next run resumes at the greatest upper (nothing
/// is missing anywhere), and a finished stream behind an unfinished one moves up to it.
#[test]
fn finished_streams_resume_at_the_greatest_upper() {
    let dir = tempfile::tempdir().unwrap();
    let all = history(&KEYS, 8);
    {
        let store = Store::open(dir.path()).unwrap();
        persist_part(&store, 0, &all, 8, true);
        // Worker 1's rows end at time 4 in this input; its stream finished there.
        let early: Vec<Update> = all
            .iter()
            .filter(|u| worker_of(&u.0 .0, 2) == 0 || u.1 < 4)
            .cloned()
            .collect();
        persist_part(&store, 1, &early, 4, true);
    }
    let result = run(dir.path(), 2, |t| vec![(row("new", t), t, 1)], End::Close);
    assert_eq!(result.resume_at, vec![8, 8]);
    assert_eq!(
        result.own_upper,
        vec![8, 8],
        "the lagging finished stream moved up"
    );
    let mut expected = accumulate(all.iter().filter(|u| worker_of(&u.0 .0, 2) == 0 || u.1 < 4));
    expected.insert(row("new", 8), 1);
    assert_eq!(accumulate(&result.output), expected);

    // Mixed: an unfinished stream sets the resume point; a finished one behind it moves up to it.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let early: Vec<Update> = all
            .iter()
            .filter(|u| worker_of(&u.0 .0, 2) == 0 || u.1 < 2)
            .cloned()
            .collect();
        persist_part(&store, 0, &all, 5, false);
        persist_part(&store, 1, &early, 2, true);
    }
    let result = run(
        dir.path(),
        2,
        |t| {
            let all = history(&KEYS, 8);
            all.into_iter()
                .filter(|u| worker_of(&u.0 .0, 2) == 0 && u.1 >= t)
                .collect()
        },
        End::Close,
    );
    assert_eq!(result.resume_at, vec![5, 5]);
    assert_eq!(result.own_upper, vec![5, 5]);
    let expected = accumulate(all.iter().filter(|u| worker_of(&u.0 .0, 2) == 0 || u.1 < 2));
    assert_eq!(accumulate(&result.output), expected);
}

/// Builds `arrange_persisted(store, id)` in a new dataflow of a one-worker run, returning the build's
/// result for each of `count` dataflows.
fn build_twice(store: &Store, id: &'static str, drop_first: bool) -> Vec<Result<(), String>> {
    let store = store.clone();
    timely::execute_directly(move |worker| {
        let mut results = Vec::new();
        for _ in 0..2 {
            let result = worker.dataflow::<u64, _, _>(|scope| {
                let (_input, rows) = scope.new_collection::<Row, i64>();
                rows.arrange_persisted(&store, id)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
            results.push(result);
            if drop_first {
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
        }
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        results
    })
}

/// One arrangement id in two dataflows of a worker: the second build fails with a clear error; once the
/// first dataflow is dropped, the id is free again.
#[test]
fn one_id_in_two_live_dataflows_is_refused() {
    let store = Store::in_memory().unwrap();
    let results = build_twice(&store, "twice", false);
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let err = results[1].as_ref().unwrap_err();
    assert!(err.contains("already written by a live operator"), "{err}");
    let results = build_twice(&store, "again", true);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

/// Builds `arrange_persisted(store, "x")` on every worker of a `workers`-worker process over `dir`; returns
/// each worker's build error, if any.
fn build_errors(dir: &Path, workers: usize) -> Vec<Option<String>> {
    let store = Store::open(dir).unwrap();
    let errors = Arc::new(Mutex::new(vec![None; workers]));
    let e = errors.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let result = worker.dataflow::<u64, _, _>(|scope| {
            let (_input, rows) = scope.new_collection::<Row, i64>();
            rows.arrange_persisted(&store, "x").map(|_| ())
        });
        if let Err(err) = result {
            e.lock().unwrap()[worker.index()] = Some(err.to_string());
        }
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    errors
}

/// A directory written by one process of a 2-process cluster (one worker each) holds worker 0's or
/// worker 1's streams only: reopening it with 2 workers in one process, or as the other process, is
/// refused at build time instead of starting the missing streams empty.
#[test]
fn a_directory_of_another_worker_is_refused() {
    let all = history(&KEYS, 4);
    for held in 0..2usize {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            persist_part(&store, held, &all, 4, false);
        }
        let errors = build_errors(dir.path(), 2);
        let other = 1 - held;
        assert!(errors[held].is_none(), "{errors:?}");
        let err = errors[other].as_ref().expect("the other worker's build fails");
        assert!(err.contains("the directory it wrote"), "{err}");
    }
    // The store's streams of other worker counts are refused too.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        persist_part(&store, 0, &all, 4, false);
        persist_part(&store, 1, &all, 4, false);
    }
    let errors = build_errors(dir.path(), 1);
    assert!(
        errors[0].as_ref().is_some_and(|e| e.contains("2 workers")),
        "{errors:?}"
    );
    // Two processes given one directory: the second open fails, without a panic.
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(Store::open(dir.path()), Err(Error::Locked { .. })));
    drop(store);
}

/// A free loopback port.
/// One run of a 2-process cluster (threads of this test, talking over 127.0.0.1), each process with one
/// worker and its own directory `dirs[process]`. Worker 0 feeds `feed(R)`, R agreed by `resume_at`.
/// Returns the arrangement's output of both processes and the agreed resume point of each.
fn run_cluster(dirs: [&Path; 2], feed: fn(u64) -> Vec<Update>) -> (Vec<Update>, Vec<u64>) {
    let addresses = common::local_addresses(2);
    let output = Arc::new(Mutex::new(Vec::new()));
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..2)
        .map(|process| {
            let config = timely::Config {
                communication: timely::CommunicationConfig::Cluster {
                    threads: 1,
                    process,
                    addresses: addresses.clone(),
                    report: false,
                    zerocopy: false,
                },
                worker: timely::WorkerConfig::default(),
            };
            let store = Store::open(dirs[process]).unwrap();
            let (o, r) = (output.clone(), resumes.clone());
            std::thread::spawn(move || {
                timely::execute(config, move |worker| {
                    let probe = ProbeHandle::new();
                    let o = o.clone();
                    let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                        let (input, rows) = scope.new_collection::<Row, i64>();
                        let (arranged, handle) = rows.arrange_persisted(&store, "x").unwrap();
                        arranged
                            .as_collection(|k: &[u8], v: &[u8]| {
                                (String::decode(k).unwrap(), u64::decode(v).unwrap())
                            })
                            .inner
                            .inspect(move |u| o.lock().unwrap().push(u.clone()))
                            .probe_with(&probe);
                        (input, handle)
                    });
                    let resume = resume_at(worker, &[handle.resume_state()]);
                    r.lock().unwrap().push(resume);
                    let updates = feed(resume);
                    let last = updates.iter().map(|u| u.1).max().unwrap_or(resume);
                    for t in resume..=last {
                        input.advance_to(t);
                        if worker.index() == 0 {
                            for (row, _, d) in updates.iter().filter(|u| u.1 == t) {
                                input.update(row.clone(), *d);
                            }
                        }
                    }
                    drop(input);
                    worker.step_while(|| !probe.done());
                    assert_eq!(handle.error(), None);
                })
                .unwrap();
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let output = output.lock().unwrap().clone();
    let resumes = resumes.lock().unwrap().clone();
    (output, resumes)
}

/// A cluster of two processes, each with its own directory: restarts agree on one resume point and the
/// output stays the in-memory answer.
#[test]
fn a_cluster_of_two_processes_restarts_from_one_resume_point() {
    let (p0, p1) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dirs = [p0.path(), p1.path()];
    let (out, resumes) = run_cluster(dirs, |t| {
        history(&KEYS, 3)
            .into_iter()
            .map(|u| (u.0, u.1 + t, u.2))
            .collect()
    });
    assert_eq!(resumes, vec![0, 0]);
    let first = history(&KEYS, 3);
    assert_eq!(accumulate(&out), accumulate(&first));
    // Each process's directory holds its own worker's stream only.
    for (w, dir) in dirs.iter().enumerate() {
        let streams = Store::open(dir).unwrap().streams();
        assert_eq!(streams, vec![worker_stream_id("x", w, 2)]);
    }
    let (out, resumes) = run_cluster(dirs, |t| vec![(row("a", 20), t, -1), (row("z", 1), t, 1)]);
    assert_eq!(resumes[0], resumes[1]);
    let mut expected = accumulate(&first);
    expected.remove(&row("a", 20));
    expected.insert(row("z", 1), 1);
    assert_eq!(accumulate(&out), expected);
}
