//! The payload of a WAL record as the store writes it: a batch of updates to one stream, or a seal.
//!
//! Three kinds, told apart by the first byte, the record's tag (FORMAT.md §4, "payload"; little-endian):
//! - tag 1, [`RecordFormat::Fixed`]: `stream_no` `u32`, `count` `u32`, then `count` updates, each `time`
//!   `u64`, `diff` `i64`, key and val lengths `u32`, key and val bytes: 24 bytes of framing an update;
//! - tag 2, [`RecordFormat::Varint`] (WAL version 4 segments and later only): `stream_no` `u32`, `count` `u32`, then
//!   `count` updates, each the time as the zig-zag varint of its wrapping difference from the previous
//!   update's time (0 before the first), the diff as a zig-zag varint, key and val lengths as varints
//!   (`wal/varint.rs`), key and val bytes: 4 bytes of framing for a typical update (the time of the one
//!   before, a small diff, lengths under 128);
//! - tag 3, a seal (WAL version 5 segments only): `stream_no` `u32`, `upper` `u64` — the stream's upper
//!   is at least `upper` from this record on, whether or not its batch file was written
//!   (`Store::seal_logged`).
//!
//! The writer writes tag 2, except into a reopened segment of an older WAL version, whose readers know
//! tag 1 only ([`super::Log::record_format`]); the reader reads both. A record is applied whole or not at
//! all: the log's record checksum covers it. Decoding never panics, accepts only canonical bytes (a decoded
//! record re-encodes to its payload), and allocates at most one [`UpdateRef`] per 4 payload bytes.

use super::varint::{put_varint, read_varint, unzigzag, varint_len, zigzag, MAX_VARINT_BYTES};
use crate::encoding::{Decoder, PutLe};
use crate::error::{Error, Result};

/// Tag of a record of updates with fixed-width framing ([`RecordFormat::Fixed`]).
pub const TAG_UPDATES: u8 = 1;
/// Tag of a record of updates with varint framing ([`RecordFormat::Varint`]).
pub const TAG_VARINT_UPDATES: u8 = 2;
/// Tag of a seal record ([`SealRecord`]).
pub const TAG_SEAL: u8 = 3;
/// Bytes of a seal record: tag, stream number, upper.
pub const SEAL_RECORD_BYTES: usize = 13;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 16 << 20;
/// Largest value, in bytes.
pub const MAX_VAL_BYTES: usize = 64 << 20;
/// Largest record payload, in bytes: one `write` call must fit.
pub const MAX_RECORD_BYTES: usize = 512 << 20;

/// Bytes of a record before its first update: tag, stream number, count (both formats).
pub const RECORD_PREFIX_BYTES: usize = 9;
/// Bytes of an update before its key in a [`RecordFormat::Fixed`] record: time, diff, key length, val
/// length. The most any update's framing takes in either format is [`MAX_UPDATE_HEADER_BYTES`].
pub const UPDATE_HEADER_BYTES: usize = 24;
/// The fewest bytes an update takes in a [`RecordFormat::Varint`] record: four one-byte varints.
pub const MIN_VARINT_UPDATE_BYTES: usize = 4;
/// The most bytes of framing an update takes in a [`RecordFormat::Varint`] record: four varints.
pub const MAX_UPDATE_HEADER_BYTES: usize = 4 * MAX_VARINT_BYTES;

/// One update borrowed from somewhere: `(key, val, time, diff)`.
pub type UpdateRef<'a> = (&'a [u8], &'a [u8], u64, i64);

/// One owned update: `(key, val, time, diff)`.
pub type OwnedUpdate = (Vec<u8>, Vec<u8>, u64, i64);

/// How a record frames its updates: its tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordFormat {
    /// Tag 1: fixed-width framing, [`UPDATE_HEADER_BYTES`] an update. Every WAL version reads it.
    Fixed,
    /// Tag 2: varint framing, 4 to [`MAX_UPDATE_HEADER_BYTES`] bytes an update. Written only into
    /// segments of WAL version 4 or later (older releases refuse those with `VersionTooNew`).
    Varint,
}

