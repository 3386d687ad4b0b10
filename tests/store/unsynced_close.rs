//! `write_bytes_unsynced` and what makes it durable without a crash (adversarial round 9).
//!
//! The contract (`Store::write_bytes_unsynced`): the updates "are durable once `sync` with the returned
//! ticket (or a later one) has returned, or once any seal ... or a memtable spill has returned ... A crash
//! before that may lose them". So without a crash they are not lost, and a later ticket covers them.

use crate::common;

use common::copy_dir;

use ddpersist::{Store, StreamOptions};

fn count(store: &Store, id: &str) -> usize {
    store.snapshot(id).unwrap().to_vec().unwrap().len()
}

/// An unsynced write to a durable stream, then the store is closed cleanly (every handle dropped, no
/// crash) and opened again: the write must still be there.
#[test]
fn an_unsynced_write_survives_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let _ticket = store
            .write_bytes_unsynced("s", [(&b"k"[..], &b"v"[..], 3, 1)])
            .unwrap();
        assert_eq!(count(&store, "s"), 1);
        // No crash: the store is dropped (closed) normally.
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        count(&store, "s"),
        1,
        "an unsynced write to a durable stream was lost by a clean close of the store (no crash)"
    );
}

/// Two unsynced writes, the first to a durable stream, the second to a stream that is not durable; the
/// second's ticket is synced. "Durable once `sync` with the returned ticket (or a later one)": the first
/// write must survive a process crash now (simulated by copying the directory while the store is open).
#[test]
fn syncing_a_later_ticket_of_a_non_durable_stream_makes_the_earlier_write_durable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("d", StreamOptions::default()).unwrap();
    store
        .create_stream("n", StreamOptions { durable: false })
        .unwrap();
    let _first = store
        .write_bytes_unsynced("d", [(&b"k"[..], &b"v"[..], 3, 1)])
        .unwrap();
    let later = store
        .write_bytes_unsynced("n", [(&b"k"[..], &b"v"[..], 3, 1)])
        .unwrap();
    store.sync(later).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let _ = std::fs::remove_file(crashed.path().join("LOCK"));
    let reopened = Store::open(crashed.path()).unwrap();
    assert_eq!(
        count(&reopened, "d"),
        1,
        "sync of a later ticket returned, yet the earlier unsynced write is not on disk"
    );
    drop(store);
}

/// Control: syncing the write's own ticket makes it survive the same simulated crash (so the copy is a
/// faithful crash image).
#[test]
fn syncing_its_own_ticket_makes_an_unsynced_write_survive_a_crash_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("d", StreamOptions::default()).unwrap();
    let ticket = store
        .write_bytes_unsynced("d", [(&b"k"[..], &b"v"[..], 3, 1)])
        .unwrap();
    store.sync(ticket).unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crashed.path());
    let _ = std::fs::remove_file(crashed.path().join("LOCK"));
    let reopened = Store::open(crashed.path()).unwrap();
    assert_eq!(count(&reopened, "d"), 1);
    drop(store);
}

/// "Durable once ... any `seal` (of any stream) or a memtable spill has returned: both sync the WAL up to
/// every earlier write first." Each call below follows one unsynced write to durable stream `d` (at time
/// 10) and must leave it in a crash image taken right after the call returns.
#[test]
fn any_seal_or_append_makes_an_earlier_unsynced_write_durable() {
    type Call = fn(&Store);
    let calls: Vec<(&str, Call)> = vec![
        ("seal of another stream with data", |s| {
            s.write_bytes("o", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
            s.seal("o", 1).unwrap();
        }),
        ("seal of another stream without data", |s| {
            s.seal("o", 5).unwrap();
        }),
        ("seal of the same stream below the write", |s| {
            s.seal("d", 3).unwrap();
        }),
        ("seal_with of another stream, since only", |s| {
            s.seal_with(
                "o",
                6,
                ddpersist::SealOptions {
                    finished: true,
                    since: Some(2),
                },
            )
            .unwrap();
        }),
        ("seal_logged of another stream", |s| {
            s.seal_logged("o", 7).unwrap();
        }),
        ("append to another stream", |s| {
            s.append_bytes("o", [(&b"k"[..], &b"w"[..], 0u64, 1i64)], 0, 2)
                .unwrap();
        }),
    ];
    for (what, call) in calls {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("d", StreamOptions::default()).unwrap();
        store.create_stream("o", StreamOptions::default()).unwrap();
        let _ticket = store
            .write_bytes_unsynced("d", [(&b"k"[..], &b"v"[..], 10, 1)])
            .unwrap();
        call(&store);
        let crashed = tempfile::tempdir().unwrap();
        copy_dir(dir.path(), crashed.path());
        let _ = std::fs::remove_file(crashed.path().join("LOCK"));
        let reopened = Store::open(crashed.path()).unwrap();
        assert_eq!(
            count(&reopened, "d"),
            1,
            "{what}: the earlier unsynced write is not durable"
        );
        drop(store);
    }
}
