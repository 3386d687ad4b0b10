//! Drop-in ports (from an adversarial round, all answering as DD): edge data through persisted arrangements, against DD's
//! in-memory run of the same program: one key with a huge val list (a key never spans blocks, so its
//! block is megabytes), records larger than a WAL segment in a durable arrangement, a restart of each.

use crate::common;

use common::dropin::{consolidated, final_state, record, Log};
use ddpersist::operators::{ArrangeTyped, PersistOptions};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::path::Path;
use timely::dataflow::ProbeHandle;

type Logs = (
    Log<(u32, usize)>,
    Log<(u32, usize)>,
    Log<(u32, String)>,
    Log<(u32, String)>,
    Log<(u32, isize)>,
    Log<(u32, isize)>,
);

/// One run over `dir`: `per_round(round)` updates into both sides; the persisted side from its resume
/// point on. Returns the resume point.
type PerRound = fn(u64) -> Vec<((u32, String), isize)>;

fn run(
    dir: &Path,
    options: PersistOptions,
    store_options: Options,
    rounds: u64,
    per_round: PerRound,
    logs: Logs,
) -> u64 {
    let store = Store::open_with(dir, store_options).unwrap();
    let resume = std::sync::Arc::new(std::sync::Mutex::new(0));
    let r = resume.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut pin, mut min, from) = worker.dataflow::<u64, _, _>(|scope| {
            let (pin, p) = scope.new_collection::<(u32, String), isize>();
            let (min, m) = scope.new_collection::<(u32, String), isize>();
            let arranged = p.arrange_by_key_persisted_with(&store, "wide", options).unwrap();
            let from = arranged.handle().unwrap().resume_state().greatest_upper;
            record(
                arranged.clone().reduce(|_, s, t| t.push((s.len(), 1isize))),
                &logs.0,
                &probe,
            );
            record(
                m.clone().reduce(|_, s, t| t.push((s.len(), 1isize))),
                &logs.1,
                &probe,
            );
            // The largest val's length and first bytes: a reduce over the whole list.
            let summary = |_: &u32, s: &[(&String, isize)], t: &mut Vec<(String, isize)>| {
                let last = s.last().unwrap().0;
                t.push((format!("{}:{}", last.len(), &last[..last.len().min(12)]), 1));
            };
            record(arranged.clone().reduce(summary), &logs.2, &probe);
            record(m.clone().reduce(summary), &logs.3, &probe);
            record(arranged.count_total(), &logs.4, &probe);
            record(m.map(|(k, _)| k).count_total(), &logs.5, &probe);
            (pin, min, from)
        });
        *r.lock().unwrap() = from;
        for round in 0..rounds {
            min.advance_to(round);
            if round >= from {
                pin.advance_to(round);
            }
            for (d, diff) in per_round(round) {
                if round >= from {
                    pin.update(d.clone(), diff);
                }
                min.update(d, diff);
            }
            pin.advance_to((round + 1).max(from));
            min.advance_to(round + 1);
            pin.flush();
            min.flush();
            worker.step_while(|| probe.less_than(&(round + 1)));
        }
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    });
    let from = *resume.lock().unwrap();
    from
}

fn check(logs: &Logs, what: &str) {
    assert!(!final_state(&logs.1).is_empty(), "{what}: DD's side has output");
    assert_eq!(final_state(&logs.0), final_state(&logs.1), "{what}: reduce len");
    assert_eq!(final_state(&logs.2), final_state(&logs.3), "{what}: reduce last");
    assert_eq!(final_state(&logs.4), final_state(&logs.5), "{what}: count_total");
}

fn wide(round: u64) -> Vec<((u32, String), isize)> {
    let mut out = Vec::new();
    if round == 0 {
        for i in 0..200_000u32 {
            out.push(((7, format!("val-{:09}", i * 3)), 1));
        }
        out.push(((8, "small".to_string()), 1));
    } else {
        // Retract a stripe and insert new vals between existing ones.
        for i in 0..2_000u32 {
            let j = (round as u32 * 7919 + i * 97) % 200_000;
            out.push(((7, format!("val-{:09}", j * 3)), -1));
            out.push(((7, format!("val-{:09}", j * 3 + round as u32 % 3)), 1));
        }
    }
    out
}

