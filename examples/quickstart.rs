//! Writes updates to two streams, seals them into batch files, reopens the store and prints what it
//! reads back.
//!
//! `cargo run --release --example quickstart [DIR]` — without DIR it uses a fresh temporary directory.
//! Either way the directory is left in place, so `cargo run --bin inspect -- DIR` can look at it.

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
            "sealed fruit {:?}: {} updates in {:?}",
            sealed.description, sealed.update_count, sealed.file
        );
        // This one stays unsealed: it lives in the WAL and comes back on reopen.
        store.write("fruit", &[("plum".to_string(), 60u64, t + 5, 1)])?;
        store.seal("stock", s + 1)?;
    }

    let store = Store::open(&dir)?;
    let report = store.recovery_report();
    println!(
        "reopened: {} WAL records replayed, {} updates unsealed",
        report.wal_records, report.updates_replayed
    );
    for (k, v, t, d) in store.snapshot("fruit")?.decode::<String, u64>()? {
        println!("fruit  {k:>6} {v:>4} @ {t} {d:+}");
    }
    for (k, v, t, d) in store.snapshot("stock")?.decode::<u32, String>()? {
        println!("stock  {k:>6} {v} @ {t} {d:+}");
    }
    println!("inspect it with: cargo run --bin inspect -- {}", dir.display());
    Ok(())
}
