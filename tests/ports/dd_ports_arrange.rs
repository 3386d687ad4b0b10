//! DD 0.26's `examples/arrange.rs` ported to a typed persisted arrangement: an ever-changing random graph
//! arranged in one dataflow at `Product<(), usize>` times, its trace imported into two query dataflows (a
//! bfs `iterate` with the edges `enter`ed, and a three-hop `join_core`). [`persisted`] is the example with
//! its arrange calls changed — `arrange_by_key()` of the graph to `arrange_by_key_persisted(&store,
//! "graph")`, and inside the queries `arrange_by_key()` to `arrange_by_key_encoded()` (the query side of
//! `join_core` arranged explicitly: DD's `Collection::join_core` arranges it with DD's `Hashable`) — and
//! [`in_memory`] is the example as DD wrote it. Besides, as the example's command line would: its
//! arguments are fixed and small, the loop over rounds is bounded, `inspect` is on and its output is
//! captured instead of printed, the commented-out `roots.insert` is enabled (otherwise the bfs has no
//! roots), and `rand`'s `StdRng` is a local xorshift (ddpersist does not depend on `rand`). The
//! restartable source starts at the arrangement's resume point, drawing and dropping what earlier runs
//! persisted.
//!
//! The test: with 1 and 2 workers, a first run of some rounds and a restarted run of more, the query
//! outputs accumulated at each round's time (at or after the restart point) equal the in-memory example's.
//! `DD_PORTS_LONG=1` runs a larger graph and more rounds.

use ddpersist::operators::{ArrangeTyped, PersistTime};
use ddpersist::Store;
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::Iterate;
use differential_dataflow::AsCollection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::*;
use timely::dataflow::ProbeHandle;
use timely::order::Product;

/// The example's parameters: `nodes edges batch pre` and the number of query rounds.
#[derive(Clone, Copy)]
struct Args {
    nodes: u32,
    edges: usize,
    batch: usize,
    pre: usize,
    rounds: usize,
}

