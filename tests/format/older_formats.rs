//! Stores written by older releases open and keep working: a WAL segment of version 3 holding fixed-width
//! records (tag 1, as every release before WAL version 4 wrote) replays, the store goes on appending tag 1
//! records to it (its readers know no other), and varint records (tag 2) go only to the version 4 segments
//! that follow it (FORMAT.md §4).

use crate::common;

use common::{wal_segments, Model};
use ddpersist::wal::record::{
    decode, RecordEncoder, RecordFormat, TAG_SEAL, TAG_UPDATES, TAG_VARINT_UPDATES,
};
use ddpersist::wal::WalRecovery;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::path::Path;

/// A WAL segment of format `version` starting at LSN 0 holding `payloads`, one record each.
fn segment(version: u32, payloads: &[Vec<u8>]) -> Vec<u8> {
    let payloads: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
    common::wal_segment_bytes(version, 0, &payloads)
}

/// A record of `updates` to stream number 0 in `format`.
fn record(format: RecordFormat, updates: &[(Vec<u8>, Vec<u8>, u64, i64)]) -> Vec<u8> {
    let mut payload = Vec::new();
    let mut encoder = RecordEncoder::begin(&mut payload, 0, format);
    for (k, v, t, d) in updates {
        encoder.push(&mut payload, (k, v, *t, *d));
    }
    encoder.finish(&mut payload);
    payload
}

/// A store with one durable stream "s" (number 0) whose WAL is only `segment`, named `0.wal`.
fn store_with_segment(dir: &Path, segment: Vec<u8>) {
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    for path in wal_segments(dir) {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::write(dir.join("wal").join(format!("{:020}.wal", 0)), segment).unwrap();
}

/// Per segment file, oldest first: its format version and the tags of its records.
fn segment_tags(dir: &Path) -> Vec<(u32, Vec<u8>)> {
    let mut records = Vec::new();
    ddpersist::wal::scan(&dir.join("wal"), WalRecovery::Strict, &mut |lsn, payload| {
        decode(payload, "record")?;
        records.push((lsn, payload[0]));
        Ok(())
    })
    .unwrap();
    let segments = wal_segments(dir);
    let firsts: Vec<u64> = segments
        .iter()
        .map(|p| p.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    segments
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let bytes = std::fs::read(path).unwrap();
            let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
            let end = firsts.get(i + 1).copied().unwrap_or(u64::MAX);
            let tags = records
                .iter()
                .filter(|(lsn, _)| (firsts[i]..end).contains(lsn))
                .map(|&(_, tag)| tag)
                .collect();
            (version, tags)
        })
        .collect()
}

fn updates(from: u64, n: u64, time: u64) -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
    (from..from + n)
        .map(|i| {
            (
                format!("key{i:04}").into_bytes(),
                vec![b'v'; 100],
                time + i % 3,
                1 + (i % 2) as i64,
            )
        })
        .collect()
}

#[test]
fn fixed_width_records_of_an_older_release_replay_and_new_ones_follow_the_segment_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let old = updates(0, 20, 5);
    for (k, v, t, d) in &old {
        model.write(k, v, *t, *d);
    }
    store_with_segment(dir.path(), segment(3, &[record(RecordFormat::Fixed, &old)]));
    // Segments roll over past 8 KiB.
    let options = Options {
        wal_segment_bytes: 8 << 10,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    assert_eq!(store.recovery_report().updates_replayed, 20);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // Writes after the open go to the version 3 segment as tag 1, until it rolls over; then as tag 2.
    for round in 0..6 {
        let new = updates(100 * (round + 1), 20, 7);
        for (k, v, t, d) in &new {
            model.write(k, v, *t, *d);
        }
        store
            .write_bytes("s", new.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
    }
    drop(store);
    let tags = segment_tags(dir.path());
    assert!(tags.len() >= 2, "the version 3 segment rolled over: {tags:?}");
    assert_eq!(tags[0].0, 3);
    assert!(tags[0].1.iter().all(|&t| t == TAG_UPDATES), "{tags:?}");
    assert!(
        tags[0].1.len() >= 2,
        "appends continued in the old segment: {tags:?}"
    );
    for (version, segment_tags) in &tags[1..] {
        assert_eq!(*version, ddpersist::wal::WAL_VERSION.0);
        assert!(segment_tags.iter().all(|&t| t == TAG_VARINT_UPDATES), "{tags:?}");
    }
    assert!(tags[1..].iter().any(|(_, t)| !t.is_empty()), "{tags:?}");
    // Both kinds replay.
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.recovery_report().updates_replayed, 140);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_new_store_writes_varint_and_seal_records_into_current_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let new = updates(0, 50, 1);
    store
        .write_bytes("s", new.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
        .unwrap();
    drop(store);
    let current = ddpersist::wal::WAL_VERSION.0;
    assert_eq!(
        segment_tags(dir.path()),
        vec![(current, vec![TAG_VARINT_UPDATES])]
    );
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().updates_replayed, 50);
    // A logged seal is a tag 3 record (version 5 on).
    let options = ddpersist::Options {
        compaction_threads: 0,
        ..Default::default()
    };
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    store.seal_logged("s", 2).unwrap();
    drop(store);
    let tags = segment_tags(dir.path());
    assert!(tags.iter().any(|(_, t)| t.contains(&TAG_SEAL)), "{tags:?}");
}

#[test]
fn a_varint_record_in_a_version_3_segment_is_read() {
    // No release writes one (a version 3 segment gets tag 1 only), but the reader does not depend on it.
    let dir = tempfile::tempdir().unwrap();
    let new = updates(0, 5, 2);
    store_with_segment(dir.path(), segment(3, &[record(RecordFormat::Varint, &new)]));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.recovery_report().updates_replayed, 5);
}

/// A newer release's segment of a header only (what a rollover leaves before its first record) is refused
/// too, and left in place: only a damaged header (a torn creation) is removed.
#[test]
fn a_wal_segment_of_a_newer_version_holding_only_its_header_is_refused_not_removed() {
    let dir = tempfile::tempdir().unwrap();
    let newer = ddpersist::wal::WAL_VERSION.0 + 1;
    store_with_segment(dir.path(), segment(newer, &[]));
    let path = dir.path().join("wal").join(format!("{:020}.wal", 0));
    match Store::open(dir.path()) {
        Err(Error::VersionTooNew { found, .. }) if found == newer => {}
        other => panic!("expected VersionTooNew, got {:?}", other.err()),
    }
    assert!(path.exists(), "the newer segment was removed");
}

#[test]
fn a_wal_segment_of_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let current = ddpersist::wal::WAL_VERSION.0;
    store_with_segment(
        dir.path(),
        segment(current + 1, &[record(RecordFormat::Varint, &updates(0, 1, 1))]),
    );
    match Store::open(dir.path()) {
        Err(Error::VersionTooNew {
            found,
            supported,
            file,
        }) if found == current + 1 && supported == current => {
            assert!(file.ends_with(".wal"), "{file}")
        }
        other => panic!("expected VersionTooNew, got {:?}", other.err()),
    }
}
