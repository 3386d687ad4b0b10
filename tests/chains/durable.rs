//! A durable source (`persist` through a durable `PersistManager`'s token, for an input that cannot
//! replay) feeding the chain's non-persisted middle and the persisted arrangement dst: a run gives a
//! time's updates without advancing past it (taken in, never sealed) and is dropped; the rebuilt
//! dataflow (in the same process, or a new `timely::execute` over a reopened store) continues with new
//! updates only, from the sources' `greatest_upper`. dst must end equal to DD's answer over the whole
//! input, and its log agree at every time from the resume point on. 1 and 2 workers (the given time's
//! keys all live on worker 0, which feeds them, and its input is advanced past them while a second
//! input concatenated to it holds the source's frontier at the given time: so they are surely taken in,
//! and not sealed, before the drop).

use crate::common;
use crate::harness::*;
use ddpersist::operators::{ArrangeTyped, Persist};
use ddpersist::{ManagerOptions, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::sync::{Arc, Barrier, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// Per worker: resume points, greatest uppers, and errors.
type RunInfo = (Vec<u64>, Vec<u64>, Vec<String>);

/// One run: feeds the slots from the sources' greatest upper up to `end` (advancing past each), then
/// with `give` slot `end`'s updates at its time without advancing, steps 30 times and drops; without,
/// closes the inputs and runs to completion. Returns (agreed resume_at, feed start, log, errors).
fn run(
    store: &Store,
    peers: usize,
    slots: &[Slot],
    (start, end): (usize, usize),
    give: bool,
) -> (u64, u64, Vec<Upd>, Vec<String>) {
    let log: Arc<Mutex<Vec<Upd>>> = Default::default();
    let info: Arc<Mutex<RunInfo>> = Default::default();
    let (l, i, slots, store) = (log.clone(), info.clone(), slots.to_vec(), store.clone());
    let barrier = Arc::new(Barrier::new(peers));
    timely::execute(timely::Config::process(peers), move |worker| {
        let index = worker.index();
        let probe = ProbeHandle::<u64>::new();
        let durable = PersistManager::with_options(
            store.clone(),
            ManagerOptions {
                durable: true,
                ..Default::default()
            },
        );
        let l = l.clone();
        let st = store.clone();
        let (mut si, mut di, mut hi, hs, hd) = worker.dataflow::<u64, _, _>(|scope| {
            let (si, src) = scope.new_collection::<Row, i64>();
            let (di, dim) = scope.new_collection::<Row, i64>();
            // Holds the source's frontier at a given time while `si` advances past it (which flushes
            // the exchange buffers, `done()` only at an epoch's end: updates of an input never advanced
            // past stay there, on their way to the operator, and are lost with the dataflow).
            let (hi, hold) = scope.new_collection::<Row, i64>();
            let src = src.concat(hold);
            let (src, hs) = src.persist(durable.token("srcD", index).unwrap()).unwrap();
            let dst = middle(src, dim).arrange_by_key_persisted(&st, "dstD").unwrap();
            let hd = dst.handle().unwrap().clone();
            dst.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inner
                .inspect(move |(r, t, d)| l.lock().unwrap().push((r.clone(), *t, *d)))
                .probe_with(&probe);
            (si, di, hi, hs, hd)
        });
        let resume = hs.resume_at().min(hd.resume_at());
        let from = hs.resume_state().greatest_upper;
        {
            let mut i = i.lock().unwrap();
            i.0.push(resume);
            i.1.push(from);
        }
        // dim (not persisted): again in full, by worker 0.
        if index == 0 {
            for s in slots.iter().take(start) {
                di.advance_to(s.time);
                for (r, d) in &s.dim {
                    di.update(r.clone(), *d);
                }
            }
        }
        si.advance_to(from);
        hi.advance_to(from);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for slot in slots.iter().take(end).skip(start) {
            assert!(
                slot.time >= from,
                "slot {} below the greatest upper {from}",
                slot.time
            );
            si.advance_to(slot.time);
            di.advance_to(slot.time);
            if index == 0 {
                for (r, d) in &slot.src {
                    si.update(r.clone(), *d);
                }
                for (r, d) in &slot.dim {
                    di.update(r.clone(), *d);
                }
            }
            si.advance_to(slot.time + 1);
            di.advance_to(slot.time + 1);
            hi.advance_to(slot.time + 1);
            si.flush();
            di.flush();
            hi.flush();
            while probe.less_than(&(slot.time + 1)) && hs.error().is_none() && hd.error().is_none() {
                assert!(std::time::Instant::now() < deadline, "hang");
                worker.step();
            }
        }
        match (give, slots.get(end)) {
            (true, Some(slot)) => {
                si.advance_to(slot.time);
                di.advance_to(slot.time);
                if index == 0 {
                    for (r, d) in &slot.src {
                        si.update(r.clone(), *d);
                    }
                    for (r, d) in &slot.dim {
                        di.update(r.clone(), *d);
                    }
                }
                si.advance_to(slot.time + 1);
                si.flush();
                di.flush();
                hi.advance_to(slot.time);
                hi.flush();
                for _ in 0..30 {
                    worker.step();
                }
                common::drop_dataflows(worker);
            }
            _ => {
                drop((si, di, hi));
                while !probe.done() && hs.error().is_none() && hd.error().is_none() {
                    assert!(std::time::Instant::now() < deadline, "hang at the close");
                    worker.step();
                }
            }
        }
        i.lock()
            .unwrap()
            .2
            .extend(hs.error().into_iter().chain(hd.error()));
        common::drop_dataflows(worker);
        barrier.wait();
    })
    .unwrap();
    let (resumes, froms, errors) = info.lock().unwrap().clone();
    assert!(
        resumes.windows(2).all(|w| w[0] == w[1]),
        "resume points differ: {resumes:?}"
    );
    assert!(
        froms.windows(2).all(|w| w[0] == w[1]),
        "greatest uppers differ: {froms:?}"
    );
    let log = log.lock().unwrap().clone();
    (resumes[0], froms[0], log, errors)
}

fn durable_source(peers: usize, seed: u64, reopen: bool) {
    // Worker 0's keys only: its input's updates stay on worker 0.
    let g = Gen {
        peers,
        slots: 12,
        base: 0,
        max_jump: 3,
        big_jump: 0,
        masks: vec![1],
        dim_changes: true,
        seed,
    };
    let slots = generate(&g);
    let expected = oracle(&slots);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    // Each run gives slot `end` and the next starts after it (new updates only).
    for (r, start, end) in [(0, 0, 3), (1, 4, 6), (2, 7, 9)] {
        let (resume, from, log, errors) = run(&store, peers, &slots, (start, end), true);
        assert!(errors.is_empty(), "seed {seed} run {r}: {errors:?}");
        let upto = slots[end].time; // the given time never completes
        check_log("dst log", &log, &expected, &slots, resume, upto)
            .map_err(|e| format!("seed {seed} peers {peers} run {r} (fed from {from}): {e}"))
            .unwrap();
        // The given time was taken in (unsealed, durable) and not sealed.
        let id = ddpersist::operators::worker_stream_id("srcD", 0, peers);
        let t = slots[end].time;
        let held = store.snapshot(&id).unwrap().to_vec().unwrap();
        let net = acc_at(
            &slots[end]
                .src
                .iter()
                .map(|(r, d)| (r.clone(), 0, *d))
                .collect::<Vec<_>>(),
            0,
        );
        assert!(
            store.upper(&id).unwrap() <= t && (net.is_empty() || held.iter().any(|u| u.2 == t)),
            "seed {seed} peers {peers} run {r}: slot {end} (time {t}) not held unsealed by {id} (upper {}): {held:?}",
            store.upper(&id).unwrap()
        );
        if reopen {
            drop(store);
            store = Store::open(dir.path()).unwrap();
        }
    }
    let (resume, from, log, errors) = run(&store, peers, &slots, (10, slots.len()), false);
    assert!(errors.is_empty(), "seed {seed} last run: {errors:?}");
    assert_eq!(
        from, slots[9].time,
        "seed {seed}: the last given time is the greatest upper"
    );
    check_log("dst log", &log, &expected, &slots, resume, u64::MAX)
        .map_err(|e| format!("seed {seed} peers {peers} last run (fed from {from}): {e}"))
        .unwrap();
    let dst = stored::<String, u64>(&store, "dstD", peers);
    check_stored("dstD", &dst, &expected, &slots).unwrap();
    let want = acc_at(&expected, u64::MAX);
    assert_eq!(
        acc_at(&dst.0, u64::MAX),
        want,
        "seed {seed} peers {peers}: final dst"
    );
}

#[test]
fn durable_source_given_times_survive_rebuilds() {
    for seed in 0..crate::chains::seeds(3, 20) {
        for peers in [1, 2] {
            durable_source(peers, seed, false);
            durable_source(peers, seed, true);
        }
    }
}
