//! From adversarial round 3 (all held): codec order, equality and round trips for nested types, and garbage decodes.

use crate::common;

use common::Rng;
use ddpersist::Codec;
use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::fmt::Debug;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
enum E {
    A,
    B(Option<Vec<String>>),
    C { x: i128, y: char },
    D(Vec<(u8, Vec<u8>)>),
}
ddpersist::serde_codec!(E);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
struct S(Vec<E>, BTreeMap<String, i64>, Option<Box<S>>);
ddpersist::serde_codec!(S);

fn s(r: &mut Rng) -> String {
    let alphabet = ["", "\0", "a", "\u{ff}", "\0\u{1}", "b\0", "\u{10ffff}", "\u{7f}"];
    (0..r.below(4)).map(|_| alphabet[r.below(8) as usize]).collect()
}
fn e(r: &mut Rng) -> E {
    match r.below(4) {
        0 => E::A,
        1 => E::B((r.below(2) == 0).then(|| (0..r.below(3)).map(|_| s(r)).collect())),
        2 => E::C {
            x: [i128::MIN, -1, 0, 1, i128::MAX][r.below(5) as usize],
            y: ['\0', 'a', '\u{d7ff}', '\u{e000}', char::MAX][r.below(5) as usize],
        },
        _ => E::D(
            (0..r.below(3))
                .map(|_| (r.below(3) as u8, s(r).into_bytes()))
                .collect(),
        ),
    }
}
fn st(r: &mut Rng, depth: u32) -> S {
    S(
        (0..r.below(3)).map(|_| e(r)).collect(),
        (0..r.below(3)).map(|_| (s(r), r.below(3) as i64 - 1)).collect(),
        (depth > 0 && r.below(2) == 0).then(|| Box::new(st(r, depth - 1))),
    )
}

fn check<T: Codec + Ord + Debug + Clone>(values: &[T]) {
    for a in values {
        let ea = a.to_bytes();
        assert_eq!(&T::decode(&ea).unwrap(), a);
        for b in values {
            let eb = b.to_bytes();
            assert_eq!(a.cmp(b), ea.cmp(&eb), "{a:?} vs {b:?}");
        }
    }
}

#[test]
fn nested_types_order_as_ord_and_round_trip() {
    let mut r = Rng(7);
    let v: Vec<Option<Vec<String>>> = (0..60)
        .map(|_| (r.below(4) != 0).then(|| (0..r.below(3)).map(|_| s(&mut r)).collect()))
        .collect();
    check(&v);
    let v: Vec<(Reverse<String>, i128, char)> = (0..60)
        .map(|_| {
            (
                Reverse(s(&mut r)),
                r.next() as i128 - (1 << 63),
                ['a', '\0', char::MAX][r.below(3) as usize],
            )
        })
        .collect();
    check(&v);
    let v: Vec<Reverse<Vec<Reverse<String>>>> = (0..60)
        .map(|_| Reverse((0..r.below(3)).map(|_| Reverse(s(&mut r))).collect()))
        .collect();
    check(&v);
    let v: Vec<BTreeMap<String, Vec<u8>>> = (0..60)
        .map(|_| {
            (0..r.below(3))
                .map(|_| (s(&mut r), s(&mut r).into_bytes()))
                .collect()
        })
        .collect();
    check(&v);
    let v: Vec<E> = (0..80).map(|_| e(&mut r)).collect();
    check(&v);
    let v: Vec<S> = (0..80).map(|_| st(&mut r, 3)).collect();
    check(&v);
    let v: Vec<(Option<Reverse<E>>, Vec<S>)> = (0..50)
        .map(|_| {
            (
                (r.below(3) != 0).then(|| Reverse(e(&mut r))),
                (0..r.below(2)).map(|_| st(&mut r, 1)).collect(),
            )
        })
        .collect();
    check(&v);
}

#[test]
fn garbage_never_panics() {
    let mut r = Rng(11);
    for _ in 0..20000 {
        let n = r.below(40) as usize;
        let bytes: Vec<u8> = (0..n)
            .map(|_| [0u8, 1, 0xff, 0xfe, 2, b'a'][r.below(6) as usize])
            .collect();
        let _ = S::decode(&bytes);
        let _ = E::decode(&bytes);
        let _ = <(Reverse<String>, i128, char)>::decode(&bytes);
        let _ = <Reverse<Vec<Reverse<String>>>>::decode(&bytes);
        let _ = <BTreeMap<String, Vec<u8>>>::decode(&bytes);
        let _ = <Option<Vec<String>>>::decode(&bytes);
        if let Ok(v) = S::decode(&bytes) {
            assert_eq!(
                v.to_bytes(),
                bytes,
                "a decode that does not re-encode to its bytes: {v:?}"
            );
        }
        if let Ok(v) = <Reverse<Vec<Reverse<String>>>>::decode(&bytes) {
            assert_eq!(v.to_bytes(), bytes, "{v:?}");
        }
    }
}
