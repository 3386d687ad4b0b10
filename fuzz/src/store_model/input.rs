//! The input of the `store_model` target: a [`Setup`] and [`Op`]s, decoded with [`arbitrary::Unstructured`]
//! (every byte string decodes), and the inverse encoding for seed corpora and regression inputs.

use arbitrary::{Arbitrary, Unstructured};
use ddpersist::wal::WalRecovery;
use ddpersist::Options;

/// Longest operation sequence decoded from one input.
pub const MAX_OPS: usize = 64;

/// Where a fault is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSite {
    /// `FaultyBlob`: `get`, `create`, `delete`, `list`, a writer's `write` and `commit`.
    Blob,
    /// `FaultyLog`: `replay`, `append`, `sync`, `release_before`.
    Wal,
    /// `FileLog`'s segment steps: create, write header, fsync file or directory, remove, flush.
    Segment,
    /// Blob commits and WAL syncs that take effect, then fail (`late.rs`).
    Late,
}

/// "Fail every call at `site` after `after` more calls".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Where.
    pub site: FaultSite,
    /// Calls that still succeed.
    pub after: u8,
}

/// One generated update: key, val, time offset from the stream's upper (`0..6`), diff (`-2..=2`).
pub type GenUpdate = (Vec<u8>, Vec<u8>, u8, i8);

/// One operation. Slots index [`SLOTS`] (`0..3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `create_stream`: refused (`BadInput`) if the stream exists.
    Create { slot: u8, durable: bool },
    /// A valid write, every time at or above the upper: `write_bytes` if `synced`, else
    /// `write_bytes_unsynced` (its ticket kept for `Sync`).
    Write {
        slot: u8,
        updates: Vec<GenUpdate>,
        synced: bool,
    },
    /// `sync` of a kept ticket (`ticket` modulo how many are kept; from an earlier store: refused).
    Sync { ticket: u8 },
    /// A write refused as a whole: `updates` plus one update at a time below the upper (or at
    /// `FRONTIER_CLOSED` when the upper is 0), inserted at `bad_at`.
    WriteBelow {
        slot: u8,
        updates: Vec<GenUpdate>,
        bad_at: u8,
        below: u8,
        diff: i8,
    },
    /// A write at `FRONTIER_CLOSED`: refused even with a zero diff.
    WriteClosed { slot: u8, diff: i8 },
    /// Seal to `upper + by` (`by` in `1..=8`).
    Seal { slot: u8, by: u8 },
    /// `seal_logged` to `upper + by` (`by` in `1..=8`): the seal record, then (no flush thread here) the
    /// batch inline; if a fault failed the batch, the seal stays logged and a crash-and-reopen follows at
    /// once, whose open must complete it.
    SealLogged { slot: u8, by: u8 },
    /// `seal_with` to `upper + by` (`by` in `0..4`; 0: an edit of the since only) advancing the since to
    /// `since + since_by` (`0..7`) in the same commit: refused if that since is above the new upper, or
    /// if nothing changes.
    SealWith { slot: u8, by: u8, since_by: u8 },
    /// Seal to `upper - back` (saturating): refused.
    SealStale { slot: u8, back: u8 },
    /// `allow_compaction` to `since + by` (`by == 0`: no change).
    AllowCompaction { slot: u8, by: u8 },
    /// `allow_compaction` backwards (to `FRONTIER_CLOSED` when the since is 0): refused.
    AllowCompactionBack { slot: u8 },
    /// `compact`: every merge due now; with `major`, `major_compact`: then every batch merged into one.
    Compact { slot: u8, major: bool },
    /// `get_bytes`, `get_many_bytes` as of `since + as_of`, and `first_time_bytes`.
    Lookup {
        slot: u8,
        key: Vec<u8>,
        others: Vec<Vec<u8>>,
        as_of: u8,
    },
    /// A full check of the stream against the model (and of held snapshots).
    Snapshot { slot: u8 },
    /// Take a snapshot and keep it: it must read the same after every later operation.
    Hold { slot: u8 },
    /// Arm a fault.
    Fault(Fault),
    /// Stop failing (a poisoned store stays poisoned).
    Heal,
    /// Crash (drop the store) and open again, with `fault` armed during the open (and after it, if the
    /// open succeeds); if that open fails, heal and open again.
    Reopen { fault: Option<Fault> },
}

/// How the store is set up: options, initial streams, WAL kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// A durable WAL (`FileLog` in a scratch directory) or a `MemLog` (keeps nothing).
    pub durable_wal: bool,
    /// Streams created at the start: `Some(durable)` per slot.
    pub streams: [Option<bool>; 3],
    /// The option bytes, see [`Setup::options`].
    pub option_bytes: [u8; 5],
}

/// A tiny alphabet (with the zero byte, which codecs escape), so `(key, val, time)` collide often.
const ALPHABET: [u8; 3] = [0, b'a', b'b'];

