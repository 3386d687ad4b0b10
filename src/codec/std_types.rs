//! [`Codec`] for more of std's ordered types, so DD code keyed by them persists as it is: `Reverse<T>` (the
//! usual way to order by "greatest first" in a DD `reduce`), `BTreeSet<T>`, `BTreeMap<K, V>`,
//! `VecDeque<T>`, `Result<T, E>`, `Wrapping<T>`, `Duration`, and the network addresses (`Ipv4Addr`,
//! `Ipv6Addr`, `IpAddr`, `SocketAddrV4`, `SocketAddrV6`, `SocketAddr`).
//!
//! Each keeps the [`Codec`] contract: the byte order of encodings is the type's `Ord`, every encoding is
//! self-delimiting (so prefix-free), and decoding refuses bytes the encoder would not write
//! ([`Error::Decode`]): a set's or map's elements out of order or repeated, a duration's nanoseconds of a
//! second or more, a tag other than 0 and 1. Byte layouts: FORMAT.md §1.

use super::{decode_tagged, take, take_array, Codec};
use crate::error::{Error, Result};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::num::Wrapping;
use std::time::Duration;

/// `T`'s encoding with every bit inverted. Encodings are prefix-free, so two differ at some byte before
/// either ends, and inverting that byte inverts their order: `Reverse(a) < Reverse(b)` exactly when
/// `a > b`, as `Reverse`'s `Ord`. Decoding inverts a window of the input into a scratch buffer and
/// decodes `T` from it, doubling the window (from 64 bytes) while `T` does not fit: linear in `T`'s
/// encoding, not in the bytes that follow it (a `Vec<Reverse<T>>` decodes in linear time). A decoder
/// reads its bytes in order and stops where its encoding ends, so a value decoded from a window is the
/// one the whole input holds.
impl<T: Codec> Codec for Reverse<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("Reverse<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        let start = buf.len();
        self.0.encode(buf);
        for b in &mut buf[start..] {
            *b = !*b;
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let mut window = bytes.len().min(64);
        let mut inverted = Vec::with_capacity(window);
        loop {
            inverted.clear();
            inverted.extend(bytes[..window].iter().map(|b| !b));
            let mut rest = &inverted[..];
            match T::decode_from(&mut rest) {
                // A value that ends exactly at a window's end short of the input is decoded again from
                // a larger window: a decoder that took the end of its input for a terminator would
                // otherwise return a cut value.
                Ok(value) if !rest.is_empty() || window == bytes.len() => {
                    *bytes = &bytes[window - rest.len()..];
                    return Ok(Reverse(value));
                }
                Ok(_) => window = (window * 2).min(bytes.len()),
                Err(e) if window == bytes.len() => return Err(e),
                Err(_) => window = (window * 2).min(bytes.len()),
            }
        }
    }
}

/// As `T`: `Wrapping` orders as the value it wraps.
impl<T: Codec> Codec for Wrapping<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("Wrapping<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        self.0.encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        T::decode_from(bytes).map(Wrapping)
    }
}

/// Reads a sequence (each element behind `0x01`, then `0x00`) whose elements must be strictly
/// increasing (a set's, or a map's keys: the only order the encoder writes).
fn decode_increasing<T: Codec, K: Ord>(
    bytes: &mut &[u8],
    key: impl Fn(&T) -> &K,
    what: &str,
) -> Result<Vec<T>> {
    let items: Vec<T> = decode_tagged(bytes)?;
    if items.windows(2).any(|w| key(&w[0]) >= key(&w[1])) {
        return Err(Error::decode(format!("{what} elements not strictly increasing")));
    }
    Ok(items)
}

/// The elements in order, as a sequence (each behind `0x01`, then `0x00`): a set orders as the sequence of
/// its elements, as `BTreeSet`'s `Ord`.
impl<T: Codec + Ord> Codec for BTreeSet<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("BTreeSet<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        for v in self {
            buf.push(1);
            v.encode(buf);
        }
        buf.push(0);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        Ok(decode_increasing(bytes, |v: &T| v, "BTreeSet")?
            .into_iter()
            .collect())
    }
}

