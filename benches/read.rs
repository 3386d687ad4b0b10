//! Reads: the persisted arrangement (batch files served from read-only mmaps through DD's `Cursor`)
//! against the same updates held in differential dataflow's in-memory arrangement, in the same run.
//!
//! `cargo bench --bench read`. Workload: `n` updates, update `i` = (16-byte key: 16 hex digits of
//! splitmix64(i), all distinct; 100 pseudo-random val bytes; time = the seal it went into; diff +1), so one
//! val and one update per key. Stores are built once (durable stream, `n / seal` equal seals with merges
//! run inside `seal`, so the store ends as one merged batch file) in `CARGO_TARGET_TMPDIR/read-bench-<n>`
//! and reused while the marker `read-bench-<n>.complete` beside it matches.
//!
//! The in-memory side is DD's `OrdValBatch` with the crate's `BytesLayout` (`BytesBatch`, built by
//! `BytesBuilder` from the same sorted updates): byte-string keys and vals packed in one buffer each, read as
//! `&[u8]` like ours, so both sides run the same generic code. DD's default `Vector` layout (`OrdValSpine<Vec<u8>,
//! Vec<u8>, u64, i64>`'s batch, one heap allocation per key and val) is a second baseline for the scan and
//! the rebuild.
//!
//! 1. `scan` (criterion): one full cursor walk over every key, val and (time, diff), summing lengths, one
//!    byte of each key and val, times and diffs. Ours: the cursor of the trace's one `PersistedBatch`
//!    (`PersistedTrace::open`, after `Store::compact`). Diagnostics: both sides through `cursor_list` (what
//!    DD operators use over a trace's batches).
//! 2. `lookup` (criterion): `LOOKUPS` point lookups per iteration, hits (random keys of the data) and misses
//!    (keys of the same shape not in it): DD `seek_key` + `get_key` + vals + `map_times` with a fresh cursor
//!    per lookup, on both sides; `Store::get_bytes(id, key, as_of)` (memtable, filter, fences, one block, owned
//!    result); diagnostic: the same keys sorted, one cursor seeking forward (a merge join's pattern).
//!    Parts 1 and 2 use `SCAN_UPDATES` (1 M; at most `DDPERSIST_BENCH_UPDATES`).
//! 3. `restart` (plain timing, after criterion; `RESTART_SAMPLES` runs, median): `DDPERSIST_BENCH_UPDATES`
//!    (default 10 M; 0 skips) updates. Ours: `Store::open` then the first `get_bytes` of a hit ("open + first
//!    get", blocks verified lazily) or `PersistedTrace::open` (reads no block since verify once) then a cursor lookup
//!    ("open + trace ready"), page cache warm, and cold (every file of the store dropped from the page cache
//!    with `dd iflag=nocache count=0` first, when that works). Baseline: building the in-memory batch from the
//!    sorted updates already in a `Vec` (the minimum a restart without persistence costs, source not re-read;
//!    the `Vec` is made before the clock starts), `BytesLayout` and `Vector`; diagnostic: DD's `BytesBatcher`
//!    (sort + consolidate + build) from updates in arrival order.
//!
//! 4. `typed_scan` (criterion): the cost of typed access (issue 14). A second store of `n` updates (the
//!    scan size) with typed data — key `splitmix64(i)` as `u64`, val a 100-character `String` — built in a
//!    temporary directory each run. One full walk decoding each key and val with their `Codec` (what the
//!    typed operators, `TypedArranged::as_collection` etc., do per key and val) against DD's in-memory
//!    `OrdValSpine<u64, String, u64, i64>` batch (`Vector` layout, built from the same sorted updates) walked
//!    with `&u64` / `&String`; diagnostic: the byte cursor over the same typed store, no decoding.
//!
//! Under `cargo test --benches` / `cargo bench -- --test` (criterion's test mode) everything runs small.
//! A summary table (markdown) prints at the end: figure, ours, baseline, ratio, goal, met.

mod common;

use common::restart::open_get;
use common::{env_or, hex_key, print_table, splitmix64, yes, Row};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::trace::{BytesBatch, BytesBatcher, BytesBuilder, BytesUpdate, PersistedBatch, PersistedTrace};
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, VecOrdValBuilder};
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::{Builder, Cursor, Navigable, TraceReader};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use timely::progress::Antichain;

