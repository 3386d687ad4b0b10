//! [`BatchFile`]: a batch served from its bytes (normally a read-only memory map).
//!
//! Invariants, established by [`BatchFile::open`] and kept for the life of the value:
//! - the header and footer passed their checksums, and so did the block index's partition table (in
//!   format version 3; before, the whole index, which is then one partition checked at open);
//! - an index entry is read only from a partition that passed its checksum and its checks (`batch/index.rs`):
//!   every entry points inside the data region, in order and without overlap within its partition
//!   (across partitions, `verify`'s scrub checks it), and its keys lie inside the partition's part of
//!   the key area;
//! - a [`Block`](super::Block) is handed out only after its checksum and its shape (counts equal to the index's; in
//!   format version 2 the width codes, flags, widths and reserved byte valid; every array and byte column
//!   inside the block and filling it exactly; O(1) in version 2, O(keys) in version 1: one pass over the
//!   key offsets, which also notes a fixed key width) were checked, once per block per open file (the block's `shapes` slot is its one atomic "verified" state). So every accessor of a
//!   `Block` reads in bounds and returns what the writer wrote.
//!
//! The verification rule (DESIGN.md §5, "Verify once"): the *structure* of a block's contents (monotone
//! offsets, sorted keys, vals and times, non-zero diffs, fences equal to the index) is guaranteed by the
//! writer, which refuses any update out of `(key, val, time)` order, with a zero diff or a time outside
//! the description, and lays out offsets and fences itself; the checksum, computed by the writer over the
//! bytes it laid out, proves on read that these are those bytes. So reads check the checksum only (lazily,
//! on first touch), and the structural pass runs where it finds something the checksum cannot: in
//! [`BatchFile::verify`] (`inspect verify`, the scrubber, tests), against a writer bug or a forged file.
//! Reads never depend on the structure for memory safety: every accessor is bounds-checked and clamps its
//! ranges, so a block that passes its checksum but is malformed (or changes after its check) reads as
//! wrong values or an error, never as a panic or an endless loop.

use super::filter::{Filter, FILTER_KIND_BLOOM};
use super::format::{
    check_header, Footer, IndexEntry, BATCH_VERSION_PARTITIONED, FOOTER_BYTES, HEADER_BYTES,
};
use super::index::{Index, Partition};
use super::seek::KeyProbe;
use super::Description;
use crate::blob::{Blob, BlobBytes};
use crate::error::{Error, Result};
pub use blocks::BlockBytes;
pub(crate) use blocks::BlockView;
use std::ops::Range;

mod blocks;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// An open batch file.
pub struct BatchFile {
    name: String,
    bytes: BlobBytes,
    footer: Footer,
    /// The block index, checked a partition at a time. Each checked partition holds its blocks' shapes
    /// (counts and array positions) and key samples, set when a block has been verified: readers take
    /// the shape from there, never again from the file's bytes, which another program could change under
    /// the map; and its lz4 blocks' decompressed copies, filled on first use.
    index: Index,
    /// How many times a block was fetched (a measure of data pages touched): see `block_reads()`.
    block_reads: std::sync::atomic::AtomicU64,
    /// The key filter, if the file has one: its header is checked at open, its checksum on first use.
    filter: Option<FilterSection>,
    /// Set once compaction replaced this batch: the file is deleted when the last holder drops it.
    retire: parking_lot::Mutex<Option<(Arc<dyn Blob>, String)>>,
}

