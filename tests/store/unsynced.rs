//! `write_bytes_unsynced` and the WAL's zero-fill under crashes (regressions from a review): a spill or a
//! seal makes every earlier write durable first, so an acknowledged write is never skipped on replay and a
//! seal never keeps half of an unsynced write; and a power loss that drops pages of an unsynced flush over
//! a zero-filled WAL leaves a store that opens, losing only unacknowledged writes.

use crate::common;

use common::distinct_keys;
use ddpersist::{Options, Store, StreamOptions};

#[test]
fn a_spill_after_an_unsynced_write_never_hides_a_later_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        memtable_budget_bytes: 4096,
        ..Options::default()
    };
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("big{i:04}").into_bytes()).collect();
        // Over the budget: spills, committing the runs with the WAL position they cover.
        store
            .write_bytes_unsynced("s", keys.iter().map(|k| (&k[..], &b"v"[..], 10, 1)))
            .unwrap();
        // Dropped without a sync (as a crash would).
    }
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        assert_eq!(
            distinct_keys(&store, "s").len(),
            200,
            "spilled updates are in runs"
        );
        store
            .write_bytes("s", [(&b"acked"[..], &b"v"[..], 10, 1)])
            .unwrap();
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(
        distinct_keys(&store, "s").contains(&b"acked".to_vec()),
        "acknowledged write lost after restart"
    );
}

#[test]
fn a_seal_makes_every_earlier_unsynced_write_durable_whole() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store
            .write_bytes_unsynced(
                "s",
                [(&b"early"[..], &b"v"[..], 5, 1), (&b"late"[..], &b"v"[..], 15, 1)],
            )
            .unwrap();
        store.seal("s", 10).unwrap();
    } // no sync
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        distinct_keys(&store, "s"),
        vec![b"early".to_vec(), b"late".to_vec()]
    );
}

#[test]
fn zero_filled_wal_opens_after_a_power_loss_dropped_pages_of_an_unsynced_flush() {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        wal_zero_fill: true,
        ..Options::default()
    };
    let big = vec![b'x'; 10_000];
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write_bytes("s", [(&b"a"[..], &big[..], 10, 1)]).unwrap();
        // Let the filler zero ahead of the log (it starts at the first write).
        std::thread::sleep(std::time::Duration::from_millis(500));
        store
            .write_bytes_unsynced("s", [(&b"b"[..], &big[..], 10, 1)])
            .unwrap();
        let t = store
            .write_bytes_unsynced("s", [(&b"c"[..], &big[..], 10, 1)])
            .unwrap();
        store.sync(t).unwrap(); // one write + fdatasync for b and c
    }
    // Simulate a power loss during that flush: the pages from b's start up to c's page never reached the
    // disk (they still hold the filler's zeros); c's page did.
    let wal = dir.path().join("wal");
    let seg = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let magic = 0x4C50_4444u32.to_le_bytes();
    let starts: Vec<usize> = (12..bytes.len() - 4)
        .filter(|&p| bytes[p..p + 4] == magic)
        .map(|p| p - 12)
        .collect();
    assert_eq!(starts.len(), 3, "{starts:?}");
    let (b, c) = (starts[1], starts[2]);
    let page_of_c = c / 4096 * 4096;
    assert!(page_of_c > b);
    bytes[b..page_of_c].fill(0);
    // The flush's fdatasync never returned, so the sync mark that follows an acknowledged flush was never
    // written either (it holds the filler's zeros too).
    let mark = 0x4D50_4444u32.to_le_bytes();
    let last_mark = (c..bytes.len() - 4)
        .rev()
        .find(|&p| bytes[p..p + 4] == mark)
        .unwrap()
        - 12;
    bytes[last_mark..last_mark + 24].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert!(
        store.recovery_report().torn_tail.is_some(),
        "the lost flush is reported"
    );
    assert_eq!(
        distinct_keys(&store, "s"),
        vec![b"a".to_vec()],
        "only the acknowledged write is left"
    );
}
