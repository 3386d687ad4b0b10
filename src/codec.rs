//! Typed keys and values over the byte strings stored on disk.
//!
//! Every encoding here is *order-preserving* and *self-delimiting*: for values `a < b` of one type,
//! `encode(a) < encode(b)` bytewise, and a value's encoding can be read off the front of a longer byte
//! string. Both properties compose, so tuples, options and vectors of codec types are codec types too, and
//! the byte order the store sorts by is the natural order of the typed values.
//!
//! Encodings (stable: they are part of the on-disk format, version 1):
//! - unsigned integers: fixed width, big-endian; signed integers: big-endian with the sign bit flipped;
//! - `bool`: one byte, 0 or 1; `()`: nothing;
//! - `Vec<u8>` and `String`: the bytes with each `0x00` written as `0x00 0xFF`, terminated by `0x00 0x01`;
//! - `Option<T>`: `0x00` for `None`, `0x01` then `T` for `Some`;
//! - `Vec<T>` (other `T`): each element preceded by `0x01`, terminated by `0x00`;
//! - tuples: the fields in order.

use crate::error::{Error, Result};

/// A type that can be stored as a key or a value.
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `buf`.
    fn encode(&self, buf: &mut Vec<u8>);

    /// Reads one value off the front of `bytes`, advancing it past the encoding.
    fn decode_from(bytes: &mut &[u8]) -> Result<Self>;

    /// The encoding of `self` as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.encode(&mut buf);
        buf
    }

    /// Decodes a value that must occupy all of `bytes`.
    fn decode(mut bytes: &[u8]) -> Result<Self> {
        let value = Self::decode_from(&mut bytes)?;
        if !bytes.is_empty() {
            return Err(Error::decode(format!(
                "{} trailing bytes after value",
                bytes.len()
            )));
        }
        Ok(value)
    }
}

fn take<'a>(bytes: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8]> {
    if bytes.len() < len {
        return Err(Error::decode(format!(
            "{what}: need {len} bytes, have {}",
            bytes.len()
        )));
    }
    let (head, tail) = bytes.split_at(len);
    *bytes = tail;
    Ok(head)
}

macro_rules! unsigned_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, buf: &mut Vec<u8>) {
                buf.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                let n = a.len();
                a.copy_from_slice(take(bytes, n, stringify!($t))?);
                Ok(<$t>::from_be_bytes(a))
            }
        }
    )*};
}
unsigned_codec!(u8, u16, u32, u64, u128);

macro_rules! signed_codec {
    ($($t:ty => $u:ty),*) => {$(
        impl Codec for $t {
            fn encode(&self, buf: &mut Vec<u8>) {
                // Flipping the sign bit maps i::MIN..=i::MAX onto 0..=u::MAX monotonically.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                buf.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                let flipped = <$u>::decode_from(bytes)?;
                Ok((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
        }
    )*};
}
signed_codec!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

impl Codec for bool {
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(*self as u8);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        match take(bytes, 1, "bool")?[0] {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(Error::decode(format!("bool byte {b}"))),
        }
    }
}

impl Codec for () {
    fn encode(&self, _buf: &mut Vec<u8>) {}
    fn decode_from(_bytes: &mut &[u8]) -> Result<Self> {
        Ok(())
    }
}

/// Writes `raw` escaped: `0x00` becomes `0x00 0xFF`, then the terminator `0x00 0x01`. The terminator sorts
/// below every escaped continuation, so a prefix sorts before its extensions.
fn encode_escaped(raw: &[u8], buf: &mut Vec<u8>) {
    for &b in raw {
        buf.push(b);
        if b == 0 {
            buf.push(0xFF);
        }
    }
    buf.extend_from_slice(&[0x00, 0x01]);
}

fn decode_escaped(bytes: &mut &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0 {
            out.push(b);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(0xFF) => {
                out.push(0);
                i += 2;
            }
            Some(0x01) => {
                *bytes = &bytes[i + 2..];
                return Ok(out);
            }
            Some(other) => return Err(Error::decode(format!("bad escape byte {other:#x} at {i}"))),
            None => break,
        }
    }
    Err(Error::decode("byte string without terminator"))
}

impl Codec for Vec<u8> {
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_escaped(self, buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        decode_escaped(bytes)
    }
}

impl Codec for String {
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_escaped(self.as_bytes(), buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        String::from_utf8(decode_escaped(bytes)?).map_err(|e| Error::decode(format!("invalid UTF-8: {e}")))
    }
}

impl<T: Codec> Codec for Option<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            None => buf.push(0),
            Some(v) => {
                buf.push(1);
                v.encode(buf);
            }
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        match take(bytes, 1, "option tag")?[0] {
            0 => Ok(None),
            1 => Ok(Some(T::decode_from(bytes)?)),
            b => Err(Error::decode(format!("option tag {b}"))),
        }
    }
}

