//! Who writes a stream: at most one live writer per stream ([`Store::claim_writer`]), which streams this
//! open of the store created ([`Store::created_here`]), and dropping a stream's unsealed updates at a
//! restart ([`Store::discard_unsealed`]).
//!
//! These serve the restart protocol of the dataflow operators (`operators::resume`): an operator claims
//! its stream for its life, so one arrangement id used twice is refused when the second dataflow is built
//! instead of two operators writing one stream; and a stream created by an earlier open tells a worker
//! that the directory was written by some set of workers.
//!
//! Invariant: `Writers::live` holds exactly the ids of live [`WriterClaim`]s.

use super::*;
use std::collections::HashSet;

/// The writer registry of one open store (guarded by its own mutex, never held with `state`'s).
#[derive(Default)]
pub(crate) struct Writers {
    /// Streams with a live [`WriterClaim`].
    live: HashSet<String>,
    /// Streams created by this open of the store (the rest were in the manifest it read).
    created: HashSet<String>,
}

/// The right to write one stream, from [`Store::claim_writer`]; dropping it releases the stream.
#[derive(Debug)]
pub struct WriterClaim {
    inner: Arc<Inner>,
    id: String,
}

impl WriterClaim {
    /// The claimed stream.
    pub fn stream_id(&self) -> &str {
        &self.id
    }
}

impl Drop for WriterClaim {
    fn drop(&mut self) {
        self.inner.writers.lock().live.remove(&self.id);
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("blob", &self.blob.location())
            .finish()
    }
}

impl Store {
    /// Claims stream `id` for one writer (an operator) until the returned claim drops.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if a live claim on `id` exists (two operators
    /// would write one stream: e.g. one arrangement id used in two dataflows of a worker).
    pub fn claim_writer(&self, id: &str) -> Result<WriterClaim> {
        if !self.has_stream(id) {
            return Err(Error::UnknownStream { id: id.to_string() });
        }
        if !self.inner.writers.lock().live.insert(id.to_string()) {
            return Err(Error::bad_input(format!(
                "stream {id:?} is already written by a live operator: a persisted id may be used by one \
                 operator per worker at a time (is the same id used in two dataflows?)"
            )));
        }
        Ok(WriterClaim {
            inner: self.inner.clone(),
            id: id.to_string(),
        })
    }

    /// The live claims' streams and their sealed uppers, in no order.
    pub(crate) fn claimed_uppers(&self) -> Vec<(String, u64)> {
        let live: Vec<String> = self.inner.writers.lock().live.iter().cloned().collect();
        let state = self.inner.state.lock();
        live.into_iter()
            .filter_map(|id| state.streams.get(&id).map(|s| (id.clone(), s.upper)))
            .collect()
    }

    /// Whether stream `id` was created by this open of the store (not read from its manifest).
    pub fn created_here(&self, id: &str) -> bool {
        self.inner.writers.lock().created.contains(id)
    }

    /// Notes that this open created stream `id`.
    pub(crate) fn note_created(&self, id: &str) {
        self.inner.writers.lock().created.insert(id.to_string());
    }

    /// Drops every unsealed update of stream `id` (memtable and spilled runs), durably: the manifest
    /// commit records that replay skips the stream's WAL records written so far. Returns how many updates
    /// were dropped (spilled runs counted by their update count). No-op, committing nothing, when there
    /// are none.
    ///
    /// For restarts whose input replays every time at or beyond the sealed upper in full: the unsealed
    /// updates belong to times that were not complete, and the replay brings them again.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] while a seal or spill of the stream is in
    /// progress; a failed manifest commit poisons the store.
    pub fn discard_unsealed(&self, id: &str) -> Result<u64> {
        let seal = self.inner.seal_lock.lock();
        let (spills, count, wal_end) = {
            let state = self.live_state()?;
            let s = state
                .streams
                .get(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if s.sealing.is_some() {
                return Err(Error::bad_input(format!(
                    "stream {id:?} is being sealed; its unsealed updates cannot be discarded now"
                )));
            }
            let spilled: u64 = s.spills.iter().map(|b| b.update_count()).sum();
            let count = s.memtable.update_count() as u64 + spilled;
            if count == 0 {
                return Ok(0);
            }
            (s.spills.clone(), count, state.wal_end)
        };
        let edit = |next: &mut Manifest| {
            if let Some(m) = next.streams.iter_mut().find(|m| m.id == id) {
                m.spills.clear();
                m.spilled_lsn = m.spilled_lsn.max(wal_end);
            }
            Ok(())
        };
        let publish = |state: &mut State, ()| {
            if let Some(s) = state.streams.get_mut(id) {
                s.memtable = MemTable::default();
                s.spills.clear();
            }
            release_point(state)
        };
        let release = self.apply_edit(&seal, &format!("discard_unsealed of {id:?}"), edit, publish)?;
        for run in &spills {
            if let Some(no) = super::seal::file_no_of(run) {
                run.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
            }
        }
        // As after a seal: a failure to release segments is harmless (their records are skipped).
        let _ = self.inner.buffer.release_before(release);
        Ok(count)
    }
}
