//! Fail-stop of a persisted arrangement (DESIGN.md §5): a block of a batch file damaged between runs is
//! met after the restart (the trace opens without reading blocks); the error reaches the handle naming
//! the file and the block's offset, the arrangement's frontier stops at the damaged span's lower, every
//! output at a complete time is right, and nothing panics. An import of the trace into another dataflow,
//! made before the damaged block is checked, stops at the same span.

use crate::common;

use common::fail_stop::{
    assert_complete_outputs_right, damage, damage_index, first_run, options, round, ROUNDS,
};
use ddpersist::operators::{ArrangePersisted, ArrangeTyped, ImportChecked};
use ddpersist::{Codec, Error, Store};
use differential_dataflow::input::Input;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

/// What the restarted dataflow output: `((key, val), time, diff)`.
type Output = Arc<Mutex<Vec<((String, u64), u64, i64)>>>;

/// The round whose batch is damaged.
const BAD: u64 = 2;

#[test]
fn a_damaged_block_stops_the_arrangement_at_its_span() {
    restart_over_damage(damage);
}

/// The same with a damaged index partition (format version 3 checks a partition on its first touch, not
/// at open): the cursor that meets it stops serving the batch, as for a damaged block.
#[test]
fn a_damaged_index_partition_stops_the_arrangement_at_its_span() {
    restart_over_damage(damage_index);
}

/// Runs the first run, damages round `BAD`'s batch with `damage`, restarts the arrangement and checks the
/// error (the file and offset `damage` returned), the held frontier and every output at complete times.
fn restart_over_damage(damage: fn(&std::path::Path, u64) -> (String, u64)) {
    let tmp = tempfile::tempdir().unwrap();
    first_run(tmp.path(), false);
    let (bad_file, bad_offset) = damage(tmp.path(), BAD);

    let store = Store::open_with(tmp.path(), options()).unwrap();
    let out: Output = Default::default();
    let o = out.clone();
    let (error, stopped, frontier) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            let (arranged, handle) = a.arrange_persisted(&store, "a").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inspect(move |(d, t, r)| o.lock().unwrap().push((d.clone(), *t, *r)))
                .probe_with(&probe);
            (input, handle)
        });
        input.advance_to(ROUNDS);
        input.update(("late".to_string(), 1), 1);
        input.advance_to(ROUNDS + 1);
        input.flush();
        for _ in 0..200 {
            worker.step();
        }
        let frontier = probe.with_frontier(|f| f.first().copied());
        let stopped = handle.errors().is_stopped() && handle.is_stopped();
        let error = handle.errors().take();
        drop(input);
        for _ in 0..20 {
            worker.step();
        }
        assert!(!probe.done(), "a stopped arrangement holds its frontier for good");
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        (error, stopped, frontier)
    });
    assert!(stopped, "the damaged block must stop the arrangement");
    match error {
        Some(Error::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(&bad_file), "{file} is not {bad_file}");
            assert_eq!(offset, bad_offset);
        }
        other => panic!("expected the damaged block's error, got {other:?}"),
    }
    // The spans below the damaged one were checked: their times complete; the damaged one's never does.
    assert_eq!(frontier, Some(BAD));
    assert_complete_outputs_right(&out.lock().unwrap(), frontier.unwrap());
}

