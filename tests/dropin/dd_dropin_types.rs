//! Drop-in checks (written by an adversarial round of this session): DD 0.26 programs over `arrange_by_key()` / `arrange_by_self()` ported by
//! changing the arrange call only, each answer compared with DD's in-memory one on the same input.
//!
//! Part 1: `reduce` sees a key's vals in DD's order (the `Ord` of `V`) for many val types: the codec order
//! must be the `Ord` order, or `input[0]` (DD's "min" idiom) differs.

// Tuples of output logs, one per operator compared.
#![allow(clippy::type_complexity)]

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::{ExchangeData, Hashable};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log<D> = Arc<Mutex<Vec<(D, u64, i64)>>>;

/// The output of one key's reduce: the key and its vals with their diffs.
type Firsts<K, V> = Log<(K, Vec<(V, isize)>)>;

/// `(time, record) -> diff`, summed per time; zero diffs left out.
fn consolidated<D: Ord + Clone + Debug>(log: &Log<D>) -> BTreeMap<(u64, D), i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in log.lock().unwrap().iter() {
        *acc.entry((*t, d.clone())).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Runs `reduce` that outputs the slice it is given (vals in the order presented, with their diffs), on the
/// persisted arrangement and on DD's, over `pairs` inserted at time 0 and every third removed at time 1.
fn reduce_order<K, V>(pairs: Vec<(K, V)>)
where
    K: Codec + ExchangeData + Hashable + Debug + Sync,
    V: Codec + ExchangeData + Debug + Sync,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (p, d): (Firsts<K, V>, Firsts<K, V>) = Default::default();
    let (p2, d2) = (p.clone(), d.clone());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, coll) = scope.new_collection::<(K, V), isize>();
            let logic = |_k: &K, s: &[(&V, isize)], out: &mut Vec<(Vec<(V, isize)>, isize)>| {
                out.push((s.iter().map(|(v, r)| ((*v).clone(), *r)).collect(), 1))
            };
            coll.clone()
                .arrange_by_key_persisted(&store, "order")
                .unwrap()
                .reduce(logic)
                .inner
                .inspect(move |(x, t, r)| p2.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            coll.reduce(logic)
                .inner
                .inspect(move |(x, t, r)| d2.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            input
        });
        for pair in pairs.iter() {
            input.insert(pair.clone());
        }
        input.advance_to(1);
        for pair in pairs.iter().step_by(3) {
            input.remove(pair.clone());
        }
        input.advance_to(2);
        input.flush();
        worker.step_while(|| probe.less_than(&2));
    });
    assert!(!consolidated(&d).is_empty());
    assert_eq!(consolidated(&p), consolidated(&d));
}

#[test]
fn reduce_order_strings_with_nul_bytes() {
    let vals = [
        "",
        "\0",
        "\0\0",
        "\0\u{1}",
        "\u{1}",
        "a",
        "a\0",
        "a\0b",
        "ab",
        "\u{ff}",
        "é",
        "\u{10FFFF}",
    ];
    reduce_order(vals.iter().map(|v| (1u8, v.to_string())).collect());
}

#[test]
fn reduce_order_byte_vectors() {
    let vals: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0, 0],
        vec![0, 1],
        vec![0, 255],
        vec![1],
        vec![255],
        vec![255, 0],
    ];
    reduce_order(vals.into_iter().map(|v| (7u64, v)).collect());
}

#[test]
fn reduce_order_nested_sequences() {
    let vals: Vec<Vec<String>> = vec![
        vec![],
        vec!["".into()],
        vec!["".into(), "".into()],
        vec!["a".into()],
        vec!["a".into(), "".into()],
        vec!["a\0".into()],
        vec!["b".into()],
    ];
    reduce_order(vals.into_iter().map(|v| ("k".to_string(), v)).collect());
    let vals: Vec<Vec<Vec<u8>>> = vec![
        vec![],
        vec![vec![]],
        vec![vec![0]],
        vec![vec![], vec![]],
        vec![vec![1]],
    ];
    reduce_order(vals.into_iter().map(|v| (0i32, v)).collect());
}

#[test]
fn reduce_order_options_tuples_wide_integers() {
    let vals: Vec<Option<(String, i64)>> = vec![
        None,
        Some(("".into(), -5)),
        Some(("".into(), 5)),
        Some(("a".into(), i64::MIN)),
        Some(("a".into(), i64::MAX)),
    ];
    reduce_order(vals.into_iter().map(|v| (-1i64, v)).collect());
    let vals: Vec<(i128, u128)> = vec![(i128::MIN, 0), (-1, u128::MAX), (0, 1), (i128::MAX, 0)];
    reduce_order(vals.into_iter().map(|v| ((), v)).collect());
}

