//! Random restart sweeps of persisted chains against DD in memory (an adversarial pass of 2026-12-04 that
//! found no fault; kept as regression tests). The chain: a source (`persist` of rows, or
//! `upsert_persisted_as`) → `arrange_by_key_persisted_with("a")` (`String` keys, `(u32, Vec<u8>)` vals) →
//! `count_total` → arrangement "b" (`i64` keys) → `threshold_total`; off "a", `reduce` (order-dependent:
//! the least and greatest val) → arrangement "r"; `join`, `semijoin`, `antijoin`; a second dataflow
//! importing "a" and "b" with a persisted arrangement "d" of its own. Inputs: one key only (the other
//! workers' streams stay empty), awkward keys (`""`, `"a\0"`, shared prefixes, `"é"`), 300 keys; retractions
//! of rows never inserted; worker 0 feeding everything, each worker its share, the last worker closing its
//! input early, or every update sent two times ahead of the input frontier; three store configurations
//! (defaults; 64-byte blocks with fan-in 2; a 64-byte memtable with at most 2 batches a stream) and the
//! three seal modes. Runs: 1–4 stops at each worker's own time after 0–11 extra steps, clean or abrupt
//! closes, runs that build only the first operators, then a completing run whose output must equal DD's
//! over the input delivered once, at every time from its resume point on.
//!
//! Seeds: a few by default; `DDPERSIST_SWEEP_MORE=n` adds `n` to every sweep, `DDPERSIST_SWEEP_SEED=s`
//! runs only seed `s`; the `#[ignore]`d `long_*` tests run the counts of the original pass.

use crate::common;

mod by_self;
mod rebuilt;
mod round;
mod runs;

use round::round;

use common::compare::Log;
use common::Rng;
use ddpersist::operators::{ArrangeTyped, Persist};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as _;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::VecCollection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Val = (u32, Vec<u8>);
type Row = (String, Val);

const KEYS: &[&str] = &[
    "",
    "a",
    "a\u{0}",
    "a\u{0}\u{0}",
    "ab",
    "abcdefgh",
    "abcdefghi",
    "zz",
    "é",
];

/// Per time, `(row, diff)` updates: insertions with multiplicities, retractions of live rows and
/// retractions of rows never inserted (negative counts).
fn key_of(rng: &mut Rng, keys: usize) -> String {
    if keys <= KEYS.len() {
        return KEYS[rng.below(keys as u64) as usize].to_string();
    }
    let n = rng.below(keys as u64);
    format!("{}{n}", "abcdefgh".repeat((n % 3) as usize))
}

fn history(times: u64, seed: u64, keys: usize) -> Vec<Vec<(Row, isize)>> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9) + 17);
    let burst = if keys > KEYS.len() { 30 } else { 5 };
    let mut live: Vec<Row> = Vec::new();
    let mut out = Vec::new();
    for _ in 0..times {
        let mut at = Vec::new();
        for _ in 0..rng.below(burst) {
            let k = key_of(&mut rng, keys);
            let v = (rng.below(4) as u32, vec![0u8; rng.below(3) as usize]);
            let row = (k, v);
            let d = 1 + rng.below(2) as isize;
            live.push(row.clone());
            at.push((row, d));
        }
        for _ in 0..rng.below(3) {
            if !live.is_empty() && rng.below(4) != 0 {
                let i = rng.below(live.len() as u64) as usize;
                let row = live.swap_remove(i);
                at.push((row, -1));
            } else {
                let k = key_of(&mut rng, keys);
                at.push(((k, (9, vec![1])), -1));
            }
        }
        out.push(at);
    }
    out
}

