//! Adversarial round 9: `PersistManager` → `Token` → `persist` across restarts at the edges: runs with zero
//! updates, an idle worker (only worker 0 feeds), the input closed early (the source ends) or left open
//! (a stop), streams durable or not. After each run the output must accumulate to exactly the input fed
//! so far, at every time from the run's resume point on, nothing lost and nothing doubled.

use crate::common;

use common::runs::{end_run, step_past};

use ddpersist::operators::Persist;
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
type Out = Arc<Mutex<Vec<(Row, u64, i64)>>>;

/// The updates of time `t`: insertions, and a retraction of one of time `t - 2`.
fn input(t: u64) -> Vec<(Row, i64)> {
    let mut out: Vec<(Row, i64)> = (0..4)
        .map(|i| ((format!("k{}", (t + i) % 5), t * 10 + i), 1))
        .collect();
    if t >= 2 {
        out.push(((format!("k{}", (t - 2) % 5), (t - 2) * 10), -1));
    }
    out
}

fn expected(to: u64, at: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    for t in 0..to.min(at.saturating_add(1)) {
        for (r, d) in input(t) {
            *acc.entry(r).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

fn acc(out: &Out, at: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    for (r, t, d) in out.lock().unwrap().iter() {
        if *t <= at {
            *acc.entry(r.clone()).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// One run of two workers over `dir` feeding times `from..to` on worker 0 only, where `from` is the
/// resume point (a replayable source: `resume_at`; a durable one: `greatest_upper`). `close` drops the
/// input at the end (the source ends there), else the dataflow is dropped with the input open. Returns
/// `from` as each worker saw it.
fn run(dir: &Path, durable: bool, to: u64, close: bool, out: &Out) -> Vec<u64> {
    let manager = PersistManager::with_options(
        Store::open(dir).unwrap(),
        ManagerOptions {
            max_bytes_per_sec: None,
            durable,
        },
    );
    let out = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", worker.index()).unwrap();
        let o = out.clone();
        let (mut input_handle, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input_handle, coll) = scope.new_collection::<Row, i64>();
            let (persisted, handle) = coll.persist(token).unwrap();
            persisted
                .inner
                .inspect(move |x| o.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            (input_handle, handle)
        });
        let from = if durable {
            handle.resume_state().greatest_upper
        } else {
            handle.resume_at()
        };
        input_handle.advance_to(from);
        input_handle.flush();
        step_past(worker, &probe, from, &format!("replaying to {from}"));
        for t in from..to {
            if worker.index() == 0 {
                for (r, d) in input(t) {
                    input_handle.update(r, d);
                }
            }
            input_handle.advance_to(t + 1);
            input_handle.flush();
            step_past(worker, &probe, t + 1, &format!("at {t}"));
        }
        end_run(worker, input_handle, &probe, close);
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
    for at in from..to.max(from + 1) {
        assert_eq!(acc(out, at), expected(to, at), "{what}: time {at}");
    }
    assert_eq!(acc(out, u64::MAX), expected(to, u64::MAX), "{what}: at the end");
}

fn runs(durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let what = if durable { "durable" } else { "replayable" };
    // (to, close, expected resume point)
    let plan: [(u64, bool, u64); 7] = [
        (0, true, 0),  // zero updates, closed at once
        (0, false, 0), // zero updates, a stop
        (3, true, 0),  // the source ends at 3
        (6, false, 3), // continued, then a stop
        (6, false, 6), // a read-only run
        (6, true, 6),  // a read-only run that closes
        (9, true, 6),  // continued once more
    ];
    for (i, (to, close, want_from)) in plan.into_iter().enumerate() {
        let out: Out = Arc::default();
        let froms = run(dir.path(), durable, to, close, &out);
        assert_eq!(froms, vec![want_from; 2], "{what} run {i}: resume points");
        check(&out, want_from, to, &format!("{what} run {i}"));
    }
}

#[test]
fn replayable_streams_with_zero_updates_an_idle_worker_and_early_closes() {
    runs(false);
}

#[test]
fn durable_streams_with_zero_updates_an_idle_worker_and_early_closes() {
    runs(true);
}

/// A durable stream whose operator took in updates at future times (beyond the input's frontier) and was
/// stopped before sealing them: the next run emits them once (from the WAL), continues at
/// `greatest_upper` with new updates only, and a third run emits everything once more, exactly once.
#[test]
fn durable_future_updates_taken_in_before_a_stop_pass_through_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let future: Vec<(Row, u64, i64)> = vec![
        (("f1".to_string(), 1), 8, 1),
        (("f2".to_string(), 2), 8, 2),
        (("f3".to_string(), 3), 12, -1),
    ];
    let once = |fed: &[(Row, u64, i64)], out: &Out, what: &str| {
        let mut want: BTreeMap<(Row, u64), i64> = BTreeMap::new();
        for (r, t, d) in fed {
            *want.entry((r.clone(), *t)).or_insert(0) += d;
        }
        want.retain(|_, d| *d != 0);
        let mut got: BTreeMap<(Row, u64), i64> = BTreeMap::new();
        for (r, t, d) in out.lock().unwrap().iter() {
            *got.entry((r.clone(), *t)).or_insert(0) += d;
        }
        got.retain(|_, d| *d != 0);
        assert_eq!(got, want, "{what}");
    };
    let mut fed: Vec<(Row, u64, i64)> = Vec::new();
    for (run_no, (to, extra)) in [(4u64, true), (10, false), (14, false)].into_iter().enumerate() {
        let out: Out = Arc::default();
        let manager = PersistManager::with_options(
            Store::open(dir.path()).unwrap(),
            ManagerOptions {
                max_bytes_per_sec: None,
                durable: true,
            },
        );
        let o = out.clone();
        let f = future.clone();
        let froms: Vec<u64> = timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let token = manager.token("fut", worker.index()).unwrap();
            let o = o.clone();
            let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, coll) = scope.new_collection::<Row, i64>();
                let (persisted, handle) = coll.persist(token).unwrap();
                persisted
                    .inner
                    .inspect(move |x| o.lock().unwrap().push(x.clone()))
                    .probe_with(&probe);
                (input, handle)
            });
            let from = handle.resume_state().greatest_upper;
            input.advance_to(from);
            for t in from..to {
                if worker.index() == 1 {
                    for (r, d) in input_rows(t) {
                        input.update(r, d);
                    }
                    if extra && t == from {
                        for (r, ft, d) in &f {
                            input.update_at(r.clone(), *ft, *d);
                        }
                    }
                }
                input.advance_to(t + 1);
                input.flush();
                step_past(worker, &probe, t + 1, &format!("at {t}"));
            }
            // A stop: the future updates are taken in (written to the durable stream), not sealed.
            end_run(worker, input, &probe, false);
            assert_eq!(handle.error(), None);
            from
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let from = froms[0];
        assert_eq!(froms, vec![from; 2]);
        for t in from..to {
            fed.extend(input_rows(t).into_iter().map(|(r, d)| (r, t, d)));
        }
        if extra {
            fed.extend(future.iter().cloned());
        }
        // Every run emits what earlier runs persisted (the snapshot, sealed and unsealed) and its own input.
        once(&fed, &out, &format!("run {run_no} (from {from})"));
    }
}

fn input_rows(t: u64) -> Vec<(Row, i64)> {
    input(t)
}
