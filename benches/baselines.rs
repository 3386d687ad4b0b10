//! ddpersist side by side with other ways to keep differential updates: SQLite with the seed's schema,
//! fjall (an LSM key-value store), and DD's in-memory arrangement, on one workload in one run.
//!
//! `cargo bench --bench baselines`. Workload: `N` updates (200,000; 5,000 under `cargo test --benches`),
//! update `i` with a 16-byte key (`hex_key(i)`: all distinct), a 100-byte val, time `i / SEAL_EVERY`, diff 1.
//!
//! - `baseline_ingest`: each iteration writes the `N` updates into a fresh directory, `CHUNK` per durable
//!   write (the call returns once the chunk is fsync'd), and ddpersist seals every `SEAL_EVERY` updates.
//!   SQLite: the seed's table and index (`persisted(persisted_id, key, val, ts, diff)`, index on
//!   `(persisted_id, ts, key)`; ts big-endian so blob order is time order), `journal_mode=WAL`,
//!   `synchronous=FULL`, one transaction per chunk. fjall: one keyspace, key = `key ++ val ++ ts` (BE),
//!   value = diff, one write batch per chunk committed with `PersistMode::SyncData`. DD in-memory: sorting
//!   the updates and building one `OrdValBatch` (no durability: the cost of the in-memory arrangement).
//!   `ddpersist_append`: a source durable only at the seal, which sorts each `SEAL_EVERY` interval and
//!   hands it to `Store::append_bytes` (one batch file, no WAL, no memtable): fsyncs per seal, not per
//!   chunk, so compare it with the others knowing its durability point is 10× coarser.
//! - `baseline_get`: `LOOKUPS` point lookups "key as of time" (half hits, half misses) against each
//!   engine holding the `N` updates: ddpersist `Store::get_bytes`; SQLite with an extra index on
//!   `(persisted_id, key, ts)` (the seed's index orders by time first, so a key lookup would scan every
//!   row below the time); fjall a prefix scan of the key; DD a fresh cursor's `seek_key` per lookup.
//! - `baseline_scan`: every update in (key, val, time) order: ddpersist's persisted trace cursor (from
//!   the mmap, over the batches its size-tiered levels hold after `Store::compact`: 2 here, read through
//!   DD's `cursor_list` as DD operators read a trace; `benches/read/` compares one batch with one);
//!   `dd_inmemory_same_batches` holds the updates as DD batches split at the same times, read alike; SQLite `ORDER BY key, val, ts` (on the extra index); fjall a full iteration; DD the
//!   batch's cursor.
//!
//! The fjall layout keeps one entry per `(key, val, time)` (all distinct here); a general mapping would
//! need a merge operator to add diffs. Figures and the command are in BENCHMARKS.md.

mod common;

use common::engines::{
    consolidate, engines, ingest, time, val, walk, Engine, InMemory, Ours, OursAppend, SEAL_EVERY,
};
use common::{full_run, hex_key, splitmix64};
use criterion::{black_box, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::trace::{BytesBatch, BytesBuilder, BytesUpdate};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Builder, Navigable};
use std::path::Path;
use std::time::{Duration, Instant};

const LOOKUPS: usize = 2_000;

fn n_updates() -> usize {
    if full_run() {
        200_000
    } else {
        5_000
    }
}

/// DD's in-memory arrangement as several batches (split by time), read through `cursor_list`.
struct InMemorySplit(Vec<std::rc::Rc<BytesBatch>>);

impl InMemorySplit {
    /// Batches holding the updates with times in `[previous upper, upper)` for each of `uppers`.
    fn build(n: usize, uppers: &[u64]) -> Self {
        let mut lower = 0;
        let mut batches = Vec::new();
        for &upper in uppers {
            let mut updates: Vec<BytesUpdate> = (0..n)
                .filter(|&i| (lower..upper).contains(&time(i)))
                .map(|i| ((hex_key(i as u64).to_vec(), val(i as u64).to_vec()), time(i), 1))
                .collect();
            updates.sort_unstable();
            let mut builder = BytesBuilder::with_capacity(updates.len(), updates.len(), updates.len());
            builder.push(&mut updates);
            batches.push(std::rc::Rc::new(builder.done().unwrap()));
            lower = upper;
        }
        InMemorySplit(batches)
    }
}

