//! An order-preserving serde format, so any `Serialize + Deserialize` type can be a key or a val.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
//! struct Order {
//!     customer: String,
//!     item: u32,
//! }
//! ddpersist::serde_codec!(Order);
//!
//! use ddpersist::Codec;
//! let a = Order { customer: "ann".into(), item: 7 };
//! let b = Order { customer: "bob".into(), item: 1 };
//! assert!(a < b && a.to_bytes() < b.to_bytes());
//! assert_eq!(Order::decode(&a.to_bytes()).unwrap(), a);
//! ```
//!
//! [`serde_codec!`](crate::serde_codec) implements [`Codec`](super::Codec) for the type through this
//! format, so the type itself (not a wrapper) is the collection's key or val. Generic types take the form
//! `serde_codec!(impl<T> Pair<T>);`.
//!
//! # The format (version [`FORMAT_VERSION`])
//!
//! The bytes of the serde data model, chosen so that the byte order of encodings is the order that
//! `#[derive(PartialOrd, Ord)]` gives the type, and so that they agree with the std [`Codec`](super::Codec)
//! encodings wherever both apply (a struct `{ a: u32, b: String }` is encoded as the tuple `(u32, String)`;
//! `Vec<u8>` differs, see the last point under Limits, and so do the std types whose serde form is not
//! their `Codec` form: `Reverse<T>`, serialized as `T`, and the IP and socket addresses, serialized as
//! their display strings):
//!
//! | serde type | bytes |
//! | --- | --- |
//! | `bool` | one byte, `00` or `01` |
//! | `u8`..`u128` | big-endian, fixed width (`usize` is serialized by serde as `u64`: 8 bytes) |
//! | `i8`..`i128` | big-endian, fixed width, sign bit flipped |
//! | `f32`, `f64` | big-endian bits, sign bit flipped if positive, all bits flipped if negative |
//! | `char` | the code point as a `u32` |
//! | `str`, `bytes` | each byte, `00` written as `00 FF`; then `00 01` |
//! | `none` / `some(v)` | `00` / `01` then `v` |
//! | `unit`, unit struct | nothing |
//! | newtype struct | the inner value |
//! | seq (`Vec<T>`, sets, ...) | each element behind `01`, then `00` |
//! | map | each entry as `01`, key, value; then `00` |
//! | tuple, tuple struct, struct, arrays | the fields in order, with no names, lengths or framing |
//! | enum variant | the variant index (one byte if below 255, else `FF` and the index as a big-endian `u32`), then the payload as a tuple / struct / newtype / nothing |
//!
//! Every encoding is canonical: decoding rejects anything the encoder would not write (a bool byte other
//! than 0 or 1, an invalid char, a bad escape, a variant index in the long form below 255, trailing bytes
//! of [`from_bytes`]). It is not self-describing: the type decides how the bytes are read.
//!
//! # What keeps the order
//!
//! The byte order agrees with the derived `Ord` because serde serializes fields in declaration order and
//! enum variants by declaration index, as derived `Ord` compares them; sequences and strings compare
//! lexicographically with a prefix first (the terminators sort lowest). Floats order as
//! [`f64::total_cmp`], which distinguishes `-0.0` from `0.0` and NaNs from each other. It does not hold:
//! - for an enum with explicit discriminants in another order than its variants' (`enum P { High = 3,
//!   Low = 1 }`): derived `Ord` follows the discriminants, serde the declaration index;
//! - for a field of a type whose serde form orders unlike its `Ord`: `std::cmp::Reverse<T>` (serialized
//!   as `T`), `PathBuf` (serialized as its string; `Ord` and `Eq` compare components, so `"a//b" ==
//!   "a/b"`), the IP and socket addresses (serialized as display strings: `"10.0.0.1" < "9.0.0.1"`);
//!   these types have a `Codec` of their own, which keeps their order: use them as keys or vals
//!   directly, or in tuples, not as fields of a `serde_codec!` type;
//! - when `Ord` is written by hand to differ from the fields' order, or compares something serde skips
//!   (`#[serde(skip)]`: unequal values share an encoding).
//!
//! The arranging and persisting operators (`arrange_persisted`, `persist`) check neighbouring input
//! updates' encodings against their `Ord` and refuse such a type with [`Error::BadInput`] (`operators`),
//! rather than serve an arrangement that sorts or groups unlike DD's. `upsert_persisted`'s state is keyed
//! by encodings and its output is a collection, so order does not matter there, equality does: it
//! checks each time's keys (each decodes back to itself; `Ord`-equal keys encode alike) and refuses a key
//! type whose encoding loses what `Eq` compares (`#[serde(skip)]`) or splits what it equates. The store
//! API (`Store::write`) does not check.
//!
//! # Limits
//!
//! - Serde attributes that need a self-describing format fail to decode with [`Error::Decode`]:
//!   `#[serde(flatten)]`, untagged and internally tagged enums, `deserialize_any`.
//! - `#[serde(skip_serializing_if = ...)]` cannot be encoded (the reader could not know a field is missing).
//! - Nesting (options, sequences, maps, structs, tuples, enums inside each other) is limited to
//!   [`MAX_DEPTH`] levels, so a recursive type decoded from bad bytes cannot exhaust the stack.
//! - Maps decode entries in the order stored and do not check it: a map's bytes are only canonical as
//!   written by the encoder (a `BTreeMap` writes its keys in order).
//! - `Vec<u8>` is a serde sequence (`01 b` per byte); with `serde_bytes` it is the denser escaped string,
//!   as `Codec` writes `Vec<u8>`.

