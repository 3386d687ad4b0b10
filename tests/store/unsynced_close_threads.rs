//! a clean close (the last store handle dropped) writes and syncs the WAL records of
//! `write_bytes_unsynced` writes (`Workers::drop` -> `Inner::sync_pending_writes`). Checked: many clones
//! on many threads dropped in any order, the last handle dropped by a thread that wrote last, stores
//! reopened in a loop, tiny WAL segments (rotation at the close), a close with a logged seal pending, a
//! close of a store poisoned by a failed manifest commit (must not hang or panic), and tickets of
//! non-durable writes synced right after a reopen (the WAL's end as replayed).

use crate::common;

use ddpersist::{Options, Store, StreamOptions};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn count(store: &Store, id: &str) -> usize {
    store.snapshot(id).unwrap().to_vec().unwrap().len()
}

fn key(i: u64) -> Vec<u8> {
    format!("k{i:06}").into_bytes()
}

#[test]
fn clones_on_many_threads_dropped_in_any_order_lose_no_unsynced_write() {
    let dir = tempfile::tempdir().unwrap();
    let threads = 6u64;
    let per = 200u64;
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("d", StreamOptions::default()).unwrap();
        store
            .create_stream("n", StreamOptions { durable: false })
            .unwrap();
        let barrier = Arc::new(Barrier::new(threads as usize));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let s = store.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    for i in 0..per {
                        let k = key(t * per + i);
                        s.write_bytes_unsynced("d", [(&k[..], &b"v"[..], 5, 1)]).unwrap();
                        // Non-durable and empty writes in between: their tickets are at the WAL's end.
                        let _ = s.write_bytes_unsynced("n", [(&k[..], &b"v"[..], 5, 1)]).unwrap();
                        let _ = s
                            .write_bytes_unsynced("d", std::iter::empty::<(&[u8], &[u8], u64, i64)>())
                            .unwrap();
                    }
                    // Each thread drops its clone at its own pace; the last one out closes the store.
                    std::thread::sleep(Duration::from_millis(t * 7));
                    drop(s);
                })
            })
            .collect();
        drop(store); // before the threads finish: not the last handle
        for h in handles {
            h.join().unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        count(&store, "d"),
        (threads * per) as usize,
        "acknowledged unsynced writes lost by a clean close through several clones"
    );
}

#[test]
fn stores_reopened_in_a_loop_keep_every_unsynced_write() {
    let dir = tempfile::tempdir().unwrap();
    let rounds = 25u64;
    for r in 0..rounds {
        let store = Store::open(dir.path()).unwrap();
        if r == 0 {
            store.create_stream("d", StreamOptions::default()).unwrap();
            store
                .create_stream("n", StreamOptions { durable: false })
                .unwrap();
        }
        assert_eq!(
            count(&store, "d"),
            r as usize,
            "round {r}: writes of earlier rounds"
        );
        let k = key(r);
        store
            .write_bytes_unsynced("d", [(&k[..], &b"v"[..], r, 1)])
            .unwrap();
        // A non-durable write's ticket right after a reopen: at the WAL's end as replayed; syncing it
        // must succeed (not refuse, not poison) and make the durable write above durable.
        let t = store
            .write_bytes_unsynced("n", [(&k[..], &b"v"[..], r, 1)])
            .unwrap();
        if r % 3 == 0 {
            store.sync(t).unwrap();
        }
        if r % 5 == 4 {
            // Seal part of it now and then (WAL segments released).
            store.seal("d", r).unwrap();
        }
        // A clone kept by another thread that drops it last.
        let c = store.clone();
        drop(store);
        std::thread::spawn(move || drop(c)).join().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(count(&store, "d"), rounds as usize);
}

#[test]
fn a_sync_of_a_non_durable_ticket_after_a_reopen_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("d", StreamOptions::default()).unwrap();
        store
            .create_stream("n", StreamOptions { durable: false })
            .unwrap();
        // Several records of different sizes: the replayed WAL end is a record's start plus one.
        for i in 0..5u64 {
            let big = vec![7u8; 100 * (i as usize + 1)];
            store.write_bytes("d", [(&big[..], &b"v"[..], i, 1)]).unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    let t = store
        .write_bytes_unsynced("n", [(&b"k"[..], &b"v"[..], 1, 1)])
        .unwrap();
    store.sync(t).unwrap();
    let t = store
        .write_bytes_unsynced("d", std::iter::empty::<(&[u8], &[u8], u64, i64)>())
        .unwrap();
    store.sync(t).unwrap();
    // The store still works (not poisoned).
    store.write_bytes("d", [(&b"x"[..], &b"v"[..], 9, 1)]).unwrap();
    store.seal("d", 10).unwrap();
    assert_eq!(count(&store, "d"), 6);
}

#[test]
fn tiny_wal_segments_rotate_at_the_close_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        wal_segment_bytes: 4096,
        ..Options::default()
    };
    let n = 2000u64;
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("d", StreamOptions::default()).unwrap();
        for i in 0..n {
            let k = key(i);
            store
                .write_bytes_unsynced("d", [(&k[..], &[0u8; 64][..], i, 1)])
                .unwrap();
            if i == n / 2 {
                // A logged seal in the middle (its batch written in the background or at the close).
                store.seal_logged("d", i + 1).unwrap();
            }
        }
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(count(&store, "d"), n as usize);
}

#[test]
fn closing_a_poisoned_store_neither_hangs_nor_panics_and_keeps_acknowledged_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blob) = common::open_faulty(dir.path(), Options::default());
    store.create_stream("d", StreamOptions::default()).unwrap();
    store.write_bytes("d", [(&b"a"[..], &b"v"[..], 1, 1)]).unwrap();
    store
        .write_bytes_unsynced("d", [(&b"b"[..], &b"v"[..], 2, 1)])
        .unwrap();
    blob.fail_after(0);
    let _ = store.seal("d", 3); // fails: the batch or the manifest; may poison the store
    let _ = store.write_bytes_unsynced("d", [(&b"c"[..], &b"v"[..], 4, 1)]);
    let start = Instant::now();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("closing a poisoned store hung");
    assert!(start.elapsed() < Duration::from_secs(20));
    drop(blob);
    let store = Store::open(dir.path()).unwrap();
    let got = store.snapshot("d").unwrap().to_vec().unwrap();
    let keys: Vec<&[u8]> = got.iter().map(|(k, ..)| &k[..]).collect();
    assert!(keys.contains(&&b"a"[..]) && keys.contains(&&b"b"[..]), "{got:?}");
}
