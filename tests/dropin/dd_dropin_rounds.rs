//! Drop-in ports (from an adversarial round, all answering as DD): a DD program of many small rounds (each stepped to completion,
//! so the store seals a batch per round and merges them in the background while the operators read), over
//! everyday types (`(u32, String)` keys, `Option<i64>` vals, `u32` times), 1 and 3 workers, with a
//! restart part way. Every operator's output is compared with DD's in-memory run of the same program as
//! the accumulated collection at every time (not only at the end).

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Key = (u32, String);
type Val = Option<i64>;
/// `(operator, record as text, time, diff)`.
type Log = Arc<Mutex<Vec<(&'static str, String, u32, i64)>>>;

fn updates(round: u32) -> Vec<((Key, Val), isize)> {
    let mut out = Vec::new();
    for i in 0..6u32 {
        let k = (round * 7 + i * 3) % 11;
        let key = (k, format!("k{}", k % 4));
        let val = if (round + i).is_multiple_of(5) {
            None
        } else {
            Some(i64::from((round * 13 + i) % 9) - 4)
        };
        out.push(((key.clone(), val), 1));
        // Retract something added two rounds ago.
        if round >= 2 {
            let r = round - 2;
            let k = (r * 7 + i * 3) % 11;
            let key = (k, format!("k{}", k % 4));
            let val = if (r + i).is_multiple_of(5) {
                None
            } else {
                Some(i64::from((r * 13 + i) % 9) - 4)
            };
            if i % 2 == 0 {
                out.push(((key, val), -1));
            }
        }
    }
    out
}

fn other(round: u32) -> Vec<((Key, char), isize)> {
    let k = (round * 5) % 11;
    vec![(
        ((k, format!("k{}", k % 4)), char::from(b'a' + (round % 26) as u8)),
        1,
    )]
}

/// One run: DD's in-memory program over every round, the persisted one from the resume point on.
/// Returns the resume point (as a `u32` time).
fn run(
    dir: &Path,
    options: &Options,
    close: bool,
    workers: usize,
    rounds: u32,
    persisted: Log,
    memory: Log,
) -> u32 {
    let store = Store::open_with(dir, options.clone()).unwrap();
    let resume = Arc::new(Mutex::new(0u32));
    let r = resume.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (mut pin, mut min, mut oin, from) = worker.dataflow::<u32, _, _>(|scope| {
            let (pin, p) = scope.new_collection::<(Key, Val), isize>();
            let (min, m) = scope.new_collection::<(Key, Val), isize>();
            let (oin, o) = scope.new_collection::<(Key, char), isize>();
            let arranged = p.clone().arrange_by_key_persisted(&store, "pairs").unwrap();
            let keys_p = p
                .clone()
                .map(|(k, _)| k)
                .arrange_by_self_persisted(&store, "keys")
                .unwrap();
            let swapped_p = p
                .map(|((a, s), v)| (v, (a, s)))
                .arrange_by_key_persisted(&store, "swapped")
                .unwrap();
            let from = [&arranged.handle(), &keys_p.handle(), &swapped_p.handle()]
                .iter()
                .map(|h| h.unwrap().resume_at())
                .min()
                .unwrap();
            let m_arr = m.clone().arrange_by_key();
            let m_keys = m.clone().map(|(k, _)| k);
            let other_keys = o.clone().map(|(k, _)| k);
            let mut outs: Vec<(&'static str, _, _)> = Vec::new();
            macro_rules! both {
                ($name:literal, $p:expr, $m:expr) => {
                    outs.push((
                        $name,
                        $p.map(|x| format!("{x:?}")).inner,
                        $m.map(|x| format!("{x:?}")).inner,
                    ));
                };
            }
            both!(
                "as_collection",
                arranged.clone().as_collection(|k, v| (k.clone(), *v)),
                m.clone()
            );
            both!(
                "flat_map_ref",
                arranged
                    .clone()
                    .flat_map_ref(|k, v| v.iter().map(|x| (k.0, *x)).collect::<Vec<_>>()),
                m_arr
                    .clone()
                    .flat_map_ref(|k, v| v.iter().map(|x| (k.0, *x)).collect::<Vec<_>>())
            );
            both!(
                "join",
                arranged.clone().join(o.clone()),
                m.clone().join(o.clone())
            );
            both!(
                "semijoin",
                arranged.clone().semijoin(other_keys.clone()),
                m.clone().semijoin(other_keys.clone())
            );
            both!(
                "antijoin",
                arranged.clone().antijoin(other_keys.clone()),
                m.clone().antijoin(other_keys.clone())
            );
            // Output of another type than the input: the vals' sum and the key's string, per key.
            both!(
                "reduce",
                arranged.clone().reduce(|k, s, t| {
                    let sum: i64 = s.iter().map(|(v, r)| v.unwrap_or(100) * *r as i64).sum();
                    t.push((format!("{}:{sum}", k.1), 1isize))
                }),
                m.clone().reduce(|k, s, t| {
                    let sum: i64 = s.iter().map(|(v, r)| v.unwrap_or(100) * *r as i64).sum();
                    t.push((format!("{}:{sum}", k.1), 1isize))
                })
            );
            // Persisted joined with persisted (both placed by key_hash): vals -> keys, self-joined.
            both!(
                "persisted join persisted",
                swapped_p
                    .clone()
                    .join_core(swapped_p.clone(), |v, k1, k2| (k1 < k2)
                        .then_some((*v, k1.0, k2.0))),
                m.clone()
                    .map(|((a, s), v)| (v, (a, s)))
                    .join_map(m.clone().map(|((a, s), v)| (v, (a, s))), |v, k1, k2| (
                        *v,
                        k1.clone(),
                        k2.clone()
                    ))
                    .filter(|(_, k1, k2)| k1 < k2)
                    .map(|(v, k1, k2)| (v, k1.0, k2.0))
            );
            both!(
                "count_total",
                keys_p.clone().count_total(),
                m_keys.clone().count_total()
            );
            both!(
                "threshold_total",
                keys_p.clone().threshold_total(|_, c| if *c > 1 { 1 } else { 0 }),
                m_keys.clone().threshold_total(|_, c| if *c > 1 { 1 } else { 0 })
            );
            both!(
                "distinct_total",
                keys_p.clone().distinct_total(),
                m_keys.clone().distinct_total()
            );
            // reduce_abelian into DD's trace, joined with DD's own arrangement of the other input.
            let o_arr = o.clone().arrange_by_key();
            both!(
                "reduce_abelian join DD",
                arranged
                    .clone()
                    .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<Key, usize, _, _>>(
                        "Len",
                        |_k, s, t| { t.push((s.len(), 1isize)) }
                    )
                    .join_core(o_arr.clone(), |k, n, c| Some((k.0, *n, *c))),
                m_arr
                    .reduce_abelian::<_, ValBuilder<_, _, _, _>, ValSpine<Key, usize, _, _>, _, _>(
                        "Len",
                        |_k, s, t| t.push((s.len(), 1isize)),
                        |vec, key, upds| {
                            vec.clear();
                            vec.extend(upds.drain(..).map(|(v, t, r)| ((key.clone(), v), t, r)));
                        }
                    )
                    .join_core(o_arr, |k, n, c| Some((k.0, *n, *c)))
            );
            for (name, ps, ms) in outs {
                let (pl, ml) = (persisted.clone(), memory.clone());
                ps.inspect(move |(d, t, r)| pl.lock().unwrap().push((name, d.clone(), *t, *r as i64)))
                    .probe_with(&probe);
                ms.inspect(move |(d, t, r)| ml.lock().unwrap().push((name, d.clone(), *t, *r as i64)))
                    .probe_with(&probe);
            }
            (pin, min, oin, u32::try_from(from).unwrap())
        });
        *r.lock().unwrap() = from;
        pin.advance_to(from);
        for round in 0..rounds {
            min.advance_to(round);
            oin.advance_to(round);
            if round >= from {
                pin.advance_to(round);
            }
            if worker.index() == (round as usize) % worker.peers() {
                for (pair, diff) in updates(round) {
                    min.update(pair.clone(), diff);
                    if round >= from {
                        pin.update(pair, diff);
                    }
                }
                for (pair, diff) in other(round) {
                    oin.update(pair, diff);
                }
            }
            min.advance_to(round + 1);
            oin.advance_to(round + 1);
            pin.advance_to((round + 1).max(from));
            min.flush();
            oin.flush();
            pin.flush();
            worker.step_while(|| probe.less_than(&(round + 1)));
        }
        // Not closed: the next run resumes (drop the dataflows, as README says). Or closed, as DD
        // programs end: the inputs drop with the closure and the dataflows run to completion.
        if !close {
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        }
    })
    .unwrap();
    let resume = *resume.lock().unwrap();
    resume
}