#[test]
fn reduce_order_std_types() {
    reduce_order(vec![
        (1u8, Ok::<u8, String>(3)),
        (1, Err("a".into())),
        (1, Ok(0)),
        (1, Err("".into())),
    ]);
    reduce_order(vec![
        (1u8, Reverse("a".to_string())),
        (1, Reverse("ab".into())),
        (1, Reverse("".into())),
        (1, Reverse("b".into())),
    ]);
    reduce_order(
        [vec![], vec![1u32], vec![1, 2], vec![2], vec![0, 5]]
            .into_iter()
            .map(|v| (true, v.into_iter().collect::<BTreeSet<u32>>()))
            .collect(),
    );
    reduce_order(vec![
        ('a', 'z'),
        ('a', '\0'),
        ('a', 'é'),
        ('a', '\u{10FFFF}'),
        ('b', 'b'),
    ]);
    reduce_order(vec![(false, true), (false, false), (true, true)]);
    reduce_order(vec![
        (1u16, std::time::Duration::from_millis(1500)),
        (1, std::time::Duration::from_secs(1)),
        (1, std::time::Duration::from_nanos(1)),
    ]);
    reduce_order(
        ["10.0.0.1:80", "9.0.0.1:80", "[::1]:8080", "9.0.0.1:7"]
            .iter()
            .map(|a| (0u8, a.parse::<std::net::SocketAddr>().unwrap()))
            .collect(),
    );
    reduce_order(vec![(0u8, [3u8, 0, 1]), (0, [0, 0, 0]), (0, [3, 0, 0])]);
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
enum Kind {
    A,
    B(u8),
    C { x: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Rec {
    name: String,
    tags: Vec<String>,
    level: Option<i32>,
    kind: Kind,
}
ddpersist::serde_codec!(Kind);
ddpersist::serde_codec!(Rec);

#[test]
fn reduce_order_serde_structs_and_enums() {
    let rec = |name: &str, tags: &[&str], level: Option<i32>, kind: Kind| Rec {
        name: name.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        level,
        kind,
    };
    let vals = vec![
        rec("a", &[], None, Kind::A),
        rec("a", &[], Some(-3), Kind::A),
        rec("a", &[], Some(3), Kind::C { x: -1 }),
        rec("a", &[""], None, Kind::B(0)),
        rec("a\0", &[], None, Kind::A),
        rec("", &["x", "y"], None, Kind::C { x: i64::MIN }),
        rec("b", &["a"], Some(i32::MIN), Kind::B(255)),
    ];
    reduce_order(vals.into_iter().map(|v| (Kind::B(1), v)).collect());
}

// ---- Part 2: totals, diffs, empty inputs ----

/// DD's `arrange_by_self().count_total()` and `threshold_total` against the persisted ones, over diffs that
/// go negative, back to zero, and large.
#[test]
fn totals_with_negative_zero_and_large_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type L = (
        Log<(String, isize)>,
        Log<(String, isize)>,
        Log<String>,
        Log<String>,
        Log<String>,
        Log<String>,
    );
    let logs: L = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, keys) = scope.new_collection::<String, isize>();
            let p = keys.clone().arrange_by_self_persisted(&store, "keys").unwrap();
            let d = keys.arrange_by_self();
            let (a, b, c, e, f, g) = (
                l.0.clone(),
                l.1.clone(),
                l.2.clone(),
                l.3.clone(),
                l.4.clone(),
                l.5.clone(),
            );
            p.clone()
                .count_total()
                .inner
                .inspect(move |(x, t, r)| a.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            d.clone()
                .count_total()
                .inner
                .inspect(move |(x, t, r)| b.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            p.clone()
                .threshold_total(|_, c| if *c >= 2 { 1isize } else { 0 })
                .inner
                .inspect(move |(x, t, r)| c.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            d.clone()
                .threshold_total(|_, c| if *c >= 2 { 1isize } else { 0 })
                .inner
                .inspect(move |(x, t, r)| e.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            p.distinct_total()
                .inner
                .inspect(move |(x, t, r)| f.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            d.distinct_total()
                .inner
                .inspect(move |(x, t, r)| g.lock().unwrap().push((x.clone(), *t, *r as i64)))
                .probe_with(&probe);
            input
        });
        let big = 1isize << 40;
        let steps: Vec<Vec<(&str, isize)>> = vec![
            vec![("a", 3), ("b", 1), ("c", big)],
            vec![("a", -3), ("b", -2), ("c", big)],
            vec![("a", -1), ("b", 1), ("c", -2 * big)],
            vec![("a", 1), ("d", 5), ("d", -5)],
            vec![("a", 2), ("b", 2)],
        ];
        for (t, step) in steps.iter().enumerate() {
            input.advance_to(t as u64);
            for (k, r) in step {
                input.update(k.to_string(), *r);
            }
        }
        input.advance_to(steps.len() as u64);
        input.flush();
        worker.step_while(|| probe.less_than(&(steps.len() as u64)));
    });
    assert!(!consolidated(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1), "count_total");
    assert_eq!(consolidated(&logs.2), consolidated(&logs.3), "threshold_total");
    assert_eq!(consolidated(&logs.4), consolidated(&logs.5), "distinct_total");
}

// ---- Part 3: reopening with other types ----

/// A stream written as `(u32, String)` at `u64` times, rebuilt as `(u32, u64)` and `(u64, String)`: each
/// build must fail (README: "Other key or val types than a stream was written with fail
/// `arrange_by_key_persisted`"), not serve wrong values. (At `u32` times the build succeeds: the operators
/// docs allow reading a stream at another unsigned timestamp type whose range holds its times, though README
/// says timestamp types other than written fail at build; not asserted.)
#[test]
fn reopening_with_other_types_fails_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s1 = store.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u32, String), isize>();
            pairs
                .arrange_by_key_persisted(&s1, "pairs")
                .unwrap()
                .stream
                .probe_with(&probe);
            input
        });
        input.insert((1, "one".to_string()));
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(&1));
    });
    let results = Arc::new(Mutex::new(Vec::new()));
    let (r, s2) = (results.clone(), store.clone());
    timely::execute_directly(move |worker| {
        worker.dataflow::<u64, _, _>(|scope| {
            let (_i, pairs) = scope.new_collection::<(u32, u64), isize>();
            r.lock().unwrap().push((
                "(u32, u64)",
                pairs
                    .arrange_by_key_persisted(&s2, "pairs")
                    .err()
                    .map(|e| e.to_string()),
            ));
            let (_i, pairs) = scope.new_collection::<(u64, String), isize>();
            r.lock().unwrap().push((
                "(u64, String)",
                pairs
                    .arrange_by_key_persisted(&s2, "pairs")
                    .err()
                    .map(|e| e.to_string()),
            ));
        });
        worker.dataflow::<u32, _, _>(|scope| {
            let (_i, pairs) = scope.new_collection::<(u32, String), isize>();
            r.lock().unwrap().push((
                "u32 times",
                pairs
                    .arrange_by_key_persisted(&s2, "pairs")
                    .err()
                    .map(|e| e.to_string()),
            ));
        });
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    });
    let results = results.lock().unwrap().clone();
    eprintln!("{results:#?}");
    assert!(results[..2].iter().all(|(_, e)| e.is_some()), "{results:#?}");
}

