//! Logged seals (`Store::seal_logged`): durable through one WAL record, the batch written afterwards.
//! The upper of a logged seal survives a restart whether or not its batch was written (also when a spill
//! committed past its record), writes below it are refused from the return on, readers see its updates
//! throughout, and a seal that cannot be logged is an ordinary seal. Power-loss states of workloads with
//! logged seals: `tests/durability/crash_states.rs`.

use crate::common;

use common::{open_faulty, wal_segment_bytes, wal_segments, Model};
use ddpersist::wal::record::{decode, Record, TAG_SEAL};
use ddpersist::wal::{FileLog, WalRecovery};
use ddpersist::{Error, Options, Store, StreamOptions};
use std::path::Path;
use std::sync::Arc;

/// No background threads: a logged seal's batch is written inline, after its record.
fn inline() -> Options {
    Options {
        compaction_threads: 0,
        ..Options::default()
    }
}

fn write(store: &Store, model: &mut Model, id: &str, from: u64, n: u64, time: u64) {
    let updates: Vec<(Vec<u8>, Vec<u8>, u64, i64)> = (from..from + n)
        .map(|i| {
            (
                format!("k{i:06}").into_bytes(),
                format!("v{i}").into_bytes(),
                time,
                1,
            )
        })
        .collect();
    for (k, v, t, d) in &updates {
        model.write(k, v, *t, *d);
    }
    let refs = updates.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
    store.write_bytes(id, refs).unwrap();
}

/// The seal records in the WAL of the store in `dir`: (stream number, upper).
fn seal_records(dir: &Path) -> Vec<(u32, u64)> {
    let mut seals = Vec::new();
    ddpersist::wal::scan(&dir.join("wal"), WalRecovery::Strict, &mut |_, payload| {
        if let Record::Seal(s) = decode(payload, "record")? {
            seals.push((s.stream_no, s.upper));
        }
        Ok(())
    })
    .unwrap();
    seals
}

#[test]
fn a_logged_seal_whose_batch_was_never_written_is_recovered_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let (store, blob) = open_faulty(dir.path(), inline());
        store.create_stream("s", StreamOptions::default()).unwrap();
        write(&store, &mut model, "s", 0, 50, 3);
        write(&store, &mut model, "s", 50, 50, 7);
        // The record is logged and synced; writing the batch fails.
        blob.fail_after(0);
        store.seal_logged("s", 5).unwrap();
        assert!(store.background_error().unwrap().contains("logged seal"));
        // The seal is durable: below it writes are refused, readers see every update, the batch is missing.
        blob.heal();
        let below = store.write_bytes("s", [(&b"late"[..], &b"v"[..], 4, 1)]);
        assert!(matches!(below, Err(Error::BadInput { .. })), "{below:?}");
        assert_eq!(store.upper("s").unwrap(), 0);
        assert!(store.sealed("s").unwrap().batches.is_empty());
        assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
        assert_eq!(seal_records(dir.path()), vec![(0, 5)]);
        // A crash now: nothing more is written.
    }
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 5, "the open completed the logged seal");
    let sealed = store.sealed("s").unwrap();
    assert_eq!(sealed.batches.len(), 1);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    assert_eq!(
        store.unsealed_len("s").unwrap(),
        50,
        "the updates at time 7 stay unsealed"
    );
    let below = store.write_bytes("s", [(&b"late"[..], &b"v"[..], 4, 1)]);
    assert!(matches!(below, Err(Error::BadInput { .. })), "{below:?}");
}

#[test]
fn a_failed_flush_is_retried_by_complete_seals() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let (store, blob) = open_faulty(dir.path(), inline());
    store.create_stream("s", StreamOptions::default()).unwrap();
    write(&store, &mut model, "s", 0, 20, 1);
    blob.fail_after(0);
    store.seal_logged("s", 2).unwrap();
    assert!(store.complete_seals("s").is_err(), "the blob still fails");
    blob.heal();
    store.complete_seals("s").unwrap();
    assert_eq!(store.upper("s").unwrap(), 2);
    assert_eq!(store.unsealed_len("s").unwrap(), 0);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    // Committed: the seal record's segment may go (nothing else holds it).
    write(&store, &mut model, "s", 20, 5, 9);
    drop(store);
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert_eq!(store.upper("s").unwrap(), 2);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_spill_past_the_seal_record_keeps_the_logged_upper() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let options = Options {
        memtable_budget_bytes: 4 << 10,
        ..inline()
    };
    {
        let (store, blob) = open_faulty(dir.path(), options.clone());
        store.create_stream("s", StreamOptions::default()).unwrap();
        write(&store, &mut model, "s", 0, 30, 1);
        blob.fail_after(0);
        store.seal_logged("s", 2).unwrap();
        blob.heal();
        // Past the budget: the memtable (the logged seal's updates too) spills to runs, and the manifest
        // says replay may skip every record before the spill, the seal record among them.
        for round in 0..10 {
            write(&store, &mut model, "s", 100 + 30 * round, 30, 5);
        }
        assert!(!store.manifest().streams[0].spills.is_empty(), "a spill ran");
        assert_eq!(store.upper("s").unwrap(), 0);
    }
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(
        store.upper("s").unwrap(),
        2,
        "the seal record is read past the spill"
    );
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
    let sealed = store.sealed("s").unwrap();
    let in_batches: u64 = sealed.batches.iter().map(|b| b.update_count()).sum();
    assert_eq!(
        in_batches, 30,
        "the batch holds exactly the updates below the logged upper"
    );
    let spilled: u64 = store.manifest().streams[0]
        .spills
        .iter()
        .map(|m| m.update_count)
        .sum();
    assert_eq!(
        store.unsealed_len("s").unwrap() as u64 + spilled + in_batches,
        330
    );
}

