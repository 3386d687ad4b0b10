//! Adversarial restart checks of a chain `persist` ("p") → `upsert_persisted` ("u") → `arrange_persisted`
//! ("a") with several workers, some idle, killed with SIGKILL at random points and restarted from the
//! least `resume_at` of the chain (runs that close the input, runs that drop the dataflow, read-only runs
//! mixed in). After every kill: each worker's upsert state and arrangement hold exactly the de-upserted
//! source below their uppers (one value per key, multiplicity 1), and the persisted source exactly the
//! source's events below its upper.

use crate::common;

use common::kill::{self, key_on, worker_of};
use common::Rng;
use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist, UpsertPersisted};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// The source's events at time `t`: at most one per key; keys of worker 0 at most times, of worker 1 at
/// times divisible by 4, none of the other workers' (idle); no event at times `5k + 4`. The event's val
/// is the key's new value, or a deletion when divisible by 3.
fn events(peers: usize, t: u64) -> Vec<(String, u64)> {
    if t % 5 == 4 {
        return Vec::new();
    }
    let mut out = Vec::new();
    for i in 0..3 {
        if (t + i as u64) % 3 != 2 {
            out.push((key_on(0, peers, i), t * 10 + i as u64 + 1));
        }
    }
    if peers > 1 && t.is_multiple_of(4) {
        out.push((key_on(1, peers, (t / 4 % 2) as usize), t * 10 + 7));
    }
    out
}

fn upsert_of(val: u64) -> Option<u64> {
    (!val.is_multiple_of(3)).then_some(val)
}

/// The de-upserted state of worker `w`'s keys after the events of times `0..upper`.
fn state(peers: usize, w: usize, upper: u64) -> BTreeMap<(String, u64), i64> {
    let mut s = BTreeMap::new();
    for t in 0..upper {
        for (k, v) in events(peers, t) {
            if worker_of(&k, peers) != w {
                continue;
            }
            match upsert_of(v) {
                Some(v) => s.insert(k, v),
                None => s.remove(&k),
            };
        }
    }
    s.into_iter().map(|(k, v)| ((k, v), 1)).collect()
}

fn all_state(peers: usize, upper: u64) -> BTreeMap<(String, u64), i64> {
    (0..peers).flat_map(|w| state(peers, w, upper)).collect()
}

fn sum(updates: impl IntoIterator<Item = (String, u64, u64, i64)>) -> BTreeMap<(String, u64), i64> {
    let mut acc = BTreeMap::new();
    for (k, v, _, d) in updates {
        *acc.entry((k, v)).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// Checks the three operators' streams in `store`; returns `(p, u, a)` uppers per worker.
fn check(store: &Store, peers: usize, what: &str) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let upper = |id: &str, w: usize| store.upper(&worker_stream_id(id, w, peers)).unwrap_or(0);
    let read = |id: &str, w: usize| {
        let stream = worker_stream_id(id, w, peers);
        if !store.has_stream(&stream) {
            return Vec::new();
        }
        store.snapshot(&stream).unwrap().decode::<String, u64>().unwrap()
    };
    let mut uppers = (Vec::new(), Vec::new(), Vec::new());
    for w in 0..peers {
        // The source: every event of the worker's keys below the upper, once.
        let pu = upper("p", w);
        let mut want = BTreeMap::new();
        for t in 0..pu {
            for (k, v) in events(peers, t) {
                if worker_of(&k, peers) == w {
                    want.insert((k, v), 1);
                }
            }
        }
        assert_eq!(sum(read("p", w)), want, "{what}: p/w{w} (upper {pu})");
        let uu = upper("u", w);
        assert_eq!(
            sum(read("u", w)),
            state(peers, w, uu),
            "{what}: u/w{w} (upper {uu})"
        );
        let au = upper("a", w);
        assert_eq!(
            sum(read("a", w)),
            state(peers, w, au),
            "{what}: a/w{w} (upper {au})"
        );
        uppers.0.push(pu);
        uppers.1.push(uu);
        uppers.2.push(au);
    }
    uppers
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    Close,
    Drop,
    ReadOnly,
}

/// One run of the chain: every worker feeds its share of the events of times from the least resume point
/// up to `end`; prints `complete T` (worker 0) with `pause_ms` after each time. Returns the arrangement's
/// output (accumulated) and the resume point.
fn run(dir: &Path, peers: usize, end: u64, pause_ms: u64, how: End) -> (BTreeMap<(String, u64), i64>, u64) {
    let manager = PersistManager::new(Store::open(dir).unwrap());
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let resumed = Arc::new(Mutex::new(Vec::new()));
    let (o, r) = (out.clone(), resumed.clone());
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let store = manager.store().clone();
        let token = manager.token("p", worker.index()).unwrap();
        let o = o.clone();
        let (mut input, hs) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(String, u64), i64>();
            let (persisted, ph) = rows.persist(token).unwrap();
            let upserts = persisted
                .inner
                .flat_map(|((k, v), t, d)| (d > 0).then_some((k, upsert_of(v), t)));
            let (current, uh) = upserts.upsert_persisted(&store, "u").unwrap();
            let (arranged, ah) = current.arrange_persisted(&store, "a").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |(row, _, d)| {
                    let mut o = o.lock().unwrap();
                    *o.entry(row.clone()).or_insert(0) += *d;
                })
                .probe_with(&probe);
            (input, (ph, uh, ah))
        });
        let resume = hs.0.resume_at().min(hs.1.resume_at()).min(hs.2.resume_at());
        r.lock().unwrap().push(resume);
        input.advance_to(resume);
        input.flush();
        let end = if how == End::ReadOnly {
            resume
        } else {
            end.max(resume)
        };
        kill::feed_times(worker, &mut input, &probe, resume..end, pause_ms, |w, t| {
            kill::share(w, events(peers, t))
                .into_iter()
                .map(|row| (row, 1))
                .collect()
        });
        worker.step_while(|| probe.less_than(&end));
        assert_eq!((hs.0.error(), hs.1.error(), hs.2.error()), (None, None, None));
        if how == End::Close {
            drop(input);
            worker.step_while(|| !probe.done());
        } else {
            common::drop_dataflows(worker);
        }
        if worker.index() == 0 {
            println!("done");
        }
    })
    .unwrap();
    let resume = kill::agreed_resume(&resumed);
    let mut out = out.lock().unwrap().clone();
    out.retain(|_, d| *d != 0);
    (out, resume)
}

