//! End-to-end tests of the `inspect` binary: builds real stores with `Store::open`, runs the binary on
//! them, and checks its output, its exit codes, and that it never changes the store.

use ddpersist::{Store, StreamOptions};
use json::Get as _;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Tests of `get`, `scan` and `stats`.
#[path = "inspect/read.rs"]
mod read;

/// Runs `inspect` with `args`.
fn inspect<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(args)
        .output()
        .expect("run inspect")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8")
}

/// Asserts `o` exited with `code`, showing its output otherwise.
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// A store with two sealed streams and one unsealed (WAL-only) write:
/// - "fruit" (durable): raw UTF-8 keys and vals, sealed at 2 (3 updates), then "plum" at 5 unsealed;
/// - "bytes" (not durable): a non-UTF-8 key and a codec-encoded key, sealed at 1 (2 updates).
fn build_store(dir: &Path) {
    let store = Store::open(dir).unwrap();
    store.create_stream("fruit", StreamOptions::default()).unwrap();
    store
        .create_stream("bytes", StreamOptions { durable: false })
        .unwrap();
    let fruit: [(&[u8], &[u8], u64, i64); 3] = [
        (b"apple", b"red", 0, 1),
        (b"pear", b"green \"ripe\"", 0, 2),
        (b"apple", b"red", 1, -1),
    ];
    store.write_bytes("fruit", fruit).unwrap();
    store
        .write_bytes("bytes", [(&b"\xff\x00k"[..], &b"v"[..], 0, 7)])
        .unwrap();
    store
        .write("bytes", &[(42u32, "forty-two".to_string(), 0, 1)])
        .unwrap();
    assert_eq!(store.seal("fruit", 2).unwrap().update_count, 3);
    assert_eq!(store.seal("bytes", 1).unwrap().update_count, 2);
    store
        .write_bytes("fruit", [(&b"plum"[..], &b"purple"[..], 5, 1)])
        .unwrap();
}

/// A fresh store in a temporary directory.
fn fresh_store() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    (tmp, dir)
}

/// Files of `dir` whose names end with `suffix`, sorted.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    out.sort();
    out
}

/// Every file under `dir` with its contents.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        } else {
            out.insert(path.clone(), fs::read(&path).unwrap());
        }
    }
    out
}

fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

#[test]
fn listing_shows_streams_batches_and_wal_segments() {
    let (_tmp, dir) = fresh_store();
    let o = inspect(&[&dir]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for want in [
        "manifest generation",
        "stream \"fruit\"",
        "stream_no 0, durable yes, upper 2, since 0",
        "stream \"bytes\"",
        "stream_no 1, durable no, upper 1, since 0",
        "0000000000000000.batch",
        "0000000000000001.batch",
        "[0, 2)",
        "[0, 1)",
        "00000000000000000000.wal",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn listing_shows_batch_files_in_progress() {
    let (_tmp, dir) = fresh_store();
    std::fs::write(dir.join("00000000000000ff.batch.tmp"), b"being written").unwrap();
    let o = inspect(&[&dir]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("in progress (seals or merges being written): 1"),
        "{text}"
    );
    assert!(text.contains("00000000000000ff.batch.tmp  13 bytes"), "{text}");
    let o = inspect(&[dir.as_os_str(), OsStr::new("--json")]);
    let text = stdout(&o);
    assert!(
        text.contains("\"in_progress\":[{\"name\":\"00000000000000ff.batch.tmp\",\"bytes\":13}]"),
        "{text}"
    );
}

#[test]
fn listing_and_verify_cover_spilled_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    {
        let options = ddpersist::Options {
            memtable_budget_bytes: 4096,
            ..Default::default()
        };
        let store = ddpersist::Store::open_with(&dir, options).unwrap();
        store
            .create_stream("future", ddpersist::StreamOptions::default())
            .unwrap();
        for t in 0..100u64 {
            store.write("future", &[(t, vec![7u8; 64], 10 + t, 1)]).unwrap();
        }
        assert!(!store.manifest().stream("future").unwrap().spills.is_empty());
    }
    let o = inspect(&[&dir]);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("spilled runs (unsealed updates written out by the FutureLog)"),
        "{}",
        stdout(&o)
    );
    let o = inspect(&[dir.as_os_str(), OsStr::new("--json")]);
    assert!(stdout(&o).contains("\"spills\":[{"), "{}", stdout(&o));
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 0);
    assert!(stderr(&o).is_empty(), "warnings: {}", stderr(&o));
}

