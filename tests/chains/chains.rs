//! The chain of `harness` restarted many times with random schedules: rebuilt in one process (a barrier
//! between drop and rebuild) and in separate `timely::execute`s over a reopened store; 1, 2 and 3
//! workers. After every run: its log against the oracle at every completed time at or past its resume
//! point, and what dst stored against the oracle. `DDPERSIST_CHAINS_LONG=1` runs more seeds.

use crate::common::Rng;
use crate::harness::*;
use ddpersist::Store;

pub fn seeds(short: u64, long: u64) -> u64 {
    if std::env::var("DDPERSIST_CHAINS_LONG").is_ok() {
        long
    } else {
        short
    }
}

/// Random plans over `n` slots: runs ending cleanly or unevenly, then a closing run.
pub fn random_plans(
    rng: &mut Rng,
    peers: usize,
    n: usize,
    runs: usize,
    dst2_from: Option<usize>,
) -> Vec<Plan> {
    let mut plans = Vec::new();
    // Slots below this were fed by an earlier run: a replayable source that closes (ends) must not end
    // before them (it would contradict what it gave before), so a closing run feeds at least those.
    let mut fed = 0;
    for r in 0..runs {
        let mut end_slot = 1 + rng.below(n as u64) as usize;
        let ending = match rng.below(6) {
            0 => Ending::Clean,
            1 => Ending::CloseGiving,
            2 => Ending::CloseUneven {
                steps: (0..peers).map(|_| rng.below(40) as u32).collect(),
            },
            _ => Ending::Uneven {
                steps: (0..peers).map(|_| rng.below(40) as u32).collect(),
                give_last: rng.below(2) == 0,
            },
        };
        if let Ending::CloseGiving | Ending::CloseUneven { .. } = ending {
            end_slot = end_slot.max(fed).min(n);
        }
        let given = match &ending {
            Ending::CloseGiving | Ending::Uneven { give_last: true, .. } => end_slot + 1,
            _ => end_slot,
        };
        fed = fed.max(given.min(n));
        let feeder = match rng.below(3) {
            0 => None,
            _ => Some(rng.below(peers as u64) as usize),
        };
        plans.push(Plan {
            end_slot,
            ending,
            with_dst: true,
            with_dst2: dst2_from.is_some_and(|f| r >= f),
            with_dst3: false,
            src_arranged: false,
            src_upsert: false,
            feeder,
        });
    }
    plans.push(Plan {
        end_slot: n,
        ending: Ending::Close,
        with_dst: true,
        with_dst2: dst2_from.is_some(),
        with_dst3: false,
        src_arranged: false,
        src_upsert: false,
        feeder: None,
    });
    plans
}

/// Checks one run's outputs and the store after it.
pub fn check_run(slots: &[Slot], expected: &[Upd], plan: &Plan, out: &Out, what: &str) -> Result<(), String> {
    if !out.errors.is_empty() {
        return Err(format!("{what}: errors {:?}", out.errors));
    }
    if out.resumes.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!(
            "{what}: workers resumed at different points {:?}",
            out.resumes
        ));
    }
    // The run fed the slots below `end_slot` only (and slot `end_slot` too, closing at it).
    let fed_last = match plan.ending {
        Ending::CloseGiving if plan.end_slot < slots.len() => plan.end_slot,
        _ => plan.end_slot - 1,
    };
    let upto = out.passed.min(slots[fed_last].time + 1);
    if plan.with_dst {
        check_log(
            &format!("{what}: dst log"),
            &out.log,
            expected,
            slots,
            out.resume,
            upto,
        )?;
        check_stored("dst", &out.dst, expected, slots).map_err(|e| format!("{what}: {e}"))?;
    }
    if plan.with_dst2 {
        let e2 = to_dst2(expected);
        check_log(
            &format!("{what}: dst2 log"),
            &out.log2,
            &e2,
            slots,
            out.resume,
            upto,
        )?;
        check_stored("dst2", &out.dst2, &e2, slots).map_err(|e| format!("{what}: {e}"))?;
    }
    if matches!(plan.ending, Ending::Close | Ending::CloseGiving) {
        // The last slot fed: by this run, or by earlier ones (below the resume point).
        let before = slots.iter().map(|s| s.time).filter(|&t| t < out.resume).max();
        let last = slots[fed_last].time.max(before.unwrap_or(0));
        let want = acc_at(expected, last);
        if plan.with_dst {
            let got = acc_at(&out.dst.0, u64::MAX);
            if got != want {
                return Err(format!("{what}: final dst {got:?}, expected {want:?}"));
            }
        }
        if plan.with_dst2 {
            let got = acc_at(&out.dst2.0, u64::MAX);
            let want = acc_at(&to_dst2(expected), last);
            if got != want {
                return Err(format!("{what}: final dst2 {got:?}, expected {want:?}"));
            }
        }
        if out.passed != u64::MAX {
            return Err(format!(
                "{what}: closed run did not complete (passed {})",
                out.passed
            ));
        }
    }
    Ok(())
}

fn gen(peers: usize, seed: u64, masks: Vec<u32>) -> Gen {
    Gen {
        peers,
        slots: 14,
        base: 0,
        max_jump: 3,
        big_jump: 0,
        masks,
        dim_changes: true,
        seed,
    }
}

/// All plans of a seed in one `timely::execute` (rebuilt in the process).
fn rebuilt_in_process(peers: usize, seed: u64, src_arranged: bool) {
    rebuilt_in_process_with(peers, seed, src_arranged, false)
}

