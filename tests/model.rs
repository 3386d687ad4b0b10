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

mod common;

use ddpersist::batch::{batch_file_name, UpdateCursor};
use ddpersist::blob::MemBlob;
use ddpersist::wal::MemLog;
use ddpersist::{Error, Options, OwnedUpdate, Snapshot, Store, StreamOptions, FRONTIER_CLOSED};
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

const STREAM_IDS: [&str; 3] = ["alpha", "beta", "gamma"];
const UNKNOWN: &str = "no-such-stream";

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

/// Sums diffs of equal `(key, val, time)`, drops zeros, sorts by `(key, val, time)`.
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

/// Times below `since` advanced to `since`, then consolidated.
fn advance<'a>(updates: impl IntoIterator<Item = &'a OwnedUpdate>, since: u64) -> Vec<OwnedUpdate> {
    let advanced: Vec<OwnedUpdate> = updates
        .into_iter()
        .map(|(k, v, t, d)| (k.clone(), v.clone(), (*t).max(since), *d))
        .collect();
    consolidate(&advanced)
}

/// What one stream should hold.
#[derive(Clone, Debug)]
struct StreamModel {
    id: &'static str,
    durable: bool,
    upper: u64,
    since: u64,
    /// Every update written and not lost to a reopen, zero diffs included.
    updates: Vec<OwnedUpdate>,
}

impl StreamModel {
    fn expected(&self) -> Vec<OwnedUpdate> {
        consolidate(&self.updates)
    }

    fn between(&self, lower: u64, upper: u64) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.updates.iter().filter(move |u| lower <= u.2 && u.2 < upper)
    }

    fn unsealed(&self) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.between(self.upper, u64::MAX)
    }

    /// Updates the memtable holds: unsealed, zero diffs dropped on write, not consolidated.
    fn unsealed_raw_count(&self) -> usize {
        self.unsealed().filter(|u| u.3 != 0).count()
    }
}

#[derive(Clone, Debug)]
enum Backend {
    /// A directory store; `None` opens with `Store::open` (default options), `Some` with `Store::open_with`.
    Dir(Option<Options>),
    /// `MemBlob` + a fresh `MemLog` on every open.
    Mem(Options),
}

impl Backend {
    fn options(&self) -> Options {
        match self {
            Backend::Dir(o) => o.clone().unwrap_or_default(),
            Backend::Mem(o) => o.clone(),
        }
    }
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
                // A small bound exercises back-pressure (see
                // `back_pressure_with_no_merge_due_does_not_block_seal_forever`).
                max_batches_per_stream: if small_bound { 2 } else { 64 },
                // Small budgets make writes spill the memtable to runs on disk.
                memtable_budget_bytes: budget,
                ..Options::default()
            },
        )
}

/// The store under test, and what is needed to reopen it.
struct Harness {
    backend: Backend,
    /// Whether merges run on background threads (then the batch list changes behind our back).
    background: bool,
    /// Whether the memtable budget is small enough for writes to spill.
    may_spill: bool,
    _dir: Option<tempfile::TempDir>,
    path: Option<PathBuf>,
    blob: MemBlob,
    store: Option<Store>,
    models: Vec<StreamModel>,
    /// Snapshots taken earlier, with what they read then.
    held: Vec<(Snapshot, Vec<OwnedUpdate>)>,
}

