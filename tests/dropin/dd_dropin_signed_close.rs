//! From adversarial round 17 (no fault found). `i32` times (what Rust infers for `advance_to(-3)`), starting below zero, three workers and one key
//! (two idle workers), every run ending as a DD program ends (the inputs close): the finished streams'
//! resume point must be an `i32` time at or past the closed run's last frontier, and the next run, fed
//! from it, answers as DD does.

use crate::common::compare::{at, deadline, Log};
use ddpersist::operators::{ArrangeTypedBySelf, PersistTime};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

fn run(
    dir: &std::path::Path,
    times: std::ops::Range<i32>,
    p: &Log<String, i32>,
    d: &Log<String, i32>,
) -> i32 {
    let store = Store::open(dir).unwrap();
    let (p, d) = (p.clone(), d.clone());
    let resume = Arc::new(Mutex::new(None));
    let r = resume.clone();
    timely::execute(timely::Config::process(3), move |worker| {
        let probe = ProbeHandle::new();
        let (p, d) = (p.clone(), d.clone());
        let (mut pin, mut din, from) = worker.dataflow::<i32, _, _>(|scope| {
            let (pin, pc) = scope.new_collection::<String, isize>();
            let (din, dc) = scope.new_collection::<String, isize>();
            let arranged = pc.arrange_by_self_persisted(&store, "one_key").unwrap();
            let from = i32::from_u64(arranged.handle().unwrap().resume_at()).expect("an i32 resume point");
            arranged
                .count_total()
                .map(|x| format!("{x:?}"))
                .inner
                .inspect(move |(x, t, r)| p.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            dc.count_total()
                .map(|x| format!("{x:?}"))
                .inner
                .inspect(move |(x, t, r)| d.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            (pin, din, from)
        });
        *r.lock().unwrap() = Some(from);
        let alive = deadline(30);
        // Data from -3 on; the DD reference takes every earlier run's times too.
        for t in -3..times.end {
            din.advance_to(t);
            if t >= from {
                pin.advance_to(t);
            }
            if worker.index() == 0 {
                let diff = if t % 3 == 0 { -1 } else { 1 };
                din.update("k".to_string(), diff);
                if t >= from {
                    pin.update("k".to_string(), diff);
                }
            }
            din.advance_to(t + 1);
            pin.advance_to((t + 1).max(from));
            din.flush();
            pin.flush();
            if t >= times.start {
                worker.step_while(|| alive() && probe.less_than(&(t + 1)));
            }
        }
        // The closure returns: the inputs close.
    })
    .unwrap();
    let from = resume.lock().unwrap().unwrap();
    from
}

#[test]
fn i32_times_below_zero_closing_runs_with_idle_workers() {
    let dir = tempfile::tempdir().unwrap();
    let mut last_end = i32::MIN;
    for (i, end) in [0i32, 4, 9, 9, 15].into_iter().enumerate() {
        let (p, d): (Log<String, i32>, Log<String, i32>) = Default::default();
        let start = if i == 0 { -3 } else { last_end };
        let from = run(dir.path(), start..end, &p, &d);
        if i > 0 {
            assert!(
                from >= last_end,
                "run {i}: resume point {from} before the closed run's end {last_end}"
            );
        }
        for t in from.max(-3)..end {
            assert_eq!(
                at(&p, &t),
                at(&d, &t),
                "run {i} (resume {from}): count_total at {t}"
            );
        }
        last_end = end.max(last_end);
    }
}
