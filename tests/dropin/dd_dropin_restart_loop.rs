//! From adversarial round 4 (held): a restart of a chain persisted arrangement → iterate (in memory) → persisted
//! arrangements of the loop's output → totals, two workers, u32 times, merges running; the second run
//! resumes from the least `resume_at` and is compared with DD's in-memory program over every round, at
//! every time from the resume point on.
#![allow(clippy::type_complexity)]

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Iterate;
use differential_dataflow::operators::CountTotal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log = Arc<Mutex<Vec<(&'static str, String, u32, i64)>>>;

fn edges(round: u32) -> Vec<((u32, u32), isize)> {
    let n = 40u32;
    let mut out = Vec::new();
    if round == 0 {
        for i in 0..n {
            out.push(((i, (i + 1) % n), 1));
            out.push(((i, (i * 7 + 3) % n), 1));
        }
    } else {
        let i = (round * 13) % n;
        out.push(((i, (i + 1) % n), -1));
        out.push(((i, (i + round) % n), 1));
        out.push((((i + 1) % n, (i + 1 + round * 3) % n), 1));
        let j = ((round - 1) * 13) % n;
        out.push(((j, (j + 1) % n), 1)); // the previous round's ring edge comes back
    }
    out
}

fn extreme() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compaction_threads: 1,
        ..Options::default()
    }
}

fn run(dir: &Path, workers: usize, rounds: u32, persisted: Log, memory: Log) -> u32 {
    let store = Store::open_with(dir, extreme()).unwrap();
    let resume = Arc::new(Mutex::new(0u32));
    let r = resume.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (mut pin, mut min, mut rin, from) = worker.dataflow::<u32, _, _>(|scope| {
            let (pin, p) = scope.new_collection::<(u32, u32), isize>();
            let (min, m) = scope.new_collection::<(u32, u32), isize>();
            let (rin, roots) = scope.new_collection::<u32, isize>();
            let pe = p.arrange_by_key_persisted(&store, "edges").unwrap();
            let ours = roots.clone().map(|x| (x, 0u32)).iterate(|s, inner| {
                let e = pe.clone().enter(s);
                let st = roots.clone().map(|x| (x, 0u32)).enter(s);
                inner
                    .arrange_by_key_encoded()
                    .join_core(
                        e,
                        |_n: &u32, d: &u32, m: &u32| if *d < 8 { Some((*m, d + 1)) } else { None },
                    )
                    .concat(st)
                    .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)))
            });
            let theirs = roots.clone().map(|x| (x, 0u32)).iterate(|s, inner| {
                let e = m.clone().enter(s);
                let st = roots.clone().map(|x| (x, 0u32)).enter(s);
                inner
                    .join_map(e, |_n, d, m| (*m, d + 1))
                    .filter(|(_, d)| *d <= 8)
                    .concat(st)
                    .reduce(|_n, s, out: &mut Vec<(u32, isize)>| out.push((*s[0].0, 1)))
            });
            let pd = ours.clone().arrange_by_key_persisted(&store, "dists").unwrap();
            let ph = ours
                .map(|(_, d)| d)
                .arrange_by_self_persisted(&store, "hist")
                .unwrap();
            let from = [pe.handle(), pd.handle(), ph.handle()]
                .iter()
                .map(|h| h.unwrap().resume_at())
                .min()
                .unwrap();
            let mut outs = Vec::new();
            outs.push((
                "dists",
                pd.clone()
                    .as_collection(|k: &u32, v: &u32| format!("{k}:{v}"))
                    .inner,
                theirs.clone().map(|(k, v)| format!("{k}:{v}")).inner,
            ));
            outs.push((
                "hist",
                ph.count_total().map(|(d, c)| format!("{d}x{c}")).inner,
                theirs
                    .clone()
                    .map(|(_, d)| d)
                    .count_total()
                    .map(|(d, c)| format!("{d}x{c}"))
                    .inner,
            ));
            outs.push((
                "dists join edges",
                pd.join_map(
                    pe.clone().as_collection(|a: &u32, b: &u32| (*a, *b)),
                    |n, d, m| format!("{n}:{d}->{m}"),
                )
                .inner,
                theirs
                    .join_map(m.clone(), |n, d, m| format!("{n}:{d}->{m}"))
                    .inner,
            ));
            for (name, ps, ms) in outs {
                let (pl, ml) = (persisted.clone(), memory.clone());
                ps.inspect(move |(d, t, r): &(String, u32, isize)| {
                    pl.lock().unwrap().push((name, d.clone(), *t, *r as i64))
                })
                .probe_with(&probe);
                ms.inspect(move |(d, t, r): &(String, u32, isize)| {
                    ml.lock().unwrap().push((name, d.clone(), *t, *r as i64))
                })
                .probe_with(&probe);
            }
            (pin, min, rin, u32::try_from(from).unwrap())
        });
        *r.lock().unwrap() = from;
        pin.advance_to(from);
        for round in 0..rounds {
            min.advance_to(round);
            rin.advance_to(round);
            if round >= from {
                pin.advance_to(round);
            }
            if worker.index() == (round as usize) % worker.peers() {
                for (e, d) in edges(round) {
                    min.update(e, d);
                    if round >= from {
                        pin.update(e, d);
                    }
                }
                if round % 7 == 0 {
                    rin.update((round * 3) % 40, 1);
                }
                if round == 15 {
                    rin.update(0, -1);
                }
            }
            min.advance_to(round + 1);
            rin.advance_to(round + 1);
            pin.advance_to((round + 1).max(from));
            min.flush();
            rin.flush();
            pin.flush();
            let start = Instant::now();
            worker.step_while(|| {
                assert!(start.elapsed() < Duration::from_secs(60), "hang");
                probe.less_than(&(round + 1))
            });
        }
        // End the run as a stop: drop the dataflow, inputs still open.
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        drop((pin, min, rin));
    })
    .unwrap();
    let from = *resume.lock().unwrap();
    from
}

fn at(log: &Log, name: &str, t: u32) -> BTreeMap<String, i64> {
    let mut acc = BTreeMap::new();
    for (n, d, time, r) in log.lock().unwrap().iter() {
        if *n == name && *time <= t {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

#[test]
fn restart_of_a_loop_chain_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let (p1, m1): (Log, Log) = Default::default();
    let from1 = run(dir.path(), 2, 20, p1.clone(), m1.clone());
    assert_eq!(from1, 0);
    for name in ["dists", "hist", "dists join edges"] {
        for t in 0..20 {
            assert_eq!(at(&p1, name, t), at(&m1, name, t), "first run, {name} at {t}");
        }
    }
    let (p2, m2): (Log, Log) = Default::default();
    let from2 = run(dir.path(), 2, 40, p2.clone(), m2.clone());
    assert!(from2 > 0, "resume point {from2}");
    for name in ["dists", "hist", "dists join edges"] {
        for t in from2..40 {
            let (a, b) = (at(&p2, name, t), at(&m2, name, t));
            if a != b {
                let only_a: Vec<_> = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).take(6).collect();
                let only_b: Vec<_> = b.iter().filter(|(k, v)| a.get(*k) != Some(v)).take(6).collect();
                panic!("second run (resumed at {from2}), {name} at {t}: persisted-only {only_a:?}, dd-only {only_b:?}");
            }
        }
    }
}
