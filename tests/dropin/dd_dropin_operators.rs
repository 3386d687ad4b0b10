//! From an adversarial round: DD operators on persisted arrangements against DD's in-memory
//! answer on the same input.
#![allow(clippy::type_complexity)]

use crate::common;

use common::dropin::{consolidated, record, Log};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Iterate;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

fn deadline(secs: u64) -> impl Fn() -> bool {
    let start = Instant::now();
    move || {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "deadline passed: hang"
        );
        true
    }
}

/// semijoin / antijoin whose key side has multiplicities other than one (2, -1, 3 then retracted): DD
/// multiplies the diffs.
#[test]
fn semijoin_antijoin_with_key_multiplicities() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type L = Log<(i64, String)>;
    let logs: (L, L, L, L, L, L) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut data, mut keys) = worker.dataflow::<u64, _, _>(|scope| {
            let (din, data) = scope.new_collection::<(i64, String), isize>();
            let (kin, keys) = scope.new_collection::<i64, isize>();
            let p = data.clone().arrange_by_key_persisted(&store, "data").unwrap();
            record(p.clone().semijoin(keys.clone()), &l.0, &probe);
            record(data.clone().semijoin(keys.clone()), &l.1, &probe);
            record(p.clone().antijoin(keys.clone()), &l.2, &probe);
            record(data.clone().antijoin(keys.clone()), &l.3, &probe);
            record(p.semijoin(keys.clone().arrange_by_self_encoded()), &l.4, &probe);
            record(data.semijoin(keys), &l.5, &probe);
            (din, kin)
        });
        for k in -4i64..4 {
            data.update((k, format!("v{k}")), 1);
            data.update((k, format!("w{k}")), 2);
        }
        keys.update(-4, 2);
        keys.update(-3, -1);
        keys.update(0, 3);
        keys.update(1, 1);
        data.advance_to(1);
        keys.advance_to(1);
        keys.update(0, -3);
        keys.update(2, 1);
        keys.update(1, 1);
        data.update((2, "v2".to_string()), -1);
        data.advance_to(2);
        keys.advance_to(2);
        data.flush();
        keys.flush();
        let ok = deadline(60);
        worker.step_while(|| ok() && probe.less_than(&2));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "semijoin");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "antijoin");
    assert_eq!(
        consolidated(&logs.4),
        consolidated(&logs.5),
        "semijoin encoded side"
    );
}

/// Two workers: an in-memory encoded arrangement on the left of `join_core` with a persisted one on the
/// right, a persisted arrangement joined with another persisted one, and `reduce_abelian` (DD's trace,
/// placed by `Hashable`) joined with DD's own `arrange_by_key()`.
#[test]
fn two_workers_both_sides_and_reduce_abelian_with_dds_arrangement() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type J = Log<(String, (u32, i64))>;
    type R = Log<(String, (i64, i64))>;
    let logs: (J, J, J, J, R, R) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let (mut a, mut b) = worker.dataflow::<u64, _, _>(|scope| {
            let (ain, a) = scope.new_collection::<(String, u32), isize>();
            let (bin, b) = scope.new_collection::<(String, i64), isize>();
            let pa = a.clone().arrange_by_key_persisted(&store, "a").unwrap();
            let pb = b.clone().arrange_by_key_persisted(&store, "b").unwrap();
            record(
                b.clone()
                    .arrange_by_key_encoded()
                    .join_core(pa.clone(), |k: &String, vb: &i64, va: &u32| {
                        Some((k.clone(), (*va, *vb)))
                    }),
                &l.0,
                &probe,
            );
            record(a.clone().join(b.clone()), &l.1, &probe);
            record(pa.clone().join(pb.clone()), &l.2, &probe);
            record(a.clone().join(b.clone()), &l.3, &probe);
            let sum = |_k: &String, s: &[(&u32, isize)], out: &mut Vec<(i64, isize)>| {
                out.push((s.iter().map(|(v, r)| **v as i64 * *r as i64).sum::<i64>(), 1));
                out.push((s.len() as i64 + 1000, 1));
            };
            let red = pa
                .reduce_abelian::<_, ValBuilder<String, i64, u64, isize>, ValSpine<String, i64, u64, isize>>(
                    "sums", sum,
                );
            let dd_b = b.clone().arrange_by_key();
            record(
                red.join_core(dd_b, |k: &String, s: &i64, vb: &i64| Some((k.clone(), (*s, *vb)))),
                &l.4,
                &probe,
            );
            record(a.reduce(sum).join(b), &l.5, &probe);
            (ain, bin)
        });
        for round in 0..5u64 {
            a.advance_to(round);
            b.advance_to(round);
            for i in 0..20u32 {
                if (i as usize) % 2 != index {
                    continue;
                }
                let key = format!("k{}", (i + round as u32) % 9);
                a.update(
                    (key.clone(), i * 7 + round as u32),
                    if round % 2 == 0 { 1 } else { -1 },
                );
                if i % 3 == 0 {
                    b.update((key, i as i64 - 10), 1);
                }
            }
        }
        a.advance_to(5);
        b.advance_to(5);
        a.flush();
        b.flush();
        let ok = deadline(60);
        worker.step_while(|| ok() && probe.less_than(&5));
    })
    .unwrap();
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(
        consolidated(&logs.0),
        consolidated(&logs.1),
        "encoded.join_core(persisted)"
    );
    assert_eq!(
        consolidated(&logs.2),
        consolidated(&logs.3),
        "persisted.join(persisted)"
    );
    assert!(!consolidated(&logs.5).is_empty());
    assert_eq!(
        consolidated(&logs.4),
        consolidated(&logs.5),
        "reduce_abelian joined with DD's arrangement"
    );
}

