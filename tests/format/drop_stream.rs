//! `Store::drop_stream`: retiring a stream (a persisted operator's id no dataflow runs any more) removes it
//! durably with its batches, spilled runs and unsealed updates; its WAL records are skipped at replay; the
//! id can be created again, empty; a live operator's stream is refused; merges in flight and writers of
//! other streams are unaffected. And the reason it exists: a dropped operator stream no longer holds back
//! the compaction of the store's other persisted operators.

use crate::common;

use common::batch_files;
use ddpersist::operators::{compaction_holder, worker_stream_id, ArrangeTyped};
use ddpersist::{Error, Options, Store, StreamOptions};
use differential_dataflow::input::Input;
use differential_dataflow::trace::TraceReader;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::progress::Antichain;

/// The batch files (batches and spilled runs) stream `id`'s manifest entry names.
fn files_of(store: &Store, id: &str) -> usize {
    let manifest = store.manifest();
    let stream = manifest.stream(id).unwrap();
    stream.batches.len() + stream.spills.len()
}

fn update(i: u64, t: u64) -> (u64, String, u64, i64) {
    (i, format!("val {i}"), t, 1)
}

/// Dropped with sealed batches and durable unsealed updates (in the WAL): gone from the manifest and the
/// directory, the other stream intact across a reopen (the WAL replay skips the dropped stream's records),
/// and the id created again is a new, empty stream.
#[test]
fn a_dropped_stream_is_gone_durably_and_its_id_reusable() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for id in ["keep", "drop"] {
            store.create_stream(id, StreamOptions { durable: true }).unwrap();
            for t in 0..3 {
                let updates: Vec<_> = (0..100).map(|i| update(i, t)).collect();
                store.write(id, &updates).unwrap();
                store.seal(id, t + 1).unwrap();
            }
            store.write(id, &[update(7, 5)]).unwrap(); // unsealed, in the WAL
        }
        let before = batch_files(dir.path()).len();
        let dropped_files = files_of(&store, "drop");
        assert!(dropped_files > 0);
        store.drop_stream("drop").unwrap();
        assert_eq!(store.streams(), ["keep"]);
        assert!(matches!(store.upper("drop"), Err(Error::UnknownStream { .. })));
        assert!(matches!(
            store.write("drop", &[update(1, 9)]),
            Err(Error::UnknownStream { .. })
        ));
        assert!(matches!(
            store.drop_stream("drop"),
            Err(Error::UnknownStream { .. })
        ));
        assert_eq!(
            batch_files(dir.path()).len(),
            before - dropped_files,
            "its files deleted"
        );
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.streams(), ["keep"]);
    let kept = store.snapshot("keep").unwrap().decode::<u64, String>().unwrap();
    assert_eq!(kept.len(), 301, "the kept stream's sealed and unsealed updates");
    store
        .create_stream("drop", StreamOptions { durable: true })
        .unwrap();
    assert_eq!(store.upper("drop").unwrap(), 0);
    assert!(store
        .snapshot("drop")
        .unwrap()
        .decode::<u64, String>()
        .unwrap()
        .is_empty());
    drop(store);
    // Reopened after the new stream of the same id: the old records are not its.
    let store = Store::open(dir.path()).unwrap();
    assert!(store
        .snapshot("drop")
        .unwrap()
        .decode::<u64, String>()
        .unwrap()
        .is_empty());
}

/// A stream a live operator writes is refused; once its dataflow is dropped it can be dropped.
#[test]
fn a_live_operators_stream_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let stream = worker_stream_id("live", 0, 1);
    let s = store.clone();
    timely::execute_directly(move |worker| {
        let _input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
            pairs.arrange_by_key_persisted(&s, "live").unwrap();
            input
        });
        assert!(matches!(s.drop_stream(&stream), Err(Error::BadInput { .. })));
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        s.drop_stream(&stream).unwrap();
    });
    assert!(store.streams().is_empty());
}

