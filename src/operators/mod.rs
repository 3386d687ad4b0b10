//! Timely / differential operators over the store.
//!
//! - [`arrange`]: [`ArrangePersisted`], which arranges a collection into a store stream and serves it as a
//!   DD arrangement over the persisted batches ([`PersistedTrace`](crate::trace::PersistedTrace)), and
//!   [`ArrangeEncoded::arrange_encoded`], the matching in-memory arrangement to join it with;
//! - [`count`]: [`CountPersisted`], counts per key over a persisted arrangement, read from its batches;
//! - [`persist`]: [`Persist`], which persists a collection through a [`Token`](crate::Token) and passes
//!   it through, replaying what earlier runs persisted first;
//! - [`upsert`]: [`UpsertPersisted`], the de-upsert operator, with its state in a store stream;
//! - `persister`: the state machine inside the arranging operator (write, seal, emit) and
//!   [`PersistHandle`], through which the caller sees what it persisted and the errors it met.
//!
//! **DD operators on a persisted arrangement.** `arrange_persisted` takes `VecCollection<T, (K, V), R>`
//! at any top-level timestamp `T` that is a [`PersistTime`] (`u64`, `u32`, `usize` — what DD's examples
//! infer —, `u16`, `u8`) with any [`Codec`] key and val (std types, or a serde type through `serde_codec!`) and `R` one of
//! `isize` (what `new_collection()` gives), `i64`, `i32` ([`PersistDiff`]); the arrangement's keys and
//! vals are `&[u8]` slices of the mapped files (decode them with [`Codec::decode`]), its times `T` and its
//! diffs `i64`.
//!
//! | DD | on a persisted arrangement |
//! |---|---|
//! | `arrange_by_key()` | `collection.arrange_persisted(&store, "id")?` → `(Arranged, PersistHandle)` |
//! | `as_collection(f)` | `arranged.as_collection(\|k: &[u8], v: &[u8]\| (K::decode(k).unwrap(), V::decode(v).unwrap()))` |
//! | `join_core(other, f)` | the other side by [`ArrangeEncoded::arrange_encoded`] (same key type and partitioning); `f` gets `&[u8]`s |
//! | `join`, `join_map`, `semijoin`, `antijoin` | `join_core` against `other.arrange_encoded()` (for `semijoin`, `other.map(\|k\| (k, ()))`); `antijoin` = `collection.concat(semijoin.negate())` |
//! | `reduce(f)` | `arranged.reduce_abelian::<_, BytesBuilder, BytesSpine, _>(...)` over `&[u8]` ([`crate::trace`]), or `as_collection` then `reduce` in memory |
//! | `count()`, `count_total()` | [`CountPersisted::count`]: counts read from the persisted batches (`(key bytes, i64)`, times `T`) |
//! | `threshold_total`, `distinct_total` | `as_collection(...)` then DD's `threshold` / `distinct` (in memory) |
//! | `iterate` (read-only use inside the loop) | `arranged.enter(scope)` inside the loop, joined with `inner.arrange_encoded()` (`tests/dd_ports.rs`: DD's bfs) |
//! | `trace.import(scope)` | as with DD's traces: the import serves the persisted batches |
//!
//! A key or val type without a `Codec`, another diff type, or another timestamp type, is a compile error
//! that says what to use.
//!
//! **Times.** The store holds `u64` times; `arrange_persisted`, [`CountPersisted`], the trace
//! ([`PersistedTrace<T>`](crate::trace::PersistedTrace), `T = u64` by default), its batches and cursors
//! work at any [`PersistTime`] `T` and convert at the boundary ([`PersistTime::to_u64`] when writing,
//! [`PersistTime::from_u64`] when reading; a store frontier beyond `T`'s range is `T`'s empty frontier).
//! A stream can be read at another timestamp type whose range holds its times; a batch holding a time
//! that does not fit is refused ([`Error::BadInput`]). Top level only: inside `iterate` use
//! `arranged.enter(scope)`, as with DD. [`PersistHandle`]'s times (`resume_at`, `upper`, ...) stay store
//! times (`u64`): convert with `T::from_u64(handle.resume_at())`. [`Persist`] and [`UpsertPersisted`]
//! take `u64` times only.
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
pub mod persist;
mod persister;
pub mod resume;
pub mod time;
pub mod typed;
pub mod typed_join;
pub mod typed_reduce;
pub mod upsert;

pub use arrange::{ArrangeEncoded, ArrangePersisted, PersistOptions, PersistedArrangement};

pub use count::CountPersisted;
pub use persist::{Persist, Persisted};
pub use persister::PersistHandle;
pub use resume::{resume_at, ResumeState};
pub use time::PersistTime;
pub use typed::{ArrangeTyped, ArrangeTypedBySelf, TypedArranged, TypedEncoded, TypedPersisted, TypedTrace};
pub use typed_join::{JoinSide, SemijoinSide};
pub use upsert::{Upsert, UpsertHandle, UpsertPersisted, Upserted};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::store::Store;
use differential_dataflow::ExchangeData;
use std::collections::BTreeSet;

/// The hash that places a key on a worker: xxh3-64 of the key's encoding (its bytes in the store).
pub fn key_hash(key: &[u8]) -> u64 {
    crate::format::checksum(key)
}

/// The integer diff types a persisted collection may have: `i64` (what the store holds), and `isize` (DD's
/// default, `new_collection()`) and `i32`, widened to `i64` when written. (On targets whose `isize` is
/// wider than 64 bits, `isize` diffs beyond `i64` saturate; no such target runs timely today.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a diff type a persisted collection can have",
    note = "persisted collections take `isize`, `i64` or `i32` diffs; map other diffs with `explode` or `map_in_place`"
)]
pub trait PersistDiff: ExchangeData + Copy {
    /// The diff as the store holds it.
    fn to_i64(self) -> i64;

    /// A diff the store holds (an `i64`, possibly a sum of several written diffs), as this type, or `None`
    /// if it does not fit (an `i32` diff summed beyond `i32`). The typed operators
    /// ([`TypedArranged`]) report `None` as an [`Error::DiffOverflow`].
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

impl PersistDiff for i32 {
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn from_i64(diff: i64) -> Option<Self> {
        i32::try_from(diff).ok()
    }
}

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

/// The store stream worker `index` of `peers` uses for the arrangement `id`: `"{id}/w{index}of{peers}"`.
pub fn worker_stream_id(id: &str, index: usize, peers: usize) -> String {
    format!("{id}/w{index}of{peers}")
}

/// Fails with [`Error::BadInput`] if `store` holds streams of arrangement `id` written by a number of
/// workers other than `peers`.
pub fn check_worker_count(store: &Store, id: &str, peers: usize) -> Result<()> {
    let prefix = format!("{id}/w");
    for stream in store.streams() {
        let Some((index, count)) = stream
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once("of"))
        else {
            continue;
        };
        let (Ok(_), Ok(count)) = (index.parse::<usize>(), count.parse::<usize>()) else {
            continue;
        };
        if count != peers {
            return Err(Error::bad_input(format!(
                "arrangement {id:?} was persisted by {count} workers (stream {stream:?}); restarting it with \
                 {peers} workers is not supported"
            )));
        }
    }
    Ok(())
}

/// The times of updates a durable stream recovered from its WAL (written, not sealed) at or above `upper`.
/// Empty, without reading anything, when there are none (always for streams that are not durable).
pub(crate) fn unsealed_times(store: &Store, stream: &str, upper: u64) -> Result<BTreeSet<u64>> {
    let mut times = BTreeSet::new();
    if store.unsealed_len(stream)? == 0 {
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
