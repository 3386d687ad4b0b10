//! Batch files written by earlier releases stay readable: stores written by `write_store` (below) at
//! the commit each fixture names are kept under `tests/fixtures/`, and every read path must return
//! exactly `fixture_updates` from them: lookups, snapshots, DD cursors over the sealed batches, the
//! full structural check (`BatchFile::verify_deep`), and a merge of old files into a new one.
//!
//! - `tests/fixtures/batch_v1/`: batch format 1 (FORMAT.md §2), written at commit 005c60e: stream `s`.
//! - `tests/fixtures/batch_v2/`: batch format 2 (narrow columns), written by the commit that introduced
//!   it, streams `s` and `u` (`u`'s blocks take
//!   every narrow path: keys and vals of one width, one val per key, one update per val, one diff).
//! - `tests/fixtures/batch_v3/`: batch format 3 (a partitioned block index), written by the commit that
//!   introduced it, streams `s` and `u`.
//!
//! Regenerate a fixture for a new format version only (an old one must never change):
//! `DDPERSIST_WRITE_FIXTURE=tests/fixtures/batch_vN cargo test --test format -- --ignored batch_format::`.

use crate::common;

use common::{accumulate, Model, Rng};
use ddpersist::trace::PersistedTrace;
use ddpersist::{Options, OwnedUpdate, Store, StreamOptions};
use differential_dataflow::trace::{Cursor, Navigable, TraceReader};
use std::path::Path;
use timely::progress::Antichain;

/// The uppers the fixture's stream is sealed at, in order.
const SEALS: [u64; 3] = [20, 40, 50];
/// The fixture's stream of varied updates, in every fixture.
const STREAM: &str = "s";
/// The fixture's stream of uniform updates (format 2 on).
const UNIFORM: &str = "u";

/// The updates of stream `id` (`STREAM` or `UNIFORM`).
fn fixture_updates(id: &str) -> Vec<OwnedUpdate> {
    match id {
        UNIFORM => (0..3000u64)
            .map(|i| {
                (
                    (i as u32).to_be_bytes().to_vec(),
                    vec![i as u8; 24],
                    i % SEALS[2],
                    1,
                )
            })
            .collect(),
        _ => varied_updates(),
    }
}

/// The updates of `STREAM`: keys of widths 1 to 12, one to three vals per key (some of one width,
/// some empty), one to three times per val, diffs of both signs and of small and large magnitude.
fn varied_updates() -> Vec<OwnedUpdate> {
    let mut rng = Rng(15);
    let mut out = Vec::new();
    for i in 0..700u64 {
        let mut key = (i as u16).to_be_bytes().to_vec();
        key.extend(std::iter::repeat_n(b'k', (i % 11) as usize));
        for j in 0..1 + rng.below(3) {
            let mut val = vec![j as u8];
            let width = if i % 4 == 0 { 20 } else { rng.below(40) as usize };
            val.extend((0..width).map(|x| (x as u64 * 31 + i) as u8));
            for _ in 0..1 + rng.below(3) {
                let time = rng.below(SEALS[2]);
                let diff = match rng.below(10) {
                    0 => -3,
                    1 => 1 << 40,
                    2 => -(1 << 20),
                    _ => 1,
                };
                out.push((key.clone(), val.clone(), time, diff));
            }
        }
    }
    out
}

fn options() -> Options {
    Options {
        block_target_bytes: 1024,
        compaction_threads: 0,
        merge_fan_in: 2,
        compress_from_level: Some(11),
        ..Options::default()
    }
}

