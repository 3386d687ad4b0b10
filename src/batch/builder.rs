//! `BlockBuilder`: one data block of a batch file being built (keys, vals, times and diffs in columns with
//! `u32` offset arrays; layout in FORMAT.md §2), serialised with its header and checksum, lz4 optionally.

use super::format::BLOCK_HEADER_BYTES;
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
}

impl BlockBuilder {
    pub(super) fn reset(&mut self) {
        self.times.clear();
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

    /// Size of the block once closed.
    pub(super) fn raw_len(&self) -> usize {
        BLOCK_HEADER_BYTES
            + 16 * self.times.len()
            + 4 * (2 * (self.key_count() + 1) + 2 * (self.val_count() + 1))
            + self.key_bytes.len()
            + self.val_bytes.len()
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
        Ok(())
    }

    pub(super) fn start_val(&mut self, val: &[u8]) -> Result<()> {
        self.val_bytes.extend_from_slice(val);
        let n = Self::offset_u32(self.val_bytes.len(), "val bytes")?;
        self.val_offs.push(n);
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

    /// Appends the closed block's bytes to `out`.
    pub(super) fn serialize_into(&self, out: &mut Vec<u8>) -> Result<()> {
        let raw_len = Self::offset_u32(self.raw_len(), "bytes")?;
        let start = out.len();
        out.reserve(raw_len as usize);
        out.put_u32(self.key_count() as u32);
        out.put_u32(self.val_count() as u32);
        out.put_u32(self.times.len() as u32);
        out.put_u32(0);
        put_le_words(out, &self.times, u64::to_le_bytes);
        put_le_words(out, &self.diffs, i64::to_le_bytes);
        for offs in [&self.key_offs, &self.key_vals, &self.val_offs, &self.val_upds] {
            put_le_words(out, offs, u32::to_le_bytes);
        }
        out.extend_from_slice(&self.key_bytes);
        out.extend_from_slice(&self.val_bytes);
        debug_assert_eq!(out.len() - start, raw_len as usize);
        Ok(())
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
