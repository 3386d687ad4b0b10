//! A stream records the types it was written with (the names of its key's and val's encodings,
//! `Codec::schema`), and a persisted operator opened over it with other types fails when the dataflow is
//! built, with `Error::BadInput`, instead of decoding other values from the same bytes: `(u32, u32)` keys
//! read as `u64` decode without error to other numbers, `i64` vals read as `u64` too. Found by an
//! independent check (a DD user's program reopening an arrangement with other types). Also: the
//! `Store::check_types` and `Store::set_types` API (a stream holding updates but no record is not
//! guessed at), types surviving a restart, encoding names, and the operator id checks.

use ddpersist::codec::Codec;
use ddpersist::operators::{ArrangePersisted, ArrangeTyped, Persist, UpsertPersisted};
use ddpersist::{Error, PersistManager, Store, StreamOptions};
use differential_dataflow::input::Input;
use std::path::Path;

/// Builds `arrange_by_key_persisted` over `(K, V)` pairs on `dir`'s store, feeds `updates` at time
/// `resume_at` and steps until sealed; returns the build's error, if any.
fn arrange<K, V>(dir: &Path, updates: Vec<(K, V)>) -> Option<Error>
where
    K: Codec + timely::ExchangeData + Clone + Ord + std::hash::Hash + std::fmt::Debug + Sync,
    V: Codec + timely::ExchangeData + Clone + Ord + std::hash::Hash + std::fmt::Debug + Sync,
{
    arrange_in::<u64, K, V>(dir, updates)
}

/// [`arrange`] in a dataflow at times `T`.
fn arrange_in<T, K, V>(dir: &Path, updates: Vec<(K, V)>) -> Option<Error>
where
    T: ddpersist::operators::PersistTime,
    K: Codec + timely::ExchangeData + Clone + Ord + std::hash::Hash + std::fmt::Debug + Sync,
    V: Codec + timely::ExchangeData + Clone + Ord + std::hash::Hash + std::fmt::Debug + Sync,
{
    let store = Store::open(dir).unwrap();
    timely::execute_directly(move |worker| {
        let built = worker.dataflow::<T, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(K, V), isize>();
            pairs
                .arrange_by_key_persisted(&store, "t")
                .map(|a| (input, a.handle().unwrap().clone()))
        });
        let (mut input, handle) = match built {
            Ok(b) => b,
            Err(e) => return Some(e),
        };
        let start = handle.resume_at();
        input.advance_to(T::from_u64(start).unwrap());
        for u in updates {
            input.insert(u);
        }
        input.advance_to(T::from_u64(start + 1).unwrap());
        input.flush();
        while handle.sealed_upper() < start + 1 && handle.error().is_none() {
            worker.step();
        }
        assert!(handle.error().is_none(), "{:?}", handle.error());
        None
    })
}

fn assert_types_refused(e: Option<Error>, written: &str, read: &str) {
    match e {
        Some(Error::BadInput { detail }) => {
            assert!(detail.contains(written) && detail.contains(read), "{detail}");
        }
        other => panic!("expected BadInput naming {written} and {read}, got {other:?}"),
    }
}

#[test]
fn an_arrangement_reopened_with_other_types_is_refused_at_build() {
    let dir = tempfile::tempdir().unwrap();
    assert!(arrange(dir.path(), vec![((1u32, 2u32), 7u64), ((3, 4), 8)]).is_none());
    // The same 8 bytes decode as a u64: refused, not read as 4294967298.
    assert_types_refused(
        arrange(dir.path(), vec![(5u64, 7u64)]),
        "key (u32, u32), val u64",
        "key u64, val u64",
    );
    // The right types still open, and see the first run's updates.
    assert!(arrange(dir.path(), vec![((5u32, 6u32), 9u64)]).is_none());
    let store = Store::open(dir.path()).unwrap();
    let stream = ddpersist::operators::worker_stream_id("t", 0, 1);
    let got = store
        .snapshot(&stream)
        .unwrap()
        .decode::<(u32, u32), u64>()
        .unwrap();
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        store.manifest().stream(&stream).unwrap().types,
        "key (u32, u32), val u64"
    );
    // The typed Store API checks the record too; the byte calls read the bytes as they are.
    let refused = |r: ddpersist::Result<()>| matches!(r, Err(Error::BadInput { .. }));
    assert!(refused(store.get::<u64, u64>(&stream, &1, 5).map(|_| ())));
    assert!(refused(
        store.snapshot(&stream).unwrap().decode::<u64, u64>().map(|_| ())
    ));
    assert!(refused(store.write(&stream, &[(1u64, 2u64, 9, 1)])));
    assert!(refused(
        store.append(&stream, &[(1u64, 2u64, 9, 1)], 9, 10).map(|_| ())
    ));
    assert_eq!(
        store.get::<(u32, u32), u64>(&stream, &(1, 2), 5).unwrap(),
        vec![(7, 1)]
    );
    assert_eq!(
        store.get_bytes(&stream, &(1u32, 2u32).to_bytes(), 5).unwrap(),
        vec![(7u64.to_bytes(), 1)]
    );
}

