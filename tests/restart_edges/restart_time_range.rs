//! Adversarial round 9: a persisted arrangement written at `u64` times past `u32`'s range, then built at
//! `u32` times by two workers. "A batch holding a time that does not fit `T` is refused when the trace
//! opens it" / "a persisted time beyond `T`'s range fails the build": the refusal must come on every
//! worker alike (as the layout checks do, judged over all the id's streams), since a dataflow built on one
//! worker only cannot run (it hangs, `tests/restart/restart_build_order.rs`). Here only the worker whose stream
//! holds the late update is refused; the other builds, and its handle's `resume_at` is a time `u32`
//! cannot hold.

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

#[test]
fn a_time_past_u32_refuses_the_u32_build_on_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let big = u64::from(u32::MAX) + 5;
    // Run 1, at u64 times: one update at a time past u32's range (on one worker's stream), then closed.
    {
        let store = Store::open(dir.path()).unwrap();
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, u32), isize>();
                let p = c.arrange_by_key_persisted(&store, "x").unwrap();
                p.as_collection(|k, v| (*k, *v)).inner.probe_with(&probe);
                input
            });
            input.advance_to(big);
            if worker.index() == 0 {
                input.update((0, 0), 1);
            }
            input.advance_to(big + 1);
            input.flush();
            let start = Instant::now();
            while probe.less_than(&(big + 1)) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang");
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        })
        .unwrap();
    }
    // Run 2, at u32 times: each worker reports whether its build failed; nothing is stepped.
    let store = Store::open(dir.path()).unwrap();
    let results: Vec<(usize, Result<u64, String>)> =
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let built = worker.dataflow::<u32, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, u32), isize>();
                let r = c.arrange_by_key_persisted(&store, "x");
                drop(input);
                r.map(|p| p.handle().unwrap().resume_at())
                    .map_err(|e| e.to_string())
            });
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
            (index, built)
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    eprintln!("{results:?}");
    let failed: Vec<bool> = results.iter().map(|(_, r)| r.is_err()).collect();
    assert!(
        failed.iter().all(|f| *f),
        "the u32 build was refused on some workers only (a dataflow built on one worker hangs): {results:?}"
    );
}

/// The same for `persist` (through a `PersistManager`) and `upsert_persisted`: written at `u64` past
/// `u32`'s range on one worker's stream, built at `u32` by two workers.
#[test]
fn a_time_past_u32_refuses_the_u32_persist_and_upsert_builds_on_every_worker() {
    use ddpersist::operators::{Persist, UpsertPersisted};
    use ddpersist::PersistManager;
    use timely::dataflow::operators::Input as TimelyInput;
    let dir = tempfile::tempdir().unwrap();
    let big = u64::from(u32::MAX) + 5;
    {
        let manager = PersistManager::new(Store::open(dir.path()).unwrap());
        timely::execute(timely::Config::process(2), move |worker| {
            let probe = ProbeHandle::new();
            let token = manager.token("p", worker.index()).unwrap();
            let store = manager.store().clone();
            let (mut input, mut ups) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, u32), i64>();
                let (p, _h) = c.persist(token).unwrap();
                p.inner.probe_with(&probe);
                let (ups, s) = scope.new_input::<Vec<(u32, Option<u32>, u64)>>();
                let (u, _h) = s.upsert_persisted(&store, "u").unwrap();
                u.inner.probe_with(&probe);
                (input, ups)
            });
            input.advance_to(big);
            ups.advance_to(big);
            if worker.index() == 0 {
                input.update((0, 0), 1);
                ups.send((0, Some(0), big));
            }
            input.advance_to(big + 1);
            ups.advance_to(big + 1);
            input.flush();
            let start = Instant::now();
            while probe.less_than(&(big + 1)) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang");
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        })
        .unwrap();
    }
    // Each operator built at u32 in an execution of its own (two operators in one dataflow after a
    // one-sided refusal allocate mismatched channels: timely panics "failed to correctly cast channel").
    let manager = PersistManager::new(Store::open(dir.path()).unwrap());
    let persist: Vec<bool> = timely::execute(timely::Config::process(2), move |worker| {
        let token = manager.token("p", worker.index()).unwrap();
        let refused = worker.dataflow::<u32, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u32), i64>();
            let refused = c.persist(token).is_err();
            drop(input);
            refused
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        refused
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let store = Store::open(dir.path()).unwrap();
    let upsert: Vec<bool> = timely::execute(timely::Config::process(2), move |worker| {
        let refused = worker.dataflow::<u32, _, _>(|scope| {
            let (ups, s) = scope.new_input::<Vec<(u32, Option<u32>, u32)>>();
            let refused = s.upsert_persisted(&store, "u").is_err();
            drop(ups);
            refused
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        refused
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect();
    let results: Vec<(usize, bool, bool)> = (0..2).map(|w| (w, persist[w], upsert[w])).collect();
    eprintln!("(worker, persist refused, upsert refused): {results:?}");
    for (what, refused) in [
        ("persist", results.iter().map(|r| r.1).collect::<Vec<_>>()),
        (
            "upsert_persisted",
            results.iter().map(|r| r.2).collect::<Vec<_>>(),
        ),
    ] {
        assert!(
            refused.iter().all(|r| *r) || refused.iter().all(|r| !*r),
            "{what}: the u32 build was refused on some workers only: {refused:?}"
        );
    }
}
