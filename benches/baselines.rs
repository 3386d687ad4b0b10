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
//!   DD's `cursor_list` as DD operators read a trace; `benches/read.rs` compares one batch with one);
//!   `dd_inmemory_same_batches` holds the updates as DD batches split at the same times, read alike; SQLite `ORDER BY key, val, ts` (on the extra index); fjall a full iteration; DD the
//!   batch's cursor.
//!
//! The fjall layout keeps one entry per `(key, val, time)` (all distinct here); a general mapping would
//! need a merge operator to add diffs. Figures and the command are in BENCHMARKS.md.

mod common;

use common::{full_run, hex_key, splitmix64};
use criterion::{black_box, BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::trace::{BytesBatch, BytesBuilder, BytesUpdate, PersistedBatch, PersistedTrace};
use ddpersist::{Store, StreamOptions};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Builder, Cursor, Navigable, TraceReader};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const CHUNK: usize = 1_000;
const SEAL_EVERY: usize = 10_000;
const LOOKUPS: usize = 2_000;
const STREAM: &str = "s";

fn n_updates() -> usize {
    if full_run() {
        200_000
    } else {
        5_000
    }
}

fn val(i: u64) -> [u8; 100] {
    let mut v = [0u8; 100];
    for (j, c) in v.chunks_mut(8).enumerate() {
        let x = splitmix64(i.wrapping_mul(16) + j as u64).to_le_bytes();
        c.copy_from_slice(&x[..c.len()]);
    }
    v
}

fn time(i: usize) -> u64 {
    (i / SEAL_EVERY) as u64
}

/// One engine's handle on a directory holding the updates.
trait Engine {
    /// Writes updates `range` durably (one fsync'd write).
    fn write(&mut self, range: std::ops::Range<usize>);
    /// Called after every `SEAL_EVERY` updates with the next time.
    fn seal(&mut self, _upper: u64) {}
    /// The consolidated `(val, diff)`s of `key` as of `as_of`.
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)>;
    /// Every update in order: `(count, a checksum of lengths, times and diffs)`.
    fn scan(&self) -> (u64, u64);
    /// After ingest, before the reads: what the engine needs to serve reads (an index, a compaction).
    fn prepare_reads(&mut self) {}
    /// The time uppers of the batches the engine reads from (ddpersist only).
    fn batch_uppers(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// The store, and (for reads) the stream's batches as the persisted trace serves them.
struct Ours(Store, Vec<PersistedBatch>);

impl Ours {
    fn open(dir: &Path) -> Self {
        let store = Store::open(dir).unwrap();
        if !store.has_stream(STREAM) {
            store.create_stream(STREAM, StreamOptions::default()).unwrap();
        }
        Ours(store, Vec::new())
    }

    /// Runs the merges due, opens the stream's trace and keeps its batches, for `scan`.
    fn serve(&mut self) {
        self.0.compact(STREAM).unwrap();
        let mut trace = PersistedTrace::open(&self.0, STREAM).unwrap();
        let upper = trace.upper().to_owned();
        self.1 = trace.batches_through(upper.borrow()).unwrap();
        eprintln!("ddpersist serves {} batch(es) after compaction", self.1.len());
    }
}

impl Engine for Ours {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let data: Vec<([u8; 16], [u8; 100], u64)> = range
            .map(|i| (hex_key(i as u64), val(i as u64), time(i)))
            .collect();
        let updates = data.iter().map(|(k, v, t)| (&k[..], &v[..], *t, 1i64));
        self.0.write_bytes(STREAM, updates).unwrap();
    }
    fn seal(&mut self, upper: u64) {
        self.0.seal(STREAM, upper).unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        self.0.get_bytes(STREAM, key, as_of).unwrap()
    }
    fn batch_uppers(&self) -> Vec<u64> {
        self.1.iter().map(|b| b.description().upper()[0]).collect()
    }
    fn scan(&self) -> (u64, u64) {
        if let [batch] = &self.1[..] {
            return walk(&mut batch.cursor(), batch);
        }
        let (mut cursor, storage) = cursor_list(self.1.clone());
        walk(&mut cursor, &storage)
    }
}

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn open(dir: &Path) -> Self {
        let conn = rusqlite::Connection::open(dir.join("persisted.sqlite")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS persisted (persisted_id INT, key BYTES, val BYTES, ts BYTES, diff BYTES);
             CREATE INDEX IF NOT EXISTS persisted_ts ON persisted (persisted_id, ts, key);",
        )
        .unwrap();
        Sqlite(conn)
    }
}

