//! Running one merge: [`merge_batches`] streams the inputs into a new batch file; `merge_once` picks the
//! inputs by the policy and writes the output (steps 1 and 2 of the protocol in the module docs of
//! `compaction`; step 3 is `commit`); `Store::compact` runs every merge due.

use super::key_merge::KeyMerge;
use super::*;
use crate::batch::{batch_file_name, BatchFile, BatchStats, BatchWriter, Description};
use crate::blob::BlobWriter;
use crate::store::Options;
use crate::version::BatchMeta;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Which batches [`Store::merge_once`] merges.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The merge the policy finds due, if any.
    Due,
    /// All of the stream's batches, if there are two or more (a major compaction).
    Whole,
    /// While another merge of the stream runs, among the batches newer than that merge's inputs: past the
    /// back-pressure bound their adjacent pair with the fewest updates, else their newest due merge
    /// ([`pick_tail`]); nothing when no merge runs.
    Tail,
}

/// What [`Store::merge_once`] did.
pub(crate) enum Step {
    /// Ran a merge and committed it.
    Merged,
    /// Another merge of the stream was in flight: nothing picked (the caller waits and tries again).
    Busy,
    /// Nothing to merge (or the stream is gone, or the store is stopping).
    Nothing,
}

/// Clears a stream's `merging` (or, for a tail merge, `tail_merging`) flag however a merge ends (unless
/// the stream was dropped meanwhile: a stream created again under its id, another number, is not its).
struct MergingGuard<'a> {
    store: &'a Store,
    id: &'a str,
    stream_no: u32,
    tail: bool,
}

impl Drop for MergingGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.store.inner.state.lock();
        let stream = state.streams.get_mut(self.id);
        if let Some(s) = stream.filter(|s| s.version.stream_no() == self.stream_no) {
            match self.tail {
                true => s.tail_merging = false,
                false => s.merging = false,
            }
        }
        self.store.inner.batches_changed.notify_all();
    }
}

