//! A full disk under a bare store beyond `tests/faults/disk_full.rs`: at open (recovery's writes), during
//! logged seals and their background flush, during `append`, during merges after `allow_compaction`.
//! Expected throughout: no panic, every failure the full disk's (naming `No space left on device`),
//! nothing acknowledged lost, and a store that opens and works once there is room.

use crate::env::{is_disk_full, Tmpfs};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Fills the file system holding `dir` with a file `dir/../filler`, until `ENOSPC`.
pub fn fill(dir: &Path) -> std::path::PathBuf {
    let path = dir.parent().unwrap().join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![7u8; 4096];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(28), "filler: {e}");
                break;
            }
        }
    }
    let _ = f.sync_all();
    path
}

fn val(k: u64) -> Vec<u8> {
    vec![(k % 251) as u8; 200]
}

/// Updates of stream `s` as `key -> diff` (vals checked).
fn held(store: &Store, id: &str) -> BTreeMap<u64, i64> {
    let mut out = BTreeMap::new();
    for (k, v, _t, d) in store.snapshot(id).unwrap().decode::<u64, Vec<u8>>().unwrap() {
        assert_eq!(v, val(k), "val of {k}");
        *out.entry(k).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

fn opts() -> Options {
    Options {
        merge_fan_in: 4,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// A store with edits left for the open to fold (a few seals: fewer than 64 edits), acknowledged
/// unsealed durable writes in the WAL, and a logged seal whose batch the open must write; then the disk
/// is filled and the store opened: it opens (serving everything) or fails with the full disk's error,
/// never panics; after the filler is removed it opens and serves every acknowledged update.
#[test]
fn full_disk_at_open_loses_nothing() {
    let Some(fs) = Tmpfs::mount(4) else { return };
    let dir = fs.0.join("store");
    let mut want = BTreeMap::new();
    {
        let store = Store::open_with(
            &dir,
            Options {
                compaction_threads: 0,
                ..opts()
            },
        )
        .unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..10u64 {
            let ups: Vec<_> = (t * 50..t * 50 + 50).map(|k| (k, val(k), t, 1i64)).collect();
            store.write("s", &ups).unwrap();
            for k in t * 50..t * 50 + 50 {
                want.insert(k, 1);
            }
            if t < 6 {
                store.seal("s", t + 1).unwrap();
            } else if t == 7 {
                store.seal_logged("s", t + 1).unwrap();
            }
        }
        // Drop without the logged seal's flush having run (no flush thread: it runs inline, so
        // write one more logged seal after it too).
    }
    let filler = fill(&dir);
    for attempt in 0..3 {
        match Store::open_with(&dir, opts()) {
            Ok(store) => {
                let got = held(&store, "s");
                assert_eq!(got, want, "open {attempt} on the full disk served other data");
                eprintln!(
                    "open {attempt} on full disk ok; background error {:?}",
                    store.background_error()
                );
            }
            Err(e) => {
                eprintln!("open {attempt} on full disk: {e}");
                assert!(is_disk_full(&e), "open on the full disk: {e}");
            }
        }
    }
    std::fs::remove_file(&filler).unwrap();
    let store = Store::open_with(&dir, opts()).unwrap();
    assert_eq!(held(&store, "s"), want, "after the disk was freed");
    assert!(store.upper("s").unwrap() >= 8);
    store.write("s", &[(9999u64, val(9999), 20, 1i64)]).unwrap();
    store.seal("s", 21).unwrap();
}

/// Logged seals until the disk fills: each `seal_logged` that returned is durable (its record synced),
/// so after growing the tmpfs a reopen has an upper at least the last acknowledged logged seal's and
/// every acknowledged write. Meanwhile the background flush fails: `background_error` names the full
/// disk; the store does not spin, panic or hang.
#[test]
fn full_disk_during_logged_seals_loses_nothing() {
    let Some(fs) = Tmpfs::mount(3) else { return };
    let dir = fs.0.join("store");
    let o = Options {
        logged_flush_bytes: 64 * 1024,
        logged_flush_delay: Duration::from_millis(5),
        wal_segment_bytes: 256 * 1024,
        ..opts()
    };
    let store = Store::open_with(&dir, o.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut want = BTreeMap::new();
    let mut acked_upper = 0;
    let mut errors = Vec::new();
    let start = Instant::now();
    for t in 0..5000u64 {
        let ups: Vec<_> = (t * 20..t * 20 + 20).map(|k| (k, val(k), t, 1i64)).collect();
        match store.write("s", &ups) {
            Ok(()) => {
                for k in t * 20..t * 20 + 20 {
                    want.insert(k, 1);
                }
            }
            Err(e) => errors.push(e),
        }
        match store.seal_logged("s", t + 1) {
            Ok(()) => acked_upper = t + 1,
            Err(e) => errors.push(e),
        }
        if errors.len() > 5 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "never filled");
    }
    assert!(!errors.is_empty(), "3 MiB never filled");
    eprintln!(
        "logged: acked upper {acked_upper}, errors {:?}, background {:?}",
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        store.background_error()
    );
    for e in &errors {
        assert!(is_disk_full(e), "not the full disk's error: {e}");
    }
    if let Some(b) = store.background_error() {
        assert!(b.contains("No space left on device"), "background error: {b}");
    }
    drop(store);
    fs.resize(64);
    let store = Store::open_with(&dir, o).unwrap();
    let upper = store.upper("s").unwrap();
    assert!(
        upper >= acked_upper,
        "upper {upper} below the acknowledged logged seal {acked_upper}"
    );
    let got = held(&store, "s");
    let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    assert!(lost.is_empty(), "lost acknowledged {lost:?} (of {})", want.len());
    store
        .write("s", &[(u64::MAX / 2, val(u64::MAX / 2), upper, 1i64)])
        .unwrap();
    store.seal_logged("s", upper + 1).unwrap();
    store.seal("s", upper + 2).unwrap();
}

/// `append` until the disk fills: each append that returned is in the store after growing the disk and
/// reopening; a failed one changes nothing (the next append at the same lower works once there is room).
#[test]
fn full_disk_during_append_loses_nothing() {
    let Some(fs) = Tmpfs::mount(3) else { return };
    let dir = fs.0.join("store");
    let store = Store::open_with(&dir, opts()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    let mut want = BTreeMap::new();
    let mut upper = 0u64;
    let mut errors = Vec::new();
    for t in 0..5000u64 {
        let ups: Vec<_> = (t * 20..t * 20 + 20).map(|k| (k, val(k), t, 1i64)).collect();
        match store.append("s", &ups, upper, t + 1) {
            Ok(_) => {
                upper = t + 1;
                for k in t * 20..t * 20 + 20 {
                    want.insert(k, 1);
                }
            }
            Err(e) => {
                errors.push(e);
                if errors.len() > 5 {
                    break;
                }
                if store.upper("s").is_err() {
                    break;
                }
            }
        }
    }
    assert!(!errors.is_empty(), "3 MiB never filled");
    eprintln!(
        "append: acked upper {upper}, errors {:?}",
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    for e in &errors {
        assert!(is_disk_full(e), "not the full disk's error: {e}");
    }
    drop(store);
    fs.resize(64);
    let store = Store::open_with(&dir, opts()).unwrap();
    let got_upper = store.upper("s").unwrap();
    assert!(
        got_upper == upper || got_upper == upper + 1,
        "upper {got_upper}, acknowledged {upper}"
    );
    let got = held(&store, "s");
    let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    assert!(lost.is_empty(), "lost acknowledged {lost:?}");
    let ups = vec![(1u64 << 40, val(1 << 40), got_upper, 1i64)];
    store.append("s", &ups, got_upper, got_upper + 1).unwrap();
}

/// A stream of many small batches, the disk then filled; `allow_compaction` and `compact`/
/// `major_compact` on the full disk: each fails with the full disk's error or works; the data reads the
/// same (as of the since) throughout; after the filler is removed the merges complete and a reopen serves
/// the same.
#[test]
fn full_disk_during_merges_and_allow_compaction() {
    let Some(fs) = Tmpfs::mount(4) else { return };
    let dir = fs.0.join("store");
    let o = Options {
        merge_fan_in: 64,
        compaction_threads: 1,
        ..Options::default()
    };
    let store = Store::open_with(&dir, o.clone()).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    let mut want = BTreeMap::new();
    for t in 0..40u64 {
        let mut ups: Vec<_> = (t * 20..t * 20 + 20).map(|k| (k, val(k), t, 1i64)).collect();
        if t >= 1 {
            ups.extend(((t - 1) * 20..(t - 1) * 20 + 10).map(|k| (k, val(k), t, -1i64)));
        }
        for (k, _, _, d) in &ups {
            *want.entry(*k).or_insert(0) += d;
        }
        store.write("s", &ups).unwrap();
        store.seal("s", t + 1).unwrap();
    }
    want.retain(|_, d| *d != 0);
    let filler = fill(&dir);
    let outcomes = vec![
        store.allow_compaction("s", 30).map(|_| 0),
        store.compact("s"),
        store.major_compact("s"),
    ];
    std::thread::sleep(Duration::from_millis(200));
    eprintln!(
        "merges on full disk: {:?}; background {:?}",
        outcomes
            .iter()
            .map(|r| r.as_ref().map_err(|e| e.to_string()))
            .collect::<Vec<_>>(),
        store.background_error()
    );
    for r in &outcomes {
        if let Err(e) = r {
            assert!(is_disk_full(e), "not the full disk's error: {e}");
        }
    }
    if let Some(b) = store.background_error() {
        assert!(b.contains("No space left on device"), "background error: {b}");
    }
    // Still readable (unless poisoned by a failed manifest commit), and right.
    if let Ok(snap) = store.snapshot("s") {
        let mut got = BTreeMap::new();
        for (k, v, _, d) in snap.decode::<u64, Vec<u8>>().unwrap() {
            assert_eq!(v, val(k));
            *got.entry(k).or_insert(0) += d;
        }
        got.retain(|_, d| *d != 0);
        assert_eq!(got, want, "read on the full disk");
    }
    drop(store);
    std::fs::remove_file(&filler).unwrap();
    let store = Store::open_with(&dir, o).unwrap();
    assert_eq!(held(&store, "s"), want);
    store.allow_compaction("s", 35).unwrap();
    store.major_compact("s").unwrap();
    assert_eq!(held(&store, "s"), want);
    assert_eq!(store.upper("s").unwrap(), 40);
}

/// WAL rollovers on a filling disk (32 KiB segments, seals releasing and recycling segments): every
/// failure is the full disk's; a reopen on the full disk serves every acknowledged write or fails with
/// the full disk's error; after growing, everything acknowledged is there and the store goes on.
#[test]
fn full_disk_during_wal_rollovers_loses_nothing() {
    let Some(fs) = Tmpfs::mount(2) else { return };
    let dir = fs.0.join("store");
    let o = Options {
        wal_segment_bytes: 32 * 1024,
        ..opts()
    };
    let store = Store::open_with(&dir, o.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut want = BTreeMap::new();
    let mut maybe = BTreeMap::new();
    let mut errors = Vec::new();
    let mut upper = 0;
    for t in 0..20_000u64 {
        let ups: Vec<_> = (t * 10..t * 10 + 10).map(|k| (k, val(k), upper, 1i64)).collect();
        match store.write("s", &ups) {
            Ok(()) => want.extend((t * 10..t * 10 + 10).map(|k| (k, 1i64))),
            Err(e) => {
                maybe.extend((t * 10..t * 10 + 10).map(|k| (k, 1i64)));
                errors.push(e);
            }
        }
        if t % 7 == 6 {
            match store.seal("s", upper + 1) {
                Ok(_) => upper += 1,
                Err(e) => errors.push(e),
            }
        }
        if errors.len() > 3 {
            break;
        }
    }
    assert!(!errors.is_empty(), "2 MiB never filled");
    eprintln!(
        "rollovers: acked {} keys, upper {upper}, errors {:?}",
        want.len(),
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>()
    );
    for e in &errors {
        assert!(is_disk_full(e), "not the full disk's error: {e}");
    }
    drop(store);
    let check = |store: &Store, what: &str| {
        let got = held(store, "s");
        let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
        assert!(lost.is_empty(), "{what}: lost acknowledged {lost:?}");
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(k) && !maybe.contains_key(k))
            .take(5)
            .collect();
        assert!(extra.is_empty(), "{what}: never written {extra:?}");
        assert!(
            store.upper("s").unwrap() >= upper,
            "{what}: upper below the acknowledged {upper}"
        );
    };
    match Store::open_with(&dir, o.clone()) {
        Ok(s) => check(&s, "reopened on the full disk"),
        Err(e) => assert!(is_disk_full(&e), "reopen on the full disk: {e}"),
    }
    fs.resize(64);
    let store = Store::open_with(&dir, o.clone()).unwrap();
    check(&store, "reopened with room");
    let u = store.upper("s").unwrap();
    for i in 0..200u64 {
        let k = 1_000_000 + i;
        store.write("s", &[(k, val(k), u, 1i64)]).unwrap();
    }
    store.seal("s", u + 1).unwrap();
    drop(store);
    let store = Store::open_with(&dir, o).unwrap();
    assert_eq!(held(&store, "s").range(1_000_000..).count(), 200);
}

/// A store that filled its disk by itself (a durable stream written and sealed until `ENOSPC`, merges
/// running), closed, and opened again on the still full disk, as a user would to read it, three times:
/// each open serves every acknowledged update (when its manifest fold does not fit — the space reserve
/// taken by a commit of the run, or never written on this 2 MiB disk — it opens on the snapshot and edits
/// as they are; it failed with the full disk's error, about 1 run in 9, before that); once the disk is
/// grown, the open serves them all.
#[test]
fn a_store_that_filled_its_disk_opens_again_on_the_full_disk() {
    let Some(fs) = Tmpfs::mount(2) else { return };
    let dir = fs.0.join("store");
    let store = Store::open_with(&dir, opts()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut want = BTreeMap::new();
    let mut upper = 0;
    let mut failed = 0;
    for t in 0..20_000u64 {
        let ups: Vec<_> = (t * 10..t * 10 + 10).map(|k| (k, val(k), upper, 1i64)).collect();
        match store.write("s", &ups) {
            Ok(()) => want.extend((t * 10..t * 10 + 10).map(|k| (k, 1i64))),
            Err(_) => failed += 1,
        }
        if t % 5 == 4 && store.seal("s", upper + 1).is_ok() {
            upper += 1;
        }
        if failed > 0 {
            break;
        }
    }
    assert!(failed > 0, "never filled");
    drop(store);
    for round in 0..3 {
        let s =
            Store::open_with(&dir, opts()).unwrap_or_else(|e| panic!("open {round} on the full disk: {e}"));
        let got = held(&s, "s");
        for k in want.keys() {
            assert!(got.contains_key(k), "lost {k}");
        }
        eprintln!(
            "open {round} on the full disk: fold skipped {:?}",
            s.recovery_report().fold_skipped
        );
    }
    fs.resize(8);
    let s = Store::open_with(&dir, opts()).unwrap();
    let got = held(&s, "s");
    let lost: Vec<_> = want.keys().filter(|k| !got.contains_key(k)).take(5).collect();
    assert!(lost.is_empty(), "lost {lost:?} after growing the disk");
}

/// `drop_stream` and `create_stream` on a full disk: each fails with the full disk's error or works;
/// after the filler is removed a reopen has the dropped stream either whole or gone (its files removed),
/// the other stream intact, and the id can be created again.
#[test]
fn drop_and_create_stream_on_a_full_disk() {
    let Some(fs) = Tmpfs::mount(4) else { return };
    let dir = fs.0.join("store");
    let store = Store::open_with(&dir, opts()).unwrap();
    let mut want = BTreeMap::new();
    for id in ["keep", "big"] {
        store.create_stream(id, StreamOptions::default()).unwrap();
        for t in 0..5u64 {
            let ups: Vec<_> = (t * 100..t * 100 + 100).map(|k| (k, val(k), t, 1i64)).collect();
            store.write(id, &ups).unwrap();
            store.seal(id, t + 1).unwrap();
        }
        want = (0..500u64).map(|k| (k, 1i64)).collect();
    }
    let filler = fill(&dir);
    let dropped = store.drop_stream("big");
    let created = store.create_stream("new", StreamOptions::default());
    eprintln!("on a full disk: drop {dropped:?}, create {created:?}");
    for r in [&dropped, &created] {
        if let Err(e) = r {
            assert!(is_disk_full(e), "{e}");
        }
    }
    drop(store);
    std::fs::remove_file(filler).unwrap();
    let store = Store::open_with(&dir, opts()).unwrap();
    assert_eq!(held(&store, "keep"), want);
    if store.has_stream("big") {
        assert!(dropped.is_err(), "a dropped stream came back");
        assert_eq!(held(&store, "big"), want, "the stream is there, but not whole");
        store.drop_stream("big").unwrap();
    }
    // The reopened store's merges may be in flight (an output written, not yet committed): let them
    // finish before counting files.
    store.compact("keep").unwrap();
    let batches = crate::common::batch_files(&dir).len();
    assert_eq!(
        batches,
        store.manifest().file_nos().count(),
        "files of the dropped stream left behind"
    );
    store.create_stream("big", StreamOptions::default()).unwrap();
    assert!(held(&store, "big").is_empty());
}
