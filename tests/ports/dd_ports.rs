//! Differential dataflow's own computations over persisted arrangements, with DD's everyday types:
//! `isize` diffs from `new_collection()`, `usize` nodes, `char` and serde struct vals; DD 0.26's
//! `tests/bfs.rs` with its edges a typed persisted arrangement brought into the `iterate` scope with `enter`,
//! with 1 and 2 workers and a restart in the middle; arrangements in dataflows with `usize` and `u32`
//! times (DD's examples infer `usize`), restarted; `u8` times up to the type's last time, with `count`;
//! DD's `tests/join.rs` at `usize` times, joined with `join_core` against `arrange_encoded()`. Every
//! answer is compared with the in-memory one.

use crate::common;

use common::ports::dd_join_inputs;
use ddpersist::operators::{
    ArrangeEncoded, ArrangePersisted, ArrangeTyped, PersistHandle, PersistTime, TypedPersisted,
};
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::Iterate;
use differential_dataflow::VecCollection;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// A user's own val type: serde derives and one line for its codec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Visit {
    page: String,
    weight: u32,
}
ddpersist::serde_codec!(Visit);

fn consolidate<D: Ord + Clone>(updates: &[(D, i64)]) -> BTreeMap<D, i64> {
    let mut acc = BTreeMap::new();
    for (d, r) in updates {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// `new_collection()` as DD's examples write it (isize diffs, usize keys, char and struct vals): the
/// persisted arrangement holds what DD's in-memory `arrange_by_key` holds.
#[test]
fn dd_types_arrange_as_in_memory() {
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let want = Arc::new(Mutex::new(Vec::new()));
        let (g, w) = (got.clone(), want.clone());
        timely::execute(timely::Config::process(workers), move |worker| {
            let (g, w) = (g.clone(), w.clone());
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, visits) = scope.new_collection();
                let (persisted, _handle): (_, PersistHandle) =
                    visits.clone().arrange_persisted(&store, "visits").unwrap();
                persisted
                    .as_collection(|k: &[u8], v: &[u8]| {
                        (usize::decode(k).unwrap(), <(char, Visit)>::decode(v).unwrap())
                    })
                    .inner
                    .inspect(move |(d, _, r)| g.lock().unwrap().push((d.clone(), *r)))
                    .probe_with(&probe);
                visits
                    .arrange_by_key()
                    .as_collection(|k: &usize, v: &(char, Visit)| (*k, v.clone()))
                    .inner
                    .inspect(move |(d, _, r)| w.lock().unwrap().push((d.clone(), *r as i64)));
                input
            });
            if worker.index() == 0 {
                for t in 0..5u64 {
                    input.advance_to(t);
                    for i in 0..20usize {
                        let visit = Visit {
                            page: format!("p{}", (i * 7 + t as usize) % 9),
                            weight: i as u32,
                        };
                        let c = char::from(b'a' + (i % 26) as u8);
                        input.update((i % 7, (c, visit.clone())), 1isize);
                        if t > 0 && i % 3 == 0 {
                            input.update((i % 7, (c, visit)), -1isize);
                        }
                    }
                }
            }
            input.advance_to(5);
            input.flush();
            worker.step_while(|| probe.less_than(&5));
        })
        .unwrap();
        let got = consolidate(&got.lock().unwrap());
        let want = consolidate(&want.lock().unwrap());
        assert!(!want.is_empty());
        assert_eq!(got, want, "{workers} workers");
    }
}

