//! Property tests of every `Codec`: for values `a`, `b` of one type, `a.cmp(&b)` is the byte order of their
//! encodings, every value decodes back to itself (also off the front of a longer string), and bad bytes
//! (garbage, truncated encodings) decode to `Error::Decode`, never a panic. Covers the std impls, nested in
//! tuples, options and vectors, and floats (also nested in a serde type). User types through
//! `serde_codec!`: `tests/format/codec_serde.rs`.

/// The properties checked of each pair of values, and strategies of small values.
use crate::check;

use check::{check_garbage, check_pair, expect_decode_error, small_bytes, small_or_any, small_string};
use ddpersist::codec::ordered_serde;
use ddpersist::Codec;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

macro_rules! order_props {
    ($($name:ident: $t:ty = $strategy:expr;)*) => {
        proptest! {
            $(
                #[test]
                fn $name(a in $strategy, b in $strategy, garbage in prop::collection::vec(any::<u8>(), 0..24)) {
                    let (a, b): ($t, $t) = (a, b);
                    check_pair(&a, &b);
                    check_pair(&a, &a);
                    check_garbage::<$t>(&garbage);
                }
            )*
        }
    };
}

order_props! {
    u8_order: u8 = any::<u8>();
    u16_order: u16 = small_or_any::<u16>();
    u32_order: u32 = small_or_any::<u32>();
    u64_order: u64 = small_or_any::<u64>();
    u128_order: u128 = small_or_any::<u128>();
    i8_order: i8 = any::<i8>();
    i16_order: i16 = any::<i16>();
    i32_order: i32 = any::<i32>();
    i64_order: i64 = any::<i64>();
    i128_order: i128 = any::<i128>();
    usize_order: usize = small_or_any::<usize>();
    isize_order: isize = prop_oneof![-2isize..2, any::<isize>()];
    char_order: char = any::<char>();
    bool_order: bool = any::<bool>();
    unit_order: () = Just(());
    string_order: String = small_string();
    bytes_order: Vec<u8> = small_bytes();
    vec_u32_order: Vec<u32> = prop::collection::vec(0u32..3, 0..4);
    vec_string_order: Vec<String> = prop::collection::vec(small_string(), 0..3);
    option_order: Option<i32> = prop::option::of(-2i32..2);
    box_order: Box<u64> = small_or_any::<u64>().prop_map(Box::new);
    array_order: [i16; 3] = prop::array::uniform3(prop_oneof![-1i16..2, any::<i16>()]);
    tuple_order: (u8, String, Option<i64>) = (0u8..2, small_string(), prop::option::of(-1i64..2));
    nested_order: ((i32, String), Vec<Option<char>>, [Vec<u8>; 2]) = (
        (-1i32..1, small_string()),
        prop::collection::vec(prop::option::of(prop_oneof![Just('a'), Just('\u{0}'), any::<char>()]), 0..3),
        [small_bytes(), small_bytes()],
    );
    eight_tuple_order: (u8, u8, u8, u8, u8, u8, u8, bool) =
        (0u8..2, 0u8..2, 0u8..2, 0u8..2, 0u8..2, 0u8..2, 0u8..2, any::<bool>());
    seq_order: ddpersist::codec::Seq<u8> = prop::collection::vec(0u8..3, 0..4).prop_map(ddpersist::codec::Seq);
    reverse_order: std::cmp::Reverse<u32> = small_or_any::<u32>().prop_map(std::cmp::Reverse);
    reverse_string_order: (std::cmp::Reverse<String>, u8) =
        (small_string().prop_map(std::cmp::Reverse), 0u8..2);
    reverse_nested_order: std::cmp::Reverse<(Option<i8>, Vec<u8>)> =
        (prop::option::of(-1i8..2), small_bytes()).prop_map(std::cmp::Reverse);
    reverse_reverse_order: std::cmp::Reverse<std::cmp::Reverse<String>> =
        small_string().prop_map(|s| std::cmp::Reverse(std::cmp::Reverse(s)));
    reverse_unit_order: (std::cmp::Reverse<()>, std::cmp::Reverse<[u8; 0]>, u8) =
        (Just(std::cmp::Reverse(())), Just(std::cmp::Reverse([])), 0u8..3);
    vec_of_reverse_order: Vec<std::cmp::Reverse<(u16, String)>> = prop::collection::vec(
        (0u16..3, small_string()).prop_map(std::cmp::Reverse),
        0..4,
    );
    reverse_long_order: std::cmp::Reverse<Vec<u64>> =
        prop::collection::vec(small_or_any::<u64>(), 0..40).prop_map(std::cmp::Reverse);
    wrapping_order: std::num::Wrapping<i16> = any::<i16>().prop_map(std::num::Wrapping);
    btree_set_order: std::collections::BTreeSet<u8> = prop::collection::btree_set(0u8..4, 0..4);
    btree_map_order: std::collections::BTreeMap<u8, String> =
        prop::collection::btree_map(0u8..3, small_string(), 0..3);
    vec_deque_order: std::collections::VecDeque<u8> =
        prop::collection::vec_deque(0u8..3, 0..4);
    result_order: Result<u8, String> = prop_oneof![
        (0u8..3).prop_map(Ok),
        small_string().prop_map(Err),
    ];
    duration_order: std::time::Duration = prop_oneof![
        (0u64..3, 0u32..3).prop_map(|(s, n)| std::time::Duration::new(s, n)),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| std::time::Duration::new(s, n)),
    ];
    ip_order: std::net::IpAddr = prop_oneof![
        any::<[u8; 4]>().prop_map(std::net::IpAddr::from),
        any::<[u8; 16]>().prop_map(std::net::IpAddr::from),
        (0u8..2).prop_map(|o| std::net::IpAddr::from([o; 4])),
    ];
    socket_order: std::net::SocketAddr = prop_oneof![
        ((0u8..2), 0u16..3).prop_map(|(o, p)| std::net::SocketAddr::from(([o; 4], p))),
        ((0u8..2), 0u16..3, 0u32..2, 0u32..2).prop_map(|(o, p, f, s)| {
            std::net::SocketAddr::V6(std::net::SocketAddrV6::new([o; 16].into(), p, f, s))
        }),
    ];
}

