//! `inspect` on a store with every kind of file (batches of several levels, spilled runs, several WAL
//! segments, manifest edits, a dropped stream, a durable stream's unsealed updates, a since): every
//! byte flipped or truncation of each file makes every command exit 0 or 1 (never a panic, a signal or a
//! hang), and `verify` exits 1 naming the damaged file for damage in a batch or the manifest.

use crate::common;

use common::copy_dir;

use ddpersist::{Options, Store, StreamOptions};
use std::path::Path;
use std::process::Command;

/// A store with batches, spilled runs, WAL segments, edits, a dropped stream and unsealed updates.
fn build_rich(dir: &Path) {
    let options = Options {
        memtable_budget_bytes: 4 << 10,
        wal_segment_bytes: 4 << 10,
        merge_fan_in: 2,
        compaction_threads: 0,
        ..Options::default()
    };
    let store = Store::open_with(dir, options).unwrap();
    store.create_stream("a", StreamOptions::default()).unwrap();
    store.create_stream("gone", StreamOptions::default()).unwrap();
    store
        .create_stream("v", StreamOptions { durable: false })
        .unwrap();
    for t in 0..12u64 {
        let rows: Vec<(String, u64, u64, i64)> = (0..8)
            .map(|i| (format!("key{:03}", (t * 5 + i) % 40), t * 10 + i, t, 1))
            .collect();
        store.write("a", &rows).unwrap();
        store.write("gone", &rows[..2]).unwrap();
        store.write("v", &rows[..3]).unwrap();
        if t < 9 {
            store.seal("a", t + 1).unwrap();
        }
        store.seal("v", t + 1).unwrap();
    }
    store.allow_compaction("a", 3).unwrap();
    // A stalled stream big enough to spill.
    let big: Vec<(String, String, u64, i64)> = (0..200)
        .map(|i| (format!("s{i:04}"), "x".repeat(40), 20, 1))
        .collect();
    store.write("a", &big).unwrap();
    store.drop_stream("gone").unwrap();
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        if entry.file_name().is_some_and(|n| n != "LOCK") {
            out.push(entry);
        }
    }
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn code(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args.iter().map(|a| a.replace("DIR", dir.to_str().unwrap())))
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn damage_anywhere_never_panics_inspect() {
    let tmp = tempfile::tempdir().unwrap();
    let pristine = tmp.path().join("pristine");
    build_rich(&pristine);
    let commands: [&[&str]; 5] = [
        &["verify", "DIR"],
        &["list", "DIR", "--json"],
        &["scan", "DIR", "a", "--limit", "5"],
        &["get", "DIR", "a", "key007", "--as-of", "30", "--key-as", "string"],
        &["stats", "DIR"],
    ];
    // Every file but most manifest edits (alike): the first and last edits.
    let all = files(&pristine);
    let edits: Vec<_> = all
        .iter()
        .filter(|f| f.to_str().unwrap().contains("EDIT"))
        .collect();
    let keep: Vec<_> = all
        .iter()
        .filter(|f| {
            !f.to_str().unwrap().contains("EDIT") || Some(f) == edits.first() || Some(f) == edits.last()
        })
        .collect();
    assert!(keep.len() >= 8, "{keep:?}");
    for (i, file) in keep.into_iter().enumerate() {
        let rel = file.strip_prefix(&pristine).unwrap();
        let len = std::fs::metadata(file).unwrap().len();
        // A few damages per file: bytes flipped near the start, middle and end, and a truncation.
        for (j, off) in [len / 7, len / 2, len.saturating_sub(9), len / 3]
            .into_iter()
            .enumerate()
        {
            let work = tmp.path().join(format!("w{i}_{j}"));
            copy_dir(&pristine, &work);
            let target = work.join(rel);
            if j == 3 {
                let f = std::fs::OpenOptions::new().write(true).open(&target).unwrap();
                f.set_len(off).unwrap();
            } else if len > 0 {
                common::flip_byte(&target, off);
            }
            for args in commands {
                let (code, err) = code(&work, args);
                assert!(
                    matches!(code, Some(0) | Some(1)),
                    "{args:?} with {rel:?} damaged at {off} ({j}): {code:?}\n{err}"
                );
            }
            let name = rel.to_str().unwrap();
            if name.ends_with(".batch") || name.starts_with("MANIFEST") {
                let (code, err) = code(&work, &["verify", "DIR"]);
                assert_eq!(
                    code,
                    Some(1),
                    "verify with {rel:?} damaged at {off} ({j}):\n{err}"
                );
                assert!(err.contains(name), "verify with {rel:?} damaged at {off}: {err}");
            }
            std::fs::remove_dir_all(&work).unwrap();
        }
    }
}
