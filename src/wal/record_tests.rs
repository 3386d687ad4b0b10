//! Tests of [`super`]: both formats round-trip, sizes are exact, every malformed payload is corruption.

use super::*;
use proptest::prelude::*;

const BOTH: [RecordFormat; 2] = [RecordFormat::Fixed, RecordFormat::Varint];

/// A record of `updates` in `format`, checked against the size the write path computes.
fn encode(format: RecordFormat, stream_no: u32, updates: &[UpdateRef<'_>]) -> Vec<u8> {
    let mut size = RECORD_PREFIX_BYTES;
    let mut prev_time = 0;
    for &u in updates {
        size += format.update_bytes(prev_time, u);
        prev_time = u.2;
    }
    let mut buf = Vec::with_capacity(size);
    let mut enc = RecordEncoder::begin(&mut buf, stream_no, format);
    for &u in updates {
        enc.push(&mut buf, u);
    }
    enc.finish(&mut buf);
    assert_eq!(buf.len(), size, "exact size of {format:?}");
    assert_eq!(buf.capacity(), size, "no growth past the reserved size");
    buf
}

/// The offset and detail of the corruption `payload` decodes to.
fn corrupt_at(payload: &[u8]) -> (u64, String) {
    match decode_record(payload, "wal/0.wal record at LSN 7") {
        Err(Error::Corrupt { file, offset, detail }) => {
            assert_eq!(file, "wal/0.wal record at LSN 7");
            (offset, detail)
        }
        other => panic!("{payload:?}: expected Corrupt, got {other:?}"),
    }
}

#[test]
fn both_formats_round_trip() {
    let updates: Vec<UpdateRef<'_>> = vec![
        (b"k", b"v1", 3, -2),
        (b"", b"", u64::MAX - 1, 1),
        (b"key", b"", 0, i64::MIN),
        (b"", b"val", u64::MAX, i64::MAX),
    ];
    for format in BOTH {
        let buf = encode(format, 7, &updates);
        assert_eq!(buf[0], format.tag());
        let r = decode_record(&buf, "t").unwrap();
        assert_eq!((r.stream_no, r.format), (7, format));
        assert_eq!(r.updates, updates);
    }
}

#[test]
fn varint_records_have_known_bytes() {
    let buf = encode(
        RecordFormat::Varint,
        0x0102_0304,
        &[(b"ab", b"c", 300, 1), (b"", b"", 299, -1), (b"", b"", 299, 0)],
    );
    #[rustfmt::skip]
    let expected = [
        2, 4, 3, 2, 1, 3, 0, 0, 0,                      // tag, stream_no, count
        0xd8, 0x04, 2, 2, 1, b'a', b'b', b'c',          // time +300, diff +1, lengths 2 and 1
        1, 1, 0, 0,                                     // time -1, diff -1, empty key and val
        0, 0, 0, 0,                                     // same time, diff 0
    ];
    assert_eq!(buf, expected);
}

#[test]
fn fixed_records_have_known_bytes() {
    // As every release before WAL version 4 wrote them.
    let buf = encode(RecordFormat::Fixed, 5, &[(b"k", b"vv", 9, -1)]);
    let mut expected = vec![1, 5, 0, 0, 0, 1, 0, 0, 0];
    expected.extend_from_slice(&9u64.to_le_bytes());
    expected.extend_from_slice(&(-1i64).to_le_bytes());
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&2u32.to_le_bytes());
    expected.extend_from_slice(b"kvv");
    assert_eq!(buf, expected);
}

#[test]
fn a_typical_update_takes_four_bytes_of_framing() {
    let (key, val) = ([7u8; 16], [9u8; 100]);
    let u = (&key[..], &val[..], 1_700_000_000_000, 1);
    // The first update of a record carries the whole time; the rest of a write at one time, a zero delta.
    assert_eq!(RecordFormat::Varint.update_bytes(0, u), 6 + 3 + 116);
    assert_eq!(RecordFormat::Varint.update_bytes(u.2, u), 4 + 116);
    assert_eq!(RecordFormat::Fixed.update_bytes(u.2, u), 24 + 116);
}