/// `Reverse` decodes from a window of the input that doubles from 64 bytes: values whose encodings end,
/// or hold an escaped `0x00`, at and around the window's edges, followed by more bytes, round-trip, and a
/// serde type longer than the first window too.
#[test]
fn reverse_decodes_across_its_window_edges() {
    use std::cmp::Reverse;
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
    struct Long {
        name: String,
        tags: Vec<u32>,
    }
    ddpersist::serde_codec!(Long);
    for len in 50usize..140 {
        for zero_at in [0, len / 2, len.saturating_sub(1)] {
            let mut text: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            text.replace_range(zero_at..zero_at + 1, "\0");
            let value = (Reverse(text.clone()), 7u8);
            check::check_round_trip(&value, &value.to_bytes());
            let long = Reverse(Long {
                name: text.clone(),
                tags: (0..len as u32 / 8).collect(),
            });
            check::check_round_trip(&long, &long.to_bytes());
        }
    }
}

/// Sets and maps decode only from elements in strictly increasing order (what the encoder writes), and a
/// duration only below a second of nanoseconds: other bytes are decode errors, not another value.
#[test]
fn sets_maps_and_durations_refuse_bytes_the_encoder_does_not_write() {
    use std::collections::{BTreeMap, BTreeSet};
    let unsorted = [1, 2, 1, 1, 0];
    expect_decode_error(BTreeSet::<u8>::decode(&unsorted), &unsorted);
    let repeated = [1, 1, 1, 1, 0];
    expect_decode_error(BTreeSet::<u8>::decode(&repeated), &repeated);
    let map_repeated = [1, 1, 7, 1, 1, 8, 0];
    expect_decode_error(BTreeMap::<u8, u8>::decode(&map_repeated), &map_repeated);
    let mut nanos = 5u64.to_bytes();
    nanos.extend(1_000_000_000u32.to_bytes());
    expect_decode_error(std::time::Duration::decode(&nanos), &nanos);
    // A set is its elements as a sequence: Vec's bytes for the same elements (for elements other than
    // u8, whose Vec is an escaped byte string).
    let set: BTreeSet<u32> = [3, 1, 2].into();
    assert_eq!(set.to_bytes(), vec![1u32, 2, 3].to_bytes());
    assert_eq!(std::cmp::Reverse(5u8).to_bytes(), [!5u8]);
}