/// DD's "greatest first" idiom: vals `(Reverse<u64>, String)` so a `reduce` takes the largest score as
/// `s[0]`, and a `BTreeSet` and a `Duration` in the val: the persisted arrangement's reduce gives what DD's
/// in-memory one gives (std types through their own `Codec`, which `Reverse` inverts).
#[test]
fn greatest_first_with_reverse_as_in_memory() {
    use std::cmp::Reverse;
    use std::collections::BTreeSet;
    use std::time::Duration;
    type Val = (Reverse<u64>, String, BTreeSet<u8>, Duration);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (got, want) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let (g, w) = (got.clone(), want.clone());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, scores) = scope.new_collection::<(u32, Val), isize>();
            let top = |_: &u32, s: &[(&Val, isize)], t: &mut Vec<(Val, isize)>| t.push((s[0].0.clone(), 1));
            scores
                .clone()
                .arrange_by_key_persisted(&store, "scores")
                .unwrap()
                .reduce(top)
                .inner
                .inspect(move |(d, _, r)| g.lock().unwrap().push((d.clone(), *r as i64)))
                .probe_with(&probe);
            scores
                .reduce(top)
                .inner
                .inspect(move |(d, _, r)| w.lock().unwrap().push((d.clone(), *r as i64)));
            input
        });
        for t in 0..4u64 {
            input.advance_to(t);
            for i in 0..12u64 {
                let score = (i * 37 + t * 11) % 50;
                let tags = BTreeSet::from([(i % 3) as u8, (t % 2) as u8]);
                let val = (
                    Reverse(score),
                    format!("n{i}"),
                    tags,
                    Duration::from_millis(score),
                );
                input.update(((i % 4) as u32, val.clone()), 1isize);
                if t > 0 && i % 5 == 0 {
                    input.update(((i % 4) as u32, val), -1isize);
                }
            }
        }
        input.advance_to(4);
        input.flush();
        worker.step_while(|| probe.less_than(&4));
    });
    let (got, want) = (
        consolidate(&got.lock().unwrap()),
        consolidate(&want.lock().unwrap()),
    );
    assert_eq!(want.len(), 4, "one top val per key: {want:?}");
    assert_eq!(got, want);
}

type Node = usize;
type Edge = (Node, Node);

/// Edges added and removed over `rounds` rounds (DD's `tests/bfs.rs` input, with a fixed generator).
fn edge_list(nodes: usize, edges: usize, rounds: u64) -> Vec<(Edge, u64, i64)> {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut present: Vec<Edge> = (0..edges).map(|_| (next(nodes), next(nodes))).collect();
    let mut out: Vec<(Edge, u64, i64)> = present.iter().map(|e| (*e, 0, 1)).collect();
    for round in 1..rounds {
        let added = (next(nodes), next(nodes));
        present.push(added);
        out.push((added, round, 1));
        // Remove an edge that is present (as DD's test does), never one twice.
        let removed = present.swap_remove(next(present.len()));
        out.push((removed, round, -1));
    }
    out
}

/// BFS from node 1 over the edges present after `round`, as `(distance, nodes at that distance)`.
fn bfs_sequential(edges: &[(Edge, u64, i64)], round: u64) -> BTreeMap<(usize, usize), i64> {
    let mut present = BTreeMap::new();
    for (e, t, d) in edges.iter().filter(|e| e.1 <= round) {
        let _ = t;
        *present.entry(*e).or_insert(0i64) += d;
    }
    let mut dist: BTreeMap<usize, usize> = [(1, 0)].into();
    let mut changed = true;
    while changed {
        changed = false;
        for ((src, dst), &cnt) in &present {
            if cnt > 0 {
                if let Some(&ds) = dist.get(src) {
                    if dist.get(dst).is_none_or(|&dd| dd > ds + 1) {
                        dist.insert(*dst, ds + 1);
                        changed = true;
                    }
                }
            }
        }
    }
    let mut counts = BTreeMap::new();
    for d in dist.values() {
        *counts.entry(*d).or_insert(0usize) += 1;
    }
    counts.into_iter().map(|(d, c)| ((d, c), 1)).collect()
}

/// DD's `tests/bfs.rs` `bfs`, with its one change: the edges are a typed persisted arrangement (made by
/// `arrange_by_key_persisted` outside the loop) instead of a collection, entered into the loop and joined
/// with the loop's distances. DD's `inner.join_map(&edges, |_k, l, d| (*d, l + 1))` arranges both sides
/// itself; with the edges arranged already, the join runs from their side, its closure taking the edge's
/// destination `d` before the distance `l`. Times `usize`, diffs `isize`, as in DD's test.
fn bfs<'scope>(
    edges: &TypedPersisted<'scope, Node, Node, usize, isize>,
    roots: VecCollection<'scope, usize, Node, isize>,
) -> VecCollection<'scope, usize, (Node, usize), isize> {
    let nodes = roots.map(|x| (x, 0));
    nodes.clone().iterate(|scope, inner| {
        let edges = edges.clone().enter(scope);
        let nodes = nodes.enter(scope);
        edges
            .join_map(inner, |_k, d, l| (*d, l + 1))
            .concat(nodes)
            .reduce(|_, s, t| t.push((*s[0].0, 1)))
    })
}

