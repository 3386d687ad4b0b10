//! Typed keys and values over the byte strings stored on disk.
//!
//! Every encoding here is *order-preserving* and *self-delimiting*: for values `a < b` of one type,
//! `encode(a) < encode(b)` bytewise, and a value's encoding can be read off the front of a longer byte
//! string. The contract a `Codec` of a key or val type must keep (the persisted operators match keys by
//! their bytes, as DD's arrangements match them by `Ord`): values equal under `Ord` encode to equal bytes,
//! and order as `Ord` does. A hand-written `Ord` coarser than the data (a case-insensitive key) breaks it:
//! `"Apple"` and `"apple"` are one key to DD and two here, so a join finds no match where DD's finds one;
//! normalise such keys (lowercase them) before they are persisted. The persisting operators catch a
//! broken contract where two updates they compare disagree (`BadInput`, frontier held), not every time
//! (found by an adversarial test). Both properties compose, so tuples, options, vectors and arrays of codec types are codec types
//! too, and the byte order the store sorts by is the natural order of the typed values.
//!
//! Encodings (stable: they are part of the on-disk format, version 1; FORMAT.md §1 has the bytes):
//! - unsigned integers: fixed width, big-endian; signed integers: big-endian with the sign bit flipped;
//! - `usize` / `isize`: as `u64` / `i64` (8 bytes on every platform, so stores move between 32- and 64-bit
//!   machines; a value that does not fit the platform's `usize` is a decode error there);
//! - `char`: its code point as a `u32`;
//! - `f32` / `f64`: the bits, big-endian, with the sign bit flipped for positive values and every bit flipped
//!   for negative ones, which orders them as [`f64::total_cmp`] does (`-NaN < -inf < ... < -0.0 < +0.0 <
//!   ... < +inf < +NaN`); every bit pattern, NaN payloads included, decodes to itself;
//! - `bool`: one byte, 0 or 1; `()`: nothing;
//! - `Vec<u8>` and `String`: the bytes with each `0x00` written as `0x00 0xFF`, terminated by `0x00 0x01`;
//! - `Option<T>`: `0x00` for `None`, `0x01` then `T` for `Some`;
//! - `Vec<T>` (other `T`) and [`Seq<T>`]: each element preceded by `0x01`, terminated by `0x00`;
//! - tuples (up to 8 fields) and arrays `[T; N]`: the fields in order; `Box`, `Rc`, `Arc`: the value;
//! - `Reverse<T>`: `T`'s encoding with every bit inverted; `Wrapping<T>`: `T`'s; `BTreeSet<T>`,
//!   `BTreeMap<K, V>` (entries as `(K, V)`) and `VecDeque<T>`: their elements in order, each behind
//!   `0x01`, then `0x00` (as `Vec<T>` for `T` other than `u8`, `Seq<T>` for every `T`);
//!   `Result<T, E>`: `0x00` then `T` or `0x01` then `E`; `Duration`: seconds `u64`, nanoseconds `u32`;
//!   `Ipv4Addr`, `Ipv6Addr`: the octets; `IpAddr`, `SocketAddr`: `0x00` (V4) or `0x01` (V6), then the
//!   address; `SocketAddrV4`, `SocketAddrV6`: the address, port (and flow info, scope id), big-endian.
//!
//! Any other type with serde's `Serialize` and `Deserialize` gets a `Codec` from one line,
//! [`serde_codec!`](crate::serde_codec): see [`ordered_serde`] for its encoding, which agrees with the
//! one above wherever both apply, except for `Vec<u8>` and the types whose serde form differs (`Reverse`,
//! IP and socket addresses: their order holds through their own `Codec`, not as serde fields).

use crate::error::{Error, Result};
use std::rc::Rc;
use std::sync::Arc;

pub mod ordered_serde;
mod std_types;
#[cfg(test)]
mod tests;

/// At most the first 32 bytes of `bytes`, for error messages.
pub(crate) fn truncated(bytes: &[u8]) -> &[u8] {
    &bytes[..bytes.len().min(32)]
}

