//! Flushing: the memtable's updates become batch files, and one manifest edit commits them. Two kinds,
//! one protocol (a seal's step 1, its plan, is in `store/seal.rs`):
//! - a **seal** takes the updates below a new upper — from the memtable and from spilled runs — into one
//!   batch file with description `[upper, new upper)`, and moves the stream's upper;
//! - a **spill** (the FutureLog's, when a stream's memtable passes its memory budget or the WAL its bound)
//!   writes every unsealed update out as sorted runs (same file format) that later seals draw from.
//!
//! The protocol (`Store::flush`), under `edit_lock`:
//! 1. under `state`: take the buckets out of the memtable into `flushing` (still visible to snapshots and
//!    lookups), and for a seal raise `pending_upper` (writes below it are refused from now on; a logged
//!    seal, `store/logged.rs`, raised it already);
//! 2. sync the WAL up to its current end: every write before the flush is durable (the manifest may say
//!    replay skips records the flush covers, so they must be on disk first);
//! 3. write the files (not yet named by the manifest: a crash leaves orphans, removed at open);
//! 4. one edit through `Store::apply_edit` names them (and for a seal moves the upper), commits, and
//!    publishes the stream's new version; `flushing` ends;
//! 5. release the WAL segments no unsealed update needs.
//!
//! A failure (or a panic) before the commit puts the buckets back and removes the files written
//! (`FlushGuard`): nothing changes; a failed commit in
//! step 4 poisons the store (only a reopen can tell which manifest is on disk).

use super::*;
use crate::batch::UpdateCursor;
use crate::read::MergeIter;
use crate::version::open_written_batch;

/// A seal in progress: step 1's choices (`store/seal.rs`).
pub(super) struct SealPlan {
    pub(super) description: Description,
    pub(super) options: SealOptions,
    /// Spilled runs holding times below the new upper: read whole into the batch, what they hold at or
    /// beyond it rewritten as one remainder run.
    pub(super) consumed: Vec<Arc<BatchFile>>,
    /// File numbers of the batch and of the remainder run (if a consumed run reaches past the upper).
    pub(super) file_nos: (u64, Option<u64>),
}

/// The updates an [`append_bytes`](Store::append_bytes) adds to its seal, validated as they are read.
pub(super) struct Appended<'i, 'a> {
    /// The lower the caller expects the stream's upper to be.
    pub(super) lower: u64,
    /// The number of updates, when the iterator knows it exactly (its `size_hint`); then they stream
    /// into the batch as they come, else they are collected first to size its key filter.
    pub(super) exact_count: Option<u64>,
    pub(super) updates: &'i mut dyn Iterator<Item = Result<UpdateRef<'a>>>,
    /// The number of the stream a typed `append` checked the types of, if it did: the seal refuses another
    /// stream of the id ([`Error::UnknownStream`]; dropped and created again meanwhile).
    pub(super) checked: super::streams::CheckedStream,
}

/// The most keys an appending iterator's `size_hint` sizes a key filter for (2^28: a 320 MiB filter at
/// 10 bits per key).
const MAX_FILTER_KEYS_HINT: u64 = 1 << 28;

/// What a flush took out of the memtable (step 1).
pub(super) struct Taken {
    pub(super) drained: Arc<Buckets>,
    /// The WAL's end when the buckets were taken: every record before it is covered.
    pub(super) wal_end: Lsn,
}

/// The files a flush wrote (step 3).
#[derive(Default)]
struct Flushed {
    /// A seal's batch (none when the interval had no update).
    batch: Option<Written>,
    /// New spilled runs (a spill's, or a seal's remainder).
    runs: Vec<Written>,
}

impl Store {
    /// Spills stream `id`'s memtable to sorted runs on disk if it holds more than the memory budget
    /// (`Options::memtable_budget_bytes`). Runs cover consecutive time ranges of about a quarter of the
    /// budget each, so a later seal rewrites at most the runs its upper cuts through.
    pub(crate) fn spill_if_over_budget(&self, id: &str) -> Result<()> {
        self.spill_if_over(id, self.inner.options.memtable_budget_bytes)
    }