/// One run over `dir`: edges persisted (fed from the handle's resume point), roots in memory; returns the
/// bfs counts `(distance, nodes)` accumulated over the run's output, and the resume point.
fn run_bfs(
    dir: &Path,
    workers: usize,
    edges: Vec<(Edge, u64, i64)>,
    rounds: u64,
) -> (BTreeMap<(usize, usize), i64>, u64) {
    let store = Store::open(dir).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let resume = Arc::new(Mutex::new(0));
    let (o, r) = (out.clone(), resume.clone());
    let rounds = rounds as usize;
    timely::execute(timely::Config::process(workers), move |worker| {
        let o = o.clone();
        let probe = ProbeHandle::new();
        let (mut roots, mut edge_input, handle) = worker.dataflow::<usize, _, _>(|scope| {
            let (roots, root_collection) = scope.new_collection::<Node, isize>();
            let (edge_input, edge_collection) = scope.new_collection::<Edge, isize>();
            let persisted = edge_collection.arrange_by_key_persisted(&store, "edges").unwrap();
            let handle = persisted.handle().unwrap().clone();
            bfs(&persisted, root_collection)
                .map(|(_, dist)| dist)
                .count()
                .inner
                .inspect(move |((d, c), _, diff)| o.lock().unwrap().push(((*d, *c as usize), *diff as i64)))
                .probe_with(&probe);
            (roots, edge_input, handle)
        });
        let from = usize::from_u64(handle.resume_at()).expect("resume point within usize");
        *r.lock().unwrap() = from as u64;
        if worker.index() == 0 {
            roots.update(1, 1);
        }
        edge_input.advance_to(from);
        for round in from..rounds {
            edge_input.advance_to(round);
            if worker.index() == 0 {
                for (e, _, d) in edges.iter().filter(|e| e.1 == round as u64) {
                    edge_input.update(*e, *d as isize);
                }
            }
        }
        roots.advance_to(rounds);
        edge_input.advance_to(rounds);
        roots.flush();
        edge_input.flush();
        worker.step_while(|| probe.less_than(&rounds));
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .unwrap();
    let out = consolidate(&out.lock().unwrap());
    let resume = *resume.lock().unwrap();
    (out, resume)
}

/// DD's `tests/bfs.rs` over persisted edges, with 1 and 2 workers and a restart in the middle: the counts
/// after each run equal the sequential answer at its last round.
#[test]
fn bfs_over_persisted_edges_with_a_restart() {
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let edges = edge_list(30, 60, 10);
        let (first, resume) = run_bfs(dir.path(), workers, edges.clone(), 5);
        assert_eq!(resume, 0);
        assert_eq!(first, bfs_sequential(&edges, 4), "{workers} workers, first run");
        let (second, resume) = run_bfs(dir.path(), workers, edges.clone(), 10);
        assert_eq!(resume, 5, "the stopped run recorded every round");
        assert_eq!(
            second,
            bfs_sequential(&edges, 9),
            "{workers} workers, after the restart"
        );
    }
}

/// Round `round`'s updates of the timestamp tests: pairs added, and some of the previous round's removed.
fn pair_updates(round: u64) -> Vec<((usize, String), isize)> {
    let mut out = Vec::new();
    for i in 0..12usize {
        let r = round as usize;
        out.push(((i % 5, format!("v{}", (i * 3 + r) % 7)), 1));
        if round > 0 && i % 4 == 0 {
            out.push(((i % 5, format!("v{}", (i * 3 + r - 1) % 7)), -1));
        }
    }
    out
}

/// Consolidated `(data, diff)` updates of one side of [`run_arrange_at`].
type Pairs = BTreeMap<(usize, String), i64>;

/// One run over `dir` in a dataflow with times `T`: the persisted side gets rounds from the handle's
/// resume point (a store time, converted with `T::from_u64`) to `rounds`, the in-memory `arrange_by_key`
/// side every round. Returns both sides' consolidated outputs and the resume point.
fn run_arrange_at<T: PersistTime>(dir: &Path, workers: usize, rounds: u64) -> (Pairs, Pairs, u64) {
    let store = Store::open(dir).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let want = Arc::new(Mutex::new(Vec::new()));
    let resume = Arc::new(Mutex::new(0));
    let (g, w, r) = (got.clone(), want.clone(), resume.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let (g, w) = (g.clone(), w.clone());
        let time = |t: u64| T::from_u64(t).unwrap();
        let probe = ProbeHandle::new();
        let (mut persisted_input, mut memory_input, handle) = worker.dataflow::<T, _, _>(|scope| {
            let (persisted_input, persisted) = scope.new_collection::<(usize, String), isize>();
            let (memory_input, memory) = scope.new_collection::<(usize, String), isize>();
            let (arranged, handle) = persisted.arrange_persisted(&store, "pairs").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (usize::decode(k).unwrap(), String::decode(v).unwrap()))
                .inner
                .inspect(move |(d, _t, r): &(_, T, _)| g.lock().unwrap().push((d.clone(), *r)))
                .probe_with(&probe);
            memory
                .arrange_by_key()
                .as_collection(|k: &usize, v: &String| (*k, v.clone()))
                .inner
                .inspect(move |(d, _, r)| w.lock().unwrap().push((d.clone(), *r as i64)))
                .probe_with(&probe);
            (persisted_input, memory_input, handle)
        });
        let from = handle.resume_at();
        *r.lock().unwrap() = from;
        persisted_input.advance_to(time(from));
        for round in 0..rounds {
            memory_input.advance_to(time(round));
            if round >= from {
                persisted_input.advance_to(time(round));
            }
            if worker.index() == 0 {
                for (pair, diff) in pair_updates(round) {
                    memory_input.update(pair.clone(), diff);
                    if round >= from {
                        persisted_input.update(pair, diff);
                    }
                }
            }
        }
        persisted_input.advance_to(time(rounds));
        memory_input.advance_to(time(rounds));
        persisted_input.flush();
        memory_input.flush();
        worker.step_while(|| probe.less_than(&time(rounds)));
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .unwrap();
    let got = consolidate(&got.lock().unwrap());
    let want = consolidate(&want.lock().unwrap());
    let resume = *resume.lock().unwrap();
    (got, want, resume)
}

/// `arrange_persisted` at timestamp `T`, with 1 and 2 workers: equal to the in-memory arrangement after
/// a first run and after a restart that reads what the first persisted.
fn arrange_with_a_restart_at<T: PersistTime>() {
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (got, want, resume) = run_arrange_at::<T>(dir.path(), workers, 3);
        assert_eq!(resume, 0);
        assert!(!want.is_empty());
        assert_eq!(got, want, "{workers} workers, first run");
        let (got, want, resume) = run_arrange_at::<T>(dir.path(), workers, 6);
        assert_eq!(resume, 3, "the first run persisted rounds 0..3");
        assert_eq!(got, want, "{workers} workers, after the restart");
    }
}

