//! `PersistManager` -> `Token` -> `persist`: tokens requested twice, returned by drops (of the token, of a
//! failed build, of a dataflow), for wrong worker indices, from two managers over one store; the passed
//! stream against the input across a rebuild in the same process.

use crate::common;
use ddpersist::operators::Persist;
use ddpersist::{Error, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::{Inspect, Probe};

/// Each worker's `(index, passed updates)`.
type WorkerLogs = Arc<Mutex<Vec<(usize, Vec<((u32, u32), u64, i64)>)>>>;

#[test]
fn token_twice_and_returned() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let t = manager.token("a", 0).unwrap();
    assert!(matches!(manager.token("a", 0), Err(Error::BadInput { .. })));
    let other = manager.clone();
    assert!(
        matches!(other.token("a", 0), Err(Error::BadInput { .. })),
        "a clone shares the claims"
    );
    let t1 = manager.token("a", 1).unwrap();
    let tb = manager.token("b", 0).unwrap();
    assert!(matches!(manager.token("", 0), Err(Error::BadInput { .. })));
    assert_eq!((t.id(), t.worker(), t1.worker(), tb.id()), ("a", 0, 1, "b"));
    drop(t);
    let t = manager.token("a", 0).unwrap();
    drop((t, t1, tb));
    for w in 0..3 {
        drop(manager.token("a", w).unwrap());
    }
}

/// A token for another worker fails the build and comes back; so does one for a worker beyond the
/// peers; a good one then builds, and its dataflow's drop returns it.
#[test]
fn wrong_worker_token_refused_and_returned() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let m = manager.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        for wrong in [1 - index, 7] {
            let token = m.token(&format!("p{index}"), wrong).unwrap();
            let r = worker.dataflow::<u64, _, _>(|scope| {
                let (_input, c) = scope.new_collection::<(u32, u32), i64>();
                c.persist(token).map(|_| ())
            });
            assert!(
                matches!(r, Err(Error::BadInput { .. })),
                "worker {index}, token of {wrong}: {r:?}"
            );
            // The failed build dropped the token.
            drop(
                m.token(&format!("p{index}"), wrong)
                    .expect("token returned after a failed build"),
            );
        }
        common::drop_dataflows(worker);
    })
    .unwrap();
    // Nothing was created under the refused ids with a wrong worker count.
    let store = manager.store();
    for s in store.streams() {
        assert!(
            !s.contains("of7") && !s.contains("w7"),
            "stream {s} created by a refused token"
        );
    }
}

/// Two managers over one store hand out a token each for the same stream and worker: the second
/// operator to build over it must be refused (one writer per stream), never both write.
#[test]
fn two_managers_same_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m1, m2) = (
        PersistManager::new(store.clone()),
        PersistManager::new(store.clone()),
    );
    timely::execute(timely::Config::thread(), move |worker| {
        let (t1, t2) = (m1.token("p", 0).unwrap(), m2.token("p", 0).unwrap());
        let r = worker.dataflow::<u64, _, _>(|scope| {
            let (_i1, c1) = scope.new_collection::<(u32, u32), i64>();
            let (_i2, c2) = scope.new_collection::<(u32, u32), i64>();
            let first = c1.persist(t1).map(|_| ());
            let second = c2.persist(t2).map(|_| ());
            (first, second)
        });
        assert!(r.0.is_ok(), "{:?}", r.0);
        assert!(
            matches!(r.1, Err(Error::BadInput { .. })),
            "the second writer of one stream: {:?}",
            r.1
        );
        common::drop_dataflows(worker);
    })
    .unwrap();
}

/// The passed-through stream equals the input at every time; rebuilt after a drop (tokens taken again
/// from the same manager), the rebuilt output (replay then new input) accumulates to the input at every
/// time from the resume point on.
#[test]
fn pass_through_matches_input_across_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let logs: WorkerLogs = Arc::default();
    let resumes: Arc<Mutex<Vec<u64>>> = Arc::default();
    let input = |t: u64| -> Vec<((u32, u32), i64)> {
        let mut v: Vec<_> = (0..4)
            .map(|i| ((t as u32 * 3 + i) % 11, (t % 3) as u32))
            .map(|d| (d, 1))
            .collect();
        if t > 0 {
            // Retract the first row of the time before.
            v.push(((((t - 1) as u32 * 3) % 11, ((t - 1) % 3) as u32), -1));
        }
        v
    };
    let (m, l, r) = (manager.clone(), logs.clone(), resumes.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        for (run, end) in [(0usize, 6u64), (1, 12)] {
            let token = m.token("p", worker.index()).unwrap();
            let probe = ProbeHandle::new();
            let out = Arc::new(Mutex::new(Vec::new()));
            let o = out.clone();
            let (mut session, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (session, c) = scope.new_collection::<(u32, u32), i64>();
                let (p, handle) = c.persist(token).unwrap();
                p.inner
                    .inspect(move |x| o.lock().unwrap().push(*x))
                    .probe_with(&probe);
                (session, handle)
            });
            let from = handle.resume_at();
            session.advance_to(from);
            for t in from..end {
                if worker.index() == 0 {
                    for (d, diff) in input(t) {
                        session.update(d, diff);
                    }
                }
                session.advance_to(t + 1);
                session.flush();
                worker.step_while(|| probe.less_than(&(t + 1)));
            }
            assert_eq!(handle.error(), None);
            // The token is held by the operator.
            assert!(
                m.token("p", worker.index()).is_err(),
                "token free while its operator runs"
            );
            if run == 0 {
                common::drop_dataflows(worker);
                drop(session);
                // Dropping the dataflow returned the token (taken again at the top of the next run).
            } else {
                drop(session);
                worker.step_while(|| !probe.done());
                assert_eq!(handle.error(), None);
            }
            l.lock().unwrap().push((run, out.lock().unwrap().clone()));
            if run == 1 {
                r.lock().unwrap().push(from);
            }
        }
    })
    .unwrap();
    let logs = logs.lock().unwrap();
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (run, log) in logs.iter() {
        if *run == 0 {
            first.extend(log.iter().cloned())
        } else {
            second.extend(log.iter().cloned())
        }
    }
    let want = |t: u64| {
        let mut acc: BTreeMap<(u32, u32), i64> = BTreeMap::new();
        for s in 0..=t {
            for (d, r) in input(s) {
                *acc.entry(d).or_insert(0) += r;
            }
        }
        acc.retain(|_, r| *r != 0);
        acc
    };
    let at = |log: &[((u32, u32), u64, i64)], t: u64| {
        let mut acc: BTreeMap<(u32, u32), i64> = BTreeMap::new();
        for (d, _s, r) in log.iter().filter(|u| u.1 <= t) {
            *acc.entry(*d).or_insert(0) += r;
        }
        acc.retain(|_, r| *r != 0);
        acc
    };
    for t in 0..6 {
        assert_eq!(at(&first, t), want(t), "first run at {t}");
    }
    let from = *resumes.lock().unwrap().iter().min().unwrap();
    assert!((1..=6).contains(&from), "resume at {from}");
    for t in from - 1..12 {
        assert_eq!(at(&second, t), want(t), "rebuilt run at {t} (resumed at {from})");
    }
}
