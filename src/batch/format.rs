//! Batch file layout, version 3 (versions 1 and 2 are still read). All integers little-endian; all
//! checksums xxh3-64.
//!
//! A file is a 32-byte header, 8-byte-aligned blocks (each a columnar trie of keys → vals → (time, diff):
//! since version 2 times and diffs frame-of-reference coded in 0 to 8 bytes, offset arrays left out where
//! widths or counts make them implied; in version 1 full-width times and diffs and every `u32` offset
//! array; stored raw or lz4-compressed), an index of 48-byte entries plus a key area
//! holding every block's first and last key, in version 3 followed by a *partition table* (one 32-byte
//! entry per partition of [`PARTITION_BLOCKS`] consecutive blocks, with that partition's checksum and
//! its first and last key, so that a reader checks the table at open and a partition of the index on
//! first touch: `batch/index.rs`), an optional key filter section ([`super::filter`]), and a
//! 128-byte footer. The byte layout has one home, FORMAT.md §2.
//! In every version the header keeps this layout and the footer keeps its magic, version and checksum
//! places, so a reader can tell a newer file from a corrupt one.
//! A key never spans two blocks: a block may exceed the target size to hold all of one key's vals.

use super::Description;
use crate::encoding::{checksum, checksum_parts_seeded, Decoder, FormatVersion, PutLe};
use crate::error::{Error, Result};

/// The batch format version this library writes and the newest it reads.
pub const BATCH_VERSION: FormatVersion = FormatVersion(3);
/// The first batch format version: full-width block columns (FORMAT.md §2, "Version 1 blocks").
pub const BATCH_VERSION_1: u32 = 1;
/// The first version with a partitioned block index (a partition table after the key area; FORMAT.md
/// §2, "Index partitions"). Older files are read as one partition, checked whole at open.
pub const BATCH_VERSION_PARTITIONED: u32 = 3;
/// Blocks per index partition written (a power of two; a reader takes any power of two up to
/// [`MAX_PARTITION_BLOCKS`]): 64 blocks is 3 KiB of entries plus their fence keys, about 4 MiB of data
/// at the default block size, checked in about a microsecond on first touch.
pub const PARTITION_BLOCKS: u32 = 64;
/// The most blocks per index partition a reader accepts.
pub const MAX_PARTITION_BLOCKS: u32 = 1 << 16;
/// Partition table entry size in bytes.
pub const PARTITION_ENTRY_BYTES: usize = 32;
/// Magic at offset 0.
pub const HEADER_MAGIC: &[u8; 8] = b"DDPBATCH";
/// Magic at the start of the footer.
pub const FOOTER_MAGIC: &[u8; 8] = b"DDPBFOOT";
/// Header size in bytes.
pub const HEADER_BYTES: usize = 32;
/// Footer size in bytes.
pub const FOOTER_BYTES: usize = 128;
/// Index entry size in bytes.
pub const INDEX_ENTRY_BYTES: usize = 48;
/// Fixed part of a version 2 block before its columns: counts, widths, flags and the two bases.
pub const BLOCK_HEADER_BYTES: usize = 40;
/// Fixed part of a version 1 block before its arrays: the three counts and a reserved word.
pub const BLOCK_HEADER_BYTES_V1: usize = 16;
/// Block flag (version 2): every key has exactly one val (`key_vals` is left out).
pub const FLAG_ONE_VAL_PER_KEY: u8 = 1;
/// Block flag (version 2): every val has exactly one update (`val_upds` is left out).
pub const FLAG_ONE_UPDATE_PER_VAL: u8 = 2;
/// Block flag (version 2): every key is `key_width` (≥ 1) bytes long (`key_offs` is left out).
pub const FLAG_FIXED_KEYS: u8 = 4;
/// Block flag (version 2): every val is `val_width` (≥ 0) bytes long (`val_offs` is left out).
pub const FLAG_FIXED_VALS: u8 = 8;
/// Block alignment in the file.
pub const BLOCK_ALIGN: usize = 8;
/// Codec of a block stored as is.
pub const CODEC_RAW: u8 = 0;
/// Codec of an lz4-compressed block (lz4 block format), written for batches at or past
/// `Options::compress_from_level` when the block shrinks (FORMAT.md §2).
pub const CODEC_LZ4: u8 = 1;
/// Default target size of a block before the writer starts a new one.
pub const DEFAULT_BLOCK_TARGET_BYTES: u32 = 64 << 10;

