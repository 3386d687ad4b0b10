//! [`UpsertPersisted`]: the de-upsert operator. Turns a stream of upserts `(key, Some(val) | None, time)`
//! into a differential collection of `(key, val)` — retracting each key's previous value and inserting the
//! new one, `None` deleting — with the previous values read from a store stream (see [`apply_upserts`]).
//! Times: any top-level [`PersistTime`] `T` (`u64`, the default, `u32`, `usize`, ...), stored as `u64`;
//! a persisted time beyond `T`'s range fails the build ([`crate::Error::BadInput`]). The handle's times are
//! store times (`u64`). Diffs: `i64`, or any [`PersistDiff`] through
//! [`upsert_persisted_as`](UpsertPersisted::upsert_persisted_as) (`isize`, as DD's `arrange_from_upsert`).
//!
//! Per worker (keys exchanged by [`key_hash`] when there are several), the operator stashes upserts by
//! time; when the input frontier passes a time it applies that time's upserts against the state
//! ([`apply_upserts`]: lookups as of the time, then a write at the time) and emits the resulting updates
//! under that time; then it seals the state stream up to the frontier.
//!
//! Restart: the state stream is not durable, so after a crash it holds exactly the sealed times, and it is
//! also the operator's output collection. A restarted operator first emits the state it persisted (every
//! earlier time, consolidated as compaction allows), so operators downstream recover what they had not
//! persisted; downstream persisted operators drop what they had. Upserts at times below the worker's
//! sealed upper ([`UpsertHandle::own_upper`]) were applied before and are ignored; the input replays from
//! [`UpsertHandle::resume_at`] (the same on every worker of the process; see [`super::resume`]).
//!
//! Ordering: the operator holds its output frontier at the state's sealed upper, so no operator
//! downstream seals a time before this operator's state has: after any crash the state is at least as far
//! as every downstream stream, and the replay above closes the gap.
//!
//! Compaction: after each seal the state stream's since advances to just below the least sealed upper of
//! the streams with a live writer in any store of this process (the persisted operators running here,
//! this dataflow's among them), so its history stays exact wherever a downstream operator may need it
//! replayed, and the state's size follows the number of keys, not of upserts. (A downstream operator whose
//! upper lagged the state's would otherwise, after a restart, get the state's history before the since
//! collapsed into one time at or past its upper, and keep values whose retractions were compacted away:
//! the fault `tests/restart/restart_chain.rs`'s chain over two stores hit when the arrangement's seals lagged.)
//! This needs the persisted operators downstream alive while the upsert runs: keep a chain's operators in
//! one dataflow (a downstream operator dropped while the upsert goes on no longer holds the since back). In
//! a cluster (the store holds only some workers' state streams) the state is not compacted, since
//! downstream uppers in other processes are not visible here.
//!
//! Errors: the first one is kept in the handle; the operator then stops applying upserts and sealing, and
//! holds its output frontier where it was for good, so downstream never sees an incomplete time as
//! complete. Drop the dataflow after an error; a restart resumes where the state was sealed.

use super::resume::{open_worker_stream, ResumeState};
use super::time::check_message_times;
use super::types_at;
use super::{key_hash, PersistDiff, PersistTime};
use crate::codec::Codec;
use crate::error::Result;
use crate::store::{SealOptions, Store, StreamOptions, WriterClaim};
use crate::trace::ErrorSlot;
mod apply;
use crate::FRONTIER_CLOSED;
pub use apply::apply_upserts;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use std::collections::BTreeMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// An upsert: `(key, new value or None to delete, time)`, at times `T` (`u64` by default).
pub type Upsert<K, V, T = u64> = (K, Option<V>, T);

/// The de-upserted collection (times `T`, `u64` by default; diffs `R`, `i64` by default) and this
/// worker's handle.
pub type Upserted<'scope, K, V, T = u64, R = i64> = (VecCollection<'scope, T, (K, V), R>, UpsertHandle);

/// Upserts waiting for their time to complete, with a capability to emit at that time.
type Stash<K, V, T> = BTreeMap<T, (Capability<T>, Vec<(K, Option<V>)>)>;

/// What the caller can see of a running de-upsert operator. `Send + Sync`.
#[derive(Clone, Debug)]
pub struct UpsertHandle {
    stream: String,
    resume: ResumeState,
    own_upper: u64,
    errors: ErrorSlot,
}

impl UpsertHandle {
    super::resume::worker_handle_accessors!();
}

