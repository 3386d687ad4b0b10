//! [`Store`]: one directory holding many streams of differential updates.
//!
//! The stages, one file each: `open` (recovery: manifest, batch files, WAL replay), `write` (WAL →
//! memtable), `seal` (a seal's plan) and `flush` (seals and spills: memtable → batch files → one manifest
//! edit), `logged` (seals made durable by a WAL record, flushed in the background), `append` (a sorted
//! interval straight into a batch), `edit` (`apply_edit`, the one path that changes the manifest and
//! publishes each stream's new [`Version`], kept in `crate::version` with the manifest), `ride` (seals
//! with nothing to write carried by the edit in flight), `writers` (one live writer per stream). Merges
//! are in `crate::compaction`; snapshots and lookups in `crate::read`.
//!
//! Concurrency (DESIGN.md §4):
//! - `state` (a mutex) guards the manifest copy, and per stream its current `Arc<Version>`, memtable,
//!   `pending_upper` and the flush in progress. It is held only for in-memory work of O(1) or O(buckets)
//!   and the WAL *append* (a memcpy), never across an fsync or a file write, never to copy or scan updates
//!   (readers take the version and the memtable's shared buckets and read after releasing it).
//! - seals with nothing to write that find `edit_lock` held queue as riders (`State::riders`) and are
//!   committed by the next edit, with it (`ride`: a group commit of manifest edits);
//! - `edit_lock` serialises every manifest edit (`create_stream`, seals and appends, spills,
//!   `allow_compaction`, a merge's commit), so manifest generations never race; a flush's files are written
//!   while holding it (a merge's are not: only its commit takes it).
//! - The WAL's own locks implement group commit: `write` appends under `state`, then waits for the sync
//!   outside it, so writers on several threads share fsyncs.
//!
//! Invariants:
//! - every batch file the manifest names exists and passed its header/footer/index checks when opened,
//!   and every stream's version is derived from its manifest entry (`apply_edit`);
//! - for each stream, every update with time below `pending_upper` is in a batch file or being flushed
//!   into one, and `write` rejects times below it;
//! - a WAL record may be released only when every update in it is in a committed batch file or run, and
//!   a seal record only when a committed batch reaches its upper.

use crate::batch::format::DEFAULT_BLOCK_TARGET_BYTES;
use crate::batch::{
    batch_file_name, parse_batch_file_name, BatchFile, BatchWriter, Description, FRONTIER_CLOSED,
};
use crate::blob::{Blob, DirBlob, TMP_SUFFIX};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::memtable::{iter_buckets, iter_buckets_in, min_lsn, Buckets, Consolidated, MemTable};
use crate::version::{BatchMeta, Manifest, StreamMeta, Version, MANIFEST_NAME, MAX_ID_BYTES};
use crate::wal::record::{self, UpdateRef, MAX_KEY_BYTES, MAX_RECORD_BYTES, MAX_VAL_BYTES};
use crate::wal::WalRecovery;
use crate::wal::{FileLog, Log, Lsn, MemLog, TornTail};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod append;
mod edit;
mod flush;
mod logged;
pub(crate) use logged::Flushed;
use logged::LoggedSeal;
mod open;
mod ride;
mod seal;
mod streams;
mod write;
mod writers;

pub use seal::SealOptions;
pub(crate) use streams::{refuse_other_key_type, refuse_other_types};
pub use writers::{HeldAtOpen, WriterClaim};

/// One file written by a seal, a spill or a merge, not yet committed: open, with its manifest entry.
pub(crate) type Written = (Arc<BatchFile>, BatchMeta);

/// Name of the lock file in a store directory.
pub const LOCK_NAME: &str = "LOCK";
/// Name of the WAL directory in a store directory.
pub const WAL_DIR: &str = "wal";