fn base_name(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

impl Harness {
    fn new(backend: Backend, durable: &[bool]) -> Self {
        let dir = matches!(backend, Backend::Dir(_)).then(|| tempfile::tempdir().unwrap());
        let path = dir.as_ref().map(|d| d.path().join("store"));
        let mut h = Harness {
            background: backend.options().compaction_threads > 0,
            may_spill: backend.options().memtable_budget_bytes < 1 << 20,
            backend,
            _dir: dir,
            path,
            blob: MemBlob::new(),
            store: None,
            models: Vec::new(),
            held: Vec::new(),
        };
        let store = h.open();
        assert!(store.recovery_report().created);
        for (&durable, id) in durable.iter().zip(STREAM_IDS) {
            store.create_stream(id, StreamOptions { durable }).unwrap();
            h.models.push(StreamModel {
                id,
                durable,
                upper: 0,
                since: 0,
                updates: Vec::new(),
            });
        }
        h.store = Some(store);
        h
    }

    fn open(&self) -> Store {
        match &self.backend {
            Backend::Dir(None) => Store::open(self.path.as_ref().unwrap()).unwrap(),
            Backend::Dir(Some(options)) => {
                Store::open_with(self.path.as_ref().unwrap(), options.clone()).unwrap()
            }
            Backend::Mem(options) => Store::open_on(
                Arc::new(self.blob.clone()),
                Arc::new(MemLog::new()),
                options.clone(),
            )
            .unwrap(),
        }
    }

    /// Whether unsealed writes to this stream survive a reopen.
    fn survives(&self, m: &StreamModel) -> bool {
        m.durable && matches!(self.backend, Backend::Dir(_))
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn stream(&self, i: usize) -> usize {
        i % self.models.len()
    }

    /// Names of the batch and run files the held snapshots keep alive (merged-away batches are deleted
    /// only when their last reader drops them).
    fn held_batch_names(&self) -> BTreeSet<String> {
        self.held
            .iter()
            .flat_map(|(s, _)| s.batches().iter().chain(s.spills()).map(|b| base_name(b.name())))
            .collect()
    }

    /// Full check of one stream: snapshot contents and metadata, each batch against the model, upper,
    /// since, unsealed counts, manifest.
    fn check_stream(&self, i: usize, when: &str) {
        let m = &self.models[i];
        let id = m.id;
        let store = self.store();
        let snap = store.snapshot(id).unwrap();
        let got = snap.to_vec().unwrap();
        if m.since == 0 {
            assert_eq!(got, m.expected(), "{id}: snapshot {when}");
        } else {
            assert_eq!(
                advance(&got, m.since),
                advance(&m.updates, m.since),
                "{id}: advanced snapshot {when}"
            );
        }
        assert_eq!(snap.upper(), m.upper, "{id}: snapshot upper {when}");
        // Every batch holds exactly the model's updates in its interval, advanced to its since; intervals
        // are ordered and disjoint, below the upper; what no batch covers consolidates to nothing.
        let mut covered_to = 0;
        let mut from_batches = Vec::new();
        for b in snap.batches() {
            b.verify().unwrap();
            let d = b.description();
            assert!(
                covered_to <= d.lower && d.lower < d.upper && d.upper <= m.upper,
                "{id}: batch {d:?} {when}"
            );
            assert!(
                d.since <= m.since,
                "{id}: batch {d:?} beyond the stream's since {}",
                m.since
            );
            let gap: Vec<OwnedUpdate> = m.between(covered_to, d.lower).cloned().collect();
            assert_eq!(
                advance(&gap, m.since),
                vec![],
                "{id}: updates in [{covered_to}, {}) lost",
                d.lower
            );
            covered_to = d.upper;
            let mut content = Vec::new();
            let mut c = UpdateCursor::new(b).unwrap();
            while let Some((k, v, t, diff)) = c.get() {
                content.push((k.to_vec(), v.to_vec(), t, diff));
                c.step().unwrap();
            }
            assert_eq!(
                content,
                advance(m.between(d.lower, d.upper), d.since),
                "{id}: batch {d:?} {when}"
            );
            from_batches.extend(content);
        }
        let gap: Vec<OwnedUpdate> = m.between(covered_to, m.upper).cloned().collect();
        assert_eq!(
            advance(&gap, m.since),
            vec![],
            "{id}: updates in [{covered_to}, {}) lost",
            m.upper
        );
        // Spilled runs hold unsealed updates as written (consolidated), at or beyond the upper.
        for r in snap.spills() {
            r.verify().unwrap();
            let d = r.description();
            assert!(
                m.upper <= d.lower && d.lower <= d.upper,
                "{id}: spilled run {d:?} {when}"
            );
            let mut c = UpdateCursor::new(r).unwrap();
            while let Some((.., t, _)) = c.get() {
                assert!(
                    d.lower <= t && t < d.upper,
                    "{id}: time {t} outside spilled run {d:?}"
                );
                c.step().unwrap();
            }
        }
        // The snapshot is the batches plus the unsealed updates, as they are.
        from_batches.extend(m.unsealed().cloned());
        assert_eq!(
            got,
            consolidate(&from_batches),
            "{id}: snapshot is not batches + memtable {when}"
        );
        // The memtable holds the unsealed updates not spilled (a spill that consolidates to nothing writes
        // no run, so only the budget tells whether one may have happened).
        let spilled = !snap.spills().is_empty() || self.may_spill;
        let unsealed = consolidate(m.unsealed());
        if !spilled {
            assert_eq!(
                snap.unsealed_len(),
                unsealed.len(),
                "{id}: snapshot unsealed {when}"
            );
        }
        assert_eq!(store.upper(id).unwrap(), m.upper, "{id}: upper {when}");
        assert_eq!(store.since(id).unwrap(), m.since, "{id}: since {when}");
        let sealed = store.sealed(id).unwrap();
        assert_eq!(
            (sealed.upper, sealed.since),
            (m.upper, m.since),
            "{id}: sealed() {when}"
        );
        let in_memory = store.unsealed_len(id).unwrap();
        if spilled {
            assert!(in_memory <= m.unsealed_raw_count(), "{id}: memtable {when}");
        } else {
            assert_eq!(in_memory, m.unsealed_raw_count(), "{id}: memtable {when}");
        }
        let manifest = store.manifest();
        let meta = manifest.stream(id).unwrap();
        assert_eq!(
            (meta.upper, meta.since, meta.durable),
            (m.upper, m.since, m.durable),
            "{id}: manifest"
        );
        if !self.background {
            assert_eq!(
                meta.batches.len(),
                snap.batches().len(),
                "{id}: manifest batches {when}"
            );
            assert_eq!(
                sealed.batches.len(),
                snap.batches().len(),
                "{id}: sealed() batches {when}"
            );
        }
    }

    fn check_all(&self, when: &str) {
        for i in 0..self.models.len() {
            self.check_stream(i, when);
        }
        for (n, (snap, expected)) in self.held.iter().enumerate() {
            assert_eq!(
                &snap.to_vec().unwrap(),
                expected,
                "held snapshot {n} changed ({when})"
            );
        }
        let store = self.store();
        assert_eq!(store.background_error(), None, "{when}");
        let ids: Vec<String> = self.models.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(store.streams(), ids);
        // The blob holds every batch file the manifest names; with inline merges, nothing else but the
        // merged-away batches held snapshots still read. With background merges, the manifest is read before
        // and after listing the blob, and the check counts only if no commit came in between (a merge writes
        // its output before committing it, and deletes its inputs only after).
        let named = |m: &ddpersist::version::Manifest| -> BTreeSet<String> {
            m.file_nos().map(batch_file_name).collect()
        };
        for _ in 0..100 {
            let before = store.manifest();
            let present: BTreeSet<String> = store
                .blob()
                .list()
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".batch") || n.ends_with(".tmp"))
                .collect();
            if self.background && store.manifest().generation != before.generation {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let named = named(&before);
            let missing: Vec<_> = named.difference(&present).collect();
            assert!(
                missing.is_empty(),
                "batch files named by the manifest are missing: {missing:?} ({when})"
            );
            if !self.background {
                let held = self.held_batch_names();
                let extra: Vec<_> = present
                    .difference(&named)
                    .filter(|n| !held.contains(*n))
                    .collect();
                assert!(extra.is_empty(), "blob {present:?}, manifest {named:?} ({when})");
            }
            break;
        }
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { stream, updates } => {
                let i = self.stream(*stream);
                let upper = self.models[i].upper;
                let owned: Vec<OwnedUpdate> = updates
                    .iter()
                    .map(|(k, v, off, d)| (k.clone(), v.clone(), upper + off, *d))
                    .collect();
                self.store()
                    .write_bytes(
                        self.models[i].id,
                        owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)),
                    )
                    .unwrap();
                self.models[i].updates.extend(owned);
            }
            Op::WriteBelow {
                stream,
                updates,
                bad_at,
                below,
                diff,
            } => {
                let i = self.stream(*stream);
                let upper = self.models[i].upper;
                let mut owned: Vec<OwnedUpdate> = updates
                    .iter()
                    .map(|(k, v, off, d)| (k.clone(), v.clone(), upper + off, *d))
                    .collect();
                let bad_time = if upper == 0 {
                    FRONTIER_CLOSED
                } else {
                    upper - 1 - below.min(&(upper - 1))
                };
                owned.insert(
                    *bad_at.min(&owned.len()),
                    (b"a".to_vec(), b"b".to_vec(), bad_time, *diff),
                );
                let id = self.models[i].id;
                let r = self
                    .store()
                    .write_bytes(id, owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)));
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write at {bad_time} below {upper}: {r:?}"
                );
                self.check_stream(i, "after a refused write");
            }
            Op::WriteClosed { stream, diff } => {
                let i = self.stream(*stream);
                let id = self.models[i].id;
                let r = self.store().write(id, &[(1u8, 2u8, FRONTIER_CLOSED, *diff)]);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write at FRONTIER_CLOSED: {r:?}"
                );
                self.check_stream(i, "after a refused write at the closed frontier");
            }
            Op::Seal { stream, by } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let (lower, upper) = (m.upper, m.upper + by);
                let interval = consolidate(m.between(lower, upper));
                let info = self.store().seal(m.id, upper).unwrap();
                let d = info.description;
                assert_eq!(
                    (d.lower, d.upper, d.since),
                    (lower, upper, 0),
                    "{}: sealed description",
                    m.id
                );
                assert_eq!(info.update_count, interval.len() as u64, "{}: sealed count", m.id);
                assert_eq!(
                    info.file.is_some(),
                    !interval.is_empty(),
                    "{}: file iff updates",
                    m.id
                );
                assert_eq!(
                    info.batch.is_some(),
                    !interval.is_empty(),
                    "{}: batch iff updates",
                    m.id
                );
                self.models[i].upper = upper;
            }
            Op::SealStale { stream, back } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let to = m.upper.saturating_sub(*back);
                let r = self.store().seal(m.id, to);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "seal of {} to {to}: {r:?}",
                    m.id
                );
                self.check_stream(i, "after a refused seal");
            }
            Op::Compact { stream } => {
                let i = self.stream(*stream);
                self.store().compact(self.models[i].id).unwrap();
                self.check_stream(i, "after compact");
            }
            Op::AllowCompaction { stream, by } => {
                let i = self.stream(*stream);
                let since = self.models[i].since + by;
                self.store().allow_compaction(self.models[i].id, since).unwrap();
                self.models[i].since = since;
            }
            Op::AllowCompactionBack { stream } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let to = m.since.checked_sub(1).unwrap_or(FRONTIER_CLOSED);
                let r = self.store().allow_compaction(m.id, to);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "since of {} to {to}: {r:?}",
                    m.id
                );
                self.check_stream(i, "after a refused allow_compaction");
            }
            Op::Lookup {
                stream,
                key,
                others,
                as_of,
            } => self.lookup(self.stream(*stream), key, others, *as_of),
            Op::Unknown { which } => {
                let store = self.store();
                let unknown = |r: Result<(), Error>, what: &str| {
                    assert!(
                        matches!(r, Err(Error::UnknownStream { .. })),
                        "{what} on unknown stream: {r:?}"
                    );
                };
                match which {
                    0 => unknown(store.write(UNKNOWN, &[(1u8, 2u8, 3, 1)]), "write"),
                    1 => unknown(store.write::<u8, u8>(UNKNOWN, &[]), "empty write"),
                    2 => unknown(store.seal(UNKNOWN, 5).map(drop), "seal"),
                    3 => {
                        unknown(store.snapshot(UNKNOWN).map(drop), "snapshot");
                        unknown(store.sealed(UNKNOWN).map(drop), "sealed");
                        unknown(store.allow_compaction(UNKNOWN, 1), "allow_compaction");
                    }
                    _ => {
                        unknown(store.upper(UNKNOWN).map(drop), "upper");
                        unknown(store.since(UNKNOWN).map(drop), "since");
                        unknown(store.unsealed_len(UNKNOWN).map(drop), "unsealed_len");
                        unknown(store.get_bytes(UNKNOWN, b"a", 1).map(drop), "get_bytes");
                        unknown(
                            store.first_time_bytes(UNKNOWN, b"a").map(drop),
                            "first_time_bytes",
                        );
                    }
                }
                assert!(!store.has_stream(UNKNOWN));
                self.check_all("after an operation on an unknown stream");
            }
            Op::CreateDuplicate { stream } => {
                let i = self.stream(*stream);
                let r = self
                    .store()
                    .create_stream(self.models[i].id, StreamOptions { durable: true });
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "duplicate create: {r:?}"
                );
                self.check_all("after a refused create");
            }
            Op::Snapshot { stream } => {
                let i = self.stream(*stream);
                self.check_stream(i, "on request");
            }
            Op::Hold { stream } => {
                let i = self.stream(*stream);
                let snap = self.store().snapshot(self.models[i].id).unwrap();
                let read = snap.to_vec().unwrap();
                self.held.push((snap, read));
                if self.held.len() > 4 {
                    self.held.remove(0);
                }
            }
            Op::Reopen => {
                // A stream that is not durable loses its spilled runs too: their files become orphans.
                let volatile_runs: BTreeSet<String> = self
                    .store()
                    .manifest()
                    .streams
                    .iter()
                    .filter(|s| !s.durable)
                    .flat_map(|s| s.spills.iter().map(|b| batch_file_name(b.file_no)))
                    .collect();
                drop(self.store.take());
                let store = self.open();
                for i in 0..self.models.len() {
                    if !self.survives(&self.models[i]) {
                        let m = &mut self.models[i];
                        let upper = m.upper;
                        m.updates.retain(|u| u.2 < upper);
                    }
                }
                let report = store.recovery_report().clone();
                // Replay puts back the unsealed updates of durable streams, except those in WAL records a
                // spill made redundant.
                let manifest = store.manifest();
                let spilled = |m: &StreamModel| manifest.stream(m.id).is_some_and(|s| s.spilled_lsn > 0);
                let (mut exact, mut at_most) = (0, 0);
                for m in self.models.iter().filter(|m| self.survives(m)) {
                    if spilled(m) {
                        at_most += m.unsealed_raw_count() as u64;
                    } else {
                        exact += m.unsealed_raw_count() as u64;
                    }
                }
                assert!(!report.created);
                let replayed = report.updates_replayed;
                assert!(
                    exact <= replayed && replayed <= exact + at_most,
                    "updates replayed: {report:?}"
                );
                assert_eq!(report.torn_tail, None);
                // Orphans: never a file the manifest names; with inline merges, only merged-away batches
                // that held snapshots kept alive.
                let named: BTreeSet<String> = store.manifest().file_nos().map(batch_file_name).collect();
                let held = self.held_batch_names();
                for orphan in &report.orphans_removed {
                    assert!(
                        !named.contains(orphan),
                        "removed {orphan}, which the manifest names"
                    );
                    let expected = held.contains(orphan) || volatile_runs.contains(orphan);
                    assert!(
                        self.background || expected,
                        "unexpected orphan {orphan}: {report:?}"
                    );
                }
                self.store = Some(store);
                self.check_all("after reopen");
            }
        }
    }

    /// `get_bytes`, `get_many_bytes` and `first_time_bytes` against the model.
    fn lookup(&self, i: usize, key: &[u8], others: &[Vec<u8>], as_of: u64) {
        let m = &self.models[i];
        let store = self.store();
        // As of a time at or beyond the since, advanced times read the same as the originals.
        let as_of = m.since + as_of;
        let expect = |key: &[u8]| -> Vec<(Vec<u8>, i64)> {
            let mut vals: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (k, v, t, d) in &m.updates {
                if k == key && *t <= as_of {
                    *vals.entry(v.clone()).or_default() += d;
                }
            }
            vals.into_iter().filter(|(_, d)| *d != 0).collect()
        };
        let got = store.get_bytes(m.id, key, as_of).unwrap();
        assert_eq!(got, expect(key), "{}: get {key:?} as of {as_of}", m.id);
        let keys: Vec<&[u8]> = std::iter::once(key)
            .chain(others.iter().map(|k| &k[..]))
            .collect();
        let many = store.get_many_bytes(m.id, &keys, as_of).unwrap();
        let expected: Vec<_> = keys.iter().map(|k| expect(k)).collect();
        assert_eq!(many, expected, "{}: get_many {keys:?} as of {as_of}", m.id);
        // The first time: no earlier than any write of the key (merges only advance times), and no later
        // than the first time the key has a nonzero update once everything is advanced to the since.
        let first = store.first_time_bytes(m.id, key).unwrap();
        let raw_first = m
            .updates
            .iter()
            .filter(|u| u.0 == key && u.3 != 0)
            .map(|u| u.2)
            .min();
        let held_first = advance(&m.updates, m.since)
            .into_iter()
            .filter(|u| u.0 == key)
            .map(|u| u.2)
            .min();
        if let Some(f) = first {
            assert!(
                raw_first.is_some_and(|r| r <= f),
                "{}: first time {f} of {key:?} before any write",
                m.id
            );
        }
        if let Some(h) = held_first {
            assert!(
                first.is_some_and(|f| f <= h),
                "{}: first time {first:?} of {key:?}, held at {h}",
                m.id
            );
        }
    }
}

