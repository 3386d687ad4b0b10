//! seals and snapshots whose keys share a prefix (the seal's sort skips the byte
//! prefix every key shares, `memtable/consolidated.rs`), checked through the Store API against a model:
//! long shared prefixes, keys that are prefixes of each other, empty keys, one key only, all keys equal,
//! keys ending within 8 bytes after the shared prefix, several seals and reopens.

use crate::common;

use common::Model;
use ddpersist::{Options, Store, StreamOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;

type Up = (Vec<u8>, Vec<u8>, u64, i64);

fn write_all(store: &Store, id: &str, ups: &[Up]) {
    let refs: Vec<(&[u8], &[u8], u64, i64)> =
        ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)).collect();
    store.write_bytes(id, refs).unwrap();
}

/// The model's answer of `get(key, as_of)`: vals with their summed diffs at times <= as_of, nonzero.
fn model_get(model: &Model, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut m: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (k, v, t, d) in model.expected() {
        if k == key && t <= as_of {
            *m.entry(v).or_default() += d;
        }
    }
    m.into_iter().filter(|(_, d)| *d != 0).collect()
}

fn norm(mut vals: Vec<(Vec<u8>, i64)>) -> Vec<(Vec<u8>, i64)> {
    let mut m: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for (v, d) in vals.drain(..) {
        *m.entry(v).or_default() += d;
    }
    m.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// Writes `rounds` (each a list of updates at times `>= round`), sealing after each round at `round + 1`,
/// checking the snapshot (sealed + unsealed) and lookups against the model before and after each seal,
/// and after a reopen.
fn check_rounds(rounds: Vec<Vec<Up>>, durable: bool) {
    check_rounds_with(rounds, durable, None)
}

fn check_rounds_with(rounds: Vec<Vec<Up>>, durable: bool, budget: Option<usize>) {
    let options = || {
        let mut o = Options::default();
        if let Some(b) = budget {
            o.memtable_budget_bytes = b;
        }
        o
    };
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let n = rounds.len() as u64;
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions { durable }).unwrap();
        for (r, ups) in rounds.iter().enumerate() {
            let r = r as u64;
            write_all(&store, "s", ups);
            for (k, v, t, d) in ups {
                model.write(k, v, *t, *d);
                keys.push(k.clone());
            }
            // Unsealed snapshot: the memtable's consolidated form.
            let got = store.snapshot("s").unwrap().to_vec().unwrap();
            assert_eq!(got, model.expected(), "snapshot before the seal of round {r}");
            store.seal("s", r + 1).unwrap();
            let got = store.snapshot("s").unwrap().to_vec().unwrap();
            assert_eq!(got, model.expected(), "snapshot after the seal of round {r}");
            for k in &keys {
                for as_of in [r, r + 1, u64::MAX - 1] {
                    let got = norm(store.get_bytes("s", k, as_of).unwrap());
                    assert_eq!(
                        got,
                        model_get(&model, k, as_of),
                        "get {k:?} as of {as_of}, round {r}"
                    );
                }
            }
        }
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    let got = store.snapshot("s").unwrap().to_vec().unwrap();
    if !durable {
        model.forget_from(n);
    }
    assert_eq!(got, model.expected(), "snapshot after reopen");
}

fn ups_with_prefix(prefix: &[u8], suffixes: &[&[u8]], t: u64) -> Vec<Up> {
    suffixes
        .iter()
        .enumerate()
        .map(|(i, s)| ([prefix, s].concat(), vec![i as u8 % 3], t, 1 + i as i64 % 2))
        .collect()
}