/// A type that can be stored as a key or a value.
///
/// Implementations must be order-preserving (`a.cmp(&b) == a.to_bytes().cmp(&b.to_bytes())`) and
/// self-delimiting (`decode_from` reads exactly the bytes `encode` wrote off the front of a longer string,
/// and fails on a strict prefix of an encoding: the end of the input is never a terminator).
/// Std types have it (see the module docs); a type of your own that derives serde's `Serialize` and
/// `Deserialize` gets it from [`serde_codec!`](crate::serde_codec).
///
/// A type without one is refused at compile time, with a note saying how to add one:
///
/// ```compile_fail,E0277
/// struct Mine(u32);
/// fn store<T: ddpersist::Codec>(_: T) {}
/// store(Mine(1)); // `Mine` has no `ddpersist::Codec`, so it cannot be a key or val ...
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no `ddpersist::Codec`, so it cannot be a key or val of a persisted collection",
    label = "`{Self}` does not implement `ddpersist::Codec`",
    note = "keys and vals of persisted collections are stored as bytes through `ddpersist::Codec`; std types \
            have it (integers, `usize`, `isize`, `char`, `f32`, `f64`, `bool`, `()`, `String`, `Vec`, \
            `Option`, `Box`, tuples, arrays, `Reverse`, `BTreeSet`, `BTreeMap`, `VecDeque`, `Result`, \
            `Duration`, `IpAddr`, `SocketAddr`)",
    note = "for your own type: `#[derive(serde::Serialize, serde::Deserialize)]` on it, then \
            `ddpersist::serde_codec!(YourType);`",
    note = "for a std or third-party type without one (`PathBuf`, `SystemTime`, ...): wrap it in a \
            newtype of your own, derive serde on that and use `serde_codec!` (its serde form must order as \
            its `Ord`: not `Reverse`, see `ddpersist::codec::ordered_serde`)"
)]
pub trait Codec: Sized {
    /// Whether the encoding orders every two values as their `Ord` does, by construction: true for the
    /// built-in implementations of integers, `char`, `bool`, `()`, `String`, `Duration`, IP and socket
    /// addresses, and for `Vec`, `Option`, `Box`, `Rc`, `Arc`, `Seq`, arrays, tuples, `Reverse`, `Wrapping`,
    /// `BTreeSet`, `BTreeMap`, `VecDeque` and `Result` of such types (property-tested against `Ord` in
    /// `tests/format/codec.rs`). False by default, as for `serde_codec!` types, whose derived or
    /// hand-written `Ord` may order unlike their serde form (enums with explicit discriminants, `Reverse`
    /// fields), and for floats, which have no `Ord`. A persisted operator whose key or val type has
    /// `false` checks, per update, that the encodings of each two adjacent updates of an input order as
    /// the values do (it stops with [`Error::BadInput`] where they differ, as the store would otherwise
    /// sort and group them unlike DD's arrangement); with `true` for both it skips that check (two byte
    /// comparisons and one `Ord` comparison an update, on the worker's thread). Set it in an
    /// implementation of your own only if its encoding orders as its `Ord` for every pair of values.
    const ORDERED: bool = false;

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

    /// A name of this type's encoding, which a store records per stream so that a stream written with
    /// one type is not read as another (`Store::check_types`; a typed persisted operator records and checks
    /// its key's and val's at build). Two types whose encodings may differ must not share a name. The
    /// default is [`std::any::type_name`], which the compiler does not promise to keep: override it in an
    /// implementation whose values must stay readable across a change of that name (a renamed or moved
    /// type, another compiler version). The built-in implementations name themselves (`u64`, `String`,
    /// `Vec<u8>`, `(u32, String)`, ...), `serde_codec!(T)` names `T` as written in the macro call (`serde
    /// T`), `serde_codec!(T as "name")` as given (`serde name`: to tell apart two types of one name, or a
    /// type's versions whose fields differ), and the generic form `serde_codec!(impl<G> T<G>)` by
    /// `serde ` and `type_name`. Names are compared, not layouts: a type whose encoding changes (a serde
    /// struct's fields) must change its name.
    fn schema() -> String {
        std::any::type_name::<Self>().to_string()
    }

    /// Appends the encoding of `Vec<Self>` holding `items`: each element behind `0x01`, then `0x00`.
    /// `u8` overrides it with the denser byte-string encoding; other implementations keep the default.
    fn encode_vec(items: &[Self], buf: &mut Vec<u8>) {
        encode_tagged(items, buf);
    }

    /// Reads a `Vec<Self>` written by [`Codec::encode_vec`] off the front of `bytes`.
    fn decode_vec(bytes: &mut &[u8]) -> Result<Vec<Self>> {
        decode_tagged(bytes)
    }
}