/// `threshold_semigroup`, `threshold_total`, `distinct_total` and `count_total` on `arrange_by_self_persisted`
/// with multiplicities that go negative, through zero, and back, at several times per batch.
#[test]
fn totals_by_self_through_zero_and_negative() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type S = Log<u32>;
    type C = Log<(u32, isize)>;
    let logs: (S, S, S, S, S, S, C, C) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<u32, isize>();
            let p = c.clone().arrange_by_self_persisted(&store, "self").unwrap();
            let semi = |_k: &u32, new: &isize, old: Option<&isize>| -> Option<isize> {
                Some(*new * 10 + old.map_or(-1, |o| *o))
            };
            record(p.clone().threshold_semigroup(semi), &l.0, &probe);
            record(c.clone().threshold_semigroup(semi), &l.1, &probe);
            let th = |_k: &u32, r: &isize| if *r > 1 { *r } else { 0 };
            record(p.clone().threshold_total(th), &l.2, &probe);
            record(c.clone().threshold_total(th), &l.3, &probe);
            record(p.clone().distinct_total(), &l.4, &probe);
            record(c.clone().distinct_total(), &l.5, &probe);
            record(p.count_total(), &l.6, &probe);
            record(c.count_total(), &l.7, &probe);
            input
        });
        let plan: &[(u64, u32, isize)] = &[
            (0, 1, 1),
            (0, 2, -1),
            (0, 3, 2),
            (1, 1, -1),
            (1, 2, 1),
            (1, 3, 1),
            (1, 4, 1),
            (2, 1, 1),
            (2, 4, -1),
            (2, 3, -3),
            (3, 4, 1),
            (3, 1, -2),
            (4, 1, 1),
            (4, 2, 5),
        ];
        // Several times in flight before the frontier moves: batches of more than one time.
        for (t, k, r) in plan {
            input.advance_to(*t);
            input.update(*k, *r);
        }
        input.advance_to(5);
        input.flush();
        let ok = deadline(60);
        worker.step_while(|| ok() && probe.less_than(&5));
    });
    assert_eq!(
        consolidated(&logs.0),
        consolidated(&logs.1),
        "threshold_semigroup"
    );
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "threshold_total");
    assert_eq!(consolidated(&logs.4), consolidated(&logs.5), "distinct_total");
    assert_eq!(consolidated(&logs.6), consolidated(&logs.7), "count_total");
}

