//! The per-batch key filter: a blocked Bloom filter over xxh3-128 hashes of the keys, so a lookup of an
//! absent key skips a batch without touching its data pages (false-positive rate at the default 10 bits per
//! key: BENCHMARKS.md, "Figures behind the formats").
//!
//! Section (filter kind 1) at the footer's `filter_offset`: bit count, hash count, the bits, a checksum;
//! each key sets `k` bits inside one 512-bit block chosen from its xxh3-128 hash. The bytes and the bit
//! positions have one home, FORMAT.md §2 ("Key filter section").
//! One 64-byte block per key (one or two cache lines: the section is not aligned in the file), and no division, make inserting and probing cheap; the price is a slightly
//! higher false-positive rate than an unblocked filter of the same size.

use super::prefetch;
use super::seek::{FilterMask, KeyProbe};
use crate::encoding::{checksum, le_u32, le_u64, PutLe};
use crate::error::{Error, Result};

/// Filter kind in the batch footer.
pub const FILTER_KIND_BLOOM: u32 = 1;
/// Default bits per key.
pub const DEFAULT_BITS_PER_KEY: u32 = 10;
const HEADER_BYTES: usize = 16;
const MAX_HASHES: u32 = 16;
/// Bits per block: 64 bytes, a cache line's size.
const BLOCK_BITS: u64 = 512;

/// Words in one filter block.
pub(crate) const WORDS_PER_BLOCK: usize = (BLOCK_BITS / 64) as usize;

/// The block of a key with hash `h` (its `xxh3_128`) in a filter of `blocks` blocks.
#[inline]
fn block_of(h: u128, blocks: usize) -> usize {
    ((h as u64 as u128 * blocks as u128) >> 64) as usize
}

/// The bits a key with hash `h` (its `xxh3_128`) sets, as absolute bit indexes into a filter of `blocks`
/// blocks: the format's definition (FORMAT.md §2), one bit at a time. The builder and the probe work on
/// a block's words ([`set_bits`]); the tests hold both to this.
#[cfg(test)]
fn bits_of_hash(h: u128, blocks: u64, hash_count: u32) -> impl Iterator<Item = u64> {
    let mut x = (h >> 64) as u64;
    let block = block_of(h, blocks as usize) as u64;
    (0..hash_count).map(move |i| {
        if i > 0 && i % 7 == 0 {
            // Seven 9-bit positions used up: remix for the next seven.
            x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 29);
        }
        block * BLOCK_BITS + ((x >> (9 * (i % 7))) & (BLOCK_BITS - 1))
    })
}

/// The bits of hash `h` within its block for filters of the default hash count (that of
/// [`DEFAULT_BITS_PER_KEY`]), as [`KeyProbe::new`] keeps them.
pub(crate) fn default_mask(h: u128) -> FilterMask {
    let hash_count = hash_count_for(DEFAULT_BITS_PER_KEY);
    let mut words = [0u64; WORDS_PER_BLOCK];
    set_bits(&mut words, h, hash_count);
    FilterMask { hash_count, words }
}

/// The hash count of a filter of `bits_per_key` bits a key: `bits_per_key × ln 2`, rounded, within
/// `1..=MAX_HASHES` (FORMAT.md §2).
fn hash_count_for(bits_per_key: u32) -> u32 {
    ((bits_per_key as f64 * 0.69).round() as u32).clamp(1, MAX_HASHES)
}

/// Sets the bits of the key with hash `h` in its block `line` (the same bits as [`bits_of_hash`]). Seven
/// positions at a time with constant shifts: twice as fast as the generic loop, which a merge feels.
#[inline]
fn set_bits(line: &mut [u64], h: u128, hash_count: u32) {
    let Ok(line) = <&mut [u64; WORDS_PER_BLOCK]>::try_from(line) else {
        return;
    };
    let mut x = (h >> 64) as u64;
    let mut left = hash_count;
    loop {
        if left >= 7 {
            for j in 0..7 {
                let b = (x >> (9 * j)) & (BLOCK_BITS - 1);
                line[(b >> 6) as usize] |= 1 << (b & 63);
            }
            left -= 7;
        } else {
            for j in 0..left {
                let b = (x >> (9 * j)) & (BLOCK_BITS - 1);
                line[(b >> 6) as usize] |= 1 << (b & 63);
            }
            left = 0;
        }
        if left == 0 {
            return;
        }
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (x >> 29);
    }
}

