//! A batch file's block index, checked a partition at a time (format version 3).
//!
//! The index holds a 48-byte entry per block (its place, checksum, counts and fence keys). Checking all of
//! it at open made a restart cost grow with the store (each file's whole index checksummed, every entry
//! decoded and checked, every fence prefix built: about 0.75 ms per 10 M updates). Since version 3 the
//! entries are grouped into *partitions* of `partition_blocks` consecutive blocks (64 by default), and a
//! *partition table* at the end of the index holds, per partition, the checksum of its entries and of its
//! bytes of the key area, and a copy of its first and last key. The footer's index checksum covers the
//! table, so an open checks only the table (a 32-byte entry and two keys per 64 blocks) and builds the
//! fences of the partitions; a partition's entries are checksummed, decoded and checked on the first touch
//! of one of its blocks, once per open file. The same two-level scheme as RocksDB's partitioned index
//! ("Partitioned Index/Filters", RocksDB wiki, 2017): a top-level index over index partitions, each loaded
//! when a lookup needs it.
//!
//! A partition that fails its check is an error for every reader that needs it ([`Error::Corrupt`] naming
//! the file and the partition's offset), exactly as a block that fails its checksum; readers that cannot
//! return errors (DD cursors) stop serving the batch (fail-stop, `trace::batch`). Files of versions 1 and 2
//! have no table: they are read as one partition, checked whole at open as before.

use super::block::Block;
use super::format::{
    partition_checksum, Footer, IndexEntry, PartitionEntry, BATCH_VERSION_PARTITIONED, BLOCK_ALIGN,
    CODEC_LZ4, CODEC_RAW, HEADER_BYTES, INDEX_ENTRY_BYTES, MAX_PARTITION_BLOCKS, PARTITION_ENTRY_BYTES,
};
use super::seek::{Fences, KeyProbe, KeySamples};
use crate::encoding::checksum;
use crate::error::{Error, Result};
use std::ops::Range;
use std::sync::OnceLock;

/// A block's verified shape and key samples, set on its first touch.
pub(super) type Shape = Box<(Block<'static>, KeySamples)>;

/// One partition of the index, checked: its entries, the prefixes of its blocks' fence keys, and a slot per
/// block for its verified shape (and, in a partition with an lz4 block, for its decompressed copy).
pub(super) struct Partition {
    /// The index of its first block in the file.
    pub first_block: usize,
    /// Its blocks' index entries, checked (places in order inside the data region, fence keys inside the
    /// partition's checksummed key bytes, known codec, not empty).
    pub entries: Box<[IndexEntry]>,
    /// The prefixes of its blocks' fence keys (`super::seek`).
    fences: Fences,
    /// Block `first_block + j`'s shape and key samples, once verified. Boxed, so that a partition
    /// allocates 16 bytes a block until one is touched.
    pub shapes: Box<[OnceLock<Shape>]>,
    /// Decompressed copies of its lz4 blocks: a slot a block if it has an lz4 block, else none.
    pub decompressed: Box<[OnceLock<Box<[u8]>>]>,
}

/// Where a partition lies and what it must sum to (absolute offsets in the file; the keys' ranges were
/// checked to lie inside the key area, or inside the partition table's keys, when the index was opened).
struct PartitionPlace {
    /// xxh3 of the entries followed by the key bytes (unused for a file of one unchecked-on-touch partition).
    checksum: u64,
    /// The partition's index entries.
    entries: Range<usize>,
    /// Its bytes of the key area: every fence key of its blocks must lie here.
    keys: Range<usize>,
    /// Its first block's first key and its last block's last key.
    first: Range<usize>,
    last: Range<usize>,
}

/// The block index of an open batch file: see the module docs.
pub(super) struct Index {
    block_count: usize,
    /// Block `i` is in partition `i >> shift` (32 for the one partition of an older file).
    shift: u32,
    /// Absolute offset of the key area.
    key_area: usize,
    /// Absolute offset of the index: blocks end at or before it.
    data_end: usize,
    places: Box<[PartitionPlace]>,
    /// The prefixes of each partition's first and last key.
    fences: Fences,
    parts: Box<[OnceLock<Partition>]>,
}

/// Block entry `e`'s first (or, with `last`, last) key in the key area at `key_area` of `bytes` (in bounds:
/// a partition's entries are checked to keep their keys inside its key bytes).
fn fence_key<'b>(bytes: &'b [u8], key_area: usize, e: &IndexEntry, last: bool) -> &'b [u8] {
    &bytes[key_range(key_area, e, last)]
}

/// Where [`fence_key`] lies.
fn key_range(key_area: usize, e: &IndexEntry, last: bool) -> Range<usize> {
    let start = key_area + e.first_key_off as usize + if last { e.first_key_len as usize } else { 0 };
    let len = if last { e.last_key_len } else { e.first_key_len } as usize;
    start..start + len
}