/// Writes the fixture store into `dir`, each stream alike: its updates in three seals, with a since of
/// 5 from the first on; the second seal's merge (fan-in 2, inline) rewrites the first two batches into
/// one with lz4 blocks (`compress_from_level`), the last seal's batch stays raw.
fn write_store(dir: &Path) {
    let store = Store::open_with(dir, options()).unwrap();
    for id in [STREAM, UNIFORM] {
        store.create_stream(id, StreamOptions { durable: false }).unwrap();
        let updates = fixture_updates(id);
        let mut lower = 0;
        for upper in SEALS {
            let window = updates.iter().filter(|u| (lower..upper).contains(&u.2));
            store
                .write_bytes(id, window.map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
                .unwrap();
            store.seal(id, upper).unwrap();
            if lower == 0 {
                store.allow_compaction(id, 5).unwrap();
            }
            lower = upper;
        }
        store.compact(id).unwrap();
    }
}

#[test]
#[ignore = "writes a fixture when DDPERSIST_WRITE_FIXTURE names its directory (module docs)"]
fn write_fixture() {
    let Some(dir) = common::child_var("DDPERSIST_WRITE_FIXTURE") else {
        return;
    };
    let dir = Path::new(&dir);
    assert!(
        !dir.exists(),
        "{} exists: a fixture is never rewritten",
        dir.display()
    );
    write_store(dir);
}

/// Stream `id`'s updates consolidated, as a store reads them back after `allow_compaction(5)` (times below
/// 5 advanced to 5 in merged batches, so reads are compared as accumulations as of each time from 5 on).
fn model(id: &str) -> Vec<OwnedUpdate> {
    let mut m = Model::default();
    for (k, v, t, d) in fixture_updates(id) {
        m.write(&k, &v, t, d);
    }
    m.expected()
}

/// Copies fixture `name` into a fresh directory (an open takes its lock and may tidy it).
fn open_copy(name: &str, tmp: &tempfile::TempDir) -> Store {
    Store::open_with(common::copy_fixture(name, tmp), options()).unwrap()
}

/// Every read path returns the fixture's updates from `store`: the accumulation as of every time from
/// the since on through a snapshot and through DD cursors, each key's lookup as of three times, and the
/// full structural check of every batch file.
fn check_reads(store: &Store, id: &str) {
    let updates = &model(id)[..];
    let sealed = store.sealed(id).unwrap();
    assert_eq!(sealed.upper, SEALS[2]);
    for batch in &sealed.batches {
        batch.verify_deep().unwrap();
    }
    let snapshot = store.snapshot(id).unwrap().to_vec().unwrap();
    let mut trace = PersistedTrace::open(store, id).unwrap();
    let mut from_cursors = Vec::new();
    for batch in trace
        .batches_through(Antichain::from_elem(SEALS[2]).borrow())
        .unwrap()
    {
        let mut cursor = batch.cursor();
        for ((k, v), upds) in cursor.to_vec(&batch, |k| k.to_vec(), |v| v.to_vec()) {
            from_cursors.extend(upds.into_iter().map(|(t, d)| (k.clone(), v.clone(), t, d)));
        }
    }
    for t in 5..SEALS[2] {
        let expected = accumulate(updates, t);
        assert_eq!(accumulate(&snapshot, t), expected, "snapshot as of {t}");
        assert_eq!(accumulate(&from_cursors, t), expected, "DD cursors as of {t}");
    }
    let mut keys: Vec<&[u8]> = updates.iter().map(|u| &u.0[..]).collect();
    keys.dedup();
    for t in [5, 33, SEALS[2] - 1] {
        let expected = accumulate(updates, t);
        for key in &keys {
            let want: Vec<(Vec<u8>, i64)> = expected
                .range((key.to_vec(), Vec::new())..)
                .take_while(|((k, _), _)| k == key)
                .map(|((_, v), d)| (v.clone(), *d))
                .collect();
            assert_eq!(
                store.get_bytes(id, key, t).unwrap(),
                want,
                "key {key:?} as of {t}"
            );
        }
    }
}

/// Reads fixture `name`'s `streams` (every read path), then merges each stream's files into one written
/// in the current version and reads that again.
fn check_fixture(name: &str, streams: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let store = open_copy(name, &tmp);
    for id in streams {
        check_reads(&store, id);
    }

    // A merge reads the old files and writes the current version.
    let dir = tmp.path().join(name);
    let before = common::batch_files(&dir);
    drop(store);
    let options = Options {
        max_space_amplification_percent: Some(0),
        ..options()
    };
    let store = Store::open_with(&dir, options).unwrap();
    for id in streams {
        store.compact(id).unwrap();
        let sealed = store.sealed(id).unwrap();
        assert_eq!(sealed.batches.len(), 1, "one merge of every batch");
        let merged = dir.join(sealed.batches[0].name());
        assert!(!before.contains(&merged), "the merge wrote a new file");
        let version = u32::from_le_bytes(std::fs::read(&merged).unwrap()[8..12].try_into().unwrap());
        assert_eq!(version, ddpersist::batch::format::BATCH_VERSION.0);
        check_reads(&store, id);
    }
}

#[test]
fn batch_format_1_reads_and_merges() {
    check_fixture("batch_v1", &[STREAM]);
}

#[test]
fn batch_format_2_reads_and_merges() {
    check_fixture("batch_v2", &[STREAM, UNIFORM]);
}

#[test]
fn batch_format_3_reads_and_merges() {
    check_fixture("batch_v3", &[STREAM, UNIFORM]);
}
