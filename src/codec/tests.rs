//! Unit tests of the std codecs (the order and round-trip properties on hand-picked values).

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