/// Per time, upserts `(key, Some(val) | None)`, one per key and time at most.
fn upserts(times: u64, seed: u64, keys: usize) -> Vec<Vec<(String, Option<Val>)>> {
    let mut rng = Rng(seed.wrapping_mul(0x51_7cc1) + 5);
    let burst = if keys > KEYS.len() { 30 } else { 5 };
    (0..times)
        .map(|_| {
            let mut at = BTreeMap::new();
            for _ in 0..rng.below(burst) {
                let k = key_of(&mut rng, keys);
                let v = (rng.below(5) != 0).then(|| (rng.below(4) as u32, vec![0u8; rng.below(3) as usize]));
                at.insert(k, v);
            }
            at.into_iter().collect()
        })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    /// Rows through `persist` ("p").
    Rows,
    /// Upserts through `upsert_persisted_as::<isize>` ("u").
    Upserts,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Feed {
    /// Worker 0 feeds everything.
    Worker0,
    /// Each worker its share.
    Spread,
    /// The last worker feeds its share only before time 4, then closes its input (every run).
    LastEndsEarly,
    /// Each worker its share, every update sent two times ahead of the input's time.
    Ahead,
}

#[derive(Clone, Debug)]
struct Plan {
    stop: Vec<Option<u64>>,
    steps: Vec<u32>,
    close: bool,
    /// With `close`: drop the input, step each worker `steps[w]` times and drop the dataflow.
    abrupt_close: bool,
    /// Build only `p`/`u` and `a` (not `b`, `r` nor the second dataflow).
    partial: bool,
}

impl Plan {
    /// The final run: no worker stops, the input runs to its end.
    fn completing(workers: usize) -> Plan {
        Plan {
            stop: vec![None; workers],
            steps: vec![0; workers],
            close: false,
            abrupt_close: false,
            partial: false,
        }
    }
}

type OutLog = Log<String>;

fn red(_k: &String, vals: &[(&Val, isize)], out: &mut Vec<(i64, isize)>) {
    let s: i64 = vals
        .iter()
        .map(|(v, d)| (v.0 as i64 + v.1.len() as i64) * *d as i64)
        .sum();
    out.push((s, 1));
    // Order-dependent: the least val (DD hands them sorted) and the greatest.
    let (first, last) = (vals[0].0, vals[vals.len() - 1].0);
    out.push((1_000 + first.0 as i64 * 10 + first.1.len() as i64, 1));
    out.push((
        -1_000 - last.0 as i64 * 10 - last.1.len() as i64,
        vals[vals.len() - 1].1,
    ));
}

fn thr(_k: &i64, c: &isize) -> isize {
    (*c).clamp(-1, 2)
}

fn sink<'s>(c: VecCollection<'s, u64, String, isize>, log: &OutLog, probe: &ProbeHandle<u64>) {
    let log = log.clone();
    c.inner
        .inspect(move |(x, t, d)| log.lock().unwrap().push((x.clone(), *t, *d as i64)))
        .probe_with(probe);
}

const DEADLINE: Duration = Duration::from_secs(30);

#[allow(clippy::too_many_arguments)]
fn run(
    dir: &Path,
    source: Source,
    workers: usize,
    feed: Feed,
    times: u64,
    seed: u64,
    keys: usize,
    plan: Plan,
) -> Result<(OutLog, u64), String> {
    let opts = match (seed + plan.steps.iter().map(|s| *s as u64).sum::<u64>()) % 3 {
        0 => ddpersist::Options::default(),
        1 => ddpersist::Options {
            block_target_bytes: 64,
            merge_fan_in: 2,
            compaction_threads: 1,
            ..ddpersist::Options::default()
        },
        _ => ddpersist::Options {
            memtable_budget_bytes: 64,
            max_batches_per_stream: 2,
            merge_fan_in: 2,
            ..ddpersist::Options::default()
        },
    };
    let store = Store::open_with(dir, opts).map_err(|e| e.to_string())?;
    let manager = PersistManager::new(store.clone());
    let log: OutLog = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let (l, rs, errs) = (log.clone(), resumes.clone(), errors.clone());
    let ctx = Arc::new(Ctx::new(store, manager, source, feed, times, seed, keys));
    timely::execute(timely::Config::process(workers), move |worker| {
        round(worker, &ctx, &plan, &l, &rs, &errs, None, false)
    })
    .map_err(|e| e.to_string())?;
    let errors = errors.lock().unwrap().clone();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let resumes = resumes.lock().unwrap().clone();
    let resume = resumes.iter().map(|r| r.1).min().unwrap_or(0);
    if !resumes.iter().all(|r| r.1 == resume) {
        return Err(format!("workers read different resume points: {resumes:?}"));
    }
    Ok((log, resume))
}

