//! From an adversarial round: retiring an operator id with `Store::drop_stream` (every worker's stream) and building the
//! id again — in the same open store and after a reopen, with another worker count — starts it empty and
//! serves only the new input; a partial retirement is refused with an error naming the streams.
//! (`a_partial_retirement_is_refused_naming_the_left_streams` failed before the layout check counted streams
//! sealed since the open: the build was accepted, the workers read resume points 0 and 1 and the run never
//! completed.)

use crate::common;

use ddpersist::operators::{worker_stream_id, ArrangeTyped};
use ddpersist::Store;
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// Runs "x" (count_total over keys) with `workers` workers on `store`, feeding `keys` at times from the
/// resume point; returns the accumulated output and the resume point, or the build error.
/// `count_total`'s accumulated output: `(key, count)` to multiplicity.
type Counts = BTreeMap<(u64, i64), i64>;

fn run(store: &Store, workers: usize, keys: Vec<u64>) -> Result<(Counts, u64), String> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let errs = Arc::new(Mutex::new(Vec::new()));
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let failed = common::BuildFailed::default();
    let (o, e, r, store) = (out.clone(), errs.clone(), resumes.clone(), store.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u64, u64), isize>();
            let a = rows
                .arrange_by_key_persisted(&store, "x")
                .map_err(|e| e.to_string())?;
            let h = a.handle().unwrap().clone();
            a.count_total()
                .inner
                .inspect(move |((k, c), t, d)| o.lock().unwrap().push(((*k, *c as i64), *t, *d as i64)))
                .probe_with(&probe);
            Ok::<_, String>((input, h))
        });
        let (mut input, h) = match built {
            Ok(b) => b,
            Err(err) => {
                e.lock().unwrap().push(failed.fail(worker, err));
                return;
            }
        };
        let resume = h.resume_at();
        r.lock().unwrap().push(resume);
        input.advance_to(resume);
        if worker.index() == 0 {
            for k in &keys {
                input.update((*k, *k * 10), 1);
            }
        }
        input.advance_to(resume + 1);
        input.flush();
        let deadline = Instant::now() + Duration::from_secs(20);
        worker.step_while(|| probe.less_than(&(resume + 1)) && !failed.is_set() && Instant::now() < deadline);
        if probe.less_than(&(resume + 1)) && !failed.is_set() {
            e.lock().unwrap().push(format!(
                "worker {}: did not complete (its resume_at {resume}, own upper {})",
                worker.index(),
                h.own_upper()
            ));
        }
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
    })
    .map_err(|e| e.to_string())?;
    let errs = errs.lock().unwrap().clone();
    if !errs.is_empty() {
        return Err(errs.join("; "));
    }
    let out = common::accumulate_rows(&out.lock().unwrap());
    let resume = resumes.lock().unwrap()[0];
    Ok((out, resume))
}

#[test]
fn a_retired_id_is_built_again_empty_in_the_same_open_store_with_other_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (first, _) = run(&store, 2, vec![1, 2, 3]).unwrap();
    assert_eq!(first.len(), 3);
    for w in 0..2 {
        store.drop_stream(&worker_stream_id("x", w, 2)).unwrap();
    }
    // Same open store, one worker now.
    let (second, resume) = run(&store, 1, vec![7]).unwrap();
    assert_eq!(second, [((7, 1), 1)].into(), "resume {resume}");
    // Retire again, reopen, two workers.
    store.drop_stream(&worker_stream_id("x", 0, 1)).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let (third, _) = run(&store, 2, vec![8, 9]).unwrap();
    assert_eq!(third, [((8, 1), 1), ((9, 1), 1)].into());
    // And the same open store again, two workers, nothing retired: the earlier rows are served.
    let (fourth, _) = run(&store, 2, vec![10]).unwrap();
    assert_eq!(fourth, [((8, 1), 1), ((9, 1), 1), ((10, 1), 1)].into());
}

#[test]
fn a_partial_retirement_is_refused_naming_the_left_streams() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run(&store, 2, vec![1, 2, 3]).unwrap();
    store.drop_stream(&worker_stream_id("x", 0, 2)).unwrap();
    let err = run(&store, 2, vec![4]).unwrap_err();
    eprintln!("{err}");
    assert!(err.contains("x/w1of2"), "{err}");
}

/// As above, with the store reopened between the partial retirement and the build: refused at build.
#[test]
fn a_partial_retirement_is_refused_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    run(&store, 2, vec![1, 2, 3]).unwrap();
    store.drop_stream(&worker_stream_id("x", 0, 2)).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let err = run(&store, 2, vec![4]).unwrap_err();
    eprintln!("{err}");
    assert!(err.contains("x/w1of2"), "{err}");
}
