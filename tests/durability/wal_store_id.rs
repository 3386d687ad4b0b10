//! WAL version 7 (a segment header's checksum seeded with the store's id), from a review: a store written
//! through a `Log` wrapper that does not pass `bind_store` through (its segments checksummed plain, as
//! recording no id) opens with `Store::open`; another store's header-only segment is refused, not removed
//! as a torn creation.

use crate::common;

use common::wal_segments;
use ddpersist::blob::DirBlob;
use ddpersist::wal::{FileLog, Log, Lsn, ReplayReport, WalRecovery};
use ddpersist::{Options, Store, StreamOptions};
use std::fs;
use std::sync::Arc;

/// A `Log` wrapper written against the previous release (as `benches/compaction/counting.rs`'s `CountingLog`, or
/// the fuzzer's `LateLog`): it forwards every method it knows of. `bind_store` has a no-op default, so it
/// compiles unchanged and silently drops the binding.
struct Wrapper(FileLog);

impl Log for Wrapper {
    fn replay(
        &self,
        f: &mut dyn FnMut(Lsn, &[u8]) -> ddpersist::Result<()>,
    ) -> ddpersist::Result<ReplayReport> {
        self.0.replay(f)
    }
    fn append(&self, payload: &[u8]) -> ddpersist::Result<(Lsn, Lsn)> {
        self.0.append(payload)
    }
    fn sync(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.0.sync(lsn)
    }
    fn release_before(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.0.release_before(lsn)
    }
    fn is_durable(&self) -> bool {
        self.0.is_durable()
    }
    fn record_format(&self) -> ddpersist::wal::record::RecordFormat {
        self.0.record_format()
    }
    fn takes_seal_records(&self) -> bool {
        self.0.takes_seal_records()
    }
    fn next_lsn(&self) -> Option<Lsn> {
        self.0.next_lsn()
    }
}

/// A store written through a wrapped `FileLog` (`Store::open_on`, same directory layout as `Store::open`)
/// gets a random `store_id` in its manifest, but its segments' headers are seeded with 0 (the unbound
/// `FileLog`'s id). `Store::open` of the same directory then refuses the store's own WAL as "a WAL
/// segment of another store".
#[test]
fn a_store_written_through_a_log_wrapper_opens_with_store_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let options = Options::default();
        let blob = Arc::new(DirBlob::open(dir).unwrap());
        let log = FileLog::open(dir.join("wal"), options.wal_segment_bytes, WalRecovery::Strict).unwrap();
        let store = Store::open_on(blob, Arc::new(Wrapper(log)), options).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(1u64, 1u64, 5, 1)]).unwrap(); // acknowledged (synced WAL)
    }
    let opened = Store::open(dir).map(|s| s.snapshot("s").unwrap().decode::<u64, u64>().unwrap());
    assert!(
        matches!(&opened, Ok(v) if v == &vec![(1u64, 1u64, 5u64, 1i64)]),
        "Store::open of a store written through a Log wrapper: {opened:?}"
    );
}

/// As `damage_strays::a_wal_segment_of_another_store_is_refused_not_replayed`, but the other store's
/// segment holds no record yet (a header only: a fresh store, or the fresh segment after a rollover).
/// `scan.rs`'s `bad_header_only` takes a whole header that fails only the seeded checksum for a torn
/// creation and removes it: the open succeeds, this store's acknowledged write is gone, and nothing says
/// the segment was another store's.
#[test]
fn a_header_only_wal_segment_of_another_store_is_refused_not_removed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    {
        let store = Store::open(a.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(1u64, 1u64, 5, 1)]).unwrap(); // acknowledged
    }
    drop(Store::open(b.path()).unwrap());
    let (sa, sb) = (wal_segments(a.path()), wal_segments(b.path()));
    assert_eq!(sa.len(), 1);
    assert_eq!(sa[0].file_name(), sb[0].file_name());
    assert_eq!(
        fs::metadata(&sb[0]).unwrap().len(),
        32,
        "b's segment is a header only"
    );
    fs::copy(&sb[0], &sa[0]).unwrap();
    let opened = Store::open(a.path()).map(|s| {
        (
            s.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
            s.recovery_report().torn_tail.clone(),
        )
    });
    assert!(
        matches!(&opened, Err(ddpersist::Error::Corrupt { file, .. }) if file.contains("wal")),
        "expected Error::Corrupt naming the other store's segment, got {opened:?}"
    );
}
