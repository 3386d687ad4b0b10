//! Typed persisted operators beyond DD's ports: decode failures (an arrangement read with other types
//! than it was written with) are reported in the handle and hold every typed operator's frontier;
//! `persist` and `upsert_persisted` at `usize` times with a restart; README's snippet as written there.

use crate::common;

use common::Priority;
use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// Reading an arrangement whose bytes do not decode as its types: every typed operator records the
/// decode error in the handle's slot and holds its frontier (a probe never passes the time), never
/// panicking and never reporting an incomplete answer as complete. (A stream written by a typed operator
/// records its types, and other types are refused when the dataflow is built: `tests/store/stream_types.rs`.
/// This one is written through the `Store` API, which records none, so only decoding can tell.)
#[test]
fn decode_failures_are_reported_and_hold_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let stream = ddpersist::operators::worker_stream_id("mismatch", 0, 1);
        store
            .create_stream(&stream, ddpersist::StreamOptions { durable: false })
            .unwrap();
        let update = ("a key".to_string(), "a longer string".to_string(), 0, 1);
        store.write(&stream, &[update]).unwrap();
        store.seal(&stream, 1).unwrap();
    }
    type Build = for<'s> fn(
        ddpersist::operators::TypedPersisted<'s, usize, u32>,
        VecCollectionOf<'s>,
    ) -> VecCollectionOf<'s>;
    type VecCollectionOf<'s> = differential_dataflow::VecCollection<'s, u64, (usize, u32), isize>;
    let operators: [(&str, Build); 5] = [
        ("as_collection", |a, _| a.as_collection(|k, v| (*k, *v))),
        ("join", |a, o| a.join(o).map(|(k, (v, _))| (k, v))),
        ("semijoin", |a, o| a.semijoin(o.map(|(k, _)| k))),
        ("reduce", |a, _| a.reduce(|_, s, t| t.push((*s[0].0, 1isize)))),
        ("count_total", |a, _| a.count_total().map(|(k, c)| (k, c as u32))),
    ];
    for (name, build) in operators {
        let store = Store::open(dir.path()).unwrap();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, mut other, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(usize, u32), isize>();
                let (other, others) = scope.new_collection::<(usize, u32), isize>();
                let arranged = pairs.arrange_by_key_persisted(&store, "mismatch").unwrap();
                let handle = arranged.handle().unwrap().clone();
                build(arranged, others).probe_with(&probe);
                (input, other, handle)
            });
            other.insert((1, 7));
            for input in [&mut input, &mut other] {
                input.advance_to(3);
                input.flush();
            }
            for _ in 0..200 {
                worker.step();
            }
            let error = handle
                .error()
                .unwrap_or_else(|| panic!("{name}: the decode error is reported"));
            assert!(error.contains("does not decode"), "{name}: {error}");
            assert!(
                probe.less_than(&1),
                "{name}: the frontier is held at the failing time"
            );
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        });
    }
}