/// Reachability over persisted edges entered into `iterate`, two workers, edges changing per round.
#[test]
fn two_workers_iterate_over_entered_persisted_edges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type N = Log<u32>;
    let logs: (N, N) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let (mut edges, mut roots) = worker.dataflow::<u64, _, _>(|scope| {
            let (ein, edges) = scope.new_collection::<(u32, u32), isize>();
            let (rin, roots) = scope.new_collection::<u32, isize>();
            let pe = edges.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let reach_p = roots.clone().iterate(|scope, inner| {
                let e = pe.clone().enter(scope);
                let r = roots.clone().enter(scope);
                inner
                    .map(|n| (n, ()))
                    .arrange_by_key_encoded()
                    .join_core(e, |_n: &u32, _: &(), m: &u32| Some(*m))
                    .concat(r)
                    .distinct()
            });
            let reach_d = roots.clone().iterate(|scope, inner| {
                let e = edges.clone().enter(scope);
                let r = roots.clone().enter(scope);
                inner
                    .map(|n| (n, ()))
                    .join_map(e, |_n, _, m| *m)
                    .concat(r)
                    .distinct()
            });
            record(reach_p, &l.0, &probe);
            record(reach_d, &l.1, &probe);
            (ein, rin)
        });
        if index == 0 {
            roots.insert(0);
        }
        for round in 0..6u64 {
            edges.advance_to(round);
            roots.advance_to(round);
            for (e, r) in common::dropin::graph(round) {
                if (e.0 as usize) % 2 == index {
                    edges.update(e, r);
                }
            }
        }
        edges.advance_to(6);
        roots.advance_to(6);
        edges.flush();
        roots.flush();
        let ok = deadline(90);
        worker.step_while(|| ok() && probe.less_than(&6));
    })
    .unwrap();
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "reachability");
}

/// `reduce` whose logic emits a zero diff and one output val twice, `count_total_core::<i64>`,
/// `distinct_total_core::<i32>`, `flat_map_ref`, a region around the arrangement, at `u32` times near
/// `u32::MAX`.
#[test]
fn odd_reduce_outputs_core_totals_and_regions_at_high_u32_times() {
    use timely::dataflow::operators::{Inspect, Probe};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type L<D> = std::sync::Arc<std::sync::Mutex<Vec<(D, u32, i64)>>>;
    let logs: (
        L<(u8, i64)>,
        L<(u8, i64)>,
        L<(u8, isize)>,
        L<(u8, isize)>,
        L<u8>,
        L<u8>,
        L<(u8, u16)>,
        L<(u8, u16)>,
    ) = Default::default();
    let l = logs.clone();
    fn rec<'s, D: differential_dataflow::Data, R: Copy + Into<i64> + 'static>(
        c: differential_dataflow::VecCollection<'s, u32, D, R>,
        log: &L<D>,
        probe: &ProbeHandle<u32>,
    ) {
        let log = log.clone();
        c.inner
            .inspect(move |(x, t, r)| log.lock().unwrap().push((x.clone(), *t, (*r).into())))
            .probe_with(probe);
    }
    let base = u32::MAX - 10;
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u32, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u8, u16), i32>();
            let p = scope.region(|r| {
                c.clone()
                    .enter_region(r)
                    .arrange_by_key_persisted(&store, "hi")
                    .unwrap()
                    .leave_region(scope)
            });
            let logic = |_k: &u8, s: &[(&u16, i32)], out: &mut Vec<(i64, i64)>| {
                out.push((7, 0));
                out.push((s.len() as i64, 1));
                out.push((s.len() as i64, 2));
                out.push((*s[0].0 as i64, -1));
            };
            rec(p.clone().reduce(logic), &l.0, &probe);
            rec(c.clone().reduce(logic), &l.1, &probe);
            let counts = p.clone().count_total_core::<i64>().map(|(k, r)| (k, r as isize));
            let counts_dd = c
                .clone()
                .map(|(k, _)| k)
                .count_total_core::<i64>()
                .map(|(k, r)| (k, r as isize));
            rec(counts, &l.2, &probe);
            rec(counts_dd, &l.3, &probe);
            rec(p.clone().distinct_total_core::<i32>(), &l.4, &probe);
            rec(
                c.clone().map(|(k, _)| k).distinct_total_core::<i32>(),
                &l.5,
                &probe,
            );
            rec(p.flat_map_ref(|k, v| vec![(*k, *v), (*k, *v + 1)]), &l.6, &probe);
            rec(c.flat_map(|(k, v)| vec![(k, v), (k, v + 1)]), &l.7, &probe);
            input
        });
        for step in 0..8u32 {
            input.advance_to(base + step);
            for i in 0..12u16 {
                let k = (i % 4) as u8;
                input.update((k, i * 3 + step as u16), if step % 3 == 2 { -1 } else { 1 });
            }
        }
        input.advance_to(base + 8);
        input.flush();
        let ok = deadline(60);
        worker.step_while(|| ok() && probe.less_than(&(base + 8)));
    });
    fn cons<D: Ord + Clone>(log: &L<D>) -> std::collections::BTreeMap<(u32, D), i64> {
        let mut acc = std::collections::BTreeMap::new();
        for (d, t, r) in log.lock().unwrap().iter() {
            *acc.entry((*t, d.clone())).or_insert(0) += r;
        }
        acc.retain(|_, r| *r != 0);
        acc
    }
    assert!(!cons(&logs.1).is_empty());
    assert_eq!(cons(&logs.0), cons(&logs.1), "reduce");
    assert_eq!(cons(&logs.2), cons(&logs.3), "count_total_core");
    assert_eq!(cons(&logs.4), cons(&logs.5), "distinct_total_core");
    assert_eq!(cons(&logs.6), cons(&logs.7), "flat_map_ref");
}

