//! Adversarial round 11 (adopted; passes): a durable persisted arrangement (`PersistOptions { durable: true }`, for an input
//! that cannot replay), and a durable `persist` feeding an arrangement that is not durable, holding
//! updates far ahead of their frontier when the run stops (the dataflow dropped with its input open,
//! after every update was taken in). The next run continues the input with new updates from
//! `resume_state().greatest_upper` only (README, "Restarting"); the updates ahead must still come out
//! when the frontier passes their times. One and two workers, everyday types, DD operators over the
//! persisted arrangements (count_total, reduce, join, as_collection) against DD's in-memory program fed
//! the whole input, compared at every time from the second run's resume point on.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{log, rec, same_at_every_time, Logs};
use common::Rng;
use ddpersist::operators::{worker_stream_id, ArrangeTyped, Persist, PersistOptions, SealMode};
use ddpersist::{ManagerOptions, Options, PersistManager, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

type Row = ((u32, String), isize);

/// The rows fed at round `t` at time `t`.
fn data(t: u64) -> Vec<Row> {
    let mut rng = Rng(t * 7919 + 17);
    (0..10)
        .map(|_| {
            let k = rng.below(7) as u32;
            let v = format!("v{}", rng.below(4));
            ((k, v), if rng.below(4) == 0 { -1 } else { 1 })
        })
        .collect()
}

/// The rows fed at round 2 of the first run at times far ahead: `(row, time)`.
fn ahead() -> Vec<(Row, u64)> {
    vec![
        (((1, "ahead".to_string()), 1), 25),
        (((2, "ahead".to_string()), 2), 25),
        (((1, "v0".to_string()), -1), 31),
        (((5, "later".to_string()), 1), 40),
        (((6, "v1".to_string()), 3), 26),
    ]
}

/// The other side of a join, fed whole in every run on both sides.
fn other() -> Vec<((u32, u8), isize)> {
    (0..7u32).map(|k| ((k, (k % 3) as u8), 1)).collect()
}

const END_FIRST: u64 = 12;
const END: u64 = 45;

fn options() -> Options {
    Options {
        block_target_bytes: 128,
        merge_fan_in: 2,
        ..Options::default()
    }
}

/// One run: feeds rounds from the resume point (`first`: from 0, with the rows ahead at round 2) up to
/// `to`, DD's side everything. Returns the resume point and the greatest upper this run read.
fn run(dir: &Path, workers: usize, seals: SealMode, first: bool, to: u64, logs: &Logs) -> (u64, u64) {
    let store = Store::open_with(dir, options()).unwrap();
    let logs = logs.clone();
    let seen = Arc::new(Mutex::new((0u64, 0u64)));
    let s2 = seen.clone();
    let st = store.clone();
    let manager = PersistManager::with_options(
        store.clone(),
        ManagerOptions {
            durable: true,
            ..Default::default()
        },
    );
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", worker.index()).unwrap();
        let (mut pin, mut qin, mut din, mut oin, state, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (pin, pdata) = scope.new_collection::<(u32, String), isize>();
            let (qin, qdata) = scope.new_collection::<(u32, String), i64>();
            let (din, ddata) = scope.new_collection::<(u32, String), isize>();
            let (oin, oth) = scope.new_collection::<(u32, u8), isize>();
            let o = PersistOptions { durable: true, seals };
            let pd = pdata.arrange_by_key_persisted_with(&st, "data", o).unwrap();
            let handle = pd.handle().unwrap().clone();
            // A durable pass-through, and an arrangement of its output that is not durable (its input
            // replays: the pass-through re-emits what it recovered; a durable one here doubles the
            // rows ahead, tests/adv11_durable_chain.rs).
            let (passed, qhandle) = qdata.persist(token).unwrap();
            let chained = passed.clone().arrange_by_key_persisted(&st, "chained").unwrap();
            let state = handle
                .resume_state()
                .merge(qhandle.resume_state())
                .merge(chained.handle().unwrap().resume_state());
            let (a, b) = log(&logs, "persist");
            rec(passed.map(|(k, v)| format!("{k}={v}")), &a, &probe);
            rec(ddata.clone().map(|(k, v)| format!("{k}={v}")), &b, &probe);
            let (a, b) = log(&logs, "persist, arranged, count_total");
            rec(chained.count_total().map(|x| format!("{x:?}")), &a, &probe);
            rec(
                ddata.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                &b,
                &probe,
            );
            let (a, b) = log(&logs, "as_collection");
            rec(pd.clone().as_collection(|k, v| format!("{k}={v}")), &a, &probe);
            rec(ddata.clone().map(|(k, v)| format!("{k}={v}")), &b, &probe);
            let (a, b) = log(&logs, "count_total");
            rec(pd.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
            rec(
                ddata.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                &b,
                &probe,
            );
            let red = |_k: &u32, s: &[(&String, isize)], out: &mut Vec<((String, isize), isize)>| {
                let total: isize = s.iter().map(|x| x.1).sum();
                out.push(((s[0].0.clone(), total), 1));
            };
            let (a, b) = log(&logs, "reduce");
            rec(pd.clone().reduce(red).map(|x| format!("{x:?}")), &a, &probe);
            rec(ddata.clone().reduce(red).map(|x| format!("{x:?}")), &b, &probe);
            let (a, b) = log(&logs, "join");
            rec(pd.join(oth.clone()).map(|x| format!("{x:?}")), &a, &probe);
            rec(ddata.join(oth).map(|x| format!("{x:?}")), &b, &probe);
            (pin, qin, din, oin, state, handle)
        });
        // A durable input continues with new updates at or beyond the greatest upper.
        let from = if first { 0 } else { state.greatest_upper };
        if worker.index() == 0 {
            *s2.lock().unwrap() = (state.resume_at(), state.greatest_upper);
        }
        let mine = |w: usize, i: usize| i % workers == w;
        for (i, (x, d)) in other().into_iter().enumerate() {
            if mine(worker.index(), i) {
                oin.update(x, d);
            }
        }
        // DD's side: the whole history, the rows ahead included.
        for t in 0..to {
            din.advance_to(t);
            for (i, (x, d)) in data(t).into_iter().enumerate() {
                if mine(worker.index(), i) {
                    din.update(x, d);
                }
            }
            if t == 2 && worker.index() == 0 {
                for (((k, v), d), at) in ahead() {
                    din.update_at((k, v), at, d);
                }
            }
        }
        din.advance_to(to);
        oin.advance_to(to);
        din.flush();
        oin.flush();
        pin.advance_to(from);
        qin.advance_to(from);
        for t in from..to {
            pin.advance_to(t);
            qin.advance_to(t);
            for (i, (x, d)) in data(t).into_iter().enumerate() {
                if mine(worker.index(), i) {
                    pin.update(x.clone(), d);
                    qin.update(x, d as i64);
                }
            }
            if first && t == 2 && worker.index() == 0 {
                for (((k, v), d), at) in ahead() {
                    pin.update_at((k, v.clone()), at, d);
                    qin.update_at((k, v), at, d as i64);
                }
            }
            pin.advance_to(t + 1);
            qin.advance_to(t + 1);
            pin.flush();
            qin.flush();
            let start = Instant::now();
            while probe.less_than(&(t + 1)) {
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "hang at {t}: error {:?}, upper {}",
                    handle.error(),
                    handle.upper()
                );
                worker.step();
            }
        }
        if first {
            // Every row ahead taken in (written to the durable streams) before the stop.
            let start = Instant::now();
            loop {
                let held = |id: &str| -> usize {
                    (0..workers)
                        .map(|w| st.unsealed_len(&worker_stream_id(id, w, workers)).unwrap_or(0))
                        .sum()
                };
                if held("data") >= ahead().len() && held("src") >= ahead().len() {
                    break;
                }
                assert!(
                    start.elapsed() < Duration::from_secs(30),
                    "rows ahead never taken in"
                );
                worker.step();
            }
            // A stop: the dataflow dropped with its inputs open.
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        } else {
            drop((pin, qin, din, oin));
            let start = Instant::now();
            while !probe.done() {
                assert!(start.elapsed() < Duration::from_secs(30), "hang at the close");
                worker.step();
            }
        }
    })
    .unwrap();
    let seen = *seen.lock().unwrap();
    seen
}

