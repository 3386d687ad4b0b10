//! Adversarial round 9: one persisted arrangement restarted at another timestamp type that maps times onto
//! the store's the same way (`u32` and `u64` read each other's streams): written at `u32` times, continued
//! at `u64` times up to `u32::MAX - 1`, read back at `u32`, then continued at `u64` past `u32`'s range:
//! every run serves exactly the history and its own input.

use ddpersist::operators::{ArrangeTyped, PersistTime};
use ddpersist::{Error, Store};

use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Out = Arc<Mutex<Vec<((u32, u32), u64, i64)>>>;

/// One run at times `T`: feeds `(k, k)` at each of `times` (after the resume point), then stops.
/// Returns the build's error, if any, and the resume point.
fn run<T>(dir: &Path, times: Vec<u64>, out: &Out) -> Result<u64, Error>
where
    T: PersistTime
        + differential_dataflow::lattice::Lattice
        + timely::order::TotalOrder
        + timely::ExchangeData
        + Ord
        + std::hash::Hash
        + std::fmt::Debug,
{
    let store = Store::open(dir).unwrap();
    let out = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let o = out.clone();
        let built = worker.dataflow::<T, _, _>(|scope| {
            let (input, c) = scope.new_collection::<(u32, u32), isize>();
            let p = c.arrange_by_key_persisted(&store, "x")?;
            let handle = p.handle().unwrap().clone();
            p.as_collection(|k, v| (*k, *v))
                .inner
                .inspect(move |(d, t, r)| o.lock().unwrap().push((*d, (*t).to_u64(), *r as i64)))
                .probe_with(&probe);
            Ok::<_, Error>((input, handle))
        });
        let (mut input, handle) = match built {
            Ok(b) => b,
            Err(e) => {
                for df in worker.installed_dataflows() {
                    worker.drop_dataflow(df);
                }
                return Err(e);
            }
        };
        let from = handle.resume_at();
        let from_t = T::from_u64(from).expect("resume point fits the time type");
        input.advance_to(from_t);
        input.flush();
        for (i, t) in times.iter().copied().filter(|t| *t >= from).enumerate() {
            let tt = T::from_u64(t).unwrap();
            input.advance_to(tt);
            if worker.index() == i % 2 {
                input.update((i as u32, t as u32), 1);
            }
            let next = T::from_u64(t + 1).unwrap();
            input.advance_to(next);
            input.flush();
            let start = Instant::now();
            while probe.less_than(&next) {
                assert!(start.elapsed() < Duration::from_secs(30), "hang at {t}");
                worker.step();
            }
        }
        let start = Instant::now();
        while probe.less_than(&from_t) {
            assert!(start.elapsed() < Duration::from_secs(30), "hang replaying");
            worker.step();
        }
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        drop(input);
        assert_eq!(handle.error(), None);
        Ok(from)
    })
    .unwrap()
    .join()
    .into_iter()
    .map(|r| r.unwrap())
    .collect::<Vec<_>>()
    .into_iter()
    .next()
    .unwrap()
}

fn acc(out: &Out) -> BTreeMap<(u32, u32), i64> {
    let mut acc = BTreeMap::new();
    for (d, _, r) in out.lock().unwrap().iter() {
        *acc.entry(*d).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

#[test]
fn u32_then_u64_then_u32_then_u64_past_u32() {
    let dir = tempfile::tempdir().unwrap();
    let out: Out = Arc::default();
    assert_eq!(run::<u32>(dir.path(), vec![0, 1, 2, 7], &out).unwrap(), 0);
    assert_eq!(acc(&out).len(), 4);
    // At u64 times: the u32 history, then times up to u32::MAX - 1 (still u32 times).
    let out: Out = Arc::default();
    let big = u64::from(u32::MAX);
    assert_eq!(run::<u64>(dir.path(), vec![9, big - 2], &out).unwrap(), 8);
    assert_eq!(acc(&out).len(), 6, "u64 run: {:?}", acc(&out));
    // Back at u32: the history fits.
    let out: Out = Arc::default();
    let r = run::<u32>(dir.path(), vec![], &out);
    assert_eq!(r.unwrap(), big - 1);
    assert_eq!(acc(&out).len(), 6, "u32 rerun: {:?}", acc(&out));
    // At u64 again, past u32's range.
    let out: Out = Arc::default();
    assert_eq!(run::<u64>(dir.path(), vec![big + 5], &out).unwrap(), big - 1);
    assert_eq!(acc(&out).len(), 7);
    // At u32 once more the build must be refused (a persisted time u32 cannot hold): on one worker only
    // today, see `tests/adv9_time_range_build.rs` (not run here: a one-sided refusal hangs this run).
}