/// DD's examples' inferred `usize` times: `worker.dataflow::<usize, _, _>`.
#[test]
fn usize_times_arrange_as_in_memory_with_a_restart() {
    arrange_with_a_restart_at::<usize>();
}

/// `u32` times.
#[test]
fn u32_times_arrange_as_in_memory_with_a_restart() {
    arrange_with_a_restart_at::<u32>();
}

/// A stream persisted by a dataflow with `u64` times beyond `u16`'s range cannot be read at `u16`: the
/// operator refuses it when built, instead of reading wrong times.
#[test]
fn times_beyond_the_timestamp_type_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    {
        let store = store.clone();
        timely::execute_directly(move |worker| {
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(usize, String), isize>();
                pairs.arrange_persisted(&store, "wide").unwrap();
                input
            });
            input.advance_to(70_000);
            input.insert((1, "x".to_string()));
            input.advance_to(70_001);
            input.flush();
        });
    }
    timely::execute_directly(move |worker| {
        worker.dataflow::<u16, _, _>(|scope| {
            let (_input, pairs) = scope.new_collection::<(usize, String), isize>();
            let error = pairs
                .arrange_persisted(&store, "wide")
                .err()
                .expect("times do not fit u16");
            assert!(error.to_string().contains("beyond the range"), "{error}");
        });
    });
}