impl Engine for Sqlite {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let tx = self.0.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO persisted VALUES (1, ?1, ?2, ?3, ?4)")
                .unwrap();
            for i in range {
                let (k, v) = (hex_key(i as u64), val(i as u64));
                let (t, d) = (time(i).to_be_bytes(), 1i64.to_le_bytes());
                insert.execute((&k[..], &v[..], &t[..], &d[..])).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT val, diff FROM persisted WHERE persisted_id = 1 AND key = ?1 AND ts <= ?2",
            )
            .unwrap();
        let rows = stmt
            .query_map((key, &as_of.to_be_bytes()[..]), |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .unwrap();
        consolidate(rows.map(|r| {
            let (v, d) = r.unwrap();
            (v, i64::from_le_bytes(d.try_into().unwrap()))
        }))
    }
    /// The seed's index orders by time first: a key lookup would scan every row below its time.
    fn prepare_reads(&mut self) {
        self.0
            .execute_batch(
                "CREATE INDEX IF NOT EXISTS persisted_key ON persisted (persisted_id, key, ts); ANALYZE;",
            )
            .unwrap();
    }
    fn scan(&self) -> (u64, u64) {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT key, val, ts, diff FROM persisted WHERE persisted_id = 1 ORDER BY key, val, ts",
            )
            .unwrap();
        let mut rows = stmt.query(()).unwrap();
        let (mut n, mut sum) = (0u64, 0u64);
        while let Some(r) = rows.next().unwrap() {
            let (k, v) = (
                r.get_ref(0).unwrap().as_blob().unwrap(),
                r.get_ref(1).unwrap().as_blob().unwrap(),
            );
            let t = u64::from_be_bytes(r.get_ref(2).unwrap().as_blob().unwrap().try_into().unwrap());
            let d = i64::from_le_bytes(r.get_ref(3).unwrap().as_blob().unwrap().try_into().unwrap());
            n += 1;
            sum = sum.wrapping_add((k.len() + v.len()) as u64 + t + d as u64);
        }
        (n, sum)
    }
}

struct Fjall(fjall::Database, fjall::Keyspace);

impl Fjall {
    fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let ks = db
            .keyspace("persisted", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall(db, ks)
    }
}

impl Engine for Fjall {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let mut batch = self.0.batch().durability(Some(fjall::PersistMode::SyncData));
        for i in range {
            let mut k = Vec::with_capacity(124);
            k.extend_from_slice(&hex_key(i as u64));
            k.extend_from_slice(&val(i as u64));
            k.extend_from_slice(&time(i).to_be_bytes());
            batch.insert(&self.1, k, 1i64.to_le_bytes().to_vec());
        }
        batch.commit().unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        consolidate(self.1.prefix(key).filter_map(|g| {
            let (k, v) = g.into_inner().unwrap();
            let t = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
            let d = i64::from_le_bytes(v[..].try_into().unwrap());
            (t <= as_of).then(|| (k[key.len()..k.len() - 8].to_vec(), d))
        }))
    }
    fn scan(&self) -> (u64, u64) {
        let (mut n, mut sum) = (0u64, 0u64);
        for g in self.1.iter() {
            let (k, v) = g.into_inner().unwrap();
            let t = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
            let d = i64::from_le_bytes(v[..].try_into().unwrap());
            n += 1;
            sum = sum.wrapping_add((k.len() - 8) as u64 + t + d as u64);
        }
        (n, sum)
    }
}

/// DD's in-memory arrangement: one batch of every update.
struct InMemory(BytesBatch);

