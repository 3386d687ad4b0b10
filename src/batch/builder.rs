//! `BlockBuilder`: one data block of a batch file being built (keys, vals, times and diffs in columns with
//! `u32` offset arrays), serialised in format version 2 (FORMAT.md §2): times and diffs frame-of-reference
//! coded in the fewest bytes that hold the block's range, offset arrays left out where the block's widths
//! or counts imply them. What the encoding needs (ranges, uniform widths) is tracked as the block fills,
//! so its size is known in O(1) at every key (the writer cuts blocks by size).

use super::format::{
    BLOCK_HEADER_BYTES, FLAG_FIXED_KEYS, FLAG_FIXED_VALS, FLAG_ONE_UPDATE_PER_VAL, FLAG_ONE_VAL_PER_KEY,
};
use crate::encoding::PutLe;
use crate::error::{Error, Result};
use std::cmp::Ordering;

/// The columns of the block being built (see [`super::format`]). Offset arrays start with their leading 0
/// and get an entry when a key or val is *started* (`*_offs`) or *closed* (`key_vals`, `val_upds`).
#[derive(Default)]
pub(super) struct BlockBuilder {
    pub(super) times: Vec<u64>,
    pub(super) diffs: Vec<i64>,
    pub(super) key_offs: Vec<u32>,
    pub(super) key_vals: Vec<u32>,
    pub(super) val_offs: Vec<u32>,
    pub(super) val_upds: Vec<u32>,
    pub(super) key_bytes: Vec<u8>,
    pub(super) val_bytes: Vec<u8>,
    /// What the encoding needs of the contents so far.
    ranges: Ranges,
}

/// A uniform-width tracker's value once two widths differ.
const MIXED: usize = usize::MAX;

/// The ranges a block's encoding depends on, kept up to date in O(1) as it fills: the least and greatest
/// time and diff (valid once there is an update), and the width every key (val) has, or `MIXED` (valid
/// once there is one).
#[derive(Clone, Copy, Debug, Default)]
struct Ranges {
    time_min: u64,
    time_max: u64,
    diff_min: i64,
    diff_max: i64,
    key_width: usize,
    val_width: usize,
}

impl Ranges {
    /// Takes in an update (`first`: the block's first).
    #[inline]
    fn add_update(&mut self, first: bool, time: u64, diff: i64) {
        if first {
            (self.time_min, self.time_max, self.diff_min, self.diff_max) = (time, time, diff, diff);
        } else {
            self.time_min = self.time_min.min(time);
            self.time_max = self.time_max.max(time);
            self.diff_min = self.diff_min.min(diff);
            self.diff_max = self.diff_max.max(diff);
        }
    }
}

/// How a closed block is encoded (FORMAT.md §2, version 2): its header fields but the counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Layout {
    /// Bytes per stored time and diff: 0, 1, 2, 4 or 8.
    time_width: usize,
    diff_width: usize,
    /// Every key's (val's) width under `FLAG_FIXED_KEYS` (`FLAG_FIXED_VALS`), else 0.
    key_width: usize,
    val_width: usize,
    /// `FLAG_*`: one val per key, one update per val, fixed-width keys, fixed-width vals.
    flags: u8,
}

impl Layout {
    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// What a block's encoding depends on: its counts, its byte lengths and its [`Ranges`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Stats {
    keys: usize,
    vals: usize,
    updates: usize,
    key_bytes: usize,
    val_bytes: usize,
    ranges: Ranges,
}

impl Stats {
    /// The encoding a block of these contents gets.
    fn layout(&self) -> Layout {
        let mut flags = 0;
        if self.keys == self.vals {
            flags |= FLAG_ONE_VAL_PER_KEY;
        }
        if self.vals == self.updates {
            flags |= FLAG_ONE_UPDATE_PER_VAL;
        }
        // A fixed key width is at least 1 (keys strictly increase, so only a lone key can be empty).
        let r = &self.ranges;
        let key_width = match r.key_width {
            MIXED | 0 => 0,
            w => {
                flags |= FLAG_FIXED_KEYS;
                w
            }
        };
        let val_width = match r.val_width {
            MIXED => 0,
            w => {
                flags |= FLAG_FIXED_VALS;
                w
            }
        };
        let (time_range, diff_range) = match self.updates {
            0 => (0, 0),
            _ => (
                r.time_max - r.time_min,
                r.diff_max.wrapping_sub(r.diff_min) as u64,
            ),
        };
        Layout {
            time_width: width_of(time_range),
            diff_width: width_of(diff_range),
            key_width,
            val_width,
            flags,
        }
    }

    /// The block's length in bytes once closed.
    pub(super) fn len(&self) -> usize {
        self.len_in(&self.layout())
    }