/// One key with 200,000 vals (a block of several megabytes), changed a little each round; a restart.
#[test]
fn one_key_with_a_huge_val_list_with_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    for (n, rounds) in [(0, 3u64), (1, 5u64)] {
        let logs: Logs = Default::default();
        let from = run(
            dir.path(),
            PersistOptions::default(),
            Options::default(),
            rounds,
            wide,
            logs.clone(),
        );
        assert!(n == 0 || from == 3);
        check(&logs, &format!("run {n}"));
    }
}

fn huge(round: u64) -> Vec<((u32, String), isize)> {
    match round {
        0 => vec![((1, "x".repeat(20 << 20)), 1), ((2, "small".to_string()), 1)],
        1 => vec![((3, "y".repeat(17 << 20)), 2), ((1, "x".repeat(20 << 20)), -1)],
        _ => vec![((2, format!("r{round}")), 1)],
    }
}

/// Records of 17 and 20 MiB (beyond a 16 MiB WAL segment) in a durable arrangement, with a small WAL
/// segment and a restart.
#[test]
fn records_larger_than_a_wal_segment_in_a_durable_arrangement() {
    let dir = tempfile::tempdir().unwrap();
    let durable = PersistOptions {
        durable: true,
        ..Default::default()
    };
    let opts = Options {
        wal_segment_bytes: 1 << 20,
        ..Options::default()
    };
    for (n, rounds) in [(0, 3u64), (1, 5u64)] {
        let logs: Logs = Default::default();
        let from = run(dir.path(), durable, opts.clone(), rounds, huge, logs.clone());
        assert!(n == 0 || from == 3);
        check(&logs, &format!("run {n}"));
    }
    let _ = consolidated::<(u32, usize), u64>;
}

/// A durable arrangement (README: "what was written survives, and the input continues with new updates
/// only, at or beyond `handle.resume_state().greatest_upper`"): run 1 writes round 3's updates and drops
/// its dataflow before the frontier passes 3; run 2 continues at `greatest_upper` with new updates at
/// time 3 and on. The answer must hold round 3's first updates (from the WAL) and the new ones.
#[test]
fn durable_unsealed_updates_survive_and_join_new_ones_at_the_same_time() {
    let dir = tempfile::tempdir().unwrap();
    let durable = PersistOptions {
        durable: true,
        ..Default::default()
    };
    let data = |round: u64, part: u32| -> Vec<((u32, String), isize)> {
        (0..4u32)
            .map(|i| {
                (
                    (i % 3, format!("r{round}p{part}i{i}")),
                    if i == 3 && round > 0 { -1 } else { 1 },
                )
            })
            .collect()
    };
    let logs: Logs = Default::default();
    let from = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for run in 0..2 {
        let store = Store::open(dir.path()).unwrap();
        let logs = logs.clone();
        let f = from.clone();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut pin, mut min, greatest) = worker.dataflow::<u64, _, _>(|scope| {
                let (pin, p) = scope.new_collection::<(u32, String), isize>();
                let (min, m) = scope.new_collection::<(u32, String), isize>();
                let arranged = p
                    .arrange_by_key_persisted_with(&store, "durable", durable)
                    .unwrap();
                let greatest = arranged.handle().unwrap().resume_state().greatest_upper;
                if run == 1 {
                    record(
                        arranged.clone().as_collection(|k, v| (*k, v.clone())),
                        &logs.2,
                        &probe,
                    );
                    record(m.clone(), &logs.3, &probe);
                    record(arranged.count_total(), &logs.4, &probe);
                    record(m.map(|(k, _)| k).count_total(), &logs.5, &probe);
                } else {
                    record(arranged.count_total(), &Log::default(), &probe);
                }
                (pin, min, greatest)
            });
            f.lock().unwrap().push(greatest);
            if run == 0 {
                for round in 0..3u64 {
                    pin.advance_to(round);
                    for (d, r) in data(round, 0) {
                        pin.update(d, r);
                    }
                    pin.advance_to(round + 1);
                    pin.flush();
                    worker.step_while(|| probe.less_than(&(round + 1)));
                }
                // Round 3's first part: written (durable), never sealed.
                for (d, r) in data(3, 0) {
                    pin.update(d, r);
                }
                pin.flush();
                for _ in 0..50 {
                    worker.step();
                }
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            } else {
                // DD's side: everything. The persisted side: new updates only, from `greatest_upper`.
                for round in 0..6u64 {
                    min.advance_to(round);
                    for (d, r) in data(round, 0) {
                        min.update(d, r);
                    }
                    if round >= 3 {
                        for (d, r) in data(round, 1) {
                            min.update(d.clone(), r);
                        }
                    }
                }
                pin.advance_to(greatest);
                for round in greatest..6u64 {
                    pin.advance_to(round);
                    if round > 3 {
                        for (d, r) in data(round, 0) {
                            pin.update(d, r);
                        }
                    }
                    for (d, r) in data(round, 1) {
                        pin.update(d, r);
                    }
                }
                pin.advance_to(6);
                min.advance_to(6);
                pin.flush();
                min.flush();
                worker.step_while(|| probe.less_than(&6));
                for dataflow in worker.installed_dataflows() {
                    worker.drop_dataflow(dataflow);
                }
            }
        });
    }
    assert_eq!(*from.lock().unwrap(), vec![0, 3], "greatest_upper of each run");
    // Times below the since (here up to the resume point) read as the since: compare the collections
    // accumulated at each time from the resume point on.
    for t in 3..6u64 {
        assert!(!state_at(&logs.3, t).is_empty());
        assert_eq!(state_at(&logs.2, t), state_at(&logs.3, t), "as_collection at {t}");
        assert_eq!(state_at(&logs.4, t), state_at(&logs.5, t), "count_total at {t}");
    }
}

