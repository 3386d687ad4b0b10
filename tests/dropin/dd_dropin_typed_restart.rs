//! Adversarial round 9: the typed drop-in operators over persisted arrangements against DD's in-memory
//! answers on the same input, two workers, `u32` times, merges forced (tiny blocks, fan-in 2, a merge of
//! everything at every seal), retractions below zero, and a restart: the second run feeds the persisted
//! inputs from the least `resume_at` and builds a second dataflow importing the traces part way. Every
//! output is compared with DD's at every time (from the resume point on in the second run, and from the
//! import's build on for the imports).
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{rec, same_at_every_time, Log};
use common::Rng;
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistOptions, SealMode};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

type Rows = Vec<((u32, String), isize)>;

/// The `data` updates of round `t` (deterministic): insertions, retractions (also of rows never
/// inserted: negative multiplicities) and repeats.
fn data(t: u32) -> Rows {
    let mut rng = Rng(u64::from(t) * 7919 + 1);
    (0..12)
        .map(|_| {
            let k = rng.below(9) as u32;
            let v = format!("v{}", rng.below(4));
            let d = [1, 1, 2, -1, -1, -2][rng.below(6) as usize];
            ((k, v), d)
        })
        .collect()
}

fn other(t: u32) -> Vec<((u32, u8), isize)> {
    let mut rng = Rng(u64::from(t) * 104729 + 3);
    (0..4)
        .map(|_| {
            (
                (rng.below(9) as u32, rng.below(3) as u8),
                if rng.below(3) == 0 { -1 } else { 1 },
            )
        })
        .collect()
}

fn keys(t: u32) -> Vec<(u32, isize)> {
    let mut rng = Rng(u64::from(t) * 15485863 + 5);
    (0..4)
        .map(|_| (rng.below(9) as u32, if rng.below(2) == 0 { -1 } else { 1 }))
        .collect()
}

fn options() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compaction_threads: 1,
        ..Options::default()
    }
}

type S = Log<String, u32>;

