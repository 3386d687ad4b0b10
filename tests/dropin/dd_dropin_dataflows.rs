//! Drop-in checks (written by an adversarial round of this session), dataflows: persisted arrangements in loops (`enter`, nested `iterate`,
//! `reduce` over an entered arrangement), imports into a second dataflow (`import`, `import_frontier`),
//! signed (`i32`) times below zero, empty inputs, full retractions, two workers. Each answer is compared
//! with the same program over DD's in-memory `arrange_by_key()`.

// Tuples of output logs, one per operator compared.
#![allow(clippy::type_complexity)]

use crate::common;

use common::dropin::{consolidated, final_state, graph, record, Edge, Log};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, Iterate};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// Label propagation (the least label reaching each node) with the edges a persisted arrangement entered
/// into `iterate`, the per-source least out-neighbour computed by `reduce` over the entered arrangement
/// inside the loop, and a nested `iterate` entering the arrangement twice. DD's program is the same over
/// `arrange_by_key()`.
#[test]
fn loops_over_entered_persisted_edges_answer_as_dds() {
    loops(false);
}

/// As [`loops_over_entered_persisted_edges_answer_as_dds`], each round stepped to completion before the next.
#[test]
fn loops_round_by_round_answer_as_dds() {
    loops(true);
}

fn loops(step_each_round: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs: (Log<(u32, u32)>, Log<(u32, u32)>, Log<(u32, u32)>, Log<(u32, u32)>) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, edges) = scope.new_collection::<Edge, isize>();
            let p = edges.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let d = edges.clone().arrange_by_key();
            let nodes = edges.clone().map(|(s, _)| (s, s));

            // Persisted: label propagation; reduce over the entered arrangement inside the loop.
            let labels_p = nodes.clone().iterate(|scope, inner| {
                let e = p.clone().enter(scope);
                let least = e.clone().reduce(|_s, vals, out| out.push((*vals[0].0, 1isize)));
                e.join_map(inner.clone(), |_s, d, l| (*d, *l))
                    .concat(least.map(|(s, d)| (d, s)))
                    .concat(inner)
                    .reduce(|_n, s, out| out.push((*s[0].0, 1)))
            });
            let labels_d = nodes.clone().iterate(|scope, inner| {
                let e = d.clone().enter(scope);
                let least = e
                    .clone()
                    .as_collection(|s, d| (*s, *d))
                    .reduce(|_s, vals, out| out.push((*vals[0].0, 1isize)));
                e.join_core(inner.clone().arrange_by_key(), |_s, d, l| Some((*d, *l)))
                    .concat(least.map(|(s, d)| (d, s)))
                    .concat(inner)
                    .reduce(|_n, s, out| out.push((*s[0].0, 1)))
            });
            record(labels_p, &l.0, &probe);
            record(labels_d, &l.1, &probe);

            // Nested iterate: two-hop reachability from each node, inner loop over the doubly entered edges.
            let hops_p = nodes.clone().iterate(|outer, reach| {
                let e1 = p.clone().enter(outer);
                let step = e1.join_map(reach.clone(), |_s, d, origin| (*d, *origin));
                let e1b = p.clone().enter(outer);
                step.iterate(|inner, x| {
                    let e2 = e1b.enter(inner);
                    e2.semijoin(x.clone().map(|(n, _)| n))
                        .map(|(s, _)| (s, s))
                        .concat(x)
                        .distinct()
                })
                .concat(reach)
                .distinct()
            });
            let hops_d = nodes.iterate(|outer, reach| {
                let e1 = d.clone().enter(outer);
                let step = e1.join_core(reach.clone().arrange_by_key(), |_s, d, origin| {
                    Some((*d, *origin))
                });
                let e1b = d.clone().enter(outer);
                step.iterate(|inner, x| {
                    let e2 = e1b.enter(inner);
                    e2.as_collection(|s, d| (*s, *d))
                        .semijoin(x.clone().map(|(n, _)| n))
                        .map(|(s, _)| (s, s))
                        .concat(x)
                        .distinct()
                })
                .concat(reach)
                .distinct()
            });
            record(hops_p, &l.2, &probe);
            record(hops_d, &l.3, &probe);
            input
        });
        for round in 0..6u64 {
            input.advance_to(round);
            for (e, r) in graph(round) {
                input.update(e, r);
            }
            if step_each_round {
                input.advance_to(round + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(round + 1)));
            }
        }
        input.advance_to(6);
        input.flush();
        worker.step_while(|| probe.less_than(&6));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "label propagation");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "nested iterate");
}

