//! WAL segments lost from the front of the log between runs (adversarial round 15: deleting the oldest
//! segment of a log holding acknowledged durable updates opened without an error and served the rest).
//! The log records its start (`wal/START`, FORMAT.md §4): an open whose oldest segment starts after it is
//! `Error::Corrupt` naming the missing segment; a gap anywhere later was already one. A log whose old
//! segments were *released* (their records sealed) opens as before, and a log of an older release (no
//! start file) is given one at its first open.

use crate::common;

use ddpersist::{Error, Options, Store, StreamOptions};
use std::path::Path;

/// Segments of 4 KiB: 300 one-row writes fill several.
fn options() -> Options {
    Options {
        wal_segment_bytes: 4096,
        ..Options::default()
    }
}

/// A new store in `dir` holding `rows` acknowledged durable updates of stream "s", none sealed.
fn write_unsealed(dir: &Path, rows: u64) {
    let store = Store::open_with(dir, options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    for t in 0..rows {
        store.write("s", &[(format!("k{t:05}"), t, t, 1i64)]).unwrap();
    }
}

fn rows(dir: &Path) -> ddpersist::Result<usize> {
    let store = Store::open_with(dir, options())?;
    Ok(store.snapshot("s")?.decode::<String, u64>()?.len())
}

/// The open of `dir` fails with `Error::Corrupt` naming a file of the WAL directory, and saying `says`
/// (`what` says which loss).
fn assert_refused(dir: &Path, says: &str, what: &str) {
    match rows(dir) {
        Err(Error::Corrupt { file, detail, .. }) => {
            assert!(
                file.contains("wal") && detail.contains(says),
                "{what}: {file}: {detail}"
            )
        }
        other => panic!("{what}: expected Error::Corrupt, got {other:?}"),
    }
}

#[test]
fn a_segment_lost_from_the_front_middle_or_all_of_the_log_is_an_error() {
    for victims in [vec![0usize], vec![0, 1], vec![1], vec![2]] {
        let dir = tempfile::tempdir().unwrap();
        write_unsealed(dir.path(), 300);
        let segs = common::wal_segments(dir.path());
        assert!(segs.len() >= 4, "{} segments", segs.len());
        for &v in &victims {
            std::fs::remove_file(&segs[v]).unwrap();
        }
        // Lost from the front: the start file's check; from the middle: the LSN gap's.
        let says = if victims[0] == 0 {
            "WAL segment missing"
        } else {
            "LSN gap"
        };
        let what = format!("segments {victims:?} of {} deleted", segs.len());
        assert_refused(dir.path(), says, &what);
        // The refusal changed nothing: still refused; and `inspect verify` says so too.
        assert_refused(dir.path(), says, "again");
        let verify = std::process::Command::new(env!("CARGO_BIN_EXE_inspect"))
            .arg("verify")
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&verify.stderr);
        assert!(
            !verify.status.success() && stderr.contains(says),
            "verify: {stderr}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    write_unsealed(dir.path(), 300);
    for seg in common::wal_segments(dir.path()) {
        std::fs::remove_file(seg).unwrap();
    }
    assert_refused(
        dir.path(),
        "WAL segment missing",
        "every segment deleted, the start file kept",
    );
    // A point-in-time open accepts the loss (nothing is left to replay), and the log is whole again.
    let point_in_time = Options {
        wal_recovery: ddpersist::wal::WalRecovery::PointInTime,
        ..options()
    };
    let store = Store::open_with(dir.path(), point_in_time).unwrap();
    assert_eq!(
        store
            .snapshot("s")
            .unwrap()
            .decode::<String, u64>()
            .unwrap()
            .len(),
        0
    );
    drop(store);
    assert_eq!(rows(dir.path()).unwrap(), 0);
}

/// Segments released by seals go without a trace the open could mistake for a loss: many releases, a
/// reopen after each round, every row there.
#[test]
fn released_segments_are_not_taken_for_lost_ones() {
    let dir = tempfile::tempdir().unwrap();
    let mut written = 0u64;
    for round in 0..5u64 {
        let store = Store::open_with(dir.path(), options()).unwrap();
        if round == 0 {
            store.create_stream("s", StreamOptions::default()).unwrap();
        }
        for _ in 0..200 {
            store
                .write("s", &[(format!("k{written:05}"), written, written, 1i64)])
                .unwrap();
            written += 1;
            if written.is_multiple_of(20) {
                store.seal("s", written).unwrap();
            }
        }
        drop(store);
        assert_eq!(rows(dir.path()).unwrap(), written as usize, "round {round}");
    }
    // The releases left the log far past its first segment.
    let oldest = common::wal_segments(dir.path())[0].clone();
    assert_ne!(oldest.file_name().unwrap(), "00000000000000000000.wal");
}

/// A log written before the start file existed (here: the file removed) opens as before and is given
/// one, from its oldest segment; from then on losing that segment is caught.
#[test]
fn a_log_without_a_start_file_is_given_one() {
    let dir = tempfile::tempdir().unwrap();
    write_unsealed(dir.path(), 300);
    let start = dir.path().join("wal").join("START");
    std::fs::remove_file(&start).unwrap();
    assert_eq!(rows(dir.path()).unwrap(), 300);
    assert!(start.exists());
    std::fs::remove_file(&common::wal_segments(dir.path())[0]).unwrap();
    let what = "the oldest segment deleted after the start file was written";
    assert_refused(dir.path(), "WAL segment missing", what);
}
