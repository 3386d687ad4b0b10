//! Adversarial round 6: a join of two persisted arrangements (`join`, `semijoin`, `antijoin` with the
//! other side a typed persisted arrangement), two workers at `u32` times, one side fed only in later runs
//! and runs ending by a crash (dropped mid-time); the last run's outputs against a model.

use crate::common;

use common::dropin::{final_state, Log};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistTime};
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Joined = (String, (u64, Option<String>));

fn left_at(t: u64) -> Vec<((String, u64), isize)> {
    let mut out = vec![((format!("k{}", t % 4), t), 1)];
    if t >= 2 {
        out.push(((format!("k{}", (t - 2) % 4), t - 2), -1));
    }
    out
}

fn right_at(t: u64) -> Vec<((String, Option<String>), isize)> {
    if t < 6 {
        return Vec::new(); // the right side gets nothing in the first runs
    }
    let mut out = vec![((format!("k{}", t % 3), Some(format!("r{t}"))), 1)];
    if t.is_multiple_of(2) {
        out.push(((format!("k{}", t % 4), None), 1));
    }
    out
}

#[derive(Default)]
struct Logs {
    joined: Log<Joined, u32>,
    semi: Log<(String, u64), u32>,
    anti: Log<(String, u64), u32>,
    resumed: Mutex<Vec<u64>>,
}

/// One run over `dir` on two workers feeding `[resume, end)` from worker 1 only; a crash (`crash`) gives the
/// updates of `end` and drops the dataflow without advancing.
fn run(dir: &std::path::Path, end: u64, crash: bool) -> (u64, Arc<Logs>) {
    let store = Store::open(dir).unwrap();
    let logs = Arc::new(Logs::default());
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let (store, l) = (store.clone(), l.clone());
        let (mut li, mut ri, handles) = worker.dataflow::<u32, _, _>(|scope| {
            let (li, left) = scope.new_collection::<(String, u64), isize>();
            let (ri, right) = scope.new_collection::<(String, Option<String>), isize>();
            let lp = left.arrange_by_key_persisted(&store, "left").unwrap();
            let rp = right.clone().arrange_by_key_persisted(&store, "right").unwrap();
            let keys = right
                .map(|(k, _)| k)
                .arrange_by_self_persisted(&store, "keys")
                .unwrap();
            let handles = [
                lp.handle().unwrap().clone(),
                rp.handle().unwrap().clone(),
                keys.handle().unwrap().clone(),
            ];
            let (a, b, c) = (l.joined.clone(), l.semi.clone(), l.anti.clone());
            lp.clone()
                .join(rp)
                .inner
                .inspect(move |(x, t, r)| a.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            lp.clone()
                .semijoin(keys.clone())
                .inner
                .inspect(move |(x, t, r)| b.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            lp.antijoin(keys)
                .inner
                .inspect(move |(x, t, r)| c.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            (li, ri, handles)
        });
        let states: Vec<_> = handles.iter().map(|h| h.resume_state()).collect();
        let resume = ddpersist::operators::resume_at(worker, &states);
        l.resumed.lock().unwrap().push(resume);
        for t in resume..end {
            li.advance_to(u32::from_u64(t).unwrap());
            ri.advance_to(u32::from_u64(t).unwrap());
            if worker.index() == 1 {
                left_at(t).into_iter().for_each(|(x, r)| li.update(x, r));
                right_at(t).into_iter().for_each(|(x, r)| ri.update(x, r));
            }
        }
        li.advance_to(u32::from_u64(end).unwrap());
        ri.advance_to(u32::from_u64(end).unwrap());
        if crash && worker.index() == 1 {
            left_at(end).into_iter().for_each(|(x, r)| li.update(x, r));
            right_at(end).into_iter().for_each(|(x, r)| ri.update(x, r));
        }
        li.flush();
        ri.flush();
        let start = std::time::Instant::now();
        if crash {
            (0..20).for_each(|_| {
                worker.step();
            });
        } else {
            worker.step_while(|| {
                assert!(start.elapsed().as_secs() < 30, "hang");
                probe.less_than(&u32::from_u64(end).unwrap())
            });
        }
        for h in &handles {
            assert!(h.error().is_none(), "{:?}", h.error());
        }
        common::drop_dataflows(worker);
    })
    .unwrap();
    let resumed = logs.resumed.lock().unwrap().clone();
    assert!(
        resumed.windows(2).all(|w| w[0] == w[1]),
        "resume points differ: {resumed:?}"
    );
    (resumed[0], logs)
}

fn sum<D: Ord + Clone>(updates: impl Iterator<Item = (D, isize)>) -> BTreeMap<D, i64> {
    let mut acc = BTreeMap::new();
    for (d, r) in updates {
        *acc.entry(d).or_insert(0) += r as i64;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

#[test]
fn joins_of_two_persisted_arrangements_over_crashes_answer_as_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut end = 4;
    for _ in 0..3 {
        let (r, _) = run(dir.path(), end, true);
        assert!(r <= end, "resume at {r}");
        end += 3;
    }
    let (_, logs) = run(dir.path(), end, false);
    let left = sum((0..end).flat_map(left_at));
    let right = sum((0..end).flat_map(right_at));
    let mut joined = BTreeMap::new();
    for ((k, v), a) in &left {
        for ((k2, w), b) in &right {
            if k == k2 {
                *joined.entry((k.clone(), (*v, w.clone()))).or_insert(0) += a * b;
            }
        }
    }
    joined.retain(|_, r| *r != 0);
    assert_eq!(final_state(&logs.joined), joined, "join");
    let mut key_counts: BTreeMap<String, i64> = BTreeMap::new();
    for ((k, _), r) in &right {
        *key_counts.entry(k.clone()).or_insert(0) += r;
    }
    let semi = sum(left
        .iter()
        .flat_map(|(x, a)| key_counts.get(&x.0).map(|c| (x.clone(), (a * c) as isize))));
    // DD's antijoin is the collection minus its semijoin (keys with multiplicities count as such).
    let anti = sum(left
        .iter()
        .map(|(x, a)| (x.clone(), *a as isize))
        .chain(semi.iter().map(|(x, s)| (x.clone(), -*s as isize))));
    assert_eq!(final_state(&logs.semi), semi, "semijoin");
    assert_eq!(final_state(&logs.anti), anti, "antijoin");
}
