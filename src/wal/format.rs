//! The WAL's bytes (FORMAT.md §4): constants and the encoders of a segment header, a record header and a
//! sync mark (the decoder is [`super::scan`]).
//!
//! Segment file `{first_lsn:020}.wal` (format version 6 written; 1 to 5 read): a 32-byte header, then
//! records and sync marks back to back, then (in a zero-filled segment) zeros to the end of the file, or
//! (in a recycled one) an earlier incarnation's bytes, whose checksums fail: from version 6 a record's
//! and a mark's checksum is seeded with its own LSN ([`checksum_seed`]). The byte layout has one home,
//! FORMAT.md §4. After each group commit's `fdatasync`, before anyone is
//! acknowledged, the leader writes a sync mark naming the LSN synced (not synced itself: the next group
//! commit syncs it). A mark on disk proves the bytes before it were durable, which is how replay tells
//! damage to acknowledged records (an error) from a torn, never acknowledged group commit (cut): see
//! [`super::scan::scan`] and FORMAT.md §4.
//! The LSN of a record is `first_lsn` of its segment plus its offset past the segment header; the LSN
//! space is contiguous across segments.

use super::Lsn;
pub(crate) use crate::encoding::checksum_seeded;
use crate::encoding::{checksum_parts_seeded, le_u32, FormatVersion, PutLe};

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DDPWALSG";
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const RECORD_MAGIC: u32 = 0x4C50_4444;
pub(crate) const RECORD_HEADER_BYTES: u64 = 16;
/// The WAL format version this library writes, and the newest it reads (it reads 1 to 7): version 3
/// adds sync marks and the header's flags, version 4 varint record payloads (tag 2, [`super::record`]),
/// version 5 seal records (tag 3), version 6 checksums seeded with the record's LSN and recycled
/// segments (header flag bit 1), version 7 the header checksum seeded with the store's id.
pub const WAL_VERSION: FormatVersion = FormatVersion(7);
/// The first WAL version whose segment header checksum is seeded with the store's id (the manifest's
/// `store_id`; 0 for a store that records none, which is plain xxh3).
pub(crate) const STORE_SEEDED_VERSION: u32 = 7;
/// The first WAL version whose record and mark checksums are seeded with their LSN.
pub(crate) const SEEDED_VERSION: u32 = 6;
/// Segment header flag (version 3 on): the segment is zero-filled ahead of the log, so zeros to its end are
/// the end of its records.
pub(crate) const SEGMENT_FLAG_ZERO_FILLED: u32 = 1;
/// Segment header flag (version 6 on): the file is a recycled segment, written over a released one, so
/// past the log's end lie that earlier incarnation's bytes (FORMAT.md §4, "Recycled segments").
pub(crate) const SEGMENT_FLAG_RECYCLED: u32 = 2;
/// Magic of a sync mark (version 3 on), in place of a record's: "DDPM" little-endian.
pub(crate) const MARK_MAGIC: u32 = 0x4D50_4444;
/// A sync mark's payload: the LSN it names, `u64`.
pub(crate) const MARK_PAYLOAD_BYTES: u64 = 8;
/// Bytes of a sync mark, header included.
pub(crate) const MARK_BYTES: usize = (RECORD_HEADER_BYTES + MARK_PAYLOAD_BYTES) as usize;

/// The seed of the checksum of a record or sync mark at `lsn` in a segment of format `version`: the LSN
/// from version 6 on (so that a recycled file's earlier records, at other LSNs, fail their checksums), 0
/// before (xxh3 seeded with 0 is plain xxh3).
pub(crate) fn checksum_seed(version: u32, lsn: Lsn) -> u64 {
    if version >= SEEDED_VERSION {
        lsn
    } else {
        0
    }
}

/// The header of a segment (of [`WAL_VERSION`]) of the store `store_id` whose first record is at
/// `first_lsn`, with header `flags` ([`SEGMENT_FLAG_ZERO_FILLED`], [`SEGMENT_FLAG_RECYCLED`]); its
/// checksum seeded with the store's id.
pub(crate) fn segment_header(first_lsn: Lsn, flags: u32, store_id: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.put_u32(WAL_VERSION.0);
    header.put_u32(flags);
    header.put_u64(first_lsn);
    header.put_u64(checksum_seeded(&header, u64::from(store_id)));
    header
}

/// The header of a record holding `payload` (at most `u32::MAX` bytes: the caller checks), its checksum
/// seeded with `seed` ([`checksum_seed`]).
pub(crate) fn record_header(payload: &[u8], seed: u64) -> [u8; RECORD_HEADER_BYTES as usize] {
    debug_assert!(payload.len() <= u32::MAX as usize);
    let mut header = [0u8; RECORD_HEADER_BYTES as usize];
    header[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[12..16].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    let sum = checksum_parts_seeded(&[&header[8..16], payload], seed);
    header[0..8].copy_from_slice(&sum.to_le_bytes());
    header
}

/// A sync mark naming `durable` (every record ending at or before it was `fdatasync`'d before the mark),
/// its checksum seeded with `seed` ([`checksum_seed`]).
pub(crate) fn sync_mark(durable: Lsn, seed: u64) -> [u8; MARK_BYTES] {
    let mut mark = [0u8; MARK_BYTES];
    mark[8..12].copy_from_slice(&(MARK_PAYLOAD_BYTES as u32).to_le_bytes());
    mark[12..16].copy_from_slice(&MARK_MAGIC.to_le_bytes());
    mark[16..24].copy_from_slice(&durable.to_le_bytes());
    let sum = checksum_seeded(&mark[8..], seed);
    mark[0..8].copy_from_slice(&sum.to_le_bytes());
    mark
}

/// Sets the checksums of the records in `pending` (records back to back, as appended, the first at LSN
/// `first_lsn`) for a segment of format `version`: appends encode for the active segment, and records
/// still pending when the log rolls over from a segment older than version 6 land in a newer one.
pub(crate) fn reseed_records(pending: &mut [u8], first_lsn: Lsn, version: u32) {
    let mut at = 0usize;
    while at + RECORD_HEADER_BYTES as usize <= pending.len() {
        let len = le_u32(pending, at + 8) as usize;
        let end = at + RECORD_HEADER_BYTES as usize + len;
        debug_assert!(end <= pending.len(), "pending holds whole records");
        let Some(record) = pending.get_mut(at..end) else {
            return;
        };
        let seed = checksum_seed(version, first_lsn + at as u64);
        let sum = checksum_seeded(&record[8..], seed);
        record[0..8].copy_from_slice(&sum.to_le_bytes());
        at = end;
    }
}
