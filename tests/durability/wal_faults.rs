//! A WAL that fails at every step: wrap the store's `FileLog` in a `FaultyLog`, let `k` calls
//! succeed and fail every later one, for every `k` a workload of writes, seals and spills reaches. After each
//! failure the store refuses further work (or the workload stops at the error), and a reopen with a healthy
//! WAL holds every write that was acknowledged, and nothing that was never written.
//!
//! Below the `Log` calls, the `FileLog`'s segment fault hook fails each step of creating, rotating
//! and removing segment files (the k-th only, as a transient disk-full would, or every step from the k-th
//! on), in workloads of idle rotations and of rollovers: the store reopens, in `Strict` mode, with every
//! acknowledged write.
//!
//! At the end of the LSN space: a WAL segment near `u64::MAX`, or a write that would overflow the next
//! LSN, is an error (corruption on open, a refused write), never a panic or wrapped LSNs.

use crate::common;

use ddpersist::blob::DirBlob;
use ddpersist::wal::{FaultyLog, FileLog, SegmentFaultHook, SegmentStep, WalRecovery};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

fn options() -> Options {
    Options {
        // Small memtable: the workload also spills.
        memtable_budget_bytes: 2048,
        compaction_threads: 0,
        ..Options::default()
    }
}

fn key(i: u64) -> String {
    format!("key{i:05}")
}

/// Runs the workload over a WAL failing after `k` calls; returns the keys whose write was acknowledged and
/// every key the workload tried to write, and whether the fault fired.
fn run(dir: &Path, k: u64) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let opts = options();
    let file = FileLog::open(dir.join("wal"), opts.wal_segment_bytes, WalRecovery::Strict).unwrap();
    let faulty = FaultyLog::new(Arc::new(file));
    let blob = Arc::new(DirBlob::open(dir).unwrap());
    let store = Store::open_on(blob, Arc::new(faulty.clone()), opts).unwrap();
    if !store.has_stream("s") {
        store.create_stream("s", StreamOptions::default()).unwrap();
    }
    faulty.fail_after(k);
    let (mut acked, mut tried) = (BTreeSet::new(), BTreeSet::new());
    let val = vec![b'v'; 100];
    'work: for round in 0..8u64 {
        for i in 0..6 {
            let n = round * 6 + i;
            tried.insert(key(n));
            // Times run ahead of the seals (round + 1 and + 2), so seals leave unsealed updates behind.
            let t = round + 1 + i % 2;
            match store.write("s", &[(key(n), val.clone(), t, 1i64)]) {
                Ok(()) => {
                    acked.insert(key(n));
                }
                Err(_) => break 'work,
            }
        }
        if store.seal("s", round + 1).is_err() {
            break;
        }
    }
    (acked, tried, faulty.has_failed())
}

#[test]
fn every_acknowledged_write_survives_a_wal_failing_at_any_step() {
    let mut fired = 0;
    for k in 0.. {
        let dir = tempfile::tempdir().unwrap();
        let (acked, tried, failed) = run(dir.path(), k);
        let store = Store::open_with(dir.path(), options()).unwrap();
        let mut seen = BTreeSet::new();
        for (key, _val, _t, d) in store.snapshot("s").unwrap().decode::<String, Vec<u8>>().unwrap() {
            assert_eq!(d, 1, "k = {k}: {key} has diff {d}");
            assert!(seen.insert(key.clone()), "k = {k}: {key} twice");
        }
        for key in &acked {
            assert!(seen.contains(key), "k = {k}: acknowledged {key} lost");
        }
        for key in &seen {
            assert!(tried.contains(key), "k = {k}: {key} was never written");
        }
        if !failed {
            // The workload finished before the budget ran out: every step has been failed once.
            assert_eq!(acked.len(), 48);
            break;
        }
        fired += 1;
    }
    assert!(fired > 40, "only {fired} failure points");
}

/// How a segment fault hook fails: only the k-th step, or every step from the k-th on.
#[derive(Clone, Copy, Debug)]
enum Fail {
    Once(u64),
    From(u64),
}

/// A hook failing steps of segment creation, rotation and release as `fail` says; counts the steps and
/// records whether it failed one.
fn hook(fail: Fail, steps: Arc<AtomicU64>, fired: Arc<AtomicBool>) -> SegmentFaultHook {
    Arc::new(move |step: SegmentStep, path: &Path| {
        // Group commit flushes are failed by `a_write_whose_own_fdatasync_failed_says_so`; here only the
        // steps of segment creation, rotation and release.
        if step == SegmentStep::Flush {
            return Ok(());
        }
        let n = steps.fetch_add(1, Ordering::SeqCst);
        let hit = match fail {
            Fail::Once(k) => n == k,
            Fail::From(k) => n >= k,
        };
        if hit {
            fired.store(true, Ordering::SeqCst);
            return Err(std::io::Error::other(format!(
                "injected fault at step {n} ({step:?} {})",
                path.display()
            )));
        }
        Ok(())
    })
}

