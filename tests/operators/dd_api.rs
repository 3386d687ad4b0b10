//! DD's `Arranged` API on a typed persisted arrangement, call for call against DD's own in-memory
//! arrangement of the same input: `as_vecs`, `enter_region` then `leave_region`, `count_total_core` and
//! `distinct_total_core` at `i32` diffs (DD's calls for other diff types), `threshold_semigroup`,
//! `reduce_abelian` and `reduce_core` with DD's trace types. Each answer is compared with DD's,
//! consolidated at every time.

use crate::common;

use common::Priority;
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Seen<D> = Arc<Mutex<Vec<(D, u64, i64)>>>;

fn seen<D>() -> (Seen<D>, Seen<D>) {
    (Arc::default(), Arc::default())
}

/// `(time, record) -> diff`, zero diffs left out.
fn consolidated<D: Ord + Clone + Debug>(seen: &Seen<D>) -> BTreeMap<(u64, D), i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in seen.lock().unwrap().iter() {
        *acc.entry((*t, d.clone())).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

#[test]
fn as_vecs_regions_and_core_totals_answer_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (vecs, vecs_dd) = seen::<(u32, String)>();
    let (counts, counts_dd) = seen::<(u32, isize)>();
    let (distinct, distinct_dd) = seen::<u32>();
    let (v, vd, c, cd, d, dd) = (
        vecs.clone(),
        vecs_dd.clone(),
        counts.clone(),
        counts_dd.clone(),
        distinct.clone(),
        distinct_dd.clone(),
    );
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u32, String), isize>();
            let persisted = pairs.clone().arrange_by_key_persisted(&store, "api").unwrap();
            let in_memory = pairs.clone().arrange_by_key();
            // as_vecs through a region and back out, on both sides.
            let persisted_vecs = scope.region(|region| {
                persisted
                    .clone()
                    .enter_region(region)
                    .leave_region(scope)
                    .as_vecs()
            });
            persisted_vecs
                .inner
                .inspect(move |(x, t, r)| v.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            in_memory
                .as_vecs()
                .inner
                .inspect(move |(x, t, r)| vd.lock().unwrap().push((x.clone(), *t, *r as i64)));
            // count_total_core and distinct_total_core at i32 diffs, over the keys.
            let keys = pairs.map(|(k, _)| k);
            let by_self = keys
                .clone()
                .arrange_by_self_persisted(&store, "api-keys")
                .unwrap();
            by_self
                .clone()
                .count_total_core::<i32>()
                .inner
                .inspect(move |(x, t, r)| c.lock().unwrap().push((*x, *t, i64::from(*r))))
                .probe_with(&probe);
            keys.clone()
                .count_total_core::<i32>()
                .inner
                .inspect(move |(x, t, r)| cd.lock().unwrap().push((*x, *t, i64::from(*r))));
            by_self
                .distinct_total_core::<i32>()
                .inner
                .inspect(move |(x, t, r)| d.lock().unwrap().push((*x, *t, i64::from(*r))))
                .probe_with(&probe);
            keys.distinct_total_core::<i32>()
                .inner
                .inspect(move |(x, t, r)| dd.lock().unwrap().push((*x, *t, i64::from(*r))));
            input
        });
        for t in 0..5u64 {
            input.advance_to(t);
            for i in 0..8u32 {
                input.insert((i % 3, format!("v{}", (i + t as u32) % 4)));
                if t > 1 && i % 2 == 0 {
                    input.remove((i % 3, format!("v{}", (i + t as u32 - 2) % 4)));
                }
            }
        }
        input.advance_to(5);
        input.flush();
        worker.step_while(|| probe.less_than(&5));
    });
    assert!(!consolidated(&vecs_dd).is_empty());
    assert_eq!(consolidated(&vecs), consolidated(&vecs_dd), "as_vecs");
    assert_eq!(
        consolidated(&counts),
        consolidated(&counts_dd),
        "count_total_core"
    );
    assert_eq!(
        consolidated(&distinct),
        consolidated(&distinct_dd),
        "distinct_total_core"
    );
}

