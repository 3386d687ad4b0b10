//! Byte-level point lookups over keys at the format's edges: the empty key, NUL runs, 0xff runs, keys
//! that are prefixes of each other, long keys sharing long prefixes (bigger than a block), empty and
//! long vals; tiny blocks, compression on every level or none, filters on and off; seals, merges, since
//! advances, reopen. `get_bytes`, `get_many_bytes`, `first_time_bytes` and the snapshot against a model,
//! for present keys and absent ones (prefixes and neighbours of present keys).

use crate::common::Rng;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;

fn keys() -> Vec<Vec<u8>> {
    let long_a: Vec<u8> = vec![b'a'; 3000];
    let mut long_b = long_a.clone();
    long_b.push(0);
    let mut long_c = long_a.clone();
    long_c[2999] = b'b';
    let mut ks = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 0, 0],
        vec![0xff],
        vec![0xff, 0xff],
        vec![0xff, 0],
        b"a".to_vec(),
        b"a\0".to_vec(),
        b"ab".to_vec(),
        long_a,
        long_b,
        long_c,
        vec![0x7f; 200],
        vec![1, 0xff, 0],
    ];
    ks.sort();
    ks.dedup();
    ks
}

fn absent() -> Vec<Vec<u8>> {
    let mut out = vec![
        vec![0, 0, 0, 0],
        vec![0xff, 0xff, 0xff],
        b"aa".to_vec(),
        vec![b'a'; 2999],
        vec![b'a'; 3001],
        vec![0x7f; 199],
        vec![0x7f; 201],
        vec![1],
        vec![1, 0xff],
        vec![0xfe],
    ];
    let present = keys();
    out.retain(|k| !present.contains(k));
    out
}

fn vals() -> Vec<Vec<u8>> {
    vec![vec![], vec![0], vec![0xff; 5], b"v".to_vec(), vec![b'x'; 5000]]
}

type Up = (Vec<u8>, Vec<u8>, u64, i64);

fn model_get(m: &[Up], key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
    let mut acc: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
    for u in m.iter().filter(|u| u.0 == key && u.2 <= as_of) {
        *acc.entry(u.1.clone()).or_insert(0) += u.3;
    }
    acc.into_iter().filter(|x| x.1 != 0).collect()
}

fn model_first(m: &[Up], key: &[u8], since: u64) -> Option<u64> {
    let mut acc: BTreeMap<(u64, Vec<u8>), i64> = BTreeMap::new();
    for u in m.iter().filter(|u| u.0 == key) {
        *acc.entry((u.2.max(since), u.1.clone())).or_insert(0) += u.3;
    }
    acc.into_iter().find(|x| x.1 != 0).map(|((t, _), _)| t)
}

fn run(seed: u64, options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_with(dir.path(), options.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let (ks, vs, abs) = (keys(), vals(), absent());
    let mut rng = Rng(seed);
    let mut m: Vec<Up> = Vec::new();
    let (mut upper, mut since) = (0u64, 0u64);
    for step in 0..30 {
        let what = format!("seed {seed} step {step} options {options:?}");
        match rng.below(6) {
            0..=2 => {
                let mut ups: Vec<Up> = Vec::new();
                for _ in 0..rng.below(20) + 1 {
                    let k = ks[rng.below(ks.len() as u64) as usize].clone();
                    let v = vs[rng.below(vs.len() as u64) as usize].clone();
                    ups.push((k, v, upper + rng.below(3), rng.below(3) as i64 - 1));
                }
                store
                    .write_bytes(
                        "s",
                        ups.iter()
                            .map(|(k, v, t, d)| (k.as_slice(), v.as_slice(), *t, *d)),
                    )
                    .unwrap();
                m.extend(ups.into_iter().filter(|u| u.3 != 0));
            }
            3 => {
                upper += rng.below(3) + 1;
                store.seal("s", upper).unwrap();
            }
            4 => {
                if rng.below(2) == 0 {
                    since = since.max(upper.saturating_sub(1));
                    store.allow_compaction("s", since).unwrap();
                }
                store.compact("s").unwrap();
                if rng.below(2) == 0 {
                    store.major_compact("s").unwrap();
                }
            }
            _ => {
                drop(store);
                store = Store::open_with(dir.path(), options.clone()).unwrap();
            }
        }
        let top = upper + 3;
        for k in ks.iter().chain(abs.iter()) {
            for as_of in since..=top {
                let got = store.get_bytes("s", k, as_of).unwrap();
                assert_eq!(
                    got,
                    model_get(&m, k, as_of),
                    "{what}: get key of {} bytes {:?}.. as of {as_of}",
                    k.len(),
                    &k[..k.len().min(4)]
                );
            }
            assert_eq!(
                store.first_time_bytes("s", k).unwrap(),
                model_first(&m, k, since),
                "{what}: first_time of key of {} bytes",
                k.len()
            );
        }
        let all: Vec<&[u8]> = ks.iter().chain(abs.iter()).map(|k| k.as_slice()).rev().collect();
        let many = store.get_many_bytes("s", &all, top).unwrap();
        for (k, got) in all.iter().zip(many) {
            assert_eq!(
                got,
                model_get(&m, k, top),
                "{what}: get_many key of {} bytes",
                k.len()
            );
        }
        // The snapshot, accumulated at the top, matches too.
        let mut acc: BTreeMap<(Vec<u8>, Vec<u8>), i64> = BTreeMap::new();
        for u in store.snapshot("s").unwrap().iter().unwrap() {
            let (k, v, t, d) = u.unwrap();
            assert!(t <= top || t >= since, "{what}");
            *acc.entry((k.to_vec(), v.to_vec())).or_insert(0) += d;
        }
        acc.retain(|_, d| *d != 0);
        let mut want: BTreeMap<(Vec<u8>, Vec<u8>), i64> = BTreeMap::new();
        for u in &m {
            *want.entry((u.0.clone(), u.1.clone())).or_insert(0) += u.3;
        }
        want.retain(|_, d| *d != 0);
        assert_eq!(acc, want, "{what}: snapshot");
    }
}

#[test]
fn edge_keys_tiny_blocks() {
    for seed in 1..4 {
        run(
            seed,
            Options {
                compaction_threads: 0,
                block_target_bytes: 64,
                ..Options::default()
            },
        );
    }
}

#[test]
fn edge_keys_compressed_no_filter() {
    for seed in 11..14 {
        run(
            seed,
            Options {
                compaction_threads: 0,
                block_target_bytes: 128,
                compress_from_level: Some(0),
                filter_bits_per_key: 0,
                ..Options::default()
            },
        );
    }
}

#[test]
fn edge_keys_spilled_fan_in_2() {
    for seed in 21..24 {
        run(
            seed,
            Options {
                compaction_threads: 0,
                block_target_bytes: 100,
                merge_fan_in: 2,
                memtable_budget_bytes: 4096,
                filter_bits_per_key: 1,
                ..Options::default()
            },
        );
    }
}
