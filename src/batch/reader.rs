//! [`BatchFile`]: a batch served from its bytes (normally a read-only memory map).
//!
//! Invariants, established by [`BatchFile::open`] and kept for the life of the value:
//! - the header, footer and block index passed their checksums; every index entry points inside the
//!   data region, in order and without overlap, and its keys lie inside the index key area;
//! - a [`Block`] is handed out only after its checksum and structure (array sizes, monotone offsets, sorted
//!   and consolidated contents, fences equal to its index keys) were checked, once per block per open
//!   file. So every accessor of a `Block` reads in bounds and returns what the writer wrote.

use super::filter::{Filter, FILTER_KIND_BLOOM};
use super::format::{
    check_header, Footer, IndexEntry, BLOCK_ALIGN, BLOCK_HEADER_BYTES, CODEC_LZ4, CODEC_RAW, FOOTER_BYTES,
    HEADER_BYTES, INDEX_ENTRY_BYTES,
};
use super::Description;
use crate::blob::{Blob, BlobBytes};
use crate::error::{Error, Result};
use crate::format::{checksum, le_u32};
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// [`BatchFile::verify`] splits files of at least this many blocks across threads.
pub(crate) const PARALLEL_VERIFY_BLOCKS: usize = 64;
/// At most this many threads verify one file.
const MAX_VERIFY_THREADS: usize = 4;

/// An open batch file.
pub struct BatchFile {
    name: String,
    bytes: BlobBytes,
    footer: Footer,
    index: Vec<IndexEntry>,
    /// Absolute offset of the index key area.
    key_area: usize,
    /// Block i's shape (counts and array positions), set when it has been verified. Readers take the shape
    /// from here, never again from the file's bytes, which another program could change under the map.
    shapes: Box<[std::sync::OnceLock<Block<'static>>]>,
    /// Decompressed copies of lz4 blocks, filled on first use.
    decompressed: Box<[std::sync::OnceLock<Box<[u8]>>]>,
    /// How many times a block was fetched through [`BatchFile::block`] (a measure of data pages touched).
    block_reads: std::sync::atomic::AtomicU64,
    /// The key filter's bit range in `bytes`, bit count and hash count (checked at open).
    filter: Option<(Range<usize>, u64, u32)>,
    /// Set once compaction replaced this batch: the file is deleted when the last holder drops it.
    retire: parking_lot::Mutex<Option<(Arc<dyn Blob>, String)>>,
}

impl Drop for BatchFile {
    fn drop(&mut self) {
        if let Some((blob, object)) = self.retire.get_mut().take() {
            // No manifest names this file any more and no reader holds it. A failed delete leaves an
            // orphan, which the next open removes; there is no caller to report it to here.
            let _ = blob.delete(&object);
        }
    }
}

impl std::fmt::Debug for BatchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchFile")
            .field("name", &self.name)
            .field("footer", &self.footer)
            .finish()
    }
}

