//! Merges against a model, since semantics, readers across merges, and a crash at every step of a merge.
//! (Back-pressure and tail merges: `tests/compaction/back_pressure.rs`.)

use crate::common;

use common::{accumulate, batch_files, blob_files, named_files, Model, Rng};
use ddpersist::blob::{Blob, FaultyBlob, MemBlob};
use ddpersist::wal::MemLog;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::sync::Arc;

/// Inline merges (in `seal`) at fan-in 8: the batch counts and merge sequences below are sized for it
/// (these tests are about what merges keep, not about the default, which is 8 too).
fn inline() -> Options {
    Options {
        compaction_threads: 0,
        merge_fan_in: 8,
        ..Options::default()
    }
}

/// Inline merges of pairs (fan-in 2, the binary counter): every seal of a small stream can make a merge due.
fn inline_pairs() -> Options {
    Options {
        merge_fan_in: 2,
        ..inline()
    }
}

/// Writes `rounds` seals of `per_round` random updates each, recording them in `model`.
/// A store with `options` in a new temporary directory (the returned guard keeps it), with stream "s".
fn store_with_stream(options: Options) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    (dir, store)
}

fn ingest(store: &Store, id: &str, model: &mut Model, rng: &mut Rng, rounds: u64, per_round: u64) {
    let upper = store.upper(id).unwrap();
    for r in 0..rounds {
        let t0 = upper + r;
        let ups: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = (0..per_round)
            .map(|_| {
                let k = format!("k{:03}", rng.below(300)).into_bytes();
                let v = vec![b'a' + rng.below(3) as u8];
                (k, v, t0, if rng.below(3) == 0 { -1 } else { 1 })
            })
            .collect();
        for (k, v, t, d) in &ups {
            model.write(k, v, *t, *d);
        }
        store
            .write_bytes(id, ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        store.seal(id, t0 + 1).unwrap();
    }
}

#[test]
fn merges_keep_the_data_and_bound_the_batch_count() {
    merges_keep_the_data(inline());
}

#[test]
fn compressed_levels_keep_the_data() {
    // Level 9 and deeper: batches of 512 updates and more (the merges of 8 seals) are lz4-compressed,
    // smaller ones are not.
    let options = Options {
        compress_from_level: Some(9),
        ..inline()
    };
    let dir = merges_keep_the_data(options);
    let compressed = batch_files(dir.path()).iter().any(|f| {
        let bytes = ddpersist::blob::BlobBytes::Heap(std::fs::read(f).unwrap().into());
        let b = ddpersist::batch::BatchFile::open(f.display().to_string(), bytes).unwrap();
        (0..b.block_count()).any(|i| b.index_entry(i).unwrap().codec == ddpersist::batch::format::CODEC_LZ4)
    });
    assert!(compressed, "no compressed block in any batch");
}

fn merges_keep_the_data(options: Options) -> tempfile::TempDir {
    let (dir, store) = store_with_stream(options.clone());
    let (mut model, mut rng) = (Model::default(), Rng(1));
    // Each seal and merge costs a few fsyncs: keep the count modest.
    ingest(&store, "s", &mut model, &mut rng, 60, 100);
    let batches = store.manifest().stream("s").unwrap().batches.len();
    // Fan-in 8: fewer than 8 batches per tier, over two tiers here.
    assert!(batches <= 14, "60 seals left {batches} batches");
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // Only the files the manifest names remain: merged inputs were deleted.
    assert_eq!(batch_files(dir.path()).len(), batches);
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    dir
}

#[test]
fn background_workers_merge_and_stop_with_the_store() {
    let (dir, store) = store_with_stream(Options::default());
    let (mut model, mut rng) = (Model::default(), Rng(2));
    ingest(&store, "s", &mut model, &mut rng, 100, 20);
    // Merges run in the background; wait (bounded) for them to catch up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.manifest().stream("s").unwrap().batches.len() > 14 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(store.manifest().stream("s").unwrap().batches.len() <= 14);
    assert_eq!(store.background_error(), None);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // Dropping the store stops the workers and releases the lock at once.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn since_advances_times_keeps_accumulations_and_never_goes_back() {
    let (dir, store) = store_with_stream(inline());
    let (mut model, mut rng) = (Model::default(), Rng(3));
    ingest(&store, "s", &mut model, &mut rng, 40, 30);
    store.allow_compaction("s", 30).unwrap();
    // Times advance only when merges rewrite batches, as in DD: seal on until the old batches merge.
    ingest(&store, "s", &mut model, &mut rng, 40, 30);
    store.compact("s").unwrap();
    let got = store.snapshot("s").unwrap().to_vec().unwrap();
    let want = model.expected();
    for t in [30, 31, 45, 60, 79, 100] {
        assert_eq!(accumulate(&got, t), accumulate(&want, t), "accumulation at {t}");
    }
    // Merges did advance times: some update below 30 now sits at 30, and fewer updates remain.
    assert!(got.iter().all(|u| u.2 >= 30 || model.expected().contains(u)));
    assert!(got.len() < want.len(), "{} vs {}", got.len(), want.len());
    assert!(matches!(
        store.allow_compaction("s", 29),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        store.allow_compaction("nope", 40),
        Err(Error::UnknownStream { .. })
    ));
    store.allow_compaction("s", 30).unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert_eq!(store.since("s").unwrap(), 30);
    assert!(matches!(
        store.allow_compaction("s", 10),
        Err(Error::BadInput { .. })
    ));
    let got = store.snapshot("s").unwrap().to_vec().unwrap();
    assert_eq!(accumulate(&got, 50), accumulate(&want, 50));
}

#[test]
fn a_major_compaction_merges_every_batch_into_one_and_keeps_every_accumulation() {
    let (dir, store) = store_with_stream(inline());
    assert_eq!(store.major_compact("s").unwrap(), 0, "no batch: nothing to merge");
    let (mut model, mut rng) = (Model::default(), Rng(7));
    ingest(&store, "s", &mut model, &mut rng, 30, 20);
    store.allow_compaction("s", 12).unwrap();
    assert!(store.manifest().stream("s").unwrap().batches.len() >= 2);
    assert!(store.major_compact("s").unwrap() >= 1);
    assert_eq!(store.manifest().stream("s").unwrap().batches.len(), 1);
    let got = store.snapshot("s").unwrap().to_vec().unwrap();
    let want = model.expected();
    for t in [12, 13, 20, 29, 40] {
        assert_eq!(accumulate(&got, t), accumulate(&want, t), "accumulation at {t}");
    }
    // Its merge advanced times to `since`, as every merge does.
    assert!(got.iter().all(|u| u.2 >= 12));
    assert_eq!(
        store.major_compact("s").unwrap(),
        0,
        "one batch: nothing left to merge"
    );
    assert!(matches!(
        store.major_compact("nope"),
        Err(Error::UnknownStream { .. })
    ));
    drop(store);
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert_eq!(store.manifest().stream("s").unwrap().batches.len(), 1);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), got);
}

