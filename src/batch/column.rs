//! [`NarrowColumn`]: a block's times or diffs, with their width resolved once per block.
//!
//! Format version 2 codes a block's times and diffs frame-of-reference (FORMAT.md §2): element `i` is
//! `base + stored(i)` (wrapping), where `stored(i)` is the little-endian unsigned integer of `width`
//! bytes (0, 1, 2, 4 or 8) at `at + width · i`; a version 1 block is the case of width 8 and base 0.
//!
//! The width is resolved when the block's shape is taken (`Block::shape`) and the column's place, width
//! and base are held together, so a read is the element's address (`at + width · i`), a `match` on the
//! width that the branch predictor learns (one width per block), and one bounds-checked load of the
//! element's own bytes: 0 for bytes that are not there, so bytes changed under the map after
//! verification read as wrong values, never as a panic (FORMAT.md §6). No `unsafe`. (A branch-free read,
//! an 8-byte load masked to the width, was tried: more instructions per update in a scan, and slower;
//! BENCHMARKS.md, "Time and diff reads".)

/// Where a block's times (or diffs) lie in the bytes a block is read over, their width and their base.
/// Element `i` is [`get`](Self::get)`(bytes, i)` for `i` below the block's update count (the caller
/// checks the index; a column does not know its length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct NarrowColumn {
    /// Offset of element 0 in the bytes read.
    at: usize,
    /// Bytes per element: 0, 1, 2, 4 or 8.
    width: usize,
    /// Added (wrapping) to every stored value; a diff's base is the `i64`'s two's complement bits.
    base: u64,
}

impl NarrowColumn {
    /// A column at `at` of `width` bytes an element added to `base`; `None` unless `width` is 0, 1, 2,
    /// 4 or 8 (a version 2 block header's width code is the width: any other code is corruption).
    pub fn new(at: usize, width: usize, base: u64) -> Option<Self> {
        matches!(width, 0 | 1 | 2 | 4 | 8).then_some(NarrowColumn { at, width, base })
    }

    /// A version 1 block's column: 8 bytes an element, base 0, at offset 0 (to be
    /// [`placed_at`](Self::placed_at) its offset).
    pub const fn full_width() -> Self {
        NarrowColumn {
            at: 0,
            width: 8,
            base: 0,
        }
    }

    /// This column with element 0 at offset `at`.
    #[inline]
    pub fn placed_at(&self, at: usize) -> Self {
        NarrowColumn { at, ..*self }
    }

    /// The base every stored value is added to.
    #[inline]
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes per element: 0 (every element is the base, nothing to read), 1, 2, 4 or 8.
    #[inline]
    pub fn width(&self) -> usize {
        self.width
    }

    /// Offset of element `i` in the bytes read (for error reports and the next column's place).
    #[inline]
    pub fn offset_of(&self, i: usize) -> usize {
        self.at.wrapping_add(self.width.wrapping_mul(i))
    }

    /// This column as it lies `start` bytes further on (a block rebased into its whole file's bytes).
    #[inline]
    pub fn rebase(&self, start: usize) -> Self {
        NarrowColumn {
            at: self.at + start,
            ..*self
        }
    }

    /// Element `i`'s stored value (before its base is added), read from `bytes`; 0 for bytes that are
    /// not there.
    #[inline]
    pub fn stored(&self, bytes: &[u8], i: usize) -> u64 {
        let at = self.offset_of(i);
        match self.width {
            0 => 0,
            1 => bytes.get(at).map_or(0, |&b| b as u64),
            2 => first::<2>(bytes, at).map_or(0, |w| u16::from_le_bytes(*w) as u64),
            4 => first::<4>(bytes, at).map_or(0, |w| u32::from_le_bytes(*w) as u64),
            _ => first::<8>(bytes, at).map_or(0, |w| u64::from_le_bytes(*w)),
        }
    }

    /// Element `i`: its stored value plus the base (wrapping).
    #[inline]
    pub fn get(&self, bytes: &[u8], i: usize) -> u64 {
        self.base.wrapping_add(self.stored(bytes, i))
    }
}

