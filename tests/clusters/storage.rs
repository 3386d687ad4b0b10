//! Reliability edges of the store a user meets between runs and at the limits: a batch file deleted or
//! truncated between runs (a clear `Error`, never a panic or wrong data), two opens of one directory (in
//! one process and in two), keys and vals of megabytes, thousands of streams, empty keys and vals.

use crate::common;
use ddpersist::{Error, Store, StreamOptions};
use std::path::Path;

/// Writes `n` updates `(k{i}, v{i}, i, 1)` to stream `s` in `seals` seals, closes the store.
fn write_sealed(dir: &Path, n: u64, seals: u64) {
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let per = n / seals;
    for s in 0..seals {
        let ups: Vec<(String, u64, u64, i64)> = (s * per..(s + 1) * per)
            .map(|i| (format!("k{i:05}"), i, i, 1))
            .collect();
        store.write("s", &ups).unwrap();
        store.seal("s", (s + 1) * per).unwrap();
    }
}

/// Reads everything back through every path a user has: open, snapshot, lookups. Returns the first
/// error, or the snapshot's rows.
fn read_all(dir: &Path) -> ddpersist::Result<Vec<(String, u64, u64, i64)>> {
    let store = Store::open(dir)?;
    let rows: Vec<(String, u64, u64, i64)> = store.snapshot("s")?.decode()?;
    for i in 0..10u64 {
        store.get::<String, u64>("s", &format!("k{i:05}"), 1_000_000)?;
    }
    Ok(rows)
}

/// A batch file deleted between runs: opening (or reading) must report an error naming it, never
/// panic and never serve the stream without its rows.
#[test]
fn a_deleted_batch_file_is_an_error_not_a_panic_or_missing_rows() {
    let dir = tempfile::tempdir().unwrap();
    write_sealed(dir.path(), 300, 3);
    let files = common::batch_files(dir.path());
    assert!(!files.is_empty());
    std::fs::remove_file(&files[0]).unwrap();
    let got = std::panic::catch_unwind(|| read_all(dir.path()));
    match got {
        Err(_) => panic!("reading a store with a deleted batch file panicked"),
        Ok(Ok(rows)) => panic!(
            "a deleted batch file went unnoticed: {} rows of 300 served",
            rows.len()
        ),
        Ok(Err(e)) => {
            let text = e.to_string();
            assert!(!text.is_empty());
        }
    }
}

/// A batch file truncated between runs (to each of several lengths): an error, never a panic or fewer
/// rows.
#[test]
fn a_truncated_batch_file_is_an_error_not_a_panic_or_missing_rows() {
    for cut in [0u64, 1, 7, 64, 4096, u64::MAX] {
        let dir = tempfile::tempdir().unwrap();
        write_sealed(dir.path(), 3000, 3);
        let files = common::batch_files(dir.path());
        let f = &files[files.len() / 2];
        let len = std::fs::metadata(f).unwrap().len();
        let to = if cut == u64::MAX {
            len - 1
        } else {
            cut.min(len - 1)
        };
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        file.set_len(to).unwrap();
        drop(file);
        let got = std::panic::catch_unwind(|| read_all(dir.path()));
        match got {
            Err(_) => panic!("a batch file truncated to {to} of {len} bytes: a panic"),
            Ok(Ok(rows)) => {
                panic!(
                    "a batch file truncated to {to} of {len} bytes went unnoticed: {} rows",
                    rows.len()
                )
            }
            Ok(Err(_)) => {}
        }
    }
}

/// A batch file of another stream's (or an older) content swapped in under a named file's name: any
/// error, never a panic.
#[test]
fn a_batch_file_swapped_for_another_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    write_sealed(dir.path(), 3000, 3);
    let files = common::batch_files(dir.path());
    std::fs::copy(&files[0], &files[1]).unwrap();
    let got = std::panic::catch_unwind(|| read_all(dir.path()));
    match got {
        Err(_) => panic!("a swapped batch file: a panic"),
        Ok(Ok(rows)) => panic!("a swapped batch file went unnoticed: {} rows", rows.len()),
        Ok(Err(_)) => {}
    }
}