/// Arrangement ids as users write them (a path-like name, spaces, non-ASCII, a long descriptive one, empty,
/// one with `..`): each must build, persist and serve its data, or fail at build with an error; never panic.
#[test]
fn arrangement_ids_of_many_shapes() {
    let long = "orders_by_customer_and_region_".repeat(10);
    let ids: Vec<String> = vec![
        "orders/by_customer".into(),
        "a b".into(),
        "ünï-ςode".into(),
        long,
        "".into(),
        "../escape".into(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    timely::execute_directly(move |worker| {
        for id in ids.iter() {
            let probe = ProbeHandle::new();
            let log: Log<(u32, String)> = Default::default();
            let built = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(u32, String), isize>();
                match pairs.arrange_by_key_persisted(&store, id) {
                    Ok(p) => {
                        let l = log.clone();
                        p.as_vecs()
                            .inner
                            .inspect(move |(x, t, r)| l.lock().unwrap().push((x.clone(), *t, *r as i64)))
                            .probe_with(&probe);
                        Ok(input)
                    }
                    Err(e) => Err(e.to_string()),
                }
            });
            match built {
                Ok(mut input) => {
                    input.insert((1, id.clone()));
                    input.advance_to(1);
                    input.flush();
                    for _ in 0..10_000 {
                        if !probe.less_than(&1) {
                            break;
                        }
                        worker.step();
                    }
                    let ok = !probe.less_than(&1) && consolidated(&log).len() == 1;
                    r.lock().unwrap().push(format!("{id:?}: built; served: {ok}"));
                }
                Err(e) => r.lock().unwrap().push(format!("{id:?}: refused: {e}")),
            }
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    });
    let results = results.lock().unwrap().clone();
    eprintln!("{results:#?}");
    // Every id builds and serves but the empty one, which is refused with a clear error.
    let refused: Vec<&String> = results.iter().filter(|s| !s.contains("served: true")).collect();
    assert_eq!(refused.len(), 1, "{results:#?}");
    assert!(
        refused[0].starts_with("\"\": refused") && refused[0].contains("empty"),
        "{results:#?}"
    );
    assert!(dir.path().parent().is_none_or(|p| !p.join("escape").exists()));
}
