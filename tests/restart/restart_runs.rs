//! Adversarial round 6: a persisted dataflow run again and again over one store, as a daily batch job or a
//! service that crashes: runs that close their input, runs dropped mid-time (a crash), an idle worker, `u32`
//! times, everyday key and val types; the last run's outputs against an in-memory model of every update.
#![allow(clippy::type_complexity)]

use crate::common;

use common::dropin::{consolidated, final_state, Log};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistOptions, PersistTime};
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Key = (u64, String);
type Val = Option<Vec<u8>>;
type Row = (Key, Val);

/// How a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// Feeds its times, closes the input and runs to completion (a batch job's day).
    Close,
    /// Feeds its times, gives updates at the next time without advancing, and drops the dataflow (a crash).
    Crash,
    /// Feeds its times, advances past them, waits for the outputs and drops the dataflow.
    Drop,
}

/// The updates of time `t`: inserts of new rows, retractions of rows inserted 3 times earlier (at the
/// time they were inserted, so the model is the plain sum).
fn updates_at(t: u64) -> Vec<(Row, isize)> {
    let row = |t: u64, i: u64| -> Row {
        let key = ((t * 7 + i) % 5, format!("k{}", (t + i) % 3));
        let val = if (t + i).is_multiple_of(4) {
            None
        } else {
            Some(vec![(t % 256) as u8; (i as usize) % 3])
        };
        (key, val)
    };
    let mut out: Vec<(Row, isize)> = (0..4).map(|i| (row(t, i), 1)).collect();
    if t >= 3 {
        out.push((row(t - 3, 1), -1));
        out.push((row(t - 3, 2), -1));
    }
    out
}

struct Outputs {
    rows: Log<Row, u32>,
    counts: Log<(Key, isize), u32>,
    distinct: Log<u64, u32>,
    resumed: Mutex<Vec<u64>>,
}

/// One run on `workers` workers over `dir`: feeds times `[resume, end)` from worker 0 only (worker 1 idle),
/// ends as `how` says, and returns the agreed resume point.
fn run(dir: &std::path::Path, workers: usize, end: u64, how: End) -> (u64, Arc<Outputs>) {
    run_with(dir, workers, end, how, None)
}

/// [`run`]; with `durable_from`, the arrangement's stream is durable and the input feeds new updates only,
/// from that time on (after advancing to the greatest upper).
fn run_with(
    dir: &std::path::Path,
    workers: usize,
    end: u64,
    how: End,
    durable_from: Option<u64>,
) -> (u64, Arc<Outputs>) {
    let store = Store::open(dir).unwrap();
    let out = Arc::new(Outputs {
        rows: Default::default(),
        counts: Default::default(),
        distinct: Default::default(),
        resumed: Mutex::new(Vec::new()),
    });
    let o = out.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let store = store.clone();
        let (mut input, handles) = worker.dataflow::<u32, _, _>(|scope| {
            let (input, c) = scope.new_collection::<Row, isize>();
            let options = PersistOptions {
                durable: durable_from.is_some(),
                ..Default::default()
            };
            let p = c
                .clone()
                .arrange_by_key_persisted_with(&store, "rows", options)
                .unwrap();
            let ids = c
                .map(|((id, _), _)| id)
                .arrange_by_self_persisted_with(&store, "ids", options)
                .unwrap();
            let handles = [p.handle().unwrap().clone(), ids.handle().unwrap().clone()];
            let (a, b, d) = (o.rows.clone(), o.counts.clone(), o.distinct.clone());
            p.clone()
                .as_collection(|k, v| (k.clone(), v.clone()))
                .inner
                .inspect(move |(x, t, r)| a.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            p.count_total()
                .inner
                .inspect(move |(x, t, r)| b.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            ids.distinct_total()
                .inner
                .inspect(move |(x, t, r)| d.lock().unwrap().push((*x, *t, *r as i64)))
                .probe_with(&probe);
            (input, handles)
        });
        let states: Vec<_> = handles.iter().map(|h| h.resume_state()).collect();
        let mut resume = ddpersist::operators::resume_at(worker, &states);
        o.resumed.lock().unwrap().push(resume);
        if let Some(from) = durable_from {
            let greatest = handles[0].resume_state().greatest_upper;
            input.advance_to(u32::from_u64(greatest).unwrap());
            resume = from;
        }
        let start = std::time::Instant::now();
        for t in resume..end {
            input.advance_to(u32::from_u64(t).unwrap());
            if worker.index() == 0 {
                for (row, diff) in updates_at(t) {
                    input.update(row, diff);
                }
            }
        }
        input.advance_to(u32::from_u64(end).unwrap());
        input.flush();
        match how {
            End::Close => {
                drop(input);
                worker.step_while(|| {
                    assert!(start.elapsed().as_secs() < 30, "hang");
                    !probe.done()
                });
            }
            End::Drop => {
                worker.step_while(|| {
                    assert!(start.elapsed().as_secs() < 30, "hang");
                    probe.less_than(&u32::from_u64(end).unwrap())
                });
                common::drop_dataflows(worker);
            }
            End::Crash => {
                if worker.index() == 0 {
                    for (row, diff) in updates_at(end) {
                        input.update(row, diff);
                    }
                }
                input.flush();
                for _ in 0..20 {
                    worker.step();
                }
                common::drop_dataflows(worker);
            }
        }
        for h in &handles {
            assert!(h.error().is_none(), "{:?}", h.error());
        }
    })
    .unwrap();
    let resumed = out.resumed.lock().unwrap().clone();
    assert!(
        resumed.windows(2).all(|w| w[0] == w[1]),
        "resume points differ: {resumed:?}"
    );
    (resumed[0], out)
}

