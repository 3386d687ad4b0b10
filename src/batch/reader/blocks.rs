//! A [`BatchFile`]'s blocks: checked on first touch (checksum and shape, [`Block::shape`]), then served from
//! the map (raw) or from a decompressed copy kept with the file (lz4); and [`BlockView`], a verified block
//! with its key samples, for the seeks of lookups and cursors.
//!
//! A block's state lives in its index partition (`batch/index.rs`): its shape slot, set once it passed, and
//! its decompressed copy. The seek accessors ([`BatchFile::seek_view`], and the lookup's `view_in`) get
//! the partition from the index's seek and read both from it, with no second lookup of the partition once
//! the block is verified; the others locate the block's partition from its number.

use super::BatchFile;
use crate::batch::block::Block;
use crate::batch::format::{IndexEntry, CODEC_LZ4};
use crate::batch::index::Partition;
use crate::batch::seek::{KeyProbe, KeySamples};
use crate::encoding::checksum;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

/// A verified block of a batch file: its shape over its bytes, its key samples, and where it starts in the
/// file's bytes if it is stored raw (so a cursor can read it through the whole file's bytes,
/// [`Block::rebase`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct BlockView<'a> {
    /// The block's verified shape, detached from its bytes (kept with the file; referred to, not
    /// copied, until a reader keeps it).
    pub shape: &'a Block<'static>,
    /// The block's bytes (in the map, or its decompressed copy).
    pub bytes: &'a [u8],
    /// Its key samples, set with its shape.
    pub samples: &'a KeySamples,
    /// The offset of its bytes in [`BatchFile::bytes`], if it is stored raw; `None` for lz4.
    pub raw_start: Option<usize>,
}

impl<'a> BlockView<'a> {
    /// The block over its bytes.
    #[inline]
    pub fn block(&self) -> Block<'a> {
        self.shape.attach(self.bytes)
    }

    /// The first key index of the block whose key is `>= probe.key` (`key_count()` if none): a search
    /// between the two key samples around it ([`KeySamples::range`]).
    #[inline]
    pub fn seek_key(&self, probe: &KeyProbe<'_>) -> usize {
        let range = self.samples.range(probe, self.shape.key_count());
        self.block().seek_key_in(probe.key, probe.prefix, range)
    }
}

