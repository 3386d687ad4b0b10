//! Opening a store: claiming the directory (lock file, "is this a store?"), reading the manifest, mapping
//! and checking every batch it names, removing orphans, replaying the WAL into the memtables, and
//! completing the seals it logged (`store/logged.rs`).

use super::*;
use crate::version::edit::edit_name;

/// The lock on a store directory's `LOCK` file (`flock`), held for the store's life and released
/// explicitly when it drops (after the store's background threads ended: the last reference to the store
/// owns it). Unlocking, not only closing, matters: a child process forked meanwhile holds a copy of the
/// descriptor, and so the lock, until it execs (or for good, if it never does); `flock(LOCK_UN)` releases
/// the lock of the open file description that copy shares. Measured before: beside a thread spawning
/// `true` in a loop, 1,884 of 2,000 immediate reopens were `Locked`.
#[derive(Debug)]
pub(crate) struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        // Best effort: closing the descriptor releases it too once no copy is left.
        let _ = self.0.unlock();
    }
}

impl Store {
    /// Opens (or creates) the store in directory `path` with default [`Options`].
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Self::open_with(path, Options::default())
    }

    /// Opens (or creates, if allowed) the store in directory `path`, taking its lock file.
    ///
    /// Errors: [`Error::NotAStore`] if the directory holds other files and no manifest,
    /// [`Error::Locked`] if another process or handle has it open, [`Error::VersionTooNew`] and
    /// [`Error::Corrupt`] for files it cannot read.
    ///
    /// Merges left due by the previous run start at once (in the background; inline, before this returns,
    /// with `Options::compaction_threads == 0`): a merge whose manifest commit fails then poisons the
    /// store this returns `Ok` with, and its calls return [`Error::Poisoned`] (reopen to recover).
    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let lock = Self::claim_dir(&path, &options)?;
        let blob = Arc::new(DirBlob::open(&path)?.with_reserve());
        let log = Arc::new(
            FileLog::open(
                path.join(WAL_DIR),
                options.wal_segment_bytes,
                options.wal_recovery,
            )?
            .with_zero_fill(options.wal_zero_fill),
        );
        // Only once the manifest exists (a directory holding only a reserve is not a store), and in an
        // existing store before the open starts its merges (a merge commit must not find the reserve
        // half written); a new store has no merge due.
        let existing = path.join(MANIFEST_NAME).exists();
        if existing {
            blob.fill_reserve(crate::blob::dir::RESERVE_BYTES);
        }
        let store = Self::open_parts(blob.clone(), log, options, Some(lock))?;
        if !existing {
            blob.fill_reserve(crate::blob::dir::RESERVE_BYTES);
        }
        Ok(store)
    }

    /// Opens (or creates) a store over any [`Blob`] and [`Log`]: for in-memory stores, tests, and
    /// fault-injecting wrappers. No lock file is taken; the caller ensures one store per blob.
    pub fn open_on(blob: Arc<dyn Blob>, log: Arc<dyn Log>, options: Options) -> Result<Store> {
        Self::open_parts(blob, log, options, None)
    }

    /// A store entirely in memory (a [`crate::blob::MemBlob`] and a [`MemLog`]): nothing survives it.
    pub fn in_memory() -> Result<Store> {
        Self::open_on(
            Arc::new(crate::blob::MemBlob::new()),
            Arc::new(MemLog::new()),
            Options::default(),
        )
    }

    /// Checks that `path` is a store or may become one, and locks it.
    fn claim_dir(path: &Path, options: &Options) -> Result<DirLock> {
        let ctx = |what: &str| format!("{what} {}", path.display());
        match fs::metadata(path) {
            Ok(m) if !m.is_dir() => return Err(not_a_store(path, "it is not a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && options.create_if_missing => {
                // Durably: the new directory's entry in its parent is fsync'd too.
                crate::blob::dir::create_dir_durable(path)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_a_store(
                    path,
                    "it does not exist and creation was not asked for",
                ))
            }
            Err(e) => return Err(Error::io(ctx("stat"), e)),
        }
        if !path.join(MANIFEST_NAME).exists() {
            // Not a store yet: it may become one only if it holds nothing but what a crashed creation left.
            let wal_empty = |p: PathBuf| fs::read_dir(p).map(|mut d| d.next().is_none()).unwrap_or(false);
            for entry in fs::read_dir(path).map_err(|e| Error::io(ctx("list"), e))? {
                let entry = entry.map_err(|e| Error::io(ctx("list"), e))?;
                let name = entry.file_name();
                let ok = name == LOCK_NAME
                    || name
                        .to_str()
                        .is_some_and(|n| n == format!("{MANIFEST_NAME}{TMP_SUFFIX}"))
                    || (name == WAL_DIR && wal_empty(entry.path()));
                if !ok {
                    // A store being created by another open (it holds the lock until its manifest is
                    // written) is locked, not foreign: racing opens of a new directory (adversarial
                    // round 15) saw its first files and no MANIFEST yet.
                    if lock_held(&path.join(LOCK_NAME)) {
                        return Err(Error::Locked {
                            path: path.to_path_buf(),
                        });
                    }
                    let why = format!("it holds {name:?} and no MANIFEST");
                    return Err(not_a_store(path, &why));
                }
            }
            if !options.create_if_missing {
                return Err(not_a_store(
                    path,
                    "it has no MANIFEST and creation was not asked for",
                ));
            }
        }
        match try_lock(&path.join(LOCK_NAME), true) {
            Ok(Some(lock)) => Ok(DirLock(lock)),
            Ok(None) => Err(Error::Locked {
                path: path.to_path_buf(),
            }),
            Err(e) => Err(Error::io(ctx("lock (LOCK file) in"), e)),
        }
    }

    fn open_parts(
        blob: Arc<dyn Blob>,
        log: Arc<dyn Log>,
        options: Options,
        lock: Option<DirLock>,
    ) -> Result<Store> {
        let mut report = RecoveryReport::default();
        // The snapshot and the edits after it (`version::edit`).
        let (manifest, edits, stale, read_bytes, old_snapshot) = match crate::version::read_manifest(&*blob)?
        {
            Some(read) => {
                let old = read.snapshot_version < crate::version::MANIFEST_VERSION.0;
                let stale: Vec<String> = read.stale;
                (read.manifest, read.edits, stale, read.snapshot_bytes, old)
            }
            None => {
                let m = Manifest {
                    store_id: new_store_id(),
                    generation: 1,
                    ..Manifest::default()
                };
                let bytes = m.encode();
                blob.set(MANIFEST_NAME, &bytes)?;
                report.created = true;
                (m, Vec::new(), Vec::new(), bytes.len(), false)
            }
        };
        // Open every batch the manifest names; a missing or bad one fails the open.
        let mut streams = HashMap::new();
        let mut by_no = HashMap::new();
        let generation = manifest.generation;
        let manifest = drop_volatile_spills(&*blob, manifest, log.is_durable())?;
        for s in &manifest.streams {
            let version = Version::open(&*blob, s.clone())?;
            by_no.insert(s.stream_no, (s.id.clone(), s.spilled_lsn));
            streams.insert(s.id.clone(), StreamState::new(Arc::new(version)));
        }
        // Remove orphans: batch files the manifest does not name (written under their name by a flush or
        // a merge that did not commit: partial, whole, or a removal a crash undid; or stray), and
        // temporaries. Nothing the manifest names is ever removed. The removals are made durable before
        // any new file is created, so new files are numbered past the named ones (the manifest's next
        // number) only: an orphan never comes back under a new file's number, and a stray file with a
        // huge number does not use the numbers up (found by an adversarial test: one named
        // `ffffffffffffffff.batch` wrapped the numbering to 0, over a live batch).
        let named: std::collections::HashSet<u64> = manifest.file_nos().collect();
        let next_file_no = manifest.next_file_no;
        for name in blob.list()? {
            let file_no = parse_batch_file_name(&name);
            let orphan = name.ends_with(TMP_SUFFIX) || file_no.is_some_and(|n| !named.contains(&n));
            if orphan {
                blob.delete(&name)?;
                report.orphans_removed.push(name);
            }
        }
        // After the orphans (a new snapshot's temporary would take an orphan temporary's place), edits
        // are folded into a new snapshot (unless dropping spills just wrote one), then removed: the
        // store starts with none, and the removals need no fsync (a stale edit is ignored and removed by
        // the next open).
        // A snapshot of an older version is rewritten as well, before any edit follows it: a release
        // before version 4 would read it and ignore the edits (found by a review).
        // On a full disk (or quota) the fold is skipped: the snapshot and its edits are valid as they are,
        // and the store opens on them, its next edits following theirs (adversarial round 16: the open
        // failed on a disk the store had filled, until space was freed).
        let folded = manifest.generation != generation;
        if !stale.is_empty() {
            // Stale edits are left by a snapshot rewrite whose rename a crash may not have made durable:
            // the directory fsync first, so that no edit goes before the snapshot covering it is durable.
            // The removals are best effort (reads ignore stale edits; a full btrfs may refuse an unlink).
            blob.sync_deletes()?;
            for name in &stale {
                let _ = blob.delete(name);
            }
        }
        let manifest_log = if edits.is_empty() && !folded && !old_snapshot {
            super::edit::ManifestLog::new(read_bytes)
        } else {
            let bytes = manifest.encode();
            // Not through the space reserve (`Blob::set_optional`): the fold can be skipped, and the
            // reserve is kept for the commits that free space.
            let fold = match folded {
                true => Ok(()),
                false => blob.set_optional(MANIFEST_NAME, &bytes),
            };
            match fold {
                Ok(()) => {
                    for (generation, _) in &edits {
                        blob.delete(&edit_name(*generation))?;
                    }
                    super::edit::ManifestLog::new(bytes.len())
                }
                Err(e) if e.is_no_space() && !old_snapshot => {
                    report.fold_skipped = Some(e.to_string());
                    super::edit::ManifestLog::continuing(read_bytes, &edits)
                }
                Err(e) => return Err(e),
            }
        };
        let next_stream_no = manifest.next_stream_no;
        if !report.orphans_removed.is_empty() {
            blob.sync_deletes()?;
        }
        report.orphans_removed.sort();
        // The log learns whose it is before it reads a segment: a segment of another store is refused.
        log.bind_store(manifest.store_id);
        // Replay the WAL past each stream's sealed upper (and past what its spilled runs hold).
        let mut wal_end = 0;
        let location = blob.location();
        let replay = log.replay(&mut |lsn, payload| {
            let what = format!("{location}/{WAL_DIR} record at LSN {lsn}");
            let rec = record::decode(payload, &what)?;
            // Past this record's first byte: a release point at or beyond every replayed record.
            wal_end = lsn + 1;
            let Some((id, spilled_lsn)) = by_no.get(&rec.stream_no()) else {
                // A number below the manifest's next one that names no stream was dropped
                // (`Store::drop_stream`): its records are discarded with it. Numbers are never reused.
                if rec.stream_no() < next_stream_no {
                    return Ok(());
                }
                return Err(Error::corrupt(
                    &what,
                    1,
                    format!("unknown stream number {}", rec.stream_no()),
                ));
            };
            let stream = streams
                .get_mut(id)
                .ok_or_else(|| Error::corrupt(&what, 1, "stream vanished"))?;
            let rec = match rec {
                record::Record::Updates(rec) => rec,
                // Whatever the stream's `spilled_lsn`: a spill keeps the updates, not the upper.
                record::Record::Seal(seal) => {
                    if seal.upper > stream.pending_upper {
                        stream.pending_upper = seal.upper;
                        stream.logged.push_back(LoggedSeal::new(seal.upper, lsn));
                    }
                    return Ok(());
                }
            };
            if lsn < *spilled_lsn {
                // Its updates are in batches (below the upper) and spilled runs (the rest).
                return Ok(());
            }
            // What `write` never logs is corruption, even under a valid checksum: never replayed.
            for &(k, v, t, d) in &rec.updates {
                let bad = if k.len() > MAX_KEY_BYTES || v.len() > MAX_VAL_BYTES {
                    Some("a key or val over the limit")
                } else if t == FRONTIER_CLOSED {
                    Some("an update at time u64::MAX (the closed frontier)")
                } else if d == 0 {
                    Some("an update with diff 0")
                } else {
                    None
                };
                if let Some(bad) = bad {
                    // The key's offset in the payload (both borrow from it).
                    let at = (k.as_ptr() as usize).saturating_sub(payload.as_ptr() as usize);
                    return Err(Error::corrupt(&what, at as u64, bad));
                }
            }
            for u in rec.updates {
                if u.2 >= stream.version.upper() {
                    stream.memtable.insert(u, lsn);
                    report.updates_replayed += 1;
                }
            }
            Ok(())
        })?;
        report.wal_records = replay.records;
        report.torn_tail = replay.torn_tail;
        // Which streams held data at this open (`Store::held_data_at_open`), before anything changes them.
        let held_at_open = manifest
            .streams
            .iter()
            .filter_map(|m| {
                let stream = streams.get(&m.id);
                // A seal logged in the WAL but not yet in the manifest is a seal (completed below).
                let logged = stream.is_some_and(|s| !s.logged.is_empty());
                let unsealed = !m.spills.is_empty() || stream.is_some_and(|s| s.memtable.update_count() > 0);
                let held = match (m.upper > 0 || m.finished || logged, unsealed) {
                    (true, _) => super::writers::HeldAtOpen::Sealed,
                    (false, true) => super::writers::HeldAtOpen::Unsealed,
                    (false, false) => return None,
                };
                Some((m.id.clone(), held))
            })
            .collect();
        let state = State {
            manifest,
            streams,
            poisoned: None,
            wal_end,
            next_file_no,
            background_error: None,
            merges_failing: false,
            riders: Vec::new(),
            dropping: None,
        };
        let scratch = crate::memtable::Scratch::new(options.memtable_budget_bytes / 2);
        let inner = Arc::new(Inner {
            blob,
            log,
            options,
            state: Mutex::new(state),
            edit_lock: Mutex::new(()),
            manifest_log: Mutex::new(manifest_log),
            writers: Mutex::new(super::writers::Writers::new(held_at_open)),
            calls_done: parking_lot::Condvar::new(),
            batches_changed: parking_lot::Condvar::new(),
            stopping: std::sync::atomic::AtomicBool::new(false),
            scratch,
            id: super::NEXT_STORE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            report,
            _lock: lock,
        });
        let workers = crate::compaction::Workers::start(&inner);
        let store = Store {
            inner,
            handle: Some(Arc::new(workers)),
        };
        // Before any append: spill marks past the log's end (a log cut or lost) come down to it.
        store.lower_spill_marks()?;
        // Seals logged but not flushed by the previous run: their batches now, before the store is handed
        // out (a failure leaves them logged, as a background error).
        store.complete_logged_at_open()?;
        // Batches left unmerged by the previous run (or a crash) are merged now, in the background.
        store.schedule_compaction_all();
        Ok(store)
    }
}

