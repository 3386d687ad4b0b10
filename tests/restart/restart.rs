//! Write → seal → drop → reopen → snapshot equals a naive model; WAL replay, torn tails, orphans.

use crate::common;

use common::{batch_files, wal_segments, Model, Rng};
use ddpersist::{Options, Store, StreamOptions};

fn key(i: u64) -> Vec<u8> {
    format!("k{:04}", i % 97).into_bytes()
}

#[test]
fn several_streams_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let ids = ["alpha", "beta", "gamma"];
    let mut models = vec![Model::default(); ids.len()];
    let mut rng = Rng(7);
    let mut uppers = [0u64; 3];
    for round in 0..6 {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.recovery_report().created, round == 0);
        for (s, id) in ids.iter().enumerate() {
            if round == 0 {
                store.create_stream(id, StreamOptions::default()).unwrap();
            }
            // Snapshot after reopen equals the model, sealed and unsealed parts alike.
            assert_eq!(
                store.snapshot(id).unwrap().to_vec().unwrap(),
                models[s].expected(),
                "{id} round {round}"
            );
            let mut updates = Vec::new();
            for _ in 0..200 {
                let (k, v) = (key(rng.next()), vec![b'v'; rng.below(5) as usize]);
                let t = uppers[s] + rng.below(8);
                let d = rng.below(5) as i64 - 2;
                models[s].write(&k, &v, t, d);
                updates.push((k, v, t, d));
            }
            store
                .write_bytes(id, updates.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
                .unwrap();
            // Seal part of what was written; the rest stays in the WAL and memtable.
            uppers[s] += 4;
            let info = store.seal(id, uppers[s]).unwrap();
            assert_eq!(info.description.upper, uppers[s]);
            assert_eq!(
                store.snapshot(id).unwrap().to_vec().unwrap(),
                models[s].expected()
            );
        }
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.streams(), ids.to_vec());
    for (s, id) in ids.iter().enumerate() {
        assert_eq!(store.upper(id).unwrap(), uppers[s]);
        assert_eq!(
            store.snapshot(id).unwrap().to_vec().unwrap(),
            models[s].expected()
        );
    }
}

#[test]
fn empty_store_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let store = Store::open(dir.path()).unwrap();
    assert!(!store.recovery_report().created);
    assert!(store.streams().is_empty());
    // A stream with nothing written also survives.
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.streams(), vec!["s".to_string()]);
    assert!(store.snapshot("s").unwrap().to_vec().unwrap().is_empty());
}

#[test]
fn seal_with_nothing_below_upper_advances_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u8, (), 10, 1)]).unwrap();
    let info = store.seal("s", 5).unwrap();
    assert_eq!((info.update_count, info.file), (0, None));
    let info = store.seal("s", 11).unwrap();
    assert_eq!(info.update_count, 1);
    assert_eq!(info.description.lower, 5);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 11);
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u8, ()>().unwrap(),
        vec![(1, (), 10, 1)]
    );
    assert_eq!(batch_files(dir.path()).len(), 1);
}

#[test]
fn non_durable_stream_keeps_sealed_data_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_stream("op", StreamOptions { durable: false })
        .unwrap();
    store.write("op", &[(1u32, 1u32, 0, 1), (2, 2, 5, 1)]).unwrap();
    store.seal("op", 3).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.snapshot("op").unwrap().decode::<u32, u32>().unwrap(),
        vec![(1, 1, 0, 1)]
    );
    assert_eq!(store.recovery_report().wal_records, 0);
}

#[test]
fn torn_wal_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, 1u64, 0, 1)]).unwrap();
    store.write("s", &[(2u64, 2u64, 0, 1)]).unwrap();
    drop(store);
    // Cut the last record short, as a crash in the middle of its write would: then its fdatasync never
    // returned, and the sync mark (24 bytes) written after each synced flush was never written either.
    let seg = wal_segments(dir.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len() - 24;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let store = Store::open(dir.path()).unwrap();
    let torn = store
        .recovery_report()
        .torn_tail
        .clone()
        .expect("torn tail reported");
    assert_eq!(torn.file, seg.display().to_string());
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
        vec![(1, 1, 0, 1)]
    );
    // Writing continues after the cut, and the next open is clean.
    store.write("s", &[(3u64, 3u64, 0, 1)]).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().torn_tail, None);
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
        vec![(1, 1, 0, 1), (3, 3, 0, 1)]
    );
}

#[test]
fn orphans_of_an_interrupted_seal_are_removed_and_named_files_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u8, 1u8, 0, 1)]).unwrap();
    store.seal("s", 1).unwrap();
    drop(store);
    let kept = batch_files(dir.path());
    // What a crash between writing a batch and committing the manifest leaves behind.
    std::fs::write(dir.path().join("00000000000000ff.batch"), b"half a batch").unwrap();
    std::fs::write(dir.path().join("0000000000000100.batch.tmp"), b"partial").unwrap();
    std::fs::write(dir.path().join("MANIFEST.tmp"), b"partial").unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.recovery_report().orphans_removed,
        vec![
            "00000000000000ff.batch",
            "0000000000000100.batch.tmp",
            "MANIFEST.tmp"
        ]
    );
    assert_eq!(batch_files(dir.path()), kept);
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u8, u8>().unwrap(),
        vec![(1, 1, 0, 1)]
    );
}

#[test]
fn sealed_wal_segments_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        wal_segment_bytes: 4096,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model = Model::default();
    for t in 0..200u64 {
        let val = vec![b'x'; 100];
        store
            .write_bytes("s", [(&t.to_be_bytes()[..], &val[..], t, 1)])
            .unwrap();
        model.write(&t.to_be_bytes(), &val, t, 1);
        if t % 10 == 9 {
            store.seal("s", t + 1).unwrap();
        }
    }
    // 200 records of ~140 bytes is ~7 segments; sealed ones are gone.
    assert!(
        wal_segments(dir.path()).len() <= 2,
        "{:?}",
        wal_segments(dir.path())
    );
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}