fn byte(u: &mut Unstructured<'_>) -> u8 {
    // `u8::arbitrary` yields 0 once the input is used up.
    u8::arbitrary(u).unwrap_or(0)
}

fn small_bytes(u: &mut Unstructured<'_>) -> Vec<u8> {
    let len = byte(u) % 3;
    (0..len).map(|_| ALPHABET[(byte(u) % 3) as usize]).collect()
}

fn diff(u: &mut Unstructured<'_>) -> i8 {
    (byte(u) % 5) as i8 - 2
}

fn gen_updates(u: &mut Unstructured<'_>, max: u8) -> Vec<GenUpdate> {
    let n = byte(u) % (max + 1);
    (0..n)
        .map(|_| (small_bytes(u), small_bytes(u), byte(u) % 6, diff(u)))
        .collect()
}

fn fault(u: &mut Unstructured<'_>) -> Fault {
    let site = [
        FaultSite::Blob,
        FaultSite::Wal,
        FaultSite::Segment,
        FaultSite::Late,
    ][(byte(u) % 4) as usize];
    Fault {
        site,
        after: byte(u) % 48,
    }
}

impl Setup {
    fn decode(u: &mut Unstructured<'_>) -> Setup {
        let b = byte(u);
        let streams = [0, 1, 2].map(|i| (b >> (1 + 2 * i) & 1 == 1).then_some(b >> (2 + 2 * i) & 1 == 1));
        Setup {
            durable_wal: b & 1 == 0,
            streams,
            option_bytes: [byte(u), byte(u), byte(u), byte(u), byte(u)],
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut b = u8::from(!self.durable_wal);
        for (i, s) in self.streams.iter().enumerate() {
            if let Some(durable) = s {
                b |= 1 << (1 + 2 * i);
                b |= u8::from(*durable) << (2 + 2 * i);
            }
        }
        out.push(b);
        out.extend_from_slice(&self.option_bytes);
    }

    /// The store options the option bytes select: WAL segment size (1 byte: a new segment per sync, a few
    /// hundred bytes, or 64 MiB), block size, compression, key filter, back-pressure bound, merge fan-in,
    /// memtable budget (tiny budgets spill on every write) and WAL bound (`max_wal_bytes`, small ones
    /// spill the oldest stream). Merges always run inline (`compaction_threads: 0`): deterministic.
    pub fn options(&self) -> Options {
        let [seg, block, misc, budget, wal] = self.option_bytes;
        Options {
            wal_segment_bytes: match seg % 4 {
                0 => 1,
                1 => 64 + 8 * u64::from(seg / 4),
                _ => 64 << 20,
            },
            block_target_bytes: match block % 3 {
                0 => 1,
                1 => 16 + u32::from(block / 3),
                _ => 64 << 10,
            },
            compress_from_level: [None, Some(0), Some(2)][(misc % 3) as usize],
            filter_bits_per_key: [0, 1, 10][(misc / 3 % 3) as usize],
            max_batches_per_stream: [2, 64][(misc / 9 % 2) as usize],
            merge_fan_in: [2, 4, 8][(misc / 18 % 3) as usize],
            memtable_budget_bytes: match budget % 4 {
                0 => 1,
                1 => 16 + 6 * usize::from(budget / 4),
                _ => 64 << 20,
            },
            max_wal_bytes: match wal % 4 {
                0 => None,
                1 => Some(64 + 16 * u64::from(wal / 4)),
                _ => Some(1 << 30),
            },
            compaction_threads: 0,
            wal_zero_fill: false,
            wal_recovery: WalRecovery::Strict,
            ..Options::default()
        }
    }
}

fn encode_small_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.push(b.len().min(2) as u8);
    for c in b.iter().take(2) {
        out.push(ALPHABET.iter().position(|a| a == c).unwrap_or(0) as u8);
    }
}

fn encode_diff(d: i8) -> u8 {
    (d.clamp(-2, 2) + 2) as u8
}

fn encode_updates(updates: &[GenUpdate], max: usize, out: &mut Vec<u8>) {
    let n = updates.len().min(max);
    out.push(n as u8);
    for (k, v, off, d) in &updates[..n] {
        encode_small_bytes(k, out);
        encode_small_bytes(v, out);
        out.push(*off);
        out.push(encode_diff(*d));
    }
}

fn encode_fault(f: &Fault, out: &mut Vec<u8>) {
    out.push(f.site as u8);
    out.push(f.after);
}

// Operation tags: a byte modulo `TAGS`, several tags per common operation.
const TAGS: u8 = 26;