/// Two `Store::open`s of one directory in one process: the second is `Locked`; once the first is
/// dropped, a third succeeds and reads what the first wrote.
#[test]
fn a_second_open_in_one_process_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::open(dir.path()).unwrap();
    first.create_stream("s", StreamOptions::default()).unwrap();
    first.write("s", &[(1u64, 2u64, 0, 1)]).unwrap();
    match Store::open(dir.path()) {
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("second open: {e}"),
        Ok(_) => panic!("a second Store::open of one directory succeeded"),
    }
    // Under another spelling of the same path.
    let other = dir.path().join(".").join("wal").join("..");
    match Store::open(&other) {
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("second open by another spelling: {e}"),
        Ok(_) => panic!("a second Store::open of one directory (another spelling) succeeded"),
    }
    drop(first);
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(
        again.snapshot("s").unwrap().decode::<u64, u64>().unwrap(),
        vec![(1, 2, 0, 1)]
    );
}

/// The child of `a_second_process_is_locked_out`: opens the store, prints `open`, holds it until killed.
#[test]
#[ignore = "child process of storage::a_second_process_is_locked_out"]
fn lock_holder_child() {
    let Some(dir) = common::child_var("DDPERSIST_DDPERSIST_CLUSTERS_DIR") else {
        return;
    };
    let store = Store::open(&dir).unwrap();
    store.create_stream("held", StreamOptions::default()).unwrap();
    println!();
    println!("open 1");
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(store);
}

/// A second process opening a directory another process holds is `Locked`; once that process is killed
/// with SIGKILL (its lock not released by a clean close), the directory opens again.
#[test]
fn a_second_process_is_locked_out_and_a_killed_holder_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::spawn_child(
        module_path!(),
        "lock_holder_child",
        &[(
            "DDPERSIST_DDPERSIST_CLUSTERS_DIR",
            dir.path().display().to_string(),
        )],
    );
    assert_eq!(common::read_until(&mut child, "open ", 1), 1);
    match Store::open(dir.path()) {
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("open while another process holds it: {e}"),
        Ok(_) => panic!("a second process opened a locked store"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.has_stream("held"));
}

/// A key of 16 MiB and a val of 48 MiB (the limits are 16 and 64 MiB): written durably (one WAL
/// record larger than a WAL segment), recovered from the WAL, sealed, merged with another such batch,
/// reopened and read back whole.
#[test]
fn keys_and_vals_of_megabytes_survive_wal_seal_merge_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let key = |b: u8| vec![b; 16 << 20];
    let val = |b: u8| vec![b.wrapping_add(1); 48 << 20];
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let (k, v) = (key(1), val(1));
        store.write_bytes("s", [(&k[..], &v[..], 0u64, 1i64)]).unwrap();
    }
    {
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.unsealed_len("s").unwrap(),
            1,
            "the WAL's large record recovered"
        );
        store.seal("s", 1).unwrap();
        let (k, v) = (key(2), val(2));
        store.write_bytes("s", [(&k[..], &v[..], 1u64, 1i64)]).unwrap();
        store.seal("s", 2).unwrap();
        let (k, v) = (key(1), val(1));
        store.write_bytes("s", [(&k[..], &v[..], 2u64, -1i64)]).unwrap();
        store.seal("s", 3).unwrap();
        store.allow_compaction("s", 3).unwrap();
        store.major_compact("s").unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let all = store.snapshot("s").unwrap().to_vec().unwrap();
    assert_eq!(all.len(), 1, "one update left after the merge");
    assert!(all[0].0 == key(2) && all[0].1 == val(2) && all[0].3 == 1);
    let got = store.get_bytes("s", &key(2), 3).unwrap();
    assert_eq!(got.len(), 1);
    assert!(store.get_bytes("s", &key(1), 3).unwrap().is_empty());
}

/// A key one byte over the limit is refused (`BadInput`), by `write` and by `append`, and nothing is
/// left behind.
#[test]
fn a_key_over_the_limit_is_refused_by_write_and_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let k = vec![7u8; (16 << 20) + 1];
    let e = store
        .write_bytes("s", [(&k[..], &b"v"[..], 0u64, 1i64)])
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "{e}");
    let e = store
        .append_bytes("s", [(&k[..], &b"v"[..], 0u64, 1i64)], 0, 1)
        .unwrap_err();
    assert!(matches!(e, Error::BadInput { .. }), "{e}");
    assert_eq!(store.upper("s").unwrap(), 0);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.snapshot("s").unwrap().to_vec().unwrap().is_empty());
}

