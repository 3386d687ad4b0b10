//! The scrub of a batch file's layout ([`BatchFile::verify`]'s last step): every byte that no checksum
//! covers, and every field the format fixes, must be what the format says. Checksums cover the header,
//! each block, the index, the key filter and the footer; what is left is the zero padding that aligns
//! each block and the index to 8 bytes, and the reserved fields (inside checksummed bytes, but a writer
//! or a forger could still set them). The rule (FORMAT.md §2): between the header and the first block,
//! between blocks, and between the last block and the index lie exactly the fewest zero bytes that align
//! what follows to 8; the key filter (if any) follows the index immediately, and the footer follows it
//! (or the index); the index's key area holds the fence keys back to back and nothing else; in version
//! 3 the partition table follows the key area, its entries in partition order naming their partitions'
//! key bytes exactly, its key area holding their first and last keys back to back and nothing else;
//! reserved fields are zero.

use super::format::{
    PartitionEntry, BATCH_VERSION_1, BATCH_VERSION_PARTITIONED, BLOCK_ALIGN, CODEC_RAW, FOOTER_BYTES,
    HEADER_BYTES, INDEX_ENTRY_BYTES, PARTITION_ENTRY_BYTES,
};
use super::BatchFile;
use crate::error::{Error, Result};
use std::ops::Range;

impl BatchFile {
    /// Checks the file's layout as described in the module docs; the first difference is
    /// [`Error::Corrupt`] naming the file and the offset of the first byte that differs. Call after every
    /// block has been verified (block structure and the index's bounds are checked before).
    pub(super) fn verify_layout(&self) -> Result<()> {
        let bytes: &[u8] = self.bytes();
        let footer = self.footer();
        let footer_at = bytes.len() - FOOTER_BYTES;
        self.zeros(12..24, "reserved header bytes")?;
        let index_start = footer.index_offset as usize;
        let index_end = index_start + footer.index_len as usize;
        let mut end = HEADER_BYTES;
        let mut fence_bytes = 0u64;
        for i in 0..self.block_count() {
            let e = self.index_entry(i)?;
            let start = e.offset as usize;
            if start < end {
                // Partitions are checked one at a time, each for order within itself only: a block that
                // starts inside the one before it (across partitions) is found here.
                let entry_at = index_start + i * INDEX_ENTRY_BYTES;
                return Err(self.bad(
                    entry_at,
                    format!("block {i} overlaps block {}", i.saturating_sub(1)),
                ));
            }
            self.padding(end..start, &format!("padding before block {i}"))?;
            let entry_at = index_start + i * INDEX_ENTRY_BYTES;
            self.zeros(
                entry_at + 45..entry_at + 48,
                &format!("reserved bytes of index entry {i}"),
            )?;
            if e.first_key_off as u64 != fence_bytes {
                return Err(self.bad(
                    entry_at + 32,
                    format!(
                        "index entry {i}: fence keys at {}, not after the previous ones",
                        e.first_key_off
                    ),
                ));
            }
            fence_bytes += e.first_key_len as u64 + e.last_key_len as u64;
            // The block's reserved bytes: 12..16 of its raw layout in version 1 (a u32), 15 in version 2
            // (after the widths and flags, which `Block::shape` checked).
            let reserved = if footer.version == BATCH_VERSION_1 {
                12..16
            } else {
                15..16
            };
            let raw = self.verified_block_bytes(i).ok_or_else(|| {
                self.bad(
                    start,
                    format!("block {i} checked for layout before it was verified"),
                )
            })?;
            if let Some(p) = raw
                .get(reserved.clone())
                .and_then(|r| r.iter().position(|&b| b != 0))
            {
                // Raw blocks are the file's bytes; an lz4 block's layout exists only decompressed.
                let at = if e.codec == CODEC_RAW {
                    start + reserved.start + p
                } else {
                    start
                };
                return Err(self.bad(at, format!("block {i}: reserved field is not zero")));
            }
            end = start + e.stored_len as usize;
        }
        self.padding(end..index_start, "padding before the index")?;
        let key_area = index_start + self.block_count() * INDEX_ENTRY_BYTES;
        let partitioned = footer.version >= BATCH_VERSION_PARTITIONED;
        let key_area_end = if partitioned {
            index_end - footer.partition_table_len as usize
        } else {
            index_end
        };
        if partitioned {
            self.verify_partition_table(key_area_end..index_end)?;
        }
        if (key_area_end - key_area) as u64 != fence_bytes {
            return Err(self.bad(
                key_area + fence_bytes as usize,
                "bytes in the index's key area after the last fence key".into(),
            ));
        }
        let sections_end = if footer.filter_kind == 0 {
            if footer.filter_offset != 0 || footer.filter_len != 0 {
                return Err(self.bad(footer_at + 88, "key filter range without a key filter".into()));
            }
            index_end
        } else {
            let filter_at = footer.filter_offset as usize;
            if filter_at != index_end {
                return Err(self.bad(index_end, "bytes between the index and the key filter".into()));
            }
            self.zeros(filter_at + 12..filter_at + 16, "reserved bytes of the key filter")?;
            filter_at + footer.filter_len as usize
        };
        if sections_end != footer_at {
            return Err(self.bad(
                sections_end,
                "bytes between the last section and the footer".into(),
            ));
        }
        if partitioned {
            Ok(())
        } else {
            self.zeros(footer_at + 112..footer_at + 120, "reserved footer bytes")
        }
    }