/// A sequence of `T`, encoded element by element (each behind a `0x01`) and closed by `0x00`, which keeps
/// lexicographic order. (`Vec<u8>` has its own, denser, encoding above; use this wrapper for other `T`.)
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq<T>(pub Vec<T>);

impl<T: Codec> Codec for Seq<T> {
    fn encode(&self, buf: &mut Vec<u8>) {
        for v in &self.0 {
            buf.push(1);
            v.encode(buf);
        }
        buf.push(0);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let mut out = Vec::new();
        loop {
            match take(bytes, 1, "sequence tag")?[0] {
                0 => return Ok(Seq(out)),
                1 => out.push(T::decode_from(bytes)?),
                b => return Err(Error::decode(format!("sequence tag {b}"))),
            }
        }
    }
}

macro_rules! tuple_codec {
    ($($name:ident),+) => {
        impl<$($name: Codec),+> Codec for ($($name,)+) {
            #[allow(non_snake_case)]
            fn encode(&self, buf: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $($name.encode(buf);)+
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                Ok(($($name::decode_from(bytes)?,)+))
            }
        }
    };
}
tuple_codec!(A);
tuple_codec!(A, B);
tuple_codec!(A, B, C);
tuple_codec!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_order_preserved<T: Codec + Ord + std::fmt::Debug + Clone + PartialEq>(mut values: Vec<T>) {
        values.sort();
        let encoded: Vec<Vec<u8>> = values.iter().map(|v| v.to_bytes()).collect();
        for (i, w) in encoded.windows(2).enumerate() {
            assert!(
                w[0] <= w[1],
                "order broken between {:?} and {:?}",
                values[i],
                values[i + 1]
            );
            assert_eq!(w[0] == w[1], values[i] == values[i + 1]);
        }
        for (v, e) in values.iter().zip(&encoded) {
            assert_eq!(&T::decode(e).unwrap(), v);
        }
    }

    #[test]
    fn integers_keep_order() {
        assert_order_preserved(vec![0u64, 1, 255, 256, u64::MAX, 42]);
        assert_order_preserved(vec![i64::MIN, -1, 0, 1, i64::MAX, -300]);
        assert_order_preserved(vec![i8::MIN, -1, 0, 1, i8::MAX]);
        assert_order_preserved(vec![0u128, u128::MAX, 7]);
    }

    #[test]
    fn byte_strings_keep_order_inside_tuples() {
        let bytes = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![0, 1],
            vec![1],
            vec![0xFF],
            vec![0, 0xFF],
        ];
        assert_order_preserved(bytes.clone());
        let pairs: Vec<(Vec<u8>, u32)> = bytes
            .iter()
            .flat_map(|b| [(b.clone(), 0u32), (b.clone(), 9)])
            .collect();
        assert_order_preserved(pairs);
        let strings: Vec<(String, i32)> = ["", "a", "a\0", "ab", "b"]
            .iter()
            .map(|s| (s.to_string(), -1))
            .collect();
        assert_order_preserved(strings);
    }

    #[test]
    fn options_and_sequences() {
        assert_order_preserved(vec![None, Some(0u16), Some(9)]);
        assert_order_preserved(vec![Seq(vec![]), Seq(vec![1u32]), Seq(vec![1, 2]), Seq(vec![2])]);
        assert_order_preserved(vec![(true, ()), (false, ())]);
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(u64::decode(&[1, 2, 3]).is_err());
        assert!(u8::decode(&[1, 2]).is_err());
        assert!(String::decode(b"a").is_err());
        assert!(String::decode(&[0xC0, 0, 1]).is_err());
        assert!(Vec::<u8>::decode(&[0, 7]).is_err());
        assert!(bool::decode(&[2]).is_err());
        assert!(Option::<u8>::decode(&[3]).is_err());
    }
}