    /// [`len`](Self::len) under layout `l` (this block's own).
    fn len_in(&self, l: &Layout) -> usize {
        let array = |present: bool, n: usize| if present { 4 * (n + 1) } else { 0 };
        BLOCK_HEADER_BYTES
            + (l.time_width + l.diff_width) * self.updates
            + array(!l.has(FLAG_FIXED_KEYS), self.keys)
            + array(!l.has(FLAG_ONE_VAL_PER_KEY), self.keys)
            + array(!l.has(FLAG_FIXED_VALS), self.vals)
            + array(!l.has(FLAG_ONE_UPDATE_PER_VAL), self.vals)
            + self.key_bytes
            + self.val_bytes
    }

    /// Whether these contents with one more key of `key_len` bytes holding one val of `val_len` bytes
    /// with one update at `time` with `diff` encode in at most `target` bytes. Most of a block's keys are
    /// far below the target: a bound that assumes every column at its widest (times and diffs of 8
    /// bytes, all four offset arrays) answers for them with a few additions ([`Fit::Below`]), and the
    /// exact [`len`](Self::len) of [`with_key`](Self::with_key) is computed only near the target (the
    /// exact check was 14% of a seal's CPU), returned with its layout ([`Fit::Exact`]) so that the writer
    /// can add the next keys' sizes to it ([`BlockBuilder::grown`]).
    #[inline]
    pub(super) fn fit_with_key(
        &self,
        key_len: usize,
        val_len: usize,
        time: u64,
        diff: i64,
        target: usize,
    ) -> Fit {
        let widest = BLOCK_HEADER_BYTES
            + 16 * (self.updates + 1)
            + 8 * (self.keys + 2)
            + 8 * (self.vals + 2)
            + self.key_bytes
            + key_len
            + self.val_bytes
            + val_len;
        if widest <= target {
            return Fit::Below;
        }
        let with = self.with_key(key_len, val_len, time, diff);
        let layout = with.layout();
        match with.len_in(&layout) {
            len if len <= target => Fit::Exact(KnownSize { len, layout }),
            _ => Fit::Over,
        }
    }

    /// These contents with one more key of `key_len` bytes holding one val of `val_len` bytes with one
    /// update at `time` with `diff`: what the writer checks against the block's target before it adds a
    /// key, since the key may widen every column of the block.
    pub(super) fn with_key(mut self, key_len: usize, val_len: usize, time: u64, diff: i64) -> Self {
        let r = &mut self.ranges;
        r.key_width = track_width(r.key_width, self.keys == 0, key_len);
        r.val_width = track_width(r.val_width, self.vals == 0, val_len);
        r.add_update(self.updates == 0, time, diff);
        self.keys += 1;
        self.vals += 1;
        self.updates += 1;
        self.key_bytes += key_len;
        self.val_bytes += val_len;
        self
    }
}

/// What [`Stats::fit_with_key`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fit {
    /// The key fits: even with every column at its widest the block stays within the target.
    Below,
    /// The key fits, and the block with it has this exact size.
    Exact(KnownSize),
    /// The block with the key would pass the target.
    Over,
}

/// A block's exact closed size and the layout it has (computed by [`Stats::fit_with_key`], carried from key
/// to key by [`BlockBuilder::grown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct KnownSize {
    /// Bytes once closed.
    pub(super) len: usize,
    layout: Layout,
}

/// The fewest of 0, 1, 2, 4 or 8 bytes that hold `range`.
fn width_of(range: u64) -> usize {
    match range {
        0 => 0,
        1..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFFFF_FFFF => 4,
        _ => 8,
    }
}

impl BlockBuilder {
    pub(super) fn reset(&mut self) {
        self.times.clear();
        self.ranges.key_width = MIXED;
        self.ranges.val_width = MIXED;
        self.diffs.clear();
        self.key_bytes.clear();
        self.val_bytes.clear();
        for offs in [
            &mut self.key_offs,
            &mut self.key_vals,
            &mut self.val_offs,
            &mut self.val_upds,
        ] {
            offs.clear();
            offs.push(0);
        }
    }

    pub(super) fn key_count(&self) -> usize {
        self.key_offs.len() - 1
    }

    pub(super) fn val_count(&self) -> usize {
        self.val_offs.len() - 1
    }

    pub(super) fn last_key(&self) -> Option<&[u8]> {
        let n = self.key_count();
        (n > 0).then(|| &self.key_bytes[self.key_offs[n - 1] as usize..self.key_offs[n] as usize])
    }

