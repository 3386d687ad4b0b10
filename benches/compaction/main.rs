//! Compaction: merge throughput against this machine's sequential durable write bandwidth, and the write and
//! space amplification of the merge policy under a long upsert workload.
//!
//! `cargo bench --bench compaction`. Two parts, both in one process, on the disk holding
//! `CARGO_TARGET_TMPDIR` (the repository's disk):
//!
//! 1. `merge` (criterion, 10 samples): `DDPERSIST_BENCH_MERGE_INPUTS` (default 2; the merge policy's tier
//!    merges take `Options::merge_fan_in`, 8) input batch files of `MERGE_UPDATES / inputs` updates
//!    each (16-byte pseudo-random keys, 100-byte pseudo-random vals, input `j` at time `j`), written once
//!    with `BatchWriter` (key filter and compression as a seal would). Each iteration reopens the inputs
//!    (a fresh `BatchFile`, so every block is checked and, for lz4, decompressed again, as when the merge
//!    is the first reader of a sealed batch) and times `blob.create` + `merge_batches` into a new `DirBlob`
//!    object, commit (fsync, rename, directory fsync) included. `Throughput::Bytes` = output file size.
//!    Variants: raw; lz4 (`compress_from_level: Some(0)`, inputs compressed too); diagnostics: no key
//!    filter, output into a writer that discards (CPU only, nothing written), and the merge iterator alone
//!    (inputs read, checked and merged, no output built). Baseline in the same group: the raw output's byte
//!    count written to a new file in 1 MiB `write_all`s then one `sync_data` (`dd bs=1M conv=fdatasync`).
//!    The summary after criterion's report gives per variant median and best wall time, the merging
//!    thread's CPU time (`/proc/thread-self/schedstat`: robust to other load on the machine), input and
//!    output MB/s, the ratio to the baseline, the peak heap the merge held (a counting global allocator),
//!    and the time spent inside the output file's `write` calls and its `commit`.
//! 2. `amplification` (one run, after criterion's report; too long for repeated sampling): a durable stream
//!    receives `DDPERSIST_BENCH_UPDATES` updates (default 10 M) of upserts over `DDPERSIST_BENCH_KEYS` keys
//!    (default 1 M): retract the key's current val, insert a new one (the first write of a key is a plain
//!    insert). `CHUNK` updates per `write_bytes`, a seal every `SEAL_EVERY` updates (one time per seal
//!    interval), then `allow_compaction(upper - DDPERSIST_BENCH_LAG)` (default 10 seals) so merges
//!    consolidate. `DDPERSIST_BENCH_COMPACTION_THREADS` (default 1) sets `Options::compaction_threads`.
//!    The store runs over a `Blob` wrapper of `DirBlob` and a `Log` wrapper of `FileLog` that count
//!    every byte written to batch files, the manifest and the WAL. Prints write amplification (batch bytes
//!    written / (updates x 116)), WAL bytes, space amplification (live batch bytes / (live (key, val) pairs
//!    x 116), and / the size of one fully merged batch of the final contents, at the end and at its peak
//!    after a seal), final batches and levels, and (stderr, every 10%) the batch levels during the run.
//!    At the end it waits for due merges (the policy's fixpoint) before measuring. `DDPERSIST_BENCH_UPDATES=0`
//!    skips it.
//!
//! Under `cargo test --benches` / `cargo bench -- --test` (criterion's test mode) both parts run small.
//!
//! Modules: part 1 in `merge.rs` (the inputs, the variants, one timed merge) and `throughput.rs` (the
//! criterion group and its summary); part 2 in `counting.rs` (the byte-counting `Blob` and `Log`) and
//! `amplification.rs` (the upsert workload, the run and its summary); both parts use `data.rs` (keys and
//! vals) and `usage.rs` (heap and CPU time).

#[path = "../common/mod.rs"]
mod common;

mod amplification;
mod counting;
mod data;
mod merge;
mod throughput;
mod usage;

use amplification::{amplification, AmpConfig};
use common::env_or;
use criterion::Criterion;
use ddpersist::Options;
use std::path::Path;
use throughput::{merge_benches, merge_summary};

/// Updates in all the inputs of one merge benchmark together.
const MERGE_UPDATES: usize = 1_000_000;

/// Inputs of the merge benchmarks (`DDPERSIST_BENCH_MERGE_INPUTS`, default 2).
fn merge_inputs() -> usize {
    env_or("DDPERSIST_BENCH_MERGE_INPUTS", 2).max(1)
}
/// Updates per `write_bytes` call and per seal in the amplification run.
const CHUNK: usize = 1_000;
const SEAL_EVERY: usize = 10_000;
/// Name of the baseline the merge summary divides by.
const BASELINE: &str = "baseline_seq_write_1MiB_fdatasync";
/// Name of the merge output object.
const OUT: &str = "00000000000000ff.batch";

fn main() {
    let full = common::full_run();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    eprintln!("temporary directories under {}", tmp.display());
    let per_input = if full { MERGE_UPDATES } else { 40_000 } / merge_inputs();
    let mut c = Criterion::default().configure_from_args();
    if !common::has_arg("--list") {
        merge_benches(&mut c, tmp, per_input);
    }
    c.final_summary();
    merge_summary(per_input);
    let cfg = AmpConfig {
        updates: env_or("DDPERSIST_BENCH_UPDATES", if full { 10_000_000 } else { 100_000 }),
        keys: env_or("DDPERSIST_BENCH_KEYS", if full { 1_000_000 } else { 10_000 }),
        lag: env_or("DDPERSIST_BENCH_LAG", 10),
        compaction_threads: env_or("DDPERSIST_BENCH_COMPACTION_THREADS", 1),
        fan_in: env_or("DDPERSIST_BENCH_FAN_IN", Options::default().merge_fan_in),
        space_amp: env_or("DDPERSIST_BENCH_SPACE_AMP", 0),
    };
    if cfg.updates > 0 && cfg.keys > 0 && !common::has_arg("--list") {
        amplification(tmp, &cfg);
    }
}
