//! A WAL that lost its tail or all of it between runs: a log cut by `WalRecovery::PointInTime`, a WAL
//! directory deleted. The open may lose what the lost records held (and says so), but what is written
//! after it must survive the next reopen. Both lost it before: the manifest's spill marks (`spilled_lsn`,
//! replay skips records below them) stayed past the restarted log's end, so the next replay skipped every
//! new record as spilled (found by an adversarial test). The open now lowers them first.

use ddpersist::wal::WalRecovery;
use ddpersist::{Options, Store, StreamOptions};
use std::fs;
use std::path::Path;

type Row = (String, u64, u64, i64);

fn rows(store: &Store, id: &str) -> Vec<Row> {
    store.snapshot(id).unwrap().decode::<String, u64>().unwrap()
}

/// A tiny memtable and no background threads: every update is spilled to runs at once.
fn options() -> Options {
    Options {
        memtable_budget_bytes: 256,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// Writes at least 20 rows into stream "s" of a new store in `dir` until all of them sit in spilled
/// runs (the manifest's spill mark past every record); returns how many.
fn spill_everything(dir: &Path) -> usize {
    let store = Store::open_with(dir, options()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut i = 0u64;
    while i < 20 || store.unsealed_len("s").unwrap() != 0 {
        store.write("s", &[(format!("old{i:03}"), i, 5, 1)]).unwrap();
        i += 1;
        assert!(i < 100, "the memtable never spilled");
    }
    assert!(
        store.manifest().streams[0].spilled_lsn > 0,
        "the memtable spilled"
    );
    i as usize
}

/// Opens with `open`, checks nothing written was lost, writes one more row (acknowledged durable), then
/// reopens normally: the row is there.
fn write_then_reopen(dir: &Path, written: usize, open: Options) {
    {
        let store = Store::open_with(dir, open).unwrap();
        assert_eq!(rows(&store, "s").len(), written, "every row was in spilled runs");
        store.write("s", &[("new".to_string(), 7u64, 6, 1)]).unwrap();
    }
    let store = Store::open_with(dir, options()).unwrap();
    let got = rows(&store, "s");
    assert_eq!(
        got.len(),
        written + 1,
        "the write acknowledged after the recovery survives"
    );
    assert!(got.iter().any(|r| r.0 == "new"));
    // And once more: the marks stay consistent with the log.
    drop(store);
    assert_eq!(
        rows(&Store::open_with(dir, options()).unwrap(), "s").len(),
        written + 1
    );
}

#[test]
fn writes_after_a_point_in_time_recovery_survive_the_next_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let written = spill_everything(dir.path());
    let segment = fs::read_dir(dir.path().join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    // Damage the first record's payload (segment header 32 bytes, record header 16): a strict open
    // refuses, a point-in-time one cuts the log there.
    let mut bytes = fs::read(&segment).unwrap();
    bytes[32 + 16 + 3] ^= 0x40;
    fs::write(&segment, &bytes).unwrap();
    assert!(Store::open_with(dir.path(), options()).is_err());
    let recover = Options {
        wal_recovery: WalRecovery::PointInTime,
        ..options()
    };
    write_then_reopen(dir.path(), written, recover);
}

#[test]
fn writes_after_the_wal_directory_was_lost_survive_the_next_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let written = spill_everything(dir.path());
    fs::remove_dir_all(dir.path().join("wal")).unwrap();
    write_then_reopen(dir.path(), written, options());
}