/// Dropped while background merges of it run and another thread writes another stream, then created
/// again at once under the same id (a merge of the old stream still running must not reach the new one):
/// no background error, no poisoned store, no file left behind (checked before any reopen could remove
/// orphans), and the other stream's updates all there after a reopen.
#[test]
fn a_stream_dropped_beside_merges_and_writers_and_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        merge_fan_in: 2,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    store
        .create_stream("other", StreamOptions { durable: true })
        .unwrap();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for t in 0..200u64 {
                store.write("other", &[update(t, t)]).unwrap();
                store.seal("other", t + 1).unwrap();
            }
        })
    };
    for round in 0..5u64 {
        store
            .create_stream(
                "busy",
                StreamOptions {
                    durable: round % 2 == 0,
                },
            )
            .unwrap();
        for t in 0..20 {
            let updates: Vec<_> = (0..200).map(|i| update(i + 1000 * t, t)).collect();
            store.write("busy", &updates).unwrap();
            store.seal("busy", t + 1).unwrap();
        }
        store.write("busy", &[update(1, 30)]).unwrap();
        // Merges of "busy" are queued or running now.
        store.drop_stream("busy").unwrap();
        assert_eq!(store.background_error(), None, "round {round}");
    }
    writer.join().unwrap();
    store
        .create_stream("busy", StreamOptions { durable: true })
        .unwrap();
    store.compact("other").unwrap();
    assert_eq!(store.background_error(), None);
    assert!(store
        .snapshot("busy")
        .unwrap()
        .decode::<u64, String>()
        .unwrap()
        .is_empty());
    // Background merges of "other" may still be finishing: wait for the files to settle.
    let named = || files_of(&store, "other") + files_of(&store, "busy");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while batch_files(dir.path()).len() != named() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        batch_files(dir.path()).len(),
        named(),
        "no file of a dropped stream left"
    );
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    assert!(store.recovery_report().orphans_removed.is_empty());
    let mut streams = store.streams();
    streams.sort();
    assert_eq!(streams, ["busy", "other"]);
    let other = store.snapshot("other").unwrap().decode::<u64, String>().unwrap();
    assert_eq!(other.len(), 200);
}

/// A stream with spilled runs and a logged seal whose batch is not written yet drops whole: no file left,
/// and a reopen replays neither its updates nor its seal record.
#[test]
fn spilled_runs_and_logged_seals_drop_with_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 64 << 10,
        compaction_threads: 0,
        ..Options::default()
    };
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        store.create_stream("s", StreamOptions { durable: true }).unwrap();
        for t in 0..4u64 {
            let updates: Vec<_> = (0..2_000).map(|i| update(i + 10_000 * t, 10 + t)).collect();
            store.write("s", &updates).unwrap();
        }
        assert!(
            !store.manifest().stream("s").unwrap().spills.is_empty(),
            "spilled"
        );
        store.seal_logged("s", 11).unwrap();
        store.drop_stream("s").unwrap();
        assert!(
            batch_files(dir.path()).is_empty(),
            "{:?}",
            batch_files(dir.path())
        );
    }
    let store = Store::open_with(dir.path(), options).unwrap();
    assert!(store.streams().is_empty());
    assert!(batch_files(dir.path()).is_empty());
}