/// `operator -> time -> (record -> accumulated diff)` for every time in `times`.
fn states(
    log: &Log,
    times: std::ops::Range<u32>,
) -> BTreeMap<&'static str, BTreeMap<u32, BTreeMap<String, i64>>> {
    let mut out: BTreeMap<&'static str, BTreeMap<u32, BTreeMap<String, i64>>> = BTreeMap::new();
    let log = log.lock().unwrap();
    for t in times {
        for (name, d, time, r) in log.iter() {
            let at = out.entry(name).or_default().entry(t).or_default();
            if *time <= t {
                *at.entry(d.clone()).or_insert(0) += r;
            }
        }
    }
    for per_time in out.values_mut() {
        for state in per_time.values_mut() {
            state.retain(|_, r| *r != 0);
        }
    }
    out
}

fn rounds_with_restart(workers: usize, options: Options) {
    rounds_with_restart_closing(workers, options, false);
}

fn rounds_with_restart_closing(workers: usize, options: Options, close: bool) {
    let dir = tempfile::tempdir().unwrap();
    // 20 → 40 → 50 rounds by default; `DDPERSIST_DROPIN_ROUNDS=long`: 60 → 120 → 150.
    let long = std::env::var("DDPERSIST_DROPIN_ROUNDS").is_ok_and(|v| v == "long");
    let runs = if long { [60u32, 120, 150] } else { [20, 40, 50] };
    for (run_no, rounds) in runs.into_iter().enumerate() {
        let (p, m): (Log, Log) = Default::default();
        let from = run(dir.path(), &options, close, workers, rounds, p.clone(), m.clone());
        if run_no == 1 {
            assert!(from > 0, "the second run resumes past the first's rounds");
        }
        let (ps, ms) = (states(&p, from..rounds), states(&m, from..rounds));
        assert!(!ms.is_empty());
        for (name, want) in &ms {
            let got = ps.get(name).cloned().unwrap_or_default();
            for (t, w) in want {
                let g = got.get(t).cloned().unwrap_or_default();
                assert_eq!(
                    &g, w,
                    "run {run_no}, {workers} workers: {name} at time {t} (resume {from})"
                );
            }
        }
    }
}