/// Keys hashed but not yet set in the bits: each insert prefetches its key's (random) cache line and the
/// bits are set this many keys later, so the misses overlap each other and the rest of the merge's work
/// instead of stalling each insert (the miss was ~80% of an insert's cost).
const PENDING_HASHES: usize = 256;

/// Builds a filter sized for an expected number of keys.
pub struct FilterBuilder {
    words: Vec<u64>,
    hash_count: u32,
    /// Hashes of keys inserted but not yet applied to `words` (at most [`PENDING_HASHES`]).
    pending: Vec<u128>,
}

impl FilterBuilder {
    /// A filter for about `expected_keys` keys at `bits_per_key`.
    pub fn new(expected_keys: u64, bits_per_key: u32) -> Self {
        let bits = (expected_keys.max(1))
            .saturating_mul(bits_per_key.max(1) as u64)
            .max(BLOCK_BITS);
        let words = (bits.div_ceil(BLOCK_BITS) * (BLOCK_BITS / 64)) as usize;
        // k = ln 2 * bits per key minimises false positives.
        let hash_count = hash_count_for(bits_per_key);
        FilterBuilder {
            words: vec![0; words],
            hash_count,
            pending: Vec::with_capacity(PENDING_HASHES),
        }
    }

    /// Adds a key.
    #[inline]
    pub fn insert(&mut self, key: &[u8]) {
        let h = crate::encoding::hash128(key);
        prefetch(
            &self.words,
            block_of(h, self.words.len() / WORDS_PER_BLOCK) * WORDS_PER_BLOCK,
        );
        self.pending.push(h);
        if self.pending.len() >= PENDING_HASHES {
            self.apply_pending();
        }
    }

    /// Sets the bits of the pending hashes.
    fn apply_pending(&mut self) {
        let blocks = self.words.len() / WORDS_PER_BLOCK;
        for &h in &self.pending {
            let at = block_of(h, blocks) * WORDS_PER_BLOCK;
            if let Some(line) = self.words.get_mut(at..at + WORDS_PER_BLOCK) {
                set_bits(line, h, self.hash_count);
            }
        }
        self.pending.clear();
    }

    /// The section bytes.
    pub fn encode(&mut self) -> Vec<u8> {
        self.apply_pending();
        let mut out = Vec::with_capacity(HEADER_BYTES + self.words.len() * 8 + 8);
        out.put_u64(self.words.len() as u64 * 64);
        out.put_u32(self.hash_count);
        out.put_u32(0);
        for w in &self.words {
            out.put_u64(*w);
        }
        out.put_u64(checksum(&out));
        out
    }
}

/// A checked filter section, borrowed from the batch's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Filter<'a> {
    bits: &'a [u8],
    bit_count: u64,
    hash_count: u32,
}

impl<'a> Filter<'a> {
    /// Checks the section `bytes`, which start at `offset` of `file`: its checksum ([`check_sum`](Self::check_sum))
    /// and its header ([`parse`](Self::parse)). Errors: [`Error::Corrupt`] naming the file and offset.
    pub fn open(bytes: &'a [u8], offset: u64, file: &str) -> Result<Self> {
        Self::check_sum(bytes, offset, file)?;
        Self::parse(bytes, offset, file)
    }

    /// The section `bytes` (at `offset` of `file`) read without its checksum: its length, bit count and hash
    /// count checked against each other, so that probing it stays in bounds whatever its bits hold.
    /// Errors: [`Error::Corrupt`] naming the file and offset.
    pub fn parse(bytes: &'a [u8], offset: u64, file: &str) -> Result<Self> {
        let bad =
            |at: usize, what: &str| Error::corrupt(file, offset + at as u64, format!("key filter: {what}"));
        if bytes.len() < HEADER_BYTES + 8 + 8 {
            return Err(bad(0, "too short"));
        }
        let sum_at = bytes.len() - 8;
        let bit_count = le_u64(bytes, 0);
        let hash_count = le_u32(bytes, 8);
        let bits = &bytes[HEADER_BYTES..sum_at];
        if bit_count == 0 || !bit_count.is_multiple_of(BLOCK_BITS) || bit_count / 8 != bits.len() as u64 {
            return Err(bad(0, "bit count does not match the section length"));
        }
        if hash_count == 0 || hash_count > MAX_HASHES {
            return Err(bad(8, "hash count out of range"));
        }
        Ok(Filter {
            bits,
            bit_count,
            hash_count,
        })
    }

