//! When the flush thread writes the batches of logged seals (`Store::seal_logged`): once the stream's
//! memtable holds `Options::logged_flush_bytes` (consecutive seals then make one batch), once no seal
//! came for `Options::logged_flush_delay` or the oldest is ten delays old, and when the store closes —
//! never lose a seal on the way. The durability of a logged seal whenever its batch is written: `tests/seal/seal_logged.rs`.

use crate::common;

use common::{open_faulty, wait_for_upper};
use ddpersist::{Options, Store, StreamOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// Merges that never run in these tests (64 batches of a tier before one is due, and no back-pressure
/// below 1,000 batches), so that the batches are the flushes'; a flush thread (one merge thread).
fn options(flush_bytes: usize, delay: Duration) -> Options {
    Options {
        merge_fan_in: 64,
        max_batches_per_stream: 1_000,
        logged_flush_bytes: flush_bytes,
        logged_flush_delay: delay,
        ..Options::default()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Writes `n` updates of 1,000-byte vals at time `t` (keys `t * n ..`), as one durable write.
fn write_at(store: &Store, t: u64, n: u64) {
    let updates: Vec<(u64, Vec<u8>, u64, i64)> = (t * n..(t + 1) * n)
        .map(|k| (k, vec![k as u8; 1_000], t, 1))
        .collect();
    store.write("s", &updates).unwrap();
}

fn open(dir: &Path, options: Options) -> Store {
    let store = Store::open_with(dir, options).unwrap();
    if !store.has_stream("s") {
        store.create_stream("s", StreamOptions::default()).unwrap();
    }
    store
}

#[test]
fn logged_seals_below_the_size_wait_and_then_make_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), options(1 << 20, HOUR));
    // 20 seals of 10 updates (about 10 KB each): far below 1 MiB, and the delay is an hour.
    for t in 0..20 {
        write_at(&store, t, 10);
        store.seal_logged("s", t + 1).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        store.upper("s").unwrap(),
        0,
        "nothing flushed below the size before the delay"
    );
    let got: Vec<(Vec<u8>, i64)> = store.get("s", &5u64, 20).unwrap();
    assert_eq!(got, vec![(vec![5u8; 1_000], 1)], "read from the memtable");
    store.complete_seals("s").unwrap();
    let sealed = store.sealed("s").unwrap();
    assert_eq!(sealed.batches.len(), 1, "the 20 seals made one batch");
    let d = sealed.batches[0].description();
    assert_eq!((d.lower, d.upper), (0, 20));
    assert_eq!(sealed.batches[0].update_count(), 200);
}

#[test]
fn a_stream_past_the_size_is_flushed_without_waiting_for_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), options(256 << 10, HOUR));
    // 100 seals of 20 updates (about 21 KB each, 2 MB in all): a flush every ~13 seals.
    for t in 0..100 {
        write_at(&store, t, 20);
        store.seal_logged("s", t + 1).unwrap();
    }
    // The flushes past the size reach close to the end without `complete_seals`, within the hour's delay.
    wait_for_upper(&store, "s", 100 - 13);
    store.complete_seals("s").unwrap();
    let sealed = store.sealed("s").unwrap();
    // Each flush but the last (`complete_seals`) held at least 256 KiB of memtable bytes: at most
    // 2 MB / 256 KiB of them (without coalescing, up to one a seal).
    let batches = sealed.batches.len();
    assert!((2..=9).contains(&batches), "{batches} batches");
    assert_eq!(
        sealed.batches.iter().map(|b| b.update_count()).sum::<u64>(),
        2_000
    );
    let uppers: Vec<u64> = sealed.batches.iter().map(|b| b.description().upper).collect();
    // Every batch but the last (`complete_seals`'s) holds a dozen seals or more.
    let flushed = &uppers[..uppers.len() - 1];
    assert!(
        flushed[0] >= 12 && flushed.windows(2).all(|w| w[1] - w[0] >= 12),
        "{uppers:?}"
    );
}

#[test]
fn a_logged_seal_reaches_its_batch_once_the_stream_is_quiet_for_the_delay() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(150);
    let store = open(dir.path(), options(64 << 20, delay));
    write_at(&store, 0, 5);
    let logged = Instant::now();
    store.seal_logged("s", 1).unwrap();
    wait_for_upper(&store, "s", 1);
    assert!(
        logged.elapsed() >= delay,
        "flushed after {:?}, before the delay",
        logged.elapsed()
    );
    // A later seal of the same stream gets its own deadline.
    write_at(&store, 1, 5);
    let logged = Instant::now();
    store.seal_logged("s", 2).unwrap();
    wait_for_upper(&store, "s", 2);
    assert!(logged.elapsed() >= delay);
    assert_eq!(store.sealed("s").unwrap().batches.len(), 2);
}

#[test]
fn a_stream_sealed_steadily_below_the_delay_is_flushed_within_ten_delays() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(60);
    let store = open(dir.path(), options(64 << 20, delay));
    // A seal every 10 ms, for up to 2 s: the stream never goes quiet for the delay, and holds far less
    // than the size, so only the bound of ten delays (600 ms) flushes it while the seals go on.
    let start = Instant::now();
    let mut t = 0;
    while store.upper("s").unwrap() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "not flushed while sealed every 10 ms"
        );
        write_at(&store, t, 2);
        t += 1;
        store.seal_logged("s", t).unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(t >= 2, "flushed after {t} seals");
}

#[test]
fn closing_the_store_flushes_the_logged_seals_waiting_for_their_delay() {
    let dir = tempfile::tempdir().unwrap();
    {
        // The longest delay there is ("by size only"): its deadlines are still representable.
        let store = open(dir.path(), options(64 << 20, Duration::MAX));
        for t in 0..5 {
            write_at(&store, t, 10);
            store.seal_logged("s", t + 1).unwrap();
        }
        assert_eq!(store.upper("s").unwrap(), 0);
    }
    // Written before the store closed: the open replays no update and finds the batch committed.
    let store = open(dir.path(), options(64 << 20, HOUR));
    assert_eq!(store.recovery_report().updates_replayed, 0);
    assert_eq!(store.upper("s").unwrap(), 5);
    let sealed = store.sealed("s").unwrap();
    assert_eq!(sealed.batches.len(), 1);
    assert_eq!(sealed.batches[0].update_count(), 50);
}

#[test]
fn flush_bytes_zero_flushes_every_logged_seal_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), options(0, HOUR));
    write_at(&store, 0, 5);
    store.seal_logged("s", 1).unwrap();
    // Not the delay's hour: the flush thread took it up at once.
    wait_for_upper(&store, "s", 1);
    assert_eq!(store.sealed("s").unwrap().batches.len(), 1);
}

#[test]
fn a_failed_background_flush_is_tried_again_without_another_call() {
    let dir = tempfile::tempdir().unwrap();
    let options = options(0, Duration::from_millis(20));
    let (store, blob) = open_faulty(dir.path(), options);
    store.create_stream("s", StreamOptions::default()).unwrap();
    write_at(&store, 0, 5);
    blob.fail_after(0);
    store.seal_logged("s", 1).unwrap();
    // The flush thread's attempt fails (the blob refuses every write) and is recorded.
    let start = Instant::now();
    while store.background_error().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the flush never failed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(store.upper("s").unwrap(), 0);
    // Healed, the flush thread tries again on its own (ten delays later), with no call on the stream.
    blob.heal();
    wait_for_upper(&store, "s", 1);
    assert_eq!(store.sealed("s").unwrap().batches[0].update_count(), 5);
}
