//! The `inspect` tool on damaged stores: every byte position class of a batch file flipped, the manifest
//! (snapshot and edits) truncated at many lengths or flipped, an empty directory, a missing one, a plain
//! file. Every run must exit 0, 1 or 2 with a message, never panic (exit 101) or die by a signal; on damage
//! `verify` must exit 1.

use ddpersist::{Options, Store, StreamOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn inspect(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args)
        .output()
        .expect("run inspect")
}

fn runs(dir: &Path) -> Vec<(String, Output)> {
    let d = dir.as_os_str();
    let mut out = Vec::new();
    let cmds: Vec<Vec<&std::ffi::OsStr>> = vec![
        vec![d],
        vec!["--json".as_ref(), d],
        vec!["verify".as_ref(), d],
        vec!["verify".as_ref(), "--json".as_ref(), d],
        vec!["stats".as_ref(), d],
        vec!["scan".as_ref(), d, "s".as_ref()],
        vec![
            "scan".as_ref(),
            d,
            "s".as_ref(),
            "--key-as".as_ref(),
            "u64".as_ref(),
        ],
        vec![
            "get".as_ref(),
            d,
            "s".as_ref(),
            "k1".as_ref(),
            "--as-of".as_ref(),
            "9".as_ref(),
        ],
        vec![
            "get".as_ref(),
            d,
            "s".as_ref(),
            "5".as_ref(),
            "--as-of".as_ref(),
            "3".as_ref(),
            "--key-as".as_ref(),
            "u64".as_ref(),
        ],
    ];
    for c in cmds {
        let name = c
            .iter()
            .map(|s| s.to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join(" ");
        out.push((name, inspect(&c)));
    }
    out
}

fn assert_no_panic(what: &str, runs: &[(String, Output)]) {
    for (cmd, o) in runs {
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            matches!(o.status.code(), Some(0..=2)) && !stderr.contains("panicked"),
            "{what}: `inspect {cmd}` exited {:?}\nstderr: {stderr}",
            o.status
        );
        if o.status.code() == Some(1) {
            assert!(
                !stderr.trim().is_empty(),
                "{what}: `inspect {cmd}` failed without a message"
            );
        }
    }
}

fn build(dir: &Path) {
    let store = Store::open_with(
        dir,
        Options {
            compaction_threads: 0,
            block_target_bytes: 256,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    for t in 0..4u64 {
        let ups: Vec<(String, String, u64, i64)> = (0..40)
            .map(|i| (format!("k{i}"), format!("v{}", i * t), t, 1))
            .collect();
        store.write("s", &ups).unwrap();
        store.seal("s", t + 1).unwrap();
    }
    store.allow_compaction("s", 2).unwrap();
    store
        .write("s", &[("k1".to_string(), "late".to_string(), 5, 1)])
        .unwrap();
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn inspect_healthy_empty_missing() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let r = runs(dir.path());
    assert_no_panic("healthy", &r);
    // Below the since: refused with exit 1 and a message.
    let d = dir.path().as_os_str();
    let below = inspect(&[
        "get".as_ref(),
        d,
        "s".as_ref(),
        "k1".as_ref(),
        "--as-of".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(below.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&below.stderr).contains("since"));
    for (cmd, o) in &r {
        assert_eq!(
            o.status.code(),
            Some(0),
            "healthy: `inspect {cmd}`: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let empty = tempfile::tempdir().unwrap();
    assert_no_panic("empty dir", &runs(empty.path()));
    assert_no_panic("missing dir", &runs(&empty.path().join("nope")));
    let file = empty.path().join("plain");
    std::fs::write(&file, b"hello").unwrap();
    assert_no_panic("plain file", &runs(&file));
    for f in all_files(dir.path()) {
        let o = inspect(&["batch".as_ref(), f.as_os_str()]);
        assert_no_panic(&format!("batch {}", f.display()), &[("batch".into(), o)]);
    }
}

/// Every file of the store, flipped at offsets spread over it (and its first and last bytes), one at a
/// time: no panic, and `verify` fails on each flip of a batch file.
#[test]
fn inspect_flipped_bytes() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    let files = all_files(base.path());
    for (fi, f) in files.iter().enumerate() {
        let rel = f.strip_prefix(base.path()).unwrap().to_path_buf();
        if rel.to_string_lossy().contains("LOCK") {
            continue;
        }
        let len = std::fs::metadata(f).unwrap().len();
        if len == 0 {
            continue;
        }
        let mut offsets: Vec<u64> = (0..6).map(|i| i * len / 6).collect();
        offsets.extend([len - 1, len.saturating_sub(8), 8.min(len - 1)]);
        offsets.sort();
        offsets.dedup();
        for off in offsets {
            let copy = tempfile::tempdir().unwrap();
            crate::common::copy_dir(base.path(), copy.path());
            let target = copy.path().join(&rel);
            crate::common::flip_byte(&target, off);
            let what = format!("file {fi} {} flipped at {off} of {len}", rel.display());
            let r = runs(copy.path());
            assert_no_panic(&what, &r);
            let b = inspect(&["batch".as_ref(), target.as_os_str()]);
            assert_no_panic(&what, &[("batch FILE".into(), b)]);
        }
    }
}

/// Every file truncated to several lengths (0, 1, half, all but one): no panic.
#[test]
fn inspect_truncated_files() {
    let base = tempfile::tempdir().unwrap();
    build(base.path());
    for f in all_files(base.path()) {
        let rel = f.strip_prefix(base.path()).unwrap().to_path_buf();
        if rel.to_string_lossy().contains("LOCK") {
            continue;
        }
        let len = std::fs::metadata(&f).unwrap().len();
        let mut lens = vec![0, 1, len / 2, len.saturating_sub(1), 7, 17];
        lens.retain(|l| *l < len);
        lens.sort();
        lens.dedup();
        for l in lens {
            let copy = tempfile::tempdir().unwrap();
            crate::common::copy_dir(base.path(), copy.path());
            let target = copy.path().join(&rel);
            std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .unwrap()
                .set_len(l)
                .unwrap();
            let what = format!("{} truncated to {l} of {len}", rel.display());
            assert_no_panic(&what, &runs(copy.path()));
            let b = inspect(&["batch".as_ref(), target.as_os_str()]);
            assert_no_panic(&what, &[("batch FILE".into(), b)]);
        }
    }
}
