//! From adversarial round 4 (held), as `dd_dropin_mixed.rs`: persisted arrangements against DD's in-memory
//! ones under load on several workers (every update on one key, a thousand times of one update each, a
//! backlog fed before any step), accumulated and compared at every time.
#![allow(clippy::type_complexity)]

use crate::common;
use crate::dd_dropin_mixed::extreme;

use common::compare::{at, deadline, rec, same_at_every_time, Log};

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use timely::dataflow::ProbeHandle;

/// Two workers, every update on one key: 200k updates at one time (distinct vals), then all retracted
/// at the next time, then a few back. count_total, distinct_total, reduce with several outputs, a join
/// against an encoded side, and semijoin — against DD at every time.
#[test]
fn two_workers_one_key_200k_updates_at_one_time_then_retracted() {
    one_key(200_000, Options::default(), false);
}

/// As above with 30k updates, tiny blocks, a tiny memtable budget (spills), merges of two, a durable
/// stream.
#[test]
fn two_workers_one_key_extreme_store_options_durable() {
    one_key(30_000, extreme(), true);
}

fn one_key(n: u64, options: Options, durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    type C = Log<(u32, isize)>;
    type K = Log<u32>;
    type R = Log<(u32, u64)>;
    type J = Log<(u32, (u64, i8))>;
    let logs: (C, C, K, K, R, R, J, J, Log<(u32, u64)>, Log<(u32, u64)>) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u64;
        let (mut input, mut other) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u64), isize>();
            let (oin, o) = scope.new_collection::<(u32, i8), isize>();
            let p = c
                .clone()
                .arrange_by_key_persisted_with(
                    &store,
                    "skew",
                    ddpersist::operators::PersistOptions {
                        durable,
                        ..Default::default()
                    },
                )
                .unwrap();
            rec(p.clone().count_total(), &l.0, &probe);
            rec(c.clone().map(|(k, _)| k).count_total(), &l.1, &probe);
            rec(p.clone().distinct_total(), &l.2, &probe);
            rec(c.clone().map(|(k, _)| k).distinct_total(), &l.3, &probe);
            let red = |_k: &u32, s: &[(&u64, isize)], out: &mut Vec<(u64, isize)>| {
                out.push((s.len() as u64, 1));
                out.push((*s[0].0, 1));
                out.push((*s[s.len() - 1].0, 2));
            };
            rec(p.clone().reduce(red), &l.4, &probe);
            rec(c.clone().reduce(red), &l.5, &probe);
            rec(
                o.clone()
                    .arrange_by_key_encoded()
                    .join_core(
                        p.clone(),
                        |k: &u32, a: &i8, b: &u64| {
                            if b % 1000 == 7 {
                                Some((*k, (*b, *a)))
                            } else {
                                None
                            }
                        },
                    ),
                &l.6,
                &probe,
            );
            rec(
                o.clone()
                    .join_map(c.clone(), |k, a, b| (*k, (*b, *a)))
                    .filter(|x| (x.1).0 % 1000 == 7),
                &l.7,
                &probe,
            );
            rec(
                p.semijoin(o.clone().map(|x| x.0)).filter(|x| x.1 % 999 == 0),
                &l.8,
                &probe,
            );
            rec(
                c.semijoin(o.map(|x| x.0)).filter(|x| x.1 % 999 == 0),
                &l.9,
                &probe,
            );
            (input, oin)
        });
        for i in 0..n {
            if i % 2 == index {
                input.update((42, i), 1);
            }
        }
        if index == 0 {
            other.update((42, 1), 1);
            other.update((42, -3), 2);
        }
        input.advance_to(1);
        other.advance_to(1);
        for i in 0..n {
            if i % 2 == index {
                input.update((42, i), -1);
            }
        }
        input.advance_to(2);
        other.advance_to(2);
        input.advance_to(3);
        other.advance_to(3);
        for i in 0..10u64 {
            if i % 2 == index {
                input.update((42, i * 1000 + 7), 3);
            }
        }
        input.advance_to(4);
        other.advance_to(4);
        input.flush();
        other.flush();
        let ok = deadline(300);
        worker.step_while(|| ok() && probe.less_than(&4));
    })
    .unwrap();
    let times: Vec<u64> = (0..5).collect();
    assert!(!at(&logs.1, &0).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "count_total");
    same_at_every_time(&logs.2, &logs.3, &times, "distinct_total");
    same_at_every_time(&logs.4, &logs.5, &times, "reduce");
    same_at_every_time(&logs.6, &logs.7, &times, "join");
    same_at_every_time(&logs.8, &logs.9, &times, "semijoin");
}

/// Three workers, 1000 times of one update each (inserts and retractions of a few keys, `u32` times,
/// `i32` diffs, `(String, u64)` keys with `()` vals): totals and as_collection -> DD arrange -> join.
#[test]
fn three_workers_a_thousand_times_of_one_update() {
    thousand(Options::default());
}

