//! From adversarial round 4 (held): imports of a persisted trace while its dataflow runs on (import_frontier_core
//! with a `since` and an `until` between rounds, plain import), with totals, reduce and joins over the
//! import, two workers, against DD's imports of its in-memory trace, at every time.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{at, rec, same_at_every_time, Log};

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::trace::TraceReader;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::progress::Antichain;

#[test]
fn imports_while_the_first_dataflow_runs_two_workers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type C = Log<(u32, isize)>;
    type K = Log<u32>;
    type J = Log<(u32, (u64, u64))>;
    let logs: (C, C, K, K, J, J, C, C) = Default::default();
    let l = logs.clone();
    let done = timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u64;
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u64), isize>();
            let p = c.clone().arrange_by_key_persisted(&store, "x").unwrap();
            let d = c.arrange_by_key();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        let feed = |input: &mut differential_dataflow::input::InputSession<u64, (u32, u64), isize>,
                    t: u64| {
            input.advance_to(t);
            for i in 0..20u64 {
                if i % 2 == index {
                    let k = ((i * 3 + t) % 6) as u32;
                    input.update((k, i + t % 4), if (i + t).is_multiple_of(5) { -1 } else { 1 });
                }
            }
        };
        let step_to = |worker: &mut timely::worker::Worker, probe: &ProbeHandle<u64>, t: u64| {
            let start = Instant::now();
            worker.step_while(|| {
                assert!(start.elapsed() < Duration::from_secs(60), "hang");
                probe.less_than(&t)
            });
        };
        for t in 0..4 {
            feed(&mut input, t);
        }
        input.advance_to(4);
        input.flush();
        step_to(worker, &probe, 4);
        let since = Antichain::from_elem(2u64);
        tp.set_logical_compaction(since.borrow());
        td.set_logical_compaction(since.borrow());
        let probe2 = ProbeHandle::new();
        let cut = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let (ip, _b1) =
                tp.import_frontier_core(scope, "P", Antichain::from_elem(3), Antichain::from_elem(8));
            let (id, _b2) =
                td.import_frontier_core(scope, "D", Antichain::from_elem(3), Antichain::from_elem(8));
            rec(ip.clone().count_total(), &l.0, &cut);
            rec(id.clone().as_collection(|k, _| *k).count_total(), &l.1, &cut);
            rec(
                ip.clone()
                    .threshold_total(|_, c: &isize| if *c > 2 { 1isize } else { 0 }),
                &l.2,
                &cut,
            );
            rec(
                id.clone()
                    .as_collection(|k, _| *k)
                    .threshold_total(|_, c: &isize| if *c > 2 { 1isize } else { 0 }),
                &l.3,
                &cut,
            );
            let ip2 = tp.import(scope);
            let id2 = td.import(scope);
            rec(
                ip2.clone().join(id.clone().as_collection(|k, v| (*k, *v))),
                &l.4,
                &probe2,
            );
            rec(
                id2.clone()
                    .as_collection(|k, v| (*k, *v))
                    .join(id.as_collection(|k, v| (*k, *v))),
                &l.5,
                &probe2,
            );
            rec(ip2.count_total(), &l.6, &probe2);
            rec(id2.as_collection(|k, _| *k).count_total(), &l.7, &probe2);
        });
        for t in 4..12 {
            feed(&mut input, t);
            input.advance_to(t + 1);
            input.flush();
            step_to(worker, &probe, t + 1);
            step_to(worker, &probe2, t + 1);
        }
        // The `until` of 8 is passed: the cut imports' frontier must have closed.
        let start = Instant::now();
        worker.step_while(|| start.elapsed() < Duration::from_secs(20) && !cut.done());
        cut.done()
    })
    .unwrap()
    .join();
    let times: Vec<u64> = (0..13).collect();
    assert!(!at(&logs.1, &5).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "count_total on import_frontier_core");
    same_at_every_time(
        &logs.2,
        &logs.3,
        &times,
        "threshold_total on import_frontier_core",
    );
    same_at_every_time(&logs.4, &logs.5, &times, "join of an import");
    same_at_every_time(&logs.6, &logs.7, &times, "count_total of an import");
    for d in done {
        assert!(
            d.unwrap(),
            "the import_frontier_core import with until 8 never closed"
        );
    }
}

/// An `import_frontier` of a compacted persisted trace entered into `iterate` (TraceEnter over
/// TraceFrontier over the persisted trace) and joined there, against the same over DD's trace.
#[test]
fn import_frontier_entered_into_iterate() {
    use differential_dataflow::operators::iterate::Iterate;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    type D = Log<u32>;
    let logs: (D, D) = Default::default();
    let l = logs.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u32), isize>();
            let p = c.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let d = c.arrange_by_key();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        for t in 0..8u64 {
            input.advance_to(t);
            let t32 = t as u32;
            input.update((t32, t32 + 1), 1);
            input.update((t32 + 1, (t32 * 5) % 9), 1);
            if t > 2 {
                input.update((t32 - 2, t32 - 1), -1);
            }
        }
        input.advance_to(8);
        input.flush();
        worker.step_while(|| probe.less_than(&8));
        let since = Antichain::from_elem(5u64);
        tp.set_logical_compaction(since.borrow());
        td.set_logical_compaction(since.borrow());
        let probe2 = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let (roots_in, roots) = (0, scope.new_collection_from(vec![0u32, 4]).1);
            let _ = roots_in;
            let (ip, _) = tp.import_frontier(scope, "P");
            let (id, _) = td.import_frontier(scope, "D");
            let ours = roots.clone().iterate(|s, inner| {
                let e = ip.clone().enter(s);
                let r = roots.clone().enter(s);
                inner
                    .map(|n| (n, ()))
                    .arrange_by_key_encoded()
                    .join_core(e, |_n: &u32, _: &(), m: &u32| Some(*m))
                    .concat(r)
                    .distinct()
            });
            let theirs = roots.clone().iterate(|s, inner| {
                let e = id.clone().enter(s);
                let r = roots.clone().enter(s);
                inner
                    .map(|n| (n, ()))
                    .arrange_by_key()
                    .join_core(e, |_n: &u32, _: &(), m: &u32| Some(*m))
                    .concat(r)
                    .distinct()
            });
            rec(ours, &l.0, &probe2);
            rec(theirs, &l.1, &probe2);
        });
        input.advance_to(9);
        input.flush();
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(60), "hang");
            probe2.less_than(&8)
        });
    });
    assert!(!at(&logs.1, &7).is_empty());
    let times: Vec<u64> = (5..8).collect();
    same_at_every_time(&logs.0, &logs.1, &times, "import_frontier entered into iterate");
}
