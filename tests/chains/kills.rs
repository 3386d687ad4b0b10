//! The chain of `harness` in a child process killed with SIGKILL at random moments, again and again
//! (each child runs random plans, rebuilt in the process, ending cleanly or unevenly, each run checked
//! in the child); after each kill the parent checks what dst and dst2 stored, and at the end a closing
//! run's log and the final contents, against the oracle. 2 and 3 workers. `DDPERSIST_CHAINS_LONG=1`: more kills.

use crate::chains::{check_run, random_plans, seeds};
use crate::common::{self, Rng};
use crate::harness::*;
use ddpersist::Store;

fn gen(peers: usize, seed: u64) -> Gen {
    Gen {
        peers,
        slots: 16,
        base: 0,
        max_jump: 3,
        big_jump: 0,
        masks: vec![(1 << peers) - 1, 1, 0, (1 << peers) - 2],
        dim_changes: true,
        seed,
    }
}

/// The child: runs random plans (seeded by `DDPERSIST_CHAINS_KILL_ROUND`) over `DDPERSIST_CHAINS_DIR`, checking each run.
#[test]
#[ignore = "child process of kills::chain_killed_at_random"]
fn kill_child() {
    let Some(dir) = common::child_var("DDPERSIST_CHAINS_DIR") else {
        return;
    };
    let peers: usize = std::env::var("DDPERSIST_CHAINS_PEERS").unwrap().parse().unwrap();
    let seed: u64 = std::env::var("DDPERSIST_CHAINS_SEED").unwrap().parse().unwrap();
    let round: u64 = std::env::var("DDPERSIST_CHAINS_KILL_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let mut slots = generate(&gen(peers, seed));
    if seed % 3 == 2 {
        to_upserts(&mut slots, seed);
    }
    let expected = oracle(&slots);
    let mut rng = Rng(seed * 1000 + round);
    let mut plans = random_plans(&mut rng, peers, slots.len(), 3, Some(0));
    plans.pop(); // no closing run: the parent's last run closes
    plans.iter_mut().for_each(|p| {
        p.src_arranged = seed % 3 == 1;
        p.src_upsert = seed % 3 == 2;
    });
    // A closing run must not end the source before what earlier children fed: none closes here.
    for p in plans
        .iter_mut()
        .filter(|p| matches!(p.ending, Ending::CloseGiving | Ending::CloseUneven { .. }))
    {
        p.ending = Ending::Clean;
    }
    let store = Store::open(&dir).unwrap();
    let outs = run_seq::<u64>(&store, peers, &slots, &plans);
    for (i, (p, out)) in plans.iter().zip(&outs).enumerate() {
        let what = format!("child seed {seed} round {round} run {i} {p:?}");
        check_run(&slots, &expected, p, out, &what).unwrap();
    }
    println!("done");
}

fn killed(peers: usize, seed: u64, kills: u64) {
    let mut slots = generate(&gen(peers, seed));
    if seed % 3 == 2 {
        to_upserts(&mut slots, seed);
    }
    let expected = oracle(&slots);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed * 17 + peers as u64);
    for round in 0..kills {
        let envs = [
            ("DDPERSIST_CHAINS_DIR", dir.path().display().to_string()),
            ("DDPERSIST_CHAINS_PEERS", peers.to_string()),
            ("DDPERSIST_CHAINS_SEED", seed.to_string()),
            ("DDPERSIST_CHAINS_KILL_ROUND", round.to_string()),
            ("DDPERSIST_CHAINS_PACE_MS", "3".to_string()),
        ];
        let mut child = common::spawn_child(module_path!(), "kill_child", &envs);
        let k = common::kill::kill_at_random(&mut child, &mut rng);
        common::assert_killed_or_succeeded(k.status, &format!("seed {seed} round {round}"));
        eprintln!(
            "seed {seed} peers {peers} round {round}: killed after complete {:?}, {:?}",
            k.complete, k.status
        );
        let store = Store::open(dir.path()).unwrap();
        let what = format!("seed {seed} peers {peers} after kill {round}");
        let dst = stored::<String, u64>(&store, "dst", peers);
        check_stored("dst", &dst, &expected, &slots)
            .map_err(|e| format!("{what}: {e}"))
            .unwrap();
        let dst2 = stored::<u64, String>(&store, "dst2", peers);
        check_stored("dst2", &dst2, &to_dst2(&expected), &slots)
            .map_err(|e| format!("{what}: {e}"))
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let last = Plan {
        end_slot: slots.len(),
        ending: Ending::Close,
        with_dst: true,
        with_dst2: true,
        with_dst3: false,
        src_arranged: seed % 3 == 1,
        src_upsert: seed % 3 == 2,
        feeder: None,
    };
    let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(&last)).remove(0);
    check_run(
        &slots,
        &expected,
        &last,
        &out,
        &format!("seed {seed} peers {peers} closing run"),
    )
    .unwrap();
}

#[test]
fn chain_killed_at_random_two_workers() {
    for seed in 0..seeds(3, 9) {
        killed(2, seed, seeds(4, 12));
    }
}

#[test]
fn chain_killed_at_random_three_workers() {
    for seed in 0..seeds(3, 9) {
        killed(3, seed, seeds(4, 12));
    }
}
