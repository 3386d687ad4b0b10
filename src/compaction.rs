//! Compaction: merging a stream's batches into fewer, larger ones, and advancing times to the stream's
//! `since` while doing so (logical compaction).
//!
//! **Policy** (tiered, as in Cassandra's size-tiered and RocksDB's universal compaction; with fan-in 2 it
//! is differential dataflow's Spine, a binary counter). A batch's level is `floor(log2(updates))`, its tier
//! `level / log2(fan_in)` (`Options::merge_fan_in`, default 8). Batches are ordered by time; `fan_in`
//! adjacent batches of one tier are merged into one of the next tier, and an older batch of a lower tier
//! than its newer neighbour (consolidation shrank it) is merged with it. The newest due merge runs, and
//! every fourth pick the oldest, so big merges are not starved by the small ones new seals keep making due
//! ([`pick_merge_fair`]). A stream of n updates sealed in chunks of s keeps fewer than `fan_in` batches per
//! tier over `log_fan_in(n / s)` tiers, and each update is rewritten about `log_fan_in(n / s)` times: a
//! third of the binary counter's rewrites at fan-in 8, for at most 7 batches per tier.
//!
//! **Merge.** [`merge_batches`] streams the inputs through their mmaps ([`KeyMerge`], a key at a time) into
//! a [`BatchWriter`] whose helper thread serialises and writes the output blocks while this thread merges:
//! memory is one block per input plus a few output blocks and a 1 MiB output chunk, never a whole batch.
//! Times below `since` become `since`; equal `(key, val, time)` are summed and zeros dropped.
//!
//! **Protocol** (one merge of stream S, inputs A..B adjacent in S's batch list):
//! 1. under `state`: pick A..B; mark S as merging (one merge per stream at a time); allocate a file number;
//! 2. no lock: write the output `N.batch.tmp`, fsync, rename to `N.batch`, fsync the directory; open it;
//! 3. under `seal_lock` (no seal or other commit interleaves): write the manifest with A..B replaced by N
//!    (temp, fsync, rename, fsync dir); then publish in memory and mark the inputs to be deleted when their
//!    last reader drops them.
//!
//! A crash before 3's rename leaves the old manifest and an orphan `N.batch` (removed on open); after it, the
//! new manifest and orphan inputs (removed on open). Never a mix, never a lost update. A failure in 2 leaves
//! everything as it was; a failure in 3 poisons the store (the manifest's fate is unknown until reopen).
//!
//! **Threads.** `Workers` runs `Options::compaction_threads` background threads fed by a queue of streams
//! that sealed. `seal` waits only when a stream has more than `Options::max_batches_per_stream` batches
//! (back-pressure); past that bound a merge is always due, of the adjacent pair with the fewest updates
//! if none is due by size ([`pick_merge_bounded`]). With zero threads, merges run inside `seal`.

use crate::batch::{batch_file_name, BatchFile, BatchStats, BatchWriter, Description};
use crate::blob::BlobWriter;
use crate::error::{Error, Result};
use crate::manifest::BatchMeta;
use crate::merge::KeyMerge;
use crate::store::{Inner, Options, Store};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A batch's level: `floor(log2(update_count))` (0 for 0 or 1 updates).
pub fn level_of(update_count: u64) -> u32 {
    63 - update_count.max(1).leading_zeros()
}

/// A batch's tier under merge fan-in `fan_in` (a power of two from 2 to 64): `level / log2(fan_in)`, so
/// merging `fan_in` batches of one tier makes one batch of the next tier.
pub fn tier_of(update_count: u64, fan_in: usize) -> u32 {
    level_of(update_count) / fan_in_bits(fan_in)
}

/// `log2(fan_in)` for a fan-in clamped to a power of two in `2..=64`.
fn fan_in_bits(fan_in: usize) -> u32 {
    let fan_in = fan_in.clamp(2, 64);
    63 - (fan_in as u64).leading_zeros()
}

/// A merge the policy picks: `len` adjacent batches starting at `start` (oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// Index of the oldest input.
    pub start: usize,
    /// Number of inputs (at least 2).
    pub len: usize,
}

