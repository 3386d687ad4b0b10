//! Who writes a stream: at most one live writer per stream ([`Store::claim_writer`]), and which streams this
//! open of the store created ([`Store::created_here`]).
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
            .filter_map(|id| state.streams.get(&id).map(|s| (id.clone(), s.version.upper())))
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
}
