//! Comparing a persisted computation with DD's in-memory one (the drop-in tests, `dd_dropin_*.rs`): output
//! logs of `(record, time, diff)`, accumulated at a time and compared at every time.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// An output log: every `(record, time, diff)` a collection emitted, diffs as `i64`.
pub type Log<D, T = u64> = Arc<Mutex<Vec<(D, T, i64)>>>;

/// Named pairs of output logs (a persisted program's and DD's in-memory one's), shared by the workers of
/// a run and across runs.
pub type Logs<D = String, T = u64> = Arc<Mutex<Vec<(&'static str, Log<D, T>, Log<D, T>)>>>;

/// The pair of logs named `name` in `logs`, added empty on first use.
pub fn log<D, T>(logs: &Logs<D, T>, name: &'static str) -> (Log<D, T>, Log<D, T>) {
    let mut list = logs.lock().unwrap();
    if let Some((_, a, b)) = list.iter().find(|(n, _, _)| *n == name) {
        return (a.clone(), b.clone());
    }
    let (a, b): (Log<D, T>, Log<D, T>) = Default::default();
    list.push((name, a.clone(), b.clone()));
    (a, b)
}

/// Appends every update of `c` to `log` and probes it with `probe`. Returns nothing.
pub fn rec<'s, D, T, R>(
    c: differential_dataflow::VecCollection<'s, T, D, R>,
    log: &Log<D, T>,
    probe: &ProbeHandle<T>,
) where
    D: differential_dataflow::Data,
    T: timely::progress::Timestamp + Clone,
    R: differential_dataflow::difference::Semigroup + Copy + TryInto<i64, Error: Debug> + 'static,
{
    let log = log.clone();
    c.inner
        .inspect(move |(x, t, r)| {
            log.lock()
                .unwrap()
                .push((x.clone(), t.clone(), (*r).try_into().unwrap()))
        })
        .probe_with(probe);
}

/// The collection `log` accumulates to at time `t` (totally ordered times): record -> summed diff, zero
/// sums dropped.
pub fn at<D: Ord + Clone, T: Ord + Clone>(log: &Log<D, T>, t: &T) -> BTreeMap<D, i64> {
    let mut acc = BTreeMap::new();
    for (d, time, r) in log.lock().unwrap().iter() {
        if time <= t {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Panics, naming `what`, the first of `times` at which logs `a` (persisted) and `b` (DD) accumulate to
/// different collections, with up to five records of each side that differ.
pub fn same_at_every_time<D: Ord + Clone + Debug, T: Ord + Clone + Debug>(
    a: &Log<D, T>,
    b: &Log<D, T>,
    times: &[T],
    what: &str,
) {
    same_at_times_where(a, b, times, |_| true, what)
}

/// [`same_at_every_time`] over the records `keep` selects, at each of `times`.
pub fn same_at_times_where<'t, D: Ord + Clone + Debug, T: Ord + Clone + Debug + 't>(
    a: &Log<D, T>,
    b: &Log<D, T>,
    times: impl IntoIterator<Item = &'t T>,
    keep: impl Fn(&D) -> bool,
    what: &str,
) {
    for t in times {
        let (mut x, mut y) = (at(a, t), at(b, t));
        x.retain(|d, _| keep(d));
        y.retain(|d, _| keep(d));
        if x != y {
            let only_a: Vec<_> = x.iter().filter(|(k, v)| y.get(*k) != Some(v)).take(5).collect();
            let only_b: Vec<_> = y.iter().filter(|(k, v)| x.get(*k) != Some(v)).take(5).collect();
            panic!(
                "{what}: differs at time {t:?}: persisted-only {only_a:?}, dd-only {only_b:?} (sizes {} vs {})",
                x.len(),
                y.len()
            );
        }
    }
}

/// A condition for `step_while` loops that is always true but panics once `secs` seconds have passed
/// since it was made (a hang fails the test instead of stalling the suite).
pub fn deadline(secs: u64) -> impl Fn() -> bool {
    let start = Instant::now();
    move || {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "deadline passed: hang"
        );
        true
    }
}
