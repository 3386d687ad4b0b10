//! From an adversarial round: one id used by two persisting operators of different kinds, or through
//! two managers over one store, must be refused when the dataflow is built (not write into one stream twice).

use ddpersist::operators::{ArrangeTyped, Persist, UpsertPersisted};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input;
use timely::dataflow::operators::Input as TimelyInput;

/// The first operator built, the second refused (`what` says what was accepted otherwise).
fn assert_second_refused(built: (Result<(), String>, Result<(), String>), what: &str) {
    assert!(built.0.is_ok(), "{built:?}");
    assert!(built.1.is_err(), "{what}: {built:?}");
}

/// `persist` through a token "x" and `arrange_by_key_persisted(&store, "x")` on the manager's store.
#[test]
fn persist_and_arrangement_sharing_an_id_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let manager = PersistManager::open(dir.path()).unwrap();
    let store = manager.store().clone();
    let built = timely::execute_directly(move |worker| {
        let token = manager.token("x", worker.index()).unwrap();
        worker.dataflow::<u64, _, _>(|scope| {
            let (_i1, a) = scope.new_collection::<(String, u64), isize>();
            let (_i2, b) = scope.new_collection::<(String, u64), i64>();
            let first = b.persist(token).map(|_| ()).map_err(|e| e.to_string());
            let second = a
                .arrange_by_key_persisted(&store, "x")
                .map(|_| ())
                .map_err(|e| e.to_string());
            (first, second)
        })
    });
    assert_second_refused(built, "the second operator over stream x/w0of1 was accepted");
}

/// Two managers over clones of one store: each hands out a token for ("x", 0).
#[test]
fn two_managers_over_one_store_cannot_both_persist_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (m1, m2) = (PersistManager::new(store.clone()), PersistManager::new(store));
    let built = timely::execute_directly(move |worker| {
        let t1 = m1.token("x", 0).unwrap();
        let t2 = m2.token("x", 0).unwrap();
        worker.dataflow::<u64, _, _>(|scope| {
            let (_i1, a) = scope.new_collection::<(String, u64), i64>();
            let (_i2, b) = scope.new_collection::<(String, u64), i64>();
            let first = a.persist(t1).map(|_| ()).map_err(|e| e.to_string());
            let second = b.persist(t2).map(|_| ()).map_err(|e| e.to_string());
            (first, second)
        })
    });
    assert_second_refused(built, "two persist operators over one stream were accepted");
}

/// `upsert_persisted(&store, "x")` beside `arrange_by_key_persisted(&store, "x")`.
#[test]
fn upsert_and_arrangement_sharing_an_id_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let built = timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_h, ups) = scope.new_input::<Vec<(String, Option<u64>, u64)>>();
            let first = ups
                .upsert_persisted(&store, "x")
                .map(|_| ())
                .map_err(|e| e.to_string());
            let (_i, a) = scope.new_collection::<(String, u64), isize>();
            let second = a
                .arrange_by_key_persisted(&store, "x")
                .map(|_| ())
                .map_err(|e| e.to_string());
            (first, second)
        })
    });
    assert_second_refused(
        built,
        "an arrangement over the upsert's state stream was accepted",
    );
}
