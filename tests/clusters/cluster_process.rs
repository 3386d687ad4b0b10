//! One process of a cluster run ([`run_process`]): the persisted chain built on each of its workers, the
//! agreement on the resume point, the slots fed from it, the steps until the last fed slot completed.

use crate::cluster::{Proc, Seen, Source};
use crate::common;
use crate::schedule::*;
use ddpersist::operators::{agree_resume_state, ArrangeTyped, Persist, ResumeState, UpsertPersisted};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input as _;
use differential_dataflow::AsCollection as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input as _, Inspect, Probe};
use timely::dataflow::ProbeHandle;

const DEADLINE: Duration = Duration::from_secs(40);

/// Runs one process of the cluster: builds the chain, agrees on the resume point, feeds the slots from
/// it, steps until the last fed slot completed, drops the dataflow.
pub fn run_process(p: &Proc, slots: &[Slot], stop: Arc<AtomicBool>) -> Seen {
    let store = Store::open(&p.dir).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (s, slots, p2) = (seen.clone(), slots.to_vec(), p.clone());
    let config = timely::Config {
        communication: timely::CommunicationConfig::Cluster {
            threads: p.threads,
            process: p.process,
            addresses: p.addresses.clone(),
            report: false,
            zerocopy: false,
        },
        worker: timely::WorkerConfig::default(),
    };
    let p = p2;
    timely::execute(config, move |worker| {
        let index = worker.index();
        let peers = worker.peers();
        let probe = ProbeHandle::<u64>::new();
        let manager = PersistManager::new(store.clone());
        let durable_manager = PersistManager::with_options(
            store.clone(),
            ManagerOptions {
                durable: true,
                ..Default::default()
            },
        );
        let log = s.clone();
        let st = store.clone();
        let source = p.source;
        let built = worker.dataflow::<u64, _, _>(|scope| -> Result<_, String> {
            let e = |e: ddpersist::Error| e.to_string();
            let (si, src) = scope.new_collection::<Row, i64>();
            let (di, dim) = scope.new_collection::<Row, i64>();
            let (ui, ups) = scope.new_input::<Vec<(String, Option<u64>, u64)>>();
            let mut handles = Vec::new();
            let mut uh = None;
            let src = match source {
                Source::Persist | Source::Durable => {
                    let (m, id) = match source {
                        Source::Persist => (&manager, "src"),
                        _ => (&durable_manager, "srcD"),
                    };
                    let token = m.token(id, index).map_err(e)?;
                    let (c, h) = src.persist(token).map_err(e)?;
                    handles.push(h);
                    c
                }
                Source::Arranged => {
                    let a = src.arrange_by_key_persisted(&st, "srcA").map_err(e)?;
                    handles.push(a.handle().unwrap().clone());
                    a.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                }
                Source::Upsert => {
                    let (u, h) = ups.upsert_persisted(&st, "srcU").map_err(e)?;
                    uh = Some(h);
                    u
                }
            };
            let ls = log.clone();
            let src = src
                .inner
                .inspect(move |(r, t, d)| ls.lock().unwrap().log_src.push((r.clone(), *t, *d)))
                .as_collection();
            let out = middle(src, dim);
            // dst2: `out` keyed otherwise, through `persist` with a (not durable) manager's token.
            let token = manager.token("dst2", index).map_err(e)?;
            let (d2, h2) = out.clone().map(|(k, x)| (x % 7, k)).persist(token).map_err(e)?;
            handles.push(h2);
            let l2 = log.clone();
            d2.inner
                .inspect(move |(r, t, d)| l2.lock().unwrap().log2.push((r.clone(), *t, *d)))
                .probe_with(&probe);
            let dst = out.arrange_by_key_persisted(&st, "dst").map_err(e)?;
            handles.push(dst.handle().unwrap().clone());
            let coll = dst.as_collection(|k: &String, v: &u64| (k.clone(), *v));
            // dst3: a persisted arrangement downstream of the persisted arrangement dst.
            let dst3 = coll
                .clone()
                .map(|(k, x)| (x % 5, k))
                .arrange_by_key_persisted(&st, "dst3")
                .map_err(e)?;
            handles.push(dst3.handle().unwrap().clone());
            let l3 = log.clone();
            dst3.as_collection(|x: &u64, k: &String| (*x, k.clone()))
                .inner
                .inspect(move |(r, t, d)| l3.lock().unwrap().log3.push((r.clone(), *t, *d)))
                .probe_with(&probe);
            coll.inner
                .inspect(move |(r, t, d)| log.lock().unwrap().log.push((r.clone(), *t, *d)))
                .probe_with(&probe);
            Ok((si, di, ui, handles, uh))
        });
        let (mut si, mut di, mut ui, handles, uh) = match built {
            Ok(b) => b,
            Err(err) => {
                s.lock()
                    .unwrap()
                    .errors
                    .push(format!("worker {index}: build: {err}"));
                stop.store(true, Ordering::SeqCst);
                // The agreement dataflow still needs every worker.
                let _ = agree_resume_state(worker, &[]);
                common::drop_dataflows(worker);
                return;
            }
        };
        let mut states: Vec<ResumeState> = handles.iter().map(|h| h.resume_state()).collect();
        states.extend(uh.iter().map(|h| h.resume_state()));
        let locals: Vec<u64> = states.iter().map(|s| s.resume_at()).collect();
        let agreed = agree_resume_state(worker, &states);
        // A durable source continues with new input at the agreed greatest upper of its streams; a
        // replayable one from the agreed resume point of all of the chain's operators.
        let resume = match source {
            Source::Durable => {
                let src_state = handles[0].resume_state();
                let g = agree_resume_state(
                    worker,
                    &[ResumeState {
                        least_open_upper: None,
                        greatest_upper: src_state.greatest_upper,
                    }],
                );
                g.greatest_upper.max(agreed.resume_at())
            }
            _ => agreed.resume_at(),
        };
        s.lock().unwrap().resumes.push((index, resume, locals));
        let errs = {
            let (handles, uh) = (handles.clone(), uh.clone());
            move || {
                let mut e: Vec<String> = handles.iter().filter_map(|h| h.error()).collect();
                e.extend(uh.as_ref().and_then(|h| h.error()));
                e
            }
        };
        // dim: its whole history below the resume point again, by worker 0 (also beyond `end_slot`:
        // an earlier run may have fed further).
        if index == 0 {
            for slot in slots.iter().filter(|s| s.time < resume) {
                di.advance_to(slot.time);
                for (r, d) in &slot.dim {
                    di.update(r.clone(), *d);
                }
            }
        }
        si.advance_to(resume);
        ui.advance_to(resume);
        di.advance_to(resume.max(*di.time()));
        si.flush();
        di.flush();
        let deadline = Instant::now() + DEADLINE;
        let step_until = |worker: &mut timely::worker::Worker, t: u64| -> bool {
            while probe.less_than(&t) {
                if stop.load(Ordering::SeqCst) {
                    return false;
                }
                if !errs().is_empty() || Instant::now() > deadline {
                    stop.store(true, Ordering::SeqCst);
                    return false;
                }
                worker.step();
            }
            true
        };
        let feeds = |s: usize| match p.feeder {
            None => s % peers == index,
            Some(w) => w == index,
        };
        let mut last = resume;
        for (n, slot) in slots.iter().enumerate().take(p.end_slot) {
            if slot.time < resume {
                continue;
            }
            si.advance_to(slot.time);
            ui.advance_to(slot.time);
            di.advance_to(slot.time);
            if feeds(n) && slot.time >= p.from {
                if p.pace_ms > 0 {
                    println!("sent {}", slot.time);
                }
                if source == Source::Upsert {
                    for (k, v) in &slot.ups {
                        ui.send((k.clone(), *v, slot.time));
                    }
                } else {
                    for (r, d) in &slot.src {
                        si.update(r.clone(), *d);
                    }
                }
            }
            if index == 0 {
                for (r, d) in &slot.dim {
                    di.update(r.clone(), *d);
                }
            }
            let next = slot.time + 1;
            si.advance_to(next);
            ui.advance_to(next);
            di.advance_to(next);
            si.flush();
            ui.flush();
            di.flush();
            last = next;
            if !step_until(worker, next) {
                break;
            }
            if p.pace_ms > 0 {
                if index == 0 {
                    println!("complete {next}");
                }
                std::thread::sleep(Duration::from_millis(p.pace_ms));
            }
        }
        step_until(worker, last);
        if p.close && !stop.load(Ordering::SeqCst) {
            drop((si, di, ui));
            while !probe.done() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if !errs().is_empty() || Instant::now() > deadline {
                    stop.store(true, Ordering::SeqCst);
                    break;
                }
                worker.step();
            }
            if p.pace_ms > 0 && index == 0 {
                println!("closed");
            }
        } else {
            drop((si, di, ui));
        }
        let passed = probe.with_frontier(|f| f.first().copied().unwrap_or(u64::MAX));
        {
            let mut s = s.lock().unwrap();
            s.passed = Some(s.passed.map_or(passed, |x| x.min(passed)));
            let e = errs();
            if Instant::now() > deadline && e.is_empty() && passed < last {
                s.errors.push(format!(
                    "worker {index}: hang: probe at {passed}, expected {last}"
                ));
            }
            s.errors
                .extend(e.into_iter().map(|e| format!("worker {index}: {e}")));
        }
        common::drop_dataflows(worker);
    })
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    seen
}
