//! Diff arithmetic (DESIGN.md, "Diff arithmetic"): updates of one `(key, val, time)` are summed exactly
//! (in `i128`), and a true total outside `i64` is an [`Error::DiffOverflow`] naming the stream, the key and
//! the time — on every path (write, lookup, snapshot, seal, spilled runs, merges advancing times, the count
//! operator, de-upsert), never a panic and never a wrapped value. Partial sums out of range whose total
//! fits give the right answer.

use ddpersist::blob::MemBlob;
use ddpersist::operators::upsert::apply_upserts;
use ddpersist::operators::{ArrangePersisted, CountPersisted};
use ddpersist::wal::MemLog;
use ddpersist::{Codec, Error, Options, Store, StreamOptions};
use differential_dataflow::input::Input;
use proptest::prelude::*;
use proptest::test_runner::Config;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

const MAX: i64 = i64::MAX;

/// One output update of the count operator: `((key, count), time, diff)`.
type CountUpdate = ((Vec<u8>, i64), u64, isize);

/// A store in memory whose merges run inside `seal`, two batches at a time (so two seals make a merge due),
/// and whose memtable spills past `budget` bytes.
fn store_with(budget: usize) -> Store {
    let options = Options {
        compaction_threads: 0,
        merge_fan_in: 2,
        memtable_budget_bytes: budget,
        ..Options::default()
    };
    let store = Store::open_on(Arc::new(MemBlob::new()), Arc::new(MemLog::new()), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store
}

fn store() -> Store {
    store_with(64 << 20)
}

/// Asserts `r` failed with a diff overflow of key `1u64` in stream "s" at `time`, and that the message
/// names them.
fn assert_overflow<T: std::fmt::Debug>(r: ddpersist::Result<T>, time: u64) {
    match r {
        Err(e @ Error::DiffOverflow { .. }) => {
            let Error::DiffOverflow {
                stream,
                key,
                time: at,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!((stream.as_str(), key.clone(), *at), ("s", 1u64.to_bytes(), time));
            let msg = e.to_string();
            assert!(msg.contains("\"s\"") && msg.contains("0000000000000001"), "{msg}");
            assert!(msg.contains(&format!("time {time}")), "{msg}");
        }
        other => panic!("expected a diff overflow at time {time}, got {other:?}"),
    }
}

fn get(store: &Store, as_of: u64) -> ddpersist::Result<Vec<(u64, i64)>> {
    store.get::<u64, u64>("s", &1, as_of)
}

fn snapshot(store: &Store) -> ddpersist::Result<Vec<(u64, u64, u64, i64)>> {
    store.snapshot("s")?.decode()
}

#[test]
fn the_issue_input_is_rejected_by_the_write_and_nothing_is_kept() {
    let store = store();
    assert_overflow(store.write("s", &[(1u64, 0u64, 0, MAX), (1u64, 0u64, 0, 1)]), 0);
    assert_eq!(get(&store, 0).unwrap(), vec![]);
    assert_eq!(snapshot(&store).unwrap(), vec![]);
    assert_eq!(store.unsealed_len("s").unwrap(), 0);
    store.seal("s", 1).unwrap();
    assert_eq!(get(&store, 0).unwrap(), vec![]);
    assert_eq!(snapshot(&store).unwrap(), vec![]);
}

#[test]
fn a_write_overflowing_an_earlier_one_in_the_memtable_is_rejected_whole() {
    let store = store();
    store.write("s", &[(1u64, 0u64, 0, MAX)]).unwrap();
    // The second write also holds a harmless update: nothing of it is kept.
    assert_overflow(store.write("s", &[(2u64, 0u64, 0, 5), (1u64, 0u64, 0, 1)]), 0);
    assert_eq!(get(&store, 0).unwrap(), vec![(0, MAX)]);
    assert_eq!(snapshot(&store).unwrap(), vec![(1, 0, 0, MAX)]);
    // An update at another time, or of another val, is fine.
    store
        .write("s", &[(1u64, 0u64, 1, 1), (1u64, 7u64, 0, 1)])
        .unwrap();
    // Accumulated as of time 1 the total is out of range: the lookup fails, naming its time.
    assert_overflow(get(&store, 1), 1);
    store.seal("s", 1).unwrap();
    assert_eq!(get(&store, 0).unwrap(), vec![(0, MAX), (7, 1)]);
    assert_overflow(get(&store, 1), 1);
    store.seal("s", 2).unwrap();
    assert_overflow(get(&store, 1), 1);
    // A compensating update brings the total back into range.
    store.write("s", &[(1u64, 0u64, 2, -1)]).unwrap();
    assert_eq!(get(&store, 2).unwrap(), vec![(0, MAX), (7, 1)]);
}

#[test]
fn partial_sums_out_of_range_give_the_true_total() {
    for seal_between in [false, true] {
        let store = store();
        // Same (key, val, time) in one write: the memtable, the seal and the snapshot consolidate them.
        store
            .write("s", &[(1u64, 0u64, 0, MAX), (1, 0, 0, 1), (1, 0, 0, -2)])
            .unwrap();
        // Across times: a lookup accumulates MAX - 1 + 1 + (-3) in time order.
        store.write("s", &[(1u64, 0u64, 1, 1)]).unwrap();
        if seal_between {
            store.seal("s", 2).unwrap();
        }
        store.write("s", &[(1u64, 0u64, 2, -3)]).unwrap();
        assert_eq!(get(&store, 0).unwrap(), vec![(0, MAX - 1)]);
        assert_eq!(get(&store, 2).unwrap(), vec![(0, MAX - 3)]);
        assert_eq!(
            snapshot(&store).unwrap(),
            vec![(1, 0, 0, MAX - 1), (1, 0, 1, 1), (1, 0, 2, -3)]
        );
        store.seal("s", 3).unwrap();
        assert_eq!(get(&store, 2).unwrap(), vec![(0, MAX - 3)]);
        // A merge advancing every time to 2 sums MAX - 1 + 1 - 3 in one (key, val, time).
        store.allow_compaction("s", 2).unwrap();
        store.write("s", &[(9u64, 0u64, 3, 1)]).unwrap();
        store.seal("s", 4).unwrap();
        store.compact("s").unwrap();
        assert_eq!(store.background_error(), None);
        assert_eq!(get(&store, 3).unwrap(), vec![(0, MAX - 3)]);
    }
}

#[test]
fn spilled_runs_and_the_memtable_overflowing_together_fail_the_snapshot_and_the_seal() {
    // Every write spills: the two updates meet only in the seal's and the snapshot's merge.
    let store = store_with(1);
    store.write("s", &[(1u64, 0u64, 0, MAX)]).unwrap();
    store.write("s", &[(1u64, 0u64, 0, 1)]).unwrap();
    assert!(!store.snapshot("s").unwrap().spills().is_empty());
    assert_overflow(snapshot(&store), 0);
    assert_overflow(get(&store, 0), 0);
    // The seal fails and changes nothing.
    assert_overflow(store.seal("s", 1), 0);
    assert_eq!(store.upper("s").unwrap(), 0);
    assert!(store.sealed("s").unwrap().batches.is_empty());
    // A compensating update at the same time: the total fits again, and the seal goes through.
    store.write("s", &[(1u64, 0u64, 0, -1)]).unwrap();
    assert_eq!(snapshot(&store).unwrap(), vec![(1, 0, 0, MAX)]);
    store.seal("s", 1).unwrap();
    assert_eq!(get(&store, 0).unwrap(), vec![(0, MAX)]);
    assert_eq!(snapshot(&store).unwrap(), vec![(1, 0, 0, MAX)]);
}

#[test]
fn a_merge_collapsing_times_into_an_overflow_fails_and_writes_nothing() {
    let store = store();
    store.write("s", &[(1u64, 0u64, 0, MAX)]).unwrap();
    store.seal("s", 1).unwrap();
    store.allow_compaction("s", 1).unwrap();
    store.write("s", &[(1u64, 0u64, 1, 1)]).unwrap();
    // The seal's inline merge of the two batches would sum MAX + 1 at time 1: it fails, recorded as the
    // background error, and the batches stay as they were.
    store.seal("s", 2).unwrap();
    let background = store.background_error().expect("the merge must fail");
    assert!(
        background.contains("overflow") && background.contains("time 1"),
        "{background}"
    );
    assert_eq!(store.sealed("s").unwrap().batches.len(), 2);
    assert_overflow(store.compact("s"), 1);
    assert_eq!(store.sealed("s").unwrap().batches.len(), 2);
    // Reads see the updates as written; the accumulation at time 1 is out of range.
    assert_eq!(snapshot(&store).unwrap(), vec![(1, 0, 0, MAX), (1, 0, 1, 1)]);
    // Below the since a lookup is refused (its answer would depend on the merge), at it the overflow.
    assert!(matches!(get(&store, 0), Err(ddpersist::Error::BadInput { .. })));
    assert_overflow(get(&store, 1), 1);
}

#[test]
fn de_upsert_of_an_extreme_multiplicity_retracts_it_or_reports_it() {
    let store = store();
    store.write("s", &[(1u64, 0u64, 0, i64::MIN)]).unwrap();
    store.seal("s", 1).unwrap();
    // Retracting i64::MIN would take a diff of -i64::MIN, which no i64 holds.
    assert_overflow(apply_upserts(&store, "s", 1, vec![(1u64, Some(5u64))]), 1);
    assert_eq!(get(&store, 1).unwrap(), vec![(0, i64::MIN)]);
    // MAX + MAX - MAX at time 1 (a partial sum out of range): MIN + MAX = -1 in all.
    store
        .write(
            "s",
            &[(1u64, 0u64, 1, MAX), (1u64, 0u64, 1, MAX), (1u64, 0u64, 1, -MAX)],
        )
        .unwrap();
    let out = apply_upserts(&store, "s", 2, vec![(1u64, Some(5u64))]).unwrap();
    assert_eq!(out, vec![(1, 0, 1), (1, 5, 1)]);
    assert_eq!(get(&store, 2).unwrap(), vec![(5, 1)]);
}

#[test]
fn the_count_operator_reports_an_out_of_range_count_instead_of_wrapping() {
    let store = Store::in_memory().unwrap();
    let counts: Arc<Mutex<Vec<CountUpdate>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let (out, errs) = (counts.clone(), errors.clone());
    timely::execute_directly(move |worker| {
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, coll) = scope.new_collection::<(String, u64), i64>();
            let (persisted, handle) = coll.arrange_persisted(&store, "a").unwrap();
            let out = out.clone();
            persisted
                .count()
                .inspect(move |u| out.lock().unwrap().push(u.clone()));
            (input, handle)
        });
        // Two vals of key "k": MAX and 1 records, MAX + 1 in all at time 0; then back to MAX at time 1.
        input.update(("k".to_string(), 1), MAX);
        input.update(("k".to_string(), 2), 1);
        input.update(("j".to_string(), 1), 3);
        input.advance_to(1);
        input.update(("k".to_string(), 2), -1);
        input.advance_to(2);
        input.close();
        while worker.step() {}
        errs.lock().unwrap().extend(handle.error());
    });
    let mut got: BTreeMap<(Vec<u8>, i64, u64), isize> = BTreeMap::new();
    for ((k, c), t, r) in counts.lock().unwrap().iter() {
        *got.entry((k.clone(), *c, *t)).or_default() += r;
    }
    got.retain(|_, r| *r != 0);
    let key = |s: &str| s.to_string().to_bytes();
    // "j" counts 3; "k" has no count at time 0 (out of range), MAX from time 1.
    let want: BTreeMap<_, _> = [((key("j"), 3, 0), 1), ((key("k"), MAX, 1), 1)].into();
    assert_eq!(got, want);
    let errors = errors.lock().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("overflow") && errors[0].contains(&format!("{}", key("k").escape_ascii())),
        "{}",
        errors[0]
    );
}

