//! Riders: seals that only move a stream's upper commit with the manifest edit in flight (a group commit
//! of manifest edits, as the WAL's group commit is of records).
//!
//! Every frontier advance of a persisting operator is sealed, an idle worker's too (the restart protocol
//! needs each worker's upper), and each seal is a manifest commit (two fsyncs). With several workers the
//! idle workers' seals wait for `edit_lock` behind the busy worker's seal and then commit alone
//! (BENCHMARKS.md, "Riders"). A seal that finds `edit_lock` held and has nothing to write — no update of
//! the stream below the new upper in the memtable or in a spilled run, no flush or logged seal of the
//! stream in progress, no appended updates — is a *rider*: under `state` it raises the stream's
//! `pending_upper` (writes below it are refused from then on, as for any seal), notes the upper as the
//! stream's `riding`, and queues its edit; then it waits for `edit_lock`. (Before it queues, as every
//! seal, it syncs the WAL up to its end if a write is pending: `store/seal.rs`.) The next edit that
//! commits applies every queued rider's edit to its manifest copy *before* its own (`Store::apply_edit`)
//! and commits them together; each rider's call returns once it gets `edit_lock` after that commit is
//! published (behind any thread that waited for the lock before it). A rider that finds its edit not
//! taken when it gets `edit_lock` (the holder committed before it queued, made no edit, or its edit
//! refused) commits the queue itself.
//!
//! Order: a rider's seal comes before any edit applied after it queued. A seal of the same stream
//! planned meanwhile starts at the rider's upper (`StreamState::riding`, in `store/seal.rs`); a rider is
//! never queued while a flush of its stream is in progress (its plan, made earlier, would be applied
//! after the rider's edit). If the carrying edit refuses or fails before its commit (or panics), the
//! riders go back to the queue ([`Carried`]); if its commit fails, the store is poisoned and their calls
//! return [`Error::Poisoned`].
//!
//! Invariants: a stream has at most one queued rider (`riding` is `Some` exactly while it is queued or
//! being committed); a queued rider's upper is above its stream's manifest upper, and no update of the
//! stream below it exists anywhere.

use super::*;

/// The result slot of a queued rider: set once its edit's commit is published (or failed).
type Slot = Arc<Mutex<Option<Result<()>>>>;

/// A queued seal that only moves a stream's upper (see the module docs).
pub(super) struct Rider {
    id: String,
    /// The stream's upper when it queued.
    lower: u64,
    upper: u64,
    options: SealOptions,
    slot: Slot,
}

impl Store {
    /// Queues the seal of stream `id` to `upper` with `options` as a rider if it qualifies (module docs);
    /// returns its slot and the stream's upper before it (the seal's lower). `None`: not a rider, seal
    /// as usual. Errors: [`Error::Poisoned`]; an unknown stream or an upper that does not advance is
    /// `None`, left to the usual path to report.
    pub(super) fn try_ride(&self, id: &str, upper: u64, options: SealOptions) -> Result<Option<(Slot, u64)>> {
        let mut guard = self.live_state()?;
        let state = &mut *guard;
        let Some(stream) = state.streams.get_mut(id) else {
            return Ok(None);
        };
        let lower = stream.version.upper();
        let qualifies = upper > lower
            && stream.pending_upper == lower
            && stream.riding.is_none()
            && stream.flushing.is_none()
            && stream.logged.is_empty()
            && !stream.memtable.holds_below(upper)
            && stream
                .version
                .spills()
                .iter()
                .all(|s| s.description().lower >= upper);
        if !qualifies {
            return Ok(None);
        }
        stream.pending_upper = upper;
        stream.riding = Some((upper, options));
        let slot = Slot::default();
        state.riders.push(Rider {
            id: id.to_string(),
            lower,
            upper,
            options,
            slot: slot.clone(),
        });
        Ok(Some((slot, lower)))
    }

    /// Waits for a queued rider's commit (committing the queue itself if nobody took it): see the module
    /// docs. Returns the seal's result as `seal_with` would: no file, no update.
    ///
    /// Errors: [`Error::Poisoned`] (the commit that carried it failed, or an earlier one); an error of its
    /// own commit of the queue (then the seal is withdrawn: the stream's upper stays where it was).
    pub(super) fn ride(&self, (slot, lower): (Slot, u64), upper: u64) -> Result<SealInfo> {
        let guard = self.inner.edit_lock.lock();
        if slot.lock().is_none() {
            // Not taken: this edit of nothing carries the queue, this rider with it.
            let led = self.apply_edit(&guard, "queued seals", &[], |_| Ok(()), |_, ()| ());
            if let Err(e) = led {
                let mut state = self.inner.state.lock();
                if state.poisoned.is_none() {
                    withdraw(&mut state, &slot);
                }
                return Err(e);
            }
        }
        drop(guard);
        let result = slot.lock().take();
        result.unwrap_or_else(|| {
            Err(Error::corrupt(
                "MANIFEST",
                0,
                "a queued seal was not committed by the edit that took it",
            ))
        })?;
        Ok(SealInfo {
            description: Description {
                lower,
                upper,
                since: 0,
            },
            update_count: 0,
            file: None,
            batch: None,
        })
    }
}

/// The riders one edit carries (`Store::apply_edit`): applied to its manifest copy before its own edit,
/// and published with it. Dropped unpublished (the edit refused, failed, or panicked), they go back to
/// the front of the queue, or, if the store is poisoned (the commit failed), fail with it.
pub(super) struct Carried<'s> {
    store: &'s Store,
    riders: Vec<Rider>,
}

impl<'s> Carried<'s> {
    pub(super) fn new(store: &'s Store, riders: Vec<Rider>) -> Self {
        Carried { store, riders }
    }