#[test]
fn vals_of_another_type_are_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    assert!(arrange(dir.path(), vec![(1u64, -5i64), (2, 5)]).is_none());
    assert_types_refused(arrange(dir.path(), vec![(1u64, 5u64)]), "val i64", "val u64");
    // Strings and serde types name themselves.
    let dir = tempfile::tempdir().unwrap();
    assert!(arrange(dir.path(), vec![("apple".to_string(), vec![1u8, 2])]).is_none());
    assert_types_refused(
        arrange(dir.path(), vec![("apple".to_string(), "x".to_string())]),
        "key String, val Vec<u8>",
        "key String, val String",
    );
}

#[test]
fn the_byte_level_arrangement_and_persist_and_upsert_check_types_too() {
    // `arrange_persisted` (byte-level output, typed input).
    let dir = tempfile::tempdir().unwrap();
    assert!(arrange(dir.path(), vec![(1u64, 2u64)]).is_none());
    let store = Store::open(dir.path()).unwrap();
    let refused = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, pairs) = scope.new_collection::<(String, u64), i64>();
            pairs.arrange_persisted(&store, "t").err()
        })
    });
    assert_types_refused(refused, "key u64, val u64", "key String, val u64");

    // `persist` through a manager's token.
    let dir = tempfile::tempdir().unwrap();
    for (run, types_ok) in [(0, true), (1, false)] {
        let manager = PersistManager::new(Store::open(dir.path()).unwrap());
        let result = timely::execute_directly(move |worker| {
            let token = manager.token("orders", 0).unwrap();
            worker.dataflow::<u64, _, _>(|scope| {
                if run == 0 {
                    let (mut input, orders) = scope.new_collection::<(u64, String), i64>();
                    input.update((1, "one".to_string()), 1);
                    orders.persist(token).map(|_| ()).err()
                } else {
                    let (_input, orders) = scope.new_collection::<(String, String), i64>();
                    orders.persist(token).map(|_| ()).err()
                }
            })
        });
        if types_ok {
            assert!(result.is_none(), "{result:?}");
        } else {
            assert_types_refused(result, "key u64, val String", "key String, val String");
        }
    }

    // `upsert_persisted`.
    let dir = tempfile::tempdir().unwrap();
    for (run, types_ok) in [(0, true), (1, false)] {
        let store = Store::open(dir.path()).unwrap();
        let result = timely::execute_directly(move |worker| {
            worker.dataflow::<u64, _, _>(|scope| {
                use timely::dataflow::operators::ToStream;
                if run == 0 {
                    let upserts = vec![(1u64, Some(2u64), 0u64)].into_iter().to_stream(scope);
                    upserts.upsert_persisted(&store, "u").map(|_| ()).err()
                } else {
                    let upserts = vec![(1u64, Some(2u32), 0u64)].into_iter().to_stream(scope);
                    upserts.upsert_persisted(&store, "u").map(|_| ()).err()
                }
            })
        });
        if types_ok {
            assert!(result.is_none(), "{result:?}");
        } else {
            assert_types_refused(result, "key u64, val u64", "key u64, val u32");
        }
    }
}

