//! Power-loss crash states of real store workloads, explored on the simulated file system (`SimFs`), in the
//! way of ALICE (OSDI '14) and CrashMonkey (OSDI '18).
//!
//! A workload of durable and unsynced writes, writes to a non-durable stream, seals (ordinary and logged:
//! a WAL seal record before the batch), spills (a small
//! memtable budget and WAL bound), WAL rollovers (small segments, released ones recycled), merges (`compact` after
//! `allow_compaction`, and inline merges at seals) and reopens runs once on a `SimFs` that records the disk
//! after every mutating or syncing call. For every such crash point, and each power-loss state
//! materialised there (only synced data; synced plus a prefix of the later operations; random subsets of
//! unsynced pages and directory entries), the store must open under the default recovery and hold:
//! - every acknowledged update (a durable write that returned, an unsynced write whose `sync` returned, an
//!   update below the upper of a seal that returned), with its value and diff 1, once;
//! - nothing never written, and nothing from a write that had not started by the crash point;
//! - each write to a durable stream whole or not at all (one WAL record);
//! - each seal whole: if the recovered upper covers a seal, every update written before that seal below
//!   its upper; the upper at least that of every seal that returned, and at most the greatest upper
//!   asked for before the crash.
//!
//! A second power loss during recovery is explored too: the open of a crash state is itself run with crash
//! points recorded, and each of its states must open the same way.
//!
//! The default run checks a bounded sample of states at every crash point (and recovery crashes at one in
//! 16); `DDPERSIST_CRASH_STATES=full` runs longer workloads and checks every prefix, 16 page subsets, and
//! recovery crashes at every crash point. Counts are printed at the end (`--nocapture`).
//!
//! The workload itself (`run_workload`): `crash_states/workload.rs`. A third test runs it with the flush
//! thread on, so that logged seals are written later — by size, by deadline, at close — their file-system
//! calls interleaved with the workload's, each a crash point (`DDPERSIST_FLUSHER_CRASH_SEEDS`
//! workloads, default 1, each with its own delay and flush size).

use crate::common;

use common::states;
pub(crate) use common::Rng;
use ddpersist::blob::DirBlob;
use ddpersist::fs::{CrashState, Fs, SimFs};
use ddpersist::wal::{FileLog, WalRecovery};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The workload and what it did (`run_workload`).
#[path = "crash_states/workload.rs"]
mod workload;

use workload::run_workload;

const STORE_DIR: &str = "/store";
const WAL_DIR: &str = "/store/wal";
/// Small WAL segments, so that workloads roll over, release segments and recycle them (at 2048 bytes the
/// default sample recycled none).
const SEGMENT_BYTES: u64 = 1024;
const STREAMS: [&str; 2] = ["d", "n"];
const DURABLE: [bool; 2] = [true, false];

thread_local! {
    /// The flush thread of the workload this thread explores: `None` runs without background threads
    /// (logged seals written inline, deterministic); `Some((delay, bytes))` with one merge thread and
    /// the flush thread, whose `logged_flush_delay` and `logged_flush_bytes` these are.
    static FLUSHER: std::cell::Cell<Option<(std::time::Duration, usize)>> = const { std::cell::Cell::new(None) };
}

fn options() -> Options {
    let mut options = Options {
        memtable_budget_bytes: 800,
        max_wal_bytes: Some(6000),
        merge_fan_in: 2,
        compaction_threads: 0,
        block_target_bytes: 512,
        ..Options::default()
    };
    if let Some((delay, bytes)) = FLUSHER.with(|f| f.get()) {
        options.compaction_threads = 1;
        options.logged_flush_delay = delay;
        options.logged_flush_bytes = bytes;
    }
    options
}

/// Opens the store on `fs`; `zero_fill`: the WAL keeps its active segment zero-filled ahead (a
/// background thread whose writes and syncs are crash points too).
fn open(fs: &SimFs, zero_fill: bool) -> ddpersist::Result<Store> {
    let blob = DirBlob::on(fs.shared(), STORE_DIR)?;
    let wal =
        FileLog::on(fs.shared(), WAL_DIR, SEGMENT_BYTES, WalRecovery::Strict)?.with_zero_fill(zero_fill);
    Store::open_on(Arc::new(blob), Arc::new(wal), options())
}

