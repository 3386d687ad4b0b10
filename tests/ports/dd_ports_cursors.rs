//! Drop-in ports (from an adversarial round, all answering as DD): DD 0.26's `examples/cursors.rs` over a persisted arrangement:
//! 4 workers, `u32` times, only worker 0 feeds (the others close their inputs at once), every worker
//! advances its trace handle's physical and logical compaction each round, then reads the whole trace
//! through `spans_through(&[])` and `cursor_list(..).to_vec(..)` (keys and vals decoded with their
//! `Codec`, the one change a port needs: the cursor reads bytes). Also `read_upper` after each round,
//! against DD's trace of the same input.

use ddpersist::operators::ArrangeTyped;
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;

type Node = u32;
type Edge = (Node, Node);
/// A trace's contents: each `(key, val)` with its `(time, diff)`s.
type Contents<R> = Vec<((Node, Edge), Vec<(u32, R)>)>;

#[test]
fn dd_example_cursors_over_a_persisted_arrangement() {
    let rounds: u32 = 12;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let summaries = timely::execute(timely::Config::process(4), move |worker| {
        let probe = ProbeHandle::new();
        let (mut graph, mut graph_trace, mut dd_trace) = worker.dataflow::<u32, _, _>(|scope| {
            let (graph_input, graph) = scope.new_collection::<Edge, isize>();
            let keyed = graph.map(|(x, y): Edge| (x, (x, y)));
            let graph_arr = keyed.clone().arrange_by_key_persisted(&store, "graph").unwrap();
            let dd_arr = keyed.arrange_by_key();
            graph_arr.stream.clone().probe_with(&probe);
            dd_arr.stream.clone().probe_with(&probe);
            (graph_input, graph_arr.trace.clone(), dd_arr.trace.clone())
        });
        let mut uppers = Vec::new();
        macro_rules! check_upper {
            ($i:expr) => {{
                let (mut ours, mut theirs) = (Antichain::<u32>::new(), Antichain::<u32>::new());
                graph_trace.read_upper(&mut ours);
                dd_trace.read_upper(&mut theirs);
                uppers.push(($i, ours.elements().to_vec(), theirs.elements().to_vec()));
            }};
        }
        if worker.index() != 0 {
            graph.close();
            for i in 1..rounds + 1 {
                graph_trace.set_physical_compaction(AntichainRef::new(&[i]));
                graph_trace.set_logical_compaction(AntichainRef::new(&[i]));
                dd_trace.set_physical_compaction(AntichainRef::new(&[i]));
                dd_trace.set_logical_compaction(AntichainRef::new(&[i]));
                worker.step_while(|| probe.less_than(&i));
                check_upper!(i);
            }
        } else {
            for i in 1..rounds + 1 {
                graph.insert((i, i + 1));
                graph.insert((i + 1, i));
                if i > 1 {
                    graph.remove((i - 1, i));
                }
                graph.advance_to(i);
                graph.flush();
                graph_trace.set_physical_compaction(AntichainRef::new(&[i]));
                graph_trace.set_logical_compaction(AntichainRef::new(&[i]));
                dd_trace.set_physical_compaction(AntichainRef::new(&[i]));
                dd_trace.set_logical_compaction(AntichainRef::new(&[i]));
                worker.step_while(|| probe.less_than(graph.time()));
                check_upper!(i);
            }
        }
        let batches = graph_trace.spans_through(Antichain::new().borrow()).unwrap();
        let (mut cursor, storage) = cursor_list(batches.into_iter().filter_map(|b| b.inner).collect());
        let ours: Contents<i64> = cursor.to_vec(
            &storage,
            |k| Node::decode(k).unwrap(),
            |v| Edge::decode(v).unwrap(),
        );
        let batches = dd_trace.spans_through(Antichain::new().borrow()).unwrap();
        let (mut cursor, storage) = cursor_list(batches.into_iter().filter_map(|b| b.inner).collect());
        let theirs: Contents<isize> = cursor.to_vec(&storage, |k| *k, |v| *v);
        (ours, theirs, uppers)
    })
    .unwrap()
    .join();

    let mut ours_content: BTreeMap<Edge, i64> = BTreeMap::new();
    let mut theirs_content: BTreeMap<Edge, i64> = BTreeMap::new();
    for summary in summaries {
        let (ours, theirs, uppers) = summary.unwrap();
        // Workers run ahead of one another: the only guarantee (DD's too) is an upper at or past `i`.
        for (i, o, t) in uppers {
            assert!(
                o.is_empty() || (o.len() == 1 && o[0] >= i),
                "read_upper after round {i}: {o:?} (DD's: {t:?})"
            );
        }
        for ((_, edge), times) in ours {
            let diff: i64 = times.iter().map(|(_, d)| d).sum();
            if diff != 0 {
                *ours_content.entry(edge).or_insert(0) += diff;
            }
        }
        for ((_, edge), times) in theirs {
            let diff: i64 = times.iter().map(|(_, d)| *d as i64).sum();
            if diff != 0 {
                *theirs_content.entry(edge).or_insert(0) += diff;
            }
        }
    }
    let mut expected: BTreeMap<Edge, i64> = BTreeMap::new();
    for i in 1..rounds + 1 {
        expected.insert((i + 1, i), 1);
    }
    expected.insert((rounds, rounds + 1), 1);
    assert_eq!(theirs_content, expected, "DD's own");
    assert_eq!(ours_content, expected, "persisted");
}