/// The due merges of a stream whose batches have `update_counts` (oldest first), newest first: runs of
/// `fan_in` adjacent batches of one tier, and adjacent pairs whose older batch is of a lower tier than the
/// newer (an inversion, after consolidation shrank a batch). A tiered policy (as in Cassandra's STCS and
/// RocksDB's universal compaction): each update is rewritten about `log_fan_in(n / seal size)` times, and a
/// stream keeps fewer than `fan_in` batches per tier.
fn due_merges(update_counts: &[u64], fan_in: usize) -> impl DoubleEndedIterator<Item = Pick> + '_ {
    let fan_in = 1usize << fan_in_bits(fan_in);
    let tiers: Vec<u32> = update_counts.iter().map(|&c| tier_of(c, fan_in)).collect();
    (0..update_counts.len().saturating_sub(1)).filter_map(move |i| {
        if tiers[i] < tiers[i + 1] {
            return Some(Pick { start: i, len: 2 });
        }
        let run = tiers.get(i..i + fan_in)?;
        run.iter().all(|&t| t == tiers[i]).then_some(Pick {
            start: i,
            len: fan_in,
        })
    })
}

/// Which merge to run next, if any: the newest due merge (the cheap ones new seals make due), except that
/// every [`FAIR_EVERY`]th pick, when an older merge is due too, it is the oldest — so a big merge is never
/// starved by small ones (with newest-first only, space amplification reached 8.5 over 10 M updates; with
/// oldest-first only, small batches piled up to the back-pressure bound). `turn` counts the picks.
pub fn pick_merge_fair(update_counts: &[u64], fan_in: usize, turn: &mut u32) -> Option<Pick> {
    let newest = due_merges(update_counts, fan_in).next_back()?;
    let oldest = due_merges(update_counts, fan_in).next().unwrap_or(newest);
    if oldest == newest {
        return Some(newest);
    }
    *turn += 1;
    if *turn >= FAIR_EVERY {
        *turn = 0;
        return Some(oldest);
    }
    Some(newest)
}

/// How often [`pick_merge_fair`] takes the oldest due merge when an older one than the newest is due.
pub const FAIR_EVERY: u32 = 4;

/// The newest due merge, if any: whether a merge is due at all (the policy's fixpoint is `None`).
pub fn pick_merge(update_counts: &[u64], fan_in: usize) -> Option<Pick> {
    due_merges(update_counts, fan_in).next_back()
}

/// [`pick_merge_fair`], and beyond it, when there are more than `bound` batches, the adjacent pair with the
/// fewest updates: the back-pressure bound on the batch count holds even when no merge is due by size.
pub fn pick_merge_bounded(
    update_counts: &[u64],
    fan_in: usize,
    bound: usize,
    turn: &mut u32,
) -> Option<Pick> {
    pick_merge_fair(update_counts, fan_in, turn).or_else(|| {
        (update_counts.len() > bound)
            .then(|| (0..update_counts.len() - 1).min_by_key(|&i| update_counts[i] + update_counts[i + 1]))
            .flatten()
            .map(|start| Pick { start, len: 2 })
    })
}

/// How often (in updates) a merge checks whether the store is shutting down.
const CANCEL_CHECK_UPDATES: usize = 4096;

/// Merges `inputs` (adjacent batches, oldest first) into `out` with `description`, advancing times below
/// `description.since`. Returns `None`, discarding the output, if `stop` is set midway.
///
/// Errors: I/O and [`Error::Corrupt`] errors; [`Error::DiffOverflow`] (its stream not named) if the updates
/// of one `(key, val, time)`, times advanced, sum outside `i64`. On error the output is discarded.
pub fn merge_batches(
    inputs: &[Arc<BatchFile>],
    description: Description,
    out: Box<dyn BlobWriter>,
    options: &Options,
    stop: &AtomicBool,
) -> Result<Option<BatchStats>> {
    let batches: Vec<&BatchFile> = inputs.iter().map(|b| &**b).collect();
    let mut merge = KeyMerge::new(&batches, description.since)?;
    let mut writer = BatchWriter::new(out, description, options.block_target_bytes)?;
    if options.filter_bits_per_key > 0 {
        // The inputs' key counts bound the output's (keys only ever consolidate away).
        let keys = inputs.iter().map(|b| b.footer().key_count).sum();
        writer = writer.with_filter(keys, options.filter_bits_per_key);
    }
    // A helper thread writes the output's blocks while this one merges (see `BatchWriter`).
    writer = writer
        .with_compression(options.compress(inputs.iter().map(|b| b.update_count()).sum()))
        .with_background_io(true);
    let updates = std::cell::Cell::new(0usize);
    let mut emit = |k: &[u8], v: &[u8], t: u64, d: i64| {
        updates.set(updates.get() + 1);
        writer.push(k, v, t, d)
    };
    let mut checked = 0usize;
    while merge.next_key(&mut emit)? {
        // Checked between keys, once `CANCEL_CHECK_UPDATES` updates have passed since the last check.
        if updates.get() - checked >= CANCEL_CHECK_UPDATES {
            checked = updates.get();
            if stop.load(Ordering::Relaxed) {
                return Ok(None);
            }
        }
    }
    writer.finish().map(Some)
}