impl Index {
    /// Opens the index of `footer` in `bytes` (the file `name`; the footer passed its checksum, its index
    /// range lies between the header and the footer). Version 3: checks the partition table's checksum and
    /// every table entry's ranges. Older versions: checks the whole index (checksum, every entry) and the
    /// footer's counts against it. Errors: [`Error::Corrupt`] naming the file and offset.
    pub fn open(bytes: &[u8], footer: &Footer, name: &str) -> Result<Index> {
        let bad = |offset: usize, detail: String| Error::corrupt(name, offset as u64, detail);
        let footer_at = bytes.len() - super::format::FOOTER_BYTES;
        let index_start = footer.index_offset as usize;
        let index_end = index_start + footer.index_len as usize;
        let block_count = footer.block_count as usize;
        // At most 2^38 on 64-bit targets; on 32-bit ones a count past the address space is corruption.
        let entries_len = block_count
            .checked_mul(INDEX_ENTRY_BYTES)
            .ok_or_else(|| bad(footer_at + 12, "block count past the address space".into()))?;
        if footer.version < BATCH_VERSION_PARTITIONED {
            if checksum(&bytes[index_start..index_end]) != footer.index_checksum {
                return Err(bad(index_start, "block index checksum mismatch".into()));
            }
            if entries_len > index_end - index_start {
                return Err(bad(index_start, "block count does not fit the index".into()));
            }
            let key_area = index_start + entries_len;
            let mut index = Index {
                block_count,
                shift: 32,
                key_area,
                data_end: index_start,
                places: Box::new([]),
                fences: Fences::new(0, |_| &[], |_| &[]),
                parts: Box::new([]),
            };
            if block_count == 0 {
                if footer.key_count != 0 || footer.update_count != 0 {
                    return Err(bad(
                        footer_at + 40,
                        "footer counts disagree with the block index".into(),
                    ));
                }
                return Ok(index);
            }
            let mut place = PartitionPlace {
                checksum: 0,
                entries: index_start..key_area,
                keys: key_area..index_end,
                first: 0..0,
                last: 0..0,
            };
            let (part, keys, updates) = index.check_partition(bytes, name, 0, &place)?;
            if keys != footer.key_count || updates != footer.update_count {
                return Err(bad(
                    footer_at + 40,
                    "footer counts disagree with the block index".into(),
                ));
            }
            place.first = key_range(key_area, &part.entries[0], false);
            place.last = key_range(key_area, &part.entries[block_count - 1], true);
            index.fences = Fences::new(1, |_| &bytes[place.first.clone()], |_| &bytes[place.last.clone()]);
            index.places = Box::new([place]);
            index.parts = Box::new([OnceLock::from(part)]);
            return Ok(index);
        }
        let per = footer.partition_blocks;
        if !per.is_power_of_two() || per > MAX_PARTITION_BLOCKS {
            return Err(bad(footer_at + 112, format!("{per} blocks per index partition")));
        }
        let partitions = block_count.div_ceil(per as usize);
        let table_len = footer.partition_table_len as usize;
        let table_entries = partitions * PARTITION_ENTRY_BYTES;
        if entries_len + table_len > index_end - index_start || table_entries > table_len {
            return Err(bad(
                footer_at + 116,
                "index partition table does not fit the index".into(),
            ));
        }
        let table_start = index_end - table_len;
        if checksum(&bytes[table_start..index_end]) != footer.index_checksum {
            return Err(bad(table_start, "index partition table checksum mismatch".into()));
        }
        let key_area = index_start + entries_len;
        let key_area_len = table_start - key_area;
        let (table_keys, table_keys_len) = (table_start + table_entries, table_len - table_entries);
        let mut places = Vec::with_capacity(partitions);
        for (p, raw) in bytes[table_start..table_keys]
            .chunks_exact(PARTITION_ENTRY_BYTES)
            .enumerate()
        {
            let e = PartitionEntry::from_bytes(raw.try_into().unwrap_or(&[0; PARTITION_ENTRY_BYTES]));
            let at = table_start + p * PARTITION_ENTRY_BYTES;
            let keys_end = e.key_off as u64 + e.key_len as u64;
            if keys_end > key_area_len as u64 {
                return Err(bad(
                    at + 8,
                    format!("index partition {p}: keys outside the key area"),
                ));
            }
            let fences_end = e.fence_off as u64 + e.first_key_len as u64 + e.last_key_len as u64;
            if fences_end > table_keys_len as u64 {
                return Err(bad(
                    at + 16,
                    format!("index partition {p}: fence keys outside the table"),
                ));
            }
            let first_block = p * per as usize;
            let blocks = (block_count - first_block).min(per as usize);
            let entries = index_start + first_block * INDEX_ENTRY_BYTES;
            let first = table_keys + e.fence_off as usize;
            let last = first + e.first_key_len as usize;
            places.push(PartitionPlace {
                checksum: e.checksum,
                entries: entries..entries + blocks * INDEX_ENTRY_BYTES,
                keys: key_area + e.key_off as usize..key_area + keys_end as usize,
                first: first..last,
                last: last..last + e.last_key_len as usize,
            });
        }
        Ok(Index {
            block_count,
            shift: per.trailing_zeros(),
            key_area,
            data_end: index_start,
            fences: Fences::new(
                partitions,
                |p| &bytes[places[p].first.clone()],
                |p| &bytes[places[p].last.clone()],
            ),
            places: places.into_boxed_slice(),
            parts: (0..partitions).map(|_| OnceLock::new()).collect(),
        })
    }