/// A join whose output (about 2.4 million records over two times) makes DD's join yield and resume
/// across activations, the persisted side on the left and then on the right, against DD's.
#[test]
fn large_join_outputs_that_yield() {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::{Inspect, Probe};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type Acc = Arc<Mutex<BTreeMap<(u64, u32), (i64, i64)>>>;
    let accs: (Acc, Acc, Acc) = Default::default();
    let a = accs.clone();
    fn sink<'s>(
        c: differential_dataflow::VecCollection<'s, u64, (u32, u64), isize>,
        acc: &Acc,
        probe: &ProbeHandle<u64>,
    ) {
        let acc = acc.clone();
        c.inner
            .inspect(move |((k, x), t, r)| {
                let mut acc = acc.lock().unwrap();
                let e = acc.entry((*t, *k)).or_insert((0, 0));
                e.0 += *r as i64;
                e.1 = e.1.wrapping_add((*x as i64).wrapping_mul(*r as i64));
            })
            .probe_with(probe);
    }
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut left, mut right) = worker.dataflow::<u64, _, _>(|scope| {
            let (lin, l) = scope.new_collection::<(u32, u32), isize>();
            let (rin, r) = scope.new_collection::<(u32, u32), isize>();
            let pl = l.clone().arrange_by_key_persisted(&store, "left").unwrap();
            let f = |k: &u32, x: &u32, y: &u32| Some((*k, ((*x as u64) << 32) | *y as u64));
            sink(pl.join_core(r.clone(), f), &a.0, &probe);
            sink(
                r.clone().arrange_by_key_encoded().join_core(
                    l.clone().arrange_by_key_persisted(&store, "left2").unwrap(),
                    move |k, y, x| f(k, x, y),
                ),
                &a.1,
                &probe,
            );
            sink(l.join_core(r.arrange_by_key(), f), &a.2, &probe);
            (lin, rin)
        });
        for k in 0..2u32 {
            for v in 0..1200u32 {
                left.insert((k, v));
            }
        }
        left.advance_to(1);
        right.advance_to(1);
        for k in 0..2u32 {
            for v in 0..1000u32 {
                right.insert((k, v));
            }
        }
        left.flush();
        right.flush();
        left.advance_to(2);
        right.advance_to(2);
        for v in 0..300u32 {
            left.remove((1, v));
        }
        left.advance_to(3);
        right.advance_to(3);
        left.flush();
        right.flush();
        let ok = deadline(300);
        worker.step_while(|| ok() && probe.less_than(&3));
    });
    let (p, e, d) = (
        accs.0.lock().unwrap(),
        accs.1.lock().unwrap(),
        accs.2.lock().unwrap(),
    );
    assert!(!d.is_empty());
    assert_eq!(*p, *d, "persisted.join_core(collection)");
    assert_eq!(*e, *d, "encoded.join_core(persisted)");
}