proptest! {
    #![proptest_config(Config { cases: 48, ..Config::default() })]

    /// Random writes of huge diffs to one key at a few times and vals, with seals, merges and a since:
    /// every write and read either agrees with exact (`i128`) arithmetic or reports a diff overflow exactly
    /// when the exact answer is out of range.
    #[test]
    fn lookups_and_snapshots_agree_with_exact_arithmetic(
        ops in prop::collection::vec(
            (
                0u64..3,
                0u64..2,
                prop_oneof![Just(MAX), Just(i64::MIN), Just(MAX / 2), -3i64..4],
                any::<bool>(),
            ),
            1..24,
        )
    ) {
        let store = store();
        // Exact totals per (val, time) of the accepted writes.
        let mut model: BTreeMap<(u64, u64), i128> = BTreeMap::new();
        let fits = |x: i128| i64::try_from(x).is_ok();
        let mut upper = 0;
        for (dt, val, diff, seal) in ops {
            let time = upper + dt;
            let entry = model.get(&(val, time)).copied().unwrap_or(0);
            let r = store.write("s", &[(1u64, val, time, diff)]);
            if fits(entry + diff as i128) {
                prop_assert!(r.is_ok(), "{r:?}");
                *model.entry((val, time)).or_default() += diff as i128;
            } else {
                prop_assert!(matches!(r, Err(Error::DiffOverflow { .. })), "{r:?}");
            }
            if seal {
                upper = time + 1;
                store.seal("s", upper).unwrap();
                store.allow_compaction("s", upper / 2).unwrap();
            }
            for as_of in [upper, upper + 2] {
                let mut totals: BTreeMap<u64, i128> = BTreeMap::new();
                for (&(v, t), &d) in &model {
                    if t <= as_of {
                        *totals.entry(v).or_default() += d;
                    }
                }
                let got = get(&store, as_of);
                if totals.values().all(|&d| fits(d)) {
                    let want: Vec<(u64, i64)> = totals
                        .into_iter()
                        .filter(|&(_, d)| d != 0)
                        .map(|(v, d)| (v, d as i64))
                        .collect();
                    prop_assert_eq!(got.unwrap(), want);
                } else {
                    prop_assert!(matches!(got, Err(Error::DiffOverflow { .. })), "{got:?}");
                }
            }
            let snap = snapshot(&store);
            if store.since("s").unwrap() == 0 {
                let want: Vec<(u64, u64, u64, i64)> = model
                    .iter()
                    .filter(|(_, &d)| d != 0)
                    .map(|(&(v, t), &d)| (1, v, t, d as i64))
                    .collect();
                prop_assert_eq!(snap.unwrap(), want);
            } else if let Err(e) = snap {
                prop_assert!(matches!(e, Error::DiffOverflow { .. }), "{e:?}");
            }
        }
    }
}
