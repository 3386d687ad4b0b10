//! [`Consolidated`]: a memtable's updates sorted by `(key, val, time)`, equal triples summed and zero sums
//! dropped, owned in one arena: what a seal writes into its batch (directly, or through `MergeIter` with
//! spilled runs) and what a snapshot reads of the unsealed updates. Sums are exact (`i128`); a total
//! outside `i64` is an [`Error::DiffOverflow`] (DESIGN.md, "Diff arithmetic").

use crate::batch::seek::key_prefix;
use crate::error::{Error, Result};
use crate::wal::record::UpdateRef;

/// How many updates ahead [`Consolidated::iter`] prefetches: enough to cover a memory miss behind the
/// writer's work on the updates in between.
const PREFETCH_AHEAD: usize = 8;

/// One update of a [`Consolidated`]: where its key and val are in the arena, its time and diff, and the
/// 8 bytes (big-endian, zero-padded) of its key that follow the prefix every key shares (read while the key
/// is copied, and read again by `consolidate` when that prefix turns out not empty), which order most pairs
/// in the sort without touching the arena.
#[derive(Clone, Copy)]
struct ConsolidatedEntry {
    prefix: u64,
    at: usize,
    key_len: u32,
    val_len: u32,
    time: u64,
    diff: i64,
}

/// Sorted, consolidated, owned updates: ordered by `(key, val, time)`, no repeated
/// `(key, val, time)`, no zero diff.
#[derive(Default)]
pub struct Consolidated {
    arena: Vec<u8>,
    entries: Vec<ConsolidatedEntry>,
    /// Distinct keys among `entries`, counted by [`consolidate`](Self::consolidate) (0 before).
    keys: usize,
    /// How many first bytes every key shares (0 when there is no key), counted as the keys are copied.
    shared: usize,
}

