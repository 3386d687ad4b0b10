//! Runs the `store_model` check on stable Rust: a fixed corpus (hand-written operation sequences touching
//! every operation and fault site, under several setups), a sweep arming a fault after every call count
//! of a fixed workload at each site, mutations of the corpus and pseudo-random inputs. Prints the figures
//! (executions, operations, faults armed and fired, reopens...).
//!
//! `SMOKE_ITERS` scales the sweep and the number of random inputs (default 1: a few thousand inputs, well
//! under a minute in release builds). With `DDP_FUZZ_WRITE_CORPUS=1` the corpus is also written to
//! `corpus/store_model/` as seeds for `cargo fuzz run store_model`.

use ddpersist_fuzz::store_model::{
    decode, encode, run_ops, run_store_model, Fault, FaultSite, GenUpdate, Op, Setup, Stats,
};
use ddpersist_fuzz::Rng;
use std::path::PathBuf;

fn iters() -> usize {
    std::env::var("SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// An update; keys and vals from the input's alphabet (`\0`, `a`, `b`), at most 2 bytes.
fn u(k: &[u8], v: &[u8], off: u8, d: i8) -> GenUpdate {
    (k.to_vec(), v.to_vec(), off, d)
}

fn write(slot: u8, updates: Vec<GenUpdate>) -> Op {
    Op::Write {
        slot,
        updates,
        synced: true,
    }
}

fn unsynced(slot: u8, updates: Vec<GenUpdate>) -> Op {
    Op::Write {
        slot,
        updates,
        synced: false,
    }
}

fn fault(site: FaultSite, after: u8) -> Op {
    Op::Fault(Fault { site, after })
}

/// Setups: durable and non-durable streams, over a durable WAL or a `MemLog`; option bytes chosen for
/// defaults, tiny WAL segments and blocks, spills on every write, a small WAL bound, compression and
/// filters, back-pressure bound 2 and fan-in 2.
fn setups() -> Vec<Setup> {
    let s = |durable_wal: bool, streams: [Option<bool>; 3], option_bytes: [u8; 5]| Setup {
        durable_wal,
        streams,
        option_bytes,
    };
    vec![
        // The option bytes' largest choices (64 MiB segments and budget, 1 GiB WAL bound), durable + non-durable.
        s(
            true,
            [Some(true), Some(false), None],
            [2, 2, 18 * 2 + 9 + 3 * 2, 2, 2],
        ),
        // One-byte segments (a new segment per sync), one-byte blocks, spill on every write, compression
        // from level 0, 1-bit filters, bound 2, fan-in 2.
        s(
            true,
            [Some(true), Some(true), Some(false)],
            [0, 0, 9 + 3 + 1, 0, 2],
        ),
        // Small segments, blocks, budget and WAL bound.
        s(
            true,
            [Some(true), Some(false), None],
            [1 + 4 * 3, 1 + 3 * 8, 2, 1 + 4 * 5, 1 + 4 * 2],
        ),
        // A `MemLog`: unsealed updates never survive.
        s(false, [Some(true), Some(false), None], [1, 1, 4, 0, 0]),
    ]
}

/// Hand-written sequences touching every operation and fault site.
fn sequences() -> Vec<Vec<Op>> {
    let basics = vec![
        write(
            0,
            vec![u(b"a", b"", 0, 1), u(b"a", b"", 0, 1), u(b"", b"\0", 3, -2)],
        ),
        write(
            1,
            vec![u(b"b", b"b", 1, 2), u(b"b", b"b", 1, -2), u(b"a", b"a", 0, 0)],
        ),
        Op::Hold { slot: 0 },
        Op::Seal { slot: 0, by: 2 },
        Op::SealLogged { slot: 1, by: 1 },
        Op::WriteBelow {
            slot: 0,
            updates: vec![u(b"ab", b"ba", 0, 1)],
            bad_at: 1,
            below: 0,
            diff: 1,
        },
        Op::WriteClosed { slot: 1, diff: 0 },
        Op::SealStale { slot: 0, back: 0 },
        Op::AllowCompactionBack { slot: 0 },
        Op::Create {
            slot: 1,
            durable: true,
        },
        Op::Create {
            slot: 2,
            durable: true,
        },
        Op::Lookup {
            slot: 0,
            key: b"a".to_vec(),
            others: vec![b"".to_vec(), b"b".to_vec()],
            as_of: 1,
        },
        unsynced(0, vec![u(b"bb", b"bb", 1, 1)]),
        unsynced(2, vec![u(b"bb", b"b\0", 0, -1)]),
        Op::Sync { ticket: 0 },
        Op::Reopen { fault: None },
        Op::Sync { ticket: 1 },
        Op::Snapshot { slot: 0 },
        Op::AllowCompaction { slot: 0, by: 3 },
        Op::Compact {
            slot: 0,
            major: false,
        },
        Op::Seal { slot: 1, by: 4 },
        Op::Seal { slot: 2, by: 1 },
        Op::Reopen { fault: None },
        Op::Snapshot { slot: 1 },
        Op::SealWith {
            slot: 0,
            by: 0,
            since_by: 1,
        },
        Op::SealWith {
            slot: 0,
            by: 2,
            since_by: 6,
        },
        Op::SealWith {
            slot: 0,
            by: 0,
            since_by: 0,
        },
        Op::SealWith {
            slot: 1,
            by: 3,
            since_by: 2,
        },
    ];
    // Many small seals so merges run, then logical compaction; a fault at each site mid-way.
    let mut merges = Vec::new();
    for n in 0..10u8 {
        let key = [b'a' + n % 2];
        merges.push(write(0, vec![u(&key, b"a\0", 0, 1), u(&key, b"\0b", 1, -1)]));
        merges.push(write(1, vec![u(&key, b"", 0, 1)]));
        merges.push(Op::Seal {
            slot: 0,
            by: 1 + n % 2,
        });
        if n == 4 {
            merges.push(Op::AllowCompaction { slot: 0, by: 5 });
        }
    }
    merges.push(Op::Compact {
        slot: 0,
        major: false,
    });
    merges.push(write(0, vec![u(b"a", b"", 3, 1)]));
    merges.push(Op::Seal { slot: 0, by: 1 });
    merges.push(Op::Compact { slot: 0, major: true });
    merges.push(Op::Snapshot { slot: 0 });
    let mut faulted = Vec::new();
    for (i, site) in [
        FaultSite::Blob,
        FaultSite::Wal,
        FaultSite::Segment,
        FaultSite::Late,
    ]
    .into_iter()
    .enumerate()
    {
        faulted.push(write(0, vec![u(b"aa", b"a\0", 0, 1), u(b"aa", b"a\0", 5, 1)]));
        faulted.push(unsynced(1, vec![u(b"\0a", b"", 0, 1)]));
        faulted.push(fault(site, 1 + i as u8));
        faulted.push(write(0, vec![u(b"aa", b"\0b", 1, 1)]));
        faulted.push(unsynced(0, vec![u(b"aa", b"ab", 2, 1)]));
        faulted.push(Op::Seal { slot: 0, by: 2 });
        faulted.push(Op::AllowCompaction { slot: 0, by: 1 });
        faulted.push(Op::SealWith {
            slot: 0,
            by: 1,
            since_by: 1,
        });
        faulted.push(Op::Create {
            slot: 2,
            durable: false,
        });
        faulted.push(Op::Compact {
            slot: 0,
            major: false,
        });
        faulted.push(Op::Snapshot { slot: 0 });
        faulted.push(Op::Reopen {
            fault: Some(Fault {
                site,
                after: 2 * i as u8,
            }),
        });
        faulted.push(write(1, vec![u(b"b", b"", 0, 1)]));
        faulted.push(Op::Heal);
        faulted.push(Op::Seal { slot: 1, by: 1 });
    }
    // The sync of a zero ticket (a write to a non-durable stream) acknowledges no earlier durable write.
    let zero_ticket = vec![
        unsynced(0, vec![u(b"a\0", b"a\0", 1, -1)]),
        unsynced(1, vec![u(b"b", b"", 0, -2)]),
        Op::Sync { ticket: 1 },
        Op::Reopen { fault: None },
    ];
    vec![basics, merges, faulted, zero_ticket]
}

/// The fixed workload of the sweep: writes (synced and not), seals, a spill-prone batch of updates,
/// allow_compaction, compact, a create.
fn sweep_workload() -> Vec<Op> {
    let mut ops = Vec::new();
    for n in 0..4u8 {
        let key = [[0, b'a', b'b'][usize::from(n % 3)]];
        ops.push(write(
            0,
            vec![u(&key, b"a\0", 0, 1), u(&key, b"\0b", 2, -1), u(b"", b"", 1, 2)],
        ));
        ops.push(unsynced(1, vec![u(&key, b"", 0, 1)]));
        ops.push(unsynced(0, vec![u(&key, b"\0\0", 3, 1)]));
        // Ordinary and logged seals (a fault between the seal record and the batch leaves it logged).
        ops.push(match n < 2 {
            true => Op::Seal { slot: n % 2, by: 2 },
            false => Op::SealLogged { slot: n % 2, by: 2 },
        });
    }
    ops.extend([
        Op::AllowCompaction { slot: 0, by: 2 },
        // A major compaction: the sweep fails each of its steps in turn (the whole-stream merge's
        // create, writes and commit).
        Op::Compact { slot: 0, major: true },
        Op::Create {
            slot: 2,
            durable: true,
        },
        write(2, vec![u(b"bb", b"bb", 0, 1)]),
        Op::Sync { ticket: 0 },
        Op::Seal { slot: 2, by: 1 },
        Op::Lookup {
            slot: 0,
            key: b"a".to_vec(),
            others: vec![],
            as_of: 0,
        },
    ]);
    ops
}

/// A crash of one random byte, cut, insertion or duplicated range.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.index(4) {
        let len = b.len();
        match rng.index(4) {
            0 if len > 0 => {
                let i = rng.index(len);
                b[i] = rng.next() as u8;
            }
            1 if len > 1 => {
                let at = rng.index(len);
                let n = rng.index((len - at).min(8)) + 1;
                b.drain(at..at + n);
            }
            2 => {
                let at = rng.index(len + 1);
                let n = 1 + rng.index(8);
                let ins = rng.exact_bytes(n);
                b.splice(at..at, ins);
            }
            _ if len > 1 => {
                let at = rng.index(len);
                let n = rng.index((len - at).min(16)) + 1;
                let copy = b[at..at + n].to_vec();
                let to = rng.index(len + 1);
                b.splice(to..to, copy);
            }
            _ => {}
        }
    }
    b
}

