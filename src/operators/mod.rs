//! Timely / differential operators over the store.
//!
//! - [`arrange`]: [`ArrangePersisted`], which arranges a collection into a store stream and serves it as a
//!   DD arrangement over the persisted batches ([`PersistedTrace`](crate::trace::PersistedTrace)), and
//!   [`ArrangeEncoded::arrange_encoded`], the matching in-memory arrangement to join it with;
//! - [`count`]: [`CountPersisted`], counts per key over a persisted arrangement, read from its batches;
//! - [`import`]: [`ImportChecked`], imports of a persisted trace into another dataflow that complete times
//!   only over blocks that passed their checksums (fail-stop);
//! - [`pass_through`]: [`Persist`], which persists a collection through a [`Token`](crate::Token) and
//!   passes it through, replaying what earlier runs persisted first;
//! - [`upsert`]: [`UpsertPersisted`], the de-upsert operator, with its state in a store stream;
//! - `persister`: the state machine inside the arranging operator (write, seal, emit) and
//!   [`PersistHandle`], through which the caller sees what it persisted and the errors it met.
//!
//! - [`typed`], [`typed_arrange`], [`typed_join`], [`typed_reduce`]: [`TypedArranged`], the typed view of a
//!   persisted (or encoded in-memory) arrangement, whose operators hand closures decoded `&K`, `&V` and emit
//!   the input's diff type: DD code ports by changing its `arrange_*` call only.
//!
//! **DD operators on a persisted arrangement.** [`ArrangeTyped::arrange_by_key_persisted`] takes
//! `VecCollection<T, (K, V), R>` at any top-level timestamp `T` that is a [`PersistTime`] (`u64`, `u32`,
//! `usize` — what DD's examples infer —, `u16`, `u8`, the signed `i32` — what Rust infers for `advance_to(1)`
//! alone, as in DD's tests —, `i64`, `isize`, `i16`, `i8` (stored offset by their minimum), `Product<(), T>`)
//! with any [`Codec`] key and val (std types, or a serde type through `serde_codec!`) and `R` one of `isize`
//! (what `new_collection()` gives), `i64`, `i32`, `i16`, `i8` ([`PersistDiff`]), and returns a
//! [`TypedPersisted`]`<K, V, T, R>`. Its operators take DD's closures unchanged (`&K`, `&V`, `&[(&V, R)]`)
//! and emit diffs of type `R` (`isize` in, `isize` out). The untyped [`ArrangePersisted::arrange_persisted`]
//! (keys and vals `&[u8]`, diffs `i64`) stays for byte-level use; [`TypedArranged::arranged`] gives the byte
//! arrangement under a typed one.
//!
//! | DD | on a persisted arrangement |
//! |---|---|
//! | `arrange_by_key()` | `collection.arrange_by_key_persisted(&store, "id")?` ([`ArrangeTyped`]); the handle: `arranged.handle()` |
//! | `arrange_by_self()` | `collection.arrange_by_self_persisted(&store, "id")?` ([`ArrangeTypedBySelf`]) |
//! | `as_collection(\|k, v\| ..)`, `flat_map_ref`, `as_vecs()` | the same call: `k: &K`, `v: &V`, diffs `R` |
//! | `enter(scope)`, `enter_region(region)`, `leave_region(outer)` | the same call |
//! | `join_core(other, \|k, v1, v2\| ..)` | the same call; `other` a collection of `(K, V2)` or `other.arrange_by_key_encoded()` (not DD's `arrange_by_key()`: a compile error says so, [`JoinSide`]) |
//! | `join(other)`, `join_map(other, f)` | the same call on the persisted arrangement; `other` a `VecCollection<(K, V2), R2>` (arranged inside by `arrange_by_key_encoded`) or a typed arrangement |
//! | `semijoin(keys)`, `antijoin(keys)` | the same call; `keys` a `VecCollection<K, R2>` or `arrange_by_self_encoded()` ([`SemijoinSide`]) |
//! | `Collection::join_core(arranged, f)` | `collection.arrange_by_key_encoded().join_core(arranged, f)` (DD arranges the receiver with `Hashable`) |
//! | `reduce(\|k, s, t\| ..)` | the same call: `k: &K`, `s: &[(&V, R)]`, output `VecCollection<(K, V2), R2>` |
//! | `reduce_abelian::<_, Bu, T2>(name, f)`, `reduce_core::<_, Bu, T2>(name, f)` (DD's `Collection` form) | the same call (`Bu` also DD's `Sealer`, as `ValBuilder` is): DD's `Arranged<TraceAgent<T2>>`, keyed by `&K` and placed by `Hashable`, so it joins DD's own arrangements; output vals of any type. DD's `Arranged` form, `::<_, Bu, T2, _, _>(name, f, push)`: drop the last two type arguments and the `push` closure (the builders taken build from `((K, V2), T, R2)` updates, which is all DD's usual `push` makes) |
//! | `count_total()`, `count_total_core::<R2>()` | the same call: `VecCollection<(K, R), isize>` / `<.., R2>` (over all of a key's vals) |
//! | `threshold_total(f)`, `threshold_semigroup(f)`, `distinct_total()`, `distinct_total_core::<R2>()` | the same call: `VecCollection<K, R2>` / `VecCollection<K, isize>` (over all of a key's vals) |
//! | `count()` (`Collection`) | `arrange_by_self_persisted(..)?.count_total()`, or [`CountPersisted::count`] on the byte arrangement |
//! | `iterate` (read-only use inside the loop) | `arranged.enter(scope)` inside the loop, joined with `inner.arrange_by_key_encoded()` (`tests/ports/dd_ports.rs`, `tests/ports/dd_ports_arrange.rs`) |
//! | `trace.import(scope)`, `import_named`, `import_core`, `import_frontier`, `import_frontier_core` | the same calls: `arranged.trace.import(scope)` gives a typed arrangement whose times complete only over checked blocks ([`import`]); on the byte-level trace, [`ImportChecked::import_checked`] |
//! | `persist` a collection / de-upsert | [`Persist::persist`], [`UpsertPersisted::upsert_persisted`], at any [`PersistTime`] |
//!
//! A key or val type without a `Codec`, another diff type, another timestamp type, or DD's own arrangement
//! as the other side of a join, is a compile error that says what to use.
//!
//! **Decode failures.** A typed operator that meets stored bytes that do not decode as `K` / `V` (the
//! arrangement read with other types than it was written with) records an [`Error::Decode`] in the
//! arrangement's [`ErrorSlot`](crate::trace::ErrorSlot) (the [`PersistHandle`]'s), skips the record and
//! holds its output frontier for good: a probe stalls rather than pass a time whose answer may be
//! incomplete (see [`typed`]). It never panics.
//!
//! **Times.** The store holds `u64` times; `arrange_persisted`, [`CountPersisted`], the trace
//! ([`PersistedTrace<T>`](crate::trace::PersistedTrace), `T = u64` by default), its batches and cursors
//! work at any [`PersistTime`] `T` and convert at the boundary ([`PersistTime::to_u64`] when writing,
//! [`PersistTime::from_u64`] when reading; a store frontier beyond `T`'s range is `T`'s empty frontier).
//! A stream can be read at another timestamp type whose range holds its times; a batch holding a time
//! that does not fit is refused ([`Error::BadInput`]). Top level only: inside `iterate` use
//! `arranged.enter(scope)`, as with DD. The store keeps `u64::MAX` for the closed frontier: a time there is
//! refused ([`Error::BadInput`]), and a frontier advanced to `u64::MAX` (of `u64` times, or a signed type's
//! greatest time, stored as `u64::MAX`) seals only below `u64::MAX - 1`, so an update at `u64::MAX - 1`
//! completes when the input closes, not before (found by an adversarial test; DD completes it at the
//! advance). [`PersistHandle`]'s times (`resume_at`, `upper`, ...) stay store
//! times (`u64`): convert with `T::from_u64(handle.resume_at())`. [`Persist`] and [`UpsertPersisted`]
//! take any [`PersistTime`] too.
//!
//! **Partitioning.** With several workers each key lives on one worker, chosen by [`key_hash`] of the
//! key's encoding (xxh3: stable across builds and processes, unlike DD's `Hashable`, so a restarted
//! dataflow finds every key's history on the worker that receives its new updates). Joining a persisted
//! arrangement with another arrangement requires both to be partitioned the same way: arrange the other
//! side with [`ArrangeEncoded::arrange_encoded`] (or exchange it by `key_hash` yourself). With one worker
//! any partitioning works.
//!
//! **Streams.** Worker `i` of `n` persists into the stream [`worker_stream_id`]`(id, i, n)`, i.e.
//! `"{id}/w{i}of{n}"`. Restarting with a different number of workers is not supported yet (the keys would
//! have to be re-partitioned); it is detected when the operator is built and reported as
//! [`Error::BadInput`].