fn run(backend: Backend, durable: &[bool], ops: &[Op]) {
    let mut h = Harness::new(backend, durable);
    for op in ops {
        h.apply(op);
    }
    h.check_all("at the end");
    // One last reopen: the final state must survive it too.
    h.apply(&Op::Reopen);
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
        // rest of their unsealed updates do not (see `spilled_runs_on_a_non_durable_buffer_...`).
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

/// Regression: with background merges, `seal` waits while the stream has more than
/// `max_batches_per_stream` batches "until background merges bring it under" (`Store::wait_for_merges`).
/// When no merge was due under the size-tiered policy (batch levels strictly decreasing, e.g. batches of
/// 8, 4 and 2 updates with a bound of 2), no merge ever ran and the seal waited forever.
#[test]
fn back_pressure_with_no_merge_due_does_not_block_seal_forever() {
    let options = Options {
        compaction_threads: 1,
        max_batches_per_stream: 2,
        ..Options::default()
    };
    let store = Store::open_on(Arc::new(MemBlob::new()), Arc::new(MemLog::new()), options).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    for (t, n) in [8u64, 4, 2, 1].into_iter().enumerate() {
        let t = t as u64;
        let updates: Vec<(u64, u64, u64, i64)> = (0..n).map(|k| (k, 0, t, 1)).collect();
        store.write("s", &updates).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        // The thread is leaked if the seal hangs: the test fails either way.
        std::thread::spawn(move || {
            let _ = tx.send(s.seal("s", t + 1).map(|i| i.update_count));
        });
        let sealed = rx.recv_timeout(std::time::Duration::from_secs(10));
        let counts: Vec<u64> = store
            .sealed("s")
            .unwrap()
            .batches
            .iter()
            .map(|b| b.update_count())
            .collect();
        assert!(
            matches!(sealed, Ok(Ok(c)) if c == n),
            "seal {} did not return within 10 s (batches {counts:?}): {sealed:?}",
            t + 1
        );
    }
}

/// A WAL segment of version 1 (header and, if `payload` is given, one record; checksums included), as
/// `FileLog` wrote it.
fn wal_segment(first_lsn: u64, payload: Option<&[u8]>) -> Vec<u8> {
    common::wal_segment_bytes(1, first_lsn, payload.as_slice())
}

/// A store with stream "s" (durable) whose WAL directory holds only `segment`, named after `first_lsn`.
fn store_with_wal_segment(first_lsn: u64, segment: Vec<u8>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    let wal = dir.path().join("wal");
    for e in std::fs::read_dir(&wal).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(wal.join(format!("{first_lsn:020}.wal")), segment).unwrap();
    dir
}

/// Regression: a store whose WAL holds one segment starting near `u64::MAX` (segment names are any 20-digit
/// number; after old segments are released the first one may start anywhere). `Store::open` used to panic
/// with "attempt to add with overflow" in `wal::scan::scan` in debug builds, and in release builds the LSNs
/// wrapped and new appends restarted at LSN 16. It must fail with `Error::Corrupt`.
#[test]
fn wal_segment_near_the_end_of_the_lsn_space_is_corruption_not_a_panic() {
    // A valid record: one update to stream number 0 ("s").
    let mut payload = Vec::new();
    use ddpersist::wal::record::{RecordEncoder, RecordFormat};
    // Tag 1: the segment below is of version 1.
    let mut encoder = RecordEncoder::begin(&mut payload, 0, RecordFormat::Fixed);
    encoder.push(&mut payload, (b"k", b"v", 1, 1));
    encoder.finish(&mut payload);
    let first_lsn = u64::MAX - 8;
    let dir = store_with_wal_segment(first_lsn, wal_segment(first_lsn, Some(&payload)));
    let opened = std::panic::catch_unwind(|| Store::open(dir.path()).map(drop));
    match opened {
        Ok(Err(e)) => assert!(e.is_corruption(), "{e}"),
        Ok(Ok(())) => panic!("open accepted a WAL whose LSNs overflow u64"),
        Err(_) => panic!("open panicked"),
    }
}

/// A store whose WAL ends a few bytes short of `u64::MAX` (one valid, header-only segment named
/// `18446744073709551611.wal`) opens fine, but the first durable write overflows the WAL's next LSN
/// (`FileLog::append_record` in `wal/group_commit.rs`, `state.next_lsn += RECORD_HEADER_BYTES + len`): a
/// panic in debug builds; in release builds the LSN wraps, the write is acknowledged, and the next open fails because the
/// record's LSN overflows. The write (or the open) should fail with an error instead, and an acknowledged
/// write must survive a reopen.
#[test]
fn write_at_the_end_of_the_lsn_space_is_an_error_not_a_panic() {
    let first_lsn = u64::MAX - 4;
    let dir = store_with_wal_segment(first_lsn, wal_segment(first_lsn, None));
    let written = std::panic::catch_unwind(|| {
        let store = Store::open(dir.path())?;
        store.write("s", &[(1u8, 2u8, 3, 1)])
    });
    match written {
        Err(_) => panic!("open or write panicked"),
        Ok(Err(_)) => {} // refused: fine
        Ok(Ok(())) => {
            let store = Store::open(dir.path()).expect("a store that acknowledged a write must reopen");
            let got = store.snapshot("s").unwrap().decode::<u8, u8>().unwrap();
            assert_eq!(got, vec![(1, 2, 3, 1)], "acknowledged write lost");
        }
    }
}

/// On a store whose WAL keeps nothing (`MemLog`), a reopen loses every unsealed update of every
/// stream, durable or not, except the ones a durable stream's memtable happened to spill to runs (the
/// manifest keeps those; `drop_volatile_spills` drops spills only for streams created with
/// `durable: false`). The stream then holds an arbitrary subset of its unsealed updates: a dataflow that
/// recomputes its unsealed state after the restart writes the spilled ones twice — the very hazard
/// `drop_volatile_spills` guards against for non-durable streams. With a log that is not durable, spills
/// should be dropped for every stream (or every unsealed update kept, which a `MemLog` cannot do).
#[test]
fn spilled_runs_on_a_non_durable_buffer_do_not_outlive_the_rest_of_the_memtable() {
    let blob = MemBlob::new();
    let options = Options {
        memtable_budget_bytes: 40,
        compaction_threads: 0,
        ..Options::default()
    };
    let open = || Store::open_on(Arc::new(blob.clone()), Arc::new(MemLog::new()), options.clone()).unwrap();
    let store = open();
    store.create_stream("s", StreamOptions { durable: true }).unwrap();
    // 2 × (24 + 2) bytes: over the budget, spilled.
    store.write("s", &[(1u8, 1u8, 5, 1), (2u8, 2u8, 6, 1)]).unwrap();
    // 26 bytes: stays in the memtable.
    store.write("s", &[(3u8, 3u8, 7, 1)]).unwrap();
    assert!(
        !store.snapshot("s").unwrap().spills().is_empty(),
        "the first write did not spill"
    );
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap().len(), 3);
    drop(store);
    let store = open();
    let after = store.snapshot("s").unwrap().decode::<u8, u8>().unwrap();
    // All or nothing: a `MemLog` cannot keep the memtable's update, so nothing unsealed.
    assert_eq!(after, vec![], "unsealed updates after reopen on a MemLog");
}