impl BatchFile {
    /// Checks header, footer and index of `bytes`, read from the file `name`. Blocks are checked lazily,
    /// on first use (or all at once by [`verify`](Self::verify)).
    pub fn open(name: impl Into<String>, bytes: BlobBytes) -> Result<Self> {
        let name = name.into();
        let len = bytes.len();
        if len < HEADER_BYTES + FOOTER_BYTES {
            return Err(Error::corrupt(
                &name,
                0,
                format!("{len} bytes is too short for a batch file"),
            ));
        }
        check_header(&bytes, &name)?;
        let footer_at = len - FOOTER_BYTES;
        let footer = Footer::decode(&bytes[footer_at..], footer_at as u64, &name)?;
        let bad = |offset: u64, detail: String| Error::corrupt(&name, offset, detail);
        let index_start = footer.index_offset;
        let index_end = index_start.checked_add(footer.index_len);
        if index_start < HEADER_BYTES as u64 || index_end.is_none_or(|end| end > footer_at as u64) {
            return Err(bad(footer_at as u64 + 64, "block index out of range".into()));
        }
        let (index_start, index_end) = (
            index_start as usize,
            footer.index_len as usize + index_start as usize,
        );
        let index_bytes = &bytes[index_start..index_end];
        if checksum(index_bytes) != footer.index_checksum {
            return Err(bad(index_start as u64, "block index checksum mismatch".into()));
        }
        let entries_len = footer.block_count as usize * INDEX_ENTRY_BYTES;
        if entries_len > index_bytes.len() {
            return Err(bad(
                index_start as u64,
                "block count does not fit the index".into(),
            ));
        }
        let filter = match footer.filter_kind {
            0 => None,
            FILTER_KIND_BLOOM => {
                let (start, len) = (footer.filter_offset, footer.filter_len);
                let end = start.checked_add(len);
                if start < index_end as u64 || end.is_none_or(|end| end > footer_at as u64) {
                    return Err(bad(footer_at as u64 + 88, "key filter out of range".into()));
                }
                let range = start as usize..(start + len) as usize;
                let f = Filter::open(&bytes[range.clone()], start, &name)?;
                Some((range.start + 16..range.end - 8, f.bit_count(), f.hash_count()))
            }
            kind => {
                return Err(bad(
                    footer_at as u64 + 104,
                    format!("unknown key filter kind {kind}"),
                ));
            }
        };
        let key_area = index_start + entries_len;
        let key_area_len = index_end - key_area;
        let mut index = Vec::with_capacity(footer.block_count as usize);
        let mut data_end = HEADER_BYTES as u64;
        let (mut keys, mut updates) = (0u64, 0u64);
        for i in 0..footer.block_count as usize {
            let at = index_start + i * INDEX_ENTRY_BYTES;
            let e = IndexEntry::decode(&bytes[at..], at as u64, &name)?;
            let at = at as u64;
            let block_end = e.offset.checked_add(e.stored_len as u64);
            if e.offset < data_end
                || e.offset % BLOCK_ALIGN as u64 != 0
                || block_end.is_none_or(|end| end > index_start as u64)
            {
                return Err(bad(at, format!("block {i} at offset {} out of place", e.offset)));
            }
            let keys_end = e.first_key_off as u64 + e.first_key_len as u64 + e.last_key_len as u64;
            if keys_end > key_area_len as u64 {
                return Err(bad(at + 32, format!("block {i} fence keys outside the key area")));
            }
            match e.codec {
                CODEC_RAW if e.raw_len == e.stored_len => {}
                CODEC_RAW => return Err(bad(at + 20, "raw block with raw length != stored length".into())),
                // lz4 expands at most about 255-fold: a larger claim would size a huge allocation.
                CODEC_LZ4 if (e.raw_len as u64) <= e.stored_len as u64 * 255 + 64 => {}
                CODEC_LZ4 => {
                    return Err(bad(at + 20, format!("lz4 block claims {} raw bytes", e.raw_len)));
                }
                c => return Err(bad(at + 44, format!("unknown block codec {c}"))),
            }
            if e.key_count == 0 || e.update_count == 0 {
                return Err(bad(at + 24, format!("block {i} is empty")));
            }
            data_end = block_end.unwrap_or(u64::MAX);
            keys += e.key_count as u64;
            updates += e.update_count as u64;
            index.push(e);
        }
        if keys != footer.key_count || updates != footer.update_count {
            return Err(bad(
                footer_at as u64 + 40,
                "footer counts disagree with the block index".into(),
            ));
        }
        let d = footer.description;
        if d.lower > d.upper {
            return Err(bad(footer_at as u64 + 16, "description lower above upper".into()));
        }
        let block_count = index.len();
        let shapes = (0..block_count).map(|_| std::sync::OnceLock::new()).collect();
        Ok(BatchFile {
            name,
            bytes,
            footer,
            index,
            key_area,
            shapes,
            decompressed: (0..block_count).map(|_| std::sync::OnceLock::new()).collect(),
            block_reads: std::sync::atomic::AtomicU64::new(0),
            filter,
            retire: parking_lot::Mutex::new(None),
        })
    }