pub mod arrange;
pub mod count;
pub mod import;
pub mod pass_through;
mod persist_handle;
mod persister;
mod replays;
pub mod resume;
mod sealer;
pub mod time;
pub mod typed;
pub mod typed_arrange;
pub mod typed_join;
pub mod typed_reduce;
pub mod upsert;

pub use arrange::{ArrangeEncoded, ArrangePersisted, PersistOptions, PersistedArrangement};

pub use count::CountPersisted;
pub use import::{hold_until_checked, ImportButton, ImportChecked, TypedImport};
pub use pass_through::{Persist, Persisted};
pub use persist_handle::PersistHandle;
pub use resume::{agree_resume_state, compaction_holder, resume_at, ResumeState};
pub use sealer::{SealCounts, SealMode};
pub use time::PersistTime;
pub use typed::{BytesCursor, BytesTrace, TypedArranged, TypedEncoded, TypedPersisted, TypedTrace};
pub use typed_arrange::{ArrangeTyped, ArrangeTypedBySelf};
pub use typed_join::{JoinSide, Joined, SemijoinSide};
pub use typed_reduce::{ReduceBuilder, ReduceLayout, ReduceSpine};
pub use upsert::{Upsert, UpsertHandle, UpsertPersisted, Upserted};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::store::Store;
use differential_dataflow::ExchangeData;
use std::collections::{BTreeMap, BTreeSet};