#[derive(Default, Clone)]
struct Logs {
    /// (name, persisted, dd) per output.
    outs: Arc<Mutex<Vec<(&'static str, S, S)>>>,
    imports: Arc<Mutex<Vec<(&'static str, S, S)>>>,
}

impl Logs {
    fn log(&self, imports: bool, name: &'static str) -> (S, S) {
        let list = if imports { &self.imports } else { &self.outs };
        let mut list = list.lock().unwrap();
        if let Some((_, a, b)) = list.iter().find(|(n, _, _)| *n == name) {
            return (a.clone(), b.clone());
        }
        let (a, b): (S, S) = Default::default();
        list.push((name, a.clone(), b.clone()));
        (a, b)
    }
}

/// One run over `dir`: rounds `0..to` (the persisted inputs from the agreed resume point), the import
/// dataflow built at round `import_at` (if any). Returns the resume point.
/// How a run drives its dataflow: the seal mode of the persisted arrangements, and whether it waits for
/// each round's output (else it feeds every round and steps once at the end: pipelined, coalesced seals
/// whose batches hold several times).
#[derive(Clone, Copy, Debug)]
struct Drive {
    seals: SealMode,
    wait_each_round: bool,
}

fn run(dir: &Path, to: u32, import_at: Option<u32>, logs: &Logs, drive: Drive) -> u32 {
    let store = Store::open_with(dir, options()).unwrap();
    let logs = logs.clone();
    let resume = Arc::new(Mutex::new(0u32));
    let r = resume.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let s = store.clone();
        let l = logs.clone();
        let (mut pin, mut din, mut poin, mut doin, mut pkin, mut dkin, traces, from) = worker
            .dataflow::<u32, _, _>(|scope| {
                let (pin, pdata) = scope.new_collection::<(u32, String), isize>();
                let (din, ddata) = scope.new_collection::<(u32, String), isize>();
                let (poin, pother) = scope.new_collection::<(u32, u8), isize>();
                let (doin, dother) = scope.new_collection::<(u32, u8), isize>();
                let (pkin, pkeys) = scope.new_collection::<u32, isize>();
                let (dkin, dkeys) = scope.new_collection::<u32, isize>();
                let o = PersistOptions {
                    durable: false,
                    seals: drive.seals,
                };
                let pd = pdata.arrange_by_key_persisted_with(&s, "data", o).unwrap();
                let po = pother
                    .clone()
                    .arrange_by_key_persisted_with(&s, "other", o)
                    .unwrap();
                let pk = pkeys
                    .clone()
                    .arrange_by_self_persisted_with(&s, "keys", o)
                    .unwrap();
                let from = [pd.handle(), po.handle(), pk.handle()]
                    .iter()
                    .map(|h| h.unwrap().resume_at())
                    .min()
                    .unwrap();
                // The persisted inputs carry only what is fed from the resume point on: the collections
                // with the whole history are the arrangements' own.
                let pother = po.clone().as_collection(|k: &u32, v: &u8| (*k, *v));
                let pkeys = pk.clone().as_collection(|k: &u32, _: &()| *k);
                let f = |name| l.log(false, name);
                let (a, b) = f("join collection");
                rec(
                    pd.clone().join(pother.clone()).map(|x| format!("{x:?}")),
                    &a,
                    &probe,
                );
                rec(
                    ddata.clone().join(dother.clone()).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("join persisted");
                rec(pd.clone().join(po.clone()).map(|x| format!("{x:?}")), &a, &probe);
                rec(
                    ddata.clone().join(dother.clone()).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("semijoin");
                rec(
                    pd.clone().semijoin(pkeys.clone()).map(|x| format!("{x:?}")),
                    &a,
                    &probe,
                );
                rec(
                    ddata.clone().semijoin(dkeys.clone()).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("antijoin");
                rec(
                    pd.clone().antijoin(pkeys.clone()).map(|x| format!("{x:?}")),
                    &a,
                    &probe,
                );
                rec(
                    ddata.clone().antijoin(dkeys.clone()).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let red = |_k: &u32, s: &[(&String, isize)], out: &mut Vec<((String, isize), isize)>| {
                    let total: isize = s.iter().map(|x| x.1).sum();
                    out.push(((s[0].0.clone(), total), 1));
                    if s.len() > 1 {
                        out.push(((s[s.len() - 1].0.clone(), s.len() as isize), 2));
                    }
                };
                let (a, b) = f("reduce");
                rec(pd.clone().reduce(red).map(|x| format!("{x:?}")), &a, &probe);
                rec(ddata.clone().reduce(red).map(|x| format!("{x:?}")), &b, &probe);
                let (a, b) = f("count_total by key");
                rec(pd.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
                rec(
                    ddata.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("count_total by self");
                rec(pk.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
                rec(dkeys.clone().count_total().map(|x| format!("{x:?}")), &b, &probe);
                let th = |_k: &u32, c: &isize| {
                    if *c > 1 {
                        2isize
                    } else if *c < 0 {
                        -1
                    } else {
                        0
                    }
                };
                let (a, b) = f("threshold_total");
                rec(
                    pk.clone().threshold_total(th).map(|x| format!("{x:?}")),
                    &a,
                    &probe,
                );
                rec(
                    dkeys.clone().threshold_total(th).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("distinct_total");
                rec(pk.clone().distinct_total().map(|x| format!("{x:?}")), &a, &probe);
                rec(
                    dkeys.clone().distinct_total().map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let semi = |_k: &u32, new: &isize, old: Option<&isize>| -> Option<isize> {
                    let f = |c: isize| isize::from(c > 0);
                    Some(f(*new) - old.map_or(0, |o| f(*o)))
                };
                let (a, b) = f("threshold_semigroup");
                rec(
                    pk.clone().threshold_semigroup(semi).map(|x| format!("{x:?}")),
                    &a,
                    &probe,
                );
                rec(
                    dkeys.clone().threshold_semigroup(semi).map(|x| format!("{x:?}")),
                    &b,
                    &probe,
                );
                let (a, b) = f("as_collection");
                rec(pd.clone().as_collection(|k, v| format!("{k}={v}")), &a, &probe);
                rec(ddata.clone().map(|(k, v)| format!("{k}={v}")), &b, &probe);
                let (a, b) = f("other as_collection");
                rec(po.clone().as_collection(|k, v| format!("{k}={v}")), &a, &probe);
                rec(dother.clone().map(|(k, v)| format!("{k}={v}")), &b, &probe);
                let traces = (pd.trace.clone(), pk.trace.clone());
                (
                    pin,
                    din,
                    poin,
                    doin,
                    pkin,
                    dkin,
                    traces,
                    u32::try_from(from).unwrap(),
                )
            });
        *r.lock().unwrap() = from;
        {
            let input = &mut pin;
            input.advance_to(from);
        }
        poin.advance_to(from);
        pkin.advance_to(from);
        let mut import_inputs = None;
        for round in 0..to {
            if Some(round) == import_at {
                // A second dataflow importing the persisted traces, with DD's computation fed the whole
                // history (its own inputs) beside it.
                let l = logs.clone();
                let (mut t0, mut t1) = (traces.0.clone(), traces.1.clone());
                let ins = worker.dataflow::<u32, _, _>(|scope| {
                    let (i1, dd) = scope.new_collection::<(u32, String), isize>();
                    let (i2, dk) = scope.new_collection::<u32, isize>();
                    let id = t0.import(scope);
                    let ik = t1.import(scope);
                    let f = |name| l.log(true, name);
                    let (a, b) = f("import count_total by key");
                    rec(id.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
                    rec(
                        dd.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                        &b,
                        &probe,
                    );
                    let (a, b) = f("import reduce");
                    let red = |_k: &u32, s: &[(&String, isize)], out: &mut Vec<(String, isize)>| {
                        out.push((
                            s.iter()
                                .map(|x| format!("{}*{}", x.0, x.1))
                                .collect::<Vec<_>>()
                                .join(","),
                            1,
                        ))
                    };
                    rec(id.clone().reduce(red).map(|x| format!("{x:?}")), &a, &probe);
                    rec(dd.clone().reduce(red).map(|x| format!("{x:?}")), &b, &probe);
                    let (a, b) = f("import distinct_total");
                    rec(ik.clone().distinct_total().map(|x| format!("{x:?}")), &a, &probe);
                    rec(dk.clone().distinct_total().map(|x| format!("{x:?}")), &b, &probe);
                    let (a, b) = f("import join");
                    rec(
                        id.join(ik.as_collection(|k, _| (*k, ())))
                            .map(|x| format!("{x:?}")),
                        &a,
                        &probe,
                    );
                    rec(dd.join(dk.map(|k| (k, ()))).map(|x| format!("{x:?}")), &b, &probe);
                    (i1, i2)
                });
                let (mut i1, mut i2) = ins;
                // Feed DD's side of the import the history so far.
                for t in 0..round {
                    i1.advance_to(t);
                    i2.advance_to(t);
                    if worker.index() == 0 {
                        for (x, d) in data(t) {
                            i1.update(x, d);
                        }
                        for (x, d) in keys(t) {
                            i2.update(x, d);
                        }
                    }
                }
                i1.advance_to(round);
                i2.advance_to(round);
                import_inputs = Some((i1, i2));
            }
            {
                let input = &mut din;
                input.advance_to(round);
            }
            doin.advance_to(round);
            dkin.advance_to(round);
            if round >= from {
                pin.advance_to(round);
                poin.advance_to(round);
                pkin.advance_to(round);
            }
            if let Some((i1, i2)) = import_inputs.as_mut() {
                i1.advance_to(round);
                i2.advance_to(round);
            }
            // Worker w feeds the updates at indexes w, w + 2, ...
            let w = worker.index();
            for (i, (x, d)) in data(round).into_iter().enumerate() {
                if i % 2 == w {
                    din.update(x.clone(), d);
                    if round >= from {
                        pin.update(x.clone(), d);
                    }
                    if let Some((i1, _)) = import_inputs.as_mut() {
                        i1.update(x, d);
                    }
                }
            }
            for (i, (x, d)) in other(round).into_iter().enumerate() {
                if i % 2 == w {
                    doin.update(x, d);
                    if round >= from {
                        poin.update(x, d);
                    }
                }
            }
            for (i, (x, d)) in keys(round).into_iter().enumerate() {
                if i % 2 == w {
                    dkin.update(x, d);
                    if round >= from {
                        pkin.update(x, d);
                    }
                    if let Some((_, i2)) = import_inputs.as_mut() {
                        i2.update(x, d);
                    }
                }
            }
            let next = round + 1;
            din.advance_to(next);
            doin.advance_to(next);
            dkin.advance_to(next);
            pin.advance_to(next.max(from));
            poin.advance_to(next.max(from));
            pkin.advance_to(next.max(from));
            if let Some((i1, i2)) = import_inputs.as_mut() {
                i1.advance_to(next);
                i2.advance_to(next);
                i1.flush();
                i2.flush();
            }
            for i in [&mut din, &mut pin] {
                i.flush();
            }
            for i in [&mut doin, &mut poin] {
                i.flush();
            }
            for i in [&mut dkin, &mut pkin] {
                i.flush();
            }
            if drive.wait_each_round || next == to {
                let start = Instant::now();
                worker.step_while(|| {
                    assert!(start.elapsed() < Duration::from_secs(60), "hang at round {round}");
                    probe.less_than(&next)
                });
            } else {
                worker.step();
            }
        }
        if to == 0 || from >= to {
            let start = Instant::now();
            worker.step_while(|| {
                assert!(start.elapsed() < Duration::from_secs(60), "hang replaying");
                probe.less_than(&from)
            });
        }
        // A stop, not the source's end: drop the dataflows with the inputs open.
        drop(traces);
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        drop((pin, din, poin, doin, pkin, dkin, import_inputs));
    })
    .unwrap();
    let from = *resume.lock().unwrap();
    from
}

fn check(logs: &Logs, times: std::ops::Range<u32>, imports_from: Option<u32>, what: &str) {
    let times: Vec<u32> = times.collect();
    for (name, a, b) in logs.outs.lock().unwrap().iter() {
        assert!(
            !b.lock().unwrap().is_empty() || times.is_empty(),
            "{name}: DD produced nothing"
        );
        same_at_every_time(a, b, &times, &format!("{what}: {name}"));
    }
    if let Some(at) = imports_from {
        let times: Vec<u32> = times.iter().copied().filter(|t| *t >= at).collect();
        let imports = logs.imports.lock().unwrap();
        assert_eq!(imports.len(), 4, "imports built");
        for (name, a, b) in imports.iter() {
            same_at_every_time(a, b, &times, &format!("{what}: {name}"));
        }
    }
}

fn restarts(drive: Drive) {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::default();
    let from = run(dir.path(), 9, Some(4), &logs, drive);
    assert_eq!(from, 0);
    check(&logs, 0..9, Some(4), "first run");
    let logs = Logs::default();
    let from = run(dir.path(), 18, Some(13), &logs, drive);
    assert_eq!(from, 9, "resume point of the second run");
    check(&logs, 9..18, Some(13), "second run");
    let logs = Logs::default();
    let from = run(dir.path(), 18, None, &logs, drive);
    assert_eq!(from, 18, "resume point of a read-only run");
    // A read-only run re-emits the persisted history: its outputs accumulate to DD's at the end.
    check(&logs, 17..18, None, "third run");
}

#[test]
fn typed_operators_match_dd_across_a_restart_with_imports_two_workers() {
    restarts(Drive {
        seals: SealMode::Adaptive,
        wait_each_round: true,
    });
}

#[test]
fn typed_operators_match_dd_with_pipelined_seals_fed_ahead() {
    restarts(Drive {
        seals: SealMode::Pipelined,
        wait_each_round: false,
    });
}

#[test]
fn typed_operators_match_dd_with_inline_seals_fed_ahead() {
    restarts(Drive {
        seals: SealMode::Inline,
        wait_each_round: false,
    });
}
