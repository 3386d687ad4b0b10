//! Permission denied: a store directory another user cannot write (or read), opened by that user (a
//! child process run as `nobody` through `setpriv`; root bypasses permission bits), and `inspect` run as
//! that user; and a full disk under spills (a small memtable budget).
//!
//! Expected: a clear error naming the file and `Permission denied` (os error 13), no panic; `inspect`
//! works where it can read and exits 1 naming the file where it cannot.

use crate::common::child_var;
use crate::env::{is_disk_full, Tmpfs};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn setpriv_available() -> bool {
    Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn as_nobody(program: &std::path::Path, args: &[&str], envs: &[(&str, String)]) -> std::process::Output {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(program)
        .args(args);
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

/// A store (world-readable, not writable by others), opened by `nobody`: the open fails naming the
/// file and `Permission denied`. `inspect list` and `verify` as `nobody` work (read-only tool); with the
/// directory mode 0700 they exit 1 with a clear message.
#[test]
fn permission_denied_on_the_store_directory() {
    if !setpriv_available() {
        eprintln!("skipped: no setpriv");
        return;
    }
    // A directory `nobody` can reach.
    let base = tempfile::tempdir().unwrap();
    std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = base.path().join("store");
    {
        let store = Store::open(&dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(1u64, 2u64, 0, 1i64)]).unwrap();
        store.seal("s", 1).unwrap();
        store.write("s", &[(3u64, 4u64, 1, 1i64)]).unwrap();
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("wal"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let name = format!("{}::permission_child", module_path!().split_once("::").unwrap().1);
    let out = as_nobody(
        &exe,
        &["--exact", &name, "--ignored", "--nocapture", "--test-threads=1"],
        &[("DDPERSIST_ENV_DIR", dir.display().to_string())],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    eprintln!(
        "child as nobody: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if stdout.contains("Permission denied") && !stdout.contains("RESULT") {
        panic!("the child could not run as nobody");
    }
    assert!(out.status.success(), "the child failed (a panic?)");
    let line = stdout
        .lines()
        .find(|l| l.contains("RESULT"))
        .expect("child result");
    assert!(
        line.contains("Permission denied") && line.contains("store"),
        "open as another user: not a clear error: {line}"
    );
    let inspect = std::path::PathBuf::from(env!("CARGO_BIN_EXE_inspect"));
    let d = dir.to_str().unwrap();
    for args in [vec!["list", d], vec!["verify", d]] {
        let o = as_nobody(&inspect, &args, &[]);
        assert!(
            o.status.success(),
            "inspect {args:?} as nobody on a readable store: exit {:?}: {}{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for args in [vec!["list", d], vec!["verify", d]] {
        let o = as_nobody(&inspect, &args, &[]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        eprintln!("inspect {args:?} on a 0700 dir: {:?} {err}", o.status.code());
        assert_eq!(
            o.status.code(),
            Some(1),
            "inspect {args:?} on an unreadable store: {err}"
        );
        assert!(err.contains("Permission denied"), "unclear: {err}");
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Still intact for its owner.
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        store.snapshot("s").unwrap().decode::<u64, u64>().unwrap().len(),
        2
    );
}

#[test]
#[ignore]
fn permission_child() {
    let Some(dir) = child_var("DDPERSIST_ENV_DIR") else {
        return;
    };
    match Store::open(&dir) {
        Ok(_) => println!("RESULT opened"),
        Err(e) => println!("RESULT {e}"),
    }
}

/// Spills past a small memtable budget while the disk fills (a stream that is not durable): writes
/// succeed (a failed spill is a background error, or a failed spill commit poisons the store); after the
/// disk grows a seal holds every update written, each once (no update of a failed spill doubled).
#[test]
fn full_disk_under_spills_loses_and_doubles_nothing() {
    let Some(fs) = Tmpfs::mount(2) else { return };
    let dir = fs.0.join("store");
    let o = Options {
        memtable_budget_bytes: 64 * 1024,
        ..Options::default()
    };
    let store = Store::open_with(&dir, o).unwrap();
    store
        .create_stream("n", StreamOptions { durable: false })
        .unwrap();
    let mut want: BTreeMap<u64, i64> = BTreeMap::new();
    let mut errors = Vec::new();
    let mut full_at = None;
    for i in 0..5000u64 {
        if full_at.is_none() && store.background_error().is_some() {
            full_at = Some(i);
        }
        if full_at.is_some_and(|f| i > f + 100) {
            break;
        }
        let ups: Vec<_> = (i * 20..i * 20 + 20)
            .map(|k| (k, vec![7u8; 200], 5u64, 1i64))
            .collect();
        match store.write("n", &ups) {
            Ok(()) => {
                for k in i * 20..i * 20 + 20 {
                    want.insert(k, 1);
                }
            }
            Err(e) => errors.push(e),
        }
        if matches!(errors.last(), Some(ddpersist::Error::Poisoned { .. })) {
            break;
        }
    }
    eprintln!(
        "spills: write errors {:?}, background {:?}",
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        store.background_error()
    );
    for e in &errors {
        assert!(is_disk_full(e), "write: {e}");
    }
    assert!(full_at.is_some(), "2 MiB never filled");
    if let Some(b) = store.background_error() {
        assert!(b.contains("No space left on device"), "{b}");
    }
    fs.resize(128);
    if !errors.is_empty() {
        // A spill's manifest commit failed: the store is poisoned and must be reopened; a stream that
        // is not durable loses its unsealed updates then (documented). The reopen must work.
        drop(store);
        let store = Store::open(&dir).unwrap();
        assert!(store.snapshot("n").unwrap().to_vec().unwrap().is_empty());
        return;
    }
    store.seal("n", 10).unwrap();
    let mut got: BTreeMap<u64, i64> = BTreeMap::new();
    for (k, _, _, d) in store.snapshot("n").unwrap().decode::<u64, Vec<u8>>().unwrap() {
        *got.entry(k).or_insert(0) += d;
    }
    let wrong: Vec<_> = want
        .keys()
        .filter(|k| got.get(k) != Some(&1))
        .take(5)
        .map(|k| (k, got.get(k)))
        .collect();
    assert!(wrong.is_empty(), "written once, held: {wrong:?}");
    assert_eq!(got.len(), want.len(), "keys never written acknowledged");
    drop(store);
    let store = Store::open(&dir).unwrap();
    assert_eq!(
        store
            .snapshot("n")
            .unwrap()
            .decode::<u64, Vec<u8>>()
            .unwrap()
            .len(),
        want.len()
    );
}
