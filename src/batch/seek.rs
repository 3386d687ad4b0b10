//! Finding a key's block without touching a data page, and with few cache misses.
//!
//! A point lookup over a stream's batches is bound by memory latency, not by instructions: each binary
//! search probe into the mapped fence keys of a large batch is a cache (and TLB) miss. Two things here
//! cut those misses:
//! - [`KeyProbe`]: a key with its filter hash (xxh3-128), its bits in a filter of the default hash count
//!   and its 8-byte prefix, computed once per lookup
//!   and shared by every batch it is looked up in, so each batch's key filter cache line can be
//!   prefetched before any is read ([`BatchFile::prefetch`](super::BatchFile::prefetch)): the misses of
//!   all batches overlap instead of following one another.
//! - [`Fences`]: the first 8 bytes of every block's first and last key, held in memory as big-endian
//!   `u64`s (16 bytes a block, built at open from the already-checked index), so the sparse index's
//!   binary search compares integers in a dense array and reads a mapped fence key only among blocks
//!   whose prefix equals the key's. The same idea as the "key prefix" in the leaf pages of B-trees
//!   (Graefe and Larson, "B-tree indexes and CPU caches", ICDE 2001: poor man's normalized keys).
//!
//! Prefix order agrees with byte order: a zero-padded 8-byte prefix of `a` below that of `b` means
//! `a < b` (the first differing byte is either compared directly, or `a` ended there and is a proper
//! prefix of `b`); only equal prefixes need the whole keys.

use std::cmp::Ordering;

/// The first 8 bytes of `key`, zero-padded, read big-endian: comparing two prefixes orders their keys
/// unless the prefixes are equal (module docs).
#[inline]
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    if let Some(first) = key.first_chunk::<8>() {
        return u64::from_be_bytes(*first);
    }
    let mut b = [0u8; 8];
    b[..key.len()].copy_from_slice(key);
    u64::from_be_bytes(b)
}

/// A key to look up, with what every batch's filter and fences need of it, computed once.
#[derive(Clone, Copy, Debug)]
pub struct KeyProbe<'k> {
    pub(crate) key: &'k [u8],
    /// xxh3-128 of `key`: the key filter's hash (FORMAT.md §2, "Key filter section").
    pub(crate) hash: u128,
    /// [`key_prefix`] of `key`.
    pub(crate) prefix: u64,
    /// The key's bits within its filter block for filters of `mask.hash_count` hash functions (the
    /// default's), so that a lookup over many batches computes them once, not once a batch. A store with
    /// another `Options::filter_bits_per_key` computes them per batch, as before, plus this once.
    pub(crate) mask: FilterMask,
}

/// The bits of a key's hash within its 512-bit filter block, for filters of `hash_count` hash functions
/// ([`super::filter`]); `hash_count` 0: not computed (any filter computes its own).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FilterMask {
    pub(crate) hash_count: u32,
    pub(crate) words: [u64; super::filter::WORDS_PER_BLOCK],
}

impl<'k> KeyProbe<'k> {
    /// The probe of `key`.
    #[inline]
    pub fn new(key: &'k [u8]) -> Self {
        let hash = crate::encoding::hash128(key);
        KeyProbe {
            key,
            hash,
            prefix: key_prefix(key),
            mask: super::filter::default_mask(hash),
        }
    }

    /// The key's bytes (its encoding in the store).
    #[inline]
    pub fn key(&self) -> &'k [u8] {
        self.key
    }

    /// The probe of `key` for a fence search only ([`Fences::seek`] and the fence tests read no hash):
    /// its hash is left 0, so it must not be given to a filter.
    #[inline]
    pub(crate) fn unhashed(key: &'k [u8]) -> Self {
        KeyProbe {
            key,
            hash: 0,
            prefix: key_prefix(key),
            mask: FilterMask {
                hash_count: 0,
                words: [0; super::filter::WORDS_PER_BLOCK],
            },
        }
    }

    /// `self.key` against a stored key whose prefix is `prefix`; `stored` reads the whole stored key and
    /// is called only when the prefixes are equal.
    #[inline]
    fn cmp_with<'s>(&self, prefix: u64, stored: impl FnOnce() -> &'s [u8]) -> Ordering {
        match self.prefix.cmp(&prefix) {
            Ordering::Equal => self.key.cmp(stored()),
            other => other,
        }
    }
}

