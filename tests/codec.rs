//! Property tests of every `Codec`: for values `a`, `b` of one type, `a.cmp(&b)` is the byte order of their
//! encodings, every value decodes back to itself (also off the front of a longer string), and bad bytes
//! (garbage, truncated encodings) decode to `Error::Decode`, never a panic. Covers the std impls and user
//! types through `serde_codec!`, nested in tuples, options and vectors.

use ddpersist::codec::ordered_serde;
use ddpersist::{Codec, Error};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

/// Order, round trip, self-delimitation and truncation properties of one pair of values.
fn check_pair<T: Codec + Ord + Debug>(a: &T, b: &T) {
    let (ea, eb) = (a.to_bytes(), b.to_bytes());
    assert_eq!(
        a.cmp(b),
        ea.cmp(&eb),
        "order of {a:?} and {b:?} differs from their encodings' {ea:?} {eb:?}"
    );
    check_round_trip(a, &ea);
    check_round_trip(b, &eb);
}

fn check_round_trip<T: Codec + PartialEq + Debug>(v: &T, enc: &[u8]) {
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

fn expect_decode_error<T: Debug>(r: ddpersist::Result<T>, bytes: &[u8]) {
    match r {
        Err(Error::Decode { .. }) => {}
        other => panic!("{bytes:?}: expected a decode error, got {other:?}"),
    }
}

/// Decoding arbitrary bytes gives a value that re-encodes to them, or a decode error.
fn check_garbage<T: Codec + PartialEq + Debug>(bytes: &[u8]) {
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
fn small_or_any<T: Arbitrary + From<u8> + Clone + Debug + 'static>() -> BoxedStrategy<T> {
    prop_oneof![(0u8..4).prop_map(T::from), any::<T>()].boxed()
}

/// Strings from a small alphabet, with the zero byte, a two-byte char and a prefix-heavy distribution.
fn small_string() -> BoxedStrategy<String> {
    "[a\u{0}b\u{e9}]{0,4}".boxed()
}

fn small_bytes() -> BoxedStrategy<Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0xFF), any::<u8>()], 0..5).boxed()
}

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

