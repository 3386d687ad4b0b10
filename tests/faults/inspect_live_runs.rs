//! `inspect` on a live store (it takes no lock and "works on a store that is open elsewhere"): while a
//! writer thread creates streams, writes to them (WAL records), seals, logs seals, merges and drops
//! streams, every `inspect verify` / list / stats run must succeed (exit 0): the store is healthy.

use ddpersist::{Options, Store, StreamOptions};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn live(churn_streams: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            merge_fan_in: 2,
            logged_flush_bytes: 0,
            wal_segment_bytes: 4096,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("base", StreamOptions::default()).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut t = 0u64;
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ups: Vec<(u64, String, u64, i64)> = (0..30)
                    .map(|i| (i * 13 % 97 + t, format!("v{t}"), t, 1))
                    .collect();
                store.write("base", &ups).unwrap();
                if t.is_multiple_of(2) {
                    store.seal_logged("base", t + 1).unwrap();
                } else {
                    store.seal("base", t + 1).unwrap();
                }
                if churn_streams {
                    let id = format!("tmp{n}");
                    store.create_stream(&id, StreamOptions::default()).unwrap();
                    store.write(&id, &[(1u64, 1u64, 0, 1)]).unwrap();
                    if n.is_multiple_of(2) {
                        store.seal(&id, 1).unwrap();
                    }
                    if n >= 1 {
                        store.drop_stream(&format!("tmp{}", n - 1)).unwrap();
                    }
                    n += 1;
                }
                t += 1;
            }
            t
        })
    };
    let mut failures = Vec::new();
    for round in 0..25 {
        for args in [vec!["verify"], vec!["list"], vec!["stats"]] {
            let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
                .args(&args)
                .arg(dir.path())
                .output()
                .unwrap();
            if !out.status.success() {
                failures.push(format!(
                    "round {round} `inspect {}` exited {:?}: {}{}",
                    args.join(" "),
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .rev()
                        .take(3)
                        .collect::<Vec<_>>()
                        .join(" | ")
                ));
            }
        }
    }
    stop.store(true, Ordering::SeqCst);
    let times = writer.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures on a healthy live store (writer reached {times}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn inspect_live_one_stream() {
    live(false);
}

#[test]
fn inspect_live_streams_created_and_dropped() {
    live(true);
}