/// The prefixes of every block's first and last key (module docs), in block order.
#[derive(Debug)]
pub(crate) struct Fences {
    first: Box<[u64]>,
    last: Box<[u64]>,
}

impl Fences {
    /// The fences of `n` blocks whose first and last keys are `first_key(i)` and `last_key(i)`.
    pub fn new<'a>(
        n: usize,
        first_key: impl Fn(usize) -> &'a [u8],
        last_key: impl Fn(usize) -> &'a [u8],
    ) -> Self {
        Fences {
            first: (0..n).map(|i| key_prefix(first_key(i))).collect(),
            last: (0..n).map(|i| key_prefix(last_key(i))).collect(),
        }
    }

    /// The first block whose last key is `>= probe.key` (`last.len()` if none): an integer binary search
    /// over the prefixes, then a binary search reading `last_key` only over the blocks whose last key's
    /// prefix equals the probe's. `last_key(i)` must be the key [`new`](Self::new) took for block `i`.
    pub(crate) fn seek<'a>(&self, probe: &KeyProbe<'_>, last_key: impl Fn(usize) -> &'a [u8]) -> usize {
        let lo = self.last.partition_point(|&p| p < probe.prefix);
        let tied = tie_len(&self.last[lo..], probe.prefix);
        lo + super::partition_point(tied, |j| last_key(lo + j) < probe.key)
    }

    /// Whether block `i` (`< len`) has its first key above `probe.key` (`first_key(i)` read only on a prefix tie).
    #[inline]
    pub(crate) fn first_above<'a>(
        &self,
        i: usize,
        probe: &KeyProbe<'_>,
        first_key: impl FnOnce() -> &'a [u8],
    ) -> bool {
        probe.cmp_with(self.first[i], first_key) == Ordering::Less
    }

    /// Whether block `i` (`< len`) has its last key below `probe.key` (`last_key(i)` read only on a prefix tie).
    #[inline]
    pub(crate) fn last_below<'a>(
        &self,
        i: usize,
        probe: &KeyProbe<'_>,
        last_key: impl FnOnce() -> &'a [u8],
    ) -> bool {
        probe.cmp_with(self.last[i], last_key) == Ordering::Greater
    }
}

/// Keys sampled per block by [`KeySamples`]: 16 prefixes, 128 bytes of memory a block.
const SAMPLES: usize = 16;

/// The prefixes of a block's keys at [`SAMPLES`] evenly spaced positions (key `i · n / SAMPLES` for
/// `i < SAMPLES`, of `n` keys), taken when the block is checked and held in memory with its shape: a
/// lookup narrows its key search to the keys between two samples, about a sixteenth of the block, with
/// no data page touched (a 64 KiB block of 16-byte keys and 100-byte vals: 35 keys of 550, 560 bytes,
/// fetched in one round of cache misses instead of a binary search's five). The fences' idea one level
/// down (module docs); 128 bytes a block (0.2% of a 64 KiB block), their slots allocated when the file
/// is opened, for every block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySamples {
    prefix: [u64; SAMPLES],
}

impl KeySamples {
    /// The samples of a block of `keys` keys, key `i` being `key(i)`.
    pub fn new<'a>(keys: usize, key: impl Fn(usize) -> &'a [u8]) -> Self {
        KeySamples {
            prefix: std::array::from_fn(|i| key_prefix(key(Self::position(i, keys)))),
        }
    }

    /// Sample `i`'s key index in a block of `keys` keys.
    #[inline]
    fn position(i: usize, keys: usize) -> usize {
        i * keys / SAMPLES
    }

    /// The key indexes that can hold the first key `>= probe.key` of the block of `keys` keys these
    /// samples were taken from: that index is in `range.start..=range.end` (`range.end` being `keys`
    /// when every sampled key is at or below the probe's prefix). A sampled key with a smaller prefix is
    /// below the probe and one with a larger prefix is above it (module docs); an equal prefix tells
    /// nothing.
    #[inline]
    pub fn range(&self, probe: &KeyProbe<'_>, keys: usize) -> std::ops::Range<usize> {
        let below = self.prefix.iter().filter(|&&p| p < probe.prefix).count();
        let not_above = self.prefix.iter().filter(|&&p| p <= probe.prefix).count();
        let start = match below {
            0 => 0,
            j => Self::position(j - 1, keys) + 1,
        };
        let end = match not_above {
            SAMPLES => keys,
            j => Self::position(j, keys),
        };
        start..end.max(start)
    }
}