/// `persist` and `upsert_persisted` at `usize` times (DD's examples' inferred timestamp), with 1 and 2
/// workers and a restart: the second run replays what the first persisted, then continues; its output
/// accumulates to the same collection as an uninterrupted in-memory computation.
#[test]
fn persist_and_upsert_at_usize_times_with_a_restart() {
    use ddpersist::operators::{Persist, UpsertPersisted};
    use ddpersist::PersistManager;
    use timely::dataflow::operators::Input as _;

    /// Upserts of round `t`: key `k{i}` set to `t * 10 + i`, every third deleted.
    fn upserts(t: usize) -> Vec<(String, Option<u32>, usize)> {
        (0..4)
            .map(|i| {
                let val = (!(t + i).is_multiple_of(3)).then_some((t * 10 + i) as u32);
                (format!("k{}", (t + i) % 5), val, t)
            })
            .collect()
    }
    type Seen = Arc<Mutex<Vec<(String, i64)>>>;
    fn run(dir: &Path, workers: usize, rounds: usize) -> (BTreeMap<String, i64>, BTreeMap<String, i64>, u64) {
        let manager = PersistManager::new(Store::open(dir).unwrap());
        let (persisted, upserted): (Seen, Seen) = Default::default();
        let resume = Arc::new(Mutex::new(0u64));
        let (p, u, r) = (persisted.clone(), upserted.clone(), resume.clone());
        timely::execute(timely::Config::process(workers), move |worker| {
            let token = manager.token("pairs", worker.index()).unwrap();
            let probe = ProbeHandle::new();
            let store = manager.store().clone();
            let (mut pairs, mut ups, from) = worker.dataflow::<usize, _, _>(|scope| {
                let (pairs_input, pairs) = scope.new_collection::<(usize, String), i64>();
                let (persisted, handle) = pairs.persist(token).unwrap();
                let p = p.clone();
                persisted
                    .inner
                    .inspect(move |(d, _, r)| p.lock().unwrap().push((format!("{d:?}"), *r)))
                    .probe_with(&probe);
                let (ups_input, ups) = scope.new_input::<Vec<(String, Option<u32>, usize)>>();
                let (upserted, upsert_handle) = ups.upsert_persisted(&store, "upserts").unwrap();
                let u = u.clone();
                upserted
                    .inner
                    .inspect(move |(d, _, r)| u.lock().unwrap().push((format!("{d:?}"), *r)))
                    .probe_with(&probe);
                (
                    pairs_input,
                    ups_input,
                    handle.resume_at().min(upsert_handle.resume_at()),
                )
            });
            *r.lock().unwrap() = from;
            let from = from as usize;
            pairs.advance_to(from);
            ups.advance_to(from);
            for t in from..rounds {
                pairs.advance_to(t);
                ups.advance_to(t);
                if worker.index() == 0 {
                    pairs.update((t % 3, format!("v{t}")), 1);
                    for upsert in upserts(t) {
                        ups.send(upsert);
                    }
                }
            }
            pairs.advance_to(rounds);
            pairs.flush();
            ups.advance_to(rounds);
            worker.step_while(|| probe.less_than(&rounds));
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        })
        .unwrap();
        let consolidate = |seen: &Seen| {
            let mut acc = BTreeMap::new();
            for (d, r) in seen.lock().unwrap().iter() {
                *acc.entry(d.clone()).or_insert(0) += r;
            }
            acc.retain(|_, r| *r != 0);
            acc
        };
        let resume = *resume.lock().unwrap();
        (consolidate(&persisted), consolidate(&upserted), resume)
    }
    /// What an uninterrupted run over rounds `0..rounds` accumulates to.
    fn expected(rounds: usize) -> (BTreeMap<String, i64>, BTreeMap<String, i64>) {
        let pairs = (0..rounds)
            .map(|t| (format!("{:?}", (t % 3, format!("v{t}"))), 1))
            .collect();
        let mut state = BTreeMap::new();
        for t in 0..rounds {
            for (k, v, _) in upserts(t) {
                match v {
                    Some(v) => state.insert(k, v),
                    None => state.remove(&k),
                };
            }
        }
        let upserted = state
            .into_iter()
            .map(|(k, v)| (format!("{:?}", (k, v)), 1))
            .collect();
        (pairs, upserted)
    }
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (pairs, upserted, resume) = run(dir.path(), workers, 4);
        assert_eq!(resume, 0);
        assert_eq!((pairs, upserted), expected(4), "{workers} workers, first run");
        let (pairs, upserted, resume) = run(dir.path(), workers, 9);
        assert_eq!(resume, 4, "{workers} workers: the first run persisted its rounds");
        assert_eq!(
            (pairs, upserted),
            expected(9),
            "{workers} workers, after the restart"
        );
    }
}