/// Where a batch file's key filter lies, and whether its checksum passed: checked on first use
/// ([`BatchFile::may_contain`]) or by the file's writer ([`BatchFile::check_written`]), not at open, so
/// that opening a store reads no filter (O(files + index), not O(keys)).
struct FilterSection {
    /// The whole section in `bytes` (header, bits, checksum).
    section: Range<usize>,
    /// The bits.
    bits: Range<usize>,
    bit_count: u64,
    hash_count: u32,
    /// Whether the section passed its checksum, once checked.
    passed: std::sync::OnceLock<bool>,
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
        let version = check_header(&bytes, &name)?;
        let footer_at = len - FOOTER_BYTES;
        let footer = Footer::decode(&bytes[footer_at..], footer_at as u64, &name)?;
        let bad = |offset: u64, detail: String| Error::corrupt(&name, offset, detail);
        if footer.version != version {
            let detail = format!(
                "footer version {} differs from the header's {version}",
                footer.version
            );
            return Err(bad(footer_at as u64 + 8, detail));
        }
        let index_start = footer.index_offset;
        let index_end = index_start.checked_add(footer.index_len);
        if index_start < HEADER_BYTES as u64 || index_end.is_none_or(|end| end > footer_at as u64) {
            return Err(bad(footer_at as u64 + 64, "block index out of range".into()));
        }
        let index_end = footer.index_len as usize + index_start as usize;
        let filter = match footer.filter_kind {
            0 => None,
            FILTER_KIND_BLOOM => {
                let (start, len) = (footer.filter_offset, footer.filter_len);
                let end = start.checked_add(len);
                if start < index_end as u64 || end.is_none_or(|end| end > footer_at as u64) {
                    return Err(bad(footer_at as u64 + 88, "key filter out of range".into()));
                }
                let range = start as usize..(start + len) as usize;
                let f = Filter::parse(&bytes[range.clone()], start, &name)?;
                Some(FilterSection {
                    bits: range.start + 16..range.end - 8,
                    section: range,
                    bit_count: f.bit_count(),
                    hash_count: f.hash_count(),
                    passed: std::sync::OnceLock::new(),
                })
            }
            kind => {
                return Err(bad(
                    footer_at as u64 + 104,
                    format!("unknown key filter kind {kind}"),
                ));
            }
        };
        let d = footer.description;
        if d.lower > d.upper {
            return Err(bad(footer_at as u64 + 16, "description lower above upper".into()));
        }
        if version >= BATCH_VERSION_PARTITIONED
            && (footer.key_count > footer.val_count || footer.val_count > footer.update_count)
        {
            // Older versions check the counts against the whole index at open; these, in `verify`.
            return Err(bad(footer_at as u64 + 40, "footer counts out of order".into()));
        }
        let index = Index::open(&bytes, &footer, &name)?;
        Ok(BatchFile {
            name,
            bytes,
            footer,
            index,
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

    /// The file's fingerprint as the manifest records it (FORMAT.md §3): the low 32 bits of the block
    /// index's checksum (which covers every block's checksum, so every stored byte of the data), 1 where
    /// those are 0 (0 means "not recorded").
    pub fn fingerprint(&self) -> u32 {
        (self.footer.index_checksum as u32).max(1)
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
    #[inline]
    pub fn block_count(&self) -> usize {
        self.index.block_count()
    }

    /// Number of index partitions (FORMAT.md §2, "Index partitions"; 1 for a non-empty file of format
    /// version 1 or 2, which has none and is checked whole at open).
    pub fn index_partitions(&self) -> usize {
        self.index.partition_count()
    }

    /// How many index partitions have been checked so far (each on the first touch of one of its blocks).
    pub fn index_partitions_checked(&self) -> usize {
        self.index.checked_partitions().count()
    }

    /// Block `i`'s partition of the index and its place there, the partition checked on first use.
    fn locate(&self, i: usize) -> Result<(&Partition, usize)> {
        self.index.locate(&self.bytes, &self.name, i)
    }

    /// The index entry of block `i`. Reads (and on first use checks) the block's index partition; no data
    /// page is touched. Errors: [`Error::BadInput`] if `i >= block_count()`; [`Error::Corrupt`] naming the
    /// file and offset if the partition fails its check.
    pub fn index_entry(&self, i: usize) -> Result<&IndexEntry> {
        let (part, j) = self.locate(i)?;
        Ok(&part.entries[j])
    }

    /// The first key of block `i`, from the index (no data page is touched). Errors: as
    /// [`index_entry`](Self::index_entry).
    pub fn block_first_key(&self, i: usize) -> Result<&[u8]> {
        let e = self.index_entry(i)?;
        Ok(self.index.key(&self.bytes, e, false))
    }

    /// The last key of block `i`, from the index. Errors: as [`index_entry`](Self::index_entry).
    pub fn block_last_key(&self, i: usize) -> Result<&[u8]> {
        let e = self.index_entry(i)?;
        Ok(self.index.key(&self.bytes, e, true))
    }

    /// Whether `key` may be in this batch, from the key filter and the batch's first and last keys, without
    /// touching any block (`false`: certainly not). The filter's checksum is checked on its first use.
    /// Errors: [`Error::Corrupt`] naming the file and the filter's checksum offset if it fails.
    pub fn may_contain(&self, key: &[u8]) -> Result<bool> {
        self.may_contain_probe(&KeyProbe::new(key))
    }

    /// [`may_contain`](Self::may_contain) for a key whose probe (hash, prefix) is already computed.
    pub fn may_contain_probe(&self, probe: &KeyProbe<'_>) -> Result<bool> {
        if self.index.outside(&self.bytes, probe) {
            return Ok(false);
        }
        Ok(match self.checked_filter()? {
            Some(filter) => filter.may_contain_probe(probe),
            None => true,
        })
    }

    /// The key filter, its checksum checked on first use (the result is kept). Errors: [`Error::Corrupt`]
    /// naming the file and the checksum's offset.
    pub(crate) fn checked_filter(&self) -> Result<Option<Filter<'_>>> {
        let Some(f) = &self.filter else {
            return Ok(None);
        };
        let section = &self.bytes[f.section.clone()];
        let offset = f.section.start as u64;
        let passed = *f
            .passed
            .get_or_init(|| Filter::check_sum(section, offset, &self.name).is_ok());
        if !passed {
            // Rare: checked again for the error's detail.
            Filter::check_sum(section, offset, &self.name)?;
            return Err(Error::corrupt(
                &self.name,
                offset,
                "key filter: checksum mismatch",
            ));
        }
        Ok(Some(Filter::from_parts(
            &self.bytes[f.bits.clone()],
            f.bit_count,
            f.hash_count,
        )))
    }

    /// Asks the CPU to load the key filter's cache line for `probe` (a hint, no effect on results): a
    /// lookup over many batches prefetches every batch's line first, so their misses overlap.
    #[inline]
    pub fn prefetch(&self, probe: &KeyProbe<'_>) {
        if let Some(f) = &self.filter {
            Filter::from_parts(&self.bytes[f.bits.clone()], f.bit_count, f.hash_count).prefetch(probe.hash);
        }
    }

    /// Calls `f(val, time, diff)` for every update of `key` in this batch, in `(val, time)` order. Uses the
    /// filter and the fences first, then reads (and on first use verifies) at most one block.
    /// Errors: [`Error::Corrupt`] naming the file and offset of a block that fails its check.
    pub fn for_key(&self, key: &[u8], f: impl FnMut(&[u8], u64, i64)) -> Result<()> {
        self.for_key_probe(&KeyProbe::new(key), f)
    }

    /// [`for_key`](Self::for_key) for a key whose probe is already computed (one per lookup, shared by
    /// every batch).
    pub fn for_key_probe(&self, probe: &KeyProbe<'_>, mut f: impl FnMut(&[u8], u64, i64)) -> Result<()> {
        if !self.may_contain_probe(probe)? {
            return Ok(());
        }
        let Some((part, j)) = self.index.seek(&self.bytes, &self.name, probe)? else {
            return Ok(());
        };
        if self.index.first_above(&self.bytes, part, j, probe) {
            return Ok(());
        }
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        let view = self.view_in(part, j)?;
        let (block, k) = (view.block(), view.seek_key(probe));
        if k >= block.key_count() || block.key(k) != probe.key {
            return Ok(());
        }
        for j in block.vals(k) {
            let val = block.val(j);
            for (time, diff) in block.times_of(j) {
                f(val, time, diff);
            }
        }
        Ok(())
    }

    /// The first block that may hold `key` or a larger key (the sparse index's seek): the first block
    /// whose last key is `>= key`. Returns `block_count()` when every key is smaller. Reads (and on first
    /// use checks) one partition of the index. Errors: [`Error::Corrupt`] naming the file and offset if
    /// that partition fails its check.
    pub fn seek_block(&self, key: &[u8]) -> Result<usize> {
        let found = self
            .index
            .seek(&self.bytes, &self.name, &KeyProbe::unhashed(key))?;
        Ok(found.map_or(self.block_count(), |(part, j)| part.first_block + j))
    }

    /// The file's bytes.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many blocks were fetched, for tests and measurements of the data-page touches: every call of
    /// [`block`](Self::block) and [`block_for_merge`](Self::block_for_merge) (an [`UpdateCursor`](super::UpdateCursor) entering a block, a merge), every
    /// block a lookup ([`for_key`](Self::for_key)) reads, and a DD trace cursor's first touch of each
    /// block (its later reads go through the verified block, uncounted). The writer's
    /// [`check_written`](Self::check_written) is not counted.
    pub fn block_reads(&self) -> u64 {
        self.block_reads.load(Ordering::Relaxed)
    }

    /// Whether every block has been verified.
    pub fn is_verified(&self) -> bool {
        self.index.all_checked()
            && self
                .index
                .checked_partitions()
                .all(|p| p.shapes.iter().all(|s| s.get().is_some()))
    }
}
