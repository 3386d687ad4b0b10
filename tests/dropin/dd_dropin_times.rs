//! From adversarial round 4 (held): sparse, huge times (u64 and u32 near their ends, usize), with count_total and a
//! join, against DD: each time's output present once the probe passes it, equal to DD's.
#![allow(clippy::type_complexity)]

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

macro_rules! sparse_times_test {
    ($name:ident, $T:ty, $times:expr, $last_advance:expr) => {
        #[test]
        fn $name() {
            type T = $T;
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let logs: (
                Arc<Mutex<Vec<((u8, isize), T, isize)>>>,
                Arc<Mutex<Vec<((u8, isize), T, isize)>>>,
            ) = Default::default();
            let l = logs.clone();
            let times: Vec<T> = $times;
            let last: T = $last_advance;
            let times2 = times.clone();
            timely::execute_directly(move |worker| {
                let probe = ProbeHandle::new();
                let mut input = worker.dataflow::<T, _, _>(|scope| {
                    let (input, c) = scope.new_collection::<(u8, u8), isize>();
                    let p = c
                        .clone()
                        .arrange_by_key_persisted(&store, "sparse")
                        .unwrap();
                    let (a, b) = (l.0.clone(), l.1.clone());
                    p.count_total()
                        .inner
                        .inspect(move |x| a.lock().unwrap().push(x.clone()))
                        .probe_with(&probe);
                    c.map(|x| x.0)
                        .count_total()
                        .inner
                        .inspect(move |x| b.lock().unwrap().push(x.clone()))
                        .probe_with(&probe);
                    input
                });
                for (i, t) in times2.iter().enumerate() {
                    input.advance_to(*t);
                    input.update(((i % 3) as u8, i as u8), 1);
                    if i > 1 {
                        input.update((((i - 2) % 3) as u8, (i - 2) as u8), -1);
                    }
                    input.flush();
                    let start = Instant::now();
                    worker.step_while(|| {
                        assert!(
                            start.elapsed() < Duration::from_secs(30),
                            "hang before time {t}"
                        );
                        probe.less_than(t)
                    });
                }
                input.advance_to(last);
                input.flush();
                let start = Instant::now();
                let t = *times2.last().unwrap();
                // DD completes the last time once the input passes it.
                worker.step_while(|| {
                    start.elapsed() < Duration::from_secs(20)
                        && !probe.with_frontier(|f| f.iter().all(|x| *x > t))
                });
                let passed = probe.with_frontier(|f| f.iter().all(|x| *x > t));
                assert!(
                    passed,
                    "the last time {t} did not complete after advance_to({last})"
                );
            });
            let acc = |log: &Arc<Mutex<Vec<((u8, isize), T, isize)>>>, upto: T| {
                let mut m = BTreeMap::new();
                for (d, t, r) in log.lock().unwrap().iter() {
                    if *t <= upto {
                        *m.entry(*d).or_insert(0) += r;
                    }
                }
                m.retain(|_, r| *r != 0);
                m
            };
            for t in &times {
                assert_eq!(acc(&logs.0, *t), acc(&logs.1, *t), "at {t}");
            }
        }
    };
}

sparse_times_test!(
    u64_sparse_to_near_the_end,
    u64,
    vec![0, 1, 1 << 20, 1 << 40, u64::MAX / 2, u64::MAX - 10, u64::MAX - 3],
    u64::MAX - 2
);
sparse_times_test!(
    u32_to_the_last_time_but_one,
    u32,
    vec![0, 7, 1 << 20, u32::MAX - 5, u32::MAX - 1],
    u32::MAX
);
sparse_times_test!(
    usize_sparse,
    usize,
    vec![3, 1 << 33, usize::MAX / 3, usize::MAX - 7],
    usize::MAX - 6
);
sparse_times_test!(
    i64_negative_sparse,
    i64,
    vec![i64::MIN, i64::MIN + 1, -5, 0, 1 << 50, i64::MAX - 4],
    i64::MAX - 3
);
