//! [`BatchWriter`]: streams sorted, consolidated updates into a batch file.
//!
//! Memory use is one block (about `block_target_bytes`, more only for a key with many vals), the block
//! index, and one output chunk of about 1 MiB handed to the [`BlobWriter`] in one `write` (with
//! [`BatchWriter::with_background_io`], a few more blocks in flight to the helper thread). The writer checks its input: updates must
//! come in strictly increasing `(key, val, time)` order with non-zero diffs.

use super::filter::{FilterBuilder, FILTER_KIND_BLOOM};
use super::format::{
    encode_header, Footer, IndexEntry, BLOCK_ALIGN, BLOCK_HEADER_BYTES, CODEC_LZ4, CODEC_RAW, FOOTER_BYTES,
    HEADER_BYTES, INDEX_ENTRY_BYTES,
};
use super::Description;
use crate::blob::BlobWriter;
use crate::error::{Error, Result};
use crate::format::{checksum, PutLe};
use parking_lot::Mutex;
use std::cmp::Ordering;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What a finished batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStats {
    /// Distinct keys.
    pub key_count: u64,
    /// Distinct (key, val) pairs.
    pub val_count: u64,
    /// Updates.
    pub update_count: u64,
    /// File size.
    pub size_bytes: u64,
}

/// The columns of the block being built (see [`super::format`]). Offset arrays start with their leading 0
/// and get an entry when a key or val is *started* (`*_offs`) or *closed* (`key_vals`, `val_upds`).
#[derive(Default)]
struct BlockBuilder {
    times: Vec<u64>,
    diffs: Vec<i64>,
    key_offs: Vec<u32>,
    key_vals: Vec<u32>,
    val_offs: Vec<u32>,
    val_upds: Vec<u32>,
    key_bytes: Vec<u8>,
    val_bytes: Vec<u8>,
}