/// Runs one input; on a finding, saves it to `artifacts/store_model/` and prints its operations first.
fn run(input: &[u8]) -> Stats {
    match std::panic::catch_unwind(|| run_store_model(input)) {
        Ok(stats) => stats,
        Err(panic) => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("artifacts")
                .join("store_model");
            let name = format!(
                "crash-{:016x}",
                Rng(input.len() as u64
                    ^ input
                        .iter()
                        .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b))))
                .next()
            );
            let saved = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(&name), input));
            eprintln!(
                "finding: input {name} ({saved:?}), {} bytes: {input:02x?}",
                input.len()
            );
            eprintln!("decoded: {:#?}", decode(input));
            std::panic::resume_unwind(panic)
        }
    }
}

fn report(what: &str, s: &Stats) {
    eprintln!(
        "store_model {what}: {} executions, {} operations, {} writes and {} seals acknowledged, {} faults \
         armed, {} fired, {} I/O errors, {} poisonings, {} reopens ({} opens failed under a fault), \
         uncertain calls applied {} / not {}, unacknowledged writes survived {} / lost {}, {} snapshot \
         checks with spilled runs",
        s.executions,
        s.operations,
        s.writes,
        s.seals,
        s.faults_armed,
        s.faults_fired,
        s.io_errors,
        s.poisonings,
        s.reopens,
        s.failed_opens,
        s.uncertain_applied,
        s.uncertain_not_applied,
        s.unacked_survived,
        s.unacked_lost,
        s.spilled_checks,
    );
}

