//! Changing the dataflow between runs: persisted downstream operators added after several runs (a
//! `persist` of the chain's output, and an arrangement downstream of the persisted arrangement dst),
//! removed (retired with `drop_stream`, or only left out) and added again; a rebuild with another worker
//! count; the same ids in two stores of one process at once.

use crate::chains::{check_run, seeds};
use crate::common::Rng;
use crate::harness::*;
use ddpersist::operators::worker_stream_id;
use ddpersist::Store;

fn gen(peers: usize, seed: u64) -> Gen {
    Gen {
        peers,
        slots: 16,
        base: 0,
        max_jump: 3,
        big_jump: 0,
        masks: vec![(1 << peers) - 1],
        dim_changes: true,
        seed,
    }
}

fn plan(rng: &mut Rng, peers: usize, end_slot: usize, dst: bool, dst2: bool, dst3: bool) -> Plan {
    let ending = match rng.below(2) {
        0 => Ending::Clean,
        _ => Ending::Uneven {
            steps: (0..peers).map(|_| rng.below(40) as u32).collect(),
            give_last: rng.below(2) == 0,
        },
    };
    Plan {
        end_slot,
        ending,
        with_dst: dst,
        with_dst2: dst2,
        with_dst3: dst3,
        src_arranged: false,
        src_upsert: false,
        feeder: Some(rng.below(peers as u64) as usize),
    }
}

/// Checks dst3 (downstream of dst) from `floor` on: dst's since when dst3 was first built (dst3 takes
/// dst's history as of it).
fn check_dst3(what: &str, slots: &[Slot], expected: &[Upd], p: &Plan, out: &Out, floor: u64) {
    if !p.with_dst3 {
        return;
    }
    let e3 = to_dst3(expected);
    let upto = out.passed.min(slots[p.end_slot - 1].time + 1);
    check_log(
        &format!("{what}: dst3 log"),
        &out.log3,
        &e3,
        slots,
        out.resume.max(floor),
        upto,
    )
    .unwrap();
    let (got, upper, since) = &out.dst3;
    check_log(
        &format!("{what}: stored dst3"),
        got,
        &e3,
        slots,
        (*since).max(floor),
        *upper,
    )
    .unwrap();
}

/// dst2 and dst3 added in run 3 (dst3 at dst's since then), in one process (rebuilt) or in separate
/// executes.
fn added_later(peers: usize, seed: u64, in_process: bool) {
    let mut rng = Rng(seed * 31 + peers as u64);
    let slots = generate(&gen(peers, seed));
    let expected = oracle(&slots);
    let n = slots.len();
    let mut plans: Vec<Plan> = (0..3)
        .map(|r| plan(&mut rng, peers, 3 + 3 * r, true, false, false))
        .collect();
    plans.extend((0..3).map(|r| plan(&mut rng, peers, 9 + 2 * r, true, true, true)));
    let mut last = plan(&mut rng, peers, n, true, true, true);
    last.ending = Ending::Close;
    plans.push(last);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let outs: Vec<Out> = match in_process {
        true => run_seq::<u64>(&store, peers, &slots, &plans),
        false => plans
            .iter()
            .map(|p| run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(p)).remove(0))
            .collect(),
    };
    let floor = outs[2].dst.2;
    for (i, (p, out)) in plans.iter().zip(&outs).enumerate() {
        let what = format!("seed {seed} peers {peers} in_process {in_process} run {i} {p:?}");
        check_run(&slots, &expected, p, out, &what).unwrap();
        check_dst3(&what, &slots, &expected, p, out, floor);
    }
    let last = outs.last().unwrap();
    let want = acc_at(&to_dst3(&expected), u64::MAX);
    assert_eq!(acc_at(&last.dst3.0, u64::MAX), want, "seed {seed}: final dst3");
}

#[test]
fn downstreams_added_later_in_process() {
    for seed in 0..seeds(3, 20) {
        added_later(2, seed, true);
        added_later(3, seed, true);
    }
}