    /// Checks partition `p` at `place` (its checksum, in version 3; every entry; its first and last keys
    /// against the table's) and builds it. Returns it with its blocks' key and update counts.
    fn check_partition(
        &self,
        bytes: &[u8],
        name: &str,
        p: usize,
        place: &PartitionPlace,
    ) -> Result<(Partition, u64, u64)> {
        let bad = |offset: usize, detail: String| Error::corrupt(name, offset as u64, detail);
        let table = !self.places.is_empty();
        let entry_bytes = &bytes[place.entries.clone()];
        if table && partition_checksum(entry_bytes, &bytes[place.keys.clone()]) != place.checksum {
            return Err(bad(
                place.entries.start,
                format!("index partition {p} checksum mismatch"),
            ));
        }
        let first_block = if table { p << self.shift } else { 0 };
        let (keys_lo, keys_hi) = (place.keys.start - self.key_area, place.keys.end - self.key_area);
        let mut entries = Vec::with_capacity(entry_bytes.len() / INDEX_ENTRY_BYTES);
        let mut data_end = HEADER_BYTES as u64;
        let (mut keys, mut updates, mut compressed) = (0u64, 0u64, false);
        for (j, raw) in entry_bytes.chunks_exact(INDEX_ENTRY_BYTES).enumerate() {
            let e = IndexEntry::from_bytes(raw.try_into().unwrap_or(&[0; INDEX_ENTRY_BYTES]));
            let (i, at) = (first_block + j, place.entries.start + j * INDEX_ENTRY_BYTES);
            let block_end = e.offset.checked_add(e.stored_len as u64);
            if e.offset < data_end
                || !e.offset.is_multiple_of(BLOCK_ALIGN as u64)
                || block_end.is_none_or(|end| end > self.data_end as u64)
            {
                return Err(bad(at, format!("block {i} at offset {} out of place", e.offset)));
            }
            let keys_end = e.first_key_off as u64 + e.first_key_len as u64 + e.last_key_len as u64;
            if (e.first_key_off as usize) < keys_lo || keys_end > keys_hi as u64 {
                return Err(bad(at + 32, format!("block {i} fence keys outside the key area")));
            }
            match e.codec {
                CODEC_RAW if e.raw_len == e.stored_len => {}
                CODEC_RAW => return Err(bad(at + 20, "raw block with raw length != stored length".into())),
                // lz4 expands at most about 255-fold: a larger claim would size a huge allocation.
                CODEC_LZ4 if (e.raw_len as u64) <= e.stored_len as u64 * 255 + 64 => compressed = true,
                CODEC_LZ4 => return Err(bad(at + 20, format!("lz4 block claims {} raw bytes", e.raw_len))),
                c => return Err(bad(at + 44, format!("unknown block codec {c}"))),
            }
            if e.key_count == 0 || e.update_count == 0 {
                return Err(bad(at + 24, format!("block {i} is empty")));
            }
            data_end = block_end.unwrap_or(u64::MAX);
            keys += e.key_count as u64;
            updates += e.update_count as u64;
            entries.push(e);
        }
        let key = |j: usize, last: bool| fence_key(bytes, self.key_area, &entries[j], last);
        if table
            && (entries.is_empty()
                || key(0, false) != &bytes[place.first.clone()]
                || key(entries.len() - 1, true) != &bytes[place.last.clone()])
        {
            return Err(bad(
                place.entries.start,
                format!("index partition {p}: fence keys differ from the table's"),
            ));
        }
        let n = entries.len();
        let fences = Fences::new(n, |j| key(j, false), |j| key(j, true));
        let part = Partition {
            first_block,
            fences,
            shapes: (0..n).map(|_| OnceLock::new()).collect(),
            decompressed: (0..if compressed { n } else { 0 })
                .map(|_| OnceLock::new())
                .collect(),
            entries: entries.into_boxed_slice(),
        };
        Ok((part, keys, updates))
    }

