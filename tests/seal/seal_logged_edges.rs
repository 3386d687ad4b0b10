//! Edge values of logged seals (`Store::seal_logged`) left to the flush thread: the closed frontier
//! (`u64::MAX`) as a logged upper, times just below it, a seal that does not advance, seals of a stream
//! dropped and created again before their flush, and a reopen after each.

use ddpersist::{Options, Store, StreamOptions};
use std::time::Duration;

fn options() -> Options {
    Options {
        logged_flush_delay: Duration::from_secs(3600),
        ..Options::default()
    }
}

#[test]
fn a_logged_seal_to_the_closed_frontier() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store
            .write("s", &[(1u64, 1u64, u64::MAX - 1, 1i64), (2, 2, 0, 1)])
            .unwrap();
        let r = store.seal_logged("s", u64::MAX);
        if let Err(e) = &r {
            eprintln!("seal_logged to u64::MAX refused: {e}");
            // Refused as the reserved frontier: nothing changed.
            assert_eq!(store.upper("s").unwrap(), 0);
            return;
        }
        assert!(store.write("s", &[(3u64, 3u64, u64::MAX - 1, 1i64)]).is_err());
        assert!(store.seal_logged("s", u64::MAX).is_err(), "does not advance");
        assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap().len(), 2);
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.upper("s").unwrap(), u64::MAX);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap().len(), 2);
    assert_eq!(store.recovery_report().updates_replayed, 0, "flushed at close");
}

#[test]
fn logged_seals_of_a_stream_dropped_before_their_flush_do_not_reach_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(dir.path(), options()).unwrap();
        for round in 0..5u64 {
            store.create_stream("s", StreamOptions::default()).unwrap();
            store.write("s", &[(round, round, 0, 1i64)]).unwrap();
            store.seal_logged("s", 10 + round).unwrap();
            store.drop_stream("s").unwrap();
        }
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.write("s", &[(99u64, 99u64, 0, 1i64)]).unwrap();
        assert_eq!(store.upper("s").unwrap(), 0);
        store.seal_logged("s", 1).unwrap();
    }
    let store = Store::open_with(dir.path(), options()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 1);
    let got = store.snapshot("s").unwrap().decode::<u64, u64>().unwrap();
    assert_eq!(got, vec![(99, 99, 0, 1)]);
}
