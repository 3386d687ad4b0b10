//! Seals: the stream's upper moves, and every update below it becomes one batch file ([`Store::seal`],
//! [`Store::seal_with`], and the seals of `append` and of logged seals). Step 1 of the flush protocol
//! (`store/flush.rs`) is here — the interval, the spilled runs it consumes, the file numbers — and the rest
//! of the protocol is `Store::flush`'s.

use super::flush::{Appended, SealPlan, Taken};
use super::*;

/// What [`Store::seal_with`] records besides the new upper, in the same manifest commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealOptions {
    /// Mark the stream finished at the new upper: its writer's input is exhausted, it has no update at or
    /// beyond the upper (see [`StreamMeta::finished`]). `false` clears the mark.
    pub finished: bool,
    /// Advance the stream's since to this (as [`Store::allow_compaction`] does), if it is above the
    /// current since.
    pub since: Option<u64>,
}

/// Where a seal takes the upper.
#[derive(Clone, Copy, Debug)]
pub(super) enum SealTo {
    /// This upper.
    At(u64),
    /// The newest logged seal's upper (`Store::seal_logged`), read under the locks, if the stream's upper
    /// is still below `through` (a logged upper its caller read before it waited for the locks); else,
    /// or with no logged seal beyond the stream's upper, the seal does nothing. The check under the
    /// locks is what keeps a flush that waited for another to commit `through` from writing the one or
    /// two seals logged since as a batch of their own (a CI run of `tests/seal/seal_logged_flush.rs` saw
    /// uppers 71 then 72 between batches of a dozen seals and more, when the check was made only before
    /// the wait).
    Logged { through: u64 },
}

impl Store {
    /// Seals stream `id` up to `upper`: every update with time below `upper` becomes one immutable batch
    /// file with description `[previous upper, upper)`, and the stream's upper advances in the manifest.
    /// Durable when it returns. With no updates in the interval no file is written, only the upper moves.
    /// Same as [`seal_with`](Self::seal_with) with default [`SealOptions`] (which clears `finished`).
    ///
    /// The stream's logged seals ([`seal_logged`](Self::seal_logged)) are completed first: the upper
    /// this seal must advance is theirs.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `upper` does not advance the stream's upper
    /// (or is below a seal logged meanwhile); an error of completing the logged seals first (as this
    /// call's own); [`Error::DiffOverflow`] if the updates of one `(key, val, time)` below `upper` sum
    /// outside `i64` (possible only across spilled runs and the memtable — writes are checked against the
    /// memtable — or within it after a failed spill put back its buckets beside writes made while it was
    /// in flight, or a replay after a crash during one), and then nothing changes: a compensating write at
    /// that time lets the seal through.
    /// If writing the batch file fails, nothing changes. If committing the manifest fails, the store is
    /// poisoned (the manifest may or may not have reached the disk); reopen it to recover. A seal with
    /// nothing to write that found another edit in flight commits with it (`store/ride.rs`) and returns
    /// [`Error::Poisoned`] if that commit failed.
    pub fn seal(&self, id: &str, upper: u64) -> Result<SealInfo> {
        self.seal_with(id, upper, SealOptions::default())
    }

    /// Seals stream `id` up to `upper` as [`seal`](Self::seal) does, and records `options` in the same
    /// manifest commit: whether the writer finished (see [`StreamMeta::finished`]), and a new since. The
    /// upper may stay where it is if `options` change something (an edit of the flag or the since only).
    ///
    /// Errors: as [`seal`](Self::seal); [`Error::BadInput`] while a persisted operator writes the stream (its
    /// dataflow is running), or if `options.since` is `u64::MAX` or above
    /// `upper`, or `upper` equals the stream's upper and `options` change nothing. A since below the
    /// stream's current since is ignored (since never goes backward).
    pub fn seal_with(&self, id: &str, upper: u64, options: SealOptions) -> Result<SealInfo> {
        let _admitted = self.refuse_claimed(id)?;
        self.seal_appending(id, upper, options, None)
    }

    /// [`seal_with`](Self::seal_with) by the persisted operator that holds the stream's writer claim.
    pub(crate) fn seal_with_claimed(&self, id: &str, upper: u64, options: SealOptions) -> Result<SealInfo> {
        self.seal_appending(id, upper, options, None)
    }

    /// A seal (as [`seal_with`](Self::seal_with)) whose batch also holds `appended`: validated updates of
    /// [`append_bytes`](Self::append_bytes), sorted and consolidated, times in the sealed interval.
    pub(super) fn seal_appending(
        &self,
        id: &str,
        upper: u64,
        options: SealOptions,
        appended: Option<Appended<'_, '_>>,
    ) -> Result<SealInfo> {
        if options.since.is_some_and(|s| s == FRONTIER_CLOSED || s > upper) {
            return Err(Error::bad_input(format!(
                "since {:?} of a seal of {id:?} at {upper} is above the upper",
                options.since
            )));
        }
        // Logged seals first: the stream's upper is theirs (the check in `seal_to` covers one logged
        // after this).
        self.flush_logged(id)?;
        self.wait_for_merges(id)?;
        let info = self.seal_to(id, SealTo::At(upper), options, appended)?;
        self.schedule_compaction(id);
        Ok(info)
    }