/// The restarted arrangement's trace imported into a second dataflow before any block is checked (a
/// byte-level `import_checked`, or the typed `trace.import`): the import replays every restored span and
/// follows the trace's upper, but its times complete only over checked blocks, so it too stops at the
/// damaged span's lower, with every output at a complete time right. (DD's plain `import` would pass
/// the damaged span's times.)
#[test]
fn an_import_made_before_the_check_stops_at_the_damaged_span() {
    for (typed, frontier_import) in [(false, false), (true, false), (true, true)] {
        let tmp = tempfile::tempdir().unwrap();
        first_run(tmp.path(), typed);
        let (bad_file, _) = damage(tmp.path(), BAD);
        let store = Store::open_with(tmp.path(), options()).unwrap();
        let out: Output = Default::default();
        let o = out.clone();
        let (error, frontier, arranged_frontier) = timely::execute_directly(move |worker| {
            let probe = ProbeHandle::new();
            let imported = ProbeHandle::new();
            let (mut input, errors) = if typed {
                let (input, mut trace, errors) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, a) = scope.new_collection::<(String, u64), i64>();
                    let arranged = a.arrange_by_key_persisted(&store, "a").unwrap();
                    let errors = arranged.errors().clone();
                    arranged.stream.probe_with(&probe);
                    (input, arranged.trace, errors)
                });
                worker.dataflow::<u64, _, _>(|scope| {
                    let inspect = move |(d, t, r): &((String, u64), u64, i64)| {
                        o.lock().unwrap().push((d.clone(), *t, *r))
                    };
                    if frontier_import {
                        // DD's import_frontier, typed: the same hold.
                        let (imported_arrangement, _button) = trace.import_frontier(scope, "Frontier");
                        imported_arrangement
                            .as_collection(|k: &String, v: &u64| (k.clone(), *v))
                            .inspect(inspect)
                            .probe_with(&imported);
                        return;
                    }
                    trace
                        .import(scope)
                        .as_collection(|k: &String, v: &u64| (k.clone(), *v))
                        .inspect(inspect)
                        .probe_with(&imported);
                });
                (input, errors)
            } else {
                let (input, mut trace, errors) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, a) = scope.new_collection::<(String, u64), i64>();
                    let (arranged, handle) = a.arrange_persisted(&store, "a").unwrap();
                    arranged.stream.probe_with(&probe);
                    (input, arranged.trace, handle.errors().clone())
                });
                worker.dataflow::<u64, _, _>(|scope| {
                    trace
                        .import_checked(scope)
                        .as_collection(|k: &[u8], v: &[u8]| {
                            (String::decode(k).unwrap(), u64::decode(v).unwrap())
                        })
                        .inspect(move |(d, t, r)| o.lock().unwrap().push((d.clone(), *t, *r)))
                        .probe_with(&imported);
                });
                (input, errors)
            };
            input.advance_to(ROUNDS);
            input.flush();
            for _ in 0..200 {
                worker.step();
            }
            let frontier = imported.with_frontier(|f| f.first().copied());
            let arranged_frontier = probe.with_frontier(|f| f.first().copied());
            let error = errors.take();
            drop(input);
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            (error, frontier, arranged_frontier)
        });
        match error {
            Some(Error::Corrupt { file, .. }) => {
                assert!(file.ends_with(&bad_file), "{file} is not {bad_file}")
            }
            other => {
                panic!("typed {typed} ({frontier_import}): expected the damaged block's error, got {other:?}")
            }
        }
        assert_eq!(arranged_frontier, Some(BAD), "typed {typed}: the arrangement");
        assert_eq!(
            frontier,
            Some(BAD),
            "typed {typed} ({frontier_import}): the import"
        );
        assert_complete_outputs_right(&out.lock().unwrap(), BAD);
    }
}

/// The same damage, read through lookups: an error naming the file, never a panic or a wrong value.
#[test]
fn a_damaged_block_is_an_error_for_lookups() {
    lookups_over_damage(damage);
}

/// A damaged index partition, read through lookups: as a damaged block.
#[test]
fn a_damaged_index_partition_is_an_error_for_lookups() {
    lookups_over_damage(damage_index);
}

fn lookups_over_damage(damage: fn(&std::path::Path, u64) -> (String, u64)) {
    let tmp = tempfile::tempdir().unwrap();
    first_run(tmp.path(), false);
    let (bad_file, _) = damage(tmp.path(), BAD);
    let store = Store::open_with(tmp.path(), options()).unwrap();
    let stream = ddpersist::operators::worker_stream_id("a", 0, 1);
    let mut errors = 0;
    for (k, v) in round(BAD) {
        match store.get_bytes(&stream, &k.to_bytes(), ROUNDS) {
            Ok(vals) => assert_eq!(vals, vec![(v.to_bytes(), 1)]),
            Err(Error::Corrupt { file, .. }) => {
                assert!(file.ends_with(&bad_file));
                errors += 1;
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(errors > 0, "no lookup met the damaged block");
}
