//! `inspect get`, `scan` and `stats` (part of the `inspect` test target): their human and JSON output,
//! checked against what the tests wrote and what the Store API reads back, and that they change nothing.

use super::json::{self, Get as _};
use super::{assert_balanced, assert_exit, fresh_store, inspect, stderr, stdout, tree};
use ddpersist::{Store, StreamOptions};
use std::ffi::OsStr;
use std::fs;

/// Runs `inspect` with `args` followed by `--json`, expecting success, and parses its output.
fn inspect_json(args: &[&OsStr]) -> json::Value {
    let mut full = args.to_vec();
    full.push(OsStr::new("--json"));
    let o = inspect(&full);
    assert_exit(&o, 0);
    assert_balanced(&stdout(&o));
    json::parse(&stdout(&o)).unwrap()
}

/// `(val, diff)` pairs of a `get --json` output, vals as UTF-8 text.
fn json_values(v: &json::Value) -> Vec<(String, i64)> {
    let values = v.at("values").array();
    values
        .iter()
        .map(|p| (p.at("val").at("utf8").str(), p.at("diff").as_i64().unwrap()))
        .collect()
}

#[test]
fn get_reads_a_key_as_of_a_time_sealed_or_not() {
    let (_tmp, dir) = fresh_store();
    let before = tree(&dir);
    let get = |stream: &str, key: &str, as_of: &str, hex: bool| {
        let mut args = vec![
            OsStr::new("get"),
            dir.as_os_str(),
            OsStr::new(stream),
            OsStr::new(key),
        ];
        args.extend([OsStr::new("--as-of"), OsStr::new(as_of)]);
        if hex {
            args.push(OsStr::new("--hex"));
        }
        (inspect(&args), inspect_json(&args))
    };
    // Sealed: "apple" was red at time 0 and retracted at 1.
    let (o, v) = get("fruit", "apple", "0", false);
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("key \"apple\" as of 0: 1 value"),
        "{}",
        stdout(&o)
    );
    assert!(stdout(&o).contains("\"red\""), "{}", stdout(&o));
    assert_eq!(json_values(&v), vec![("red".to_string(), 1)]);
    assert_eq!(v.at("key").at("utf8").str(), "apple");
    assert_eq!(v.at("as_of").num(), "0");
    let (o, v) = get("fruit", "apple", "1", false);
    assert!(stdout(&o).contains("0 values"), "{}", stdout(&o));
    assert!(json_values(&v).is_empty());
    // Unsealed, replayed from the WAL: "plum" at 5.
    assert!(json_values(&get("fruit", "plum", "4", false).1).is_empty());
    assert_eq!(
        json_values(&get("fruit", "plum", "5", false).1),
        vec![("purple".to_string(), 1)]
    );
    let (o, v) = get("fruit", "pear", "9", false);
    assert!(stdout(&o).contains(r#""green \"ripe\"""#), "{}", stdout(&o));
    assert_eq!(json_values(&v), vec![("green \"ripe\"".to_string(), 2)]);
    // A raw key by its hex digits; the codec-encoded key's val as the store reads it.
    assert_eq!(
        json_values(&get("bytes", "ff006b", "0", true).1),
        vec![("v".to_string(), 7)]
    );
    let encoded = get("bytes", "0x0000002a", "0", true).1;
    assert_eq!(tree(&dir), before, "get changed the store");
    let store = Store::open(&dir).unwrap();
    let want: Vec<(String, i64)> = store.get("bytes", &42u32, 0).unwrap();
    let vals = store.get_bytes("bytes", &42u32.to_be_bytes(), 0).unwrap();
    let val = &encoded.at("values").array()[0];
    let shown = val.at("val").as_object().unwrap();
    let bytes = match (shown.get("utf8"), shown.get("hex")) {
        (Some(text), _) => text.as_str().unwrap().as_bytes().to_vec(),
        (_, Some(hex)) => (0..hex.as_str().unwrap().len() / 2)
            .map(|i| u8::from_str_radix(&hex.as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
            .collect(),
        _ => panic!("{val}"),
    };
    assert_eq!(vec![(bytes, val.at("diff").as_i64().unwrap())], vals);
    assert_eq!(want, vec![("forty-two".to_string(), 1)]);
}

#[test]
fn get_and_scan_errors() {
    let (_tmp, dir) = fresh_store();
    let d = dir.as_os_str();
    let o = inspect(&[
        OsStr::new("get"),
        d,
        OsStr::new("nope"),
        OsStr::new("k"),
        OsStr::new("--as-of"),
        OsStr::new("1"),
    ]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).starts_with("inspect: ") && stderr(&o).contains("nope"),
        "{}",
        stderr(&o)
    );
    let o = inspect(&[OsStr::new("scan"), d, OsStr::new("nope")]);
    assert_exit(&o, 1);
    let o = inspect(&[
        OsStr::new("get"),
        d,
        OsStr::new("fruit"),
        OsStr::new("zz"),
        OsStr::new("--hex"),
        OsStr::new("--as-of"),
        OsStr::new("1"),
    ]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("not hex"), "{}", stderr(&o));
    // --as-of is required.
    assert_exit(
        &inspect(&[OsStr::new("get"), d, OsStr::new("fruit"), OsStr::new("apple")]),
        2,
    );
}

/// `(key, val, time, diff)` of a `scan --json` output, keys and vals as UTF-8 text.
fn scanned(v: &json::Value) -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
    let text = |b: &json::Value| b.at("utf8").str().into_bytes();
    v.at("updates")
        .array()
        .iter()
        .map(|u| {
            (
                text(u.at("key")),
                text(u.at("val")),
                u.at("time").as_u64().unwrap(),
                u.at("diff").as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn scan_lists_a_streams_updates_in_key_order() {
    let (_tmp, dir) = fresh_store();
    let before = tree(&dir);
    let scan = |extra: &[&str]| {
        let mut args = vec![OsStr::new("scan"), dir.as_os_str(), OsStr::new("fruit")];
        args.extend(extra.iter().map(OsStr::new));
        (inspect(&args), inspect_json(&args))
    };
    let (o, all) = scan(&[]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with('"')).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(
        rows[0].contains("\"apple\"") && rows[3].contains("\"plum\""),
        "{text}"
    );
    assert!(
        rows[3].trim_end().ends_with("no") && rows[0].trim_end().ends_with("yes"),
        "{text}"
    );
    assert!(text.contains("4 updates"), "{text}");
    // JSON: what the Store API reads, and which updates are sealed.
    let sealed: Vec<bool> = all
        .at("updates")
        .array()
        .iter()
        .map(|u| u.at("sealed").bool())
        .collect();
    assert_eq!(sealed, vec![true, true, true, false]);
    assert_eq!(all.at("upper").num(), "2");
    // Ranges: --from inclusive, --to exclusive, --limit.
    let keys = |v: &json::Value| {
        scanned(v)
            .into_iter()
            .map(|u| String::from_utf8(u.0).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&scan(&["--from", "pear", "--to", "plum"]).1), vec!["pear"]);
    assert_eq!(keys(&scan(&["--from", "b"]).1), vec!["pear", "plum"]);
    assert_eq!(keys(&scan(&["--to", "pear"]).1), vec!["apple", "apple"]);
    assert_eq!(keys(&scan(&["--from", "70", "--hex"]).1), vec!["pear", "plum"]);
    let (o, limited) = scan(&["--limit", "1"]);
    assert_eq!(keys(&limited), vec!["apple"]);
    assert!(stdout(&o).contains("1 update (the limit)"), "{}", stdout(&o));
    assert_eq!(tree(&dir), before, "scan changed the store");
    let store = Store::open(&dir).unwrap();
    assert_eq!(scanned(&all), store.snapshot("fruit").unwrap().to_vec().unwrap());
}

#[test]
fn get_and_scan_see_spilled_runs_and_a_store_open_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let options = ddpersist::Options {
        memtable_budget_bytes: 4096,
        ..Default::default()
    };
    let store = Store::open_with(tmp.path(), options).unwrap();
    store.create_stream("future", StreamOptions::default()).unwrap();
    for t in 0..100u64 {
        store
            .write_bytes(
                "future",
                [(format!("k{t:03}").as_bytes(), &[b'v'; 64][..], 10 + t, 1)],
            )
            .unwrap();
    }
    assert!(!store.manifest().stream("future").unwrap().spills.is_empty());
    // A seal or merge in progress elsewhere: the view hides it, and leaves it alone.
    fs::write(tmp.path().join("00000000000000ff.batch.tmp"), b"being written").unwrap();
    let before = tree(tmp.path());
    let d = tmp.path().as_os_str();
    let v = inspect_json(&[OsStr::new("scan"), d, OsStr::new("future")]);
    assert_eq!(scanned(&v), store.snapshot("future").unwrap().to_vec().unwrap());
    assert_eq!(scanned(&v).len(), 100);
    let v = inspect_json(&[
        OsStr::new("get"),
        d,
        OsStr::new("future"),
        OsStr::new("k042"),
        OsStr::new("--as-of"),
        OsStr::new("60"),
    ]);
    assert_eq!(json_values(&v), vec![("v".repeat(64), 1)]);
    let v = inspect_json(&[OsStr::new("stats"), d]);
    let spilled = v.at("streams").array()[0]
        .at("spilled_runs")
        .at("count")
        .as_u64()
        .unwrap();
    assert_eq!(
        spilled as usize,
        store.manifest().stream("future").unwrap().spills.len()
    );
    assert_eq!(tree(tmp.path()), before, "inspect changed the store");
}

#[test]
fn stats_reports_levels_sizes_and_amplification() {
    let (_tmp, dir) = fresh_store();
    let before = tree(&dir);
    let o = inspect(&[OsStr::new("stats"), dir.as_os_str()]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    for want in [
        "2 streams",
        "2 batch files",
        "space amplification",
        "write amplification: not known",
        "stream \"fruit\": batches by level",
        "SPACE AMP",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let v = inspect_json(&[OsStr::new("stats"), dir.as_os_str()]);
    assert!(v.at("write_amplification").is_null());
    assert_eq!(tree(&dir), before, "stats changed the store");
    // Against what the Store API reads.
    let store = Store::open(&dir).unwrap();
    let manifest = store.manifest();
    let fruit = &v.at("streams").array()[0];
    assert_eq!(fruit.at("id").str(), "fruit");
    let meta = manifest.stream("fruit").unwrap();
    let n = |v: &json::Value| v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"));
    assert_eq!(n(fruit.at("batches").at("count")), 1);
    assert_eq!(n(fruit.at("batches").at("updates")), 3);
    assert_eq!(n(fruit.at("batches").at("bytes")), meta.batches[0].size_bytes);
    let level = &fruit.at("levels").array()[0];
    assert_eq!(n(level.at("level")), u64::from(meta.batches[0].level));
    assert_eq!(n(level.at("batches")), 1);
    let snapshot = store.snapshot("fruit").unwrap().to_vec().unwrap();
    let logical: u64 = snapshot
        .iter()
        .map(|(k, v, _, _)| (k.len() + v.len() + 16) as u64)
        .sum();
    assert_eq!(n(fruit.at("live_updates")), snapshot.len() as u64);
    assert_eq!(n(fruit.at("keys")), 3);
    assert_eq!(n(fruit.at("stored_updates")), 4, "3 sealed and 1 unsealed");
    assert_eq!(n(fruit.at("wal").at("records")), 2);
    assert_eq!(n(fruit.at("logical_bytes")), logical);
    let disk = meta.batches[0].size_bytes + n(fruit.at("wal").at("bytes"));
    assert_eq!(n(fruit.at("disk_bytes")), disk);
    let amp = fruit.at("space_amplification").as_f64().unwrap();
    assert!((amp - disk as f64 / logical as f64).abs() < 1e-9, "{amp}");
    // The stream that is not durable has nothing in the WAL.
    let bytes = &v.at("streams").array()[1];
    assert_eq!(n(bytes.at("wal").at("records")), 0);
    assert_eq!(n(bytes.at("live_updates")), 2);
    assert_eq!(n(v.at("totals").at("batches").at("count")), 2);
}

#[test]
fn get_and_scan_read_and_show_typed_keys_and_vals() {
    // A typed stream, as the quickstart and typed arrangements write it: `String` keys (stored with their
    // `00 01` terminator), `String` and `u64` vals.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir).unwrap();
    store.create_stream("veg", StreamOptions::default()).unwrap();
    store.create_stream("counts", StreamOptions::default()).unwrap();
    let veg = [
        ("apple".to_string(), "warehouse-a".to_string(), 0, 2),
        ("leek".to_string(), "warehouse-b".to_string(), 1, 1),
    ];
    store.write("veg", &veg).unwrap();
    store
        .write("counts", &[(7u64, -3i64, 0, 1), (300u64, 5i64, 0, 1)])
        .unwrap();
    store.seal("veg", 2).unwrap();
    drop(store);
    let d = dir.as_os_str();
    // ["get" or "scan", DIR, rest...]
    let args = |cmd: &str, rest: &[&str]| -> Vec<std::ffi::OsString> {
        let mut v = vec![cmd.into(), d.to_owned()];
        v.extend(rest.iter().map(|s| s.into()));
        v
    };

    // Raw text finds nothing: the stored key is "apple" 00 01.
    let o = inspect(&args("get", &["veg", "apple", "--as-of", "5"]));
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("0 values"), "{}", stdout(&o));
    // With --key-as string it is found, and --val-as string shows the val as text.
    let typed = ["--key-as", "string", "--val-as", "string"];
    let mut get_args = args("get", &["veg", "apple", "--as-of", "5"]);
    get_args.extend(typed.iter().map(|s| s.into()));
    let o = inspect(&get_args);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("key \"apple\" as of 5: 1 value"), "{text}");
    assert!(text.contains("\"warehouse-a\"") && text.contains('2'), "{text}");
    get_args.push("--json".into());
    let o = inspect(&get_args);
    assert_exit(&o, 0);
    let v = json::parse(&stdout(&o)).unwrap();
    assert_eq!(v.at("key").at("string").str(), "apple");
    let values = v.at("values").array();
    assert_eq!(values.len(), 1);
    assert_eq!(values[0].at("val").at("string").str(), "warehouse-a");

    // scan: --from encoded as a String key; keys and vals decoded.
    let mut scan_args = args("scan", &["veg", "--from", "b"]);
    scan_args.extend(typed.iter().map(|s| s.into()));
    let o = inspect(&scan_args);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("\"leek\"") && text.contains("\"warehouse-b\""),
        "{text}"
    );
    assert!(!text.contains("apple") && text.contains("1 update"), "{text}");

    // u64 keys and i64 vals; a key that is not a u64 is a usage error (exit 2).
    let o = inspect(&args(
        "get",
        &[
            "counts", "300", "--as-of", "0", "--key-as", "u64", "--val-as", "i64",
        ],
    ));
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("key 300 as of 0: 1 value"), "{}", stdout(&o));
    let o = inspect(&args("scan", &["counts", "--key-as", "u64", "--val-as", "i64"]));
    assert_exit(&o, 0);
    assert!(
        stdout(&o).contains("-3") && stdout(&o).contains("300"),
        "{}",
        stdout(&o)
    );
    let o = inspect(&args("get", &["counts", "x", "--as-of", "0", "--key-as", "u64"]));
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("not a u64"), "{}", stderr(&o));
    // Vals that do not decode as the codec are shown raw, not hidden.
    let o = inspect(&args("scan", &["veg", "--val-as", "u64"]));
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("0x"), "{}", stdout(&o));
}
