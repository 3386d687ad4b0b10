//! Where an arranging operator runs its seals (`SealMode`, counted by `PersistHandle::seals`): adaptive
//! seals run inline while the input waits for them and only within their bounds (a small memtable, no
//! spilled run, merges on threads of their own), pipelined while the input runs ahead; every mode
//! persists the same updates. (The restart equalities with each mode are in `tests/operators/arrangement.rs`.)

use ddpersist::operators::{ArrangeTyped, PersistOptions, SealCounts, SealMode};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

/// How a test drives its rounds.
#[derive(Clone, Copy)]
struct Rounds {
    /// Rounds, one timestamp each.
    count: u64,
    /// Updates inserted per round, each with a 100-byte val.
    updates: u64,
    /// Whether each round waits for its output before the next (else one `worker.step()` a round).
    wait: bool,
    seals: SealMode,
}

/// Runs `rounds` over a `count_total` of `arrange_by_key_persisted` in one worker; returns its seal
/// counts and the final counts per key.
fn run(store: &Store, rounds: Rounds) -> (SealCounts, BTreeMap<u64, isize>) {
    let store = store.clone();
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let counts = out.clone();
    let seals = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, String), isize>();
            let options = PersistOptions {
                seals: rounds.seals,
                ..PersistOptions::default()
            };
            let arranged = pairs.arrange_by_key_persisted_with(&store, "s", options).unwrap();
            let handle = arranged.trace.handle().cloned().unwrap();
            arranged
                .count_total()
                .inspect(move |((k, n), _t, d)| {
                    // The consolidated count at the end: the sum of each (key, count) change's diff
                    // times the count.
                    *counts.lock().unwrap().entry(*k).or_insert(0) += n * d;
                })
                .inner
                .probe_with(&probe);
            (input, handle)
        });
        for r in 0..rounds.count {
            for i in 0..rounds.updates {
                input.insert((i % 5_000, val(r, i)));
            }
            input.advance_to(r + 1);
            input.flush();
            if rounds.wait {
                worker.step_while(|| probe.less_than(input.time()));
            } else {
                worker.step();
            }
        }
        drop(input);
        worker.step_while(|| !probe.done());
        assert_eq!(handle.error(), None);
        handle.seals()
    });
    let counts = out.lock().unwrap().clone();
    (seals, counts)
}

/// The val of update `i` of round `r`: 100 bytes, distinct, which blocks barely compress.
fn val(r: u64, i: u64) -> String {
    let mut x = (r << 32 | i).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = String::with_capacity(100);
    while out.len() < 100 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(100);
    out
}

/// The count per key that `rounds` inserts.
fn expected(rounds: Rounds) -> BTreeMap<u64, isize> {
    let mut counts = BTreeMap::new();
    for _ in 0..rounds.count {
        for i in 0..rounds.updates {
            *counts.entry(i % 5_000).or_insert(0) += 1;
        }
    }
    counts
}

fn counts(inline: u64, pipelined: u64) -> SealCounts {
    SealCounts { inline, pipelined }
}

#[test]
fn waiting_rounds_seal_inline_and_look_again_every_17th_seal() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rounds = Rounds {
        count: 40,
        updates: 1,
        wait: true,
        seals: SealMode::Adaptive,
    };
    let (seals, got) = run(&store, rounds);
    // 41 seals (the rounds and the close): 16 inline, pipelined, 16 inline, pipelined, 7 inline.
    assert_eq!(seals, counts(39, 2));
    assert_eq!(got, expected(rounds));
}

#[test]
fn rounds_that_run_ahead_stay_pipelined() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let rounds = Rounds {
        count: 2_000,
        updates: 1,
        wait: false,
        seals: SealMode::Adaptive,
    };
    let (seals, got) = run(&store, rounds);
    // The first 16 seals run inline; then a pipelined seal is drained in a later step than it was
    // requested in, after the next advance: it never finds the input idle, but the last (at the close,
    // after the loop waits).
    assert!(seals.inline <= 17, "{seals:?}");
    assert!(seals.pipelined >= 1, "{seals:?}");
    assert_eq!(got, expected(rounds));
}

#[test]
fn adaptive_seals_stay_pipelined_outside_their_bounds() {
    let waiting = |updates| Rounds {
        count: 4,
        updates,
        wait: true,
        seals: SealMode::Adaptive,
    };
    // Merges inside `seal` (no merge thread): they would run on the worker.
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compaction_threads: 0,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(run(&store, waiting(1)), (counts(0, 5), expected(waiting(1))));

    // A memtable over 1 MiB at each round's seal (12,000 updates of ~110 bytes a round); the close, with
    // nothing left to seal, runs inline.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        run(&store, waiting(12_000)),
        (counts(1, 4), expected(waiting(12_000)))
    );

    // Spilled runs at each round's seal (a memtable budget of one byte spills every write), which the
    // seal rewrites; none left at the close.
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 1,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(run(&store, waiting(1)), (counts(1, 4), expected(waiting(1))));
}

