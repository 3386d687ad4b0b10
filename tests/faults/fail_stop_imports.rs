//! Adversarial round 8: fail-stop under `import_frontier_core` with an `until` below the damaged span.

use crate::common;

use common::fail_stop::{assert_complete_outputs_right, damage, first_run, options, round, ROUNDS};
use ddpersist::operators::ArrangeTyped;
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::progress::Antichain;

type Output = Arc<Mutex<Vec<((String, u64), u64, i64)>>>;

/// The round whose batch is damaged.
const BAD: u64 = 3;

/// `import_frontier_core(since [0], until [BAD])` presents only times below BAD, all of them in checked,
/// undamaged spans; DD's import closes its frontier once the trace's upper passes `until`.
/// The import's probe is done (frontier empty) with the rounds below BAD in its output. Found by
/// adversarial round 8: the import's frontier stayed at [BAD] for good (the damaged span's lower), though
/// nothing it presents lies there: the fail-stop hold (src/operators/import.rs) checked every span with
/// a file, including those wholly at or beyond `until`, and held at the first unchecked one.
#[test]
fn an_import_with_until_below_the_damage_completes() {
    let (frontier, stopped, out) = run(true, 0, BAD);
    assert!(stopped, "the damage is found");
    assert_eq!(out, expected_below_until(), "the import's output below until");
    // Actual: [3] (held at the damaged span's lower by `hold_until_checked`).
    assert_eq!(
        frontier,
        Vec::<u64>::new(),
        "the import with until [{BAD}] must complete"
    );
}

/// `import_frontier_core(since [BAD + 1], until [BAD + 1])`: the damaged span `[BAD, BAD + 1)` lies below
/// `until`, but `since` advances each of its times (every time, in fact) to `until`, so the import presents
/// nothing and completes, as DD's does. Found by a review of round 8's fix: the hold compared the span's
/// lower, not advanced by `since`, with `until`, checked the span and held the import at [BAD] for good.
#[test]
fn an_import_whose_since_advances_the_damage_past_until_completes() {
    let (frontier, _stopped, out) = run(true, BAD + 1, BAD + 1);
    assert_eq!(
        out,
        BTreeMap::new(),
        "every time is advanced to until: nothing presented"
    );
    assert_eq!(frontier, Vec::<u64>::new(), "the import must complete");
}

/// The control: without damage the same import completes (DD's behaviour).
#[test]
fn an_import_with_until_completes_without_damage() {
    let (frontier, stopped, out) = run(false, 0, BAD);
    assert!(!stopped);
    assert_eq!(out, expected_below_until());
    assert_eq!(frontier, Vec::<u64>::new());
}

fn expected_below_until() -> BTreeMap<(String, u64), i64> {
    (0..BAD).flat_map(round).map(|kv| (kv, 1)).collect()
}

/// Restarts over a store whose batch at BAD is damaged (if `damaged`), imports with since [`since`] and until
/// [`until`]; returns the import's frontier once it is done (or after 20 s), whether the trace stopped, and
/// the import's output.
fn run(damaged: bool, since: u64, until: u64) -> (Vec<u64>, bool, BTreeMap<(String, u64), i64>) {
    let tmp = tempfile::tempdir().unwrap();
    first_run(tmp.path(), true);
    if damaged {
        damage(tmp.path(), BAD);
    }
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let out: Output = Default::default();
    let o = out.clone();
    let (frontier, stopped) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let imported = ProbeHandle::new();
        let (mut input, mut trace, errors) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let arranged = a.arrange_by_key_persisted(&store, "a").unwrap();
            let errors = arranged.errors().clone();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace, errors)
        });
        worker.dataflow::<u64, _, _>(|scope| {
            let (imp, _button) = trace.import_frontier_core(
                scope,
                "Until",
                Antichain::from_elem(since),
                Antichain::from_elem(until),
            );
            imp.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inspect(move |(d, t, r)| o.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&imported);
        });
        input.advance_to(ROUNDS);
        input.flush();
        // Until the import is done (a loaded machine needs more steps than a quiet one), or 20 s.
        let start = std::time::Instant::now();
        while !imported.done() && start.elapsed().as_secs() < 20 {
            worker.step();
        }
        let frontier = imported.with_frontier(|f| f.to_vec());
        let stopped = errors.is_stopped();
        drop(input);
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        (frontier, stopped)
    });
    let mut got: BTreeMap<(String, u64), i64> = BTreeMap::new();
    for (d, _, r) in out.lock().unwrap().iter() {
        *got.entry(d.clone()).or_default() += r;
    }
    got.retain(|_, r| *r != 0);
    (frontier, stopped, got)
}

