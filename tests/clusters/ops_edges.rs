//! Edges of the persisted operators a user meets: keys and vals that encode to nothing (`()`, and
//! `String::new()`), vals of megabytes, a key over the store's limit, and hundreds of persisted ids in
//! one dataflow; each across a restart (a new `Store::open`), against DD in memory.

use crate::common;
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log<D> = Arc<Mutex<Vec<(D, u64, isize)>>>;

/// One run over `dir` with `peers` workers: arranges `((), String)` ("unit") and `(String, ())`
/// ("empty", by self) persisted, logs both arrangements' collections and `count_total` of "unit", feeds
/// `rounds` (time t: the updates `rounds[t]`) from the agreed resume point (worker 0), steps until the
/// probe passes the end, drops the dataflow. Returns the three logs.
#[allow(clippy::type_complexity)]
fn unit_run(
    dir: &Path,
    peers: usize,
    rounds: &[Vec<(String, isize)>],
) -> (
    Vec<(((), String), u64, isize)>,
    Vec<(String, u64, isize)>,
    Vec<(((), isize), u64, isize)>,
) {
    let store = Store::open(dir).unwrap();
    let l1: Log<((), String)> = Default::default();
    let l2: Log<String> = Default::default();
    let l3: Log<((), isize)> = Default::default();
    let (a, b, c) = (l1.clone(), l2.clone(), l3.clone());
    let rounds = rounds.to_vec();
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::<u64>::new();
        let (a, b, c) = (a.clone(), b.clone(), c.clone());
        let (mut i1, mut i2, h1, h2) = worker.dataflow::<u64, _, _>(|scope| {
            let (i1, unit) = scope.new_collection::<((), String), isize>();
            let (i2, empty) = scope.new_collection::<String, isize>();
            let u = unit.arrange_by_key_persisted(&store, "unit").unwrap();
            let h1 = u.handle().unwrap().clone();
            u.clone()
                .as_collection(|k: &(), v: &String| (*k, v.clone()))
                .inner
                .inspect(move |(d, t, r)| a.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&probe);
            u.count_total()
                .inner
                .inspect(move |(d, t, r)| c.lock().unwrap().push((*d, *t, *r)))
                .probe_with(&probe);
            let e = empty.arrange_by_self_persisted(&store, "empty").unwrap();
            let h2 = e.handle().unwrap().clone();
            e.as_collection(|k: &String, _: &()| k.clone())
                .inner
                .inspect(move |(d, t, r)| b.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&probe);
            (i1, i2, h1, h2)
        });
        let resume = ddpersist::operators::resume_at(worker, &[h1.resume_state(), h2.resume_state()]);
        i1.advance_to(resume);
        i2.advance_to(resume);
        let end = rounds.len() as u64;
        for t in resume..end {
            i1.advance_to(t);
            i2.advance_to(t);
            if worker.index() == 0 {
                for (s, d) in &rounds[t as usize] {
                    i1.update(((), s.clone()), *d);
                    i2.update(s.clone(), *d);
                }
            }
        }
        i1.advance_to(end.max(resume));
        i2.advance_to(end.max(resume));
        i1.flush();
        i2.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe.less_than(&end.max(resume)) {
            assert!(
                Instant::now() < deadline,
                "hang: {:?} {:?}",
                h1.error(),
                h2.error()
            );
            worker.step();
        }
        common::drop_dataflows(worker);
    })
    .unwrap();
    let out = (
        l1.lock().unwrap().clone(),
        l2.lock().unwrap().clone(),
        l3.lock().unwrap().clone(),
    );
    out
}

fn acc<D: Ord + Clone>(log: &[(D, u64, isize)], t: u64) -> BTreeMap<D, isize> {
    let mut m = BTreeMap::new();
    for (d, time, r) in log {
        if *time <= t {
            *m.entry(d.clone()).or_insert(0) += r;
        }
    }
    m.retain(|_, r| *r != 0);
    m
}