/// De-upserting a stream of upserts at times `T` (a [`PersistTime`], `u64` by default) into a persisted
/// collection. See the module docs.
pub trait UpsertPersisted<'scope, K, V, T: PersistTime = u64> {
    /// De-upserts into store stream `id` (one stream per worker, see [`worker_stream_id`](super::worker_stream_id)), returning the
    /// collection of `(key, val)` with its updates, and this worker's handle.
    ///
    /// Errors (when building the dataflow): [`crate::Error::BadInput`] if the state was persisted by a
    /// different number of workers or with other key or val types (`Store::check_types`), or its streams
    /// are durable (created by another persisting operator of the id), `id` is empty,
    /// or one of the id's streams holds a time beyond `T`'s range; store errors from creating or opening
    /// the stream. While running, a record before its message's time (timely's contract: never) is a
    /// [`crate::Error::BadInput`] in the handle, and stops the operator (its frontier held).
    fn upsert_persisted(self, store: &Store, id: &str) -> Result<Upserted<'scope, K, V, T>>;

    /// [`upsert_persisted`](Self::upsert_persisted) with diffs of type `R` (a [`PersistDiff`]): `isize` to
    /// stand where DD's `arrange_from_upsert` (whose diffs are `isize`) stood, and to join, concatenate or
    /// reduce with collections of DD's default diff type, e.g.
    /// `upserts.upsert_persisted_as::<isize>(&store, "u")`. The state is stored as for
    /// `upsert_persisted` (the same stream serves either across restarts); the output's diffs are the
    /// upserts' `+1` and `-1` and, after a restart, the persisted state's sums.
    ///
    /// Errors: as `upsert_persisted`'s, and [`crate::Error::Decode`] naming the stream if a persisted
    /// sum does not fit `R` (the state's sums are `-1`, `0` or `1` after consolidation, but the stream
    /// may have been written otherwise); while running, [`crate::Error::BadInput`] in the handle if `R`
    /// cannot hold `+1` or `-1` (only a caller's own `PersistDiff` can fail so), and the operator stops as
    /// for any error.
    fn upsert_persisted_as<R: PersistDiff>(
        self,
        store: &Store,
        id: &str,
    ) -> Result<Upserted<'scope, K, V, T, R>>;
}

impl<'scope, K, V, T> UpsertPersisted<'scope, K, V, T> for Stream<'scope, T, Vec<Upsert<K, V, T>>>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    T: PersistTime,
{
    fn upsert_persisted(self, store: &Store, id: &str) -> Result<Upserted<'scope, K, V, T>> {
        self.upsert_persisted_as::<i64>(store, id)
    }

    fn upsert_persisted_as<R: PersistDiff>(
        self,
        store: &Store,
        id: &str,
    ) -> Result<Upserted<'scope, K, V, T, R>> {
        let scope = self.scope();
        let (index, peers) = (scope.index(), scope.peers());
        let opened = open_worker_stream::<T>(
            store,
            id,
            (index, peers),
            StreamOptions { durable: false },
            &types_at::<K, V, T>(),
            false,
        )?;
        let (replay, _) = super::resume::replay_as_of_since::<K, V, T>(store, &opened.stream)?;
        let replay = super::resume::narrow_diffs(replay, &opened.stream)?;
        let handle = UpsertHandle {
            stream: opened.stream.clone(),
            resume: opened.resume,
            own_upper: opened.upper,
            errors: ErrorSlot::default(),
        };
        let state = State {
            store: store.clone(),
            id: id.to_string(),
            peers,
            handle: handle.clone(),
            _claim: opened.claim,
            replay,
            unconfirmed: opened.unconfirmed,
        };
        let output = if peers == 1 {
            build(self, Pipeline, state)
        } else {
            let mut scratch = Vec::new();
            let exchange = Exchange::new(move |u: &Upsert<K, V, T>| {
                scratch.clear();
                u.0.encode(&mut scratch);
                key_hash(&scratch)
            });
            build(self, exchange, state)
        };
        super::replays::mark_replaying(&output.inner);
        Ok((output, handle))
    }
}

/// What the operator owns besides its stash.
struct State<K, V, T, R> {
    store: Store,
    /// The upsert's id and the number of workers (for [`compaction_since`]).
    id: String,
    peers: usize,
    handle: UpsertHandle,
    /// Held for the operator's life: no other operator writes the state stream.
    _claim: WriterClaim,
    /// The persisted state, emitted on the first activation.
    replay: Vec<((K, V), T, R)>,
    /// Other workers' streams to confirm as this process's before the first seal
    /// ([`confirm_layout`](super::resume::confirm_layout)).
    unconfirmed: Vec<String>,
}

