//! Adversarial restart checks of the dataflow layer: a chain `persist` ("p", through a `PersistManager`
//! token) → `arrange_persisted` ("a") run by several workers, some idle (no key of the source hashes to
//! them) or busy only at some times, killed with SIGKILL at random points (inside a time, between times,
//! during the close), restarted from the least `resume_at` with the source replayed as README says.
//! After every kill each worker stream must hold exactly the source's updates of its keys below its
//! sealed upper (read as of its since), and the restarted run's output must accumulate to the source.

use crate::common;

use common::kill::{self, key_on, worker_of};
use common::{accumulate_rows, Rng};
use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
type Update = (Row, u64, i64);

/// The keys the source uses with `peers` workers: three on worker 0, two on worker 1 (busy only at times
/// divisible by 3), none on the others (idle).
fn keys(peers: usize) -> (Vec<String>, Vec<String>) {
    let w0 = (0..3).map(|i| key_on(0, peers, i)).collect();
    let w1 = if peers > 1 {
        (0..2).map(|i| key_on(1, peers, i)).collect()
    } else {
        Vec::new()
    };
    (w0, w1)
}

/// The source's updates at time `t`: nothing at times `4k + 3`; else an insertion of `(key, t)` for one
/// key of worker 0 (and of worker 1 at times divisible by 3), and the retraction of the row inserted two
/// busy times ago.
fn source(peers: usize, t: u64) -> Vec<(Row, i64)> {
    let (w0, w1) = keys(peers);
    let inserted = |t: u64| -> Vec<Row> {
        if t % 4 == 3 {
            return Vec::new();
        }
        let mut rows = vec![(w0[(t % 3) as usize].clone(), t)];
        if t.is_multiple_of(3) && !w1.is_empty() {
            rows.push((w1[(t % 2) as usize].clone(), t));
        }
        rows
    };
    let mut out: Vec<(Row, i64)> = inserted(t).into_iter().map(|r| (r, 1)).collect();
    if t >= 5 {
        out.extend(inserted(t - 5).into_iter().map(|r| (r, -1)));
    }
    out
}

/// Every source update at times `0..end`.
fn history(peers: usize, end: u64) -> Vec<Update> {
    (0..end)
        .flat_map(|t| source(peers, t).into_iter().map(move |(r, d)| (r, t, d)))
        .collect()
}

/// `(key, val, time) -> diff`, times advanced to `since`, zero sums dropped.
fn consolidate(
    updates: impl IntoIterator<Item = (String, u64, u64, i64)>,
    since: u64,
) -> BTreeMap<(String, u64, u64), i64> {
    let mut out = BTreeMap::new();
    for (k, v, t, d) in updates {
        *out.entry((k, v, t.max(since))).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// Checks every worker stream of `id` in the store in `dir`: it holds exactly the source's updates of
/// its worker's keys below its upper. Returns the uppers.
fn check_streams(store: &Store, id: &str, peers: usize, what: &str) -> Vec<u64> {
    let mut uppers = Vec::new();
    for w in 0..peers {
        let stream = worker_stream_id(id, w, peers);
        if !store.has_stream(&stream) {
            uppers.push(0);
            continue;
        }
        let upper = store.upper(&stream).unwrap();
        let since = store.since(&stream).unwrap();
        let got = consolidate(
            store.snapshot(&stream).unwrap().decode::<String, u64>().unwrap(),
            since,
        );
        let want = consolidate(
            history(peers, upper.min(10_000))
                .into_iter()
                .filter(|((k, _), t, _)| *t < upper && worker_of(k, peers) == w)
                .map(|((k, v), t, d)| (k, v, t, d)),
            since,
        );
        assert_eq!(
            got, want,
            "{what}: stream {stream} (upper {upper}, since {since})"
        );
        uppers.push(upper);
    }
    uppers
}

/// How a run ends once its last time is complete.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// The input closes (the source ends).
    Close,
    /// The dataflow is dropped with the input open.
    Drop,
}

/// One run of the chain over `dir` with `peers` workers: every worker feeds its share of the source's
/// updates of times from the least resume point of the chain up to `end` (exclusive), pausing `pause_ms`
/// after each time and printing `complete T` (worker 0). Returns the arrangement's output and the
/// resume point.
fn run(dir: &Path, peers: usize, end: u64, pause_ms: u64, how: End) -> (Vec<Update>, u64) {
    let manager = PersistManager::new(Store::open(dir).unwrap());
    let out = Arc::new(Mutex::new(Vec::new()));
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let (o, r) = (out.clone(), resumed.clone());
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let store = manager.store().clone();
        let token = manager.token("p", worker.index()).unwrap();
        let o = o.clone();
        let (mut input, ph, ah) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, ph) = rows.persist(token).unwrap();
            let (arranged, ah) = persisted.arrange_persisted(&store, "a").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |u| o.lock().unwrap().push(u.clone()))
                .probe_with(&probe);
            (input, ph, ah)
        });
        let resume = ph.resume_at().min(ah.resume_at());
        r.lock().unwrap().push(resume);
        input.advance_to(resume);
        kill::feed_times(worker, &mut input, &probe, resume..end, pause_ms, |w, t| {
            kill::share(w, source(peers, t))
        });
        worker.step_while(|| probe.less_than(&end));
        assert_eq!((ph.error(), ah.error()), (None, None));
        match how {
            End::Close => {
                drop(input);
                worker.step_while(|| !probe.done());
            }
            End::Drop => common::drop_dataflows(worker),
        }
        if worker.index() == 0 {
            println!("done");
        }
    })
    .unwrap();
    let out = out.lock().unwrap().clone();
    (out, kill::agreed_resume(&resumed))
}