/// How a store is opened.
#[derive(Clone, Debug)]
pub struct Options {
    /// Create the store if the directory is missing or empty (default true).
    pub create_if_missing: bool,
    /// WAL segments roll over at about this size, in bytes (default 16 MiB; values below 33, a header and
    /// a byte, count as 33): a segment passes it by at most its last group commit. Up to two released
    /// segments are kept and reused by rollovers, so that the log's `fdatasync`s overwrite allocated
    /// blocks (`wal::FileLog`, FORMAT.md §4 "Recycled segments"); the kept files take up to about two
    /// segments of disk beside the log (also in a store whose releases all come with idle rotations,
    /// which never reuse them). An open reads the last segment whole, which for a recycled one means
    /// about this many bytes (BENCHMARKS.md, "WAL segment recycling").
    pub wal_segment_bytes: u64,
    /// Target size of a batch file block (default 64 KiB).
    pub block_target_bytes: u32,
    /// What to do with a WAL record that is bad but followed by valid ones (default: fail the open).
    pub wal_recovery: WalRecovery,
    /// How many batches of one tier a merge combines (a power of two from 2 to 64; default 8): each
    /// update is rewritten about `log_fan_in(updates / seal size)` times, and a stream keeps fewer than
    /// `fan_in` batches per tier (see `compaction`). 2 is differential dataflow's binary-counter Spine; 16
    /// rewrites each update about a quarter less often for about twice the batches, and reaches the
    /// back-pressure bound (`max_batches_per_stream`) after 65,535 seals instead of 8⁹ (BENCHMARKS.md,
    /// "Write path, session of 2026-11-30 night"; DESIGN.md §6, "Compaction policy").
    pub merge_fan_in: usize,
    /// The size-amplification trigger (RocksDB universal compaction's `max_size_amplification_percent`):
    /// when a stream's batches newer than its oldest hold more than this percentage of the oldest's
    /// updates, one merge rewrites them all into one batch (`compaction::pick_space_amp`). Bounds the disk
    /// space of streams whose updates cancel (upserts) to about `1 + percent / 100` times the oldest batch,
    /// at the cost of whole-stream merges (which hold the stream's other merges meanwhile). `None` (the
    /// default): tiers only; `Some(0)` rewrites the whole stream at every seal. Effect: BENCHMARKS.md,
    /// "Size-amplification trigger".
    pub max_space_amplification_percent: Option<u32>,
    /// Background threads merging batches (default 1). With 0, merges run inside `seal`, before it
    /// returns: deterministic, for tests and for callers that want no threads.
    pub compaction_threads: usize,
    /// The nice value (Linux: per thread, 0 to 19, higher runs less) the merge threads raise theirs to
    /// (and the batch-writing helpers they start inherit), so that on a busy machine they take the CPU
    /// the writers leave (RocksDB's `Env::LowerThreadPoolCPUPriority` on its compaction pool; default 10).
    /// Never raises a priority: a thread that inherited a higher nice value from the thread that opened
    /// the store keeps it; 0 leaves them at that inherited value. Values past 19 count as 19. Merges run
    /// by `compact`, `major_compact` or back-pressure on the caller's thread keep the caller's priority,
    /// and the flush thread of logged seals keeps the opener's (it holds the lock seals and appends wait
    /// on, as RocksDB's flushes run in its high-priority pool). Back-pressure (`max_batches_per_stream`) still
    /// bounds how far merges may fall behind. Ignored elsewhere than Linux. Effect: BENCHMARKS.md,
    /// "Background thread priority".
    pub background_nice: u8,
    /// Run the merge threads under Linux's `SCHED_IDLE` policy as well (default false): they then get
    /// only a very small share of a busy CPU, and a woken writer preempts them at once (RocksDB's
    /// `CpuPriority::kIdle` for its compaction pool). At 10 M durable updates it cut the writer's wait
    /// for a CPU by half and the ingest time by 4.5–10% (BENCHMARKS.md, "Merge threads under
    /// SCHED_IDLE"; at 1 M it changed nothing). The costs, while other threads keep every core busy:
    /// merges nearly stop, so batches pile up towards back-pressure (`max_batches_per_stream`), and a
    /// seal held there waits for them; and a merge's manifest commit, which holds the lock seals, appends
    /// and stream edits take, stretches with it (the priority inversion the flush thread avoids by keeping
    /// the opener's priority). With the default `RLIMIT_NICE` a thread cannot leave `SCHED_IDLE`, so the
    /// policy is chosen once, when the store opens. Ignored elsewhere than Linux.
    pub background_idle: bool,
    /// lz4-compress the blocks of batches at this level or deeper (level = floor(log2(updates)); e.g. 20
    /// compresses batches of a million updates and more). `None` (the default): never compress.
    pub compress_from_level: Option<u32>,
    /// Memory budget of one stream's memtable (key and val bytes plus 24 bytes per update; default
    /// 256 MiB). Past it, a write spills the memtable to sorted runs on disk (a spill), so memory stays
    /// bounded even when a stream's frontier stalls. An arrangement's seals coalesce up to half of it while
    /// the disk is behind (`operators/persister.rs`): a larger budget makes fewer, larger batches, so fewer
    /// merges (BENCHMARKS.md, "arrange_persisted": 64 MiB let merges fall behind at 30 M updates).
    pub memtable_budget_bytes: usize,
    /// Bits per key of each batch's key filter (default 10; 0: no filter; false-positive
    /// rate: BENCHMARKS.md, "Figures behind the formats").
    pub filter_bits_per_key: u32,
    /// Back-pressure bound: a `seal` of a stream with more batches than this waits until background merges
    /// bring it under (default 64); while a merge of the stream runs, the seal merges the batches newer than
    /// that merge's inputs itself meanwhile, on its own thread (a tail merge: the cheapest adjacent pair of
    /// them), so that one big merge does not hold every seal for its whole length (it still does when
    /// fewer than two batches are newer than its inputs, as when a major compaction starts near the bound). With merges keeping up, a stream of n updates sealed s at a time holds
    /// fewer than `merge_fan_in` batches in each of about `log_fan_in(n / s) + 1` tiers: at fan-in 8 at
    /// most 35 for up to 32,767 seals, 63 for up to 8⁹ − 1 (at fan-in 16: 60 for up to 65,535); past the
    /// bound the cheapest adjacent pair merges whatever its tiers.
    pub max_batches_per_stream: usize,
    /// Keep the active WAL segment filled with zeros a few MiB ahead of the log's end, from a background
    /// thread, so that WAL `fdatasync`s overwrite synced blocks instead of extending the file (default
    /// false; FORMAT.md §4, DESIGN.md §6). Costs a second write of every WAL byte (as zeros, off the write
    /// path); its effect on sync latency: BENCHMARKS.md, "Figures behind the formats". Segments created
    /// with it carry a header flag; segments created without it are never zero-filled.
    pub wal_zero_fill: bool,
    /// Bound on the WAL bytes kept for unsealed updates (default 1 GiB; `None`: no bound), like RocksDB's
    /// `max_total_wal_size`. Past it, a write spills the unsealed updates of the stream holding the
    /// oldest WAL record to sorted runs (a spill), so whole segments can be released: one
    /// stalled durable stream cannot pin the log while others write, and the WAL a reopen replays stays
    /// about this size, whatever the history.
    pub max_wal_bytes: Option<u64>,
    /// A stream's logged seals (`Store::seal_logged`) are flushed, as one batch, once its memtable holds
    /// this many bytes (counted as `memtable_budget_bytes` counts them, writes above the logged upper
    /// included; at most a quarter of that budget), as RocksDB flushes a memtable at its
    /// `write_buffer_size` (default 8 MiB; 0: each logged seal is flushed at once, its own batch). Larger
    /// batches start in a higher merge tier, so fewer merges rewrite them: at 10 M updates sealed 10,000
    /// at a time, 3.8 bytes written a payload byte instead of 4.6–4.7 (BENCHMARKS.md, "Logged seals
    /// flushed by size"). Memory: with twice this in its memtable (the flush thread behind),
    /// `seal_logged` flushes on the caller's thread, so a stream holds up to about four times this (twice
    /// in its memtable, as much again in a flush being written).
    pub logged_flush_bytes: usize,
    /// How long logged seals wait for more when their stream goes quiet (default 100 ms; past a year it
    /// counts as a year): the flush thread writes a stream's logged seals once no seal was logged on it
    /// for this long, or once the oldest is ten times this old, however few bytes they hold; so a stream sealed slowly still reaches
    /// [`Store::upper`], its batches and DD traces within about this (a second at most), while one sealed
    /// fast is flushed by size only (a flush by time would cut its batch short: BENCHMARKS.md, "Logged
    /// seals flushed by size").
    pub logged_flush_delay: std::time::Duration,
}