    /// Spills stream `id`'s memtable (as [`spill_if_over_budget`](Self::spill_if_over_budget) does) if it
    /// holds more than `threshold` bytes; with 0, whenever it holds anything (the WAL bound).
    pub(crate) fn spill_if_over(&self, id: &str, threshold: usize) -> Result<()> {
        let edit_guard = self.inner.edit_lock.lock();
        let taken = {
            let mut state = self.live_state()?;
            let wal_end = state.wal_end;
            let Some(stream) = state.streams.get_mut(id) else {
                return Ok(());
            };
            if stream.memtable.bytes() <= threshold || stream.memtable.update_count() == 0 {
                return Ok(());
            }
            // Every record appended so far had its updates in the memtable: once the runs commit, replay
            // skips them.
            let drained = stream.begin_flush(FRONTIER_CLOSED);
            Taken { drained, wal_end }
        };
        self.flush(edit_guard, id, taken, None).map(|_| ())
    }

    /// Steps 2–5 of the protocol (module docs) for the buckets `taken` out of stream `id`'s memtable: a
    /// seal by `plan`, or a spill without one. Returns a seal's new batch.
    pub(super) fn flush(
        &self,
        edit_guard: parking_lot::MutexGuard<'_, ()>,
        id: &str,
        taken: Taken,
        seal: Option<(&SealPlan, Option<Appended<'_, '_>>)>,
    ) -> Result<Option<Arc<BatchFile>>> {
        let (plan, appended) = match seal {
            Some((plan, appended)) => (Some(plan), appended),
            None => (None, None),
        };
        // Undoes step 1 unless the edit commits: on an error return, and on a panic (an appending caller's
        // iterator runs in step 3), so the stream never stays half-flushed.
        let mut guard = FlushGuard {
            store: self,
            id,
            lower: plan.map(|p| p.description.lower),
            written: Vec::new(),
            armed: true,
        };
        // Every write before the flush is durable when it returns, also those written with
        // `write_bytes_unsynced` (a seal's updates at or beyond the upper stay in the memtable, and a
        // spill's manifest says replay may skip every record below `wal_end`: a crash must not let the
        // log restart below it). An fsync only if such a write is pending.
        self.sync_wal(WriteTicket::at(taken.wal_end, self.inner.id))?;
        let written = match plan {
            Some(plan) => self.write_seal(&taken.drained, appended, plan),
            None => {
                let part_bytes = (self.inner.options.memtable_budget_bytes / 4).max(1 << 20);
                self.write_spill(&taken.drained, part_bytes)
                    .map(|runs| Flushed { batch: None, runs })
            }
        };
        let flushed = written.map_err(|e| e.in_stream(id))?;
        let files: Vec<Written> = flushed.batch.iter().chain(&flushed.runs).cloned().collect();
        guard.written = files.iter().map(|f| batch_file_name(f.1.file_no)).collect();
        let consumed = plan.map_or(&[][..], |p| &p.consumed[..]);
        let consumed_nos: Vec<u64> = consumed.iter().filter_map(|b| file_no_of(b)).collect();
        let edit = |next: &mut Manifest| {
            let high = files
                .iter()
                .map(|f| f.1.file_no.saturating_add(1))
                .max()
                .unwrap_or(0);
            next.next_file_no = next.next_file_no.max(high);
            // The stream exists (`edit_lock` has been held since it was found, and only an edit removes
            // streams); this edit refuses nothing.
            if let Ok(s) = next.stream_mut(id) {
                match plan {
                    Some(plan) => {
                        s.upper = plan.description.upper;
                        s.finished = plan.options.finished;
                        s.since = s.since.max(plan.options.since.unwrap_or(0));
                        s.batches.extend(flushed.batch.as_ref().map(|b| b.1));
                    }
                    None => s.spilled_lsn = s.spilled_lsn.max(taken.wal_end),
                }
                s.spills.retain(|m| !consumed_nos.contains(&m.file_no));
                s.spills.extend(flushed.runs.iter().map(|r| r.1));
                s.spills.sort_by_key(|m| m.lower);
            }
            Ok(())
        };
        let publish = |state: &mut State, ()| {
            if let Some(stream) = state.streams.get_mut(id) {
                stream.flushing = None;
                stream.flushing_min_lsn = None;
                // Logged seals this batch reaches are done: their records may be released.
                let sealed = plan.map_or(0, |p| p.description.upper);
                while stream.logged.front().is_some_and(|l| l.upper <= sealed) {
                    stream.logged.pop_front();
                }
            }
            release_point(state)
        };
        let what = match plan {
            Some(_) => format!("the seal of {id:?}"),
            None => format!("a spill of {id:?}"),
        };
        let release = self.apply_edit(&edit_guard, &what, &files, edit, publish)?;
        guard.armed = false;
        for (run, no) in consumed.iter().zip(&consumed_nos) {
            run.retire_on_drop(self.inner.blob.clone(), batch_file_name(*no));
        }
        // The flushed records are durable in batch files now; old WAL segments may go. A failure here is
        // harmless (the segments stay, their records are skipped on replay, and the next flush tries
        // again), and the flush itself has committed, so it is not reported as its failure.
        let _ = self.inner.log.release_before(release);
        self.inner.batches_changed.notify_all();
        // Merges commit under `edit_lock` too: it is released before one may run inline.
        drop(edit_guard);
        Ok(flushed.batch.map(|b| b.0))
    }

