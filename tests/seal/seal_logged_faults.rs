//! Adversarial checks of failed background flushes of logged seals (`Store::seal_logged`; the flush
//! thread retries ten `logged_flush_delay`s later): more seals and writes while the blob refuses writes,
//! a close while it still refuses them (bounded, and a reopen recovers every logged upper), and a flush
//! that failed at open. (The cost of the retries with a zero delay: `tests/seal_logged_retry.rs`.)

use crate::common;

use common::{copy_dir, open_faulty};
use ddpersist::blob::{DirBlob, FaultyBlob};
use ddpersist::wal::FileLog;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn options(flush_bytes: usize, delay: Duration) -> Options {
    Options {
        logged_flush_bytes: flush_bytes,
        logged_flush_delay: delay,
        ..Options::default()
    }
}

fn content(store: &Store, s: &str) -> BTreeMap<(u64, u64), i64> {
    let mut out = BTreeMap::new();
    for (k, _, t, d) in store.snapshot(s).unwrap().decode::<u64, u64>().unwrap() {
        *out.entry((k, t)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

#[test]
fn seals_and_writes_while_flushes_fail_then_heal() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blob) = open_faulty(dir.path(), options(4096, Duration::from_millis(2)));
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model = BTreeMap::new();
    blob.fail_after(0);
    let mut upper = 0;
    for round in 0..60u64 {
        let ups: Vec<(u64, u64, u64, i64)> = (0..20)
            .map(|i| (round * 100 + i, round, upper + i % 3, 1))
            .collect();
        store.write("s", &ups).unwrap();
        for (k, _, t, d) in ups {
            *model.entry((k, t)).or_insert(0) += d;
        }
        upper += 1 + round % 2;
        // A seal of a stream whose earlier flushes fail: logged all the same, or the error of completing
        // the earlier ones (the "behind" rule), which leaves this seal undone.
        match store.seal_logged("s", upper) {
            Ok(()) => {}
            Err(e) => {
                upper -= 1 + round % 2;
                assert!(!e.to_string().is_empty());
            }
        }
        if round % 7 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            content(&store, "s"),
            model,
            "round {round}: snapshot while flushes fail"
        );
    }
    assert!(store.upper("s").unwrap() < upper || upper == 0);
    blob.heal();
    common::wait_for_upper(&store, "s", upper);
    assert_eq!(content(&store, "s"), model);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), upper);
    assert_eq!(content(&store, "s"), model);
}

#[test]
fn closing_while_flushes_fail_is_bounded_and_the_reopen_completes_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = BTreeMap::new();
    let upper = {
        let (store, blob) = open_faulty(dir.path(), options(1 << 20, Duration::from_millis(1)));
        store.create_stream("s", StreamOptions::default()).unwrap();
        blob.fail_after(0);
        let mut upper = 0;
        for round in 0..10u64 {
            store.write("s", &[(round, round, upper, 1i64)]).unwrap();
            model.insert((round, upper), 1);
            upper += 1;
            store.seal_logged("s", upper).unwrap();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(store);
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the store closed while its flushes failed");
        upper
    };
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), upper);
    assert_eq!(content(&store, "s"), model);
}

/// A logged seal whose flush failed at close is completed by the next open; when that open's flush
/// fails too (a transient fault: the open still succeeds, with a background error), the seal stays
/// logged. Before 8ef7bf9 the merge threads, queued for every stream at open, completed logged seals
/// first (`Store::compact`); now they do not, and the flush thread's retry (d2db5a3) covers only its own
/// failures. An idle stream's upper then stays behind its durable logged upper (and its seal record pins
/// the WAL) until the stream's next call — the situation d2db5a3 fixed for the flush thread.
#[test]
fn a_logged_seal_whose_flush_failed_at_open_is_retried_without_another_call() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("store");
    {
        let (store, blob) = open_faulty(&dir, options(8 << 20, Duration::from_secs(3600)));
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(1u64, 1u64, 0, 1i64)]).unwrap();
        store.seal_logged("s", 1).unwrap();
        // The flush at close fails: the seal stays logged, for the next open.
        blob.fail_after(0);
    }
    // The smallest fault budget with which the open succeeds but its flush of the logged seal fails.
    let opts = options(8 << 20, Duration::from_millis(20));
    for budget in 0..400 {
        let attempt = base.path().join(format!("a{budget}"));
        copy_dir(&dir, &attempt);
        let blob = Arc::new(FaultyBlob::new(DirBlob::open(&attempt).unwrap()));
        blob.fail_after(budget);
        let log = FileLog::open(attempt.join("wal"), opts.wal_segment_bytes, opts.wal_recovery).unwrap();
        let Ok(store) = Store::open_on(blob.clone(), Arc::new(log), opts.clone()) else {
            continue;
        };
        if store.upper("s").unwrap() == 1 {
            panic!("budget {budget}: the open completed the seal before any budget failed it");
        }
        assert!(
            store.background_error().is_some(),
            "budget {budget}: no background error"
        );
        // Healed: retried ten delays (200 ms) later by the flush thread, as a failed background flush is?
        blob.heal();
        let start = Instant::now();
        while store.upper("s").unwrap() < 1 {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "budget {budget}: the logged seal whose flush failed at open was not tried again within 3 s \
                 (upper {}, error {:?})",
                store.upper("s").unwrap(),
                store.background_error()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        return;
    }
    panic!("no budget made the open's flush fail");
}