/// Builds the operator over `input` (partitioned by `pact`): see the module docs.
fn build<'scope, K, V, T, R, P>(
    input: Stream<'scope, T, Vec<Upsert<K, V, T>>>,
    pact: P,
    state: State<K, V, T, R>,
) -> VecCollection<'scope, T, (K, V), R>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    T: PersistTime,
    R: PersistDiff,
    P: ParallelizationContract<T, Vec<Upsert<K, V, T>>>,
{
    let scope = input.scope();
    input
        .unary_frontier::<CapacityContainerBuilder<Vec<((K, V), T, R)>>, _, _, _>(
            pact,
            "UpsertPersisted",
            move |capability, info| {
                // The persisted state goes out on the first activation, whether or not the input moves.
                scope.activator_for(info.address).activate();
                let State {
                    store,
                    id,
                    peers,
                    handle,
                    _claim,
                    replay,
                    mut unconfirmed,
                } = state;
                let mut replay = Some(replay);
                let mut stash: Stash<K, V, T> = BTreeMap::new();
                // Holds the output frontier at the state's sealed upper (module docs: ordering).
                let mut held = Some(capability);
                let mut sealed = handle.own_upper;
                // Just past the latest time applied.
                let mut applied_upto = handle.own_upper;
                move |(input, frontier), output| {
                    let _ = &_claim;
                    if let (Some(cap), Some(mut updates)) = (held.as_ref(), replay.take()) {
                        if !updates.is_empty() {
                            output.session(cap).give_container(&mut updates);
                        }
                    }
                    let mut failed = handle.errors.is_set();
                    input.for_each(|cap, data| {
                        let times = data.iter().map(|(_, _, t)| t);
                        if let Err(e) = check_message_times(&handle.stream, cap.stamp(), times) {
                            handle.errors.record(e);
                            failed = true;
                        }
                        for (k, v, t) in data.drain(..) {
                            if t.to_u64() < handle.own_upper || failed {
                                continue; // applied by an earlier run, or stopped
                            }
                            let entry = stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                            entry.1.push((k, v));
                        }
                    });
                    if failed {
                        return; // holding `held` and the stash's capabilities for good
                    }
                    // Apply every complete time, in order.
                    while let Some(entry) = stash.first_entry() {
                        let t = *entry.key();
                        if frontier.less_equal(&t) {
                            break;
                        }
                        let (cap, records) = entry.remove();
                        match apply::apply_upserts_claimed(&store, &handle.stream, t.to_u64(), records) {
                            Ok(updates) => {
                                applied_upto = applied_upto.max(t.to_u64().saturating_add(1));
                                // An upsert's diffs are +1 and -1, which the library's diff types all
                                // hold; a user's `PersistDiff` that cannot is an error, not a lost update.
                                let updates: Option<Vec<_>> = updates
                                    .into_iter()
                                    .map(|(k, v, d)| R::from_i64(d).map(|d| ((k, v), t, d)))
                                    .collect();
                                let Some(mut updates) = updates else {
                                    let detail = format!(
                                        "the output's diff type cannot hold an upsert's +1 or -1 at time {}",
                                        t.to_u64()
                                    );
                                    handle.errors.record(crate::Error::bad_input(detail));
                                    stash.insert(t, (cap, Vec::new()));
                                    return;
                                };
                                output.session(&cap).give_container(&mut updates);
                            }
                            Err(e) => {
                                handle.errors.record(e);
                                stash.insert(t, (cap, Vec::new()));
                                return;
                            }
                        }
                    }
                    // Seal what is complete: the state below the frontier is final. An exhausted input
                    // (empty frontier) seals what was applied and marks the stream finished; a later run
                    // continues with later times.
                    let (upper, finished) = match frontier.frontier().iter().min() {
                        Some(&f) => (f.to_u64().min(FRONTIER_CLOSED - 1), false),
                        None => (applied_upto.max(sealed), true),
                    };
                    if upper > sealed || (finished && held.is_some()) {
                        if let Err(e) =
                            super::resume::confirm_layout(&store, &handle.stream, &mut unconfirmed)
                        {
                            handle.errors.record(e);
                            return;
                        }
                        let options = SealOptions {
                            finished,
                            since: super::resume::compaction_since(&store, &id, peers, upper),
                        };
                        match store.seal_with_claimed(&handle.stream, upper, options) {
                            Ok(_) => sealed = upper,
                            Err(e) => {
                                handle.errors.record(e);
                                return;
                            }
                        }
                    }
                    if finished {
                        held = None;
                    } else if let Some(cap) = held.as_mut() {
                        match T::from_u64(sealed) {
                            Some(sealed) if *cap.time() < sealed => cap.downgrade(&sealed),
                            Some(_) => {}
                            // Sealed beyond `T`'s range: every time of `T` is complete.
                            None => held = None,
                        }
                    }
                }
            },
        )
        .as_collection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::MemBlob;
    use crate::operators::worker_stream_id;
    use crate::wal::MemLog;
    use std::sync::Arc;

    fn store_with(id: &str, upper: u64) -> (Store, WriterClaim) {
        let store = Store::open_on(
            Arc::new(MemBlob::new()),
            Arc::new(MemLog::new()),
            Default::default(),
        )
        .unwrap();
        let stream = worker_stream_id(id, 0, 1);
        store
            .create_stream(&stream, StreamOptions { durable: false })
            .unwrap();
        store.seal(&stream, upper).unwrap();
        let claim = store.claim_writer(&stream).unwrap();
        (store, claim)
    }

    /// A persisted operator downstream of the upsert may write another store of the process: the state is
    /// compacted no further than its upper, or a restart would replay the state's history collapsed past
    /// what that operator persisted (values whose retractions were compacted away stay in its output).
    #[test]
    fn the_state_is_compacted_no_further_than_a_persisted_operator_in_another_store() {
        let (u, _u_claim) = store_with("u", 5);
        let (_a, a_claim) = store_with("a", 2);
        // Other tests of this process may hold claims at lower uppers: "no further than" is the property.
        assert!(super::super::resume::compaction_since(&u, "u", 1, 5).is_some_and(|since| since <= 1));
        drop(a_claim);
        assert!(super::super::resume::compaction_since(&u, "u", 1, 5).is_some_and(|since| since <= 4));
    }
}