/// Empty keys and vals (and an empty key with a non-empty val and back), through write, seal, append,
/// WAL recovery, merges, lookups and reopen.
#[test]
fn empty_keys_and_vals_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let e: &[u8] = b"";
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store
            .write_bytes(
                "s",
                [(e, e, 0u64, 1i64), (e, &b"a"[..], 0, 2), (&b"a"[..], e, 0, 3)],
            )
            .unwrap();
        store.seal("s", 1).unwrap();
        store
            .append_bytes("s", [(e, e, 1u64, 5i64), (&b"\0"[..], e, 1, 1)], 1, 2)
            .unwrap();
        store.write_bytes("s", [(e, e, 2u64, -6i64)]).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    store.seal("s", 3).unwrap();
    store.allow_compaction("s", 3).unwrap();
    store.major_compact("s").unwrap();
    let mut got = store.snapshot("s").unwrap().to_vec().unwrap();
    got.sort();
    let want: Vec<ddpersist::OwnedUpdate> = vec![
        (vec![], b"a".to_vec(), 3, 2),
        (vec![0], vec![], 3, 1),
        (b"a".to_vec(), vec![], 3, 3),
    ];
    assert_eq!(got, want);
    assert!(store.get_bytes("s", e, 3).unwrap().len() == 1);
}

/// Thousands of streams: created, written and sealed, reopened, each read back; then dropped.
#[test]
fn thousands_of_streams() {
    let n: u64 = std::env::var("DDPERSIST_CLUSTERS_STREAMS").map_or(500, |v| v.parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..n {
            let id = format!("stream/{i}");
            store
                .create_stream(&id, StreamOptions { durable: false })
                .unwrap();
            store.write(&id, &[(i, i * 2, 0, 1)]).unwrap();
        }
        eprintln!("created and written: {:?}", start.elapsed());
        for i in (0..n).step_by(2) {
            store.seal(&format!("stream/{i}"), 1).unwrap();
        }
    }
    eprintln!("sealed: {:?}", start.elapsed());
    let store = Store::open(dir.path()).unwrap();
    eprintln!("reopened: {:?}", start.elapsed());
    assert_eq!(store.streams().len() as u64, n);
    for i in 0..n {
        let id = format!("stream/{i}");
        let rows: Vec<(u64, u64, u64, i64)> = store.snapshot(&id).unwrap().decode().unwrap();
        if i % 2 == 0 {
            assert_eq!(rows, vec![(i, i * 2, 0, 1)], "{id}");
        } else {
            assert!(
                rows.is_empty(),
                "{id}: not durable, unsealed, lost at the restart: {rows:?}"
            );
        }
    }
    eprintln!("read: {:?}", start.elapsed());
    for i in 0..n {
        store.drop_stream(&format!("stream/{i}")).unwrap();
    }
    eprintln!("dropped: {:?}", start.elapsed());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(store.streams().is_empty());
    eprintln!("{n} streams in {:?}", start.elapsed());
}

/// Drop and reopen in a tight loop while the store has background work queued: logged seals whose
/// batches are written in the background and merges due (fan-in 2). Every reopen must succeed (the
/// old store's threads finished, its lock released) and read every update written, exactly once.
#[test]
fn reopen_at_once_after_drop_with_background_work_queued() {
    let dir = tempfile::tempdir().unwrap();
    let options = || ddpersist::Options {
        merge_fan_in: 2,
        ..Default::default()
    };
    let mut want: Vec<(u64, u64, u64, i64)> = Vec::new();
    for round in 0..30u64 {
        let store = match Store::open_with(dir.path(), options()) {
            Ok(s) => s,
            Err(e) => panic!("round {round}: reopen right after the drop: {e}"),
        };
        if round == 0 {
            store.create_stream("s", StreamOptions::default()).unwrap();
            store.create_stream("m", StreamOptions::default()).unwrap();
        }
        let got: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
        assert_eq!(got, want, "round {round}: s");
        let m: Vec<(u64, u64, u64, i64)> = store.snapshot("m").unwrap().decode().unwrap();
        assert_eq!(m.len() as u64, round * 3, "round {round}: m");
        let base = round * 4;
        for t in base..base + 4 {
            store.write("s", &[(t, t, t, 1)]).unwrap();
            want.push((t, t, t, 1));
            store.seal_logged("s", t + 1).unwrap();
        }
        for t in 0..3 {
            let time = round * 3 + t;
            store.write("m", &[(time, 0u64, time, 1)]).unwrap();
            store.seal("m", time + 1).unwrap();
        }
        drop(store);
    }
}