/// One written update. Keys are unique, so a consolidated snapshot holds each with diff 1.
struct Update {
    stream: usize,
    val: Vec<u8>,
    time: u64,
    /// File-system calls made before its write started: it cannot be on disk at a crash point at or
    /// before this.
    issued: u64,
    /// File-system calls made when it was acknowledged: it must survive every crash point from here on.
    acked: Option<u64>,
    /// File-system calls made when a clean reopen started that dropped it (an unsealed update of a
    /// non-durable stream): no later seal holds it.
    dropped: Option<u64>,
}

struct Seal {
    stream: usize,
    upper: u64,
    issued: u64,
    acked: Option<u64>,
}

/// What the workload did, with the file-system call counts at each acknowledgement.
#[derive(Default)]
struct Model {
    updates: BTreeMap<Vec<u8>, Update>,
    groups: Vec<Vec<Vec<u8>>>,
    seals: Vec<Seal>,
    created: [Option<u64>; 2],
    /// The greatest since asked for.
    since: [u64; 2],
    /// Unsynced writes not yet known durable: their tickets' keys.
    unsynced: Vec<Vec<u8>>,
    cover: Coverage,
}

/// What the workload exercised (so that the exploration is not vacuous).
#[derive(Default, Debug, Clone, Copy)]
struct Coverage {
    /// Spilled runs committed (new names in a manifest's spills).
    spills: u64,
    /// Merge outputs committed by `compact` or inline at seals (batches above level 0).
    merges: u64,
    /// WAL segment files seen.
    segments: u64,
    /// WAL segments seen that are recycled files (header flag bit 1: a released segment reused), so that
    /// the store's crash states include a recycled active segment holding an earlier incarnation's bytes
    /// past its records (tests/durability/wal_recycle_crash.rs explores recycling's own steps in a WAL alone).
    recycled: u64,
    reopens: u64,
}

impl Coverage {
    fn add(&mut self, o: Coverage) {
        self.spills += o.spills;
        self.merges += o.merges;
        self.segments += o.segments;
        self.recycled += o.recycled;
        self.reopens += o.reopens;
    }
}

impl Model {
    fn ack(&mut self, key: &[u8], at: u64) {
        let u = self.updates.get_mut(key).unwrap();
        u.acked = Some(u.acked.map_or(at, |a| a.min(at)));
    }
}