/// README's snippet ("Keeping a collection's state across restarts"), as written there, inside a
/// dataflow: a serde struct val with isize diffs, typed `as_collection`, `count_total` and `join`.
#[test]
fn readme_snippet() {
    #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
    struct Price {
        cents: u64,
        currency: String,
    }
    ddpersist::serde_codec!(Price); // your serde type, stored in key order

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut orders_input) = worker
            .dataflow::<u64, _, _>(|scope| -> ddpersist::Result<_> {
                let (orders_input, orders) = scope.new_collection::<(String, u32), isize>();
                // --- the snippet ---
                let (input, prices) = scope.new_collection::<(String, Price), isize>(); // DD's usual isize diffs
                let arranged = prices.arrange_by_key_persisted(&store, "prices")?; // was: prices.arrange_by_key()
                let cheap = arranged
                    .clone()
                    .as_collection(|k, v| (k.clone(), v.cents))
                    .filter(|x| x.1 < 100);
                let counts = arranged.clone().count_total(); // (String, isize)
                let joined = arranged.join(orders); // orders: VecCollection<(String, u32), isize>
                                                    // --- end ---
                let (s1, s2, s3) = (s.clone(), s.clone(), s.clone());
                cheap
                    .inspect(move |x| s1.lock().unwrap().push(format!("cheap {x:?}")))
                    .probe_with(&probe);
                counts
                    .inspect(move |x| s2.lock().unwrap().push(format!("count {x:?}")))
                    .probe_with(&probe);
                joined
                    .inspect(move |x| s3.lock().unwrap().push(format!("joined {x:?}")))
                    .probe_with(&probe);
                Ok((input, orders_input))
            })
            .unwrap();
        let price = |cents| Price {
            cents,
            currency: "EUR".into(),
        };
        input.insert(("apple".into(), price(50)));
        input.insert(("pear".into(), price(150)));
        orders_input.insert(("pear".into(), 3));
        input.advance_to(1);
        orders_input.advance_to(1);
        input.flush();
        orders_input.flush();
        worker.step_while(|| probe.less_than(&1));
    });
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let price = |cents| Price {
        cents,
        currency: "EUR".into(),
    };
    let mut want = vec![
        format!("cheap ({:?}, 0, 1)", ("apple".to_string(), 50u64)),
        format!("count ({:?}, 0, 1)", ("apple".to_string(), 1isize)),
        format!("count ({:?}, 0, 1)", ("pear".to_string(), 1isize)),
        format!("joined ({:?}, 0, 1)", ("pear".to_string(), (price(150), 3u32))),
    ];
    want.sort();
    assert_eq!(seen, want);
}

/// A struct with a `Reverse` field (DD's idiom to put the largest score first); serde encodes
/// `Reverse<T>` as `T`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
struct ByScoreDesc {
    score: std::cmp::Reverse<u32>,
    name: String,
}
ddpersist::serde_codec!(ByScoreDesc);

/// Arranges `vals` under one key and takes each key's least val (DD's `s[0]` idiom); returns the output
/// at complete times and the handle's error.
fn least_val<V>(vals: Vec<V>) -> (Vec<(u32, V)>, Option<String>)
where
    V: ddpersist::Codec + differential_dataflow::ExchangeData + std::hash::Hash + Sync,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    let error = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, V), isize>();
            let arranged = c.arrange_by_key_persisted(&store, "least").unwrap();
            let handle = arranged.handle().unwrap().clone();
            arranged
                .reduce(|_, s, t| t.push((s[0].0.clone(), 1isize)))
                .inspect(move |((k, v), _, _)| o.lock().unwrap().push((*k, v.clone())))
                .probe_with(&probe);
            (input, handle)
        });
        for v in vals {
            input.insert((1, v));
        }
        input.advance_to(1);
        input.flush();
        for _ in 0..1_000 {
            worker.step();
        }
        assert!(probe.less_than(&1), "a refused input must not complete its time");
        let error = handle.error();
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        error
    });
    let out = out.lock().unwrap().clone();
    (out, error)
}

/// A `Codec` whose byte order differs from the type's `Ord` would make the persisted arrangement sort
/// and group unlike DD's (`s[0]` the wrong val): the arranging operator refuses the input with an error
/// naming the types and holds its frontier, so no answer is ever complete (found by an independent check:
/// the persisted `reduce` answered `High` where DD answers `Low`).
#[test]
fn a_codec_that_orders_unlike_ord_is_refused() {
    assert!(Priority::Low < Priority::High);
    let (out, error) = least_val(vec![Priority::High, Priority::Low, Priority::Mid]);
    assert!(out.is_empty(), "{out:?}");
    let error = error.expect("the misordering codec is reported");
    assert!(
        error.contains("unlike their Ord") && error.contains("Priority") && error.contains("key then val"),
        "{error}"
    );

    let e = |score, name: &str| ByScoreDesc {
        score: std::cmp::Reverse(score),
        name: name.into(),
    };
    let (out, error) = least_val(vec![e(10, "ten"), e(90, "ninety"), e(50, "fifty")]);
    assert!(out.is_empty(), "{out:?}");
    let error = error.expect("the misordering codec is reported");
    assert!(error.contains("ByScoreDesc"), "{error}");
}

