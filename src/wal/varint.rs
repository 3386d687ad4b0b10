//! LEB128 varints and zig-zag signed integers, as the WAL's varint record payload (tag 2, FORMAT.md §4)
//! frames its updates.
//!
//! A varint is an unsigned 64-bit value in 7-bit groups, least significant first; every byte but the last
//! has bit 7 set. Invariant of the decoder: it accepts only the canonical (shortest) encoding of a value in
//! at most [`MAX_VARINT_BYTES`] bytes, so every accepted byte string re-encodes to itself. Overlong,
//! overflowing and truncated varints are [`Error::Corrupt`](crate::Error::Corrupt) at the varint's first
//! byte; nothing here panics or allocates.

use crate::encoding::Decoder;
use crate::error::Result;

/// Longest varint, in bytes: a `u64` needs ten 7-bit groups.
pub const MAX_VARINT_BYTES: usize = 10;

/// Bytes of the varint of `v`: 1 to [`MAX_VARINT_BYTES`].
#[inline]
pub fn varint_len(v: u64) -> usize {
    // Significant bits (at least 1, so that 0 takes one byte), 7 to a byte.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Writes the varint of `v` into `out` at `at`; returns the position just past it. `out` must have room
/// for [`varint_len`]`(v)` bytes from `at`.
#[inline]
pub fn put_varint(out: &mut [u8], mut at: usize, mut v: u64) -> usize {
    while v >= 0x80 {
        out[at] = (v as u8) | 0x80;
        v >>= 7;
        at += 1;
    }
    out[at] = v as u8;
    at + 1
}

/// Reads a varint; `what` names the field in errors.
///
/// Errors: [`Error::Corrupt`](crate::Error::Corrupt) at the varint's first byte if it is truncated (the
/// bytes end with bit 7 set), overlong (a final byte of zero after the first: a shorter encoding exists)
/// or overflows a `u64` (more than [`MAX_VARINT_BYTES`] bytes, or bits past the 64th).
pub fn read_varint(d: &mut Decoder<'_>, what: &str) -> Result<u64> {
    let start = d.offset();
    let mut v = 0u64;
    for i in 0..MAX_VARINT_BYTES {
        let Ok(b) = d.u8(what) else {
            return Err(d.error_at(start, format!("{what}: truncated varint")));
        };
        let group = u64::from(b & 0x7f);
        if i == MAX_VARINT_BYTES - 1 && group > 1 {
            return Err(d.error_at(start, format!("{what}: varint overflows u64")));
        }
        v |= group << (7 * i);
        if b & 0x80 == 0 {
            if b == 0 && i > 0 {
                return Err(d.error_at(start, format!("{what}: overlong varint")));
            }
            return Ok(v);
        }
    }
    Err(d.error_at(
        start,
        format!("{what}: varint overflows u64 (over {MAX_VARINT_BYTES} bytes)"),
    ))
}

/// Zig-zag: a signed value as an unsigned one whose varint is short for small magnitudes (0, -1, 1, -2 …
/// map to 0, 1, 2, 3 …). A bijection of `i64` onto `u64`.
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(v: u64) -> Vec<u8> {
        let mut out = [0u8; MAX_VARINT_BYTES];
        let end = put_varint(&mut out, 0, v);
        out[..end].to_vec()
    }

    fn decode(bytes: &[u8]) -> Result<u64> {
        let mut d = Decoder::new(bytes, 100, "f");
        let v = read_varint(&mut d, "x")?;
        d.finish("varint")?;
        Ok(v)
    }

    /// The offset and detail of a corruption error.
    fn corrupt_at(bytes: &[u8]) -> (u64, String) {
        match decode(bytes) {
            Err(crate::Error::Corrupt { file, offset, detail }) => {
                assert_eq!(file, "f");
                (offset, detail)
            }
            other => panic!("{bytes:?}: expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn known_encodings_and_lengths() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0]),
            (1, &[1]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(v, bytes) in cases {
            assert_eq!(encode(v), bytes, "{v}");
            assert_eq!(varint_len(v), bytes.len(), "{v}");
            assert_eq!(decode(bytes).unwrap(), v, "{v}");
        }
        for shift in 0..64 {
            let v = 1u64 << shift;
            for v in [v - 1, v, v + 1] {
                assert_eq!(encode(v).len(), varint_len(v), "{v}");
                assert_eq!(decode(&encode(v)).unwrap(), v);
            }
        }
    }

    #[test]
    fn zigzag_maps_small_magnitudes_to_small_values() {
        let cases = [
            (0i64, 0u64),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ];
        for (s, u) in cases {
            assert_eq!(zigzag(s), u, "{s}");
            assert_eq!(unzigzag(u), s, "{u}");
        }
    }

    #[test]
    fn truncated_varints_are_corruption_at_their_start() {
        for bytes in [&[][..], &[0x80], &[0xff, 0xff], &[0x80; 9]] {
            let (offset, detail) = corrupt_at(bytes);
            assert_eq!(offset, 100, "{bytes:?}");
            assert!(detail.contains("truncated"), "{detail}");
        }
    }

    #[test]
    fn overlong_varints_are_corruption() {
        for bytes in [
            &[0x80, 0x00][..],
            &[0x81, 0x80, 0x00],
            &[0xff, 0x80, 0x80, 0x80, 0x00],
        ] {
            let (offset, detail) = corrupt_at(bytes);
            assert_eq!(offset, 100, "{bytes:?}");
            assert!(detail.contains("overlong"), "{detail}");
        }
    }

    #[test]
    fn overflowing_varints_are_corruption() {
        // The tenth byte may hold bit 63 only.
        let mut bytes = vec![0xff; 9];
        bytes.push(0x02);
        let (offset, detail) = corrupt_at(&bytes);
        assert_eq!(offset, 100);
        assert!(detail.contains("overflows"), "{detail}");
        // Eleven bytes, whatever they hold.
        let mut bytes = vec![0x80; 10];
        bytes.push(0x01);
        assert!(corrupt_at(&bytes).1.contains("overflows"));
        let mut bytes = vec![0xff; 10];
        bytes.push(0x01);
        assert!(corrupt_at(&bytes).1.contains("overflows"));
    }

    proptest! {
        #[test]
        fn every_value_round_trips(v in any::<u64>(), s in any::<i64>()) {
            let bytes = encode(v);
            prop_assert_eq!(bytes.len(), varint_len(v));
            prop_assert_eq!(decode(&bytes).unwrap(), v);
            prop_assert_eq!(unzigzag(zigzag(s)), s);
            prop_assert_eq!(zigzag(unzigzag(v)), v);
        }

        #[test]
        fn arbitrary_bytes_decode_canonically_or_fail(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let mut d = Decoder::new(&bytes, 0, "f");
            if let Ok(v) = read_varint(&mut d, "x") {
                let used = d.offset() as usize;
                prop_assert_eq!(&encode(v)[..], &bytes[..used]);
            }
        }
    }
}
