//! Model-based property tests: random operation sequences run against a [`Store`] and a naive in-memory
//! model, whose snapshot is every update written so far, consolidated and sorted by (key, val, time).
//!
//! Backends:
//! - a directory store (`Store::open` / `Store::open_with`, a `FileLog` WAL): unsealed writes to durable
//!   streams survive a reopen, unsealed writes to non-durable streams do not;
//! - an in-memory store (`MemBlob` + `MemLog`), reopened over a clone of the same blob with a fresh
//!   log: only sealed updates survive, whatever the stream's durability flag says.
//!
//! Compaction runs as configured (background threads by default, or inline in `seal`), so the set of batch
//! files is not deterministic; the checks are. With the stream's `since` at 0 a snapshot equals the model
//! exactly. Once `allow_compaction` raised it, merged batches may hold times advanced to the since they were
//! merged with; then every batch must equal the model's updates in its interval advanced to its own since,
//! and the snapshot must equal the model once both are advanced to the stream's since.
//!
//! Case counts are modest so the suite stays fast in debug builds; `PROPTEST_CASES` sets the number of
//! cases and `MODEL_MAX_OPS` the longest operation sequence, for longer runs.
//!
//! The harness (the model of each stream, the store under test, the checks) is in `model/harness.rs`,
//! how each operation is applied in `model/apply.rs`.

/// The store under test against the model.
#[path = "harness.rs"]
mod harness;

use ddpersist::Options;
use harness::{run, Backend};
use proptest::prelude::*;
use proptest::test_runner::Config;

/// One update as generated: key, val, time offset (from the stream's upper), diff.
type GenUpdate = (Vec<u8>, Vec<u8>, u64, i64);

#[derive(Clone, Debug)]
enum Op {
    /// A valid write: every time at or above the stream's upper (`upper + offset`).
    Write { stream: usize, updates: Vec<GenUpdate> },
    /// A write that must be refused as a whole: `updates` are valid, and one update with a nonzero diff at a
    /// time below the upper (or at `FRONTIER_CLOSED` when the upper is 0) is inserted at `bad_at`.
    WriteBelow {
        stream: usize,
        updates: Vec<GenUpdate>,
        bad_at: usize,
        below: u64,
        diff: i64,
    },
    /// A write at `FRONTIER_CLOSED`, which is reserved (refused even with a zero diff).
    WriteClosed { stream: usize, diff: i64 },
    /// Seal to `upper + by` (`by >= 1`).
    Seal { stream: usize, by: u64 },
    /// Seal to `upper - back` (saturating): does not advance, must be refused.
    SealStale { stream: usize, back: u64 },
    /// `Store::compact`: run every merge due now.
    Compact { stream: usize },
    /// `allow_compaction` to `since + by` (`by == 0` is a no-op).
    AllowCompaction { stream: usize, by: u64 },
    /// `allow_compaction` backwards (or to `FRONTIER_CLOSED` when the since is 0): must be refused.
    AllowCompactionBack { stream: usize },
    /// Point lookups of `key` (and `others`) as of `since + as_of`, and the key's first time.
    Lookup {
        stream: usize,
        key: Vec<u8>,
        others: Vec<Vec<u8>>,
        as_of: u64,
    },
    /// Operations on a stream that does not exist.
    Unknown { which: u8 },
    /// Creating a stream that already exists.
    CreateDuplicate { stream: usize },
    /// Take a snapshot and compare it with the model.
    Snapshot { stream: usize },
    /// Take a snapshot and keep it; it must read the same after every later operation.
    Hold { stream: usize },
    /// Drop the store and open it again.
    Reopen,
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    // A tiny alphabet (with the zero byte, which codecs escape) so (key, val, time) collisions are common.
    prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b']), 0..3)
}

fn update() -> impl Strategy<Value = GenUpdate> {
    (bytes(), bytes(), 0u64..6, -2i64..=2)
}