/// The encoding round-trips: a corpus input decodes to the operations it was made from.
#[test]
fn encoding_round_trips() {
    for setup in setups() {
        for ops in sequences() {
            let ops: Vec<Op> = ops
                .into_iter()
                .take(ddpersist_fuzz::store_model::MAX_OPS)
                .collect();
            assert_eq!(decode(&encode(&setup, &ops)), (setup.clone(), ops));
        }
    }
    let sweep = sweep_workload();
    assert_eq!(decode(&encode(&setups()[0], &sweep)).1, sweep);
}

/// The corpus, its mutations and random inputs.
#[test]
fn corpus_mutations_and_random_inputs() {
    let mut corpus = Vec::new();
    for setup in setups() {
        for ops in sequences() {
            corpus.push(encode(&setup, &ops));
        }
        // The sweep's workload with a fault armed at a few call counts, at each site.
        for site in [
            FaultSite::Blob,
            FaultSite::Wal,
            FaultSite::Segment,
            FaultSite::Late,
        ] {
            for after in [3, 10, 25] {
                let mut ops = vec![fault(site, after)];
                ops.extend(sweep_workload());
                corpus.push(encode(&setup, &ops));
            }
        }
    }
    if std::env::var_os("DDP_FUZZ_WRITE_CORPUS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join("store_model");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in corpus.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), s).unwrap();
        }
    }
    let mut stats = Stats::default();
    for input in &corpus {
        stats += run(input);
    }
    report("corpus", &stats);
    assert!(stats.faults_fired > 0 && stats.reopens > 0 && stats.seals > 0);
    let mut rng = Rng(0x5709E);
    let mut mutated = Stats::default();
    for _ in 0..100 * iters() {
        let seed = &corpus[rng.index(corpus.len())];
        mutated += run(&mutate(&mut rng, seed));
    }
    report("mutations", &mutated);
    let mut random = Stats::default();
    for _ in 0..1500 * iters() {
        let len = 8 + rng.index(200);
        random += run(&rng.exact_bytes(len));
    }
    report("random", &random);
    assert!(random.faults_fired > 0 && random.reopens > random.executions);
}