/// The background merge threads of one store, stopped and joined on drop.
pub(crate) struct Workers {
    queue: Arc<Queue>,
    threads: Vec<JoinHandle<()>>,
    /// The store, to tell running merges to stop when the last user handle drops.
    inner: Arc<Inner>,
}

struct Queue {
    /// Streams with merges possibly due, and whether to stop.
    pending: Mutex<(VecDeque<String>, bool)>,
    wake: Condvar,
}

impl Workers {
    /// Starts `options.compaction_threads` threads merging for the store `inner`.
    pub(crate) fn start(inner: &Arc<Inner>) -> Workers {
        let queue = Arc::new(Queue {
            pending: Mutex::new((VecDeque::new(), false)),
            wake: Condvar::new(),
        });
        let threads = (0..inner.options.compaction_threads)
            .map(|n| {
                let (store, queue) = (Store::worker_handle(inner.clone()), queue.clone());
                std::thread::Builder::new()
                    .name(format!("ddpersist-compact-{n}"))
                    .spawn(move || worker_loop(store, queue))
            })
            .filter_map(|spawned| spawned.ok())
            .collect();
        Workers {
            queue,
            threads,
            inner: inner.clone(),
        }
    }

    fn push(&self, id: &str) {
        let mut pending = self.queue.pending.lock();
        if !pending.0.iter().any(|p| p == id) {
            pending.0.push_back(id.to_string());
        }
        self.queue.wake.notify_one();
    }

    fn has_threads(&self) -> bool {
        !self.threads.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Running merges check this every few thousand updates and discard their output (the merge is
        // due again at the next open).
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.queue.pending.lock().1 = true;
        self.queue.wake.notify_all();
        for t in self.threads.drain(..) {
            // A worker that panicked has nothing left to clean up; the store's state is consistent.
            let _ = t.join();
        }
    }
}

fn worker_loop(store: Store, queue: Arc<Queue>) {
    loop {
        let id = {
            let mut pending = queue.pending.lock();
            loop {
                if pending.1 {
                    return;
                }
                if let Some(id) = pending.0.pop_front() {
                    break id;
                }
                queue.wake.wait(&mut pending);
            }
        };
        let result = store.compact(&id);
        store.merge_outcome(&id, result);
    }
}

/// Clears a stream's `merging` flag however a merge ends.
struct MergingGuard<'a> {
    store: &'a Store,
    id: &'a str,
}

impl Drop for MergingGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.store.inner.state.lock().streams.get_mut(self.id) {
            s.merging = false;
        }
        self.store.inner.batches_changed.notify_all();
    }
}