#[test]
fn listing_json_has_the_right_counts() {
    let (_tmp, dir) = fresh_store();
    let o = inspect(&[dir.as_os_str(), OsStr::new("--json")]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert_balanced(&text);
    for key in [
        "\"generation\":",
        "\"streams\":",
        "\"batches\":",
        "\"wal_segments\":",
        "\"durable\":false",
    ] {
        assert!(text.contains(key), "missing {key} in {text}");
    }
    let v = json::parse(&text).unwrap();
    let streams = v.at("streams").array();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].at("id").str(), "fruit");
    assert_eq!(streams[0].at("upper").num(), "2");
    let batch = &streams[0].at("batches").array()[0];
    assert_eq!(batch.at("file").str(), "0000000000000000.batch");
    assert_eq!(batch.at("update_count").num(), "3");
    assert_eq!(batch.at("description").at("upper").num(), "2");
    assert_eq!(streams[1].at("batches").array()[0].at("update_count").num(), "2");
    assert_eq!(v.at("wal_segments").array().len(), 1);
}

#[test]
fn batch_shows_the_written_updates() {
    let (_tmp, dir) = fresh_store();
    let batches = files_ending(&dir, ".batch");
    let o = inspect(&[OsStr::new("batch"), batches[0].as_os_str()]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for want in [
        "description [0, 2) since 0",
        "2 keys, 2 vals, 3 updates",
        "\"apple\"",
        "\"red\"",
        "\"pear\"",
        r#""green \"ripe\"""#,
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let apple_rows: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("\"apple\""))
        .collect();
    assert_eq!(apple_rows.len(), 2, "{text}");
    assert!(apple_rows[1].trim_end().ends_with("-1"), "{text}");
    // Non-UTF-8 and codec-encoded keys print as hex.
    let o = inspect(&[OsStr::new("batch"), batches[1].as_os_str()]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("0xff006b"), "{text}");
    assert!(text.contains("0x0000002a"), "{text}");
}

#[test]
fn batch_json_lists_every_update() {
    let (_tmp, dir) = fresh_store();
    let batches = files_ending(&dir, ".batch");
    let o = inspect(&[OsStr::new("batch"), OsStr::new("--json"), batches[0].as_os_str()]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert_balanced(&text);
    let v = json::parse(&text).unwrap();
    assert!(v.at("file").str().ends_with("0000000000000000.batch"));
    assert_eq!(v.at("description").at("lower").num(), "0");
    assert_eq!(v.at("update_count").num(), "3");
    let updates = v.at("updates").array();
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[0].at("key").at("utf8").str(), "apple");
    assert_eq!(updates[1].at("diff").num(), "-1");
    assert_eq!(updates[2].at("val").at("utf8").str(), "green \"ripe\"");
    let o = inspect(&[OsStr::new("batch"), OsStr::new("--json"), batches[1].as_os_str()]);
    let v = json::parse(&stdout(&o)).unwrap();
    let hex_keys: Vec<String> = v
        .at("updates")
        .array()
        .iter()
        .map(|u| u.at("key").at("hex").str())
        .collect();
    assert_eq!(hex_keys, vec!["0000002a".to_string(), "ff006b".to_string()]);
}

#[test]
fn verify_passes_on_a_good_store_and_changes_nothing() {
    let (_tmp, dir) = fresh_store();
    let before = tree(&dir);
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o).trim(),
        "ok: 2 streams, 2 batch files, 5 updates, 2 WAL records verified"
    );
    let o = inspect(&[OsStr::new("verify"), OsStr::new("--json"), dir.as_os_str()]);
    assert_exit(&o, 0);
    let v = json::parse(&stdout(&o)).unwrap();
    assert!(v.at("ok").bool());
    assert_eq!(v.at("batch_files").num(), "2");
    assert_eq!(v.at("updates").num(), "5");
    assert_eq!(v.at("wal_records").num(), "2");
    inspect(&[&dir]);
    assert_eq!(tree(&dir), before, "inspect changed the store");
}

#[test]
fn verify_fails_on_a_flipped_block_byte_naming_the_file() {
    let (_tmp, dir) = fresh_store();
    let batch = files_ending(&dir, ".batch").remove(0);
    flip_byte(&batch, 40);
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("0000000000000000.batch"), "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    let o = inspect(&[OsStr::new("verify"), OsStr::new("--json"), dir.as_os_str()]);
    assert_exit(&o, 1);
    let v = json::parse(&stdout(&o)).unwrap();
    assert!(!v.at("ok").bool());
    assert!(v.at("error").str().contains("0000000000000000.batch"));
    // Reading the damaged batch fails too, naming the file.
    let o = inspect(&[OsStr::new("batch"), batch.as_os_str()]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("0000000000000000.batch"));
}