/// Why it exists: a persisted operator no longer run holds back the compaction of the store's other
/// operators (their since stays below its upper); dropped, it no longer does. `x` arranges at times
/// 0..10 beside `y` (upper 3, not run any more) and `z` (created, never sealed: a mistyped id, or a
/// downstream that will take `x`'s whole history when it first runs): `x`'s since stays at 0; after `y`
/// is dropped, `z` still holds it at 0 (adversarial round 12: a stream at upper 0 that held nothing back
/// let a downstream take collapsed history); after `z` is dropped too, the next run's seals carry `x`'s
/// readers' since.
#[test]
fn a_dropped_operator_stream_no_longer_holds_compaction_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let y = worker_stream_id("y", 0, 1);
    store.create_stream(&y, StreamOptions { durable: false }).unwrap();
    store.seal(&y, 3).unwrap();
    // An operator stream that never sealed anything holds the since at 0.
    let z = worker_stream_id("z", 0, 1);
    store.create_stream(&z, StreamOptions { durable: false }).unwrap();
    let x = worker_stream_id("x", 0, 1);
    let run = |store: &Store, from: u64, to: u64| {
        let s = store.clone();
        timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
                let arranged = pairs.arrange_by_key_persisted(&s, "x").unwrap();
                arranged.stream.clone().probe_with(&probe);
                (input, arranged.trace)
            });
            for t in from..to {
                input.advance_to(t);
                input.insert((t % 3, t));
                input.advance_to(t + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(t + 1)));
                trace.set_logical_compaction(Antichain::from_elem(t + 1).borrow());
            }
            drop(input);
            worker.step_while(|| !probe.done());
        });
    };
    // Which stream holds the since back, as the library and `inspect list` (text and JSON) report it.
    let holder = |store: &Store| {
        let manifest = store.manifest();
        compaction_holder(&manifest).map(|(id, upper)| (id.to_string(), upper))
    };
    let listed = |dir: &std::path::Path, json: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_inspect"));
        c.arg("list").arg(dir);
        if json {
            c.arg("--json");
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    run(&store, 0, 10);
    assert_eq!(store.since(&x).unwrap(), 0, "z's upper 0 holds x's since");
    assert_eq!(holder(&store), Some((z.clone(), 0)));
    let text = listed(dir.path(), false);
    assert!(
        text.contains(&format!("operator state compacts below upper 0 of {z:?}")),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&listed(dir.path(), true)).unwrap();
    assert_eq!(json["compaction_holder"]["stream"], z.as_str(), "{json}");
    assert_eq!(json["compaction_holder"]["upper"], 0, "{json}");
    store.drop_stream(&y).unwrap();
    run(&store, 10, 20);
    assert_eq!(store.since(&x).unwrap(), 0, "z's upper 0 still holds x's since");
    store.drop_stream(&z).unwrap();
    run(&store, 20, 30);
    assert!(store.since(&x).unwrap() > 3, "since {}", store.since(&x).unwrap());
    assert_eq!(holder(&store).map(|h| h.0), Some(x.clone()), "x alone is left");
    store.drop_stream(&x).unwrap();
    assert_eq!(holder(&store), None);
    let json: serde_json::Value = serde_json::from_str(&listed(dir.path(), true)).unwrap();
    assert!(json["compaction_holder"].is_null(), "{json}");
}

/// Streams dropped right after a logged seal (its batch perhaps still to be written by the flush thread)
/// and created again at once, 50 times at full speed: no background error, the store closes, and the
/// last stream's logged seal is there after a reopen. (The interleaving a review found, where the flush
/// thread sealed the new stream forever toward the old seal's upper, is forced in
/// `store/logged.rs`'s unit test.)
#[test]
fn a_logged_seal_of_a_dropped_stream_does_not_hold_the_flush_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (done, finished) = std::sync::mpsc::channel();
    let path = dir.path().to_path_buf();
    std::thread::spawn(move || {
        let store = Store::open(&path).unwrap();
        for round in 0..50u64 {
            store.create_stream("s", StreamOptions { durable: true }).unwrap();
            store.write("s", &[update(round, 0)]).unwrap();
            store.seal_logged("s", 1).unwrap();
            store.drop_stream("s").unwrap();
        }
        store.create_stream("s", StreamOptions { durable: true }).unwrap();
        store.write("s", &[update(1, 3)]).unwrap();
        store.seal_logged("s", 4).unwrap();
        store.complete_seals("s").unwrap();
        let error = store.background_error();
        drop(store);
        done.send(error).unwrap();
    });
    let error = finished
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the store closed");
    assert_eq!(error, None);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 4);
    assert_eq!(
        store
            .snapshot("s")
            .unwrap()
            .decode::<u64, String>()
            .unwrap()
            .len(),
        1
    );
}
