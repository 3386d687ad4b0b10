//! Drop-in checks (written by an adversarial round of this session), restarts in one process: rebuilding
//! a dropped dataflow, an import entered into `iterate` with two workers. Helpers as in
//! `dd_dropin_dataflows.rs`.

// Tuples of output logs, one per operator compared.
#![allow(clippy::type_complexity)]

use crate::common;

use common::dropin::{consolidated, final_state, graph, record, Edge, Log};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::Iterate;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

/// A dataflow with a persisted arrangement is dropped (`worker.drop_dataflow`) and built again in the same
/// process with the same id (DD programs install and drop dataflows as queries come and go): the second
/// build must succeed and serve what the first persisted, as a restart would.
#[test]
fn rebuild_after_drop_dataflow_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, keys) = scope.new_collection::<u32, isize>();
            let p = keys.arrange_by_self_persisted(&store, "keys").unwrap();
            let handle = p.handle().unwrap().clone();
            p.stream.probe_with(&probe);
            (input, handle)
        });
        for k in 0..5u32 {
            input.insert(k);
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(&1));
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
        drop(input);
        for _ in 0..100 {
            worker.step();
        }
        let resume = handle.resume_at();
        drop(handle);
        let probe = ProbeHandle::new();
        let log: Log<(u32, isize)> = Default::default();
        let built = worker.dataflow::<u64, _, _>(|scope| {
            let (input, keys) = scope.new_collection::<u32, isize>();
            match keys.arrange_by_self_persisted(&store, "keys") {
                Ok(p) => {
                    record(p.count_total(), &log, &probe);
                    Ok(input)
                }
                Err(e) => Err(e.to_string()),
            }
        });
        match built {
            Ok(mut input) => {
                input.advance_to(resume.max(1));
                input.insert(9);
                input.advance_to(resume.max(1) + 1);
                input.flush();
                let t = resume.max(1) + 1;
                for _ in 0..20_000 {
                    if !probe.less_than(&t) {
                        break;
                    }
                    worker.step();
                }
                o.lock().unwrap().push(format!(
                    "rebuilt; resume_at {resume}; probe passed: {}",
                    !probe.less_than(&t)
                ));
                o.lock().unwrap().push(format!("{:?}", final_state(&log)));
            }
            Err(e) => o.lock().unwrap().push(format!("rebuild failed: {e}")),
        }
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    });
    let out = out.lock().unwrap().clone();
    eprintln!("{out:#?}");
    assert!(
        out[0].starts_with("rebuilt") && out[0].ends_with("true"),
        "{out:#?}"
    );
    let expected: BTreeMap<(u32, isize), i64> =
        [0, 1, 2, 3, 4, 9].iter().map(|k| ((*k, 1isize), 1i64)).collect();
    assert_eq!(out[1], format!("{expected:?}"));
}

/// DD's `examples/arrange.rs` query shape on an import: the trace imported into a second dataflow and
/// entered into `iterate` there (reachability), against DD's imported trace; two workers.
#[test]
fn import_then_iterate_answers_as_dds() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let logs: (Log<u32>, Log<u32>) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index();
        let (mut input, mut tp, mut td) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, edges) = scope.new_collection::<Edge, isize>();
            let p = edges.clone().arrange_by_key_persisted(&store, "edges").unwrap();
            let d = edges.arrange_by_key();
            p.stream.clone().probe_with(&probe);
            d.stream.clone().probe_with(&probe);
            (input, p.trace, d.trace)
        });
        if index == 0 {
            for (e, r) in graph(0) {
                input.update(e, r);
            }
        }
        input.advance_to(1);
        input.flush();
        worker.step_while(|| probe.less_than(&1));
        let probe2 = ProbeHandle::new();
        let (mut roots_in, l0, l1) = (None, l.0.clone(), l.1.clone());
        worker.dataflow::<u64, _, _>(|scope| {
            let ep = tp.import(scope);
            let ed = td.import(scope);
            let (r_in, roots) = scope.new_collection::<u32, isize>();
            roots_in = Some(r_in);
            let reach_p = roots.clone().iterate(|inner, reach| {
                let e = ep.enter(inner);
                e.semijoin(reach.clone()).map(|(_, d)| d).concat(reach).distinct()
            });
            let reach_d = roots.iterate(|inner, reach| {
                let e = ed.enter(inner);
                e.join_core(reach.clone().map(|n| (n, ())).arrange_by_key(), |_, d, _| {
                    Some(*d)
                })
                .concat(reach)
                .distinct()
            });
            record(reach_p, &l0, &probe2);
            record(reach_d, &l1, &probe2);
        });
        let mut roots_in = roots_in.unwrap();
        roots_in.advance_to(1);
        if index == 0 {
            roots_in.insert(0);
        }
        for round in 1..5u64 {
            if index == 0 {
                for (e, r) in graph(round) {
                    input.update(e, r);
                }
            }
            input.advance_to(round + 1);
            roots_in.advance_to(round + 1);
            input.flush();
            roots_in.flush();
            worker.step_while(|| probe2.less_than(&(round + 1)));
        }
    })
    .unwrap();
    assert!(!final_state(&logs.1).is_empty());
    assert_eq!(consolidated(&logs.0), consolidated(&logs.1));
}
