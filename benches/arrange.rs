//! `arrange_persisted` against differential dataflow's in-memory `arrange_by_key` on the same input, in the
//! same run (issue 15's first row): N updates of a 16-byte random key (`hex_key`) and a 100-byte val, one
//! time per 10,000 updates (the workload of benches/common/engines.rs), fed by one worker
//! (`common::arrange::run`); the wall time from the first update until the arrangement's frontier has
//! passed the last time (for ddpersist: every update sealed into batch files, durable).
//! benches/summary.rs measures the same as its row 1, beside the other rows.
//!
//! `cargo bench --bench arrange` (N = 1 M, 3 rounds, median); `DDPERSIST_BENCH_UPDATES=10000000` for
//! 10 M; `DDPERSIST_BENCH_ROUNDS` rounds; `DDPERSIST_BENCH_FAN_IN` the merge fan-in (default 8);
//! `DDPERSIST_BENCH_MEMTABLE_MIB` the memtable budget (default 256, the store's default);
//! `DDPERSIST_BENCH_COMPACTION_THREADS` the merge threads (default 1); `DDPERSIST_BENCH_SHAPE=u64` for
//! `(u64, u64)` updates instead (`common::arrange::run_small`: DD's `arrange_by_key` against the typed
//! `arrange_by_key_persisted`, 16 payload bytes an update). Each
//! round runs both, alternating which goes first. Prints one table: medians of wall time and of the
//! process's CPU time over the same span (every thread: for ddpersist its merge and flush threads too, so
//! that CPU beside a loaded machine's other work shows), the ratios, and the persisted store's batch count
//! at the end.

mod common;

use common::arrange::{run, run_small};
use common::engines::SEAL_EVERY;
use common::{env_or, median, process_cpu};
use std::time::Duration;

/// `run`'s wall time and the process's CPU time over it.
fn timed(n: u64, store: Option<&Store>) -> (Duration, Duration) {
    let cpu = process_cpu();
    let wall = match small() {
        true => run_small(n, store, "bench"),
        false => run(n, store, "bench"),
    };
    (wall, process_cpu().saturating_sub(cpu))
}
use ddpersist::Store;

/// Whether `DDPERSIST_BENCH_SHAPE=u64` asks for `(u64, u64)` updates.
fn small() -> bool {
    std::env::var("DDPERSIST_BENCH_SHAPE").is_ok_and(|s| s == "u64")
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("DDPERSIST_BENCH_UPDATES", 1_000_000);
    let rounds: u64 = env_or("DDPERSIST_BENCH_ROUNDS", 3).max(1);
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (mut dd, mut ours, mut batches) = (Vec::new(), Vec::new(), 0);
    let (mut dd_cpu, mut ours_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut persisted = || {
            let dir = tempfile::tempdir_in(tmp).unwrap();
            let options = common::bench_options();
            let store = Store::open_with(dir.path(), options).unwrap();
            let took = timed(n, Some(&store));
            batches = store.sealed("bench/w0of1").unwrap().batches.len();
            took
        };
        let (a, b) = if round % 2 == 0 {
            let a = timed(n, None);
            (a, persisted())
        } else {
            let b = persisted();
            (timed(n, None), b)
        };
        dd.push(a.0);
        dd_cpu.push(a.1);
        ours.push(b.0);
        ours_cpu.push(b.1);
        eprintln!(
            "round {round}: DD {:?} ({:?} CPU), ddpersist {:?} ({:?} CPU), load {}",
            a.0,
            a.1,
            b.0,
            b.1,
            common::loadavg()
        );
    }
    let (dd, ours) = (median(&mut dd), median(&mut ours));
    let (dd_cpu, ours_cpu) = (median(&mut dd_cpu), median(&mut ours_cpu));
    let shape = match small() {
        true => "(u64, u64) updates: 8-byte keys and vals",
        false => "16-byte keys, 100-byte vals",
    };
    println!("arrange: {n} updates ({shape}, a time per {SEAL_EVERY}), {rounds} rounds, medians");
    println!("DD arrange_by_key (in memory)      {:>10.3} s", dd.as_secs_f64());
    println!(
        "ddpersist arrange_persisted        {:>10.3} s",
        ours.as_secs_f64()
    );
    println!(
        "ratio ddpersist / DD               {:>10.2}   ({batches} batches at the end)",
        ours.as_secs_f64() / dd.as_secs_f64()
    );
    println!(
        "CPU: DD {:.3} s, ddpersist {:.3} s, ratio {:.2}",
        dd_cpu.as_secs_f64(),
        ours_cpu.as_secs_f64(),
        ours_cpu.as_secs_f64() / dd_cpu.as_secs_f64()
    );
}