/// Checks the store a crash state opens to against what was acknowledged by crash point `k`.
/// With `and_go_on`, the recovered store must also take a write and a seal and reopen with them.
fn check(state: &SimFs, k: u64, m: &Model, zero_fill: bool, and_go_on: bool) -> Result<(), String> {
    let store = open(state, zero_fill).map_err(|e| format!("open failed: {e}"))?;
    for (s, id) in STREAMS.iter().enumerate() {
        if !store.has_stream(id) {
            if m.created[s].is_some_and(|a| a <= k) {
                return Err(format!("stream {id} created (acknowledged) but missing"));
            }
            continue;
        }
        let upper = store.upper(id).map_err(|e| e.to_string())?;
        let snapshot = store
            .snapshot(id)
            .and_then(|s| s.to_vec())
            .map_err(|e| e.to_string())?;
        let mut seen: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (key, val, time, diff) in snapshot {
            let u =
                m.updates.get(&key).filter(|u| u.stream == s).ok_or_else(|| {
                    format!("{id}: key {:?} was never written", String::from_utf8_lossy(&key))
                })?;
            let name = String::from_utf8_lossy(&key).to_string();
            if u.issued >= k {
                return Err(format!("{id}: {name} present but written after the crash point"));
            }
            if val != u.val || time < u.time || (time > u.time && time > m.since[s]) {
                return Err(format!(
                    "{id}: {name} has val/time {val:?}/{time}, wrote {:?}/{}",
                    u.val, u.time
                ));
            }
            *seen.entry(key).or_default() += diff;
        }
        if let Some((key, d)) = seen.iter().find(|(_, d)| **d != 1) {
            return Err(format!("{id}: {} has diff {d}", String::from_utf8_lossy(key)));
        }
        for (key, u) in m.updates.iter().filter(|(_, u)| u.stream == s) {
            if u.acked.is_some_and(|a| a <= k) && !seen.contains_key(key) {
                return Err(format!(
                    "{id}: acknowledged {} lost",
                    String::from_utf8_lossy(key)
                ));
            }
        }
        if DURABLE[s] {
            for keys in m.groups.iter().filter(|g| m.updates[&g[0]].stream == s) {
                let present = keys.iter().filter(|k| seen.contains_key(*k)).count();
                if present != 0 && present != keys.len() {
                    return Err(format!("{id}: {present} of {} updates of one write", keys.len()));
                }
            }
        }
        let asked = m.seals.iter().filter(|x| x.stream == s && x.issued < k);
        let max_asked = asked.clone().map(|x| x.upper).max().unwrap_or(0);
        if upper > max_asked {
            return Err(format!(
                "{id}: upper {upper} past every seal asked for ({max_asked})"
            ));
        }
        for seal in asked {
            if seal.acked.is_some_and(|a| a <= k) && upper < seal.upper {
                return Err(format!("{id}: seal to {} returned, upper is {upper}", seal.upper));
            }
            if seal.upper <= upper {
                let missing = m.updates.iter().find(|(key, u)| {
                    u.stream == s
                        && u.time < seal.upper
                        && u.issued < seal.issued
                        && u.dropped.is_none_or(|d| d > seal.issued)
                        && !seen.contains_key(*key)
                });
                if let Some((key, _)) = missing {
                    let key = String::from_utf8_lossy(key);
                    return Err(format!(
                        "{id}: seal to {} is in, but not {key} below it",
                        seal.upper
                    ));
                }
            }
        }
    }
    if and_go_on && store.has_stream(STREAMS[0]) {
        let step = |what: &str, e: ddpersist::Error| format!("after recovery, {what} failed: {e}");
        let t = store.upper(STREAMS[0]).map_err(|e| step("upper", e))? + 100;
        store
            .write_bytes(STREAMS[0], [(&b"after"[..], &b"v"[..], t, 1)])
            .map_err(|e| step("a write", e))?;
        store
            .write_bytes(STREAMS[0], [(&b"later"[..], &b"v"[..], t + 1, 1)])
            .map_err(|e| step("a write", e))?;
        store.seal(STREAMS[0], t + 1).map_err(|e| step("a seal", e))?;
        drop(store);
        let store = open(state, zero_fill).map_err(|e| step("a reopen", e))?;
        let keys: Vec<Vec<u8>> = store
            .snapshot(STREAMS[0])
            .and_then(|s| s.to_vec())
            .map_err(|e| step("a snapshot", e))?
            .into_iter()
            .map(|u| u.0)
            .collect();
        if !keys.contains(&b"after".to_vec()) || !keys.contains(&b"later".to_vec()) {
            return Err("after recovery, a sealed and an acknowledged write were lost by a reopen".into());
        }
    }
    Ok(())
}

#[derive(Default)]
struct Counts {
    points: u64,
    states: u64,
    /// Crash points of recoveries (a second crash while opening a crash state), and their states.
    recovery_points: u64,
    recovery_states: u64,
    cover: Coverage,
}

fn explore(seed: u64, steps: usize, full: bool, zero_fill: bool) -> Counts {
    let fs = SimFs::new();
    fs.record_crash_points(true);
    let m = run_workload(&fs, seed, steps, zero_fill);
    let points = fs.take_crash_points();
    let mut rng = Rng(seed ^ 0x00C0_FFEE);
    let mut counts = Counts {
        cover: m.cover,
        ..Counts::default()
    };
    for point in &points {
        counts.points += 1;
        for (i, which) in states(point, full, &mut rng).into_iter().enumerate() {
            counts.states += 1;
            let go_on = which == CrashState::Prefix(point.pending()) || (full && which == CrashState::Synced);
            if let Err(e) = check(&point.state(which), point.call, &m, zero_fill, go_on) {
                panic!(
                    "seed {seed} (zero fill {zero_fill}), crash after call {} ({which:?}): {e}",
                    point.call
                );
            }
            // A second power loss during the recovery of this state (its removals of orphans and strays,
            // the cut of a torn tail, a new segment): every state of every crash point of that open. All
            // of them for the first four states of each crash point in full mode (synced only, everything,
            // two page subsets), of one crash point in 16 by default.
            if i < 4 && (full || counts.points.is_multiple_of(16)) {
                let state = point.state(which);
                state.record_crash_points(true);
                // Whether this open fails is `check`'s business, above.
                drop(open(&state, zero_fill));
                for inner in state.take_crash_points() {
                    counts.recovery_points += 1;
                    for again in states(&inner, false, &mut rng) {
                        counts.recovery_states += 1;
                        if let Err(e) = check(&inner.state(again), point.call, &m, zero_fill, false) {
                            panic!(
                                "seed {seed} (zero fill {zero_fill}), crash after call {} ({which:?}), then \
                                 after call {} of its recovery ({again:?}): {e}",
                                point.call, inner.call
                            );
                        }
                    }
                }
            }
        }
    }
    counts
}

