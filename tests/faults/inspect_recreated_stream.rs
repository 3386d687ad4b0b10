//! `inspect scan` and `inspect get` on a store where a durable stream was dropped with unsealed updates
//! still in the WAL and created again under the same id: they must show what the store itself reads back
//! (the new stream's updates only), as `Store::open` + `snapshot` / `get` do.

use ddpersist::{Store, StreamOptions};
use std::process::Command;

fn inspect(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args)
        .output()
        .unwrap();
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), s(&out.stdout), s(&out.stderr))
}

#[test]
fn a_recreated_stream_shows_only_its_own_updates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let store = Store::open(dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store
            .write("s", &[("k".to_string(), "old".to_string(), 5, 1)])
            .unwrap();
        store.seal("s", 2).unwrap();
        store
            .write("s", &[("k".to_string(), "old2".to_string(), 6, 1)])
            .unwrap();
        store.drop_stream("s").unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store
            .write("s", &[("k".to_string(), "new".to_string(), 7, 1)])
            .unwrap();
    }
    // The store reads back the new stream's update only.
    let store = Store::open(dir).unwrap();
    let snap: Vec<(String, String, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(snap, vec![("k".to_string(), "new".to_string(), 7, 1)]);
    drop(store);
    let d = dir.to_str().unwrap();
    let (code, out, err) = inspect(&[
        "scan", d, "s", "--key-as", "string", "--val-as", "string", "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("new") && !out.contains("old"), "scan: {out}");
    let (code, out, err) = inspect(&[
        "get", d, "s", "k", "--as-of", "10", "--key-as", "string", "--val-as", "string", "--json",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("new") && !out.contains("old"), "get: {out}");
    let (code, out, err) = inspect(&["verify", d]);
    assert_eq!(code, Some(0), "verify: {out}\n{err}");
    let (code, out, err) = inspect(&["stats", d, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("\"live_updates\":1"), "stats: {out}");
}