/// Runs `workload` on a store whose WAL fails segment steps as `fail` says; returns the acknowledged keys,
/// the keys tried, and whether the fault fired.
fn run_segment_faults(
    dir: &Path,
    segment_bytes: u64,
    fail: Fail,
    workload: fn(&Store, &mut BTreeSet<String>, &mut BTreeSet<String>),
) -> (BTreeSet<String>, BTreeSet<String>, bool) {
    let (steps, fired) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let file = FileLog::open(dir.join("wal"), segment_bytes, WalRecovery::Strict)
        .unwrap()
        .with_segment_fault_hook(hook(fail, steps, fired.clone()));
    let blob = Arc::new(DirBlob::open(dir).unwrap());
    let opts = Options {
        wal_segment_bytes: segment_bytes,
        compaction_threads: 0,
        ..Options::default()
    };
    let (mut acked, mut tried) = (BTreeSet::new(), BTreeSet::new());
    if let Ok(store) = Store::open_on(blob, Arc::new(file), opts) {
        if store.has_stream("s") || store.create_stream("s", StreamOptions::default()).is_ok() {
            workload(&store, &mut acked, &mut tried);
        }
    }
    (acked, tried, fired.load(Ordering::SeqCst))
}

/// Writes `key` with `val` at `time`; records it as tried, and as acknowledged if the write returned Ok.
fn put(
    store: &Store,
    key: String,
    val: &[u8],
    time: u64,
    acked: &mut BTreeSet<String>,
    tried: &mut BTreeSet<String>,
) -> bool {
    tried.insert(key.clone());
    let ok = store.write_bytes("s", [(key.as_bytes(), val, time, 1)]).is_ok();
    if ok {
        acked.insert(key);
    }
    ok
}

/// Idle rotations: every round fills the active segment past 8 MiB, seals everything (so the segment is
/// replaced by a fresh one and removed), then writes one more unsealed key. Writes go on after a failure.
fn idle_rotations(store: &Store, acked: &mut BTreeSet<String>, tried: &mut BTreeSet<String>) {
    let big = vec![b'b'; 1 << 20];
    // Two rounds: a rotation that fails in the first leaves the log going on in the old segment, and the
    // second rotates past it.
    for round in 0..2u64 {
        let keys: Vec<String> = (0..9).map(|i| format!("big{round}-{i}")).collect();
        tried.extend(keys.iter().cloned());
        let ok = store
            .write_bytes("s", keys.iter().map(|k| (k.as_bytes(), &big[..], round, 1)))
            .is_ok();
        if !ok {
            return;
        }
        acked.extend(keys);
        // A failed rotation or release does not fail the seal (it has committed).
        if store.seal("s", round + 1).is_err() {
            return;
        }
        if !put(store, format!("small{round}"), b"v", round + 1, acked, tried) {
            return;
        }
    }
}

/// Rollovers: small segments, so group commits fill them and start new ones; seals release old ones.
fn rollovers(store: &Store, acked: &mut BTreeSet<String>, tried: &mut BTreeSet<String>) {
    let val = vec![b'v'; 300];
    for round in 0..4u64 {
        for i in 0..6 {
            if !put(store, format!("r{round}-{i}"), &val, round + i % 2, acked, tried) {
                return;
            }
        }
        if store.seal("s", round + 1).is_err() {
            return;
        }
    }
}

#[test]
fn every_failed_step_of_segment_creation_rotation_and_release_leaves_a_store_that_opens() {
    type Workload = fn(&Store, &mut BTreeSet<String>, &mut BTreeSet<String>);
    let cases: [(&str, u64, Workload); 2] = [
        ("idle rotations", 64 << 20, idle_rotations),
        ("rollovers", 1024, rollovers),
    ];
    let mut fired_total = 0;
    for (name, segment_bytes, workload) in cases {
        for once in [true, false] {
            for k in 0.. {
                let fail = if once { Fail::Once(k) } else { Fail::From(k) };
                let tmp = tempfile::tempdir().unwrap();
                let (acked, tried, fired) = run_segment_faults(tmp.path(), segment_bytes, fail, workload);
                let opts = Options {
                    wal_segment_bytes: segment_bytes,
                    ..Options::default()
                };
                let store = Store::open_with(tmp.path(), opts)
                    .unwrap_or_else(|e| panic!("{name}, {fail:?}: the store does not open: {e}"));
                let keys: BTreeSet<String> = store
                    .snapshot("s")
                    .map(|s| {
                        s.to_vec()
                            .unwrap()
                            .into_iter()
                            .map(|u| String::from_utf8(u.0).unwrap())
                            .collect()
                    })
                    .unwrap_or_default();
                for key in &acked {
                    assert!(keys.contains(key), "{name}, {fail:?}: acknowledged {key} lost");
                }
                for key in &keys {
                    assert!(tried.contains(key), "{name}, {fail:?}: {key} was never written");
                }
                if !fired {
                    break;
                }
                fired_total += 1;
            }
        }
    }
    assert!(fired_total > 20, "only {fired_total} failure points");
}