    /// Checks the checksum of the section `bytes` (at `offset` of `file`; at least 8 bytes long, as
    /// [`parse`](Self::parse) requires). Errors: [`Error::Corrupt`] at the checksum's offset.
    pub fn check_sum(bytes: &[u8], offset: u64, file: &str) -> Result<()> {
        let too_short = || Error::corrupt(file, offset, "key filter: too short");
        let sum_at = bytes.len().checked_sub(8).ok_or_else(too_short)?;
        if checksum(&bytes[..sum_at]) != le_u64(bytes, sum_at) {
            return Err(Error::corrupt(
                file,
                offset + sum_at as u64,
                "key filter: checksum mismatch",
            ));
        }
        Ok(())
    }

    /// A filter over `bits` with the parameters of a section that [`open`](Self::open) checked before.
    pub(crate) fn from_parts(bits: &'a [u8], bit_count: u64, hash_count: u32) -> Self {
        debug_assert_eq!(bits.len() as u64 * 8, bit_count);
        Filter {
            bits,
            bit_count,
            hash_count,
        }
    }

    /// Number of bits.
    pub fn bit_count(&self) -> u64 {
        self.bit_count
    }

    /// Number of hash functions.
    pub fn hash_count(&self) -> u32 {
        self.hash_count
    }

    /// Whether `key` may be in the batch (`false`: it certainly is not).
    #[inline]
    pub fn may_contain(&self, key: &[u8]) -> bool {
        self.may_contain_hash(crate::encoding::hash128(key))
    }

    /// [`may_contain`](Self::may_contain) for a key whose xxh3-128 hash is `h`: the key's bits as a
    /// 512-bit mask (`set_bits`, as the builder sets them), tested against its filter block a word at a
    /// time, with no branch per bit.
    #[inline]
    pub fn may_contain_hash(&self, h: u128) -> bool {
        let mut mask = [0u64; WORDS_PER_BLOCK];
        set_bits(&mut mask, h, self.hash_count);
        self.block_has(h, &mask)
    }

    /// [`may_contain_hash`](Self::may_contain_hash) for `probe`'s key, with the bits the probe computed
    /// once for its lookup when they are for this filter's hash count (the default's), else its own.
    #[inline]
    pub(crate) fn may_contain_probe(&self, probe: &KeyProbe<'_>) -> bool {
        match probe.mask.hash_count == self.hash_count {
            true => self.block_has(probe.hash, &probe.mask.words),
            false => self.may_contain_hash(probe.hash),
        }
    }

    /// Whether every bit of `mask` (the bits of hash `h` within its block) is set in `h`'s block. A block
    /// outside the section (impossible after `open`'s checks) answers "may contain": a filter may only
    /// ever err towards reading the batch.
    #[inline]
    fn block_has(&self, h: u128, mask: &[u64; WORDS_PER_BLOCK]) -> bool {
        const BLOCK_BYTES: usize = (BLOCK_BITS / 8) as usize;
        let start = block_of(h, (self.bit_count / BLOCK_BITS) as usize) * BLOCK_BYTES;
        let Some(line) = self.bits.get(start..start + BLOCK_BYTES) else {
            debug_assert!(false, "filter block at byte {start} outside the section");
            return true;
        };
        // Bit b of the block is bit b % 8 of byte b / 8 (FORMAT.md §2), that is bit b % 64 of the
        // little-endian word b / 64.
        let (words, _) = line.as_chunks::<8>();
        let missing = mask
            .iter()
            .zip(words)
            .fold(0, |acc, (m, w)| acc | (m & !u64::from_le_bytes(*w)));
        missing == 0
    }