/// The row updates the source delivers (`fed(j, t)`: whether record `j` of time `t` is fed): the rows
/// themselves, or the upserts' changes of state.
fn delivered(
    source: Source,
    times: u64,
    seed: u64,
    keys: usize,
    fed: impl Fn(usize, u64) -> bool,
) -> Vec<Vec<(Row, isize)>> {
    match source {
        Source::Rows => history(times, seed, keys)
            .into_iter()
            .enumerate()
            .map(|(t, at)| {
                at.into_iter()
                    .enumerate()
                    .filter(|(j, _)| fed(*j, t as u64))
                    .map(|x| x.1)
                    .collect()
            })
            .collect(),
        Source::Upserts => {
            let mut state: BTreeMap<String, Val> = BTreeMap::new();
            upserts(times, seed, keys)
                .into_iter()
                .enumerate()
                .map(|(t, at)| {
                    let mut out = Vec::new();
                    for (j, (k, v)) in at.into_iter().enumerate() {
                        if !fed(j, t as u64) {
                            continue;
                        }
                        if let Some(old) = state.remove(&k) {
                            out.push(((k.clone(), old), -1));
                        }
                        if let Some(v) = v {
                            state.insert(k.clone(), v.clone());
                            out.push(((k, v), 1));
                        }
                    }
                    out
                })
                .collect()
        }
    }
}

struct Ctx {
    store: Store,
    manager: PersistManager,
    source: Source,
    feed: Feed,
    times: u64,
    seed: u64,
    rows: Vec<Vec<(Row, isize)>>,
    ups: Vec<Vec<(String, Option<Val>)>>,
}

impl Ctx {
    /// The context of a run over `store`: the rows and upserts of `seed`, `times` times over `keys` keys.
    fn new(
        store: Store,
        manager: PersistManager,
        source: Source,
        feed: Feed,
        times: u64,
        seed: u64,
        keys: usize,
    ) -> Ctx {
        let (rows, ups) = (history(times, seed, keys), upserts(times, seed, keys));
        Ctx {
            store,
            manager,
            source,
            feed,
            times,
            seed,
            rows,
            ups,
        }
    }
}

fn in_memory(times: u64, rows: Vec<Vec<(Row, isize)>>) -> OutLog {
    let log: OutLog = Default::default();
    let l = log.clone();
    timely::execute(timely::Config::thread(), move |worker| {
        let probe = ProbeHandle::<u64>::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, isize>();
            sink(rows.clone().map(|(k, v)| format!("row {k:?}={v:?}")), &l, &probe);
            let cnt = rows.clone().map(|(k, _)| k).count_total();
            sink(cnt.clone().map(|x| format!("cnt {x:?}")), &l, &probe);
            let b = cnt.clone().map(|(k, n)| (n as i64, k));
            sink(b.clone().map(|(n, k)| format!("b {n}:{k:?}")), &l, &probe);
            sink(
                b.clone()
                    .map(|(n, _)| n)
                    .threshold_total(thr)
                    .map(|x| format!("bthr {x:?}")),
                &l,
                &probe,
            );
            sink(cnt.clone().map(|x| format!("D2cnt {x:?}")), &l, &probe);
            sink(b.clone().map(|(n, k)| format!("D2d {k:?}={n}")), &l, &probe);
            sink(
                rows.clone()
                    .join(b.clone().map(|(n, k)| (k, n)))
                    .map(|(k, (v, n))| format!("D2join {k:?} {v:?} {n}")),
                &l,
                &probe,
            );
            let r = rows.clone().reduce(red);
            sink(
                rows.clone()
                    .join(r.clone())
                    .map(|(k, (v, s))| format!("joinc {k:?} {v:?} {s}")),
                &l,
                &probe,
            );
            let evens = cnt.clone().filter(|(_, n)| n % 2 == 0).map(|(k, _)| k);
            sink(
                rows.clone()
                    .semijoin(evens.clone())
                    .map(|x| format!("semi {x:?}")),
                &l,
                &probe,
            );
            sink(
                rows.clone().antijoin(evens).map(|x| format!("anti {x:?}")),
                &l,
                &probe,
            );
            sink(r.clone().map(|(k, s)| format!("r {k:?}={s}")), &l, &probe);
            sink(
                rows.join(r).map(|(k, (v, s))| format!("join {k:?} {v:?} {s}")),
                &l,
                &probe,
            );
            input
        });
        for (t, at) in rows.iter().enumerate() {
            input.advance_to(t as u64);
            for (row, d) in at.iter() {
                input.update(row.clone(), *d);
            }
        }
        input.advance_to(times);
        input.flush();
        worker.step_while(|| probe.less_than(&times));
    })
    .unwrap();
    log
}

