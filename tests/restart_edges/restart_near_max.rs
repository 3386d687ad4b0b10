//! Adversarial round 12, topic 1c: uneven workers at the top of `u64`'s range across restarts. Worker 0
//! feeds at `u64::MAX - 5` and `u64::MAX - 2`, worker 1 only at `u64::MAX - 1` (the greatest time the
//! store takes); runs stop with the input advanced to `u64::MAX - 1` or `u64::MAX` (open), restart
//! reading only, replay, and finally close. Every run serves what DD would have at each complete time.

use crate::common;

use common::compare::{at, rec, Log};
use common::kill::key_on;
use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::ProbeHandle;

const M: u64 = u64::MAX;

fn data(w: usize, t: u64) -> Vec<((String, u64), isize)> {
    match (w, M - t) {
        (0, 5) => vec![((key_on(0, 2, 0), 1), 1), ((key_on(1, 2, 0), 2), 1)],
        (0, 2) => vec![((key_on(0, 2, 0), 1), -1), ((key_on(1, 2, 1), 3), 2)],
        (1, 1) => vec![((key_on(0, 2, 2), 4), 1), ((key_on(1, 2, 0), 2), -1)],
        _ => vec![],
    }
}

const TIMES: &[u64] = &[M - 5, M - 2, M - 1];

/// What DD holds at time `t` (accumulated): rows and counts.
fn expected(t: u64) -> BTreeMap<String, i64> {
    let mut rows: BTreeMap<(String, u64), i64> = BTreeMap::new();
    for &s in TIMES.iter().filter(|s| **s <= t) {
        for w in 0..2 {
            for (r, d) in data(w, s) {
                *rows.entry(r).or_insert(0) += d as i64;
            }
        }
    }
    rows.retain(|_, d| *d != 0);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for ((k, _), d) in &rows {
        *counts.entry(k.clone()).or_insert(0) += d;
    }
    counts.retain(|_, d| *d != 0);
    let mut out: BTreeMap<String, i64> = rows
        .into_iter()
        .map(|((k, v), d)| (format!("row {k}={v}"), d))
        .collect();
    for (k, c) in counts {
        out.insert(format!("count {k} {c}"), 1);
    }
    out
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Plan {
    /// Feed the times at or past the resume point up to `to`, advance to `adv`, step until `wait` is
    /// complete (if given), drop with the input open.
    Feed { to: u64, adv: u64, wait: Option<u64> },
    /// Feed everything left from the resume point, close, run to completion.
    Close,
    /// Advance to the resume point only, drop.
    ReadOnly,
}

fn run(dir: &Path, plan: Plan) -> (Log<String>, u64, bool) {
    let store = Store::open(dir).unwrap();
    let log: Log<String> = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(true));
    let (l, rs, dn) = (log.clone(), resumes.clone(), done.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let w = worker.index();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(String, u64), isize>();
            let x = rows.arrange_by_key_persisted(&store, "top").unwrap();
            rec(x.clone().as_collection(|k, v| format!("row {k}={v}")), &l, &probe);
            rec(
                x.clone().count_total().map(|(k, c)| format!("count {k} {c}")),
                &l,
                &probe,
            );
            (input, x.handle().unwrap().clone())
        });
        let resume = handle.resume_at();
        rs.lock().unwrap().push(resume);
        let deadline = common::compare::deadline(20);
        match plan {
            Plan::ReadOnly => {
                input.advance_to(resume);
                input.flush();
                worker.step_while(|| deadline() && probe.less_than(&resume));
                common::drop_dataflows(worker);
            }
            Plan::Feed { to, adv, wait } => {
                for &t in TIMES.iter().filter(|t| **t >= resume && **t <= to) {
                    input.advance_to(t);
                    for (r, d) in data(w, t) {
                        input.update(r, d);
                    }
                }
                input.advance_to(adv.max(resume));
                input.flush();
                if let Some(wt) = wait {
                    worker.step_while(|| deadline() && probe.less_than(&wt));
                } else {
                    for _ in 0..50 {
                        worker.step();
                    }
                }
                assert_eq!(handle.error(), None);
                common::drop_dataflows(worker);
            }
            Plan::Close => {
                for &t in TIMES.iter().filter(|t| **t >= resume) {
                    input.advance_to(t);
                    for (r, d) in data(w, t) {
                        input.update(r, d);
                    }
                }
                drop(input);
                let start = std::time::Instant::now();
                while !probe.done() && start.elapsed().as_secs() < 10 {
                    worker.step();
                }
                if !probe.done() {
                    *dn.lock().unwrap() = false;
                }
                assert_eq!(handle.error(), None);
                common::drop_dataflows(worker);
            }
        }
    })
    .unwrap();
    let r = resumes.lock().unwrap().clone();
    assert!(r.iter().all(|x| *x == r[0]), "{r:?}");
    let done = *done.lock().unwrap();
    (log, r[0], done)
}

