//! Versions: a stream's durable state is an immutable `Version` swapped whole by each manifest edit, and
//! readers share the memtable's buckets copy-on-write. What a reader took never changes; what the store
//! serves next always agrees with the manifest.

use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;

fn options() -> Options {
    Options {
        compaction_threads: 0, // merges inline in `seal`: deterministic
        merge_fan_in: 2,
        memtable_budget_bytes: 4 << 10,
        ..Options::default()
    }
}

/// Every update of a snapshot, consolidated: ((key, val, time) → diff).
fn contents(store: &Store, id: &str) -> BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> {
    let mut out = BTreeMap::new();
    for (k, v, t, d) in store.snapshot(id).unwrap().to_vec().unwrap() {
        *out.entry((k, v, t)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// The file numbers of a version's batches and spilled runs, as its manifest entry names them, and the
/// names of its open files: they must agree.
fn check_agrees_with_manifest(store: &Store, id: &str) {
    let version = store.version(id).unwrap();
    let manifest = store.manifest();
    let entry = manifest.stream(id).unwrap();
    assert_eq!(version.meta(), entry, "the version is the manifest's entry");
    let names = |files: &[std::sync::Arc<ddpersist::batch::BatchFile>]| -> Vec<String> {
        files
            .iter()
            .map(|b| b.name().rsplit('/').next().unwrap().to_string())
            .collect()
    };
    let expect = |metas: &[ddpersist::version::BatchMeta]| -> Vec<String> {
        metas
            .iter()
            .map(|m| ddpersist::batch::batch_file_name(m.file_no))
            .collect()
    };
    assert_eq!(names(version.batches()), expect(&entry.batches));
    assert_eq!(names(version.spills()), expect(&entry.spills));
}

#[test]
fn a_version_taken_never_changes_and_the_current_one_follows_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut held = Vec::new();
    for round in 0u64..12 {
        let updates: Vec<(u64, String, u64, i64)> = (0..50)
            .map(|i| (i * 7 % 31, format!("v{round}-{i}"), round, 1))
            .collect();
        store.write("s", &updates).unwrap();
        // A future time, so the memtable holds something across seals (and spills past the budget).
        store
            .write("s", &[(round, "later".to_string(), 100 + round, 1)])
            .unwrap();
        let before = store.version("s").unwrap();
        held.push((before.clone(), before.meta().clone(), before.batches().len()));
        store.seal("s", round + 1).unwrap();
        check_agrees_with_manifest(&store, "s");
        let after = store.version("s").unwrap();
        assert_eq!(after.upper(), round + 1);
        assert_eq!(before.upper(), round, "a held version keeps its upper");
    }
    // Merges ran inline (fan-in 2): the held versions still name their own files, all still readable.
    for (version, meta, count) in &held {
        assert_eq!(version.meta(), meta);
        assert_eq!(version.batches().len(), *count);
        for batch in version.batches() {
            let mut cursor = ddpersist::batch::UpdateCursor::new(batch).unwrap();
            let mut updates = 0u64;
            while cursor.get().is_some() {
                updates += 1;
                cursor.step().unwrap();
            }
            assert_eq!(updates, batch.update_count());
        }
    }
    assert!(
        store.version("s").unwrap().batches().len() < 12,
        "merges happened"
    );
    // The spills and the memtable at times beyond the upper are all there after a reopen.
    let expected = contents(&store, "s");
    drop(held);
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    check_agrees_with_manifest(&store, "s");
    assert_eq!(contents(&store, "s"), expected);
}

#[test]
fn a_snapshot_is_not_changed_by_later_writes_into_its_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    store.write("s", &[(1u64, 10u64, 5, 1), (2, 20, 6, 1)]).unwrap();
    let snapshot = store.snapshot("s").unwrap();
    let first = snapshot.to_vec().unwrap();
    // Writes into the same time buckets the snapshot shares, and a lookup's view taken in between.
    store.write("s", &[(1u64, 11u64, 5, 1), (2, 20, 6, -1)]).unwrap();
    assert_eq!(store.get::<u64, u64>("s", &2, 10).unwrap(), vec![]);
    store.write("s", &[(3u64, 30u64, 5, 1)]).unwrap();
    assert_eq!(
        snapshot.to_vec().unwrap(),
        first,
        "the snapshot is as it was taken"
    );
    let now = contents(&store, "s");
    assert_eq!(now.len(), 3, "{now:?}");
    assert_eq!(
        store.get::<u64, u64>("s", &1, 10).unwrap(),
        vec![(10, 1), (11, 1)]
    );
}