#[test]
#[ignore = "run as a child process by the kill loops of this file"]
fn upsert_child() {
    if common::child_var("DDPERSIST_KILL_DIR").is_none() {
        return;
    }
    let var = kill::var;
    let how = match var("DDPERSIST_KILL_END_HOW").as_str() {
        "close" => End::Close,
        "read" => End::ReadOnly,
        _ => End::Drop,
    };
    run(
        Path::new(&var("DDPERSIST_KILL_DIR")),
        var("DDPERSIST_KILL_PEERS").parse().unwrap(),
        var("DDPERSIST_KILL_END").parse().unwrap(),
        var("DDPERSIST_KILL_PAUSE").parse().unwrap(),
        how,
    );
}

fn kill_loop(peers: usize, cycles: u64, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut end = 0u64;
    for cycle in 0..cycles {
        end += 3 + rng.below(10);
        let how = ["close", "drop", "drop", "read"][rng.below(4) as usize];
        let mut child = common::spawn_child(
            module_path!(),
            "upsert_child",
            &[
                ("DDPERSIST_KILL_DIR", dir.path().display().to_string()),
                ("DDPERSIST_KILL_PEERS", peers.to_string()),
                ("DDPERSIST_KILL_END", end.to_string()),
                ("DDPERSIST_KILL_PAUSE", (1 + rng.below(4)).to_string()),
                ("DDPERSIST_KILL_END_HOW", how.to_string()),
            ],
        );
        let status = kill::kill_at_random(&mut child, &mut rng).status;
        let what = format!("cycle {cycle} (end {end}, {how}, status {status:?})");
        common::assert_killed_or_succeeded(status, &what);
        let store = Store::open(dir.path()).unwrap();
        check(&store, peers, &what);
    }
    let end = end + 4;
    let (out, resume) = run(dir.path(), peers, end, 0, End::Drop);
    let store = Store::open(dir.path()).unwrap();
    let what = format!("final run from {resume} to {end}");
    let (p, u, a) = check(&store, peers, &what);
    assert_eq!(
        (p, u, a),
        (vec![end; peers], vec![end; peers], vec![end; peers]),
        "{what}"
    );
    assert_eq!(out, all_state(peers, end), "{what}: arrangement output");
}

#[test]
fn upsert_chain_kill_loop_three_workers() {
    kill_loop(3, 12, 5);
}

#[test]
fn upsert_chain_kill_loop_two_workers() {
    kill_loop(2, 12, 6);
}

#[test]
#[ignore = "long: 50 kill cycles for 2, 3 and 4 workers"]
fn upsert_chain_kill_loop_long() {
    for (peers, seed) in [(2, 201), (3, 202), (4, 203)] {
        kill_loop(peers, 50, seed);
    }
}