/// `()` keys (every update under one key that encodes to nothing) and `String::new()` keys with `()`
/// vals, through persisted arrangements, `count_total` and two restarts with 2 workers: the same
/// collections as DD in memory at every time.
#[test]
fn keys_and_vals_that_encode_to_nothing_through_arrangements_and_restarts() {
    let rounds: Vec<Vec<(String, isize)>> = vec![
        vec![(String::new(), 1), ("a".into(), 2)],
        vec![(String::new(), 1)],
        vec![(String::new(), -2), ("\0".into(), 1)],
        vec![("a".into(), -1), ("".into(), 3)],
        vec![],
        vec![("\0\0".into(), 1), ("".into(), -3)],
    ];
    let want = |t: u64| -> BTreeMap<String, isize> {
        let mut m = BTreeMap::new();
        for (s, d) in rounds.iter().take(t as usize + 1).flatten() {
            *m.entry(s.clone()).or_insert(0) += d;
        }
        m.retain(|_, d| *d != 0);
        m
    };
    let dir = tempfile::tempdir().unwrap();
    for end in [2, 4, 6] {
        let (unit, empty, count) = unit_run(dir.path(), 2, &rounds[..end]);
        // Restarted arrangements re-emit their history as of their since (as DD's compacted traces):
        // compare at times from the greatest since on.
        let store = Store::open(dir.path()).unwrap();
        let since = (0..2)
            .flat_map(|w| ["unit", "empty"].map(|id| ddpersist::operators::worker_stream_id(id, w, 2)))
            .map(|s| store.since(&s).unwrap())
            .max()
            .unwrap();
        drop(store);
        for t in since..end as u64 {
            let w = want(t);
            let got_unit: BTreeMap<String, isize> =
                acc(&unit, t).into_iter().map(|(((), s), d)| (s, d)).collect();
            assert_eq!(got_unit, w, "unit at {t} (run to {end})");
            assert_eq!(acc(&empty, t), w, "empty at {t} (run to {end})");
            let total: isize = w.values().sum();
            let want_count: BTreeMap<((), isize), isize> = if total == 0 {
                BTreeMap::new()
            } else {
                [(((), total), 1)].into()
            };
            assert_eq!(acc(&count, t), want_count, "count at {t} (run to {end})");
        }
    }
}

/// Vals of 6 MiB through a persisted arrangement, two workers, a restart: served whole.
#[test]
fn vals_of_megabytes_through_an_arrangement_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let big = |i: u64| -> Vec<u8> { (0..(6u64 << 20)).map(|j| (j * 31 + i) as u8).collect() };
    for run in 0..2u64 {
        let store = Store::open(dir.path()).unwrap();
        let log: Log<(u64, Vec<u8>)> = Default::default();
        let l = log.clone();
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::<u64>::new();
            let l = l.clone();
            let (mut input, h) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u64, Vec<u8>), isize>();
                let a = c.arrange_by_key_persisted(&store, "big").unwrap();
                let h = a.handle().unwrap().clone();
                a.as_collection(|k: &u64, v: &Vec<u8>| (*k, v.clone()))
                    .inner
                    .inspect(move |(d, t, r)| l.lock().unwrap().push((d.clone(), *t, *r)))
                    .probe_with(&probe);
                (input, h)
            });
            let resume = ddpersist::operators::resume_at(worker, &[h.resume_state()]);
            input.advance_to(resume);
            if run == 0 && worker.index() == 0 {
                for i in 0..3 {
                    input.advance_to(i);
                    input.update((i, big(i)), 1);
                }
            }
            input.advance_to(3.max(resume));
            input.flush();
            let deadline = Instant::now() + Duration::from_secs(60);
            while probe.less_than(&3) {
                assert!(Instant::now() < deadline, "hang: {:?}", h.error());
                worker.step();
            }
            assert_eq!(h.error(), None);
            common::drop_dataflows(worker);
        })
        .unwrap();
        let log = log.lock().unwrap();
        let got = acc(&log, 2);
        assert_eq!(got.len(), 3, "run {run}");
        for ((i, v), d) in got {
            assert!(d == 1 && v == big(i), "run {run}: val of key {i} differs");
        }
    }
}

