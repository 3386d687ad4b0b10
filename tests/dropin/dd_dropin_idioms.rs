//! From adversarial round 4 (held): DD idioms, unannotated closures as DD's tests and examples write them, over
//! typed persisted arrangements (compile and answer as DD); and arrangements built in a `region`.
#![allow(clippy::type_complexity)]

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::iterate::Iterate;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::vec::Map as _;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log = Arc<Mutex<Vec<(&'static str, String, u64, i64)>>>;

#[test]
fn unannotated_dd_idioms_and_a_region() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (pl, ml): (Log, Log) = Default::default();
    let (p_log, m_log) = (pl.clone(), ml.clone());
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection();
            let c: differential_dataflow::VecCollection<_, (u32, String), isize> = c;
            let p = c.clone().arrange_by_key_persisted(&store, "p").unwrap();
            let m = c.clone().arrange_by_key();
            let mut outs = Vec::new();
            outs.push((
                "reduce",
                p.clone().reduce(|_k, s, out| out.push((s.len(), 1))).map(|x| format!("{x:?}")).inner,
                m.clone().reduce_abelian::<_, differential_dataflow::trace::implementations::ValBuilder<_, _, _, _>, differential_dataflow::trace::implementations::ValSpine<u32, usize, u64, i32>, _, _>(
                    "r",
                    |_k, s, out| out.push((s.len(), 1)),
                    |vec, key, upds| {
                        vec.clear();
                        vec.extend(upds.drain(..).map(|(v, t, r)| ((*key, v), t, r)));
                    },
                )
                .as_collection(|k, v| (*k, *v))
                .map(|x| format!("{x:?}"))
                .inner
                .map(|(d, t, r)| (d, t, r as isize)),
            ));
            let keys = c.clone().map(|(k, _)| k).arrange_by_self_persisted(&store, "keys").unwrap();
            outs.push((
                "threshold",
                keys.clone().threshold_total(|_, c| if *c > 1 { 1 } else { 0 }).map(|x| format!("{x:?}")).inner.map(|(d, t, r): (String, u64, i32)| (d, t, r as isize)),
                c.clone().map(|(k, _)| k).threshold_total(|_, c| if *c > 1 { 1 } else { 0 }).map(|x| format!("{x:?}")).inner.map(|(d, t, r): (String, u64, i32)| (d, t, r as isize)),
            ));
            outs.push((
                "join_core",
                p.clone()
                    .join_core(keys.clone(), |k, v1, _v2| Some((*k, v1.clone())))
                    .map(|x| format!("{x:?}"))
                    .inner,
                m.clone()
                    .join_core(c.clone().map(|(k, _)| (k, ())).arrange_by_key(), |k, v1, _v2| Some((*k, v1.clone())))
                    .map(|x| format!("{x:?}"))
                    .inner,
            ));
            outs.push((
                "join_map",
                p.clone().join_map(c.clone().map(|(k, v)| (k + 1, v)), |k, a, b| (*k, a.clone(), b.clone())).map(|x| format!("{x:?}")).inner,
                c.clone().join_map(c.clone().map(|(k, v)| (k + 1, v)), |k, a, b| (*k, a.clone(), b.clone())).map(|x| format!("{x:?}")).inner,
            ));
            outs.push((
                "consolidate",
                p.clone().as_collection(|k, v| (*k, v.clone())).consolidate().map(|x| format!("{x:?}")).inner,
                c.clone().consolidate().map(|x| format!("{x:?}")).inner,
            ));
            // Built inside a region, used there, and left.
            let in_region = scope.region(|r| {
                let pr = c.clone().enter_region(r).arrange_by_key_persisted(&store, "region").unwrap();
                pr.clone().count_total().leave_region(scope)
            });
            outs.push((
                "region",
                in_region.map(|x| format!("{x:?}")).inner,
                c.clone().map(|(k, _)| k).count_total().map(|x| format!("{x:?}")).inner,
            ));
            let reach = c.clone().map(|(k, _)| k).iterate(|s, inner| {
                let e = keys.clone().enter(s);
                inner.clone().map(|x| x / 2).arrange_by_self_encoded().join_core(e, |k, _, _| Some(*k)).concat(inner).distinct()
            });
            let reach_m = c.clone().map(|(k, _)| k).iterate(|s, inner| {
                let e = c.clone().map(|(k, _)| (k, ())).enter(s);
                inner.clone().map(|x| (x / 2, ())).join_map(e, |k, _, _| *k).concat(inner).distinct()
            });
            outs.push(("iterate", reach.map(|x| format!("{x:?}")).inner, reach_m.map(|x| format!("{x:?}")).inner));
            for (name, ps, ms) in outs {
                let (a, b) = (p_log.clone(), m_log.clone());
                ps.inspect(move |(d, t, r)| a.lock().unwrap().push((name, d.clone(), *t, *r as i64))).probe_with(&probe);
                ms.inspect(move |(d, t, r)| b.lock().unwrap().push((name, d.clone(), *t, *r as i64))).probe_with(&probe);
            }
            input
        });
        for t in 0..6u64 {
            input.advance_to(t);
            for i in 0..12u32 {
                input.update(
                    (i % 5, format!("v{}", (i + t as u32) % 4)),
                    if (i + t as u32).is_multiple_of(3) { -1 } else { 1 },
                );
            }
        }
        input.advance_to(6);
        input.flush();
        let start = std::time::Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed().as_secs() < 60, "hang");
            probe.less_than(&6)
        });
    });
    let acc = |log: &Log, name: &str, t: u64| {
        let mut acc = BTreeMap::new();
        for (n, d, time, r) in log.lock().unwrap().iter() {
            if *n == name && *time <= t {
                *acc.entry(d.clone()).or_insert(0) += r;
            }
        }
        acc.retain(|_, r| *r != 0);
        acc
    };
    for name in [
        "reduce",
        "threshold",
        "join_core",
        "join_map",
        "consolidate",
        "region",
        "iterate",
    ] {
        for t in 0..6 {
            assert_eq!(acc(&pl, name, t), acc(&ml, name, t), "{name} at {t}");
        }
    }
}
