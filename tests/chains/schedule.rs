//! The input schedules of the chain tests and their oracle (the chain itself is run by `harness`):
//!
//! `src` rows `(String, u64)` → `persist` ("src", a `PersistManager` token) → `filter` → `map` → `join`
//! with an in-memory collection `dim` (fed again in full by every run) → `reduce` → the chain's output
//! `out` → `arrange_by_key_persisted` ("dst") → `as_collection` (logged); optionally also `out` mapped to
//! `(x % 7, key)` → `persist` ("dst2", keyed otherwise, so placed on other workers) (logged).
//!
//! The oracle is the same middle part (`middle`) run by DD in memory over the whole input at once.
//! Times are store times (`u64`) in the schedule; a run at timestamp type `T` maps them with
//! `T::from_u64`.

use crate::common;

use common::kill::key_on;
use common::Rng;
use ddpersist::operators::PersistTime;
use differential_dataflow::input::Input as _;
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

pub type Row = (String, u64);
/// One update of a log: `(row, store time, diff)`.
pub type Upd = (Row, u64, i64);
/// A dst2 update: `((x % 7, key), store time, diff)`.
pub type Upd2 = ((u64, String), u64, i64);

/// One slot of the schedule: its store time, its `src` and `dim` updates.
#[derive(Clone, Debug)]
pub struct Slot {
    pub time: u64,
    pub src: Vec<(Row, i64)>,
    pub dim: Vec<(Row, i64)>,
    /// With `Plan::src_upsert`: the upserts fed (whose de-upserted updates `src` holds).
    pub ups: Vec<(String, Option<u64>)>,
}

/// How the input is generated.
#[derive(Clone, Debug)]
pub struct Gen {
    pub peers: usize,
    pub slots: usize,
    /// Store time of the first slot.
    pub base: u64,
    /// Each next slot lies 1..=max_jump later (a few of them `big_jump` later, if not 0).
    pub max_jump: u64,
    pub big_jump: u64,
    /// Per slot, the workers (bit mask) whose keys get `src` updates; cycled.
    pub masks: Vec<u32>,
    /// Whether `dim` changes after its first slot.
    pub dim_changes: bool,
    pub seed: u64,
}

/// The keys of worker `w`.
pub fn keys_of(w: usize, peers: usize) -> Vec<String> {
    (0..3).map(|i| key_on(w, peers, i)).collect()
}

/// The input a `Gen` describes: multiplicities stay non-negative (only live rows are retracted).
pub fn generate(g: &Gen) -> Vec<Slot> {
    let mut rng = Rng(g.seed);
    let mut live: Vec<Row> = Vec::new();
    let mut dim_live: Vec<Row> = Vec::new();
    let mut time = g.base;
    let mut out = Vec::new();
    for s in 0..g.slots {
        if s > 0 {
            time += 1 + rng.below(g.max_jump);
            if g.big_jump > 0 && rng.below(5) == 0 {
                time += g.big_jump;
            }
        }
        let mask = g.masks[s % g.masks.len()];
        let workers: Vec<usize> = (0..g.peers).filter(|w| mask & (1 << w) != 0).collect();
        let mut src = Vec::new();
        if !workers.is_empty() {
            for _ in 0..1 + rng.below(4) {
                let w = workers[rng.below(workers.len() as u64) as usize];
                let keys = keys_of(w, g.peers);
                let row = (keys[rng.below(3) as usize].clone(), rng.below(40));
                live.push(row.clone());
                src.push((row, 1));
            }
            for _ in 0..rng.below(3) {
                let candidates: Vec<usize> = (0..live.len())
                    .filter(|&i| workers.iter().any(|&w| keys_of(w, g.peers).contains(&live[i].0)))
                    .collect();
                if !candidates.is_empty() {
                    let i = candidates[rng.below(candidates.len() as u64) as usize];
                    let row = live.swap_remove(i);
                    src.push((row, -1));
                }
            }
        }
        let mut dim = Vec::new();
        if s == 0 {
            for w in 0..g.peers {
                for (i, k) in keys_of(w, g.peers).into_iter().enumerate() {
                    if i != 2 {
                        let row = (k, 1000 * (i as u64 + 1));
                        dim_live.push(row.clone());
                        dim.push((row, 1));
                    }
                }
            }
        } else if g.dim_changes && rng.below(3) == 0 {
            let w = rng.below(g.peers as u64) as usize;
            let k = keys_of(w, g.peers)[rng.below(3) as usize].clone();
            let row = (k, 1000 * (1 + rng.below(5)));
            dim_live.push(row.clone());
            dim.push((row, 1));
            if rng.below(2) == 0 && !dim_live.is_empty() {
                let i = rng.below(dim_live.len() as u64) as usize;
                let row = dim_live.swap_remove(i);
                dim.push((row, -1));
            }
        }
        out.push(Slot {
            time,
            src,
            dim,
            ups: Vec::new(),
        });
    }
    out
}

