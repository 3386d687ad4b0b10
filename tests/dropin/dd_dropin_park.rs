//! Drop-in ports (from an adversarial round, all answering as DD): DD programs that drive their workers with
//! `worker.step_or_park(None)` (DD's `examples/*` idiom when waiting on a probe) rather than
//! `step_while`: a parked worker must be woken when the persisted arrangement's seal finishes, or the
//! program hangs. Each run has a deadline; the answers are compared with DD's in-memory run.

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log = Arc<Mutex<Vec<(String, u64, i64)>>>;

fn state(log: &Log) -> BTreeMap<String, i64> {
    let mut acc = BTreeMap::new();
    for (d, _, r) in log.lock().unwrap().iter() {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Runs `f` on a thread; fails the test if it does not finish within `secs`.
fn with_deadline(secs: u64, what: &str, f: impl FnOnce() + Send + 'static) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => {}
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: no progress within {secs} s (hang)"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: the run panicked"),
    }
}

fn parked_rounds(workers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (p, m): (Log, Log) = Default::default();
    let (pl, ml) = (p.clone(), m.clone());
    with_deadline(
        120,
        &format!("{workers} workers, step_or_park(None)"),
        move || {
            timely::execute(timely::Config::process(workers), move |worker| {
                let probe = ProbeHandle::new();
                let mut input = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, pairs) = scope.new_collection::<(String, u32), isize>();
                    let arranged = pairs.clone().arrange_by_key_persisted(&store, "park").unwrap();
                    let keys = pairs
                        .clone()
                        .map(|(k, _)| k)
                        .arrange_by_self_persisted(&store, "park-keys")
                        .unwrap();
                    let (pl, ml) = (pl.clone(), ml.clone());
                    arranged
                        .reduce(|_k, s, t| t.push((s.len(), 1isize)))
                        .map(|x| format!("reduce {x:?}"))
                        .concat(keys.count_total().map(|x| format!("count {x:?}")))
                        .inner
                        .inspect(move |(d, t, r)| pl.lock().unwrap().push((d.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    pairs
                        .clone()
                        .reduce(|_k, s, t| t.push((s.len(), 1isize)))
                        .map(|x| format!("reduce {x:?}"))
                        .concat(
                            pairs
                                .map(|(k, _)| k)
                                .count_total()
                                .map(|x| format!("count {x:?}")),
                        )
                        .inner
                        .inspect(move |(d, t, r)| ml.lock().unwrap().push((d.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    input
                });
                for round in 0..20u64 {
                    if worker.index() == 0 {
                        for i in 0..5u32 {
                            input.insert((format!("k{}", (round as u32 + i) % 7), i));
                        }
                        if round > 0 {
                            input.remove((format!("k{}", (round as u32 - 1) % 7), 0));
                        }
                    }
                    input.advance_to(round + 1);
                    input.flush();
                    while probe.less_than(input.time()) {
                        worker.step_or_park(None);
                    }
                }
            })
            .unwrap();
        },
    );
    assert!(!state(&m).is_empty());
    assert_eq!(state(&p), state(&m));
}

#[test]
fn step_or_park_none_one_worker() {
    parked_rounds(1);
}

#[test]
fn step_or_park_none_two_workers() {
    parked_rounds(2);
}
