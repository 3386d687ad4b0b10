//! Timely / differential operators over the store.
//!
//! - [`arrange`]: [`ArrangePersisted`], which arranges a collection into a store stream and serves it as a
//!   DD arrangement over the persisted batches ([`PersistedTrace`](crate::trace::PersistedTrace)), and
//!   [`ArrangePersisted::arrange_encoded`], the matching in-memory arrangement to join it with;
//! - [`count`]: [`CountPersisted`], counts per key over a persisted arrangement, read from its batches;
//! - [`persist`]: [`Persist`], which persists a collection through a [`Token`](crate::Token) and passes
//!   it through, replaying what earlier runs persisted first;
//! - [`upsert`]: [`UpsertPersisted`], the de-upsert operator, with its state in a store stream;
//! - `persister`: the state machine inside the arranging operator (write, seal, emit) and
//!   [`PersistHandle`], through which the caller sees what it persisted and the errors it met.
//!
//! **Partitioning.** With several workers each key lives on one worker, chosen by [`key_hash`] of the
//! key's encoding (xxh3: stable across builds and processes, unlike DD's `Hashable`, so a restarted
//! dataflow finds every key's history on the worker that receives its new updates). Joining a persisted
//! arrangement with another arrangement requires both to be partitioned the same way: arrange the other
//! side with [`ArrangePersisted::arrange_encoded`] (or exchange it by `key_hash` yourself). With one worker
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
pub mod upsert;

pub use arrange::{ArrangePersisted, PersistOptions, PersistedArrangement};
pub use count::CountPersisted;
pub use persist::{Persist, Persisted};
pub use persister::PersistHandle;
pub use resume::{resume_at, ResumeState};
pub use upsert::{Upsert, UpsertHandle, UpsertPersisted, Upserted};

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::store::Store;
use std::collections::BTreeSet;

/// The hash that places a key on a worker: xxh3-64 of the key's encoding (its bytes in the store).
pub fn key_hash(key: &[u8]) -> u64 {
    crate::format::checksum(key)
}

/// The exchange function of persisting operators: [`key_hash`] of an update's encoded key (one scratch
/// buffer reused across updates).
pub(crate) fn update_hash<K: Codec, V>() -> impl FnMut(&((K, V), u64, i64)) -> u64 + 'static {
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
