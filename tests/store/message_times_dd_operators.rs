//! the persisting operators refuse an input update before its message's time
//! (`operators/time.rs::check_message_times`). Legitimate DD input must never be refused: updates made by
//! DD operators (map, flat_map, join, reduce, concat, negate, `delay` moving times forward, a
//! `map_in_place` on the inner stream moving times forward, region enter/leave, consolidate, distinct,
//! count), two workers with exchange, timely `to_stream` sources with data at times ahead of the message,
//! a timely `Input` advanced and then sent later times, and a restart that replays the input. Every
//! handle must stay free of errors, and the persisted outputs must equal DD's own.

use ddpersist::operators::{ArrangeTyped, Persist, UpsertPersisted};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as DdInput;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::AsCollection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::vec::Map as _;
use timely::dataflow::operators::{Input, Inspect, Probe, ToStream};
use timely::dataflow::ProbeHandle;

/// A collection of `(u32, u32)` pairs at `u64` times.
type Pairs<'s> = differential_dataflow::VecCollection<'s, u64, (u32, u32), i64>;

type Log = Arc<Mutex<Vec<(String, (u32, u32), u64, i64)>>>;

fn push(log: &Log, name: &str, d: (u32, u32), t: u64, r: i64) {
    log.lock().unwrap().push((name.to_string(), d, t, r));
}

/// The log's collections accumulated at time `at` (updates at times <= at), per name.
fn at_time(log: &Log, at: u64) -> BTreeMap<String, BTreeMap<(u32, u32), i64>> {
    let mut m: BTreeMap<String, BTreeMap<(u32, u32), i64>> = BTreeMap::new();
    for (n, d, t, r) in log.lock().unwrap().iter() {
        if *t <= at {
            *m.entry(n.clone()).or_default().entry(*d).or_insert(0) += r;
        }
    }
    for v in m.values_mut() {
        v.retain(|_, r| *r != 0);
    }
    m
}

const ROUNDS: u64 = 12;

