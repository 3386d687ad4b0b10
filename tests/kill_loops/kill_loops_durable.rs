//! Adversarial restart checks for a source that cannot replay: a durable `persist` ("p", through a
//! `PersistManager` with `durable: true`) → `arrange_persisted` ("a", not durable), several workers, some
//! idle, killed with SIGKILL at random points; each restart continues with new updates only, at or beyond
//! `resume_state().greatest_upper` (README). After every kill: every update of a time the child saw
//! complete is in "p" exactly once, nothing is there twice or that was never sent, and "a" holds exactly
//! "p"'s updates below its upper. A final run's output equals "p".

use crate::common;

use common::kill::{self, key_on, worker_of};
use common::Rng;
use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist};
use ddpersist::{Codec, ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// The updates run `run` sends at time `t`: none at times `4k + 2`; two rows of worker 0's keys, and one
/// of worker 1's at odd times; vals name the run, the time and the row.
fn sent(peers: usize, run: u64, t: u64) -> Vec<(String, u64)> {
    if t % 4 == 2 {
        return Vec::new();
    }
    let mut out: Vec<(String, u64)> = (0..2)
        .map(|i| {
            (
                key_on(0, peers, (t as usize + i) % 3),
                run * 1_000_000 + t * 10 + i as u64,
            )
        })
        .collect();
    if peers > 1 && t % 2 == 1 {
        out.push((key_on(1, peers, 0), run * 1_000_000 + t * 10 + 5));
    }
    out
}

/// `(key, val, time)` of every update in `stream`'s snapshot, with its multiplicity.
fn content(store: &Store, stream: &str, below: u64) -> BTreeMap<(String, u64, u64), i64> {
    let mut out = BTreeMap::new();
    if !store.has_stream(stream) {
        return out;
    }
    for (k, v, t, d) in store.snapshot(stream).unwrap().decode::<String, u64>().unwrap() {
        if t < below {
            *out.entry((k, v, t)).or_insert(0) += d;
        }
    }
    out.retain(|_, d| *d != 0);
    out
}

/// One run: `run` is the run's number; sends from the greatest upper of "p" to `end` (at least 3 times).
/// Returns the arrangement's output, accumulated by `(key, val)`.
fn run(dir: &Path, peers: usize, run: u64, span: u64, pause_ms: u64) -> BTreeMap<(String, u64), i64> {
    let options = ManagerOptions {
        max_bytes_per_sec: None,
        durable: true,
    };
    let manager = PersistManager::with_options(Store::open(dir).unwrap(), options);
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let o = out.clone();
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let store = manager.store().clone();
        let token = manager.token("p", worker.index()).unwrap();
        let o = o.clone();
        let (mut input, ph, ah) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(String, u64), i64>();
            let (persisted, ph) = rows.persist(token).unwrap();
            let (arranged, ah) = persisted.arrange_persisted(&store, "a").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |(row, _, d)| *o.lock().unwrap().entry(row.clone()).or_insert(0) += *d)
                .probe_with(&probe);
            (input, ph, ah)
        });
        let start = ph.resume_state().greatest_upper;
        if worker.index() == 0 {
            println!("start {start}");
        }
        input.advance_to(start);
        let end = start + span;
        kill::feed_times(worker, &mut input, &probe, start..end, pause_ms, |w, t| {
            kill::share(w, sent(peers, run, t))
                .into_iter()
                .map(|row| (row, 1))
                .collect()
        });
        worker.step_while(|| probe.less_than(&end));
        assert_eq!((ph.error(), ah.error()), (None, None));
        common::drop_dataflows(worker);
        if worker.index() == 0 {
            println!("done");
        }
    })
    .unwrap();
    let mut out = out.lock().unwrap().clone();
    out.retain(|_, d| *d != 0);
    out
}

