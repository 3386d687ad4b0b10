//! Clusters of child processes killed with SIGKILL: the child (`cluster_chain_child`, one process of a
//! paced cluster run), [`spawn_cluster`], kill rounds at random points ([`killed`]) and at random moments
//! ([`killed_timed`], also while the inputs close), each followed by a restart checked against DD.

use crate::cluster::*;
use crate::cluster_process::run_process;
use crate::common::{self, Rng};
use crate::schedule::*;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The child: one process of a cluster run, paced, killed by its parent.
#[test]
#[ignore = "child process of cluster_killed::chain_in_a_cluster_killed_at_random_*"]
fn cluster_chain_child() {
    let Some(dir) = common::child_var("DDPERSIST_CLUSTERS_CLUSTER_DIR") else {
        return;
    };
    let var = |n: &str| std::env::var(n).unwrap();
    let threads: usize = var("DDPERSIST_CLUSTERS_CLUSTER_THREADS").parse().unwrap();
    let source = Source::parse(&var("DDPERSIST_CLUSTERS_CLUSTER_SOURCE"));
    let seed: u64 = var("DDPERSIST_CLUSTERS_CLUSTER_SEED").parse().unwrap();
    let addresses: Vec<String> = var("DDPERSIST_CLUSTERS_CLUSTER_ADDRESSES")
        .split(',')
        .map(String::from)
        .collect();
    let slots = cluster_slots(addresses.len() * threads, seed, source);
    let p = Proc {
        dir: PathBuf::from(dir),
        process: var("DDPERSIST_CLUSTERS_CLUSTER_PROCESS").parse().unwrap(),
        threads,
        addresses,
        source,
        end_slot: slots.len(),
        pace_ms: std::env::var("DDPERSIST_CLUSTERS_CLUSTER_PACE").map_or(4, |v| v.parse().unwrap()),
        feeder: None,
        from: std::env::var("DDPERSIST_CLUSTERS_CLUSTER_FROM").map_or(0, |v| v.parse().unwrap()),
        close: std::env::var("DDPERSIST_CLUSTERS_CLUSTER_CLOSE").is_ok(),
    };
    let seen = run_process(&p, &slots, Arc::default());
    println!("done {:?}", seen.errors);
}

/// Spawns a two-process cluster as child processes running `cluster_chain_child` (stdout piped): process
/// `p` over directory `paths[p]` with `threads` workers, both on new local addresses, with `source`, `seed`
/// and the `extra` environment variables.
pub fn spawn_cluster(
    paths: &[PathBuf],
    threads: usize,
    source: Source,
    seed: u64,
    extra: &[(&str, String)],
) -> Vec<std::process::Child> {
    let addresses = common::local_addresses(paths.len()).join(",");
    (0..paths.len())
        .map(|process| {
            let mut envs = vec![
                (
                    "DDPERSIST_CLUSTERS_CLUSTER_DIR",
                    paths[process].display().to_string(),
                ),
                ("DDPERSIST_CLUSTERS_CLUSTER_PROCESS", process.to_string()),
                ("DDPERSIST_CLUSTERS_CLUSTER_THREADS", threads.to_string()),
                ("DDPERSIST_CLUSTERS_CLUSTER_ADDRESSES", addresses.clone()),
                ("DDPERSIST_CLUSTERS_CLUSTER_SOURCE", source.name().to_string()),
                ("DDPERSIST_CLUSTERS_CLUSTER_SEED", seed.to_string()),
            ];
            envs.extend(extra.iter().cloned());
            common::spawn_child(module_path!(), "cluster_chain_child", &envs)
        })
        .collect()
}