const KEY_BYTES: usize = 16;
const VAL_BYTES: usize = 100;
const RECORD: usize = KEY_BYTES + VAL_BYTES;
/// Updates of the store parts 1 and 2 read.
const SCAN_UPDATES: usize = 1_000_000;
/// Default updates of the restart store.
const RESTART_UPDATES: usize = 10_000_000;
/// Lookups per timed iteration.
const LOOKUPS: usize = 10_000;
/// Timed runs of each restart figure.
const RESTART_SAMPLES: usize = 3;
/// Largest seal while building a store (updates); the seal count is a power of two, so the merges that
/// run inside `seal` leave one batch.
const MAX_SEAL: usize = 625_000;
/// Updates per `write_bytes` call while building.
const CHUNK: usize = 10_000;
const STREAM: &str = "s";

/// DD's default in-memory batch layout: `Vec<Vec<u8>>` keys and vals.
type VecBatch = OrdValBatch<Vector<((Vec<u8>, Vec<u8>), u64, i64)>>;
type VecBuilder = VecOrdValBuilder<Vec<u8>, Vec<u8>, u64, i64>;

/// Key `i`: 16 lowercase hex digits of splitmix64(i) (a bijection, so keys `i >= n` are misses).
fn key(i: u64) -> [u8; KEY_BYTES] {
    hex_key(i)
}

/// Val `i`: pseudo-random bytes.
fn val(i: u64) -> [u8; VAL_BYTES] {
    let mut v = [0u8; VAL_BYTES];
    let mut s = splitmix64(i ^ 0x5555_5555_5555_5555);
    for piece in v.chunks_mut(8) {
        s = splitmix64(s);
        piece.copy_from_slice(&s.to_le_bytes()[..piece.len()]);
    }
    v
}

/// How a store of `n` updates is sealed: `seals` seals of `seal` updates (the last may be short); update
/// `i` has time `i / seal`.
#[derive(Clone, Copy, Debug)]
struct Shape {
    n: usize,
    seal: usize,
}

impl Shape {
    fn new(n: usize) -> Self {
        let seals = n.div_ceil(MAX_SEAL).next_power_of_two().max(8);
        Shape {
            n,
            seal: n.div_ceil(seals).max(1),
        }
    }
    fn seals(&self) -> usize {
        self.n.div_ceil(self.seal)
    }
    fn time(&self, i: usize) -> u64 {
        (i / self.seal) as u64
    }
    /// A time at or beyond every update's.
    fn as_of(&self) -> u64 {
        self.seals() as u64 - 1
    }
    fn marker(&self) -> String {
        format!(
            "read-bench v1 n={} seal={} key={KEY_BYTES} val={VAL_BYTES}\n",
            self.n, self.seal
        )
    }
}

/// The store directory for `shape`, built unless a complete one is there already.
fn ensure_store(tmp: &Path, shape: Shape) -> PathBuf {
    let dir = tmp.join(format!("read-bench-{}", shape.n));
    let marker = tmp.join(format!("read-bench-{}.complete", shape.n));
    if dir.is_dir() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&shape.marker()) {
        // The crate's file formats may have changed since: reuse only a store this build reads back whole.
        match readable(&dir, shape) {
            Ok(()) => {
                eprintln!("reusing {}", dir.display());
                return dir;
            }
            Err(e) => eprintln!("not reusing {}: {e}", dir.display()),
        }
    }
    let _ = std::fs::remove_file(&marker);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "building {} ({} updates, {} seals)...",
        dir.display(),
        shape.n,
        shape.seals()
    );
    let start = Instant::now();
    let options = Options {
        compaction_threads: 0,
        memtable_budget_bytes: 1 << 30,
        ..Options::default()
    };
    let store = Store::open_with(&dir, options).unwrap();
    store.create_stream(STREAM, StreamOptions::default()).unwrap();
    let mut buf = Vec::with_capacity(CHUNK * RECORD);
    for s in 0..shape.seals() {
        let (lo, hi) = (s * shape.seal, ((s + 1) * shape.seal).min(shape.n));
        let mut at = lo;
        while at < hi {
            let end = (at + CHUNK).min(hi);
            buf.clear();
            for i in at..end {
                buf.extend_from_slice(&key(i as u64));
                buf.extend_from_slice(&val(i as u64));
            }
            let updates = buf
                .chunks_exact(RECORD)
                .map(|r| (&r[..KEY_BYTES], &r[KEY_BYTES..], s as u64, 1i64));
            store.write_bytes(STREAM, updates).unwrap();
            at = end;
        }
        store.seal(STREAM, s as u64 + 1).unwrap();
    }
    store.compact(STREAM).unwrap();
    let batches = store.sealed(STREAM).unwrap().batches.len();
    drop(store);
    std::fs::write(&marker, shape.marker()).unwrap();
    eprintln!(
        "built in {:.1} s: {batches} batch file(s), {:.1} MB on disk",
        start.elapsed().as_secs_f64(),
        dir_bytes(&dir) as f64 / 1e6
    );
    dir
}

