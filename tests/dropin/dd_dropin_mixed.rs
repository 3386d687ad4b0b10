//! From adversarial round 4 (held): persisted arrangements against DD's in-memory ones on the same computation,
//! accumulated and compared at every time.
//!
//! Several workers under load (one key, a thousand times, a backlog): `dd_dropin_mixed_load.rs`.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{at, deadline, rec, same_at_every_time, Log};

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Codec, Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Iterate;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::progress::Antichain;

pub(crate) fn extreme() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        memtable_budget_bytes: 4096,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// README: "Dropping a dataflow closes its arrangements' traces (as DD does), and an import of one in
/// another dataflow then sees its input end". An import made *after* the dataflow was dropped, of the
/// persisted trace and of DD's, then `count_total`, `reduce` and a join: same answers, and the second
/// dataflow completes (its frontier empties).
#[test]
fn import_after_the_dataflow_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type C = Log<(u32, isize)>;
    type J = Log<(u32, (u64, u64))>;
    let logs: (C, C, C, C, J, J) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, tp, td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u64), isize>();
            let p = c.clone().arrange_by_key_persisted(&store, "x").unwrap();
            let d = c.arrange_by_key();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        for t in 0..10u64 {
            input.advance_to(t);
            for i in 0..30u64 {
                let r = if (i + t) % 4 == 0 { -1 } else { 1 };
                input.update(((i % 7) as u32, i * 3 + t % 3), r);
            }
        }
        input.advance_to(10);
        input.flush();
        let ok = deadline(60);
        worker.step_while(|| ok() && probe.less_than(&10));
        let id = worker.index();
        let _ = id;
        // Drop the first dataflow (its inputs stay open, as the README asks of a read-only run).
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        let probe2 = ProbeHandle::new();
        let (mut tp, mut td) = (tp, td);
        worker.dataflow::<u64, _, _>(|scope| {
            let ip = tp.import(scope);
            let idd = td.import(scope);
            rec(ip.clone().count_total(), &l.0, &probe2);
            rec(idd.clone().as_collection(|k, _| *k).count_total(), &l.1, &probe2);
            rec(
                ip.clone()
                    .reduce(|_k, s: &[(&u64, isize)], out: &mut Vec<(isize, isize)>| {
                        out.push((s.len() as isize, 1));
                        out.push((s.iter().map(|x| x.1).sum::<isize>(), 1));
                    })
                    .map(|(k, v)| (k, v)),
                &l.2,
                &probe2,
            );
            rec(
                idd.clone().as_collection(|k, v| (*k, *v)).reduce(
                    |_k, s: &[(&u64, isize)], out: &mut Vec<(isize, isize)>| {
                        out.push((s.len() as isize, 1));
                        out.push((s.iter().map(|x| x.1).sum::<isize>(), 1));
                    },
                ),
                &l.3,
                &probe2,
            );
            rec(ip.join(idd.as_collection(|k, v| (*k, *v))), &l.4, &probe2);
            rec(
                td.import(scope)
                    .as_collection(|k, v| (*k, *v))
                    .join(td.import(scope).as_collection(|k, v| (*k, *v))),
                &l.5,
                &probe2,
            );
        });
        let ok = deadline(60);
        worker.step_while(|| ok() && !probe2.done());
        drop(input);
    });
    let times: Vec<u64> = (0..12).collect();
    assert!(!at(&logs.1, &20).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "count_total on an import after drop");
    same_at_every_time(&logs.2, &logs.3, &times, "reduce on an import after drop");
    same_at_every_time(&logs.4, &logs.5, &times, "join on an import after drop");
}