impl RecordFormat {
    /// The record's first byte.
    pub fn tag(self) -> u8 {
        match self {
            RecordFormat::Fixed => TAG_UPDATES,
            RecordFormat::Varint => TAG_VARINT_UPDATES,
        }
    }

    /// Exact bytes `update` takes in a record of this format (framing, key and val), after an update at
    /// `prev_time` (0 for the first of a record; [`RecordFormat::Varint`] writes the time as a difference).
    #[inline]
    pub fn update_bytes(self, prev_time: u64, (key, val, time, diff): UpdateRef<'_>) -> usize {
        let framing = match self {
            RecordFormat::Fixed => UPDATE_HEADER_BYTES,
            RecordFormat::Varint => {
                varint_len(time_delta(prev_time, time))
                    + varint_len(zigzag(diff))
                    + varint_len(key.len() as u64)
                    + varint_len(val.len() as u64)
            }
        };
        framing + key.len() + val.len()
    }
}

/// The zig-zag of `time - prev_time` (wrapping): small when times are close, in either direction.
#[inline]
fn time_delta(prev_time: u64, time: u64) -> u64 {
    zigzag(time.wrapping_sub(prev_time) as i64)
}

/// Encodes one record into a buffer: [`begin`](Self::begin), [`push`](Self::push) each update,
/// [`finish`](Self::finish). Nothing is allocated past the buffer's growth (none if its capacity was
/// reserved for the sum of [`RecordFormat::update_bytes`] and [`RECORD_PREFIX_BYTES`]).
#[derive(Debug)]
pub struct RecordEncoder {
    format: RecordFormat,
    prev_time: u64,
    count: u32,
}

impl RecordEncoder {
    /// Starts a record of `format` for `stream_no` in `buf` (cleared first).
    pub fn begin(buf: &mut Vec<u8>, stream_no: u32, format: RecordFormat) -> Self {
        buf.clear();
        buf.push(format.tag());
        buf.put_u32(stream_no);
        buf.put_u32(0);
        RecordEncoder {
            format,
            prev_time: 0,
            count: 0,
        }
    }

    /// Appends one update (the caller keeps a record under `u32::MAX` updates: the store's
    /// [`MAX_RECORD_BYTES`] does).
    #[inline]
    pub fn push(&mut self, buf: &mut Vec<u8>, (key, val, time, diff): UpdateRef<'_>) {
        match self.format {
            RecordFormat::Fixed => {
                buf.put_u64(time);
                buf.put_i64(diff);
                buf.put_u32(key.len() as u32);
                buf.put_u32(val.len() as u32);
            }
            RecordFormat::Varint => {
                let mut header = [0u8; MAX_UPDATE_HEADER_BYTES];
                let mut at = put_varint(&mut header, 0, time_delta(self.prev_time, time));
                at = put_varint(&mut header, at, zigzag(diff));
                at = put_varint(&mut header, at, key.len() as u64);
                at = put_varint(&mut header, at, val.len() as u64);
                buf.extend_from_slice(&header[..at]);
            }
        }
        buf.extend_from_slice(key);
        buf.extend_from_slice(val);
        self.prev_time = time;
        self.count = self.count.wrapping_add(1);
    }

    /// Writes the update count into the record in `buf` (the one [`begin`](Self::begin) started).
    pub fn finish(self, buf: &mut [u8]) {
        buf[5..9].copy_from_slice(&self.count.to_le_bytes());
    }
}

/// A decoded record: the stream and its updates, borrowed from the payload.
#[derive(Debug)]
pub struct UpdatesRecord<'a> {
    /// The stream's number.
    pub stream_no: u32,
    /// The record's format (its tag).
    pub format: RecordFormat,
    /// The updates, in the order written.
    pub updates: Vec<UpdateRef<'a>>,
}

/// A decoded seal record: stream `stream_no`'s upper is at least `upper`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealRecord {
    /// The stream's number.
    pub stream_no: u32,
    /// The upper the seal reached (a time, exclusive).
    pub upper: u64,
}

/// A decoded record of any kind.
#[derive(Debug)]
pub enum Record<'a> {
    /// Tag 1 or 2: updates.
    Updates(UpdatesRecord<'a>),
    /// Tag 3: a seal.
    Seal(SealRecord),
}

