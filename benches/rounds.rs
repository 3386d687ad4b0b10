//! Latency of one timestamp: a dataflow that waits for each round's output before the next (fine-grained
//! timestamps, one update a round): `count_total` over `arrange_by_key_persisted`, and DD's in-memory
//! `count_total` of the keys (which arranges them), side by side in one process. Each round inserts one update, advances the input by one and steps the
//! worker until a `count_total` of the arrangement has passed the round's time: for ddpersist that is a
//! seal of one batch file (written, fsync'd, committed to the manifest) and its batch served through the
//! trace. Found by a DD user's probe (16.7 ms a round under load, against 8 µs in memory).
//!
//! `cargo bench --bench rounds` (or the built binary with `--bench`): `DDPERSIST_BENCH_ROUNDS` rounds
//! (default 200; 20 without `--bench`, as under `cargo test --benches`) with `DDPERSIST_BENCH_WORKERS`
//! timely workers (default 1; worker 0 inserts), each spinning as DD's examples do
//! (`worker.step_while`). Prints the median and p90 per round of each, their ratio, worker 0's seals by
//! where they ran (`PersistHandle::seals`: inline on the worker, or pipelined on the seal thread), and
//! the machine's load average. With `DDPERSIST_BENCH_WAIT=0` the rounds do not wait for their output
//! (one `worker.step()` each, the input running ahead of the disk, as a throughput-bound source): then
//! it prints the whole run's time instead. The store lives under `CARGO_TARGET_TMPDIR` and is deleted.

mod common;

use common::{env_or, full_run, loadavg};
use ddpersist::operators::{ArrangeTyped, SealCounts};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

/// Runs `rounds` rounds over a persisted (`Some(store)`) or in-memory arrangement with `workers` workers,
/// each waiting for its output if `wait`; returns worker 0's time per round and its seal counts.
fn run(store: Option<Store>, rounds: u64, workers: usize, wait: bool) -> (Vec<Duration>, SealCounts) {
    let times = Arc::new(Mutex::new((Vec::new(), SealCounts::default())));
    let out = times.clone();
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let store = store.clone();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, pairs) = scope.new_collection::<(u64, u64), isize>();
            match &store {
                Some(store) => {
                    let arranged = pairs.arrange_by_key_persisted(store, "rounds").unwrap();
                    let handle = arranged.trace.handle().cloned();
                    arranged.count_total().inner.probe_with(&probe);
                    (input, handle)
                }
                // DD's `count_total` on the keys arranges them in memory and counts.
                None => {
                    pairs.map(|(k, _)| k).count_total().inner.probe_with(&probe);
                    (input, None)
                }
            }
        });
        let mut mine = Vec::with_capacity(rounds as usize);
        for r in 0..rounds {
            let start = Instant::now();
            if worker.index() == 0 {
                input.insert((r % 10, r));
            }
            input.advance_to(r + 1);
            input.flush();
            if wait || r + 1 == rounds {
                worker.step_while(|| probe.less_than(input.time()));
            } else {
                worker.step();
            }
            mine.push(start.elapsed());
        }
        if worker.index() == 0 {
            let seals = handle.map(|h| h.seals()).unwrap_or_default();
            *out.lock().unwrap() = (mine, seals);
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
    let wait = env_or("DDPERSIST_BENCH_WAIT", 1u8) != 0;
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let dir = tempfile::tempdir_in(tmp).unwrap();
    println!("load average before: {}", loadavg());
    let start = Instant::now();
    let (mut memory, _) = run(None, rounds, workers, wait);
    let memory_total = start.elapsed();
    let start = Instant::now();
    let store = Store::open(dir.path()).unwrap();
    let (mut persisted, seals) = run(Some(store), rounds, workers, wait);
    let persisted_total = start.elapsed();
    let waiting = if wait {
        "waiting for its output"
    } else {
        "not waiting"
    };
    println!("{rounds} rounds of one update, {waiting}, {workers} worker(s):");
    if wait {
        let ((m50, m90), (p50, p90)) = (summary(&mut memory), summary(&mut persisted));
        println!("| arrangement | median per round | p90 |");
        println!("| --- | --- | --- |");
        println!("| DD in memory (`count_total` of the keys) | {m50:?} | {m90:?} |");
        println!("| ddpersist (`arrange_by_key_persisted`) | {p50:?} | {p90:?} |");
        println!(
            "median ratio: {:.0}x",
            p50.as_secs_f64() / m50.as_secs_f64().max(1e-9)
        );
    } else {
        println!("| arrangement | whole run |");
        println!("| --- | --- |");
        println!("| DD in memory (`count_total` of the keys) | {memory_total:?} |");
        println!("| ddpersist (`arrange_by_key_persisted`, with its open) | {persisted_total:?} |");
    }
    println!(
        "worker 0's seals: {} inline, {} pipelined; load average after: {}",
        seals.inline,
        seals.pipelined,
        loadavg()
    );
}
