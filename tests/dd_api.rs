//! DD's `Arranged` API on a typed persisted arrangement, call for call against DD's own in-memory
//! arrangement of the same input: `as_vecs`, `enter_region` then `leave_region`, `count_total_core` and
//! `distinct_total_core` at `i32` diffs (DD's calls for other diff types), `threshold_semigroup`. Each answer is compared with
//! DD's, consolidated at every time.

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