/// The hash that places a key on a worker: xxh3-64 of the key's encoding (its bytes in the store).
pub fn key_hash(key: &[u8]) -> u64 {
    crate::encoding::checksum(key)
}

/// The integer diff types a persisted collection may have: `i64` (what the store holds), and `isize` (DD's
/// default, `new_collection()`), `i32`, `i16` and `i8`, widened to `i64` when written. (On targets whose `isize` is
/// wider than 64 bits, `isize` diffs beyond `i64` saturate; no such target runs timely today.)
///
/// Another diff type (DD's semigroup `Present`, say) is a compile error that names this trait and what to
/// use (found by an adversarial port: it was a method that did not exist, with no such note):
///
/// ```compile_fail,E0277
/// use ddpersist::operators::ArrangeTyped;
/// use differential_dataflow::difference::Present;
/// use differential_dataflow::VecCollection;
///
/// fn port<'s>(store: &ddpersist::Store, sets: VecCollection<'s, u64, (u32, u32), Present>) {
///     sets.arrange_by_key_persisted(store, "sets").unwrap(); // map the diffs to `isize` first
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a diff type a persisted collection can have",
    note = "persisted collections take `isize`, `i64`, `i32`, `i16` or `i8` diffs; map other diffs with `explode` or `map_in_place`"
)]
pub trait PersistDiff: ExchangeData + Copy {
    /// The diff as the store holds it.
    fn to_i64(self) -> i64;

    /// A diff the store holds (an `i64`, possibly a sum of several written diffs), as this type, or `None`
    /// if it does not fit (an `i32` diff summed beyond `i32`); `Some` for 0. The typed operators
    /// ([`TypedArranged`]) report `None` as an [`Error::Decode`] and hold their frontier.
    fn from_i64(diff: i64) -> Option<Self>;
}

impl PersistDiff for i64 {
    fn to_i64(self) -> i64 {
        self
    }
    fn from_i64(diff: i64) -> Option<Self> {
        Some(diff)
    }
}

impl PersistDiff for isize {
    fn to_i64(self) -> i64 {
        i64::try_from(self).unwrap_or(if self < 0 { i64::MIN } else { i64::MAX })
    }
    fn from_i64(diff: i64) -> Option<Self> {
        isize::try_from(diff).ok()
    }
}

/// The narrower signed diffs: widened to `i64` when written, narrowed back (or `None`) when read.
macro_rules! narrow_diff {
    ($($t:ty),*) => {$(
        impl PersistDiff for $t {
            fn to_i64(self) -> i64 {
                i64::from(self)
            }
            fn from_i64(diff: i64) -> Option<Self> {
                <$t>::try_from(diff).ok()
            }
        }
    )*};
}
narrow_diff!(i32, i16, i8);

/// The exchange function of persisting operators: [`key_hash`] of an update's encoded key (one scratch
/// buffer reused across updates).
pub(crate) fn update_hash<K: Codec, V, T, R>() -> impl FnMut(&((K, V), T, R)) -> u64 + 'static {
    let mut scratch = Vec::new();
    move |update| {
        scratch.clear();
        (update.0).0.encode(&mut scratch);
        key_hash(&scratch)
    }
}