#[test]
fn keys_with_a_long_shared_prefix_and_short_tails() {
    let p = vec![7u8; 40];
    let tails: Vec<&[u8]> = vec![
        b"",
        b"\0",
        b"\0\0",
        b"a",
        b"ab",
        b"abcdefgh",
        b"abcdefghi",
        b"abcdefgh\0",
        b"b",
        b"\xff",
        b"\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        b"abcdefg",
        b"\0\0\0\0\0\0\0\0",
        b"\0\0\0\0\0\0\0\0\0",
    ];
    let r0 = ups_with_prefix(&p, &tails, 0);
    let mut r1 = ups_with_prefix(&p, &tails[..5], 1);
    // Cancel some of round 0 at round 1, and add one key that breaks the shared prefix.
    r1.push(([&p[..], b"ab"].concat(), vec![1], 1, -2));
    r1.push((b"".to_vec(), b"x".to_vec(), 1, 1));
    check_rounds(vec![r0, r1], true);
}

#[test]
fn one_key_only_and_all_keys_equal() {
    let k = b"user:000000000000000042".to_vec();
    let r0: Vec<Up> = (0..50).map(|i| (k.clone(), vec![(i % 4) as u8], 0, 1)).collect();
    let r1: Vec<Up> = (0..50).map(|i| (k.clone(), vec![(i % 4) as u8], 1, -1)).collect();
    check_rounds(vec![r0, r1], true);
    check_rounds(vec![vec![(k.clone(), vec![], 0, 3)]], false);
}

#[test]
fn all_keys_empty() {
    let r0: Vec<Up> = (0..20).map(|i| (vec![], vec![i as u8 % 5], 0, 1)).collect();
    let r1: Vec<Up> = r0
        .iter()
        .map(|(k, v, _, d)| (k.clone(), v.clone(), 1, -d))
        .collect();
    check_rounds(vec![r0, r1], true);
}

#[test]
fn a_key_that_is_the_shared_prefix_itself() {
    // Every key starts with "user:" and one key is exactly "user:" (ends at the prefix).
    let p = b"user:";
    let tails: Vec<&[u8]> = vec![b"", b"1", b"10", b"100", b"2", b"", b"a\0", b"a"];
    check_rounds(vec![ups_with_prefix(p, &tails, 0)], true);
    check_rounds(vec![ups_with_prefix(p, &tails, 0)], false);
}

#[test]
fn sorted_order_is_byte_order_with_a_shared_prefix() {
    // Many keys differing only beyond byte 8 after the prefix, and keys that differ within it.
    let p = b"shared-prefix/".to_vec();
    let mut ups = Vec::new();
    for i in 0..300u32 {
        let mut k = p.clone();
        k.extend_from_slice(&[0u8; 8]);
        k.extend_from_slice(&i.to_be_bytes());
        ups.push((k, b"v".to_vec(), 0, 1));
        let mut k2 = p.clone();
        k2.extend_from_slice(&(i % 7).to_be_bytes()[3..]);
        ups.push((k2, vec![(i % 3) as u8], 0, 1));
    }
    ups.reverse();
    check_rounds(vec![ups], true);
}

fn up_strategy() -> impl Strategy<Value = (Vec<u8>, u8, u64, i64)> {
    (
        proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(255u8)], 0..12),
        0u8..3,
        0u64..3,
        -2i64..3,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random keys after a random shared prefix, written in up to 3 rounds (each at times at or beyond
    /// its round), sealed after each, checked against the model.
    #[test]
    fn random_keys_after_a_shared_prefix(
        prefix in proptest::collection::vec(prop_oneof![Just(0u8), Just(9u8), Just(255u8)], 0..20),
        rounds in proptest::collection::vec(proptest::collection::vec(up_strategy(), 0..40), 1..4),
        durable in any::<bool>(),
    ) {
        let rounds: Vec<Vec<Up>> = rounds
            .into_iter()
            .enumerate()
            .map(|(r, ups)| {
                ups.into_iter()
                    .map(|(k, v, t, d)| ([&prefix[..], &k[..]].concat(), vec![v], r as u64 + t, d))
                    .collect()
            })
            .collect();
        check_rounds(rounds.clone(), durable);
        // The same with a tiny memtable budget: writes spill sorted runs (the same sort) before seals.
        check_rounds_with(rounds, durable, Some(256));
    }
}