#[test]
fn a_major_compaction_waits_for_background_merges_and_leaves_one_batch() {
    let (_dir, store) = store_with_stream(Options::default());
    let (mut model, mut rng) = (Model::default(), Rng(8));
    // Background merges run meanwhile (the default: one merge thread).
    ingest(&store, "s", &mut model, &mut rng, 100, 20);
    store.major_compact("s").unwrap();
    assert_eq!(store.manifest().stream("s").unwrap().batches.len(), 1);
    assert_eq!(store.background_error(), None);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // Later seals stack on it as before.
    ingest(&store, "s", &mut model, &mut rng, 3, 20);
    store.compact("s").unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_major_compaction_completes_logged_seals_and_leaves_spilled_runs_beside_its_batch() {
    // A memtable budget of 4 KiB: unsealed updates spill to sorted runs.
    let options = Options {
        memtable_budget_bytes: 4 << 10,
        ..Options::default()
    };
    let (dir, store) = store_with_stream(options);
    let (mut model, mut rng) = (Model::default(), Rng(9));
    ingest(&store, "s", &mut model, &mut rng, 20, 20);
    // Two seals logged (their batches written by the flush thread, or by the compaction), then unsealed
    // updates past the budget, beyond the upper.
    let first = store.upper("s").unwrap();
    for t in first..first + 2 {
        let (k, v) = (format!("k{:03}", rng.below(300)).into_bytes(), b"z".to_vec());
        model.write(&k, &v, t, 1);
        store.write_bytes("s", [(&k[..], &v[..], t, 1)]).unwrap();
        store.seal_logged("s", t + 1).unwrap();
    }
    let later = first + 7;
    for i in 0..400u32 {
        let k = format!("late{i:04}").into_bytes();
        model.write(&k, b"v", later, 1);
        store.write_bytes("s", [(&k[..], &b"v"[..], later, 1)]).unwrap();
    }
    assert!(
        !store.manifest().stream("s").unwrap().spills.is_empty(),
        "the late updates spilled"
    );
    store.major_compact("s").unwrap();
    let stream = store.manifest().stream("s").unwrap().clone();
    assert_eq!(
        (stream.batches.len(), stream.upper),
        (1, first + 2),
        "the logged seals are in it"
    );
    assert!(!stream.spills.is_empty(), "unsealed runs stay beside the batch");
    assert_eq!(store.background_error(), None);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_reader_keeps_its_batches_across_merges() {
    let blob = MemBlob::new();
    let store = Store::open_on(Arc::new(blob.clone()), Arc::new(MemLog::new()), inline()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    let (mut model, mut rng) = (Model::default(), Rng(4));
    // Two equal seals merge at once; a third seal leaves a batch a later seal will merge.
    ingest(&store, "s", &mut model, &mut rng, 3, 40);
    let held = store.snapshot("s").unwrap();
    let held_files: Vec<String> = held.batches().iter().map(|b| b.name().to_string()).collect();
    let expected_then = model.expected();
    ingest(&store, "s", &mut model, &mut rng, 13, 40);
    // The held snapshot still reads its (now replaced) batches, and their files still exist.
    assert_eq!(held.to_vec().unwrap(), expected_then);
    let names = blob.list().unwrap();
    for f in &held_files {
        let object = f.trim_start_matches("mem:/");
        assert!(
            names.iter().any(|n| n == object),
            "{object} deleted under a reader"
        );
    }
    let live = named_files(&store);
    drop(held);
    // Once the reader is gone, only the live batches remain.
    assert_eq!(blob_files(&blob), live);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_crash_at_any_step_of_a_merge_loses_nothing() {
    // Count the blob calls one merge makes, then crash at each of them in turn.
    let mut step = 0u64;
    let mut merge_crashes = 0;
    loop {
        let faulty = FaultyBlob::new(MemBlob::new());
        let store =
            Store::open_on(Arc::new(faulty.clone()), Arc::new(MemLog::new()), inline_pairs()).unwrap();
        store
            .create_stream("s", StreamOptions { durable: false })
            .unwrap();
        let (mut model, mut rng) = (Model::default(), Rng(5));
        // Seals of decreasing size: nothing is due to merge yet.
        for (r, n) in [(0u64, 64u64), (1, 16), (2, 4)] {
            let ups: Vec<_> = (0..n)
                .map(|i| (format!("k{i:03}").into_bytes(), rng.below(2) as i64 + 1))
                .collect();
            for (k, d) in &ups {
                model.write(k, b"v", r, *d);
            }
            store
                .write_bytes("s", ups.iter().map(|(k, d)| (&k[..], &b"v"[..], r, *d)))
                .unwrap();
            store.seal("s", r + 1).unwrap();
        }
        assert_eq!(store.manifest().stream("s").unwrap().batches.len(), 3);
        // The next seal makes merges due; crash after `step` blob calls.
        store.write_bytes("s", [(&b"k000"[..], &b"v"[..], 3, 1)]).unwrap();
        model.write(b"k000", b"v", 3, 1);
        store.write_bytes("s", [(&b"k001"[..], &b"v"[..], 3, 1)]).unwrap();
        model.write(b"k001", b"v", 3, 1);
        store.write_bytes("s", [(&b"k002"[..], &b"v"[..], 3, 1)]).unwrap();
        model.write(b"k002", b"v", 3, 1);
        store.write_bytes("s", [(&b"k003"[..], &b"v"[..], 3, 1)]).unwrap();
        model.write(b"k003", b"v", 3, 1);
        // The seal itself must succeed (its own steps come first); merges after it may fail.
        let seal_ops = 6;
        faulty.fail_after(seal_ops + step);
        let sealed = store.seal("s", 4);
        let crashed = faulty.has_failed();
        drop(store);
        faulty.heal();
        if sealed.is_err() {
            // The budget ran out inside the seal's own steps: the seal's fate is unknown (the updates
            // were not durable), so only the first three seals are certain. Covered by larger steps.
            assert!(crashed);
            step += 1;
            continue;
        }
        let store = Store::open_on(
            Arc::new(faulty.inner().clone()),
            Arc::new(MemLog::new()),
            inline_pairs(),
        )
        .unwrap();
        assert_eq!(
            store.snapshot("s").unwrap().to_vec().unwrap(),
            model.expected(),
            "crash at step {step}"
        );
        // Open removed what the crash left: the blob holds exactly what the manifest names.
        assert_eq!(
            blob_files(faulty.inner()),
            named_files(&store),
            "crash at step {step}"
        );
        if !crashed {
            // The whole seal and every merge ran without reaching the fault: all steps are covered.
            // (A merge output here is one `create`, the header `write`, one `write` of the rest — the
            // batch writer hands the blob ~1 MiB at a time — and `commit`; then the manifest and deletes.)
            assert!(
                merge_crashes >= 8,
                "only {merge_crashes} crashes fell inside merges"
            );
            break;
        }
        merge_crashes += 1;
        step += 1;
        assert!(step < 1000, "merge never finished");
    }
}

/// `compact` waits for a background merge in flight and then runs every merge due: when it returns, no
/// merge is due, whatever the background threads were doing (it used to return 0 while one ran).
#[test]
fn compact_waits_for_merges_in_flight_and_leaves_none_due() {
    for fan_in in [2, 4, 8] {
        let options = Options {
            compaction_threads: 2,
            merge_fan_in: fan_in,
            ..Options::default()
        };
        let store = Store::open_on(Arc::new(MemBlob::new()), Arc::new(MemLog::new()), options).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let mut model = Model::default();
        let mut rng = Rng(fan_in as u64);
        for round in 0..5 {
            ingest(&store, "s", &mut model, &mut rng, 20, 50);
            store.compact("s").unwrap();
            let counts: Vec<u64> = store
                .sealed("s")
                .unwrap()
                .batches
                .iter()
                .map(|b| b.update_count())
                .collect();
            assert_eq!(
                ddpersist::compaction::pick_merge(&counts, fan_in),
                None,
                "fan-in {fan_in}, round {round}: {counts:?}"
            );
        }
        assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    }
}

/// Upserts of a fixed key set with the since following the upper: tiers alone keep retractions and their
/// insertions apart in different batches; the size-amplification trigger merges everything once the newer
/// batches outgrow the oldest, so the stored updates stay within a bound of the live ones.
#[test]
fn the_space_amplification_trigger_bounds_what_upserts_leave_on_disk() {
    let stored = |percent: Option<u32>| -> (u64, u64) {
        let options = Options {
            max_space_amplification_percent: percent,
            ..inline()
        };
        let (_dir, store) = store_with_stream(options);
        let keys = 100u64;
        let mut most = 0;
        for round in 0u64..40 {
            // Round r sets every key to val r: retract r - 1, insert r.
            let mut ups: Vec<(u64, u64, u64, i64)> = (0..keys).map(|k| (k, round, round, 1)).collect();
            if round > 0 {
                ups.extend((0..keys).map(|k| (k, round - 1, round, -1)));
            }
            store.write("s", &ups).unwrap();
            store.seal("s", round + 1).unwrap();
            store.allow_compaction("s", round).unwrap();
            let sealed = store.sealed("s").unwrap();
            most = most.max(sealed.batches.iter().map(|b| b.update_count()).sum::<u64>());
        }
        // The answer is the same either way.
        let now: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
        let mut live = std::collections::BTreeMap::new();
        for (k, v, _, d) in now {
            *live.entry((k, v)).or_insert(0i64) += d;
        }
        live.retain(|_, d| *d != 0);
        assert_eq!(live.len() as u64, keys);
        assert!(live.keys().all(|(_, v)| *v == 39));
        (most, keys)
    };
    let (tiered, live) = stored(None);
    let (bounded, _) = stored(Some(100));
    // With the trigger at 100%, the newer batches never hold more than the oldest for long: what is
    // stored stays within a few times the live set; tiers alone let it grow with the rounds.
    eprintln!("stored at most: {tiered} (tiers), {bounded} (trigger at 100%), live {live}");
    assert!(bounded <= 6 * live, "{bounded} stored for {live} live");
    assert!(bounded < tiered, "trigger {bounded} vs tiers {tiered}");
}
