//! Helpers of the drop-in tests (`dd_dropin_*.rs`): output logs, their accumulation, a changing graph.

use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

pub type Log<D, T = u64> = Arc<Mutex<Vec<(D, T, i64)>>>;

pub fn consolidated<D: Ord + Clone + Debug, T: Ord + Clone + Debug>(
    log: &Log<D, T>,
) -> BTreeMap<(T, D), i64> {
    let mut acc = BTreeMap::new();
    for (d, t, r) in log.lock().unwrap().iter() {
        *acc.entry((t.clone(), d.clone())).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

/// Accumulated collection at the end: record -> diff.
pub fn final_state<D: Ord + Clone + Debug, T>(log: &Log<D, T>) -> BTreeMap<D, i64> {
    let mut acc = BTreeMap::new();
    for (d, _, r) in log.lock().unwrap().iter() {
        *acc.entry(d.clone()).or_insert(0) += r;
    }
    acc.retain(|_, r| *r != 0);
    acc
}

pub fn record<'s, D: differential_dataflow::Data + Send, R: Copy + TryInto<i64, Error: Debug> + 'static>(
    c: VecCollection<'s, u64, D, R>,
    log: &Log<D>,
    probe: &ProbeHandle<u64>,
) {
    let log = log.clone();
    c.inner
        .inspect(move |(x, t, r)| {
            log.lock()
                .unwrap()
                .push((x.clone(), *t, (*r).try_into().unwrap()))
        })
        .probe_with(probe);
}

pub type Edge = (u32, u32);

pub fn graph(round: u64) -> Vec<(Edge, isize)> {
    // A ring 0..12 with chords; each round removes one ring edge and adds one chord.
    let mut out = Vec::new();
    if round == 0 {
        for i in 0..12u32 {
            out.push(((i, (i + 1) % 12), 1));
        }
        out.push(((3, 9), 1));
    } else {
        let r = round as u32;
        out.push(((r % 12, (r + 1) % 12), -1));
        out.push(((r % 12, (r * 5 + 2) % 12), 1));
    }
    out
}
