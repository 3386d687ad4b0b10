//! Writes updates to two streams, seals them into batch files, reopens the store and prints what it
//! reads back.
//!
//! `cargo run --release --example quickstart [DIR]` — without DIR it uses a fresh temporary directory.
//! Either way the directory is left in place, so `cargo run --bin inspect -- DIR` can look at it. Run it
//! again on the same DIR: each run writes its updates at times from the stream's upper on, so the second
//! run reads back the first run's updates and its own (the same keys again, at later times).

use ddpersist::{Store, StreamOptions};

fn main() -> ddpersist::Result<()> {
    let dir = match std::env::args().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("ddpersist-quickstart-")
                .tempdir()
                .map_err(|e| ddpersist::Error::Io {
                    context: "create temporary directory".into(),
                    source: e,
                })?;
            tmp.keep()
        }
    };
    println!("store directory: {}", dir.display());

    {
        let store = Store::open(&dir)?;
        for id in ["fruit", "stock"] {
            if !store.has_stream(id) {
                store.create_stream(id, StreamOptions::default())?;
            }
        }
        let t = store.upper("fruit")?;
        // (key, val, time, diff): "apple" is added at t, replaced by a new price at t + 1.
        store.write(
            "fruit",
            &[
                ("apple".to_string(), 120u64, t, 1),
                ("pear".to_string(), 90u64, t, 1),
                ("apple".to_string(), 120u64, t + 1, -1),
                ("apple".to_string(), 135u64, t + 1, 1),
            ],
        )?;
        let s = store.upper("stock")?;
        store.write(
            "stock",
            &[
                (1u32, "warehouse-a".to_string(), s, 40),
                (2u32, "warehouse-b".to_string(), s, 7),
            ],
        )?;
        let sealed = store.seal("fruit", t + 2)?;
        println!(
            "sealed stream \"fruit\" {:?}: {} updates in {:?}",
            sealed.description, sealed.update_count, sealed.file
        );
        // This one stays unsealed: it lives in the WAL and comes back on reopen.
        store.write("fruit", &[("plum".to_string(), 60u64, t + 5, 1)])?;
        store.seal("stock", s + 1)?;
    }

    let store = Store::open(&dir)?;
    let report = store.recovery_report();
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    println!(
        "reopened: {} WAL record{} replayed, {} update{} unsealed",
        report.wal_records,
        plural(report.wal_records),
        report.updates_replayed,
        plural(report.updates_replayed)
    );
    for (k, v, t, d) in store.snapshot("fruit")?.decode::<String, u64>()? {
        println!("fruit  {k:>6} {v:>4} @ {t} {d:+}");
    }
    for (k, v, t, d) in store.snapshot("stock")?.decode::<u32, String>()? {
        println!("stock  {k:>6} {v} @ {t} {d:+}");
    }
    println!("inspect it with: cargo run --bin inspect -- {}", dir.display());
    // Typed streams store a `String` key as its bytes then `00 01`: `--key-as string` encodes the key so.
    println!(
        "look up a key: cargo run --bin inspect -- get {} fruit apple --as-of {} --key-as string --val-as u64",
        dir.display(),
        store.upper("fruit")?
    );
    Ok(())
}