    /// Step 3 of a seal: writes its batch (memtable buckets and spilled runs, times below the upper) and, if a spilled
    /// run reaches past the upper, the remainder run. On error, removes what it wrote.
    fn write_seal(
        &self,
        drained: &Buckets,
        appended: Option<Appended<'_, '_>>,
        plan: &SealPlan,
    ) -> Result<Flushed> {
        let (consumed, description) = (&plan.consumed[..], plan.description);
        let (batch_no, remainder_no) = plan.file_nos;
        let scratch = &self.inner.scratch;
        let unsealed = match appended {
            // Nothing else in the interval: the appended updates go to the writer as they come (validated
            // on the way; no copy, no sort).
            Some(appended) if drained.is_empty() && consumed.is_empty() => {
                let batch = match appended.exact_count {
                    // The filter is sized for at most `MAX_FILTER_KEYS_HINT` keys whatever an iterator
                    // claims (a larger batch gets a fuller filter, never a huge allocation).
                    Some(count) => {
                        let keys = count.min(MAX_FILTER_KEYS_HINT);
                        self.write_file(batch_no, description, keys, count, appended.updates)?
                    }
                    None => {
                        let updates = appended.updates.collect::<Result<Vec<_>>>()?;
                        let count = updates.len() as u64;
                        self.write_file(batch_no, description, count, count, updates.into_iter().map(Ok))?
                    }
                };
                let runs = Vec::new();
                return Ok(Flushed { batch, runs });
            }
            Some(appended) => {
                let updates = appended.updates.collect::<Result<Vec<_>>>()?;
                Consolidated::from_updates_in(iter_buckets(drained).chain(updates.iter().copied()), scratch)?
            }
            None => Consolidated::from_updates_in(iter_buckets(drained), scratch)?,
        };
        if consumed.is_empty() {
            // Only the memtable: its updates are already sorted and consolidated, and every time in it is below
            // the upper (the buckets were drained below it), so it goes to the writer as is. (The k-way
            // merge below gives the same sequence, at about a sixth of a seal's CPU.)
            let (keys, count) = (unsealed.key_count() as u64, unsealed.len() as u64);
            let batch = self.write_file(batch_no, description, keys, count, unsealed.iter().map(Ok));
            unsealed.recycle(scratch);
            let batch = batch?;
            return Ok(Flushed {
                batch,
                runs: Vec::new(),
            });
        }
        let cursors = consumed
            .iter()
            .map(|b| UpdateCursor::new(b))
            .collect::<Result<Vec<_>>>()?;
        let keys = unsealed.key_count() as u64 + consumed.iter().map(|b| b.footer().key_count).sum::<u64>();
        let count = unsealed.len() as u64 + consumed.iter().map(|b| b.update_count()).sum::<u64>();
        let updates = MergeIter::new(cursors, Some(&unsealed), 0).with_times(0..description.upper);
        let batch = self.write_file(batch_no, description, keys, count, updates);
        unsealed.recycle(scratch);
        let batch = batch?;
        let remainder_upper = consumed.iter().map(|b| b.description().upper).max().unwrap_or(0);
        let Some(remainder_no) = remainder_no.filter(|_| remainder_upper > description.upper) else {
            return Ok(Flushed {
                batch,
                runs: Vec::new(),
            });
        };
        let span = (description.upper, remainder_upper);
        match self.write_remainder(consumed, remainder_no, span, (keys, count)) {
            Ok(r) => Ok(Flushed {
                batch,
                runs: r.into_iter().collect(),
            }),
            Err(e) => {
                if batch.is_some() {
                    let _ = self.inner.blob.delete(&batch_file_name(batch_no));
                }
                Err(e)
            }
        }
    }