#[test]
#[ignore = "run as a child process by the kill loops of this file"]
fn durable_child() {
    if common::child_var("DDPERSIST_KILL_DIR").is_none() {
        return;
    }
    let var = kill::var;
    run(
        Path::new(&var("DDPERSIST_KILL_DIR")),
        var("DDPERSIST_KILL_PEERS").parse().unwrap(),
        var("DDPERSIST_KILL_RUN").parse().unwrap(),
        var("DDPERSIST_KILL_SPAN").parse().unwrap(),
        var("DDPERSIST_KILL_PAUSE").parse().unwrap(),
    );
}

fn kill_loop(peers: usize, cycles: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    // Every update sent by a run whose time was seen complete: (key, val, time).
    let mut must: BTreeMap<(String, u64, u64), i64> = BTreeMap::new();
    for cycle in 0..cycles {
        let span = 4 + rng.below(10);
        let mut child = common::spawn_child(
            module_path!(),
            "durable_child",
            &[
                ("DDPERSIST_KILL_DIR", dir.path().display().to_string()),
                ("DDPERSIST_KILL_PEERS", peers.to_string()),
                ("DDPERSIST_KILL_RUN", (cycle + 1).to_string()),
                ("DDPERSIST_KILL_SPAN", span.to_string()),
                ("DDPERSIST_KILL_PAUSE", (1 + rng.below(4)).to_string()),
            ],
        );
        let kill::Killed {
            status,
            start,
            complete,
        } = kill::kill_at_random(&mut child, &mut rng);
        let what = format!("cycle {cycle} (start {start:?}, complete {complete:?}, status {status:?})");
        common::assert_killed_or_succeeded(status, &what);
        if let (Some(start), Some(complete)) = (start, complete) {
            for t in start..complete {
                for (k, v) in sent(peers, cycle + 1, t) {
                    must.insert((k, v, t), 1);
                }
            }
        }
        let store = Store::open(dir.path()).unwrap();
        for w in 0..peers {
            let p = content(&store, &worker_stream_id("p", w, peers), u64::MAX);
            for ((k, v, t), d) in &p {
                assert_eq!(*d, 1, "{what}: p/w{w} holds ({k}, {v}) at {t} with diff {d}");
                let run = v / 1_000_000;
                assert!(
                    run >= 1 && run <= cycle + 1 && sent(peers, run, *t).contains(&(k.clone(), *v)),
                    "{what}: p/w{w} holds ({k}, {v}) at {t}, never sent"
                );
            }
            for (key, _) in must.iter().filter(|(k, _)| worker_of(&k.0, peers) == w) {
                assert!(
                    p.contains_key(key),
                    "{what}: p/w{w} lost {key:?} of a time seen complete"
                );
            }
            let a_stream = worker_stream_id("a", w, peers);
            let a_upper = if store.has_stream(&a_stream) {
                store.upper(&a_stream).unwrap()
            } else {
                0
            };
            let p_below = content(&store, &worker_stream_id("p", w, peers), a_upper);
            assert_eq!(
                content(&store, &a_stream, a_upper),
                p_below,
                "{what}: a/w{w} (upper {a_upper})"
            );
        }
    }
    let out = run(dir.path(), peers, cycles + 1, 3, 0);
    let store = Store::open(dir.path()).unwrap();
    let mut all = BTreeMap::new();
    for w in 0..peers {
        for ((k, v, _), d) in content(&store, &worker_stream_id("p", w, peers), u64::MAX) {
            *all.entry((k, v)).or_insert(0) += d;
        }
    }
    assert_eq!(out, all, "final run: the arrangement's output against p");
}

#[test]
fn durable_kill_loop_three_workers() {
    kill_loop(3, 12, 31);
}

#[test]
fn durable_kill_loop_two_workers() {
    kill_loop(2, 12, 32);
}

#[test]
#[ignore = "long: 50 kill cycles for 2, 3 and 4 workers"]
fn durable_kill_loop_long() {
    for (peers, seed) in [(2, 301), (3, 302), (4, 303)] {
        kill_loop(peers, 50, seed);
    }
}
