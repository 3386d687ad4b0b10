//! `BlockSink`: where a [`BatchWriter`](super::BatchWriter)'s finished blocks go — into 1 MiB output chunks,
//! the block index and the key filter, written to the blob on this thread or on a helper thread that
//! serialises and writes groups of blocks while the caller keeps merging (`with_background_io`).

use super::filter::{FilterBuilder, FILTER_KIND_BLOOM};
use super::format::{
    partition_checksum, Footer, IndexEntry, PartitionEntry, BATCH_VERSION, BLOCK_ALIGN, CODEC_LZ4, CODEC_RAW,
    FOOTER_BYTES, HEADER_BYTES, INDEX_ENTRY_BYTES, PARTITION_BLOCKS, PARTITION_ENTRY_BYTES,
};
use super::Description;
use crate::blob::BlobWriter;
use crate::encoding::checksum;
use crate::error::{Error, Result};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::thread::JoinHandle;

use super::builder::*;
use super::writer::BatchStats;

/// Bytes the writer gathers before handing them to the [`BlobWriter`] in one `write`: at least the
/// `DirBlob` write buffer, so a chunk goes to the file without another copy.
pub(super) const CHUNK_BYTES: usize = 1 << 20;

/// Closed blocks go to a background [`BlockSink`] in groups of about this many raw bytes: one hand-off (and
/// at most one thread wake-up) per group instead of per block. Per block, the context switches cost ~10% of
/// a merge's CPU.
pub(super) const HANDOFF_BYTES: usize = 1 << 20;

/// Groups in flight between the front end and a background [`BlockSink`]: enough to ride out a `write`
/// that waits for the kernel, few enough to keep memory at a few MiB.
pub(super) const GROUPS_IN_FLIGHT: usize = 2;

/// The back end of a batch writer: serialises closed blocks (checksum, optional lz4), feeds the key filter,
/// builds the index, and writes the file in chunks of about [`CHUNK_BYTES`]. It runs on the writer's thread,
/// or on a helper thread of its own ([`BatchWriter::with_background_io`]).
pub(super) struct BlockSink {
    pub(super) out: Box<dyn BlobWriter>,
    /// Bytes not yet handed to `out`; they follow `out.len()` bytes in the file.
    pub(super) chunk: Vec<u8>,
    pub(super) index: Vec<u8>,
    pub(super) index_keys: Vec<u8>,
    pub(super) block_count: u32,
    /// The key filter, if asked for.
    pub(super) filter: Option<FilterBuilder>,
    /// Whether blocks are lz4-compressed (each stays raw when compression does not shrink it).
    pub(super) compress: bool,
    pub(super) key_count: u64,
    pub(super) val_count: u64,
    pub(super) update_count: u64,
    /// A raw block before compression.
    pub(super) scratch: Vec<u8>,
}

impl BlockSink {
    /// Offset in the file of the next byte written.
    pub(super) fn offset(&self) -> u64 {
        self.out.len() + self.chunk.len() as u64
    }

    pub(super) fn pad(&mut self) {
        let pad = (BLOCK_ALIGN - (self.offset() as usize % BLOCK_ALIGN)) % BLOCK_ALIGN;
        self.chunk.extend_from_slice(&[0u8; BLOCK_ALIGN][..pad]);
    }

