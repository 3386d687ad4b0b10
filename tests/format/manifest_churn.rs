//! From an adversarial round: the manifest edit path after many commits (several snapshot rewrites), many streams,
//! drop/create churn of the same ids, reopens at random points (some with edits pending on disk), and the
//! inspect tool over such a store, open and closed. Checked against a model of every stream.
//! `DDPERSIST_CHURN=long` runs 10 seeds instead of 4.

use crate::common;

use common::Rng;
use ddpersist::version::read_manifest;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn options(threads: usize) -> Options {
    Options {
        compaction_threads: threads,
        merge_fan_in: 2,
        ..Options::default()
    }
}

/// Per stream id: durable, upper, since, the consolidated updates `(k, v, t) -> d`.
#[derive(Clone, Debug, Default)]
struct M {
    durable: bool,
    upper: u64,
    rows: BTreeMap<(u64, u64, u64), i64>,
}

fn inspect(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args)
        .output()
        .unwrap()
}

fn check_inspect(dir: &Path, what: &str) {
    let d = dir.to_str().unwrap();
    // (`verify` is left out: it calls a dropped stream's WAL records corruption, tests/adv_inspect_dropped.rs.)
    for args in [
        vec!["list", d],
        vec!["stats", d, "--json"],
        vec!["list", d, "--json"],
    ] {
        let out = inspect(&args);
        assert!(
            out.status.success(),
            "{what}: inspect {args:?} failed ({:?}):\nstdout {}\nstderr {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn check(store: &Store, model: &BTreeMap<String, M>, what: &str) {
    let mut ids = store.streams();
    ids.sort();
    let want: Vec<String> = model.keys().cloned().collect();
    assert_eq!(ids, want, "{what}: streams");
    for (id, m) in model {
        assert_eq!(store.upper(id).unwrap(), m.upper, "{what}: upper of {id}");
        let mut got: BTreeMap<(u64, u64), i64> = BTreeMap::new();
        for (k, v, _t, d) in store.snapshot(id).unwrap().decode::<u64, u64>().unwrap() {
            *got.entry((k, v)).or_default() += d;
        }
        got.retain(|_, d| *d != 0);
        let mut want: BTreeMap<(u64, u64), i64> = BTreeMap::new();
        for ((k, v, _), d) in &m.rows {
            *want.entry((*k, *v)).or_default() += d;
        }
        want.retain(|_, d| *d != 0);
        assert_eq!(got, want, "{what}: contents of {id}");
    }
}

fn churn(seed: u64, threads: usize, steps: usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    let mut model: BTreeMap<String, M> = BTreeMap::new();
    let mut store = Store::open_with(dir.path(), options(threads)).unwrap();
    for step in 0..steps {
        let id = format!("op{}/w{}of2", rng.below(30), rng.below(2));
        match rng.below(12) {
            0 => {
                if model.contains_key(&id) {
                    store.drop_stream(&id).unwrap();
                    model.remove(&id);
                } else {
                    assert!(store.drop_stream(&id).is_err());
                }
            }
            1 => {
                // Reopen; the edits written since the last fold are on disk.
                let read = read_manifest(&ddpersist::blob::DirBlob::open(dir.path()).unwrap())
                    .unwrap()
                    .unwrap();
                // (With merges running, one may commit between the two reads.)
                if threads == 0 {
                    assert_eq!(
                        read.manifest,
                        store.manifest(),
                        "step {step}: disk and store agree"
                    );
                }
                if rng.below(3) == 0 {
                    check_inspect(dir.path(), &format!("step {step}, live"));
                }
                drop(store);
                // Non-durable streams lose their unsealed updates.
                for m in model.values_mut() {
                    if !m.durable {
                        let upper = m.upper;
                        m.rows.retain(|(_, _, t), _| *t < upper);
                    }
                }
                store = Store::open_with(dir.path(), options(threads)).unwrap();
                check(&store, &model, &format!("step {step}, reopened"));
            }
            2 => {
                if model.contains_key(&id) {
                    let m = &model[&id];
                    let since = m.upper.saturating_sub(rng.below(3));
                    if since >= store.since(&id).unwrap() {
                        store.allow_compaction(&id, since).unwrap();
                    }
                }
            }
            _ => {
                if !model.contains_key(&id) {
                    let durable = rng.below(2) == 0;
                    store.create_stream(&id, StreamOptions { durable }).unwrap();
                    model.insert(
                        id.clone(),
                        M {
                            durable,
                            ..Default::default()
                        },
                    );
                }
                let m = model.get_mut(&id).unwrap();
                let t = m.upper + rng.below(2);
                let updates: Vec<(u64, u64, u64, i64)> = (0..rng.below(4))
                    .map(|_| (rng.below(5), rng.below(3), t, 1))
                    .collect();
                store.write(&id, &updates).unwrap();
                for (k, v, t, d) in updates {
                    *m.rows.entry((k, v, t)).or_default() += d;
                }
                if rng.below(3) > 0 {
                    let upper = t + 1;
                    store.seal(&id, upper).unwrap();
                    m.upper = upper;
                }
            }
        }
    }
    check(&store, &model, "end, live");
    check_inspect(dir.path(), "end, live");
    drop(store);
    check_inspect(dir.path(), "end, closed");
    let store = Store::open_with(dir.path(), options(threads)).unwrap();
    for m in model.values_mut() {
        if !m.durable {
            let upper = m.upper;
            m.rows.retain(|(_, _, t), _| *t < upper);
        }
    }
    check(&store, &model, "end, reopened");
}

/// Seeds from `first`: `n` with `DDPERSIST_CHURN=long`, else 2.
fn seeds(first: u64, n: u64) -> std::ops::Range<u64> {
    let long = std::env::var("DDPERSIST_CHURN").is_ok_and(|v| v == "long");
    first..first + if long { n } else { 2 }
}

#[test]
fn churn_without_merges() {
    for seed in seeds(0, 6) {
        churn(seed, 0, 500);
    }
}

#[test]
fn churn_with_background_merges() {
    for seed in seeds(10, 4) {
        churn(seed, 1, 500);
    }
}