#[test]
fn check_types_records_once_durably_and_refuses_others() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        assert_eq!(store.manifest().stream("s").unwrap().types, "");
        store.check_types("s", "key u64, val u64").unwrap();
        store.check_types("s", "key u64, val u64").unwrap();
        assert!(matches!(
            store.check_types("s", "key u32, val u64"),
            Err(Error::BadInput { .. })
        ));
        assert!(matches!(store.check_types("s", ""), Err(Error::BadInput { .. })));
        assert!(matches!(
            store.check_types("nope", "key u64, val u64"),
            Err(Error::UnknownStream { .. })
        ));
    }
    // Recorded in the manifest: a restart keeps it.
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.manifest().stream("s").unwrap().types, "key u64, val u64");
    assert!(matches!(
        store.check_types("s", "key String, val u64"),
        Err(Error::BadInput { .. })
    ));
}

#[test]
fn operator_ids_are_checked_in_the_callers_terms() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (empty, long) = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, pairs) = scope.new_collection::<(u64, u64), isize>();
            let empty = pairs.clone().arrange_by_key_persisted(&store, "").err();
            let long = pairs.arrange_by_key_persisted(&store, &"x".repeat(1020)).err();
            (empty, long)
        })
    });
    match empty {
        Some(Error::BadInput { detail }) => assert!(detail.contains("must not be empty"), "{detail}"),
        other => panic!("{other:?}"),
    }
    match long {
        Some(Error::BadInput { detail }) => {
            assert!(
                detail.contains("1020 bytes") && detail.contains("at most 1018"),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_stream_holding_updates_but_no_types_is_not_recorded_until_set_types() {
    let dir = tempfile::tempdir().unwrap();
    let stream = ddpersist::operators::worker_stream_id("t", 0, 1);
    {
        // Written through the Store API alone: updates, no types.
        let store = Store::open(dir.path()).unwrap();
        store
            .create_stream(&stream, StreamOptions { durable: false })
            .unwrap();
        store.write(&stream, &[(1u64, 2u64, 0, 1)]).unwrap();
        store.seal(&stream, 1).unwrap();
        // A check cannot know its types: it records none and refuses nothing.
        store.check_types(&stream, "key String, val u64").unwrap();
        assert_eq!(store.manifest().stream(&stream).unwrap().types, "");
    }
    assert!(arrange(dir.path(), vec![(2u64, 3u64)]).is_none());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.manifest().stream(&stream).unwrap().types, "");
    // The caller who knows them records them; from then on other types are refused.
    store.set_types(&stream, "key u64, val u64").unwrap();
    drop(store);
    assert_types_refused(
        arrange(dir.path(), vec![(1u32, 2u64)]),
        "key u64, val u64",
        "key u32, val u64",
    );
    assert!(arrange(dir.path(), vec![(4u64, 5u64)]).is_none());
    // set_types replaces (a converted stream) and "" clears.
    let store = Store::open(dir.path()).unwrap();
    store.set_types(&stream, "key u32, val u64").unwrap();
    assert_eq!(
        store.manifest().stream(&stream).unwrap().types,
        "key u32, val u64"
    );
    store.set_types(&stream, "").unwrap();
    assert_eq!(store.manifest().stream(&stream).unwrap().types, "");
}

#[test]
fn encoding_names() {
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
    struct Order {
        id: u64,
    }
    ddpersist::serde_codec!(Order as "Order/v2");
    assert_eq!(Order::schema(), "serde Order/v2");
    assert_eq!(<(u32, String)>::schema(), "(u32, String)");
    assert_eq!(<(u8,)>::schema(), "(u8,)");
    assert_eq!(<Vec<Option<i64>>>::schema(), "Vec<Option<i64>>");
    assert_eq!(<[usize; 3]>::schema(), "[usize; 3]");
    assert_eq!(<std::sync::Arc<bool>>::schema(), "bool");
    assert_eq!(<()>::schema(), "()");
    assert_eq!(<(f64, char, isize)>::schema(), "(f64, char, isize)");
}

#[test]
fn an_empty_id_that_names_existing_streams_still_opens() {
    // Earlier releases took an empty id; its streams stay readable.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = ddpersist::operators::worker_stream_id("", 0, 1);
    store
        .create_stream(&stream, StreamOptions { durable: false })
        .unwrap();
    let built = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_input, pairs) = scope.new_collection::<(u64, u64), isize>();
            pairs.arrange_by_key_persisted(&store, "").map(|_| ()).err()
        })
    });
    assert!(built.is_none(), "{built:?}");
}