/// The same directory opened through a symlink while open by its own path: `Locked`, not a second
/// writer.
#[test]
fn a_second_open_through_a_symlink_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("store");
    let link = dir.path().join("link");
    let first = Store::open(&real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();
    match Store::open(&link) {
        Err(Error::Locked { .. }) => {}
        Err(e) => panic!("open through a symlink: {e}"),
        Ok(_) => panic!("a second Store::open of one directory through a symlink succeeded"),
    }
    drop(first);
}

/// Writes 40 seals of one update each to stream `s` (manifest edits follow the snapshot), plus durable
/// unsealed updates in the WAL; leaves the store closed. Returns nothing.
fn write_edits_and_wal(dir: &Path) {
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    for t in 0..40u64 {
        store.write("s", &[(format!("k{t:05}"), t, t, 1i64)]).unwrap();
        store.seal("s", t + 1).unwrap();
    }
    for t in 40..60u64 {
        store.write("s", &[(format!("k{t:05}"), t, t, 1i64)]).unwrap();
    }
    drop(store);
}

/// Opens, reads and checks for 60 rows: an error, or all 60 rows; never a panic or fewer rows.
fn error_or_all(dir: &Path, what: &str) {
    let got = std::panic::catch_unwind(|| read_all(dir));
    match got {
        Err(_) => panic!("{what}: a panic"),
        Ok(Ok(rows)) => assert_eq!(
            rows.len(),
            60,
            "{what}: served without an error but rows are missing"
        ),
        Ok(Err(Error::Locked { .. })) => panic!("{what}: the store was still locked (test bug)"),
        Ok(Err(e)) => eprintln!("{what}: {e}"),
    }
}

/// The MANIFEST snapshot truncated, a middle manifest edit deleted, a byte flipped in the middle of a
/// WAL segment: each an error (or, where the damage holds nothing, every row), never a panic or rows
/// silently missing.
#[test]
fn damaged_manifest_and_wal_between_runs_are_errors() {
    // A middle edit deleted (a gap in the generations).
    let dir = tempfile::tempdir().unwrap();
    write_edits_and_wal(dir.path());
    let mut edits: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("MANIFEST-EDIT-")
        })
        .collect();
    edits.sort();
    if edits.len() >= 3 {
        std::fs::remove_file(&edits[edits.len() / 2]).unwrap();
        error_or_all(dir.path(), "a middle manifest edit deleted");
    } else {
        eprintln!("only {} edits: skipped the gap case", edits.len());
    }
    // The snapshot truncated.
    for cut in [0u64, 10, 100] {
        let dir = tempfile::tempdir().unwrap();
        write_edits_and_wal(dir.path());
        let m = dir.path().join("MANIFEST");
        let len = std::fs::metadata(&m).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&m)
            .unwrap()
            .set_len(cut.min(len - 1))
            .unwrap();
        error_or_all(dir.path(), &format!("MANIFEST truncated to {cut}"));
    }
    // A byte flipped in the middle of the WAL.
    for at in [0.3f64, 0.5, 0.7] {
        let dir = tempfile::tempdir().unwrap();
        write_edits_and_wal(dir.path());
        let segs = common::wal_segments(dir.path());
        let seg = segs.last().unwrap();
        let len = std::fs::metadata(seg).unwrap().len();
        common::flip_byte(seg, (len as f64 * at) as u64);
        error_or_all(dir.path(), &format!("WAL byte flipped at {at} of {len}"));
    }
}