/// What a stream records as its types ([`Store::check_types`](crate::Store::check_types)) for keys `K`
/// and vals `V`: `"key {K::schema()}, val {V::schema()}"`.
pub(crate) fn types_of<K: Codec, V: Codec>() -> String {
    format!("key {}, val {}", K::schema(), V::schema())
}

/// The part of a stream's recorded `types` that says how its times are stored (`""`: as themselves).
pub(crate) fn time_part(types: &str) -> &str {
    types.split_once(TIME_PART).map_or("", |(_, time)| time)
}

/// The part of a stream's recorded `types` that names its keys and vals.
pub(crate) fn key_val_part(types: &str) -> &str {
    types.split_once(TIME_PART).map_or(types, |(key_val, _)| key_val)
}

/// What separates a stream's key and val types from how its times are stored. A type name holding it
/// is refused (`with_time_part` then adds a second one, which `Store::check_types` refuses).
pub(crate) const TIME_PART: &str = "; time stored as ";

/// `key_val` then, unless `stored_as` is empty, how the stream's times are stored (always, when
/// `key_val` holds the separator itself, so that the result holds it twice and is refused).
pub(crate) fn with_time_part(key_val: String, stored_as: &str) -> String {
    if stored_as.is_empty() && !key_val.contains(TIME_PART) {
        key_val
    } else {
        format!("{key_val}{TIME_PART}{stored_as}")
    }
}

/// [`Error::BadInput`] for stream `id`, whose times are stored as `recorded` (a [`time_part`]) and are to
/// be read as stored as `wanted`.
pub(crate) fn time_mismatch(id: &str, recorded: &str, wanted: &str) -> Error {
    let name = |m: &str| if m.is_empty() { "t" } else { m }.to_string();
    Error::bad_input(format!(
        "stream {id:?} holds times stored as {}, not as {}: its updates would be read at other times; use \
         the timestamp type it was written with",
        name(recorded),
        name(wanted)
    ))
}

/// Writes `items` as a sequence: each behind `0x01`, then `0x00`.
fn encode_tagged<T: Codec>(items: &[T], buf: &mut Vec<u8>) {
    for v in items {
        buf.push(1);
        v.encode(buf);
    }
    buf.push(0);
}

/// Reads a sequence written by [`encode_tagged`] off the front of `bytes`.
fn decode_tagged<T: Codec>(bytes: &mut &[u8]) -> Result<Vec<T>> {
    let mut out = Vec::new();
    loop {
        match take(bytes, 1, "sequence tag")?[0] {
            0 => return Ok(out),
            1 => out.push(T::decode_from(bytes)?),
            b => return Err(Error::decode(format!("sequence tag {b}"))),
        }
    }
}

/// Splits `len` bytes off the front of `bytes`, or fails with a decode error naming `what`.
pub(crate) fn take<'a>(bytes: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8]> {
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

/// Reads an `N`-byte array off the front of `bytes`.
pub(crate) fn take_array<const N: usize>(bytes: &mut &[u8], what: &str) -> Result<[u8; N]> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(bytes, N, what)?);
    Ok(a)
}

macro_rules! unsigned_codec {
    ($($t:ty),*) => {$(
        impl Codec for $t {
            const ORDERED: bool = true;
            fn encode(&self, buf: &mut Vec<u8>) {
                buf.extend_from_slice(&self.to_be_bytes());
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                Ok(<$t>::from_be_bytes(take_array(bytes, stringify!($t))?))
            }
            fn schema() -> String {
                stringify!($t).to_string()
            }
        }
    )*};
}
unsigned_codec!(u16, u32, u64, u128);

impl Codec for u8 {
    const ORDERED: bool = true;
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(*self);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        Ok(take(bytes, 1, "u8")?[0])
    }
    fn schema() -> String {
        "u8".to_string()
    }
    fn encode_vec(items: &[Self], buf: &mut Vec<u8>) {
        encode_escaped(items, buf);
    }
    fn decode_vec(bytes: &mut &[u8]) -> Result<Vec<Self>> {
        decode_escaped(bytes)
    }
}