pub(crate) use time::{refuse_other_time, types_at};

/// The store stream worker `index` of `peers` uses for the arrangement `id`: `"{id}/w{index}of{peers}"`.
pub fn worker_stream_id(id: &str, index: usize, peers: usize) -> String {
    format!("{id}/w{index}of{peers}")
}

/// The streams of arrangement `id` in `store` (`"{id}/w{index}of{count}"`), with their worker counts.
fn worker_streams_of(store: &Store, id: &str) -> Vec<(String, usize)> {
    let streams = store.streams().into_iter();
    streams
        .filter_map(|s| resume::worker_of(&s, id).map(|(_, count)| (s, count)))
        .collect()
}

/// Drops the streams of arrangement `id` written by a number of workers other than `peers` when this store
/// holds all of them (every worker's stream of each such count: one process wrote them) and none holds
/// anything ([`Store::holds_nothing`]: upper 0, not finished, no batch, spilled run, unsealed update or
/// logged seal). A build refused part way leaves such streams behind (the operators built before the
/// refused one created theirs; adversarial round 14: a build on 3 workers refused over an older id left a
/// new id's 3 empty streams, which then refused the rerun on the right 2 workers, "persisted by 3
/// workers"), as does a run stopped before its first seal. Holding nothing, they place no key on any
/// worker, and left in place they would hold the store's compaction at 0 (DESIGN.md §5.1); the id is then
/// built as a new one (a new id answers from its upstream's since, §5.1). Left for [`check_worker_count`]
/// to refuse: streams that hold something, a live operator's (the drop claims each stream and checks it
/// again under the claim), and a set of which this store holds only some (in a cluster each process holds
/// its own workers' streams: one process alone must not decide otherwise than the others). The workers of
/// one build come here one at a time (a process-wide lock, taken only when such streams exist).
///
/// Errors: those of [`Store::drop_stream`] other than [`Error::UnknownStream`] and a live writer's
/// [`Error::BadInput`] (a failed manifest commit, which poisons the store).
pub(crate) fn retire_empty_streams_of_other_counts(store: &Store, id: &str, peers: usize) -> Result<()> {
    static RETIRING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
    let other = || -> Vec<(String, usize)> {
        let streams = worker_streams_of(store, id).into_iter();
        streams.filter(|(_, count)| *count != peers).collect()
    };
    if other().is_empty() {
        return Ok(());
    }
    let _one_at_a_time = RETIRING.lock();
    let other = other();
    let mut held: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, count) in &other {
        *held.entry(*count).or_default() += 1;
    }
    let whole = held.iter().all(|(count, streams)| count == streams);
    if !whole || !other.iter().all(|(stream, _)| store.holds_nothing(stream)) {
        return Ok(());
    }
    for (stream, _) in &other {
        match store.drop_stream_if_empty(stream) {
            Ok(true) | Err(Error::UnknownStream { .. }) => {}
            // Written meanwhile, or a live operator's: check_worker_count refuses the build.
            Ok(false) | Err(Error::BadInput { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Fails with [`Error::BadInput`] if `store` holds streams of arrangement `id` written by a number of
/// workers other than `peers`.
pub fn check_worker_count(store: &Store, id: &str, peers: usize) -> Result<()> {
    for (stream, count) in worker_streams_of(store, id) {
        if count != peers {
            return Err(Error::bad_input(format!(
                "arrangement {id:?} was persisted by {count} workers (stream {stream:?}); restarting it with \
                 {peers} workers is not supported"
            )));
        }
    }
    Ok(())
}

/// The times of updates a durable stream recovered (written, not sealed) at or above `upper`: from its WAL
/// into the memtable, or in its spilled runs (found by an adversarial test: a durable stream whose
/// unsealed updates were all spilled before a restart was sealed past them as finished when its source
/// ended). Empty, without reading anything, when there are none (always for streams that are not
/// durable).
pub(crate) fn unsealed_times(store: &Store, stream: &str, upper: u64) -> Result<BTreeSet<u64>> {
    let mut times = BTreeSet::new();
    if !store.holds_unsealed(stream)? {
        return Ok(times);
    }
    let snapshot = store.snapshot(stream)?;
    for update in snapshot.iter()? {
        let (_, _, time, _) = update?;
        if time >= upper {
            times.insert(time);
        }
    }
    Ok(times)
}
