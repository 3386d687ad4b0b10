//! Power-loss crash states of WAL segment recycling (WAL version 6), on the simulated file system.
//!
//! A log with small segments takes group commits of records and releases old segments as it goes, so that
//! released segments are kept (`*.free`), recycled by rollovers (header rewritten, renamed) and written
//! over, and recycled segments are cut to their records before their successors exist. At every crash
//! point, in each power-loss state (only synced data; every prefix of the later operations; random
//! subsets of unsynced pages and directory entries), the log must open under `WalRecovery::Strict` and
//! replay:
//! - every acknowledged record (its `sync` returned) at or past the last release point asked for;
//! - only records that were appended, each at the LSN it was appended at, in LSN order: never an earlier
//!   incarnation's record from a recycled file (those carry checksums seeded with other LSNs);
//! - and then take a new record over whatever the file held past the log's end, and replay it after
//!   another open.
//!
//! `DDPERSIST_CRASH_STATES=full` runs longer workloads with more page subsets.

use crate::common;

use common::Rng;
use ddpersist::fs::{CrashState, Fs, SimFs};
use ddpersist::wal::{FileLog, Log, WalRecovery};
use std::collections::BTreeMap;

const WAL_DIR: &str = "/wal";
const SEGMENT_BYTES: u64 = 1024;

/// A record's payload: its number, then filler of a length drawn per record.
fn payload(no: u32, len: usize) -> Vec<u8> {
    let mut p = no.to_le_bytes().to_vec();
    p.resize(4 + len, (no % 251) as u8);
    p
}

/// What the workload did, by the file system's call count.
#[derive(Default)]
struct Model {
    /// Every appended record: LSN → payload.
    appended: BTreeMap<u64, Vec<u8>>,
    /// (calls when its `sync` returned, end LSN of the group commit).
    acked: Vec<(u64, u64)>,
    /// (calls when a `release_before` started, the LSN it released before).
    released: Vec<(u64, u64)>,
}

/// Replayed records: (LSN, payload).
type Records = Vec<(u64, Vec<u8>)>;

fn open(fs: &SimFs) -> ddpersist::Result<(FileLog, Records)> {
    let log = FileLog::on(fs.shared(), WAL_DIR, SEGMENT_BYTES, WalRecovery::Strict)?;
    let mut got = Vec::new();
    log.replay(&mut |lsn, p| {
        got.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok((log, got))
}

fn run_workload(fs: &SimFs, seed: u64, steps: usize) -> (Model, usize) {
    let mut rng = Rng(seed);
    let mut m = Model::default();
    let (log, _) = open(fs).unwrap();
    let mut no = 0u32;
    let mut ends = Vec::new();
    for _ in 0..steps {
        let mut end = 0;
        for _ in 0..1 + rng.below(3) {
            let p = payload(no, 20 + rng.below(280) as usize);
            no += 1;
            let (start, e) = log.append(&p).unwrap();
            m.appended.insert(start, p);
            end = e;
        }
        log.sync(end).unwrap();
        m.acked.push((fs.calls(), end));
        ends.push(end);
        // Release all but the last few group commits now and then (as seals would).
        if rng.below(4) == 0 && ends.len() > 3 {
            let before = ends[ends.len() - 3];
            m.released.push((fs.calls(), before));
            log.release_before(before).unwrap();
        }
    }
    let recycled = fs
        .list(std::path::Path::new(WAL_DIR))
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".wal"))
        .filter(|n| {
            let bytes = fs.read(&std::path::Path::new(WAL_DIR).join(n)).unwrap();
            bytes.len() >= 16 && bytes[12] & 2 != 0
        })
        .count();
    (m, recycled)
}

/// Checks one crash state (after `call` calls): see the module docs.
fn check(state: &SimFs, call: u64, m: &Model) -> Result<(), String> {
    let (log, got) = open(state).map_err(|e| format!("open failed: {e}"))?;
    let mut last = None;
    for (lsn, p) in &got {
        if m.appended.get(lsn) != Some(p) {
            return Err(format!("replayed a record never appended at LSN {lsn}"));
        }
        if last.is_some_and(|l| l >= *lsn) {
            return Err(format!("LSN {lsn} replayed out of order"));
        }
        last = Some(*lsn);
    }
    let released = (m.released.iter())
        .filter(|(at, _)| *at < call)
        .map(|(_, lsn)| *lsn)
        .max()
        .unwrap_or(0);
    let acked = (m.acked.iter())
        .filter(|(at, _)| *at <= call)
        .map(|(_, end)| *end)
        .max()
        .unwrap_or(0);
    let replayed: std::collections::BTreeSet<u64> = got.iter().map(|(l, _)| *l).collect();
    for (lsn, p) in m.appended.range(released..) {
        if lsn + 16 + p.len() as u64 <= acked && !replayed.contains(lsn) {
            return Err(format!("acknowledged record at LSN {lsn} lost"));
        }
    }
    // The log goes on over whatever its last file holds past its end.
    let tail = payload(u32::MAX, 40);
    let (start, end) = log
        .append(&tail)
        .map_err(|e| format!("append after recovery: {e}"))?;
    log.sync(end).map_err(|e| format!("sync after recovery: {e}"))?;
    drop(log);
    let (_, again) = open(state).map_err(|e| format!("second open failed: {e}"))?;
    if again.last() != Some(&(start, tail)) {
        return Err("the record appended after recovery did not come back".into());
    }
    if again[..again.len() - 1] != got[..] {
        return Err("a second open replayed other records".into());
    }
    Ok(())
}