macro_rules! signed_codec {
    ($($t:ty => $u:ty),*) => {$(
        impl Codec for $t {
            const ORDERED: bool = true;
            fn encode(&self, buf: &mut Vec<u8>) {
                // Flipping the sign bit maps i::MIN..=i::MAX onto 0..=u::MAX monotonically.
                let flipped = (*self as $u) ^ (1 << (<$u>::BITS - 1));
                buf.extend_from_slice(&flipped.to_be_bytes());
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                let flipped = <$u>::decode_from(bytes)?;
                Ok((flipped ^ (1 << (<$u>::BITS - 1))) as $t)
            }
            fn schema() -> String {
                stringify!($t).to_string()
            }
        }
    )*};
}
signed_codec!(i8 => u8, i16 => u16, i32 => u32, i64 => u64, i128 => u128);

/// `usize` is stored as a `u64`: 8 bytes on every platform, so a store written on a 64-bit machine reads
/// on a 32-bit one (where values above `u32::MAX` are decode errors) and the other way round.
impl Codec for usize {
    const ORDERED: bool = true;
    fn schema() -> String {
        "usize".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        (*self as u64).encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let v = u64::decode_from(bytes)?;
        usize::try_from(v).map_err(|_| Error::decode(format!("usize {v} does not fit this platform")))
    }
}

/// `isize` is stored as an `i64`: 8 bytes on every platform (see `usize`).
impl Codec for isize {
    const ORDERED: bool = true;
    fn schema() -> String {
        "isize".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        (*self as i64).encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let v = i64::decode_from(bytes)?;
        isize::try_from(v).map_err(|_| Error::decode(format!("isize {v} does not fit this platform")))
    }
}

/// `char` is stored as its code point, a `u32`; decoding rejects surrogates and values above `0x10FFFF`.
impl Codec for char {
    const ORDERED: bool = true;
    fn schema() -> String {
        "char".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        (*self as u32).encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let v = u32::decode_from(bytes)?;
        char::from_u32(v).ok_or_else(|| Error::decode(format!("{v:#x} is not a char")))
    }
}

macro_rules! float_codec {
    ($($f:ty => $u:ty, $key:ident, $from_key:ident);*) => {$(
        /// The order key of a float: its bits with the sign bit flipped when positive and every bit
        /// flipped when negative, so keys order as `total_cmp` orders the floats. A bijection.
        pub(crate) fn $key(x: $f) -> $u {
            let bits = x.to_bits();
            let sign: $u = 1 << (<$u>::BITS - 1);
            if bits & sign != 0 { !bits } else { bits ^ sign }
        }

        /// The float whose order key is `key`.
        pub(crate) fn $from_key(key: $u) -> $f {
            let sign: $u = 1 << (<$u>::BITS - 1);
            <$f>::from_bits(if key & sign != 0 { key ^ sign } else { !key })
        }

        /// Floats are stored in [`total_cmp`](f64::total_cmp) order: the big-endian bits with the sign bit
        /// flipped for positive values and all bits flipped for negative ones. Every bit pattern (NaNs with
        /// their payloads, `-0.0`) decodes to itself.
        impl Codec for $f {
            fn schema() -> String {
                stringify!($f).to_string()
            }
            fn encode(&self, buf: &mut Vec<u8>) {
                $key(*self).encode(buf);
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                Ok($from_key(<$u>::decode_from(bytes)?))
            }
        }
    )*};
}
float_codec!(f32 => u32, f32_key, f32_from_key; f64 => u64, f64_key, f64_from_key);

impl Codec for bool {
    const ORDERED: bool = true;
    fn schema() -> String {
        "bool".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.push(*self as u8);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        decode_bool(take(bytes, 1, "bool")?[0])
    }
}

/// The `bool` of a bool byte, which must be 0 or 1.
pub(crate) fn decode_bool(b: u8) -> Result<bool> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        b => Err(Error::decode(format!("bool byte {b}"))),
    }
}

impl Codec for () {
    const ORDERED: bool = true;
    fn schema() -> String {
        "()".to_string()
    }
    fn encode(&self, _buf: &mut Vec<u8>) {}
    fn decode_from(_bytes: &mut &[u8]) -> Result<Self> {
        Ok(())
    }
}

/// Writes `raw` escaped: `0x00` becomes `0x00 0xFF`, then the terminator `0x00 0x01`. The terminator sorts
/// below every escaped continuation, so a prefix sorts before its extensions.
pub(crate) fn encode_escaped(raw: &[u8], buf: &mut Vec<u8>) {
    // Whole runs between zero bytes are copied at once (memchr finds the zeros word-at-a-time): keys
    // rarely hold zeros, so this is usually one copy.
    buf.reserve(raw.len() + 2);
    let mut from = 0;
    for zero in memchr::memchr_iter(0, raw) {
        buf.extend_from_slice(&raw[from..=zero]);
        buf.push(0xFF);
        from = zero + 1;
    }
    buf.extend_from_slice(&raw[from..]);
    buf.extend_from_slice(&[0x00, 0x01]);
}