impl Op {
    fn decode(u: &mut Unstructured<'_>) -> Op {
        let tag = byte(u) % TAGS;
        let slot = |u: &mut Unstructured<'_>| byte(u) % 3;
        match tag {
            0..=5 => Op::Write {
                slot: slot(u),
                updates: gen_updates(u, 8),
                synced: tag <= 3,
            },
            6 => Op::Sync { ticket: byte(u) },
            7 => Op::WriteBelow {
                slot: slot(u),
                updates: gen_updates(u, 4),
                bad_at: byte(u),
                below: byte(u) % 4,
                diff: [-2, -1, 1, 2][(byte(u) % 4) as usize],
            },
            8 => Op::WriteClosed {
                slot: slot(u),
                diff: (byte(u) % 3) as i8 - 1,
            },
            9..=10 => Op::Seal {
                slot: slot(u),
                by: 1 + byte(u) % 8,
            },
            11 => Op::SealLogged {
                slot: slot(u),
                by: 1 + byte(u) % 8,
            },
            12 => Op::SealStale {
                slot: slot(u),
                back: byte(u) % 3,
            },
            13 => Op::AllowCompaction {
                slot: slot(u),
                by: byte(u) % 6,
            },
            14 => Op::AllowCompactionBack { slot: slot(u) },
            15 => {
                let b = byte(u);
                Op::Compact {
                    slot: b % 3,
                    major: b / 3 % 2 == 1,
                }
            }
            16..=17 => {
                let slot = slot(u);
                let key = small_bytes(u);
                let others = (0..byte(u) % 3).map(|_| small_bytes(u)).collect();
                Op::Lookup {
                    slot,
                    key,
                    others,
                    as_of: byte(u) % 10,
                }
            }
            18 => Op::Snapshot { slot: slot(u) },
            19 => Op::Hold { slot: slot(u) },
            20 => Op::Create {
                slot: slot(u),
                durable: byte(u) & 1 == 1,
            },
            21..=22 => Op::Fault(fault(u)),
            23 => Op::Heal,
            25 => Op::SealWith {
                slot: slot(u),
                by: byte(u) % 4,
                since_by: byte(u) % 7,
            },
            _ => {
                let armed = byte(u) & 1 == 1;
                Op::Reopen {
                    fault: armed.then(|| fault(u)),
                }
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::Write {
                slot,
                updates,
                synced,
            } => {
                out.extend([if *synced { 0 } else { 4 }, *slot]);
                encode_updates(updates, 8, out);
            }
            Op::Sync { ticket } => out.extend([6, *ticket]),
            Op::WriteBelow {
                slot,
                updates,
                bad_at,
                below,
                diff,
            } => {
                out.extend([7, *slot]);
                encode_updates(updates, 4, out);
                let d = [-2, -1, 1, 2].iter().position(|x| x == diff).unwrap_or(3) as u8;
                out.extend([*bad_at, *below, d]);
            }
            Op::WriteClosed { slot, diff } => out.extend([8, *slot, (diff.clamp(&-1, &1) + 1) as u8]),
            Op::Seal { slot, by } => out.extend([9, *slot, by.max(&1) - 1]),
            Op::SealLogged { slot, by } => out.extend([11, *slot, by.max(&1) - 1]),
            Op::SealStale { slot, back } => out.extend([12, *slot, *back]),
            Op::AllowCompaction { slot, by } => out.extend([13, *slot, *by]),
            Op::AllowCompactionBack { slot } => out.extend([14, *slot]),
            Op::Compact { slot, major } => out.extend([15, *slot % 3 + 3 * u8::from(*major)]),
            Op::Lookup {
                slot,
                key,
                others,
                as_of,
            } => {
                out.extend([16, *slot]);
                encode_small_bytes(key, out);
                out.push(others.len().min(2) as u8);
                for k in others.iter().take(2) {
                    encode_small_bytes(k, out);
                }
                out.push(*as_of);
            }
            Op::Snapshot { slot } => out.extend([18, *slot]),
            Op::Hold { slot } => out.extend([19, *slot]),
            Op::Create { slot, durable } => out.extend([20, *slot, u8::from(*durable)]),
            Op::Fault(f) => {
                out.push(21);
                encode_fault(f, out);
            }
            Op::Heal => out.push(23),
            Op::SealWith { slot, by, since_by } => out.extend([25, *slot, *by, *since_by]),
            Op::Reopen { fault } => {
                out.extend([24, u8::from(fault.is_some())]);
                if let Some(f) = fault {
                    encode_fault(f, out);
                }
            }
        }
    }
}

/// Decodes an input: the setup, then operations until the input is used up (at most [`MAX_OPS`]).
pub fn decode(data: &[u8]) -> (Setup, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let setup = Setup::decode(&mut u);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        ops.push(Op::decode(&mut u));
    }
    (setup, ops)
}

/// The input that [`decode`]s to `setup` and `ops` (fields out of their ranges are clamped): for seed
/// corpora and regression inputs.
pub fn encode(setup: &Setup, ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.encode(&mut out);
    for op in ops.iter().take(MAX_OPS) {
        op.encode(&mut out);
    }
    out
}
