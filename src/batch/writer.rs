//! [`BatchWriter`]: streams sorted, consolidated updates into a batch file.
//!
//! Memory use is one block (about `block_target_bytes`, more only for a key with many vals) plus the
//! block index; the rest goes straight to the [`BlobWriter`]. The writer checks its input: updates must
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

    fn first_key(&self) -> &[u8] {
        &self.key_bytes[..self.key_offs.get(1).copied().unwrap_or(0) as usize]
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

    /// Closes the open val and key and serialises the block into `out` (cleared first).
    fn close_into(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.close_val()?;
        self.close_key()?;
        debug_assert_eq!(self.key_vals.len(), self.key_offs.len());
        debug_assert_eq!(self.val_upds.len(), self.val_offs.len());
        let raw_len = Self::offset_u32(self.raw_len(), "bytes")?;
        out.clear();
        out.reserve(raw_len as usize);
        out.put_u32(self.key_count() as u32);
        out.put_u32(self.val_count() as u32);
        out.put_u32(self.times.len() as u32);
        out.put_u32(0);
        for &t in &self.times {
            out.put_u64(t);
        }
        for &d in &self.diffs {
            out.put_i64(d);
        }
        for offs in [&self.key_offs, &self.key_vals, &self.val_offs, &self.val_upds] {
            for &o in offs.iter() {
                out.put_u32(o);
            }
        }
        out.extend_from_slice(&self.key_bytes);
        out.extend_from_slice(&self.val_bytes);
        debug_assert_eq!(out.len(), raw_len as usize);
        Ok(())
    }
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
    out: Box<dyn BlobWriter>,
    description: Description,
    block_target_bytes: u32,
    block: BlockBuilder,
    /// Last key of the previous block, to check order across blocks.
    prev_block_last_key: Option<Vec<u8>>,
    last_time: u64,
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
    scratch: Vec<u8>,
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
            out,
            description,
            block_target_bytes: block_target_bytes.max(1),
            block,
            prev_block_last_key: None,
            last_time: 0,
            index: Vec::new(),
            index_keys: Vec::new(),
            block_count: 0,
            filter: None,
            compress: false,
            key_count: 0,
            val_count: 0,
            update_count: 0,
            scratch: Vec::new(),
        })
    }

    /// Adds a key filter (Bloom, `bits_per_key` bits per key) sized for about `expected_keys` keys: a
    /// lookup of an absent key then skips this batch without reading its blocks.
    pub fn with_filter(mut self, expected_keys: u64, bits_per_key: u32) -> Self {
        self.filter = Some(FilterBuilder::new(expected_keys, bits_per_key));
        self
    }

    /// Compresses blocks with lz4 (a block that does not shrink is stored raw). Readers decompress a
    /// block once, on first use, and keep the copy for the life of the open file.
    pub fn with_compression(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
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
            (Some(last_key), Some(last_val)) => {
                let order = last_key
                    .cmp(key)
                    .then_with(|| last_val.cmp(val))
                    .then(self.last_time.cmp(&time));
                if order != std::cmp::Ordering::Less {
                    return Err(Error::bad_input(
                        "batch updates not in strictly increasing (key, val, time) order",
                    ));
                }
                if last_key != key {
                    Step::NewKey
                } else if last_val != val {
                    Step::NewVal
                } else {
                    Step::SameVal
                }
            }
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
        if let (Step::NewKey | Step::FirstKey, Some(filter)) = (&step, &mut self.filter) {
            filter.insert(key);
        }
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

    /// Closes the current block and writes it out with its index entry.
    fn write_block(&mut self) -> Result<()> {
        if self.block.key_count() == 0 {
            return Ok(());
        }
        self.block.close_into(&mut self.scratch)?;
        // Pad to the block alignment.
        let pad = (BLOCK_ALIGN - (self.out.len() as usize % BLOCK_ALIGN)) % BLOCK_ALIGN;
        self.out.write(&[0u8; BLOCK_ALIGN][..pad])?;
        let offset = self.out.len();
        let first_key_off = u32::try_from(self.index_keys.len())
            .map_err(|_| Error::bad_input("block index key area passes 4 GiB"))?;
        let first_key = self.block.first_key();
        let last_key = self.block.last_key().unwrap_or_default();
        let raw_len = self.scratch.len() as u32;
        let compressed = self.compress.then(|| lz4_flex::block::compress(&self.scratch));
        let (codec, stored): (u8, &[u8]) = match &compressed {
            Some(c) if c.len() < self.scratch.len() => (CODEC_LZ4, c),
            _ => (CODEC_RAW, &self.scratch),
        };
        let entry = IndexEntry {
            offset,
            checksum: checksum(stored),
            stored_len: stored.len() as u32,
            raw_len,
            key_count: self.block.key_count() as u32,
            update_count: self.block.times.len() as u32,
            first_key_off,
            first_key_len: first_key.len() as u32,
            last_key_len: last_key.len() as u32,
            codec,
        };
        entry.encode(&mut self.index);
        self.index_keys.extend_from_slice(first_key);
        self.index_keys.extend_from_slice(last_key);
        let prev = self.prev_block_last_key.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(last_key);
        self.out.write(stored)?;
        self.block_count += 1;
        self.key_count += self.block.key_count() as u64;
        self.val_count += self.block.val_count() as u64;
        self.update_count += self.block.times.len() as u64;
        self.block.reset();
        Ok(())
    }

    /// Writes the last block, the index and the footer, and commits the file (durable when this returns).
    pub fn finish(mut self) -> Result<BatchStats> {
        self.write_block()?;
        let pad = (BLOCK_ALIGN - (self.out.len() as usize % BLOCK_ALIGN)) % BLOCK_ALIGN;
        self.out.write(&[0u8; BLOCK_ALIGN][..pad])?;
        let index_offset = self.out.len();
        debug_assert_eq!(self.index.len(), self.block_count as usize * INDEX_ENTRY_BYTES);
        let mut index = std::mem::take(&mut self.index);
        index.extend_from_slice(&self.index_keys);
        self.out.write(&index)?;
        let (filter_offset, filter_len, filter_kind) = match self.filter.take() {
            Some(mut filter) => {
                let offset = self.out.len();
                let section = filter.encode();
                self.out.write(&section)?;
                (offset, section.len() as u64, FILTER_KIND_BLOOM)
            }
            None => (0, 0, 0),
        };
        let footer = Footer {
            block_count: self.block_count,
            description: self.description,
            key_count: self.key_count,
            val_count: self.val_count,
            update_count: self.update_count,
            index_offset,
            index_len: index.len() as u64,
            index_checksum: checksum(&index),
            filter_offset,
            filter_len,
            filter_kind,
            block_target_bytes: self.block_target_bytes,
        };
        self.out.write(&footer.encode())?;
        let size_bytes = self.out.len();
        debug_assert!(size_bytes >= (HEADER_BYTES + FOOTER_BYTES) as u64);
        self.out.commit()?;
        Ok(BatchStats {
            key_count: self.key_count,
            val_count: self.val_count,
            update_count: self.update_count,
            size_bytes,
        })
    }
}
