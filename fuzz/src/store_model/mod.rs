//! The `store_model` target: the whole store (operations × injected I/O failures × crash and reopen),
//! checked against a simple model, in the style of redb's whole-database fuzzer.
//!
//! The input decodes (with [`arbitrary::Unstructured`]; every byte string is a valid input) into a
//! [`Setup`] — store options, which of three streams exist at the start and whether they are durable,
//! whether the WAL is a durable `FileLog` or a `MemLog` — and up to [`MAX_OPS`] [`Op`]s: writes
//! (synced and unsynced, valid and refused), `sync` of a ticket, seals (valid and stale, logged — a
//! failed batch of a logged seal is followed by a crash-and-reopen whose open must complete it — and `seal_with`
//! advancing the since),
//! `allow_compaction` (forward and back), `compact`, point lookups, snapshots (checked now, or held and
//! checked later), stream creation, arming a fault ("fail every call after `k` more") at one of three
//! sites — the blob (`FaultyBlob` over a `MemBlob`), the WAL (`FaultyLog`), or the WAL's segment-file
//! steps (`FileLog::with_segment_fault_hook`) — healing, and crash-and-reopen (drop the store, open a new
//! one over the same blob and WAL directory, optionally with a fault armed during the open).
//!
//! The model holds, per stream, every update whose write returned `Ok`, the upper and the since, plus what
//! is uncertain since the last reopen. What the checks demand:
//! - every call returns `Ok` or a documented error: `BadInput` exactly for the refused operations,
//!   `UnknownStream` exactly for streams that do not exist, `Io` and `Poisoned` only once an injected fault
//!   has fired (since the last reopen). Anything else (`Corrupt` above all, or a panic) is a finding;
//! - a refused call (`BadInput`, `UnknownStream`, `Poisoned`) changes nothing; so does a call that failed
//!   with `Io` and left the store working (not poisoned): the stream then still equals the model;
//! - a call that failed with `Io` and poisoned the store may or may not have taken effect, as a whole:
//!   a write is either all there after the reopen or not at all, a seal either moved the upper and holds
//!   every update below it or did nothing, `allow_compaction` moved the since or not, `create_stream`
//!   created the stream or not;
//! - while the store works, snapshots, `upper`, `since`, each batch's contents, lookups and first times
//!   equal the model (with times advanced to the since once it moved, as in `tests/model.rs`), and a held
//!   snapshot reads the same forever;
//! - after a crash and reopen: sealed updates are all there; unsealed updates of durable streams (over a
//!   durable WAL) are there if their write was acknowledged — `write_bytes` returned `Ok`, or a later
//!   `sync`, synced write or seal returned `Ok` — and of the writes not acknowledged, the ones that survive
//!   are a prefix of them in WAL order (the WAL is written in order: losing one write loses every later
//!   one); unsealed updates of other streams are gone; nothing never written appears. Opening under an
//!   armed fault may fail only with `Io` (or `Poisoned`); opening healed must succeed, with a torn WAL tail,
//!   if any, reported as never acknowledged.
//!
//! [`run_store_model`] returns [`Stats`] (for the smoke test's figures); [`check_store_model`] is the fuzz
//! target's entry point.

use ddpersist::batch::UpdateCursor;
use ddpersist::blob::{FaultyBlob, MemBlob};
use ddpersist::wal::{CutKind, FaultyLog, FileLog, Log, MemLog, SegmentFaultHook, WalRecovery};
use ddpersist::{Error, Options, OwnedUpdate, Snapshot, Store, StreamOptions, FRONTIER_CLOSED};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Stream ids, one per slot.
pub const SLOTS: [&str; 3] = ["alpha", "beta", "gamma"];
/// Held snapshots kept at once.
const MAX_HELD: usize = 4;
/// Write tickets kept for `Op::Sync`.
const MAX_TICKETS: usize = 8;

mod checks;
pub mod input;
pub mod late;
mod ops;
mod reopen;

pub use input::{decode, encode, Fault, FaultSite, GenUpdate, Op, Setup, MAX_OPS};
use late::{LateBlob, LateLog};

