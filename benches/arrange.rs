//! `arrange_persisted` against differential dataflow's in-memory `arrange_by_key` on the same input, in the
//! same run (issue 15's first row): N updates of a 16-byte random key and a 100-byte val, one time per
//! 10,000 updates, fed by one worker; the wall time from the first update until the arrangement's
//! frontier has passed the last time (for ddpersist: every update sealed into batch files, durable).
//!
//! `cargo bench --bench arrange` (N = 1 M, 3 rounds, median); `DDPERSIST_BENCH_UPDATES=10000000` for
//! 10 M; `DDPERSIST_BENCH_ROUNDS` rounds; `DDPERSIST_BENCH_FAN_IN` the merge fan-in (default 8). Each round runs both, alternating which goes first. Prints one
//! table: medians, the ratio, and the persisted store's batch count at the end.

use ddpersist::operators::ArrangePersisted;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

const PER_TIME: u64 = 10_000;
const VAL_BYTES: usize = 100;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Update `i`: a 16-byte key and a 100-byte val, both pseudo-random.
fn update(i: u64) -> (Vec<u8>, Vec<u8>) {
    let mut key = splitmix(i).to_be_bytes().to_vec();
    key.extend_from_slice(&splitmix(i ^ 0xabcd).to_be_bytes());
    let mut val = Vec::with_capacity(VAL_BYTES);
    let mut x = i;
    while val.len() < VAL_BYTES {
        x = splitmix(x);
        val.extend_from_slice(&x.to_le_bytes());
    }
    val.truncate(VAL_BYTES);
    (key, val)
}

/// Feeds `n` updates through `arrange` (DD's or ours) and returns the wall time until the arrangement's
/// frontier passed the last time.
fn run(n: u64, persisted: Option<&Store>) -> Duration {
    let store = persisted.cloned();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(Vec<u8>, Vec<u8>), isize>();
            match &store {
                Some(store) => {
                    let (arranged, _handle) = rows.arrange_persisted(store, "bench").unwrap();
                    arranged.stream.probe_with(&probe);
                }
                None => {
                    rows.arrange_by_key().stream.probe_with(&probe);
                }
            }
            input
        });
        let start = Instant::now();
        let times = n.div_ceil(PER_TIME);
        for t in 0..times {
            input.advance_to(t);
            for i in t * PER_TIME..((t + 1) * PER_TIME).min(n) {
                input.update(update(i), 1);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step();
        }
        worker.step_while(|| probe.less_than(&times));
        let elapsed = start.elapsed();
        drop(input);
        worker.step_while(|| !probe.done());
        elapsed
    })
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env_or("DDPERSIST_BENCH_UPDATES", 1_000_000);
    let rounds = env_or("DDPERSIST_BENCH_ROUNDS", 3).max(1);
    let tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let (mut dd, mut ours, mut batches) = (Vec::new(), Vec::new(), 0);
    for round in 0..rounds {
        let mut persisted = || {
            let dir = tempfile::tempdir_in(tmp).unwrap();
            let options = ddpersist::Options {
                merge_fan_in: env_or("DDPERSIST_BENCH_FAN_IN", 8) as usize,
                memtable_budget_bytes: (env_or("DDPERSIST_BENCH_MEMTABLE_MIB", 64) as usize) << 20,
                ..ddpersist::Options::default()
            };
            let store = Store::open_with(dir.path(), options).unwrap();
            let took = run(n, Some(&store));
            batches = store.sealed("bench/w0of1").unwrap().batches.len();
            took
        };
        if round % 2 == 0 {
            dd.push(run(n, None));
            ours.push(persisted());
        } else {
            ours.push(persisted());
            dd.push(run(n, None));
        }
        eprintln!(
            "round {round}: DD {:?}, ddpersist {:?}",
            dd[dd.len() - 1],
            ours[ours.len() - 1]
        );
    }
    let (dd, ours) = (median(&mut dd), median(&mut ours));
    println!(
        "arrange: {n} updates (16-byte keys, 100-byte vals, a time per {PER_TIME}), {rounds} rounds, medians"
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