/// Runs a `count_total` over `arrange_by_key_persisted` at `i32` times (what Rust infers for
/// `advance_to(1)` with nothing else to go by, as in DD's tests), feeding `rounds` from the arrangement's
/// resume point; returns the counts at the last time and the resume point.
fn counts_at_i32_times(dir: &Path, rounds: std::ops::Range<i32>) -> (BTreeMap<u32, isize>, i32) {
    use ddpersist::operators::PersistTime;
    let store = Store::open(dir).unwrap();
    let out = Arc::new(Mutex::new(BTreeMap::new()));
    let o = out.clone();
    let resume = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow(|scope| {
            let (input, pairs) = scope.new_collection::<(u32, u32), isize>();
            let arranged = pairs.arrange_by_key_persisted(&store, "signed").unwrap();
            let handle = arranged.handle().unwrap().clone();
            arranged
                .count_total()
                .inspect(move |((k, n), _, d)| *o.lock().unwrap().entry(*k).or_insert(0) += n * d)
                .probe_with(&probe);
            (input, handle)
        });
        let resume = i32::from_u64(handle.resume_at()).expect("an i32 time");
        input.advance_to(resume.max(rounds.start));
        for t in resume.max(rounds.start)..rounds.end {
            input.insert((t as u32 % 3, t as u32));
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
        }
        resume
    });
    let mut counts = out.lock().unwrap().clone();
    counts.retain(|_, n| *n != 0);
    (counts, resume)
}

/// `i32` times persist and restart: the second run resumes at the first run's upper (as an `i32`) and
/// counts every update of both.
#[test]
fn arrangements_at_i32_times_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first, resume) = counts_at_i32_times(dir.path(), 1..6);
    assert_eq!(
        resume,
        i32::MIN,
        "a fresh arrangement resumes at timely's minimum"
    );
    assert_eq!(first, BTreeMap::from([(0, 1), (1, 2), (2, 2)]));
    let (second, resume) = counts_at_i32_times(dir.path(), 1..9);
    assert_eq!(resume, 6);
    assert_eq!(second, BTreeMap::from([(0, 2), (1, 3), (2, 3)]));
}

/// DD's `import_named` and `import_core` on a typed persisted trace keep its types (closures over `&K`,
/// `&V`), and `import_core`'s button shuts the import down (its frontier closes) while the arrangement
/// runs on.
#[test]
fn typed_imports_named_and_core_keep_the_types_and_shut_down() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, String), isize>();
            let arranged = pairs.arrange_by_key_persisted(&store, "imported").unwrap();
            arranged.stream.clone().probe_with(&probe);
            (input, arranged.trace)
        });
        input.insert((1, "one".to_string()));
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(&1));
        let (named, core) = (ProbeHandle::new(), ProbeHandle::new());
        let (s1, s2) = (s.clone(), s.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            trace
                .import_named(scope, "Named")
                .as_collection(|k: &u64, v: &String| (*k, v.clone()))
                .inspect(move |(d, _, r)| s1.lock().unwrap().push(("named", d.clone(), *r)))
                .probe_with(&named);
        });
        let mut button = worker.dataflow::<u64, _, _>(|scope| {
            let (arranged, button) = trace.import_core(scope, "Core");
            arranged
                .as_collection(|k: &u64, v: &String| (*k, v.clone()))
                .inspect(move |(d, _, r)| s2.lock().unwrap().push(("core", d.clone(), *r)))
                .probe_with(&core);
            button
        });
        worker.step_while(|| named.less_than(&1) || core.less_than(&1));
        button.press();
        for _ in 0..100 {
            worker.step();
        }
        assert!(core.done(), "a shut down import's frontier closes");
        assert!(!named.done(), "the other import follows the running arrangement");
        drop(input);
        worker.step_while(|| !named.done());
    });
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("core", (1, "one".to_string()), 1),
            ("named", (1, "one".to_string()), 1)
        ]
    );
}

