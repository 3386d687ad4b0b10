//! `inspect` run again and again on a healthy store that another thread of this process keeps changing:
//! durable writes, plain and logged seals, merges (fan-in 2, background), spills, WAL segments rolled
//! over and recycled, a stream dropped and created again, the since raised. A healthy store is never
//! reported damaged: every command exits 0.

use ddpersist::{Options, Store, StreamOptions};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn inspect_on_a_store_changing_under_it_reports_no_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let options = Options {
        merge_fan_in: 2,
        memtable_budget_bytes: 8 << 10,
        wal_segment_bytes: 8 << 10,
        max_wal_bytes: Some(64 << 10),
        logged_flush_bytes: 4 << 10,
        logged_flush_delay: std::time::Duration::from_millis(1),
        ..Options::default()
    };
    let store = Store::open_with(&dir, options).unwrap();
    store.create_stream("a", StreamOptions::default()).unwrap();
    store.write("a", &[("k".to_string(), 0u64, 0, 1)]).unwrap();
    store.seal("a", 1).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut t = 1u64;
            while !stop.load(Ordering::SeqCst) {
                let rows: Vec<(String, u64, u64, i64)> = (0..20)
                    .map(|i| (format!("k{:03}", (t * 7 + i) % 97), t, t, 1))
                    .collect();
                store.write("a", &rows).unwrap();
                if t.is_multiple_of(3) {
                    store.seal_logged("a", t + 1).unwrap();
                } else if t % 3 == 1 {
                    store.seal("a", t + 1).unwrap();
                }
                if t.is_multiple_of(10) {
                    store.allow_compaction("a", t - 5).unwrap();
                }
                if t.is_multiple_of(15) {
                    let _ = store.drop_stream("b");
                    store.create_stream("b", StreamOptions::default()).unwrap();
                    store.write("b", &[(t, "x".to_string(), 0, 1)]).unwrap();
                }
                t += 1;
            }
            t
        })
    };
    let commands: [&[&str]; 5] = [
        &["verify", "DIR"],
        &["list", "DIR"],
        &["stats", "DIR"],
        &["scan", "DIR", "a", "--limit", "10"],
        &[
            "get",
            "DIR",
            "a",
            "k001",
            "--as-of",
            "18446744073709551614",
            "--key-as",
            "string",
        ],
    ];
    let start = std::time::Instant::now();
    let mut runs = 0;
    let mut failures = Vec::new();
    while start.elapsed() < std::time::Duration::from_millis(2000) {
        let args = commands[runs % commands.len()];
        let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
            .args(args.iter().map(|a| a.replace("DIR", dir.to_str().unwrap())))
            .output()
            .unwrap();
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{args:?}: {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        runs += 1;
    }
    stop.store(true, Ordering::SeqCst);
    let times = writer.join().unwrap();
    assert!(times > 20, "{times}");
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed: {failures:#?}",
        failures.len()
    );
}