/// Figures of one run (or, summed, of many).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Inputs run.
    pub executions: u64,
    /// Operations applied.
    pub operations: u64,
    /// Faults armed (by `Fault` or `Reopen` operations).
    pub faults_armed: u64,
    /// Armed faults that fired (a call failed) before the next heal or reopen.
    pub faults_fired: u64,
    /// Calls that returned an I/O error.
    pub io_errors: u64,
    /// Times the store was found poisoned after a failed call.
    pub poisonings: u64,
    /// Crash-and-reopen cycles (including the final ones).
    pub reopens: u64,
    /// Opens that failed under an armed fault (then healed and retried).
    pub failed_opens: u64,
    /// Failed calls of uncertain effect (a seal, `allow_compaction`, `create_stream`) found applied /
    /// not applied after the reopen.
    pub uncertain_applied: u64,
    /// See `uncertain_applied`.
    pub uncertain_not_applied: u64,
    /// Unacknowledged durable writes found after a reopen / lost.
    pub unacked_survived: u64,
    /// See `unacked_survived`.
    pub unacked_lost: u64,
    /// Seals that returned `Ok`.
    pub seals: u64,
    /// Writes that returned `Ok`.
    pub writes: u64,
    /// Snapshot checks that saw spilled runs.
    pub spilled_checks: u64,
}

impl std::ops::AddAssign for Stats {
    fn add_assign(&mut self, o: Stats) {
        self.executions += o.executions;
        self.operations += o.operations;
        self.faults_armed += o.faults_armed;
        self.faults_fired += o.faults_fired;
        self.io_errors += o.io_errors;
        self.poisonings += o.poisonings;
        self.reopens += o.reopens;
        self.failed_opens += o.failed_opens;
        self.uncertain_applied += o.uncertain_applied;
        self.uncertain_not_applied += o.uncertain_not_applied;
        self.unacked_survived += o.unacked_survived;
        self.unacked_lost += o.unacked_lost;
        self.seals += o.seals;
        self.writes += o.writes;
        self.spilled_checks += o.spilled_checks;
    }
}

/// Sums diffs of equal `(key, val, time)`, drops zeros, sorts.
fn consolidate<'a>(updates: impl IntoIterator<Item = &'a OwnedUpdate>) -> Vec<OwnedUpdate> {
    let mut sums: BTreeMap<(&[u8], &[u8], u64), i64> = BTreeMap::new();
    for (k, v, t, d) in updates {
        *sums.entry((k, v, *t)).or_default() += d;
    }
    sums.into_iter()
        .filter(|&(_, d)| d != 0)
        .map(|((k, v, t), d)| (k.to_vec(), v.to_vec(), t, d))
        .collect()
}

/// Times below `since` advanced to it, then consolidated.
fn advance<'a>(updates: impl IntoIterator<Item = &'a OwnedUpdate>, since: u64) -> Vec<OwnedUpdate> {
    let advanced: Vec<OwnedUpdate> = updates
        .into_iter()
        .map(|(k, v, t, d)| (k.clone(), v.clone(), (*t).max(since), *d))
        .collect();
    consolidate(&advanced)
}

/// What a stream should hold.
#[derive(Clone, Debug)]
struct StreamModel {
    durable: bool,
    upper: u64,
    since: u64,
    /// Every write that returned `Ok` (or may have taken effect), with its sequence number, in order.
    writes: Vec<(u64, Vec<OwnedUpdate>)>,
}

impl StreamModel {
    fn new(durable: bool) -> Self {
        StreamModel {
            durable,
            upper: 0,
            since: 0,
            writes: Vec::new(),
        }
    }

    fn updates(&self) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.writes.iter().flat_map(|(_, w)| w.iter())
    }

    fn between(&self, lower: u64, upper: u64) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.updates().filter(move |u| lower <= u.2 && u.2 < upper)
    }
}

#[derive(Clone, Debug)]
enum Slot {
    Absent,
    Exists(StreamModel),
    /// A `create_stream` that failed and poisoned the store: there after the reopen, or not.
    MaybeCreated {
        durable: bool,
    },
}

/// A failed call that poisoned the store and may or may not have taken effect.
#[derive(Clone, Debug)]
enum Uncertain {
    Seal { slot: usize, seq: u64, upper: u64 },
    Since { slot: usize, since: u64 },
}