impl InMemory {
    fn build(n: usize) -> Self {
        let mut updates: Vec<BytesUpdate> = (0..n)
            .map(|i| ((hex_key(i as u64).to_vec(), val(i as u64).to_vec()), time(i), 1))
            .collect();
        updates.sort_unstable();
        let mut builder = BytesBuilder::with_capacity(n, n, n);
        builder.push(&mut updates);
        InMemory(builder.done().unwrap())
    }
}

impl Engine for InMemory {
    fn write(&mut self, _range: std::ops::Range<usize>) {}
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        Self::get_in(&self.0, key, as_of)
    }
    fn scan(&self) -> (u64, u64) {
        walk(&mut self.0.cursor(), &self.0)
    }
}

impl InMemory {
    /// The consolidated `(val, diff)`s of `key` as of `as_of` in `batch`.
    fn get_in(batch: &BytesBatch, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        let (mut cursor, storage) = (batch.cursor(), batch);
        cursor.seek_key(storage, key);
        let mut out = Vec::new();
        if cursor.get_key(storage) == Some(key) {
            while let Some(v) = cursor.get_val(storage) {
                let mut sum = 0;
                cursor.map_times(storage, |t, d| {
                    if *t <= as_of {
                        sum += *d
                    }
                });
                if sum != 0 {
                    out.push((v.to_vec(), sum));
                }
                cursor.step_val(storage);
            }
        }
        out
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

/// Every update under `cursor`, as `Engine::scan` reports it.
fn walk<C>(cursor: &mut C, storage: &C::Storage) -> (u64, u64)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8], Time = u64, Diff = i64>,
{
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(k) = cursor.get_key(storage) {
        while let Some(v) = cursor.get_val(storage) {
            let len = (k.len() + v.len()) as u64;
            cursor.map_times(storage, |t, d| {
                let (t, d) = (C::owned_time(t), C::owned_diff(d));
                n += 1;
                sum = sum.wrapping_add(len + t + d as u64);
            });
            cursor.step_val(storage);
        }
        cursor.step_key(storage);
    }
    (n, sum)
}

fn consolidate(pairs: impl Iterator<Item = (Vec<u8>, i64)>) -> Vec<(Vec<u8>, i64)> {
    let mut sums = BTreeMap::new();
    for (v, d) in pairs {
        *sums.entry(v).or_insert(0) += d;
    }
    sums.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// Writes the workload into `engine`: `CHUNK` per write, a seal every `SEAL_EVERY`.
/// The store fed by `Store::append_bytes`: a source durable only at the seal (every `SEAL_EVERY`
/// updates), which sorts its interval and appends it as one batch, bypassing the WAL and the memtable.
struct OursAppend(Store, Vec<([u8; 16], [u8; 100], u64)>, u64);

impl Engine for OursAppend {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let batch = range.map(|i| (hex_key(i as u64), val(i as u64), time(i)));
        self.1.extend(batch);
    }
    fn seal(&mut self, upper: u64) {
        self.1.sort_unstable();
        let updates = self.1.iter().map(|(k, v, t)| (&k[..], &v[..], *t, 1i64));
        self.0.append_bytes(STREAM, updates, self.2, upper).unwrap();
        self.1.clear();
        self.2 = upper;
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        self.0.get_bytes(STREAM, key, as_of).unwrap()
    }
    fn scan(&self) -> (u64, u64) {
        unreachable!("ingest only")
    }
}

fn ingest(engine: &mut dyn Engine, n: usize) {
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        engine.write(start..end);
        if end.is_multiple_of(SEAL_EVERY) || end == n {
            engine.seal(time(end - 1) + 1);
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(if full_run() { 4 } else { 1 }));
}

type Open = fn(&Path) -> Box<dyn Engine>;

fn engines() -> Vec<(&'static str, Open)> {
    vec![
        ("ddpersist", |d| Box::new(Ours::open(d))),
        ("sqlite", |d| Box::new(Sqlite::open(d))),
        ("fjall", |d| Box::new(Fjall::open(d))),
    ]
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
