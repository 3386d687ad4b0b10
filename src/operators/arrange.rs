//! [`ArrangePersisted`]: arrange a collection into a store stream, and serve the stream's batch files as a
//! differential dataflow arrangement (`Arranged<TraceAgent<PersistedTrace<T>>>`), at any top-level
//! timestamp `T` that is a [`PersistTime`] (`u64`, `u32`, `usize`, `u16`, `u8`, the signed ones offset by
//! their minimum, and `Product<(), T>` of
//! those): input times are stored as
//! `u64` ([`PersistTime::to_u64`]) and read back as `T`.
//!
//! What the operator does, mirroring DD's `arrange_core` and `TraceAgent::import`:
//! 1. when built: checks the worker count, creates the worker's stream if missing, opens the stream's
//!    sealed batches as a [`PersistedTrace`] and inserts them, through the `TraceWriter`, into the trace it
//!    shares with readers (so joins built later preload them);
//! 2. on its first activation: emits those spans, covering `[0, upper)` of earlier runs, under its initial
//!    capability (time `T::minimum()`), so stream readers (`as_collection`, `reduce`) see the persisted data,
//!    then downgrades its capability to the persisted upper;
//! 3. on every activation: writes new input updates to the store and, when the input frontier advances,
//!    seals and emits one span per advance (`Persister`), holding its capability at the trace's upper
//!    (at or below every time a later span can hold); once the input is exhausted it closes the trace and
//!    drops the capability;
//! 4. exerts the trace: it adopts batches the store merged, and hands the `since` its readers allow to the
//!    persister, whose next seal commits it (see [`PersistedTrace`]).
//!
//! Invariants: the spans on the output stream are exactly the spans inserted into the trace, in order, each
//! sent under a capability at or below its lower bound; the capability is held at the trace's upper.

use super::persister::{input_bound, PersistHandle, Persister};
use super::resume::open_worker_stream;
use super::sealer::SealMode;
use super::{key_hash, types_at, unsealed_times, update_hash, PersistDiff, PersistTime};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::store::{Store, StreamOptions};
use crate::trace::check::CHECK_BLOCKS_PER_ACTIVATION;
use crate::trace::persisted::AllowedSince;
use crate::trace::{
    antichain, BytesBatcher, BytesSpine, BytesUpdate, PersistedSpan, PersistedTrace, SpanChecker,
};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::logging::DifferentialEventBuilder;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::{Data, ExchangeData, VecCollection};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map as _;
use timely::dataflow::Stream;
use timely::progress::{Stamp, Timestamp};

/// A persisted arrangement over times `T` (`u64` by default): the arrangement, and the handle on the
/// operator that persists it.
pub type PersistedArrangement<'scope, T = u64> =
    (Arranged<'scope, TraceAgent<PersistedTrace<T>>>, PersistHandle);

/// How [`ArrangePersisted::arrange_persisted_with`] creates its streams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistOptions {
    /// Create the stream durable: unsealed updates survive a restart in the store's WAL, and the input must
    /// then *not* replay them. The default, `false`, fits a replayable input (the usual case for operator
    /// state): unsealed updates are lost on restart and the input replays from
    /// [`PersistHandle::resume_at`]. A stream's durability is fixed when it is created: building an id whose
    /// streams were created with the other one fails ([`Error::BadInput`]; the two resume differently).
    /// Only an operator fed by a source that cannot replay is durable: a persisted operator upstream
    /// re-emits what it persisted on restart. A durable build directly over one's output is refused, and
    /// a durable operator holding unsealed updates from before the restart that receives an update below
    /// its upper (a replay, which would re-send those too) records [`Error::BadInput`] in its handle and
    /// stops, with every such worker of it (`operators::replays`).
    pub durable: bool,
    /// Where the operator runs its seals (default [`SealMode::Adaptive`]).
    pub seals: SealMode,
}