#[test]
fn a_write_whose_own_fdatasync_failed_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let fail = Arc::new(AtomicBool::new(false));
    let armed = fail.clone();
    let hook: SegmentFaultHook = Arc::new(move |step: SegmentStep, _: &Path| {
        if step == SegmentStep::Flush && armed.swap(false, Ordering::SeqCst) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        Ok(())
    });
    let file = FileLog::open(tmp.path().join("wal"), 1 << 20, WalRecovery::Strict)
        .unwrap()
        .with_segment_fault_hook(hook);
    let blob = Arc::new(DirBlob::open(tmp.path()).unwrap());
    let store = Store::open_on(blob, Arc::new(file), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write_bytes("s", [(&b"a"[..], &b"v"[..], 1, 1)]).unwrap();
    fail.store(true, Ordering::SeqCst);
    let own = store
        .write_bytes("s", [(&b"b"[..], &b"v"[..], 1, 1)])
        .unwrap_err();
    let msg = own.to_string();
    assert!(!matches!(own, ddpersist::Error::Poisoned { .. }), "{msg}");
    assert!(!msg.contains("earlier failure"), "{msg}");
    assert!(msg.contains("injected fdatasync failure"), "{msg}");
    // Later calls are refused because of that earlier failure.
    let later = store
        .write_bytes("s", [(&b"c"[..], &b"v"[..], 1, 1)])
        .unwrap_err();
    assert!(matches!(later, ddpersist::Error::Poisoned { .. }), "{later}");
    assert!(later.to_string().contains("earlier failure"), "{later}");
}

/// A WAL segment of version 1 (header and, if `payload` is given, one record; checksums included), as
/// `FileLog` wrote it.
fn wal_segment(first_lsn: u64, payload: Option<&[u8]>) -> Vec<u8> {
    common::wal_segment_bytes(1, first_lsn, payload.as_slice())
}

/// A store with stream "s" (durable) whose WAL directory holds only `segment`, named after `first_lsn`.
fn store_with_wal_segment(first_lsn: u64, segment: Vec<u8>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    let wal = dir.path().join("wal");
    for e in std::fs::read_dir(&wal).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    std::fs::write(wal.join(format!("{first_lsn:020}.wal")), segment).unwrap();
    dir
}

/// Regression: a store whose WAL holds one segment starting near `u64::MAX` (segment names are any 20-digit
/// number; after old segments are released the first one may start anywhere). `Store::open` used to panic
/// with "attempt to add with overflow" in `wal::scan::scan` in debug builds, and in release builds the LSNs
/// wrapped and new appends restarted at LSN 16. It must fail with `Error::Corrupt`.
#[test]
fn wal_segment_near_the_end_of_the_lsn_space_is_corruption_not_a_panic() {
    // A valid record: one update to stream number 0 ("s").
    let mut payload = Vec::new();
    use ddpersist::wal::record::{RecordEncoder, RecordFormat};
    // Tag 1: the segment below is of version 1.
    let mut encoder = RecordEncoder::begin(&mut payload, 0, RecordFormat::Fixed);
    encoder.push(&mut payload, (b"k", b"v", 1, 1));
    encoder.finish(&mut payload);
    let first_lsn = u64::MAX - 8;
    let dir = store_with_wal_segment(first_lsn, wal_segment(first_lsn, Some(&payload)));
    let opened = std::panic::catch_unwind(|| Store::open(dir.path()).map(drop));
    match opened {
        Ok(Err(e)) => assert!(e.is_corruption(), "{e}"),
        Ok(Ok(())) => panic!("open accepted a WAL whose LSNs overflow u64"),
        Err(_) => panic!("open panicked"),
    }
}

/// A store whose WAL ends a few bytes short of `u64::MAX` (one valid, header-only segment named
/// `18446744073709551611.wal`) opens fine, but the first durable write overflows the WAL's next LSN
/// (`FileLog::append_record` in `wal/group_commit.rs`, `state.next_lsn += RECORD_HEADER_BYTES + len`): a
/// panic in debug builds; in release builds the LSN wraps, the write is acknowledged, and the next open fails because the
/// record's LSN overflows. The write (or the open) should fail with an error instead, and an acknowledged
/// write must survive a reopen.
#[test]
fn write_at_the_end_of_the_lsn_space_is_an_error_not_a_panic() {
    let first_lsn = u64::MAX - 4;
    let dir = store_with_wal_segment(first_lsn, wal_segment(first_lsn, None));
    let written = std::panic::catch_unwind(|| {
        let store = Store::open(dir.path())?;
        store.write("s", &[(1u8, 2u8, 3, 1)])
    });
    match written {
        Err(_) => panic!("open or write panicked"),
        Ok(Err(_)) => {} // refused: fine
        Ok(Ok(())) => {
            let store = Store::open(dir.path()).expect("a store that acknowledged a write must reopen");
            let got = store.snapshot("s").unwrap().decode::<u8, u8>().unwrap();
            assert_eq!(got, vec![(1, 2, 3, 1)], "acknowledged write lost");
        }
    }
}