/// `trace.import(scope)` and `trace.import_frontier(scope, name)` into a second dataflow built after the
/// first ran some rounds (and, for `import_frontier`, after `set_logical_compaction`), then `reduce`,
/// `count_total` and `join` there; DD's `arrange_by_key().trace` the same way.
#[test]
fn imports_into_a_second_dataflow_answer_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type L = Log<(u32, u32)>;
    let logs: (L, L, L, L, Log<(u32, isize)>, Log<(u32, isize)>) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, edges) = scope.new_collection::<Edge, isize>();
            let p = edges.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let d = edges.arrange_by_key();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        for round in 0..3u64 {
            input.advance_to(round);
            for (e, r) in graph(round) {
                input.update(e, r);
            }
        }
        input.advance_to(3);
        input.flush();
        worker.step_while(|| probe.less_than(&3));
        use differential_dataflow::trace::TraceReader;
        let since = timely::progress::Antichain::from_elem(2u64);
        tp.set_logical_compaction(since.borrow());
        td.set_logical_compaction(since.borrow());
        let probe2 = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let ip = tp.import(scope);
            let id = td.import(scope);
            record(
                ip.clone()
                    .reduce(|_s, v, out| out.push((*v.last().unwrap().0, 1isize))),
                &l.0,
                &probe2,
            );
            record(
                id.clone()
                    .as_collection(|s, d| (*s, *d))
                    .reduce(|_s, v, out| out.push((*v.last().unwrap().0, 1isize))),
                &l.1,
                &probe2,
            );
            record(
                ip.clone()
                    .join_map(id.clone().as_collection(|s, d| (*d, *s)), |_m, a, b| (*a, *b)),
                &l.2,
                &probe2,
            );
            record(
                id.clone().join_core(
                    id.clone().as_collection(|s, d| (*d, *s)).arrange_by_key(),
                    |_m, a, b| Some((*a, *b)),
                ),
                &l.3,
                &probe2,
            );
            let (fp, _bp) = tp.import_frontier(scope, "frontier");
            let (fd, _bd) = td.import_frontier(scope, "frontier");
            record(fp.as_collection(|s, _| *s).count_total(), &l.4, &probe2);
            record(fd.as_collection(|s, _| *s).count_total(), &l.5, &probe2);
        });
        for round in 3..5u64 {
            for (e, r) in graph(round) {
                input.update(e, r);
            }
            input.advance_to(round + 1);
            input.flush();
            worker.step_while(|| probe2.less_than(&(round + 1)));
        }
    });
    assert!(!final_state(&logs.1).is_empty());
    // Imports start from a compacted trace: compare the accumulated collections and each later time.
    assert_eq!(final_state(&logs.0), final_state(&logs.1), "import + reduce");
    assert_eq!(final_state(&logs.2), final_state(&logs.3), "import + join");
    assert_eq!(
        consolidated(&logs.4),
        consolidated(&logs.5),
        "import_frontier + count_total"
    );
}

/// Times of type `i32` (what Rust infers for `advance_to(-3)`), at and below zero.
#[test]
fn negative_i32_times_answer_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs: (Log<(String, isize), i32>, Log<(String, isize), i32>) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow(|scope| {
            let (input, keys) = scope.new_collection::<String, isize>();
            let (a, b) = (l.0.clone(), l.1.clone());
            keys.clone()
                .arrange_by_self_persisted(&store, "keys")
                .unwrap()
                .count_total()
                .inner
                .inspect(move |(x, t, r)| a.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            keys.count_total()
                .inner
                .inspect(move |(x, t, r)| b.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            input
        });
        input.insert("min".to_string());
        for t in [-100, -3, -1, 0, 2] {
            input.advance_to(t);
            input.insert(format!("k{}", t.rem_euclid(3)));
            if t > -3 {
                input.remove("min".to_string());
            }
        }
        input.advance_to(3);
        input.flush();
        worker.step_while(|| probe.less_than(&3));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1));
}

/// An arrangement that never receives an update: its operators' frontiers advance with the input's, as DD's.
#[test]
fn empty_input_frontiers_advance() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut other) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, String), isize>();
            let (other, others) = scope.new_collection::<(u64, u8), isize>();
            let p = pairs.clone().arrange_by_key_persisted(&store, "empty").unwrap();
            p.clone().join(others.clone()).inner.probe_with(&probe);
            p.clone()
                .reduce(|_k, s, out| out.push((s.len(), 1isize)))
                .inner
                .probe_with(&probe);
            p.clone().count_total().inner.probe_with(&probe);
            p.clone()
                .semijoin(others.clone().map(|(k, _)| k))
                .inner
                .probe_with(&probe);
            p.clone()
                .antijoin(others.map(|(k, _)| k))
                .inner
                .probe_with(&probe);
            p.as_collection(|k, v| (*k, v.clone())).inner.probe_with(&probe);
            (input, other)
        });
        for t in 1..4u64 {
            input.advance_to(t);
            other.advance_to(t);
            input.flush();
            other.flush();
            let mut steps = 0;
            worker.step_while(|| {
                steps += 1;
                assert!(steps < 100_000, "probe stuck below {t}");
                probe.less_than(&t)
            });
        }
    });
}