    /// Asks the CPU to load the bytes [`may_contain_hash`](Self::may_contain_hash)`(h)` will read: one
    /// 64-byte filter block, at whatever alignment the section has in the map (it follows the index's key
    /// area, FORMAT.md §2), so one or two cache lines: both ends are requested.
    #[inline]
    pub fn prefetch(&self, h: u128) {
        let start = block_of(h, (self.bit_count / BLOCK_BITS) as usize) * (BLOCK_BITS / 8) as usize;
        prefetch(self.bits, start);
        prefetch(self.bits, start + (BLOCK_BITS / 8) as usize - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let mut b = FilterBuilder::new(10_000, DEFAULT_BITS_PER_KEY);
        for i in 0..10_000u32 {
            b.insert(&i.to_be_bytes());
        }
        let bytes = b.encode();
        let f = Filter::open(&bytes, 0, "f").unwrap();
        assert!((0..10_000u32).all(|i| f.may_contain(&i.to_be_bytes())));
        let false_positives = (10_000..110_000u32)
            .filter(|i| f.may_contain(&i.to_be_bytes()))
            .count();
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100000"
        );
    }

    #[test]
    fn insert_sets_exactly_the_bits_a_probe_reads() {
        // The builder sets bits with an unrolled loop; the probe (and the format) is `bits`.
        for bits_per_key in [1, 2, 10, 11, 20, 21, 23] {
            let mut b = FilterBuilder::new(300, bits_per_key);
            let keys: Vec<[u8; 8]> = (0..300u64).map(|i| (i * 0x9E37_79B9).to_le_bytes()).collect();
            for k in &keys {
                b.insert(k);
            }
            b.apply_pending();
            let mut expect = vec![0u64; b.words.len()];
            let blocks = b.words.len() as u64 / WORDS_PER_BLOCK as u64;
            for k in &keys {
                for bit in bits_of_hash(crate::encoding::hash128(k), blocks, b.hash_count) {
                    expect[(bit / 64) as usize] |= 1 << (bit % 64);
                }
            }
            assert_eq!(b.words, expect, "{bits_per_key} bits per key");
        }
    }

    #[test]
    fn a_probe_reads_exactly_the_bits_of_the_format() {
        // Random filter bits, so that each of a key's bits is sometimes set and sometimes not: the word
        // test must agree with the bit-by-bit definition every time.
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed ^ (seed >> 31)
        };
        assert_eq!(hash_count_for(DEFAULT_BITS_PER_KEY), 7);
        for hash_count in [1, 3, 7, 8, 14, 16] {
            for blocks in [1usize, 3, 40] {
                // Dense enough that a 7-bit key is often fully set.
                let bits: Vec<u8> = (0..blocks * 64)
                    .map(|_| (next() | next() | next()) as u8)
                    .collect();
                let f = Filter::from_parts(&bits, blocks as u64 * BLOCK_BITS, hash_count);
                let (mut yes, mut no) = (0, 0);
                for _ in 0..2_000 {
                    let key = next().to_le_bytes();
                    // A lookup's probe carries the bits of the default hash count (7): the filters of
                    // that count use them, the others compute their own; both must read the format's.
                    let probe = KeyProbe::new(&key);
                    let h = probe.hash;
                    let want = bits_of_hash(h, blocks as u64, hash_count)
                        .all(|b| bits[(b / 8) as usize] & (1 << (b % 8)) != 0);
                    assert_eq!(
                        f.may_contain_hash(h),
                        want,
                        "{hash_count} hashes, {blocks} blocks"
                    );
                    assert_eq!(f.may_contain_probe(&probe), want, "{hash_count} hashes, probe");
                    if want {
                        yes += 1
                    } else {
                        no += 1
                    }
                }
                assert!(yes > 0 && no > 0, "{hash_count} hashes: {yes} set, {no} not");
            }
        }
    }

    #[test]
    fn damaged_sections_are_corruption() {
        let mut b = FilterBuilder::new(10, 10);
        b.insert(b"x");
        let bytes = b.encode();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(
                Filter::open(&bad, 0, "f").unwrap_err().is_corruption(),
                "byte {i}"
            );
        }
        assert!(Filter::open(&bytes[..10], 0, "f").is_err());
    }
}
