//! `upsert_persisted_as::<isize>` stands where DD's `arrange_from_upsert` stood: the same downstream code
//! (a join with a collection of DD's default `isize` diffs, then a count) runs over either, and gives the
//! same answers at every time, with two workers and across a restart (before, `upsert_persisted` gave
//! only `i64` diffs, so joining it with an `isize` collection did not compile). Upserts are at most one
//! per key and time: DD breaks ties by the greatest value, ddpersist by arrival (DESIGN.md §5).

use ddpersist::operators::UpsertPersisted;
use ddpersist::Store;
use differential_dataflow::input::Input as _;
use differential_dataflow::operators::arrange::upsert::arrange_from_upsert;
use differential_dataflow::operators::CountTotal;
use differential_dataflow::trace::implementations::{ValBuilder, ValSpine};
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::Input;
use timely::dataflow::ProbeHandle;

/// `(key, value or None, time)`.
type Rec = (u64, Option<u64>, u64);
/// Every `(data, time, diff)` one side produced.
type Log<D> = Arc<Mutex<Vec<(D, u64, isize)>>>;

/// At most one upsert per key and time (module docs), for keys 0..40 over times 0..upper.
fn upserts(upper: u64) -> Vec<Rec> {
    let mut out = Vec::new();
    for t in 0..upper {
        for k in 0..40u64 {
            let x = k.wrapping_mul(2654435761).wrapping_add(t * 97) % 11;
            match x {
                0..=5 => out.push((k, Some((k + t * 3) % 7), t)),
                6 | 7 => out.push((k, None, t)),
                _ => {}
            }
        }
    }
    out
}

/// A collection of `D` at `u64` times with DD's default diffs.
type Coll<'scope, D> = VecCollection<'scope, u64, D, isize>;
/// `(key, (val, side val))`.
type Joined = (u64, (u64, u64));

/// What both sides do downstream: join with `(key, key % 5)` for even keys (`isize`, DD's default), count
/// per joined value.
fn downstream<'scope>(
    upserted: Coll<'scope, (u64, u64)>,
    side: Coll<'scope, (u64, u64)>,
) -> (Coll<'scope, Joined>, Coll<'scope, (u64, isize)>) {
    let joined = upserted.join(side);
    let counts = joined.clone().map(|(_k, (v, s))| v * 10 + s).count_total();
    (joined, counts)
}

/// One run of two workers: DD's `arrange_from_upsert` fed every upsert below `upper` (the reference, in
/// memory) and `upsert_persisted_as::<isize>` over the store in `dir`, fed those from its `resume_at`.
/// Returns the logs of (DD's joined, ours joined, DD's counts, our counts).
#[allow(clippy::type_complexity)]
fn run(
    dir: &Path,
    upper: u64,
) -> (
    Log<(u64, (u64, u64))>,
    Log<(u64, (u64, u64))>,
    Log<(u64, isize)>,
    Log<(u64, isize)>,
) {
    let store = Store::open(dir).unwrap();
    let logs: (Log<_>, Log<_>, Log<_>, Log<_>) = Default::default();
    let l = logs.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let l = l.clone();
        let (mut dd_in, mut our_in, mut side_in, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (dd_in, dd_ups) = scope.new_input::<Vec<Rec>>();
            let (our_in, our_ups) = scope.new_input::<Vec<Rec>>();
            let (side_in, side) = scope.new_collection::<(u64, u64), isize>();
            let dd = arrange_from_upsert::<
                ValBuilder<u64, u64, u64, isize>,
                ValSpine<u64, u64, u64, isize>,
                u64,
                u64,
            >(dd_ups, "dd upsert")
            .as_collection(|k, v| (*k, *v));
            let (ours, handle) = our_ups.upsert_persisted_as::<isize>(&store, "u").unwrap();
            for (upserted, (joined_log, counts_log)) in [
                (dd, (l.0.clone(), l.2.clone())),
                (ours, (l.1.clone(), l.3.clone())),
            ] {
                let (joined, counts) = downstream(upserted, side.clone());
                joined
                    .inspect(move |(d, t, r)| joined_log.lock().unwrap().push((*d, *t, *r)))
                    .probe_with(&probe);
                counts
                    .inspect(move |(d, t, r)| counts_log.lock().unwrap().push((*d, *t, *r)))
                    .probe_with(&probe);
            }
            (dd_in, our_in, side_in, handle)
        });
        let resume = handle.resume_at();
        if worker.index() == 0 {
            for k in (0..40u64).step_by(2) {
                side_in.insert((k, k % 5));
            }
            for r in upserts(upper) {
                dd_in.send(r);
                if r.2 >= resume {
                    our_in.send(r);
                }
            }
        }
        for input in [&mut dd_in, &mut our_in] {
            input.advance_to(upper);
        }
        side_in.advance_to(upper);
        side_in.flush();
        while probe.less_than(&upper) {
            worker.step();
        }
        assert!(handle.error().is_none());
    })
    .unwrap();
    logs
}

/// The accumulation of `log` at time `at` (zero sums dropped).
fn at<D: Ord + Clone>(log: &Log<D>, at: u64) -> BTreeMap<D, isize> {
    let mut acc = BTreeMap::new();
    for (d, _t, r) in log.lock().unwrap().iter().filter(|u| u.1 <= at) {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

#[test]
fn isize_upserts_join_and_count_like_dds_arrange_from_upsert_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    // The first run compares every time; the second, after the restart, the times it adds (our side
    // re-emits the persisted state as of its since, DD's recomputes every time).
    for (from, upper) in [(0, 6), (6, 12)] {
        let (dd_joined, our_joined, dd_counts, our_counts) = run(dir.path(), upper);
        for t in from..upper {
            let want = at(&dd_joined, t);
            assert!(!want.is_empty(), "the workload joins something at time {t}");
            assert_eq!(at(&our_joined, t), want, "joined, time {t}");
            assert_eq!(at(&our_counts, t), at(&dd_counts, t), "counts, time {t}");
        }
    }
}