#[test]
fn truncated_records_are_corruption() {
    for format in BOTH {
        let buf = encode(format, 1, &[(b"key", b"val", 1 << 40, -300), (b"", b"x", 2, 1)]);
        for cut in 0..buf.len() {
            assert!(
                decode_record(&buf[..cut], "t").unwrap_err().is_corruption(),
                "{format:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn unknown_tags_and_trailing_bytes_are_corruption() {
    for tag in [0u8, 3, 0xff] {
        let mut buf = encode(RecordFormat::Varint, 1, &[]);
        buf[0] = tag;
        let (offset, detail) = corrupt_at(&buf);
        assert_eq!(offset, 0);
        assert!(detail.contains("unknown record tag"), "{detail}");
    }
    for format in BOTH {
        let mut buf = encode(format, 1, &[(b"k", b"v", 1, 1)]);
        let end = buf.len() as u64;
        buf.push(0);
        let (offset, detail) = corrupt_at(&buf);
        assert_eq!(offset, end);
        assert!(detail.contains("trailing"), "{detail}");
    }
}

#[test]
fn seal_records_have_known_bytes_and_round_trip() {
    let payload = encode_seal(0x0102_0304, 0x1122_3344_5566_7788);
    assert_eq!(
        payload,
        [3, 4, 3, 2, 1, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]
    );
    match decode(&payload, "t").unwrap() {
        Record::Seal(seal) => assert_eq!(
            seal,
            SealRecord {
                stream_no: 0x0102_0304,
                upper: 0x1122_3344_5566_7788
            }
        ),
        other => panic!("decoded {other:?}"),
    }
    // `decode` reads updates records as `decode_record` does.
    let updates = encode(RecordFormat::Varint, 9, &[(b"k", b"v", 5, -1)]);
    match decode(&updates, "t").unwrap() {
        Record::Updates(r) => assert_eq!((r.stream_no, r.updates), (9, vec![(&b"k"[..], &b"v"[..], 5, -1)])),
        other => panic!("decoded {other:?}"),
    }
}

#[test]
fn short_or_long_seal_records_are_corruption() {
    let payload = encode_seal(1, 2);
    for cut in 1..payload.len() {
        let e = decode(&payload[..cut], "wal/0.wal record at LSN 7").unwrap_err();
        assert!(e.is_corruption(), "{e}");
    }
    let mut long = payload.to_vec();
    long.push(0);
    match decode(&long, "t") {
        Err(Error::Corrupt { offset, detail, .. }) => {
            assert_eq!(offset, SEAL_RECORD_BYTES as u64);
            assert!(detail.contains("trailing"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn counts_the_payload_cannot_hold_are_corruption_before_allocating() {
    for format in BOTH {
        let mut buf = encode(format, 1, &[(b"", b"", 0, 0)]);
        for count in [2, u32::MAX] {
            buf[5..9].copy_from_slice(&count.to_le_bytes());
            let (offset, detail) = corrupt_at(&buf);
            assert_eq!(offset, 9);
            assert!(detail.contains("does not fit"), "{detail}");
        }
    }
    // A count the minimum size allows, with too few updates behind it: the missing one is a short read.
    let mut buf = encode(RecordFormat::Varint, 1, &[(b"abcdefgh", b"", 0, 1)]);
    buf[5..9].copy_from_slice(&3u32.to_le_bytes());
    assert_eq!(corrupt_at(&buf), (21, "time: truncated varint".to_string()));
}

/// A varint record of one update whose framing is `framing`, then `tail`.
fn varint_record(framing: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut buf = vec![TAG_VARINT_UPDATES, 0, 0, 0, 0, 1, 0, 0, 0];
    buf.extend_from_slice(framing);
    buf.extend_from_slice(tail);
    buf
}

#[test]
fn malformed_varints_are_corruption_at_their_first_byte() {
    let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
    let eleven = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
    // Each field in turn: the fields before it valid (one byte each), the field malformed.
    let fields = ["time", "diff", "key length", "value length"];
    for (i, field) in fields.iter().enumerate() {
        let at = 9 + i as u64;
        let prefix = vec![0u8; i];
        let cases: [(&[u8], &str); 4] = [
            (&[0x80, 0x00, 0, 0, 0, 0], "overlong"),
            (&overflow, "overflows"),
            (&eleven, "overflows"),
            (&[0x80, 0x80, 0x80, 0x80], "truncated"),
        ];
        for (bad, why) in cases {
            let buf = varint_record(&[&prefix[..], bad].concat(), &[]);
            let (offset, detail) = corrupt_at(&buf);
            assert_eq!(offset, at, "{field} {why}: {detail}");
            assert!(
                detail.starts_with(field) && detail.contains(why),
                "{field} {why}: {detail}"
            );
        }
    }
}

#[test]
fn lengths_past_the_payload_are_corruption() {
    // A key length of u64::MAX: past `usize` on 32-bit platforms and past the payload on all.
    let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    let buf = varint_record(&[&[0, 2][..], &huge, &[0]].concat(), b"abcd");
    let (offset, detail) = corrupt_at(&buf);
    assert_eq!(offset, 9 + 2 + 10 + 1);
    assert!(detail.starts_with("key"), "{detail}");
    // A val length one past what is left.
    let buf = varint_record(&[0, 2, 1, 4], b"abcd");
    let (offset, detail) = corrupt_at(&buf);
    assert_eq!(offset, 14);
    assert!(detail.starts_with("value"), "{detail}");
}

/// One update with its bytes owned, biased towards the extremes.
fn arb_update() -> impl Strategy<Value = OwnedUpdate> {
    let time = prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1u64 << 63),
        0u64..20,
        any::<u64>()
    ];
    let diff = prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0i64), -3i64..3, any::<i64>()];
    let bytes = || prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 0..200)];
    (bytes(), bytes(), time, diff)
}

proptest! {
    /// The model: a record is its list of updates. Encoded in either format it decodes to exactly that
    /// list, takes exactly the bytes `update_bytes` says, and every proper prefix or one-byte change of it
    /// either fails as corruption or decodes to a canonical record (one that re-encodes to those bytes).
    #[test]
    fn records_match_the_model(
        updates in proptest::collection::vec(arb_update(), 0..12),
        stream_no in any::<u32>(),
        flip in any::<(usize, u8)>(),
    ) {
        let refs: Vec<UpdateRef<'_>> = updates.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)).collect();
        for format in BOTH {
            let buf = encode(format, stream_no, &refs);
            let r = decode_record(&buf, "t").unwrap();
            prop_assert_eq!((r.stream_no, r.format), (stream_no, format));
            prop_assert_eq!(&r.updates, &refs);
            let cut = flip.0 % buf.len();
            prop_assert!(decode_record(&buf[..cut], "t").unwrap_err().is_corruption());
            let mut changed = buf.clone();
            changed[cut] ^= flip.1.max(1);
            match decode_record(&changed, "t") {
                Ok(r) => prop_assert_eq!(encode(r.format, r.stream_no, &r.updates), changed),
                Err(e) => prop_assert!(e.is_corruption()),
            }
        }
    }
}
