//! Property tests of the serde `Codec` (`serde_codec!`, `codec::ordered_serde`) on user types: for values
//! `a`, `b` of one type, `a.cmp(&b)` is the byte order of their encodings, every value decodes back to
//! itself, and bad bytes decode to `Error::Decode`, never a panic. Structs, enums (also with more than
//! 255 variants), newtypes and unit structs, nested in std types and in each other; bytes by hand; the
//! nesting limit; attributes that need a self-describing format. The std impls: `tests/format/codec.rs`.

/// The properties checked of each pair of values, and strategies of small values.
use crate::check;

use check::{check_garbage, check_pair, expect_decode_error, small_bytes, small_or_any, small_string};
use ddpersist::codec::ordered_serde;
use ddpersist::{Codec, Error};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

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