impl Options {
    /// Whether a batch of about `update_count` updates is compressed.
    pub(crate) fn compress(&self, update_count: u64) -> bool {
        self.compress_from_level
            .is_some_and(|l| crate::compaction::level_of(update_count) >= l)
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            create_if_missing: true,
            wal_segment_bytes: 16 << 20,
            block_target_bytes: DEFAULT_BLOCK_TARGET_BYTES,
            wal_recovery: WalRecovery::Strict,
            compaction_threads: 1,
            background_nice: 10,
            background_idle: false,
            merge_fan_in: 8,
            max_space_amplification_percent: None,
            compress_from_level: None,
            memtable_budget_bytes: 256 << 20,
            filter_bits_per_key: crate::batch::filter::DEFAULT_BITS_PER_KEY,
            max_batches_per_stream: 64,
            wal_zero_fill: false,
            max_wal_bytes: Some(1 << 30),
            logged_flush_bytes: 8 << 20,
            logged_flush_delay: std::time::Duration::from_millis(100),
        }
    }
}

/// How a stream is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamOptions {
    /// Whether `write` returns only once the updates are fsync'd in the WAL (default true). A stream that is
    /// not durable keeps unsealed updates only in memory: for operator state a dataflow can recompute.
    /// Sealed batches are durable either way.
    pub durable: bool,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions { durable: true }
    }
}