/// A trace handle held at the minimum (never compacted) while the store merges aggressively: the
/// cursor must read every update at its own time, as DD's trace held the same way does.
#[test]
fn a_trace_held_at_zero_reads_exact_times_after_merges() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), extreme()).unwrap();
    let out = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(String, u64), i64>();
            let p = c.clone().arrange_by_key_persisted(&store, "held").unwrap();
            let d = c.arrange_by_key();
            // Operators downstream that advance their own handles (as DD's do).
            p.clone().count_total().probe_with(&probe);
            d.clone()
                .as_collection(|k: &String, _| k.clone())
                .count_total()
                .probe_with(&probe);
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        let rounds = 60u64;
        for t in 0..rounds {
            input.advance_to(t);
            for i in 0..15u64 {
                let k = format!("k{}", (i * 7 + t) % 5);
                input.update((k.clone(), i), if t % 2 == 0 { 1 } else { -1 });
                input.update((k, 100 + t), 2);
            }
            input.advance_to(t + 1);
            input.flush();
            let ok = deadline(60);
            worker.step_while(|| ok() && probe.less_than(&(t + 1)));
        }
        store
            .compact(&ddpersist::operators::worker_stream_id("held", 0, 1))
            .ok();
        for _ in 0..50 {
            worker.step();
        }
        let upper = Antichain::from_elem(rounds);
        let mut ours: BTreeMap<(String, u64, u64), i64> = BTreeMap::new();
        let spans = tp
            .spans_through(upper.borrow())
            .expect("persisted spans_through(upper)");
        let (mut c, s) = cursor_list(spans.into_iter().filter_map(|b| b.inner).collect());
        for ((k, v), times) in c.to_vec(&s, |k| String::decode(k).unwrap(), |v| u64::decode(v).unwrap()) {
            for (t, d) in times {
                *ours.entry((k.clone(), v, t)).or_insert(0) += d;
            }
        }
        let mut theirs: BTreeMap<(String, u64, u64), i64> = BTreeMap::new();
        let spans = td.spans_through(upper.borrow()).expect("dd spans_through(upper)");
        let (mut c, s) = cursor_list(spans.into_iter().filter_map(|b| b.inner).collect());
        for ((k, v), times) in c.to_vec(&s, |k| k.clone(), |v| *v) {
            for (t, d) in times {
                *theirs.entry((k.clone(), v, t)).or_insert(0) += d;
            }
        }
        ours.retain(|_, d| *d != 0);
        theirs.retain(|_, d| *d != 0);
        let _ = (&mut tp, &mut td);
        (ours, theirs)
    });
    assert!(!out.1.is_empty());
    let diff: Vec<_> = out
        .0
        .iter()
        .filter(|(k, v)| out.1.get(*k) != Some(v))
        .take(8)
        .collect();
    let diff2: Vec<_> = out
        .1
        .iter()
        .filter(|(k, v)| out.0.get(*k) != Some(v))
        .take(8)
        .collect();
    assert!(
        diff.is_empty() && diff2.is_empty(),
        "persisted-only {diff:?}; dd-only {diff2:?}"
    );
}