#[test]
fn logged_seals_with_a_flush_thread_end_in_the_same_batches_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    let options = Options {
        wal_segment_bytes: 16 << 10,
        ..Options::default()
    };
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..40u64 {
            write(&store, &mut model, "s", t * 50, 50, t);
            store.seal_logged("s", t + 1).unwrap();
            assert!(store.upper("s").unwrap() <= t + 1);
            // Readers see everything written, flushed or not.
            if t % 10 == 9 {
                assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
            }
        }
        let refused = store.seal_logged("s", 40);
        assert!(matches!(refused, Err(Error::BadInput { .. })), "{refused:?}");
        store.complete_seals("s").unwrap();
        assert_eq!(store.upper("s").unwrap(), 40);
        assert_eq!(store.unsealed_len("s").unwrap(), 0);
        assert_eq!(store.background_error(), None);
        store.compact("s").unwrap();
        assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
        // Every seal record is released with its segment once its batch committed: only the active
        // segment remains (beside at most two released ones kept for reuse, `.free`).
        let segments = wal_segments(dir.path());
        assert_eq!(wal_segments(dir.path()).len(), 1, "{segments:?}");
        assert!(segments.len() <= 3, "{segments:?}");
    }
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.upper("s").unwrap(), 40);
    assert_eq!(store.recovery_report().updates_replayed, 0);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn dropping_the_store_flushes_the_logged_seals() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = Model::default();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        for t in 0..5u64 {
            write(&store, &mut model, "s", t * 10, 10, t);
            store.seal_logged("s", t + 1).unwrap();
        }
    }
    // The flush thread wrote them before the store closed: the open has nothing to complete.
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert_eq!(store.manifest().streams[0].upper, 5);
    assert_eq!(store.snapshot("s").unwrap().to_vec().unwrap(), model.expected());
}

#[test]
fn a_seal_that_cannot_be_logged_is_an_ordinary_seal() {
    // A stream that is not durable: the seal is its durability point.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_stream("n", StreamOptions { durable: false })
        .unwrap();
    let mut model = Model::default();
    write(&store, &mut model, "n", 0, 10, 0);
    store.seal_logged("n", 1).unwrap();
    assert_eq!(store.upper("n").unwrap(), 1, "sealed before it returned");
    assert!(seal_records(dir.path()).is_empty());
    drop(store);

    // A WAL whose last segment is of version 4 (reopened): its readers know no seal record.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    for path in wal_segments(dir.path()) {
        std::fs::remove_file(path).unwrap();
    }
    let segment = wal_segment_bytes(4, 0, &[]);
    std::fs::write(dir.path().join("wal").join(format!("{:020}.wal", 0)), segment).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut model = Model::default();
    write(&store, &mut model, "s", 0, 10, 0);
    store.seal_logged("s", 1).unwrap();
    assert_eq!(store.upper("s").unwrap(), 1, "sealed before it returned");
    drop(store);
    let mut tags = Vec::new();
    ddpersist::wal::scan(&dir.path().join("wal"), WalRecovery::Strict, &mut |_, p| {
        tags.push(p[0]);
        Ok(())
    })
    .unwrap();
    assert!(!tags.contains(&TAG_SEAL), "{tags:?}");
}

#[test]
fn unknown_streams_and_seals_that_do_not_advance_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), inline()).unwrap();
    assert!(matches!(
        store.seal_logged("nope", 1),
        Err(Error::UnknownStream { .. })
    ));
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.seal_logged("s", 3).unwrap();
    for upper in [0, 3] {
        let r = store.seal_logged("s", upper);
        assert!(matches!(r, Err(Error::BadInput { .. })), "{upper}: {r:?}");
    }
    assert!(matches!(
        store.complete_seals("nope"),
        Err(Error::UnknownStream { .. })
    ));
}

