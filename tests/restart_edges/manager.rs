//! `PersistManager`, tokens and the pass-through `Persist` operator: with 1 and 2 workers, a restarted
//! dataflow replays exactly what was persisted and then the new input, a replayed source is idempotent,
//! and tokens are one per stream and worker; after a `kill -9` midway, every time the killed run saw
//! complete downstream is persisted, and the re-run delivers the whole input exactly once.

use crate::common;

use ddpersist::operators::{worker_stream_id, Persist};
use ddpersist::{Error, ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;

type Update = ((String, u64), u64, i64);

/// Deterministic input at times `0..to`: insertions, and retractions of the previous time's first one.
fn rounds(to: u64) -> Vec<Vec<Update>> {
    (0..to)
        .map(|t| {
            let mut r: Vec<Update> = (0..6)
                .map(|i| ((format!("k{}", (t * 3 + i) % 7), t + i), t, 1))
                .collect();
            if t > 0 {
                r.push(((format!("k{}", (t * 3 - 3) % 7), t - 1), t, -1));
            }
            r
        })
        .collect()
}

fn consolidate(updates: impl IntoIterator<Item = Update>) -> BTreeMap<((String, u64), u64), i64> {
    let mut sums = BTreeMap::new();
    for (d, t, r) in updates {
        *sums.entry((d, t)).or_insert(0) += r;
    }
    sums.retain(|_, r| *r != 0);
    sums
}

/// One run over the store in `dir`: feeds `input` (all of it, from time 0: a replayed source), returns
/// what the persist operator passed on (all workers) and each worker's `resume_at`. With `pause_ms > 0`,
/// sleeps that long per time and prints `complete T` once the output frontier passed `T`.
fn run(dir: &Path, workers: usize, input: Vec<Vec<Update>>) -> (Vec<Update>, Vec<u64>) {
    run_paced(dir, workers, input, 0)
}

fn run_paced(dir: &Path, workers: usize, input: Vec<Vec<Update>>, pause_ms: u64) -> (Vec<Update>, Vec<u64>) {
    let manager = PersistManager::with_options(
        Store::open(dir).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: Some(1 << 30),
            durable: false,
        },
    );
    let out = Arc::new(Mutex::new(Vec::new()));
    let sink = out.clone();
    let resumes = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", worker.index()).unwrap();
        let sink = sink.clone();
        let (mut input_handle, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input_handle, coll) = scope.new_collection::<(String, u64), i64>();
            let (persisted, handle) = coll.persist(token).unwrap();
            persisted
                .inspect(move |x| sink.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            (input_handle, handle)
        });
        for round in &input {
            let time = round[0].1;
            input_handle.advance_to(time);
            if worker.index() == 0 {
                for (d, _, r) in round {
                    input_handle.update(d.clone(), *r);
                }
            }
            input_handle.advance_to(time + 1);
            input_handle.flush();
            worker.step_while(|| probe.less_than(&(time + 1)));
            if pause_ms > 0 {
                println!("complete {}", time + 1);
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            }
        }
        drop(input_handle);
        worker.step_while(|| !probe.done());
        assert_eq!(handle.error(), None);
        handle.resume_at()
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let out = out.lock().unwrap().clone();
    (out, resumes)
}

fn restart_replays(workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (out, resumes) = run(dir.path(), workers, rounds(10));
    assert_eq!(
        consolidate(out),
        consolidate(rounds(10).concat()),
        "first run passes its input through"
    );
    assert!(resumes.iter().all(|&r| r == 0));

    // Restart with the whole source replayed and 5 more times: the persisted part comes from the store,
    // the replayed input below resume_at is dropped, nothing appears twice.
    let (out, resumes) = run(dir.path(), workers, rounds(15));
    assert_eq!(consolidate(out.clone()), consolidate(rounds(15).concat()));
    let plain: usize = rounds(15).iter().map(|r| r.len()).sum();
    assert!(
        out.len() <= plain,
        "{} updates passed for {plain} input updates",
        out.len()
    );
    assert_eq!(resumes.iter().max(), Some(&10), "{resumes:?}");

    // The store holds exactly the input, across the workers' streams.
    let store = Store::open(dir.path()).unwrap();
    let mut persisted = Vec::new();
    for w in 0..workers {
        let id = worker_stream_id("src", w, workers);
        for (k, v, t, d) in store.snapshot(&id).unwrap().decode::<String, u64>().unwrap() {
            persisted.push(((k, v), t, d));
        }
    }
    assert_eq!(consolidate(persisted), consolidate(rounds(15).concat()));
}

#[test]
fn restart_replays_one_worker() {
    restart_replays(1);
}

#[test]
fn restart_replays_two_workers() {
    restart_replays(2);
}

#[test]
fn tokens_are_unique_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let token = manager.token("t", 0).unwrap();
    assert!(matches!(manager.token("t", 0), Err(Error::BadInput { .. })));
    // A token for another worker does not build on worker 0, and returns the claim when dropped.
    let other = manager.token("t", 1).unwrap();
    let built = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, coll) = scope.new_collection::<(String, u64), i64>();
            coll.persist(other).map(|_| ()).map_err(|e| e.to_string())
        })
    });
    assert!(
        built.unwrap_err().contains("worker 1"),
        "wrong worker must be refused"
    );
    assert!(manager.token("t", 1).is_ok());
    drop(token);
    assert!(manager.token("t", 0).is_ok());
}

/// The child process of `a_killed_run_loses_nothing_and_repeats_nothing`: runs slowly until killed.
#[test]
#[ignore = "run as a child process by a_killed_run_loses_nothing_and_repeats_nothing"]
fn persist_child_process() {
    let Some(dir) = common::child_var("DDPERSIST_PERSIST_CHILD") else {
        return;
    };
    run_paced(Path::new(&dir), 1, rounds(400), 20);
}

#[test]
fn a_killed_run_loses_nothing_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::spawn_child(
        module_path!(),
        "persist_child_process",
        &[("DDPERSIST_PERSIST_CHILD", path(&dir))],
    );
    // SIGKILL once downstream has seen some times complete, in the middle of the run.
    let complete = common::read_until(&mut child, "complete ", 25);
    child.kill().unwrap();
    child.wait().unwrap();

    // Every time downstream saw complete is persisted (the operator holds its output at the sealed upper).
    let resume_at = Store::open(dir.path()).unwrap().upper("src/w0of1").unwrap();
    assert!(
        (complete..400).contains(&resume_at),
        "complete {complete}, resume at {resume_at}"
    );
    // The re-run replays the persisted part, drops the replayed source below resume_at, and passes the
    // rest through: the whole input, once.
    let (out, resumes) = run(dir.path(), 1, rounds(60));
    assert_eq!(resumes, vec![resume_at]);
    assert_eq!(consolidate(out), consolidate(rounds(60).concat()));
    let persisted: Vec<Update> = Store::open(dir.path())
        .unwrap()
        .snapshot("src/w0of1")
        .unwrap()
        .decode::<String, u64>()
        .unwrap()
        .into_iter()
        .map(|(k, v, t, d)| ((k, v), t, d))
        .collect();
    assert_eq!(consolidate(persisted), consolidate(rounds(60).concat()));
}

fn path(dir: &tempfile::TempDir) -> String {
    dir.path().display().to_string()
}