use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;

mod decoder;
mod encoder;

/// Version of the byte format above. Encodings written by this version read the same in every later one:
/// a change to the bytes would be a new format with a new name, never a change to this one.
pub const FORMAT_VERSION: u32 = 1;

/// How deep containers (options, newtypes, sequences, maps, tuples, structs, enums) may nest in one value.
pub const MAX_DEPTH: usize = 128;

/// The types [`serde_codec!`](crate::serde_codec) accepts: serializable and deserializable without
/// borrowing from the input.
pub trait SerdeType: Serialize + DeserializeOwned {}

impl<T: Serialize + DeserializeOwned> SerdeType for T {}

/// Appends the encoding of `value` to `buf`. Fails (leaving `buf` as it was) only when the value's
/// `Serialize` impl fails, uses `skip_serializing_if`, or nests deeper than [`MAX_DEPTH`].
pub fn encode_into<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) -> Result<()> {
    let start = buf.len();
    let mut enc = encoder::Encoder::new(std::mem::take(buf));
    let result = value.serialize(&mut enc);
    *buf = enc.into_inner();
    result.map_err(|e| {
        buf.truncate(start);
        Error::bad_input(format!("cannot encode a {}: {e}", std::any::type_name::<T>()))
    })
}

/// The encoding of `value` as a new vector (see [`encode_into`] for when it fails).
pub fn to_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Reads one value off the front of `bytes`, advancing it past the encoding.
pub fn decode_from<T: DeserializeOwned>(bytes: &mut &[u8]) -> Result<T> {
    let mut dec = decoder::Decoder::new(bytes);
    let value = T::deserialize(&mut dec).map_err(|e| Error::decode(e.0))?;
    *bytes = dec.rest();
    Ok(value)
}

/// Decodes a value that must occupy all of `bytes`.
pub fn from_bytes<T: DeserializeOwned>(mut bytes: &[u8]) -> Result<T> {
    let value = decode_from(&mut bytes)?;
    if !bytes.is_empty() {
        return Err(Error::decode(format!(
            "{} trailing bytes after value",
            bytes.len()
        )));
    }
    Ok(value)
}

/// [`encode_into`] for [`Codec::encode`](super::Codec::encode), which cannot return an error.
///
/// # Panics
///
/// When [`encode_into`] fails: the value's own `Serialize` impl returned an error (no derived impl does,
/// but e.g. a poisoned `Mutex` or a non-UTF-8 `PathBuf` field can), it uses `skip_serializing_if`, or it
/// nests deeper than [`MAX_DEPTH`]. Such a value has no encoding, and storing other bytes for it would
/// lose it silently.
#[doc(hidden)]
pub fn encode_or_panic<T: Serialize + ?Sized>(value: &T, buf: &mut Vec<u8>) {
    if let Err(e) = encode_into(value, buf) {
        panic!("ddpersist::serde_codec: {e}");
    }
}

