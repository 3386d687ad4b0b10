//! `inspect get` ("what a reader of the store sees", unsealed updates included: spilled runs and WAL
//! records of durable streams) against the live store's own `get`, on a store held open with logged
//! seals not flushed yet, spilled runs, unsealed WAL updates and an advanced since.

use ddpersist::{Options, Store, StreamOptions};
use std::process::Command;

fn inspect_get(dir: &std::path::Path, stream: &str, key: u64, as_of: u64) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .args(["get", "--json"])
        .arg(dir)
        .args([
            stream,
            &key.to_string(),
            "--as-of",
            &as_of.to_string(),
            "--key-as",
            "u64",
            "--val-as",
            "u64",
        ])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn inspect_get_matches_live_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            compaction_threads: 1,
            memtable_budget_bytes: 2000,
            logged_flush_bytes: 1 << 20,
            logged_flush_delay: std::time::Duration::from_secs(3600),
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    for t in 0..30u64 {
        let ups: Vec<(u64, u64, u64, i64)> = (0..20u64)
            .map(|i| ((i * 7 + t) % 11, t % 4, t, if (i + t) % 3 == 0 { -1 } else { 1 }))
            .collect();
        store.write("s", &ups).unwrap();
        match t % 10 {
            3 => drop(store.seal("s", t + 1).unwrap()),
            5 | 7 => store.seal_logged("s", t + 1).unwrap(),
            _ => {}
        }
        if t == 12 {
            store.allow_compaction("s", 6).unwrap();
        }
    }
    let mut mismatches = Vec::new();
    for key in 0..11u64 {
        for as_of in [6u64, 10, 14, 16, 18, 25, 29, 40] {
            let want: Vec<(u64, i64)> = store.get::<u64, u64>("s", &key, as_of).unwrap();
            let (code, stdout, stderr) = inspect_get(dir.path(), "s", key, as_of);
            if code != Some(0) {
                mismatches.push(format!("key {key} as of {as_of}: exit {code:?}: {stderr}"));
                continue;
            }
            let doc: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
            let got: Vec<(u64, i64)> = doc["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| {
                    let val = &v["val"];
                    let val = val["u64"]
                        .as_u64()
                        .or_else(|| val.as_u64())
                        .unwrap_or_else(|| panic!("val {val}"));
                    (val, v["diff"].as_i64().unwrap())
                })
                .collect();
            if got != want {
                mismatches.push(format!(
                    "key {key} as of {as_of}: inspect {got:?}, store {want:?}"
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