#[test]
fn downstreams_added_later_separate_runs() {
    for seed in 0..seeds(3, 20) {
        added_later(2, seed, false);
        added_later(3, seed, false);
    }
}

/// dst left out of some runs and added again: retired (`drop_stream` of every worker's stream) or
/// only left out (its streams stay at their uppers).
fn removed_and_added(peers: usize, seed: u64, retire: bool) {
    let mut rng = Rng(seed * 131 + peers as u64 + retire as u64);
    let slots = generate(&gen(peers, seed));
    let expected = oracle(&slots);
    let n = slots.len();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut plans = vec![
        plan(&mut rng, peers, 4, true, true, false),
        plan(&mut rng, peers, 6, true, true, false),
        plan(&mut rng, peers, 9, false, true, false),
        plan(&mut rng, peers, 11, false, true, false),
        plan(&mut rng, peers, 13, true, true, false),
        plan(&mut rng, peers, 15, true, true, false),
    ];
    let mut last = plan(&mut rng, peers, n, true, true, false);
    last.ending = Ending::Close;
    plans.push(last);
    for (i, p) in plans.iter().enumerate() {
        if i == 2 && retire {
            for w in 0..peers {
                store.drop_stream(&worker_stream_id("dst", w, peers)).unwrap();
            }
        }
        let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(p)).remove(0);
        let what = format!("seed {seed} peers {peers} retire {retire} run {i} {p:?}");
        check_run(&slots, &expected, p, &out, &what).unwrap();
    }
}

#[test]
fn downstream_removed_and_added_again() {
    for seed in 0..seeds(2, 15) {
        for peers in [2, 3] {
            removed_and_added(peers, seed, true);
            removed_and_added(peers, seed, false);
        }
    }
}

/// A rebuild with another worker count is refused on every worker (no hang, no data), and the store
/// then runs on with its own count, exactly.
#[test]
fn other_worker_count_refused_then_resumed() {
    for (peers, other) in [(2, 3), (3, 2), (2, 1)] {
        let mut rng = Rng(peers as u64 * 10 + other as u64);
        let slots = generate(&gen(peers, 5));
        let expected = oracle(&slots);
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let p0 = plan(&mut rng, peers, 6, true, true, false);
        let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(&p0)).remove(0);
        check_run(&slots, &expected, &p0, &out, "first run").unwrap();
        let other_slots = generate(&gen(other, 5));
        let mut bad = plan(&mut rng, other, 10, true, true, false);
        bad.feeder = Some(0);
        let out = run_seq::<u64>(&store, other, &other_slots, std::slice::from_ref(&bad)).remove(0);
        assert!(
            out.errors.len() == other && out.errors.iter().all(|e| e.contains("workers")),
            "{peers} -> {other} workers: {:?}",
            out.errors
        );
        let mut last = plan(&mut rng, peers, slots.len(), true, true, false);
        last.ending = Ending::Close;
        let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(&last)).remove(0);
        check_run(
            &slots,
            &expected,
            &last,
            &out,
            &format!("{peers} workers after {other}"),
        )
        .unwrap();
    }
}

