//! The documented bounds of logged seals flushed late (`Options::logged_flush_bytes`,
//! `Options::logged_flush_delay`), checked under adversarial shapes: the memory a stream holds while it is
//! sealed fast with big writes (about four times the flush size at most), the time a quiet stream's
//! upper trails its logged upper when many streams go quiet at once, readers (`PersistedTrace`, snapshots,
//! `sealed`) of a stream whose seals are logged but not flushed, and writes far above the logged upper.

use ddpersist::trace::PersistedTrace;
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::trace::{Cursor, Navigable, TraceReader};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use timely::progress::Antichain;

fn options(flush_bytes: usize, delay: Duration) -> Options {
    Options {
        logged_flush_bytes: flush_bytes,
        logged_flush_delay: delay,
        ..Options::default()
    }
}

/// Sealed fast with writes of a quarter of the flush size: the memtable never holds much more than four
/// times the flush size (twice in the memtable, as much again being written: `logged_flush_bytes` docs).
#[test]
fn memory_stays_near_the_flush_size_when_sealed_fast() {
    let dir = tempfile::tempdir().unwrap();
    let flush = 256 << 10;
    let store = Store::open_with(dir.path(), options(flush, Duration::from_secs(3600))).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut most = 0;
    for t in 0..400u64 {
        let ups: Vec<(u64, Vec<u8>, u64, i64)> =
            (0..64).map(|i| (t * 64 + i, vec![7u8; 1000], t, 1)).collect();
        store.write("s", &ups).unwrap();
        store.seal_logged("s", t + 1).unwrap();
        most = most.max(store.memtable_bytes("s").unwrap());
    }
    assert!(
        most <= 4 * flush + (64 << 10) * 2,
        "memtable held {most} bytes (flush size {flush})"
    );
    store.complete_seals("s").unwrap();
    assert_eq!(store.upper("s").unwrap(), 400);
}