/// Reads a byte string written by [`encode_escaped`] off the front of `bytes`.
pub(crate) fn decode_escaped(bytes: &mut &[u8]) -> Result<Vec<u8>> {
    // Runs between zero bytes are copied whole (memchr finds the zeros a word at a time): a value with no
    // escaped 0x00 is one copy into one allocation of its exact size.
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(zero) = memchr::memchr(0, &bytes[from..]).map(|at| from + at) {
        out.extend_from_slice(&bytes[from..zero]);
        match bytes.get(zero + 1) {
            Some(0xFF) => {
                out.push(0);
                from = zero + 2;
            }
            Some(0x01) => {
                *bytes = &bytes[zero + 2..];
                return Ok(out);
            }
            Some(other) => {
                return Err(Error::decode(format!("bad escape byte {other:#x} at {zero}")));
            }
            None => break,
        }
    }
    Err(Error::decode("byte string without terminator"))
}

/// Reads an escaped byte string that must be UTF-8.
pub(crate) fn decode_escaped_str(bytes: &mut &[u8]) -> Result<String> {
    String::from_utf8(decode_escaped(bytes)?).map_err(|e| Error::decode(format!("invalid UTF-8: {e}")))
}

impl Codec for String {
    const ORDERED: bool = true;
    fn schema() -> String {
        "String".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_escaped(self.as_bytes(), buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        decode_escaped_str(bytes)
    }
}

/// `Vec<u8>` is an escaped byte string (like `String`); any other `Vec<T>` is a sequence: each element
/// behind `0x01`, terminated by `0x00`. Both keep lexicographic order.
impl<T: Codec> Codec for Vec<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("Vec<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        T::encode_vec(self, buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        T::decode_vec(bytes)
    }
}

impl<T: Codec> Codec for Option<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("Option<{}>", T::schema())
    }
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

macro_rules! pointer_codec {
    ($($p:ident),*) => {$(
        /// Encoded as the value it points to.
        impl<T: Codec> Codec for $p<T> {
            const ORDERED: bool = T::ORDERED;
            fn schema() -> String {
                T::schema()
            }
            fn encode(&self, buf: &mut Vec<u8>) {
                (**self).encode(buf);
            }
            fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
                Ok($p::new(T::decode_from(bytes)?))
            }
        }
    )*};
}
pointer_codec!(Box, Rc, Arc);

/// A sequence of `T`, encoded element by element (each behind a `0x01`) and closed by `0x00`, which keeps
/// lexicographic order. The same bytes as `Vec<T>` for every `T` but `u8`, where `Vec<u8>` has a denser
/// encoding; kept for stores written before `Vec<T>` had a `Codec`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq<T>(pub Vec<T>);

impl<T: Codec> Codec for Seq<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("Seq<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        encode_tagged(&self.0, buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        decode_tagged(bytes).map(Seq)
    }
}

/// Arrays are their elements in order, with no length or framing (the length is part of the type).
impl<T: Codec, const N: usize> Codec for [T; N] {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("[{}; {N}]", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        for v in self {
            v.encode(buf);
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let mut items = Vec::with_capacity(N);
        for _ in 0..N {
            items.push(T::decode_from(bytes)?);
        }
        items
            .try_into()
            .map_err(|_| Error::decode("array of the wrong length"))
    }
}

macro_rules! tuple_codec {
    ($($name:ident),+) => {
        /// Tuples are their fields in order, with no framing.
        impl<$($name: Codec),+> Codec for ($($name,)+) {
            const ORDERED: bool = true $(&& $name::ORDERED)+;
            fn schema() -> String {
                let fields: &[String] = &[$($name::schema()),+];
                if let [one] = fields {
                    return format!("({one},)");
                }
                format!("({})", fields.join(", "))
            }
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
tuple_codec!(A, B, C, D, E);
tuple_codec!(A, B, C, D, E, F);
tuple_codec!(A, B, C, D, E, F, G);
tuple_codec!(A, B, C, D, E, F, G, H);