/// A crash-and-reopen harness over a `MemBlob` and a WAL directory, with the model beside it.
struct Harness {
    setup: Setup,
    options: Options,
    _dir: tempfile::TempDir,
    wal_dir: PathBuf,
    blob: MemBlob,
    faulty_blob: FaultyBlob<LateBlob<MemBlob>>,
    faulty_wal: FaultyLog,
    /// The segment hook's budget: calls that still succeed.
    segment_budget: Arc<AtomicI64>,
    /// The late faults' budget (`late.rs`).
    late_budget: Arc<AtomicI64>,
    store: Option<Store>,
    /// Reopens so far: tickets of earlier epochs belong to another `Store`.
    epoch: u64,
    slots: [Slot; 3],
    /// Sequence numbers of writes to durable streams that returned (or may have taken effect) but were
    /// not acknowledged as durable.
    unacked: BTreeSet<u64>,
    uncertain: Vec<Uncertain>,
    next_seq: u64,
    /// The store is poisoned (every call fails with `Poisoned`).
    poisoned: bool,
    /// A fault fired since the last reopen (`Io` and `Poisoned` errors are allowed).
    faulted: bool,
    /// A fault is armed and has not yet been counted as fired.
    armed: bool,
    held: Vec<(Snapshot, Vec<OwnedUpdate>)>,
    /// `(ticket, epoch, seq of its write)`.
    tickets: Vec<(ddpersist::store::WriteTicket, u64, u64)>,
    stats: Stats,
}

/// What a call returned, once its error kind was checked.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    BadInput,
    Unknown,
    Poisoned,
    Io,
}

impl Harness {
    fn new(setup: Setup) -> Harness {
        let dir = crate::scratch_dir();
        let wal_dir = dir.path().join("wal");
        let blob = MemBlob::new();
        let mut h = Harness {
            options: setup.options(),
            faulty_blob: FaultyBlob::new(LateBlob {
                inner: blob.clone(),
                budget: Arc::new(AtomicI64::new(i64::MAX)),
            }),
            faulty_wal: FaultyLog::new(Arc::new(MemLog::new())),
            setup,
            _dir: dir,
            wal_dir,
            blob,
            segment_budget: Arc::new(AtomicI64::new(i64::MAX)),
            late_budget: Arc::new(AtomicI64::new(i64::MAX)),
            store: None,
            epoch: 0,
            slots: [Slot::Absent, Slot::Absent, Slot::Absent],
            unacked: BTreeSet::new(),
            uncertain: Vec::new(),
            next_seq: 0,
            poisoned: false,
            faulted: false,
            armed: false,
            held: Vec::new(),
            tickets: Vec::new(),
            stats: Stats::default(),
        };
        let store = h.try_open(None).expect("creating the store");
        assert!(store.recovery_report().created);
        for (slot, durable) in h.setup.streams.into_iter().enumerate() {
            if let Some(durable) = durable {
                store
                    .create_stream(SLOTS[slot], StreamOptions { durable })
                    .expect("creating a stream");
                h.slots[slot] = Slot::Exists(StreamModel::new(durable));
            }
        }
        h.store = Some(store);
        h
    }

