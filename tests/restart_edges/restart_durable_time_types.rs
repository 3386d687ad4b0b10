//! Adversarial round 11 (adopted; passes): a durable persisted arrangement at signed (`i32`, from negative times) and
//! `Product<(), u32>` timestamps holding rows ahead of its frontier across a stop: the recovered rows'
//! store times map back to the dataflow's times (their capabilities, the seals that complete them). The
//! second run continues from `T::from_u64(resume_state().greatest_upper)` and closes its input; every
//! row must come out once, at its own time, against a model at every time.

use ddpersist::operators::{ArrangeTyped, PersistOptions, PersistTime};
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::order::Product;

type Out<T> = Arc<Mutex<Vec<(String, T, isize)>>>;

/// One run at times `T`: the first feeds `now` rows at `start`, rows `ahead`, advances to `stop` and
/// stops once the rows ahead are taken in; the second continues from the greatest upper and closes.
fn run<T: PersistTime + Debug + Sync>(
    dir: &Path,
    first: bool,
    (start, stop): (T, T),
    rows: Vec<(u32, T)>,
    out: &Out<T>,
) {
    let store = Store::open(dir).unwrap();
    let out = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let st = store.clone();
        let o = out.clone();
        let (mut input, state) = worker.dataflow::<T, _, _>(|scope| {
            let (input, data) = scope.new_collection::<(u32, String), isize>();
            let options = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let arranged = data.arrange_by_key_persisted_with(&st, "d", options).unwrap();
            let state = arranged.handle().unwrap().resume_state();
            arranged
                .as_collection(|k, v| format!("{k}={v}"))
                .inner
                .inspect(move |(x, t, d)| o.lock().unwrap().push((x.clone(), *t, *d)))
                .probe_with(&probe);
            (input, state)
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        if first {
            input.advance_to(start);
            if worker.index() == 0 {
                for (k, at) in &rows {
                    input.update_at((*k, format!("r{k}")), *at, 1);
                }
            }
            input.advance_to(stop);
            input.flush();
            while probe.less_than(&stop) {
                assert!(Instant::now() < deadline, "hang in the first run");
                worker.step();
            }
            // Every row ahead written to the durable streams.
            let ahead = rows.iter().filter(|(_, at)| *at >= stop).count();
            let held = || {
                (0..2)
                    .map(|w| {
                        st.unsealed_len(&ddpersist::operators::worker_stream_id("d", w, 2))
                            .unwrap()
                    })
                    .sum::<usize>()
            };
            while held() < ahead {
                assert!(Instant::now() < deadline, "rows ahead never taken in");
                worker.step();
            }
            let _ = ddpersist::operators::agree_resume_state(worker, &[]);
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        } else {
            let from = T::from_u64(state.greatest_upper).expect("the greatest upper fits T");
            input.advance_to(from);
            drop(input);
            while !probe.done() {
                assert!(Instant::now() < deadline, "hang in the second run");
                worker.step();
            }
        }
    })
    .unwrap();
}

/// The collection `out` accumulates to at `t`.
fn at<T: Ord + Copy>(out: &Out<T>, t: T) -> BTreeMap<String, isize> {
    let mut acc = BTreeMap::new();
    for (x, time, d) in out.lock().unwrap().iter() {
        if *time <= t {
            *acc.entry(x.clone()).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

fn check<T: PersistTime + Debug + Sync>(start: T, stop: T, rows: Vec<(u32, T)>, probes: Vec<T>) {
    let tmp = tempfile::tempdir().unwrap();
    let first: Out<T> = Default::default();
    run(tmp.path(), true, (start, stop), rows.clone(), &first);
    let second: Out<T> = Default::default();
    run(tmp.path(), false, (start, stop), rows.clone(), &second);
    for t in probes {
        let mut want = BTreeMap::new();
        for (k, at) in &rows {
            if *at <= t {
                *want.entry(format!("{k}=r{k}")).or_insert(0) += 1;
            }
        }
        // The first run completed times below `stop`; the second run serves everything.
        if t < stop {
            assert_eq!(at(&first, t), want, "first run at {t:?}");
        }
        assert_eq!(at(&second, t), want, "second run at {t:?}");
    }
}

#[test]
fn i32_times_from_negative_with_rows_ahead() {
    let rows = vec![(1, -100), (2, -50), (3, -50), (4, 7), (5, i32::MAX - 1)];
    check(
        -120i32,
        -80,
        rows,
        vec![
            -120,
            -100,
            -81,
            -80,
            -51,
            -50,
            0,
            6,
            7,
            8,
            i32::MAX - 2,
            i32::MAX - 1,
        ],
    );
}

#[test]
fn product_times_with_rows_ahead() {
    let p = |t: u32| Product::new((), t);
    let rows = vec![(1, p(3)), (2, p(40)), (3, p(40)), (4, p(1000))];
    check(
        p(0),
        p(10),
        rows,
        vec![p(0), p(3), p(9), p(10), p(39), p(40), p(999), p(1000)],
    );
}