    pub(super) fn last_val(&self) -> Option<&[u8]> {
        let n = self.val_count();
        (n > 0).then(|| &self.val_bytes[self.val_offs[n - 1] as usize..self.val_offs[n] as usize])
    }

    /// Appends an update's time and diff to the open val.
    #[inline]
    pub(super) fn push_update(&mut self, time: u64, diff: i64) {
        self.ranges.add_update(self.times.is_empty(), time, diff);
        self.times.push(time);
        self.diffs.push(diff);
    }

    /// The block's size with one more key of `key_len` bytes holding one val of `val_len` bytes with one
    /// update at `time` with `diff`, from `known`, the block's exact size as it stands: its size plus the
    /// key's own bytes in `known`'s layout, when the key leaves that layout as it is (its time and diff
    /// inside the block's ranges, its key and val of the block's fixed widths, if any; one val with one
    /// update keeps the count flags). `None` otherwise: the exact size is then computed anew (the key
    /// may widen a column of every update). O(1) with no layout computed: after the first exact check of a
    /// block, the writer's cut check for each later key.
    #[inline]
    pub(super) fn grown(
        &self,
        known: KnownSize,
        key_len: usize,
        val_len: usize,
        time: u64,
        diff: i64,
    ) -> Option<KnownSize> {
        let (l, r) = (&known.layout, &self.ranges);
        let inside = !self.times.is_empty()
            && (r.time_min..=r.time_max).contains(&time)
            && (r.diff_min..=r.diff_max).contains(&diff);
        let widths = (!l.has(FLAG_FIXED_KEYS) || key_len == l.key_width)
            && (!l.has(FLAG_FIXED_VALS) || val_len == l.val_width);
        if !(inside && widths) {
            return None;
        }
        let array = |present: bool| if present { 4 } else { 0 };
        let len = known.len
            + l.time_width
            + l.diff_width
            + array(!l.has(FLAG_FIXED_KEYS))
            + array(!l.has(FLAG_ONE_VAL_PER_KEY))
            + array(!l.has(FLAG_FIXED_VALS))
            + array(!l.has(FLAG_ONE_UPDATE_PER_VAL))
            + key_len
            + val_len;
        Some(KnownSize { len, ..known })
    }

    /// What the block's encoding depends on, as it stands (O(1)).
    pub(super) fn stats(&self) -> Stats {
        Stats {
            keys: self.key_count(),
            vals: self.val_count(),
            updates: self.times.len(),
            key_bytes: self.key_bytes.len(),
            val_bytes: self.val_bytes.len(),
            ranges: self.ranges,
        }
    }

    /// Size of the block once closed (O(1)): it is the size [`serialize_into`](Self::serialize_into)
    /// writes.
    pub(super) fn raw_len(&self) -> usize {
        self.stats().len()
    }

    pub(super) fn offset_u32(len: usize, what: &str) -> Result<u32> {
        u32::try_from(len).map_err(|_| {
            Error::bad_input(format!(
                "{what} of one block pass 4 GiB (one key's data is too large)"
            ))
        })
    }

    pub(super) fn close_val(&mut self) -> Result<()> {
        let n = Self::offset_u32(self.times.len(), "updates")?;
        self.val_upds.push(n);
        Ok(())
    }

    pub(super) fn close_key(&mut self) -> Result<()> {
        let n = Self::offset_u32(self.val_count(), "vals")?;
        self.key_vals.push(n);
        Ok(())
    }

    pub(super) fn start_key(&mut self, key: &[u8]) -> Result<()> {
        self.key_bytes.extend_from_slice(key);
        let n = Self::offset_u32(self.key_bytes.len(), "key bytes")?;
        self.key_offs.push(n);
        let r = &mut self.ranges;
        r.key_width = track_width(r.key_width, self.key_offs.len() == 2, key.len());
        Ok(())
    }

    pub(super) fn start_val(&mut self, val: &[u8]) -> Result<()> {
        self.val_bytes.extend_from_slice(val);
        let n = Self::offset_u32(self.val_bytes.len(), "val bytes")?;
        self.val_offs.push(n);
        let r = &mut self.ranges;
        r.val_width = track_width(r.val_width, self.val_offs.len() == 2, val.len());
        Ok(())
    }

    /// Closes the open val and key: the block is complete (the front end's last step before handing it to
    /// the [`BlockSink`]).
    pub(super) fn close(&mut self) -> Result<()> {
        self.close_val()?;
        self.close_key()?;
        debug_assert_eq!(self.key_vals.len(), self.key_offs.len());
        debug_assert_eq!(self.val_upds.len(), self.val_offs.len());
        Ok(())
    }

    /// Key `i` of a closed block.
    pub(super) fn key(&self, i: usize) -> &[u8] {
        &self.key_bytes[self.key_offs[i] as usize..self.key_offs[i + 1] as usize]
    }