#[test]
fn many_rounds_one_worker_with_a_restart_answer_as_dds_at_every_time() {
    rounds_with_restart(1, Options::default());
}

#[test]
fn many_rounds_three_workers_with_a_restart_answer_as_dds_at_every_time() {
    rounds_with_restart(3, Options::default());
}

/// The store's knobs turned to their extremes (they change how batches are cut, merged, spilled and
/// compressed, never what a reader sees): 64-byte blocks, pairwise merges, a whole-stream merge at every
/// seal, every batch compressed, no key filter, a 1 KiB memtable (spills), no merge thread.
fn extreme(threads: usize) -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compress_from_level: Some(0),
        filter_bits_per_key: 0,
        memtable_budget_bytes: 1024,
        compaction_threads: threads,
        ..Options::default()
    }
}

#[test]
fn many_rounds_extreme_store_options_one_worker() {
    rounds_with_restart(1, extreme(0));
}

#[test]
fn many_rounds_extreme_store_options_three_workers_merge_threads() {
    rounds_with_restart(3, extreme(2));
}

/// Each run ends as DD programs end: the inputs close when the worker closure returns (the streams are
/// marked finished), and the next run resumes from `resume_at()` (README: a finished stream's resume
/// point is its greatest upper).
#[test]
fn many_rounds_closing_runs_three_workers() {
    rounds_with_restart_closing(3, Options::default(), true);
}

#[test]
fn many_rounds_closing_runs_one_worker() {
    rounds_with_restart_closing(1, Options::default(), true);
}
