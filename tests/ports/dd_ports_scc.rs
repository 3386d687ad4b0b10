//! Drop-in ports (from an adversarial round, all answering as DD): DD 0.26's `tests/scc.rs` `_strongly_connected`, with the
//! graph (and its transpose) persisted (`arrange_by_key_persisted`) and entered into the outer `iterate`
//! (`enter`, then `as_collection` inside, where DD's program uses the entered collection); the rest, with
//! its nested `iterate` and `enter_at`, as DD wrote it. 3 workers, only worker 0 feeds, as in DD's
//! test; compared with DD's in-memory program at every time.

use crate::common;

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::Iterate;
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::mem;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Inspect;

type Node = usize;
type Edge = (Node, Node);
type Log = Arc<Mutex<Vec<(Edge, usize, isize)>>>;

fn trim_edges<'scope, T>(
    cycle: VecCollection<'scope, T, Edge>,
    edges: VecCollection<'scope, T, Edge>,
) -> VecCollection<'scope, T, Edge>
where
    T: timely::progress::Timestamp + Lattice + Ord + Hash,
{
    let nodes = edges.clone().map_in_place(|x| x.0 = x.1).consolidate();
    let labels = reachability(cycle, nodes);
    edges
        .consolidate()
        .join_map(labels.clone(), |&e1, &e2, &l1| (e2, (e1, l1)))
        .join_map(labels, |&e2, &(e1, l1), &l2| ((e1, e2), (l1, l2)))
        .filter(|&(_, (l1, l2))| l1 == l2)
        .map(|((x1, x2), _)| (x2, x1))
}

fn reachability<'scope, T>(
    edges: VecCollection<'scope, T, Edge>,
    nodes: VecCollection<'scope, T, (Node, Node)>,
) -> VecCollection<'scope, T, Edge>
where
    T: timely::progress::Timestamp + Lattice + Ord + Hash,
{
    edges.clone().filter(|_| false).iterate(|scope, inner| {
        let edges = edges.enter(scope);
        let nodes = nodes.enter_at(scope, |r| 256 * (64 - (r.0 as u64).leading_zeros() as u64));
        inner
            .join_map(edges, |_k, l, d| (*d, *l))
            .concat(nodes)
            .reduce(|_, s, t| t.push((*s[0].0, 1)))
    })
}

fn edge_list(nodes: usize, edges: usize, rounds: usize) -> Vec<(Edge, usize, isize)> {
    let mut rng = common::Rng(1234);
    let mut del = common::Rng(1234);
    let mut out = Vec::new();
    for _ in 0..edges {
        out.push((
            (rng.below(nodes as u64) as usize, rng.below(nodes as u64) as usize),
            0,
            1,
        ));
    }
    for round in 1..rounds {
        out.push((
            (rng.below(nodes as u64) as usize, rng.below(nodes as u64) as usize),
            round,
            1,
        ));
        out.push((
            (del.below(nodes as u64) as usize, del.below(nodes as u64) as usize),
            round,
            -1,
        ));
    }
    out
}

fn scc(nodes: usize, edges: usize, rounds: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let list = edge_list(nodes, edges, rounds);
    let (p, m): (Log, Log) = Default::default();
    let (pl, ml) = (p.clone(), m.clone());
    timely::execute(timely::Config::process(3), move |worker| {
        let mut edges_list = list.clone();
        let (pl, ml) = (pl.clone(), ml.clone());
        let mut input = worker.dataflow::<usize, _, _>(|scope| {
            let (input, graph) = scope.new_collection::<Edge, isize>();
            let forward = graph.clone().arrange_by_key_persisted(&store, "graph").unwrap();
            let backward = graph
                .clone()
                .map(|(s, d)| (d, s))
                .arrange_by_key_persisted(&store, "transposed")
                .unwrap();
            let persisted = graph.clone().iterate(|scope, inner| {
                let edges = forward.clone().enter(scope).as_collection(|s, d| (*s, *d));
                let trans = backward.clone().enter(scope).as_collection(|s, d| (*s, *d));
                trim_edges(trim_edges(inner, edges), trans)
            });
            let memory = graph.clone().iterate(|scope, inner| {
                let edges = graph.enter(scope);
                let trans = edges.clone().map_in_place(|x| mem::swap(&mut x.0, &mut x.1));
                trim_edges(trim_edges(inner, edges), trans)
            });
            persisted
                .consolidate()
                .inner
                .inspect(move |x| pl.lock().unwrap().push(*x));
            memory
                .consolidate()
                .inner
                .inspect(move |x| ml.lock().unwrap().push(*x));
            input
        });
        edges_list.sort_by_key(|x| std::cmp::Reverse(x.1));
        if worker.index() == 0 {
            let mut round = 0;
            while !edges_list.is_empty() {
                while edges_list.last().map(|x| x.1) == Some(round) {
                    let ((src, dst), _time, diff) = edges_list.pop().unwrap();
                    input.update((src, dst), diff);
                }
                round += 1;
                input.advance_to(round);
            }
        }
    })
    .unwrap();
    let acc = |log: &Log| {
        let mut out: BTreeMap<(usize, Edge), isize> = BTreeMap::new();
        for (d, t, r) in log.lock().unwrap().iter() {
            *out.entry((*t, *d)).or_insert(0) += r;
        }
        out.retain(|_, r| *r != 0);
        out
    };
    assert!(!acc(&m).is_empty());
    assert_eq!(acc(&p), acc(&m));
}

#[test]
fn scc_10_20_1000() {
    scc(10, 20, 1000);
}

#[test]
fn scc_100_200_10() {
    scc(100, 200, 10);
}

#[test]
fn scc_100_2000_1() {
    scc(100, 2000, 1);
}
