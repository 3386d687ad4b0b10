//! From adversarial round 17 (no fault found). Two dataflows of one worker over one store: the first persists an arrangement, the second (built at
//! a later round of each run, or at once) imports its trace, joins it with an in-memory collection and
//! persists the join's output again (a persisted operator downstream of an import, in another dataflow),
//! with DD's in-memory program in the second dataflow as the reference. Restarts that close, drop or
//! abandon; two workers, one key pool of two keys (an idle worker).

use crate::common::compare::{deadline, same_at_every_time, Logs};
use crate::dd_dropin_jumping_times::{plan, times, End, Round};
use ddpersist::operators::ArrangeTyped;
use differential_dataflow::input::{Input, InputSession};
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type K = (u64, u32);
type V = Option<String>;
/// The second dataflow's inputs: its own `(key, val)` updates and the join's other side.
type SecondInputs = (
    InputSession<u64, (K, V), isize>,
    InputSession<u64, (K, char), isize>,
);

fn run(
    dir: &Path,
    workers: usize,
    rounds: &[Round],
    end: usize,
    second_at: usize,
    how: End,
    logs: &Logs,
) -> u64 {
    let store = crate::dd_dropin_jumping_times::open_tiny(dir);
    let rounds = rounds.to_vec();
    let logs = logs.clone();
    let resume = Arc::new(Mutex::new(u64::MAX));
    let r = resume.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let s = store.clone();
        let (mut pin, mut trace, from_a) = worker.dataflow::<u64, _, _>(|scope| {
            let (pin, p) = scope.new_collection::<(K, V), isize>();
            let pa = p.arrange_by_key_persisted(&s, "pairs").unwrap();
            let from = pa.handle().unwrap().resume_at();
            (pin, pa.trace.clone(), from)
        });
        // The resume point of the second dataflow's operator is read from the store now (its build
        // reads the same); the input replays from the least.
        let from_j = ddpersist::operators::ResumeState::of(&s, "joined", worker.peers()).resume_at();
        let from = from_a.min(from_j);
        {
            let mut r = r.lock().unwrap();
            assert!(*r == u64::MAX || *r == from);
            *r = from;
        }
        pin.advance_to(from);
        let mut second: Option<SecondInputs> = None;
        let alive = deadline(60);
        let feeds = worker.index() == 0;
        for i in 0..end
            + match how {
                End::Abandon(n, _) => n,
                _ => 0,
            }
        {
            if i >= rounds.len() {
                break;
            }
            if i == second_at {
                let l = logs.clone();
                let t = rounds[i].time;
                let (mut din, mut oin, from2) = worker.dataflow::<u64, _, _>(|scope| {
                    let (din, d) = scope.new_collection::<(K, V), isize>();
                    let (oin, o) = scope.new_collection::<(K, char), isize>();
                    let imported = trace.import(scope);
                    let joined = imported
                        .join(o.clone())
                        .arrange_by_key_persisted(&s, "joined")
                        .unwrap();
                    let from2 = joined.handle().unwrap().resume_at();
                    let (a, b) = crate::common::compare::log(&l, "imported join, persisted");
                    joined
                        .as_collection(|k, v| format!("{:?}", (*k, v.clone())))
                        .inner
                        .inspect(move |(x, t, r)| a.lock().unwrap().push((x.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    d.join(o)
                        .map(|x| format!("{x:?}"))
                        .inner
                        .inspect(move |(x, t, r)| b.lock().unwrap().push((x.clone(), *t, *r as i64)))
                        .probe_with(&probe);
                    (din, oin, from2)
                });
                assert_eq!(from2, from_j, "the second dataflow's resume point");
                // The reference gets the whole history up to this round at once.
                for round in &rounds[..i] {
                    if feeds {
                        for (x, t, d) in &round.updates {
                            din.update_at(x.clone(), *t, *d);
                        }
                        for (x, d) in &round.other {
                            oin.update_at(*x, round.time, *d);
                        }
                    }
                }
                let _ = t;
                second = Some((din, oin));
            }
            let round = &rounds[i];
            pin.advance_to(round.time.max(from));
            if let Some((din, oin)) = second.as_mut() {
                din.advance_to(round.time);
                oin.advance_to(round.time);
            }
            if feeds {
                for (x, t, d) in &round.updates {
                    if *t >= from {
                        pin.update_at(x.clone(), *t, *d);
                    }
                    if let Some((din, _)) = second.as_mut() {
                        din.update_at(x.clone(), *t, *d);
                    }
                }
                if let Some((_, oin)) = second.as_mut() {
                    for (x, d) in &round.other {
                        oin.update(*x, *d);
                    }
                }
            }
            let next = rounds.get(i + 1).map_or(round.time + 1, |r| r.time);
            pin.advance_to(next.max(from));
            pin.flush();
            if let Some((din, oin)) = second.as_mut() {
                din.advance_to(next);
                oin.advance_to(next);
                din.flush();
                oin.flush();
            }
            if i < end && next > round.time {
                worker.step_while(|| alive() && probe.less_than(&next));
            }
        }
        match how {
            End::Close => {}
            End::Drop => crate::common::drop_dataflows(worker),
            End::Abandon(_, steps) => {
                for _ in 0..steps {
                    worker.step();
                }
                crate::common::drop_dataflows(worker);
            }
        }
    })
    .unwrap();
    let from = *resume.lock().unwrap();
    from
}

fn scenario(seed: u64, workers: usize, ends: &[(usize, usize, End)]) {
    let total = ends.iter().map(|e| e.0).max().unwrap() + 8;
    let rounds = plan(seed, total, 2);
    let dir = tempfile::tempdir().unwrap();
    for (run_no, &(end, second_at, how)) in ends.iter().enumerate() {
        let logs: Logs = Default::default();
        let from = run(dir.path(), workers, &rounds, end, second_at, how, &logs);
        let second_time = rounds[second_at].time;
        let ts: Vec<u64> = times(&rounds, end, from)
            .into_iter()
            .filter(|t| *t >= second_time)
            .collect();
        for (name, a, b) in logs.lock().unwrap().iter() {
            same_at_every_time(a, b, &ts, &format!("seed {seed}, run {run_no} ({how:?} at {end}, second at {second_at}, resume {from}): {name}"));
        }
    }
}

#[test]
fn a_persisted_join_of_an_import_in_a_second_dataflow_across_restarts() {
    let ends = [
        (8, 0, End::Drop),
        (12, 9, End::Close),
        (16, 2, End::Abandon(2, 5)),
        (20, 0, End::Close),
        (24, 21, End::Drop),
        (28, 0, End::Abandon(3, 0)),
        (32, 30, End::Close),
    ];
    for seed in 50..53 {
        scenario(seed, 2, &ends);
    }
}