/// A fault armed after every call count `k` of a fixed workload, at each site, under each setup: every
/// crash point of the workload, each followed by a healed reopen.
#[test]
fn fault_after_every_call_of_a_workload() {
    let workload = sweep_workload();
    let mut stats = Stats::default();
    for setup in setups() {
        for site in [
            FaultSite::Blob,
            FaultSite::Wal,
            FaultSite::Segment,
            FaultSite::Late,
        ] {
            for after in 0..(40 * iters()).min(255) as u8 {
                let mut ops = vec![fault(site, after)];
                ops.extend(workload.iter().cloned());
                stats += run_ops(setup.clone(), &ops);
            }
        }
    }
    report("sweep", &stats);
    assert!(stats.faults_fired > 0 && stats.poisonings > 0);
}

/// Inputs the target found, run as regressions: each is (what it found, the input in hex, re-encoded with
/// `encode` so that it decodes to the same operations as when it was found).
const REGRESSIONS: [(&str, &str); 2] = [
    (
        "the sync of a zero ticket (a non-durable write) was taken to acknowledge an earlier durable write (a model bug)",
        "6eae05b373a4040002020100020100010101010100030008020204010201020000000002000002041706f11801001f150116063d1302000201000101050218001002000200000915012d100202010100080f000002060202020002020101010204000001000004010101010104020101000203020200000203100102000200001001010102020200020200040c020007010200020201000400000401cd03020d0205080001000000",
    ),
    (
        "an open under a fault returned a store its own merges had poisoned (the harness expected a working store)",
        "26f915aa28a80000010002010200020e01090102000203020201010203040100010100040201010002040e0209020212011400000001030001020304010101020001000101010415001f000205020100010005040001020302020001010202040101000202020002020100040109010709000015031607000063000313001400010901020902041801001106bf0800020402010000010104010202020101010401000000010c01011801032f0001040101000400000000000000000000000000",
    ),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The inputs in `REGRESSIONS`, and any in `artifacts/store_model/` (a local fuzzing run's findings).
#[test]
fn regressions_and_artifacts() {
    for (what, hex) in REGRESSIONS {
        eprintln!("regression: {what}");
        run(&unhex(hex));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join("store_model");
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        eprintln!("artifact {}", entry.path().display());
        run_store_model(&std::fs::read(entry.path()).unwrap());
    }
}

/// Replays `corpus/store_model/` (what `cargo fuzz run store_model` kept) and prints its figures; with no
/// corpus, does nothing. For figures of a fuzzing run: `cargo test --release --test store_model corpus_figures
/// -- --ignored --nocapture`.
#[test]
#[ignore]
fn corpus_figures() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join("store_model");
    let mut stats = Stats::default();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        stats += run(&std::fs::read(entry.path()).unwrap());
    }
    report("fuzzing corpus", &stats);
}