/// DD's `threshold_semigroup` on a persisted arrangement by self, against DD's over the same keys: one
/// threshold that sees whether a key had updates before (`old` is `None` only for a key's first time; the
/// counts here never return to zero, where DD's answer would depend on its compaction), one over counts
/// that do return to zero.
#[test]
fn threshold_semigroup_answers_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (first, first_dd) = seen::<u32>();
    let (over, over_dd) = seen::<u32>();
    let (f, fd, o, od) = (first.clone(), first_dd.clone(), over.clone(), over_dd.clone());
    // A key's first count shows as 1000 + count, later changes as the count's difference.
    fn first_seen(_: &u32, new: &isize, old: Option<&isize>) -> Option<isize> {
        Some(old.map_or(1000 + new, |old| new - old))
    }
    // Keys with a count over 2: the change of that property.
    fn over_two(_: &u32, new: &isize, old: Option<&isize>) -> Option<isize> {
        let now = isize::from(*new > 2);
        let before = old.map_or(0, |old| isize::from(*old > 2));
        (now != before).then_some(now - before)
    }
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut growing, mut churning) = worker.dataflow::<u64, _, _>(|scope| {
            let (growing, keys) = scope.new_collection::<u32, isize>();
            let persisted = keys
                .clone()
                .arrange_by_self_persisted(&store, "semigroup")
                .unwrap();
            persisted
                .threshold_semigroup(first_seen)
                .inner
                .inspect(move |(x, t, r)| f.lock().unwrap().push((*x, *t, *r as i64)))
                .probe_with(&probe);
            keys.threshold_semigroup(first_seen)
                .inner
                .inspect(move |(x, t, r)| fd.lock().unwrap().push((*x, *t, *r as i64)));
            let (churning, keys) = scope.new_collection::<u32, isize>();
            let persisted = keys
                .clone()
                .arrange_by_self_persisted(&store, "semigroup-churn")
                .unwrap();
            persisted
                .threshold_semigroup(over_two)
                .inner
                .inspect(move |(x, t, r)| o.lock().unwrap().push((*x, *t, *r as i64)))
                .probe_with(&probe);
            keys.threshold_semigroup(over_two)
                .inner
                .inspect(move |(x, t, r)| od.lock().unwrap().push((*x, *t, *r as i64)));
            (growing, churning)
        });
        for t in 0..6u64 {
            growing.advance_to(t);
            churning.advance_to(t);
            for i in 0..8u32 {
                // Keys 0..5 from time 0, keys 5..7 first seen at time 3; key 0 loses one a time.
                growing.insert(i % 5 + if t >= 3 { 5 * (i % 2) } else { 0 });
                churning.insert(i % 3);
            }
            if t > 1 {
                growing.remove(0);
                for _ in 0..6 {
                    churning.remove((t % 3) as u32); // the key's count drops back to zero, or below 2
                }
            }
        }
        growing.advance_to(6);
        churning.advance_to(6);
        growing.flush();
        churning.flush();
        worker.step_while(|| probe.less_than(&6));
    });
    assert!(consolidated(&first_dd).len() > 5);
    assert!(
        consolidated(&over_dd).values().any(|r| *r < 0),
        "some key drops below the threshold"
    );
    assert_eq!(consolidated(&first), consolidated(&first_dd), "first_seen");
    assert_eq!(consolidated(&over), consolidated(&over_dd), "over_two");
}