/// The entries in key order, as a sequence of `(key, val)` pairs: a map orders as that sequence, as
/// `BTreeMap`'s `Ord`.
impl<K: Codec + Ord, V: Codec> Codec for BTreeMap<K, V> {
    const ORDERED: bool = K::ORDERED && V::ORDERED;
    fn schema() -> String {
        format!("BTreeMap<{}, {}>", K::schema(), V::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        for (k, v) in self {
            buf.push(1);
            k.encode(buf);
            v.encode(buf);
        }
        buf.push(0);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let entries = decode_increasing(bytes, |(k, _): &(K, V)| k, "BTreeMap")?;
        Ok(entries.into_iter().collect())
    }
}

/// A sequence, as `Vec<T>` for `T` other than `u8` (for every `T`, `u8` included).
impl<T: Codec> Codec for VecDeque<T> {
    const ORDERED: bool = T::ORDERED;
    fn schema() -> String {
        format!("VecDeque<{}>", T::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        let (front, back) = self.as_slices();
        for v in front.iter().chain(back) {
            buf.push(1);
            v.encode(buf);
        }
        buf.push(0);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        Ok(decode_tagged(bytes)?.into())
    }
}

/// `0x00` then the `Ok` value, or `0x01` then the `Err` value: `Ok` orders first, as `Result`'s `Ord`.
impl<T: Codec, E: Codec> Codec for std::result::Result<T, E> {
    const ORDERED: bool = T::ORDERED && E::ORDERED;
    fn schema() -> String {
        format!("Result<{}, {}>", T::schema(), E::schema())
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Ok(v) => {
                buf.push(0);
                v.encode(buf);
            }
            Err(e) => {
                buf.push(1);
                e.encode(buf);
            }
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        match take(bytes, 1, "result tag")?[0] {
            0 => Ok(Ok(T::decode_from(bytes)?)),
            1 => Ok(Err(E::decode_from(bytes)?)),
            b => Err(Error::decode(format!("result tag {b}"))),
        }
    }
}

/// Seconds as a big-endian `u64`, then nanoseconds as a big-endian `u32` (below 10^9): 12 bytes.
impl Codec for Duration {
    const ORDERED: bool = true;
    fn schema() -> String {
        "Duration".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        self.as_secs().encode(buf);
        self.subsec_nanos().encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let secs = u64::decode_from(bytes)?;
        let nanos = u32::decode_from(bytes)?;
        if nanos >= 1_000_000_000 {
            return Err(Error::decode(format!("Duration with {nanos} nanoseconds")));
        }
        Ok(Duration::new(secs, nanos))
    }
}

/// The 4 octets.
impl Codec for Ipv4Addr {
    const ORDERED: bool = true;
    fn schema() -> String {
        "Ipv4Addr".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.octets());
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        Ok(Ipv4Addr::from(take_array::<4>(bytes, "Ipv4Addr")?))
    }
}

/// The 16 octets.
impl Codec for Ipv6Addr {
    const ORDERED: bool = true;
    fn schema() -> String {
        "Ipv6Addr".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&self.octets());
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        Ok(Ipv6Addr::from(take_array::<16>(bytes, "Ipv6Addr")?))
    }
}

/// `0x00` then an `Ipv4Addr`, or `0x01` then an `Ipv6Addr` (`V4` orders first).
impl Codec for IpAddr {
    const ORDERED: bool = true;
    fn schema() -> String {
        "IpAddr".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            IpAddr::V4(a) => {
                buf.push(0);
                a.encode(buf);
            }
            IpAddr::V6(a) => {
                buf.push(1);
                a.encode(buf);
            }
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        match take(bytes, 1, "IpAddr tag")?[0] {
            0 => Ok(IpAddr::V4(Ipv4Addr::decode_from(bytes)?)),
            1 => Ok(IpAddr::V6(Ipv6Addr::decode_from(bytes)?)),
            b => Err(Error::decode(format!("IpAddr tag {b}"))),
        }
    }
}

/// The address, then the port (big-endian `u16`).
impl Codec for SocketAddrV4 {
    const ORDERED: bool = true;
    fn schema() -> String {
        "SocketAddrV4".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        self.ip().encode(buf);
        self.port().encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let ip = Ipv4Addr::decode_from(bytes)?;
        Ok(SocketAddrV4::new(ip, u16::decode_from(bytes)?))
    }
}

/// The address, the port, the flow info and the scope id (big-endian), the order `Ord` compares them in.
impl Codec for SocketAddrV6 {
    const ORDERED: bool = true;
    fn schema() -> String {
        "SocketAddrV6".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        self.ip().encode(buf);
        self.port().encode(buf);
        self.flowinfo().encode(buf);
        self.scope_id().encode(buf);
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        let ip = Ipv6Addr::decode_from(bytes)?;
        let port = u16::decode_from(bytes)?;
        let flowinfo = u32::decode_from(bytes)?;
        Ok(SocketAddrV6::new(ip, port, flowinfo, u32::decode_from(bytes)?))
    }
}

/// `0x00` then a `SocketAddrV4`, or `0x01` then a `SocketAddrV6` (`V4` orders first).
impl Codec for SocketAddr {
    const ORDERED: bool = true;
    fn schema() -> String {
        "SocketAddr".to_string()
    }
    fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            SocketAddr::V4(a) => {
                buf.push(0);
                a.encode(buf);
            }
            SocketAddr::V6(a) => {
                buf.push(1);
                a.encode(buf);
            }
        }
    }
    fn decode_from(bytes: &mut &[u8]) -> Result<Self> {
        match take(bytes, 1, "SocketAddr tag")?[0] {
            0 => Ok(SocketAddr::V4(SocketAddrV4::decode_from(bytes)?)),
            1 => Ok(SocketAddr::V6(SocketAddrV6::decode_from(bytes)?)),
            b => Err(Error::decode(format!("SocketAddr tag {b}"))),
        }
    }
}
