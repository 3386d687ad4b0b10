//! Restart of a persisted arrangement, at two store sizes (issue 15: "restart → trace ready ≤ 20 ms warm
//! at 10 M, independent of store size"), and the first lookups after a restart ("fresh": every block is
//! touched for the first time, so each pays its check).
//!
//! `cargo bench --bench restart`. Sizes: `DDPERSIST_RESTART_SIZES` (comma-separated update counts,
//! default `1000000,3000000`; 20,000 and 60,000 under `cargo test --benches` / `-- --test`). Workload:
//! update `i` = (16-byte key `hex_key(i)`, 100 pseudo-random val bytes, time `i / SEAL`, diff +1), written
//! straight into worker 0 of 1's stream of arrangement `"a"` and sealed every `SEAL` updates, merges
//! inline (fan-in 8), so the store is what `arrange_persisted` leaves. Stores are built once under
//! `CARGO_TARGET_TMPDIR/restart-bench-<n>` and reused while their marker matches.
//!
//! - `restart/trace_ready/<n>` (criterion, page cache warm): `Store::open`, a timely worker, a dataflow
//!   with `arrange_persisted` (the operator built, its trace holding the persisted spans), then a cursor
//!   over the arrangement's `TraceAgent` seeking one key and reading its val and times.
//! - `restart/frontier_complete/<n>` (criterion, warm): the same, then stepping the worker until the
//!   arrangement's frontier reaches the persisted upper: every block checksummed by the trace's background
//!   check (fail-stop: no time completes before its blocks passed). O(data) by design.
//! - `fresh_get/<n>` (criterion): per iteration, a store opened untimed, then `LOOKUPS` `get_bytes` hits
//!   of random keys, timed: nearly every lookup touches a block for the first time.
//! - cold (plain timing, printed): `trace_ready` after dropping the store's files from the page cache
//!   (`dd iflag=nocache count=0`), `COLD_SAMPLES` runs, median.

mod common;

use common::restart::trace_ready;
use common::{hex_key, splitmix64};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::operators::worker_stream_id;
use ddpersist::{Options, Store, StreamOptions};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ID: &str = "a";
const SEAL: usize = 10_000;
const CHUNK: usize = 2_000;
const VAL_BYTES: usize = 100;
const LOOKUPS: usize = 1_000;
const COLD_SAMPLES: usize = 3;
/// Bumped when the workload changes, so an old store is rebuilt.
const WORKLOAD: &str = "restart-v3";

fn val(i: u64) -> [u8; VAL_BYTES] {
    let mut v = [0u8; VAL_BYTES];
    for (j, chunk) in v.chunks_mut(8).enumerate() {
        let x = splitmix64(i.wrapping_mul(31).wrapping_add(j as u64)).to_le_bytes();
        chunk.copy_from_slice(&x[..chunk.len()]);
    }
    v
}

fn stream() -> String {
    worker_stream_id(ID, 0, 1)
}

fn ensure_store(tmp: &Path, n: usize) -> PathBuf {
    let dir = tmp.join(format!("restart-bench-{n}"));
    let marker = tmp.join(format!("restart-bench-{n}.complete"));
    let want = format!("{WORKLOAD} {n}");
    if dir.is_dir() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&want) {
        eprintln!("reusing {}", dir.display());
        return dir;
    }
    let _ = std::fs::remove_file(&marker);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let start = Instant::now();
    let options = Options {
        compaction_threads: 0,
        ..Options::default()
    };
    let store = Store::open_with(&dir, options).unwrap();
    let id = stream();
    // Not durable, as `arrange_persisted` creates its streams (a seal is their durability point).
    store
        .create_stream(&id, StreamOptions { durable: false })
        .unwrap();
    let mut buf = Vec::with_capacity(CHUNK * (16 + VAL_BYTES));
    for s in 0..n.div_ceil(SEAL) {
        let (lo, hi) = (s * SEAL, ((s + 1) * SEAL).min(n));
        for at in (lo..hi).step_by(CHUNK) {
            buf.clear();
            for i in at..(at + CHUNK).min(hi) {
                buf.extend_from_slice(&hex_key(i as u64));
                buf.extend_from_slice(&val(i as u64));
            }
            let updates = buf
                .chunks_exact(16 + VAL_BYTES)
                .map(|r| (&r[..16], &r[16..], s as u64, 1i64));
            store.write_bytes(&id, updates).unwrap();
        }
        store.seal(&id, s as u64 + 1).unwrap();
    }
    let batches = store.sealed(&id).unwrap().batches.len();
    drop(store);
    std::fs::write(&marker, want).unwrap();
    eprintln!(
        "built {} in {:.1} s: {batches} batch files",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    dir
}

