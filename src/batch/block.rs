//! [`Block`]: one checksummed block of a batch file, read in place — a columnar trie of keys → vals →
//! (time, diff) with `u32` offset arrays (layout in [`super::format`] and FORMAT.md §2). Every read is
//! bounds-checked against the block, so bytes changed under the map after verification read as wrong
//! values or an error, never as a panic (FORMAT.md §6).

use super::format::{IndexEntry, BLOCK_HEADER_BYTES};
use crate::encoding::le_u32;
use std::ops::Range;

/// A block whose checksum and shape passed: a columnar trie of keys → vals → (time, diff), borrowed from the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    bytes: &'a [u8],
    key_count: usize,
    val_count: usize,
    update_count: usize,
    times_at: usize,
    diffs_at: usize,
    key_offs_at: usize,
    key_vals_at: usize,
    val_offs_at: usize,
    val_upds_at: usize,
    key_bytes_at: usize,
    val_bytes_at: usize,
    /// The width in bytes every key of the block has, when they all have one (0 otherwise): noted when
    /// the shape is checked, so a key is then read without its two offsets (a seek's binary search
    /// touches key bytes only, one cache miss a probe instead of two).
    key_width: usize,
}

impl<'a> Block<'a> {
    /// Element `i` of the `u32` array at `array_at`; 0 when the bytes are not there. Every accessor reads
    /// through bounds checks like this one and never trusts an offset read from the bytes, so a block whose
    /// bytes changed after it was verified (another program rewrote the file under the map) reads as
    /// wrong values, never as a panic (FORMAT.md §6, "what the store assumes of its storage").
    #[inline]
    fn u32_at(&self, array_at: usize, i: usize) -> u32 {
        read_u32(self.bytes, array_at.wrapping_add(4 * i))
    }

