//! Timestamp types through the restarted chain: `u32`, `u16`, `i32` (stored offset by its minimum),
//! `Product<(), u64>` and `Product<(), u32>`, with times near the type's maximum (the last slot at
//! `MAX - 1`, advanced to `MAX`), `i32` times crossing zero, and `u64` / `Product<(), u64>` times that
//! advance by big jumps. Two and three workers; random schedules as in `chains`.

use crate::chains::{check_run, random_plans, seeds};
use crate::common::Rng;
use crate::harness::*;
use ddpersist::operators::PersistTime;
use ddpersist::Store;
use timely::order::Product;

/// Runs the chain at `T` over slots from store time `base` on; `last`: the last slot's store time.
fn at_type<T: PersistTime + Send + Sync>(
    peers: usize,
    seed: u64,
    base: u64,
    jumps: (u64, u64),
    last: Option<u64>,
) {
    let mut rng = Rng(seed * 7 + peers as u64);
    let g = Gen {
        peers,
        slots: 12,
        base,
        max_jump: jumps.0,
        big_jump: jumps.1,
        masks: vec![(1 << peers) - 1, 1, (1 << peers) - 2],
        dim_changes: true,
        seed,
    };
    let mut slots = generate(&g);
    if let Some(last) = last {
        let before = slots[slots.len() - 2].time;
        assert!(before < last, "slots reach past {last}");
        slots.last_mut().unwrap().time = last;
    }
    for s in &slots {
        assert!(
            T::from_u64(s.time + 1).is_some(),
            "slot {} + 1 does not fit",
            s.time
        );
    }
    let expected = oracle(&slots);
    let plans = random_plans(&mut rng, peers, slots.len(), 4, Some(2));
    let dir = tempfile::tempdir().unwrap();
    let in_process = rng.below(2) == 0;
    let store = Store::open(dir.path()).unwrap();
    let outs: Vec<Out> = match in_process {
        true => run_seq::<T>(&store, peers, &slots, &plans),
        false => plans
            .iter()
            .map(|p| run_seq::<T>(&store, peers, &slots, std::slice::from_ref(p)).remove(0))
            .collect(),
    };
    for (i, (p, out)) in plans.iter().zip(&outs).enumerate() {
        let what = format!(
            "{} seed {seed} peers {peers} base {base} in_process {in_process} run {i} {p:?}",
            std::any::type_name::<T>()
        );
        check_run(&slots, &expected, p, out, &what).unwrap();
    }
}

/// A base such that 12 slots of jumps `(max, big)` end at or below `max_time - 2`.
fn near(max_time: u64, jumps: (u64, u64)) -> u64 {
    max_time - 2 - 12 * (jumps.0 + jumps.1)
}

#[test]
fn u32_near_max() {
    for seed in 0..seeds(2, 10) {
        for peers in [2, 3] {
            let j = (40, 1000);
            at_type::<u32>(
                peers,
                seed,
                near(u32::MAX as u64, j),
                j,
                Some(u32::MAX as u64 - 1),
            );
        }
    }
}

#[test]
fn u16_near_max() {
    for seed in 0..seeds(2, 10) {
        for peers in [2, 3] {
            let j = (5, 300);
            at_type::<u16>(
                peers,
                seed,
                near(u16::MAX as u64, j),
                j,
                Some(u16::MAX as u64 - 1),
            );
        }
    }
}

#[test]
fn i32_near_max_and_across_zero() {
    for seed in 0..seeds(2, 10) {
        for peers in [2, 3] {
            let j = (40, 1000);
            // Store time t stands for t + i32::MIN: near u32::MAX is near i32::MAX.
            at_type::<i32>(
                peers,
                seed,
                near(u32::MAX as u64, j),
                j,
                Some(u32::MAX as u64 - 1),
            );
            // Across 0 (store time 2^31).
            at_type::<i32>(peers, seed, (1 << 31) - 6000, j, None);
        }
    }
}

#[test]
fn product_u64_big_jumps_and_near_max() {
    for seed in 0..seeds(2, 10) {
        for peers in [2, 3] {
            let j = (1 << 20, 1 << 40);
            at_type::<Product<(), u64>>(peers, seed, 5, j, None);
            at_type::<Product<(), u64>>(peers, seed, near(u64::MAX - 4, j), j, None);
            at_type::<u64>(peers, seed, near(u64::MAX - 4, j), j, None);
        }
    }
}

#[test]
fn product_u32_near_max() {
    for seed in 0..seeds(2, 10) {
        let j = (40, 1000);
        at_type::<Product<(), u32>>(2, seed, near(u32::MAX as u64, j), j, Some(u32::MAX as u64 - 1));
    }
}
