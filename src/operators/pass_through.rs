//! [`Persist`]: persists a collection through a [`Token`] and passes it through; on restart, replays
//! what earlier runs persisted before anything else.
//!
//! Times: any top-level [`PersistTime`] `T` (`u64`, the default, `u32`, `usize`, ...), stored as `u64`
//! as for [`ArrangePersisted`](super::ArrangePersisted); a persisted time beyond `T`'s range fails the build
//! ([`Error::BadInput`]). The handle's times are store times (`u64`).
//!
//! The operator on worker `i` of `n` writes into the store stream
//! [`worker_stream_id`](super::worker_stream_id)`(token.id(), i, n)` (input exchanged by
//! [`key_hash`](super::key_hash) when `n > 1`, as for [`ArrangePersisted`](super::ArrangePersisted), so a
//! restarted dataflow finds each key's history on the worker that receives its new updates). It:
//! 1. when built: reads the stream's snapshot (every persisted update, sealed or, for durable streams,
//!    written and recovered from the WAL) and decodes it, so a decode error fails the build;
//! 2. on its first activation: emits that replay, at the updates' own times;
//! 3. on every activation: writes the new input updates to the store (paying the manager's rate limit),
//!    then passes them through; input at times below [`PersistHandle::own_upper`] was persisted (and
//!    replayed) already and is dropped, so replaying a source from [`PersistHandle::resume_at`] is
//!    idempotent (a durable stream's operator refuses it instead: below);
//! 4. when the input frontier advances: seals the stream there (recording the advance even without
//!    data), and holds its output capability at the persisted upper, so a downstream operator sees a time
//!    complete only once it is sealed.
//!
//! **Exactly once.** With a replayable input (the default, streams that are not durable) the resume point
//! is [`PersistHandle::resume_at`]: the input replays every time from there in full; each update reaches
//! the store and the output once (the replay below a worker's own upper is dropped, the rest is new to
//! it, since a stream that is not durable keeps nothing unsealed across a restart). A *durable* stream
//! ([`ManagerOptions::durable`](crate::ManagerOptions::durable)) is for an input that cannot replay: every
//! update the operator wrote before a crash survives in the WAL and is replayed downstream once, the input
//! continues with new updates only, and updates it had sent but the operator had not yet written are lost
//! with the crash. Replaying into a durable stream would write the recovered times twice: a durable
//! operator holding recovered updates refuses an update below its upper (a replay) with
//! [`Error::BadInput`] in its handle and stops, so only an operator fed by a source that cannot replay is durable, never one downstream of a
//! persisted operator (which replays on restart: adversarial round 11). A source that
//! keeps what is not yet acknowledged loses nothing over a stream that is not durable: a probe on the
//! output passes a time only once every worker sealed it, so the source drops what lies below the probe's
//! frontier and after a restart re-feeds from the oldest time it kept (DESIGN.md §5.1).
//!
//! Errors cannot be returned from an operator: the first one is kept in the [`PersistHandle`], and the
//! operator stops writing, passing through and advancing, and holds its capability for good, so nothing
//! downstream sees a time complete that was not persisted. Drop the dataflow after an error.

use super::persister::{input_bound, PersistHandle, Persister};
use super::resume::open_worker_stream;
use super::{types_at, unsealed_times, update_hash, PersistTime};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::manager::Token;
use crate::store::StreamOptions;
use crate::trace::ErrorSlot;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;

use super::resume::Replay;
use super::PersistDiff;

/// The updates of a collection of `(key, val)` pairs at times `T` with diffs `R`.
type Updates<K, V, T, R> = Vec<((K, V), T, R)>;

/// A persisted collection over times `T` (`u64` by default) with diffs `R` (`i64` by default), and the
/// handle on the operator that persists it.
pub type Persisted<'scope, K, V, T = u64, R = i64> = (VecCollection<'scope, T, (K, V), R>, PersistHandle);