/// DD's `import_frontier_core` on a typed persisted trace: each time advanced by `since`, times at or
/// beyond `until` left out, the import's frontier closed once every time is; the updates and times equal
/// those of DD's own `import_frontier_core` of an in-memory `arrange_by_key` of the same input, and
/// `import_frontier` (since = the trace's logical compaction, 3 here) equals DD's too.
#[test]
fn typed_import_frontier_matches_dds() {
    use differential_dataflow::trace::TraceReader;
    use timely::progress::Antichain;
    type Seen = Vec<((u64, u64), u64, isize)>;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (persisted, in_memory) = (
        Arc::new(Mutex::new(Seen::new())),
        Arc::new(Mutex::new(Seen::new())),
    );
    let (pf, mf) = (
        Arc::new(Mutex::new(Seen::new())),
        Arc::new(Mutex::new(Seen::new())),
    );
    let (p, m, p2, m2) = (persisted.clone(), in_memory.clone(), pf.clone(), mf.clone());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut typed, mut dd) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
            let typed = pairs
                .clone()
                .arrange_by_key_persisted(&store, "frontier")
                .unwrap();
            typed.stream.clone().probe_with(&probe);
            (input, typed.trace, pairs.arrange_by_key().trace)
        });
        for t in 0..6u64 {
            input.advance_to(t);
            input.insert((t % 2, t));
            if t == 3 {
                input.remove((1, 1));
            }
        }
        input.advance_to(6);
        input.flush();
        worker.step_while(|| probe.less_than(&6));
        let (since, until) = (Antichain::from_elem(2u64), Antichain::from_elem(4u64));
        let (cut, whole) = (ProbeHandle::new(), ProbeHandle::new());
        worker.dataflow::<u64, _, _>(|scope| {
            let (a, _) = typed.import_frontier_core(scope, "P", since.clone(), until.clone());
            a.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |u| p.lock().unwrap().push(*u))
                .probe_with(&cut);
            let (a, _) = dd.import_frontier_core(scope, "M", since, until);
            a.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |u| m.lock().unwrap().push(*u));
        });
        worker.step_while(|| !cut.done());
        // Both traces compacted to 3: import_frontier advances every time by that.
        let three = Antichain::from_elem(3u64);
        typed.set_logical_compaction(three.borrow());
        dd.set_logical_compaction(three.borrow());
        worker.dataflow::<u64, _, _>(|scope| {
            let (a, _) = typed.import_frontier(scope, "PF");
            a.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |u| p2.lock().unwrap().push(*u))
                .probe_with(&whole);
            let (a, _) = dd.import_frontier(scope, "MF");
            a.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |u| m2.lock().unwrap().push(*u));
        });
        worker.step_while(|| whole.less_than(&6));
        drop(input);
        worker.step_while(|| !whole.done());
    });
    let consolidated = |seen: &Arc<Mutex<Seen>>| {
        let mut acc = BTreeMap::new();
        for (d, t, r) in seen.lock().unwrap().iter() {
            *acc.entry((*t, *d)).or_insert(0) += r;
        }
        acc.retain(|_, r| *r != 0);
        acc
    };
    let cut = consolidated(&persisted);
    assert_eq!(cut, consolidated(&in_memory));
    let times: Vec<u64> = cut.keys().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [2, 2, 2, 3, 3],
        "0..=2 advanced to 2, 4 and 5 left out: {cut:?}"
    );
    assert_eq!(consolidated(&pf), consolidated(&mf));
    let whole = consolidated(&pf);
    let times: Vec<u64> = whole.keys().map(|(t, _)| *t).collect();
    assert_eq!(
        times,
        [3, 3, 3, 4, 5],
        "0..=3 advanced to 3, (1, 1)'s insert and retraction cancel there: {whole:?}"
    );
}
