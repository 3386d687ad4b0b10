//! The payload of a WAL record as the store writes it: a batch of updates to one stream.
//!
//! Layout (version 1, little-endian): tag `u8` = 1, `stream_no` `u32`, `count` `u32`, then `count`
//! updates, each `time` `u64`, `diff` `i64`, key and val lengths `u32`, key and val bytes (FORMAT.md §4,
//! "payload").
//! A record is applied whole or not at all: the log's record checksum covers it.

use crate::encoding::{Decoder, PutLe};
use crate::error::{Error, Result};

/// Tag of a record holding updates.
pub const TAG_UPDATES: u8 = 1;

/// Largest key, in bytes.
pub const MAX_KEY_BYTES: usize = 16 << 20;
/// Largest value, in bytes.
pub const MAX_VAL_BYTES: usize = 64 << 20;
/// Largest record payload, in bytes: one `write` call must fit.
pub const MAX_RECORD_BYTES: usize = 512 << 20;

/// Bytes of a record before its first update: tag, stream number, count.
pub const RECORD_PREFIX_BYTES: usize = 9;
/// Bytes of an update before its key: time, diff, key length, val length.
pub const UPDATE_HEADER_BYTES: usize = 24;

/// One update borrowed from somewhere: `(key, val, time, diff)`.
pub type UpdateRef<'a> = (&'a [u8], &'a [u8], u64, i64);

/// One owned update: `(key, val, time, diff)`.
pub type OwnedUpdate = (Vec<u8>, Vec<u8>, u64, i64);

/// Starts a record for `stream_no` in `buf` (cleared first). Finish it with [`push_update`] and
/// [`finish_record`].
pub fn begin_record(buf: &mut Vec<u8>, stream_no: u32) {
    buf.clear();
    buf.push(TAG_UPDATES);
    buf.put_u32(stream_no);
    buf.put_u32(0);
}

/// Appends one update to a record begun by [`begin_record`].
pub fn push_update(buf: &mut Vec<u8>, (key, val, time, diff): UpdateRef<'_>) {
    buf.put_u64(time);
    buf.put_i64(diff);
    buf.put_u32(key.len() as u32);
    buf.put_u32(val.len() as u32);
    buf.extend_from_slice(key);
    buf.extend_from_slice(val);
}

/// Writes the update count into a record begun by [`begin_record`].
pub fn finish_record(buf: &mut [u8], count: u32) {
    buf[5..9].copy_from_slice(&count.to_le_bytes());
}

/// A decoded record: the stream and its updates, borrowed from the payload.
#[derive(Debug)]
pub struct UpdatesRecord<'a> {
    /// The stream's number.
    pub stream_no: u32,
    /// The updates, in the order written.
    pub updates: Vec<UpdateRef<'a>>,
}

/// Decodes a payload read back from the log. `what` names it in errors (file and LSN).
pub fn decode_record<'a>(payload: &'a [u8], what: &'a str) -> Result<UpdatesRecord<'a>> {
    let mut d = Decoder::new(payload, 0, what);
    let tag = d.u8("record tag")?;
    if tag != TAG_UPDATES {
        return Err(Error::corrupt(what, 0, format!("unknown record tag {tag}")));
    }
    let stream_no = d.u32("stream number")?;
    let count = d.u32("update count")? as usize;
    // Each update takes at least 24 bytes, which bounds the allocation by the payload size.
    if count > d.remaining() / 24 {
        return Err(d.error(format!("update count {count} does not fit in the record")));
    }
    let mut updates = Vec::with_capacity(count);
    for _ in 0..count {
        let time = d.u64("time")?;
        let diff = d.i64("diff")?;
        let key_len = d.u32("key length")? as usize;
        let val_len = d.u32("value length")? as usize;
        let key = d.bytes(key_len, "key")?;
        let val = d.bytes(val_len, "value")?;
        updates.push((key, val, time, diff));
    }
    d.finish("record")?;
    Ok(UpdatesRecord { stream_no, updates })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut buf = Vec::new();
        begin_record(&mut buf, 7);
        push_update(&mut buf, (b"k", b"v1", 3, -2));
        push_update(&mut buf, (b"", b"", u64::MAX - 1, 1));
        finish_record(&mut buf, 2);
        let r = decode_record(&buf, "t").unwrap();
        assert_eq!(r.stream_no, 7);
        assert_eq!(
            r.updates,
            vec![
                (&b"k"[..], &b"v1"[..], 3, -2),
                (&b""[..], &b""[..], u64::MAX - 1, 1)
            ]
        );
    }

    #[test]
    fn truncated_or_lying_records_are_corruption() {
        let mut buf = Vec::new();
        begin_record(&mut buf, 1);
        push_update(&mut buf, (b"key", b"val", 1, 1));
        finish_record(&mut buf, 1);
        for cut in 0..buf.len() {
            assert!(decode_record(&buf[..cut], "t").is_err(), "cut at {cut}");
        }
        finish_record(&mut buf, u32::MAX);
        assert!(decode_record(&buf, "t").unwrap_err().is_corruption());
    }
}