/// DD's `reduce_abelian::<_, ValBuilder<..>, ValSpine<..>>` and `reduce_core` on a persisted arrangement,
/// with 2 workers, against DD's own over the same collection; each output trace is then joined
/// (`join_core`) with DD's own `arrange_by_key()` of another collection: the outputs are keyed by `&K` and
/// partitioned by DD's `Hashable`, so the join meets every key on the right worker.
#[test]
fn reduce_abelian_and_reduce_core_answer_as_dds_and_join_dds_arrangements() {
    use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    type Pair = (Seen<(u32, u64)>, Seen<(u32, u64)>);
    let sinks: Vec<Pair> = (0..4).map(|_| seen()).collect();
    let shared = sinks.clone();
    let store = Store::open(&path).unwrap();
    // The largest val of each key, and how many vals a key has (via reduce_core over its current output).
    fn max(_: &u32, input: &[(&u64, isize)], output: &mut Vec<(u64, isize)>) {
        output.push((*input.last().unwrap().0, 1));
    }
    let count =
        |_: &u32, input: &[(&u64, isize)], output: &mut Vec<(u64, isize)>, change: &mut Vec<(u64, isize)>| {
            let now = input.len() as u64;
            let before = output.first().map(|(v, _)| *v);
            if before != Some(now) {
                if let Some(before) = before {
                    change.push((before, -1));
                }
                if now > 0 {
                    change.push((now, 1));
                }
            }
        };
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let sinks = shared.clone();
        let (mut pairs_in, mut other_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (pairs_in, pairs) = scope.new_collection::<(u32, u64), isize>();
            let (other_in, other) = scope.new_collection::<(u32, u64), isize>();
            let persisted = pairs
                .clone()
                .arrange_by_key_persisted(&store, "reduce-dd")
                .unwrap();
            let other = other.arrange_by_key();
            let ours = [
                persisted
                    .clone()
                    .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<_, _, _, _>>("Max", max),
                persisted.reduce_core::<_, ValBuilder<_, _, _, _>, ValSpine<_, _, _, _>>("Count", count),
            ];
            let theirs = [
                pairs
                    .clone()
                    .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<_, _, _, _>>("Max", max),
                pairs.reduce_core::<_, ValBuilder<_, _, _, _>, ValSpine<_, _, _, _>>("Count", count),
            ];
            for (i, (ours, theirs)) in ours.into_iter().zip(theirs).enumerate() {
                for (j, arranged) in [ours, theirs].into_iter().enumerate() {
                    let (plain, joined) = (sinks[2 * i].clone(), sinks[2 * i + 1].clone());
                    let (plain, joined) = if j == 0 {
                        (plain.0, joined.0)
                    } else {
                        (plain.1, joined.1)
                    };
                    arranged
                        .clone()
                        .as_collection(|k: &u32, v: &u64| (*k, *v))
                        .inner
                        .inspect(move |(x, t, r)| plain.lock().unwrap().push((*x, *t, *r as i64)))
                        .probe_with(&probe);
                    arranged
                        .join_core(other.clone(), |k: &u32, v: &u64, w: &u64| {
                            Some((*k, v * 1000 + w))
                        })
                        .inner
                        .inspect(move |(x, t, r)| joined.lock().unwrap().push((*x, *t, *r as i64)))
                        .probe_with(&probe);
                }
            }
            (pairs_in, other_in)
        });
        let (index, peers) = (worker.index() as u32, worker.peers() as u32);
        for t in 0..5u64 {
            pairs_in.advance_to(t);
            other_in.advance_to(t);
            for i in (0..40u32).filter(|i| i % peers == index) {
                pairs_in.insert((i % 11, u64::from(i) + t));
                if t > 1 && i % 3 == 0 {
                    pairs_in.remove((i % 11, u64::from(i) + t - 2));
                }
                if t == 0 && i < 11 {
                    other_in.insert((i, u64::from(i) * 7));
                }
            }
        }
        pairs_in.advance_to(5);
        other_in.advance_to(5);
        pairs_in.flush();
        other_in.flush();
        worker.step_while(|| probe.less_than(&5));
    })
    .unwrap();
    for (i, (ours, theirs)) in sinks.iter().enumerate() {
        assert!(consolidated(theirs).len() > 5, "output {i} is not trivial");
        assert_eq!(consolidated(ours), consolidated(theirs), "output {i}");
    }
}