// ---------------------------------------------------------------------------------------------------------
// Floats
// ---------------------------------------------------------------------------------------------------------

fn special_f64() -> BoxedStrategy<f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::NAN),
        Just(-f64::NAN),
        Just(f64::from_bits(0x7FF0_0000_0000_0001)), // signalling NaN
        Just(f64::from_bits(0xFFF8_0000_0000_BEEF)), // negative NaN with a payload
        Just(f64::MIN_POSITIVE),
        Just(-f64::MIN_POSITIVE),
        Just(f64::from_bits(1)), // smallest subnormal
        Just(f64::MAX),
        Just(f64::MIN),
        any::<u64>().prop_map(f64::from_bits),
        any::<f64>(),
    ]
    .boxed()
}

fn special_f32() -> BoxedStrategy<f32> {
    prop_oneof![
        Just(0.0f32),
        Just(-0.0f32),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        Just(f32::NAN),
        Just(-f32::NAN),
        Just(f32::from_bits(0xFF80_0001)),
        Just(f32::from_bits(1)),
        any::<u32>().prop_map(f32::from_bits),
        any::<f32>(),
    ]
    .boxed()
}

proptest! {
    #[test]
    fn f64_orders_as_total_cmp(a in special_f64(), b in special_f64()) {
        let (ea, eb) = (a.to_bytes(), b.to_bytes());
        prop_assert_eq!(a.total_cmp(&b), ea.cmp(&eb), "{:?} {:?}", a, b);
        prop_assert_eq!(f64::decode(&ea).unwrap().to_bits(), a.to_bits());
        // The serde encoding of a float is the same.
        prop_assert_eq!(ordered_serde::to_bytes(&a).unwrap(), ea);
        prop_assert_eq!(ordered_serde::from_bytes::<f64>(&eb).unwrap().to_bits(), b.to_bits());
    }

    #[test]
    fn f32_orders_as_total_cmp(a in special_f32(), b in special_f32()) {
        let (ea, eb) = (a.to_bytes(), b.to_bytes());
        prop_assert_eq!(a.total_cmp(&b), ea.cmp(&eb), "{:?} {:?}", a, b);
        prop_assert_eq!(f32::decode(&ea).unwrap().to_bits(), a.to_bits());
        prop_assert_eq!(ordered_serde::to_bytes(&b).unwrap(), eb);
    }

    #[test]
    fn every_float_bit_pattern_round_trips(bits in any::<u64>(), bits32 in any::<u32>()) {
        let x = f64::from_bits(bits);
        prop_assert_eq!(f64::decode(&x.to_bytes()).unwrap().to_bits(), bits);
        let y = f32::from_bits(bits32);
        prop_assert_eq!(f32::decode(&y.to_bytes()).unwrap().to_bits(), bits32);
    }
}

/// A float ordered by `total_cmp`, so it can sit in `Ord` types; serialized as the bare `f64`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(transparent)]
struct Total(f64);

