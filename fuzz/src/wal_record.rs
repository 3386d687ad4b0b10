//! The `wal_record` target's check: a WAL record decoded from arbitrary bytes re-encodes to exactly them, in
//! its own format, and to the same updates in the other.

use ddpersist::wal::record::{
    decode, decode_record, encode_seal, Record, RecordEncoder, RecordFormat, RECORD_PREFIX_BYTES, TAG_SEAL,
};

/// `decode_record` on arbitrary bytes (both updates tags: fixed-width and varint framing; tag 3, a seal
/// record, through `decode`); a decoded record
/// re-encodes to exactly the input (the encoding is canonical: the count is exact, nothing may trail, every
/// varint is as short as can be) and, in the other format, to the same updates.
pub fn check_wal_record(data: &[u8]) {
    // Tag 3, a seal record: decodes only from exactly its 13 bytes, and re-encodes to them.
    if data.first() == Some(&TAG_SEAL) {
        match decode(data, "fuzz record") {
            Ok(Record::Seal(seal)) => assert_eq!(&encode_seal(seal.stream_no, seal.upper)[..], data),
            Ok(other) => panic!("tag 3 decoded as {other:?}"),
            Err(e) => assert!(e.is_corruption(), "decode: unexpected kind of error: {e:?}"),
        }
        return;
    }
    let rec = match decode_record(data, "fuzz record") {
        Ok(r) => r,
        Err(e) => {
            assert!(
                e.is_corruption(),
                "decode_record: unexpected kind of error: {e:?}"
            );
            return;
        }
    };
    // Both formats: its own re-encodes to exactly the input, with the size `update_bytes` computes (as the
    // store's write path sizes a record before encoding it); the other decodes to the same updates.
    for format in [rec.format, other_format(rec.format)] {
        let mut size = RECORD_PREFIX_BYTES;
        let mut prev_time = 0;
        for &u in &rec.updates {
            size += format.update_bytes(prev_time, u);
            prev_time = u.2;
        }
        let mut buf = Vec::new();
        let mut encoder = RecordEncoder::begin(&mut buf, rec.stream_no, format);
        for &u in &rec.updates {
            encoder.push(&mut buf, u);
        }
        encoder.finish(&mut buf);
        assert_eq!(buf.len(), size, "{format:?} record size");
        if format == rec.format {
            assert_eq!(buf, data, "record does not re-encode to its bytes");
        } else {
            let again = decode_record(&buf, "re-encoded record").expect("a re-encoded record decodes");
            assert_eq!((again.stream_no, again.format), (rec.stream_no, format));
            assert_eq!(
                again.updates, rec.updates,
                "{format:?} record changes the updates"
            );
        }
    }
}

fn other_format(format: RecordFormat) -> RecordFormat {
    match format {
        RecordFormat::Fixed => RecordFormat::Varint,
        RecordFormat::Varint => RecordFormat::Fixed,
    }
}