/// Turns `slots`' src updates into upserts: per slot, one upsert for each key its updates touch (a new
/// value, or a deletion one time in five), and `src` the differential updates they make.
pub fn to_upserts(slots: &mut [Slot], seed: u64) {
    let mut rng = Rng(seed ^ 0x5EED);
    let mut state: BTreeMap<String, u64> = BTreeMap::new();
    for slot in slots.iter_mut() {
        let keys: std::collections::BTreeSet<String> = slot.src.iter().map(|((k, _), _)| k.clone()).collect();
        slot.src.clear();
        slot.ups.clear();
        for k in keys {
            let new = (rng.below(5) != 0).then(|| rng.below(40));
            if let Some(old) = state.remove(&k) {
                slot.src.push(((k.clone(), old), -1));
            }
            if let Some(v) = new {
                state.insert(k.clone(), v);
                slot.src.push(((k.clone(), v), 1));
            }
            slot.ups.push((k, new));
        }
    }
}

/// The non-persisted middle of the chain.
pub fn middle<'s, T: PersistTime>(
    src: VecCollection<'s, T, Row, i64>,
    dim: VecCollection<'s, T, Row, i64>,
) -> VecCollection<'s, T, Row, i64> {
    src.filter(|(_, v)| v % 5 != 4)
        .map(|(k, v)| (k, v % 16))
        .join(dim)
        .map(|(k, (v, w))| (k, v + w))
        .reduce(|_k, input, output| {
            let total: i64 = input.iter().map(|(v, d)| (**v as i64) * d).sum();
            let distinct = input.len() as u64;
            output.push((total as u64 * 100 + distinct, 1i64));
        })
}

/// DD's in-memory answer: the updates of `middle` over the whole input, at store times.
pub fn oracle(slots: &[Slot]) -> Vec<Upd> {
    let log: Arc<Mutex<Vec<Upd>>> = Default::default();
    let l = log.clone();
    let slots = slots.to_vec();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::<u64>::new();
        let l = l.clone();
        let (mut si, mut di) = worker.dataflow::<u64, _, _>(|scope| {
            let (si, src) = scope.new_collection::<Row, i64>();
            let (di, dim) = scope.new_collection::<Row, i64>();
            middle(src, dim)
                .inner
                .inspect(move |(r, t, d)| l.lock().unwrap().push((r.clone(), *t, *d)))
                .probe_with(&probe);
            (si, di)
        });
        for s in &slots {
            si.advance_to(s.time);
            di.advance_to(s.time);
            for (r, d) in &s.src {
                si.update(r.clone(), *d);
            }
            for (r, d) in &s.dim {
                di.update(r.clone(), *d);
            }
        }
        drop(si);
        drop(di);
        while !probe.done() {
            worker.step();
        }
    });
    let out = log.lock().unwrap().clone();
    out
}

/// `updates` accumulated at time `t`: each row's summed diff over times `<= t`, zero sums dropped.
pub fn acc_at<R: Ord + Clone>(updates: &[(R, u64, i64)], t: u64) -> BTreeMap<R, i64> {
    let mut acc = BTreeMap::new();
    for (r, time, d) in updates {
        if *time <= t {
            *acc.entry(r.clone()).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// dst3's rows of `out` updates.
pub fn to_dst3(updates: &[Upd]) -> Vec<Upd2> {
    updates
        .iter()
        .map(|((k, x), t, d)| ((x % 5, k.clone()), *t, *d))
        .collect()
}

/// dst2's rows of `out` updates.
pub fn to_dst2(updates: &[Upd]) -> Vec<Upd2> {
    updates
        .iter()
        .map(|((k, x), t, d)| ((x % 7, k.clone()), *t, *d))
        .collect()
}