/// `(output, record as text, time) -> diff` of the two query dataflows.
type Captured = Vec<((&'static str, String), usize, i64)>;

/// A seeded xorshift standing in for `StdRng::from_seed(&[1, 2, 3, index])`.
struct Rng(u64);

impl Rng {
    fn from_seed(seed: &[usize]) -> Self {
        Rng(seed.iter().fold(0x9e37_79b9_7f4a_7c15, |s, &x| {
            (s ^ x as u64).wrapping_mul(0x100_0000_01b3)
        }) | 1)
    }
    fn gen_range(&mut self, low: u32, high: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        low + (self.0 % u64::from(high - low)) as u32
    }
}

/// One worker's share of the example's ever-changing random graph: `edges` edges among `nodes` nodes, each
/// round adding one edge and deleting the oldest, the worker sending the additions and deletions whose
/// number is its own modulo `peers`.
struct RandomGraph {
    rng1: Rng, // rng for edge additions
    rng2: Rng, // rng for edge deletions
    additions: usize,
    deletions: usize,
    nodes: u32,
    edges: usize,
    index: usize,
    peers: usize,
}

impl RandomGraph {
    /// Worker `index` of `peers`'s generator, seeded as the example seeds it (`[1, 2, 3, index]`).
    fn new(index: usize, peers: usize, args: Args) -> Self {
        let seed: &[_] = &[1, 2, 3, index];
        RandomGraph {
            rng1: Rng::from_seed(seed),
            rng2: Rng::from_seed(seed),
            additions: 0,
            deletions: 0,
            nodes: args.nodes,
            edges: args.edges,
            index,
            peers,
        }
    }

    /// A restart at `from`: draws and drops what the rounds before `from` sent (earlier runs persisted it).
    fn skip_to(&mut self, from: usize) {
        let nodes = self.nodes;
        while self.additions < from - 1 + self.edges {
            let _ = (self.rng1.gen_range(0, nodes), self.rng1.gen_range(0, nodes));
            self.additions += 1;
        }
        while self.deletions < from - 1 {
            let _ = (self.rng2.gen_range(0, nodes), self.rng2.gen_range(0, nodes));
            self.deletions += 1;
        }
    }

    /// Sends this worker's updates of the `batch` times from `time` on through `give`, as the example's
    /// source does, and advances `time.inner` by `batch`.
    fn send_batch(
        &mut self,
        time: &mut Product<(), usize>,
        batch: usize,
        mut give: impl FnMut(((u32, u32), Product<(), usize>, isize)),
    ) {
        let (nodes, peers, index) = (self.nodes, self.peers, self.index);
        // we want to send at times.inner + (0 .. batch).
        for _ in 0..batch {
            while self.additions < time.inner + self.edges {
                let src = self.rng1.gen_range(0, nodes);
                let dst = self.rng1.gen_range(0, nodes);
                if self.additions % peers == index {
                    give(((src, dst), *time, 1isize));
                }
                self.additions += 1;
            }
            while self.deletions < time.inner {
                let src = self.rng2.gen_range(0, nodes);
                let dst = self.rng2.gen_range(0, nodes);
                if self.deletions % peers == index {
                    give(((src, dst), *time, -1isize));
                }
                self.deletions += 1;
            }
            time.inner += 1;
        }
    }
}

/// Time `Product<(), usize>` of the example's dataflows.
type Time = Product<(), usize>;

/// The example's query loop: `rounds` rounds, each inserting a root and a query (worker 0), advancing
/// both inputs by `batch` times, retracting the query, and stepping `worker` until `probe` reaches the
/// round's time; then drops the worker's dataflows. Returns nothing.
fn query_rounds(
    worker: &mut timely::worker::Worker,
    (roots, query): (
        &mut InputSession<Time, u32, isize>,
        &mut InputSession<Time, u32, isize>,
    ),
    probe: &ProbeHandle<Time>,
    args: Args,
) {
    let index = worker.index();
    for round in 0..args.rounds {
        let mut time = *query.time();

        if index == 0 {
            roots.insert(round as u32 % args.nodes);
            query.insert(round as u32 % args.nodes);
        }

        time.inner += args.batch;

        roots.advance_to(time);
        roots.flush();
        query.advance_to(time);
        query.flush();

        if index == 0 {
            query.remove(round as u32 % args.nodes);
        }

        worker.step_while(|| probe.less_than(&time));
    }
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}

/// An `inspect` closure of the query dataflow `output`: pushes each `(record, time, diff)` into `captured`
/// as `((output, record as text), time.inner, diff)`.
fn capture_into<D: std::fmt::Debug>(
    captured: &Arc<Mutex<Captured>>,
    output: &'static str,
) -> impl Fn(&(D, Time, isize)) + 'static {
    let captured = captured.clone();
    move |(x, t, r)| {
        captured
            .lock()
            .unwrap()
            .push(((output, format!("{x:?}")), t.inner, *r as i64))
    }
}

/// The example with the persisted arrangement; returns the captured outputs and the resume point.
fn persisted(dir: &Path, workers: usize, args: Args) -> (Captured, usize) {
    let Args { batch, pre, .. } = args;
    let store = Store::open(dir).unwrap();
    let captured = Arc::new(Mutex::new(Vec::new()));
    let resume = Arc::new(Mutex::new(0));
    let (c, r) = (captured.clone(), resume.clone());

    // define a new timely dataflow computation.
    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();

        let probe = timely::dataflow::operators::probe::Handle::new();

        // Where the graph resumes (set once the arrangement is built).
        let from = std::rc::Rc::new(std::cell::Cell::new(0usize));
        let from_source = from.clone();

        // create a dataflow managing an ever-changing edge collection.
        let mut graph = worker.dataflow::<Product<(), usize>, _, _>(|scope| {
            // create a source operator which will produce random edges and delete them.
            let graph =
                timely::dataflow::operators::generic::source(scope, "RandomGraph", |mut capability, info| {
                    let activator = scope.activator_for(info.address);

                    let mut graph = RandomGraph::new(index, peers, args);

                    let handle = probe.clone();
                    let mut started = false;

                    move |output| {
                        if !started {
                            // Restart: start at the resume point, drawing what earlier runs persisted.
                            started = true;
                            let from = from_source.get();
                            if from > 0 {
                                graph.skip_to(from);
                                capability.downgrade(&Product::new((), from));
                            }
                        }
                        // do nothing if the probe is not caught up to us
                        if !handle.less_than(capability.time()) {
                            let mut time = *capability.time();
                            {
                                // scope to allow session to drop, un-borrow.
                                let mut session = output.session(&capability);
                                graph.send_batch(&mut time, batch, |update| session.give(update));
                            }
                            capability.downgrade(&time);
                        }
                        activator.activate();
                    }
                })
                .probe_with(&probe)
                .as_collection()
                .arrange_by_key_persisted(&store, "graph")
                .unwrap()
                .trace;
            from.set(usize::from_u64(graph.handle().unwrap().resume_at()).unwrap());
            graph
        });
        *r.lock().unwrap() = from.get();

        for _ in 0..pre {
            worker.step();
        }

        let mut roots = worker.dataflow(|scope| {
            let edges = graph.import(scope);
            let (input, roots) = scope.new_collection();
            let roots = roots.map(|x| (x, 0));

            // repeatedly update minimal distances each node can be reached from each root
            roots
                .clone()
                .iterate(|scope, dists| {
                    let edges = edges.enter(scope);
                    let roots = roots.enter(scope);

                    dists
                        .arrange_by_key_encoded()
                        .join_core(edges, |_k, l, d| Some((*d, l + 1)))
                        .concat(roots)
                        .reduce(|_, s, t| t.push((*s[0].0, 1)))
                })
                .map(|(_node, dist)| dist)
                .consolidate()
                .inspect(capture_into(&c, "distance"))
                .probe_with(&probe);

            input
        });

        let mut query = worker.dataflow(|scope| {
            let edges = graph.import(scope);
            let (input, query) = scope.new_collection();

            query
                .map(|x| (x, x))
                .arrange_by_key_encoded()
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .arrange_by_key_encoded()
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .arrange_by_key_encoded()
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .map(|x| x.1)
                .consolidate()
                .inspect(capture_into(&c, "query"))
                .probe_with(&probe);

            input
        });

        // the trace will not compact unless we release capabilities.
        // we drop rather than continually downgrade them as we run.
        drop(graph);

        query_rounds(worker, (&mut roots, &mut query), &probe, args);
    })
    .unwrap();
    let captured = std::mem::take(&mut *captured.lock().unwrap());
    let resume = *resume.lock().unwrap();
    (captured, resume)
}