impl BlockBuilder {
    fn reset(&mut self) {
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

    fn key_count(&self) -> usize {
        self.key_offs.len() - 1
    }

    fn val_count(&self) -> usize {
        self.val_offs.len() - 1
    }

    fn last_key(&self) -> Option<&[u8]> {
        let n = self.key_count();
        (n > 0).then(|| &self.key_bytes[self.key_offs[n - 1] as usize..self.key_offs[n] as usize])
    }

    fn last_val(&self) -> Option<&[u8]> {
        let n = self.val_count();
        (n > 0).then(|| &self.val_bytes[self.val_offs[n - 1] as usize..self.val_offs[n] as usize])
    }

    /// Size of the block once closed.
    fn raw_len(&self) -> usize {
        BLOCK_HEADER_BYTES
            + 16 * self.times.len()
            + 4 * (2 * (self.key_count() + 1) + 2 * (self.val_count() + 1))
            + self.key_bytes.len()
            + self.val_bytes.len()
    }

    fn offset_u32(len: usize, what: &str) -> Result<u32> {
        u32::try_from(len).map_err(|_| {
            Error::bad_input(format!(
                "{what} of one block pass 4 GiB (one key's data is too large)"
            ))
        })
    }

    fn close_val(&mut self) -> Result<()> {
        let n = Self::offset_u32(self.times.len(), "updates")?;
        self.val_upds.push(n);
        Ok(())
    }

    fn close_key(&mut self) -> Result<()> {
        let n = Self::offset_u32(self.val_count(), "vals")?;
        self.key_vals.push(n);
        Ok(())
    }

    fn start_key(&mut self, key: &[u8]) -> Result<()> {
        self.key_bytes.extend_from_slice(key);
        let n = Self::offset_u32(self.key_bytes.len(), "key bytes")?;
        self.key_offs.push(n);
        Ok(())
    }

    fn start_val(&mut self, val: &[u8]) -> Result<()> {
        self.val_bytes.extend_from_slice(val);
        let n = Self::offset_u32(self.val_bytes.len(), "val bytes")?;
        self.val_offs.push(n);
        Ok(())
    }

    /// Closes the open val and key: the block is complete (the front end's last step before handing it to
    /// the [`BlockSink`]).
    fn close(&mut self) -> Result<()> {
        self.close_val()?;
        self.close_key()?;
        debug_assert_eq!(self.key_vals.len(), self.key_offs.len());
        debug_assert_eq!(self.val_upds.len(), self.val_offs.len());
        Ok(())
    }

    /// Key `i` of a closed block.
    fn key(&self, i: usize) -> &[u8] {
        &self.key_bytes[self.key_offs[i] as usize..self.key_offs[i + 1] as usize]
    }

    /// Appends the closed block's bytes to `out`.
    fn serialize_into(&self, out: &mut Vec<u8>) -> Result<()> {
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
fn put_le_words<T: Copy, const N: usize>(out: &mut Vec<u8>, words: &[T], le: fn(T) -> [u8; N]) {
    let start = out.len();
    out.resize(start + N * words.len(), 0);
    for (dst, &w) in out[start..].chunks_exact_mut(N).zip(words) {
        dst.copy_from_slice(&le(w));
    }
}

/// Bytes the writer gathers before handing them to the [`BlobWriter`] in one `write`: at least the
/// `DirBlob` write buffer, so a chunk goes to the file without another copy.
const CHUNK_BYTES: usize = 1 << 20;

/// Closed blocks go to a background [`BlockSink`] in groups of about this many raw bytes: one hand-off (and
/// at most one thread wake-up) per group instead of per block. Per block, the context switches cost ~10% of
/// a merge's CPU.
const HANDOFF_BYTES: usize = 1 << 20;

/// Groups in flight between the front end and a background [`BlockSink`]: enough to ride out a `write`
/// that waits for the kernel, few enough to keep memory at a few MiB.
const GROUPS_IN_FLIGHT: usize = 2;

/// The back end of a batch writer: serialises closed blocks (checksum, optional lz4), feeds the key filter,
/// builds the index, and writes the file in chunks of about [`CHUNK_BYTES`]. It runs on the writer's thread,
/// or on a helper thread of its own ([`BatchWriter::with_background_io`]).
struct BlockSink {
    out: Box<dyn BlobWriter>,
    /// Bytes not yet handed to `out`; they follow `out.len()` bytes in the file.
    chunk: Vec<u8>,
    index: Vec<u8>,
    index_keys: Vec<u8>,
    block_count: u32,
    /// The key filter, if asked for.
    filter: Option<FilterBuilder>,
    /// Whether blocks are lz4-compressed (each stays raw when compression does not shrink it).
    compress: bool,
    key_count: u64,
    val_count: u64,
    update_count: u64,
    /// A raw block before compression.
    scratch: Vec<u8>,
}

impl BlockSink {
    /// Offset in the file of the next byte written.
    fn offset(&self) -> u64 {
        self.out.len() + self.chunk.len() as u64
    }

    fn pad(&mut self) {
        let pad = (BLOCK_ALIGN - (self.offset() as usize % BLOCK_ALIGN)) % BLOCK_ALIGN;
        self.chunk.extend_from_slice(&[0u8; BLOCK_ALIGN][..pad]);
    }

    fn flush_chunk(&mut self) -> Result<()> {
        if !self.chunk.is_empty() {
            self.out.write(&self.chunk)?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// Writes closed `block` with its index entry and its keys in the filter.
    fn add_block(&mut self, block: &BlockBuilder) -> Result<()> {
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
        let entry = IndexEntry {
            offset,
            checksum: checksum(stored),
            stored_len: stored.len() as u32,
            raw_len: raw_len as u32,
            key_count: block.key_count() as u32,
            update_count: block.times.len() as u32,
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
    fn finish(mut self, description: Description, block_target_bytes: u32) -> Result<BatchStats> {
        self.pad();
        let index_offset = self.offset();
        debug_assert_eq!(self.index.len(), self.block_count as usize * INDEX_ENTRY_BYTES);
        let mut index = std::mem::take(&mut self.index);
        index.extend_from_slice(&self.index_keys);
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
            block_count: self.block_count,
            description,
            key_count: self.key_count,
            val_count: self.val_count,
            update_count: self.update_count,
            index_offset,
            index_len: index.len() as u64,
            index_checksum: checksum(&index),
            filter_offset,
            filter_len,
            filter_kind,
            block_target_bytes,
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

/// What the front end sends a background sink.
enum ToSink {
    /// Closed blocks to write, in order; they come back on the free channel for reuse.
    Blocks(Vec<BlockBuilder>),
    /// No more blocks: write the tail and commit.
    Finish(Description, u32),
}

/// Where closed blocks go.
enum Back {
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
fn sink_loop(
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
fn helper_failed(how: &str) -> Error {
    Error::io(
        "batch writer helper thread",
        std::io::Error::other(how.to_string()),
    )
}

/// Joins the helper thread, turning a panic in it into an error.
fn join_sink(handle: JoinHandle<Result<Option<BatchStats>>>) -> Result<Option<BatchStats>> {
    handle.join().unwrap_or_else(|_| Err(helper_failed("panicked")))
}

/// Where an update goes relative to the block's last one.
enum Step {
    FirstKey,
    NewKey,
    NewVal,
    SameVal,
}

/// Writes one batch file. Create it, [`push`](Self::push) updates in order, then [`finish`](Self::finish).
pub struct BatchWriter {
    description: Description,
    block_target_bytes: u32,
    block: BlockBuilder,
    /// Last key of the previous block, to check order across blocks.
    prev_block_last_key: Option<Vec<u8>>,
    last_time: u64,
    back: Back,
    /// Whether to move the back end to a helper thread when the first block closes.
    background: bool,
}

impl BatchWriter {
    /// Starts a batch with `description` in `out`, cutting blocks at about `block_target_bytes`.
    pub fn new(
        mut out: Box<dyn BlobWriter>,
        description: Description,
        block_target_bytes: u32,
    ) -> Result<Self> {
        if description.lower > description.upper {
            return Err(Error::bad_input(format!(
                "batch lower {} above upper {}",
                description.lower, description.upper
            )));
        }
        out.write(&encode_header())?;
        let mut block = BlockBuilder::default();
        block.reset();
        Ok(BatchWriter {
            description,
            block_target_bytes: block_target_bytes.max(1),
            block,
            prev_block_last_key: None,
            last_time: 0,
            background: false,
            back: Back::Inline(Box::new(BlockSink {
                out,
                chunk: Vec::new(),
                index: Vec::new(),
                index_keys: Vec::new(),
                block_count: 0,
                filter: None,
                compress: false,
                key_count: 0,
                val_count: 0,
                update_count: 0,
                scratch: Vec::new(),
            })),
        })
    }

    fn inline_sink(&mut self) -> Option<&mut BlockSink> {
        match &mut self.back {
            Back::Inline(sink) => Some(sink),
            _ => None,
        }
    }

    /// Adds a key filter (Bloom, `bits_per_key` bits per key) sized for about `expected_keys` keys: a
    /// lookup of an absent key then skips this batch without reading its blocks. Call before the first
    /// push.
    pub fn with_filter(mut self, expected_keys: u64, bits_per_key: u32) -> Self {
        if let Some(sink) = self.inline_sink() {
            sink.filter = Some(FilterBuilder::new(expected_keys, bits_per_key));
        }
        self
    }

    /// Compresses blocks with lz4 (a block that does not shrink is stored raw). Readers decompress a
    /// block once, on first use, and keep the copy for the life of the open file. Call before the first
    /// push.
    pub fn with_compression(mut self, compress: bool) -> Self {
        if let Some(sink) = self.inline_sink() {
            sink.compress = compress;
        }
        self
    }

    /// With `true`, a helper thread serialises, checksums, filters and writes the closed blocks while this
    /// thread builds the next ones (merges use it: on 2 cores it overlaps the block output and the
    /// `write` calls with reading and merging the inputs). The thread starts when the first block closes
    /// (a batch of one block never starts it). The file is the same byte for byte, and the blob sees the
    /// same calls in the same order. If the thread cannot be started, blocks are written inline.
    pub fn with_background_io(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Moves the sink to a helper thread (see [`with_background_io`](Self::with_background_io)).
    fn start_helper(&mut self) {
        let Back::Inline(sink) = std::mem::replace(&mut self.back, Back::Gone) else {
            return;
        };
        let (to_sink, blocks) = sync_channel(GROUPS_IN_FLIGHT);
        let (free_tx, free) = channel();
        // The sink moves into the thread through a shared slot: if spawning fails, the closure is dropped
        // unrun and the sink is still in the slot, to be written inline.
        let slot = Arc::new(Mutex::new(Some(sink)));
        let in_thread = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("ddpersist-batch-io".into())
            .spawn(move || {
                let sink = in_thread.lock().take();
                match sink {
                    Some(sink) => sink_loop(*sink, blocks, free_tx),
                    None => Ok(None),
                }
            });
        self.back = match spawned {
            Ok(handle) => Back::Thread {
                to_sink,
                free,
                group: Vec::new(),
                group_bytes: 0,
                spare: Vec::new(),
                handle,
            },
            Err(_) => match slot.lock().take() {
                Some(sink) => Back::Inline(sink),
                None => Back::Gone,
            },
        };
    }

    /// Appends an update. Updates must come in strictly increasing `(key, val, time)` order, with a
    /// non-zero diff and a time below the description's upper (or equal to its since).
    pub fn push(&mut self, key: &[u8], val: &[u8], time: u64, diff: i64) -> Result<()> {
        if diff == 0 {
            return Err(Error::bad_input("batch update with zero diff"));
        }
        // Times lie below the upper, except those a merge advanced to a since beyond it.
        if time >= self.description.upper && time != self.description.since {
            return Err(Error::bad_input(format!(
                "time {time} not below batch upper {}",
                self.description.upper
            )));
        }
        let step = match (self.block.last_key(), self.block.last_val()) {
            (Some(last_key), Some(last_val)) => match cmp_bytes(last_key, key) {
                Ordering::Less => Step::NewKey,
                Ordering::Equal => match cmp_bytes(last_val, val) {
                    Ordering::Less => Step::NewVal,
                    Ordering::Equal if self.last_time < time => Step::SameVal,
                    _ => return Err(Error::bad_input(ORDER)),
                },
                Ordering::Greater => return Err(Error::bad_input(ORDER)),
            },
            _ => {
                if self
                    .prev_block_last_key
                    .as_deref()
                    .is_some_and(|prev| prev >= key)
                {
                    return Err(Error::bad_input("batch keys not in strictly increasing order"));
                }
                Step::FirstKey
            }
        };
        match step {
            Step::NewKey if self.block.raw_len() >= self.block_target_bytes as usize => {
                // Cut the block at a key boundary: keys never span blocks.
                self.write_block()?;
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::NewKey => {
                self.block.close_val()?;
                self.block.close_key()?;
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::NewVal => {
                self.block.close_val()?;
                self.block.start_val(val)?;
            }
            Step::FirstKey => {
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::SameVal => {}
        }
        self.block.times.push(time);
        self.block.diffs.push(diff);
        self.last_time = time;
        Ok(())
    }

    /// Closes the current block and hands it to the sink.
    fn write_block(&mut self) -> Result<()> {
        if self.block.key_count() == 0 {
            return Ok(());
        }
        self.block.close()?;
        let prev = self.prev_block_last_key.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(self.block.last_key().unwrap_or_default());
        if std::mem::take(&mut self.background) {
            self.start_helper();
        }
        match &mut self.back {
            Back::Inline(sink) => sink.add_block(&self.block)?,
            Back::Thread {
                to_sink,
                free,
                group,
                group_bytes,
                spare,
                ..
            } => {
                if spare.is_empty() {
                    if let Ok(back) = free.try_recv() {
                        spare.extend(back);
                    }
                }
                let mut next = spare.pop().unwrap_or_default();
                next.reset();
                *group_bytes += self.block.raw_len();
                group.push(std::mem::replace(&mut self.block, next));
                if *group_bytes >= HANDOFF_BYTES {
                    *group_bytes = 0;
                    let blocks = ToSink::Blocks(std::mem::take(group));
                    if to_sink.send(blocks).is_err() {
                        // The helper stopped: it failed, and its error is the one to report.
                        return Err(self.helper_error());
                    }
                }
                return Ok(());
            }
            Back::Gone => return Err(Error::bad_input("batch writer used after a failure")),
        }
        self.block.reset();
        Ok(())
    }

    /// The error that stopped the helper thread (joining it).
    fn helper_error(&mut self) -> Error {
        match std::mem::replace(&mut self.back, Back::Gone) {
            Back::Thread { handle, .. } => match join_sink(handle) {
                Err(e) => e,
                Ok(_) => helper_failed("stopped early"),
            },
            _ => Error::bad_input("batch writer used after a failure"),
        }
    }

    /// Writes the last block, the index and the footer, and commits the file (durable when this returns).
    pub fn finish(mut self) -> Result<BatchStats> {
        self.write_block()?;
        let (description, target) = (self.description, self.block_target_bytes);
        match std::mem::replace(&mut self.back, Back::Gone) {
            Back::Inline(sink) => sink.finish(description, target),
            Back::Thread {
                to_sink,
                handle,
                group,
                ..
            } => {
                // A send error means the helper already stopped with an error, which the join returns.
                if !group.is_empty() {
                    let _ = to_sink.send(ToSink::Blocks(group));
                }
                let _ = to_sink.send(ToSink::Finish(description, target));
                match join_sink(handle)? {
                    Some(stats) => Ok(stats),
                    None => Err(helper_failed("stopped early")),
                }
            }
            Back::Gone => Err(Error::bad_input("batch writer used after a failure")),
        }
    }
}

const ORDER: &str = "batch updates not in strictly increasing (key, val, time) order";

impl Drop for BatchWriter {
    fn drop(&mut self) {
        // Not finished: stop the helper (closing its channel makes it drop the uncommitted output) and
        // wait for it, so the discarded temporary object is gone when the drop returns.
        if let Back::Thread { to_sink, handle, .. } = std::mem::replace(&mut self.back, Back::Gone) {
            drop(to_sink);
            let _ = join_sink(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{Blob, FaultyBlob, MemBlob};

    #[test]
    fn cmp_bytes_is_slice_order() {
        let words: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"b",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            b"\x00\x00\x00\x00\x00\x00\x00\x01",
        ];
        for a in &words {
            for b in &words {
                assert_eq!(cmp_bytes(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    const DESC: Description = Description {
        lower: 0,
        upper: 10,
        since: 0,
    };

    /// Enough updates for several hand-off groups: ~2.5 MB of blocks.
    fn updates() -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
        (0..20_000u32)
            .flat_map(|k| {
                let key = format!("key-{k:08}").into_bytes();
                (0..(k % 3 + 1)).map(move |t| (key.clone(), vec![b'v'; 100], t as u64, 1 + t as i64))
            })
            .collect()
    }

    fn write(blob: &dyn Blob, name: &str, background: bool) -> Result<BatchStats> {
        let mut w = BatchWriter::new(blob.create(name)?, DESC, 4096)?
            .with_filter(20_000, 10)
            .with_background_io(background);
        for (k, v, t, d) in updates() {
            w.push(&k, &v, t, d)?;
        }
        w.finish()
    }

    #[test]
    fn background_io_writes_the_same_bytes() {
        let blob = MemBlob::new();
        let inline = write(&blob, "a", false).unwrap();
        let background = write(&blob, "b", true).unwrap();
        assert_eq!(inline, background);
        let (a, b) = (blob.get("a").unwrap().unwrap(), blob.get("b").unwrap().unwrap());
        assert!(a.len() > 2 * HANDOFF_BYTES);
        assert!(a[..] == b[..], "the helper thread must write the same file");
    }

    #[test]
    fn background_io_failures_are_errors_and_commit_nothing() {
        for ops in [0, 1, 2, 3, 5] {
            let blob = FaultyBlob::new(MemBlob::new());
            blob.fail_after(ops);
            assert!(write(&blob, "a", true).is_err(), "fail after {ops}");
            blob.heal();
            assert!(blob.get("a").unwrap().is_none(), "fail after {ops}");
        }
    }

    #[test]
    fn an_unfinished_background_writer_discards_its_output() {
        let blob = MemBlob::new();
        let mut w = BatchWriter::new(blob.create("a").unwrap(), DESC, 4096)
            .unwrap()
            .with_background_io(true);
        for (k, v, t, d) in updates() {
            w.push(&k, &v, t, d).unwrap();
        }
        drop(w);
        assert!(blob.get("a").unwrap().is_none());
        assert!(blob.list().unwrap().is_empty());
    }
}