/// Where the updates of one `(key, val, time)` below the upper could sum outside `i64` (spilled runs and
/// the memtable), a logged seal could never complete (the compensating write would be refused below its
/// upper): it seals synchronously instead, which fails and changes nothing, and the compensating write
/// lets it through. The store reopens.
#[test]
fn a_logged_seal_that_could_overflow_seals_synchronously() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        memtable_budget_bytes: 1,
        ..inline()
    };
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        // Each write spills (the budget is 1 byte): the two meet only in the seal.
        store.write("s", &[(1u64, 0u64, 0, i64::MAX)]).unwrap();
        store.write("s", &[(1u64, 0u64, 0, 1)]).unwrap();
        let r = store.seal_logged("s", 1);
        assert!(matches!(r, Err(Error::DiffOverflow { .. })), "{r:?}");
        assert_eq!(store.upper("s").unwrap(), 0);
        assert!(seal_records(dir.path()).is_empty(), "nothing was logged");
        store.write("s", &[(1u64, 0u64, 0, -1)]).unwrap();
        store.seal_logged("s", 1).unwrap();
        assert_eq!(store.upper("s").unwrap(), 1);
    }
    let store = Store::open_with(dir.path(), options).unwrap();
    assert_eq!(store.upper("s").unwrap(), 1);
    let got = store.snapshot("s").unwrap().decode::<u64, u64>().unwrap();
    assert_eq!(got, vec![(1, 0, 0, i64::MAX)]);
}

/// Once `seal_logged(s, 10)` returns, the stream's upper is 10 for every call, whether or not its batch
/// was written: a seal below it is refused, an append must start at it, deterministically.
#[test]
fn seals_and_appends_below_a_logged_upper_are_refused_whatever_the_flush_did() {
    let dir = tempfile::tempdir().unwrap();
    let (store, blob) = open_faulty(dir.path(), inline());
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, 0u64, 3, 1)]).unwrap();
    blob.fail_after(0);
    store.seal_logged("s", 10).unwrap();
    blob.heal();
    assert_eq!(store.upper("s").unwrap(), 0, "the batch is not written");
    let appended = store.append("s", &[(2u64, 0u64, 5, 1)], 0, 6);
    assert!(
        matches!(appended, Err(Error::UpperMismatch { current: 10, .. })),
        "{appended:?}"
    );
    let below = store.seal("s", 8);
    assert!(matches!(below, Err(Error::BadInput { .. })), "{below:?}");
    store.append("s", &[(2u64, 0u64, 12, 1)], 10, 20).unwrap();
    assert_eq!(store.upper("s").unwrap(), 20);
    let got = store.snapshot("s").unwrap().decode::<u64, u64>().unwrap();
    assert_eq!(got, vec![(1, 0, 3, 1), (2, 0, 12, 1)]);

    // With the flush thread racing the caller: the same answers every time.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    for t in (0..400u64).step_by(2) {
        store.write("s", &[(t, 0u64, t, 1)]).unwrap();
        store.seal_logged("s", t + 2).unwrap();
        for upper in [t + 1, t + 2] {
            let r = store.seal("s", upper);
            assert!(matches!(r, Err(Error::BadInput { .. })), "{upper}: {r:?}");
        }
        let r = store.append("s", &[(t, 1u64, t, 1)], t, t + 1);
        assert!(matches!(r, Err(Error::UpperMismatch { .. })), "{r:?}");
    }
}

/// The first file write after `armed` waits for `released`, then fails: a spill held in flight, then
/// failed (through a [`common::HookBlob`]).
#[derive(Default)]
struct Gate {
    /// (armed, entered, released)
    state: std::sync::Mutex<(bool, bool, bool)>,
    cv: std::sync::Condvar,
}

impl Gate {
    fn enter(&self) -> ddpersist::Result<()> {
        let mut s = self.state.lock().unwrap();
        if !s.0 {
            return Ok(());
        }
        *s = (false, true, s.2);
        self.cv.notify_all();
        while !s.2 {
            s = self.cv.wait(s).unwrap();
        }
        Err(Error::Io {
            context: "a held spill".into(),
            source: std::io::Error::other("injected"),
        })
    }
}