/// What an open found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Whether the store was created by this open.
    pub created: bool,
    /// WAL records replayed.
    pub wal_records: u64,
    /// Updates put back into memtables from the WAL (the rest were already sealed).
    pub updates_replayed: u64,
    /// A torn WAL tail that was cut off.
    pub torn_tail: Option<TornTail>,
    /// Files removed because no manifest named them (left by an interrupted seal or write).
    pub orphans_removed: Vec<String>,
    /// Why the manifest's edits were not folded into a new snapshot (the error of writing it: a full
    /// disk or quota); the store opened on the snapshot and its edits as they were, and a later open
    /// folds them.
    pub fold_skipped: Option<String>,
}

/// What [`Store::write_bytes_unsynced`] returns: the end of the write's WAL record, to pass to
/// [`Store::sync`]. Tickets are ordered like the writes (by WAL position), so syncing the greatest of
/// several covers them all. A write to a non-durable stream (or of no update) gets the zero ticket, which
/// needs no sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteTicket {
    lsn: Lsn,
    /// The [`Store`] that issued it (its `Inner::id`), so that another store's ticket is refused; 0 with the
    /// zero ticket.
    store: u64,
}

impl WriteTicket {
    /// The ticket of store `store` for the WAL up to `lsn`.
    pub(crate) fn at(lsn: Lsn, store: u64) -> Self {
        WriteTicket { lsn, store }
    }

    /// The WAL position (LSN) just past the write's record; 0 when nothing needs syncing.
    pub fn lsn(&self) -> Lsn {
        self.lsn
    }
}

/// What a seal produced.
#[derive(Clone, Debug)]
pub struct SealInfo {
    /// The sealed interval.
    pub description: Description,
    /// Updates written (after consolidation); 0 when the interval had none, and then no file was written.
    pub update_count: u64,
    /// Where the batch file is (blob location and name), if one was written.
    pub file: Option<String>,
    /// The new batch, open, if one was written.
    pub batch: Option<Arc<BatchFile>>,
}

/// A store: see the module docs. Cloning is cheap and shares the store (`Send + Sync`).
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
    /// Shared by every handle the user holds (not by background workers): when the last one drops, the
    /// compaction workers are stopped and joined, so the directory lock is released by then.
    pub(crate) handle: Option<Arc<crate::compaction::Workers>>,
}

pub(crate) struct Inner {
    pub(crate) blob: Arc<dyn Blob>,
    pub(crate) log: Arc<dyn Log>,
    pub(crate) options: Options,
    pub(crate) state: Mutex<State>,
    pub(crate) edit_lock: Mutex<()>,
    /// Signalled whenever a stream's batch list changes (seals waiting on back-pressure wait on it).
    pub(crate) batches_changed: parking_lot::Condvar,
    /// The manifest's edits since its snapshot (`edit.rs`).
    pub(crate) manifest_log: Mutex<edit::ManifestLog>,
    /// Live writers, streams claimed since this open and what streams held at it (`writers.rs`).
    pub(crate) writers: Mutex<writers::Writers>,
    /// Notified (under `writers`) when a stream's last admitted `Store` call returns: a claim of it waits
    /// for that (`writers.rs`).
    pub(crate) calls_done: parking_lot::Condvar,
    /// Set when the last user handle drops: running merges stop early.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Buffers of finished seals and spills kept for the next (`memtable::Scratch`; at most a quarter of
    /// `Options::memtable_budget_bytes`).
    pub(crate) scratch: crate::memtable::Scratch,
    /// Unique among the stores of this process (from 1): stamped on write tickets.
    pub(crate) id: u64,
    report: RecoveryReport,
    /// Held for the life of the store: the lock on the directory's `LOCK` file.
    _lock: Option<open::DirLock>,
}