/// The example as DD wrote it (with the changes listed in the module docs, none to the arrangements).
fn in_memory(workers: usize, args: Args) -> Captured {
    let Args { batch, pre, .. } = args;
    let captured = Arc::new(Mutex::new(Vec::new()));
    let c = captured.clone();

    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let peers = worker.peers();

        let probe = timely::dataflow::operators::probe::Handle::new();

        let mut graph = worker.dataflow::<Product<(), usize>, _, _>(|scope| {
            timely::dataflow::operators::generic::source(scope, "RandomGraph", |mut capability, info| {
                let activator = scope.activator_for(info.address);

                let mut graph = RandomGraph::new(index, peers, args);

                let handle = probe.clone();

                move |output| {
                    if !handle.less_than(capability.time()) {
                        let mut time = *capability.time();
                        {
                            let mut session = output.session(&capability);
                            graph.send_batch(&mut time, batch, |update| session.give(update));
                        }
                        capability.downgrade(&time);
                    }
                    activator.activate();
                }
            })
            .probe_with(&probe)
            .as_collection()
            .arrange_by_key()
            .trace
        });

        for _ in 0..pre {
            worker.step();
        }

        let mut roots = worker.dataflow(|scope| {
            let edges = graph.import(scope);
            let (input, roots) = scope.new_collection();
            let roots = roots.map(|x| (x, 0));

            roots
                .clone()
                .iterate(|scope, dists| {
                    let edges = edges.enter(scope);
                    let roots = roots.enter(scope);

                    dists
                        .arrange_by_key()
                        .join_core(edges, |_k, l, d| Some((*d, l + 1)))
                        .concat(roots)
                        .reduce(|_, s, t| t.push((*s[0].0, 1)))
                })
                .map(|(_node, dist)| dist)
                .consolidate()
                .inspect(capture_into(&c, "distance"))
                .probe_with(&probe);

            input
        });

        let mut query = worker.dataflow(|scope| {
            let edges = graph.import(scope);
            let (input, query) = scope.new_collection();

            query
                .map(|x| (x, x))
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .join_core(edges.clone(), |_n, &q, &d| Some((d, q)))
                .map(|x| x.1)
                .consolidate()
                .inspect(capture_into(&c, "query"))
                .probe_with(&probe);

            input
        });

        drop(graph);

        query_rounds(worker, (&mut roots, &mut query), &probe, args);
    })
    .unwrap();
    let captured = std::mem::take(&mut *captured.lock().unwrap());
    captured
}

/// The outputs accumulated at each round's query time at or after `from`: `(time, record) -> diff`.
fn at_round_times(
    captured: &Captured,
    args: Args,
    from: usize,
) -> BTreeMap<(usize, (&'static str, String)), i64> {
    let mut out = BTreeMap::new();
    for round in 1..=args.rounds {
        let t = round * args.batch;
        if t < from {
            continue;
        }
        for (record, time, diff) in captured {
            if *time <= t {
                *out.entry((t, record.clone())).or_insert(0) += diff;
            }
        }
    }
    out.retain(|_, d| *d != 0);
    out
}

#[test]
fn dd_arrange_example_with_a_persisted_graph_and_a_restart() {
    let long = std::env::var_os("DD_PORTS_LONG").is_some();
    let (nodes, edges, rounds) = if long { (1000, 3000, 40) } else { (40, 80, 8) };
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let first = Args {
            nodes,
            edges,
            batch: 2,
            pre: 3,
            rounds: rounds / 2,
        };
        let (got, from) = persisted(dir.path(), workers, first);
        assert_eq!(from, 0);
        let want = in_memory(workers, first);
        let want = at_round_times(&want, first, 0);
        assert!(
            want.keys().any(|(_, (o, _))| *o == "query"),
            "the queries have output"
        );
        assert!(
            want.keys().any(|(_, (o, _))| *o == "distance"),
            "the bfs has output"
        );
        assert_eq!(
            at_round_times(&got, first, 0),
            want,
            "{workers} workers, first run"
        );

        let second = Args { rounds, ..first };
        let (got, from) = persisted(dir.path(), workers, second);
        assert!(from > 0, "the first run persisted some of the graph");
        let want = in_memory(workers, second);
        let want = at_round_times(&want, second, from);
        assert!(!want.is_empty());
        assert_eq!(
            at_round_times(&got, second, from),
            want,
            "{workers} workers, after the restart at {from}"
        );
    }
}