/// Kill rounds of a two-process cluster; after each kill a clean restart to the end is checked, and a
/// final run to the end checks everything again.
pub fn killed(threads: usize, source: Source, seed: u64, rounds: u64) {
    let (slots, expected, _dirs, paths) = schedule_and_dirs(threads, source, seed);
    let mut rng = Rng(seed * 31 + threads as u64);
    for round in 0..rounds {
        let mut children = spawn_cluster(&paths, threads, source, seed, &[]);
        let victim = rng.below(2) as usize;
        // Process 0's worker 0 prints; kill at a random point of it.
        let (a, b) = children.split_at_mut(1);
        let (printer, other) = (&mut a[0], &mut b[0]);
        let k = if victim == 0 {
            common::kill::kill_at_random(printer, &mut rng)
        } else {
            let mut lines = Vec::new();
            let n = rng.below(8) + 1;
            let reached = common::read_until(printer, "complete ", n);
            lines.push(reached);
            std::thread::sleep(Duration::from_millis(rng.below(6)));
            let _ = other.kill();
            let status = other.wait().unwrap();
            common::kill::Killed {
                status,
                start: None,
                complete: Some(reached),
            }
        };
        std::thread::sleep(Duration::from_millis(30));
        kill_all(&mut children);
        let what = format!(
            "{threads} worker(s)/process, {source:?}, seed {seed}, round {round}: killed process {victim} \
             after complete {:?}",
            k.complete
        );
        eprintln!("{what}");
        let seen = run_cluster(
            &paths,
            threads,
            source,
            &slots,
            slots.len() * (round as usize + 1) / rounds as usize,
        );
        check(&what, &seen, &paths, threads, &slots, &expected).unwrap();
    }
    let seen = run_cluster(&paths, threads, source, &slots, slots.len());
    check_last_run(threads, source, seed, &seen, &paths, &slots, &expected);
    assert_eq!(seen.passed, Some(slots.last().unwrap().time + 1));
}

/// As `killed`, but each round kills a random process at a random moment (50–450 ms after the spawn,
/// the children pacing 1 ms a slot), not only between completed slots: seals, exchanges and the
/// agreement on the resume point may be in flight.
pub fn killed_timed(threads: usize, source: Source, seed: u64, rounds: u64) {
    killed_timed_closing(threads, source, seed, rounds, false)
}

/// `killed_timed`; with `close`, every run (the children's and the restarts') closes its inputs at its
/// end, and a kill may land while the workers finish their streams.
pub fn killed_timed_closing(threads: usize, source: Source, seed: u64, rounds: u64, close: bool) {
    CLOSE.with(|c| c.set(close));
    let (slots, expected, _dirs, paths) = schedule_and_dirs(threads, source, seed);
    let mut rng = Rng(seed * 131 + threads as u64);
    for round in 0..rounds {
        let closing = match close {
            true => "DDPERSIST_CLUSTERS_CLUSTER_CLOSE",
            false => "DDPERSIST_CLUSTERS_CLUSTER_NO_CLOSE",
        };
        let extra = [
            ("DDPERSIST_CLUSTERS_CLUSTER_PACE", "1".to_string()),
            (closing, "1".to_string()),
        ];
        let mut children = spawn_cluster(&paths, threads, source, seed, &extra);
        for c in children.iter_mut() {
            // Drain stdout so the child never blocks on a full pipe.
            let out = c.stdout.take().unwrap();
            std::thread::spawn(move || std::io::copy(&mut { out }, &mut std::io::sink()));
        }
        let victim = rng.below(2) as usize;
        let ms = 50 + rng.below(400);
        std::thread::sleep(Duration::from_millis(ms));
        let _ = children[victim].kill();
        std::thread::sleep(Duration::from_millis(20));
        kill_all(&mut children);
        let what = format!(
            "{threads}/{source:?}, seed {seed}, round {round}: killed process {victim} after {ms} ms"
        );
        eprintln!("{what}");
        let end = slots.len() * (round as usize + 1) / rounds as usize;
        let mut seen = run_cluster(&paths, threads, source, &slots, end);
        // A closed run completes every time; what it fed ends at slot `end`.
        let fed = slots[..end].iter().map(|s| s.time + 1).max().unwrap_or(0);
        let resume = seen.resumes.first().map_or(0, |r| r.1);
        seen.passed = seen.passed.map(|p| p.min(fed.max(resume)));
        check(&what, &seen, &paths, threads, &slots, &expected).unwrap();
    }
    let mut seen = run_cluster(&paths, threads, source, &slots, slots.len());
    seen.passed = seen.passed.map(|p| p.min(slots.last().unwrap().time + 1));
    CLOSE.with(|c| c.set(false));
    check_last_run(threads, source, seed, &seen, &paths, &slots, &expected);
}

