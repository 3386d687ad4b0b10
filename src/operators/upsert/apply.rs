//! De-upsert against persisted state: turning "key K now has value V (or none)" into differential updates
//! (retract the previous value, insert the new one), with the previous values read from a store stream.
//!
//! [`apply_upserts`] handles one time's upserts: it looks the keys up as of that time (batches, spilled
//! runs and memtable, through the Bloom filters), computes the updates, writes them to the stream at that
//! time, and returns them. The stream then holds exactly the de-upserted collection, which is both the
//! operator's state and its output; the timely operator in `operators::upsert` calls this once per time as
//! the frontier passes it, and seals.
//!
//! Restart rule (what makes a crash harmless): the state stream is *not durable*, so a restart keeps
//! exactly the sealed times; the input is replayed from the stream's upper, and each time is applied again
//! against the state as of its predecessor. No insertion is applied twice and no retraction is lost.

use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::store::Store;
use std::collections::btree_map::{BTreeMap, Entry};

/// Applies one time's upserts to stream `id` (the last record per key wins) and returns the differential
/// updates `(key, val, diff)` it wrote at `time`, in key byte order. A record that leaves its key's value
/// unchanged produces nothing.
///
/// The state is keyed by the keys' encodings, so a key's encoding must stand for exactly its `Eq` class:
/// each key must decode back to itself (a codec that gives unequal keys one encoding, a `#[serde(skip)]`
/// field through `serde_codec!`, would merge their values and retract one key's value under the other),
/// and keys `Ord`-equal at one time must encode alike (a hand-written `Ord` that ignores case would keep
/// two values for one key). Checked per time's records, a decode a record and a comparison per repeated
/// key, beside a lookup's cost; `Ord`-equal keys of different times are not compared. The order of the
/// encodings does not matter here (the output is a collection): a codec that orders unlike `Ord` but is
/// otherwise faithful works.
///
/// Errors: those of [`Store::get_many_bytes`] and [`Store::write_bytes`] (nothing is written then);
/// [`Error::BadInput`] at `time` `u64::MAX` (the closed frontier; a signed time type's greatest time is
/// stored there), whether or not the records change anything;
/// [`Error::DiffOverflow`] if a previous value's multiplicity is `i64::MIN`, which no retraction can undo
/// in one `i64` diff; [`Error::BadInput`] (nothing written) for keys whose encodings disagree with them
/// as above.
/// [`Error::BadInput`] too while a persisted operator writes the stream (its dataflow is running).
pub fn apply_upserts<K, V>(
    store: &Store,
    id: &str,
    time: u64,
    records: Vec<(K, Option<V>)>,
) -> Result<Vec<(K, V, i64)>>
where
    K: Codec + Clone + Ord,
    V: Codec,
{
    let _admitted = store.refuse_claimed(id)?;
    apply_upserts_claimed(store, id, time, records)
}