/// Arranging a collection of `(key, val)` pairs (with `isize`, `i64`, `i32`, `i16` or `i8` diffs, see
/// [`PersistDiff`]) at a top-level timestamp `T` (a [`PersistTime`]: `u64`, `u32`, `usize`, ...) into the
/// store. See the module docs.
///
/// The store holds times as `u64`: a stream written at one timestamp type can be read at another whose
/// range holds its times. The [`PersistHandle`]'s times (`resume_at`, `upper`, ...) are store times, `u64`;
/// convert them with [`PersistTime::from_u64`] (e.g. `usize::from_u64(handle.resume_at())`).
pub trait ArrangePersisted<'scope, K, V, T: PersistTime = u64> {
    /// Arranges the collection by key into stream `id` of `store` (one stream per worker, see
    /// [`worker_stream_id`](super::worker_stream_id)), with default [`PersistOptions`]. Returns the
    /// arrangement, served from the batch files, and the worker's [`PersistHandle`].
    ///
    /// Errors (when building the dataflow): [`Error::BadInput`] if the arrangement was persisted by a
    /// different number of workers or by other workers (another process's directory), or with other key or
    /// val types (`Store::check_types`), or with the other durability ([`PersistOptions::durable`]), or `id`
    /// is empty or in use by another live operator on this worker, or one of the id's streams holds a time
    /// beyond `T`'s range; store errors from creating or opening the stream ([`Error::Corrupt`] when batch
    /// files are missing or disagree with the manifest; a damaged block is met later and stops the
    /// arrangement: fail-stop, see [`PersistedTrace`]); [`Error::BadInput`] for a durable build over the
    /// output of a persisted operator (which replays on restart). While running, an input update before
    /// its message's time (timely's contract: never), or below a durable stream's upper (a replay), is an
    /// [`Error::BadInput`] in the handle, and stops it.
    fn arrange_persisted(self, store: &Store, id: &str) -> Result<PersistedArrangement<'scope, T>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData;

    /// As [`arrange_persisted`](Self::arrange_persisted), with options.
    fn arrange_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<PersistedArrangement<'scope, T>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData;
}

impl<'scope, T, K, V, R> ArrangePersisted<'scope, K, V, T> for VecCollection<'scope, T, (K, V), R>
where
    T: PersistTime,
    K: Data,
    V: Data,
    R: PersistDiff + differential_dataflow::difference::Semigroup,
{
    fn arrange_persisted(self, store: &Store, id: &str) -> Result<PersistedArrangement<'scope, T>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData,
    {
        self.arrange_persisted_with(store, id, PersistOptions::default())
    }

    fn arrange_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<PersistedArrangement<'scope, T>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData,
    {
        let scope = self.inner.scope();
        let (index, peers) = (scope.index(), scope.peers());
        super::replays::refuse_durable_over(store, &self.inner, id, options.durable)?;
        let stream_options = StreamOptions {
            durable: options.durable,
        };
        let opened = open_worker_stream::<T>(
            store,
            id,
            (index, peers),
            stream_options,
            &types_at::<K, V, T>(),
            true,
        )?;
        let mut trace = PersistedTrace::<T>::open(store, &opened.stream)?;
        debug_assert_eq!(
            trace.upper(),
            &antichain::<T>(opened.upper),
            "the trace starts at the stream's sealed upper"
        );
        let pending = unsealed_times(store, &opened.stream, opened.upper)?;
        let mut persister = Persister::new(store, opened, pending, trace.errors().clone());
        persister.set_seal_mode(options.seals);
        // The trace's readers advance the stream's since through the persister's seals.
        let allowed = AllowedSince::default();
        trace.allow_since_through(allowed.clone());
        persister.advance_since_from(allowed);
        let handle = persister.handle();
        let initial = trace.take_spans();
        let arranged = if peers == 1 {
            build(self.inner, Pipeline, trace, initial, persister)?
        } else {
            let exchange = Exchange::new(update_hash::<K, V, T, R>());
            build(self.inner, exchange, trace, initial, persister)?
        };
        Ok((arranged, handle))
    }
}

/// The in-memory side of a join with a persisted arrangement, at any timestamp (also inside `iterate`).
pub trait ArrangeEncoded<'scope, T: Timestamp + Lattice, K, V> {
    /// An in-memory arrangement of the collection with the same key type and partitioning as a persisted
    /// one: keys and vals encoded by their [`Codec`], exchanged by [`key_hash`], diffs as `i64`. Join it
    /// with a persisted arrangement (or one [`enter`](Arranged::enter)ed into a nested scope) through
    /// `join_core`.
    fn arrange_encoded(self) -> Arranged<'scope, TraceAgent<BytesSpine<T>>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData;
}

