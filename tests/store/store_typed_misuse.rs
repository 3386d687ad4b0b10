//! From an adversarial round: the typed `Store` calls on an arrangement's stream (whose key and val
//! types the store records) with a key type other than the stream's are refused, as `get` refuses; and
//! writes into the stream of a running arrangement are refused (both were accepted: `first_time` answered
//! for another key type, and the arrangement served a write its input never held).

use ddpersist::operators::{worker_stream_id, ArrangeTyped};
use ddpersist::{Error, Store};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// The arrangement "prices" of `(String, u64)` with `("apple", 3)` at time 0, sealed through time 1.
fn prices() -> (tempfile::TempDir, Store, String) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(String, u64), isize>();
            let p = c.arrange_by_key_persisted(&s, "prices").unwrap();
            p.as_collection(|k, v| (k.clone(), *v)).probe_with(&probe);
            input
        });
        input.insert(("apple".to_string(), 3));
        input.advance_to(2);
        input.flush();
        worker.step_while(|| probe.less_than(&2));
    });
    (dir, store, worker_stream_id("prices", 0, 1))
}

#[test]
fn get_with_another_key_type_is_refused() {
    let (_dir, store, stream) = prices();
    let right: Vec<(u64, i64)> = store.get(&stream, &"apple".to_string(), 1).unwrap();
    assert_eq!(right, vec![(3, 1)]);
    let wrong = store.get::<u64, u64>(&stream, &7, 1);
    assert!(matches!(wrong, Err(Error::BadInput { .. })), "{wrong:?}");
}

/// `first_time` with a `u64` key on a stream of `String` keys: expected `BadInput` (as `get` answers);
/// on main it answers `Ok(None)`, "never seen", for the wrong type.
#[test]
fn first_time_with_another_key_type_is_refused() {
    let (_dir, store, stream) = prices();
    assert_eq!(store.first_time(&stream, &"apple".to_string()).unwrap(), Some(0));
    let wrong = store.first_time(&stream, &7u64);
    assert!(
        matches!(wrong, Err(Error::BadInput { .. })),
        "first_time with a u64 key on String keys: {wrong:?}"
    );
}

/// The same with a key type whose encoding happens to equal the stream's (a 1-tuple of the `String`):
/// `get` refuses it, `first_time` answers `Some(0)` as if that key had been written.
#[test]
fn first_time_with_a_key_type_of_the_same_bytes_is_refused() {
    let (_dir, store, stream) = prices();
    let get = store.get::<(String,), u64>(&stream, &("apple".to_string(),), 1);
    assert!(matches!(get, Err(Error::BadInput { .. })), "{get:?}");
    let wrong = store.first_time(&stream, &("apple".to_string(),));
    assert!(
        matches!(wrong, Err(Error::BadInput { .. })),
        "first_time with a (String,) key on String keys: {wrong:?}"
    );
}

/// A typed `Store::write` into the stream of a running arrangement (its operator holds the stream's
/// writer claim): expected refused, as `drop_stream` of it is; on main it is accepted, and the
/// arrangement's trace then serves a record its input never held (DD's answer on the same input lacks
/// it).
#[test]
fn writing_into_a_running_arrangements_stream_is_refused() {
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::{Inspect, Probe};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.clone();
    type Seen = Arc<Mutex<Vec<((String, u64), u64, isize)>>>;
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    let accepted = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(String, u64), isize>();
            let p = c.arrange_by_key_persisted(&s, "prices").unwrap();
            p.as_collection(|k, v| (k.clone(), *v))
                .inner
                .inspect(move |x| seen2.lock().unwrap().push(x.clone()))
                .probe_with(&probe);
            input
        });
        input.insert(("apple".to_string(), 3));
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(&1));
        let stream = worker_stream_id("prices", 0, 1);
        let wrote = s.write(&stream, &[("pear".to_string(), 5u64, 1, 1)]);
        // Every other call that changes the stream's data or frontiers is refused too.
        let pear = ("pear".to_string(), 5u64, 1u64, 1i64);
        let others = [
            (
                "write_bytes",
                s.write_bytes(&stream, [(&b"k"[..], &b"v"[..], 1, 1)]).is_ok(),
            ),
            (
                "write_bytes_unsynced",
                s.write_bytes_unsynced(&stream, [(&b"k"[..], &b"v"[..], 1, 1)])
                    .is_ok(),
            ),
            (
                "append",
                s.append(&stream, std::slice::from_ref(&pear), 1, 2).is_ok(),
            ),
            ("seal", s.seal(&stream, 5).is_ok()),
            ("seal_logged", s.seal_logged(&stream, 5).is_ok()),
            ("allow_compaction", s.allow_compaction(&stream, 1).is_ok()),
        ];
        for (call, ok) in others {
            assert!(!ok, "{call} into a running arrangement's stream was accepted");
        }
        input.advance_to(2);
        input.flush();
        let start = std::time::Instant::now();
        worker.step_while(|| start.elapsed().as_secs() < 30 && probe.less_than(&2));
        wrote.is_ok()
    });
    let pears: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|x| (x.0).0 == "pear")
        .cloned()
        .collect();
    assert!(
        !accepted,
        "a write into a running arrangement's stream was accepted; the arrangement then served {pears:?}"
    );
    // Once its dataflow is gone, the stream takes writes through the Store again.
    let stream = worker_stream_id("prices", 0, 1);
    store.write(&stream, &[("pear".to_string(), 5u64, 9, 1)]).unwrap();
}