/// A stream that is not durable (or any stream, over a WAL that is not) loses its unsealed updates at a
/// restart — including those its memtable
/// spilled to runs: a dataflow recomputing that state would otherwise write them twice. Commits a
/// manifest without those runs (their files are then orphans, removed below) if there were any: one of the
/// two manifest commits outside `Store::apply_edit` (there is no `Store` yet; see `store/edit.rs`; the
/// other folds the manifest's edits into a snapshot, below it in `open_parts`).
fn drop_volatile_spills(blob: &dyn Blob, mut manifest: Manifest, durable_log: bool) -> Result<Manifest> {
    // With a WAL that keeps nothing (MemLog), every stream loses its unsealed updates.
    let lost = |s: &StreamMeta| !s.durable || !durable_log;
    let volatile = |s: &StreamMeta| lost(s) && !s.spills.is_empty();
    if !manifest.streams.iter().any(|s| volatile(s)) {
        return Ok(manifest);
    }
    for s in manifest.streams_mut_where(lost) {
        s.spills.clear();
    }
    manifest.generation += 1;
    blob.set(MANIFEST_NAME, &manifest.encode())?;
    Ok(manifest)
}

/// A new store's identity (`Manifest::store_id`): nonzero, and different for stores created apart — the
/// xxh3 of the clock, the process id, a per-process counter and a stack address; not a secret, only a
/// way to tell one store's WAL segments from another's.
fn new_store_id() -> u32 {
    static CREATED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let mut seed = Vec::with_capacity(32);
    seed.extend_from_slice(&nanos.to_le_bytes());
    seed.extend_from_slice(&u64::from(std::process::id()).to_le_bytes());
    seed.extend_from_slice(
        &CREATED
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .to_le_bytes(),
    );
    seed.extend_from_slice(&(std::ptr::addr_of!(local) as usize as u64).to_le_bytes());
    let h = crate::encoding::checksum(&seed);
    ((h ^ (h >> 32)) as u32).max(1)
}

