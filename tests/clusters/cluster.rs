//! Persisted chains through DD's operators in a timely *cluster* of processes (`Config::Cluster` over
//! 127.0.0.1; 2 processes of 1 or 2 workers, each process its own store directory, the same at every
//! restart, README "Restarting"): a persisted source (`persist` through a `PersistManager` token, an
//! arrangement, de-upsert, or a durable `persist`) → filter, map, join with an in-memory collection,
//! reduce (`schedule::middle`) → `arrange_by_key_persisted` ("dst"). One process is killed with SIGKILL at
//! a random point (the other then too), both are restarted and fed from the agreed resume point
//! (`operators::resume_at` over every persisted operator's state), and the output is compared with DD in
//! memory (exact, at every time).
//!
//! This module is the harness: the source kinds, a process's part of a run and what it saw, whole runs in
//! threads of this process, the input schedule, and the checks against DD in memory.
//! `cluster_process` runs one process (the chain on each worker, the resume point, the feeding);
//! `cluster_killed` runs clusters of child processes and kills them.

use crate::cluster_process::run_process;
use crate::common;
use crate::schedule::*;
use ddpersist::operators::worker_stream_id;
use ddpersist::Store;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// The persisted source of the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `persist` through a manager token ("src"), streams not durable: the input replays.
    Persist,
    /// `arrange_by_key_persisted` ("srcA") and its `as_collection`.
    Arranged,
    /// `upsert_persisted` ("srcU") over upserts.
    Upsert,
    /// `persist` through a durable manager ("srcD"): the input does not replay, it continues at the
    /// agreed greatest upper.
    Durable,
}

impl Source {
    pub fn name(self) -> &'static str {
        match self {
            Source::Persist => "persist",
            Source::Arranged => "arranged",
            Source::Upsert => "upsert",
            Source::Durable => "durable",
        }
    }

    pub fn parse(s: &str) -> Source {
        match s {
            "persist" => Source::Persist,
            "arranged" => Source::Arranged,
            "upsert" => Source::Upsert,
            "durable" => Source::Durable,
            _ => panic!("{s}"),
        }
    }
}

/// One process's part of a cluster run.
#[derive(Clone, Debug)]
pub struct Proc {
    pub dir: PathBuf,
    pub process: usize,
    pub threads: usize,
    pub addresses: Vec<String>,
    pub source: Source,
    /// Feed slots below this index.
    pub end_slot: usize,
    /// Per slot: sleep this long once it completed, printing `complete T` (0: no pause).
    pub pace_ms: u64,
    /// Who feeds src: `None` slot `s` by global worker `s % peers`, `Some(w)` by worker `w` only.
    pub feeder: Option<usize>,
    /// Give src updates only of slots at or beyond this time (a durable source that sent the earlier
    /// ones already sends each at most once); `println!("sent T")` after giving slot `T`'s.
    pub from: u64,
    /// Close the inputs at the end (the source ends there) and step until the probe is done.
    pub close: bool,
}

/// What one process's workers saw.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub log: Vec<Upd>,
    /// dst2's and dst3's outputs.
    pub log2: Vec<Upd2>,
    pub log3: Vec<Upd2>,
    /// What the persisted source emitted (its replay and new input).
    pub log_src: Vec<Upd>,
    /// (global worker, agreed resume point, the worker's own handles' local resume points).
    pub resumes: Vec<(usize, u64, Vec<u64>)>,
    pub errors: Vec<String>,
    /// The least probe frontier a worker saw at its end.
    pub passed: Option<u64>,
}