impl BatchFile {
    /// Block `i`, its checksum and shape checked on first use (not its contents' order: see the module
    /// docs). Errors: [`Error::BadInput`] if `i >= block_count()`; [`Error::Corrupt`] naming the file and
    /// the offset of the block (or of its index partition) that fails its check.
    pub fn block(&self, i: usize) -> Result<Block<'_>> {
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        self.checked_block(i)
    }

    /// Checks the checksum and shape of every raw (uncompressed) block not checked yet, and the key
    /// filter's checksum, through the mapping, marking them verified: for a file this process has just
    /// written (a seal's, spill's or merge's output), so that the writer's thread pays the first touch
    /// (page faults, one checksum pass over the file) instead of the first lookup or cursor, or the
    /// arranging operator's worker thread. lz4 blocks are left to their first reader (checking one here
    /// would cache its decompressed copy). Not counted in [`block_reads`](Self::block_reads). Errors:
    /// [`Error::Corrupt`] naming the file and the offset of the block, partition or filter checksum (the
    /// bytes mapped differ from those written).
    pub fn check_written(&self) -> Result<()> {
        self.checked_filter()?;
        for i in 0..self.block_count() {
            let (part, j) = self.locate(i)?;
            if part.entries[j].codec != CODEC_LZ4 && part.shapes[j].get().is_none() {
                self.check_block_in(part, j)?;
            }
        }
        Ok(())
    }

    /// [`block`](Self::block) without counting the read.
    fn checked_block(&self, i: usize) -> Result<Block<'_>> {
        if let Some(block) = self.verified_block(i) {
            return Ok(block);
        }
        let (part, j) = self.locate(i)?;
        self.check_block_in(part, j)
    }

    /// Checks block `j` of the checked partition `part` (its checksum, its decompression, its shape) and
    /// records its shape and key samples (and its decompressed copy). Errors: [`Error::Corrupt`] naming the
    /// file and the block's offset.
    fn check_block_in<'s>(&'s self, part: &'s Partition, j: usize) -> Result<Block<'s>> {
        let (e, i) = (&part.entries[j], part.first_block + j);
        let corrupt = |off: u64, detail: String| Error::corrupt(&self.name, e.offset + off, detail);
        let raw: &[u8] = match self.stored_checked(i, e)? {
            BlockBytes::Borrowed(stored) => stored,
            BlockBytes::Owned(raw) => {
                // Another thread may have won the race to fill the cache with the same bytes.
                let slot = part
                    .decompressed
                    .get(j)
                    .ok_or_else(|| corrupt(0, format!("block {i}: no lz4 slot")))?;
                let _ = slot.set(raw);
                slot.get().map_or(&[][..], |b| &b[..])
            }
        };
        let block = Block::shape(raw, e, self.footer.version)
            .map_err(|(off, detail)| corrupt(off as u64, format!("block {i}: {detail}")))?;
        let samples = KeySamples::new(block.key_count(), |k| block.key(k));
        if let Some(slot) = part.shapes.get(j) {
            let _ = slot.set(Box::new((block.detach(), samples)));
        }
        Ok(block)
    }

    /// Block `i` as a [`BlockView`] if it has been verified (no check is started): what a cursor reads
    /// on its hot path. Never counted in [`block_reads`](Self::block_reads).
    #[inline]
    pub(crate) fn verified_view(&self, i: usize) -> Option<BlockView<'_>> {
        let (part, j) = self.index.checked(i)?;
        self.view_of(part, j)
    }

    /// Block `i` as a [`BlockView`], checked on first use (then counted in
    /// [`block_reads`](Self::block_reads), as [`block`](Self::block)). Errors: as [`block`](Self::block).
    pub(crate) fn block_view(&self, i: usize) -> Result<BlockView<'_>> {
        if let Some(view) = self.verified_view(i) {
            return Ok(view);
        }
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        let (part, j) = self.locate(i)?;
        self.view_in(part, j)
    }

    /// The first block at or after block `from` that may hold `probe.key` or a larger key (the first whose
    /// last key is `>= probe.key`, or `from` if that one is before it), with its view, checked on first
    /// use; `None` past the last block. Finds the block's index partition once: the seek of a cursor that
    /// leaves its block. Errors: [`Error::Corrupt`] naming the file and the offset of the index
    /// partition or block that fails its check.
    pub(crate) fn seek_view(
        &self,
        probe: &KeyProbe<'_>,
        from: usize,
    ) -> Result<Option<(usize, BlockView<'_>)>> {
        match self.index.seek(&self.bytes, &self.name, probe)? {
            Some((part, j)) if part.first_block + j >= from => {
                let view = match self.view_of(part, j) {
                    Some(view) => view,
                    None => {
                        self.block_reads.fetch_add(1, Ordering::Relaxed);
                        self.view_in(part, j)?
                    }
                };
                Ok(Some((part.first_block + j, view)))
            }
            Some(_) if from < self.block_count() => Ok(Some((from, self.block_view(from)?))),
            _ => Ok(None),
        }
    }

    /// Block `j` of the checked partition `part` as a [`BlockView`], checked if not verified yet (not
    /// counted in [`block_reads`](Self::block_reads): callers count). Errors: as
    /// [`check_block_in`](Self::check_block_in).
    pub(super) fn view_in<'s>(&'s self, part: &'s Partition, j: usize) -> Result<BlockView<'s>> {
        if let Some(view) = self.view_of(part, j) {
            return Ok(view);
        }
        self.check_block_in(part, j)?;
        self.view_of(part, j).ok_or_else(|| {
            let (i, e) = (part.first_block + j, &part.entries[j]);
            Error::corrupt(&self.name, e.offset, format!("block {i}: not readable"))
        })
    }

    /// Block `j` of the checked partition `part` as a [`BlockView`], if verified.
    #[inline]
    fn view_of<'s>(&'s self, part: &'s Partition, j: usize) -> Option<BlockView<'s>> {
        let (shape, samples) = &**part.shapes.get(j)?.get()?;
        let bytes = self.verified_bytes_in(part, j)?;
        let e = &part.entries[j];
        let raw_start = (e.codec != CODEC_LZ4).then_some(e.offset as usize);
        Some(BlockView {
            shape,
            bytes,
            samples,
            raw_start,
        })
    }

    /// Block `i` for a one-pass reader that holds one block at a time (a merge): checked like
    /// [`block`](Self::block), returned as its shape and its bytes. A raw block, or an lz4 block some other
    /// reader already decompressed, is borrowed from the file; an lz4 block not yet decompressed is
    /// decompressed into a buffer the caller owns and is *not* cached, so a merge of compressed inputs
    /// holds one decompressed block per input, not the whole input.
    pub fn block_for_merge(&self, i: usize) -> Result<(Block<'static>, BlockBytes<'_>)> {
        let (part, j) = self.locate(i)?;
        let e = &part.entries[j];
        self.block_reads.fetch_add(1, Ordering::Relaxed);
        if e.codec != CODEC_LZ4 || part.decompressed.get(j).is_some_and(|d| d.get().is_some()) {
            let view = self.view_in(part, j)?;
            return Ok((*view.shape, BlockBytes::Borrowed(view.bytes)));
        }
        let corrupt = |off: u64, detail: String| Error::corrupt(&self.name, e.offset + off, detail);
        let raw = self.stored_checked(i, e)?;
        let shape = Block::shape(&raw, e, self.footer.version)
            .map_err(|(off, detail)| corrupt(off as u64, format!("block {i}: {detail}")))?
            .detach();
        Ok((shape, raw))
    }

    /// Block `i`'s stored bytes (entry `e`) after their checksum, decompressed (into a new buffer) if
    /// lz4: the bytes [`Block::shape`] is to be run on.
    fn stored_checked(&self, i: usize, e: &IndexEntry) -> Result<BlockBytes<'_>> {
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
        let parts = self.index.checked_partitions();
        parts
            .map(|p| p.decompressed.iter().filter(|c| c.get().is_some()).count())
            .sum()
    }

    /// Block `i` if it has been verified (always, after [`verify`](Self::verify) succeeded): the
    /// infallible accessor for readers, such as DD cursors, that cannot return errors and so verify a
    /// batch whole before using it. A raw block is served from the map; an lz4 block from its
    /// decompressed copy, kept for the life of this value.
    #[inline]
    pub fn verified_block(&self, i: usize) -> Option<Block<'_>> {
        self.verified_view(i).map(|view| view.block())
    }

    /// The bytes of block `i` if it has been verified (no layout decoding): for cursors that cache the
    /// block's shape ([`Block::detach`]).
    #[inline]
    pub fn verified_block_bytes(&self, i: usize) -> Option<&[u8]> {
        let (part, j) = self.index.checked(i)?;
        self.verified_bytes_in(part, j)
    }

    /// [`verified_block_bytes`](Self::verified_block_bytes) of block `j` of the checked partition `part`.
    #[inline]
    fn verified_bytes_in<'s>(&'s self, part: &'s Partition, j: usize) -> Option<&'s [u8]> {
        let e = part.entries.get(j)?;
        part.shapes.get(j)?.get()?;
        if e.codec == CODEC_LZ4 {
            return part.decompressed.get(j)?.get().map(|raw| &raw[..]);
        }
        let start = e.offset as usize;
        Some(&self.bytes[start..start + e.stored_len as usize])
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
