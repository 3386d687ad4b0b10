//! The `codec` target's check: arbitrary bytes decoded as several [`Codec`] types (std types, and the
//! serde types [`FuzzRecord`] and [`FuzzKind`] through `ddpersist::serde_codec!`): round trips, canonical
//! encodings, and values ordered as their encodings.

use ddpersist::codec::Codec;
use ddpersist::Error;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;

/// Decodes `data` as a `T`: errors must be `Error::Decode`; a decoded value re-encodes to exactly `data`
/// (every encoding is canonical) and decodes back to itself; `decode_from` consumes exactly the encoding.
fn codec_round_trip<T: Codec + Debug + PartialEq>(data: &[u8]) -> Option<T> {
    let mut rest = data;
    if let Ok(v) = T::decode_from(&mut rest) {
        let used = data.len() - rest.len();
        assert_eq!(
            data[..used],
            v.to_bytes()[..],
            "decode_from consumed other bytes than {v:?}'s encoding"
        );
    }
    match T::decode(data) {
        Ok(v) => {
            let bytes = v.to_bytes();
            assert_eq!(bytes, data, "{v:?} re-encodes differently");
            assert_eq!(T::decode(&bytes).expect("re-encoded value decodes"), v);
            Some(v)
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Decode { .. }),
                "codec: unexpected kind of error: {e:?}"
            );
            None
        }
    }
}

/// Both halves of `data` decoded as `T`: when both decode, values compare as their encodings do.
fn codec_order<T: Codec + Debug + PartialEq + Ord>(a: &[u8], b: &[u8]) {
    if let (Some(x), Some(y)) = (codec_round_trip::<T>(a), codec_round_trip::<T>(b)) {
        assert_eq!(
            x.cmp(&y),
            a.cmp(b),
            "order of {x:?} and {y:?} differs from their encodings'"
        );
    }
}

/// A user struct stored through `ddpersist::serde_codec!` (the ordered serde format): integers, a string,
/// a sequence of options, an enum, in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FuzzRecord {
    /// A fixed-width integer.
    pub id: u32,
    /// An escaped string.
    pub name: String,
    /// A tagged sequence of options.
    pub tags: Vec<Option<char>>,
    /// An enum.
    pub kind: FuzzKind,
}

/// A user enum with unit, newtype and struct variants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FuzzKind {
    /// A unit variant.
    A,
    /// A newtype variant.
    B(i16),
    /// A struct variant.
    C {
        /// A serde sequence of bytes.
        x: Vec<u8>,
        /// A bool.
        y: bool,
    },
}

ddpersist::serde_codec!(FuzzRecord, FuzzKind);

/// A key of std types whose encodings invert (`Reverse`) and must be in order (a set).
type StdMix = (std::cmp::Reverse<String>, std::collections::BTreeSet<u16>);

/// Decodes `data` as several [`Codec`] types (`u64`, `i64`, `usize`, `char`, `String`, `Vec<u8>`,
/// `Vec<String>`, `(String, u32)`, `Option<Vec<u8>>`, `(Reverse<String>, BTreeSet<u16>)`,
/// `Result<Duration, IpAddr>`, `BTreeMap<u8, SocketAddr>`, and the serde types [`FuzzRecord`] and
/// `(FuzzKind, Option<FuzzRecord>)`), checking round trips; then splits it in two (at `data[0]`) and checks
/// that decoded values order as their encodings do.
pub fn check_codec(data: &[u8]) {
    codec_round_trip::<u64>(data);
    codec_round_trip::<i64>(data);
    codec_round_trip::<usize>(data);
    codec_round_trip::<char>(data);
    codec_round_trip::<String>(data);
    codec_round_trip::<Vec<u8>>(data);
    codec_round_trip::<Vec<String>>(data);
    codec_round_trip::<(String, u32)>(data);
    codec_round_trip::<Option<Vec<u8>>>(data);
    codec_round_trip::<StdMix>(data);
    codec_round_trip::<Result<std::time::Duration, std::net::IpAddr>>(data);
    codec_round_trip::<std::collections::BTreeMap<u8, std::net::SocketAddr>>(data);
    codec_round_trip::<FuzzRecord>(data);
    codec_round_trip::<(FuzzKind, Option<FuzzRecord>)>(data);
    if let Some((&split, rest)) = data.split_first() {
        let (a, b) = rest.split_at(split as usize % (rest.len() + 1));
        codec_order::<u64>(a, b);
        codec_order::<i64>(a, b);
        codec_order::<usize>(a, b);
        codec_order::<char>(a, b);
        codec_order::<String>(a, b);
        codec_order::<Vec<u8>>(a, b);
        codec_order::<Vec<String>>(a, b);
        codec_order::<(String, u32)>(a, b);
        codec_order::<Option<Vec<u8>>>(a, b);
        codec_order::<StdMix>(a, b);
        codec_order::<Result<std::time::Duration, std::net::IpAddr>>(a, b);
        codec_order::<std::collections::BTreeMap<u8, std::net::SocketAddr>>(a, b);
        codec_order::<FuzzRecord>(a, b);
        codec_order::<(FuzzKind, Option<FuzzRecord>)>(a, b);
    }
}