/// Two workers: a global aggregate under the unit key (`map(|x| ((), x))`, DD's idiom), a key fully retracted
/// (reduce must retract its output), joins with negative diffs.
#[test]
fn two_workers_unit_key_retractions_and_negative_joins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type L = Log<((), i64)>;
    type J = Log<(u32, (i64, String))>;
    let logs: (L, L, J, J, Log<(u32, i64)>, Log<(u32, i64)>) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let mut inputs = worker.dataflow::<u64, _, _>(|scope| {
            let (in1, xs) = scope.new_collection::<(u32, i64), isize>();
            let (in2, ys) = scope.new_collection::<(u32, String), isize>();
            let unit = xs.clone().map(|(_, x)| ((), x.unsigned_abs()));
            let p = unit.clone().arrange_by_key_persisted(&store, "unit").unwrap();
            let sum = |_: &(), s: &[(&u64, isize)], out: &mut Vec<(i64, isize)>| {
                out.push((s.iter().map(|(v, r)| **v as i64 * *r as i64).sum::<i64>(), 1))
            };
            record(p.reduce(sum), &l.0, &probe);
            record(unit.reduce(sum), &l.1, &probe);
            let px = xs.clone().arrange_by_key_persisted(&store, "xs").unwrap();
            record(px.clone().join(ys.clone()), &l.2, &probe);
            record(xs.clone().join(ys.clone()), &l.3, &probe);
            record(px.antijoin(ys.clone().map(|(k, _)| k)), &l.4, &probe);
            record(xs.antijoin(ys.map(|(k, _)| k)), &l.5, &probe);
            (in1, in2)
        });
        for round in 0..4u64 {
            inputs.0.advance_to(round);
            inputs.1.advance_to(round);
            if index == 0 {
                for i in 0..6u32 {
                    let x = (i as i64 - 3) * (round as i64 + 1);
                    inputs.0.update((i % 3, x), if round % 2 == 0 { 1 } else { -1 });
                    inputs.1.update(
                        (i % 4, format!("y{}", i + round as u32)),
                        if i % 2 == 0 { 2 } else { -1 },
                    );
                }
            }
        }
        inputs.0.advance_to(4);
        inputs.1.advance_to(4);
        inputs.0.flush();
        inputs.1.flush();
        worker.step_while(|| probe.less_than(&4));
    })
    .unwrap();
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "unit-key reduce");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "join");
    assert_eq!(consolidated(&logs.4), consolidated(&logs.5), "antijoin");
}