pub(crate) struct State {
    pub(crate) manifest: Manifest,
    pub(crate) streams: HashMap<String, StreamState>,
    /// Set by a failure that leaves the store's durable state uncertain; every later call fails.
    pub(crate) poisoned: Option<String>,
    /// LSN just past the newest WAL record.
    wal_end: Lsn,
    /// The next batch file number to hand out (seals and merges allocate concurrently; the manifest
    /// records the high-water mark at each commit).
    next_file_no: u64,
    /// The last failure of a background merge (or spill), if any (they are retried; the store keeps
    /// working). Only reported: see `merges_failing`.
    pub(crate) background_error: Option<String>,
    /// The last merge attempt failed (cleared by the next that succeeds): back-pressure does not wait for
    /// merges while they fail, and waits again once one succeeds.
    pub(crate) merges_failing: bool,
    /// Seals that only move an upper, queued for the next manifest edit to carry (`store/ride.rs`).
    riders: Vec<ride::Rider>,
    /// The stream a `drop_stream` edit removes, while it is applied: its unsealed updates go with it.
    pub(crate) dropping: Option<String>,
}

/// Numbers the stores of this process, for [`Inner::id`].
pub(crate) static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl State {
    /// Errors: [`Error::Corrupt`] naming the manifest once the numbers are used up (`u64::MAX` is never
    /// a file's number: a manifest's next number must pass every file's) — only a damaged manifest gets
    /// there, since open numbers new files past the named ones only (stray files are removed first).
    pub(crate) fn alloc_file_no(&mut self) -> Result<u64> {
        let n = self.next_file_no;
        if n == u64::MAX {
            return Err(Error::corrupt(
                MANIFEST_NAME,
                0,
                "its next file number is u64::MAX: no new batch file can be numbered",
            ));
        }
        self.next_file_no = n + 1;
        Ok(n)
    }

    /// Gives back `n`, the number [`alloc_file_no`](Self::alloc_file_no) returned last (under the same
    /// lock), unused; any other number stays taken (a gap in the numbering is harmless).
    pub(crate) fn give_back_file_no(&mut self, n: u64) {
        if self.next_file_no == n + 1 {
            self.next_file_no = n;
        }
    }
}

/// One stream in memory: its current [`Version`] (durable state, swapped whole by each manifest edit) and
/// what is not durable in the batches yet (the memtable, a flush in progress).
pub(crate) struct StreamState {
    /// The stream's state as of the last manifest commit (only `apply_edit` replaces it).
    pub(crate) version: Arc<Version>,
    /// The upper of a seal in progress, or of the newest logged seal not committed (`logged`), or the
    /// version's upper: writes below it are rejected.
    pending_upper: u64,
    pub(crate) memtable: MemTable,
    /// Buckets being written by a seal or a spill in progress; still visible to snapshots and lookups.
    pub(crate) flushing: Option<Arc<Buckets>>,
    flushing_min_lsn: Option<Lsn>,
    /// Seals logged in the WAL whose batch is not committed yet (`seal_logged`), oldest first.
    pub(crate) logged: std::collections::VecDeque<LoggedSeal>,
    /// Whether a merge of this stream's batches is running (at most one per stream, besides a tail merge).
    pub(crate) merging: bool,
    /// The file number of the newest input of the running merge (`merging`): a tail merge beside it takes
    /// only batches newer than that one.
    pub(crate) merging_through: u64,
    /// Whether a tail merge is running: one of batches newer than the running merge's, by a seal that
    /// would otherwise wait at the back-pressure bound (`compaction::workers`).
    pub(crate) tail_merging: bool,
    /// Picks since the oldest due merge last had its turn (`compaction::pick_merge_fair`).
    pub(crate) merge_turn: u32,
    /// The upper and options of this stream's queued rider (`store/ride.rs`), not committed yet: a seal of
    /// the stream planned meanwhile starts there.
    riding: Option<(u64, SealOptions)>,
    /// Set by `drop_stream` while it waits to remove the stream: no new merge of it starts.
    pub(crate) dropping: bool,
}

impl StreamState {
    fn new(version: Arc<Version>) -> Self {
        StreamState {
            pending_upper: version.upper(),
            version,
            memtable: MemTable::default(),
            flushing: None,
            flushing_min_lsn: None,
            logged: std::collections::VecDeque::new(),
            merging: false,
            merging_through: 0,
            tail_merging: false,
            merge_turn: 0,
            riding: None,
            dropping: false,
        }
    }

