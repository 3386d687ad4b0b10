//! Helpers of the restart tests (`restart_*.rs`): their rows of `(String, u64)`, the collection a list of
//! updates accumulates to, and the state a crashed run leaves in a store.

use ddpersist::operators::worker_stream_id;
use ddpersist::{SealOptions, Store, StreamOptions};
use std::collections::BTreeMap;

pub use super::kill::worker_of;

/// A row: `(key, val)`.
pub type Row = (String, u64);
/// A DD update of a row: `(row, time, diff)`.
pub type Update = (Row, u64, i64);
/// A collection: each row's multiplicity.
pub type Collection = BTreeMap<Row, i64>;

/// The collection `updates` accumulate to over all times: each row's summed diff, zero sums dropped.
pub fn accumulate<'a>(updates: impl IntoIterator<Item = &'a Update>) -> Collection {
    let mut acc = Collection::new();
    for (row, _, diff) in updates {
        *acc.entry(row.clone()).or_insert(0) += diff;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// Persists worker `w`'s part of `updates` below `upper` into its stream of arrangement "x" (of 2
/// workers; a non-durable stream it creates), sealed at `upper`, finished or not: the state a run leaves
/// behind. Returns nothing.
pub fn persist_part(store: &Store, w: usize, updates: &[Update], upper: u64, finished: bool) {
    let id = worker_stream_id("x", w, 2);
    store
        .create_stream(&id, StreamOptions { durable: false })
        .unwrap();
    let part: Vec<(String, u64, u64, i64)> = updates
        .iter()
        .filter(|(r, t, _)| worker_of(&r.0, 2) == w && *t < upper)
        .map(|(r, t, d)| (r.0.clone(), r.1, *t, *d))
        .collect();
    store.write(&id, &part).unwrap();
    let options = SealOptions {
        finished,
        since: None,
    };
    store.seal_with(&id, upper, options).unwrap();
}

/// The updates at times below `below` of every worker stream of operator `id` run by `peers` workers
/// (`String` keys, `u64` vals): `(key, val, time)` with its summed diff, zero sums dropped.
pub fn operator_content(
    store: &Store,
    id: &str,
    peers: usize,
    below: u64,
) -> BTreeMap<(String, u64, u64), i64> {
    let mut out = BTreeMap::new();
    for w in 0..peers {
        let stream = worker_stream_id(id, w, peers);
        if !store.has_stream(&stream) {
            continue;
        }
        for (k, v, t, d) in store.snapshot(&stream).unwrap().decode::<String, u64>().unwrap() {
            if t < below {
                *out.entry((k, v, t)).or_insert(0) += d;
            }
        }
    }
    out.retain(|_, d| *d != 0);
    out
}