// ---------------------------------------------------------------------------------------------------------
// Serde types
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Shape {
    Empty,
    Circle(Point, u32),
    Poly { points: Vec<Point>, name: String },
    Label(String),
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Id(u64);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Marker;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Record {
    id: Id,
    node: usize,
    diff: isize,
    tag: char,
    name: String,
    shape: Shape,
    maybe: Option<Box<Point>>,
    pairs: Vec<(u8, Option<Point>)>,
    bytes: Vec<u8>,
    flag: bool,
    marker: Marker,
    unit: (),
    arr: [i16; 2],
    big: i128,
    set: BTreeSet<u8>,
    map: BTreeMap<String, i8>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct Tagged<T> {
    tag: u8,
    value: T,
}

ddpersist::serde_codec!(Point, Shape, Id, Marker, Record);
ddpersist::serde_codec!(impl<T> Tagged<T>);

fn point() -> impl Strategy<Value = Point> {
    (-1i32..2, prop_oneof![-1i32..2, any::<i32>()]).prop_map(|(x, y)| Point { x, y })
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        Just(Shape::Empty),
        (point(), 0u32..2).prop_map(|(p, r)| Shape::Circle(p, r)),
        (prop::collection::vec(point(), 0..3), small_string())
            .prop_map(|(points, name)| Shape::Poly { points, name }),
        small_string().prop_map(Shape::Label),
    ]
}

fn record() -> impl Strategy<Value = Record> {
    (
        (
            0u64..2,
            small_or_any::<usize>(),
            -1isize..1,
            prop_oneof![Just('a'), any::<char>()],
        ),
        (
            small_string(),
            shape(),
            prop::option::of(point().prop_map(Box::new)),
        ),
        (
            prop::collection::vec((0u8..2, prop::option::of(point())), 0..3),
            small_bytes(),
            any::<bool>(),
        ),
        ([-1i16..1, -1i16..1], prop_oneof![-1i128..1, any::<i128>()]),
        (
            prop::collection::btree_set(0u8..4, 0..3),
            prop::collection::btree_map(small_string(), -1i8..1, 0..3),
        ),
    )
        .prop_map(
            |((id, node, diff, tag), (name, shape, maybe), (pairs, bytes, flag), (arr, big), (set, map))| {
                Record {
                    id: Id(id),
                    node,
                    diff,
                    tag,
                    name,
                    shape,
                    maybe,
                    pairs,
                    bytes,
                    flag,
                    marker: Marker,
                    unit: (),
                    arr,
                    big,
                    set,
                    map,
                }
            },
        )
}

proptest! {
    #[test]
    fn serde_struct_order(a in record(), b in record()) {
        check_pair(&a, &b);
        check_pair(&a, &a.clone());
    }

    #[test]
    fn serde_enum_order(a in shape(), b in shape()) {
        check_pair(&a, &b);
    }

    #[test]
    fn serde_types_nested_in_std_types(
        a in (prop::option::of(point()), prop::collection::vec(shape(), 0..3), 0u8..2),
        b in (prop::option::of(point()), prop::collection::vec(shape(), 0..3), 0u8..2),
        ra in prop::collection::vec(prop::option::of(record()), 0..2),
        rb in prop::collection::vec(prop::option::of(record()), 0..2),
    ) {
        check_pair(&a, &b);
        check_pair(&(ra.clone(), Tagged { tag: 1, value: a.0.clone() }), &(rb.clone(), Tagged { tag: 1, value: b.0.clone() }));
        check_pair(&Tagged { tag: 0, value: ra }, &Tagged { tag: 0, value: rb });
    }

    /// Where a std `Codec` and the serde format both apply, they write the same bytes; a struct is written
    /// as the tuple of its fields.
    #[test]
    fn serde_format_agrees_with_std_codecs(
        t in (any::<u64>(), -2i32..2, small_string(), prop::option::of(any::<char>()), any::<bool>()),
        v in prop::collection::vec((any::<i16>(), small_string()), 0..3),
        x in any::<f64>(),
        p in point(),
    ) {
        prop_assert_eq!(ordered_serde::to_bytes(&t).unwrap(), t.to_bytes());
        prop_assert_eq!(ordered_serde::to_bytes(&v).unwrap(), v.to_bytes());
        prop_assert_eq!(ordered_serde::to_bytes(&(x, 3usize, -3isize)).unwrap(), (x, 3usize, -3isize).to_bytes());
        prop_assert_eq!(p.to_bytes(), (p.x, p.y).to_bytes());
        let decoded: (u64, i32, String, Option<char>, bool) = ordered_serde::from_bytes(&t.to_bytes()).unwrap();
        prop_assert_eq!(decoded, t);
    }

    #[test]
    fn serde_garbage_is_a_decode_error(garbage in prop::collection::vec(any::<u8>(), 0..48)) {
        check_garbage::<Point>(&garbage);
        check_garbage::<Shape>(&garbage);
        check_garbage::<Id>(&garbage);
        check_garbage::<Marker>(&garbage);
        check_garbage::<(Shape, Option<Point>)>(&garbage);
        check_garbage::<Tagged<Vec<String>>>(&garbage);
        // Records hold maps, whose decoding does not check key order: only "no panic, only Decode" here.
        if let Err(e) = Record::decode(&garbage) {
            prop_assert!(matches!(e, Error::Decode { .. }), "unexpected error {:?}", e);
        }
    }
}

#[test]
fn serde_bytes_by_hand() {
    assert_eq!(
        Point { x: -1, y: 2 }.to_bytes(),
        [0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0, 0, 2]
    );
    assert_eq!(Shape::Empty.to_bytes(), [0]);
    assert_eq!(Shape::Label("a\0".into()).to_bytes(), [3, b'a', 0, 0xFF, 0, 1]);
    assert_eq!(Id(1).to_bytes(), 1u64.to_bytes());
    assert_eq!(Marker.to_bytes(), Vec::<u8>::new());
    assert_eq!(ordered_serde::to_bytes(&vec![7u8]).unwrap(), [1, 7, 0]);
    assert_eq!(
        ordered_serde::to_bytes(&BTreeMap::from([(1u8, 'x')])).unwrap(),
        [1, 1, 0, 0, 0, b'x', 0]
    );
    // Bad tags, bad bools, a variant index out of range.
    expect_decode_error(Shape::decode(&[4]), b"variant 4");
    expect_decode_error(Shape::decode(&[0xFF, 0, 0, 0, 1]), b"long variant form below 255");
    expect_decode_error(Tagged::<bool>::decode(&[0, 2]), b"bool 2");
    expect_decode_error(Tagged::<Option<u8>>::decode(&[0, 2, 0]), b"option 2");
    expect_decode_error(Tagged::<Vec<u8>>::decode(&[0, 1, 5, 2]), b"seq tag 2");
    expect_decode_error(Record::decode(&[]), b"empty");
}

/// An enum with more than 255 variants uses the long variant form: `FF` and a big-endian `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Variant(u32);

impl Serialize for Variant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit_variant("Variant", self.0, "v")
    }
}

