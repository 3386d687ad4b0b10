//! A full disk under a *durable* persisted arrangement (`arrange_by_key_persisted_with`, `durable: true`):
//! its WAL write fails and poisons the store. Expected: the operator reports the full disk and holds its
//! frontier; after growing the disk and restarting, every row of a time the probe had passed is there,
//! nothing is there twice or was never fed, and new input at or beyond `greatest_upper` is taken in.
//! Also: building a persisted dataflow on a full disk fails with the full disk's error, not a panic.

use crate::env::{msg_is_disk_full, Tmpfs};
use crate::store_full::fill;
use ddpersist::operators::{ArrangeTyped, PersistOptions};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);

fn rows(t: u64) -> Vec<Row> {
    (0..50)
        .map(|i| (format!("r{t:06}-{i:02}-{}", "y".repeat(150)), t))
        .collect()
}

struct Out {
    frontier: Option<u64>,
    error: Option<String>,
    greatest: u64,
    fed: Vec<u64>,
}

/// What the durable arrangement emitted: `(row, time, diff)`.
type Log = Arc<Mutex<Vec<(Row, u64, i64)>>>;

/// One run: feeds rounds `rounds` (each at its own time, from the greatest upper on), stops at an error.
fn run(dir: &Path, peers: usize, rounds: std::ops::Range<u64>, log: &Log) -> Vec<Out> {
    let store = Store::open_with(
        dir,
        Options {
            compaction_threads: 1,
            merge_fan_in: 4,
            ..Options::default()
        },
    )
    .unwrap();
    let failed = Arc::new(AtomicBool::new(false));
    let log = log.clone();
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let (index, peers) = (worker.index(), worker.peers());
        let l = log.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<Row, i64>();
            let o = PersistOptions {
                durable: true,
                ..Default::default()
            };
            let a = c.arrange_by_key_persisted_with(&store, "d", o).unwrap();
            let h = a.handle().unwrap().clone();
            a.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inner
                .inspect(move |(d, t, r)| l.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&probe);
            (input, h)
        });
        let greatest = handle.resume_state().greatest_upper;
        let mut fed = Vec::new();
        let mut t = greatest;
        input.advance_to(t);
        for r in rounds.clone() {
            for (n, row) in rows(r).into_iter().enumerate() {
                if n % peers == index {
                    input.update((row.0, row.1), 1);
                }
            }
            fed.push(r);
            t += 1;
            input.advance_to(t);
            input.flush();
            let start = Instant::now();
            worker.step_or_park_while(Some(Duration::from_millis(10)), || {
                if handle.error().is_some() {
                    failed.store(true, Ordering::SeqCst);
                }
                !failed.load(Ordering::SeqCst)
                    && probe.less_than(&t)
                    && start.elapsed() < Duration::from_secs(5)
            });
            if failed.load(Ordering::SeqCst) || probe.less_than(&t) {
                break;
            }
        }
        for _ in 0..200 {
            worker.step();
        }
        let out = Out {
            frontier: probe.with_frontier(|f| f.first().copied()),
            error: handle.error(),
            greatest,
            fed,
        };
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
        out
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect()
}

fn durable_full(peers: usize) {
    let Some(fs) = Tmpfs::mount(2) else { return };
    let dir = fs.0.join("store");
    let log = Arc::new(Mutex::new(Vec::new()));
    let first = run(&dir, peers, 0..5000, &log);
    let errors: Vec<_> = first.iter().filter_map(|o| o.error.clone()).collect();
    assert!(!errors.is_empty(), "2 MiB never filled");
    for e in &errors {
        assert!(msg_is_disk_full(e), "not the full disk's error: {e}");
    }
    // Rounds are fed at times 0, 1, ...: round r at time r (greatest upper 0 at the start).
    let acked = first.iter().filter_map(|o| o.frontier).min().unwrap();
    let fed_max = first.iter().map(|o| o.fed.len() as u64).max().unwrap();
    eprintln!("durable x{peers}: acknowledged below {acked}, fed {fed_max} rounds; errors {errors:?}");
    fs.resize(64);
    let log2 = Arc::new(Mutex::new(Vec::new()));
    let second = run(&dir, peers, 100_000..100_005, &log2);
    for o in &second {
        assert_eq!(o.error, None, "the restarted run failed");
    }
    let greatest = second[0].greatest;
    let end = greatest + 5;
    assert!(
        second.iter().all(|o| o.frontier == Some(end)),
        "restarted run did not complete"
    );
    let mut acc: BTreeMap<Row, i64> = BTreeMap::new();
    for (d, _, r) in log2.lock().unwrap().iter() {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    for r in 0..acked {
        for row in rows(r) {
            assert_eq!(
                acc.get(&row),
                Some(&1),
                "acknowledged row of round {r} lost or doubled"
            );
        }
    }
    for r in 100_000..100_005 {
        for row in rows(r) {
            let row = (row.0, row.1);
            assert_eq!(acc.get(&row), Some(&1), "new row of round {r} after the restart");
        }
    }
    for (row, d) in &acc {
        assert_eq!(*d, 1, "{row:?} held {d} times");
        assert!(row.1 < fed_max || row.1 >= 100_000, "{row:?} never fed");
    }
}

#[test]
fn full_disk_under_a_durable_arrangement_1_worker() {
    durable_full(1);
}

#[test]
fn full_disk_under_a_durable_arrangement_2_workers() {
    durable_full(2);
}

/// Building persisted operators on a full disk (their streams are created at the build): the build
/// returns the full disk's error (no panic); once there is room the same build works.
#[test]
fn building_a_persisted_dataflow_on_a_full_disk() {
    let Some(fs) = Tmpfs::mount(2) else { return };
    let dir = fs.0.join("store");
    let store = Store::open(&dir).unwrap();
    let filler = fill(&dir);
    let results: Vec<Result<(), String>> = timely::execute(timely::Config::process(2), {
        let store = store.clone();
        move |worker| {
            worker.dataflow::<u64, _, _>(|scope| {
                let (_input, c) = scope.new_collection::<Row, i64>();
                c.arrange_by_key_persisted(&store, "x")
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    eprintln!("build on a full disk: {results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(msg_is_disk_full(e), "unclear build error: {e}");
        }
    }
    drop(store);
    std::fs::remove_file(filler).unwrap();
    let store = Store::open(&dir).unwrap();
    let ok: Vec<bool> = timely::execute(timely::Config::process(2), move |worker| {
        let r = worker.dataflow::<u64, _, _>(|scope| {
            let (_input, c) = scope.new_collection::<Row, i64>();
            c.arrange_by_key_persisted(&store, "x")
                .map(|_| ())
                .map_err(|e| e.to_string())
        });
        if let Err(e) = &r {
            eprintln!("rebuild: {e}");
        }
        for d in worker.installed_dataflows() {
            worker.drop_dataflow(d);
        }
        r.is_ok()
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    assert!(ok.iter().all(|x| *x), "the build after freeing space failed");
}