#[test]
fn verify_fails_on_a_damaged_manifest_or_a_missing_batch() {
    let (_tmp, dir) = fresh_store();
    let batch = files_ending(&dir, ".batch").remove(1);
    fs::remove_file(&batch).unwrap();
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("0000000000000001.batch"), "{}", stderr(&o));
    flip_byte(&dir.join("MANIFEST"), 20);
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("MANIFEST"), "{}", stderr(&o));
    assert_exit(&inspect(&[&dir]), 1);
}

#[test]
fn verify_reports_a_torn_wal_tail_without_cutting_it() {
    let (_tmp, dir) = fresh_store();
    let segment = files_ending(&dir.join("wal"), ".wal").pop().unwrap();
    // A crash while writing the last record: its last 3 bytes and the sync mark (24 bytes) that follows
    // every synced flush never reached the file.
    let full = fs::metadata(&segment).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(full - 24 - 3)
        .unwrap();
    let len = fs::metadata(&segment).unwrap().len();
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 0);
    assert!(stderr(&o).contains("torn tail"), "{}", stderr(&o));
    assert!(stderr(&o).contains("never acknowledged"), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 WAL records verified"), "{}", stdout(&o));
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        len,
        "verify must not truncate"
    );
    let o = inspect(&[OsStr::new("verify"), OsStr::new("--json"), dir.as_os_str()]);
    let v = json::parse(&stdout(&o)).unwrap();
    assert!(v.at("ok").bool());
    assert!(v.at("torn_tail").at("file").str().ends_with(".wal"));
    // The store agrees: it opens, cutting the tail, and loses only the unsealed write.
    let store = Store::open(&dir).unwrap();
    assert!(store.recovery_report().torn_tail.is_some());
}

#[test]
fn verify_warns_about_files_the_manifest_does_not_name() {
    let (_tmp, dir) = fresh_store();
    fs::write(dir.join("00000000000000ff.batch"), b"left by a crash").unwrap();
    fs::write(dir.join("MANIFEST.tmp"), b"half a manifest").unwrap();
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 0);
    let err = stderr(&o);
    assert!(
        err.contains("00000000000000ff.batch is not named by the manifest"),
        "{err}"
    );
    assert!(err.contains("MANIFEST.tmp is not named by the manifest"), "{err}");
    let o = inspect(&[OsStr::new("verify"), OsStr::new("--json"), dir.as_os_str()]);
    assert_eq!(json::parse(&stdout(&o)).unwrap().at("warnings").array().len(), 2);
}

#[test]
fn verify_fails_on_a_damaged_wal_record_followed_by_valid_ones() {
    let (_tmp, dir) = fresh_store();
    let segment = files_ending(&dir.join("wal"), ".wal").pop().unwrap();
    flip_byte(&segment, 32 + 16);
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 1);
    let err = stderr(&o);
    assert!(err.contains("00000000000000000000.wal at offset 32"), "{err}");
}

#[test]
fn inspect_works_while_the_store_is_open() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write_bytes("s", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
    assert_exit(&inspect(&[tmp.path()]), 0);
    assert_exit(&inspect(&[OsStr::new("verify"), tmp.path().as_os_str()]), 0);
    store.seal("s", 1).unwrap();
}

#[test]
fn missing_or_odd_paths_are_errors_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    for args in [vec!["verify"], vec![], vec!["batch"]] {
        let mut full: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        full.push(missing.as_os_str());
        let o = inspect(&full);
        assert_exit(&o, 1);
        assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    }
    assert!(!missing.exists(), "inspect created the directory");
    let o = inspect(&[tmp.path()]);
    assert_exit(&o, 1);
    assert!(stderr(&o).contains("MANIFEST"), "{}", stderr(&o));
    let junk = tmp.path().join("junk.batch");
    fs::write(&junk, b"not a batch file").unwrap();
    assert_exit(&inspect(&[OsStr::new("batch"), junk.as_os_str()]), 1);
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["batch"],
        &["verify"],
        &["frobnicate", "x"],
        &["--bogus", "x"],
    ] {
        let o = inspect(args);
        assert_exit(&o, 2);
        assert!(stderr(&o).starts_with("inspect: "), "{}", stderr(&o));
        assert!(stderr(&o).contains("Usage:"), "{}", stderr(&o));
    }
    let o = inspect(&["--help"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("Usage:"));
}

