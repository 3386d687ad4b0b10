//! [`UpdateCursor`]: walks a batch's updates in `(key, val, time)` order, borrowing keys and vals from the
//! file's bytes. Blocks are verified as the cursor enters them, so a corrupt block surfaces as an error
//! from [`UpdateCursor::step`] (or construction), never as wrong data.

use super::block::Block;
use super::reader::BatchFile;
use super::seek::KeyProbe;
use crate::error::Result;
use crate::wal::record::UpdateRef;

/// A position in a batch: block, and key / val / update indexes within it.
pub struct UpdateCursor<'a> {
    batch: &'a BatchFile,
    block_idx: usize,
    /// `None` once past the last update.
    block: Option<Block<'a>>,
    key: usize,
    val: usize,
    upd: usize,
}

impl<'a> UpdateCursor<'a> {
    /// A cursor at the first update of `batch`.
    pub fn new(batch: &'a BatchFile) -> Result<Self> {
        Self::at_block(batch, 0)
    }

    /// A cursor at the first update whose key is `>= key`, found through the block index.
    pub fn seek(batch: &'a BatchFile, key: &[u8]) -> Result<Self> {
        let probe = KeyProbe::unhashed(key);
        let Some((block_idx, view)) = batch.seek_view(&probe, 0)? else {
            return Self::at_block(batch, batch.block_count());
        };
        // The block's last key is >= key, so this index is inside the block.
        let key = view.seek_key(&probe);
        // Counted in `block_reads`, as every block this cursor enters.
        let block = batch.block(block_idx)?;
        let val = block.vals(key).start;
        Ok(UpdateCursor {
            batch,
            block_idx,
            block: Some(block),
            key,
            val,
            upd: block.updates(val).start,
        })
    }

    fn at_block(batch: &'a BatchFile, block_idx: usize) -> Result<Self> {
        let block = if block_idx < batch.block_count() {
            Some(batch.block(block_idx)?)
        } else {
            None
        };
        Ok(UpdateCursor {
            batch,
            block_idx,
            block,
            key: 0,
            val: 0,
            upd: 0,
        })
    }

    /// The update under the cursor, or `None` at the end.
    #[inline]
    pub fn get(&self) -> Option<UpdateRef<'a>> {
        let b = self.block.as_ref()?;
        Some((
            b.key(self.key),
            b.val(self.val),
            b.time(self.upd),
            b.diff(self.upd),
        ))
    }

    /// The key under the cursor, or `None` at the end.
    #[inline]
    pub fn key(&self) -> Option<&'a [u8]> {
        self.block.as_ref().map(|b| b.key(self.key))
    }

    /// Moves to the next update; entering a new block verifies it.
    pub fn step(&mut self) -> Result<()> {
        let Some(b) = self.block else { return Ok(()) };
        self.upd += 1;
        if self.upd == b.update_count() {
            *self = Self::at_block(self.batch, self.block_idx + 1)?;
            return Ok(());
        }
        // A verified block's arrays always lead to the next val and key; bytes changed under the map since
        // (another program rewrote the file) may not: stop at the block's end instead of running past it.
        while self.upd >= b.updates(self.val).end {
            self.val += 1;
            if self.val >= b.val_count() {
                return Err(self.changed());
            }
        }
        while self.val >= b.vals(self.key).end {
            self.key += 1;
            if self.key >= b.key_count() {
                return Err(self.changed());
            }
        }
        Ok(())
    }

    /// The error for a block whose arrays no longer hold together.
    fn changed(&self) -> crate::Error {
        let at = self.batch.index_entry(self.block_idx).map_or(0, |e| e.offset);
        let detail = format!("block {}: changed after it was verified", self.block_idx);
        crate::Error::corrupt(self.batch.name(), at, detail)
    }
}
