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
//! `DDPERSIST_BENCH_COMPACTION_THREADS` the merge threads (default 1). Each
//! round runs both, alternating which goes first. Prints one table: medians, the ratio, and the persisted
//! store's batch count at the end.

mod common;

use common::arrange::run;
use common::engines::SEAL_EVERY;
use common::{env_or, median};
use ddpersist::Store;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("DDPERSIST_BENCH_UPDATES", 1_000_000);
    let rounds: u64 = env_or("DDPERSIST_BENCH_ROUNDS", 3).max(1);
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (mut dd, mut ours, mut batches) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let mut persisted = || {
            let dir = tempfile::tempdir_in(tmp).unwrap();
            let options = common::bench_options();
            let store = Store::open_with(dir.path(), options).unwrap();
            let took = run(n, Some(&store), "bench");
            batches = store.sealed("bench/w0of1").unwrap().batches.len();
            took
        };
        if round % 2 == 0 {
            dd.push(run(n, None, "bench"));
            ours.push(persisted());
        } else {
            ours.push(persisted());
            dd.push(run(n, None, "bench"));
        }
        eprintln!(
            "round {round}: DD {:?}, ddpersist {:?}",
            dd[dd.len() - 1],
            ours[ours.len() - 1]
        );
    }
    let (dd, ours) = (median(&mut dd), median(&mut ours));
    println!(
        "arrange: {n} updates (16-byte keys, 100-byte vals, a time per {SEAL_EVERY}), {rounds} rounds, medians"
    );
    println!("DD arrange_by_key (in memory)      {:>10.3} s", dd.as_secs_f64());
    println!(
        "ddpersist arrange_persisted        {:>10.3} s",
        ours.as_secs_f64()
    );
    println!(
        "ratio ddpersist / DD               {:>10.2}   ({batches} batches at the end)",
        ours.as_secs_f64() / dd.as_secs_f64()
    );
}