    /// Deletes the file `object` from `blob` once this value is dropped (by the last reader holding it).
    /// Called when a merge has replaced the batch in the manifest.
    pub fn retire_on_drop(&self, blob: Arc<dyn Blob>, object: String) {
        *self.retire.lock() = Some((blob, object));
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The batch's description.
    pub fn description(&self) -> Description {
        self.footer.description
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The size of the file in bytes.
    pub fn size_bytes(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Number of updates.
    pub fn update_count(&self) -> u64 {
        self.footer.update_count
    }

    /// Number of blocks.
    pub fn block_count(&self) -> usize {
        self.index.len()
    }

    /// The index entry of block `i` (`i < block_count()`).
    pub fn index_entry(&self, i: usize) -> &IndexEntry {
        &self.index[i]
    }

    /// The first key of block `i`, from the index (no data page is touched).
    pub fn block_first_key(&self, i: usize) -> &[u8] {
        let e = &self.index[i];
        let start = self.key_area + e.first_key_off as usize;
        &self.bytes[start..start + e.first_key_len as usize]
    }

    /// The last key of block `i`, from the index.
    pub fn block_last_key(&self, i: usize) -> &[u8] {
        let e = &self.index[i];
        let start = self.key_area + e.first_key_off as usize + e.first_key_len as usize;
        &self.bytes[start..start + e.last_key_len as usize]
    }

    /// Whether `key` may be in this batch, from the key filter and the batch's first and last keys, without
    /// touching any block (`false`: certainly not).
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let n = self.index.len();
        if n == 0 || key < self.block_first_key(0) || key > self.block_last_key(n - 1) {
            return false;
        }
        match &self.filter {
            Some((range, bits, hashes)) => {
                Filter::from_parts(&self.bytes[range.clone()], *bits, *hashes).may_contain(key)
            }
            None => true,
        }
    }

    /// Calls `f(val, time, diff)` for every update of `key` in this batch, in `(val, time)` order. Uses the
    /// filter and the fences first, then reads (and on first use verifies) at most one block.
    pub fn for_key(&self, key: &[u8], mut f: impl FnMut(&[u8], u64, i64)) -> Result<()> {
        if !self.may_contain(key) {
            return Ok(());
        }
        let b = self.seek_block(key);
        if b >= self.block_count() || self.block_first_key(b) > key {
            return Ok(());
        }
        let block = self.block(b)?;
        let k = block.seek_key(key);
        if k >= block.key_count() || block.key(k) != key {
            return Ok(());
        }
        for j in block.vals(k) {
            for x in block.updates(j) {
                f(block.val(j), block.time(x), block.diff(x));
            }
        }
        Ok(())
    }

    /// The first block that may hold `key` or a larger key (the sparse index's seek): the first block
    /// whose last key is `>= key`. Returns `block_count()` when every key is smaller.
    pub fn seek_block(&self, key: &[u8]) -> usize {
        let (mut lo, mut hi) = (0, self.index.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.block_last_key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Block `i`, checked on first use.
    pub fn block(&self, i: usize) -> Result<Block<'_>> {
        let e = self
            .index
            .get(i)
            .ok_or_else(|| Error::bad_input(format!("block {i} out of range")))?;
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        if let Some(block) = self.verified_block(i) {
            return Ok(block);
        }
        let corrupt = |off: u64, detail: String| Error::corrupt(&self.name, e.offset + off, detail);
        let raw: &[u8] = match self.stored_checked(i)? {
            BlockBytes::Borrowed(stored) => stored,
            BlockBytes::Owned(raw) => {
                // Another thread may have won the race to fill the cache with the same bytes.
                let _ = self.decompressed[i].set(raw);
                self.decompressed[i].get().map_or(&[][..], |b| &b[..])
            }
        };
        let block = Block::check(raw, e, self.block_first_key(i), self.block_last_key(i))
            .map_err(|(off, detail)| corrupt(off as u64, format!("block {i}: {detail}")))?;
        let _ = self.shapes[i].set(block.detach());
        Ok(block)
    }

    /// Block `i` for a one-pass reader that holds one block at a time (a merge): checked like
    /// [`block`](Self::block), returned as its shape and its bytes. A raw block, or an lz4 block some other
    /// reader already decompressed, is borrowed from the file; an lz4 block not yet decompressed is
    /// decompressed into a buffer the caller owns and is *not* cached, so a merge of compressed inputs
    /// holds one decompressed block per input, not the whole input.
    pub fn block_for_merge(&self, i: usize) -> Result<(Block<'static>, BlockBytes<'_>)> {
        let e = self
            .index
            .get(i)
            .ok_or_else(|| Error::bad_input(format!("block {i} out of range")))?;
        if e.codec != CODEC_LZ4 || self.decompressed[i].get().is_some() {
            let block = self.block(i)?;
            let bytes = match self.verified_block_bytes(i) {
                Some(bytes) => bytes,
                None => {
                    return Err(Error::corrupt(
                        &self.name,
                        e.offset,
                        format!("block {i}: not readable"),
                    ))
                }
            };
            return Ok((block.detach(), BlockBytes::Borrowed(bytes)));
        }
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        let corrupt = |off: u64, detail: String| Error::corrupt(&self.name, e.offset + off, detail);
        let raw = self.stored_checked(i)?;
        let shape = Block::check(&raw, e, self.block_first_key(i), self.block_last_key(i))
            .map_err(|(off, detail)| corrupt(off as u64, format!("block {i}: {detail}")))?
            .detach();
        Ok((shape, raw))
    }

    /// Block `i`'s stored bytes after their checksum, decompressed (into a new buffer) if lz4: the
    /// bytes [`Block::check`] is to be run on.
    fn stored_checked(&self, i: usize) -> Result<BlockBytes<'_>> {
        let e = &self.index[i];
        let start = e.offset as usize;
        let stored = &self.bytes[start..start + e.stored_len as usize];
        let corrupt = |detail: String| Error::corrupt(&self.name, e.offset, detail);
        if checksum(stored) != e.checksum {
            return Err(corrupt(format!("block {i} checksum mismatch")));
        }
        if e.codec != CODEC_LZ4 {
            return Ok(BlockBytes::Borrowed(stored));
        }
        let raw = lz4_flex::block::decompress(stored, e.raw_len as usize)
            .map_err(|err| corrupt(format!("block {i}: lz4: {err}")))?;
        if raw.len() != e.raw_len as usize {
            return Err(corrupt(format!(
                "block {i}: lz4 gave {} bytes, not {}",
                raw.len(),
                e.raw_len
            )));
        }
        Ok(BlockBytes::Owned(raw.into_boxed_slice()))
    }

    /// How many blocks hold a cached decompressed copy (lz4 blocks read through [`block`](Self::block)).
    pub fn cached_blocks(&self) -> usize {
        self.decompressed.iter().filter(|c| c.get().is_some()).count()
    }

    /// Block `i` if it has been verified (always, after [`verify`](Self::verify) succeeded): the
    /// infallible accessor for readers, such as DD cursors, that cannot return errors and so verify a
    /// batch whole before using it. A raw block is served from the map; an lz4 block from its
    /// decompressed copy, kept for the life of this value.
    #[inline]
    pub fn verified_block(&self, i: usize) -> Option<Block<'_>> {
        let shape = self.shapes.get(i)?.get()?;
        Some(shape.attach(self.verified_block_bytes(i)?))
    }

    /// Where block `i`'s raw bytes lie in [`bytes`](Self::bytes), if it is verified and stored raw.
    #[inline]
    pub fn verified_raw_range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        let e = self.index.get(i)?;
        if self.shapes[i].get().is_none() || e.codec == CODEC_LZ4 {
            return None;
        }
        let start = e.offset as usize;
        Some(start..start + e.stored_len as usize)
    }