impl Record<'_> {
    /// The number of the stream the record is about.
    pub fn stream_no(&self) -> u32 {
        match self {
            Record::Updates(r) => r.stream_no,
            Record::Seal(s) => s.stream_no,
        }
    }
}

/// The payload of a seal record (tag 3, [`SEAL_RECORD_BYTES`] bytes) for stream `stream_no` at `upper`.
pub fn encode_seal(stream_no: u32, upper: u64) -> [u8; SEAL_RECORD_BYTES] {
    let mut out = [0u8; SEAL_RECORD_BYTES];
    out[0] = TAG_SEAL;
    out[1..5].copy_from_slice(&stream_no.to_le_bytes());
    out[5..13].copy_from_slice(&upper.to_le_bytes());
    out
}

/// Decodes a payload read back from the log, of any kind (as [`decode_record`] does for updates).
///
/// Errors: as [`decode_record`]; for a seal record, [`Error::Corrupt`] if it is not exactly
/// [`SEAL_RECORD_BYTES`] long.
pub fn decode<'a>(payload: &'a [u8], what: &'a str) -> Result<Record<'a>> {
    if payload.first() != Some(&TAG_SEAL) {
        return decode_record(payload, what).map(Record::Updates);
    }
    let mut d = Decoder::new(payload, 0, what);
    d.u8("record tag")?;
    let stream_no = d.u32("stream number")?;
    let upper = d.u64("seal upper")?;
    d.finish("seal record")?;
    Ok(Record::Seal(SealRecord { stream_no, upper }))
}

/// Decodes a payload read back from the log, of either updates format (a seal record is an error here:
/// read every kind with [`decode`]). `what` names it in errors (file and LSN);
/// error offsets are within the payload.
///
/// Errors: [`Error::Corrupt`] for an unknown tag (also tag 3), a count the payload cannot hold, a truncated, overlong or
/// overflowing varint, a length past the payload's end, or trailing bytes.
pub fn decode_record<'a>(payload: &'a [u8], what: &'a str) -> Result<UpdatesRecord<'a>> {
    let mut d = Decoder::new(payload, 0, what);
    let tag = d.u8("record tag")?;
    let (format, min_update_bytes) = match tag {
        TAG_UPDATES => (RecordFormat::Fixed, UPDATE_HEADER_BYTES),
        TAG_VARINT_UPDATES => (RecordFormat::Varint, MIN_VARINT_UPDATE_BYTES),
        _ => return Err(Error::corrupt(what, 0, format!("unknown record tag {tag}"))),
    };
    let stream_no = d.u32("stream number")?;
    let count = d.u32("update count")? as usize;
    // Every update takes at least `min_update_bytes`, which bounds the allocation by the payload size.
    if count > d.remaining() / min_update_bytes {
        return Err(d.error(format!("update count {count} does not fit in the record")));
    }
    // At most 64 Ki updates reserved up front: a forged count within the payload's bound could otherwise
    // ask for about 12 times the payload (48 bytes an update, 4 payload bytes each) before any decodes.
    let mut updates = Vec::with_capacity(count.min(1 << 16));
    let mut prev_time = 0u64;
    for _ in 0..count {
        let (time, diff, key_len, val_len) = match format {
            RecordFormat::Fixed => (
                d.u64("time")?,
                d.i64("diff")?,
                d.u32("key length")? as usize,
                d.u32("value length")? as usize,
            ),
            RecordFormat::Varint => {
                let delta = unzigzag(read_varint(&mut d, "time")?);
                let time = prev_time.wrapping_add(delta as u64);
                let diff = unzigzag(read_varint(&mut d, "diff")?);
                // A length past `usize` is past the payload too: `bytes` reports it.
                let key_len = usize::try_from(read_varint(&mut d, "key length")?).unwrap_or(usize::MAX);
                let val_len = usize::try_from(read_varint(&mut d, "value length")?).unwrap_or(usize::MAX);
                (time, diff, key_len, val_len)
            }
        };
        let key = d.bytes(key_len, "key")?;
        let val = d.bytes(val_len, "value")?;
        updates.push((key, val, time, diff));
        prev_time = time;
    }
    d.finish("record")?;
    Ok(UpdatesRecord {
        stream_no,
        format,
        updates,
    })
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