thread_local! {
    /// Whether `run_cluster*` called on this thread closes the inputs at the end.
    pub static CLOSE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A whole cluster run in threads of this process.
pub fn run_cluster(
    dirs: &[PathBuf],
    threads: usize,
    source: Source,
    slots: &[Slot],
    end_slot: usize,
) -> Seen {
    run_cluster_from(dirs, threads, source, slots, end_slot, 0)
}

/// `run_cluster`, giving src only the slots at or beyond time `from`.
pub fn run_cluster_from(
    dirs: &[PathBuf],
    threads: usize,
    source: Source,
    slots: &[Slot],
    end_slot: usize,
    from: u64,
) -> Seen {
    run_cluster_with(dirs, threads, source, slots, end_slot, from, None)
}

/// `run_cluster_from`, src fed by global worker `feeder` alone if given.
pub fn run_cluster_with(
    dirs: &[PathBuf],
    threads: usize,
    source: Source,
    slots: &[Slot],
    end_slot: usize,
    from: u64,
    feeder: Option<usize>,
) -> Seen {
    let addresses = common::local_addresses(dirs.len());
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(process, dir)| {
            let p = Proc {
                dir: dir.clone(),
                process,
                threads,
                addresses: addresses.clone(),
                source,
                end_slot,
                pace_ms: 0,
                feeder,
                from,
                close: CLOSE.with(|c| c.get()),
            };
            let (slots, stop) = (slots.to_vec(), stop.clone());
            std::thread::spawn(move || run_process(&p, &slots, stop))
        })
        .collect();
    let mut all = Seen::default();
    for h in handles {
        let s = h.join().unwrap();
        all.log.extend(s.log);
        all.log2.extend(s.log2);
        all.log3.extend(s.log3);
        all.log_src.extend(s.log_src);
        all.resumes.extend(s.resumes);
        all.errors.extend(s.errors);
        all.passed = match (all.passed, s.passed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    all.resumes.sort();
    all
}

/// Decoded updates `((key, val), time, diff)`.
pub type Stored<K, V> = Vec<((K, V), u64, i64)>;

/// The decoded updates of every worker stream of operator `id` over the processes' directories
/// (`threads` workers each), with their least upper.
pub fn stored_all<K: ddpersist::Codec + Ord + Clone, V: ddpersist::Codec + Ord + Clone>(
    dirs: &[PathBuf],
    threads: usize,
    id: &str,
) -> (Stored<K, V>, u64) {
    let peers = dirs.len() * threads;
    let (mut out, mut upper) = (Vec::new(), u64::MAX);
    for (p, dir) in dirs.iter().enumerate() {
        let store = Store::open(dir).unwrap();
        for w in p * threads..(p + 1) * threads {
            let stream = worker_stream_id(id, w, peers);
            if !store.has_stream(&stream) {
                return (Vec::new(), 0);
            }
            upper = upper.min(store.upper(&stream).unwrap());
            for (k, v, t, d) in store.snapshot(&stream).unwrap().decode::<K, V>().unwrap() {
                out.push(((k, v), t, d));
            }
        }
    }
    (out, upper)
}

/// The input schedule of the cluster tests.
pub fn cluster_slots(peers: usize, seed: u64, source: Source) -> Vec<Slot> {
    cluster_slots_masked(
        peers,
        seed,
        source,
        vec![(1 << peers) - 1, 1, 0, (1 << peers) - 2],
    )
}

/// `cluster_slots` with src keys only on the workers of `masks` (cycled per slot).
pub fn cluster_slots_masked(peers: usize, seed: u64, source: Source, masks: Vec<u32>) -> Vec<Slot> {
    let mut slots = generate(&Gen {
        peers,
        slots: 14,
        base: 0,
        max_jump: 2,
        big_jump: 0,
        masks,
        dim_changes: true,
        seed,
    });
    if source == Source::Upsert {
        to_upserts(&mut slots, seed);
    }
    slots
}

/// Checks a run: no errors, one agreed resume point, the output accumulated at every slot time below
/// what the run completed equals `expected` (the dst arrangement re-emits its whole history at a
/// restart), and what dst stored equals it below its upper.
pub fn check(
    what: &str,
    seen: &Seen,
    dirs: &[PathBuf],
    threads: usize,
    slots: &[Slot],
    expected: &[Upd],
) -> Result<(), String> {
    if !seen.errors.is_empty() {
        return Err(format!("{what}: errors {:?}", seen.errors));
    }
    let agreed: Vec<u64> = seen.resumes.iter().map(|r| r.1).collect();
    if agreed.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("{what}: resume points differ {:?}", seen.resumes));
    }
    let passed = seen.passed.unwrap_or(0);
    for s in slots.iter().filter(|s| s.time < passed) {
        let (got, want) = (acc_at(&seen.log, s.time), acc_at(expected, s.time));
        if got != want {
            return Err(format!(
                "{what}: output at time {} (passed {passed}, resumes {:?}): got {got:?}, expected {want:?}",
                s.time, seen.resumes
            ));
        }
    }
    let (e2, e3) = (to_dst2(expected), to_dst3(expected));
    for s in slots.iter().filter(|s| s.time < passed) {
        for (name, log, e) in [("dst2", &seen.log2, &e2), ("dst3", &seen.log3, &e3)] {
            let (got, want) = (acc_at(log, s.time), acc_at(e, s.time));
            if got != want {
                return Err(format!(
                    "{what}: {name} at time {} (passed {passed}, resumes {:?}): got {got:?}, expected {want:?}",
                    s.time, seen.resumes
                ));
            }
        }
    }
    let (stored, upper) = stored_all::<String, u64>(dirs, threads, "dst");
    for s in slots.iter().filter(|s| s.time < upper) {
        let (got, want) = (acc_at(&stored, s.time), acc_at(expected, s.time));
        if got != want {
            return Err(format!(
                "{what}: stored dst at time {} (upper {upper}): got {got:?}, expected {want:?}",
                s.time
            ));
        }
    }
    Ok(())
}

/// A cluster run end to end without kills: the baseline every kill test relies on.
#[test]
fn chain_in_a_cluster_matches_dd_in_memory() {
    for (threads, source) in [(2, Source::Arranged), (1, Source::Upsert)] {
        let slots = cluster_slots(2 * threads, 1, source);
        let expected = oracle(&slots);
        let (_dirs, paths) = common::temp_dirs(2);
        for end in [6, slots.len()] {
            let seen = run_cluster(&paths, threads, source, &slots, end);
            check(
                &format!("{threads}/{source:?} to slot {end}"),
                &seen,
                &paths,
                threads,
                &slots,
                &expected,
            )
            .unwrap();
        }
    }
}
