//! Adversarial round 9: the `Store` API from several threads at once — logged seals with their background
//! flushes, appends, unsynced writes, merges (background, `compact`, `major_compact`), lookups and
//! snapshots, and streams dropped and created again with logged seals pending — for a fixed time, with a
//! deadline on every thread (a hang fails the test). At the end (and after a reopen) every stream holds
//! exactly what its writer thread wrote, and lookups as of sealed times answered what was written.

use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type Up = (Vec<u8>, Vec<u8>, u64, i64);

fn consolidate(updates: &[Up], since: u64) -> Vec<Up> {
    let mut sums: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
    for (k, v, t, d) in updates {
        *sums.entry((k.clone(), v.clone(), (*t).max(since))).or_default() += d;
    }
    sums.into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|((k, v, t), d)| (k, v, t, d))
        .collect()
}

fn options() -> Options {
    Options {
        merge_fan_in: 2,
        compaction_threads: 1,
        logged_flush_bytes: 2048,
        logged_flush_delay: Duration::from_millis(3),
        max_batches_per_stream: 4,
        memtable_budget_bytes: 16 << 10,
        wal_segment_bytes: 8 << 10,
        max_wal_bytes: Some(32 << 10),
        block_target_bytes: 256,
        ..Options::default()
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key{:03}", i % 37).into_bytes()
}

/// Writer of a durable stream: unsynced writes synced in groups, logged seals, `complete_seals`, and
/// lookups of the sealed past checked against what it wrote.
fn logged_writer(store: Store, id: &'static str, stop: Arc<AtomicBool>) -> (Vec<Up>, u64) {
    let mut written: Vec<Up> = Vec::new();
    let mut t = 0u64;
    let mut i = 0u64;
    let mut tickets = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let ups: Vec<Up> = (0..8)
            .map(|j| {
                i += 1;
                (
                    key(i * 7 + j),
                    format!("v{}", i % 5).into_bytes(),
                    t + j % 2,
                    if i.is_multiple_of(3) { -1 } else { 1 },
                )
            })
            .collect();
        let ticket = store
            .write_bytes_unsynced(id, ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        tickets.push(ticket);
        written.extend(ups);
        if i.is_multiple_of(24) {
            for tk in tickets.drain(..) {
                store.sync(tk).unwrap();
            }
        }
        t += 2;
        store.seal_logged(id, t).unwrap();
        if i.is_multiple_of(40) {
            store.complete_seals(id).unwrap();
            assert_eq!(store.upper(id).unwrap(), t);
        }
        if i.is_multiple_of(16) && t > 4 {
            // A lookup as of a sealed time: what was written up to it.
            let k = key(i * 7);
            let as_of = t - 3;
            let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (kk, v, tt, d) in &written {
                if *kk == k && *tt <= as_of {
                    *want.entry(v.clone()).or_default() += d;
                }
            }
            want.retain(|_, d| *d != 0);
            let got: BTreeMap<Vec<u8>, i64> = store.get_bytes(id, &k, as_of).unwrap().into_iter().collect();
            assert_eq!(got, want, "{id}: lookup of {k:?} as of {as_of}");
        }
    }
    for tk in tickets.drain(..) {
        store.sync(tk).unwrap();
    }
    (written, t)
}

/// Writer of a non-durable stream through `append` and `seal`, moving its since behind.
fn append_writer(store: Store, id: &'static str, stop: Arc<AtomicBool>) -> (Vec<Up>, u64, u64) {
    let mut written: Vec<Up> = Vec::new();
    let mut upper = 0u64;
    let mut i = 0u64;
    let mut since = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if i.is_multiple_of(3) {
            let ups: Vec<Up> = (0..5)
                .map(|j| (key(i * 11 + j), b"w".to_vec(), upper + 1, 1))
                .collect();
            store
                .write_bytes(id, ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
                .unwrap();
            written.extend(ups);
            upper += 2;
            store.seal(id, upper).unwrap();
        } else {
            let mut ups: Vec<Up> = (0..6)
                .map(|j| {
                    (
                        key(i * 13 + j * 5),
                        format!("a{}", j % 2).into_bytes(),
                        upper + j % 3,
                        if j == 4 { -2 } else { 1 },
                    )
                })
                .collect();
            ups.sort();
            ups.dedup_by(|a, b| (&a.0, &a.1, a.2) == (&b.0, &b.1, b.2));
            store
                .append_bytes(
                    id,
                    ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)),
                    upper,
                    upper + 3,
                )
                .unwrap();
            written.extend(ups);
            upper += 3;
        }
        if i.is_multiple_of(10) && upper > 20 {
            since = upper - 20;
            store.allow_compaction(id, since).unwrap();
        }
    }
    (written, upper, since)
}

/// Creates, writes, logs seals on and drops streams `c{n}` again and again.
fn churner(store: Store, stop: Arc<AtomicBool>) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let id = format!("c{}", n % 3);
        store
            .create_stream(&id, StreamOptions { durable: n % 2 == 0 })
            .unwrap();
        for t in 0..4u64 {
            store.write_bytes(&id, [(&b"x"[..], &b"y"[..], t, 1)]).unwrap();
            store.seal_logged(&id, t + 1).unwrap();
        }
        let snap = store.snapshot(&id).unwrap().to_vec().unwrap();
        assert_eq!(snap.len(), 4, "{id}: {snap:?}");
        store.drop_stream(&id).unwrap();
        assert!(matches!(store.upper(&id), Err(Error::UnknownStream { .. })));
        n += 1;
    }
    n
}

