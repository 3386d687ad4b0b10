//! From adversarial round 3 (all held): Store API edges (append with empty intervals, drop/recreate, extreme times, reopen).

use ddpersist::{Store, StreamOptions};

#[test]
fn append_edges_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let none: &[(String, u64, u64, i64)] = &[];
    // An empty interval [0, 0): refused, nothing changes.
    assert!(store.append("s", none, 0, 0).is_err());
    assert_eq!(store.upper("s").unwrap(), 0);
    // An empty append advances the upper.
    store.append("s", none, 0, 5).unwrap();
    assert_eq!(store.upper("s").unwrap(), 5);
    // A write beyond, then an append below it, then a seal.
    store.write("s", &[("b".to_string(), 1u64, 7, 1)]).unwrap();
    store.append("s", &[("a".to_string(), 2u64, 5, 1)], 5, 6).unwrap();
    store.seal("s", 8).unwrap();
    let first = store.first_time("s", &"b".to_string()).unwrap();
    assert_eq!(first, Some(7));
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 8);
    let snap: Vec<(String, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(snap, vec![("a".to_string(), 2, 5, 1), ("b".to_string(), 1, 7, 1)]);
    // Compaction then lookups.
    store.allow_compaction("s", 8).unwrap();
    store.major_compact("s").unwrap();
    assert_eq!(store.first_time("s", &"a".to_string()).unwrap(), Some(8));
    let got: Vec<(u64, i64)> = store.get("s", &"a".to_string(), 8).unwrap();
    assert_eq!(got, vec![(2, 1)]);
    assert!(store.get::<String, u64>("s", &"a".to_string(), 7).is_err());
}

#[test]
fn dropped_durable_unsealed_writes_do_not_reappear_in_a_recreated_stream_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[("old".to_string(), 1u64, 3, 1)]).unwrap();
        store.seal_logged("s", 2).unwrap();
        store.drop_stream("s").unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[("new".to_string(), 1u64, 0, 1)]).unwrap();
        // No close: drop (what a crash leaves in the WAL is the same records).
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 0, "the new stream was never sealed");
    let snap: Vec<(String, u64, u64, i64)> = store.snapshot("s").unwrap().decode().unwrap();
    assert_eq!(snap, vec![("new".to_string(), 1, 0, 1)]);
}

#[test]
fn time_just_below_closed_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let t = u64::MAX - 1;
    store.write("s", &[("k".to_string(), 1u64, t, 1)]).unwrap();
    assert!(store.write("s", &[("k".to_string(), 1u64, u64::MAX, 1)]).is_err());
    let r = store.seal("s", u64::MAX);
    eprintln!("seal to u64::MAX: {r:?}");
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let got: Vec<(u64, i64)> = store.get("s", &"k".to_string(), t).unwrap();
    assert_eq!(got, vec![(1, 1)]);
    assert_eq!(store.first_time("s", &"k".to_string()).unwrap(), Some(t));
}

#[test]
fn many_streams_drop_half_recreate_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..300 {
            let id = format!("s{i}");
            store
                .create_stream(&id, StreamOptions { durable: i % 2 == 0 })
                .unwrap();
            store.write(&id, &[(i as u64, i as u64, 0, 1)]).unwrap();
            store.seal(&id, 1).unwrap();
        }
        for i in (0..300).step_by(3) {
            store.drop_stream(&format!("s{i}")).unwrap();
        }
        for i in (0..300).step_by(6) {
            let id = format!("s{i}");
            store.create_stream(&id, StreamOptions::default()).unwrap();
            store.write(&id, &[(i as u64 + 1000, 0u64, 5, 2)]).unwrap();
        }
    }
    let store = Store::open(dir.path()).unwrap();
    for i in 0..300u64 {
        let id = format!("s{i}");
        let want: Vec<(u64, u64, u64, i64)> = if i % 6 == 0 {
            vec![(i + 1000, 0, 5, 2)]
        } else if i % 3 == 0 {
            assert!(!store.has_stream(&id), "{id}");
            continue;
        } else {
            vec![(i, i, 0, 1)]
        };
        let got: Vec<(u64, u64, u64, i64)> = store.snapshot(&id).unwrap().decode().unwrap();
        assert_eq!(got, want, "{id}");
    }
}