/// Whether the store in `dir` opens, verifies whole (every block) and holds `shape.n` updates.
fn readable(dir: &Path, shape: Shape) -> Result<(), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let trace = PersistedTrace::<u64>::open(&store, STREAM).map_err(|e| e.to_string())?;
    let mut n = 0;
    trace.map_spans(|s| n += s.inner.as_ref().map_or(0, |b| b.len()));
    if n != shape.n {
        return Err(format!("{n} updates, not {}", shape.n));
    }
    Ok(())
}

/// Bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Drops every file of `dir` from the page cache (`dd iflag=nocache count=0` = posix_fadvise DONTNEED);
/// false if `dd` failed.
fn evict(dir: &Path) -> bool {
    files(dir).iter().all(|f| {
        std::process::Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Update indexes `0..n` in key order.
fn key_order(n: usize) -> Vec<u32> {
    let mut v: Vec<(u64, u32)> = (0..n as u32).map(|i| (splitmix64(i as u64), i)).collect();
    v.sort_unstable();
    v.into_iter().map(|(_, i)| i).collect()
}

/// The updates with indexes `order`, owned as DD's builders and batchers take them.
fn updates(shape: Shape, order: impl Iterator<Item = usize>) -> Vec<BytesUpdate> {
    order
        .map(|i| {
            let u = i as u64;
            ((key(u).to_vec(), val(u).to_vec()), shape.time(i), 1)
        })
        .collect()
}

fn build_bytes(mut sorted: Vec<BytesUpdate>) -> BytesBatch {
    let n = sorted.len();
    let mut builder = BytesBuilder::with_capacity(n, n, n);
    builder.push(&mut sorted);
    builder.done().unwrap()
}

fn build_vec(mut sorted: Vec<BytesUpdate>) -> VecBatch {
    let n = sorted.len();
    let mut builder = VecBuilder::with_capacity(n, n, n);
    builder.push(&mut sorted);
    builder.done().unwrap()
}

/// Times and diffs read by value (ours) or by reference (DD's `Vec` containers).
trait AsNum: Copy {
    fn num(self) -> u64;
}
impl AsNum for u64 {
    fn num(self) -> u64 {
        self
    }
}
impl AsNum for &u64 {
    fn num(self) -> u64 {
        *self
    }
}
impl AsNum for i64 {
    fn num(self) -> u64 {
        self as u64
    }
}
impl AsNum for &i64 {
    fn num(self) -> u64 {
        *self as u64
    }
}

/// What a walk saw; equal on every side for the same data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Sums {
    keys: u64,
    vals: u64,
    updates: u64,
    bytes: u64,
    sample: u64,
    times: u64,
    diffs: u64,
}

/// The full cursor walk: every key, val and (time, diff), as DD operators step through a batch.
fn scan<C>(cursor: &mut C, storage: &C::Storage) -> Sums
where
    C: Cursor,
    for<'a> C::Key<'a>: AsRef<[u8]>,
    for<'a> C::Val<'a>: AsRef<[u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    while let Some(key) = cursor.get_key(storage) {
        let key = key.as_ref();
        s.keys += 1;
        s.bytes += key.len() as u64;
        s.sample += key.first().copied().unwrap_or(0) as u64;
        while let Some(val) = cursor.get_val(storage) {
            let val = val.as_ref();
            s.vals += 1;
            s.bytes += val.len() as u64;
            s.sample += val.last().copied().unwrap_or(0) as u64;
            cursor.map_times(storage, |t, d| {
                s.updates += 1;
                s.times = s.times.wrapping_add(t.num());
                s.diffs = s.diffs.wrapping_add(d.num());
            });
            cursor.step_val(storage);
        }
        cursor.step_key(storage);
    }
    s
}

/// One point lookup with a DD cursor: seek, check the key, accumulate each val's diffs at or before `as_of`.
#[inline]
fn probe<C>(cursor: &mut C, storage: &C::Storage, key: &[u8], as_of: u64, s: &mut Sums)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    cursor.seek_key(storage, key);
    if cursor.get_key(storage) == Some(key) {
        s.keys += 1;
        while let Some(val) = cursor.get_val(storage) {
            let mut diff = 0u64;
            cursor.map_times(storage, |t, d| {
                if t.num() <= as_of {
                    diff = diff.wrapping_add(d.num());
                }
            });
            if diff != 0 {
                s.vals += 1;
                s.bytes += val.len() as u64;
                s.diffs = s.diffs.wrapping_add(diff);
            }
            cursor.step_val(storage);
        }
    }
}

/// `keys` looked up one by one, each with a fresh cursor.
fn seek_fresh<B>(batch: &B, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums
where
    B: Navigable,
    B::Cursor: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> <B::Cursor as Cursor>::TimeGat<'a>: AsNum,
    for<'a> <B::Cursor as Cursor>::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    for k in keys {
        let mut cursor = batch.cursor();
        probe(&mut cursor, batch, k, as_of, &mut s);
    }
    s
}