/// [`apply_upserts`] by the upsert operator that holds the stream's writer claim.
pub(crate) fn apply_upserts_claimed<K, V>(
    store: &Store,
    id: &str,
    time: u64,
    records: Vec<(K, Option<V>)>,
) -> Result<Vec<(K, V, i64)>>
where
    K: Codec + Clone + Ord,
    V: Codec,
{
    if time == crate::FRONTIER_CLOSED {
        // As a write refuses it, whether or not the records change anything (found by an adversarial
        // test: an upsert of nothing there overflowed the operator's bookkeeping).
        return Err(Error::bad_input(format!(
            "stream {id:?}: an upsert at time u64::MAX, which the store keeps for the closed frontier"
        )));
    }
    let refuse = |what: &str, bytes: &[u8]| {
        Error::bad_input(format!(
            "stream {id:?}: the Codec of {} {what} (encoding {:02x?}): the upsert's state is keyed by \
             encodings, so keys would share or split values (a field serde skips, a hand-written Eq or \
             Ord; see `codec::ordered_serde`)",
            K::schema(),
            &bytes[..bytes.len().min(32)]
        ))
    };
    // One entry per Ord-equal key (the last record wins, as DD's upsert), with its encoding.
    let mut by_key: BTreeMap<K, (Vec<u8>, Option<V>)> = BTreeMap::new();
    for (k, v) in records {
        let bytes = k.to_bytes();
        match by_key.entry(k) {
            Entry::Occupied(mut e) => {
                if e.get().0 != bytes {
                    return Err(refuse(
                        "encodes two keys that Ord finds equal differently",
                        &bytes,
                    ));
                }
                e.get_mut().1 = v;
            }
            Entry::Vacant(e) => {
                if K::decode(&bytes).ok().as_ref() != Some(e.key()) {
                    return Err(refuse("does not decode a key's encoding back to the key", &bytes));
                }
                e.insert((bytes, v));
            }
        }
    }
    // In the encodings' (byte) order, which lookups and the output follow.
    let mut latest: Vec<(Vec<u8>, K, Option<V>)> =
        by_key.into_iter().map(|(k, (bytes, v))| (bytes, k, v)).collect();
    latest.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let keys: Vec<&[u8]> = latest.iter().map(|(k, ..)| &k[..]).collect();
    let previous = store.get_many_bytes(id, &keys, time)?;
    let mut writes: Vec<(&[u8], Vec<u8>, i64)> = Vec::new();
    let mut out = Vec::new();
    for ((key_bytes, key, new), prev) in latest.iter().zip(previous) {
        let new_bytes = new.as_ref().map(|v| v.to_bytes());
        let unchanged = matches!((&new_bytes, &prev[..]), (Some(n), [(p, 1)]) if n == p);
        if unchanged {
            continue;
        }
        // Retract whatever the state holds (one value with multiplicity 1, unless the stream was written
        // by something else), then insert the new value.
        for (val, diff) in prev {
            let retract = diff
                .checked_neg()
                .ok_or_else(|| Error::diff_overflow(key_bytes, time).in_stream(id))?;
            out.push((key.clone(), V::decode(&val)?, retract));
            writes.push((key_bytes, val, retract));
        }
        if let Some(n) = new_bytes {
            out.push((key.clone(), V::decode(&n)?, 1));
            writes.push((key_bytes, n, 1));
        }
    }
    store.write_bytes_claimed(id, writes.iter().map(|(k, v, d)| (*k, &v[..], time, *d)))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StreamOptions;

    fn s(x: &str) -> String {
        x.to_string()
    }

    #[test]
    fn retracts_the_previous_value_and_inserts_the_new_one() {
        let store = Store::in_memory().unwrap();
        store
            .create_stream("u", StreamOptions { durable: false })
            .unwrap();
        let out = apply_upserts(
            &store,
            "u",
            0,
            vec![(s("a"), Some(1u32)), (s("b"), Some(2)), (s("a"), Some(3))],
        );
        assert_eq!(out.unwrap(), vec![(s("a"), 3, 1), (s("b"), 2, 1)]);
        store.seal("u", 1).unwrap();
        let out = apply_upserts(
            &store,
            "u",
            1,
            vec![(s("a"), Some(3u32)), (s("b"), None), (s("c"), None)],
        );
        assert_eq!(
            out.unwrap(),
            vec![(s("b"), 2, -1)],
            "unchanged a and absent c produce nothing"
        );
        let out = apply_upserts(&store, "u", 2, vec![(s("a"), Some(4u32)), (s("b"), Some(5))]);
        assert_eq!(
            out.unwrap(),
            vec![(s("a"), 3, -1), (s("a"), 4, 1), (s("b"), 5, 1)]
        );
        let state: Vec<(String, u32, u64, i64)> = store.snapshot("u").unwrap().decode().unwrap();
        let mut acc = std::collections::BTreeMap::new();
        for (k, v, _, d) in state {
            *acc.entry((k, v)).or_insert(0) += d;
        }
        acc.retain(|_, d| *d != 0);
        assert_eq!(
            acc.into_iter().collect::<Vec<_>>(),
            vec![(("a".into(), 4), 1), (("b".into(), 5), 1)]
        );
    }

    /// A key type whose encoding drops a field `Eq` compares: two keys would share one state entry, and
    /// one key's value would be retracted under the other. Refused before anything is looked up or written.
    #[test]
    fn a_key_that_does_not_decode_to_itself_is_refused() {
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        struct Tagged {
            id: u32,
            #[serde(skip)]
            tag: u32,
        }
        crate::serde_codec!(Tagged);
        let store = Store::in_memory().unwrap();
        store
            .create_stream("u", StreamOptions { durable: false })
            .unwrap();
        let plain = Tagged { id: 1, tag: 0 };
        let out = apply_upserts(&store, "u", 0, vec![(plain.clone(), Some(1u32))]);
        assert_eq!(out.unwrap(), vec![(plain, 1, 1)], "a default tag round-trips");
        let tagged = Tagged { id: 1, tag: 7 };
        match apply_upserts(&store, "u", 1, vec![(tagged, Some(2u32))]) {
            Err(Error::BadInput { detail }) => {
                assert!(detail.contains("Tagged") && detail.contains("\"u\""), "{detail}")
            }
            other => panic!("expected BadInput, got {other:?}"),
        }
        assert_eq!(
            store
                .snapshot("u")
                .unwrap()
                .decode::<Tagged, u32>()
                .unwrap()
                .len(),
            1,
            "nothing written"
        );
    }

    /// A key type whose `Ord` ignores case while its encoding keeps it: "A" and "a" are one key to DD's
    /// upsert but two encodings, so the state would keep two values. Refused when both meet at one time;
    /// keys that only order unlike their encodings ("B" < "a" in bytes) are fine.
    #[test]
    fn keys_whose_ord_disagrees_with_their_encoding_are_refused() {
        #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
        struct NoCase(String);
        impl PartialEq for NoCase {
            fn eq(&self, other: &Self) -> bool {
                self.0.eq_ignore_ascii_case(&other.0)
            }
        }
        impl Eq for NoCase {}
        impl PartialOrd for NoCase {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for NoCase {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.to_ascii_lowercase().cmp(&other.0.to_ascii_lowercase())
            }
        }
        crate::serde_codec!(NoCase);
        let store = Store::in_memory().unwrap();
        store
            .create_stream("u", StreamOptions { durable: false })
            .unwrap();
        let key = |k: &str| NoCase(k.to_string());
        // "B" < "a" in bytes, but "a" < "B" ignoring case: order alone does not matter.
        let out = apply_upserts(&store, "u", 0, vec![(key("a"), Some(1u32)), (key("B"), Some(2))]);
        let keys: Vec<String> = out.unwrap().into_iter().map(|(k, ..)| k.0).collect();
        assert_eq!(keys, ["B", "a"], "in byte order");
        // "a" and "A" are one key to Ord, two encodings: refused, nothing written.
        match apply_upserts(&store, "u", 1, vec![(key("a"), Some(3u32)), (key("A"), Some(4))]) {
            Err(Error::BadInput { detail }) => {
                assert!(detail.contains("Ord finds equal"), "{detail}")
            }
            other => panic!("expected BadInput, got {other:?}"),
        }
        assert_eq!(
            store
                .snapshot("u")
                .unwrap()
                .decode::<NoCase, u32>()
                .unwrap()
                .len(),
            2
        );
    }
}