impl<'de> Deserialize<'de> for Variant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Variant;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a variant")
            }
            fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Variant, A::Error> {
                use serde::de::VariantAccess;
                let (index, access): (u32, _) = data.variant()?;
                access.unit_variant()?;
                Ok(Variant(index))
            }
        }
        d.deserialize_enum("Variant", &["v"], V)
    }
}

ddpersist::serde_codec!(Variant);

proptest! {
    #[test]
    fn variant_indices_keep_order(a in prop_oneof![250u32..260, any::<u32>()], b in prop_oneof![250u32..260, any::<u32>()]) {
        check_pair(&Variant(a), &Variant(b));
    }
}

#[test]
fn variant_index_forms() {
    assert_eq!(Variant(254).to_bytes(), [254]);
    assert_eq!(Variant(255).to_bytes(), [0xFF, 0, 0, 0, 0xFF]);
    assert_eq!(Variant(256).to_bytes(), [0xFF, 0, 0, 1, 0]);
}

// ---------------------------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Tree {
    Leaf,
    Node(Box<Tree>),
}
ddpersist::serde_codec!(Tree);

fn tree(depth: usize) -> Tree {
    (0..depth).fold(Tree::Leaf, |t, _| Tree::Node(Box::new(t)))
}

#[test]
fn nesting_is_limited_on_both_sides() {
    // Each Node is one level (the enum); the innermost Leaf one more.
    let deepest = tree(ordered_serde::MAX_DEPTH - 1);
    assert_eq!(Tree::decode(&deepest.to_bytes()).unwrap(), deepest);
    let too_deep = tree(ordered_serde::MAX_DEPTH);
    assert!(matches!(
        ordered_serde::to_bytes(&too_deep),
        Err(Error::BadInput { .. })
    ));
    // Bytes of a far deeper tree: an error, not a stack overflow.
    let mut bytes = vec![1u8; 1_000_000];
    bytes.push(0);
    expect_decode_error(Tree::decode(&bytes), b"deep");
    // The same through a struct and an option.
    expect_decode_error(List::decode(&[1u8; 100_000]), b"deep list");
    let list = (0..ordered_serde::MAX_DEPTH / 2 - 1).fold(List { next: None }, |l, _| List {
        next: Some(Box::new(l)),
    });
    assert_eq!(List::decode(&list.to_bytes()).unwrap(), list);
    let longer = List {
        next: Some(Box::new(list)),
    };
    assert!(matches!(
        ordered_serde::to_bytes(&longer),
        Err(Error::BadInput { .. })
    ));
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
struct List {
    next: Option<Box<List>>,
}
ddpersist::serde_codec!(List);

#[test]
#[should_panic(expected = "ddpersist::serde_codec")]
fn codec_encode_of_an_unencodable_value_panics() {
    let _ = tree(ordered_serde::MAX_DEPTH).to_bytes();
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Flattened {
    a: u8,
    #[serde(flatten)]
    rest: BTreeMap<String, u8>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Skipping {
    #[serde(skip_serializing_if = "Option::is_none")]
    a: Option<u8>,
}

#[test]
fn attributes_needing_a_self_describing_format_are_errors() {
    let f = Flattened {
        a: 1,
        rest: BTreeMap::from([("x".into(), 2)]),
    };
    let bytes = ordered_serde::to_bytes(&f).unwrap();
    expect_decode_error(ordered_serde::from_bytes::<Flattened>(&bytes), &bytes);
    assert!(matches!(
        ordered_serde::to_bytes(&Skipping { a: None }),
        Err(Error::BadInput { .. })
    ));
    assert_eq!(ordered_serde::to_bytes(&Skipping { a: Some(3) }).unwrap(), [1, 3]);
    // A failed encode leaves the buffer as it was.
    let mut buf = vec![9];
    assert!(ordered_serde::encode_into(&Skipping { a: None }, &mut buf).is_err());
    assert_eq!(buf, [9]);
}

#[test]
fn orderings_agree_on_equal_values_too() {
    // Equal values must share their bytes (the store consolidates equal keys by bytes).
    let a = Shape::Poly {
        points: vec![Point { x: 0, y: 0 }],
        name: String::new(),
    };
    assert_eq!(a.cmp(&a.clone()), Ordering::Equal);
    assert_eq!(a.to_bytes(), a.clone().to_bytes());
}
