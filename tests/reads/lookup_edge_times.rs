//! Lookups at the top of the time range: updates at `u64::MAX - 1`, seals and appends up to `u64::MAX`
//! (the closed frontier), a since at `u64::MAX - 1`, merges and reopen.

use ddpersist::{Error, Options, Store, StreamOptions};

const TOP: u64 = u64::MAX - 1;

fn check(store: &Store, since: u64, what: &str) {
    if since <= 5 {
        assert_eq!(store.get::<u32, u32>("s", &1, 5).unwrap(), vec![(1, 1)], "{what}");
    } else {
        assert!(
            matches!(store.get::<u32, u32>("s", &1, 5), Err(Error::BadInput { .. })),
            "{what}"
        );
    }
    assert_eq!(
        store.get::<u32, u32>("s", &1, TOP).unwrap(),
        vec![(1, 1), (2, 1)],
        "{what}"
    );
    assert_eq!(
        store.get::<u32, u32>("s", &1, u64::MAX).unwrap(),
        vec![(1, 1), (2, 1)],
        "{what}"
    );
    assert_eq!(
        store.get::<u32, u32>("s", &2, TOP).unwrap(),
        vec![],
        "{what}: cancelled"
    );
    assert_eq!(
        store.first_time::<u32>("s", &1).unwrap(),
        Some(since.max(5)),
        "{what}"
    );
    // +1 at 6, -1 at TOP: 6, unless the since brings both to one time.
    let want = if since <= 6 { Some(6) } else { None };
    assert_eq!(store.first_time::<u32>("s", &2).unwrap(), want, "{what}");
    assert_eq!(store.first_time::<u32>("s", &3).unwrap(), Some(TOP), "{what}");
}

#[test]
fn lookups_at_the_top_of_time() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        compaction_threads: 0,
        ..Options::default()
    };
    let mut store = Store::open_with(dir.path(), options.clone()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store
        .write(
            "s",
            &[(1u32, 1u32, 5, 1), (2, 2, 6, 1), (2, 2, TOP, -1), (3, 3, TOP, 1)],
        )
        .unwrap();
    store.seal("s", 7).unwrap();
    store.append("s", &[(1u32, 2u32, TOP - 1, 1)], 7, TOP).unwrap();
    check(&store, 0, "unsealed top");
    store
        .seal("s", u64::MAX)
        .unwrap_or_else(|e| panic!("seal to the closed frontier: {e}"));
    check(&store, 0, "sealed to MAX");
    drop(store);
    store = Store::open_with(dir.path(), options.clone()).unwrap();
    check(&store, 0, "reopened");
    store.allow_compaction("s", TOP).unwrap();
    store.major_compact("s").unwrap();
    check(&store, TOP, "since at TOP, compacted");
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    check(&store, TOP, "since at TOP, reopened");
}
