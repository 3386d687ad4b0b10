//! From an adversarial round: Store API edges a user hits — answers that change with background merges, bad inputs,
//! reserved times.

use ddpersist::{Options, SealOptions, Store, StreamOptions};

fn store(dir: &std::path::Path) -> Store {
    Store::open_with(
        dir,
        Options {
            compaction_threads: 0,
            ..Options::default()
        },
    )
    .unwrap()
}

/// `get` at a time below the since: its answer would depend on whether a merge ran (found by the round:
/// `[(10, 1)]` before `major_compact`, `[]` after), so it is refused; at the since it is the same.
#[test]
fn get_below_the_since_is_refused_and_at_the_since_does_not_depend_on_merges() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions::default()).unwrap();
    s.write("s", &[(1u64, 10u64, 1, 1)]).unwrap();
    s.seal("s", 2).unwrap();
    s.write("s", &[(1u64, 10u64, 5, -1), (1u64, 11u64, 5, 1)])
        .unwrap();
    s.seal("s", 6).unwrap();
    s.allow_compaction("s", 6).unwrap();
    // Below the since: refused, before the merge and after (the answer would depend on the merge).
    let below = |s: &Store| {
        matches!(
            s.get::<u64, u64>("s", &1, 2),
            Err(ddpersist::Error::BadInput { .. })
        )
    };
    assert!(below(&s), "get as of 2 below since 6 before the merge");
    let at_since = s.get::<u64, u64>("s", &1, 6).unwrap();
    s.major_compact("s").unwrap();
    assert!(below(&s), "get as of 2 below since 6 after the merge");
    assert_eq!(s.get::<u64, u64>("s", &1, 6).unwrap(), at_since);
    assert_eq!(at_since, vec![(11, 1)]);
}

/// `first_time` ("seen this before, and when?") must not change its answer when a merge runs (found by the
/// round: `Some(2)` before, `Some(8)` after): it is advanced to the since.
#[test]
fn first_time_does_not_move_when_a_merge_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions::default()).unwrap();
    s.write("s", &[("apple".to_string(), 1u64, 2, 1)]).unwrap();
    s.seal("s", 3).unwrap();
    s.write("s", &[("pear".to_string(), 1u64, 7, 1)]).unwrap();
    s.seal("s", 8).unwrap();
    s.allow_compaction("s", 8).unwrap();
    let before = s.first_time("s", &"apple".to_string()).unwrap();
    s.major_compact("s").unwrap();
    let after = s.first_time("s", &"apple".to_string()).unwrap();
    assert_eq!(
        before, after,
        "first_time of a key written at 2 moved from {before:?} to {after:?} when a merge ran (since 8)"
    );
    assert_eq!(before, Some(8), "advanced to the since");
}

/// `first_time` of a key whose updates cancel out below the since: none, before a merge and after (found
/// by a review: `Some(since)` before the merge, `None` after); a key inserted and retracted later keeps
/// its first time; updates that cancel in one seal count for nothing either.
#[test]
fn first_time_of_updates_that_cancel_does_not_depend_on_merges() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions::default()).unwrap();
    s.write("s", &[(1u64, 10u64, 1, 1), (2u64, 20u64, 2, 1)]).unwrap();
    s.seal("s", 3).unwrap();
    s.write("s", &[(1u64, 10u64, 4, -1), (2u64, 20u64, 9, -1)])
        .unwrap();
    s.seal("s", 5).unwrap();
    // Inserted and retracted at one time, unsealed: nothing.
    s.write("s", &[(3u64, 30u64, 6, 1)]).unwrap();
    s.write("s", &[(3u64, 30u64, 6, -1)]).unwrap();
    s.allow_compaction("s", 5).unwrap();
    let firsts = |s: &Store| [1u64, 2, 3].map(|k| s.first_time("s", &k).unwrap());
    assert_eq!(firsts(&s), [None, Some(5), None], "before the merge");
    s.major_compact("s").unwrap();
    assert_eq!(firsts(&s), [None, Some(5), None], "after the merge");
}