/// `keys` (sorted) looked up with one cursor, seeking forward.
fn seek_sorted<B>(batch: &B, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums
where
    B: Navigable,
    B::Cursor: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> <B::Cursor as Cursor>::TimeGat<'a>: AsNum,
    for<'a> <B::Cursor as Cursor>::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    let mut cursor = batch.cursor();
    for k in keys {
        probe(&mut cursor, batch, k, as_of, &mut s);
    }
    s
}

/// `keys` looked up with the store's public API.
fn get_bytes(store: &Store, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums {
    let mut s = Sums::default();
    for k in keys {
        let vals = store.get_bytes(STREAM, k, as_of).unwrap();
        if !vals.is_empty() {
            s.keys += 1;
        }
        for (v, d) in vals {
            s.vals += 1;
            s.bytes += v.len() as u64;
            s.diffs = s.diffs.wrapping_add(d as u64);
        }
    }
    s
}

/// The single batch of the persisted trace (the build leaves one).
fn persisted_batch(trace: &mut PersistedTrace) -> PersistedBatch {
    let upper = trace.upper().clone();
    let mut batches = trace.batches_through(upper.borrow()).unwrap();
    assert_eq!(batches.len(), 1, "the read store should hold one merged batch");
    batches.pop().unwrap()
}

/// Per-iteration durations seen by each benchmark (warm-up included), for the summary.
static SEEN: Mutex<BTreeMap<String, Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Registers `name` in `group` (named `group_name`), timing `f` per iteration.
fn bench<M, R>(group: &mut BenchmarkGroup<'_, M>, group_name: &str, name: &str, mut f: impl FnMut() -> R)
where
    M: criterion::measurement::Measurement<Value = Duration>,
{
    let key = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(f());
            }
            let total = start.elapsed();
            if iters > 0 {
                let mut seen = SEEN.lock().unwrap();
                seen.entry(key.clone()).or_default().push(total / iters as u32);
            }
            total
        })
    });
}

fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>, secs: u64) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(secs));
}

