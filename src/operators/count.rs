//! [`CountPersisted`]: how many records each key has, over a persisted arrangement, maintained from the
//! persisted batches alone (nothing is arranged in memory).
//!
//! DD 0.26 counts in two ways: `Collection::count`, which arranges its input in memory first, and
//! `Arranged::count_total`, which needs the arrangement's key type to be a sized `&K` (a persisted
//! arrangement's keys are `&[u8]` slices of the map) and its vals to be `()`. This operator does for a
//! persisted arrangement of `(key, val)` pairs what `count_total` does for an in-memory one, over a totally
//! ordered time (any [`PersistTime`]: `u64`, `u32`, `usize`, ...): for each key in each new batch, the key's count before the batch is read from the
//! trace (every batch below the batch's lower bound), then the batch's updates of the key, over all its
//! vals, are applied in time order, and each change of the count is output as a retraction of the old
//! `(key, count)` and an insertion of the new one. Zero counts are not reported, as in DD.
//!
//! Counts are summed exactly (`i128`; DESIGN.md, "Diff arithmetic"): partial sums out of range do not
//! matter. A count outside `i64` cannot be output: it is not reported (like a zero count) and an
//! [`Error::DiffOverflow`] naming the stream, key and time is recorded in the trace's
//! [`ErrorSlot`](crate::trace::ErrorSlot) (the persist handle's, for an arrangement from
//! `arrange_persisted`). Once back in range the count is reported again.
//!
//! Invariants:
//! - `lower` is the upper bound of every batch processed so far, and the operator's trace handle holds
//!   both compaction frontiers at `lower` after each activation, so the trace still distinguishes every
//!   time at or beyond `lower` and no merged span straddles it: `batches_through(lower)` holds exactly
//!   the updates before the pending batches;
//! - batches arrive in time order (a trace's batches are contiguous), so the pending batches all lie at
//!   or beyond `lower`.
//!
//! Should `batches_through(lower)` ever fail (a span straddling `lower`, which the frontiers above rule
//! out), the batches stay pending with their capabilities: the output stalls rather than reporting a
//! wrong count.

use crate::error::Error;
use crate::operators::PersistTime;
use crate::trace::{PersistedBatch, PersistedTrace};
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Cursor, TraceReader};
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::CapabilitySet;
use timely::progress::Antichain;

/// Counting the records of each key of a persisted arrangement over times `T` (`u64` by default). See the
/// module docs.
pub trait CountPersisted<'scope, T: PersistTime = u64> {
    /// For each key, the number of its records (the sum of the diffs of all its `(key, val)` pairs) at
    /// every time, as a collection of `(key, count)` with the key as stored (its [`Codec`] encoding;
    /// decode it with [`Codec::decode`]). Keys whose count is zero are absent.
    ///
    /// Equal to DD's `arranged.as_collection(|k, _| k).count()` on the same input, without arranging
    /// anything in memory: each key's earlier count is read from the persisted batches.
    ///
    /// A count outside `i64` is not reported; an [`Error::DiffOverflow`] is recorded in the trace's
    /// [`ErrorSlot`](crate::trace::ErrorSlot) instead (see the module docs).
    ///
    /// [`Codec`]: crate::Codec
    /// [`Codec::decode`]: crate::Codec::decode
    fn count(self) -> VecCollection<'scope, T, (Vec<u8>, i64), isize>;
}

impl<'scope, T: PersistTime> CountPersisted<'scope, T> for Arranged<'scope, TraceAgent<PersistedTrace<T>>> {
    fn count(self) -> VecCollection<'scope, T, (Vec<u8>, i64), isize> {
        let mut trace = self.trace.clone();
        let (errors, stream_id) = {
            let shared = trace.trace_box_unstable();
            let shared = shared.borrow();
            let inner = shared.trace();
            (
                inner.errors().clone(),
                inner.stream_id().unwrap_or_default().to_string(),
            )
        };
        self.stream
            .unary_frontier(Pipeline, "CountPersisted", move |_capability, _info| {
                let mut lower = Antichain::from_elem(T::minimum());
                let mut pending: Vec<PersistedBatch<T>> = Vec::new();
                let mut pending_upper = Antichain::from_elem(T::minimum());
                let mut caps = CapabilitySet::new();
                let mut times: Vec<(T, i128)> = Vec::new();
                move |(input, _frontier), output| {
                    input.for_each(|capability, spans| {
                        for capability in capability.retain_stamp(0).iter() {
                            caps.insert(capability.clone());
                        }
                        for span in spans.drain(..) {
                            pending_upper.clone_from(span.upper());
                            pending.extend(span.inner);
                        }
                    });
                    if caps.is_empty() {
                        return;
                    }
                    let Some(prior) = trace.batches_through(lower.borrow()) else {
                        debug_assert!(false, "a trace span straddles the count's lower bound {lower:?}");
                        return;
                    };
                    let mut session = output.session(&caps);
                    let (mut batch_cursor, batch_storage) = cursor_list(std::mem::take(&mut pending));
                    let (mut trace_cursor, trace_storage) = cursor_list(prior);
                    while let Some(key) = batch_cursor.get_key(&batch_storage) {
                        let mut count = 0i128;
                        trace_cursor.seek_key(&trace_storage, key);
                        if trace_cursor.get_key(&trace_storage) == Some(key) {
                            while trace_cursor.val_valid(&trace_storage) {
                                trace_cursor.map_times(&trace_storage, |_, diff| count += i128::from(diff));
                                trace_cursor.step_val(&trace_storage);
                            }
                        }
                        times.clear();
                        while batch_cursor.val_valid(&batch_storage) {
                            batch_cursor
                                .map_times(&batch_storage, |time, diff| times.push((time, i128::from(diff))));
                            batch_cursor.step_val(&batch_storage);
                        }
                        // One change per time: the updates of all vals at a time, summed.
                        consolidate_exact(&mut times);
                        for &(time, diff) in &times {
                            let old = reported(count);
                            count += diff;
                            let new = reported(count);
                            if count != 0 && new.is_none() {
                                errors.record(Error::diff_overflow(key, time.to_u64()).in_stream(&stream_id));
                            }
                            if let Some(old) = old {
                                session.give(((key.to_vec(), old), time, -1isize));
                            }
                            if let Some(new) = new {
                                session.give(((key.to_vec(), new), time, 1isize));
                            }
                        }
                        batch_cursor.step_key(&batch_storage);
                    }
                    drop(session);
                    caps = CapabilitySet::new();
                    lower.clone_from(&pending_upper);
                    trace.set_logical_compaction(lower.borrow());
                    trace.set_physical_compaction(lower.borrow());
                }
            })
            .as_collection()
    }
}

/// The count to report: `None` for zero and for counts outside `i64`.
fn reported(count: i128) -> Option<i64> {
    i64::try_from(count).ok().filter(|&c| c != 0)
}

/// Sorts `(time, diff)` pairs by time, sums equal times exactly and drops zero sums.
fn consolidate_exact<T: Ord + Copy>(times: &mut Vec<(T, i128)>) {
    times.sort_unstable_by_key(|&(t, _)| t);
    let mut out = 0;
    for i in 0..times.len() {
        if out > 0 && times[out - 1].0 == times[i].0 {
            times[out - 1].1 += times[i].1;
        } else {
            if out > 0 && times[out - 1].1 == 0 {
                out -= 1;
            }
            times[out] = times[i];
            out += 1;
        }
    }
    if out > 0 && times[out - 1].1 == 0 {
        out -= 1;
    }
    times.truncate(out);
}
