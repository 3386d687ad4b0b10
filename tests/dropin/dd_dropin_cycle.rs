//! From adversarial round 4 (held): a persisted arrangement inside a top-level feedback cycle (DD's `Variable` at
//! `u64` times with a summary of 1): its input frontier waits on its own output. Against DD.
#![allow(clippy::type_complexity)]

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Variable;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log = Arc<Mutex<Vec<((u32, u32), u64, isize)>>>;

fn run(persisted: bool, workers: usize) -> Vec<(u64, BTreeMap<(u32, u32), isize>)> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let log: Log = Default::default();
    let l = log.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, seeds) = scope.new_collection::<(u32, u32), isize>();
            let (var, state) = Variable::new(scope, 1u64);
            let all = state.concat(seeds);
            let next = if persisted {
                all.clone()
                    .arrange_by_key_persisted(&store, "cycle")
                    .unwrap()
                    .as_collection(|k: &u32, v: &u32| (*k, *v))
            } else {
                all.clone()
                    .arrange_by_key()
                    .as_collection(|k: &u32, v: &u32| (*k, *v))
            };
            let l = l.clone();
            next.clone()
                .inner
                .inspect(move |x| l.lock().unwrap().push(*x))
                .probe_with(&probe);
            // Each (k, v) moves to (k, v + 1) one time later, until v reaches 30; the old one leaves.
            var.set(
                next.filter(|(_, v)| *v < 30)
                    .flat_map(|(k, v)| vec![((k, v + 1), 1isize), ((k, v), -1)])
                    .explode(|(x, r)| Some((x, r))),
            );
            input
        });
        if index == 0 {
            input.insert((1, 0));
            input.insert((2, 10));
        }
        input.advance_to(5);
        if index == 0 {
            input.insert((3, 0));
        }
        input.advance_to(100);
        input.flush();
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(60), "hang");
            probe.less_than(&60)
        });
        // The cycle never quiesces (as DD's would not): drop it rather than wait at the end.
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
    })
    .unwrap();
    let mut out = Vec::new();
    for t in 0..60u64 {
        let mut acc = BTreeMap::new();
        for (d, time, r) in log.lock().unwrap().iter() {
            if *time <= t {
                *acc.entry(*d).or_insert(0) += r;
            }
        }
        acc.retain(|_, r| *r != 0);
        out.push((t, acc));
    }
    out
}

#[test]
fn persisted_arrangement_in_a_top_level_cycle() {
    assert_eq!(run(true, 1), run(false, 1));
}

#[test]
fn persisted_arrangement_in_a_top_level_cycle_two_workers() {
    assert_eq!(run(true, 2), run(false, 2));
}