    /// Applies the riders to `next`, in queue order.
    pub(super) fn apply(&self, next: &mut Manifest) {
        for r in &self.riders {
            // The stream exists (unless dropped since the rider queued: its seal then has nothing to
            // move, and the rider returns as carried) and its upper is below the rider's: only
            // seals move it, and a seal of the stream planned after the rider queued starts at the
            // rider's upper (and is applied after it, in this edit or a later one).
            if let Ok(s) = next.stream_mut(&r.id) {
                debug_assert!(
                    s.upper < r.upper,
                    "a rider of {:?} does not advance its upper",
                    r.id
                );
                s.upper = s.upper.max(r.upper);
                s.finished = r.options.finished;
                s.since = s.since.max(r.options.since.unwrap_or(0));
            }
        }
    }

    /// Ends the riders once the edit carrying them is published (under `state`): each stream's `riding`
    /// clears and each call gets `Ok`.
    pub(super) fn publish(&mut self, state: &mut State) {
        finish(state, std::mem::take(&mut self.riders), || Ok(()));
    }
}

impl Drop for Carried<'_> {
    fn drop(&mut self) {
        if self.riders.is_empty() {
            return;
        }
        // `apply_edit` releases `state` before this drops (it is locked after `Carried` is made).
        let mut state = self.store.inner.state.lock();
        let riders = std::mem::take(&mut self.riders);
        match state.poisoned.clone() {
            Some(detail) => finish(&mut state, riders, || {
                Err(Error::Poisoned {
                    detail: detail.clone(),
                })
            }),
            None => {
                state.riders.splice(0..0, riders);
            }
        }
    }
}

/// Ends `riders` (under `state`): each stream's `riding` clears and each call gets `result`.
fn finish(state: &mut State, riders: Vec<Rider>, result: impl Fn() -> Result<()>) {
    for r in riders {
        if let Some(stream) = state.streams.get_mut(&r.id) {
            if stream.riding.is_some_and(|(upper, _)| upper == r.upper) {
                stream.riding = None;
            }
        }
        *r.slot.lock() = Some(result());
    }
}

/// Takes the rider of `slot` out of the queue (its own commit of the queue failed, the store not
/// poisoned): its stream's `riding` clears and `pending_upper` goes back to its lower, unless a seal
/// planned on top of it moved it on.
fn withdraw(state: &mut State, slot: &Slot) {
    let Some(at) = state.riders.iter().position(|r| Arc::ptr_eq(&r.slot, slot)) else {
        return;
    };
    let r = state.riders.remove(at);
    if let Some(stream) = state.streams.get_mut(&r.id) {
        stream.riding = None;
        if stream.pending_upper == r.upper {
            stream.pending_upper = r.lower;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, StreamOptions};

    /// A store in memory with streams `a` and `b`, merges inline (every commit is an edit's own).
    fn store() -> Store {
        let blob = Arc::new(crate::blob::MemBlob::new());
        let log = Arc::new(crate::wal::MemLog::new());
        let options = Options {
            compaction_threads: 0,
            ..Options::default()
        };
        let store = Store::open_on(blob, log, options).unwrap();
        for id in ["a", "b"] {
            store.create_stream(id, StreamOptions::default()).unwrap();
        }
        store
    }

    #[test]
    fn a_seal_planned_while_a_rider_is_queued_starts_at_its_upper_and_carries_it() {
        let store = store();
        let generation = store.manifest().generation;
        store.write_bytes("b", [(&b"k"[..], &b"v"[..], 8, 1)]).unwrap();
        let queued = store.try_ride("b", 5, SealOptions::default()).unwrap().unwrap();
        // Writes below the rider's upper are refused from now on.
        assert!(store.write_bytes("b", [(&b"k"[..], &b"v"[..], 4, 1)]).is_err());
        let info = store.seal("b", 9).unwrap();
        assert_eq!((info.description.lower, info.description.upper), (5, 9));
        let rode = store.ride(queued, 5).unwrap();
        assert_eq!((rode.description.lower, rode.description.upper), (0, 5));
        assert_eq!(store.manifest().generation, generation + 1, "one commit for both");
        assert_eq!(store.upper("b").unwrap(), 9);
        assert!(store.inner.state.lock().streams["b"].riding.is_none());
    }

    #[test]
    fn a_refusing_edit_puts_riders_back_and_the_rider_commits_itself() {
        let store = store();
        let generation = store.manifest().generation;
        let queued = store.try_ride("b", 5, SealOptions::default()).unwrap().unwrap();
        assert!(store.create_stream("a", StreamOptions::default()).is_err());
        assert_eq!(store.inner.state.lock().riders.len(), 1);
        store.ride(queued, 5).unwrap();
        assert_eq!(store.manifest().generation, generation + 1);
        assert_eq!(store.upper("b").unwrap(), 5);
        assert!(store.inner.state.lock().riders.is_empty());
    }

    #[test]
    fn a_seal_behind_a_rider_is_judged_against_the_riders_flag_and_since() {
        let finished = SealOptions {
            finished: true,
            since: Some(3),
        };
        let store = store();
        let queued = store.try_ride("b", 5, finished).unwrap().unwrap();
        // Clearing the flag the rider sets is an edit at the same upper, as it is after the rider.
        store.seal_with("b", 5, SealOptions::default()).unwrap();
        store.ride(queued, 5).unwrap();
        // Repeating the rider's options at its upper changes nothing: refused, as it is after the rider.
        let again = store.try_ride("a", 5, finished).unwrap().unwrap();
        assert!(matches!(
            store.seal_with("a", 5, finished),
            Err(Error::BadInput { .. })
        ));
        store.ride(again, 5).unwrap();
        let meta = store.manifest();
        let b = meta.stream("b").unwrap();
        assert_eq!((b.upper, b.finished, b.since), (5, false, 3));
    }
}