    /// Appends the closed block's bytes to `out` (FORMAT.md §2, version 2 block).
    pub(super) fn serialize_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let stats = self.stats();
        let raw_len = Self::offset_u32(stats.len(), "bytes")?;
        let l = stats.layout();
        let start = out.len();
        out.reserve(raw_len as usize);
        out.put_u32(self.key_count() as u32);
        out.put_u32(self.val_count() as u32);
        out.put_u32(self.times.len() as u32);
        out.extend_from_slice(&[l.time_width as u8, l.diff_width as u8, l.flags, 0]);
        // Widths are a key's (val's) length, which `start_key` (`start_val`) checked fits a `u32`; 0 when
        // the flag is clear.
        out.put_u32(l.key_width as u32);
        out.put_u32(l.val_width as u32);
        let (time_base, diff_base) = if self.times.is_empty() {
            (0, 0)
        } else {
            (self.ranges.time_min, self.ranges.diff_min)
        };
        out.put_u64(time_base);
        out.put_i64(diff_base);
        put_narrow(out, self.times.iter().map(|&t| t - time_base), l.time_width);
        put_narrow(
            out,
            self.diffs.iter().map(|&d| d.wrapping_sub(diff_base) as u64),
            l.diff_width,
        );
        let arrays = [
            (&self.key_offs, !l.has(FLAG_FIXED_KEYS)),
            (&self.key_vals, !l.has(FLAG_ONE_VAL_PER_KEY)),
            (&self.val_offs, !l.has(FLAG_FIXED_VALS)),
            (&self.val_upds, !l.has(FLAG_ONE_UPDATE_PER_VAL)),
        ];
        for (offs, present) in arrays {
            if present {
                put_le_words(out, offs, u32::to_le_bytes);
            }
        }
        out.extend_from_slice(&self.key_bytes);
        out.extend_from_slice(&self.val_bytes);
        debug_assert_eq!(out.len() - start, raw_len as usize);
        Ok(())
    }
}

/// The uniform width of a column after adding an entry of `len` bytes to one whose uniform width so far
/// is `width` (`first`: the entry is the column's first).
#[inline]
fn track_width(width: usize, first: bool, len: usize) -> usize {
    if first || width == len {
        len
    } else {
        MIXED
    }
}

/// Appends `words` (each below `2^(8 · width)`) as `width`-byte little-endian integers; `width` is 0, 1, 2,
/// 4 or 8. One pass over a pre-sized tail per width, as [`put_le_words`].
fn put_narrow(out: &mut Vec<u8>, words: impl ExactSizeIterator<Item = u64>, width: usize) {
    let start = out.len();
    out.resize(start + width * words.len(), 0);
    let tail = &mut out[start..];
    match width {
        0 => {}
        1 => tail.iter_mut().zip(words).for_each(|(d, w)| *d = w as u8),
        2 => narrow(tail, words, |w| (w as u16).to_le_bytes()),
        4 => narrow(tail, words, |w| (w as u32).to_le_bytes()),
        _ => narrow(tail, words, u64::to_le_bytes),
    }
}

#[inline]
fn narrow<const N: usize>(tail: &mut [u8], words: impl Iterator<Item = u64>, le: impl Fn(u64) -> [u8; N]) {
    for (dst, w) in tail.chunks_exact_mut(N).zip(words) {
        dst.copy_from_slice(&le(w));
    }
}

/// `a.cmp(b)` for byte strings, deciding most pairs of distinct keys or vals from their first 8 bytes with
/// one inline integer comparison instead of a call to `memcmp` (the merge compares every output key at
/// least twice: ~5% of its CPU went to `memcmp` calls on 16-byte keys).
#[inline]
pub(crate) fn cmp_bytes(a: &[u8], b: &[u8]) -> Ordering {
    if let (Some(x), Some(y)) = (a.first_chunk::<8>(), b.first_chunk::<8>()) {
        let (x, y) = (u64::from_be_bytes(*x), u64::from_be_bytes(*y));
        if x != y {
            return x.cmp(&y);
        }
    }
    a.cmp(b)
}

/// Appends `words` little-endian, in one pass over a pre-sized tail (which the compiler vectorises, unlike a
/// push per word).
#[inline]
pub(super) fn put_le_words<T: Copy, const N: usize>(out: &mut Vec<u8>, words: &[T], le: fn(T) -> [u8; N]) {
    let start = out.len();
    out.resize(start + N * words.len(), 0);
    for (dst, &w) in out[start..].chunks_exact_mut(N).zip(words) {
        dst.copy_from_slice(&le(w));
    }
}