/// A key over the store's 16 MiB limit given to a persisted arrangement: the operator reports an error
/// in its handle and holds its frontier (no panic, nothing served as complete).
#[test]
fn a_key_over_the_limit_through_an_arrangement_is_an_error_in_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let seen: Arc<Mutex<(Option<String>, bool)>> = Default::default();
    let s = seen.clone();
    timely::execute(timely::Config::process(1), move |worker| {
        let probe = ProbeHandle::<u64>::new();
        let (mut input, h) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(Vec<u8>, u64), isize>();
            let a = c.arrange_by_key_persisted(&store, "huge").unwrap();
            let h = a.handle().unwrap().clone();
            a.as_collection(|k: &Vec<u8>, v: &u64| (k.len(), *v))
                .inner
                .probe_with(&probe);
            (input, h)
        });
        input.update((vec![1u8; (16 << 20) + 10], 1), 1);
        input.update((vec![2u8; 10], 1), 1);
        input.advance_to(1);
        input.flush();
        let deadline = Instant::now() + Duration::from_secs(20);
        while h.error().is_none() && Instant::now() < deadline {
            worker.step();
        }
        for _ in 0..100 {
            worker.step();
        }
        *s.lock().unwrap() = (h.error(), probe.less_than(&1));
        common::drop_dataflows(worker);
    })
    .unwrap();
    let (error, held) = seen.lock().unwrap().clone();
    assert!(error.is_some(), "no error for a key over the limit");
    assert!(held, "the frontier passed a time whose data was refused");
}

/// 150 persisted arrangement ids in one dataflow of 2 workers (600 worker streams... 300), 4 times, then
/// a restart: every id serves its rows, and the restart serves them all again.
#[test]
fn hundreds_of_persisted_ids_in_one_dataflow() {
    let ids: usize = std::env::var("DDPERSIST_CLUSTERS_IDS").map_or(150, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    for run in 0..2u64 {
        let store = Store::open(dir.path()).unwrap();
        let log: Log<(usize, u64)> = Default::default();
        let l = log.clone();
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::<u64>::new();
            let (mut input, handles) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(usize, u64), isize>();
                let mut handles = Vec::new();
                for id in 0..ids {
                    let l = l.clone();
                    let a = c
                        .clone()
                        .filter(move |(i, _)| *i == id)
                        .arrange_by_key_persisted(&store, &format!("id{id}"))
                        .unwrap();
                    handles.push(a.handle().unwrap().clone());
                    a.as_collection(|k: &usize, v: &u64| (*k, *v))
                        .inner
                        .inspect(move |(d, t, r)| l.lock().unwrap().push((*d, *t, *r)))
                        .probe_with(&probe);
                }
                (input, handles)
            });
            let states: Vec<_> = handles.iter().map(|h| h.resume_state()).collect();
            let resume = ddpersist::operators::resume_at(worker, &states);
            input.advance_to(resume);
            for t in resume..4 {
                input.advance_to(t);
                if worker.index() == 0 {
                    for id in 0..ids {
                        input.update((id, t), 1);
                    }
                }
            }
            input.advance_to(4.max(resume));
            input.flush();
            let deadline = Instant::now() + Duration::from_secs(120);
            while probe.less_than(&4) {
                assert!(Instant::now() < deadline, "hang");
                worker.step();
            }
            common::drop_dataflows(worker);
        })
        .unwrap();
        let got = acc(&log.lock().unwrap(), 3);
        assert_eq!(got.len(), ids * 4, "run {run}");
        assert!(got.values().all(|d| *d == 1), "run {run}");
        eprintln!("run {run}: {:?}", start.elapsed());
    }
}