impl Store {
    /// Runs every merge due for stream `id` now, on this thread, first waiting for a background merge of
    /// the stream in flight; returns how many merges this call ran. When it returns, no merge of the stream
    /// is due (unless the store is shutting down). (Background workers merge after each seal; this is for
    /// callers that want a compacted stream at a known point.)
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], I/O and [`Error::Corrupt`] errors of the
    /// batches; [`Error::DiffOverflow`] if advancing times to the stream's `since` makes the updates of
    /// one `(key, val, time)` sum outside `i64`: that merge writes nothing and its inputs stay as they
    /// are (readable; a lookup at or beyond the time reports the same overflow).
    pub fn compact(&self, id: &str) -> Result<usize> {
        let mut merges = 0;
        while !self.inner.stopping.load(Ordering::Relaxed) {
            {
                let mut state = self.live_state()?;
                loop {
                    let stream = state
                        .streams
                        .get(id)
                        .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
                    if !stream.merging {
                        break;
                    }
                    self.inner
                        .batches_changed
                        .wait_for(&mut state, Duration::from_millis(100));
                }
            }
            if !self.merge_once(id)? {
                // A background merge may have started between the wait and the pick: wait for it too.
                if self.live_state()?.streams.get(id).is_some_and(|s| s.merging) {
                    continue;
                }
                break;
            }
            merges += 1;
        }
        Ok(merges)
    }

    /// Allows merges to advance times below `since` to `since` (and so to consolidate updates whose diffs
    /// then sum to zero). Reads at times at or beyond `since` are unaffected. Durable when it returns.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `since` is below the stream's current since
    /// (it never goes backward) or is `u64::MAX`.
    pub fn allow_compaction(&self, id: &str, since: u64) -> Result<()> {
        if since == crate::FRONTIER_CLOSED {
            return Err(Error::bad_input(
                "since u64::MAX is reserved for the closed frontier",
            ));
        }
        let _seal = self.inner.seal_lock.lock();
        let mut next = {
            let state = self.live_state()?;
            let meta = state
                .manifest
                .stream(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if since < meta.since {
                return Err(Error::bad_input(format!(
                    "since {since} of {id:?} is below its current since {}; since never goes backward",
                    meta.since
                )));
            }
            if since == meta.since {
                return Ok(());
            }
            state.manifest.clone()
        };
        next.generation += 1;
        if let Some(s) = next.streams.iter_mut().find(|s| s.id == id) {
            s.since = since;
        }
        self.commit_manifest(&next, &format!("allow_compaction of {id:?}"))?;
        self.inner.state.lock().manifest = next;
        Ok(())
    }

    /// The since of stream `id`: merges may have advanced times below it to it.
    pub fn since(&self, id: &str) -> Result<u64> {
        let state = self.live_state()?;
        state
            .manifest
            .stream(id)
            .map(|s| s.since)
            .ok_or_else(|| Error::UnknownStream { id: id.to_string() })
    }

    /// The last failure of a background merge, if any. Merges are retried after the next seal; the store
    /// keeps working (with more batches) meanwhile.
    pub fn background_error(&self) -> Option<String> {
        self.inner.state.lock().background_error.clone()
    }

    /// Records how a background (or inline) run of merges of stream `id` ended: a failure is reported by
    /// [`background_error`](Self::background_error) and lets seals past the back-pressure bound go on
    /// without waiting for merges; a success makes them wait again.
    pub(crate) fn merge_outcome(&self, id: &str, result: Result<usize>) {
        match result {
            Ok(_) => {
                self.inner.state.lock().merges_failing = false;
            }
            Err(e) => {
                self.inner.state.lock().merges_failing = true;
                self.record_background_error(format!("merge of stream {id:?} failed: {e}"));
            }
        }
    }

    pub(crate) fn record_background_error(&self, detail: String) {
        self.inner.state.lock().background_error = Some(detail);
        self.inner.batches_changed.notify_all();
    }

    /// Queues stream `id` for the background workers, or merges inline when there are none.
    pub(crate) fn schedule_compaction(&self, id: &str) {
        match &self.handle {
            Some(workers) if workers.has_threads() => workers.push(id),
            _ => {
                let result = self.compact(id);
                self.merge_outcome(id, result);
            }
        }
    }

    /// Queues every stream (after open: merges a crash interrupted are due again).
    pub(crate) fn schedule_compaction_all(&self) {
        for id in self.streams() {
            self.schedule_compaction(&id);
        }
    }

    /// Back-pressure: waits while stream `id` has more batches than the configured bound and background
    /// merges are making progress.
    pub(crate) fn wait_for_merges(&self, id: &str) -> Result<()> {
        let bound = self.inner.options.max_batches_per_stream.max(2);
        let mut state = self.live_state()?;
        loop {
            let Some(stream) = state.streams.get(id) else {
                return Ok(());
            };
            if stream.batches.len() <= bound || state.merges_failing || state.poisoned.is_some() {
                return Ok(());
            }
            let workers = self.handle.as_ref().filter(|w| w.has_threads());
            let Some(workers) = workers else {
                drop(state);
                return match self.compact(id) {
                    // A merge whose sum is out of range fails every time: record it as a background merge
                    // would, rather than fail the seal (whose own updates are not at fault).
                    Err(e @ Error::DiffOverflow { .. }) => {
                        self.record_background_error(format!("merge of stream {id:?} failed: {e}"));
                        Ok(())
                    }
                    other => other.map(|_| ()),
                };
            };
            // Over the bound a merge is always due (`pick_merge_bounded`); make sure a worker is on it.
            if !stream.merging {
                workers.push(id);
            }
            self.inner
                .batches_changed
                .wait_for(&mut state, Duration::from_millis(100));
        }
    }

    /// Runs one merge of stream `id` if one is due; returns whether it did.
    fn merge_once(&self, id: &str) -> Result<bool> {
        let (inputs, input_nos, description, file_no) = {
            let mut state = self.live_state()?;
            let since = state.manifest.stream(id).map_or(0, |s| s.since);
            let metas: Vec<u64> = state
                .manifest
                .stream(id)
                .map_or(Vec::new(), |s| s.batches.iter().map(|b| b.file_no).collect());
            let Some(stream) = state.streams.get_mut(id) else {
                return Ok(false);
            };
            debug_assert_eq!(
                metas.len(),
                stream.batches.len(),
                "batch list and manifest disagree"
            );
            if stream.merging || metas.len() != stream.batches.len() {
                return Ok(false);
            }
            let counts: Vec<u64> = stream.batches.iter().map(|b| b.update_count()).collect();
            let bound = self.inner.options.max_batches_per_stream.max(2);
            let fan_in = self.inner.options.merge_fan_in;
            let Some(pick) = pick_merge_bounded(&counts, fan_in, bound, &mut stream.merge_turn) else {
                return Ok(false);
            };
            let range = pick.start..pick.start + pick.len;
            let inputs = stream.batches[range.clone()].to_vec();
            stream.merging = true;
            let description = Description {
                lower: inputs[0].description().lower,
                upper: inputs[inputs.len() - 1].description().upper,
                since,
            };
            (inputs, metas[range].to_vec(), description, state.alloc_file_no())
        };
        let _merging = MergingGuard { store: self, id };
        let name = batch_file_name(file_no);
        let blob = &self.inner.blob;
        let out = blob.create(&name)?;
        let Some(stats) = merge_batches(
            &inputs,
            description,
            out,
            &self.inner.options,
            &self.inner.stopping,
        )
        .map_err(|e| e.in_stream(id))?
        else {
            return Ok(false);
        };
        let output = if stats.update_count == 0 {
            // Everything cancelled out: the inputs are replaced by nothing (a gap in the batch list).
            let _ = blob.delete(&name);
            None
        } else {
            let meta = BatchMeta {
                file_no,
                level: level_of(stats.update_count),
                lower: description.lower,
                upper: description.upper,
                since: description.since,
                update_count: stats.update_count,
                size_bytes: stats.size_bytes,
            };
            match super::store::open_batch(&**blob, &meta) {
                Ok(batch) => Some((Arc::new(batch), meta)),
                Err(e) => {
                    let _ = blob.delete(&name);
                    return Err(e);
                }
            }
        };
        self.commit_merge(id, &inputs, input_nos, output, file_no)?;
        Ok(true)
    }

    /// Step 3 of the protocol: swap the inputs for the output in the manifest, then in memory.
    fn commit_merge(
        &self,
        id: &str,
        inputs: &[Arc<BatchFile>],
        input_nos: Vec<u64>,
        output: Option<(Arc<BatchFile>, BatchMeta)>,
        file_no: u64,
    ) -> Result<()> {
        let _seal = self.inner.seal_lock.lock();
        let mut next = self.live_state()?.manifest.clone();
        let stream = next.streams.iter_mut().find(|s| s.id == id);
        let n = input_nos.len();
        let at = stream.and_then(|s| {
            let at = s.batches.iter().position(|b| b.file_no == input_nos[0])?;
            let found: Vec<u64> = s.batches.get(at..at + n)?.iter().map(|b| b.file_no).collect();
            (found == input_nos).then(|| {
                s.batches.splice(at..at + n, output.as_ref().map(|o| o.1));
                at
            })
        });
        // Only this merge removes these batches, and seals only append, so they are still adjacent.
        let Some(at) = at else {
            return Err(Error::corrupt(
                "MANIFEST",
                0,
                format!("merge inputs of {id:?} vanished"),
            ));
        };
        next.generation += 1;
        next.next_file_no = next.next_file_no.max(file_no + 1);
        self.commit_manifest(&next, &format!("a merge of {id:?}"))?;
        let mut state = self.inner.state.lock();
        state.manifest = next;
        if let Some(stream) = state.streams.get_mut(id) {
            debug_assert!(Arc::ptr_eq(&stream.batches[at], &inputs[0]));
            stream.batches.splice(at..at + n, output.map(|o| o.0));
        }
        for (input, no) in inputs.iter().zip(input_nos) {
            input.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_of(0), 0);
        assert_eq!(level_of(1), 0);
        assert_eq!(level_of(2), 1);
        assert_eq!(level_of(1023), 9);
        assert_eq!(level_of(1024), 10);
    }

    /// Simulates sealing equal chunks of `chunk` updates `seals` times and merging whatever is due after
    /// each seal; returns (most batches at once, updates rewritten by merges).
    fn simulate(fan_in: usize, chunk: u64, seals: usize) -> (usize, u64) {
        let mut batches: Vec<u64> = Vec::new();
        let (mut most, mut rewritten) = (0, 0);
        for _ in 0..seals {
            batches.push(chunk);
            while let Some(p) = pick_merge(&batches, fan_in) {
                let merged: u64 = batches[p.start..p.start + p.len].iter().sum();
                rewritten += merged;
                batches.splice(p.start..p.start + p.len, [merged]);
            }
            most = most.max(batches.len());
        }
        assert_eq!(batches.iter().sum::<u64>(), chunk * seals as u64);
        (most, rewritten)
    }

    #[test]
    fn fan_in_2_behaves_like_a_binary_counter() {
        let (most, _) = simulate(2, 100, 1000);
        assert!(most <= 11, "{most} batches");
    }

    #[test]
    fn a_higher_fan_in_rewrites_less_and_bounds_batches_per_tier() {
        let seals = 1000;
        let (most2, rewritten2) = simulate(2, 10_000, seals);
        let (most8, rewritten8) = simulate(8, 10_000, seals);
        // log2(1000) ~ 10 rewrites per update against log8(1000) ~ 3.3.
        assert!(rewritten8 * 5 < rewritten2 * 2, "{rewritten8} vs {rewritten2}");
        assert!(most8 <= 7 * 4 + 1, "{most8} batches at fan-in 8 ({most2} at 2)");
    }

    #[test]
    fn the_bound_forces_the_cheapest_merge() {
        let mut turn = 0;
        let pair = |start| Some(Pick { start, len: 2 });
        assert_eq!(pick_merge_bounded(&[8, 4, 2], 2, 3, &mut turn), None);
        assert_eq!(pick_merge_bounded(&[8, 4, 2], 2, 2, &mut turn), pair(1));
        assert_eq!(pick_merge_bounded(&[100, 2, 30, 1], 2, 2, &mut turn), pair(1));
    }

    #[test]
    fn an_old_due_merge_gets_its_turn() {
        // Pairs (0, 1) and (2, 3) are both due: mostly the newest, every FAIR_EVERY-th pick the oldest.
        let counts = [100, 100, 10, 10];
        let mut turn = 0;
        let picks: Vec<usize> = (0..8)
            .filter_map(|_| pick_merge_fair(&counts, 2, &mut turn))
            .map(|p| p.start)
            .collect();
        assert_eq!(picks, vec![2, 2, 2, 0, 2, 2, 2, 0]);
    }

    #[test]
    fn nothing_to_merge() {
        let pick = |start, len| Some(Pick { start, len });
        assert_eq!(pick_merge(&[], 2), None);
        assert_eq!(pick_merge(&[5], 2), None);
        assert_eq!(pick_merge(&[1000, 10], 2), None);
        assert_eq!(pick_merge(&[1000, 10, 10], 2), pick(1, 2));
        // Fan-in 4: three batches of one tier wait for a fourth; an inversion merges at once.
        assert_eq!(pick_merge(&[64, 64, 64], 4), None);
        assert_eq!(pick_merge(&[64, 64, 64, 64], 4), pick(0, 4));
        assert_eq!(pick_merge(&[1000, 4, 64], 4), pick(1, 2));
    }
}