/// Parts 1 and 2.
fn read_benches(c: &mut Criterion, tmp: &Path, shape: Shape) {
    let dir = ensure_store(tmp, shape);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.compact(STREAM).unwrap(), 0, "the store is fully merged");
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let ours = persisted_batch(&mut trace);
    let order = key_order(shape.n);
    let bytes = build_bytes(updates(shape, order.iter().map(|&i| i as usize)));
    let vec = build_vec(updates(shape, order.iter().map(|&i| i as usize)));
    drop(order);
    let as_of = shape.as_of();

    // Same data on every side.
    let want = scan(&mut bytes.cursor(), &bytes);
    assert_eq!(want.updates, shape.n as u64);
    assert_eq!(scan(&mut ours.cursor(), &ours), want);
    assert_eq!(scan(&mut vec.cursor(), &vec), want);

    let mut rng = 0x1234_5678u64;
    let mut pick = |bound: usize| {
        rng = splitmix64(rng);
        rng % bound as u64
    };
    let hits: Vec<[u8; KEY_BYTES]> = (0..LOOKUPS).map(|_| key(pick(shape.n))).collect();
    let misses: Vec<[u8; KEY_BYTES]> = (0..LOOKUPS)
        .map(|_| key(shape.n as u64 + pick(shape.n)))
        .collect();
    let sorted = |keys: &[[u8; KEY_BYTES]]| {
        let mut v = keys.to_vec();
        v.sort_unstable();
        v
    };
    let (hits_sorted, misses_sorted) = (sorted(&hits), sorted(&misses));
    for keys in [&hits, &misses] {
        let want = seek_fresh(&bytes, keys, as_of);
        assert_eq!(seek_fresh(&ours, keys, as_of), want);
        assert_eq!(get_bytes(&store, keys, as_of), want);
    }
    assert_eq!(seek_fresh(&bytes, &hits, as_of).keys, LOOKUPS as u64);
    assert_eq!(seek_fresh(&bytes, &misses, as_of).keys, 0);
    assert_eq!(
        seek_sorted(&ours, &hits_sorted, as_of),
        seek_sorted(&bytes, &hits_sorted, as_of)
    );

    let gname = "scan";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 3);
    g.throughput(Throughput::Elements(shape.n as u64));
    bench(&mut g, gname, "persisted", || scan(&mut ours.cursor(), &ours));
    bench(&mut g, gname, "inmem_bytes", || scan(&mut bytes.cursor(), &bytes));
    bench(&mut g, gname, "inmem_vec", || scan(&mut vec.cursor(), &vec));
    let (ours_list, bytes_list) = (vec![ours.clone()], vec![Rc::new(bytes)]);
    bench(&mut g, gname, "persisted_cursor_list", || {
        let (mut cursor, storage) = cursor_list(ours_list.clone());
        scan(&mut cursor, &storage)
    });
    bench(&mut g, gname, "inmem_bytes_cursor_list", || {
        let (mut cursor, storage) = cursor_list(bytes_list.clone());
        scan(&mut cursor, &storage)
    });
    g.finish();
    let bytes: &BytesBatch = &bytes_list[0];

    let gname = "lookup";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 2);
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for (what, keys, keys_sorted) in [("hit", &hits, &hits_sorted), ("miss", &misses, &misses_sorted)] {
        bench(&mut g, gname, &format!("seek_fresh_{what}/persisted"), || {
            seek_fresh(&ours, keys, as_of)
        });
        bench(&mut g, gname, &format!("seek_fresh_{what}/inmem_bytes"), || {
            seek_fresh(bytes, keys, as_of)
        });
        bench(&mut g, gname, &format!("get_bytes_{what}/persisted"), || {
            get_bytes(&store, keys, as_of)
        });
        bench(&mut g, gname, &format!("seek_sorted_{what}/persisted"), || {
            seek_sorted(&ours, keys_sorted, as_of)
        });
        bench(&mut g, gname, &format!("seek_sorted_{what}/inmem_bytes"), || {
            seek_sorted(bytes, keys_sorted, as_of)
        });
    }
    g.finish();
    drop(trace);
    drop(store);
}

/// Part 3's measurements (each a list of samples).
#[derive(Default)]
struct Restart {
    n: usize,
    batches: usize,
    store_bytes: u64,
    wal_bytes: u64,
    cold_ok: bool,
    open: Vec<Duration>,
    open_get: Vec<Duration>,
    open_trace: Vec<Duration>,
    cold_open_get: Vec<Duration>,
    cold_open_trace: Vec<Duration>,
    rebuild_bytes: Vec<Duration>,
    rebuild_vec: Vec<Duration>,
    batcher: Vec<Duration>,
}

/// Store::open, PersistedTrace::open (no block read; blocks checksummed on first touch), then a cursor lookup of `probe`.
fn open_trace(dir: &Path, probe: &[u8], as_of: u64) -> Duration {
    let start = Instant::now();
    let store = Store::open(dir).unwrap();
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let upper = trace.upper().clone();
    let (mut cursor, storage) = cursor_list(trace.batches_through(upper.borrow()).unwrap());
    let mut s = Sums::default();
    probe_list(&mut cursor, &storage, probe, as_of, &mut s);
    let total = start.elapsed();
    assert_eq!(s.vals, 1);
    drop((cursor, storage, trace, store));
    total
}

fn probe_list<C>(cursor: &mut C, storage: &C::Storage, key: &[u8], as_of: u64, s: &mut Sums)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    probe(cursor, storage, key, as_of, s)
}