    /// The file's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes of block `i` if it has been verified (no layout decoding): for cursors that cache the
    /// block's shape ([`Block::detach`]).
    #[inline]
    pub fn verified_block_bytes(&self, i: usize) -> Option<&[u8]> {
        let e = self.index.get(i)?;
        self.shapes[i].get()?;
        if e.codec == CODEC_LZ4 {
            return self.decompressed[i].get().map(|raw| &raw[..]);
        }
        let start = e.offset as usize;
        Some(&self.bytes[start..start + e.stored_len as usize])
    }

    /// How many times [`block`](Self::block) fetched a block (lookups, cursors, merges): the data-page
    /// touches, for tests and measurements.
    pub fn block_reads(&self) -> u64 {
        self.block_reads.load(Ordering::Relaxed)
    }

    /// Whether every block has been verified.
    pub fn is_verified(&self) -> bool {
        self.shapes.iter().all(|s| s.get().is_some())
    }

    /// Checks every block, and across blocks: keys increase, every time lies in the description, and the
    /// val count matches the footer; then the layout: padding, reserved fields and the sections' places,
    /// so that every byte of the file is checked against the format (`batch/scrub.rs`). Returns the first problem found, in block order. (See also
    /// [`verify_deep`](Self::verify_deep).) Files of [`PARALLEL_VERIFY_BLOCKS`] blocks or more are checked
    /// by up to [`MAX_VERIFY_THREADS`] scoped threads over contiguous block ranges (restarting a trace
    /// verifies every block it serves).
    pub fn verify(&self) -> Result<()> {
        let n = self.index.len();
        let threads = if n >= PARALLEL_VERIFY_BLOCKS {
            std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(MAX_VERIFY_THREADS)
        } else {
            1
        };
        let vals = if threads <= 1 {
            self.verify_blocks(0..n)?
        } else {
            // Contiguous ranges, one per thread; the first error in block order wins.
            let chunk = n.div_ceil(threads);
            let results: Vec<Result<u64>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                        scope.spawn(move || self.verify_blocks(range))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::io(
                                format!("verify {}", self.name),
                                std::io::Error::other("a verification thread panicked"),
                            ))
                        })
                    })
                    .collect()
            });
            let mut vals = 0;
            for r in results {
                vals += r?;
            }
            vals
        };
        if vals != self.footer.val_count {
            let at = self.bytes.len() as u64 - FOOTER_BYTES as u64 + 48;
            return Err(Error::corrupt(
                &self.name,
                at,
                "footer val count disagrees with the blocks",
            ));
        }
        // The bytes no checksum covers (padding) and the reserved fields.
        self.verify_layout()
    }

    /// The per-block part of [`verify`](Self::verify) over blocks `range`: each block's checksum and
    /// structure, its times within the description, and its order after the previous block (by the
    /// index's fence keys). Returns the blocks' val count.
    fn verify_blocks(&self, range: std::ops::Range<usize>) -> Result<u64> {
        let d = self.footer.description;
        let mut vals = 0u64;
        for i in range {
            let block = self.block(i)?;
            let at = self.index[i].offset;
            let bad = |detail: String| Error::corrupt(&self.name, at, format!("block {i}: {detail}"));
            if i > 0 && self.block_last_key(i - 1) >= self.block_first_key(i) {
                return Err(bad(format!("does not start above block {}", i - 1)));
            }
            // Times lie in the description (or were advanced to its since by a merge).
            if let Some(x) = (0..block.update_count()).find(|&x| {
                let t = block.time(x);
                t < d.lower || (t >= d.upper && t != d.since)
            }) {
                return Err(bad(format!(
                    "time {} outside the description {d:?}",
                    block.time(x)
                )));
            }
            vals += block.val_count() as u64;
        }
        Ok(vals)
    }

    /// [`verify`](Self::verify), and also that every key passes the key filter (a hash per key: about 10×
    /// the cost of `verify` on large batches). The filter's bytes are checksummed at open in any case;
    /// this catches a writer that built the filter wrong. For tools (`inspect verify`) and fuzzing.
    pub fn verify_deep(&self) -> Result<()> {
        self.verify()?;
        for i in 0..self.index.len() {
            let block = self.block(i)?;
            if let Some(k) = (0..block.key_count()).find(|&k| !self.may_contain(block.key(k))) {
                let at = self.index[i].offset;
                let detail = format!("block {i}: key {k} is missing from the key filter");
                return Err(Error::corrupt(&self.name, at, detail));
            }
        }
        Ok(())
    }
}