/// `scope.iterative::<u32, _, _>` at `u32` outer times: a persisted arrangement entered into the loop,
/// used by semijoin, antijoin and join against the loop variable and by reduce; the result leaves and is
/// compared with DD's at every outer time.
#[test]
fn entered_persisted_arrangement_in_semijoin_antijoin_reduce_inside_iterate() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type R = Log<(u32, u32), u32>;
    let logs: (R, R) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let probe_d = ProbeHandle::new();
        let index = worker.index() as u32;
        let (mut edges, mut roots) = worker.dataflow::<u32, _, _>(|scope| {
            let (ein, e) = scope.new_collection::<(u32, u32), isize>();
            let (rin, roots) = scope.new_collection::<u32, isize>();
            let p = e.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let blocked = e.clone().filter(|(a, b)| (a + b) % 5 == 0).map(|(a, _)| a);
            let pb = blocked
                .clone()
                .arrange_by_self_persisted(&store, "blocked")
                .unwrap();
            // Reachability from roots, not passing through "blocked" nodes' out-edges, with each
            // node's label the least root reaching it (a reduce inside the loop over the entered
            // arrangement's degree).
            let ours = {
                let start = roots.clone().map(|r| (r, r));
                start.clone().iterate(|scope, inner| {
                    let pe = p.clone().enter(scope);
                    let pbl = pb.clone().enter(scope);
                    let st = start.clone().enter(scope);
                    let degree = pe
                        .clone()
                        .reduce(|_k, s: &[(&u32, isize)], out: &mut Vec<(u32, isize)>| {
                            out.push((s.len() as u32, 1))
                        });
                    let frontier = inner.clone().arrange_by_key_encoded();
                    let open = pbl.antijoin(inner.clone().map(|(n, _)| n)).map(|(n, _)| n);
                    let moved = frontier
                        .join_core(pe.clone(), |_n: &u32, root: &u32, dst: &u32| Some((*dst, *root)))
                        .concat(st)
                        .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)));
                    let kept = moved
                        .clone()
                        .semijoin(degree.map(|(n, _)| n))
                        .concat(moved.antijoin(open.map(|_n: u32| 1_000_000u32)));
                    kept.distinct()
                })
            };
            let theirs = {
                let start = roots.map(|r| (r, r));
                start.clone().iterate(|scope, inner| {
                    let ec = e.clone().enter(scope);
                    let pe = ec.clone().arrange_by_key();
                    let st = start.clone().enter(scope);
                    let degree = ec.reduce(|_k, s: &[(&u32, isize)], out: &mut Vec<(u32, isize)>| {
                        out.push((s.len() as u32, 1))
                    });
                    let bl = blocked.clone().enter(scope);
                    let open = bl
                        .map(|n| (n, ()))
                        .antijoin(inner.clone().map(|(n, _)| n))
                        .map(|(n, _)| n);
                    let moved = inner
                        .clone()
                        .arrange_by_key()
                        .join_core(pe.clone(), |_n: &u32, root: &u32, dst: &u32| Some((*dst, *root)))
                        .concat(st)
                        .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)));
                    let kept = moved
                        .clone()
                        .semijoin(degree.map(|(n, _)| n))
                        .concat(moved.antijoin(open.map(|_n: u32| 1_000_000u32)));
                    kept.distinct()
                })
            };
            rec(ours, &l.0, &probe);
            rec(theirs, &l.1, &probe_d);
            (ein, rin)
        });
        for t in 0..8u32 {
            edges.advance_to(t);
            roots.advance_to(t);
            for i in 0..40u32 {
                if i % 2 == index {
                    let (a, b) = ((i * 7 + t) % 23, (i * 11 + 3 * t) % 23);
                    edges.update((a, b), 1);
                    if t > 0 && i % 3 == 0 {
                        // Retract the edge this worker inserted at the previous time.
                        let (a, b) = ((i * 7 + t - 1) % 23, (i * 11 + 3 * (t - 1)) % 23);
                        edges.update((a, b), -1);
                    }
                }
            }
            if index == 0 && t % 3 == 0 {
                roots.update(t % 23, 1);
            }
            if index == 1 && t == 5 {
                roots.update(0, -1);
            }
        }
        edges.advance_to(8);
        roots.advance_to(8);
        edges.flush();
        roots.flush();
        let start = Instant::now();
        worker.step_while(|| {
            start.elapsed() < Duration::from_secs(60) && (probe.less_than(&8) || probe_d.less_than(&8))
        });
        let (mut a, mut b) = (Antichain::new(), Antichain::new());
        probe.with_frontier(|f| a = f.to_owned());
        probe_d.with_frontier(|f| b = f.to_owned());
        assert!(
            !probe.less_than(&8) && !probe_d.less_than(&8),
            "hang: persisted side's frontier {a:?}, DD side's {b:?}"
        );
    })
    .unwrap();
    let times: Vec<u32> = (0..8).collect();
    assert!(!at(&logs.1, &7).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "iterate");
}