impl PartialEq for Total {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Total {}
impl PartialOrd for Total {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Total {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Reading {
    sensor: u8,
    value: Total,
    history: Vec<Option<Total>>,
}

ddpersist::serde_codec!(Total, Reading);

fn reading() -> impl Strategy<Value = Reading> {
    let total = || special_f64().prop_map(Total);
    (
        0u8..2,
        total(),
        prop::collection::vec(prop::option::of(total()), 0..3),
    )
        .prop_map(|(sensor, value, history)| Reading {
            sensor,
            value,
            history,
        })
}

proptest! {
    /// Floats (NaNs, -0.0, infinities) nested in serde structs, options, vectors and tuples keep their order
    /// and every bit.
    #[test]
    fn floats_nested_in_serde_and_std_types(
        a in (reading(), prop::option::of(reading())),
        b in (reading(), prop::option::of(reading())),
    ) {
        check_pair(&a, &b);
        check_pair(&vec![a.0.clone(), b.0.clone()], &vec![b.0.clone()]);
        let back = Reading::decode(&a.0.to_bytes()).unwrap();
        prop_assert_eq!(back.value.0.to_bits(), a.0.value.0.to_bits());
        prop_assert_eq!(Total(a.0.value.0).to_bytes(), a.0.value.0.to_bytes());
    }
}

#[test]
fn float_order_of_the_specials() {
    let sorted = [
        -f64::NAN,
        f64::NEG_INFINITY,
        f64::MIN,
        -1.0,
        -f64::from_bits(1),
        -0.0,
        0.0,
        f64::from_bits(1),
        1.0,
        f64::MAX,
        f64::INFINITY,
        f64::NAN,
    ];
    let encoded: Vec<Vec<u8>> = sorted.iter().map(|x| x.to_bytes()).collect();
    assert!(encoded.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(encoded.iter().map(|e| e.len()).max(), Some(8));
    assert_eq!(0.0f64.to_bytes(), [0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(
        (-0.0f64).to_bytes(),
        [0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
    );
}

#[test]
fn usize_and_isize_are_eight_bytes() {
    assert_eq!(1usize.to_bytes(), 1u64.to_bytes());
    assert_eq!((-1isize).to_bytes(), (-1i64).to_bytes());
    assert_eq!('A'.to_bytes(), 65u32.to_bytes());
    expect_decode_error(char::decode(&0xD800u32.to_bytes()), b"surrogate");
    expect_decode_error(char::decode(&0x11_0000u32.to_bytes()), b"beyond unicode");
}

/// `Codec::ORDERED` (whether a persisted operator may skip its per-update order check) holds for the
/// built-in types the properties above cover, and for compositions of them; not for floats (no `Ord`),
/// serde types or compositions holding one.
#[test]
fn only_built_in_orders_are_trusted() {
    use std::cmp::Reverse;
    use std::collections::{BTreeMap, BTreeSet, VecDeque};
    let trusted = [
        ("u64", u64::ORDERED),
        ("i8", i8::ORDERED),
        ("usize", usize::ORDERED),
        ("isize", isize::ORDERED),
        ("char", char::ORDERED),
        ("bool", bool::ORDERED),
        ("()", <()>::ORDERED),
        ("String", String::ORDERED),
        ("Vec<u8>", <Vec<u8>>::ORDERED),
        (
            "(u64, String, Option<i64>)",
            <(u64, String, Option<i64>)>::ORDERED,
        ),
        ("[i16; 3]", <[i16; 3]>::ORDERED),
        ("Box<u64>", <Box<u64>>::ORDERED),
        ("Arc<String>", <std::sync::Arc<String>>::ORDERED),
        (
            "Reverse<(Option<i8>, Vec<u8>)>",
            <Reverse<(Option<i8>, Vec<u8>)>>::ORDERED,
        ),
        ("Wrapping<i16>", <std::num::Wrapping<i16>>::ORDERED),
        ("BTreeSet<u8>", <BTreeSet<u8>>::ORDERED),
        ("BTreeMap<u8, String>", <BTreeMap<u8, String>>::ORDERED),
        ("VecDeque<u8>", <VecDeque<u8>>::ORDERED),
        ("Result<u8, String>", <Result<u8, String>>::ORDERED),
        ("Duration", std::time::Duration::ORDERED),
        ("IpAddr", std::net::IpAddr::ORDERED),
        ("SocketAddr", std::net::SocketAddr::ORDERED),
        ("Seq<u8>", <ddpersist::codec::Seq<u8>>::ORDERED),
    ];
    let checked = [
        ("f64", f64::ORDERED),
        ("f32", f32::ORDERED),
        ("(u64, f64)", <(u64, f64)>::ORDERED),
        ("Reading", Reading::ORDERED),
        ("Total", Total::ORDERED),
        ("(u64, Reading)", <(u64, Reading)>::ORDERED),
        ("Vec<Reading>", <Vec<Reading>>::ORDERED),
        ("Option<Total>", <Option<Total>>::ORDERED),
        ("BTreeMap<u8, Reading>", <BTreeMap<u8, Reading>>::ORDERED),
        ("Result<u8, Total>", <Result<u8, Total>>::ORDERED),
        ("Reverse<Total>", <Reverse<Total>>::ORDERED),
    ];
    for (name, ordered) in trusted {
        assert!(ordered, "{name} orders by construction");
    }
    for (name, ordered) in checked {
        assert!(!ordered, "{name} is checked per update");
    }
}