    /// Whether any unsealed update is held: in the memtable, in a seal or spill in progress, or in a
    /// spilled run ([`Store::holds_unsealed`]).
    pub(crate) fn holds_unsealed(&self) -> bool {
        self.memtable.update_count() > 0 || self.flushing.is_some() || !self.version.spills().is_empty()
    }
}

/// LSN used for updates of streams that are not durable: never holds the WAL back.
const NO_LSN: Lsn = Lsn::MAX;

impl Store {
    /// A handle for a background worker: shares the store but not the user handles' worker guard.
    pub(crate) fn worker_handle(inner: Arc<Inner>) -> Store {
        Store { inner, handle: None }
    }

    /// What the open found and repaired: torn WAL tail, orphans removed, updates replayed.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.report
    }

    /// The ids of every stream, in creation order.
    pub fn streams(&self) -> Vec<String> {
        self.inner
            .state
            .lock()
            .manifest
            .streams
            .iter()
            .map(|s| s.id.clone())
            .collect()
    }

    /// A copy of the current manifest.
    pub fn manifest(&self) -> Manifest {
        self.inner.state.lock().manifest.clone()
    }

    /// `f` of the current manifest, read under the state lock without copying it (for callers on the
    /// seal path; `f` must not call back into the store).
    pub(crate) fn with_manifest<R>(&self, f: impl FnOnce(&Manifest) -> R) -> R {
        f(&self.inner.state.lock().manifest)
    }

    pub(crate) fn poison(&self, detail: String) {
        let mut state = self.inner.state.lock();
        state.poisoned.get_or_insert(detail);
    }

    /// The state, unless the store is poisoned.
    pub(crate) fn live_state(&self) -> Result<parking_lot::MutexGuard<'_, State>> {
        let state = self.inner.state.lock();
        match &state.poisoned {
            Some(p) => Err(Error::Poisoned { detail: p.clone() }),
            None => Ok(state),
        }
    }

    /// Reads stream `id`'s in-memory state under the state lock with `f` (O(1) or O(buckets) work only,
    /// never a copy or scan of updates: see DESIGN.md §4). Errors: [`Error::UnknownStream`], [`Error::Poisoned`].
    pub(crate) fn with_stream<R>(&self, id: &str, f: impl FnOnce(&StreamState) -> R) -> Result<R> {
        let state = self.live_state()?;
        let stream = state
            .streams
            .get(id)
            .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
        Ok(f(stream))
    }

    /// Bytes of unsealed updates held in memory for stream `id`, as the memory budget counts them (key
    /// and val bytes plus 24 per update).
    pub fn memtable_bytes(&self, id: &str) -> Result<usize> {
        self.with_stream(id, |s| s.memtable.bytes())
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &Options {
        &self.inner.options
    }

    /// Number of unsealed updates held in memory for stream `id` (its memtable; not those of a flush in
    /// progress or in spilled runs: [`holds_unsealed`](Self::holds_unsealed) asks about all of them).
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`].
    pub fn unsealed_len(&self, id: &str) -> Result<usize> {
        self.with_stream(id, |s| s.memtable.update_count())
    }

    /// Whether stream `id` holds any unsealed update (written, at or beyond its upper): in its memtable,
    /// in a seal or spill in progress, or in a spilled run (a memtable written out under memory pressure,
    /// which a reopen reads from disk, not into memory). Errors: [`Error::UnknownStream`],
    /// [`Error::Poisoned`].
    pub fn holds_unsealed(&self, id: &str) -> Result<bool> {
        self.with_stream(id, StreamState::holds_unsealed)
    }

    /// The blob holding the batch files and manifest.
    pub fn blob(&self) -> &Arc<dyn Blob> {
        &self.inner.blob
    }
}

/// The LSN before which no WAL record is needed: the oldest record holding an unsealed update or a logged
/// seal whose batch is not committed, or the log's end when there is none.
fn release_point(state: &State) -> Lsn {
    state
        .streams
        .values()
        .flat_map(|s| {
            [
                s.memtable.min_lsn(),
                s.flushing_min_lsn,
                s.logged.front().map(|l| l.lsn),
            ]
        })
        .flatten()
        .min()
        .unwrap_or(state.wal_end)
        .min(state.wal_end)
}