/// How many values at the start of the non-decreasing `a` equal `p` (all `>= p`): a galloping search
/// from the start (Bentley and Yao, 1976), so a short tie — the usual one, 0 or 1 fences — costs a probe
/// or two next to the one the lower bound just read, not a binary search over the rest of the array.
fn tie_len(a: &[u64], p: u64) -> usize {
    let mut step = 1;
    let mut lo = 0;
    while lo < a.len() && a[lo] == p {
        let next = (lo + step).min(a.len());
        if next == a.len() || a[next] != p {
            return next.min(lo + 1) + a[next.min(lo + 1)..next].partition_point(|&x| x == p);
        }
        lo = next;
        step *= 2;
    }
    lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key() -> impl Strategy<Value = Vec<u8>> {
        // Short alphabets and lengths around 8 make prefix ties and proper prefixes common.
        prop::collection::vec(prop::sample::select(vec![0u8, 1, 0x61, 0xff]), 0..12)
    }

    /// Sorted arrays with ties of every length: spread, clustered, skewed (powers), repeated.
    fn sorted_values() -> impl Strategy<Value = Vec<u64>> {
        let value = prop_oneof![
            any::<u64>(),
            0u64..50,
            (0u32..64).prop_map(|e| 1u64 << e),
            prop::sample::select(vec![0, 1, u64::MAX - 1, u64::MAX]),
        ];
        prop::collection::vec(value, 0..400).prop_map(|mut v| {
            v.sort_unstable();
            v
        })
    }

    proptest! {
        #[test]
        fn tie_len_equals_the_plain_search(
            a in sorted_values(),
            probes in prop::collection::vec(any::<u64>(), 1..20),
        ) {
            for p in probes.iter().copied().chain(a.iter().copied()).chain([0, 1, u64::MAX]) {
                let want = a.partition_point(|&x| x < p);
                let tie = a[want..].partition_point(|&x| x == p);
                prop_assert_eq!(tie_len(&a[want..], p), tie, "{}", p);
            }
        }

        #[test]
        fn prefix_order_agrees_with_byte_order(a in key(), b in key()) {
            let (pa, pb) = (key_prefix(&a), key_prefix(&b));
            if pa != pb {
                prop_assert_eq!(pa.cmp(&pb), a.cmp(&b));
            }
        }

        #[test]
        fn the_sampled_range_holds_the_plain_seek(
            mut keys in prop::collection::vec(key(), 1..200),
            probes in prop::collection::vec(key(), 1..20),
        ) {
            keys.sort();
            keys.dedup();
            let samples = KeySamples::new(keys.len(), |i| keys[i].as_slice());
            for p in probes.iter().chain(keys.iter()) {
                let want = keys.partition_point(|k| k.as_slice() < p.as_slice());
                let range = samples.range(&KeyProbe::new(p), keys.len());
                prop_assert!(range.start <= want && want <= range.end, "{:?} not in {:?}", want, range);
                prop_assert!(range.end <= keys.len());
            }
        }

        #[test]
        fn seek_and_fence_tests_equal_the_plain_comparisons(
            mut keys in prop::collection::vec(key(), 1..60),
            block in 1usize..5,
            probes in prop::collection::vec(key(), 1..20),
        ) {
            keys.sort();
            keys.dedup();
            // Blocks of `block` sorted keys each: fences are the first and last of each chunk.
            let blocks: Vec<&[Vec<u8>]> = keys.chunks(block).collect();
            let first = |i: usize| blocks[i][0].as_slice();
            let last = |i: usize| blocks[i][blocks[i].len() - 1].as_slice();
            let fences = Fences::new(blocks.len(), first, last);
            for p in probes.iter().chain(keys.iter()) {
                let probe = KeyProbe::new(p);
                let want = blocks.partition_point(|b| b[b.len() - 1].as_slice() < p.as_slice());
                prop_assert_eq!(fences.seek(&probe, last), want);
                for i in 0..blocks.len() {
                    prop_assert_eq!(fences.first_above(i, &probe, || first(i)), first(i) > p.as_slice());
                    prop_assert_eq!(fences.last_below(i, &probe, || last(i)), last(i) < p.as_slice());
                }
            }
        }
    }
}