fn updates(max: usize) -> impl Strategy<Value = Vec<GenUpdate>> {
    prop::collection::vec(update(), 0..max)
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0usize..3;
    prop_oneof![
        10 => (s.clone(), updates(8)).prop_map(|(stream, updates)| Op::Write { stream, updates }),
        2 => (s.clone(), updates(4), any::<prop::sample::Index>(), 0u64..4, prop_oneof![-2i64..=-1, 1i64..=2])
            .prop_map(|(stream, updates, at, below, diff)| {
                let bad_at = at.index(updates.len() + 1);
                Op::WriteBelow { stream, updates, bad_at, below, diff }
            }),
        1 => (s.clone(), -1i64..=1).prop_map(|(stream, diff)| Op::WriteClosed { stream, diff }),
        5 => (s.clone(), 1u64..5).prop_map(|(stream, by)| Op::Seal { stream, by }),
        1 => (s.clone(), 0u64..3).prop_map(|(stream, back)| Op::SealStale { stream, back }),
        1 => s.clone().prop_map(|stream| Op::Compact { stream }),
        1 => (s.clone(), 0u64..5).prop_map(|(stream, by)| Op::AllowCompaction { stream, by }),
        1 => s.clone().prop_map(|stream| Op::AllowCompactionBack { stream }),
        2 => (s.clone(), bytes(), prop::collection::vec(bytes(), 0..3), 0u64..10)
            .prop_map(|(stream, key, others, as_of)| Op::Lookup { stream, key, others, as_of }),
        1 => (0u8..5).prop_map(|which| Op::Unknown { which }),
        1 => s.clone().prop_map(|stream| Op::CreateDuplicate { stream }),
        3 => s.clone().prop_map(|stream| Op::Snapshot { stream }),
        1 => s.clone().prop_map(|stream| Op::Hold { stream }),
        2 => Just(Op::Reopen),
    ]
}