    /// Opens a store over the blob and the WAL directory, with fresh fault wrappers; `fault` is armed on
    /// them before the open.
    fn try_open(&mut self, fault: Option<Fault>) -> ddpersist::Result<Store> {
        self.segment_budget = Arc::new(AtomicI64::new(i64::MAX));
        self.late_budget = Arc::new(AtomicI64::new(i64::MAX));
        self.faulty_blob = FaultyBlob::new(LateBlob {
            inner: self.blob.clone(),
            budget: self.late_budget.clone(),
        });
        let inner: Arc<dyn Log> = if self.setup.durable_wal {
            let budget = self.segment_budget.clone();
            let hook: SegmentFaultHook = Arc::new(move |_step, _path| {
                if budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
                    return Err(std::io::Error::other("injected segment fault"));
                }
                Ok(())
            });
            let file = FileLog::open(&self.wal_dir, self.options.wal_segment_bytes, WalRecovery::Strict)
                .expect("opening the WAL directory")
                .with_segment_fault_hook(hook);
            Arc::new(file)
        } else {
            Arc::new(MemLog::new())
        };
        self.faulty_wal = FaultyLog::new(Arc::new(LateLog {
            inner,
            budget: self.late_budget.clone(),
        }));
        if let Some(f) = fault {
            self.arm(f);
        }
        Store::open_on(
            Arc::new(self.faulty_blob.clone()),
            Arc::new(self.faulty_wal.clone()),
            self.options.clone(),
        )
    }

    fn arm(&mut self, f: Fault) {
        match f.site {
            FaultSite::Blob => self.faulty_blob.fail_after(u64::from(f.after)),
            FaultSite::Wal => self.faulty_wal.fail_after(u64::from(f.after)),
            FaultSite::Segment => self.segment_budget.store(i64::from(f.after), Ordering::SeqCst),
            FaultSite::Late => self.late_budget.store(i64::from(f.after), Ordering::SeqCst),
        }
        self.stats.faults_armed += 1;
        self.armed = true;
    }

    fn fired(&self) -> bool {
        self.faulty_blob.has_failed()
            || self.faulty_wal.has_failed()
            || self.segment_budget.load(Ordering::SeqCst) < 0
            || self.late_budget.load(Ordering::SeqCst) < 0
    }

    /// Notes whether an armed fault fired.
    fn note_fired(&mut self) {
        if self.fired() {
            self.faulted = true;
            if self.armed {
                self.armed = false;
                self.stats.faults_fired += 1;
            }
        }
    }

    fn heal(&mut self) {
        self.note_fired();
        self.faulty_blob.heal();
        self.faulty_wal.fail_after(u64::MAX);
        self.segment_budget.store(i64::MAX, Ordering::SeqCst);
        self.late_budget.store(i64::MAX, Ordering::SeqCst);
        self.armed = false;
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("store is open")
    }

    fn model(&self, slot: usize) -> Option<&StreamModel> {
        match &self.slots[slot] {
            Slot::Exists(m) => Some(m),
            _ => None,
        }
    }

    fn model_mut(&mut self, slot: usize) -> Option<&mut StreamModel> {
        match &mut self.slots[slot] {
            Slot::Exists(m) => Some(m),
            _ => None,
        }
    }

    fn probe_poisoned(&mut self) -> bool {
        let poisoned = matches!(self.store().upper(SLOTS[0]), Err(Error::Poisoned { .. }));
        if poisoned && !self.poisoned {
            self.stats.poisonings += 1;
        }
        self.poisoned = poisoned;
        poisoned
    }

    /// Checks the kind of a call's error against what the model allows, and whether the store is
    /// poisoned now. `refusable`: the call may be refused with `BadInput`; `unknown`: the stream does not
    /// exist.
    fn outcome<T: std::fmt::Debug>(
        &mut self,
        r: &ddpersist::Result<T>,
        what: &str,
        refusable: bool,
        unknown: bool,
    ) -> Outcome {
        self.note_fired();
        let outcome = match r {
            Ok(_) => {
                assert!(!self.poisoned, "{what}: a poisoned store returned Ok: {r:?}");
                assert!(!unknown, "{what}: Ok on a stream that does not exist: {r:?}");
                return Outcome::Ok;
            }
            Err(Error::BadInput { .. }) if refusable => Outcome::BadInput,
            Err(Error::UnknownStream { .. }) if unknown => Outcome::Unknown,
            Err(Error::Poisoned { .. }) if self.faulted => Outcome::Poisoned,
            Err(Error::Io { .. }) if self.faulted => {
                self.stats.io_errors += 1;
                Outcome::Io
            }
            Err(e) => panic!(
                "{what}: unexpected error (refusable {refusable}, unknown stream {unknown}, fault fired \
                 {}, poisoned {}): {e:?}",
                self.faulted, self.poisoned
            ),
        };
        if matches!(outcome, Outcome::Io | Outcome::Poisoned) {
            self.probe_poisoned();
        }
        outcome
    }
}

/// Runs `setup` and `ops`, then heals, crashes and reopens twice (the second reopen must find the same
/// state), checking everything against the model. Panics on a finding.
pub fn run_ops(setup: Setup, ops: &[Op]) -> Stats {
    let mut h = Harness::new(setup);
    for op in ops {
        h.apply(op);
    }
    h.heal();
    h.reopen(None);
    h.reopen(None);
    h.stats.executions = 1;
    h.stats
}

/// Decodes `data` and runs it: see the module docs.
pub fn run_store_model(data: &[u8]) -> Stats {
    let (setup, ops) = decode(data);
    run_ops(setup, &ops)
}

/// The `store_model` fuzz target.
pub fn check_store_model(data: &[u8]) {
    run_store_model(data);
}
