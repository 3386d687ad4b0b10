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
//! stream's `riding`, and queues its edit; then it waits for `edit_lock`. Whoever holds `edit_lock` next
//! applies every queued rider's edit to its manifest copy *before* its own edit (`Store::apply_edit`) and
//! commits them together; each rider's call returns once that commit is published. A rider that finds
//! its edit not taken when it gets `edit_lock` (the holder committed before it queued, or made no edit)
//! commits the queue itself.
//!
//! Order: a rider's seal comes before any edit applied after it queued. A seal of the same stream
//! planned meanwhile starts at the rider's upper (`StreamState::riding`, in `store/seal.rs`); a rider is
//! never queued while a flush of its stream is in progress (its plan, made earlier, would be applied
//! after the rider's edit). If the holder's own edit fails, the riders go back to the queue; if its
//! commit fails, the store is poisoned and so are their calls.
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
        stream.riding = Some(upper);
        let slot = Slot::default();
        state.riders.push(Rider {
            id: id.to_string(),
            upper,
            options,
            slot: slot.clone(),
        });
        Ok(Some((slot, lower)))
    }

    /// Waits for a queued rider's commit (committing the queue itself if nobody took it): see the module
    /// docs. Returns the seal's result as `seal_with` would: no file, no update.
    pub(super) fn ride(&self, (slot, lower): (Slot, u64), upper: u64) -> Result<SealInfo> {
        let guard = self.inner.edit_lock.lock();
        if slot.lock().is_none() {
            // Not taken: this edit of nothing carries the queue, this rider with it.
            self.apply_edit(&guard, "queued seals", &[], |_| Ok(()), |_, ()| ())?;
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

/// Applies the queued `riders` to `next` (before the edit that carries them), in queue order.
pub(super) fn apply(next: &mut Manifest, riders: &[Rider]) {
    for r in riders {
        // The stream exists (no edit removes streams yet) and its upper is below the rider's: only seals
        // move it, and a seal of the stream planned after the rider queued starts at the rider's upper.
        if let Some(s) = next.streams.iter_mut().find(|s| s.id == r.id) {
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

/// Ends `riders` once the edit carrying them is published (under `state`): each stream's `riding` clears
/// and each call gets `result`.
pub(super) fn finish(state: &mut State, riders: Vec<Rider>, result: impl Fn() -> Result<()>) {
    for r in riders {
        if let Some(stream) = state.streams.get_mut(&r.id) {
            if stream.riding == Some(r.upper) {
                stream.riding = None;
            }
        }
        *r.slot.lock() = Some(result());
    }
}