    /// `bytes[start..end]` of this block's byte columns, or nothing when that is not a range of the bytes.
    #[inline]
    fn column(&self, base: usize, start: u32, end: u32) -> &'a [u8] {
        let (s, e) = (base.wrapping_add(start as usize), base.wrapping_add(end as usize));
        self.bytes.get(s..e).unwrap_or(&[])
    }

    /// Entry `i` of a byte column (keys or vals): the bytes at `bytes_at` between offsets `i` and `i + 1`
    /// of the offset array at `offs_at`.
    #[inline]
    fn entry(&self, offs_at: usize, bytes_at: usize, i: usize) -> &'a [u8] {
        let (s, e) = (self.u32_at(offs_at, i), self.u32_at(offs_at, i + 1));
        self.column(bytes_at, s, e)
    }

    /// Range `i` of a prefix-sum array at `array_at` (a key's vals, a val's updates): entries `i` to
    /// `i + 1`, clamped to `0..bound`.
    #[inline]
    fn span(&self, array_at: usize, i: usize, bound: usize) -> Range<usize> {
        let end = (self.u32_at(array_at, i + 1) as usize).min(bound);
        (self.u32_at(array_at, i) as usize).min(end)..end
    }

    /// The block's shape (counts and array positions) from `bytes`, checked against its index entry so
    /// that every array and both byte columns lie inside `bytes` and fill it exactly, and noting whether all
    /// keys have one width: O(keys), one pass over the `4 · (keys + 1)` bytes of key offsets, no pass over
    /// the contents. This is all a read needs after the checksum (the writer built the contents sorted and
    /// consolidated, and the checksum proves these are its bytes); [`check_contents`](Self::check_contents)
    /// is the full pass, for `verify`. On failure returns the offset within the block and what is wrong.
    pub(super) fn shape(bytes: &'a [u8], e: &IndexEntry) -> std::result::Result<Self, (usize, String)> {
        if bytes.len() < BLOCK_HEADER_BYTES {
            return Err((0, "shorter than its header".into()));
        }
        let (k, v, u) = (
            le_u32(bytes, 0) as usize,
            le_u32(bytes, 4) as usize,
            le_u32(bytes, 8) as usize,
        );
        if k != e.key_count as usize || u != e.update_count as usize || k == 0 || v < k || u < v {
            return Err((
                0,
                format!("counts keys={k} vals={v} updates={u} disagree with the index"),
            ));
        }
        // No overflow: k and u come from `u32`s, and v <= u.
        let fixed = BLOCK_HEADER_BYTES + 16 * u + 8 * (k + 1) + 8 * (v + 1);
        if fixed > bytes.len() {
            return Err((0, "arrays overrun the block".into()));
        }
        // Offsets are only read after `fixed` is known to fit.
        let mut b = Block::arrays(bytes, k, v, u);
        let key_len = b.u32_at(b.key_offs_at, k) as usize;
        let val_len = b.u32_at(b.val_offs_at, v) as usize;
        if fixed + key_len + val_len != bytes.len() {
            return Err((b.key_offs_at, "byte columns do not fill the block exactly".into()));
        }
        b.val_bytes_at = b.key_bytes_at + key_len;
        b.key_width = b.fixed_key_width();
        Ok(b)
    }

    /// The width of every key, if all `key_count` keys have the same non-zero width (key offsets `i * w`
    /// for `i` in `0..=key_count`), else 0. One pass over the key offsets (4 bytes a key), at shape time.
    fn fixed_key_width(&self) -> usize {
        let k = self.key_count;
        let w = self.u32_at(self.key_offs_at, 1) as usize;
        let Some(offsets) = self.bytes.get(self.key_offs_at..self.key_offs_at + 4 * (k + 1)) else {
            return 0;
        };
        let uniform = w > 0
            && offsets.chunks_exact(4).enumerate().all(|(i, o)| {
                Some(u32::from_le_bytes([o[0], o[1], o[2], o[3]]) as usize) == i.checked_mul(w)
            });
        if uniform {
            w
        } else {
            0
        }
    }

    /// The full structural pass over a block with a valid [`shape`](Self::shape): offset arrays run from
    /// 0 to their ends and increase (strictly for vals per key and updates per val), keys, vals per key
    /// and times per val strictly increase, no diff is zero, and the first and last keys equal the index's
    /// fences `first` and `last`. O(block). On failure returns the offset within the block and what is
    /// wrong.
    pub(super) fn check_contents(
        &self,
        first: &[u8],
        last: &[u8],
    ) -> std::result::Result<(), (usize, String)> {
        let b = self;
        let (k, v, u) = (b.key_count, b.val_count, b.update_count);
        let key_len = b.val_bytes_at - b.key_bytes_at;
        let val_len = b.bytes.len().saturating_sub(b.val_bytes_at);
        let monotone =
            |at: usize, n: usize, last: usize, strict: bool| -> std::result::Result<(), (usize, String)> {
                if b.u32_at(at, 0) != 0 || b.u32_at(at, n) as usize != last {
                    return Err((at, "offset array does not run from 0 to its end".into()));
                }
                for i in 0..n {
                    let (x, y) = (b.u32_at(at, i), b.u32_at(at, i + 1));
                    if y < x || (strict && y == x) {
                        return Err((at + 4 * i, "offset array not increasing".into()));
                    }
                }
                Ok(())
            };
        monotone(b.key_offs_at, k, key_len, false)?;
        monotone(b.key_vals_at, k, v, true)?;
        monotone(b.val_offs_at, v, val_len, false)?;
        monotone(b.val_upds_at, v, u, true)?;
        for i in 0..k {
            if i > 0 && b.key(i - 1) >= b.key(i) {
                return Err((b.key_offs_at + 4 * i, format!("key {i} not above key {}", i - 1)));
            }
            let vals = b.vals(i);
            for j in vals.clone() {
                if j > vals.start && b.val(j - 1) >= b.val(j) {
                    return Err((b.val_offs_at + 4 * j, format!("val {j} not above val {}", j - 1)));
                }
                let upds = b.updates(j);
                for x in upds.clone() {
                    if x > upds.start && b.time(x - 1) >= b.time(x) {
                        return Err((b.times_at + 8 * x, format!("time {x} not above time {}", x - 1)));
                    }
                    if b.diff(x) == 0 {
                        return Err((b.diffs_at + 8 * x, format!("zero diff at update {x}")));
                    }
                }
            }
        }
        if b.key(0) != first || b.key(k - 1) != last {
            return Err((b.key_bytes_at, "first or last key differs from the index".into()));
        }
        Ok(())
    }

    /// Where the fixed-width arrays start for `k` keys, `v` vals and `u` updates (`val_bytes_at` is set
    /// by the caller, which knows the key bytes' length).
    #[inline]
    fn arrays(bytes: &'a [u8], k: usize, v: usize, u: usize) -> Self {
        let times_at = BLOCK_HEADER_BYTES;
        let diffs_at = times_at + 8 * u;
        let key_offs_at = diffs_at + 8 * u;
        let key_vals_at = key_offs_at + 4 * (k + 1);
        let val_offs_at = key_vals_at + 4 * (k + 1);
        let val_upds_at = val_offs_at + 4 * (v + 1);
        let key_bytes_at = val_upds_at + 4 * (v + 1);
        Block {
            bytes,
            key_count: k,
            val_count: v,
            update_count: u,
            times_at,
            diffs_at,
            key_offs_at,
            key_vals_at,
            val_offs_at,
            val_upds_at,
            key_bytes_at,
            val_bytes_at: key_bytes_at,
            key_width: 0,
        }
    }

    /// The shape of no block (zero counts).
    pub fn empty() -> Block<'static> {
        Block::arrays(&[], 0, 0, 0)
    }

    /// This block's shape without its bytes (to cache in a cursor).
    #[inline]
    pub fn detach(&self) -> Block<'static> {
        Block { bytes: &[], ..*self }
    }

    /// The shape of this block as it lies at `start` in a larger buffer (the whole file): attached to
    /// that buffer it reads the same block, with no sub-slicing per access.
    #[inline]
    pub fn rebase(&self, start: usize) -> Block<'static> {
        Block {
            bytes: &[],
            times_at: self.times_at + start,
            diffs_at: self.diffs_at + start,
            key_offs_at: self.key_offs_at + start,
            key_vals_at: self.key_vals_at + start,
            val_offs_at: self.val_offs_at + start,
            val_upds_at: self.val_upds_at + start,
            key_bytes_at: self.key_bytes_at + start,
            val_bytes_at: self.val_bytes_at + start,
            ..*self
        }
    }

    /// A detached shape over `bytes` again (the same block's bytes, or, for a
    /// [`rebase`](Self::rebase)d shape, the buffer it was rebased into).
    #[inline]
    pub fn attach<'b>(&self, bytes: &'b [u8]) -> Block<'b> {
        Block { bytes, ..*self }
    }

    /// Number of keys.
    #[inline]
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// Number of (key, val) pairs.
    #[inline]
    pub fn val_count(&self) -> usize {
        self.val_count
    }

    /// Number of updates.
    pub fn update_count(&self) -> usize {
        self.update_count
    }

    /// Key `i`, borrowed from the file; empty for `i >= key_count()`.
    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        if i >= self.key_count {
            return &[];
        }
        match self.key_width {
            0 => self.entry(self.key_offs_at, self.key_bytes_at, i),
            // The offsets are `i * w` (checked at shape time): the same bytes, without reading them.
            w => {
                let start = self.key_bytes_at + i * w;
                self.bytes.get(start..start + w).unwrap_or(&[])
            }
        }
    }

    /// The vals of key `i`, as a range of val indexes (within `0..val_count()`).
    #[inline]
    pub fn vals(&self, i: usize) -> Range<usize> {
        self.span(self.key_vals_at, i, self.val_count)
    }

    /// Val `j`, borrowed from the file.
    #[inline]
    pub fn val(&self, j: usize) -> &'a [u8] {
        self.entry(self.val_offs_at, self.val_bytes_at, j)
    }

    /// The updates of val `j`, as a range of update indexes (within `0..update_count()`).
    #[inline]
    pub fn updates(&self, j: usize) -> Range<usize> {
        self.span(self.val_upds_at, j, self.update_count)
    }

    /// The time of update `x` (0 if `x` is out of range).
    #[inline]
    pub fn time(&self, x: usize) -> u64 {
        read_u64(self.bytes, self.times_at.wrapping_add(8 * x))
    }

    /// The diff of update `x` (0 if `x` is out of range).
    #[inline]
    pub fn diff(&self, x: usize) -> i64 {
        read_u64(self.bytes, self.diffs_at.wrapping_add(8 * x)) as i64
    }

    /// The index of the first key `>= key` in this block (`key_count()` if none).
    pub fn seek_key(&self, key: &[u8]) -> usize {
        if self.key_width == 0 {
            return super::partition_point(self.key_count, |i| self.key(i) < key);
        }
        // Keys of one width: a lower bound whose step updates `base` without a branch and asks for both
        // keys the next step may read while this step's comparison waits on memory, so the search's cache
        // misses overlap in pairs (the search is bound by them, not by the comparisons). The layout study
        // behind it: Khuong and Morin, "Array layouts for comparison-based searching", 2017.
        let w = self.key_width;
        let prefetch = |i: usize| super::prefetch(self.bytes, self.key_bytes_at + i * w);
        let (mut base, mut size) = (0, self.key_count);
        while size > 1 {
            let half = size / 2;
            let next = (size - half) / 2;
            prefetch(base + next);
            prefetch(base + half + next);
            if self.key(base + half) < key {
                base += half;
            }
            size -= half;
        }
        base + usize::from(size == 1 && self.key(base) < key)
    }
}

/// The little-endian `u32` at `bytes[at..at + 4]`, or 0 when the bytes are not there.
#[inline]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}

/// The little-endian `u64` at `bytes[at..at + 8]`, or 0 when the bytes are not there.
#[inline]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at.wrapping_add(8)) {
        Some(&[a, b, c, d, e, f, g, h]) => u64::from_le_bytes([a, b, c, d, e, f, g, h]),
        _ => 0,
    }
}