/// DD 0.26's `tests/join.rs` `join`, at `usize` times: the right side persisted, the left side arranged
/// with `arrange_encoded`, joined with `join_core`. A second run replays the same input (dropped: it is
/// persisted already) and gives the same answer.
#[test]
fn dd_join_at_usize_times_with_a_restart() {
    use timely::dataflow::operators::capture::Extract;
    use timely::dataflow::operators::Capture;

    let dir = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let store = Store::open(dir.path()).unwrap();
        let data = timely::execute_directly(move |worker| {
            worker.dataflow::<usize, _, _>(|scope| {
                let (col1, col2) = dd_join_inputs!(scope);
                let (col2, _handle) = col2.arrange_persisted(&store, "col2").unwrap();
                // should produce triples `(0,0,'a')` and `(1,2,'B')`.
                col1.arrange_encoded()
                    .join_core(col2, |k: &[u8], v1: &[u8], v2: &[u8]| {
                        Some((
                            i32::decode(k).unwrap(),
                            (i32::decode(v1).unwrap(), char::decode(v2).unwrap()),
                        ))
                    })
                    .inner
                    .capture()
            })
        });
        let extracted = data.extract();
        assert_eq!(extracted.len(), 1, "run {run}");
        assert_eq!(
            extracted[0].1,
            vec![((0, (0, 'a')), 0usize, 1i64), ((1, (2, 'B')), 0, 1)],
            "run {run}"
        );
    }
}

/// `u8` times up to the last one, 255: the finished stream is sealed at 256, beyond `u8`, which a restarted
/// `u8` dataflow reads as the closed frontier; its arrangement serves every update, and `count` (at `u8`
/// times) counts them, in both runs.
#[test]
fn u8_times_to_the_last_one_with_a_restart_and_count() {
    use ddpersist::operators::CountPersisted;

    let dir = tempfile::tempdir().unwrap();
    for run in 0..2 {
        let store = Store::open(dir.path()).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let counts = Arc::new(Mutex::new(Vec::new()));
        let (g, c) = (got.clone(), counts.clone());
        let resume = timely::execute_directly(move |worker| {
            let (mut input, handle) = worker.dataflow::<u8, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(usize, String), isize>();
                let (arranged, handle) = pairs.arrange_persisted(&store, "bytes").unwrap();
                arranged
                    .clone()
                    .as_collection(|k: &[u8], v: &[u8]| {
                        (usize::decode(k).unwrap(), String::decode(v).unwrap())
                    })
                    .inner
                    .inspect(move |(d, _, r)| g.lock().unwrap().push((d.clone(), *r)));
                arranged.count().inner.inspect(move |((k, n), _, r)| {
                    c.lock()
                        .unwrap()
                        .push(((usize::decode(k).unwrap(), *n), *r as i64))
                });
                (input, handle)
            });
            // Replayed in full by the second run: dropped, it is persisted.
            for t in 250..=255u8 {
                input.advance_to(t);
                input.insert((usize::from(t % 3), format!("t{t}")));
            }
            handle.resume_at()
        });
        assert_eq!(resume, if run == 0 { 0 } else { 256 }, "run {run}");
        let want: Pairs = (250..=255u8)
            .map(|t| ((usize::from(t % 3), format!("t{t}")), 1))
            .collect();
        assert_eq!(consolidate(&got.lock().unwrap()), want, "run {run}");
        let want_counts: BTreeMap<(usize, i64), i64> = (0..3).map(|k| ((k, 2), 1)).collect();
        assert_eq!(consolidate(&counts.lock().unwrap()), want_counts, "run {run}");
    }
}