/// The collection accumulated at time `t`.
fn state_at<D: Ord + Clone + std::fmt::Debug>(log: &Log<D>, t: u64) -> std::collections::BTreeMap<D, i64> {
    let mut acc = std::collections::BTreeMap::new();
    for (d, time, r) in log.lock().unwrap().iter() {
        if *time <= t {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Many distinct times in one batch, spread over the `u64` range (gaps of 2^24 to 2^40: every time width
/// of the batch format), with `i64` diffs of large magnitude (up to 2^40), fed at once with `update_at`
/// ahead of the input's time (DD's `tests/threshold.rs` style) and sealed in one advance: `as_collection`,
/// `reduce` and `count_total` at every time, against DD.
#[test]
fn many_spread_times_and_wide_diffs_in_one_batch() {
    use differential_dataflow::input::InputSession;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut updates: Vec<((u32, u64), u64, i64)> = Vec::new();
    let mut rng = common::Rng(99);
    let mut t = 0u64;
    for i in 0..20_000u64 {
        let gap = match i % 4 {
            0 => 1,
            1 => 1 << 24,
            2 => rng.below(1 << 33),
            _ => 1 << 40,
        };
        t += gap;
        let key = (i % 5) as u32;
        let val = rng.below(4);
        let diff = if i % 3 == 0 {
            -(1i64 << (i % 41))
        } else {
            1i64 << (i % 41)
        };
        updates.push(((key, val), t, diff));
    }
    let last = t;
    type L<D> = Log<D>;
    type Logs6 = (
        L<(u32, u64)>,
        L<(u32, u64)>,
        L<(u32, u64)>,
        L<(u32, u64)>,
        L<(u32, i64)>,
        L<(u32, i64)>,
    );
    let logs: Logs6 = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut pin = InputSession::<u64, (u32, u64), i64>::new();
        let mut min = InputSession::<u64, (u32, u64), i64>::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let p = pin.to_collection(scope);
            let m = min.to_collection(scope);
            let arranged = p.arrange_by_key_persisted(&store, "times").unwrap();
            record(arranged.clone().as_collection(|k, v| (*k, *v)), &l.0, &probe);
            record(m.clone(), &l.1, &probe);
            record(
                arranged
                    .clone()
                    .reduce(|_, s, t| t.push((*s.last().unwrap().0, 1i64))),
                &l.2,
                &probe,
            );
            record(
                m.clone().reduce(|_, s, t| t.push((*s.last().unwrap().0, 1i64))),
                &l.3,
                &probe,
            );
            record(arranged.count_total(), &l.4, &probe);
            record(m.map(|(k, _)| k).count_total(), &l.5, &probe);
        });
        for (d, t, r) in &updates {
            pin.update_at(*d, *t, *r);
            min.update_at(*d, *t, *r);
        }
        pin.advance_to(last + 1);
        min.advance_to(last + 1);
        pin.flush();
        min.flush();
        worker.step_while(|| probe.less_than(&(last + 1)));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "as_collection");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "reduce");
    assert_eq!(consolidated(&logs.4), consolidated(&logs.5), "count_total");
}
