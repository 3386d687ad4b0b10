//! Pieces shared by the benches: the data generator, the sequential-write baseline each bench measures
//! in the same run, and small helpers (environment, medians, /proc counters). Submodules: the engines of
//! the baselines ([`engines`]), the arrangement run of benches/arrange.rs ([`arrange`]) and the restart
//! measurements of benches/restart.rs and benches/read/ ([`restart`]).
#![allow(dead_code)]

pub mod arrange;
pub mod engines;
pub mod restart;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// splitmix64: a bijective mixer of a counter into pseudo-random bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Key `i`: the 16 lowercase hex digits of `splitmix64(i)` (a bijection, so keys `i >= n` are misses).
pub fn hex_key(i: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let x = splitmix64(i);
    let mut k = [0u8; 16];
    for (j, b) in k.iter_mut().enumerate() {
        *b = HEX[((x >> (60 - 4 * j)) & 15) as usize];
    }
    k
}

/// The `dd if=/dev/zero bs=1M conv=fdatasync` equivalent: `bytes` written in `fill.len()`-byte `write_all`s
/// to a new file in `tmp`, then one `sync_data`. With `sync_every`, pieces of that many bytes each followed
/// by a `sync_data` instead (the I/O pattern of a WAL synced once per write call).
pub fn seq_write(tmp: &Path, fill: &[u8], bytes: u64, sync_every: Option<usize>) -> Duration {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let path = dir.path().join("seq");
    let piece = sync_every.unwrap_or(fill.len());
    let start = Instant::now();
    let mut f = File::create(&path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece as u64) as usize;
        f.write_all(&fill[..n]).unwrap();
        if sync_every.is_some() {
            f.sync_data().unwrap();
        }
        left -= n as u64;
    }
    f.sync_data().unwrap();
    let elapsed = start.elapsed();
    drop(f);
    drop(dir);
    elapsed
}

/// Whether criterion runs the full benchmark: `--bench` without `--test` or `--list` (`cargo test
/// --benches` and `--test` run a small version).
pub fn full_run() -> bool {
    has_arg("--bench") && !has_arg("--test") && !has_arg("--list")
}

/// Whether the bench was started with the command-line flag `flag`.
pub fn has_arg(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

/// The store options of a bench run: the defaults, with `DDPERSIST_BENCH_FAN_IN` (merge fan-in),
/// `DDPERSIST_BENCH_MEMTABLE_MIB` (memtable budget), `DDPERSIST_BENCH_COMPACTION_THREADS`,
/// `DDPERSIST_BENCH_BACKGROUND_NICE` (`Options::background_nice`), `DDPERSIST_BENCH_BACKGROUND_IDLE` (1:
/// `Options::background_idle`), `DDPERSIST_BENCH_BLOCK_KIB` (block target, KiB),
/// `DDPERSIST_BENCH_WAL_ZERO_FILL` (1: on) and `DDPERSIST_BENCH_WAL_SEGMENT_MIB` (`Options::wal_segment_bytes`,
/// MiB) when set.
#[allow(dead_code)]
pub fn bench_options() -> ddpersist::Options {
    let d = ddpersist::Options::default();
    ddpersist::Options {
        merge_fan_in: env_or("DDPERSIST_BENCH_FAN_IN", d.merge_fan_in),
        memtable_budget_bytes: env_or("DDPERSIST_BENCH_MEMTABLE_MIB", d.memtable_budget_bytes >> 20) << 20,
        compaction_threads: env_or("DDPERSIST_BENCH_COMPACTION_THREADS", d.compaction_threads),
        background_nice: env_or("DDPERSIST_BENCH_BACKGROUND_NICE", d.background_nice),
        background_idle: env_or("DDPERSIST_BENCH_BACKGROUND_IDLE", u8::from(d.background_idle)) != 0,
        block_target_bytes: env_or("DDPERSIST_BENCH_BLOCK_KIB", d.block_target_bytes >> 10) << 10,
        wal_zero_fill: env_or("DDPERSIST_BENCH_WAL_ZERO_FILL", u8::from(d.wal_zero_fill)) != 0,
        wal_segment_bytes: env_or("DDPERSIST_BENCH_WAL_SEGMENT_MIB", d.wal_segment_bytes >> 20) << 20,
        ..d
    }
}

/// The environment variable `name` parsed as a number (`_` separators allowed), or `default` when it is unset or not a number.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// The median of `v` (the upper one of an even count); `v` is sorted in place. Panics when `v` is empty.
pub fn median<T: Ord + Copy>(v: &mut [T]) -> T {
    v.sort();
    v[v.len() / 2]
}

/// CPU time of the whole process (every thread, including ones that have exited):
/// `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`; zero where unavailable. Other processes on the machine
/// inflate wall time, much less this.
pub fn process_cpu() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
        if unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) } == 0 {
            return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        }
    }
    Duration::ZERO
}

/// Bytes this process has passed to `write(2)` so far (`wchar` in `/proc/self/io`; 0 where there is none).
pub fn wchar() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|io| {
            io.lines()
                .find_map(|l| l.strip_prefix("wchar:").map(|v| v.trim().parse().ok()))
        })
        .flatten()
        .unwrap_or(0)
}

/// The machine's load averages over 1, 5 and 15 minutes, as `/proc/loadavg` gives them (`?` where there
/// is none).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// One row of a summary table: a figure, ours, the baseline measured in the same run, their ratio, the
/// goal and whether it is met.
pub struct Row {
    pub figure: String,
    pub ours: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    pub met: String,
}

/// Whether a goal is met, as a summary table says it (`**no**` stands out).
pub fn yes(b: bool) -> String {
    if b { "yes" } else { "**no**" }.into()
}

/// Prints `rows` as a markdown table, with `ours` and `baseline` as the headers of those columns.
pub fn print_table(ours: &str, baseline: &str, rows: &[Row]) {
    println!("| figure | {ours} | {baseline} | ratio | goal | met |");
    println!("|---|---:|---:|---:|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.figure, r.ours, r.baseline, r.ratio, r.goal, r.met
        );
    }
}
