//! `kill -9` loop over one `PersistManager` (durable, rate-limited) persisting two streams on two workers
//! through `Token`s and `persist`: each run continues with new rows only, from the greatest
//! `resume_state().greatest_upper` of the two streams (README, "Restarting"). After every kill, in each
//! stream: no row twice, nothing that was never sent (from the run's start on), and every row of a time
//! the child saw complete present. A last run, not killed, closes its inputs and checks that what it
//! passed through (replay and new rows) equals what the store holds.

use crate::common;

use common::kill::{key_on, kill_at_random};
use common::{assert_killed_or_succeeded, child_var, spawn_child, Rng};
use ddpersist::operators::{worker_stream_id, Persist};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

const STREAMS: [&str; 2] = ["a", "b"];
const PEERS: usize = 2;
const TIMES_PER_RUN: u64 = 10;

type Row = (String, String);
/// `(stream, row, time, diff)` as passed through.
type Passed = (usize, Row, u64, i64);

/// The rows worker `w` sends to stream `s` at time `t` in run `run`: two keys placed on `w`, none at
/// times `3k + 2` for stream 1.
fn sent(run: u64, s: usize, w: usize, t: u64) -> Vec<Row> {
    if s == 1 && t % 3 == 2 {
        return Vec::new();
    }
    (0..2)
        .map(|i| {
            let key = key_on(w, PEERS, (t as usize + i + s) % 5);
            (key, format!("r{run}t{t}s{s}i{i}"))
        })
        .collect()
}

#[test]
#[ignore]
fn child() {
    let (Some(dir), Some(run)) = (child_var("ADV7_DIR"), child_var("ADV7_RUN")) else {
        return;
    };
    let run: u64 = run.parse().unwrap();
    let last = std::env::var("ADV7_LAST").is_ok();
    let manager = PersistManager::with_options(
        Store::open(&dir).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: Some(100_000),
            durable: true,
        },
    );
    let out: Arc<Mutex<Vec<Passed>>> = Arc::default();
    let (m, o) = (manager.clone(), out.clone());
    timely::execute(timely::Config::process(PEERS), move |worker| {
        let probe = ProbeHandle::new();
        let tokens: Vec<_> = STREAMS
            .iter()
            .map(|id| m.token(id, worker.index()).unwrap())
            .collect();
        let (mut inputs, handles) = worker.dataflow::<u64, _, _>(|scope| {
            let mut inputs = Vec::new();
            let mut handles = Vec::new();
            for (s, token) in tokens.into_iter().enumerate() {
                let (input, coll) = scope.new_collection::<Row, i64>();
                let (persisted, handle) = coll.persist(token).unwrap();
                let o = o.clone();
                persisted
                    .inspect(move |(r, t, d)| o.lock().unwrap().push((s, r.clone(), *t, *d)))
                    .probe_with(&probe);
                inputs.push(input);
                handles.push(handle);
            }
            (inputs, handles)
        });
        let from = handles
            .iter()
            .map(|h| h.resume_state().greatest_upper)
            .max()
            .unwrap();
        if worker.index() == 0 {
            println!();
            println!("start {from}");
        }
        for input in inputs.iter_mut() {
            input.advance_to(from);
        }
        for t in from..from + TIMES_PER_RUN {
            for (s, input) in inputs.iter_mut().enumerate() {
                input.advance_to(t);
                for row in sent(run, s, worker.index(), t) {
                    input.update(row, 1);
                }
                input.advance_to(t + 1);
                input.flush();
            }
            worker.step_while(|| probe.less_than(&(t + 1)));
            if worker.index() == 0 {
                println!("complete {}", t + 1);
            }
            std::thread::sleep(std::time::Duration::from_millis(3));
        }
        if last {
            inputs.clear();
            worker.step_while(|| !probe.done());
        }
        for h in &handles {
            assert_eq!(h.error(), None);
        }
    })
    .unwrap();
    if last {
        let store = manager.store();
        for (s, id) in STREAMS.iter().enumerate() {
            let mut passed: BTreeMap<(Row, u64), i64> = BTreeMap::new();
            for (_, r, t, d) in out.lock().unwrap().iter().filter(|x| x.0 == s) {
                *passed.entry((r.clone(), *t)).or_insert(0) += d;
            }
            passed.retain(|_, d| *d != 0);
            assert_eq!(passed, stored(store, id), "stream {id}: passed through vs stored");
        }
        println!("done");
    }
}

fn stored(store: &Store, id: &str) -> BTreeMap<(Row, u64), i64> {
    let mut rows = BTreeMap::new();
    for w in 0..PEERS {
        let snapshot = store.snapshot(&worker_stream_id(id, w, PEERS)).unwrap();
        for (k, v, t, d) in snapshot.decode::<String, String>().unwrap() {
            *rows.entry(((k, v), t)).or_insert(0) += d;
        }
    }
    rows.retain(|_, d| *d != 0);
    rows
}

fn check(dir: &Path, runs: &[(u64, u64, Option<u64>)]) {
    let store = Store::open(dir).unwrap();
    for (s, id) in STREAMS.iter().enumerate() {
        let rows = stored(&store, id);
        // Every row a run may have sent (from its start on), and every one it must have persisted.
        let mut may: BTreeSet<(Row, u64)> = BTreeSet::new();
        let mut must: BTreeSet<(Row, u64)> = BTreeSet::new();
        for &(run, start, complete) in runs {
            for t in start..start + TIMES_PER_RUN {
                for w in 0..PEERS {
                    for row in sent(run, s, w, t) {
                        may.insert((row.clone(), t));
                        if complete.is_some_and(|c| t < c) {
                            must.insert((row, t));
                        }
                    }
                }
            }
        }
        for (row, d) in &rows {
            assert_eq!(*d, 1, "stream {id}: {row:?} has multiplicity {d} (runs {runs:?})");
            assert!(
                may.contains(row),
                "stream {id}: {row:?} was never sent (runs {runs:?})"
            );
        }
        for row in &must {
            assert!(
                rows.contains_key(row),
                "stream {id}: {row:?} of a complete time is lost (runs {runs:?})"
            );
        }
    }
}

#[test]
fn killed_runs_of_one_durable_manager_keep_each_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap().to_string();
    let seed = std::env::var("ADV7_SEED").map_or(0xadd7, |s| s.parse().unwrap());
    let mut rng = Rng(seed);
    let mut runs = Vec::new();
    for run in 0..6u64 {
        let envs = [("ADV7_DIR", dir.clone()), ("ADV7_RUN", run.to_string())];
        let mut child = spawn_child(module_path!(), "child", &envs);
        let killed = kill_at_random(&mut child, &mut rng);
        assert_killed_or_succeeded(killed.status, "a killed run");
        if let Some(start) = killed.start {
            runs.push((run, start, killed.complete));
        }
        check(tmp.path(), &runs);
    }
    let envs = [
        ("ADV7_DIR", dir.clone()),
        ("ADV7_RUN", "6".to_string()),
        ("ADV7_LAST", "1".to_string()),
    ];
    let mut child = spawn_child(module_path!(), "child", &envs);
    let done = common::read_until(&mut child, "complete ", u64::MAX);
    let status = child.wait().unwrap();
    assert!(status.success(), "the last run failed: {status:?}");
    runs.push((6, done.saturating_sub(TIMES_PER_RUN), Some(done)));
    check(tmp.path(), &runs);
}