/// Opens the lock file at `path` (creating it if `create`, else read-only) and tries its `flock`: the file
/// holding the lock, or `None` if another handle or process holds it.
fn try_lock(path: &Path, create: bool) -> std::io::Result<Option<File>> {
    let file = match create {
        true => File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?,
        false => File::open(path)?,
    };
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Whether the lock file at `path` exists and another handle or process holds its lock (a probe: taken
/// and released at once when free; creates nothing).
fn lock_held(path: &Path) -> bool {
    matches!(try_lock(path, false), Ok(None))
}

fn not_a_store(path: &Path, reason: &str) -> Error {
    Error::NotAStore {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

impl Store {
    /// Lowers every stream's spill mark (`spilled_lsn`: replay skips records below it, whose updates are
    /// in the stream's spilled runs) that lies past the log's end to that end, in one manifest edit,
    /// before anything is appended. A log restarts below a mark only when it lost its tail or all of it
    /// (cut by [`WalRecovery::PointInTime`](crate::wal::WalRecovery::PointInTime), or a WAL directory
    /// lost): new records would then get LSNs below the mark and the next replay would skip them as
    /// spilled — writes acknowledged after such an open, lost at the one after. Records below the new
    /// mark were below the old one too, so replay skips the same records as before.
    fn lower_spill_marks(&self) -> Result<()> {
        let Some(end) = self.inner.log.next_lsn() else {
            return Ok(());
        };
        let past = |m: &Manifest| m.streams.iter().any(|s| s.spilled_lsn > end);
        if !past(&self.inner.state.lock().manifest) {
            return Ok(());
        }
        let edit = self.inner.edit_lock.lock();
        self.apply_edit(
            &edit,
            "lower spill marks to the log's end",
            &[],
            |m| {
                for s in m.streams_mut_where(|s| s.spilled_lsn > end) {
                    s.spilled_lsn = end;
                }
                Ok(())
            },
            |_, ()| (),
        )
    }
}