/// `LOOKUPS` hits of random keys on a store opened before the clock starts.
fn fresh_gets(dir: &Path, n: usize, seed: u64) -> Duration {
    let store = Store::open(dir).unwrap();
    let id = stream();
    let keys: Vec<[u8; 16]> = (0..LOOKUPS as u64)
        .map(|j| hex_key(splitmix64(seed * 7919 + j) % n as u64))
        .collect();
    let start = Instant::now();
    for k in &keys {
        let vals = store.get_bytes(&id, k, u64::MAX - 1).unwrap();
        assert_eq!(vals.len(), 1);
        black_box(vals);
    }
    let elapsed = start.elapsed();
    drop(store);
    elapsed
}

fn evict(dir: &Path) -> bool {
    let mut files = vec![dir.join("MANIFEST")];
    if let Ok(entries) = std::fs::read_dir(dir) {
        files.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    files.iter().all(|f| {
        std::process::Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}

fn configure<M: criterion::measurement::Measurement>(g: &mut BenchmarkGroup<'_, M>, full: bool) {
    g.sample_size(10);
    g.sampling_mode(SamplingMode::Flat);
    g.warm_up_time(Duration::from_millis(if full { 500 } else { 50 }));
    g.measurement_time(Duration::from_secs(if full { 3 } else { 1 }));
}

fn main() {
    let full = common::full_run();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let default = if full { "1000000,3000000" } else { "20000,60000" };
    let sizes: Vec<usize> = std::env::var("DDPERSIST_RESTART_SIZES")
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut c = Criterion::default().configure_from_args();
    let listing = common::has_arg("--list");
    let mut cold = Vec::new();
    for &n in &sizes {
        if listing {
            break;
        }
        let dir = ensure_store(tmp, n);
        let probe = hex_key(n as u64 / 2);
        let mut g = c.benchmark_group("restart");
        configure(&mut g, full);
        g.bench_function(format!("trace_ready/{n}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| trace_ready(&dir, ID, &probe, false)).sum())
        });
        g.bench_function(format!("frontier_complete/{n}"), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| trace_ready(&dir, ID, &probe, true)).sum())
        });
        g.finish();
        let mut g = c.benchmark_group("fresh_get");
        configure(&mut g, full);
        g.throughput(Throughput::Elements(LOOKUPS as u64));
        let mut seed = 0;
        g.bench_function(format!("{n}"), |b| {
            b.iter_custom(|iters| {
                (0..iters)
                    .map(|_| {
                        seed += 1;
                        fresh_gets(&dir, n, seed)
                    })
                    .sum()
            })
        });
        g.finish();
        let mut times: Vec<Duration> = (0..if full { COLD_SAMPLES } else { 1 })
            .filter(|_| evict(&dir))
            .map(|_| trace_ready(&dir, ID, &probe, false))
            .collect();
        times.sort();
        if let Some(m) = times.get(times.len() / 2) {
            cold.push((n, *m));
        }
    }
    c.final_summary();
    for (n, m) in cold {
        eprintln!("cold trace_ready/{n}: {:.2} ms (median)", m.as_secs_f64() * 1e3);
    }
}