/// Longest operation sequence: 40, or `MODEL_MAX_OPS`.
fn ops() -> impl Strategy<Value = Vec<Op>> {
    let max = std::env::var("MODEL_MAX_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40usize);
    prop::collection::vec(op(), 1..max.max(2))
}

/// Options with small WAL segments (rolled over and released often) and small batch blocks (so batches
/// span several blocks); merges inline in `seal` (deterministic).
fn small_options(wal_segment_bytes: u64, block_target_bytes: u32) -> Options {
    Options {
        wal_segment_bytes,
        block_target_bytes,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// Random store options: WAL segment and block sizes, merge threads, compression, key filters,
/// back-pressure bound, memtable budget (spills).
fn options() -> impl Strategy<Value = Options> {
    (
        prop_oneof![Just(1u64), 64u64..512, Just(64u64 << 20)],
        prop_oneof![Just(1u32), 16u32..256, Just(64u32 << 10)],
        0usize..=2,
        prop_oneof![Just(None), Just(Some(0u32)), Just(Some(2u32))],
        prop::sample::select(vec![0u32, 1, 10]),
        any::<bool>(),
        prop_oneof![Just(64usize << 20), Just(1usize), 16usize..400],
    )
        .prop_map(
            |(seg, block, threads, compress, filter, small_bound, budget)| Options {
                wal_segment_bytes: seg,
                block_target_bytes: block,
                compaction_threads: threads,
                compress_from_level: compress,
                filter_bits_per_key: filter,
                // A small bound exercises back-pressure (see `tests/compaction/back_pressure.rs`,
                // `back_pressure_with_no_merge_due_does_not_block_seal_forever`).
                max_batches_per_stream: if small_bound { 2 } else { 64 },
                // Small budgets make writes spill the memtable to runs on disk.
                memtable_budget_bytes: budget,
                ..Options::default()
            },
        )
}

fn config(cases: u32) -> Config {
    // `Config::default()` reads PROPTEST_CASES; keep a modest default otherwise.
    let cases = if std::env::var_os("PROPTEST_CASES").is_some() {
        Config::default().cases
    } else {
        cases
    };
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// (a) A directory store with durable streams and default options (`Store::open`): everything written
    /// survives a reopen, sealed or not (unsealed updates come back from the WAL).
    #[test]
    fn dir_store_durable_streams_match_the_model(n in 1usize..=3, ops in ops()) {
        run(Backend::Dir(None), &[true; 3][..n], &ops);
    }

    /// (b) An in-memory store with non-durable streams, reopened over the same `MemBlob` with a new
    /// `MemLog`: only sealed updates (time below the upper) survive a reopen.
    #[test]
    fn mem_store_non_durable_streams_match_the_model(n in 1usize..=3, ops in ops()) {
        run(Backend::Mem(Options::default()), &[false; 3][..n], &ops);
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// A directory store mixing durable and non-durable streams, with random options: WAL segments small
    /// enough to roll over (and be released) often, small blocks, inline or background merges, compression,
    /// key filters. Non-durable streams lose unsealed updates on reopen, durable ones keep them, and
    /// releasing WAL segments never loses a record a durable stream still needs.
    #[test]
    fn dir_store_mixed_durability_random_options_match_the_model(
        durable in prop::collection::vec(any::<bool>(), 1..=3),
        options in options(),
        ops in ops(),
    ) {
        run(Backend::Dir(Some(options)), &durable, &ops);
    }

    /// An in-memory store with random options whose streams may claim durability: a `MemLog` keeps
    /// nothing, so unsealed updates are lost on reopen all the same.
    #[test]
        fn mem_store_random_options_match_the_model(
        durable in prop::collection::vec(any::<bool>(), 1..=3),
        options in options(),
        ops in ops(),
    ) {
        // No spills for durable streams here: on a `MemLog` their spilled runs survive a reopen while the
        // rest of their unsealed updates do not (see `tests/model/futurelog.rs`,
        // `spilled_runs_on_a_non_durable_buffer_...`).
        let mut options = options;
        if durable.iter().any(|&d| d) {
            options.memtable_budget_bytes = Options::default().memtable_budget_bytes;
        }
        run(Backend::Mem(options), &durable, &ops);
    }
}

/// A fixed sequence touching every kind of operation, so a plain `cargo test` always covers them even
/// when the random cases happen not to.
#[test]
fn fixed_sequence_covers_every_operation() {
    let u = |k: &[u8], v: &[u8], off: u64, d: i64| (k.to_vec(), v.to_vec(), off, d);
    let mut ops = vec![
        Op::Write {
            stream: 0,
            updates: vec![u(b"a", b"", 0, 1), u(b"a", b"", 0, 1), u(b"", b"\0", 3, -2)],
        },
        Op::Write {
            stream: 1,
            updates: vec![u(b"b", b"b", 1, 2), u(b"b", b"b", 1, -2), u(b"a", b"a", 0, 0)],
        },
        Op::Hold { stream: 0 },
        Op::Seal { stream: 0, by: 2 },
        Op::WriteBelow {
            stream: 0,
            updates: vec![u(b"x", b"y", 0, 1)],
            bad_at: 1,
            below: 0,
            diff: 1,
        },
        Op::WriteBelow {
            stream: 1,
            updates: vec![],
            bad_at: 0,
            below: 0,
            diff: -1,
        },
        Op::WriteClosed { stream: 0, diff: 0 },
        Op::SealStale { stream: 0, back: 0 },
        Op::SealStale { stream: 1, back: 0 },
        Op::AllowCompactionBack { stream: 0 },
        Op::Unknown { which: 0 },
        Op::Unknown { which: 1 },
        Op::Unknown { which: 2 },
        Op::Unknown { which: 3 },
        Op::Unknown { which: 4 },
        Op::CreateDuplicate { stream: 1 },
        Op::Snapshot { stream: 0 },
        Op::Lookup {
            stream: 0,
            key: b"a".to_vec(),
            others: vec![b"".to_vec(), b"zz".to_vec()],
            as_of: 1,
        },
        Op::Reopen,
        Op::Write {
            stream: 0,
            updates: vec![u(b"a", b"", 0, -1), u(b"", b"\0", 1, 2)],
        },
        Op::Seal { stream: 0, by: 3 },
        Op::Seal { stream: 1, by: 4 },
        Op::Hold { stream: 1 },
        Op::Reopen,
        Op::Snapshot { stream: 1 },
    ];
    // Many small seals of stream 0, so merges happen, then logical compaction and more merges.
    for n in 0..12u8 {
        let key = vec![b'a' + n % 3];
        ops.push(Op::Write {
            stream: 0,
            updates: vec![u(&key, b"v", 0, 1), u(&key, b"w", 1, -1)],
        });
        ops.push(Op::Seal {
            stream: 0,
            by: 1 + u64::from(n % 2),
        });
        if n == 5 {
            ops.push(Op::Hold { stream: 0 });
            ops.push(Op::AllowCompaction { stream: 0, by: 9 });
        }
    }
    ops.extend([
        Op::Compact { stream: 0 },
        Op::Lookup {
            stream: 0,
            key: b"b".to_vec(),
            others: vec![b"a".to_vec()],
            as_of: 0,
        },
        Op::AllowCompaction { stream: 0, by: 100 },
        Op::Write {
            stream: 0,
            updates: vec![u(b"c", b"v", 0, 1)],
        },
        Op::Seal { stream: 0, by: 1 },
        Op::Compact { stream: 0 },
        Op::Lookup {
            stream: 0,
            key: b"c".to_vec(),
            others: vec![],
            as_of: 0,
        },
        Op::Reopen,
    ]);
    let inline = |seg, block| small_options(seg, block);
    let compressed = Options {
        compress_from_level: Some(0),
        filter_bits_per_key: 1,
        max_batches_per_stream: 2,
        ..small_options(1, 1)
    };
    let spilling = Options {
        memtable_budget_bytes: 1,
        ..compressed.clone()
    };
    for (backend, durable) in [
        (Backend::Dir(None), vec![true, true]),
        (Backend::Dir(Some(inline(1, 1))), vec![true, false]),
        (Backend::Dir(Some(compressed.clone())), vec![true, true]),
        (Backend::Mem(Options::default()), vec![false, false]),
        (Backend::Mem(inline(1, 1)), vec![true, false]),
        (Backend::Mem(compressed.clone()), vec![false, true]),
        // Every write spills the memtable to runs.
        (Backend::Dir(Some(spilling.clone())), vec![true, false]),
        (Backend::Mem(spilling), vec![false, false]),
    ] {
        run(backend, &durable, &ops);
    }
}