#[test]
fn every_crash_state_of_a_store_workload_opens_with_every_acknowledged_write() {
    let full = std::env::var("DDPERSIST_CRASH_STATES").is_ok_and(|v| v == "full");
    let (seeds, steps) = if full { (0..4, 100) } else { (0..3, 50) };
    let mut total = Counts::default();
    for seed in seeds {
        // Odd seeds zero-fill the WAL: its filler thread makes those runs vary in their interleaving, not
        // in what must hold.
        let c = explore(seed, steps, full, seed % 2 == 1);
        if full {
            eprintln!(
                "crash_states: seed {seed}: {} crash points, {} states; recovery: {} crash points, {} states",
                c.points, c.states, c.recovery_points, c.recovery_states
            );
        }
        total.points += c.points;
        total.states += c.states;
        total.recovery_points += c.recovery_points;
        total.recovery_states += c.recovery_states;
        total.cover.add(c.cover);
    }
    eprintln!(
        "crash_states ({}): {} crash points explored, {} states checked, nothing acknowledged lost",
        if full { "full" } else { "default sample" },
        total.points,
        total.states
    );
    eprintln!(
        "crash_states: and a second crash during recovery: {} crash points, {} states",
        total.recovery_points, total.recovery_states
    );
    eprintln!("crash_states: the workloads exercised {:?}", total.cover);
    let c = total.cover;
    assert!(
        c.spills > 0 && c.merges > 0 && c.segments > 2 && c.recycled > 0 && c.reopens > 0,
        "{c:?}"
    );
    assert!(total.states > total.points);
}

/// The batch files of one crash state's store directory, by file number (`None`: a temporary).
fn batch_files(state: &SimFs) -> Vec<(String, Option<u64>)> {
    let names = state.list(std::path::Path::new(STORE_DIR)).unwrap_or_default();
    (names.into_iter())
        .filter(|n| n.contains(".batch"))
        .map(|n| {
            let no = ddpersist::batch::parse_batch_file_name(&n);
            (n, no)
        })
        .collect()
}