fn at_time(log: &OutLog, t: u64) -> BTreeMap<String, i64> {
    common::compare::at(log, &t)
}

fn scenario(
    source: Source,
    workers: usize,
    feed: Feed,
    times: u64,
    seed: u64,
    keys: usize,
    plans: &[Plan],
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let mut trail = Vec::new();
    let fed = delivered(source, times, seed, keys, move |j, t| {
        feed != Feed::LastEndsEarly || j % workers + 1 != workers || t < 4
    });
    let expected = in_memory(times, fed);
    if expected.lock().unwrap().is_empty() {
        return Err(format!(
            "seed {seed}: DD in memory produced no output, nothing to compare"
        ));
    }
    for plan in plans {
        let (log, resume) = run(dir.path(), source, workers, feed, times, seed, keys, plan.clone())?;
        trail.push((resume, plan.clone()));
        // Times every worker waited for before the first stop are complete in this run.
        let complete = match (plan.close, plan.abrupt_close) {
            (true, true) => resume,
            (true, false) => plan.stop[0].unwrap().min(times - 1) + 1,
            _ => plan
                .stop
                .iter()
                .map(|s| s.unwrap_or(u64::MAX))
                .min()
                .unwrap()
                .min(times),
        };
        let differs = (!plan.partial)
            .then(|| first_difference(&log, &expected, resume..complete))
            .flatten();
        if let Some((t, diff)) = differs {
            return Err(format!(
                "{feed:?} seed {seed} keys {keys}: intermediate run at time {t} (resume {resume}; runs {trail:?}):\n{diff}"
            ));
        }
    }
    let last = Plan::completing(workers);
    let (log, resume) = run(dir.path(), source, workers, feed, times, seed, keys, last)?;
    match first_difference(&log, &expected, resume..times) {
        Some((t, diff)) => Err(format!(
            "{feed:?} seed {seed} keys {keys}: at time {t} (final resume {resume}; runs {trail:?}):\n{diff}"
        )),
        None => Ok(()),
    }
}

fn random_plans(rng: &mut Rng, workers: usize, times: u64, n: usize) -> Vec<Plan> {
    // The first run builds every operator (an operator first built after its upstream compacted takes
    // the upstream's history as of its since: documented), later ones may build only the first two.
    (0..n)
        .map(|i| Plan {
            stop: (0..workers).map(|_| Some(rng.below(times))).collect(),
            steps: (0..workers).map(|_| rng.below(12) as u32).collect(),
            close: rng.below(3) == 0,
            abrupt_close: rng.below(2) == 0,
            partial: rng.below(3) == 0 && i > 0,
        })
        .collect()
}

/// The seeds of a sweep: `default`, extended by `DDPERSIST_SWEEP_MORE`, or only `DDPERSIST_SWEEP_SEED`
/// if set and inside the extended range.
fn seeds(default: std::ops::Range<u64>) -> impl Iterator<Item = u64> {
    let env = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let more = env("DDPERSIST_SWEEP_MORE").unwrap_or(0);
    let only = env("DDPERSIST_SWEEP_SEED");
    (default.start..default.end + more).filter(move |s| only.is_none_or(|o| o == *s))
}

/// The first time of `times` at which `log` accumulates to other outputs than `expected`, with the
/// [`difference`].
fn first_difference(log: &OutLog, expected: &OutLog, times: std::ops::Range<u64>) -> Option<(u64, String)> {
    times.into_iter().find_map(|t| {
        let (got, want) = (at_time(log, t), at_time(expected, t));
        (got != want).then(|| (t, difference(&got, &want)))
    })
}

/// What `got` holds that `want` does not, and the reverse (the first 6 of each), for a failure message.
fn difference(got: &BTreeMap<String, i64>, want: &BTreeMap<String, i64>) -> String {
    let only = |a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>| -> Vec<(String, i64)> {
        a.iter()
            .filter(|(k, v)| b.get(*k) != Some(v))
            .take(6)
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    format!(" got extra {:?}\n missing {:?}", only(got, want), only(want, got))
}

/// Panics with every failure, if any.
fn assert_none_failed(failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