/// The collection after every update below `end`.
fn model(end: u64) -> BTreeMap<Row, i64> {
    let mut acc = BTreeMap::new();
    for t in 0..end {
        for (row, diff) in updates_at(t) {
            *acc.entry(row).or_insert(0) += diff as i64;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

fn check(out: &Outputs, end: u64, what: &str) {
    let expected = model(end);
    assert_eq!(final_state(&out.rows), expected, "{what}: rows");
    let mut counts: BTreeMap<(Key, isize), i64> = BTreeMap::new();
    let mut per_key: BTreeMap<Key, isize> = BTreeMap::new();
    for ((k, _), d) in &expected {
        *per_key.entry(k.clone()).or_insert(0) += *d as isize;
    }
    for (k, c) in per_key.into_iter().filter(|(_, c)| *c != 0) {
        counts.insert((k, c), 1);
    }
    assert_eq!(final_state(&out.counts), counts, "{what}: count_total");
    let mut ids: BTreeMap<u64, i64> = BTreeMap::new();
    let mut id_sums: BTreeMap<u64, i64> = BTreeMap::new();
    for (((id, _), _), d) in &expected {
        *id_sums.entry(*id).or_insert(0) += d;
    }
    for (id, s) in id_sums {
        if s > 0 {
            ids.insert(id, 1);
        }
    }
    assert_eq!(final_state(&out.distinct), ids, "{what}: distinct_total");
    // No time of the output is at or beyond `end` but for a crash's open time.
    assert!(consolidated(&out.rows).keys().all(|(t, _)| u64::from(*t) <= end));
}

/// Days closed one after the other (each run a batch job that ends its input), then a crashed run, a
/// refused run on another worker count, and a run resumed from the agreed point.
#[test]
fn closed_days_a_crash_and_a_resume_answer_as_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let (r, out) = run(dir.path(), 2, 5, End::Close);
    assert_eq!(r, 0);
    check(&out, 5, "day 1");
    let (r, out) = run(dir.path(), 2, 9, End::Close);
    assert_eq!(r, 5, "a closed day resumes where it ended");
    check(&out, 9, "day 2");
    let (r, _) = run(dir.path(), 2, 13, End::Crash);
    assert_eq!(r, 9);
    // Another worker count is refused when the dataflow is built, naming the cause.
    let refused = std::panic::catch_unwind(|| run(dir.path(), 3, 14, End::Drop));
    assert!(refused.is_err(), "3 workers over a store of 2 must be refused");
    // timely's guards stop joining at the first worker's panic: the others may still hold the store.
    let start = std::time::Instant::now();
    while let Err(e) = Store::open(dir.path()) {
        assert!(start.elapsed().as_secs() < 10, "{e:?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let (r, out) = run(dir.path(), 2, 16, End::Drop);
    assert!(r <= 13, "resume at {r}");
    check(&out, 16, "after the crash");
    let (r, out) = run(dir.path(), 2, 18, End::Close);
    assert_eq!(r, 16);
    check(&out, 18, "closed after a drop");
    let (r, out) = run(dir.path(), 2, 18, End::Close);
    assert_eq!(r, 18, "a run with nothing new");
    check(&out, 18, "nothing new");
}

/// One worker throughout, each run crashing, so each resumes from a crashed time.
#[test]
fn crash_after_crash_one_worker_answers_as_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut end = 3;
    for _ in 0..4 {
        let (r, _) = run(dir.path(), 1, end, End::Crash);
        assert!(r <= end);
        end += 3;
    }
    let (_, out) = run(dir.path(), 1, end, End::Drop);
    check(&out, end, "after crashes");
}

/// A durable arrangement on one worker: each run crashes with a time's updates taken in but not sealed,
/// and the next run feeds only new updates (from the time after), as an input that cannot replay does.
#[test]
fn durable_crash_after_crash_keeps_the_open_times_updates() {
    let dir = tempfile::tempdir().unwrap();
    let mut from = 0;
    let mut end = 3;
    for _ in 0..4 {
        run_with(dir.path(), 1, end, End::Crash, Some(from));
        // The crash gave the updates of `end`: they are written, durable.
        from = end + 1;
        end += 3;
    }
    let (_, out) = run_with(dir.path(), 1, end, End::Drop, Some(from));
    check(&out, end, "durable, after crashes");
}

/// The error of building arrangement `"rows"` over `dir` with durability `durable` (one worker).
fn build_error(dir: &std::path::Path, durable: bool) -> ddpersist::Error {
    let store = Store::open(dir).unwrap();
    timely::execute_directly(move |worker| {
        worker.dataflow::<u32, _, _>(|scope| {
            let (_input, c) = scope.new_collection::<Row, isize>();
            let options = PersistOptions {
                durable,
                ..Default::default()
            };
            match c.arrange_by_key_persisted_with(&store, "rows", options) {
                Ok(_) => panic!("built with durable {durable} over a stream of the other durability"),
                Err(e) => e,
            }
        })
    })
}

/// Found by adversarial round 6: a dataflow switched to a durable arrangement (its source can no longer
/// replay) over a stream created not durable was built and stayed not durable, so what its last run took
/// in but did not seal was gone while the input, told it is durable, fed new updates only (rows of time 3
/// lost). Now the build is refused, naming the stream; the store is untouched, and the run as created
/// (replaying from `resume_at`) answers as the model.
#[test]
fn switching_an_existing_arrangement_to_durable_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), 1, 3, End::Crash, None);
    let err = build_error(dir.path(), true);
    let msg = err.to_string();
    assert!(matches!(err, ddpersist::Error::BadInput { .. }), "{err:?}");
    assert!(msg.contains("rows/w0of1") && msg.contains("not durable"), "{msg}");
    let (_, out) = run_with(dir.path(), 1, 6, End::Drop, None);
    check(&out, 6, "rebuilt as created, not durable");
}

/// The other way round: a durable arrangement's dataflow switched to a replayable source (the default, not
/// durable) kept the durable stream, whose unsealed updates survive, and the source replayed them from
/// `resume_at()`: rows of time 3 counted twice. Now refused; the run as created (new updates only, from
/// the greatest upper) answers as the model.
#[test]
fn switching_a_durable_arrangement_to_replay_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    run_with(dir.path(), 1, 3, End::Crash, Some(0));
    let err = build_error(dir.path(), false);
    assert!(matches!(err, ddpersist::Error::BadInput { .. }), "{err:?}");
    assert!(err.to_string().contains("created durable"), "{err}");
    // The crashed run took in time 3 (durable: kept); the input goes on with time 4.
    let (_, out) = run_with(dir.path(), 1, 6, End::Drop, Some(4));
    check(&out, 6, "rebuilt as created, durable");
}