/// The `N` bytes at `bytes[at..]`, if they are there.
#[inline]
fn first<const N: usize>(bytes: &[u8], at: usize) -> Option<&[u8; N]> {
    bytes.get(at..)?.first_chunk::<N>()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` elements of `width` bytes, little-endian, after `pad` bytes of 0xEE, followed by `tail` bytes
    /// of 0xEE (what lies after a column: other columns, which a read must not take in).
    fn column_bytes(values: &[u64], width: usize, pad: usize, tail: usize) -> Vec<u8> {
        let mut b = vec![0xEE; pad];
        for v in values {
            b.extend_from_slice(&v.to_le_bytes()[..width]);
        }
        b.extend(std::iter::repeat_n(0xEE, tail));
        b
    }

    /// The boundary values of `width` bytes: 0, 1, the top bit alone, all ones but one, all ones.
    fn boundaries(width: usize) -> Vec<u64> {
        if width == 0 {
            return vec![0; 5];
        }
        let max = if width == 8 {
            u64::MAX
        } else {
            (1 << (8 * width)) - 1
        };
        vec![0, 1, 1 << (8 * width - 1), max - 1, max]
    }

    #[test]
    fn every_width_reads_its_boundary_values_anywhere_in_the_bytes() {
        for width in [0, 1, 2, 4, 8] {
            let values = boundaries(width);
            // Tails of 0 to 9 bytes: the last elements take the fast path or the slow one.
            for tail in 0..10 {
                for pad in [0, 3] {
                    let bytes = column_bytes(&values, width, pad, tail);
                    for base in [0, 7, u64::MAX] {
                        let c = NarrowColumn::new(pad, width, base).unwrap();
                        for (i, &v) in values.iter().enumerate() {
                            let at = format!("width {width} tail {tail} pad {pad} base {base} element {i}");
                            assert_eq!(c.stored(&bytes, i), v, "{at}");
                            assert_eq!(c.get(&bytes, i), base.wrapping_add(v), "{at}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_diff_base_wraps_as_i64() {
        let bytes = column_bytes(&[0, 1, u8::MAX as u64], 1, 0, 0);
        let c = NarrowColumn::new(0, 1, i64::MIN as u64).unwrap();
        assert_eq!(c.get(&bytes, 0) as i64, i64::MIN);
        assert_eq!(c.get(&bytes, 2) as i64, i64::MIN + 255);
        let c = NarrowColumn::new(0, 1, -1i64 as u64).unwrap();
        assert_eq!(c.get(&bytes, 0) as i64, -1);
        assert_eq!(c.get(&bytes, 1) as i64, 0);
    }

    #[test]
    fn bytes_that_are_not_there_read_as_zero() {
        for width in [1, 2, 4, 8] {
            let bytes = column_bytes(&[u64::MAX; 3], width, 0, 0);
            let c = NarrowColumn::new(0, width, 5).unwrap();
            // Past the end, partly past the end (an element cut short), far past, wrapped around.
            for i in [3, 4, usize::MAX / 16, usize::MAX] {
                assert_eq!(c.stored(&bytes, i), 0, "width {width} element {i}");
                assert_eq!(c.get(&bytes, i), 5, "width {width} element {i}");
            }
            let short = &bytes[..3 * width - 1];
            assert_eq!(c.stored(short, 2), 0, "width {width}: last element cut short");
            assert_eq!(c.stored(&[], 0), 0);
        }
        assert_eq!(NarrowColumn::new(10, 0, 9).unwrap().get(&[], 1_000), 9);
    }

    #[test]
    fn only_the_five_widths_make_a_column() {
        for code in 0..=u8::MAX {
            let valid = matches!(code, 0 | 1 | 2 | 4 | 8);
            assert_eq!(
                NarrowColumn::new(0, code as usize, 0).is_some(),
                valid,
                "width {code}"
            );
        }
        assert!(NarrowColumn::new(0, usize::MAX, 0).is_none());
    }

    #[test]
    fn offsets_and_rebase() {
        let c = NarrowColumn::new(40, 4, 0).unwrap();
        assert_eq!((c.offset_of(0), c.offset_of(3)), (40, 52));
        let r = c.rebase(1000);
        assert_eq!(r.offset_of(3), 1052);
        assert_eq!((r.offset_of(4) - r.offset_of(3), r.base()), (4, 0));
        let mut bytes = vec![0u8; 1100];
        bytes[1052..1056].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        assert_eq!(r.get(&bytes, 3), 0xDEAD_BEEF);
    }
}