/// Forty streams go quiet at once: each reaches its logged upper within the delay plus the flushes of
/// the others (well under the "second at most" of the docs at a 50 ms delay).
#[test]
fn many_streams_going_quiet_at_once_reach_their_uppers() {
    let dir = tempfile::tempdir().unwrap();
    let delay = Duration::from_millis(50);
    let store = Store::open_with(dir.path(), options(64 << 20, delay)).unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    for id in &ids {
        store.create_stream(id, StreamOptions::default()).unwrap();
    }
    for round in 0..3u64 {
        for id in &ids {
            store.write(id, &[(round, round, round, 1i64)]).unwrap();
            store.seal_logged(id, round + 1).unwrap();
        }
    }
    let quiet = Instant::now();
    for id in &ids {
        while store.upper(id).unwrap() < 3 {
            assert!(
                quiet.elapsed() < Duration::from_secs(5),
                "{id}: upper {} five seconds after the streams went quiet",
                store.upper(id).unwrap()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    // (How many batches: each round's 40 logged seals, an fsync each, may outlast the delay, so a
    // stream may have gone quiet between rounds: one to three batches.)
    for id in &ids {
        let batches = store.sealed(id).unwrap().batches.len();
        assert!((1..=3).contains(&batches), "{id}: {batches} batches");
    }
}

/// A `PersistedTrace` opened while seals are logged but unflushed covers exactly the committed upper and
/// holds exactly the updates below it; one opened after the flush covers the logged upper. Snapshots
/// see every update throughout.
#[test]
fn readers_of_a_stream_whose_seals_are_logged_but_unflushed() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(64 << 20, Duration::from_secs(3600))).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model: BTreeMap<(u64, u64), i64> = BTreeMap::new();
    for t in 0..10u64 {
        let ups: Vec<(u64, u64, u64, i64)> = (0..5).map(|i| (t * 10 + i, i, t, 1)).collect();
        store.write("s", &ups).unwrap();
        model.extend(ups.iter().map(|(k, _, t, d)| ((*k, *t), *d)));
        if t == 4 {
            store.seal("s", 5).unwrap();
        } else if t > 4 {
            store.seal_logged("s", t + 1).unwrap();
        }
    }
    let read_trace = |store: &Store| -> (u64, BTreeMap<(u64, u64), i64>) {
        let mut trace = PersistedTrace::open(store, "s").unwrap();
        let upper = trace.upper().elements().first().copied().unwrap_or(u64::MAX);
        let mut out = BTreeMap::new();
        if upper > 0 {
            for batch in trace
                .batches_through(Antichain::from_elem(upper).borrow())
                .unwrap()
            {
                let mut cursor = batch.cursor();
                for ((k, _), upds) in cursor.to_vec(&batch, |k| k.to_vec(), |v| v.to_vec()) {
                    let k: u64 = ddpersist::Codec::decode(&k).unwrap();
                    for (t, d) in upds {
                        *out.entry((k, t)).or_insert(0) += d;
                    }
                }
            }
        }
        out.retain(|_, d| *d != 0);
        (upper, out)
    };
    let (upper, got) = read_trace(&store);
    assert_eq!(upper, store.upper("s").unwrap());
    assert_eq!(upper, 5, "the logged seals are not flushed yet (an hour's delay)");
    let below: BTreeMap<_, _> = model
        .iter()
        .filter(|((_, t), _)| *t < upper)
        .map(|(k, d)| (*k, *d))
        .collect();
    assert_eq!(got, below, "the trace below its upper");
    let snap: BTreeMap<(u64, u64), i64> = store
        .snapshot("s")
        .unwrap()
        .decode::<u64, u64>()
        .unwrap()
        .into_iter()
        .map(|(k, _, t, d)| ((k, t), d))
        .collect();
    assert_eq!(snap, model, "the snapshot holds the logged seals' updates");
    store.complete_seals("s").unwrap();
    let (upper, got) = read_trace(&store);
    assert_eq!(upper, 10);
    assert_eq!(got, model);
}

/// Writes far above the logged upper count toward the flush size (documented): the logged seals are
/// still flushed, once each, and nothing above the upper is sealed.
#[test]
fn writes_far_above_the_logged_upper_do_not_leak_into_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options(64 << 10, Duration::from_secs(3600))).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let far: Vec<(u64, Vec<u8>, u64, i64)> = (0..200)
        .map(|i| (1_000_000 + i, vec![1u8; 1000], 1_000, 1))
        .collect();
    store.write("s", &far).unwrap();
    for t in 0..50u64 {
        store.write("s", &[(t, vec![2u8; 10], t, 1i64)]).unwrap();
        store.seal_logged("s", t + 1).unwrap();
    }
    store.complete_seals("s").unwrap();
    assert_eq!(store.upper("s").unwrap(), 50);
    let sealed = store.sealed("s").unwrap();
    let in_batches: u64 = sealed.batches.iter().map(|b| b.update_count()).sum();
    assert!(
        in_batches <= 50,
        "{in_batches} updates in batches below 50 (merges may have summed none)"
    );
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap().len(), 250);
    assert_eq!(store.unsealed_len("s").unwrap(), 200);
}

/// Measures (prints) what writes far above the logged upper do to `seal_logged`: with twice
/// `logged_flush_bytes` of them in the memtable, every logged seal is flushed at once, as its own batch,
/// and from the second one on on the caller's thread (the "behind" rule), though the flush thread is idle.
/// `DDPERSIST_LOGGED_MEASURE=1` runs it.
#[test]
fn measure_seal_logged_with_writes_far_above_the_upper() {
    if std::env::var("DDPERSIST_LOGGED_MEASURE").is_err() {
        return;
    }
    for far_bytes in [0usize, 200 << 10] {
        let dir = tempfile::tempdir().unwrap();
        let o = Options {
            merge_fan_in: 64,
            max_batches_per_stream: 1000,
            ..options(64 << 10, Duration::from_secs(3600))
        };
        let store = Store::open_with(dir.path(), o).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let far: Vec<(u64, Vec<u8>, u64, i64)> = (0..far_bytes as u64 / 1000)
            .map(|i| (1_000_000 + i, vec![1u8; 1000], 1_000_000, 1))
            .collect();
        store.write("s", &far).unwrap();
        let start = Instant::now();
        let mut inline = 0;
        for t in 0..100u64 {
            store.write("s", &[(t, vec![2u8; 10], t, 1i64)]).unwrap();
            let before = store.upper("s").unwrap();
            store.seal_logged("s", t + 1).unwrap();
            if t >= 1 && store.upper("s").unwrap() >= t && before < t {
                inline += 1;
            }
        }
        let took = start.elapsed();
        store.complete_seals("s").unwrap();
        eprintln!(
            "far writes {far_bytes} B: 100 write + seal_logged in {took:?}, {} batches, upper reached the previous seal on return {inline} times",
            store.sealed("s").unwrap().batches.len()
        );
    }
}