impl Engine for InMemorySplit {
    fn write(&mut self, _range: std::ops::Range<usize>) {}
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        let mut out: Vec<(Vec<u8>, i64)> = Vec::new();
        for batch in &self.0 {
            out.extend(InMemory::get_in(batch, key, as_of));
        }
        consolidate(out.into_iter())
    }
    fn scan(&self) -> (u64, u64) {
        if let [batch] = &self.0[..] {
            return walk(&mut batch.cursor(), batch);
        }
        let (mut cursor, storage) = cursor_list(self.0.clone());
        walk(&mut cursor, &storage)
    }
}

/// The uppers of the batches ddpersist serves (the first reader), to split the in-memory side alike.
fn ours_batch_uppers(readers: &[(&str, Box<dyn Engine>)]) -> Vec<u64> {
    readers[0].1.batch_uppers()
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(if full_run() { 4 } else { 1 }));
}

fn main() {
    let n = n_updates();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let mut c = Criterion::default().configure_from_args();
    if common::has_arg("--list") {
        return;
    }

    let mut g = c.benchmark_group("baseline_ingest");
    configure(&mut g);
    g.throughput(Throughput::Elements(n as u64));
    for (name, open) in engines() {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir_in(tmp).unwrap();
                    let mut engine = open(dir.path());
                    let start = Instant::now();
                    ingest(&mut *engine, n);
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.bench_function("ddpersist_append", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir_in(tmp).unwrap();
                let store = Ours::open(dir.path()).0;
                let mut engine = OursAppend(store, Vec::with_capacity(SEAL_EVERY), 0);
                let start = Instant::now();
                ingest(&mut engine, n);
                total += start.elapsed();
            }
            total
        })
    });
    g.bench_function("dd_inmemory_build", |b| b.iter(|| black_box(InMemory::build(n))));
    g.finish();

    // One populated directory per engine for the reads; ours serves its scan from the persisted trace.
    let dirs: Vec<_> = engines()
        .iter()
        .map(|_| tempfile::tempdir_in(tmp).unwrap())
        .collect();
    let mut ours = Ours::open(dirs[0].path());
    ingest(&mut ours, n);
    ours.serve();
    let mut readers: Vec<(&str, Box<dyn Engine>)> = vec![("ddpersist", Box::new(ours))];
    for ((name, open), dir) in engines().into_iter().zip(&dirs).skip(1) {
        let mut engine = open(dir.path());
        ingest(&mut *engine, n);
        engine.prepare_reads();
        readers.push((name, engine));
    }
    readers.push(("dd_inmemory", Box::new(InMemory::build(n))));
    // The same updates as DD batches split where ours are, read through `cursor_list` like ours.
    let split = InMemorySplit::build(n, &ours_batch_uppers(&readers));
    readers.push(("dd_inmemory_same_batches", Box::new(split)));
    let as_of = time(n - 1);
    let keys: Vec<[u8; 16]> = (0..LOOKUPS as u64)
        .map(|j| {
            hex_key(if j % 2 == 0 {
                splitmix64(j) % n as u64
            } else {
                n as u64 + j
            })
        })
        .collect();
    let want_get: Vec<_> = keys.iter().map(|k| readers[3].1.get(k, as_of)).collect();
    let want_scan = readers[3].1.scan();
    for (name, engine) in &readers {
        let got: Vec<_> = keys.iter().map(|k| engine.get(k, as_of)).collect();
        assert!(
            got == want_get,
            "{name}: lookups differ from the in-memory arrangement"
        );
        assert_eq!(
            engine.scan(),
            want_scan,
            "{name}: scan differs from the in-memory arrangement"
        );
    }

    let mut g = c.benchmark_group("baseline_get");
    configure(&mut g);
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    // The split in-memory side is for the scan only (its lookups merge per-batch answers naively).
    for (name, engine) in readers
        .iter()
        .filter(|(name, _)| *name != "dd_inmemory_same_batches")
    {
        g.bench_function(*name, |b| {
            b.iter(|| keys.iter().map(|k| engine.get(k, as_of).len()).sum::<usize>())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("baseline_scan");
    configure(&mut g);
    g.throughput(Throughput::Elements(n as u64));
    for (name, engine) in &readers {
        g.bench_function(*name, |b| b.iter(|| engine.scan()));
    }
    g.finish();
    c.final_summary();
}
