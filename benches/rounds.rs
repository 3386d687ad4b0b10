//! Latency of one timestamp: a dataflow that waits for each round's output before the next (fine-grained
//! timestamps, one update a round): `count_total` over `arrange_by_key_persisted`, and DD's in-memory
//! `count_total` of the keys (which arranges them), side by side in one process. Each round inserts one update, advances the input by one and steps the
//! worker until a `count_total` of the arrangement has passed the round's time: for ddpersist that is a
//! seal of one batch file (written, fsync'd, committed to the manifest) and its batch served through the
//! trace. Found by a DD user's probe (16.7 ms a round under load, against 8 µs in memory).
//!
//! `cargo bench --bench rounds` (or the built binary with `--bench`): `DDPERSIST_BENCH_ROUNDS` rounds
//! (default 200; 20 without `--bench`, as under `cargo test --benches`) with `DDPERSIST_BENCH_WORKERS`
//! timely workers (default 1; worker 0 inserts). Prints the median and p90 per round of each, their
//! ratio, and the machine's load average. The store lives under `CARGO_TARGET_TMPDIR` and is deleted.

mod common;

use common::{env_or, full_run, loadavg};
use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

/// Runs `rounds` rounds over a persisted (`Some(store)`) or in-memory arrangement with `workers` workers;
/// returns worker 0's time per round.
fn run(store: Option<Store>, rounds: u64, workers: usize) -> Vec<Duration> {
    let times = Arc::new(Mutex::new(Vec::new()));
    let out = times.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let store = store.clone();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
            match &store {
                Some(store) => {
                    let arranged = pairs.arrange_by_key_persisted(store, "rounds").unwrap();
                    arranged.count_total().inner.probe_with(&probe);
                }
                // DD's `count_total` on the keys arranges them in memory and counts.
                None => {
                    pairs.map(|(k, _)| k).count_total().inner.probe_with(&probe);
                }
            }
            input
        });
        let mut mine = Vec::with_capacity(rounds as usize);
        for r in 0..rounds {
            let start = Instant::now();
            if worker.index() == 0 {
                input.insert((r % 10, r));
            }
            input.advance_to(r + 1);
            input.flush();
            worker.step_while(|| probe.less_than(input.time()));
            mine.push(start.elapsed());
        }
        if worker.index() == 0 {
            *out.lock().unwrap() = mine;
        }
    })
    .unwrap();
    let times = times.lock().unwrap().clone();
    times
}

/// (median, p90) of `v`.
fn summary(v: &mut [Duration]) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
}

fn main() {
    let rounds: u64 = env_or("DDPERSIST_BENCH_ROUNDS", if full_run() { 200 } else { 20 }).max(1);
    let workers: usize = env_or("DDPERSIST_BENCH_WORKERS", 1).max(1);
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let dir = tempfile::tempdir_in(tmp).unwrap();
    println!("load average before: {}", loadavg());
    let mut memory = run(None, rounds, workers);
    let mut persisted = run(Some(Store::open(dir.path()).unwrap()), rounds, workers);
    let ((m50, m90), (p50, p90)) = (summary(&mut memory), summary(&mut persisted));
    println!("{rounds} rounds of one update, {workers} worker(s), time per round:");
    println!("| arrangement | median | p90 |");
    println!("| --- | --- | --- |");
    println!("| DD in memory (`count_total` of the keys) | {m50:?} | {m90:?} |");
    println!("| ddpersist (`arrange_by_key_persisted`) | {p50:?} | {p90:?} |");
    println!(
        "median ratio: {:.0}x; load average after: {}",
        p50.as_secs_f64() / m50.as_secs_f64().max(1e-9),
        loadavg()
    );
}
