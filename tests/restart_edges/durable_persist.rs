//! `persist` over a *durable* stream, for a source that cannot replay (DESIGN.md §5: exactly once,
//! defined). A child process writes times in two activations each (so a kill can land inside a time) and
//! is killed with SIGKILL at a random point; the restarted run does not replay, it continues after what
//! the store holds. Checked: every time downstream saw complete is in the store whole, nothing is stored or
//! emitted twice, and the restarted run's output is exactly the store's content plus the new input.

use crate::common;

use ddpersist::operators::Persist;
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);

/// The six rows of time `t`, each once.
fn rows(t: u64) -> Vec<Row> {
    (0..6)
        .map(|i| (format!("k{}", (t * 5 + i) % 17), t * 10 + i))
        .collect()
}

/// Feeds times `from..to` to a durable persisted stream, each time in two activations; returns what the
/// operator emitted. With `pause_ms`, prints `complete T` once the output passed `T` and sleeps.
fn run(dir: &Path, from: u64, to: u64, pause_ms: u64) -> Vec<(Row, u64, i64)> {
    let options = ManagerOptions {
        max_bytes_per_sec: None,
        durable: true,
    };
    let manager = PersistManager::with_options(Store::open(dir).unwrap(), options);
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", 0).unwrap();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, handle) = rows.persist(token).unwrap();
            persisted
                .inner
                .inspect(move |u| o.lock().unwrap().push(u.clone()))
                .probe_with(&probe);
            (input, handle)
        });
        input.advance_to(from);
        for t in from..to {
            input.advance_to(t);
            let all = rows(t);
            for (i, half) in all.chunks(3).enumerate() {
                for row in half {
                    input.update(row.clone(), 1);
                }
                input.flush();
                for _ in 0..3 {
                    worker.step();
                }
                if pause_ms > 0 && i == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(pause_ms));
                }
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
            if pause_ms > 0 {
                println!("complete {}", t + 1);
                std::thread::sleep(std::time::Duration::from_millis(pause_ms));
            }
        }
        drop(input);
        worker.step_while(|| !probe.done());
        assert_eq!(handle.error(), None);
    });
    let out = out.lock().unwrap().clone();
    out
}

/// The child of `a_killed_durable_source_keeps_what_it_wrote_once`.
#[test]
#[ignore = "run as a child process by a_killed_durable_source_keeps_what_it_wrote_once"]
fn durable_child_process() {
    let Some(dir) = common::child_var("DDPERSIST_DURABLE_CHILD") else {
        return;
    };
    run(Path::new(&dir), 0, 400, 7);
}

fn multiset(updates: &[(Row, u64, i64)]) -> BTreeMap<(Row, u64), i64> {
    let mut acc = BTreeMap::new();
    for (row, t, d) in updates {
        *acc.entry((row.clone(), *t)).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

#[test]
fn a_killed_durable_source_keeps_what_it_wrote_once() {
    for (cycle, kill_after) in [(0, 9), (1, 17), (2, 4)] {
        let dir = tempfile::tempdir().unwrap();
        let mut child = common::spawn_child(
            module_path!(),
            "durable_child_process",
            &[("DDPERSIST_DURABLE_CHILD", dir.path().display().to_string())],
        );
        let complete = common::read_until(&mut child, "complete ", kill_after);
        // Between two times or inside one (its first half written, the second not yet).
        std::thread::sleep(std::time::Duration::from_millis(3 + 4 * cycle));
        child.kill().unwrap();
        child.wait().unwrap();

        let stored: Vec<(Row, u64, i64)> = {
            let store = Store::open(dir.path()).unwrap();
            let snapshot = store.snapshot("src/w0of1").unwrap();
            snapshot
                .decode::<String, u64>()
                .unwrap()
                .into_iter()
                .map(|(k, v, t, d)| ((k, v), t, d))
                .collect()
        };
        let stored = multiset(&stored);
        assert!(stored.values().all(|&d| d == 1), "a row stored twice: {stored:?}");
        for t in 0..complete {
            for row in rows(t) {
                assert!(
                    stored.contains_key(&(row, t)),
                    "time {t} was complete but is not whole"
                );
            }
        }
        // Every stored row is one the source gave.
        assert!(stored.keys().all(|(row, t)| rows(*t).contains(row)));
        // The source cannot replay: it continues after the last time the store holds anything of.
        let next = stored.keys().map(|(_, t)| t + 1).max().unwrap_or(0);
        let out = multiset(&run(dir.path(), next, next + 5, 0));
        let mut expected = stored.clone();
        for t in next..next + 5 {
            for row in rows(t) {
                expected.insert((row, t), 1);
            }
        }
        assert_eq!(
            out, expected,
            "cycle {cycle}: the replay plus the new input, each once"
        );
    }
}
