//! From an adversarial round: a persisted dataflow of 2 workers is dropped and rebuilt in the same
//! process, each worker at its own moment (worker 0 drops and rebuilds first; worker 1's old dataflow
//! keeps running and seals what worker 0's earlier progress allowed, then worker 1 rebuilds). The
//! workers' handles then read different resume states ((0, 0) and (0, 6) for a durable stream), and a
//! durable input fed from worker 0's own `greatest_upper` lost 15 of 24 new rows. README ("Restarting"):
//! agree with `operators::agree_resume_state`, as here; the output must hold every update once.

use crate::common;

use common::accumulate_rows;

use ddpersist::operators::{worker_stream_id, ArrangePersisted, Persist, PersistOptions};
use ddpersist::{Codec, ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
type Update = (Row, u64, i64);

fn rows_at(t: u64, tag: u64) -> Vec<Row> {
    (0..8)
        .map(|i| (format!("k{i}"), tag * 1000 + t * 10 + i))
        .collect()
}

fn wait_flag(flag: &AtomicBool, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !flag.load(Ordering::SeqCst) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Persist { durable: bool },
    Arrange { durable: bool },
}

#[derive(Default, Debug, Clone)]
struct Report {
    /// (resume_at, greatest_upper) of each worker's rebuilt operator.
    resumes: Vec<Option<(u64, u64)>>,
    out: Vec<Update>,
    /// What the first dataflow was given (times 0..6).
    first: Vec<Update>,
    /// What the rebuilt one was given.
    second: Vec<Update>,
    notes: Vec<String>,
}

/// Worker 0 feeds times 0..6 into the first dataflow and steps until its operator wrote; then drops it
/// and rebuilds at once (while worker 1 has not stepped its first dataflow at all). Worker 1 then steps
/// its first dataflow until its stream sealed 6 (worker 0's progress allows it), drops and rebuilds.
/// Worker 0 then feeds the rebuilt dataflow: from `resume_at` again (replay) for a stream that is not
/// durable, new rows at and beyond `greatest_upper` for a durable one.
fn run(op: Op) -> Report {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let durable = match op {
        Op::Persist { durable } | Op::Arrange { durable } => durable,
    };
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            max_bytes_per_sec: None,
            durable,
        },
    );
    let report = Arc::new(Mutex::new(Report {
        resumes: vec![None; 2],
        ..Default::default()
    }));
    let w0_rebuilt = Arc::new(AtomicBool::new(false));
    let w1_rebuilt = Arc::new(AtomicBool::new(false));
    let r = report.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let build = |worker: &mut timely::worker::Worker, log: bool| {
            let probe = ProbeHandle::new();
            let r = r.clone();
            let store = store.clone();
            let token = manager.token("x", index).unwrap();
            let (input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, rows) = scope.new_collection::<Row, i64>();
                let (out, handle) = match op {
                    Op::Persist { .. } => {
                        let (c, h) = rows.persist(token).unwrap();
                        (c, h)
                    }
                    Op::Arrange { durable } => {
                        drop(token);
                        let options = PersistOptions {
                            durable,
                            ..Default::default()
                        };
                        let (a, h) = rows.arrange_persisted_with(&store, "x", options).unwrap();
                        (
                            a.as_collection(|k: &[u8], v: &[u8]| {
                                (String::decode(k).unwrap(), u64::decode(v).unwrap())
                            }),
                            h,
                        )
                    }
                };
                out.inner
                    .inspect(move |u| {
                        if log {
                            r.lock().unwrap().out.push(u.clone())
                        }
                    })
                    .probe_with(&probe);
                (input, handle)
            });
            (input, handle, probe)
        };
        let stream = |w: usize| worker_stream_id("x", w, 2);
        let (mut input, _handle, _probe) = build(worker, false);
        if index == 0 {
            let mut first = Vec::new();
            for t in 0..6 {
                input.advance_to(t);
                for row in rows_at(t, 0) {
                    input.update(row.clone(), 1);
                    first.push((row, t, 1));
                }
            }
            input.advance_to(6);
            input.flush();
            r.lock().unwrap().first = first;
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut steps = 0;
            while (steps < 20 || store.snapshot(&stream(0)).unwrap().unsealed_len() == 0)
                && Instant::now() < deadline
            {
                worker.step();
                steps += 1;
            }
            let upper0 = store.upper(&stream(0)).unwrap();
            r.lock().unwrap().notes.push(format!(
                "w0 before its drop: x/w0 upper {upper0}, unsealed {}",
                store.snapshot(&stream(0)).unwrap().unsealed_len()
            ));
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            drop(input);
        } else {
            drop(input);
            if !wait_flag(&w0_rebuilt, 30) {
                r.lock().unwrap().notes.push("w1: worker 0 never rebuilt".into());
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while store.upper(&stream(1)).unwrap() < 6 && Instant::now() < deadline {
                worker.step();
            }
            let upper1 = store.upper(&stream(1)).unwrap();
            r.lock()
                .unwrap()
                .notes
                .push(format!("w1 before its drop: x/w1 upper {upper1}"));
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
        }
        // Rebuilt.
        let (mut input, handle, probe) = build(worker, true);
        if index == 0 {
            w0_rebuilt.store(true, Ordering::SeqCst);
        }
        // The workers rebuilt at different moments: agree on the state (README, "Restarting").
        let agreed = ddpersist::operators::agree_resume_state(worker, &[handle.resume_state()]);
        let (resume, greatest) = (agreed.resume_at(), agreed.greatest_upper);
        r.lock().unwrap().resumes[index] = Some((resume, greatest));
        if index == 0 {
            wait_flag(&w1_rebuilt, 30);
            let mut second = Vec::new();
            if durable {
                // New rows only, at and beyond greatest_upper.
                for t in greatest..greatest + 3 {
                    input.advance_to(t);
                    for row in rows_at(t, 1) {
                        input.update(row.clone(), 1);
                        second.push((row, t, 1));
                    }
                }
            } else {
                // Replay from resume_at.
                for t in resume..6 {
                    input.advance_to(t);
                    for row in rows_at(t, 0) {
                        input.update(row.clone(), 1);
                        second.push((row, t, 1));
                    }
                }
            }
            r.lock().unwrap().second = second;
        } else {
            w1_rebuilt.store(true, Ordering::SeqCst);
        }
        drop(input);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !probe.done() && Instant::now() < deadline {
            worker.step();
        }
        if !probe.done() {
            r.lock()
                .unwrap()
                .notes
                .push(format!("w{index}: the rebuilt dataflow did not complete"));
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    })
    .unwrap();
    let report = report.lock().unwrap().clone();
    report
}