fn restart(tmp: &Path, n: usize, samples: usize) -> Restart {
    let shape = Shape::new(n);
    let dir = ensure_store(tmp, shape);
    let as_of = shape.as_of();
    let probe = key(n as u64 / 2);
    let mut r = Restart {
        n,
        store_bytes: dir_bytes(&dir),
        wal_bytes: dir_bytes(&dir.join("wal")),
        ..Restart::default()
    };
    {
        let store = Store::open(&dir).unwrap();
        r.batches = store.sealed(STREAM).unwrap().batches.len();
    }
    eprintln!("restart: {n} updates, {} batch file(s)", r.batches);
    // One untimed open first, so the page cache holds the store for the warm runs.
    open_trace(&dir, &probe, as_of);
    for _ in 0..samples {
        let (open, total) = open_get(&dir, STREAM, &probe, as_of);
        r.open.push(open);
        r.open_get.push(total);
        r.open_trace.push(open_trace(&dir, &probe, as_of));
    }
    r.cold_ok = evict(&dir);
    if r.cold_ok {
        for _ in 0..samples {
            evict(&dir);
            r.cold_open_get.push(open_get(&dir, STREAM, &probe, as_of).1);
            evict(&dir);
            r.cold_open_trace.push(open_trace(&dir, &probe, as_of));
        }
    }
    let order = key_order(n);
    for _ in 0..samples {
        let sorted = updates(shape, order.iter().map(|&i| i as usize));
        let start = Instant::now();
        let batch = build_bytes(sorted);
        r.rebuild_bytes.push(start.elapsed());
        assert_eq!(batch.updates, n);
        drop(batch);
        let sorted = updates(shape, order.iter().map(|&i| i as usize));
        let start = Instant::now();
        let batch = build_vec(sorted);
        r.rebuild_vec.push(start.elapsed());
        assert_eq!(batch.updates, n);
        drop(batch);
    }
    drop(order);
    // Arrival order (by index: keys unsorted), in chunks as an `arrange` would receive them.
    let mut chunks: Vec<Vec<BytesUpdate>> = (0..n)
        .step_by(CHUNK)
        .map(|lo| updates(shape, lo..(lo + CHUNK).min(n)))
        .collect();
    let start = Instant::now();
    let mut batcher = BytesBatcher::new(None, 0);
    for chunk in chunks.iter_mut() {
        batcher.insert(chunk);
    }
    let upper = Antichain::from_elem(shape.seals() as u64);
    let (batch, _) = batcher.extract(upper.borrow());
    r.batcher.push(start.elapsed());
    assert_eq!(batch.map_or(0, |b| b.updates), n);
    r
}

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

/// A row comparing `ours` to `base` (times; `at_most` = goal on ours / base, or `at_least` on base / ours).
fn row(figure: &str, ours: Option<Duration>, base: Option<Duration>, unit: (&str, f64), goal: Goal) -> Row {
    let (name, per) = unit;
    let fmt = |d: Option<Duration>| {
        d.map_or("-".into(), |d| {
            let x = d.as_secs_f64() / per;
            match name {
                "ns/lookup" | "ns/update" => format!("{x:.1} {name}"),
                _ => format!("{:.3} {name}", x),
            }
        })
    };
    let (ratio, goal_s, met) = match (ours, base) {
        (Some(o), Some(b)) => {
            let (o, b) = (o.as_secs_f64(), b.as_secs_f64());
            match goal {
                Goal::AtMost(g) => (format!("{:.2}x", o / b), format!("<= {g}x"), yes(o / b <= g)),
                Goal::AtLeast(g) => (
                    format!("{:.1}x faster", b / o),
                    format!(">= {g}x faster"),
                    yes(b / o >= g),
                ),
                Goal::None => (format!("{:.2}x", o / b), "-".into(), "-".into()),
                Goal::Faster => (format!("{:.1}x faster", b / o), "-".into(), "-".into()),
            }
        }
        _ => ("-".into(), "-".into(), "-".into()),
    };
    Row {
        figure: figure.into(),
        ours: fmt(ours),
        baseline: fmt(base),
        ratio,
        goal: goal_s,
        met,
    }
}

#[derive(Clone, Copy)]
enum Goal {
    /// ours / baseline at most this.
    AtMost(f64),
    /// baseline / ours at least this.
    AtLeast(f64),
    /// No goal: ours / baseline.
    None,
    /// No goal: baseline / ours.
    Faster,
}