/// As above with tiny blocks, spills and merges of two on a merge thread.
#[test]
fn three_workers_a_thousand_times_extreme_store_options() {
    thousand(extreme());
}

fn thousand(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    type Key = (String, u64);
    type C = Log<(Key, i32), u32>;
    type K = Log<Key, u32>;
    type J = Log<(Key, u64), u32>;
    let logs: (C, C, K, K, J, J) = Default::default();
    let l = logs.clone();
    let n = 1000u32;
    timely::execute(timely::Config::process(3), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u32;
        let mut input = worker.dataflow::<u32, _, _>(|scope| {
            let (input, c) = scope.new_collection::<Key, i32>();
            let p = c.clone().arrange_by_self_persisted(&store, "thousand").unwrap();
            rec(p.clone().count_total(), &l.0, &probe);
            rec(c.clone().count_total(), &l.1, &probe);
            rec(
                p.clone()
                    .threshold_total(|_, r: &i32| if *r >= 2 { 1i32 } else { 0 }),
                &l.2,
                &probe,
            );
            rec(
                c.clone()
                    .threshold_total(|_, r: &i32| if *r >= 2 { 1i32 } else { 0 }),
                &l.3,
                &probe,
            );
            let again = p
                .as_collection(|k: &Key, _| (k.1 % 3, k.clone()))
                .arrange_by_key();
            let side = c.clone().map(|k| (k.1 % 3, k.1)).arrange_by_key();
            rec(
                again.join_core(side.clone(), |_, a, b| Some((a.clone(), *b))),
                &l.4,
                &probe,
            );
            let dd = c.map(|k| (k.1 % 3, k)).arrange_by_key();
            rec(dd.join_core(side, |_, a, b| Some((a.clone(), *b))), &l.5, &probe);
            input
        });
        for t in 0..n {
            input.advance_to(t);
            if t % 3 == index {
                let k = (format!("s{}", t % 4), (t % 5) as u64);
                let r = if t % 7 < 4 { 1 } else { -1 };
                input.update(k, r);
            }
            if t % 50 == 0 {
                input.flush();
                worker.step();
            }
        }
        input.advance_to(n);
        input.flush();
        let ok = deadline(300);
        worker.step_while(|| ok() && probe.less_than(&n));
    })
    .unwrap();
    let times: Vec<u32> = (0..n).collect();
    assert!(!at(&logs.1, &(n - 1)).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "count_total");
    same_at_every_time(&logs.2, &logs.3, &times, "threshold_total");
    same_at_every_time(
        &logs.4,
        &logs.5,
        &times,
        "as_collection, arrange_by_key, join_core",
    );
}

/// Three workers, a backlog: 100 times of 5,000 updates fed before any step, pipelined seals, a durable
/// stream, a memtable budget of 64 KiB (so the operator waits for seals and the store spills); totals and a
/// reduce against DD at every time.
#[test]
fn three_workers_backlog_pipelined_durable_small_budget() {
    use ddpersist::operators::{PersistOptions, SealMode};
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 64 << 10,
        merge_fan_in: 2,
        compaction_threads: 1,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    type C = Log<(u64, isize)>;
    type R = Log<(u64, (u64, u64))>;
    let logs: (C, C, R, R) = Default::default();
    let l = logs.clone();
    let rounds = 100u64;
    timely::execute(timely::Config::process(3), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u64;
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u64, u64), isize>();
            let opts = PersistOptions {
                durable: true,
                seals: SealMode::Pipelined,
            };
            let p = c
                .clone()
                .arrange_by_key_persisted_with(&store, "backlog", opts)
                .unwrap();
            rec(p.clone().count_total(), &l.0, &probe);
            rec(c.clone().map(|x| x.0).count_total(), &l.1, &probe);
            let red = |_k: &u64, s: &[(&u64, isize)], out: &mut Vec<((u64, u64), isize)>| {
                out.push(((*s[0].0, *s[s.len() - 1].0), 1));
            };
            rec(p.reduce(red), &l.2, &probe);
            rec(c.reduce(red), &l.3, &probe);
            input
        });
        for t in 0..rounds {
            input.advance_to(t);
            for i in 0..5000u64 {
                if i % 3 == index {
                    let k = if i % 2 == 0 { 1 } else { i % 97 };
                    input.update((k, (i * 31 + t) % 4000), if (i + t) % 3 == 0 { -1 } else { 1 });
                }
            }
        }
        input.advance_to(rounds);
        input.flush();
        let ok = deadline(300);
        worker.step_while(|| ok() && probe.less_than(&rounds));
    })
    .unwrap();
    let times: Vec<u64> = (0..rounds).collect();
    assert!(!at(&logs.1, &(rounds - 1)).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "count_total");
    same_at_every_time(&logs.2, &logs.3, &times, "reduce");
}
