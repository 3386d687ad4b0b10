//! From adversarial round 4 (held): a persisted arrangement entered into `scope.iterative::<u32, _, _>` at `u32`
//! outer times over many rounds, with store merges running (tiny blocks, merges of two) and pipelined
//! seals, three workers; the loop's result leaves and feeds a persisted arrangement and totals; against
//! DD at every outer time.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{at, rec, same_at_every_time};

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistOptions, SealMode};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Variable;
use differential_dataflow::operators::CountTotal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::order::Product;

type Log<D, T = u32> = Arc<Mutex<Vec<(D, T, i64)>>>;

fn run(seals: SealMode, options: Options, workers: usize, rounds: u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    type D = Log<(u32, u32)>;
    type C = Log<(u32, isize)>;
    let logs: (D, D, C, C) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u32;
        let peers = worker.peers() as u32;
        let (mut edges, mut roots) = worker.dataflow::<u32, _, _>(|scope| {
            let (ein, e) = scope.new_collection::<(u32, u32), isize>();
            let (rin, r) = scope.new_collection::<u32, isize>();
            let opts = PersistOptions {
                seals,
                ..Default::default()
            };
            let pe = e
                .clone()
                .arrange_by_key_persisted_with(&store, "edges", opts)
                .unwrap();
            // Distances (hops) from the roots, bounded; DD's explicit iterative scope and Variable.
            let ours = scope.iterative::<u32, _, _>(|inner| {
                let edges = pe.clone().enter(inner);
                let start = r.clone().map(|x| (x, 0u32)).enter(inner);
                let (var, dists) = Variable::new_from(start.clone(), Product::new(Default::default(), 1));
                let next = dists
                    .clone()
                    .arrange_by_key_encoded()
                    .join_core(
                        edges,
                        |_n: &u32, d: &u32, m: &u32| if *d < 6 { Some((*m, d + 1)) } else { None },
                    )
                    .concat(start)
                    .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)));
                var.set(next.clone());
                next.leave(scope)
            });
            let theirs = scope.iterative::<u32, _, _>(|inner| {
                let edges = e.clone().enter(inner).arrange_by_key();
                let start = r.clone().map(|x| (x, 0u32)).enter(inner);
                let (var, dists) = Variable::new_from(start.clone(), Product::new(Default::default(), 1));
                let next = dists
                    .clone()
                    .arrange_by_key()
                    .join_core(
                        edges,
                        |_n: &u32, d: &u32, m: &u32| if *d < 6 { Some((*m, d + 1)) } else { None },
                    )
                    .concat(start)
                    .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)));
                var.set(next.clone());
                next.leave(scope)
            });
            rec(ours.clone(), &l.0, &probe);
            rec(theirs.clone(), &l.1, &probe);
            let po = ours
                .map(|(_, d)| d)
                .arrange_by_self_persisted(&store, "dists")
                .unwrap();
            rec(po.count_total(), &l.2, &probe);
            rec(theirs.map(|(_, d)| d).count_total(), &l.3, &probe);
            (ein, rin)
        });
        let n = 60u32;
        for t in 0..rounds {
            edges.advance_to(t);
            roots.advance_to(t);
            if t == 0 {
                for i in 0..n {
                    if i % peers == index {
                        edges.update((i, (i + 1) % n), 1);
                        edges.update((i, (i * 7 + 3) % n), 1);
                    }
                }
                if index == 0 {
                    roots.update(0, 1);
                }
            } else if t % peers == index {
                // Remove one chord, add another; now and then move the root.
                let i = (t * 13) % n;
                let prev = t - 1;
                let _ = prev;
                edges.update((i, (i * 7 + 3) % n), -1);
                edges.update((i, (i * 7 + 3 + t) % n), 1);
                edges.update(((i + 5) % n, (i * 7 + 3 + t) % n), 1);
                if t % 10 == 0 {
                    roots.update((t / 10) % n, 1);
                }
            }
            edges.advance_to(t + 1);
            roots.advance_to(t + 1);
            edges.flush();
            roots.flush();
            if t % 4 == 0 {
                let start = Instant::now();
                worker.step_while(|| {
                    assert!(start.elapsed() < Duration::from_secs(120), "hang");
                    probe.less_than(&(t + 1))
                });
            }
        }
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(120), "hang");
            probe.less_than(&rounds)
        });
    })
    .unwrap();
    let times: Vec<u32> = (0..rounds).collect();
    assert!(!at(&logs.1, &(rounds - 1)).is_empty());
    same_at_every_time(
        &logs.0,
        &logs.1,
        &times,
        "iterate over an entered persisted arrangement",
    );
    same_at_every_time(
        &logs.2,
        &logs.3,
        &times,
        "left loop -> arrange_by_self_persisted -> count_total",
    );
}

fn extreme() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        memtable_budget_bytes: 2048,
        compaction_threads: 1,
        ..Options::default()
    }
}

#[test]
fn loops_pipelined_seals_extreme_store_three_workers() {
    run(SealMode::Pipelined, extreme(), 3, 60);
}

#[test]
fn loops_inline_seals_one_worker() {
    run(SealMode::Inline, Options::default(), 1, 60);
}

#[test]
fn loops_adaptive_seals_extreme_store_two_workers() {
    run(SealMode::Adaptive, extreme(), 2, 60);
}