/// The bytes of a block handed out by [`BatchFile::block_for_merge`]: borrowed from the file (or its
/// cache), or decompressed for the caller alone.
#[derive(Debug)]
pub enum BlockBytes<'a> {
    /// The block's bytes in the file's map (raw) or in its decompressed cache.
    Borrowed(&'a [u8]),
    /// An lz4 block decompressed for this caller, dropped with it.
    Owned(Box<[u8]>),
}

impl std::ops::Deref for BlockBytes<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            BlockBytes::Borrowed(b) => b,
            BlockBytes::Owned(b) => b,
        }
    }
}

/// A verified block: a columnar trie of keys → vals → (time, diff), borrowed from the file's bytes.
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
}

impl<'a> Block<'a> {
    /// Element `i` of the `u32` array at `array_at`; 0 when the bytes are not there. Every accessor reads
    /// through bounds checks like this one and never trusts an offset read from the bytes, so a block whose
    /// bytes changed after it was verified (another program rewrote the file under the map) reads as
    /// wrong values, never as a panic (DESIGN.md 2.2, "what the store assumes of its files").
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

    /// Checks structure and order of `bytes` against its index entry and fence keys; on failure returns
    /// the offset within the block and what is wrong.
    fn check(
        bytes: &'a [u8],
        e: &IndexEntry,
        first: &[u8],
        last: &[u8],
    ) -> std::result::Result<Self, (usize, String)> {
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
        Ok(b)
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

    /// Key `i`, borrowed from the file.
    #[inline]
    pub fn key(&self, i: usize) -> &'a [u8] {
        let (s, e) = (
            self.u32_at(self.key_offs_at, i),
            self.u32_at(self.key_offs_at, i + 1),
        );
        self.column(self.key_bytes_at, s, e)
    }

    /// The vals of key `i`, as a range of val indexes (within `0..val_count()`).
    #[inline]
    pub fn vals(&self, i: usize) -> Range<usize> {
        let end = (self.u32_at(self.key_vals_at, i + 1) as usize).min(self.val_count);
        (self.u32_at(self.key_vals_at, i) as usize).min(end)..end
    }

    /// Val `j`, borrowed from the file.
    #[inline]
    pub fn val(&self, j: usize) -> &'a [u8] {
        let (s, e) = (
            self.u32_at(self.val_offs_at, j),
            self.u32_at(self.val_offs_at, j + 1),
        );
        self.column(self.val_bytes_at, s, e)
    }

    /// The updates of val `j`, as a range of update indexes (within `0..update_count()`).
    #[inline]
    pub fn updates(&self, j: usize) -> Range<usize> {
        let end = (self.u32_at(self.val_upds_at, j + 1) as usize).min(self.update_count);
        (self.u32_at(self.val_upds_at, j) as usize).min(end)..end
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
        let (mut lo, mut hi) = (0, self.key_count);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.key(mid) < key {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
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