/// Braces and brackets outside strings balance, and the text is one line.
fn assert_balanced(text: &str) {
    let (mut depth, mut in_string, mut escaped) = (0i64, false, false);
    for c in text.trim_end().chars() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_string = false,
            (false, _, '"') => in_string = true,
            (false, _, '{' | '[') => depth += 1,
            (false, _, '}' | ']') => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced: {text}");
    }
    assert_eq!(depth, 0, "unbalanced: {text}");
    assert!(!in_string);
    assert_eq!(text.trim_end().lines().count(), 1);
}

/// The JSON output, parsed with serde_json, read through short accessors that panic with the value.
mod json {
    pub use serde_json::Value;

    /// Parses one JSON document.
    pub fn parse(text: &str) -> Result<Value, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Accessors that panic (showing the value) when the shape is not the expected one.
    pub trait Get {
        fn at(&self, key: &str) -> &Value;
        fn array(&self) -> &[Value];
        fn str(&self) -> String;
        fn num(&self) -> String;
        fn bool(&self) -> bool;
    }

    impl Get for Value {
        fn at(&self, key: &str) -> &Value {
            self.as_object()
                .unwrap_or_else(|| panic!("{self} is not an object"))
                .get(key)
                .unwrap_or_else(|| panic!("no {key} in {self}"))
        }
        fn array(&self) -> &[Value] {
            self.as_array()
                .unwrap_or_else(|| panic!("{self} is not an array"))
        }
        fn str(&self) -> String {
            self.as_str()
                .unwrap_or_else(|| panic!("{self} is not a string"))
                .to_string()
        }
        fn num(&self) -> String {
            assert!(self.is_number(), "{self} is not a number");
            self.to_string()
        }
        fn bool(&self) -> bool {
            self.as_bool()
                .unwrap_or_else(|| panic!("{self} is not a boolean"))
        }
    }
}

#[test]
fn verify_of_a_live_store_never_reports_a_file_a_merge_just_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let options = ddpersist::Options {
        compaction_threads: 1,
        ..ddpersist::Options::default()
    };
    let store = Store::open_with(&dir, options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut t = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && t < 60 {
                let keys: Vec<String> = (0..3000).map(|i| format!("k{t}-{i}")).collect();
                store
                    .write_bytes("s", keys.iter().map(|k| (k.as_bytes(), &b"v"[..], t, 1)))
                    .unwrap();
                store.seal("s", t + 1).unwrap();
                t += 1;
            }
        })
    };
    let (mut runs, mut failures) = (0, Vec::new());
    while !writer.is_finished() && runs < 40 {
        let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
        if o.status.code() != Some(0) {
            failures.push(stderr(&o));
        }
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of 40 verifications failed: {:?}",
        failures.len(),
        failures.first()
    );
}

/// A store whose last seal is logged in the WAL and whose batch was never written (a crash between the
/// two): `inspect` reads it without writing anything — `verify` passes, counting the seal record among
/// the WAL records, and `get` finds the logged updates — and the store then opens with the seal done.
#[test]
fn a_logged_seal_without_its_batch_is_read_and_left_as_it_is() {
    use ddpersist::blob::{DirBlob, FaultyBlob};
    use ddpersist::wal::{FileLog, WalRecovery};
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    {
        let options = ddpersist::Options {
            compaction_threads: 0,
            ..Default::default()
        };
        fs::create_dir_all(&dir).unwrap();
        let blob = Arc::new(FaultyBlob::new(DirBlob::open(&dir).unwrap()));
        let log = FileLog::open(dir.join("wal"), 64 << 20, WalRecovery::Strict).unwrap();
        let store = Store::open_on(blob.clone(), Arc::new(log), options).unwrap();
        store.create_stream("fruit", StreamOptions::default()).unwrap();
        store
            .write_bytes("fruit", [(&b"apple"[..], &b"red"[..], 0, 1)])
            .unwrap();
        blob.fail_after(0);
        store.seal_logged("fruit", 1).unwrap();
        assert_eq!(store.upper("fruit").unwrap(), 0, "the batch was not written");
    }
    let before = tree(&dir);
    let o = inspect(&[OsStr::new("verify"), dir.as_os_str()]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("2 WAL records verified"), "{}", stdout(&o));
    let get = [
        OsStr::new("get"),
        dir.as_os_str(),
        OsStr::new("fruit"),
        OsStr::new("apple"),
        OsStr::new("--as-of"),
        OsStr::new("0"),
    ];
    let o = inspect(&get);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("\"red\""), "{}", stdout(&o));
    assert_eq!(tree(&dir), before, "inspect changed the store");
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.upper("fruit").unwrap(), 1, "the open completed the seal");
}