    pub(super) fn flush_chunk(&mut self) -> Result<()> {
        if !self.chunk.is_empty() {
            self.out.write(&self.chunk)?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// Writes closed `block` with its index entry and its keys in the filter.
    pub(super) fn add_block(&mut self, block: &BlockBuilder) -> Result<()> {
        if block.key_count() == 0 {
            return Ok(());
        }
        self.pad();
        let offset = self.offset();
        let first_key_off = u32::try_from(self.index_keys.len())
            .map_err(|_| Error::bad_input("block index key area passes 4 GiB"))?;
        let first_key = block.key(0);
        let last_key = block.key(block.key_count() - 1);
        // Serialise straight into the chunk; when compressing, into `scratch` first.
        let start = self.chunk.len();
        let (codec, raw_len) = if self.compress {
            self.scratch.clear();
            block.serialize_into(&mut self.scratch)?;
            let compressed = lz4_flex::block::compress(&self.scratch);
            if compressed.len() < self.scratch.len() {
                self.chunk.extend_from_slice(&compressed);
                (CODEC_LZ4, self.scratch.len())
            } else {
                self.chunk.extend_from_slice(&self.scratch);
                (CODEC_RAW, self.scratch.len())
            }
        } else {
            block.serialize_into(&mut self.chunk)?;
            (CODEC_RAW, self.chunk.len() - start)
        };
        let stored = &self.chunk[start..];
        // The index records sizes and counts as `u32`: a block past them (one key's data over 4 GiB) is
        // refused, never recorded truncated.
        let fit = |n: usize, what: &str| BlockBuilder::offset_u32(n, what);
        let entry = IndexEntry {
            offset,
            checksum: checksum(stored),
            stored_len: fit(stored.len(), "the stored bytes")?,
            raw_len: fit(raw_len, "the bytes")?,
            key_count: fit(block.key_count(), "the keys")?,
            update_count: fit(block.times.len(), "the updates")?,
            first_key_off,
            first_key_len: first_key.len() as u32,
            last_key_len: last_key.len() as u32,
            codec,
        };
        entry.encode(&mut self.index);
        self.index_keys.extend_from_slice(first_key);
        self.index_keys.extend_from_slice(last_key);
        if let Some(filter) = &mut self.filter {
            for i in 0..block.key_count() {
                filter.insert(block.key(i));
            }
        }
        self.block_count += 1;
        self.key_count += block.key_count() as u64;
        self.val_count += block.val_count() as u64;
        self.update_count += block.times.len() as u64;
        if self.chunk.len() >= CHUNK_BYTES {
            self.flush_chunk()?;
        }
        Ok(())
    }

    /// Writes the index, the filter and the footer, and commits the file (durable when this returns).
    pub(super) fn finish(mut self, description: Description, block_target_bytes: u32) -> Result<BatchStats> {
        self.pad();
        let index_offset = self.offset();
        debug_assert_eq!(self.index.len(), self.block_count as usize * INDEX_ENTRY_BYTES);
        let mut index = std::mem::take(&mut self.index);
        let table = partition_table(&index, &self.index_keys)?;
        index.extend_from_slice(&self.index_keys);
        index.extend_from_slice(&table);
        self.chunk.extend_from_slice(&index);
        let (filter_offset, filter_len, filter_kind) = match self.filter.take() {
            Some(mut filter) => {
                let offset = self.offset();
                let section = filter.encode();
                self.chunk.extend_from_slice(&section);
                (offset, section.len() as u64, FILTER_KIND_BLOOM)
            }
            None => (0, 0, 0),
        };
        let footer = Footer {
            version: BATCH_VERSION.0,
            block_count: self.block_count,
            description,
            key_count: self.key_count,
            val_count: self.val_count,
            update_count: self.update_count,
            index_offset,
            index_len: index.len() as u64,
            index_checksum: checksum(&table),
            filter_offset,
            filter_len,
            filter_kind,
            block_target_bytes,
            partition_blocks: PARTITION_BLOCKS,
            partition_table_len: BlockBuilder::offset_u32(table.len(), "the index partition table")?,
        };
        self.chunk.extend_from_slice(&footer.encode());
        let size_bytes = self.offset();
        debug_assert!(size_bytes >= (HEADER_BYTES + FOOTER_BYTES) as u64);
        self.flush_chunk()?;
        self.out.commit()?;
        Ok(BatchStats {
            key_count: self.key_count,
            val_count: self.val_count,
            update_count: self.update_count,
            size_bytes,
        })
    }
}

/// The index partition table (FORMAT.md §2, "Index partitions") of the index entries `entries` (48 bytes
/// a block) whose fence keys are `keys` (the key area): an entry per [`PARTITION_BLOCKS`] blocks with the
/// checksum of its entries and key bytes, then each partition's first and last key.
fn partition_table(entries: &[u8], keys: &[u8]) -> Result<Vec<u8>> {
    let blocks = entries.len() / INDEX_ENTRY_BYTES;
    let per = PARTITION_BLOCKS as usize;
    let partitions = blocks.div_ceil(per);
    let mut table = Vec::with_capacity(partitions * (PARTITION_ENTRY_BYTES + 64));
    let mut fences = Vec::new();
    let entry = |i: usize| {
        let raw = &entries[i * INDEX_ENTRY_BYTES..(i + 1) * INDEX_ENTRY_BYTES];
        IndexEntry::from_bytes(raw.try_into().unwrap_or(&[0; INDEX_ENTRY_BYTES]))
    };
    for p in 0..partitions {
        let (first, last) = (p * per, ((p + 1) * per).min(blocks) - 1);
        let (e0, e1) = (entry(first), entry(last));
        let key_start = e0.first_key_off as usize;
        let last_start = e1.first_key_off as usize + e1.first_key_len as usize;
        let key_end = last_start + e1.last_key_len as usize;
        let part_entries = &entries[first * INDEX_ENTRY_BYTES..(last + 1) * INDEX_ENTRY_BYTES];
        let fit = |n: usize, what: &str| BlockBuilder::offset_u32(n, what);
        PartitionEntry {
            checksum: partition_checksum(part_entries, &keys[key_start..key_end]),
            key_off: e0.first_key_off,
            key_len: fit(key_end - key_start, "an index partition's keys")?,
            fence_off: fit(fences.len(), "the index partition fence keys")?,
            first_key_len: e0.first_key_len,
            last_key_len: e1.last_key_len,
        }
        .encode(&mut table);
        fences.extend_from_slice(&keys[key_start..key_start + e0.first_key_len as usize]);
        fences.extend_from_slice(&keys[last_start..key_end]);
    }
    table.extend_from_slice(&fences);
    Ok(table)
}

/// What the front end sends a background sink.
pub(super) enum ToSink {
    /// Closed blocks to write, in order; they come back on the free channel for reuse.
    Blocks(Vec<BlockBuilder>),
    /// No more blocks: write the tail and commit.
    Finish(Description, u32),
}

/// Where closed blocks go.
pub(super) enum Back {
    /// Written on this thread.
    Inline(Box<BlockSink>),
    /// Written by a helper thread (see [`BatchWriter::with_background_io`]).
    Thread {
        to_sink: SyncSender<ToSink>,
        free: Receiver<Vec<BlockBuilder>>,
        /// Closed blocks not yet handed off, and their raw bytes.
        group: Vec<BlockBuilder>,
        group_bytes: usize,
        /// Builders back from the helper, to reuse.
        spare: Vec<BlockBuilder>,
        /// `Ok(None)`: the front end went away without finishing (the output is discarded).
        handle: JoinHandle<Result<Option<BatchStats>>>,
    },
    /// Between states, or after the helper failed.
    Gone,
}

/// The helper thread's loop: write blocks until told to finish (commit) or until the front end goes away
/// (discard: dropping the sink drops the uncommitted `BlobWriter`).
pub(super) fn sink_loop(
    mut sink: BlockSink,
    blocks: Receiver<ToSink>,
    free: Sender<Vec<BlockBuilder>>,
) -> Result<Option<BatchStats>> {
    while let Ok(msg) = blocks.recv() {
        match msg {
            ToSink::Blocks(group) => {
                for block in &group {
                    sink.add_block(block)?;
                }
                // The front end may have stopped taking blocks back; that is fine.
                let _ = free.send(group);
            }
            ToSink::Finish(description, target) => return sink.finish(description, target).map(Some),
        }
    }
    Ok(None)
}

/// The error for a helper thread that ended without a result of its own: the output is not committed,
/// as after a failed write.
pub(super) fn helper_failed(how: &str) -> Error {
    Error::io(
        "batch writer helper thread",
        std::io::Error::other(how.to_string()),
    )
}

/// Joins the helper thread, turning a panic in it into an error.
pub(super) fn join_sink(handle: JoinHandle<Result<Option<BatchStats>>>) -> Result<Option<BatchStats>> {
    handle.join().unwrap_or_else(|_| Err(helper_failed("panicked")))
}