#[test]
fn every_crash_state_of_recycling_replays_exactly_the_acknowledged_records() {
    let full = std::env::var("DDPERSIST_CRASH_STATES").is_ok_and(|v| v == "full");
    let (seeds, steps, subsets) = if full { (0..6, 120, 12) } else { (0..2, 60, 3) };
    let (mut points_total, mut states_total, mut recycled_total) = (0, 0, 0);
    for seed in seeds {
        let fs = SimFs::new();
        fs.record_crash_points(true);
        let (m, recycled) = run_workload(&fs, seed, steps);
        recycled_total += recycled;
        let points = fs.take_crash_points();
        let mut rng = Rng(seed ^ 0xC0FFEE);
        for point in &points {
            points_total += 1;
            let mut which = vec![CrashState::Synced, CrashState::Prefix(point.pending())];
            which.extend((1..point.pending()).filter(|_| full).map(CrashState::Prefix));
            which.extend((0..subsets).map(|_| CrashState::Pages(rng.below(u64::MAX))));
            for which in which {
                states_total += 1;
                if let Err(e) = check(&point.state(which), point.call, &m) {
                    panic!("seed {seed}, crash after call {} ({which:?}): {e}", point.call);
                }
            }
        }
    }
    eprintln!(
        "wal_recycle_crash: {points_total} crash points, {states_total} states, {recycled_total} recycled \
         segments at the end of the workloads: nothing acknowledged lost, nothing phantom replayed"
    );
    assert!(recycled_total > 0, "the workloads recycled no segment");
    assert!(states_total > points_total);
}

/// A release whose directory fsync failed leaves its kept files' names not durable: the next run's open
/// adopts them, and must make those names durable before a rollover writes a new header into one (else a
/// power loss could bring one back under its old segment name, with the new segment's header, and fail
/// every open). Every crash state of the next run opens, with every record it acknowledged.
#[test]
fn kept_files_whose_names_were_not_synced_are_synced_before_reuse() {
    use ddpersist::wal::{SegmentFaultHook, SegmentStep};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    let fs = SimFs::new();
    // Armed (nonzero): counts directory fsyncs from 1, and fails each after the first (a release's first
    // one makes its new start file durable, `wal/START`; the next follows its renames).
    let dir_syncs = Arc::new(AtomicU32::new(0));
    let hook: SegmentFaultHook = {
        let syncs = dir_syncs.clone();
        Arc::new(move |step: SegmentStep, _: &std::path::Path| {
            let armed = step == SegmentStep::SyncDir && syncs.load(Ordering::SeqCst) > 0;
            match armed && syncs.fetch_add(1, Ordering::SeqCst) >= 2 {
                true => Err(std::io::Error::other("injected directory fsync failure")),
                false => Ok(()),
            }
        })
    };
    let log = FileLog::on(fs.shared(), WAL_DIR, SEGMENT_BYTES, WalRecovery::Strict)
        .unwrap()
        .with_segment_fault_hook(hook);
    log.replay(&mut |_, _| Ok(())).unwrap();
    let mut end = 0;
    for no in 0..12 {
        end = log.append(&payload(no, 300)).unwrap().1;
        log.sync(end).unwrap();
    }
    dir_syncs.store(1, Ordering::SeqCst);
    assert!(
        log.release_before(end).is_err(),
        "the release's directory fsync fails"
    );
    drop(log);
    let kept = fs.list(std::path::Path::new(WAL_DIR)).unwrap();
    assert!(kept.iter().any(|n| n.ends_with(".free")), "{kept:?}");
    // The next run, its crash points recorded.
    fs.record_crash_points(true);
    let (log, _) = open(&fs).unwrap();
    let mut m = Model::default();
    for no in 100..112 {
        let p = payload(no, 300);
        let (start, e) = log.append(&p).unwrap();
        m.appended.insert(start, p);
        log.sync(e).unwrap();
        m.acked.push((fs.calls(), e));
    }
    drop(log);
    let points = fs.take_crash_points();
    let mut rng = Rng(3);
    let mut states = 0;
    for point in &points {
        let which = [
            CrashState::Synced,
            CrashState::Prefix(point.pending()),
            CrashState::Pages(rng.below(u64::MAX)),
        ];
        for which in which {
            states += 1;
            let state = point.state(which);
            let (_, got) = open(&state)
                .unwrap_or_else(|e| panic!("crash after call {} ({which:?}): open failed: {e}", point.call));
            let acked = (m.acked.iter())
                .filter(|(at, _)| *at <= point.call)
                .map(|(_, end)| *end)
                .max()
                .unwrap_or(0);
            for (lsn, p) in &m.appended {
                let kept = got.iter().any(|(l, q)| l == lsn && q == p);
                assert!(
                    kept || lsn + 16 + p.len() as u64 > acked,
                    "crash after call {} ({which:?}): acknowledged record at LSN {lsn} lost",
                    point.call
                );
            }
        }
    }
    assert!(states > 0);
}