/// One run: feeds rounds `from..ROUNDS` (replaying from the resume point), derives collections with DD
/// operators, persists each (arrange, persist, upsert) and logs both DD's and the persisted outputs.
/// Returns the handles' errors.
fn run(dir: &Path, log: &Log, stop_at: u64) -> Vec<String> {
    let store = Store::open(dir).unwrap();
    let manager = PersistManager::new(store.clone());
    let log = log.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let probe = ProbeHandle::<u64>::new();
        let tokens: Vec<_> = (0..4)
            .map(|i| manager.token(&format!("p{i}"), index).unwrap())
            .collect();
        let l = log.clone();
        let (mut input, mut raw, handles) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u32), i64>();
            let (raw, rs) = scope.new_input::<Vec<((u32, u32), u64, i64)>>();
            let rc = rs.as_collection();
            // A timely source whose data times lie ahead of its message's time (0).
            let ahead = vec![((7u32, 1u32), 3u64, 1i64), ((7, 2), 5, 1), ((7, 1), 9, -1)]
                .into_iter()
                .filter(move |_| index == 0)
                .to_stream(scope)
                .as_collection();
            let joined = c
                .clone()
                .arrange_by_key()
                .join_core(rc.clone().map(|(k, v)| (k % 4, v)).arrange_by_key(), |k, a, b| {
                    Some((*k, a + b))
                });
            let reduced = c.clone().concat(rc.clone().negate()).reduce(|_k, s, out| {
                let sum: i64 = s.iter().map(|(v, r)| **v as i64 * *r).sum();
                out.push(((sum.rem_euclid(1000)) as u32, 1));
            });
            let delayed = c.clone().delay(|t| (t / 4 + 1) * 4);
            let shifted = rc.clone().inner.map_in_place(|(_, t, _)| *t += 2).as_collection();
            let counted = c
                .clone()
                .map(|(k, _)| k)
                .arrange_by_self()
                .count_total_core::<i64>()
                .map(|(k, n)| (k, n as u32));
            let distinct = c
                .clone()
                .flat_map(|(k, v)| vec![(k, v % 2), (k + 100, 0)])
                .arrange_by_self()
                .threshold_total(|_, r| if *r > 0 { 1i64 } else { 0 });
            let regioned = scope.region(|inner| {
                c.clone()
                    .enter_region(inner)
                    .map(|(k, v)| (k, v + 1))
                    .consolidate()
                    .leave_region(scope)
            });
            let derived: Vec<(&str, Pairs<'_>)> = vec![
                ("joined", joined),
                ("reduced", reduced),
                ("delayed", delayed),
                ("shifted", shifted),
                ("counted", counted),
                ("distinct", distinct),
                ("regioned", regioned),
                ("ahead", ahead),
            ];
            let mut handles = Vec::new();
            let mut tokens = tokens.into_iter();
            for (i, (name, coll)) in derived.into_iter().enumerate() {
                let l1 = l.clone();
                let dd_name = format!("dd:{name}");
                coll.inner
                    .clone()
                    .inspect(move |(d, t, r)| push(&l1, &dd_name, *d, *t, *r))
                    .probe_with(&probe);
                // Arrange persisted, for all; persist and upsert for some.
                let id = format!("a-{name}");
                let a = coll.clone().arrange_by_key_persisted(&store, &id).unwrap();
                handles.push((id.clone(), a.handle().unwrap().clone().errors().clone()));
                let l2 = l.clone();
                a.as_collection(|k: &u32, v: &u32| (*k, *v))
                    .inner
                    .inspect(move |(d, t, r)| push(&l2, &id, *d, *t, *r))
                    .probe_with(&probe);
                if i % 2 == 0 {
                    if let Some(token) = tokens.next() {
                        let (p, ph) = coll.clone().persist(token).unwrap();
                        let id = format!("p-{name}");
                        handles.push((id.clone(), ph.errors().clone()));
                        let l3 = l.clone();
                        p.inner
                            .inspect(move |(d, t, r)| push(&l3, &id, *d, *t, *r))
                            .probe_with(&probe);
                    }
                }
                if i % 3 == 0 {
                    // Upserts of the collection's updates (insertions set, deletions remove).
                    let ups = coll
                        .inner
                        .map(|((k, v), t, r)| ((k, v), if r > 0 { Some(v) } else { None }, t));
                    let ups = ups.map(|((k, v), o, t)| ((k, v), o.map(|_| 1u32), t));
                    let (u, uh) = ups.upsert_persisted(&store, &format!("u-{name}")).unwrap();
                    handles.push((format!("u-{name}"), uh.errors().clone()));
                    u.inner.probe_with(&probe);
                }
            }
            (input, raw, handles)
        });
        let resume = {
            // Every handle agrees on the dataflow's resume point; take the least stream upper seen.
            let _ = &handles;
            0
        };
        let _ = resume;
        let deadline = Instant::now();
        for round in 0..stop_at {
            // Advance first, then send at later times (ahead of the message's time).
            input.advance_to(round);
            raw.advance_to(round);
            if (round as usize) % 2 == index {
                input.update_at(((round % 5) as u32, (round % 3) as u32), round + 1, 1);
                input.update(((round % 4) as u32, round as u32), 1);
                if round > 2 {
                    input.update(((round % 4) as u32, round as u32 - 2), -1);
                }
                raw.send((((round % 6) as u32, (round % 2) as u32), round + (round % 3), 1));
            }
            input.advance_to(round + 1);
            raw.advance_to(round + 1);
            input.flush();
            raw.flush();
            while probe.less_than(&(round + 1)) {
                assert!(
                    deadline.elapsed() < Duration::from_secs(60),
                    "hang at round {round}"
                );
                worker.step();
                if handles.iter().any(|(_, e)| e.is_set()) {
                    break;
                }
            }
        }
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        drop((input, raw));
        handles
            .iter()
            .filter_map(|(id, e)| e.message().map(|m| format!("worker {index} {id}: {m}")))
            .collect::<Vec<_>>()
    })
    .unwrap()
    .join()
    .into_iter()
    .flat_map(|r| r.unwrap())
    .collect()
}

#[test]
fn dd_operators_feeding_persisting_operators_are_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let errors = run(dir.path(), &log, ROUNDS);
    assert!(errors.is_empty(), "legitimate DD input refused: {errors:?}");
    // The persisted arrangements and pass-throughs equal DD's own collections at every complete time.
    for at in 0..ROUNDS {
        let m = at_time(&log, at);
        for (name, want) in m.iter().filter(|(n, _)| n.starts_with("dd:")) {
            let base = &name[3..];
            for prefix in ["a-", "p-"] {
                let id = format!("{prefix}{base}");
                if let Some(got) = m.get(&id) {
                    assert_eq!(got, want, "{id} at time {at}");
                } else if prefix == "a-" {
                    assert!(want.is_empty(), "{id} at time {at}: nothing, DD has {want:?}");
                }
            }
        }
    }
}

#[test]
fn a_restart_replaying_the_same_input_is_never_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log: Log = Arc::default();
    let errors = run(dir.path(), &log, ROUNDS / 2);
    assert!(errors.is_empty(), "first run: {errors:?}");
    // Second run: the input replayed from time 0 (below every persisted upper), then continued.
    let log: Log = Arc::default();
    let errors = run(dir.path(), &log, ROUNDS);
    assert!(errors.is_empty(), "restart replaying its input: {errors:?}");
    let m = at_time(&log, ROUNDS - 1);
    for (name, want) in m.iter().filter(|(n, _)| n.starts_with("dd:")) {
        let id = format!("a-{}", &name[3..]);
        // The arrangement replays what it holds and takes the rest: at the end, DD's collection.
        let got = m.get(&id).cloned().unwrap_or_default();
        assert_eq!(&got, want, "{id} after the restart");
    }
}