/// A damaged batch restarted under a store that merges (fan-in 2, a compaction thread, `compact` called
/// each round) while new rounds arrive: the merges meet the damaged block too. Expected: the arrangement
/// holds its frontier at the damaged span's lower (BAD), its handle reports the damaged file, every output
/// at a complete time is right, nothing panics.
#[test]
fn a_damaged_batch_under_merges_keeps_the_frontier_held() {
    let tmp = tempfile::tempdir().unwrap();
    first_run(tmp.path(), true);
    let (bad_name, _) = damage(tmp.path(), BAD);
    let merging = Options {
        block_target_bytes: 256,
        compaction_threads: 1,
        merge_fan_in: 2,
        ..Options::default()
    };
    let store = Store::open_with(tmp.path(), merging).unwrap();
    let st = store.clone();
    let out: Output = Default::default();
    let o = out.clone();
    let (frontier, error, stopped) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let arranged = a.arrange_by_key_persisted(&st, "a").unwrap();
            let handle = arranged.handle().unwrap().clone();
            arranged
                .as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inspect(move |(d, t, r)| o.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&probe);
            (input, handle)
        });
        input.advance_to(ROUNDS);
        for t in ROUNDS..ROUNDS + 8 {
            for kv in round(t) {
                input.update(kv, 1);
            }
            input.advance_to(t + 1);
            input.flush();
            for _ in 0..30 {
                worker.step();
            }
            st.compact("a/w0of1").ok();
        }
        // Until the damage is met (or 20 s), then on a while to see the frontier stay.
        let start = std::time::Instant::now();
        while !handle.errors().is_stopped() && start.elapsed().as_secs() < 20 {
            worker.step();
        }
        for _ in 0..100 {
            worker.step();
        }
        let frontier = probe.with_frontier(|f| f.to_vec());
        let stopped = handle.errors().is_stopped();
        let error = handle.errors().message();
        drop(input);
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        (frontier, error, stopped)
    });
    assert!(stopped, "stopped; error {error:?}");
    let error = error.unwrap();
    assert!(error.contains(&bad_name), "the error {error} names {bad_name}");
    assert_eq!(frontier, vec![BAD], "the frontier is held at the damaged span");
    assert_complete_outputs_right(&out.lock().unwrap(), BAD);
}

/// Two workers; one worker's batch at BAD is damaged. A `count_total` over the arrangement and the same
/// over a typed `import` in a second dataflow: neither probe passes BAD on any worker (the other
/// worker's spans are fine, but its times are not complete without the damaged worker's), and every count
/// at a complete time is right.
#[test]
fn two_workers_one_damaged_stream_holds_every_worker() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(tmp.path(), options()).unwrap();
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, a) = scope.new_collection::<(String, u64), i64>();
                let arranged = a.arrange_by_key_persisted(&store, "a").unwrap();
                arranged.stream.probe_with(&probe);
                input
            });
            for t in 0..ROUNDS {
                if worker.index() == 0 {
                    for kv in round(t) {
                        input.update(kv, 1);
                    }
                }
                input.advance_to(t + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(t + 1)));
            }
        })
        .unwrap();
    }
    // Only worker 0 holds updates, so the one batch file at BAD is its.
    damage(tmp.path(), BAD);
    let store = Store::open_with(tmp.path(), options()).unwrap();
    type Counts = Arc<Mutex<Vec<(String, u64, i64)>>>;
    let (direct, imported): (Counts, Counts) = Default::default();
    let (d2, i2) = (direct.clone(), imported.clone());
    let frontiers = timely::execute(timely::Config::process(2), move |worker| {
        let (p1, p2) = (ProbeHandle::new(), ProbeHandle::new());
        let d = d2.clone();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let arranged = a.arrange_by_key_persisted(&store, "a").unwrap();
            arranged
                .clone()
                .as_collection(|k: &String, _v: &u64| k[..3].to_string())
                .count()
                .inspect(move |((p, c), t, r)| d.lock().unwrap().push((format!("{p}:{c}"), *t, *r as i64)))
                .probe_with(&p1);
            (input, arranged.trace)
        });
        let i = i2.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            trace
                .import(scope)
                .as_collection(|k: &String, _v: &u64| k[..3].to_string())
                .count()
                .inspect(move |((p, c), t, r)| i.lock().unwrap().push((format!("{p}:{c}"), *t, *r as i64)))
                .probe_with(&p2);
        });
        input.advance_to(ROUNDS + 2);
        input.flush();
        // Until both reach the damaged time (the checks run on the blocks as they are read: a loaded
        // machine took more than 400 steps), then on a while to see them stay there.
        let start = std::time::Instant::now();
        while (p1.less_than(&BAD) || p2.less_than(&BAD)) && start.elapsed().as_secs() < 20 {
            worker.step();
        }
        for _ in 0..400 {
            worker.step();
        }
        let f = (p1.with_frontier(|f| f.to_vec()), p2.with_frontier(|f| f.to_vec()));
        drop(input);
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        f
    })
    .unwrap()
    .join();
    for f in frontiers {
        let (f1, f2) = f.unwrap();
        assert!(
            f1.iter().all(|t| *t <= BAD) && !f1.is_empty(),
            "direct frontier {f1:?}"
        );
        assert!(
            f2.iter().all(|t| *t <= BAD) && !f2.is_empty(),
            "import frontier {f2:?}"
        );
    }
    // Complete times: each prefix kNN has 60 rows from round NN on.
    for (name, out) in [("direct", &direct), ("import", &imported)] {
        for t in 0..BAD {
            let mut got: BTreeMap<String, i64> = BTreeMap::new();
            for (p, time, r) in out.lock().unwrap().iter() {
                if *time <= t {
                    *got.entry(p.clone()).or_default() += r;
                }
            }
            got.retain(|_, r| *r != 0);
            let want: BTreeMap<String, i64> = (0..=t).map(|r| (format!("k{r:02}:60"), 1)).collect();
            assert_eq!(got, want, "{name} counts at {t}");
        }
    }
}