/// Diffs that overflow `i64` when consolidated: errors, never a panic, in a seal and in a merge.
#[test]
fn diff_overflow_in_seal_and_merge_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions { durable: false }).unwrap();
    // Refused at the write (checked against the memtable).
    assert!(s
        .write("s", &[(1u64, 1u64, 0, i64::MAX), (1u64, 1u64, 0, i64::MAX)])
        .is_err());
    let sealed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.seal("s", 1)));
    assert!(sealed.is_ok(), "seal panicked");
    s.create_stream("t", StreamOptions { durable: false }).unwrap();
    s.write("t", &[(1u64, 1u64, 0, i64::MAX)]).unwrap();
    s.seal("t", 1).unwrap();
    s.write("t", &[(1u64, 1u64, 1, i64::MAX)]).unwrap();
    s.seal("t", 2).unwrap();
    s.allow_compaction("t", 1).unwrap();
    let merged = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| s.major_compact("t")));
    assert!(merged.is_ok(), "major_compact panicked");
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        s.snapshot("t").and_then(|x| x.to_vec())
    }));
    assert!(read.is_ok(), "snapshot panicked");
    eprintln!(
        "seal: {:?}\nmerge: {:?}\nread: {:?}",
        sealed.unwrap().map(|_| ()),
        merged.unwrap(),
        read.unwrap().map(|v| v.len())
    );
}

/// Reserved and extreme times.
#[test]
fn extreme_times_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions::default()).unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let w = s.write("s", &[(1u64, 1u64, u64::MAX, 1)]);
        let w2 = s.write("s", &[(1u64, 1u64, u64::MAX - 1, 1)]);
        let seal = s.seal("s", u64::MAX);
        let seal_with = s.seal_with(
            "s",
            u64::MAX,
            SealOptions {
                finished: true,
                since: Some(u64::MAX - 1),
            },
        );
        let get = s.get::<u64, u64>("s", &1, u64::MAX);
        let ft = s.first_time("s", &1u64);
        (
            w.map_err(|e| e.to_string()),
            w2.map_err(|e| e.to_string()),
            seal.map(|_| ()).map_err(|e| e.to_string()),
            seal_with.map(|_| ()).map_err(|e| e.to_string()),
            get.map_err(|e| e.to_string()),
            ft.map_err(|e| e.to_string()),
        )
    }));
    let r = r.expect("a panic in the store API");
    eprintln!("{r:#?}");
    drop(s);
    // The store reopens and holds what was acknowledged.
    let s = store(dir.path());
    let got = s.snapshot("s").unwrap().decode::<u64, u64>();
    eprintln!("after reopen: upper {:?} {got:?}", s.upper("s"));
    got.unwrap();
}

/// A misuse of `append`: what it is, the updates, lower and upper.
type Append = (&'static str, Vec<(u64, u64, u64, i64)>, u64, u64);

/// `append` with bad intervals and unsorted or out-of-interval updates.
#[test]
fn append_misuse_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path());
    s.create_stream("s", StreamOptions::default()).unwrap();
    let cases: Vec<Append> = vec![
        ("unsorted keys", vec![(2, 0, 0, 1), (1, 0, 0, 1)], 0, 1),
        ("time at upper", vec![(1, 0, 1, 1)], 0, 1),
        ("lower above stream upper", vec![(1, 0, 5, 1)], 5, 6),
        ("empty interval", vec![], 0, 0),
        ("zero diff", vec![(1, 0, 0, 0)], 0, 1),
        ("duplicate update", vec![(1, 0, 0, 1), (1, 0, 0, 1)], 1, 2),
        ("upper u64::MAX", vec![(1, 0, 5, 1)], 2, u64::MAX),
    ];
    for (what, updates, lower, upper) in cases {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            s.append("s", &updates, lower, upper)
        }));
        match r {
            Err(_) => panic!("append ({what}) panicked"),
            Ok(r) => eprintln!(
                "{what}: {:?} -> upper {}",
                r.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                s.upper("s").unwrap()
            ),
        }
    }
    let snap = s.snapshot("s").unwrap().decode::<u64, u64>().unwrap();
    eprintln!("{snap:?}");
    for (_, _, _, d) in &snap {
        assert_ne!(*d, 0, "a zero diff stored");
    }
}