    /// Writes `updates` (sorted, consolidated) as batch file `file_no` with `description`, sizing the key
    /// filter for about `keys` keys and compressing if about `count` updates reach the configured level.
    /// Returns `None`, writing nothing, when there are no updates.
    fn write_file<'a>(
        &self,
        file_no: u64,
        description: Description,
        keys: u64,
        count: u64,
        updates: impl Iterator<Item = Result<UpdateRef<'a>>>,
    ) -> Result<Option<Written>> {
        let mut updates = updates.peekable();
        if updates.peek().is_none() {
            return Ok(None);
        }
        let name = batch_file_name(file_no);
        let blob = &self.inner.blob;
        let options = &self.inner.options;
        let mut writer = BatchWriter::new(blob.create_new(&name)?, description, options.block_target_bytes)?;
        if options.filter_bits_per_key > 0 {
            writer = writer.with_filter(keys, options.filter_bits_per_key);
        }
        // A helper thread checksums, filters and writes the blocks while this thread sorts and builds the
        // next (as merges do): a large seal's `write` calls overlap its build.
        writer = writer
            .with_compression(options.compress(count))
            .with_background_io(true);
        for update in updates {
            let (k, v, t, d) = update?;
            writer.push(k, v, t, d)?;
        }
        let stats = writer.finish()?;
        let mut meta = BatchMeta {
            file_no,
            level: crate::compaction::level_of(stats.update_count),
            lower: description.lower,
            upper: description.upper,
            since: description.since,
            update_count: stats.update_count,
            size_bytes: stats.size_bytes,
            fingerprint: 0,
        };
        match open_written_batch(&**blob, &mut meta) {
            Ok(batch) => Ok(Some((Arc::new(batch), meta))),
            Err(e) => {
                // Not named by any manifest: safe to remove (and removed on the next open if this fails).
                let _ = blob.delete(&name);
                Err(e)
            }
        }
    }

    /// Step 3 of a spill: writes `drained` as runs of about `part_bytes` each, by time range. On error removes what it wrote.
    fn write_spill(&self, drained: &Buckets, part_bytes: usize) -> Result<Vec<Written>> {
        let mut parts: Vec<Vec<u64>> = vec![Vec::new()];
        let mut bytes = 0;
        for (&time, bucket) in drained {
            if bytes >= part_bytes {
                parts.push(Vec::new());
                bytes = 0;
            }
            bytes += bucket.bytes();
            if let Some(part) = parts.last_mut() {
                part.push(time);
            }
        }
        let mut written: Vec<Written> = Vec::new();
        for times in parts.iter().filter(|p| !p.is_empty()) {
            let (first, last) = (times[0], times[times.len() - 1]);
            match self.write_spill_part(drained, first, last) {
                Ok(w) => written.extend(w),
                Err(e) => {
                    for (_, meta) in &written {
                        let _ = self.inner.blob.delete(&batch_file_name(meta.file_no));
                    }
                    return Err(e);
                }
            }
        }
        Ok(written)
    }

    /// Writes the buckets of `drained` with times in `[first, last]` as one run.
    fn write_spill_part(&self, drained: &Buckets, first: u64, last: u64) -> Result<Option<Written>> {
        let run = Consolidated::from_updates_in(iter_buckets_in(drained, first..=last), &self.inner.scratch)?;
        let file_no = self.inner.state.lock().alloc_file_no()?;
        let description = Description {
            lower: first,
            upper: last + 1,
            since: 0,
        };
        let updates = run.iter().map(Ok);
        let written = self.write_file(
            file_no,
            description,
            run.key_count() as u64,
            run.len() as u64,
            updates,
        );
        run.recycle(&self.inner.scratch);
        written
    }

    /// The updates at or beyond `from` of the runs `consumed`, rewritten as one run up to `upper`.
    fn write_remainder(
        &self,
        consumed: &[Arc<BatchFile>],
        file_no: u64,
        (from, upper): (u64, u64),
        (keys, count): (u64, u64),
    ) -> Result<Option<Written>> {
        let cursors = consumed
            .iter()
            .map(|b| UpdateCursor::new(b))
            .collect::<Result<Vec<_>>>()?;
        let rest = Description {
            lower: from,
            upper,
            since: 0,
        };
        let updates = MergeIter::new(cursors, None, 0).with_times(rest.lower..rest.upper);
        self.write_file(file_no, rest, keys, count, updates)
    }

    /// Puts a failed flush's buckets back into the memtable (and a seal's `pending_upper` back to `lower`,
    /// or to the newest logged seal's upper).
    fn abort_flush(&self, id: &str, lower: Option<u64>) {
        let mut state = self.inner.state.lock();
        if let Some(stream) = state.streams.get_mut(id) {
            if let Some(drained) = stream.flushing.take() {
                // A snapshot may briefly share the bucket index; then restore a copy of it.
                let drained = Arc::try_unwrap(drained).unwrap_or_else(|shared| (*shared).clone());
                stream.memtable.restore(drained);
            }
            stream.flushing_min_lsn = None;
            if let Some(lower) = lower {
                // Not below a logged seal: that one is durable in the WAL, flushed or not.
                stream.pending_upper = lower.max(stream.logged.back().map_or(0, |l| l.upper));
            }
        }
    }
}