/// The header, as bytes.
pub fn encode_header() -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_BYTES);
    h.extend_from_slice(HEADER_MAGIC);
    h.put_u32(BATCH_VERSION.0);
    h.put_u32(0);
    h.put_u64(0);
    h.put_u64(checksum(&h));
    debug_assert_eq!(h.len(), HEADER_BYTES);
    h
}

/// Checks the header at the start of `bytes` (at least [`HEADER_BYTES`] long); returns its format version
/// (1 to 3). Errors: `Corrupt` (magic, checksum, version 0), `VersionTooNew`.
pub fn check_header(bytes: &[u8], file: &str) -> Result<u32> {
    let mut d = Decoder::new(&bytes[..HEADER_BYTES], 0, file);
    if d.bytes(8, "magic")? != HEADER_MAGIC {
        return Err(Error::corrupt(file, 0, "not a batch file (bad header magic)"));
    }
    // The checksum's place is fixed in every version, so it is checked first: a flipped version byte is
    // corruption, not a newer file.
    if crate::encoding::le_u64(bytes, 24) != checksum(&bytes[..24]) {
        return Err(Error::corrupt(file, 24, "header checksum mismatch"));
    }
    let version = d.u32("version")?;
    FormatVersion::check(version, BATCH_VERSION, file, 8)?;
    Ok(version)
}

/// The decoded footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// The format version (equal to the header's; the writer writes [`BATCH_VERSION`]): it says how the
    /// blocks are laid out.
    pub version: u32,
    /// Number of blocks.
    pub block_count: u32,
    /// The batch's description.
    pub description: Description,
    /// Distinct keys.
    pub key_count: u64,
    /// Distinct (key, val) pairs.
    pub val_count: u64,
    /// Updates.
    pub update_count: u64,
    /// Offset of the block index.
    pub index_offset: u64,
    /// Length of the block index (entries, key area and, in version 3, the partition table).
    pub index_len: u64,
    /// xxh3 of the block index: in version 3 of its partition table (whose entries hold each partition's
    /// checksum, which covers its entries, which hold each block's checksum); before, of the whole index.
    pub index_checksum: u64,
    /// Offset of the key filter (0 when absent).
    pub filter_offset: u64,
    /// Length of the key filter.
    pub filter_len: u64,
    /// Kind of key filter (0 = none).
    pub filter_kind: u32,
    /// Block target size the writer used.
    pub block_target_bytes: u32,
    /// Blocks per index partition (version 3; 0 in older versions, where the field was reserved).
    pub partition_blocks: u32,
    /// Length of the partition table, the last bytes of the index (version 3; 0 before).
    pub partition_table_len: u32,
}

impl Footer {
    /// The footer as bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut f = Vec::with_capacity(FOOTER_BYTES);
        f.extend_from_slice(FOOTER_MAGIC);
        f.put_u32(self.version);
        f.put_u32(self.block_count);
        f.put_u64(self.description.lower);
        f.put_u64(self.description.upper);
        f.put_u64(self.description.since);
        f.put_u64(self.key_count);
        f.put_u64(self.val_count);
        f.put_u64(self.update_count);
        f.put_u64(self.index_offset);
        f.put_u64(self.index_len);
        f.put_u64(self.index_checksum);
        f.put_u64(self.filter_offset);
        f.put_u64(self.filter_len);
        f.put_u32(self.filter_kind);
        f.put_u32(self.block_target_bytes);
        f.put_u32(self.partition_blocks);
        f.put_u32(self.partition_table_len);
        f.put_u64(checksum(&f));
        debug_assert_eq!(f.len(), FOOTER_BYTES);
        f
    }

    /// Decodes the footer at `offset` of `file` (its last [`FOOTER_BYTES`] bytes).
    pub fn decode(bytes: &[u8], offset: u64, file: &str) -> Result<Self> {
        let mut d = Decoder::new(bytes, offset, file);
        if d.bytes(8, "footer magic")? != FOOTER_MAGIC {
            return Err(Error::corrupt(
                file,
                offset,
                "bad footer magic (truncated or not a batch file)",
            ));
        }
        if checksum(&bytes[..120]) != crate::encoding::le_u64(bytes, 120) {
            return Err(Error::corrupt(file, offset + 120, "footer checksum mismatch"));
        }
        let version = d.u32("version")?;
        FormatVersion::check(version, BATCH_VERSION, file, offset + 8)?;
        let footer = Footer {
            version,
            block_count: d.u32("block count")?,
            description: Description {
                lower: d.u64("lower")?,
                upper: d.u64("upper")?,
                since: d.u64("since")?,
            },
            key_count: d.u64("key count")?,
            val_count: d.u64("val count")?,
            update_count: d.u64("update count")?,
            index_offset: d.u64("index offset")?,
            index_len: d.u64("index length")?,
            index_checksum: d.u64("index checksum")?,
            filter_offset: d.u64("filter offset")?,
            filter_len: d.u64("filter length")?,
            filter_kind: d.u32("filter kind")?,
            block_target_bytes: d.u32("block target")?,
            partition_blocks: d.u32("partition blocks")?,
            partition_table_len: d.u32("partition table length")?,
        };
        Ok(footer)
    }
}

