//! From adversarial round 4 (held): churn — random inserts and retractions over a small key space (so merged
//! batches cancel out), two workers, tiny blocks and merges of two, user-held trace handles advanced
//! behind the input (so the store's since moves and merges consolidate), totals, join, reduce, antijoin;
//! every time compared with DD; then the whole trace read through `spans_through` against DD's.
#![allow(clippy::type_complexity)]

use crate::common;

use common::Rng;

use common::compare::{rec, same_at_every_time, Log};

use ddpersist::operators::ArrangeTyped;
use ddpersist::{Codec, Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::progress::Antichain;

fn churn(seed: u64, workers: usize, rounds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compaction_threads: 1,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    type C = Log<(u8, isize)>;
    type K = Log<u8>;
    type J = Log<(u8, (i16, i16))>;
    type R = Log<(u8, (i16, i16))>;
    type A = Log<(u8, i16)>;
    let logs: (C, C, K, K, J, J, R, R, A, A) = Default::default();
    let l = logs.clone();
    let contents = timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u64;
        let (mut a, mut b, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (ain, ac) = scope.new_collection::<(u8, i16), isize>();
            let (bin, bc) = scope.new_collection::<(u8, i16), isize>();
            let p = ac.clone().arrange_by_key_persisted(&store, "churn").unwrap();
            let d = ac.clone().arrange_by_key();
            rec(p.clone().count_total(), &l.0, &probe);
            rec(ac.clone().map(|x| x.0).count_total(), &l.1, &probe);
            rec(p.clone().distinct_total(), &l.2, &probe);
            rec(ac.clone().map(|x| x.0).distinct_total(), &l.3, &probe);
            rec(p.clone().join(bc.clone()), &l.4, &probe);
            rec(ac.clone().join(bc.clone()), &l.5, &probe);
            let red = |_k: &u8, s: &[(&i16, isize)], out: &mut Vec<((i16, i16), isize)>| {
                let total: isize = s.iter().map(|x| x.1).sum();
                out.push(((*s[0].0, total as i16), 1));
            };
            rec(p.clone().reduce(red), &l.6, &probe);
            rec(ac.clone().reduce(red), &l.7, &probe);
            rec(p.clone().antijoin(bc.clone().map(|x| x.0)), &l.8, &probe);
            rec(ac.antijoin(bc.map(|x| x.0)), &l.9, &probe);
            (ain, bin, p.trace, d.trace)
        });
        let mut rng = Rng(seed * 1000 + index);
        for t in 0..rounds {
            a.advance_to(t);
            b.advance_to(t);
            for _ in 0..(rng.next() % 30) {
                let k = (rng.next() % 6) as u8;
                let v = (rng.next() % 5) as i16 - 2;
                let r = if rng.next().is_multiple_of(3) { -1 } else { 1 };
                a.update((k, v), r);
                // Cancel it right away now and then, or a bit later.
                if rng.next().is_multiple_of(4) {
                    a.update((k, v), -r);
                }
            }
            if rng.next().is_multiple_of(3) {
                b.update(
                    ((rng.next() % 6) as u8, (rng.next() % 3) as i16),
                    if rng.next().is_multiple_of(2) { 1 } else { -1 },
                );
            }
            a.advance_to(t + 1);
            b.advance_to(t + 1);
            a.flush();
            b.flush();
            if t >= 3 {
                let since = Antichain::from_elem(t - 3);
                tp.set_logical_compaction(since.borrow());
                tp.set_physical_compaction(since.borrow());
                td.set_logical_compaction(since.borrow());
                td.set_physical_compaction(since.borrow());
            }
            let start = Instant::now();
            worker.step_while(|| {
                assert!(start.elapsed() < Duration::from_secs(60), "hang");
                probe.less_than(&(t + 1))
            });
            if t % 10 == 0 {
                store
                    .compact(&ddpersist::operators::worker_stream_id(
                        "churn",
                        index as usize,
                        workers,
                    ))
                    .ok();
            }
        }
        for _ in 0..200 {
            worker.step();
        }
        let all = Antichain::from_elem(rounds);
        let mut ours: BTreeMap<(u8, i16), i64> = BTreeMap::new();
        let spans = tp.spans_through(all.borrow()).expect("persisted spans_through");
        let (mut c, s) = cursor_list(spans.into_iter().filter_map(|x| x.inner).collect());
        for ((k, v), times) in c.to_vec(&s, |k| u8::decode(k).unwrap(), |v| i16::decode(v).unwrap()) {
            for (t, d) in times {
                assert!(t < rounds);
                *ours.entry((k, v)).or_insert(0) += d;
            }
        }
        let mut theirs: BTreeMap<(u8, i16), i64> = BTreeMap::new();
        let spans = td.spans_through(all.borrow()).expect("dd spans_through");
        let (mut c, s) = cursor_list(spans.into_iter().filter_map(|x| x.inner).collect());
        for ((k, v), times) in c.to_vec(&s, |k| *k, |v| *v) {
            for (_t, d) in times {
                *theirs.entry((k, v)).or_insert(0) += d as i64;
            }
        }
        ours.retain(|_, d| *d != 0);
        theirs.retain(|_, d| *d != 0);
        (ours, theirs)
    })
    .unwrap()
    .join();
    // Workers hold different keys (key_hash against DD's Hashable): compare the union.
    let (mut ours, mut theirs) = (BTreeMap::new(), BTreeMap::new());
    for c in contents {
        let (o, t) = c.unwrap();
        ours.extend(o);
        theirs.extend(t);
    }
    assert_eq!(ours, theirs, "trace contents, seed {seed}");
    let times: Vec<u64> = (0..rounds).collect();
    same_at_every_time(&logs.0, &logs.1, &times, "count_total");
    same_at_every_time(&logs.2, &logs.3, &times, "distinct_total");
    same_at_every_time(&logs.4, &logs.5, &times, "join");
    same_at_every_time(&logs.6, &logs.7, &times, "reduce");
    same_at_every_time(&logs.8, &logs.9, &times, "antijoin");
}

#[test]
fn churn_seeds_two_workers() {
    let n: u64 = std::env::var("DDPERSIST_CHURN_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 0..n {
        churn(seed, 2, 60);
    }
}

#[test]
fn churn_seeds_three_workers() {
    for seed in 10..13 {
        churn(seed, 3, 60);
    }
}
