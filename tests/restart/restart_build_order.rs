//! Workers of one process build a persisted dataflow at different moments. Found in CI as a hang of
//! `tests/durability/crash_states_operators.rs` under load, two ways:
//! - after a crash that left worker 0's stream created but empty and worker 1's missing, worker 0 built
//!   and wrote its first input before worker 1 built; worker 1 then saw a stream of the id holding data
//!   and not created by this open, and refused the directory as another process's (`check_layout`);
//! - a durable first run crashed after worker 0 wrote (to the WAL) and before worker 1 had built: its
//!   restart refused the store whichever worker built first.
//!
//! Either refusal left the dataflow built on one worker only, and it hung. Fixed: the layout check judges
//! the streams as they were when the store was opened (`Store::held_data_at_open`), and a stream that
//! held only unsealed updates is confirmed as this process's before the first seal, once every worker
//! has built (`operators::resume::confirm_layout`). Here the orders are forced.

use crate::common;

use common::{accumulate_rows, BuildFailed};
use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist};
use ddpersist::{Codec, ManagerOptions, PersistManager, Store, StreamOptions};
use differential_dataflow::input::Input as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
type Update = (Row, u64, i64);

/// Rows of every key at times `0..3`, fed by worker 0 (they go to both workers' streams by key).
fn rows() -> Vec<Update> {
    (0..3)
        .flat_map(|t| (0..16).map(move |i| ((format!("k{i}"), t), t, 1)))
        .collect()
}

/// Which operator a run builds.
#[derive(Clone, Copy, Debug)]
enum Operator {
    Arrange,
    /// `persist` into a stream that is durable or not.
    Persist {
        durable: bool,
    },
}

/// What a crashed first run left of `"x"`: worker 0's stream of 2 created and empty, or (a durable
/// stream) holding `recovered_update()`, unsealed; worker 1's missing.
fn crashed_first_run(dir: &std::path::Path, durable: bool, recovered: bool) {
    let store = Store::open(dir).unwrap();
    let stream = worker_stream_id("x", 0, 2);
    store.create_stream(&stream, StreamOptions { durable }).unwrap();
    if recovered {
        let ((k, v), t, d) = recovered_update();
        store.write(&stream, &[(k, v, t, d)]).unwrap();
    }
}

/// The update a durable first run wrote to worker 0's stream before it crashed.
fn recovered_update() -> Update {
    (("recovered".to_string(), 7), 0, 1)
}

/// Restarts over `dir` with 2 workers building `operator`: worker `early` builds first (worker 0 feeds
/// every row) and the other builds only once worker `early` has stepped (worker 0: until its stream
/// holds more than at the open). Returns each worker's build error and the output.
fn run(dir: &std::path::Path, operator: Operator, early: usize) -> (Vec<Option<String>>, Vec<Update>) {
    let durable = matches!(operator, Operator::Persist { durable: true });
    let store = Store::open(dir).unwrap();
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            max_bytes_per_sec: None,
            durable,
        },
    );
    let errors = Arc::new(Mutex::new(vec![None; 2]));
    let out = Arc::new(Mutex::new(Vec::new()));
    // Worker 0 holds unsealed input.
    let written = Arc::new(AtomicBool::new(false));
    let failed = BuildFailed::default();
    let (e, o) = (errors.clone(), out.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        if index != early {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !written.load(Ordering::SeqCst) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let probe = ProbeHandle::new();
        let o = o.clone();
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let output = match operator {
                Operator::Arrange => rows.arrange_persisted(&store, "x").map(|(a, _)| {
                    a.as_collection(|k: &[u8], v: &[u8]| {
                        (String::decode(k).unwrap(), u64::decode(v).unwrap())
                    })
                }),
                Operator::Persist { .. } => rows.persist(manager.token("x", index).unwrap()).map(|(c, _)| c),
            };
            output.map(|c| {
                c.inner
                    .inspect(move |u| o.lock().unwrap().push(u.clone()))
                    .probe_with(&probe);
                input
            })
        });
        let mut input = match built {
            Ok(input) => input,
            Err(err) => {
                e.lock().unwrap()[index] = Some(failed.fail(worker, err).to_string());
                written.store(true, Ordering::SeqCst);
                return;
            }
        };
        if index == 0 {
            for (row, t, d) in rows() {
                input.advance_to(t);
                input.update(row, d);
            }
            input.flush();
        }
        if index == early {
            let stream = worker_stream_id("x", 0, 2);
            let before = store.snapshot(&stream).unwrap().unsealed_len();
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut steps = 0;
            while (steps < 10 || (index == 0 && store.snapshot(&stream).unwrap().unsealed_len() == before))
                && Instant::now() < deadline
            {
                worker.step();
                steps += 1;
            }
            assert!(Instant::now() < deadline, "worker 0 wrote nothing alone");
            written.store(true, Ordering::SeqCst);
        }
        drop(input);
        worker.step_while(|| !probe.done() && !failed.is_set());
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    let out = out.lock().unwrap().clone();
    (errors, out)
}

#[test]
fn a_worker_building_after_another_wrote_its_stream_is_not_refused() {
    for operator in [
        Operator::Arrange,
        Operator::Persist { durable: false },
        Operator::Persist { durable: true },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let durable = matches!(operator, Operator::Persist { durable: true });
        crashed_first_run(dir.path(), durable, false);
        let (errors, out) = run(dir.path(), operator, 0);
        assert_eq!(errors, vec![None, None], "{operator:?}");
        assert_eq!(accumulate_rows(&out), accumulate_rows(&rows()), "{operator:?}");
    }
}

/// The crash state behind the CI hang: a durable first run's worker 0 wrote before worker 1 had built
/// (its stream missing). Restarted, with either worker building first, nothing is refused and the
/// recovered update is emitted with the new input (it was refused, and the dataflow hung, before
/// `confirm_layout`).
#[test]
fn a_crashed_run_whose_worker_wrote_before_another_built_restarts() {
    let operator = Operator::Persist { durable: true };
    for early in [0, 1] {
        let dir = tempfile::tempdir().unwrap();
        crashed_first_run(dir.path(), true, true);
        let (errors, out) = run(dir.path(), operator, early);
        assert_eq!(errors, vec![None, None], "worker {early} first");
        let mut want = rows();
        want.push(recovered_update());
        assert_eq!(
            accumulate_rows(&out),
            accumulate_rows(&want),
            "worker {early} first"
        );
    }
}
