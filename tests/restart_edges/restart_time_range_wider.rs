//! A stream written at `u64` times (which `u32` reads: one mapping) whose every update fits `u32`, but
//! whose input frontier jumped past `u32`'s range in one step (so the batch holding the updates has an
//! upper past it), builds at `u32` for `persist` and `upsert_persisted`: their replays read each update,
//! and the frontier past the range is `u32`'s empty frontier. (Adversarial round 10: the build check over
//! every stream of the id, `check_times_fit`, judged them by batch descriptions, as only an arrangement's
//! trace does, and refused.)

use ddpersist::operators::Persist;
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as DdInput;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

#[test]
fn a_u64_persist_stream_whose_updates_fit_u32_builds_at_u32() {
    let dir = tempfile::tempdir().unwrap();
    let big = u64::from(u32::MAX) + 10;
    {
        let store = Store::open(dir.path()).unwrap();
        let manager = PersistManager::new(store.clone());
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let token = manager.token("p", 0).unwrap();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, u32), i64>();
                let (p, _h) = c.persist(token).unwrap();
                p.inner.probe_with(&probe);
                input
            });
            input.advance_to(3);
            input.update((1, 1), 1);
            input.update((2, 2), 1);
            // The frontier jumps past u32's range in one step: one seal [0, big) holds the updates.
            input.advance_to(big);
            input.flush();
            let start = Instant::now();
            while probe.less_than(&big) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang");
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        });
    }
    let store = Store::open(dir.path()).unwrap();
    let manager = PersistManager::new(store.clone());
    let built = build_persist_at_u32(manager);
    assert!(
        built.is_ok(),
        "a u64 stream whose updates all fit u32 (times 3) was refused at u32: {built:?}"
    );
}

/// The same for `upsert_persisted`: state written at `u64` times 3 and 4, the input frontier jumping past
/// `u32`'s range, then built at `u32`.
#[test]
fn a_u64_upsert_state_whose_updates_fit_u32_builds_at_u32() {
    use ddpersist::operators::UpsertPersisted;
    use timely::dataflow::operators::Input;
    let dir = tempfile::tempdir().unwrap();
    let big = u64::from(u32::MAX) + 10;
    {
        let store = Store::open(dir.path()).unwrap();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, ups) = scope.new_input::<Vec<(u32, Option<u32>, u64)>>();
                let (u, _h) = ups.upsert_persisted(&store, "u").unwrap();
                u.inner.probe_with(&probe);
                input
            });
            input.send((1, Some(1), 3));
            input.send((2, Some(2), 4));
            input.advance_to(big);
            let start = Instant::now();
            while probe.less_than(&big) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang");
                worker.step();
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        });
    }
    let store = Store::open(dir.path()).unwrap();
    let built: Result<(), String> = timely::execute_directly(move |worker| {
        let r = worker.dataflow::<u32, _, _>(|scope| {
            let (input, ups) = scope.new_input::<Vec<(u32, Option<u32>, u32)>>();
            let r = ups
                .upsert_persisted(&store, "u")
                .map(|_| ())
                .map_err(|e| e.to_string());
            drop(input);
            r
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        r
    });
    assert!(
        built.is_ok(),
        "a u64 upsert state whose updates all fit u32 (times 3, 4) was refused at u32: {built:?}"
    );
}

/// A stream that is not durable drops its spilled runs (unsealed updates) when its worker builds, so they
/// do not count for the build check: a `u64` `persist` stream whose frontier jumped past `u32`'s range
/// with no sealed update, its since moved there and updates beyond it spilled (then dropped with the
/// dataflow), builds at `u32` in the same process as the same stream without the spills does (both hold
/// nothing `u32` reads). The check counted the spills as updates read at the since and refused.
#[test]
fn a_u64_persist_stream_with_only_dropped_spills_builds_at_u32() {
    use ddpersist::operators::worker_stream_id;
    let dir = tempfile::tempdir().unwrap();
    let big = u64::from(u32::MAX) + 10;
    let options = ddpersist::Options {
        memtable_budget_bytes: 64 << 10,
        ..ddpersist::Options::default()
    };
    let stream = worker_stream_id("p", 0, 1);
    let store = {
        let store = Store::open_with(dir.path(), options).unwrap();
        let manager = PersistManager::new(store.clone());
        let s = store.clone();
        let name = stream.clone();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let token = manager.token("p", 0).unwrap();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u32, u32), i64>();
                let (p, _h) = c.persist(token).unwrap();
                p.inner.probe_with(&probe);
                input
            });
            input.advance_to(big);
            input.flush();
            let start = Instant::now();
            while probe.less_than(&big) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang");
                worker.step();
            }
            // Updates beyond the upper, with the frontier held: the memtable passes its budget and spills.
            for i in 0..6000u32 {
                input.update((i, i), 1);
            }
            input.flush();
            while s.manifest().stream(&name).map_or(0, |m| m.spills.len()) == 0 {
                assert!(start.elapsed() < Duration::from_secs(30), "no spill");
                worker.step();
                std::thread::sleep(Duration::from_millis(1));
            }
            for df in worker.installed_dataflows() {
                worker.drop_dataflow(df);
            }
        });
        store.allow_compaction(&stream, big).unwrap();
        let meta = store.manifest().stream(&stream).cloned().unwrap();
        assert!(!meta.durable && meta.batches.is_empty() && !meta.spills.is_empty());
        assert_eq!(meta.since, big);
        // Rebuilt in the same process (a reopen drops a volatile stream's spills before any build).
        store
    };
    let manager = PersistManager::new(store.clone());
    let built = build_persist_at_u32(manager);
    assert!(
        built.is_ok(),
        "a stream whose only updates were spills it drops at build was refused at u32: {built:?}"
    );
}

/// Builds `persist` of operator "p" at `u32` times over `manager`'s store (then drops the dataflow).
fn build_persist_at_u32(manager: PersistManager) -> Result<(), String> {
    timely::execute_directly(move |worker| {
        let token = manager.token("p", 0).unwrap();
        let r = worker.dataflow::<u32, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u32), i64>();
            let r = c.persist(token).map(|_| ()).map_err(|e| e.to_string());
            drop(input);
            r
        });
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        r
    })
}