    /// Version 3's partition table at `table`: each entry names its partition's key bytes in the key area
    /// (from its first block's first key through its last block's last key; its checksum and
    /// keys were checked when the partition was), its fence keys follow the previous partition's, and the
    /// table's key area ends with the last partition's; reserved fields are zero.
    fn verify_partition_table(&self, table: Range<usize>) -> Result<()> {
        let per = self.footer().partition_blocks as usize;
        let (n, blocks) = (self.index_partitions(), self.block_count());
        let mut fence_bytes = 0u64;
        for p in 0..n {
            let at = table.start + p * PARTITION_ENTRY_BYTES;
            let raw = &self.bytes()[at..at + PARTITION_ENTRY_BYTES];
            let e = PartitionEntry::from_bytes(raw.try_into().unwrap_or(&[0; PARTITION_ENTRY_BYTES]));
            let (first, last) = (
                self.index_entry(p * per)?,
                self.index_entry(((p + 1) * per).min(blocks) - 1)?,
            );
            let key_end = last.first_key_off as u64 + last.first_key_len as u64 + last.last_key_len as u64;
            if e.key_off != first.first_key_off || e.key_off as u64 + e.key_len as u64 != key_end {
                return Err(self.bad(at + 8, format!("index partition {p}: key bytes not its blocks'")));
            }
            if e.fence_off as u64 != fence_bytes {
                return Err(self.bad(
                    at + 16,
                    format!("index partition {p}: fence keys not after the previous ones"),
                ));
            }
            fence_bytes += e.first_key_len as u64 + e.last_key_len as u64;
            self.zeros(
                at + 28..at + 32,
                &format!("reserved bytes of index partition {p}"),
            )?;
        }
        let keys_at = table.start + n * PARTITION_ENTRY_BYTES;
        if (table.end - keys_at) as u64 != fence_bytes {
            return Err(self.bad(
                keys_at + fence_bytes as usize,
                "bytes in the partition table after the last fence key".into(),
            ));
        }
        Ok(())
    }

    /// `gap` must be the fewest zero bytes that align its end to [`BLOCK_ALIGN`].
    fn padding(&self, gap: Range<usize>, what: &str) -> Result<()> {
        self.zeros(gap.clone(), what)?;
        let want = (BLOCK_ALIGN - gap.start % BLOCK_ALIGN) % BLOCK_ALIGN;
        if gap.len() != want {
            return Err(self.bad(
                gap.start + want.min(gap.len()),
                format!("{what}: {} bytes where the format has {want}", gap.len()),
            ));
        }
        Ok(())
    }

    /// Every byte of `range` must be zero.
    fn zeros(&self, range: Range<usize>, what: &str) -> Result<()> {
        let bytes = self.bytes().get(range.clone()).unwrap_or(&[]);
        match bytes.iter().position(|&b| b != 0) {
            Some(p) => Err(self.bad(range.start + p, format!("{what}: non-zero byte"))),
            None => Ok(()),
        }
    }

    fn bad(&self, at: usize, detail: String) -> Error {
        Error::corrupt(self.name(), at as u64, detail)
    }
}