/// A write made while a spill is in flight is checked against the memtable only; when the spill fails,
/// its buckets come back beside that write unchecked, and one `(key, val, time)` may sum outside `i64`
/// within the memtable. A logged seal then seals synchronously (it fails, changing nothing), and the
/// compensating write lets it through — never a logged seal that could not complete.
#[test]
fn a_failed_spill_leaves_no_logged_seal_that_cannot_complete() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Arc::new(Gate::default());
    let hooked = gate.clone();
    let blob = Arc::new(common::HookBlob::new(move |_| hooked.enter()));
    let log = FileLog::open(dir.path().join("wal"), 64 << 20, WalRecovery::Strict).unwrap();
    let options = Options {
        memtable_budget_bytes: 1,
        ..inline()
    };
    let store = Store::open_on(blob, Arc::new(log), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    gate.state.lock().unwrap().0 = true;
    let first = store.clone();
    let spilling = std::thread::spawn(move || first.write("s", &[(1u64, 0u64, 0, i64::MAX)]));
    {
        let mut s = gate.state.lock().unwrap();
        while !s.1 {
            s = gate.cv.wait(s).unwrap();
        }
    }
    // The spill of the first write is in flight; the second is checked against the memtable only.
    let second = store.clone();
    let meanwhile = std::thread::spawn(move || second.write("s", &[(1u64, 0u64, 0, 1)]));
    while store.unsealed_len("s").unwrap() == 0 {
        std::thread::yield_now();
    }
    {
        let mut s = gate.state.lock().unwrap();
        s.2 = true;
        gate.cv.notify_all();
    }
    // Both writes returned Ok (a failed spill is a background error), and both are in the memtable.
    spilling.join().unwrap().unwrap();
    meanwhile.join().unwrap().unwrap();
    assert_eq!(store.unsealed_len("s").unwrap(), 2);
    let r = store.seal_logged("s", 1);
    assert!(matches!(r, Err(Error::DiffOverflow { .. })), "{r:?}");
    assert!(seal_records(dir.path()).is_empty(), "nothing was logged");
    store.write("s", &[(1u64, 0u64, 0, -1)]).unwrap();
    store.seal_logged("s", 1).unwrap();
    assert_eq!(store.upper("s").unwrap(), 1);
}

/// A seal logged on an operator's stream through the `Store` API whose batch did not commit (its flush
/// failed) is completed when a persisted operator opens the stream: the operator starts at the logged
/// upper, serves what was sealed there, and takes new input beyond it. (Before, it read the committed
/// upper, 0, below the seal, and the input it was fed from there was refused.)
#[test]
fn an_operator_completes_the_logged_seals_of_its_stream_before_it_starts() {
    use ddpersist::operators::{worker_stream_id, ArrangeTyped};
    use differential_dataflow::input::Input as _;
    use timely::dataflow::operators::{Inspect, Probe};

    let dir = tempfile::tempdir().unwrap();
    let (store, blob) = open_faulty(dir.path(), inline());
    let stream = worker_stream_id("x", 0, 1);
    store.create_stream(&stream, StreamOptions::default()).unwrap();
    store
        .write(&stream, &[(1u64, 10u64, 0, 1), (2u64, 20u64, 3, 1)])
        .unwrap();
    blob.fail_after(0);
    store.seal_logged(&stream, 5).unwrap();
    blob.heal();
    assert_eq!(
        store.upper(&stream).unwrap(),
        0,
        "the batch of the logged seal is not committed"
    );

    let out = Arc::new(std::sync::Mutex::new(Vec::new()));
    let o = out.clone();
    let (own_upper, resume) = timely::execute_directly(move |worker| {
        let probe = timely::dataflow::ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
            // The stream was created durable (a logged seal needs it): so is the operator.
            let options = ddpersist::operators::PersistOptions {
                durable: true,
                ..Default::default()
            };
            let arranged = pairs.arrange_by_key_persisted_with(&store, "x", options).unwrap();
            let handle = arranged.trace.handle().cloned().unwrap();
            arranged
                .as_collection(|k, v| (*k, *v))
                .inner
                .inspect(move |u| o.lock().unwrap().push(*u))
                .probe_with(&probe);
            (input, handle)
        });
        let resume = handle.resume_at();
        input.advance_to(resume);
        input.insert((3, 30));
        input.advance_to(resume + 1);
        input.flush();
        worker.step_while(|| probe.less_than(&(resume + 1)) && handle.error().is_none());
        assert_eq!(handle.error(), None);
        (handle.own_upper(), resume)
    });
    assert_eq!((own_upper, resume), (5, 5));
    let mut rows: Vec<((u64, u64), isize)> =
        out.lock().unwrap().iter().map(|(row, _, d)| (*row, *d)).collect();
    rows.sort();
    assert_eq!(rows, vec![((1, 10), 1), ((2, 20), 1), ((3, 30), 1)]);
}
