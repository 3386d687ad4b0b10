//! `upsert_persisted` at `u32` times with an upsert at `u32::MAX`, the greatest time: applied when the
//! input closes, its state persisted; a restart at `u32` serves the state (as of the last time) and takes
//! no new input (the stream's upper, 2^32, is past every `u32` time); a restart at `u64` continues there.

use ddpersist::operators::UpsertPersisted;
use ddpersist::Store;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::{InputHandle, ProbeHandle};

type Out = Arc<Mutex<Vec<((u32, u64), u64, i64)>>>;

fn state(out: &Out) -> BTreeMap<(u32, u64), i64> {
    let mut acc = BTreeMap::new();
    for (kv, _, d) in out.lock().unwrap().iter() {
        *acc.entry(*kv).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

#[test]
fn an_upsert_at_u32_max_is_applied_and_served_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = |upserts: Vec<(u32, Option<u64>, u32)>| -> (Out, u64, Option<String>) {
        let out: Out = Arc::default();
        let o = out.clone();
        let store = store.clone();
        let resume = Arc::new(Mutex::new((0, None)));
        let r = resume.clone();
        timely::execute_directly(move |worker| {
            let mut input = InputHandle::new();
            let probe = ProbeHandle::new();
            let handle = worker.dataflow::<u32, _, _>(|scope| {
                let (c, h) = scope
                    .input_from(&mut input)
                    .upsert_persisted(&store, "u")
                    .unwrap();
                let o = o.clone();
                c.inner
                    .inspect(move |((k, v), t, d): &((u32, u64), u32, i64)| {
                        o.lock().unwrap().push(((*k, *v), u64::from(*t), *d))
                    })
                    .probe_with(&probe);
                h
            });
            for (k, v, t) in upserts {
                input.advance_to(t);
                input.send((k, v, t));
            }
            drop(input);
            while !probe.done() {
                worker.step();
            }
            *r.lock().unwrap() = (handle.resume_at(), handle.error());
        });
        let (at, error) = resume.lock().unwrap().clone();
        (out, at, error)
    };
    let (out, _, error) = run(vec![
        (1, Some(10), 0),
        (2, Some(20), 3),
        (1, None, u32::MAX),
        (3, Some(30), u32::MAX),
    ]);
    assert_eq!(error, None);
    let expected: BTreeMap<(u32, u64), i64> = [((2, 20), 1), ((3, 30), 1)].into_iter().collect();
    assert_eq!(state(&out), expected, "first run");
    // Restart at u32: the state is served; nothing new can be given.
    let (out, resume_at, error) = run(vec![]);
    assert_eq!(error, None);
    assert_eq!(state(&out), expected, "restart at u32");
    assert_eq!(resume_at, 1 << 32);
}
