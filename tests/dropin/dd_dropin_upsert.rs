//! From an adversarial round: `upsert_persisted` with a key upserted several times in one time (the last
//! wins), deletes of absent keys, delete-then-insert in one time, records whose time is ahead of the
//! input's, at `u32` times with two workers.

use ddpersist::operators::UpsertPersisted;
use ddpersist::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Rec = (u32, Option<String>, u32);
type Out = Arc<Mutex<Vec<((u32, String), u32, i64)>>>;

fn plan() -> Vec<Rec> {
    let mut out = Vec::new();
    for t in 0..6u32 {
        for k in 0..5u32 {
            out.push((k, Some(format!("a{k}{t}")), t));
            if (k + t) % 2 == 0 {
                out.push((k, None, t));
            }
            if (k + t) % 3 == 0 {
                out.push((k, Some(format!("b{k}{t}")), t));
            }
        }
        out.push((99, None, t));
    }
    out
}

fn model(plan: &[Rec], at: u32) -> BTreeMap<(u32, String), i64> {
    let mut state: BTreeMap<u32, String> = BTreeMap::new();
    for (k, v, t) in plan.iter().filter(|r| r.2 <= at) {
        match v {
            Some(v) => state.insert(*k, v.clone()),
            None => state.remove(k),
        };
        let _ = t;
    }
    state.into_iter().map(|(k, v)| ((k, v), 1)).collect()
}

#[test]
fn upserts_last_wins_deletes_and_future_record_times_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let out: Out = Arc::default();
    let o = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let mut input = worker.dataflow::<u32, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<Rec>>();
            let (coll, _h) = ups.upsert_persisted(&store, "u").unwrap();
            coll.inner
                .inspect(move |x| o.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            input
        });
        if worker.index() == 0 {
            // Every record sent at input time 0: times ahead of the input's, in order per key.
            for r in plan() {
                input.send(r);
            }
        }
        input.advance_to(6);
        let start = Instant::now();
        while probe.less_than(&6) {
            assert!(start.elapsed() < Duration::from_secs(60), "hang");
            worker.step();
        }
    })
    .unwrap();
    let out = out.lock().unwrap().clone();
    for at in 0..6u32 {
        let mut acc = BTreeMap::new();
        for (d, t, r) in out.iter().filter(|u| u.1 <= at) {
            let _ = t;
            *acc.entry(d.clone()).or_insert(0) += r;
        }
        acc.retain(|_, r| *r != 0);
        assert_eq!(acc, model(&plan(), at), "time {at}");
    }
}
