//! The store's file system remounted read-only while the store runs (bare store and dataflow), then
//! read-write again; a store opened on a read-only file system; `inspect` on a read-only and on a full
//! file system.
//!
//! Expected: every failure names the read-only file system (`Read-only file system`, os error 30),
//! nothing panics (also not when the store is dropped while read-only), reads keep working, nothing
//! acknowledged is lost, and after the remount read-write a reopen serves everything and takes writes.

use crate::common::compare::Log;
use crate::df_full::{assert_frontier_held, options, restart_and_check, run_with, Kind, Row};
use crate::env::{Ext4, Tmpfs};
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

fn is_ro(e: &Error) -> bool {
    let s = e.to_string();
    // ext4's emergency read-only state fails some calls with EIO (its journal is aborted) rather than
    // EROFS: both are the file system's error, named with the file.
    s.contains("Read-only file system") || s.contains("os error 30") || s.contains("os error 5")
}

fn val(k: u64) -> Vec<u8> {
    vec![(k % 251) as u8; 100]
}

fn held(store: &Store) -> BTreeMap<u64, i64> {
    let mut out = BTreeMap::new();
    for (k, v, _t, d) in store.snapshot("s").unwrap().decode::<u64, Vec<u8>>().unwrap() {
        assert_eq!(v, val(k));
        *out.entry(k).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// Writes (durable) and seals on ext4, the kernel remounting it read-only part way (`errors=remount-ro`): later writes, seals,
/// logged seals, appends, `allow_compaction` and merges fail naming the read-only file system; reads work;
/// the store is dropped while read-only without a panic; after the remount read-write a reopen serves
/// every acknowledged write.
#[test]
fn read_only_remount_under_a_running_store() {
    let Some(fs) = Ext4::mount(64) else { return };
    let dir = fs.dir.join("store");
    let o = Options {
        merge_fan_in: 4,
        compaction_threads: 1,
        ..Options::default()
    };
    let store = Store::open_with(&dir, o.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store
        .create_stream("n", StreamOptions { durable: false })
        .unwrap();
    let mut want = BTreeMap::new();
    for t in 0..30u64 {
        let ups: Vec<_> = (t * 10..t * 10 + 10).map(|k| (k, val(k), t, 1i64)).collect();
        store.write("s", &ups).unwrap();
        for k in t * 10..t * 10 + 10 {
            want.insert(k, 1);
        }
        if t % 3 == 0 {
            store.seal("s", t + 1).unwrap();
        }
    }
    let acked_upper = store.upper("s").unwrap();
    fs.trigger_error();
    let outcomes: Vec<(&str, Result<(), Error>)> = vec![
        ("write", store.write("s", &[(5000u64, val(5000), 40, 1i64)])),
        ("seal", store.seal("s", 41).map(|_| ())),
        ("seal_logged", store.seal_logged("s", 42)),
        (
            "append",
            store.append("n", &[(1u64, val(1), 0, 1i64)], 0, 1).map(|_| ()),
        ),
        ("allow_compaction", store.allow_compaction("s", 10)),
        ("compact", store.compact("s").map(|_| ())),
        (
            "create_stream",
            store.create_stream("x", StreamOptions::default()),
        ),
    ];
    for (what, r) in &outcomes {
        eprintln!("read-only {what}: {r:?}");
        match r {
            Ok(()) if *what == "write" || *what == "seal" => panic!("{what} succeeded on a read-only fs"),
            Ok(()) => {}
            Err(e) => assert!(
                is_ro(e) || matches!(e, Error::Poisoned { .. }),
                "{what}: not the read-only fs's error: {e}"
            ),
        }
    }
    // Reads still work (the store may be poisoned; then say so clearly).
    match store.snapshot("s") {
        Ok(_) => assert!(held(&store).len() >= want.len()),
        Err(e) => assert!(is_ro(&e), "read on a read-only fs: {e}"),
    }
    std::thread::sleep(Duration::from_millis(100));
    eprintln!("background: {:?}", store.background_error());
    drop(store); // must not panic
                 // An open on the read-only fs fails clearly (or opens), never panics.
    match Store::open_with(&dir, o.clone()) {
        Ok(s) => {
            let got = held(&s);
            for k in want.keys() {
                assert!(got.contains_key(k), "lost {k} (open on the read-only fs)");
            }
        }
        Err(e) => {
            eprintln!("open on read-only fs: {e}");
            assert!(is_ro(&e), "open on a read-only fs: unclear error {e}");
        }
    }
    fs.recover();
    let store = Store::open_with(&dir, o).unwrap();
    let got = held(&store);
    let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    assert!(lost.is_empty(), "lost acknowledged {lost:?}");
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(k) && **k != 5000)
        .take(5)
        .collect();
    assert!(extra.is_empty(), "never written {extra:?}");
    assert!(store.upper("s").unwrap() >= acked_upper);
    let u = store.upper("s").unwrap().max(43);
    store.write("s", &[(6000u64, val(6000), u, 1i64)]).unwrap();
    store.seal("s", u + 1).unwrap();
}

fn inspect(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args)
        .output()
        .unwrap()
}

/// `inspect` (read-only by design) on a store whose file system is read-only, and on a full one:
/// `list`, `verify`, `stats`, `get` and `scan` exit 0 and `verify` finds nothing wrong.
#[test]
fn inspect_on_read_only_and_full_file_systems() {
    let Some(fs) = Tmpfs::mount(4) else { return };
    let dir = fs.0.join("store");
    {
        let store = Store::open(&dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..10u64 {
            let ups: Vec<_> = (t * 10..t * 10 + 10).map(|k| (k, val(k), t, 1i64)).collect();
            store.write("s", &ups).unwrap();
            if t < 8 {
                store.seal("s", t + 1).unwrap();
            }
        }
        store.seal_logged("s", 9).unwrap();
    }
    let d = dir.to_str().unwrap();
    let run_all = |what: &str| {
        for args in [
            vec!["list", d],
            vec!["verify", d],
            vec!["stats", d],
            vec!["get", d, "s", "0000000000000005", "--hex", "--as-of", "9"],
            vec!["scan", d, "s", "--limit", "5"],
        ] {
            let out = inspect(&args);
            assert!(
                out.status.success(),
                "{what}: inspect {args:?} exit {:?}: {}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let filler = crate::store_full::fill(&dir);
    run_all("full disk");
    std::fs::remove_file(filler).unwrap();
    fs.read_only(true);
    run_all("read-only");
    fs.read_only(false);
}

/// A persisted arrangement (`kind`, `peers` workers) whose store's file system goes read-only after
/// round 20: the operator reports the read-only file system and holds its frontier; after the remount
/// read-write a restart fed from `resume_at()` equals DD's answer.
fn ro_dataflow(kind: Kind, peers: usize) {
    let Some(fs) = Ext4::mount(64) else { return };
    let fs = Arc::new(fs);
    let dir = fs.dir.join("store");
    let log: Log<Row> = Default::default();
    let f = fs.clone();
    let first = run_with(
        &dir,
        peers,
        kind,
        400,
        &log,
        Arc::new(move |t| {
            if t == 20 {
                f.trigger_error()
            }
        }),
    )
    .unwrap();
    eprintln!("{kind:?} x{peers} read-only: {first:?}");
    let errors: Vec<&String> = first.iter().filter_map(|w| w.error.as_ref()).collect();
    assert!(
        first.iter().all(|w| w.stalled.is_none()),
        "a round stalled without an error: {first:?}"
    );
    assert!(!errors.is_empty(), "no error on a read-only fs: {first:?}");
    for e in &errors {
        assert!(
            e.contains("os error 30") || e.contains("os error 5"),
            "unclear error: {e}"
        );
    }
    let acked = first.iter().filter_map(|w| w.frontier).min().unwrap();
    assert!(
        acked >= 21,
        "frontier {acked} below the rounds completed before the remount"
    );
    assert_frontier_held(&first);
    fs.recover();
    restart_and_check(&dir, peers, kind, acked);
    let _ = options();
}

#[test]
fn read_only_remount_under_arrange_typed_2_workers() {
    ro_dataflow(Kind::ArrangeTyped, 2);
}

#[test]
fn read_only_remount_under_persist_1_worker() {
    ro_dataflow(Kind::Persist, 1);
}

#[test]
fn read_only_remount_under_upsert_2_workers() {
    ro_dataflow(Kind::Upsert, 2);
}

/// A closed store on a file system remounted read-only: an open fails with a clear error naming the
/// read-only file system (or opens and serves every acknowledged write), never panics; after the remount
/// read-write it opens and serves everything.
#[test]
fn open_on_a_read_only_file_system() {
    let Some(fs) = Tmpfs::mount(16) else { return };
    let dir = fs.0.join("store");
    let mut want = BTreeMap::new();
    {
        let store = Store::open(&dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..10u64 {
            let ups: Vec<_> = (t * 10..t * 10 + 10).map(|k| (k, val(k), t, 1i64)).collect();
            store.write("s", &ups).unwrap();
            for k in t * 10..t * 10 + 10 {
                want.insert(k, 1);
            }
            if t < 5 {
                store.seal("s", t + 1).unwrap();
            }
        }
    }
    fs.read_only(true);
    match Store::open(&dir) {
        Ok(s) => assert_eq!(held(&s), want, "open on the read-only fs"),
        Err(e) => {
            eprintln!("open on a read-only fs: {e}");
            assert!(is_ro(&e), "open on a read-only fs: unclear error {e}");
        }
    }
    fs.read_only(false);
    let store = Store::open(&dir).unwrap();
    assert_eq!(held(&store), want);
}