/// [`arrange_in`] at times `T` of one `(key, key)` pair.
fn arrange_at<T: ddpersist::operators::PersistTime>(dir: &Path, key: u64) -> Option<Error> {
    arrange_in::<T, u64, u64>(dir, vec![(key, key)])
}

/// A stream records how its operator's times map onto the store's (signed times are offset by their
/// minimum, unsigned ones are not), and a restart at a timestamp type of another mapping is refused at
/// build: a stream written at `u64` times and reopened at `i32` times would have its store time 1 read as
/// `i32::MIN + 1`, every update at another time and its resume point far in the past (found by a review
/// of the signed times). Types of one mapping (`u64` and `u32`; `i64` and `isize`) reopen each other's
/// streams; the store's own typed API reads either (it works in store times).
#[test]
fn a_restart_at_a_timestamp_type_of_another_mapping_is_refused() {
    use ddpersist::trace::PersistedTrace;
    let stream = ddpersist::operators::worker_stream_id("t", 0, 1);

    let unsigned = tempfile::tempdir().unwrap();
    assert!(arrange_at::<u64>(unsigned.path(), 1).is_none());
    assert_types_refused(
        arrange_at::<i32>(unsigned.path(), 2),
        "stored as t,",
        "not as t - i32::MIN",
    );
    assert_types_refused(
        arrange_at::<i64>(unsigned.path(), 2),
        "stored as t,",
        "not as t - i64::MIN",
    );
    assert!(arrange_at::<u32>(unsigned.path(), 3).is_none(), "u32 maps as u64");
    {
        let store = Store::open(unsigned.path()).unwrap();
        assert_eq!(
            store.manifest().stream(&stream).unwrap().types,
            "key u64, val u64"
        );
        assert!(matches!(
            PersistedTrace::<i32>::open(&store, &stream),
            Err(Error::BadInput { .. })
        ));
        assert!(PersistedTrace::<u32>::open(&store, &stream).is_ok());
    }

    let signed = tempfile::tempdir().unwrap();
    assert!(arrange_at::<i64>(signed.path(), 1).is_none());
    assert!(
        arrange_at::<isize>(signed.path(), 2).is_none(),
        "isize maps as i64"
    );
    assert_types_refused(
        arrange_at::<u64>(signed.path(), 3),
        "stored as t - i64::MIN",
        "not as t:",
    );
    assert_types_refused(
        arrange_at::<i32>(signed.path(), 3),
        "t - i64::MIN",
        "not as t - i32::MIN",
    );
    let store = Store::open(signed.path()).unwrap();
    assert_eq!(
        store.manifest().stream(&stream).unwrap().types,
        "key u64, val u64; time stored as t - i64::MIN"
    );
    assert!(matches!(
        PersistedTrace::<u64>::open(&store, &stream),
        Err(Error::BadInput { .. })
    ));
    // An encoding name holding the separator would be read as the time part: refused.
    let other = "other";
    store
        .create_stream(other, StreamOptions { durable: false })
        .unwrap();
    let twice = "key serde a; time stored as b, val u64; time stored as t - i32::MIN";
    assert!(matches!(
        store.check_types(other, twice),
        Err(Error::BadInput { .. })
    ));
    // Nor from a type name through an operator at u64 times (no time part of its own).
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
    struct Odd(u64);
    ddpersist::serde_codec!(Odd as "odd; time stored as t");
    let odd = tempfile::tempdir().unwrap();
    let built = {
        let store = Store::open(odd.path()).unwrap();
        timely::execute_directly(move |worker| {
            worker.dataflow::<u64, _, _>(|scope| {
                let (_input, pairs) = scope.new_collection::<(Odd, u64), isize>();
                pairs.arrange_by_key_persisted(&store, "odd").map(|_| ()).err()
            })
        })
    };
    assert!(matches!(built, Some(Error::BadInput { .. })), "{built:?}");
    // The store's API reads store times: the dataflow started at i64::MIN, store time 0.
    let got = store.snapshot(&stream).unwrap().decode::<u64, u64>().unwrap();
    let times: Vec<u64> = got.iter().map(|u| u.2).collect();
    assert_eq!(times, [0, 1], "{got:?}");
}