/// A kill test's schedule (a two-process cluster of `threads` workers each), DD's answer to it, and a new
/// directory per process (removed when dropped) with its path.
fn schedule_and_dirs(
    threads: usize,
    source: Source,
    seed: u64,
) -> (Vec<Slot>, Vec<Upd>, Vec<tempfile::TempDir>, Vec<PathBuf>) {
    let peers = 2 * threads;
    let slots = cluster_slots(peers, seed, source);
    let expected = oracle(&slots);
    let (dirs, paths) = common::temp_dirs(2);
    (slots, expected, dirs, paths)
}

/// Kills every child process of a cluster and waits for each (one may have ended before).
fn kill_all(children: &mut [std::process::Child]) {
    for c in children.iter_mut() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Checks a kill test's last run (`seen`, to the end of `slots`) against DD's answer `expected`.
fn check_last_run(
    threads: usize,
    source: Source,
    seed: u64,
    seen: &Seen,
    paths: &[PathBuf],
    slots: &[Slot],
    expected: &[Upd],
) {
    check(
        &format!("{threads}/{source:?}/{seed}: last run"),
        seen,
        paths,
        threads,
        slots,
        expected,
    )
    .unwrap();
}

/// Runs `run(threads, source, seed)` for each seed of `seeds`, with 1 and 2 workers a process and each
/// source (the longer tests' sweep).
fn for_each_seed_threads_and_source(seeds: std::ops::Range<u64>, run: impl Fn(usize, Source, u64)) {
    for seed in seeds {
        for threads in [1, 2] {
            for source in [Source::Persist, Source::Arranged, Source::Upsert] {
                run(threads, source, seed);
            }
        }
    }
}

/// Every run closes its inputs at its end (the source ends there) and the next run continues past it,
/// killed at random moments (also while the workers finish their streams).
#[test]
fn chain_in_a_cluster_closing_and_killed_at_random_moments() {
    killed_timed_closing(1, Source::Persist, 60, 3, true);
}

#[test]
#[ignore = "longer: more sources of chain_in_a_cluster_closing_and_killed_at_random_moments"]
fn chain_in_a_cluster_closing_and_killed_at_random_moments_long() {
    for seed in 60..64 {
        killed_timed_closing(2, Source::Arranged, seed, 4, true);
        killed_timed_closing(1, Source::Upsert, seed, 4, true);
        killed_timed_closing(2, Source::Persist, seed, 4, true);
    }
}

#[test]
fn chain_in_a_cluster_killed_at_random_moments() {
    killed_timed(2, Source::Arranged, 42, 3);
}

#[test]
#[ignore = "longer: more seeds of chain_in_a_cluster_killed_at_random_moments"]
fn chain_in_a_cluster_killed_at_random_moments_long() {
    for_each_seed_threads_and_source(50..56, |threads, source, seed| {
        killed_timed(threads, source, seed, 5)
    });
}

#[test]
fn chain_in_a_cluster_killed_at_random_persist_1() {
    killed(1, Source::Persist, 3, 3);
}

#[test]
fn chain_in_a_cluster_killed_at_random_arranged_2() {
    killed(2, Source::Arranged, 4, 3);
}

#[test]
fn chain_in_a_cluster_killed_at_random_upsert_1() {
    killed(1, Source::Upsert, 5, 3);
}

#[test]
#[ignore = "longer: more seeds and sources"]
fn chain_in_a_cluster_killed_at_random_long() {
    for_each_seed_threads_and_source(10..16, |threads, source, seed| killed(threads, source, seed, 4));
}