/// The child process of the kill loops: one run as the environment says.
#[test]
#[ignore = "run as a child process by the kill loops of this file"]
fn chain_child() {
    if common::child_var("DDPERSIST_KILL_DIR").is_none() {
        return;
    }
    let var = kill::var;
    let dir = var("DDPERSIST_KILL_DIR");
    let peers: usize = var("DDPERSIST_KILL_PEERS").parse().unwrap();
    let end: u64 = var("DDPERSIST_KILL_END").parse().unwrap();
    let pause: u64 = var("DDPERSIST_KILL_PAUSE").parse().unwrap();
    let how = if var("DDPERSIST_KILL_CLOSE") == "1" {
        End::Close
    } else {
        End::Drop
    };
    run(Path::new(&dir), peers, end, pause, how);
}

/// Kills the child at a random moment: after `complete K` lines (a random `K`) and a random few
/// milliseconds, or not at all (it runs to its end and exits).
fn kill_loop(peers: usize, cycles: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut end = 0u64;
    for cycle in 0..cycles {
        end += 4 + rng.below(12);
        let close = rng.below(3) == 0;
        let mut child = common::spawn_child(
            module_path!(),
            "chain_child",
            &[
                ("DDPERSIST_KILL_DIR", dir.path().display().to_string()),
                ("DDPERSIST_KILL_PEERS", peers.to_string()),
                ("DDPERSIST_KILL_END", end.to_string()),
                ("DDPERSIST_KILL_PAUSE", (1 + rng.below(4)).to_string()),
                ("DDPERSIST_KILL_CLOSE", u64::from(close).to_string()),
            ],
        );
        let status = kill::kill_at_random(&mut child, &mut rng).status;
        let what = format!("cycle {cycle} (end {end}, close {close}, status {status:?})");
        common::assert_killed_or_succeeded(status, &what);
        let store = Store::open(dir.path()).unwrap();
        let p = check_streams(&store, "p", peers, &what);
        let a = check_streams(&store, "a", peers, &what);
        let least_p = p.iter().copied().min().unwrap();
        // The arrangement's frontier follows every persist worker's capability (held at its upper).
        let finished = |id: &str, w: usize| {
            store
                .manifest()
                .stream(&worker_stream_id(id, w, peers))
                .is_some_and(|m| m.finished)
        };
        for (w, &upper) in a.iter().enumerate() {
            if !finished("a", w) && !(0..peers).any(|v| finished("p", v)) {
                assert!(
                    upper <= least_p,
                    "{what}: a/w{w} upper {upper} beyond p's least {least_p} ({p:?})"
                );
            }
        }
    }
    // A final clean run replays from the resume point and continues to `end + 5`.
    let end = end + 5;
    let (out, resume) = run(dir.path(), peers, end, 0, End::Drop);
    let store = Store::open(dir.path()).unwrap();
    let what = format!("final run from {resume} to {end}");
    assert_eq!(
        check_streams(&store, "p", peers, &what),
        vec![end; peers],
        "{what}"
    );
    assert_eq!(
        check_streams(&store, "a", peers, &what),
        vec![end; peers],
        "{what}"
    );
    assert_eq!(
        accumulate_rows(&out),
        accumulate_rows(&history(peers, end)),
        "{what}: arrangement output"
    );
}