#[test]
fn uneven_workers_at_the_top_of_the_range_restart_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Run 1: up to MAX-5, advanced to MAX-2.
    let (log, r, _) = run(
        dir.path(),
        Plan::Feed {
            to: M - 5,
            adv: M - 2,
            wait: Some(M - 2),
        },
    );
    assert_eq!(r, 0);
    assert_eq!(at(&log, &(M - 5)), expected(M - 5), "run 1 at MAX-5");
    // Run 2: read only.
    let (log, r, _) = run(dir.path(), Plan::ReadOnly);
    assert_eq!(r, M - 2, "run 2 resume point");
    assert_eq!(at(&log, &(M - 3)), expected(M - 3), "run 2 (read only)");
    // Run 3: MAX-2 fed, advanced to MAX-1 (the greatest time the store takes).
    let (log, r, _) = run(
        dir.path(),
        Plan::Feed {
            to: M - 2,
            adv: M - 1,
            wait: Some(M - 1),
        },
    );
    assert_eq!(r, M - 2, "run 3 resume point");
    assert_eq!(at(&log, &(M - 2)), expected(M - 2), "run 3 at MAX-2");
    // Run 4: read only, twice.
    for i in 0..2 {
        let (log, r, _) = run(dir.path(), Plan::ReadOnly);
        assert_eq!(r, M - 1, "run 4.{i} resume point");
        assert_eq!(at(&log, &(M - 2)), expected(M - 2), "run 4.{i} (read only)");
    }
    // Run 5: worker 1's data at MAX-1, input advanced to MAX (open): time MAX-1 cannot complete before a
    // close (documented); the run stops part way.
    let (log, r, _) = run(
        dir.path(),
        Plan::Feed {
            to: M - 1,
            adv: M,
            wait: None,
        },
    );
    assert_eq!(r, M - 1, "run 5 resume point");
    assert_eq!(at(&log, &(M - 2)), expected(M - 2), "run 5 at MAX-2");
    // Run 6: read only: still MAX-1 to replay.
    let (log, r, _) = run(dir.path(), Plan::ReadOnly);
    assert_eq!(r, M - 1, "run 6 resume point");
    assert_eq!(at(&log, &(M - 2)), expected(M - 2), "run 6 (read only)");
    // Run 7: replay MAX-1 and close.
    let (log, r, done) = run(dir.path(), Plan::Close);
    assert!(done, "run 7 completes after the close");
    assert_eq!(r, M - 1, "run 7 resume point");
    assert_eq!(at(&log, &(M - 1)), expected(M - 1), "run 7 at MAX-1");
    // Run 8: everything served, the source ended.
    let (log, r, _) = run(dir.path(), Plan::ReadOnly);
    let all = log.lock().unwrap().iter().map(|x| x.1).max();
    eprintln!("run 8 resume point {r}, greatest output time {all:?}");
    assert_eq!(
        at(&log, &(M - 1)),
        expected(M - 1),
        "run 8 (read only, source ended)"
    );
}
