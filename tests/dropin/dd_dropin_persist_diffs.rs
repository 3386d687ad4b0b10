//! `persist` takes DD's everyday diff types (adversarial round 17: it took only `i64`, so
//! `new_collection::<_, isize>()` — DD's default — followed by `.persist(token)` did not compile). A
//! collection with `isize` and with `i32` diffs is persisted, joined with an in-memory collection of the
//! same diff type, restarted, and its replay plus new input consolidates to what was written; a persisted
//! diff sum beyond `i32` fails the build of an `i32` collection with `Error::Decode` naming the stream.

use ddpersist::operators::{Persist, PersistDiff};
use ddpersist::{Error, ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::ProbeHandle;

/// `(key, val) -> diff`.
type Sums = BTreeMap<(u64, u64), i64>;
type Out = Arc<Mutex<Sums>>;

/// One run of one worker over the store in `dir`: persists a `(u64, u64)` collection with diffs `R`,
/// writes `writes` (key, val, time, diff) at their times up to `upper`, and returns what the persisted
/// output and its join with an in-memory collection (`(key, ())` at diff 1 for every key below 100)
/// consolidate to, as `(key, val) -> diff`; or the build's error.
fn run<R>(dir: &Path, writes: Vec<(u64, u64, u64, R)>, upper: u64) -> Result<(Out, Out), Error>
where
    R: PersistDiff + differential_dataflow::difference::Abelian + differential_dataflow::ExchangeData,
    R: differential_dataflow::difference::Multiply<R, Output = R> + From<i8> + Sync,
{
    let manager = PersistManager::with_options(Store::open(dir).unwrap(), ManagerOptions::default());
    let (out, joined): (Out, Out) = Default::default();
    let (o, j) = (out.clone(), joined.clone());
    let result = Arc::new(Mutex::new(Ok(())));
    let r = result.clone();
    timely::execute(timely::Config::thread(), move |worker| {
        let probe = ProbeHandle::new();
        let token = manager.token("src", worker.index()).unwrap();
        let (o, j, r) = (o.clone(), j.clone(), r.clone());
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u64, u64), R>();
            let (keys, k) = scope.new_collection::<(u64, ()), R>();
            let (p, handle) = match c.persist(token) {
                Ok(persisted) => persisted,
                Err(e) => {
                    *r.lock().unwrap() = Err(e);
                    return None;
                }
            };
            p.clone()
                .inspect(move |(kv, _t, d)| {
                    *o.lock().unwrap().entry(*kv).or_insert(0) += d.to_i64();
                })
                .probe_with(&probe);
            p.join(k)
                .map(|(key, (val, ()))| (key, val))
                .inspect(move |(kv, _t, d)| {
                    *j.lock().unwrap().entry(*kv).or_insert(0) += d.to_i64();
                })
                .probe_with(&probe);
            Some((input, keys, handle))
        });
        let Some((mut input, mut keys, handle)) = built else {
            return;
        };
        for key in 0..100 {
            keys.update((key, ()), R::from(1));
        }
        let mut writes = writes.clone();
        writes.sort_by_key(|w| w.2);
        for (key, val, time, diff) in writes {
            input.advance_to(time);
            input.update((key, val), diff);
        }
        input.advance_to(upper);
        keys.advance_to(upper);
        input.flush();
        keys.flush();
        while probe.less_than(&upper) {
            worker.step();
        }
        assert!(handle.take_error().is_none());
    })
    .unwrap();
    let result = std::mem::replace(&mut *result.lock().unwrap(), Ok(()));
    result.map(|()| (out, joined))
}

/// `(key, val) -> diff` of `writes`, zero sums dropped; and of those whose key is below 100.
fn expected<R: PersistDiff>(writes: &[(u64, u64, u64, R)]) -> (Sums, Sums) {
    let mut all = BTreeMap::new();
    for (k, v, _, d) in writes {
        *all.entry((*k, *v)).or_insert(0) += d.to_i64();
    }
    all.retain(|_, d| *d != 0);
    let joined = all
        .iter()
        .filter(|((k, _), _)| *k < 100)
        .map(|(kv, d)| (*kv, *d))
        .collect();
    (all, joined)
}

fn consolidated(out: &Out) -> Sums {
    let mut m = out.lock().unwrap().clone();
    m.retain(|_, d| *d != 0);
    m
}

fn restart_with<R>(make: fn(i64) -> R)
where
    R: PersistDiff + differential_dataflow::difference::Abelian + differential_dataflow::ExchangeData,
    R: differential_dataflow::difference::Multiply<R, Output = R> + From<i8> + Sync,
{
    let dir = tempfile::tempdir().unwrap();
    let first: Vec<(u64, u64, u64, R)> = (0..300u64)
        .map(|i| (i % 150, i % 7, i / 30, make(if i % 5 == 0 { -2 } else { 3 })))
        .collect();
    let (out, joined) = run(dir.path(), first.clone(), 10).unwrap();
    let (want, want_joined) = expected(&first);
    assert_eq!(consolidated(&out), want);
    assert_eq!(consolidated(&joined), want_joined);
    // The restart replays the first run's updates, then takes new ones (some retracting old ones).
    let second: Vec<(u64, u64, u64, R)> = (0..100u64)
        .map(|i| (i % 150, i % 7, 10 + i / 25, make(if i % 3 == 0 { -3 } else { 1 })))
        .collect();
    let (out, joined) = run(dir.path(), second.clone(), 20).unwrap();
    let all: Vec<_> = first.into_iter().chain(second).collect();
    let (want, want_joined) = expected(&all);
    assert_eq!(consolidated(&out), want);
    assert_eq!(consolidated(&joined), want_joined);
}

#[test]
fn persist_takes_dd_default_isize_diffs_across_a_restart() {
    restart_with::<isize>(|d| d as isize);
}

#[test]
fn persist_takes_i32_diffs_across_a_restart() {
    restart_with::<i32>(|d| d as i32);
}

/// A persisted sum that `i32` cannot hold (written through `i64`) fails the `i32` collection's build with
/// `Error::Decode` naming the stream, and changes nothing: an `i64` collection still reads it.
#[test]
fn a_persisted_diff_beyond_i32_fails_the_build_of_an_i32_collection() {
    let dir = tempfile::tempdir().unwrap();
    let big = i64::from(i32::MAX) + 5;
    run::<i64>(dir.path(), vec![(1, 2, 0, big), (3, 4, 0, 7)], 1).unwrap();
    let e = run::<i32>(dir.path(), vec![], 2).expect_err("the build fails");
    assert!(matches!(e, Error::Decode { .. }), "{e:?}");
    assert!(e.to_string().contains("src"), "{e}");
    let (out, _) = run::<i64>(dir.path(), vec![], 3).unwrap();
    assert_eq!(consolidated(&out), BTreeMap::from([((1, 2), big), ((3, 4), 7)]));
}