/// Undoes step 1 of a flush that did not commit (see [`Store::flush`]): puts the buckets back, restores
/// `pending_upper`, and removes the files it wrote — unless the store is poisoned (a failed manifest
/// commit may have named them: the next open decides).
struct FlushGuard<'s> {
    store: &'s Store,
    id: &'s str,
    /// A seal's lower (its `pending_upper` goes back to it); `None` for a spill.
    lower: Option<u64>,
    written: Vec<String>,
    armed: bool,
}

impl Drop for FlushGuard<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        self.store.abort_flush(self.id, self.lower);
        if self.store.inner.state.lock().poisoned.is_none() {
            for name in &self.written {
                // Named by no manifest: an orphan the next open removes if this fails.
                let _ = self.store.inner.blob.delete(name);
            }
        }
    }
}

impl StreamState {
    /// Step 1 of a flush: takes the memtable's buckets below `upper` into `flushing` (still visible to
    /// readers) and returns them.
    pub(super) fn begin_flush(&mut self, upper: u64) -> Arc<Buckets> {
        debug_assert!(
            self.flushing.is_none(),
            "two flushes of one stream (edit_lock is held)"
        );
        let drained = Arc::new(self.memtable.drain_below(upper));
        self.flushing_min_lsn = min_lsn(&drained);
        self.flushing = Some(drained.clone());
        drained
    }
}

/// The file number in a batch file's name (its name ends in the blob object name).
pub(super) fn file_no_of(batch: &BatchFile) -> Option<u64> {
    let name = batch.name().rsplit('/').next()?;
    parse_batch_file_name(name)
}
