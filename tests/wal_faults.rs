//! A WAL that fails at every step: wrap the store's `FileBuffer` in a `FaultyBuffer`, let `k` calls
//! succeed and fail every later one, for every `k` a workload of writes, seals and spills reaches. After each
//! failure the store refuses further work (or the workload stops at the error), and a reopen with a healthy
//! WAL holds every write that was acknowledged, and nothing that was never written.

use ddpersist::blob::DirBlob;
use ddpersist::wal::{FaultyBuffer, FileBuffer, WalRecovery};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeSet;
use std::path::Path;
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
    let file = FileBuffer::open(dir.join("wal"), opts.wal_segment_bytes, WalRecovery::Strict).unwrap();
    let faulty = FaultyBuffer::new(Arc::new(file));
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
