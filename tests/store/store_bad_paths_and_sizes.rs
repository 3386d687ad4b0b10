//! Adversarial round 12, topic 4: bad inputs give clear errors, never panics or silent wrong data.

use crate::common;

use common::compare::{rec, Log};
use ddpersist::operators::{ArrangeTyped, PersistOptions};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use timely::dataflow::ProbeHandle;

/// A store path that is a regular file, or under one: `Store::open` fails with an error.
#[test]
fn a_store_path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a store").unwrap();
    let err = Store::open(&file).err().expect("opening a file as a store");
    eprintln!("file: {err}");
    let err = Store::open(file.join("sub"))
        .err()
        .expect("opening a path under a file");
    eprintln!("under a file: {err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"not a store",
        "the file is untouched"
    );
}

/// A key past the store's limit (16 MiB) reaching a persisted arrangement: the operator reports an error
/// in its handle and holds its frontier (no panic, no time passed without the key), durable or not.
#[test]
fn a_key_past_the_limit_in_an_arrangement_is_reported_not_a_panic() {
    for durable in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let log: Log<String> = Default::default();
        let l = log.clone();
        let (error, passed) = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(Vec<u8>, u64), isize>();
                let o = PersistOptions {
                    durable,
                    ..Default::default()
                };
                let p = c.arrange_by_key_persisted_with(&store, "big", o).unwrap();
                rec(
                    p.clone().as_collection(|k, v| format!("{} {v}", k.len())),
                    &l,
                    &probe,
                );
                (input, p.handle().unwrap().clone())
            });
            input.update((vec![1u8; 10], 1), 1);
            input.update((vec![7u8; (16 << 20) + 1], 2), 1);
            input.advance_to(1);
            input.flush();
            let start = std::time::Instant::now();
            while probe.less_than(&1) && handle.error().is_none() && start.elapsed().as_secs() < 20 {
                worker.step();
            }
            for _ in 0..50 {
                worker.step();
            }
            let passed = !probe.less_than(&1);
            let error = handle.error();
            common::drop_dataflows(worker);
            (error, passed)
        });
        eprintln!("durable {durable}: error {error:?}, passed {passed}");
        assert!(
            error.is_some(),
            "durable {durable}: no error for a key past the limit"
        );
        if passed {
            // If the time completed, the answer must hold both keys.
            let rows = common::compare::at(&log, &0);
            assert_eq!(
                rows.len(),
                2,
                "durable {durable}: time 0 passed without the big key: {rows:?}"
            );
        }
    }
}

/// `i8` diffs that sum past `i8` in the store (each written diff fits): after a restart with the two
/// times merged by the since, the typed read cannot narrow the sum. Documented: an `Error::Decode` in
/// the handle and a held frontier; never a panic, never a wrapped count.
#[test]
fn narrow_diffs_summed_past_their_range_are_an_error_not_a_wrap() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        compaction_threads: 1,
        ..Options::default()
    };
    {
        let store = Store::open_with(dir.path(), options.clone()).unwrap();
        let s = store.clone();
        timely::execute_directly(move |worker| {
            let store = s;
            let probe = ProbeHandle::new();
            let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u64, u64), i8>();
                let p = c.arrange_by_key_persisted(&store, "narrow").unwrap();
                timely::dataflow::operators::Probe::probe_with(p.stream.clone(), &probe);
                (input, p.trace.clone())
            });
            for t in 0..4u64 {
                input.update((1, 1), 100);
                input.advance_to(t + 1);
                input.flush();
                worker.step_while(|| probe.less_than(&(t + 1)));
                use differential_dataflow::trace::TraceReader;
                let f = timely::progress::Antichain::from_elem(t + 1);
                trace.set_logical_compaction(f.borrow());
                trace.set_physical_compaction(f.borrow());
            }
            common::drop_dataflows(worker);
        });
        store.compact("narrow/w0of1").ok();
        eprintln!(
            "since {} upper {}",
            store.since("narrow/w0of1").unwrap(),
            store.upper("narrow/w0of1").unwrap()
        );
    }
    let store = Store::open_with(dir.path(), options).unwrap();
    let log: Log<String> = Default::default();
    let l = log.clone();
    let error = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u64, u64), i8>();
            let p = c.arrange_by_key_persisted(&store, "narrow").unwrap();
            rec(p.clone().as_collection(|k, v| format!("{k} {v}")), &l, &probe);
            (input, p.handle().unwrap().clone())
        });
        let resume = handle.resume_at();
        input.advance_to(resume);
        input.flush();
        for _ in 0..200 {
            worker.step();
        }
        let e = handle.error();
        common::drop_dataflows(worker);
        e
    });
    let rows = log.lock().unwrap().clone();
    eprintln!("error {error:?}, rows {rows:?}");
    // Each record the operator emitted must carry a diff that was written or summed exactly.
    let total: i64 = rows.iter().map(|r| r.2).sum();
    assert!(
        total == 400 || error.is_some(),
        "sum of emitted diffs {total} (want 400) with no error: {rows:?}"
    );
    // The error names the key's bytes once (round 12: they were escaped twice, `\\x00`).
    if let Some(error) = error {
        assert!(
            error.contains("the key encoded as [00, 00, 00, 00, 00, 00, 00, 01]")
                && error.contains("outside the diff type i8"),
            "{error}"
        );
    }
}
