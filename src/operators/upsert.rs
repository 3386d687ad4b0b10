//! [`UpsertPersisted`]: the de-upsert operator. Turns a stream of upserts `(key, Some(val) | None, time)`
//! into a differential collection of `(key, val)` — retracting each key's previous value and inserting the
//! new one, `None` deleting — with the previous values read from a store stream (see [`crate::upsert`]).
//!
//! Per worker (keys exchanged by [`key_hash`] when there are several), the operator stashes upserts by
//! time; when the input frontier passes a time it applies that time's upserts against the state
//! ([`apply_upserts`]: lookups as of the time, then a write at the time) and emits the resulting updates
//! under that time; then it seals the state stream up to the frontier.
//!
//! Restart: the state stream is not durable, so after a crash it holds exactly the sealed times. Upserts at
//! times below [`UpsertHandle::resume_at`] are ignored (they were applied before); the input must replay
//! from there (a durable source replays its log). The output of the times below `resume_at` was emitted by
//! the earlier run, the rest is emitted again: no insertion is duplicated and no retraction is lost.

use super::{check_worker_count, key_hash, worker_stream_id};
use crate::codec::Codec;
use crate::error::Result;
use crate::store::{Store, StreamOptions};
use crate::upsert::apply_upserts;
use crate::FRONTIER_CLOSED;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

/// An upsert: `(key, new value or None to delete, time)`.
pub type Upsert<K, V> = (K, Option<V>, u64);

/// The de-upserted collection and this worker's handle.
pub type Upserted<'scope, K, V> = (VecCollection<'scope, u64, (K, V), i64>, UpsertHandle);

/// Upserts waiting for their time to complete, with a capability to emit at that time.
type Stash<K, V> = BTreeMap<u64, (Capability<u64>, Vec<(K, Option<V>)>)>;

/// What the caller can see of a running de-upsert operator.
#[derive(Clone, Debug)]
pub struct UpsertHandle {
    stream: String,
    resume_at: u64,
    error: Arc<Mutex<Option<String>>>,
}

impl UpsertHandle {
    /// The store stream holding this worker's state.
    pub fn stream_id(&self) -> &str {
        &self.stream
    }

    /// The state's sealed upper when the operator was built: the input must replay upserts from this time
    /// on; earlier ones are ignored.
    pub fn resume_at(&self) -> u64 {
        self.resume_at
    }

    /// The first error the operator met, if any. After an error it stops applying upserts (it cannot
    /// return errors to timely) and lets the dataflow finish; its output is then incomplete.
    pub fn error(&self) -> Option<String> {
        self.error.lock().clone()
    }
}

/// De-upserting a stream into a persisted collection. See the module docs.
pub trait UpsertPersisted<'scope, K, V> {
    /// De-upserts into store stream `id` (one stream per worker, see [`worker_stream_id`]), returning the
    /// collection of `(key, val)` with its updates, and this worker's handle.
    ///
    /// Errors (when building the dataflow): [`crate::Error::BadInput`] if the state was persisted by a
    /// different number of workers; store errors from creating or opening the stream.
    fn upsert_persisted(self, store: &Store, id: &str) -> Result<Upserted<'scope, K, V>>;
}

impl<'scope, K, V> UpsertPersisted<'scope, K, V> for Stream<'scope, u64, Vec<Upsert<K, V>>>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
{
    fn upsert_persisted(self, store: &Store, id: &str) -> Result<Upserted<'scope, K, V>> {
        let scope = self.scope();
        let (index, peers) = (scope.index(), scope.peers());
        check_worker_count(store, id, peers)?;
        let stream = worker_stream_id(id, index, peers);
        if !store.has_stream(&stream) {
            store.create_stream(&stream, StreamOptions { durable: false })?;
        }
        let handle = UpsertHandle {
            stream,
            resume_at: store.upper(&worker_stream_id(id, index, peers))?,
            error: Default::default(),
        };
        let output = if peers == 1 {
            build(self, Pipeline, store.clone(), handle.clone())
        } else {
            let mut scratch = Vec::new();
            let exchange = Exchange::new(move |u: &Upsert<K, V>| {
                scratch.clear();
                u.0.encode(&mut scratch);
                key_hash(&scratch)
            });
            build(self, exchange, store.clone(), handle.clone())
        };
        Ok((output, handle))
    }
}

fn build<'scope, K, V, P>(
    input: Stream<'scope, u64, Vec<Upsert<K, V>>>,
    pact: P,
    store: Store,
    handle: UpsertHandle,
) -> VecCollection<'scope, u64, (K, V), i64>
where
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    P: ParallelizationContract<u64, Vec<Upsert<K, V>>>,
{
    input
        .unary_frontier::<CapacityContainerBuilder<Vec<((K, V), u64, i64)>>, _, _, _>(
            pact,
            "UpsertPersisted",
            move |_capability, _info| {
                let mut stash: Stash<K, V> = BTreeMap::new();
                let mut sealed = handle.resume_at;
                // Just past the latest time applied.
                let mut applied_upto = handle.resume_at;
                move |(input, frontier), output| {
                    input.for_each(|cap, data| {
                        for (k, v, t) in data.drain(..) {
                            if t < handle.resume_at {
                                continue; // applied by an earlier run
                            }
                            let entry = stash.entry(t).or_insert_with(|| (cap.delayed(&t, 0), Vec::new()));
                            entry.1.push((k, v));
                        }
                    });
                    if handle.error.lock().is_some() {
                        stash.clear();
                        return;
                    }
                    // Apply every complete time, in order.
                    while let Some(entry) = stash.first_entry() {
                        let t = *entry.key();
                        if frontier.less_equal(&t) {
                            break;
                        }
                        let (cap, records) = entry.remove();
                        match apply_upserts(&store, &handle.stream, t, records) {
                            Ok(updates) => {
                                applied_upto = applied_upto.max(t + 1);
                                let updates = updates.into_iter().map(|(k, v, d)| ((k, v), t, d));
                                output.session(&cap).give_iterator(updates);
                            }
                            Err(e) => {
                                *handle.error.lock() = Some(format!("upsert at time {t}: {e}"));
                                stash.clear();
                                return;
                            }
                        }
                    }
                    // Seal what is complete: the state below the frontier is final. An exhausted input
                    // (empty frontier) may be this process ending, not the source: seal what was applied,
                    // without closing the stream, so a later run can continue with later times.
                    let upper = match frontier.frontier().iter().min() {
                        Some(&f) => f.min(FRONTIER_CLOSED - 1),
                        None => applied_upto,
                    };
                    if upper > sealed {
                        match store.seal(&handle.stream, upper) {
                            Ok(_) => sealed = upper,
                            Err(e) => *handle.error.lock() = Some(format!("seal at {upper}: {e}")),
                        }
                    }
                }
            },
        )
        .as_collection()
}