/// One decoded block index entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Offset of the block in the file.
    pub offset: u64,
    /// xxh3 of the stored block bytes.
    pub checksum: u64,
    /// Stored length.
    pub stored_len: u32,
    /// Length once decompressed (equal to `stored_len` for raw blocks).
    pub raw_len: u32,
    /// Keys in the block.
    pub key_count: u32,
    /// Updates in the block.
    pub update_count: u32,
    /// Offset of the first key in the index key area.
    pub first_key_off: u32,
    /// Length of the first key.
    pub first_key_len: u32,
    /// Length of the last key, which follows the first in the key area.
    pub last_key_len: u32,
    /// Block codec.
    pub codec: u8,
}

impl IndexEntry {
    /// Appends the entry's 48 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.offset);
        out.put_u64(self.checksum);
        out.put_u32(self.stored_len);
        out.put_u32(self.raw_len);
        out.put_u32(self.key_count);
        out.put_u32(self.update_count);
        out.put_u32(self.first_key_off);
        out.put_u32(self.first_key_len);
        out.put_u32(self.last_key_len);
        out.push(self.codec);
        out.extend_from_slice(&[0; 3]);
    }

    /// Decodes an entry's 48 bytes (fixed layout, no failure: every bit pattern is some entry; what it
    /// says is checked by the caller, `BatchFile::open`). One load a field, so that opening a batch of
    /// many blocks costs little more than its index checksum.
    #[inline]
    pub fn from_bytes(b: &[u8; INDEX_ENTRY_BYTES]) -> Self {
        // The ranges lie inside the fixed-size array: the conversions cannot fail.
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
        IndexEntry {
            offset: u64_at(0),
            checksum: u64_at(8),
            stored_len: u32_at(16),
            raw_len: u32_at(20),
            key_count: u32_at(24),
            update_count: u32_at(28),
            first_key_off: u32_at(32),
            first_key_len: u32_at(36),
            last_key_len: u32_at(40),
            codec: b[44],
        }
    }
}

/// The checksum a partition table entry holds (FORMAT.md §2, "Index partitions"): the xxh3 of the
/// partition's index entries (`entries`, 48 bytes a block) followed by its bytes of the key area (`keys`,
/// from its first block's first key to its last block's last key). The writer, the reader's check and
/// the tools that repair a damaged test file all compute it here.
#[inline]
pub fn partition_checksum(entries: &[u8], keys: &[u8]) -> u64 {
    checksum_parts_seeded(&[entries, keys], 0)
}

/// One decoded partition table entry (version 3): where a partition's fence keys lie and what its
/// index bytes sum to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionEntry {
    /// xxh3 of the partition's index entries followed by its bytes of the key area.
    pub checksum: u64,
    /// Offset in the key area of the partition's first block's first key.
    pub key_off: u32,
    /// Length of the partition's bytes of the key area (through its last block's last key).
    pub key_len: u32,
    /// Offset of the partition's first key in the table's key area (its last key follows).
    pub fence_off: u32,
    /// Length of the partition's first key (its first block's first key).
    pub first_key_len: u32,
    /// Length of the partition's last key (its last block's last key).
    pub last_key_len: u32,
}

impl PartitionEntry {
    /// Appends the entry's 32 bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.checksum);
        out.put_u32(self.key_off);
        out.put_u32(self.key_len);
        out.put_u32(self.fence_off);
        out.put_u32(self.first_key_len);
        out.put_u32(self.last_key_len);
        out.put_u32(0);
    }

    /// Decodes an entry's 32 bytes (every bit pattern is some entry; the caller checks what it says).
    #[inline]
    pub fn from_bytes(b: &[u8; PARTITION_ENTRY_BYTES]) -> Self {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
        PartitionEntry {
            checksum: u64::from_le_bytes(b[0..8].try_into().unwrap_or_default()),
            key_off: u32_at(8),
            key_len: u32_at(12),
            fence_off: u32_at(16),
            first_key_len: u32_at(20),
            last_key_len: u32_at(24),
        }
    }
}
