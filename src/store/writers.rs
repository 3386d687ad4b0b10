//! Who writes a stream: at most one live writer per stream ([`Store::claim_writer`]), and which streams this
//! open of the store created ([`Store::created_here`]).
//!
//! These serve the restart protocol of the dataflow operators (`operators::resume`): an operator claims
//! its stream for its life, so one arrangement id used twice is refused when the second dataflow is built
//! instead of two operators writing one stream; and a stream created by an earlier open tells a worker
//! that the directory was written by some set of workers.
//!
//! Invariant: `Writers::live` holds exactly the ids of live [`WriterClaim`]s, and [`PROCESS_CLAIMS`] holds
//! exactly one entry per live claim of any store of the process.

use super::*;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

/// Every live [`WriterClaim`] of the process, across stores: its number, its store and its stream. A
/// leaf lock (no other lock is taken under it). Read by [`Store::process_claimed_uppers`]: an upsert's
/// state may be compacted only up to the least upper of the persisted operators downstream of it, and
/// those may write other stores of the process.
static PROCESS_CLAIMS: Mutex<BTreeMap<u64, (Weak<Inner>, String)>> = Mutex::new(BTreeMap::new());
/// The next claim's number in [`PROCESS_CLAIMS`].
static NEXT_CLAIM: AtomicU64 = AtomicU64::new(0);

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
    /// Its number in [`PROCESS_CLAIMS`].
    number: u64,
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
        PROCESS_CLAIMS.lock().remove(&self.number);
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
        let number = NEXT_CLAIM.fetch_add(1, Ordering::Relaxed);
        let entry = (Arc::downgrade(&self.inner), id.to_string());
        PROCESS_CLAIMS.lock().insert(number, entry);
        Ok(WriterClaim {
            inner: self.inner.clone(),
            id: id.to_string(),
            number,
        })
    }

    /// The sealed upper of every stream with a live [`WriterClaim`] in any store of this process, in no
    /// order: the persisted operators running here, whichever store they write.
    pub(crate) fn process_claimed_uppers() -> Vec<u64> {
        let claims: Vec<(Weak<Inner>, String)> = PROCESS_CLAIMS.lock().values().cloned().collect();
        claims
            .into_iter()
            .filter_map(|(inner, id)| {
                let inner = inner.upgrade()?;
                let state = inner.state.lock();
                state.streams.get(&id).map(|s| s.version.upper())
            })
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