#[test]
fn kill_loop_three_workers_one_idle() {
    kill_loop(3, 12, 7);
}

#[test]
fn kill_loop_two_workers() {
    kill_loop(2, 12, 11);
}

#[test]
fn kill_loop_four_workers() {
    kill_loop(4, 7, 23);
}

#[test]
#[ignore = "long: 60 kill cycles per worker count"]
fn kill_loop_long() {
    for (peers, seed) in [(2, 101), (3, 102), (4, 103)] {
        kill_loop(peers, 60, seed);
    }
}

/// Another process opening the store while a child runs the chain on it is refused (`Error::Locked`),
/// and leaves nothing to repair: after the child is killed the store opens and every stream holds
/// exactly the source below its upper.
#[test]
fn a_store_held_by_a_running_process_is_refused_not_corrupted() {
    let dir = tempfile::tempdir().unwrap();
    let peers = 2;
    let mut child = common::spawn_child(
        module_path!(),
        "chain_child",
        &[
            ("DDPERSIST_KILL_DIR", dir.path().display().to_string()),
            ("DDPERSIST_KILL_PEERS", peers.to_string()),
            ("DDPERSIST_KILL_END", "400".to_string()),
            ("DDPERSIST_KILL_PAUSE", "5".to_string()),
            ("DDPERSIST_KILL_CLOSE", "0".to_string()),
        ],
    );
    common::read_until(&mut child, "complete ", 3);
    for _ in 0..5 {
        assert!(matches!(
            Store::open(dir.path()),
            Err(ddpersist::Error::Locked { .. })
        ));
        assert!(PersistManager::open(dir.path()).is_err());
        std::thread::sleep(std::time::Duration::from_millis(3));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let p = check_streams(&store, "p", peers, "after the kill");
    check_streams(&store, "a", peers, "after the kill");
    assert!(p.iter().all(|u| *u >= 3), "{p:?}");
}

/// One id for `persist` (through a token) and `arrange_persisted` in one dataflow: the second build is
/// refused with `BadInput` and changes nothing; the first operator runs on and restarts exactly.
#[test]
fn one_id_for_persist_and_arrange_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::new(Store::open(dir.path()).unwrap());
    let errors = Arc::new(Mutex::new(Vec::new()));
    let e = errors.clone();
    let m = manager.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let store = m.store().clone();
        let token = m.token("x", worker.index()).unwrap();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, _ph) = rows.persist(token).unwrap();
            match persisted.clone().arrange_persisted(&store, "x") {
                Ok(_) => e.lock().unwrap().push("built".to_string()),
                Err(err) => e.lock().unwrap().push(format!("{err}")),
            }
            persisted.inner.probe_with(&probe);
            input
        });
        for t in 0..5u64 {
            input.advance_to(t);
            if worker.index() == 0 {
                input.update((format!("k{t}"), t), 1);
            }
        }
        input.advance_to(5);
        input.flush();
        worker.step_while(|| probe.less_than(&5));
        common::drop_dataflows(worker);
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    assert_eq!(errors.len(), 2);
    assert!(
        errors
            .iter()
            .all(|e| e.contains("already written by a live operator")),
        "{errors:?}"
    );
    let store = manager.store();
    let mut rows = Vec::new();
    for w in 0..2 {
        let stream = worker_stream_id("x", w, 2);
        assert_eq!(store.upper(&stream).unwrap(), 5);
        rows.extend(store.snapshot(&stream).unwrap().decode::<String, u64>().unwrap());
    }
    rows.sort();
    let want: Vec<(String, u64, u64, i64)> = (0..5).map(|t| (format!("k{t}"), t, t, 1)).collect();
    assert_eq!(rows, want);
}