/// The same ids ("src", "dst", "dst2") in two stores, run at once by two `timely::execute`s of one
/// process with different inputs: each store's chain is exact.
#[test]
fn same_ids_in_two_stores_at_once() {
    for seed in 0..seeds(2, 10) {
        let threads: Vec<_> = [(2usize, seed), (3usize, seed + 100)]
            .into_iter()
            .map(|(peers, s)| {
                std::thread::spawn(move || {
                    let mut rng = Rng(s);
                    let slots = generate(&gen(peers, s));
                    let expected = oracle(&slots);
                    let dir = tempfile::tempdir().unwrap();
                    let store = Store::open(dir.path()).unwrap();
                    let mut plans: Vec<Plan> = (0..4)
                        .map(|r| plan(&mut rng, peers, 3 + 3 * r, true, true, false))
                        .collect();
                    let mut last = plan(&mut rng, peers, slots.len(), true, true, false);
                    last.ending = Ending::Close;
                    plans.push(last);
                    for (i, p) in plans.iter().enumerate() {
                        let out = run_seq::<u64>(&store, peers, &slots, std::slice::from_ref(p)).remove(0);
                        let what = format!("seed {s} peers {peers} run {i} {p:?}");
                        check_run(&slots, &expected, p, &out, &what)?;
                    }
                    Ok::<(), String>(())
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
    }
}

/// One run of two sources, `old` and (if `fresh`) `fresh` built first, each `persist`ed through a token,
/// on `peers` workers, feeding times 0..3 and closing; returns the build errors (empty if it ran) and
/// what each source's output accumulated to.
fn two_sources(dir: &std::path::Path, peers: usize, fresh: bool) -> (Vec<String>, Vec<Upd>) {
    use ddpersist::operators::Persist;
    use differential_dataflow::input::Input as _;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::Inspect;
    let store = Store::open(dir).unwrap();
    let errors: Arc<Mutex<Vec<String>>> = Default::default();
    let log: Arc<Mutex<Vec<Upd>>> = Default::default();
    let (e, l) = (errors.clone(), log.clone());
    let failed = crate::common::BuildFailed::default();
    timely::execute(timely::Config::process(peers), move |worker| {
        let index = worker.index();
        let manager = ddpersist::PersistManager::new(store.clone());
        let l = l.clone();
        let built = worker.dataflow::<u64, _, _>(|scope| -> ddpersist::Result<_> {
            let (fi, f) = scope.new_collection::<Row, i64>();
            let (oi, o) = scope.new_collection::<Row, i64>();
            if fresh {
                let (f, _) = f.persist(manager.token("fresh", index)?)?;
                let l = l.clone();
                f.inner
                    .inspect(move |(r, t, d)| l.lock().unwrap().push((r.clone(), *t, *d)));
            }
            let (o, _) = o.persist(manager.token("old", index)?)?;
            o.inner
                .inspect(move |(r, t, d)| l.lock().unwrap().push((r.clone(), *t, *d)));
            Ok((fi, oi))
        });
        let (mut fi, mut oi) = match built {
            Ok(b) => b,
            Err(err) => {
                let err = failed.fail(worker, err);
                e.lock().unwrap().push(format!("worker {index}: {err}"));
                return;
            }
        };
        if index == 0 {
            for t in 0..3u64 {
                fi.update_at((format!("f{t}"), t), t, 1);
                oi.update_at((format!("o{t}"), t), t, 1);
            }
        }
        drop((fi, oi));
        while worker.step_or_park(None) && !failed.is_set() {}
        let _ = failed.check(worker);
    })
    .unwrap();
    let errors = errors.lock().unwrap().clone();
    let log = log.lock().unwrap().clone();
    (errors, log)
}

/// From this round: a build refused for another worker count leaves the streams it created for the
/// dataflow's *new* ids behind (operators built before the refused one), and those then refuse the
/// rerun with the right worker count ("persisted by 3 workers"), though they never held anything.
/// README: "Mismatches (…, another worker count, …) fail when the dataflow is built": the refused build
/// must not make the right one fail.
#[test]
fn refused_worker_count_leaves_no_stray_streams() {
    let dir = tempfile::tempdir().unwrap();
    let (errors, _) = two_sources(dir.path(), 2, false);
    assert!(errors.is_empty(), "first run: {errors:?}");
    let (errors, _) = two_sources(dir.path(), 3, true);
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains("old")),
        "the 3-worker run must be refused over \"old\": {errors:?}"
    );
    let (errors, log) = two_sources(dir.path(), 2, true);
    assert!(
        errors.is_empty(),
        "the rerun with the right worker count (2) after a refused 3-worker build failed: {errors:?}"
    );
    let got = acc_at(&log, u64::MAX);
    let mut want = std::collections::BTreeMap::new();
    for t in 0..3u64 {
        // "old": run 1's rows, replayed (the same rows fed again lie below its upper and are dropped).
        want.insert((format!("f{t}"), t), 1);
        want.insert((format!("o{t}"), t), 1);
    }
    assert_eq!(got, want, "the rerun's outputs");
}