fn summary(scan_n: Option<usize>, restart: Option<&Restart>) {
    let seen = SEEN.lock().unwrap();
    let m = |k: &str| seen.get(k).and_then(|v| median(v));
    let mut rows = Vec::new();
    if let Some(n) = scan_n {
        let per_update = ("ns/update", 1e-9 * n as f64);
        let per_lookup = ("ns/lookup", 1e-9 * LOOKUPS as f64);
        rows.push(row(
            &format!("full scan, {n} updates: persisted vs in-memory BytesBatch"),
            m("scan/persisted"),
            m("scan/inmem_bytes"),
            per_update,
            Goal::AtMost(1.1),
        ));
        rows.push(row(
            "full scan: persisted vs in-memory Vector layout (diagnostic)",
            m("scan/persisted"),
            m("scan/inmem_vec"),
            per_update,
            Goal::None,
        ));
        rows.push(row(
            "typed full scan (u64 key, 100-char String val, decoded): persisted vs DD OrdValSpine",
            m("typed_scan/persisted_typed"),
            m("typed_scan/inmem_ordvalspine"),
            per_update,
            Goal::AtMost(1.2),
        ));
        rows.push(row(
            "typed store, byte cursor (no decoding) vs DD OrdValSpine (diagnostic)",
            m("typed_scan/persisted_bytes"),
            m("typed_scan/inmem_ordvalspine"),
            per_update,
            Goal::None,
        ));
        rows.push(row(
            "full scan through cursor_list, both sides (diagnostic)",
            m("scan/persisted_cursor_list"),
            m("scan/inmem_bytes_cursor_list"),
            per_update,
            Goal::None,
        ));
        for what in ["hit", "miss"] {
            rows.push(row(
                &format!("seek_key {what}, fresh cursor per lookup"),
                m(&format!("lookup/seek_fresh_{what}/persisted")),
                m(&format!("lookup/seek_fresh_{what}/inmem_bytes")),
                per_lookup,
                Goal::AtMost(1.5),
            ));
            rows.push(row(
                &format!("Store::get_bytes {what} vs in-memory seek_key"),
                m(&format!("lookup/get_bytes_{what}/persisted")),
                m(&format!("lookup/seek_fresh_{what}/inmem_bytes")),
                per_lookup,
                Goal::AtMost(1.5),
            ));
            rows.push(row(
                &format!("seek_key {what}, sorted keys, one cursor (diagnostic)"),
                m(&format!("lookup/seek_sorted_{what}/persisted")),
                m(&format!("lookup/seek_sorted_{what}/inmem_bytes")),
                per_lookup,
                Goal::None,
            ));
        }
    }
    if let Some(r) = restart {
        let ms = ("ms", 1e-3);
        // The strictest baseline: the faster of the two in-memory rebuilds from a sorted Vec.
        let (bytes, vec) = (median(&r.rebuild_bytes), median(&r.rebuild_vec));
        let (rebuild, which) = match (bytes, vec) {
            (Some(b), Some(v)) if v < b => (Some(v), "Vector"),
            _ => (bytes, "BytesBuilder"),
        };
        let n = r.n;
        let figures = [
            ("open only (warm)", median(&r.open)),
            ("open + first get_bytes (warm)", median(&r.open_get)),
            ("open + trace ready + first seek (warm)", median(&r.open_trace)),
            ("open + first get_bytes (cold)", median(&r.cold_open_get)),
            (
                "open + trace ready + first seek (cold)",
                median(&r.cold_open_trace),
            ),
        ];
        for (what, d) in figures {
            let goal = if what.contains("only") {
                Goal::Faster
            } else {
                Goal::AtLeast(100.0)
            };
            rows.push(row(
                &format!("restart, {n} updates: {what} vs in-memory rebuild ({which})"),
                d,
                rebuild,
                ms,
                goal,
            ));
        }
        for (what, v) in [
            ("BytesBuilder from sorted Vec", &r.rebuild_bytes),
            ("Vector builder from sorted Vec", &r.rebuild_vec),
            ("BytesBatcher from unsorted Vec (sort + build)", &r.batcher),
        ] {
            rows.push(row(
                &format!("in-memory rebuild, {n} updates: {what}"),
                median(v),
                None,
                ms,
                Goal::None,
            ));
        }
        println!(
            "\nRestart store: {} updates, {} batch file(s), {:.1} MB on disk ({:.1} MB WAL); {} samples \
             per figure (median); cold = page cache dropped per file with dd iflag=nocache{}",
            r.n,
            r.batches,
            r.store_bytes as f64 / 1e6,
            r.wal_bytes as f64 / 1e6,
            r.rebuild_bytes.len(),
            if r.cold_ok { "" } else { " (unavailable here)" }
        );
    }
    if rows.is_empty() {
        return;
    }
    println!("\nSummary: median per iteration (warm-up included)\n");
    print_table("ours", "baseline", &rows);
}

/// Typed val `i`: 100 characters (hex digits of a pseudo-random sequence).
fn typed_val(i: u64) -> String {
    let mut out = String::with_capacity(100);
    let mut s = i ^ 0x5555_5555_5555_5555;
    while out.len() < 100 {
        s = splitmix64(s);
        out.push_str(&format!("{s:016x}"));
    }
    out.truncate(100);
    out
}

/// DD's in-memory batch of the typed updates.
type TypedBatch = OrdValBatch<Vector<((u64, String), u64, i64)>>;

/// What a typed walk saw: keys, vals, updates, the sum of the keys, of the vals' lengths and last bytes,
/// of the times and of the diffs.
type TypedSums = (u64, u64, u64, u64, u64, u64, u64);

