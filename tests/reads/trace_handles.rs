//! Adversarial round 8: trace handles of a persisted arrangement used as DD users use them, against DD's
//! in-memory arrangement of the same input: a handle kept after its dataflow is dropped (`read_upper`,
//! `spans_through` + cursors, `import`, `import_frontier`), compaction frontiers moved while the store
//! merges, and several importing dataflows with their own compaction frontiers, one dropped part way.

use ddpersist::operators::{ArrangeTyped, TypedTrace};
use ddpersist::trace::PersistedTrace;
use ddpersist::{Codec, Options, Store};
use differential_dataflow::input::{Input, InputSession};
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::ord_neu::OrdValSpine;
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::progress::Antichain;
use timely::worker::Worker;

/// `(key, val)` -> `(time, diff)`s.
type Updates = Vec<((u64, u64), u64, i64)>;
type Shared = Arc<Mutex<Updates>>;

fn options() -> Options {
    Options {
        block_target_bytes: 256,
        merge_fan_in: 2,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// Round `t`'s updates: inserts of fresh keys, and retractions / re-inserts of older ones.
fn round(t: u64) -> Vec<((u64, u64), i64)> {
    let mut out = Vec::new();
    for i in 0..40u64 {
        out.push((((i * 7 + t) % 97, t * 100 + i), 1));
    }
    if t >= 2 {
        // Retract part of round t - 2.
        for i in (0..40u64).step_by(3) {
            out.push((((i * 7 + t - 2) % 97, (t - 2) * 100 + i), -1));
        }
    }
    out
}

/// The collection at time `t` of the input (rounds at times 0..=t).
fn model_at(t: u64) -> BTreeMap<(u64, u64), i64> {
    let mut acc = BTreeMap::new();
    for r in 0..=t {
        for (kv, d) in round(r) {
            *acc.entry(kv).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// The accumulation of `updates` at time `t`.
fn at(updates: &Updates, t: u64) -> BTreeMap<(u64, u64), i64> {
    let mut acc = BTreeMap::new();
    for (kv, time, d) in updates {
        if *time <= t {
            *acc.entry(*kv).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

const ROUNDS: u64 = 16;

/// A persisted trace handle and DD's, of the same collection.
type PTrace = TypedTrace<TraceAgent<PersistedTrace<u64>>, u64, u64, isize>;
type DTrace = TraceAgent<OrdValSpine<u64, u64, u64, isize>>;

/// A dataflow arranging one input twice, persisted (stream "a" of `store`) and by DD, both probed by
/// `probe`: the input and the two trace handles.
fn arrange_both(
    worker: &mut Worker,
    store: &Store,
    probe: &ProbeHandle<u64>,
) -> (InputSession<u64, (u64, u64), isize>, PTrace, DTrace) {
    worker.dataflow::<u64, _, _>(|scope| {
        let (input, c) = scope.new_collection::<(u64, u64), isize>();
        let p = c.clone().arrange_by_key_persisted(store, "a").unwrap();
        let d = c.arrange_by_key();
        p.stream.clone().probe_with(probe);
        d.stream.clone().probe_with(probe);
        (input, p.trace.clone(), d.trace.clone())
    })
}

/// Every update of `trace`'s spans through `upper`, read by DD's cursor over them, decoded.
fn persisted_updates(trace: &mut PTrace, upper: Antichain<u64>) -> Updates {
    let spans = trace.spans_through(upper.borrow()).expect("persisted spans");
    let (mut cursor, storage) = cursor_list(spans.into_iter().filter_map(|s| s.inner).collect());
    let mut out = Updates::new();
    while cursor.key_valid(&storage) {
        let k = u64::decode(cursor.key(&storage)).unwrap();
        while cursor.val_valid(&storage) {
            let v = u64::decode(cursor.val(&storage)).unwrap();
            cursor.map_times(&storage, |t, d| out.push(((k, v), t, d)));
            cursor.step_val(&storage);
        }
        cursor.step_key(&storage);
    }
    out
}

/// A handle of the persisted trace and one of DD's, kept after the dataflow that built them is dropped
/// (merges running, compaction frontiers moved part way): `read_upper`, the cursor over every span, and
/// an `import` and `import_frontier` into a new dataflow all answer as DD's at every readable time.
#[test]
fn a_handle_kept_after_its_dataflow_is_dropped_reads_as_dds() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let st = store.clone();
    let since = 6u64;
    let (cursor_p, cursor_d, uppers, imports) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = arrange_both(worker, &st, &probe);
        for t in 0..ROUNDS {
            for (kv, d) in round(t) {
                input.update(kv, d as isize);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
            if t == 3 {
                let f = Antichain::from_elem(3u64);
                tp.set_physical_compaction(f.borrow());
                td.set_physical_compaction(f.borrow());
            }
            if t == 9 {
                let f = Antichain::from_elem(since);
                tp.set_logical_compaction(f.borrow());
                td.set_logical_compaction(f.borrow());
                tp.set_physical_compaction(Antichain::new().borrow());
                td.set_physical_compaction(Antichain::new().borrow());
            }
            st.compact("a/w0of1").ok();
        }
        // The input stays open: the dataflow is dropped (its traces close, as DD's do).
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        for _ in 0..10 {
            worker.step();
        }
        let (mut up, mut ud) = (Antichain::new(), Antichain::new());
        tp.read_upper(&mut up);
        td.read_upper(&mut ud);
        let cp = persisted_updates(&mut tp, Antichain::new());
        let spans = td.spans_through(Antichain::new().borrow()).expect("DD spans");
        let (mut cursor, storage) = cursor_list(spans.into_iter().filter_map(|s| s.inner).collect());
        let mut cd = Updates::new();
        while cursor.key_valid(&storage) {
            let k = *cursor.key(&storage);
            while cursor.val_valid(&storage) {
                let v = *cursor.val(&storage);
                cursor.map_times(&storage, |t, d| cd.push(((k, v), *t, *d as i64)));
                cursor.step_val(&storage);
            }
            cursor.step_key(&storage);
        }
        // A new dataflow imports both handles, plainly and with import_frontier.
        let outs: Vec<Shared> = (0..4).map(|_| Shared::default()).collect();
        let probe2 = ProbeHandle::new();
        let o = outs.clone();
        worker.dataflow::<u64, _, _>(|scope| {
            let push = |s: &Shared| {
                let s = s.clone();
                move |(kv, t, d): &((u64, u64), u64, isize)| s.lock().unwrap().push((*kv, *t, *d as i64))
            };
            tp.import(scope)
                .as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(push(&o[0]))
                .probe_with(&probe2);
            td.import(scope)
                .as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(push(&o[1]))
                .probe_with(&probe2);
            let (fp, _bp) = tp.import_frontier(scope, "FP");
            fp.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(push(&o[2]))
                .probe_with(&probe2);
            let (fd, _bd) = td.import_frontier(scope, "FD");
            fd.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(push(&o[3]))
                .probe_with(&probe2);
        });
        let start = std::time::Instant::now();
        while !probe2.done() {
            worker.step();
            assert!(start.elapsed().as_secs() < 10, "the imports never complete");
        }
        let imports: Vec<Updates> = outs.iter().map(|s| s.lock().unwrap().clone()).collect();
        (cp, cd, (up, ud), imports)
    });
    let (up, ud) = uppers;
    assert_eq!(
        up.elements(),
        ud.elements(),
        "read_upper after the drop (DD's: {ud:?})"
    );
    for t in since..ROUNDS + 2 {
        let want = model_at(t.min(ROUNDS - 1));
        assert_eq!(at(&cursor_d, t), want, "DD's cursor at {t}");
        assert_eq!(at(&cursor_p, t), want, "persisted cursor at {t}");
        for (i, name) in ["import", "DD import", "import_frontier", "DD import_frontier"]
            .iter()
            .enumerate()
        {
            assert_eq!(at(&imports[i], t), want, "{name} at {t}");
        }
    }
    // import_frontier presents no time below the since.
    for (kv, t, _) in &imports[2] {
        assert!(*t >= since, "import_frontier shows {kv:?} at {t} < since {since}");
    }
}

/// Dataflow A arranges the input (persisted and DD's); B and C import both traces, B holding its
/// handles' compaction at 2, C advancing its handles each round, and C is dropped at round 8 while A
/// and B run on with A's own handles advancing each round and the store merging. B's import output, and
/// a cursor over B's handle at the end, equal DD's at every time from 2 on; the stream's since stays at
/// or below B's frontier.
#[test]
fn imports_with_their_own_compaction_one_dropped_part_way() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let st = store.clone();
    let hold = 2u64;
    let (b_out, c_out, cursor_b, since) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp, mut td) = arrange_both(worker, &st, &probe);
        let (b_out, c_out) = (Shared::default(), Shared::default());
        let (pb, pc) = (ProbeHandle::new(), ProbeHandle::new());
        let (bo, co) = (b_out.clone(), c_out.clone());
        let (mut b_tp, mut b_td) = worker.dataflow::<u64, _, _>(|scope| {
            let ip = tp.import(scope);
            let id = td.import(scope);
            let handles = (ip.trace.clone(), id.trace.clone());
            ip.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |(kv, t, d)| bo.lock().unwrap().push((*kv, *t, *d as i64)))
                .probe_with(&pb);
            id.as_collection(|k: &u64, v: &u64| (*k, *v)).probe_with(&pb);
            handles
        });
        let f = Antichain::from_elem(hold);
        b_tp.set_logical_compaction(f.borrow());
        b_td.set_logical_compaction(f.borrow());
        let c_index = worker.next_dataflow_index();
        let (mut c_tp, mut c_td) = worker.dataflow::<u64, _, _>(|scope| {
            let ip = tp.import(scope);
            let id = td.import(scope);
            let handles = (ip.trace.clone(), id.trace.clone());
            ip.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |(kv, t, d)| co.lock().unwrap().push((*kv, *t, *d as i64)))
                .probe_with(&pc);
            id.as_collection(|k: &u64, v: &u64| (*k, *v)).probe_with(&pc);
            handles
        });
        for t in 0..ROUNDS {
            for (kv, d) in round(t) {
                input.update(kv, d as isize);
            }
            input.advance_to(t + 1);
            input.flush();
            let start = std::time::Instant::now();
            while probe.less_than(&(t + 1)) || pb.less_than(&(t + 1)) {
                worker.step();
                assert!(
                    start.elapsed().as_secs() < 5,
                    "round {t}: stuck; A at {:?}, B at {:?}, C at {:?}",
                    probe.with_frontier(|f| f.to_vec()),
                    pb.with_frontier(|f| f.to_vec()),
                    pc.with_frontier(|f| f.to_vec())
                );
            }
            let f = Antichain::from_elem(t + 1);
            tp.set_logical_compaction(f.borrow());
            tp.set_physical_compaction(f.borrow());
            td.set_logical_compaction(f.borrow());
            td.set_physical_compaction(f.borrow());
            if t < 8 {
                c_tp.set_logical_compaction(f.borrow());
                c_tp.set_physical_compaction(f.borrow());
                c_td.set_logical_compaction(f.borrow());
                c_td.set_physical_compaction(f.borrow());
            }
            if t == 8 {
                worker.drop_dataflow(c_index);
            }
            st.compact("a/w0of1").ok();
        }
        for _ in 0..20 {
            worker.step();
        }
        let since = st.since("a/w0of1").unwrap();
        let cb = persisted_updates(&mut b_tp, Antichain::new());
        drop((c_tp, c_td));
        let (b, c) = (b_out.lock().unwrap().clone(), c_out.lock().unwrap().clone());
        (b, c, cb, since)
    });
    assert!(since <= hold, "the stream's since {since} passed B's hold {hold}");
    for t in 0..ROUNDS {
        let want = model_at(t);
        assert_eq!(at(&b_out, t), want, "B's import output at {t}");
        if t >= hold {
            // The cursor's upper is the trace's upper (ROUNDS): every time below it readable from `hold`.
            assert_eq!(at(&cursor_b, t), want, "B's cursor at {t}");
        }
        if t < 8 {
            assert_eq!(at(&c_out, t), want, "C's import output at {t}");
        }
    }
}

