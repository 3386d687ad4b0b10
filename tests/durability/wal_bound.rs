//! The WAL bound (`Options::max_wal_bytes`, issue 16): one stalled durable stream with an old unsealed
//! update does not pin the log while another stream writes and seals megabytes; the log stays about the
//! bound, and a reopen holds every acknowledged update and replays only what the bound leaves.

use crate::common;

use common::wal_segments;
use ddpersist::{Options, Store, StreamOptions};

const SEGMENT_BYTES: u64 = 64 << 10;

fn options(bound: Option<u64>) -> Options {
    Options {
        wal_segment_bytes: SEGMENT_BYTES,
        max_wal_bytes: bound,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// Writes one old update to `stalled` (never sealed), then 2,000 writes of 1 KiB to `busy`, sealing it
/// every 20 writes; returns the most WAL segments on disk at any seal.
fn workload(store: &Store, dir: &std::path::Path) -> usize {
    store.create_stream("stalled", StreamOptions::default()).unwrap();
    store.create_stream("busy", StreamOptions::default()).unwrap();
    store
        .write("stalled", &[("old".to_string(), 1u64, 0, 1)])
        .unwrap();
    let val = vec![7u8; 1024];
    let mut most = 0;
    for i in 0..2000u64 {
        store.write("busy", &[(i, val.clone(), i / 20, 1)]).unwrap();
        if i % 20 == 19 {
            store.seal("busy", i / 20 + 1).unwrap();
            most = most.max(wal_segments(dir).len());
        }
    }
    most
}

#[test]
fn a_stalled_stream_does_not_pin_the_wal() {
    // Without a bound the stalled update keeps every segment since it was written: ~2 MB, ~32 segments.
    let dir = tempfile::tempdir().unwrap();
    let unbounded = workload(&Store::open_with(dir.path(), options(None)).unwrap(), dir.path());
    assert!(unbounded >= 25, "{unbounded} segments without a bound");

    let dir = tempfile::tempdir().unwrap();
    let bound = 256 << 10;
    {
        let store = Store::open_with(dir.path(), options(Some(bound))).unwrap();
        let most = workload(&store, dir.path());
        // The bound, plus the active segment and one being filled past it.
        let limit = (bound / SEGMENT_BYTES) as usize + 3;
        assert!(most <= limit, "{most} segments with a bound of {limit}");
        // The stalled update moved to a spilled run; nothing was lost.
        assert!(!store.snapshot("stalled").unwrap().spills().is_empty());
    }
    let store = Store::open_with(dir.path(), options(Some(bound))).unwrap();
    let replayed = store.recovery_report().updates_replayed;
    assert!(replayed < 300, "a reopen replayed {replayed} updates");
    let stalled: Vec<(String, u64, u64, i64)> = store.snapshot("stalled").unwrap().decode().unwrap();
    assert_eq!(stalled, vec![("old".to_string(), 1, 0, 1)]);
    let busy: Vec<(u64, Vec<u8>, u64, i64)> = store.snapshot("busy").unwrap().decode().unwrap();
    assert_eq!(busy.len(), 2000);
}