/// Vals far larger than the memtable budget (1 MiB budget, 5 MiB vals): writes spill to sorted runs,
/// seals draw from them, a reopen replays the WAL; every val read back whole, exactly once.
#[test]
fn vals_larger_than_the_memtable_budget_spill_and_seal_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = || ddpersist::Options {
        memtable_budget_bytes: 1 << 20,
        ..Default::default()
    };
    let val = |i: u64| -> Vec<u8> { (0..(5u64 << 20)).map(|j| (j ^ i) as u8).collect() };
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for i in 0..6u64 {
            let (k, v) = (i.to_be_bytes(), val(i));
            store.write_bytes("s", [(&k[..], &v[..], i, 1i64)]).unwrap();
        }
        store.seal("s", 3).unwrap();
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    store.seal("s", 6).unwrap();
    drop(store);
    let store = Store::open_with(dir.path(), options()).unwrap();
    let all = store.snapshot("s").unwrap().to_vec().unwrap();
    assert_eq!(all.len(), 6);
    for (i, (k, v, t, d)) in all.into_iter().enumerate() {
        let i = i as u64;
        assert!(
            k == i.to_be_bytes() && v == val(i) && t == i && d == 1,
            "update {i} differs"
        );
    }
}

/// Eight threads racing `Store::open` on a directory that does not exist yet: exactly one opens it (the
/// others `Locked`, none a panic or another error), and the store it created opens again afterwards.
#[test]
fn racing_opens_of_a_new_directory_one_wins() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new").join("store");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (path, barrier) = (path.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let r = Store::open(&path);
                    let out = match &r {
                        Ok(s) => {
                            s.create_stream("s", StreamOptions::default()).unwrap();
                            Ok(())
                        }
                        Err(Error::Locked { .. }) => Err(None),
                        Err(e) => Err(Some(e.to_string())),
                    };
                    // Hold it until every thread tried.
                    barrier.wait();
                    drop(r);
                    out
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let other: Vec<_> = results.iter().filter_map(|r| r.clone().err().flatten()).collect();
        assert!(
            ok == 1 && other.is_empty(),
            "round {round}: {ok} opened, other errors {other:?}"
        );
        let store = Store::open(&path).unwrap();
        assert!(store.has_stream("s"), "round {round}");
    }
}

/// A tmpfs mounted at a fresh directory (unmounted on drop); `None` where mounting is not permitted.
struct Mount(std::path::PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Mount {
    fn new() -> Option<Mount> {
        let dir = tempfile::tempdir().unwrap();
        let at = dir.path().join("fs");
        std::fs::create_dir(&at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(&at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Mount(at, dir))
    }

    fn remount(&self, mode: &str) {
        let s = std::process::Command::new("mount")
            .args(["-o", &format!("remount,{mode}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(s.success(), "remount {mode}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The store's file system made read-only between runs: the open is an error (or a read-only
/// success), never a panic; once writable again, a reopen serves every acknowledged update. (Made
/// read-only while the store is open, the remount itself fails: the store holds files open for
/// writing.) Skipped where mounting a tmpfs is not permitted.
#[test]
fn a_read_only_file_system_between_runs_is_an_error_and_loses_nothing() {
    let Some(mount) = Mount::new() else {
        eprintln!("cannot mount a tmpfs here: skipped");
        return;
    };
    let dir = mount.0.join("store");
    let mut acked: Vec<(u64, u64, u64, i64)> = Vec::new();
    {
        let store = Store::open(&dir).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..20u64 {
            store.write("s", &[(t, t, t, 1i64)]).unwrap();
            acked.push((t, t, t, 1));
            if t % 3 == 2 {
                store.seal("s", t + 1).unwrap();
            }
        }
    }
    // Read-only between runs.
    mount.remount("ro");
    let r = std::panic::catch_unwind(|| Store::open(&dir).map(|s| s.snapshot("s").map(|s| s.to_vec())));
    match r {
        Err(_) => panic!("opening a store on a read-only file system panicked"),
        Ok(Err(e)) => eprintln!("read-only open: {e}"),
        Ok(Ok(_)) => eprintln!("read-only open succeeded"),
    }
    mount.remount("rw");
    let store = Store::open(&dir).unwrap();
    let got: Vec<(u64, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(got, acked, "after the file system was writable again");
}

// The round's WAL-segment deletions (the oldest one was silent loss) are tests/durability/wal_start.rs.
