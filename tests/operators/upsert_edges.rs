//! Adversarial round 9: the de-upsert operator (`upsert_persisted`) at its edges: an idle worker, an input
//! closed early, runs with zero upserts, and restarts that continue from `resume_at` (with the input
//! closed or left open), each compared with the upserted state at every time.

use crate::common;

use common::runs::{end_run, step_past};

use ddpersist::operators::{Upsert, UpsertPersisted};
use ddpersist::Store;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Rec = Upsert<u32, String, u64>;
type Out = Arc<Mutex<Vec<((u32, String), u64, i64)>>>;

fn plan(from: u64, to: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    for t in from..to {
        for k in 0..5u32 {
            match (t + u64::from(k)) % 4 {
                0 => out.push((k, Some(format!("v{t}")), t)),
                1 => out.push((k, None, t)),
                2 => {}
                _ => {
                    out.push((k, Some(format!("x{t}")), t));
                    out.push((k, Some(format!("y{t}")), t)); // the last record per key wins
                }
            }
        }
    }
    out
}

/// The upserted state at time `at`: each key's last value (if not deleted).
fn model(plan: &[Rec], at: u64) -> BTreeMap<(u32, String), i64> {
    let mut state: BTreeMap<u32, String> = BTreeMap::new();
    for (k, v, t) in plan {
        if *t <= at {
            match v {
                Some(v) => {
                    state.insert(*k, v.clone());
                }
                None => {
                    state.remove(k);
                }
            }
        }
    }
    state.into_iter().map(|(k, v)| ((k, v), 1)).collect()
}

fn acc(out: &Out, at: u64) -> BTreeMap<(u32, String), i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in out.lock().unwrap().iter() {
        if *t <= at {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// One run of two workers, only worker 0 sending (worker 1 idle), upserts of `plan(from, to)` where
/// `from` is the agreed resume point; `close` drops the input (the source ends) at `to`, else the dataflow
/// is dropped with the input open. Returns each worker's `resume_at` at build.
fn run(dir: &Path, to: u64, close: bool, out: &Out) -> Vec<u64> {
    let store = Store::open(dir).unwrap();
    let out = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let o = out.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<Rec>>();
            let (coll, handle) = ups.upsert_persisted(&store, "u").unwrap();
            coll.inner
                .inspect(move |x| o.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            (input, handle)
        });
        let from = handle.resume_at();
        input.advance_to(from);
        step_past(worker, &probe, from, &format!("replaying to {from}"));
        for t in from..to {
            if worker.index() == 0 {
                for r in plan(t, t + 1) {
                    input.send(r);
                }
            }
            input.advance_to(t + 1);
            step_past(worker, &probe, t + 1, &format!("at {t}"));
        }
        end_run(worker, input, &probe, close);
        assert_eq!(handle.error(), None);
        from
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

fn check(out: &Out, from: u64, to: u64, what: &str) {
    let all = plan(0, to);
    for at in from..to {
        assert_eq!(acc(out, at), model(&all, at), "{what}: time {at}");
    }
}

#[test]
fn zero_upserts_then_restarts_with_an_idle_worker_and_early_closes() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1: no upserts at all, input closed at once.
    let out: Out = Arc::default();
    let r = run(dir.path(), 0, true, &out);
    assert_eq!(r, vec![0, 0]);
    assert!(out.lock().unwrap().is_empty());
    // Run 2: upserts at 0..4, input closed early (the source ends at 4).
    let out: Out = Arc::default();
    let r = run(dir.path(), 4, true, &out);
    assert_eq!(r, vec![0, 0], "after an empty closed run");
    check(&out, 0, 4, "run 2");
    // Run 3: continues from the resume point to 9, closed again.
    let out: Out = Arc::default();
    let r = run(dir.path(), 9, true, &out);
    assert_eq!(r[0], r[1]);
    assert_eq!(r[0], 4, "resume point after a run closed at 4");
    check(&out, r[0], 9, "run 3");
    // Run 4: zero new upserts, dropped with the input open.
    let out: Out = Arc::default();
    let r = run(dir.path(), 9, false, &out);
    assert_eq!(r, vec![9, 9]);
    assert_eq!(
        acc(&out, u64::MAX - 1),
        model(&plan(0, 9), 9),
        "run 4 re-emits the state"
    );
    // Run 5: continues to 13 with the input open at the end.
    let out: Out = Arc::default();
    let r = run(dir.path(), 13, false, &out);
    assert_eq!(r, vec![9, 9]);
    check(&out, 9, 13, "run 5");
    // Run 6: reads only.
    let out: Out = Arc::default();
    let r = run(dir.path(), 13, false, &out);
    assert_eq!(r, vec![13, 13]);
    assert_eq!(
        acc(&out, u64::MAX - 1),
        model(&plan(0, 13), 13),
        "run 6 re-emits the state"
    );
}
