//! README's "Using the store directly" snippet, as written there (the directory a temporary one), run
//! to its end: every call it shows returns `Ok`, and what it reads back is what it wrote.

use ddpersist::{Store, StreamOptions};

fn snippet(path: &std::path::Path) -> ddpersist::Result<()> {
    let store = Store::open(path)?; // creates the store if needed; locks it
    store.create_stream("orders", StreamOptions::default())?; // durable: writes are fsync'd in the WAL
    store.write("orders", &[("apple".to_string(), 3u64, 0, 1)])?; // (key, val, time, diff), typed by Codec
    store.seal("orders", 1)?; // times < 1 become one batch file
    let mut read = Vec::new();
    for (key, val, time, diff) in store.snapshot("orders")?.decode::<String, u64>()? {
        read.push((key, val, time, diff));
    }
    assert_eq!(read, [("apple".to_string(), 3, 0, 1)]);
    let prices: Vec<(u64, i64)> = store.get("orders", &"apple".to_string(), 0)?; // key as of a time
    assert_eq!(prices, [(3, 1)]);
    let first = store.first_time("orders", &"apple".to_string())?; // "seen this before, and when?"
    assert_eq!(first, Some(0));
    store.allow_compaction("orders", 1)?; // merges may advance times below 1: lookups as of them are refused,
                                          // first times read advanced to 1, updates that cancel out count for nothing
    assert!(store
        .get::<String, u64>("orders", &"apple".to_string(), 0)
        .is_err());
    assert_eq!(store.first_time("orders", &"apple".to_string())?, Some(1));
    store.append("orders", &[("pear".to_string(), 2u64, 1, 1)], 1, 2)?; // a sorted interval [1, 2) at once
    store.seal_logged("orders", 3)?; // durable through one WAL record; its batch is written in the background
    store.drop_stream("orders")?; // gone, with its files and unsealed updates (the id may be created again)
    assert!(store.streams().is_empty());
    Ok(())
}

#[test]
fn readme_store_snippet() {
    let dir = tempfile::tempdir().unwrap();
    snippet(&dir.path().join("persist")).unwrap();
}