/// Implements [`Codec`](crate::Codec) for types with serde's `Serialize` and `Deserialize`, through the
/// order-preserving format of [`ordered_serde`](crate::codec::ordered_serde).
///
/// ```
/// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
/// enum Event { Click { x: i32, y: i32 }, Key(char) }
///
/// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
/// struct Tagged<T> { tag: u8, value: T }
///
/// #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
/// struct Order { id: u64, cents: u64, note: String }
///
/// ddpersist::serde_codec!(Event);
/// ddpersist::serde_codec!(impl<T> Tagged<T>);
/// ddpersist::serde_codec!(Order as "Order/v2");
///
/// use ddpersist::Codec;
/// let e = Tagged { tag: 1, value: Event::Key('x') };
/// assert_eq!(Tagged::<Event>::decode(&e.to_bytes()).unwrap(), e);
/// assert_eq!(Event::schema(), "serde Event");
/// assert_eq!(Order::schema(), "serde Order/v2");
/// ```
///
/// Several non-generic types may be listed at once: `serde_codec!(A, B, C);`. A stream records the
/// name of its key's and val's encodings ([`Codec::schema`](crate::Codec::schema)): `serde T` for
/// `serde_codec!(T)`, so give `serde_codec!(T as "name")` a new name when `T`'s fields change (the
/// stream's old contents do not decode as the new type). The type must be one of the
/// calling crate's own (Rust's orphan rule): a type from another crate needs a newtype, e.g.
/// `#[derive(Serialize, Deserialize)] #[serde(transparent)] struct Day(chrono::NaiveDate);`.
///
/// The generated `encode` panics for the rare values serde cannot encode in this format (see
/// [`encode_or_panic`](crate::codec::ordered_serde::encode_or_panic)); decoding returns errors.
#[macro_export]
macro_rules! serde_codec {
    (impl<$($g:ident),+ $(,)?> $t:ty) => {
        impl<$($g),+> $crate::Codec for $t
        where
            $t: $crate::codec::ordered_serde::SerdeType,
        {
            fn schema() -> ::std::string::String {
                ::std::format!("serde {}", ::std::any::type_name::<Self>())
            }
            fn encode(&self, buf: &mut ::std::vec::Vec<u8>) {
                $crate::codec::ordered_serde::encode_or_panic(self, buf)
            }
            fn decode_from(bytes: &mut &[u8]) -> $crate::Result<Self> {
                $crate::codec::ordered_serde::decode_from(bytes)
            }
        }
    };
    ($t:ty as $name:literal) => {
        impl $crate::Codec for $t {
            fn schema() -> ::std::string::String {
                ::std::string::String::from(concat!("serde ", $name))
            }
            fn encode(&self, buf: &mut ::std::vec::Vec<u8>) {
                $crate::codec::ordered_serde::encode_or_panic(self, buf)
            }
            fn decode_from(bytes: &mut &[u8]) -> $crate::Result<Self> {
                $crate::codec::ordered_serde::decode_from(bytes)
            }
        }
    };
    ($($t:ty),+ $(,)?) => {$(
        impl $crate::Codec for $t {
            fn schema() -> ::std::string::String {
                ::std::string::String::from(concat!("serde ", stringify!($t)))
            }
            fn encode(&self, buf: &mut ::std::vec::Vec<u8>) {
                $crate::codec::ordered_serde::encode_or_panic(self, buf)
            }
            fn decode_from(bytes: &mut &[u8]) -> $crate::Result<Self> {
                $crate::codec::ordered_serde::decode_from(bytes)
            }
        }
    )+};
}

/// The error type the serializer and deserializer report through serde; converted to [`Error`] at the
/// public functions.
#[derive(Debug)]
pub(crate) struct SerdeError(pub(crate) String);

impl fmt::Display for SerdeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SerdeError {}

impl serde::ser::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerdeError(msg.to_string())
    }
}

impl serde::de::Error for SerdeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SerdeError(msg.to_string())
    }
}

impl From<Error> for SerdeError {
    fn from(e: Error) -> Self {
        match e {
            Error::Decode { detail } => SerdeError(detail),
            other => SerdeError(other.to_string()),
        }
    }
}

/// Appends an enum variant index: one byte below 255, else `0xFF` and the index as a big-endian `u32`.
fn encode_variant(index: u32, buf: &mut Vec<u8>) {
    match u8::try_from(index) {
        Ok(b) if b < 0xFF => buf.push(b),
        _ => {
            buf.push(0xFF);
            buf.extend_from_slice(&index.to_be_bytes());
        }
    }
}

/// Reads an enum variant index written by [`encode_variant`], rejecting the long form below 255.
fn decode_variant(bytes: &mut &[u8]) -> Result<u32> {
    let b = super::take(bytes, 1, "variant index")?[0];
    if b < 0xFF {
        return Ok(b as u32);
    }
    let index = u32::from_be_bytes(super::take_array(bytes, "variant index")?);
    if index < 0xFF {
        return Err(Error::decode(format!("variant index {index} in the long form")));
    }
    Ok(index)
}