#[test]
fn a_durable_arrangement_keeps_updates_ahead_of_its_frontier_across_a_stop() {
    check(1, SealMode::Adaptive);
    check(2, SealMode::Adaptive);
}

#[test]
#[ignore]
fn a_durable_arrangement_keeps_updates_ahead_of_its_frontier_across_a_stop_other_seal_modes() {
    check(2, SealMode::Pipelined);
    check(2, SealMode::Inline);
    check(1, SealMode::Inline);
}

fn check(workers: usize, seals: SealMode) {
    let tmp = tempfile::tempdir().unwrap();
    let first: Logs = Default::default();
    run(tmp.path(), workers, seals, true, END_FIRST, &first);
    let times: Vec<u64> = (0..END_FIRST).collect();
    for (name, a, b) in first.lock().unwrap().iter() {
        same_at_every_time(
            a,
            b,
            &times,
            &format!("{workers} workers, {seals:?}, first run, {name}"),
        );
    }
    let second: Logs = Default::default();
    let (resume, greatest) = run(tmp.path(), workers, seals, false, END, &second);
    assert!(greatest >= END_FIRST, "greatest upper {greatest}");
    let times: Vec<u64> = (resume.max(greatest)..END + 5).collect();
    for (name, a, b) in second.lock().unwrap().iter() {
        same_at_every_time(
            a,
            b,
            &times,
            &format!(
                "{workers} workers, {seals:?}, second run (resume {resume}, greatest {greatest}), {name}"
            ),
        );
    }
}