impl Consolidated {
    /// Copies, sorts and consolidates `updates`.
    ///
    /// Errors: [`Error::DiffOverflow`] (its stream not yet named) if equal `(key, val, time)` sum outside
    /// `i64`.
    pub fn from_updates<'a>(updates: impl Iterator<Item = UpdateRef<'a>>) -> Result<Self> {
        Self::unsorted(updates).consolidate()
    }

    /// Copies `updates` as they come: not yet a valid `Consolidated` until [`consolidate`](Self::consolidate)d
    /// (a cheap copy to make under a lock, sorting after it is released). Crate-only: every `Consolidated`
    /// outside the crate is consolidated (its [`key_count`](Self::key_count) is kept by `consolidate`).
    pub(crate) fn unsorted<'a>(updates: impl Iterator<Item = UpdateRef<'a>>) -> Self {
        let mut out = Consolidated::default();
        let mut first: &[u8] = &[];
        for (k, v, time, diff) in updates {
            // The prefix every key shares, against the first key: one memcmp a key, the usual case.
            if out.entries.is_empty() {
                (first, out.shared) = (k, k.len());
            } else if out.shared > 0 && (k.len() < out.shared || k[..out.shared] != first[..out.shared]) {
                out.shared = first.iter().zip(k).take_while(|(a, b)| a == b).count();
            }
            let at = out.arena.len();
            out.arena.extend_from_slice(k);
            out.arena.extend_from_slice(v);
            let (key_len, val_len) = (k.len() as u32, v.len() as u32);
            out.entries.push(ConsolidatedEntry {
                prefix: key_prefix(k),
                at,
                key_len,
                val_len,
                time,
                diff,
            });
        }
        out
    }

    /// Sorts by `(key, val, time)`, sums equal triples (exactly: partial sums may leave `i64`) and drops
    /// zero sums.
    ///
    /// Errors: [`Error::DiffOverflow`] (its stream not yet named) if a sum is outside `i64`.
    pub fn consolidate(mut self) -> Result<Self> {
        // Sort 16-byte words rather than the 40-byte entries (about half the time for random keys): above
        // the entry's index, the 8 bytes (big-endian, zero-padded) of its key that follow the prefix every
        // key shares (`user:` of string keys, a small tuple field's zeros), which order most pairs without
        // touching the arena. Skipping a shared prefix keeps the byte order, and the zero padding keeps it
        // for keys that end within the 8 bytes. Runs of one word prefix are then ordered by their bytes.
        if self.shared > 0 {
            let shared = self.shared;
            for e in &mut self.entries {
                e.prefix = key_prefix(&self.arena[e.at + shared..e.at + e.key_len as usize]);
            }
        }
        let arena = &self.arena;
        let kv = |e: &ConsolidatedEntry| {
            let key_end = e.at + e.key_len as usize;
            (
                &arena[e.at..key_end],
                &arena[key_end..key_end + e.val_len as usize],
                e.time,
            )
        };
        let entries = &self.entries;
        let mut order: Vec<u128> = (entries.iter().enumerate())
            .map(|(i, e)| (u128::from(e.prefix) << 64) | i as u128)
            .collect();
        order.sort_unstable();
        let at = |word: u128| &entries[word as u64 as usize];
        for run in order.chunk_by_mut(|a, b| a >> 64 == b >> 64) {
            if run.len() > 1 {
                run.sort_unstable_by(|&a, &b| kv(at(a)).cmp(&kv(at(b))));
            }
        }
        let mut out: Vec<ConsolidatedEntry> = Vec::with_capacity(self.entries.len());
        let mut keys = 0;
        let key = |e: &ConsolidatedEntry| &arena[e.at..e.at + e.key_len as usize];
        let mut entries = order.iter().map(|&word| *at(word)).peekable();
        while let Some(mut e) = entries.next() {
            let mut sum = i128::from(e.diff);
            while let Some(next) = entries.next_if(|n| n.prefix == e.prefix && kv(n) == kv(&e)) {
                sum += i128::from(next.diff);
            }
            e.diff = i64::try_from(sum).map_err(|_| {
                let (key, _, time) = kv(&e);
                Error::diff_overflow(key, time)
            })?;
            if e.diff != 0 {
                // A new key unless the previous kept update has the same one (the prefixes, in a
                // register, tell most keys apart without touching the arena).
                if out
                    .last()
                    .is_none_or(|p| p.prefix != e.prefix || key(p) != key(&e))
                {
                    keys += 1;
                }
                out.push(e);
            }
        }
        self.entries = out;
        self.keys = keys;
        Ok(self)
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct keys (counted as [`consolidate`](Self::consolidate) kept the updates: a pass
    /// over the sorted order visits the arena at random, a tenth of a seal's time).
    pub fn key_count(&self) -> usize {
        debug_assert_eq!(
            self.keys,
            self.iter()
                .map(|(k, ..)| k)
                .collect::<Vec<_>>()
                .chunk_by(|a, b| a == b)
                .count(),
            "key count kept by consolidate"
        );
        self.keys
    }

    /// Update `i` (`i < len()`).
    #[inline]
    pub fn get(&self, i: usize) -> UpdateRef<'_> {
        let e = self.entries[i];
        let key_end = e.at + e.key_len as usize;
        (
            &self.arena[e.at..key_end],
            &self.arena[key_end..key_end + e.val_len as usize],
            e.time,
            e.diff,
        )
    }

    /// The updates in order. Sorted order visits the arena at random, one cache miss or two per update, so
    /// the iterator asks for the key and val bytes of the update 8 places ahead (`PREFETCH_AHEAD`) as it
    /// yields each one: a seal writing the updates then waits on memory far less (the writer's order check
    /// on each key was most of a seal's time).
    pub fn iter(&self) -> impl Iterator<Item = UpdateRef<'_>> + '_ {
        (0..self.len()).map(|i| {
            if let Some(ahead) = self.entries.get(i + PREFETCH_AHEAD) {
                let len = ahead.key_len as usize + ahead.val_len as usize;
                // The cache lines of the update's first 256 bytes, and its last byte's; longer vals are
                // read sequentially, which the hardware prefetcher follows.
                for off in (0..len.min(256)).step_by(64) {
                    crate::batch::prefetch(&self.arena, ahead.at + off);
                }
                crate::batch::prefetch(&self.arena, ahead.at + len.saturating_sub(1));
            }
            self.get(i)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consolidation_sums_exactly() {
        let max = i64::MAX;
        let ups: Vec<UpdateRef<'_>> = vec![(b"a", b"x", 1, max), (b"a", b"x", 1, max), (b"a", b"x", 1, -max)];
        let consolidated = Consolidated::from_updates(ups.into_iter()).unwrap();
        assert_eq!(
            consolidated.iter().collect::<Vec<_>>(),
            vec![(&b"a"[..], &b"x"[..], 1, max)]
        );
        let ups: Vec<UpdateRef<'_>> = vec![(b"a", b"x", 1, max), (b"b", b"x", 1, 1), (b"a", b"x", 1, 1)];
        match Consolidated::from_updates(ups.into_iter()) {
            Err(Error::DiffOverflow { key, time, .. }) => assert_eq!((&key[..], time), (&b"a"[..], 1)),
            other => panic!("{:?}", other.map(|r| r.len())),
        }
    }

    #[test]
    fn consolidated_sorts_and_sums() {
        let ups: Vec<UpdateRef<'_>> = vec![
            (b"b", b"1", 1, 1),
            (b"a", b"2", 1, 3),
            (b"a", b"1", 2, 1),
            (b"a", b"2", 1, -3),
            (b"b", b"1", 1, 1),
            (b"a", b"1", 1, 1),
        ];
        let consolidated = Consolidated::from_updates(ups.into_iter()).unwrap();
        let got: Vec<_> = consolidated.iter().collect();
        assert_eq!(
            got,
            vec![
                (&b"a"[..], &b"1"[..], 1, 1),
                (b"a", b"1", 2, 1),
                (b"b", b"1", 1, 2)
            ]
        );
    }

    proptest::proptest! {
        /// Against a map: keys with long shared prefixes (ties of the 8-byte sort prefix), proper prefixes
        /// of each other, repeated `(key, val, time)`s and diffs that cancel.
        /// Every key may start with the same `shared` bytes (the sort skips a prefix all keys share).
        #[test]
        fn consolidation_equals_a_map_of_sums(
            ups in proptest::collection::vec(
                (proptest::collection::vec(0u8..3, 0..11), 0u8..3, 0u64..3, -2i64..3),
                0..200,
            ),
            shared in proptest::collection::vec(0u8..3, 0..11),
        ) {
            let owned: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = ups
                .into_iter()
                .map(|(k, v, t, d)| ([&shared[..], &k[..]].concat(), vec![v], t, d))
                .collect();
            let mut want = std::collections::BTreeMap::new();
            for (k, v, t, d) in &owned {
                *want.entry((k.clone(), v.clone(), *t)).or_insert(0i64) += d;
            }
            let want: Vec<_> = want.into_iter().filter(|(_, d)| *d != 0).map(|((k, v, t), d)| (k, v, t, d)).collect();
            let refs = owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
            let consolidated = Consolidated::from_updates(refs).unwrap();
            let got: Vec<_> = consolidated
                .iter()
                .map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d))
                .collect();
            let keys = want.iter().map(|(k, ..)| k).collect::<std::collections::BTreeSet<_>>().len();
            proptest::prop_assert_eq!(consolidated.key_count(), keys);
            proptest::prop_assert_eq!(got, want);
        }
    }
}
