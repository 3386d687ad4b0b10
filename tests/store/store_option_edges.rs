//! Adversarial round 11 (adopted; passes): `Options` at and past the edges their docs name (fan-in not a power of two or out
//! of 2..=64, zero block targets, budgets and bounds, a WAL segment of 0 bytes, filters of 0 and many bits
//! per key). Each must either be refused at open with an error or work: a workload of writes, seals,
//! logged seals, `allow_compaction`, merges and a reopen against a model, under a deadline (a hang, a
//! panic or wrong data is a fault).

use crate::common;

use common::Rng;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

type Model = BTreeMap<(u32, u32, u64), i64>;

fn advanced(m: &Model, since: u64) -> Model {
    let mut out = Model::new();
    for ((k, v, t), d) in m {
        *out.entry((*k, *v, (*t).max(since))).or_default() += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

fn read(store: &Store) -> Model {
    let mut m = Model::new();
    for (k, v, t, d) in store.snapshot("s").unwrap().decode::<u32, u32>().unwrap() {
        *m.entry((k, v, t)).or_default() += d;
    }
    m
}

/// The workload; `Err` if the open refused the options.
fn workload(options: Options) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let store = match Store::open_with(tmp.path(), options.clone()) {
        Ok(s) => s,
        Err(e) => return Err(e.to_string()),
    };
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model = Model::new();
    let mut rng = Rng(7);
    let mut upper = 0;
    for round in 0..30u64 {
        let ups: Vec<(u32, u32, u64, i64)> = (0..1 + rng.below(30))
            .map(|_| {
                let d = if rng.below(4) == 0 { -1 } else { 1 };
                (rng.below(50) as u32, rng.below(3) as u32, upper, d)
            })
            .collect();
        store.write("s", &ups).unwrap();
        for (k, v, t, d) in ups {
            *model.entry((k, v, t)).or_default() += d;
        }
        upper += 1;
        if round % 3 == 0 {
            store.seal_logged("s", upper).unwrap();
        } else {
            store.seal("s", upper).unwrap();
        }
        if round % 7 == 6 {
            store.allow_compaction("s", upper - 3).unwrap();
        }
    }
    store.complete_seals("s").unwrap();
    store.compact("s").unwrap();
    let since = store.since("s").unwrap();
    assert_eq!(advanced(&read(&store), since), advanced(&model, since));
    for k in 0..50u32 {
        let got: Vec<(u32, i64)> = store.get("s", &k, upper).unwrap();
        let mut want: BTreeMap<u32, i64> = BTreeMap::new();
        for ((k2, v, _), d) in &model {
            if *k2 == k {
                *want.entry(*v).or_default() += d;
            }
        }
        want.retain(|_, d| *d != 0);
        assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "key {k}");
    }
    store.major_compact("s").unwrap();
    drop(store);
    let store = Store::open_with(tmp.path(), options).unwrap();
    assert_eq!(store.upper("s").unwrap(), upper);
    let since = store.since("s").unwrap();
    assert_eq!(advanced(&read(&store), since), advanced(&model, since));
    assert_eq!(store.background_error(), None);
    Ok(())
}

fn with_deadline(name: &str, options: Options) {
    let (tx, rx) = mpsc::channel();
    let n = name.to_string();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| workload(options));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(Ok(()))) => eprintln!("{n}: worked"),
        Ok(Ok(Err(e))) => eprintln!("{n}: refused at open: {e}"),
        Ok(Err(_)) => panic!("{n}: panicked (see above)"),
        Err(_) => panic!("{n}: hung (no answer in 60 s)"),
    }
}

#[test]
fn fan_in_outside_its_documented_range_is_refused_or_works() {
    for fan_in in [0, 1, 3, 128] {
        for threads in [0, 1] {
            let o = Options {
                merge_fan_in: fan_in,
                compaction_threads: threads,
                block_target_bytes: 128,
                ..Options::default()
            };
            with_deadline(&format!("merge_fan_in {fan_in}, {threads} threads"), o);
        }
    }
}

#[test]
fn zero_sizes_and_bounds_are_refused_or_work() {
    let cases: Vec<(&str, Options)> = vec![
        (
            "block_target_bytes 0",
            Options {
                block_target_bytes: 0,
                ..Options::default()
            },
        ),
        (
            "memtable_budget_bytes 0",
            Options {
                memtable_budget_bytes: 0,
                ..Options::default()
            },
        ),
        (
            "max_batches_per_stream 0, no threads",
            Options {
                max_batches_per_stream: 0,
                compaction_threads: 0,
                ..Options::default()
            },
        ),
        (
            "max_batches_per_stream 0",
            Options {
                max_batches_per_stream: 0,
                ..Options::default()
            },
        ),
        (
            "wal_segment_bytes 0",
            Options {
                wal_segment_bytes: 0,
                ..Options::default()
            },
        ),
        (
            "max_wal_bytes 0",
            Options {
                max_wal_bytes: Some(0),
                ..Options::default()
            },
        ),
        (
            "filter_bits_per_key 0",
            Options {
                filter_bits_per_key: 0,
                ..Options::default()
            },
        ),
        (
            "filter_bits_per_key 10000",
            Options {
                filter_bits_per_key: 10_000,
                ..Options::default()
            },
        ),
        (
            "logged_flush_delay 0",
            Options {
                logged_flush_delay: Duration::ZERO,
                ..Options::default()
            },
        ),
        (
            "logged_flush_delay max",
            Options {
                logged_flush_delay: Duration::MAX,
                ..Options::default()
            },
        ),
        (
            "compress_from_level 0",
            Options {
                compress_from_level: Some(0),
                ..Options::default()
            },
        ),
        (
            "space amplification 0",
            Options {
                max_space_amplification_percent: Some(0),
                compaction_threads: 3,
                ..Options::default()
            },
        ),
    ];
    for (name, o) in cases {
        with_deadline(name, o);
    }
}