/// Mostly empty seals (riders on other edits), some with a since or the finished flag, and a write now
/// and then, on stream `id`.
fn empty_sealer(store: Store, id: &'static str, stop: Arc<AtomicBool>) -> (Vec<Up>, u64, u64) {
    let mut written = Vec::new();
    let mut upper = 0u64;
    let mut since = 0u64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        if i.is_multiple_of(7) {
            let u: Up = (key(i), b"e".to_vec(), upper, 1);
            store.write_bytes(id, [(&u.0[..], &u.1[..], u.2, u.3)]).unwrap();
            written.push(u);
        }
        upper += 1;
        if i.is_multiple_of(5) {
            since = upper - 1;
            let options = ddpersist::SealOptions {
                finished: i.is_multiple_of(2),
                since: Some(since),
            };
            store.seal_with(id, upper, options).unwrap();
        } else {
            store.seal(id, upper).unwrap();
        }
        assert_eq!(
            store.upper(id).unwrap(),
            upper,
            "{id}: upper after a seal returned"
        );
    }
    (written, upper, since)
}

/// Merges and reads of the two long-lived streams.
fn compactor(store: Store, stop: Arc<AtomicBool>) -> usize {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        for id in ["a", "b"] {
            if n % 5 == 4 {
                store.major_compact(id).unwrap();
            } else {
                store.compact(id).unwrap();
            }
            let _ = store.snapshot(id).unwrap().to_vec().unwrap();
            let _ = store.first_time_bytes(id, &key(n as u64)).unwrap();
        }
        // The churned streams come and go: each call answers, or says the stream is unknown.
        let id = format!("c{}", n % 3);
        let calls = [
            store.compact(&id).map(|_| ()),
            store.major_compact(&id).map(|_| ()),
            store.complete_seals(&id),
            store.snapshot(&id).and_then(|s| s.to_vec()).map(|_| ()),
            store.get_bytes(&id, b"x", 2).map(|_| ()),
        ];
        for r in calls {
            assert!(
                matches!(r, Ok(()) | Err(Error::UnknownStream { .. })),
                "a call on churned stream {id}: {r:?}"
            );
        }
        n += 1;
    }
    n
}

#[test]
fn concurrent_store_calls_lose_nothing_and_never_hang() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("a", StreamOptions::default()).unwrap();
    store
        .create_stream("b", StreamOptions { durable: false })
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (s1, s2, s3, s4) = (store.clone(), store.clone(), store.clone(), store.clone());
    let (x1, x2, x3, x4) = (stop.clone(), stop.clone(), stop.clone(), stop.clone());
    let h1 = std::thread::spawn(move || logged_writer(s1, "a", x1));
    let h2 = std::thread::spawn(move || append_writer(s2, "b", x2));
    let h3 = std::thread::spawn(move || churner(s3, x3));
    let h4 = std::thread::spawn(move || compactor(s4, x4));
    store.create_stream("e", StreamOptions::default()).unwrap();
    store
        .create_stream("f", StreamOptions { durable: false })
        .unwrap();
    let (s5, s6, x5, x6) = (store.clone(), store.clone(), stop.clone(), stop.clone());
    let h5 = std::thread::spawn(move || empty_sealer(s5, "e", x5));
    let h6 = std::thread::spawn(move || empty_sealer(s6, "f", x6));
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    let handles_done = || {
        [
            h1.is_finished(),
            h2.is_finished(),
            h3.is_finished(),
            h4.is_finished(),
            h5.is_finished(),
            h6.is_finished(),
        ]
    };
    while handles_done().iter().any(|d| !d) {
        assert!(
            Instant::now() < deadline,
            "hang: threads finished {:?}",
            handles_done()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (wa, ua) = h1.join().unwrap();
    let (wb, ub, since_b) = h2.join().unwrap();
    let churned = h3.join().unwrap();
    let merged = h4.join().unwrap();
    let (we, ue, since_e) = h5.join().unwrap();
    let (wf, uf, since_f) = h6.join().unwrap();
    eprintln!(
        "a: {} updates to {ua}; b: {} to {ub} (since {since_b}); {churned} churns; {merged} compactions",
        wa.len(),
        wb.len()
    );
    let check = |store: &Store, what: &str| {
        store.complete_seals("a").unwrap();
        assert_eq!(store.upper("a").unwrap(), ua, "{what}: upper of a");
        assert_eq!(store.upper("b").unwrap(), ub, "{what}: upper of b");
        let a = store.snapshot("a").unwrap().to_vec().unwrap();
        assert_eq!(consolidate(&a, 0), consolidate(&wa, 0), "{what}: a");
        let b = store.snapshot("b").unwrap().to_vec().unwrap();
        assert_eq!(consolidate(&b, since_b), consolidate(&wb, since_b), "{what}: b");
        for (id, w, u, since) in [("e", &we, ue, since_e), ("f", &wf, uf, since_f)] {
            assert_eq!(store.upper(id).unwrap(), u, "{what}: upper of {id}");
            assert_eq!(store.since(id).unwrap(), since, "{what}: since of {id}");
            let got = store.snapshot(id).unwrap().to_vec().unwrap();
            assert_eq!(consolidate(&got, since), consolidate(w, since), "{what}: {id}");
        }
    };
    check(&store, "before the reopen");
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    check(&store, "after the reopen");
    let mut streams = store.streams();
    streams.sort();
    assert_eq!(
        streams,
        ["a", "b", "e", "f"].map(String::from).to_vec(),
        "dropped streams stay dropped"
    );
}
