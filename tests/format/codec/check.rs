//! What the `Codec` property tests check of each pair of values (order, round trip, self-delimitation,
//! truncation, garbage), and strategies of small values that collide often. Shared by
//! `tests/format/codec.rs` and `tests/format/codec_serde.rs` (declared once, in `tests/format/main.rs`).

use ddpersist::{Codec, Error};
use proptest::prelude::*;
use std::fmt::Debug;

/// Order, round trip, self-delimitation and truncation properties of one pair of values.
pub(crate) fn check_pair<T: Codec + Ord + Debug>(a: &T, b: &T) {
    let (ea, eb) = (a.to_bytes(), b.to_bytes());
    assert_eq!(
        a.cmp(b),
        ea.cmp(&eb),
        "order of {a:?} and {b:?} differs from their encodings' {ea:?} {eb:?}"
    );
    check_round_trip(a, &ea);
    check_round_trip(b, &eb);
}

pub(crate) fn check_round_trip<T: Codec + PartialEq + Debug>(v: &T, enc: &[u8]) {
    assert_eq!(&T::decode(enc).expect("decode"), v);
    let mut longer = enc.to_vec();
    longer.extend_from_slice(&[0, 1, 0xFF]);
    let mut rest = &longer[..];
    assert_eq!(&T::decode_from(&mut rest).expect("decode_from"), v);
    assert_eq!(
        rest,
        &[0, 1, 0xFF],
        "decode_from read other bytes than the encoding of {v:?}"
    );
    // Encodings are prefix-free: no cut of one is a whole value.
    for cut in 0..enc.len() {
        expect_decode_error(T::decode(&enc[..cut]), &enc[..cut]);
    }
}

pub(crate) fn expect_decode_error<T: Debug>(r: ddpersist::Result<T>, bytes: &[u8]) {
    match r {
        Err(Error::Decode { .. }) => {}
        other => panic!("{bytes:?}: expected a decode error, got {other:?}"),
    }
}

/// Decoding arbitrary bytes gives a value that re-encodes to them, or a decode error.
pub(crate) fn check_garbage<T: Codec + PartialEq + Debug>(bytes: &[u8]) {
    match T::decode(bytes) {
        Ok(v) => assert_eq!(
            v.to_bytes(),
            bytes,
            "{v:?} decoded from other bytes than its encoding"
        ),
        Err(e) => assert!(matches!(e, Error::Decode { .. }), "unexpected error {e:?}"),
    }
}

/// Integers that collide and sit at the boundaries often.
pub(crate) fn small_or_any<T: Arbitrary + From<u8> + Clone + Debug + 'static>() -> BoxedStrategy<T> {
    prop_oneof![(0u8..4).prop_map(T::from), any::<T>()].boxed()
}

/// Strings from a small alphabet, with the zero byte, a two-byte char and a prefix-heavy distribution.
pub(crate) fn small_string() -> BoxedStrategy<String> {
    "[a\u{0}b\u{e9}]{0,4}".boxed()
}

pub(crate) fn small_bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF), any::<u8>()], 0..5).boxed()
}
