//! End to end, the merge policy's inversion merges (every lower-tier older batch merged with the newer,
//! bigger one, up to 64 inputs) on real batches: appends and logged seals of very uneven sizes, updates
//! that cancel across batches (consolidation shrinks merge outputs, making inversions), a since that
//! advances, merges inline (no threads) and in the background. After every step the stream's contents
//! equal the model; at the end the batch count is under the back-pressure bound and the store reopens
//! with the same contents. `DDPERSIST_UNEVEN_ROUNDS` (default 2) sets how many configurations per test.

use crate::common;

use common::Rng;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::path::Path;

/// (key, val) to the sum of its diffs (times are left out: merges advance them to the since).
type Sums = BTreeMap<(u64, u64), i64>;

fn sums(store: &Store) -> Sums {
    let mut out = Sums::new();
    for (k, v, _, d) in store.snapshot("s").unwrap().decode::<u64, u64>().unwrap() {
        *out.entry((k, v)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

fn rounds() -> u64 {
    std::env::var("DDPERSIST_UNEVEN_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

fn run(dir: &Path, seed: u64) {
    let mut rng = Rng(seed);
    let fan_in = [2, 4, 8][rng.below(3) as usize];
    let bound = [6, 12, 64][rng.below(3) as usize];
    let options = Options {
        merge_fan_in: fan_in,
        max_batches_per_stream: bound,
        compaction_threads: rng.below(2) as usize,
        logged_flush_bytes: [0, 4096][rng.below(2) as usize],
        logged_flush_delay: std::time::Duration::from_millis(rng.below(3)),
        ..Options::default()
    };
    let what = format!("seed {seed}: fan-in {fan_in}, bound {bound}, {options:?}");
    let store = Store::open_with(dir, options.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model = Sums::new();
    // Live (key, val) pairs that a later batch may retract.
    let mut live: Vec<(u64, u64)> = Vec::new();
    let (mut upper, mut next_key) = (0u64, 0u64);
    for step in 0..60u64 {
        // Log-uniform sizes from 1 to about 4,000 updates.
        let n = (1u64 << rng.below(12)) + rng.below(4);
        let lower = upper;
        upper += 1 + rng.below(3);
        let mut ups: Vec<(u64, u64, u64, i64)> = Vec::new();
        for _ in 0..n {
            let t = lower + rng.below(upper - lower);
            if !live.is_empty() && rng.below(3) == 0 {
                // Retract a live pair (it cancels its insertion in an older batch).
                let (k, v) = live.swap_remove(rng.below(live.len() as u64) as usize);
                ups.push((k, v, t, -1));
            } else {
                next_key += 1;
                ups.push((next_key, step, t, 1));
            }
        }
        ups.sort();
        for &(k, v, _, d) in &ups {
            *model.entry((k, v)).or_insert(0) += d;
            if d > 0 {
                live.push((k, v));
            }
        }
        model.retain(|_, d| *d != 0);
        match rng.below(3) {
            0 => {
                store.append("s", &ups, lower, upper).unwrap();
            }
            1 => {
                store.write("s", &ups).unwrap();
                store.seal_logged("s", upper).unwrap();
            }
            _ => {
                store.write("s", &ups).unwrap();
                store.seal("s", upper).unwrap();
            }
        }
        if rng.below(10) == 0 {
            store.allow_compaction("s", lower).unwrap();
        }
        if rng.below(8) == 0 {
            store.compact("s").unwrap();
        }
        if step % 10 == 0 {
            assert_eq!(sums(&store), model, "{what}: step {step}");
        }
    }
    store.compact("s").unwrap();
    assert_eq!(sums(&store), model, "{what}: at the end");
    let batches = store.sealed("s").unwrap().batches.len();
    assert!(
        batches <= bound,
        "{what}: {batches} batches over the bound {bound} after compact"
    );
    assert_eq!(store.upper("s").unwrap(), upper, "{what}: upper");
    drop(store);
    let store = Store::open_with(dir, options).unwrap();
    assert_eq!(sums(&store), model, "{what}: reopened");
    store.major_compact("s").unwrap();
    assert_eq!(sums(&store), model, "{what}: after a major compaction");
    assert_eq!(
        store.sealed("s").unwrap().batches.len(),
        1,
        "{what}: one batch after major_compact"
    );
}

#[test]
fn uneven_batches_merge_to_the_model() {
    for round in 0..rounds() {
        let dir = tempfile::tempdir().unwrap();
        run(dir.path(), 0xad05_4000 + round);
    }
}