    /// The seal itself (after back-pressure): to `to`, with `options`, adding `appended`.
    pub(super) fn seal_to(
        &self,
        id: &str,
        to: SealTo,
        options: SealOptions,
        appended: Option<Appended<'_, '_>>,
    ) -> Result<SealInfo> {
        let edit_guard = match self.inner.edit_lock.try_lock() {
            Some(guard) => guard,
            None => {
                // Another edit is in flight: a seal with nothing to write rides on its commit
                // (`store/ride.rs`).
                if let (SealTo::At(upper), None) = (to, appended.as_ref()) {
                    // As every seal: the writes before it are durable when it returns (the flush of a
                    // seal that writes a file syncs the WAL too). An fsync only if one is pending.
                    let wal_end = self.live_state()?.wal_end;
                    self.sync_wal(WriteTicket::at(wal_end, self.inner.id))?;
                    if let Some(queued) = self.try_ride(id, upper, options)? {
                        return self.ride(queued, upper);
                    }
                }
                self.inner.edit_lock.lock()
            }
        };
        let (taken, plan) = {
            let mut guard = self.live_state()?;
            let state = &mut *guard;
            // The batch's number and, should the seal split a spilled run, the remainder's: both taken
            // before anything changes (the second given back below if unused).
            let batch_no = state.alloc_file_no()?;
            let spare_no = state.alloc_file_no()?;
            let stream = state
                .streams
                .get_mut(id)
                .filter(|s| {
                    appended
                        .as_ref()
                        .is_none_or(|a| a.checked.admits(s.version.stream_no()))
                })
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            let meta = stream.version.meta();
            // A queued rider's seal comes first (`store/ride.rs`): the upper, flag and since it leaves.
            let (lower, finished, since) = match stream.riding {
                Some((upper, o)) => (upper, o.finished, meta.since.max(o.since.unwrap_or(0))),
                None => (meta.upper, meta.finished, meta.since),
            };
            let edits = finished != options.finished || options.since.is_some_and(|s| s > since);
            let upper = match to {
                SealTo::At(upper) => upper,
                SealTo::Logged { through } => match stream.logged.back() {
                    Some(l) if l.upper > lower && lower < through => l.upper,
                    // Nothing left to flush: another thread's flush (or a seal beyond it) committed it.
                    _ => {
                        return Ok(SealInfo {
                            description: Description {
                                lower,
                                upper: lower,
                                since: 0,
                            },
                            update_count: 0,
                            file: None,
                            batch: None,
                        })
                    }
                },
            };
            // A logged seal not committed yet (logged after `seal_appending` completed the earlier ones)
            // is the stream's durable upper: nothing may be sealed or appended below it.
            let logged = stream.logged.back().map(|l| l.upper).filter(|&l| l > lower);
            if let (SealTo::At(_), Some(logged)) = (to, logged) {
                if let Some(expected) = appended.as_ref().map(|a| a.lower) {
                    return Err(Error::UpperMismatch {
                        stream: id.to_string(),
                        expected,
                        current: logged,
                    });
                }
                if upper < logged {
                    return Err(Error::bad_input(format!(
                        "seal of {id:?} at {upper} does not advance its upper {logged} (a logged seal's)"
                    )));
                }
            }
            if let Some(expected) = appended.as_ref().map(|a| a.lower).filter(|l| *l != lower) {
                return Err(Error::UpperMismatch {
                    stream: id.to_string(),
                    expected,
                    current: lower,
                });
            }
            if upper < lower || (upper == lower && !edits) {
                return Err(Error::bad_input(format!(
                    "seal of {id:?} at {upper} does not advance its upper {lower}"
                )));
            }
            let drained = stream.begin_flush(upper);
            // A logged seal may have raised it further already.
            stream.pending_upper = stream.pending_upper.max(upper);
            let consumed: Vec<Arc<BatchFile>> = (stream.version.spills().iter())
                .filter(|s| s.description().lower < upper)
                .cloned()
                .collect();
            let remainder = consumed.iter().any(|b| b.description().upper > upper);
            let remainder_no = remainder.then_some(spare_no);
            if !remainder {
                state.give_back_file_no(spare_no);
            }
            // A fresh batch's times are as written: its since is the minimum time, as in DD's batchers.
            // Merges advance times to the stream's since.
            let description = Description {
                lower,
                upper,
                since: 0,
            };
            let taken = Taken {
                drained,
                wal_end: state.wal_end,
            };
            let plan = SealPlan {
                description,
                options,
                consumed,
                file_nos: (batch_no, remainder_no),
            };
            (taken, plan)
        };
        let batch = self.flush(edit_guard, id, taken, Some((&plan, appended)))?;
        Ok(SealInfo {
            description: plan.description,
            update_count: batch.as_ref().map_or(0, |b| b.update_count()),
            file: batch.as_ref().map(|b| b.name().to_string()),
            batch,
        })
    }
}
