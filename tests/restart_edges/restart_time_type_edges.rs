//! the build check `check_times_fit` (every stream of an id must fit the build's
//! timestamp type) must not refuse streams that do fit: a `u8` source whose last time is 255, closed
//! (the stream finished, its upper 256), rebuilt at `u8` again and again; an `i8` source ending at its
//! greatest time; with the arrangement's readers compacting to the empty frontier before the close; with
//! two workers, one of which saw no update. Each operator kind: `arrange_by_key_persisted`, `persist`,
//! `upsert_persisted`.

use ddpersist::operators::{ArrangeTyped, Persist, UpsertPersisted};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as DdInput;
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Log<T> = Arc<Mutex<Vec<(String, (u32, u32), T, i64)>>>;

/// One run at times `T`: builds arrange ("a"), persist ("p") and upsert ("u") over one store; feeds
/// `times` (only those at or beyond the resume point) when `feed`; closes the inputs when `close`, else
/// drops the dataflow once the probe passed the resume point. Returns per worker the build errors (or
/// none) and the handles' errors.
fn run<T>(dir: &Path, times: Vec<T>, feed: bool, close: bool, compact_all: bool, log: &Log<T>) -> Vec<String>
where
    T: ddpersist::operators::PersistTime
        + timely::order::TotalOrder
        + differential_dataflow::lattice::Lattice
        + timely::ExchangeData
        + std::fmt::Debug
        + Copy
        + Ord
        + Sync,
{
    let store = Store::open(dir).unwrap();
    let manager = PersistManager::new(store.clone());
    let log = log.clone();
    let results = timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let probe = ProbeHandle::<T>::new();
        let token = manager.token("p", index).unwrap();
        let l = log.clone();
        let built = worker.dataflow::<T, _, _>(|scope| {
            let (cin, c) = scope.new_collection::<(u32, u32), i64>();
            let (uin, ups) = scope.new_input::<Vec<(u32, Option<u32>, T)>>();
            let a = match c.clone().arrange_by_key_persisted(&store, "a") {
                Ok(a) => a,
                Err(e) => return Err(format!("arrange: {e}")),
            };
            let (p, ph) = match c.persist(token) {
                Ok(p) => p,
                Err(e) => return Err(format!("persist: {e}")),
            };
            let (u, uh) = match ups.upsert_persisted(&store, "u") {
                Ok(u) => u,
                Err(e) => return Err(format!("upsert: {e}")),
            };
            let ah = a.handle().unwrap().clone();
            let mut trace = a.arranged().trace;
            if compact_all {
                trace.set_logical_compaction(timely::progress::frontier::AntichainRef::new(&[]));
                trace.set_physical_compaction(timely::progress::frontier::AntichainRef::new(&[]));
            }
            drop(trace);
            let (l1, l2, l3) = (l.clone(), l.clone(), l.clone());
            a.as_collection(|k: &u32, v: &u32| (*k, *v))
                .inner
                .inspect(move |(d, t, r)| l1.lock().unwrap().push(("a".into(), *d, *t, (*r))))
                .probe_with(&probe);
            p.inner
                .inspect(move |(d, t, r)| l2.lock().unwrap().push(("p".into(), *d, *t, *r)))
                .probe_with(&probe);
            u.inner
                .inspect(move |(d, t, r)| l3.lock().unwrap().push(("u".into(), *d, *t, *r)))
                .probe_with(&probe);
            Ok((cin, uin, ah, ph, uh))
        });
        let (mut cin, mut uin, ah, ph, uh) = match built {
            Ok(b) => b,
            Err(e) => {
                for df in worker.installed_dataflows() {
                    worker.drop_dataflow(df);
                }
                return vec![format!("worker {index} build: {e}")];
            }
        };
        let from = ah.resume_at();
        if feed {
            for &t in &times {
                if t.to_u64() < from {
                    continue;
                }
                cin.advance_to(t);
                uin.advance_to(t);
                if index == 0 {
                    cin.update((1, t.to_u64() as u32 % 7), 1);
                    uin.send((2, Some(t.to_u64() as u32 % 5), t));
                }
            }
        }
        let start = Instant::now();
        if close {
            drop((cin, uin));
            while !probe.done() {
                assert!(start.elapsed() < Duration::from_secs(30), "hang at the close");
                worker.step();
            }
        } else {
            let last = *times.last().unwrap();
            cin.advance_to(last);
            uin.advance_to(last);
            cin.flush();
            uin.flush();
            // The replay arrives at once; wait for the whole of it (the frontier may stay held).
            let enough = |log: &Log<T>| {
                let got = finals(log);
                ["a", "p", "u"].iter().all(|op| got.keys().any(|(o, _)| o == op))
            };
            while !enough(&log) {
                if start.elapsed() > Duration::from_secs(20) {
                    break;
                }
                worker.step();
            }
            for _ in 0..20 {
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
            drop((cin, uin));
        }
        let mut errs = Vec::new();
        for (n, e) in [("a", ah.error()), ("p", ph.error()), ("u", uh.error())] {
            if let Some(e) = e {
                errs.push(format!("worker {index} {n}: {e}"));
            }
        }
        errs
    })
    .unwrap()
    .join();
    results.into_iter().flat_map(|r| r.unwrap()).collect()
}

/// Accumulates the log per operator: `(op, data) -> diff` over all times (the final collection).
fn finals<T>(log: &Log<T>) -> BTreeMap<(String, (u32, u32)), i64> {
    let mut m = BTreeMap::new();
    for (op, d, _, r) in log.lock().unwrap().iter() {
        *m.entry((op.clone(), *d)).or_insert(0) += r;
    }
    m.retain(|_, r| *r != 0);
    m
}

fn scenario<T>(times: Vec<T>, compact_all: bool)
where
    T: ddpersist::operators::PersistTime
        + timely::order::TotalOrder
        + differential_dataflow::lattice::Lattice
        + timely::ExchangeData
        + std::fmt::Debug
        + Copy
        + Ord
        + Sync,
{
    let dir = tempfile::tempdir().unwrap();
    let log: Log<T> = Arc::default();
    let errs = run(dir.path(), times.clone(), true, true, compact_all, &log);
    assert!(errs.is_empty(), "first run (fed and closed): {errs:?}");
    let want = finals(&log);
    assert!(!want.is_empty());
    for r in 2..5 {
        let log: Log<T> = Arc::default();
        // A read-only run drops its dataflow; a run after a close may also close again (nothing to feed).
        let close = r % 2 == 0;
        let errs = run(dir.path(), times.clone(), false, close, compact_all, &log);
        assert!(
            errs.is_empty(),
            "run {r} at {} over streams that fit the type was refused or failed: {errs:?}",
            std::any::type_name::<T>()
        );
        assert_eq!(finals(&log), want, "run {r}: the replayed collections");
    }
}

#[test]
fn u8_source_ending_at_255_restarts() {
    scenario::<u8>((250..=255).collect(), false);
}

#[test]
fn u8_source_ending_at_255_with_readers_compacted_to_the_empty_frontier() {
    scenario::<u8>((250..=255).collect(), true);
}

#[test]
fn i8_source_ending_at_its_greatest_time() {
    scenario::<i8>(vec![-128, -1, 0, 126, 127], false);
    scenario::<i8>(vec![-128, -1, 0, 126, 127], true);
}

#[test]
fn u16_source_ending_below_its_greatest_time() {
    scenario::<u16>(vec![0, 1, 65_000, 65_534], true);
}