/// Vals whose encodings order unlike their `Ord`, each written at its own time (so no seal compares two
/// of them and the arranging operator's order check cannot see it): `reduce` still hands the logic each
/// key's vals in `Ord` order, as DD does, and answers as DD (found by an adversarial test: `s[0]` was
/// `High` where DD's is `Low`).
#[test]
fn reduce_sees_vals_in_ord_order_whatever_their_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (ours, theirs) = seen::<(u8, Priority)>();
    let (o, t) = (ours.clone(), theirs.clone());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u8, Priority), isize>();
            let least =
                |_: &u8, s: &[(&Priority, isize)], out: &mut Vec<(Priority, isize)>| out.push((*s[0].0, 1));
            let persisted = pairs
                .clone()
                .arrange_by_key_persisted(&store, "priority")
                .unwrap();
            persisted
                .reduce(least)
                .inner
                .inspect(move |(x, t, r)| o.lock().unwrap().push((*x, *t, *r as i64)))
                .probe_with(&probe);
            pairs
                .reduce(least)
                .inner
                .inspect(move |(x, time, r)| t.lock().unwrap().push((*x, *time, *r as i64)));
            input
        });
        let steps = [
            (Priority::High, 1),
            (Priority::Low, 1),
            (Priority::Mid, 1),
            (Priority::Low, -1),
        ];
        for (time, (val, diff)) in steps.into_iter().enumerate() {
            input.update((1, val), diff);
            input.advance_to(time as u64 + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(time as u64 + 1)));
        }
    });
    assert!(consolidated(&theirs).contains_key(&(1, (1, Priority::Low))));
    assert_eq!(consolidated(&ours), consolidated(&theirs));
}

/// `i16` and `i8` diffs (DD's `Semigroup` integers): a persisted arrangement at each counts and joins as
/// DD's, the diffs widened to `i64` in the store and narrowed back.
#[test]
fn narrow_diffs_count_and_join_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (counts, counts_dd) = seen::<(u32, i16)>();
    let (joined, joined_dd) = seen::<(u32, u8, u8)>();
    let (c, cd, j, jd) = (
        counts.clone(),
        counts_dd.clone(),
        joined.clone(),
        joined_dd.clone(),
    );
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut keys_in, mut pairs_in) = worker.dataflow::<u64, _, _>(|scope| {
            let (keys_in, keys) = scope.new_collection::<u32, i16>();
            let (pairs_in, pairs) = scope.new_collection::<(u32, u8), i8>();
            keys.clone()
                .arrange_by_self_persisted(&store, "i16")
                .unwrap()
                .count_total()
                .inner
                .inspect(move |(x, t, r)| c.lock().unwrap().push((*x, *t, *r as i64)))
                .probe_with(&probe);
            keys.count_total()
                .inner
                .inspect(move |(x, t, r)| cd.lock().unwrap().push((*x, *t, *r as i64)));
            let persisted = pairs.clone().arrange_by_key_persisted(&store, "i8").unwrap();
            persisted
                .join_map(pairs.clone(), |k, a, b| (*k, *a, *b))
                .inner
                .inspect(move |(x, t, r)| j.lock().unwrap().push((*x, *t, i64::from(*r))))
                .probe_with(&probe);
            pairs
                .clone()
                .join_map(pairs, |k, a, b| (*k, *a, *b))
                .inner
                .inspect(move |(x, t, r)| jd.lock().unwrap().push((*x, *t, i64::from(*r))));
            (keys_in, pairs_in)
        });
        for t in 0..4u64 {
            for i in 0..10u32 {
                keys_in.update(i % 4, if (i + t as u32).is_multiple_of(3) { -2 } else { 3 });
                pairs_in.update((i % 3, (i * t as u32) as u8), if i % 2 == 0 { 2 } else { -1 });
            }
            keys_in.advance_to(t + 1);
            pairs_in.advance_to(t + 1);
            keys_in.flush();
            pairs_in.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
        }
    });
    assert!(!consolidated(&counts_dd).is_empty() && !consolidated(&joined_dd).is_empty());
    assert_eq!(
        consolidated(&counts),
        consolidated(&counts_dd),
        "count_total at i16"
    );
    assert_eq!(consolidated(&joined), consolidated(&joined_dd), "join at i8");
}
