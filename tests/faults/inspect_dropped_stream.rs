//! From an adversarial round: `inspect verify` on a store where a durable stream was dropped (`Store::drop_stream`)
//! while its WAL records are still in the log. The library skips those records at replay (a stream
//! number below the manifest's next one that names no stream was dropped: `store/open.rs`), so the
//! store is healthy and reopens; `inspect verify` must not call it corrupt.

use ddpersist::{Store, StreamOptions};
use std::process::Command;

fn verify(dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(["verify", dir.to_str().unwrap()])
        .output()
        .unwrap()
}

/// A store in `dir` with durable streams "a" and "b", one update written to each, and "a" dropped: its
/// WAL record is still in the log.
fn with_a_dropped_stream(dir: &std::path::Path) -> Store {
    let store = Store::open(dir).unwrap();
    store.create_stream("a", StreamOptions { durable: true }).unwrap();
    store.create_stream("b", StreamOptions { durable: true }).unwrap();
    store.write("a", &[(1u64, 1u64, 0, 1)]).unwrap();
    store.write("b", &[(2u64, 2u64, 0, 1)]).unwrap();
    store.drop_stream("a").unwrap();
    store
}

#[test]
fn verify_accepts_the_wal_records_of_a_dropped_stream() {
    let dir = tempfile::tempdir().unwrap();
    let live;
    {
        let _live = with_a_dropped_stream(dir.path()); // open while verify reads it
        live = verify(dir.path());
    }
    // Closed: still the same log; the store itself reopens fine.
    let closed = verify(dir.path());
    let reopened = Store::open(dir.path()).map(|s| s.snapshot("b").unwrap().to_vec().unwrap().len());
    assert_eq!(reopened.unwrap(), 1, "the store reopens with b's update");
    assert!(
        live.status.success() && closed.status.success(),
        "live store: inspect verify: {}{}\nclosed store: inspect verify: {}{}",
        String::from_utf8_lossy(&live.stdout),
        String::from_utf8_lossy(&live.stderr),
        String::from_utf8_lossy(&closed.stdout),
        String::from_utf8_lossy(&closed.stderr)
    );
}

/// The read commands over the same store: `scan` and `get` of the stream that is left, `list`, `stats`.
#[test]
fn read_commands_accept_the_wal_records_of_a_dropped_stream() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = with_a_dropped_stream(dir.path());
        // Created again under the same id: a new stream number.
        store.create_stream("a", StreamOptions { durable: true }).unwrap();
        store.write("a", &[(3u64, 3u64, 0, 1)]).unwrap();
    }
    let d = dir.path().to_str().unwrap();
    let mut failures = Vec::new();
    for args in [
        vec!["scan", d, "b"],
        vec!["scan", d, "a"],
        vec!["list", d],
        vec!["stats", d],
        vec!["get", d, "a", "0000000000000003", "--hex", "--as-of", "0"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
            .args(&args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("inspect {args:?}: {:?}\n{text}", out.status);
        if !out.status.success() {
            failures.push(format!("inspect {args:?}: {text}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
