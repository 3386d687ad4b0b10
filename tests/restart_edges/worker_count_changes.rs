//! Another worker count at a restart (README, "Restarting": refused when the dataflow is built). A build
//! refused part way must not leave anything that refuses the next build on the right count: adversarial
//! round 14 built `fresh` (a new id) then `old` (persisted by 2 workers) on 3 workers; `old` was refused,
//! and `fresh`'s three empty streams then refused the rerun on 2 workers ("persisted by 3 workers").
//! Streams of another count that hold nothing are now dropped at the build; ones that hold something are
//! still refused, and kept.

use crate::common;

use common::BuildFailed;
use ddpersist::operators::ArrangeTyped;
use ddpersist::{Store, StreamOptions};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Rows = BTreeMap<(String, u64), i64>;

/// One run on `peers` workers arranging `ids` in that order (each fed `{id}{t}` at times 0..3 by worker
/// 0 when `feed`), run to completion. Returns the build errors (one per worker that failed) and what each
/// arrangement accumulated to, keyed by id.
fn run(dir: &Path, peers: usize, ids: &'static [&'static str], feed: bool) -> (Vec<String>, Rows) {
    let store = Store::open(dir).unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let out: Arc<Mutex<Rows>> = Default::default();
    let (e, o) = (errors.clone(), out.clone());
    let failed = BuildFailed::default();
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let o = o.clone();
        let built = worker.dataflow::<u64, _, _>(|scope| -> ddpersist::Result<_> {
            let mut inputs = Vec::new();
            for &id in ids {
                let (input, rows) = scope.new_collection::<(String, u64), isize>();
                let arranged = rows.arrange_by_key_persisted(&store, id)?;
                let o = o.clone();
                arranged
                    .as_collection(move |k, v| (format!("{id}:{k}"), *v))
                    .inner
                    .inspect(move |((k, v), _, d)| {
                        *o.lock().unwrap().entry((k.clone(), *v)).or_insert(0) += *d as i64;
                    })
                    .probe_with(&probe);
                inputs.push(input);
            }
            Ok(inputs)
        });
        let mut inputs = match built {
            Ok(inputs) => inputs,
            Err(err) => {
                let err = failed.fail(worker, err);
                e.lock().unwrap().push(err.to_string());
                return;
            }
        };
        if feed && worker.index() == 0 {
            for (input, id) in inputs.iter_mut().zip(ids) {
                for t in 0..3u64 {
                    input.update_at((format!("{id}{t}"), t), t, 1);
                }
            }
        }
        drop(inputs);
        while worker.step_or_park(None) && !failed.is_set() {}
        let _ = failed.check(worker);
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    let mut rows = out.lock().unwrap().clone();
    rows.retain(|_, d| *d != 0);
    (errors, rows)
}

/// Creates the streams of workers `workers` of `count` of operator `"x"` in the store in `dir`, empty.
fn create_streams(dir: &Path, workers: std::ops::Range<usize>, count: usize, durable: bool) -> Store {
    let store = Store::open(dir).unwrap();
    for w in workers {
        let id = ddpersist::operators::worker_stream_id("x", w, count);
        store.create_stream(&id, StreamOptions { durable }).unwrap();
    }
    store
}

fn want(ids: &[&str]) -> Rows {
    let mut rows = Rows::new();
    for id in ids {
        for t in 0..3u64 {
            rows.insert((format!("{id}:{id}{t}"), t), 1);
        }
    }
    rows
}

#[test]
fn a_build_refused_for_its_worker_count_leaves_nothing_that_refuses_the_right_one() {
    let dir = tempfile::tempdir().unwrap();
    let (errors, rows) = run(dir.path(), 2, &["old"], true);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rows, want(&["old"]));

    // 3 workers: `fresh` is built (its streams created), then `old` is refused on every worker.
    let (errors, _) = run(dir.path(), 3, &["fresh", "old"], false);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("\"old\"") && e.contains("2 workers")),
        "{errors:?}"
    );

    // Back on 2 workers: `fresh`'s empty 3-worker streams are dropped, `old` replays its rows.
    let (errors, rows) = run(dir.path(), 2, &["fresh", "old"], true);
    assert!(
        errors.is_empty(),
        "the rerun on the right worker count: {errors:?}"
    );
    assert_eq!(rows, want(&["fresh", "old"]));
    let streams = Store::open(dir.path()).unwrap().streams();
    assert!(!streams.iter().any(|s| s.ends_with("of3")), "{streams:?}");

    // `fresh` now holds rows on 2 workers: 3 workers are refused over it, and nothing is dropped.
    let (errors, _) = run(dir.path(), 3, &["fresh"], false);
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("\"fresh\"")), "{errors:?}");
    let (errors, rows) = run(dir.path(), 2, &["fresh", "old"], false);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(rows, want(&["fresh", "old"]), "both replayed whole");
}

/// Streams of another count are dropped only if none holds anything: one of three with an unsealed
/// durable update (written through the store, as a crashed run's WAL leaves it) keeps all three, and the
/// build is refused.
#[test]
fn streams_of_another_count_are_kept_if_one_holds_an_unsealed_update() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = create_streams(dir.path(), 0..3, 3, true);
        let one = ddpersist::operators::worker_stream_id("x", 1, 3);
        store.write(&one, &[("k".to_string(), 1u64, 0u64, 1i64)]).unwrap();
    }
    let (errors, _) = run(dir.path(), 2, &["x"], false);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("3 workers")), "{errors:?}");
    let streams = Store::open(dir.path()).unwrap().streams();
    assert_eq!(
        streams.iter().filter(|s| s.ends_with("of3")).count(),
        3,
        "{streams:?}"
    );
}

/// A store holding only some workers' streams of another count (a cluster's process holds its own
/// workers' streams), even empty ones, is refused as before and keeps them: the other processes, which
/// this one cannot see, may hold data, and one process alone must not decide otherwise than they do. So
/// is a store whose other-count streams are all there, empty but one sealed closed (its input ended).
#[test]
fn only_a_whole_set_of_empty_streams_of_another_count_is_dropped() {
    use ddpersist::operators::worker_stream_id;
    let part = tempfile::tempdir().unwrap();
    drop(create_streams(part.path(), 0..2, 4, false));
    let (errors, _) = run(part.path(), 2, &["x"], false);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().all(|e| e.contains("4 workers")), "{errors:?}");
    let streams = Store::open(part.path()).unwrap().streams();
    assert_eq!(
        streams.iter().filter(|s| s.ends_with("of4")).count(),
        2,
        "{streams:?}"
    );

    let finished = tempfile::tempdir().unwrap();
    let store = create_streams(finished.path(), 0..3, 3, false);
    store
        .seal(&worker_stream_id("x", 2, 3), ddpersist::FRONTIER_CLOSED)
        .unwrap();
    drop(store);
    let (errors, _) = run(finished.path(), 2, &["x"], false);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let streams = Store::open(finished.path()).unwrap().streams();
    assert_eq!(
        streams.iter().filter(|s| s.ends_with("of3")).count(),
        3,
        "{streams:?}"
    );
}