/// The flush and merge protocol's own crash states, every one of them: a batch file (a seal's, a merge's)
/// is written under its final name and fsync'd, with no temporary, no rename and no directory fsync of its
/// own; the manifest commit's directory fsync makes its name durable. At every crash point of two seals
/// and a merge, in every state (synced only, every prefix of the later operations, page subsets), the
/// store opens with every write (all acknowledged before), an upper of a seal asked for; the batch files
/// its manifest does not name (partial, whole, or written by a merge) are removed as orphans, durably
/// (none is left after the open), and the rest kept; and a new seal after recovery numbers its file past
/// every file the manifest names, which no orphan can then come back under.
#[test]
fn a_batch_file_under_its_final_name_counts_only_once_a_manifest_names_it() {
    let fs = SimFs::new();
    let store = open(&fs, false).unwrap();
    store.create_stream("d", StreamOptions { durable: true }).unwrap();
    let key = |i: u64| format!("k{i:03}").into_bytes();
    for t in 0..30u64 {
        let updates: Vec<_> = (0..4).map(|j| (key(t * 4 + j), b"v".to_vec(), t, 1i64)).collect();
        let refs = updates.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
        store.write_bytes("d", refs).unwrap();
    }
    store.allow_compaction("d", 15).unwrap();
    fs.record_crash_points(true);
    let sealed: Vec<String> = [10, 20]
        .iter()
        .map(|u| store.seal("d", *u).unwrap().file.unwrap())
        .collect();
    store.compact("d").unwrap();
    let points = fs.take_crash_points();
    drop(store);
    let written = 30 * 4;
    let (mut unnamed, mut named, mut merged, mut states) = (0, 0, 0, 0);
    let mut rng = Rng(7);
    for point in &points {
        let mut which = vec![CrashState::Synced];
        which.extend((1..=point.pending()).map(CrashState::Prefix));
        which.extend((0..4).map(|_| CrashState::Pages(rng.below(u64::MAX))));
        for which in which {
            states += 1;
            let state = point.state(which);
            let at = format!("crash after call {} ({which:?})", point.call);
            let files = batch_files(&state);
            assert!(
                files
                    .iter()
                    .all(|(n, no)| no.is_some() || !n.ends_with(".batch.tmp")),
                "{at}: a batch temporary {files:?}"
            );
            // The manifest on disk in this state, before the open (which may merge at once) changes it.
            let blob = ddpersist::blob::DirBlob::on(state.shared(), "/store").unwrap();
            let kept: Vec<u64> = ddpersist::version::read_manifest(&blob)
                .unwrap_or_else(|e| panic!("{at}: {e}"))
                .expect("a manifest")
                .manifest
                .file_nos()
                .collect();
            let store = open(&state, false).unwrap_or_else(|e| panic!("{at}: open failed: {e}"));
            let upper = store.upper("d").unwrap();
            assert!([0, 10, 20].contains(&upper), "{at}: upper {upper}");
            let snapshot = store.snapshot("d").and_then(|s| s.to_vec()).unwrap();
            assert_eq!(snapshot.len(), written, "{at}: updates after recovery");
            let manifest = store.manifest();
            let removed = &store.recovery_report().orphans_removed;
            for (name, no) in &files {
                let no = no.unwrap();
                assert_eq!(
                    removed.contains(name),
                    !kept.contains(&no),
                    "{at}: {name} kept {kept:?}, removed {removed:?}"
                );
                if kept.contains(&no) {
                    named += 1;
                } else {
                    unnamed += 1;
                }
            }
            merged += manifest.streams[0].batches.iter().filter(|b| b.level > 0).count();
            // The orphans are gone (their removal made durable before any new file: a crash now keeps
            // the directory as it is).
            // (The open may have merged at once: the manifest it left.)
            let now: Vec<u64> = manifest.file_nos().collect();
            let left: Vec<Option<u64>> = batch_files(&state).into_iter().map(|f| f.1).collect();
            assert!(
                left.iter().all(|no| no.is_some_and(|no| now.contains(&no))),
                "{at}: after the open, batch files {left:?}, the manifest names {now:?}"
            );
            // Go on: the next seal's file is numbered past every file the manifest names (and, being
            // created `O_EXCL`, could not take an existing file's name anyway).
            let high = now.iter().copied().max().unwrap_or(0);
            let t = upper.max(30);
            store
                .write_bytes("d", [(&b"after"[..], &b"v"[..], t, 1)])
                .unwrap();
            let info = store.seal("d", t + 1).unwrap();
            let name = info.file.unwrap();
            let no = ddpersist::batch::parse_batch_file_name(name.rsplit('/').next().unwrap()).unwrap();
            assert!(
                no > high,
                "{at}: the seal after recovery wrote {name}, files were {files:?}"
            );
            drop(store);
            let store = open(&state, false).unwrap_or_else(|e| panic!("{at}: reopen failed: {e}"));
            let snapshot = store.snapshot("d").and_then(|s| s.to_vec()).unwrap();
            assert_eq!(
                snapshot.len(),
                written + 1,
                "{at}: updates after a seal and a reopen"
            );
        }
    }
    eprintln!(
        "crash_states: the flush protocol: {} crash points, {states} states; batch files named {named}, \
         unnamed (removed) {unnamed}; merged batches recovered {merged}; seals wrote {sealed:?}",
        points.len()
    );
    assert!(unnamed > 0 && named > 0 && merged > 0);
}

#[test]
fn crash_states_with_the_flush_thread_writing_logged_seals_late() {
    let seeds: u64 = std::env::var("DDPERSIST_FLUSHER_CRASH_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut total = Counts::default();
    for seed in 0..seeds {
        let delay = std::time::Duration::from_millis([0, 1, 3][(seed % 3) as usize]);
        let bytes = [150, 0, 1 << 20][(seed / 3 % 3) as usize];
        FLUSHER.with(|f| f.set(Some((delay, bytes))));
        let c = explore(0xad05_3000 + seed, 50, false, false);
        total.points += c.points;
        total.states += c.states;
        total.recovery_points += c.recovery_points;
        total.recovery_states += c.recovery_states;
        total.cover.add(c.cover);
    }
    FLUSHER.with(|f| f.set(None));
    eprintln!(
        "crash states with the flush thread: {} crash points, {} states; recovery {} points, {} states; {:?}",
        total.points, total.states, total.recovery_points, total.recovery_states, total.cover
    );
    assert!(total.states > total.points);
}