impl Store {
    /// Runs every merge due for stream `id` now, on this thread, first writing the batches of its logged
    /// seals not yet written ([`Store::complete_seals`]; a failure there is recorded as a background
    /// error, not returned) and waiting for a background merge of the stream in flight; returns how many
    /// merges this call ran. When it returns, no merge of the stream is due
    /// (unless the store is shutting down). (Background workers merge after each seal; this is for
    /// callers that want a compacted stream at a known point.)
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], I/O and [`Error::Corrupt`] errors of the
    /// batches; [`Error::DiffOverflow`] if advancing times to the stream's `since` makes the updates of
    /// one `(key, val, time)` sum outside `i64`: that merge writes nothing and its inputs stay as they
    /// are (readable; a lookup at or beyond the time reports the same overflow).
    pub fn compact(&self, id: &str) -> Result<usize> {
        // A failed flush of a logged seal is its own (recorded, retried), not a failed merge: the merges
        // of the batches there are go on.
        if let Err(e) = self.flush_logged(id) {
            if matches!(e, Error::UnknownStream { .. } | Error::Poisoned { .. }) {
                return Err(e);
            }
            self.record_flush_failure(id, &e);
        }
        self.merge_while_due(id, Scope::Due, usize::MAX)
    }

    /// A major compaction (Bigtable's term: every file of a tablet rewritten into one): runs every merge
    /// due, as [`compact`](Self::compact) does, then merges all of stream `id`'s batches into one, so that
    /// a lookup probes one batch's key filter and searches one batch instead of one per batch (about 65 ns
    /// a batch at 10 M updates, BENCHMARKS.md, "Major compaction"; spilled runs and unsealed updates are
    /// read as before), and a DD cursor walks one batch. For a stream whose writers have gone quiet, after
    /// a bulk load, or before serving reads from it (the policy never does it on its own: it cannot tell a
    /// pause from the end of ingest).
    ///
    /// Costs: the due merges, then one rewrite of the whole stream (its bytes written once more). While
    /// that merge runs (seconds for gigabytes) no other merge of the stream can but tail merges of the
    /// batches sealed since it started, run by seals that find the stream past
    /// `Options::max_batches_per_stream` (two or more such batches are needed: until then those seals wait
    /// for it); batches sealed meanwhile stay beside its output. A merge thread that takes up the stream
    /// meanwhile waits for it too, and with the default single merge thread the other streams' merges wait
    /// behind it. Times are advanced to the stream's
    /// `since`, as in every merge, in the batches it rewrites: a stream already of one batch is left as it
    /// is. Returns how many merges ran (0 when the stream has
    /// at most one batch and none is due, or the store is shutting down).
    ///
    /// Errors: as [`compact`](Self::compact); [`Error::DiffOverflow`] if the whole stream's updates of one
    /// `(key, val, time)` at `since` sum outside `i64` (where merges of fewer batches might not): the
    /// batches stay as they are.
    pub fn major_compact(&self, id: &str) -> Result<usize> {
        Ok(self.compact(id)? + self.merge_while_due(id, Scope::Whole, 1)?)
    }

    /// Runs merges of stream `id` over `scope`, up to `limit` of them, until none is left to pick or the
    /// store stops; before each pick it waits for a merge in flight (a background merge that starts
    /// between the wait and the pick is waited for too). Returns how many it ran.
    pub(crate) fn merge_while_due(&self, id: &str, scope: Scope, limit: usize) -> Result<usize> {
        let mut merges = 0;
        while merges < limit && !self.inner.stopping.load(Ordering::Relaxed) {
            self.wait_for_merge_in_flight(id)?;
            match self.merge_once(id, scope)? {
                Step::Merged => merges += 1,
                Step::Busy => {}
                Step::Nothing => break,
            }
        }
        Ok(merges)
    }

    /// Waits while a merge (or tail merge) of stream `id` is in flight. Errors: [`Error::UnknownStream`],
    /// [`Error::Poisoned`].
    pub(crate) fn wait_for_merge_in_flight(&self, id: &str) -> Result<()> {
        let mut state = self.live_state()?;
        loop {
            let stream = state
                .streams
                .get(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if !stream.merging && !stream.tail_merging {
                return Ok(());
            }
            self.inner
                .batches_changed
                .wait_for(&mut state, Duration::from_millis(100));
        }
    }

    /// Runs one merge of stream `id` over `scope` if there is one; returns what it did. A tail merge
    /// (`Scope::Tail`) runs only beside another merge of the stream, on batches newer than its inputs; the
    /// other scopes run only when no merge of the stream runs.
    pub(crate) fn merge_once(&self, id: &str, scope: Scope) -> Result<Step> {
        let tail = scope == Scope::Tail;
        let (inputs, input_nos, description, stream_no, file_no) = {
            let mut state = self.live_state()?;
            let Some(stream) = state.streams.get_mut(id) else {
                return Ok(Step::Nothing);
            };
            if stream.dropping {
                return Ok(Step::Nothing);
            }
            if stream.tail_merging || (stream.merging && !tail) {
                return Ok(Step::Busy);
            }
            if tail && !stream.merging {
                return Ok(Step::Nothing);
            }
            let version = stream.version.clone();
            let since = version.since();
            let counts: Vec<u64> = version.batches().iter().map(|b| b.update_count()).collect();
            let bound = self.inner.options.max_batches_per_stream.max(2);
            let fan_in = self.inner.options.merge_fan_in;
            let space_amp = self.inner.options.max_space_amplification_percent;
            let pick = match scope {
                Scope::Whole => (counts.len() >= 2).then_some(Pick {
                    start: 0,
                    len: counts.len(),
                }),
                Scope::Due => space_amp
                    .and_then(|percent| pick_space_amp(&counts, percent))
                    .or_else(|| pick_merge_bounded(&counts, fan_in, bound, &mut stream.merge_turn)),
                Scope::Tail => {
                    // Batches are only ever appended or replaced by a merge's output, so the running
                    // merge's newest input is still there, and everything after it is newer.
                    let through = stream.merging_through;
                    let at = version.meta().batches.iter().position(|b| b.file_no == through);
                    at.and_then(|at| pick_tail(&counts, at + 1, fan_in, bound))
                }
            };
            let Some(pick) = pick else {
                return Ok(Step::Nothing);
            };
            let range = pick.start..pick.start + pick.len;
            let inputs = version.batches()[range.clone()].to_vec();
            let input_nos: Vec<u64> = version.meta().batches[range].iter().map(|b| b.file_no).collect();
            if tail {
                stream.tail_merging = true;
            } else {
                stream.merging = true;
                stream.merging_through = input_nos[input_nos.len() - 1];
            }
            let description = Description {
                lower: inputs[0].description().lower,
                upper: inputs[inputs.len() - 1].description().upper,
                since,
            };
            let stream_no = version.stream_no();
            (inputs, input_nos, description, stream_no, state.alloc_file_no())
        };
        let _merging = MergingGuard {
            store: self,
            id,
            stream_no,
            tail,
        };
        let file_no = file_no?;
        let name = batch_file_name(file_no);
        let blob = &self.inner.blob;
        let out = blob.create_new(&name)?;
        let Some(stats) = merge_batches(
            &inputs,
            description,
            out,
            &self.inner.options,
            &self.inner.stopping,
        )
        .map_err(|e| e.in_stream(id))?
        else {
            // Stopped: the output is discarded (the merge is due again at the next open).
            return Ok(Step::Nothing);
        };
        let output = if stats.update_count == 0 {
            // Everything cancelled out: the inputs are replaced by nothing (a gap in the batch list).
            let _ = blob.delete(&name);
            None
        } else {
            let mut meta = BatchMeta {
                file_no,
                level: level_of(stats.update_count),
                lower: description.lower,
                upper: description.upper,
                since: description.since,
                update_count: stats.update_count,
                size_bytes: stats.size_bytes,
                fingerprint: 0,
            };
            match crate::version::open_written_batch(&**blob, &mut meta) {
                Ok(batch) => Some((Arc::new(batch), meta)),
                Err(e) => {
                    let _ = blob.delete(&name);
                    return Err(e);
                }
            }
        };
        self.commit_merge((id, stream_no), &inputs, input_nos, output, file_no)?;
        Ok(Step::Merged)
    }
}