#[test]
fn fixed_modes_place_every_seal() {
    for (mode, placed) in [
        (SealMode::Pipelined, counts(0, 41)),
        (SealMode::Inline, counts(41, 0)),
    ] {
        for wait in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let rounds = Rounds {
                count: 40,
                updates: 3,
                wait,
                seals: mode,
            };
            let (seals, got) = run(&store, rounds);
            if wait || mode == SealMode::Inline {
                assert_eq!(seals, placed, "{mode:?}, wait {wait}");
            } else {
                // Pipelined seals coalesce the advances deferred while two are in flight.
                assert!(seals.inline == 0 && seals.pipelined <= 41, "{seals:?}");
            }
            assert_eq!(got, expected(rounds));
        }
    }
}

/// A restarted arrangement imported into another dataflow while its restored blocks are still being
/// checked, then sealed again: each new span reaches the import at a time its capabilities allow (its
/// lower), in every mode. (Stamped with the operator's capability, which the block check holds below the
/// trace's upper, a span made DD's import panic: "failed to create a delayed capability".)
#[test]
fn a_restarted_arrangement_imported_elsewhere_takes_new_seals() {
    // ~26 MB in ~400 blocks: the restarted operator checks them over two activations (256 a time).
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first = Rounds {
        count: 20,
        updates: 12_000,
        wait: false,
        seals: SealMode::Pipelined,
    };
    run(&store, first);
    drop(store);
    let mut want = expected(first);
    let mut upper = first.count;
    for mode in [SealMode::Adaptive, SealMode::Pipelined, SealMode::Inline] {
        // No merge thread reads (and so checks) a restored block meanwhile.
        let options = Options {
            compaction_threads: 0,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        let got = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let options = PersistOptions {
                seals: mode,
                ..PersistOptions::default()
            };
            let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(u64, String), isize>();
                let arranged = pairs.arrange_by_key_persisted_with(&store, "s", options).unwrap();
                (input, arranged.trace)
            });
            let out = Arc::new(Mutex::new(BTreeMap::new()));
            let counts = out.clone();
            worker.dataflow::<u64, _, _>(|scope| {
                trace
                    .import(scope)
                    .count_total()
                    .inspect(move |((k, n), _t, d)| *counts.lock().unwrap().entry(*k).or_insert(0) += n * d)
                    .inner
                    .probe_with(&probe);
            });
            input.advance_to(upper);
            for r in upper..upper + 3 {
                input.insert((0, format!("{r:0100}")));
                input.advance_to(r + 1);
                input.flush();
                worker.step_while(|| probe.less_than(input.time()));
            }
            drop(input);
            drop(trace);
            worker.step_while(|| !probe.done());
            let counts = out.lock().unwrap().clone();
            counts
        });
        upper += 3;
        *want.entry(0).or_insert(0) += 3;
        assert_eq!(got, want, "{mode:?}");
    }
}

/// The worker steps each of `rounds` rounds of `updates` updates takes until a probe passes it, for DD's
/// in-memory arrangement and a persisted one (default options) on a fresh store in `dir`.
fn steps_per_round(dir: &std::path::Path, persisted: bool, rounds: u64, updates: u64) -> Vec<usize> {
    let store = Store::open(dir).unwrap();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, String), isize>();
            if persisted {
                let arranged = pairs.arrange_by_key_persisted(&store, "first").unwrap();
                arranged.count_total().inner.probe_with(&probe);
            } else {
                use differential_dataflow::operators::CountTotal;
                pairs.map(|(k, _)| k).count_total().inner.probe_with(&probe);
            }
            input
        });
        let mut out = Vec::new();
        for r in 0..rounds {
            for i in 0..updates {
                input.insert((i % 7, val(r, i)));
            }
            input.advance_to(r + 1);
            input.flush();
            let mut steps = 0;
            while probe.less_than(&(r + 1)) && steps < 1_000_000 {
                worker.step();
                steps += 1;
            }
            out.push(steps);
        }
        out
    })
}

/// Every timestamp of a dataflow that waits for each one's output completes within a few worker steps,
/// as with DD's in-memory arrangement, so DD code that steps a fixed number of times sees its output:
/// the first ones (found by an independent check: ~22,000 steps while the first seal was pipelined),
/// every 17th (an adversarial round: the pipelined seal that looks at the input took ~2,500 steps; the
/// worker now waits for a seal in flight while its input is idle), and rounds too large to seal inline
/// (over 1 MiB: 12,000 updates of ~110 bytes), whose seals are all pipelined.
#[test]
fn every_timestamp_completes_in_a_few_steps_as_in_memory() {
    for (rounds, updates) in [(60, 1), (3, 12_000)] {
        let memory = steps_per_round(tempfile::tempdir().unwrap().path(), false, rounds, updates);
        let dir = tempfile::tempdir().unwrap();
        let persisted = steps_per_round(dir.path(), true, rounds, updates);
        let most = *memory.iter().max().unwrap();
        let slow: Vec<(usize, usize)> = persisted
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, s)| *s > most + 2)
            .collect();
        assert!(
            slow.is_empty(),
            "{updates} updates a round: (round, steps) over DD's {most} + 2: {slow:?}; persisted {persisted:?}"
        );
    }
}
