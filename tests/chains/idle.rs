//! Idle workers: the input is cut into segments, each giving `src` updates only to the keys of a chosen
//! set of workers (every set, empty and full included), with `dim` fixed after its first slot, so a
//! worker idle in a segment gets nothing in `src`, `dst` and the middle. One run per segment (ending
//! cleanly, unevenly, or by closing the input, the source then continuing in the next run), then a
//! closing run. Every ordered pair of sets for 2 workers; random triples for 3.

use crate::chains::{check_run, seeds};
use crate::common::Rng;
use crate::harness::*;
use ddpersist::Store;

const SEG: usize = 3;

fn one(peers: usize, masks: &[u32], seed: u64) {
    let mut rng = Rng(seed ^ 0xA5A5);
    // The first segment gives every worker its dim rows; src per segment mask.
    let per_slot: Vec<u32> = masks.iter().flat_map(|&m| std::iter::repeat_n(m, SEG)).collect();
    let g = Gen {
        peers,
        slots: per_slot.len() + SEG,
        base: 0,
        max_jump: 2,
        big_jump: 0,
        masks: per_slot
            .iter()
            .copied()
            .chain(std::iter::repeat_n((1 << peers) - 1, SEG))
            .collect(),
        dim_changes: false,
        seed,
    };
    let mut slots = generate(&g);
    let src_upsert = rng.below(3) == 0;
    if src_upsert {
        to_upserts(&mut slots, seed);
    }
    let expected = oracle(&slots);
    let mut plans = Vec::new();
    for r in 0..masks.len() {
        let ending = match rng.below(6) {
            0 => Ending::Clean,
            1 => Ending::Close,
            2 => Ending::CloseGiving,
            3 => Ending::CloseUneven {
                steps: (0..peers).map(|_| rng.below(30) as u32).collect(),
            },
            _ => Ending::Uneven {
                steps: (0..peers).map(|_| rng.below(30) as u32).collect(),
                give_last: rng.below(2) == 0,
            },
        };
        plans.push(Plan {
            end_slot: (r + 1) * SEG,
            ending,
            with_dst: true,
            with_dst2: true,
            with_dst3: false,
            src_arranged: false,
            src_upsert: false,
            feeder: Some(rng.below(peers as u64) as usize),
        });
    }
    plans.push(Plan {
        end_slot: slots.len(),
        ending: Ending::Close,
        with_dst: true,
        with_dst2: true,
        with_dst3: false,
        src_arranged: false,
        src_upsert: false,
        feeder: None,
    });
    let src_arranged = !src_upsert && rng.below(2) == 0;
    plans.iter_mut().for_each(|p| {
        p.src_arranged = src_arranged;
        p.src_upsert = src_upsert;
    });
    let dir = tempfile::tempdir().unwrap();
    let in_process = rng.below(2) == 0;
    let store = Store::open(dir.path()).unwrap();
    let outs: Vec<Out> = if in_process {
        run_seq::<u64>(&store, peers, &slots, &plans)
    } else {
        plans
            .iter()
            .map(|p| run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(p)).remove(0))
            .collect()
    };
    for (i, (plan, out)) in plans.iter().zip(&outs).enumerate() {
        let what = format!("masks {masks:?} seed {seed} in_process {in_process} run {i} {plan:?}");
        check_run(&slots, &expected, plan, out, &what).unwrap();
    }
}

#[test]
fn idle_worker_pairs_two_workers() {
    for a in 0..4 {
        for b in 0..4 {
            one(2, &[a, b], a as u64 * 4 + b as u64);
        }
    }
}

#[test]
fn idle_worker_triples_three_workers() {
    let mut rng = Rng(99);
    for seed in 0..seeds(10, 60) {
        let masks: Vec<u32> = (0..3).map(|_| rng.below(8) as u32).collect();
        one(3, &masks, seed);
    }
}