/// The typed walk over DD's in-memory batch (`&u64` keys, `&String` vals).
fn scan_inmem_typed(batch: &TypedBatch) -> TypedSums {
    let mut s: TypedSums = Default::default();
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        s.0 += 1;
        s.3 = s.3.wrapping_add(*key);
        while let Some(val) = cursor.get_val(batch) {
            s.1 += 1;
            s.4 += val.len() as u64 + u64::from(val.as_bytes()[val.len() - 1]);
            cursor.map_times(batch, |t, d| {
                s.2 += 1;
                s.5 = s.5.wrapping_add(*t);
                s.6 = s.6.wrapping_add(*d as u64);
            });
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
    s
}

/// The typed walk over the persisted batch: each key decoded as `u64`, each val as `String`.
fn scan_persisted_typed(batch: &PersistedBatch) -> TypedSums {
    use ddpersist::Codec;
    let mut s: TypedSums = Default::default();
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        let key = u64::decode(key).expect("a u64 key");
        s.0 += 1;
        s.3 = s.3.wrapping_add(key);
        while let Some(val) = cursor.get_val(batch) {
            let val = String::decode(val).expect("a String val");
            s.1 += 1;
            s.4 += val.len() as u64 + u64::from(val.as_bytes()[val.len() - 1]);
            cursor.map_times(batch, |t, d| {
                s.2 += 1;
                s.5 = s.5.wrapping_add(t);
                s.6 = s.6.wrapping_add(d as u64);
            });
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
    s
}

/// Part 4: the typed store, DD's typed batch, and the three walks.
fn typed_benches(c: &mut Criterion, n: usize) {
    use ddpersist::Codec;
    let dir = tempfile_dir();
    let shape = Shape::new(n);
    let store = Store::open_with(
        &dir,
        Options {
            compaction_threads: 0,
            memtable_budget_bytes: 1 << 30,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream(STREAM, StreamOptions::default()).unwrap();
    let mut sorted: Vec<((u64, String), u64, i64)> = Vec::with_capacity(n);
    for s in 0..shape.seals() {
        let (lo, hi) = (s * shape.seal, ((s + 1) * shape.seal).min(n));
        let mut encoded = Vec::with_capacity(hi - lo);
        for i in lo..hi {
            let (k, v) = (splitmix64(i as u64), typed_val(i as u64));
            encoded.push((k.to_bytes(), v.to_bytes()));
            sorted.push(((k, v), s as u64, 1));
        }
        store
            .write_bytes(
                STREAM,
                encoded.iter().map(|(k, v)| (&k[..], &v[..], s as u64, 1i64)),
            )
            .unwrap();
        store.seal(STREAM, s as u64 + 1).unwrap();
    }
    store.compact(STREAM).unwrap();
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let ours = persisted_batch(&mut trace);
    sorted.sort_unstable();
    let mut builder = VecOrdValBuilder::<u64, String, u64, i64>::with_capacity(n, n, n);
    builder.push(&mut sorted);
    let inmem: TypedBatch = builder.done().unwrap();
    drop(sorted);

    let want = scan_inmem_typed(&inmem);
    assert_eq!(want.2, n as u64);
    assert_eq!(scan_persisted_typed(&ours), want);

    let gname = "typed_scan";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 3);
    g.throughput(Throughput::Elements(n as u64));
    bench(&mut g, gname, "persisted_typed", || scan_persisted_typed(&ours));
    bench(&mut g, gname, "inmem_ordvalspine", || scan_inmem_typed(&inmem));
    bench(&mut g, gname, "persisted_bytes", || {
        scan(&mut ours.cursor(), &ours)
    });
    g.finish();
    drop((ours, trace, store));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("read-bench-typed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn main() {
    let full = common::full_run();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    eprintln!("stores under {}", tmp.display());
    let restart_n = env_or(
        "DDPERSIST_BENCH_UPDATES",
        if full { RESTART_UPDATES } else { 20_000 },
    );
    // Parts 1 and 2 read at most as many updates as the restart store holds (0 skips only the restart).
    let scan_default = if full { SCAN_UPDATES } else { 20_000 };
    let scan_n = match restart_n {
        0 => scan_default,
        n => scan_default.min(n).max(1_000),
    };
    let mut c = Criterion::default().configure_from_args();
    let listing = common::has_arg("--list");
    if !listing {
        read_benches(&mut c, tmp, Shape::new(scan_n));
        typed_benches(&mut c, scan_n);
    }
    c.final_summary();
    let samples = if full { RESTART_SAMPLES } else { 1 };
    let r = (restart_n > 0 && !listing).then(|| restart(tmp, restart_n, samples));
    summary((!listing).then_some(scan_n), r.as_ref());
}
