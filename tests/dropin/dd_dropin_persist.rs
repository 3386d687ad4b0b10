//! From adversarial round 4 (held): `persist` (PersistManager → Token) and upsert chains feeding DD's in-memory operators
//! and persisted arrangements, against the same dataflow without persistence, at every time.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{at, rec, same_at_every_time, Log};

use ddpersist::operators::{ArrangeTyped, Persist};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

/// Two workers; `persist` of a skewed collection (most updates on one key, retractions to zero, empty
/// times, one large time), then DD's count_total, reduce and join in memory, and a persisted arrangement
/// of the persisted output with its own count_total — all against the same operators on the input.
fn persist_chain(durable: bool) {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::with_options(
        Store::open(dir.path()).unwrap(),
        ManagerOptions {
            durable,
            ..Default::default()
        },
    );
    let store = manager.store().clone();
    type C = Log<(u32, i64)>;
    type R = Log<(u32, u64)>;
    type J = Log<(u32, (u64, u8))>;
    let logs: (C, C, R, R, J, J, C, C) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let token = manager.token("src", index).unwrap();
        let (mut input, mut other) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u64), i64>();
            let (oin, o) = scope.new_collection::<(u32, u8), i64>();
            let (p, _handle) = c.clone().persist(token).unwrap();
            rec(p.clone().map(|x| x.0).count_total(), &l.0, &probe);
            rec(c.clone().map(|x| x.0).count_total(), &l.1, &probe);
            let red = |_k: &u32, s: &[(&u64, i64)], out: &mut Vec<(u64, i64)>| {
                out.push((*s[0].0, 1));
                out.push((s.len() as u64 + 1_000_000, 1));
            };
            rec(p.clone().reduce(red), &l.2, &probe);
            rec(c.clone().reduce(red), &l.3, &probe);
            rec(
                p.clone().join(o.clone()).filter(|x| (x.1).0 % 97 == 0),
                &l.4,
                &probe,
            );
            rec(
                c.clone().join(o.clone()).filter(|x| (x.1).0 % 97 == 0),
                &l.5,
                &probe,
            );
            let a = p.arrange_by_key_persisted(&store, "after").unwrap();
            rec(a.count_total(), &l.6, &probe);
            rec(c.map(|x| x.0).count_total(), &l.7, &probe);
            (input, oin)
        });
        if index == 0 {
            other.update((7, 1), 1);
            other.update((3, 2), 2);
        }
        let big = 50_000u64;
        for t in 0..300u64 {
            input.advance_to(t);
            other.advance_to(t);
            if t == 10 {
                for i in 0..big {
                    if i as usize % 2 == index {
                        input.update((7, i), 1);
                    }
                }
            }
            if t == 11 {
                for i in 0..big {
                    if i as usize % 2 == index {
                        input.update((7, i), -1);
                    }
                }
            }
            if t % 5 == 3 {
                continue; // an empty time
            }
            if t as usize % 2 == index {
                input.update(((t % 4) as u32 + 1, t % 13), if t % 3 == 0 { -1 } else { 1 });
                input.update((7, t % 11), 1);
            }
            if t % 20 == 0 {
                input.flush();
                other.flush();
                worker.step();
            }
        }
        input.advance_to(300);
        other.advance_to(300);
        input.flush();
        other.flush();
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(240), "hang");
            probe.less_than(&300)
        });
    })
    .unwrap();
    let times: Vec<u64> = (0..300).collect();
    assert!(!at(&logs.1, &299).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "persist -> count_total");
    same_at_every_time(&logs.2, &logs.3, &times, "persist -> reduce");
    same_at_every_time(&logs.4, &logs.5, &times, "persist -> join");
    same_at_every_time(
        &logs.6,
        &logs.7,
        &times,
        "persist -> arrange_by_key_persisted -> count_total",
    );
}

#[test]
fn persist_chain_two_workers_not_durable() {
    persist_chain(false);
}

#[test]
fn persist_chain_two_workers_durable() {
    persist_chain(true);
}