fn check(op: Op) {
    let report = run(op);
    let durable = matches!(op, Op::Persist { durable: true } | Op::Arrange { durable: true });
    let mut want = report.first.clone();
    if durable {
        want.extend(report.second.iter().cloned());
    }
    let got = accumulate_rows(&report.out);
    let want = accumulate_rows(&want);
    let missing: Vec<_> = want.iter().filter(|(k, v)| got.get(*k) != Some(*v)).collect();
    let extra: Vec<_> = got.iter().filter(|(k, v)| want.get(*k) != Some(*v)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{op:?}: resumes (resume_at, greatest_upper) per worker {:?}; notes {:?}; {} rows missing or \
         wrong {:?}; {} extra {:?}",
        report.resumes,
        report.notes,
        missing.len(),
        missing.iter().take(6).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(6).collect::<Vec<_>>()
    );
}

#[test]
fn durable_persist_rebuilt_by_workers_at_different_moments_keeps_new_rows() {
    check(Op::Persist { durable: true });
}

#[test]
fn durable_arrangement_rebuilt_by_workers_at_different_moments_keeps_new_rows() {
    check(Op::Arrange { durable: true });
}

#[test]
fn persist_rebuilt_by_workers_at_different_moments_replays_once() {
    check(Op::Persist { durable: false });
}

#[test]
fn arrangement_rebuilt_by_workers_at_different_moments_replays_once() {
    check(Op::Arrange { durable: false });
}
