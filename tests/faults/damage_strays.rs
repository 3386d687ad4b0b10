//! Damage and strays in a store directory between runs, beyond FORMAT.md §6's documented
//! non-detections: each must give a clear error naming the file, or be handled, never a panic or wrong
//! data.

use crate::common;

use common::{batch_files, wal_segments};
use ddpersist::Error;
use ddpersist::{Store, StreamOptions};
use std::fs;

/// A stray file named like a batch file with the greatest file number (a copy, a file of another store or
/// tool) is removed at open as an orphan. Open numbered new files past it (found by an adversarial
/// test): `next_file_no` became `u64::MAX` and the next seal's number overflowed — a panic in debug
/// builds; in release builds the number wrapped to 0 and the seal after it truncated and rewrote the live
/// batch file 0 (`O_TRUNC`): wrong data served at once, and the next open failed on the store's own
/// manifest. Now the removals are made durable and new files numbered past the named ones only, a new
/// batch file is created `O_EXCL`, and a used-up numbering is an error.
#[test]
fn a_stray_batch_file_of_the_greatest_number_does_not_break_later_seals() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let store = Store::open(dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(1u64, 1u64, 0, 1)]).unwrap();
        store.seal("s", 1).unwrap();
    }
    let first = batch_files(dir)[0].clone();
    fs::copy(&first, dir.join("ffffffffffffffff.batch")).unwrap();
    let store = Store::open(dir).unwrap();
    let mut expected = vec![(1u64, 1u64, 0u64, 1i64)];
    for t in 1..4u64 {
        store.write("s", &[(t + 1, 1u64, t, 1)]).unwrap();
        expected.push((t + 1, 1, t, 1));
        let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.seal("s", t + 1)));
        let sealed = sealed.unwrap_or_else(|p| {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or(p.downcast_ref::<&str>().map(|s| s.to_string()));
            panic!("seal to {} panicked: {msg:?}", t + 1)
        });
        sealed.unwrap();
        assert_eq!(
            store.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
            expected
        );
    }
    drop(store);
    let store = Store::open(dir).unwrap();
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
        expected
    );
}

/// Two fresh stores' first WAL segments have the same name (`00000000000000000000.wal`). Another store's
/// segment put in a store's `wal/` (a restore or copy mix-up) replayed its records into this store's
/// streams by stream number (found by an adversarial test: this store's acknowledged write gone, the
/// other's served, no error from the open nor from `inspect verify`). From WAL version 7 a segment's header
/// checksum is seeded with its store's id (the manifest's `store_id`): the open and `inspect verify` refuse
/// it as corruption naming the segment.
#[test]
fn a_wal_segment_of_another_store_is_refused_not_replayed() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    // durable: acknowledged through the WAL
    common::write_one_each(&[(a.path(), 1), (b.path(), 2)]);
    let (sa, sb) = (wal_segments(a.path()), wal_segments(b.path()));
    assert_eq!(sa.len(), 1);
    assert_eq!(sa[0].file_name(), sb[0].file_name());
    fs::copy(&sb[0], &sa[0]).unwrap();

    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg("verify")
        .arg(a.path())
        .output()
        .unwrap();
    let opened = Store::open(a.path()).map(|s| s.snapshot("s").unwrap().decode::<u64, u64>().unwrap());
    let refused = matches!(&opened, Err(Error::Corrupt { file, .. }) if file.contains("wal"));
    let verify_failed = verify.status.code() == Some(1);
    assert!(
        refused && verify_failed,
        "expected Error::Corrupt naming the foreign WAL segment, got {opened:?} (this store wrote \
         (1, 1, 5, 1)); inspect verify exited {:?}: {}",
        verify.status.code(),
        String::from_utf8_lossy(&verify.stdout)
    );
}