/// Persisting a collection of `(key, val)` pairs at times `T` (a [`PersistTime`], `u64` by default) with
/// diffs `R` (a [`PersistDiff`]: `isize`, DD's default, `i64`, `i32`, ...; stored as `i64`) and passing it
/// through. See the module docs.
pub trait Persist<'scope, K, V, T: PersistTime = u64, R: PersistDiff = i64> {
    /// Persists the collection into the stream of `token` (on this worker) and returns the collection —
    /// first what earlier runs persisted, then the new input — with the worker's [`PersistHandle`].
    ///
    /// Errors (when building the dataflow): [`Error::BadInput`] if the token is for another worker or the
    /// stream was persisted by a different number of workers or with other key or val types
    /// (`Store::check_types`), or with the other durability
    /// ([`ManagerOptions::durable`](crate::ManagerOptions::durable)); store errors opening or reading the
    /// stream; [`Error::Corrupt`] if a persisted key or val does not decode as `K` or `V`;
    /// [`Error::BadInput`] if one of the id's streams holds a time beyond `T`'s range, or for a durable
    /// token over the output of a persisted operator (which replays on restart); [`Error::Decode`] if a
    /// persisted diff (a sum of written ones, after merges) does not fit `R`. While running, an input
    /// update before its message's time (timely's contract: never), or below a durable stream's upper (a
    /// replay), is an [`Error::BadInput`] in the handle, and stops it.
    fn persist(self, token: Token) -> Result<Persisted<'scope, K, V, T, R>>;
}

impl<'scope, K, V, T, R> Persist<'scope, K, V, T, R> for VecCollection<'scope, T, (K, V), R>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    T: PersistTime,
    R: PersistDiff,
{
    fn persist(self, token: Token) -> Result<Persisted<'scope, K, V, T, R>> {
        let scope = self.inner.scope();
        let (index, peers) = (scope.index(), scope.peers());
        if token.worker() != index {
            return Err(Error::bad_input(format!(
                "the token for {:?} is for worker {}, not worker {index}",
                token.id(),
                token.worker()
            )));
        }
        let manager = token.manager().clone();
        let store = manager.store().clone();
        let durable = manager.options().durable;
        super::replays::refuse_durable_over(&store, &self.inner, token.id(), durable)?;
        let opened = open_worker_stream::<T>(
            &store,
            token.id(),
            (index, peers),
            StreamOptions { durable },
            &types_at::<K, V, T>(),
            false,
        )?;
        let stream = opened.stream.clone();
        let (replay, upper): (Replay<K, V, T>, u64) = super::resume::replay_as_of_since(&store, &stream)?;
        let replay = super::resume::narrow_diffs(replay, &stream)?;
        let pending = unsealed_times(&store, &stream, upper)?;
        let persister = Persister::new(&store, opened, pending, ErrorSlot::default()).throttled_by(manager);
        let handle = persister.handle();
        let output = if peers == 1 {
            build(self.inner, Pipeline, token, replay, persister)
        } else {
            let exchange = Exchange::new(update_hash::<K, V, T, R>());
            build(self.inner, exchange, token, replay, persister)
        };
        super::replays::mark_replaying(&output);
        Ok((output.as_collection(), handle))
    }
}

/// Builds the operator over `stream` (partitioned by `pact`): see the module docs.
fn build<'scope, K, V, T, R, P>(
    stream: timely::dataflow::Stream<'scope, T, Updates<K, V, T, R>>,
    pact: P,
    token: Token,
    replay: Updates<K, V, T, R>,
    mut persister: Persister,
) -> timely::dataflow::Stream<'scope, T, Updates<K, V, T, R>>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    T: PersistTime,
    R: PersistDiff,
    P: ParallelizationContract<T, Updates<K, V, T, R>>,
{
    let scope = stream.scope();
    let own_upper = persister.upper();
    stream.unary_frontier(pact, "Persist", move |capability, info| {
        // The replay goes out on the first activation, whether or not the input moves.
        scope.activator_for(info.address).activate();
        let mut capability = Some(capability);
        let mut replay = Some(replay);
        // Held for the operator's life: no other operator persists this stream meanwhile.
        let token = token;
        let mut passed: Updates<K, V, T, R> = Vec::new();
        move |(input, frontier), output| {
            let _ = &token;
            if let (Some(cap), Some(updates)) = (capability.as_ref(), replay.take()) {
                if !updates.is_empty() {
                    output.session(cap).give_container(&mut { updates });
                }
            }
            input.for_each(|message, data| {
                let times = data.iter().map(|(_, t, _)| t);
                if persister.refuse_times(message.stamp(), times) {
                    data.clear();
                }
                data.retain(|(_, time, diff)| time.to_u64() >= own_upper && diff.to_i64() != 0);
                passed.extend(data.iter().cloned());
                persister.stage(data);
            });
            persister.write_staged();
            if let Some(cap) = capability.as_ref() {
                if !persister.stopped() && !passed.is_empty() {
                    // Every passed time is at or beyond the input frontier, which is at or beyond `cap`.
                    output.session(cap).give_container(&mut passed);
                }
            }
            passed.clear();
            let to = input_bound(frontier.frontier());
            persister.advance_untraced(to);
            persister.hold(&mut capability);
        }
    })
}