/// Large keys and vals (a 4 MiB val, a 1 MiB key), empty keys and vals (`()` by `()`), many vals under one
/// key, through `reduce`, `count_total`, `join` and `as_collection`, against DD.
#[test]
fn big_empty_and_wide_records_answer_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type S = Log<(String, usize)>;
    let logs: (
        S,
        S,
        Log<((), isize)>,
        Log<((), isize)>,
        Log<(u32, usize)>,
        Log<(u32, usize)>,
    ) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut big, mut unit, mut wide) = worker.dataflow::<u64, _, _>(|scope| {
            let (big_in, big) = scope.new_collection::<(String, String), isize>();
            let (unit_in, unit) = scope.new_collection::<(), isize>();
            let (wide_in, wide) = scope.new_collection::<(u32, u64), isize>();
            let lens = |k: &String, s: &[(&String, isize)], out: &mut Vec<(usize, isize)>| {
                out.push((
                    k.len() + s.iter().map(|(v, r)| v.len() * *r as usize).sum::<usize>(),
                    1,
                ))
            };
            let pb = big.clone().arrange_by_key_persisted(&store, "big").unwrap();
            record(
                pb.clone()
                    .reduce(lens)
                    .map(|(k, n)| (k.chars().take(8).collect::<String>(), n)),
                &l.0,
                &probe,
            );
            record(
                big.reduce(lens)
                    .map(|(k, n)| (k.chars().take(8).collect::<String>(), n)),
                &l.1,
                &probe,
            );
            let pu = unit.clone().arrange_by_self_persisted(&store, "unit").unwrap();
            record(pu.count_total(), &l.2, &probe);
            record(unit.count_total(), &l.3, &probe);
            let pw = wide.clone().arrange_by_key_persisted(&store, "wide").unwrap();
            let n = |_k: &u32, s: &[(&u64, isize)], out: &mut Vec<(usize, isize)>| out.push((s.len(), 1));
            record(pw.reduce(n), &l.4, &probe);
            record(wide.reduce(n), &l.5, &probe);
            (big_in, unit_in, wide_in)
        });
        for round in 0..3u64 {
            big.advance_to(round);
            unit.advance_to(round);
            wide.advance_to(round);
            let c = (b'a' + round as u8) as char;
            big.insert((c.to_string().repeat(1 << 20), "v".repeat(1 << 22)));
            big.insert((String::new(), String::new()));
            big.insert((format!("k{round}"), "x\0".repeat(100_000)));
            if round > 0 {
                big.remove((
                    ((b'a' + round as u8 - 1) as char).to_string().repeat(1 << 20),
                    "v".repeat(1 << 22),
                ));
            }
            unit.update((), if round == 1 { -3 } else { 2 });
            for i in 0..60_000u64 {
                wide.update(
                    ((i % 3) as u32, i * 7 + round),
                    if round == 2 && i % 2 == 0 { -1 } else { 1 },
                );
            }
            big.flush();
            unit.flush();
            wide.flush();
        }
        big.advance_to(3);
        unit.advance_to(3);
        wide.advance_to(3);
        big.flush();
        unit.flush();
        wide.flush();
        worker.step_while(|| probe.less_than(&3));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "big");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "unit count_total");
    assert_eq!(consolidated(&logs.4), consolidated(&logs.5), "wide");
}

/// `count_total` / `threshold_total` directly on imports (`import` and `import_frontier`) of a compacted
/// `arrange_by_self` trace, in a dataflow built after some rounds; DD's `arrange_by_self().trace` the same way.
#[test]
fn totals_on_imports_answer_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type C = Log<(u32, isize)>;
    let logs: (C, C, Log<u32>, Log<u32>, C, C) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        use differential_dataflow::operators::ThresholdTotal;
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, keys) = scope.new_collection::<u32, isize>();
            let p = keys.clone().arrange_by_self_persisted(&store, "keys").unwrap();
            let d = keys.arrange_by_self();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        let step = |round: u64, input: &mut differential_dataflow::input::InputSession<u64, u32, isize>| {
            for i in 0..10u32 {
                input.update(
                    i % 4,
                    if (i as u64 + round).is_multiple_of(3) {
                        -1
                    } else {
                        1
                    },
                );
            }
        };
        for round in 0..3u64 {
            step(round, &mut input);
            input.advance_to(round + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(round + 1)));
        }
        input.advance_to(3);
        input.flush();
        worker.step_while(|| probe.less_than(&3));
        use differential_dataflow::trace::TraceReader;
        let since = timely::progress::Antichain::from_elem(2u64);
        tp.set_logical_compaction(since.borrow());
        td.set_logical_compaction(since.borrow());
        let probe2 = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let ip = tp.import(scope);
            let id = td.import(scope);
            record(ip.count_total(), &l.0, &probe2);
            record(id.count_total(), &l.1, &probe2);
            let (fp, _bp) = tp.import_frontier(scope, "frontier");
            let (fd, _bd) = td.import_frontier(scope, "frontier");
            record(
                fp.clone().threshold_total(|_, c| if *c > 2 { 1isize } else { 0 }),
                &l.2,
                &probe2,
            );
            record(
                fd.clone().threshold_total(|_, c| if *c > 2 { 1isize } else { 0 }),
                &l.3,
                &probe2,
            );
            record(fp.count_total(), &l.4, &probe2);
            record(fd.count_total(), &l.5, &probe2);
        });
        for round in 3..6u64 {
            step(round, &mut input);
            input.advance_to(round + 1);
            input.flush();
            worker.step_while(|| probe2.less_than(&(round + 1)));
        }
    });
    assert!(!final_state(&logs.1).is_empty());
    assert_eq!(
        final_state(&logs.0),
        final_state(&logs.1),
        "import + count_total (final)"
    );
    assert_eq!(
        consolidated(&logs.4),
        consolidated(&logs.5),
        "import_frontier + count_total"
    );
    assert_eq!(
        consolidated(&logs.2),
        consolidated(&logs.3),
        "import_frontier + threshold_total"
    );
}
