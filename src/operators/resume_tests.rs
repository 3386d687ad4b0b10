//! Unit tests of the restart protocol's store-side steps (`operators::resume`): replays as of the since, and
//! the layout checks at build and before the first seal.

mod replay {
    use super::super::replay_as_of_since;
    use crate::store::{SealOptions, Store, StreamOptions};

    /// A stream's re-emission is as of its since, and the same before and after a merge at that since:
    /// times below it read as it, each `(key, val)` summed there (zero sums gone), later times kept.
    #[test]
    fn a_replay_reads_as_of_the_since_whatever_merges_ran() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .create_stream("s", StreamOptions { durable: false })
            .unwrap();
        let updates: Vec<(String, u64, u64, i64)> = vec![
            ("a".into(), 1, 1, 1),
            ("a".into(), 1, 3, 1),
            ("a".into(), 1, 6, -1),
            ("b".into(), 2, 2, 1),
            ("b".into(), 2, 4, -1),
            ("c".into(), 3, 5, 1),
        ];
        for t in 1..8 {
            let at: Vec<_> = updates.iter().filter(|u| u.2 == t).cloned().collect();
            store.write("s", &at).unwrap();
            store.seal("s", t + 1).unwrap();
        }
        store
            .seal_with_claimed(
                "s",
                9,
                SealOptions {
                    finished: false,
                    since: Some(5),
                },
            )
            .unwrap();
        let before = replay_as_of_since::<String, u64, u64>(&store, "s").unwrap();
        let want = vec![
            (("a".to_string(), 1), 5, 2),
            (("a".to_string(), 1), 6, -1),
            (("c".to_string(), 3), 5, 1),
        ];
        assert_eq!(before, (want, 9));
        store.major_compact("s").unwrap();
        assert_eq!(store.sealed("s").unwrap().batches.len(), 1, "merged");
        assert_eq!(
            replay_as_of_since::<String, u64, u64>(&store, "s").unwrap(),
            before
        );
    }
}

mod layout {
    use super::super::{confirm_layout, open_worker_stream, worker_stream_id};
    use crate::store::{HeldAtOpen, Store, StreamOptions};

    /// A store whose only stream of `"x"` is worker `held`'s of 2, holding `sealed` data or only
    /// unsealed durable updates, reopened.
    fn store_holding(dir: &std::path::Path, held: usize, sealed: bool) -> Store {
        let stream = worker_stream_id("x", held, 2);
        {
            let store = Store::open(dir).unwrap();
            store
                .create_stream(&stream, StreamOptions { durable: true })
                .unwrap();
            store.write(&stream, &[(1u64, 2u64, 0, 1)]).unwrap();
            if sealed {
                store.seal(&stream, 1).unwrap();
            }
        }
        Store::open(dir).unwrap()
    }

    /// Another worker's stream that held sealed data at the open refuses the build at once; one that held
    /// only unsealed updates is confirmed before the first seal, once claimed in this process, and refused
    /// there if it never was (another process's directory).
    #[test]
    fn a_missing_worker_stream_is_judged_by_what_the_others_held_at_the_open() {
        let types = "key u64, val u64";
        let options = StreamOptions { durable: true };
        let dir = tempfile::tempdir().unwrap();
        let store = store_holding(dir.path(), 1, true);
        let err = open_worker_stream::<u64>(&store, "x", (0, 2), options, types, true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("the directory it wrote"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let store = store_holding(dir.path(), 1, false);
        let mut opened = open_worker_stream::<u64>(&store, "x", (0, 2), options, types, true).unwrap();
        assert_eq!(opened.unconfirmed, vec!["x/w1of2".to_string()]);
        // Not claimed in this process: another process's stream.
        let err = confirm_layout(&store, &opened.stream, &mut opened.unconfirmed).unwrap_err();
        assert!(err.to_string().contains("no stream of worker 0"), "{err}");
        // Claimed by this process's worker 1 (its operator built meanwhile): confirmed.
        let claim = store.claim_writer("x/w1of2").unwrap();
        confirm_layout(&store, &opened.stream, &mut opened.unconfirmed).unwrap();
        assert!(opened.unconfirmed.is_empty());
        drop(claim);
        // What this process writes after the open never counts: a new worker stream holding updates
        // (written once its operator's claim is gone).
        let stream = opened.stream.clone();
        drop(opened);
        store.write(&stream, &[(3u64, 4u64, 0, 1)]).unwrap();
        assert_eq!(store.held_data_at_open(&stream), None);
        assert_eq!(store.held_data_at_open("x/w1of2"), Some(HeldAtOpen::Unsealed));
    }

    /// With this worker's stream present, the other workers' streams that held data at the open must be
    /// claimed in this process before the first seal: a directory written by one process of two workers,
    /// reopened by one process of a two-process cluster (one worker each), holds worker 1's stream, which
    /// no worker here writes. Streams created since the open do not count.
    #[test]
    fn a_sibling_stream_no_worker_here_claims_is_refused_before_the_first_seal() {
        let types = "key u64, val u64";
        let options = StreamOptions { durable: true };
        for sealed in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            drop(store_holding(dir.path(), 1, sealed));
            let store = store_holding(dir.path(), 0, sealed);
            let mut opened = open_worker_stream::<u64>(&store, "x", (0, 2), options, types, true).unwrap();
            assert_eq!(opened.unconfirmed, vec!["x/w1of2".to_string()]);
            let err = confirm_layout(&store, &opened.stream, &mut opened.unconfirmed).unwrap_err();
            assert!(
                err.to_string().contains("no worker of this process writes"),
                "{err}"
            );
            // This process's worker 1 built meanwhile: confirmed.
            let claim = store.claim_writer("x/w1of2").unwrap();
            confirm_layout(&store, &opened.stream, &mut opened.unconfirmed).unwrap();
            assert!(opened.unconfirmed.is_empty());
            drop((claim, opened));
        }
        // A sibling created since the open (no data then) is nothing to confirm.
        let dir = tempfile::tempdir().unwrap();
        let store = store_holding(dir.path(), 0, true);
        store
            .create_stream("x/w1of2", StreamOptions { durable: true })
            .unwrap();
        store.write("x/w1of2", &[(5u64, 6u64, 0, 1)]).unwrap();
        let opened = open_worker_stream::<u64>(&store, "x", (0, 2), options, types, true).unwrap();
        assert!(opened.unconfirmed.is_empty());
    }
}