fn rebuilt_in_process_with(peers: usize, seed: u64, src_arranged: bool, src_upsert: bool) {
    let mut rng = Rng(seed * 7919 + peers as u64);
    let all = (1u32 << peers) - 1;
    let mut slots = generate(&gen(peers, seed, vec![all]));
    if src_upsert {
        to_upserts(&mut slots, seed);
    }
    let expected = oracle(&slots);
    let mut plans = random_plans(&mut rng, peers, slots.len(), 5, None);
    plans.iter_mut().for_each(|p| {
        p.src_arranged = src_arranged;
        p.src_upsert = src_upsert;
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let outs = run_seq::<u64>(&store, peers, &slots, &plans);
    for (i, (plan, out)) in plans.iter().zip(&outs).enumerate() {
        let what = format!(
            "seed {seed} peers {peers} src_arranged {src_arranged} src_upsert {src_upsert} run {i} {plan:?}"
        );
        check_run(&slots, &expected, plan, out, &what).unwrap();
    }
}

/// Each plan in its own `timely::execute`, over a store reopened each time.
fn separate_runs(peers: usize, seed: u64, src_arranged: bool) {
    separate_runs_with(peers, seed, src_arranged, false)
}

fn separate_runs_with(peers: usize, seed: u64, src_arranged: bool, src_upsert: bool) {
    let mut rng = Rng(seed * 104_729 + peers as u64);
    let all = (1u32 << peers) - 1;
    let mut slots = generate(&gen(peers, seed, vec![all]));
    if src_upsert {
        to_upserts(&mut slots, seed);
    }
    let expected = oracle(&slots);
    let mut plans = random_plans(&mut rng, peers, slots.len(), 5, None);
    plans.iter_mut().for_each(|p| {
        p.src_arranged = src_arranged;
        p.src_upsert = src_upsert;
    });
    let dir = tempfile::tempdir().unwrap();
    for (i, plan) in plans.iter().enumerate() {
        let store = Store::open(dir.path()).unwrap();
        let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(plan)).remove(0);
        let what = format!(
            "seed {seed} peers {peers} src_arranged {src_arranged} src_upsert {src_upsert} run {i} {plan:?}"
        );
        check_run(&slots, &expected, plan, &out, &what).unwrap();
    }
}

#[test]
fn chain_rebuilt_in_process_one_worker() {
    for seed in 0..seeds(3, 20) {
        rebuilt_in_process(1, seed, false);
    }
}

#[test]
fn chain_rebuilt_in_process_two_workers() {
    for seed in 0..seeds(4, 30) {
        rebuilt_in_process(2, seed, false);
    }
}

#[test]
fn chain_rebuilt_in_process_three_workers() {
    for seed in 0..seeds(3, 20) {
        rebuilt_in_process(3, seed, false);
    }
}

#[test]
fn chain_separate_runs_two_workers() {
    for seed in 0..seeds(3, 30) {
        separate_runs(2, seed, false);
    }
}

#[test]
fn chain_separate_runs_three_workers() {
    for seed in 0..seeds(3, 20) {
        separate_runs(3, seed, false);
    }
}

#[test]
fn chain_arranged_src_rebuilt_in_process() {
    for seed in 0..seeds(3, 20) {
        rebuilt_in_process(2, seed, true);
        rebuilt_in_process(3, seed, true);
    }
}

#[test]
fn chain_arranged_src_separate_runs() {
    for seed in 0..seeds(3, 20) {
        separate_runs(2, seed, true);
        separate_runs(3, seed, true);
    }
}

#[test]
fn chain_upsert_src_rebuilt_in_process() {
    for seed in 0..seeds(3, 20) {
        rebuilt_in_process_with(2, seed, false, true);
        rebuilt_in_process_with(3, seed, false, true);
    }
}

#[test]
fn chain_upsert_src_separate_runs() {
    for seed in 0..seeds(3, 20) {
        separate_runs_with(2, seed, false, true);
        separate_runs_with(3, seed, false, true);
    }
}

/// dst never seals in the first runs: each ends before any worker stepped (the sources' and dst's
/// streams stay at upper 0), with the last slot given and not advanced past.
#[test]
fn chain_downstream_never_sealed() {
    for (peers, src_arranged) in [(2, false), (3, false), (2, true), (3, true)] {
        let all = (1u32 << peers) - 1;
        let slots = generate(&gen(peers, 11, vec![all]));
        let expected = oracle(&slots);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let zero = Ending::Uneven {
            steps: vec![0; peers],
            give_last: true,
        };
        let plan = |end_slot, ending| Plan {
            src_arranged,
            src_upsert: false,
            end_slot,
            ending,
            with_dst: true,
            with_dst2: false,
            with_dst3: false,
            feeder: Some(0),
        };
        let mut steps = vec![0; peers];
        steps[peers - 1] = 25;
        let plans = vec![
            plan(5, zero.clone()),
            plan(8, zero.clone()),
            plan(
                6,
                Ending::Uneven {
                    steps,
                    give_last: true,
                },
            ),
            plan(9, Ending::Clean),
            plan(slots.len(), Ending::Close),
        ];
        let outs = run_seq::<u64>(&store, peers, &slots, &plans);
        for (i, (plan, out)) in plans.iter().zip(&outs).enumerate() {
            let what = format!("peers {peers} src_arranged {src_arranged} run {i} {plan:?}");
            check_run(&slots, &expected, plan, out, &what).unwrap();
        }
    }
}
