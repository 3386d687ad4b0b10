//! [`Block`]: one checksummed block of a batch file, read in place — a columnar trie of keys → vals →
//! (time, diff) (layout in [`super::format`] and FORMAT.md §2): in format version 2 times and diffs are
//! frame-of-reference coded (a base in the header, each value's offset from it in 0, 1, 2, 4 or 8 bytes),
//! and an offset array is left out when a width (keys or vals of one width) or a count (one val per key,
//! one update per val) implies it; version 1 blocks are read as the case of full widths and every array.
//! A block's time and diff widths are resolved once, when its shape is taken, into a [`NarrowColumn`]
//! each (place, width and base held together).
//! Every read is bounds-checked against the block, so bytes changed under the map after verification
//! read as wrong values or an error, never as a panic (FORMAT.md §6).

use super::column::NarrowColumn;
use super::format::{
    IndexEntry, BATCH_VERSION_1, BLOCK_HEADER_BYTES, BLOCK_HEADER_BYTES_V1, FLAG_FIXED_KEYS, FLAG_FIXED_VALS,
    FLAG_ONE_UPDATE_PER_VAL, FLAG_ONE_VAL_PER_KEY,
};
use super::seek::key_prefix;
use crate::encoding::{le_u32, le_u64};
use std::cmp::Ordering;
use std::ops::Range;