    /// The partition of block `i` (0 in a file of one partition, whose shift is 32: no shift of a 32-bit
    /// `usize` by its width).
    #[inline]
    fn partition_of(&self, i: usize) -> usize {
        i.checked_shr(self.shift).unwrap_or(0)
    }

    /// Number of blocks.
    #[inline]
    pub fn block_count(&self) -> usize {
        self.block_count
    }

    /// Number of partitions (1 for a non-empty file of version 1 or 2).
    pub fn partition_count(&self) -> usize {
        self.places.len()
    }

    /// Partition `p` (`< partition_count()`), checked on its first use. Errors: [`Error::Corrupt`] naming
    /// the file and the offset of the partition or of the entry that fails.
    pub fn partition(&self, bytes: &[u8], name: &str, p: usize) -> Result<&Partition> {
        let slot = self
            .parts
            .get(p)
            .ok_or_else(|| Error::bad_input(format!("index partition {p} out of range")))?;
        if let Some(part) = slot.get() {
            return Ok(part);
        }
        let (part, _, _) = self.check_partition(bytes, name, p, &self.places[p])?;
        // Another thread may have checked it too: the same partition either way.
        Ok(slot.get_or_init(|| part))
    }

    /// Block `i`'s partition and its place there, the partition checked on first use. Errors: `BadInput`
    /// if `i >= block_count()`; as [`partition`](Self::partition).
    #[inline]
    pub fn locate(&self, bytes: &[u8], name: &str, i: usize) -> Result<(&Partition, usize)> {
        if i >= self.block_count {
            return Err(Error::bad_input(format!("block {i} out of range")));
        }
        let part = self.partition(bytes, name, self.partition_of(i))?;
        Ok((part, i - part.first_block))
    }

    /// Block `i`'s partition and its place there if the partition has been checked (no check is started).
    #[inline]
    pub fn checked(&self, i: usize) -> Option<(&Partition, usize)> {
        let part = self.parts.get(self.partition_of(i))?.get()?;
        let j = i.checked_sub(part.first_block)?;
        (j < part.entries.len()).then_some((part, j))
    }

    /// The partitions checked so far.
    pub fn checked_partitions(&self) -> impl Iterator<Item = &Partition> {
        self.parts.iter().filter_map(|p| p.get())
    }

    /// Whether every partition has been checked.
    pub fn all_checked(&self) -> bool {
        self.parts.iter().all(|p| p.get().is_some())
    }

    /// Block entry `e`'s first (or last) key.
    #[inline]
    pub fn key<'b>(&self, bytes: &'b [u8], e: &IndexEntry, last: bool) -> &'b [u8] {
        fence_key(bytes, self.key_area, e, last)
    }

    /// Whether `probe.key` lies outside the file's key range (below its first key or above its last), from
    /// the partition fences (no partition is checked).
    pub fn outside(&self, bytes: &[u8], probe: &KeyProbe<'_>) -> bool {
        let n = self.places.len();
        n == 0
            || self
                .fences
                .first_above(0, probe, || &bytes[self.places[0].first.clone()])
            || self
                .fences
                .last_below(n - 1, probe, || &bytes[self.places[n - 1].last.clone()])
    }

    /// The first block whose last key is `>= probe.key`, as its partition and its place there (`None` if
    /// every key is smaller): the partition by the table's fences, then the block by the partition's
    /// (checked on first use). Errors: as [`partition`](Self::partition).
    pub fn seek(
        &self,
        bytes: &[u8],
        name: &str,
        probe: &KeyProbe<'_>,
    ) -> Result<Option<(&Partition, usize)>> {
        let p = self.fences.seek(probe, |p| &bytes[self.places[p].last.clone()]);
        if p >= self.places.len() {
            return Ok(None);
        }
        let part = self.partition(bytes, name, p)?;
        let j = part
            .fences
            .seek(probe, |j| self.key(bytes, &part.entries[j], true));
        if j < part.entries.len() {
            return Ok(Some((part, j)));
        }
        // The table's last key of the partition is its last block's (checked with the partition), so the
        // partition holds the answer; were it not so, the next block is the answer.
        let next = part.first_block + j;
        Ok(if next < self.block_count {
            Some(self.locate(bytes, name, next)?)
        } else {
            None
        })
    }

    /// Whether block `j` of `part` has its first key above `probe.key`.
    #[inline]
    pub fn first_above(&self, bytes: &[u8], part: &Partition, j: usize, probe: &KeyProbe<'_>) -> bool {
        part.fences
            .first_above(j, probe, || self.key(bytes, &part.entries[j], false))
    }
}