impl<'scope, T, K, V, R> ArrangeEncoded<'scope, T, K, V> for VecCollection<'scope, T, (K, V), R>
where
    T: Timestamp + Lattice + ExchangeData,
    K: Data,
    V: Data,
    R: PersistDiff + differential_dataflow::difference::Semigroup,
{
    fn arrange_encoded(self) -> Arranged<'scope, TraceAgent<BytesSpine<T>>>
    where
        K: Codec + ExchangeData,
        V: Codec + ExchangeData,
    {
        let encoded = self
            .inner
            .map(|((k, v), t, r): ((K, V), T, R)| ((k.to_bytes(), v.to_bytes()), t, r.to_i64()));
        let exchange = Exchange::new(|update: &BytesUpdate<T>| key_hash(&(update.0).0));
        arrange_core::<_, _, BytesBatcher<T>, BytesSpine<T>>(
            encoded,
            exchange,
            "ArrangeEncoded",
            BytesBatcher::new,
        )
    }
}

/// A container of input updates.
type Updates<K, V, T, R> = Vec<((K, V), T, R)>;

/// Builds the operator over `stream` (already partitioned by `pact`): see the module docs.
fn build<'scope, K, V, T, R, P>(
    stream: Stream<'scope, T, Updates<K, V, T, R>>,
    pact: P,
    trace: PersistedTrace<T>,
    initial: Vec<PersistedSpan<T>>,
    mut persister: Persister,
) -> Result<Arranged<'scope, TraceAgent<PersistedTrace<T>>>>
where
    K: Codec + Data,
    V: Codec + Data,
    T: PersistTime,
    R: PersistDiff,
    P: ParallelizationContract<T, Updates<K, V, T, R>>,
{
    let scope = stream.scope();
    let mut checker = SpanChecker::new(trace.errors().clone());
    let mut reader = None;
    let reader_ref = &mut reader;
    let output = stream.unary_frontier::<CapacityContainerBuilder<Vec<PersistedSpan<T>>>, _, _, _>(
        pact,
        "ArrangePersisted",
        move |capability, info| {
            let logger = scope
                .worker()
                .logger_for::<DifferentialEventBuilder>("differential/arrange")
                .map(Into::into);
            let mut trace = trace;
            trace.set_activator(scope.activator_for(info.address.clone()));
            let (agent, mut writer) = TraceAgent::new(trace, info.clone(), logger);
            let checking = scope.activator_for(info.address.clone());
            for span in &initial {
                checker.push(span);
                let stamp = if span.has_updates() {
                    Stamp::from_elem(T::minimum())
                } else {
                    Stamp::new()
                };
                writer.insert(span.clone(), stamp);
            }
            *reader_ref = Some(agent);
            // Seals run on a thread of their own; each one done activates the operator (`sealer.rs`).
            persister.pipeline(scope.worker().sync_activator_for(info.address.to_vec()));
            // The persisted spans go out on the first activation, whether or not the input moves.
            scope.activator_for(info.address).activate();
            let mut capability = Some(capability);
            let mut initial = Some(initial);
            move |(input, frontier), output| {
                if let (Some(cap), Some(spans)) = (capability.as_ref(), initial.take()) {
                    output.session(cap).give_iterator(spans.into_iter());
                }
                input.for_each(|message, data| {
                    let times = data.iter().map(|(_, t, _)| t);
                    if persister.refuse_times(message.stamp(), times) {
                        data.clear();
                    }
                    persister.stage(data)
                });
                persister.write_staged();
                // Maintenance first, so the seal below carries the since the trace's readers allow now.
                writer.exert();
                let to = input_bound(frontier.frontier());
                if let Some(cap) = capability.as_ref() {
                    let spans = persister.advance(to, &mut writer);
                    spans.iter().for_each(|span| checker.push(span));
                    if !spans.is_empty() {
                        output.session(cap).give_iterator(spans.into_iter());
                    }
                }
                // Fail-stop: no time completes before the blocks below it passed their checksums.
                if checker.check(CHECK_BLOCKS_PER_ACTIVATION) {
                    checking.activate();
                }
                persister.hold_within(&mut capability, checker.checked_upper());
            }
        },
    );
    let trace = reader.ok_or_else(|| Error::bad_input("timely did not run the operator constructor"))?;
    Ok(Arranged {
        stream: output,
        trace,
    })
}