/// A first run advances its handle's compaction (the since reaches the store through seals, merges
/// advance times below it); a restart serves the stream and a second dataflow imports it plainly, with
/// `import_frontier`, and reads it through a cursor: every time from the store's since on accumulates to
/// the model, and `import_frontier` presents no time below it.
#[test]
fn a_restored_compacted_trace_reads_right_from_its_since() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let store = Store::open_with(tmp.path(), options()).unwrap();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, mut tp) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u64, u64), isize>();
                let p = c.arrange_by_key_persisted(&store, "a").unwrap();
                p.stream.clone().probe_with(&probe);
                (input, p.trace.clone())
            });
            for t in 0..ROUNDS {
                for (kv, d) in round(t) {
                    input.update(kv, d as isize);
                }
                input.advance_to(t + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(t + 1)));
                let f = Antichain::from_elem(t.saturating_sub(3));
                tp.set_logical_compaction(f.borrow());
                tp.set_physical_compaction(f.borrow());
                store.compact("a/w0of1").ok();
            }
        });
    }
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let since = store.since("a/w0of1").unwrap();
    assert!(since > 3, "the since reached the store: {since}");
    let st = store.clone();
    let (plain, frontier, cursor) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut tp) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u64, u64), isize>();
            let p = c.arrange_by_key_persisted(&st, "a").unwrap();
            p.stream.clone().probe_with(&probe);
            (input, p.trace.clone())
        });
        input.advance_to(ROUNDS);
        input.flush();
        let (plain, frontier) = (Shared::default(), Shared::default());
        let (po, fo) = (plain.clone(), frontier.clone());
        let probe2 = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            tp.import(scope)
                .as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |(kv, t, d)| po.lock().unwrap().push((*kv, *t, *d as i64)))
                .probe_with(&probe2);
            let (f, _b) = tp.import_frontier(scope, "F");
            f.as_collection(|k: &u64, v: &u64| (*k, *v))
                .inspect(move |(kv, t, d)| fo.lock().unwrap().push((*kv, *t, *d as i64)))
                .probe_with(&probe2);
        });
        let start = std::time::Instant::now();
        while probe.less_than(&ROUNDS) || probe2.less_than(&ROUNDS) {
            worker.step();
            assert!(start.elapsed().as_secs() < 5, "stuck");
        }
        let cp = persisted_updates(&mut tp, Antichain::from_elem(ROUNDS));
        let (a, b) = (plain.lock().unwrap().clone(), frontier.lock().unwrap().clone());
        drop(input);
        (a, b, cp)
    });
    for t in since..ROUNDS {
        let want = model_at(t);
        assert_eq!(at(&plain, t), want, "import at {t}");
        assert_eq!(at(&frontier, t), want, "import_frontier at {t}");
        assert_eq!(at(&cursor, t), want, "cursor at {t}");
    }
    for (kv, t, _) in &frontier {
        assert!(*t >= since, "import_frontier shows {kv:?} at {t} < since {since}");
    }
}