/// A block whose checksum and shape passed: a columnar trie of keys → vals → (time, diff), borrowed from the file's bytes.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    bytes: &'a [u8],
    key_count: usize,
    val_count: usize,
    update_count: usize,
    /// The times: their place, width (0, 1, 2, 4 or 8 bytes) and base, the width resolved once.
    times: NarrowColumn,
    /// The diffs likewise (a diff is its column's `u64` read as `i64`: the base added wrapping).
    diffs: NarrowColumn,
    key_offs_at: usize,
    key_vals_at: usize,
    val_offs_at: usize,
    val_upds_at: usize,
    key_bytes_at: usize,
    val_bytes_at: usize,
    /// The width in bytes every key of the block has, when they all have one (0 otherwise): in version 2
    /// the header's, in version 1 noted when the shape is checked. A key is then read without offsets
    /// (a seek's binary search touches key bytes only, one cache miss a probe instead of two).
    key_width: usize,
    /// Every val is `val_width` bytes (0 allowed: `()` vals), with no offsets (never in version 1).
    val_fixed: bool,
    val_width: usize,
    /// Every key has one val (no `key_vals` array).
    one_val_per_key: bool,
    /// Every val has one update (no `val_upds` array).
    one_update_per_val: bool,
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

    /// The block's shape (counts, widths, bases and column positions) from `bytes`, a block of a file of
    /// format `version` (1 or 2), checked against its index entry so that every column lies inside
    /// `bytes` and they fill it exactly. Version 2: O(1). Version 1: O(keys), one pass over the
    /// `4 · (keys + 1)` bytes of key offsets to note whether all keys have one width. No pass over the
    /// contents: this is all a read needs after the checksum (the writer built the contents sorted and
    /// consolidated, and the checksum proves these are its bytes); [`check_contents`](Self::check_contents)
    /// is the full pass, for `verify`. On failure returns the offset within the block and what is wrong.
    pub(super) fn shape(
        bytes: &'a [u8],
        e: &IndexEntry,
        version: u32,
    ) -> std::result::Result<Self, (usize, String)> {
        let header = if version == BATCH_VERSION_1 {
            BLOCK_HEADER_BYTES_V1
        } else {
            BLOCK_HEADER_BYTES
        };
        if bytes.len() < header {
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
        let mut b = Block::arrays(bytes, k, v, u);
        if version != BATCH_VERSION_1 {
            let (flags, reserved) = (bytes[14], bytes[15]);
            // A width code is the width in bytes (FORMAT.md §2); the bases follow the widths.
            let column = |code_at: usize, base_at: usize, what: &str| {
                let code = bytes[code_at];
                NarrowColumn::new(0, code as usize, le_u64(bytes, base_at))
                    .ok_or_else(|| (code_at, format!("{what} width {code}")))
            };
            b.times = column(12, 24, "time")?;
            b.diffs = column(13, 32, "diff")?;
            let known = FLAG_ONE_VAL_PER_KEY | FLAG_ONE_UPDATE_PER_VAL | FLAG_FIXED_KEYS | FLAG_FIXED_VALS;
            if flags & !known != 0 || reserved != 0 {
                return Err((
                    14,
                    format!("unknown flags {flags:#x} or reserved byte {reserved}"),
                ));
            }
            b.one_val_per_key = flags & FLAG_ONE_VAL_PER_KEY != 0;
            b.one_update_per_val = flags & FLAG_ONE_UPDATE_PER_VAL != 0;
            if (b.one_val_per_key && v != k) || (b.one_update_per_val && u != v) {
                return Err((14, format!("flags {flags:#x} disagree with the counts")));
            }
            let (key_width, val_width) = (le_u32(bytes, 16) as usize, le_u32(bytes, 20) as usize);
            b.val_fixed = flags & FLAG_FIXED_VALS != 0;
            if (flags & FLAG_FIXED_KEYS != 0) != (key_width > 0) || (!b.val_fixed && val_width != 0) {
                let detail =
                    format!("key width {key_width} or val width {val_width} disagree with flags {flags:#x}");
                return Err((16, detail));
            }
            b.key_width = key_width;
            b.val_width = val_width;
        }
        b.place_columns(header);
        // No overflow: counts come from `u32`s, widths are at most 8 or a `u32`, on 64-bit targets.
        let fixed = b.key_bytes_at;
        if fixed > bytes.len() {
            return Err((0, "columns overrun the block".into()));
        }
        // Offsets are only read after `fixed` is known to fit.
        let key_len = match b.key_width {
            0 => b.u32_at(b.key_offs_at, k) as usize,
            w => k.saturating_mul(w),
        };
        let val_len = match b.val_fixed {
            false => b.u32_at(b.val_offs_at, v) as usize,
            true => v.saturating_mul(b.val_width),
        };
        if fixed.checked_add(key_len).and_then(|x| x.checked_add(val_len)) != Some(bytes.len()) {
            return Err((
                b.key_bytes_at,
                "byte columns do not fill the block exactly".into(),
            ));
        }
        b.val_bytes_at = b.key_bytes_at + key_len;
        if version == BATCH_VERSION_1 {
            b.key_width = b.fixed_key_width();
        }
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
    /// and times per val strictly increase, no time passes `u64::MAX` from its base, no diff is zero, and
    /// the first and last keys equal the index's fences `first` and `last`. O(block). On failure returns
    /// the offset within the block and what is wrong.
    pub(super) fn check_contents(
        &self,
        first: &[u8],
        last: &[u8],
    ) -> std::result::Result<(), (usize, String)> {
        let b = self;
        let (k, v, u) = (b.key_count, b.val_count, b.update_count);
        let key_len = b.val_bytes_at - b.key_bytes_at;
        let val_len = b.bytes.len().saturating_sub(b.val_bytes_at);
        // An array is in the block when it has a place of its own (it is left out as a whole).
        let monotone = |at: usize,
                        next_at: usize,
                        n: usize,
                        last: usize,
                        strict: bool|
         -> std::result::Result<(), (usize, String)> {
            if at == next_at {
                return Ok(());
            }
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
        monotone(b.key_offs_at, b.key_vals_at, k, key_len, false)?;
        monotone(b.key_vals_at, b.val_offs_at, k, v, true)?;
        monotone(b.val_offs_at, b.val_upds_at, v, val_len, false)?;
        monotone(b.val_upds_at, b.key_bytes_at, v, u, true)?;
        let time_at = |x: usize| b.times.offset_of(x);
        for x in 0..u {
            if b.times.base().checked_add(b.times.stored(b.bytes, x)).is_none() {
                return Err((time_at(x), format!("time {x} passes u64::MAX")));
            }
        }
        for i in 0..k {
            if i > 0 && b.key(i - 1) >= b.key(i) {
                return Err((b.key_bytes_at, format!("key {i} not above key {}", i - 1)));
            }
            let vals = b.vals(i);
            for j in vals.clone() {
                if j > vals.start && b.val(j - 1) >= b.val(j) {
                    return Err((b.val_bytes_at, format!("val {j} not above val {}", j - 1)));
                }
                let upds = b.updates(j);
                for x in upds.clone() {
                    if x > upds.start && b.time(x - 1) >= b.time(x) {
                        return Err((time_at(x), format!("time {x} not above time {}", x - 1)));
                    }
                    if b.diff(x) == 0 {
                        return Err((b.diffs.offset_of(x), format!("zero diff at update {x}")));
                    }
                }
            }
        }
        if b.key(0) != first || b.key(k - 1) != last {
            return Err((b.key_bytes_at, "first or last key differs from the index".into()));
        }
        Ok(())
    }

    /// The shape of a version 1 block of `k` keys, `v` vals and `u` updates: full-width times and diffs,
    /// every offset array (`val_bytes_at` is set by the caller, which knows the key bytes' length).
    #[inline]
    fn arrays(bytes: &'a [u8], k: usize, v: usize, u: usize) -> Self {
        let mut b = Block {
            bytes,
            key_count: k,
            val_count: v,
            update_count: u,
            times: FULL_WIDTH,
            diffs: FULL_WIDTH,
            key_offs_at: 0,
            key_vals_at: 0,
            val_offs_at: 0,
            val_upds_at: 0,
            key_bytes_at: 0,
            val_bytes_at: 0,
            key_width: 0,
            val_fixed: false,
            val_width: 0,
            one_val_per_key: false,
            one_update_per_val: false,
        };
        b.place_columns(BLOCK_HEADER_BYTES_V1);
        b
    }

    /// Places the columns after a header of `header` bytes from the counts, widths and flags: the times,
    /// the diffs, then each offset array the block has (none of length 0: a left-out array has no place,
    /// so `key_offs_at == key_vals_at` says "no key offsets"), then the key bytes.
    fn place_columns(&mut self, header: usize) {
        let (k, v, u) = (self.key_count, self.val_count, self.update_count);
        let array = |present: bool, n: usize| if present { 4 * (n + 1) } else { 0 };
        self.times = self.times.placed_at(header);
        self.diffs = self.diffs.placed_at(self.times.offset_of(u));
        self.key_offs_at = self.diffs.offset_of(u);
        self.key_vals_at = self.key_offs_at + array(self.key_width == 0, k);
        self.val_offs_at = self.key_vals_at + array(!self.one_val_per_key, k);
        self.val_upds_at = self.val_offs_at + array(!self.val_fixed, v);
        self.key_bytes_at = self.val_upds_at + array(!self.one_update_per_val, v);
        self.val_bytes_at = self.key_bytes_at;
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
            times: self.times.rebase(start),
            diffs: self.diffs.rebase(start),
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
        if self.one_val_per_key {
            return one(i, self.val_count);
        }
        self.span(self.key_vals_at, i, self.val_count)
    }

    /// Val `j`, borrowed from the file; empty for `j >= val_count()`.
    #[inline]
    pub fn val(&self, j: usize) -> &'a [u8] {
        if j >= self.val_count {
            return &[];
        }
        if self.val_fixed {
            let (w, start) = (self.val_width, self.val_bytes_at + j * self.val_width);
            return self.bytes.get(start..start + w).unwrap_or(&[]);
        }
        self.entry(self.val_offs_at, self.val_bytes_at, j)
    }

    /// The updates of val `j`, as a range of update indexes (within `0..update_count()`).
    #[inline]
    pub fn updates(&self, j: usize) -> Range<usize> {
        if self.one_update_per_val {
            return one(j, self.update_count);
        }
        self.span(self.val_upds_at, j, self.update_count)
    }

    /// The time of update `x` (0 if `x` is out of range).
    #[inline]
    pub fn time(&self, x: usize) -> u64 {
        if x >= self.update_count {
            return 0;
        }
        self.times.get(self.bytes, x)
    }

    /// The diff of update `x` (0 if `x` is out of range).
    #[inline]
    pub fn diff(&self, x: usize) -> i64 {
        if x >= self.update_count {
            return 0;
        }
        self.diffs.get(self.bytes, x) as i64
    }

    /// The `(time, diff)` of each update of val `j`, in time order (nothing for `j >= val_count()`): the
    /// updates' range is clamped to the block once, so a read tests no range (as [`time`](Self::time)
    /// and [`diff`](Self::diff) do), only its bytes' bounds.
    #[inline]
    pub fn times_of(&self, j: usize) -> impl Iterator<Item = (u64, i64)> + 'a {
        let (bytes, times, diffs) = (self.bytes, self.times, self.diffs);
        let updates = if j < self.val_count { self.updates(j) } else { 0..0 };
        updates.map(move |x| (times.get(bytes, x), diffs.get(bytes, x) as i64))
    }

    /// Asks the CPU for the first bytes that reading key `i`'s vals and updates will load, as far as
    /// their places follow from `i` without a load: key `i`'s entry in `key_vals`, or (one val per key)
    /// val `i`'s bytes or offset and, with one update per val, its time and diff. A hint only.
    ///
    /// The search of fixed-width keys ([`seek_key_in`](Self::seek_key_in)) calls it for the middle of
    /// its remaining range once that range is [`WARM_AT_KEYS`] keys or fewer: the key found is then
    /// within a few KiB of that middle, so its val usually lies on the page warmed, and that page's
    /// translation (a TLB miss, the costliest part of a cold read from a large map) and cache line load
    /// overlap the search's last steps instead of following them.
    #[inline]
    fn warm(&self, i: usize) {
        if !self.one_val_per_key {
            super::prefetch(self.bytes, self.key_vals_at.wrapping_add(4 * i));
            return;
        }
        if self.val_fixed {
            super::prefetch(self.bytes, self.val_bytes_at.wrapping_add(i * self.val_width));
        } else {
            super::prefetch(self.bytes, self.val_offs_at.wrapping_add(4 * i));
        }
        if self.one_update_per_val {
            for column in [self.times, self.diffs] {
                if column.width() > 0 {
                    super::prefetch(self.bytes, column.offset_of(i));
                }
            }
        }
    }

    /// The index of the first key `>= key` in this block (`key_count()` if none).
    pub fn seek_key(&self, key: &[u8]) -> usize {
        self.seek_key_in(key, key_prefix(key), 0..self.key_count)
    }

    /// Whether key `i` is below `key`, whose [`key_prefix`] is `prefix`: the stored key's first 8 bytes
    /// decide unless they equal the probe's (one load and compare of a `u64`; the whole keys, with
    /// `memcmp`, only on a tie: `super::seek`'s "poor man's normalized keys").
    #[inline]
    pub(crate) fn key_below(&self, i: usize, key: &[u8], prefix: u64) -> bool {
        let stored = self.key(i);
        match key_prefix(stored).cmp(&prefix) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => stored < key,
        }
    }

    /// [`seek_key`](Self::seek_key) given that the answer is in `range.start..=range.end` (from the
    /// block's [`KeySamples`](super::seek::KeySamples)): a search of that range only. A range outside
    /// the block is clamped to it.
    pub(crate) fn seek_key_in(&self, key: &[u8], prefix: u64, range: Range<usize>) -> usize {
        debug_assert_eq!(prefix, key_prefix(key));
        let end = range.end.min(self.key_count);
        let start = range.start.min(end);
        if self.key_width == 0 {
            return start + super::partition_point(end - start, |i| self.key_below(start + i, key, prefix));
        }
        // Keys of one width: a lower bound whose step updates `base` without a branch and asks for both
        // keys the next step may read while this step's comparison waits on memory, so the search's cache
        // misses overlap in pairs (the search is bound by them, not by the comparisons). The layout study
        // behind it: Khuong and Morin, "Array layouts for comparison-based searching", 2017. A range of
        // a few cache lines (a sampled one) is asked for whole first: one round of misses.
        let w = self.key_width;
        let prefetch = |i: usize| super::prefetch(self.bytes, self.key_bytes_at + i * w);
        let (mut base, mut size) = (start, end - start);
        if size * w <= PREFETCH_WHOLE_BYTES {
            let (mut at, last) = (self.key_bytes_at + start * w, self.key_bytes_at + end * w);
            while at < last {
                super::prefetch(self.bytes, at);
                at += 64;
            }
            super::prefetch(self.bytes, last.saturating_sub(1));
        }
        let mut warmed = false;
        while size > 1 {
            if !warmed && size <= WARM_AT_KEYS {
                warmed = true;
                self.warm(base + size / 2);
            }
            let half = size / 2;
            let next = (size - half) / 2;
            prefetch(base + next);
            prefetch(base + half + next);
            if self.key_below(base + half, key, prefix) {
                base += half;
            }
            size -= half;
        }
        base + usize::from(size == 1 && self.key_below(base, key, prefix))
    }
}

/// A fixed-width key range of at most this many bytes is prefetched whole before it is searched.
const PREFETCH_WHOLE_BYTES: usize = 1024;

/// How few keys a key search's remaining range must hold before [`Block::warm`] asks for its middle
/// key's val and update: 64 keys of 100-byte vals span 6.4 KB, so the key found is then most often on
/// the val page of the middle one. Measured (16, 32, 64, 128 and 256 tried): BENCHMARKS.md, "Lookups:
/// key samples, a warmed val page, word-wise filter probes".
const WARM_AT_KEYS: usize = 64;

/// `i..i + 1` clamped to `0..bound`: the one val of key `i`, or the one update of val `i`, when a block
/// has one per key (per val).
#[inline]
fn one(i: usize, bound: usize) -> Range<usize> {
    i.min(bound)..i.saturating_add(1).min(bound)
}

/// The columns of a version 1 block: times and diffs of 8 bytes, base 0 (placed by `place_columns`).
const FULL_WIDTH: NarrowColumn = NarrowColumn::full_width();

/// The little-endian `u32` at `bytes[at..at + 4]`, or 0 when the bytes are not there.
#[inline]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at.wrapping_add(4)) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]),
        _ => 0,
    }
}
