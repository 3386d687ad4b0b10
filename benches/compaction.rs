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

mod common;

use common::{env_or, hex_key, median, process_cpu, seq_write, splitmix64};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::batch::format::DEFAULT_BLOCK_TARGET_BYTES;
use ddpersist::batch::{batch_file_name, parse_batch_file_name, BatchFile, BatchWriter};
use ddpersist::blob::{Blob, BlobBytes, BlobWriter, DirBlob};
use ddpersist::compaction::{level_of, merge_batches, pick_merge, pick_space_amp, KeyMerge};
use ddpersist::wal::{FileLog, Log, Lsn, ReplayReport, WalRecovery};
use ddpersist::{Description, Options, Store, StreamOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY_BYTES: usize = 16;
const VAL_BYTES: usize = 100;
/// Logical bytes of one update (key + val), the denominator of write and space amplification.
const LOGICAL_BYTES: u64 = (KEY_BYTES + VAL_BYTES) as u64;
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

// ---------------------------------------------------------------------------------------------------------
// Heap accounting: a global allocator that tracks live and peak heap bytes (for "heap a merge holds").

struct CountingAlloc;

static HEAP: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn heap_grew(bytes: usize) {
    let now = HEAP.fetch_add(bytes, Relaxed) + bytes;
    HEAP_PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_sub(layout.size(), Relaxed);
            heap_grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Starts a heap measurement: returns the live heap now and resets the peak to it.
fn heap_mark() -> usize {
    let now = HEAP.load(Relaxed);
    HEAP_PEAK.store(now, Relaxed);
    now
}

/// Peak heap above `mark` since `heap_mark`.
fn heap_peak_since(mark: usize) -> usize {
    HEAP_PEAK.load(Relaxed).saturating_sub(mark)
}

// ---------------------------------------------------------------------------------------------------------
// Data.

/// A 16-byte key: 16 hex digits of a splitmix64 of `i` (as in benches/ingest.rs).
fn key_of(i: u64) -> [u8; KEY_BYTES] {
    hex_key(i)
}

/// Appends a 100-byte pseudo-random val derived from `seed`.
fn push_val(seed: u64, out: &mut Vec<u8>) {
    let mut s = seed;
    let mut left = VAL_BYTES;
    while left > 0 {
        s = splitmix64(s);
        let n = left.min(8);
        out.extend_from_slice(&s.to_le_bytes()[..n]);
        left -= n;
    }
}

/// CPU time this thread has run (`/proc/thread-self/schedstat`, ns; zero where unavailable). Other
/// processes on the machine inflate wall time, much less this.
fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// CPU time of this process's threads whose name starts with `prefix` (from `/proc/self/task`).
fn threads_cpu(prefix: &str) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

// ---------------------------------------------------------------------------------------------------------
// Part 1: merge throughput.

/// Where a merge's output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// A new object of the `DirBlob` (written, fsync'd, renamed).
    Dir,
    /// A writer that counts and discards: the merge's CPU cost alone.
    Null,
    /// No output at all: only the merge iterator over the inputs runs.
    IterOnly,
}

#[derive(Clone, Copy)]
struct MergeCase {
    name: &'static str,
    compress: bool,
    filter_bits_per_key: u32,
    sink: Sink,
}

const MERGE_CASES: [MergeCase; 7] = [
    MergeCase {
        name: "merge_raw",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "merge_lz4",
        compress: true,
        filter_bits_per_key: 10,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "diag_raw_no_filter",
        compress: false,
        filter_bits_per_key: 0,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "diag_raw_to_null",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_raw_no_filter_to_null",
        compress: false,
        filter_bits_per_key: 0,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_lz4_to_null",
        compress: true,
        filter_bits_per_key: 10,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_raw_iter_only",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::IterOnly,
    },
];

/// A `BlobWriter` that counts bytes and keeps none.
#[derive(Default)]
struct NullWriter {
    len: u64,
}

impl BlobWriter for NullWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        self.len += std::hint::black_box(bytes).len() as u64;
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        Ok(())
    }
}

/// A `BlobWriter` that adds the time spent in its inner writer's `write` and `commit` to `nanos[0]` and
/// `nanos[1]`: where a merge into a file waits for the kernel.
struct TimedWriter {
    inner: Box<dyn BlobWriter>,
    nanos: Arc<[AtomicU64; 2]>,
}

impl BlobWriter for TimedWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        let t0 = Instant::now();
        let r = self.inner.write(bytes);
        self.nanos[0].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        r
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        let t0 = Instant::now();
        let r = self.inner.commit();
        self.nanos[1].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        r
    }
}

/// Input batch files of one encoding, in one directory.
struct MergeInputs {
    _dir: tempfile::TempDir,
    blob: DirBlob,
    names: Vec<String>,
    /// Sum of the input files' sizes.
    bytes: u64,
    updates: u64,
}

/// Writes [`merge_inputs`] sorted batches of `per_input` updates, as a seal would (filter, compression).
fn write_inputs(tmp: &Path, per_input: usize, compress: bool) -> MergeInputs {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let blob = DirBlob::open(dir.path()).unwrap();
    let (mut names, mut bytes) = (Vec::new(), 0);
    let mut val = Vec::with_capacity(VAL_BYTES);
    for j in 0..merge_inputs() {
        let mut keys: Vec<([u8; KEY_BYTES], u64)> = (0..per_input as u64)
            .map(|i| {
                let n = (j * per_input) as u64 + i;
                (key_of(n), n)
            })
            .collect();
        keys.sort_unstable();
        let name = batch_file_name(j as u64);
        let description = Description {
            lower: j as u64,
            upper: j as u64 + 1,
            since: 0,
        };
        let mut writer = BatchWriter::new(
            blob.create(&name).unwrap(),
            description,
            DEFAULT_BLOCK_TARGET_BYTES,
        )
        .unwrap()
        .with_filter(per_input as u64, 10)
        .with_compression(compress);
        for (k, n) in &keys {
            val.clear();
            push_val(n ^ 0x5555_5555_5555_5555, &mut val);
            writer.push(k, &val, j as u64, 1).unwrap();
        }
        bytes += writer.finish().unwrap().size_bytes;
        names.push(name);
    }
    MergeInputs {
        _dir: dir,
        blob,
        names,
        bytes,
        updates: (merge_inputs() * per_input) as u64,
    }
}

/// What one merge iteration did, beyond its time.
#[derive(Clone, Copy, Default)]
struct MergeResult {
    out_bytes: u64,
    heap_peak: usize,
    /// CPU time of the merging thread.
    cpu: Duration,
    /// CPU time of the whole process (the merging thread and its helper).
    cpu_all: Duration,
    /// Time inside the output file's `write` calls and its `commit` (fsync, rename, directory fsync).
    write: Duration,
    commit: Duration,
}

/// One iteration: reopen the inputs (untimed), merge (timed), drop inputs and delete the output (untimed).
fn merge_iteration(inputs: &MergeInputs, case: MergeCase) -> (Duration, MergeResult) {
    let batches: Vec<Arc<BatchFile>> = inputs
        .names
        .iter()
        .map(|n| Arc::new(BatchFile::open(n.clone(), inputs.blob.get(n).unwrap().unwrap()).unwrap()))
        .collect();
    let k = batches.len() as u64;
    // Times are advanced to the since, as in a store whose since has moved past both inputs.
    let description = Description {
        lower: 0,
        upper: k,
        since: k - 1,
    };
    let options = Options {
        compress_from_level: case.compress.then_some(0),
        filter_bits_per_key: case.filter_bits_per_key,
        ..Options::default()
    };
    let stop = AtomicBool::new(false);
    let nanos = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mark = heap_mark();
    let cpu0 = thread_cpu();
    let all0 = process_cpu();
    let start = Instant::now();
    let out_bytes = match case.sink {
        Sink::Dir | Sink::Null => {
            let out: Box<dyn BlobWriter> = match case.sink {
                Sink::Dir => Box::new(TimedWriter {
                    inner: inputs.blob.create(OUT).unwrap(),
                    nanos: nanos.clone(),
                }),
                _ => Box::<NullWriter>::default(),
            };
            let stats = merge_batches(&batches, description, out, &options, &stop)
                .unwrap()
                .unwrap();
            assert_eq!(stats.update_count, inputs.updates);
            stats.size_bytes
        }
        Sink::IterOnly => {
            // The merge `merge_batches` runs, without the output.
            let refs: Vec<&BatchFile> = batches.iter().map(|b| &**b).collect();
            let mut merge = KeyMerge::new(&refs, description.since).unwrap();
            let (mut n, mut sum) = (0u64, 0u64);
            let mut emit = |key: &[u8], val: &[u8], time: u64, diff: i64| {
                n += 1;
                sum = sum.wrapping_add(key.len() as u64 + val.len() as u64 + time + diff as u64);
                Ok(())
            };
            while merge.next_key(&mut emit).unwrap() {}
            assert_eq!(n, inputs.updates);
            std::hint::black_box(sum);
            0
        }
    };
    let elapsed = start.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    let cpu_all = process_cpu().saturating_sub(all0);
    let heap_peak = heap_peak_since(mark);
    drop(batches);
    if case.sink == Sink::Dir {
        inputs.blob.delete(OUT).unwrap();
    }
    let [write, commit] = [0, 1].map(|i| Duration::from_nanos(nanos[i].load(Relaxed)));
    (
        elapsed,
        MergeResult {
            out_bytes,
            heap_peak,
            cpu,
            cpu_all,
            write,
            commit,
        },
    )
}

/// Per benchmark: per-iteration durations (warm-up included), and for merges bytes in / out and peak heap.
#[derive(Default)]
struct Seen {
    times: Vec<Duration>,
    in_bytes: u64,
    out_bytes: u64,
    updates: u64,
    heap_peak: usize,
    /// Per iteration: time in the output's `write` calls and in its `commit`.
    io: Vec<(Duration, Duration)>,
    /// Per iteration: CPU time of the merging thread.
    cpu: Vec<Duration>,
    /// Per iteration: CPU time of the process (merging thread and helper thread).
    cpu_all: Vec<Duration>,
}

static SEEN: Mutex<BTreeMap<String, Seen>> = Mutex::new(BTreeMap::new());

fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));
}

fn merge_benches(c: &mut Criterion, tmp: &Path, per_input: usize) {
    let raw = write_inputs(tmp, per_input, false);
    let lz4 = write_inputs(tmp, per_input, true);
    // The baseline writes as many bytes as the raw merge's output.
    let (_, probe) = merge_iteration(&raw, MERGE_CASES[0]);
    let baseline_bytes = probe.out_bytes;
    let fill: Vec<u8> = (0..1u64 << 17)
        .flat_map(|i| splitmix64(i).to_le_bytes())
        .collect();

    let gname = "merge";
    let mut g = c.benchmark_group(gname);
    configure(&mut g);
    for case in MERGE_CASES {
        let inputs = if case.compress { &lz4 } else { &raw };
        let key = format!("{gname}/{}", case.name);
        let expect = if case.sink == Sink::IterOnly {
            inputs.bytes
        } else if case.compress {
            merge_iteration(inputs, case).1.out_bytes
        } else {
            baseline_bytes
        };
        g.throughput(Throughput::Bytes(expect));
        g.bench_function(case.name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (t, r) = merge_iteration(inputs, case);
                    total += t;
                    let mut seen = SEEN.lock().unwrap();
                    let s = seen.entry(key.clone()).or_default();
                    s.times.push(t);
                    (s.in_bytes, s.out_bytes, s.updates) = (inputs.bytes, r.out_bytes, inputs.updates);
                    s.heap_peak = s.heap_peak.max(r.heap_peak);
                    s.io.push((r.write, r.commit));
                    s.cpu.push(r.cpu);
                    s.cpu_all.push(r.cpu_all);
                }
                total
            })
        });
    }
    g.throughput(Throughput::Bytes(baseline_bytes));
    g.bench_function(BASELINE, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t = seq_write(tmp, &fill, baseline_bytes, None);
                total += t;
                let mut seen = SEEN.lock().unwrap();
                let s = seen.entry(format!("{gname}/{BASELINE}")).or_default();
                s.times.push(t);
                s.out_bytes = baseline_bytes;
            }
            total
        })
    });
    g.finish();
}

/// Prints each merge benchmark's median (and best) time as input and output MB/s, the output rate's ratio
/// to the sequential baseline of the same run, the merging thread's CPU time, and where file I/O waited.
fn merge_summary(per_input: usize) {
    let mut seen = SEEN.lock().unwrap();
    if seen.is_empty() {
        return;
    }
    let min = |v: &[Duration]| v.iter().min().copied().unwrap_or_default();
    let base = seen.get_mut(&format!("merge/{BASELINE}")).map(|s| {
        let bytes = mb(s.out_bytes);
        (
            bytes / median(&mut s.times).as_secs_f64(),
            bytes / min(&s.times).as_secs_f64(),
        )
    });
    println!(
        "\nSummary (merge): {} inputs x {per_input} updates; MB = 10^6 bytes; per benchmark, over \
         its iterations (warm-up included): median and min wall ms, median CPU ms of the merging thread \
         (cpu) and of the whole process (all: the merging thread plus the batch writer's helper I/O thread); \
         out MB/s = output file bytes / median time; vs seq = out MB/s / baseline MB/s, on medians and on \
         mins (for to_null / iter_only diagnostics: what the rate would be with a free disk); cpu MB/s = \
         output (or input, iter_only) bytes / process CPU time; heap = peak heap the merge held; write / commit = \
         median ms inside the output file's write calls (on the helper thread, overlapped with merging) / its \
         commit (fsync, rename, directory fsync)",
        merge_inputs()
    );
    println!(
        "{:<40} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>6} {:>6} {:>7} {:>6} {:>7} {:>5} {:>6}",
        "benchmark",
        "med ms",
        "min ms",
        "cpu ms",
        "all ms",
        "in MB",
        "out MB",
        "in MB/s",
        "out MB/s",
        "vs seq",
        "(min)",
        "cpu MB/s",
        "Mupd/s",
        "heap MB",
        "write",
        "commit"
    );
    for (k, s) in seen.iter_mut() {
        let secs = median(&mut s.times).as_secs_f64();
        let best = min(&s.times).as_secs_f64();
        let cpu = if s.cpu.is_empty() {
            0.0
        } else {
            median(&mut s.cpu).as_secs_f64()
        };
        let cpu_all = if s.cpu_all.is_empty() {
            0.0
        } else {
            median(&mut s.cpu_all).as_secs_f64()
        };
        let out_rate = mb(s.out_bytes) / secs;
        let dash = |show: bool, x: String| if show { x } else { "-".to_string() };
        let is_merge = s.updates > 0;
        let has_io = s.io.iter().any(|io| io.1 > Duration::ZERO);
        let mut writes: Vec<Duration> = s.io.iter().map(|io| io.0).collect();
        let mut commits: Vec<Duration> = s.io.iter().map(|io| io.1).collect();
        let ms = |v: &mut Vec<Duration>| match v.is_empty() {
            true => "-".to_string(),
            false => format!("{:.0}", median(v).as_secs_f64() * 1e3),
        };
        let ratio = |rate: f64, base: f64| format!("{:.0}%", 100.0 * rate / base);
        let cpu_bytes = if s.out_bytes > 0 { s.out_bytes } else { s.in_bytes };
        println!(
            "{:<40} {:>7.1} {:>7.1} {:>7} {:>7} {:>6} {:>6} {:>7} {:>8} {:>6} {:>6} {:>7} {:>6} {:>7} {:>5} {:>6}",
            k.trim_start_matches("merge/"),
            secs * 1e3,
            best * 1e3,
            dash(cpu > 0.0, format!("{:.1}", cpu * 1e3)),
            dash(cpu_all > 0.0, format!("{:.1}", cpu_all * 1e3)),
            dash(is_merge, format!("{:.1}", mb(s.in_bytes))),
            dash(s.out_bytes > 0, format!("{:.1}", mb(s.out_bytes))),
            dash(is_merge, format!("{:.0}", mb(s.in_bytes) / secs)),
            dash(s.out_bytes > 0, format!("{out_rate:.0}")),
            dash(
                s.out_bytes > 0 && base.is_some(),
                ratio(out_rate, base.map_or(1.0, |b| b.0))
            ),
            dash(
                s.out_bytes > 0 && base.is_some(),
                ratio(mb(s.out_bytes) / best, base.map_or(1.0, |b| b.1))
            ),
            dash(cpu_all > 0.0, format!("{:.0}", mb(cpu_bytes) / cpu_all)),
            dash(is_merge, format!("{:.2}", s.updates as f64 / secs / 1e6)),
            dash(is_merge, format!("{:.1}", mb(s.heap_peak as u64))),
            dash(has_io, ms(&mut writes)),
            dash(has_io, ms(&mut commits)),
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// Part 2: write and space amplification.

/// Bytes written, by destination.
#[derive(Default)]
struct Counters {
    batch_bytes: AtomicU64,
    batch_files: AtomicU64,
    other_bytes: AtomicU64,
    wal_bytes: AtomicU64,
    wal_records: AtomicU64,
}

/// A `DirBlob` that counts the bytes written to each object (batch files apart from the rest).
struct CountingBlob {
    inner: DirBlob,
    counters: Arc<Counters>,
}

struct CountingWriter {
    inner: Box<dyn BlobWriter>,
    counters: Arc<Counters>,
    batch: bool,
}

impl BlobWriter for CountingWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        let c = if self.batch {
            &self.counters.batch_bytes
        } else {
            &self.counters.other_bytes
        };
        c.fetch_add(bytes.len() as u64, Relaxed);
        self.inner.write(bytes)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        self.inner.commit()
    }
}

impl CountingBlob {
    /// `inner`, writing object `name`, with its bytes counted.
    fn counted(&self, name: &str, inner: Box<dyn BlobWriter>) -> ddpersist::Result<Box<dyn BlobWriter>> {
        let batch = parse_batch_file_name(name).is_some();
        if batch {
            self.counters.batch_files.fetch_add(1, Relaxed);
        }
        Ok(Box::new(CountingWriter {
            inner,
            counters: self.counters.clone(),
            batch,
        }))
    }
}

impl Blob for CountingBlob {
    fn get(&self, name: &str) -> ddpersist::Result<Option<BlobBytes>> {
        self.inner.get(name)
    }
    fn create(&self, name: &str) -> ddpersist::Result<Box<dyn BlobWriter>> {
        self.counted(name, self.inner.create(name)?)
    }
    fn create_new(&self, name: &str) -> ddpersist::Result<Box<dyn BlobWriter>> {
        self.counted(name, self.inner.create_new(name)?)
    }
    fn delete(&self, name: &str) -> ddpersist::Result<()> {
        self.inner.delete(name)
    }
    fn list(&self) -> ddpersist::Result<Vec<String>> {
        self.inner.list()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// A `FileLog` that counts the log bytes appended (records with their 16-byte headers).
struct CountingLog {
    inner: FileLog,
    counters: Arc<Counters>,
}

impl Log for CountingLog {
    fn replay(
        &self,
        f: &mut dyn FnMut(Lsn, &[u8]) -> ddpersist::Result<()>,
    ) -> ddpersist::Result<ReplayReport> {
        self.inner.replay(f)
    }
    fn append(&self, payload: &[u8]) -> ddpersist::Result<(Lsn, Lsn)> {
        let (start, end) = self.inner.append(payload)?;
        self.counters.wal_bytes.fetch_add(end - start, Relaxed);
        self.counters.wal_records.fetch_add(1, Relaxed);
        Ok((start, end))
    }
    fn sync(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.inner.sync(lsn)
    }
    fn release_before(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.inner.release_before(lsn)
    }
    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }
    fn record_format(&self) -> ddpersist::wal::record::RecordFormat {
        self.inner.record_format()
    }

    fn takes_seal_records(&self) -> bool {
        self.inner.takes_seal_records()
    }

    fn next_lsn(&self) -> Option<Lsn> {
        self.inner.next_lsn()
    }

    fn bind_store(&self, store_id: u32) {
        self.inner.bind_store(store_id)
    }
}

struct AmpConfig {
    updates: u64,
    keys: usize,
    lag: u64,
    compaction_threads: usize,
    fan_in: usize,
    /// `Options::max_space_amplification_percent` (0: off).
    space_amp: u32,
}

/// Upserts over a fixed key space: each key's current version (0 = absent); version `v` of key `k` has the
/// val `push_val(k << 32 | v)`.
struct Upserts {
    keys: Vec<[u8; KEY_BYTES]>,
    version: Vec<u32>,
    counter: u64,
}

impl Upserts {
    fn new(keys: usize) -> Self {
        Upserts {
            keys: (0..keys as u64).map(|i| key_of(i ^ 0xABCD_0000_0000)).collect(),
            version: vec![0; keys],
            counter: 0,
        }
    }

    /// Appends one upsert of a random key to `records` (key, val) and `diffs`; returns updates added.
    fn push(&mut self, records: &mut Vec<u8>, diffs: &mut Vec<i64>) -> usize {
        self.counter += 1;
        let k = (splitmix64(self.counter ^ 0x1234_5678) % self.keys.len() as u64) as usize;
        let v = self.version[k];
        let mut added = 0;
        if v > 0 {
            records.extend_from_slice(&self.keys[k]);
            push_val(((k as u64) << 32) | v as u64, records);
            diffs.push(-1);
            added += 1;
        }
        self.version[k] = v + 1;
        records.extend_from_slice(&self.keys[k]);
        push_val(((k as u64) << 32) | (v + 1) as u64, records);
        diffs.push(1);
        added + 1
    }

    /// Keys with a current val: the (key, val) pairs of the fully consolidated contents.
    fn live_pairs(&self) -> u64 {
        self.version.iter().filter(|&&v| v > 0).count() as u64
    }
}

/// The `.batch` files in `dir` now, whatever the manifest says (retired inputs not yet deleted included):
/// their count and bytes, and the bytes of `.batch.tmp` files (seal and merge outputs being written). Files
/// that vanish while listed are skipped.
fn batch_files_on_disk(dir: &Path) -> (usize, u64, u64) {
    let mut out = (0, 0, 0);
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(len) = e.metadata().map(|m| m.len()) else {
            continue;
        };
        if parse_batch_file_name(&name).is_some() {
            out.0 += 1;
            out.1 += len;
        } else if name.ends_with(".batch.tmp") {
            out.2 += len;
        }
    }
    out
}

fn amplification(tmp: &Path, cfg: &AmpConfig) {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let counters = Arc::new(Counters::default());
    let blob = CountingBlob {
        inner: DirBlob::open(dir.path()).unwrap(),
        counters: counters.clone(),
    };
    let log = CountingLog {
        inner: FileLog::open(dir.path().join("wal"), 64 << 20, WalRecovery::Strict).unwrap(),
        counters: counters.clone(),
    };
    let options = Options {
        compaction_threads: cfg.compaction_threads,
        merge_fan_in: cfg.fan_in,
        max_space_amplification_percent: (cfg.space_amp > 0).then_some(cfg.space_amp),
        ..Options::default()
    };
    let store = Store::open_on(Arc::new(blob), Arc::new(log), options.clone()).unwrap();
    let id = "upserts";
    store.create_stream(id, StreamOptions::default()).unwrap();
    let mut gen = Upserts::new(cfg.keys);
    eprintln!(
        "amplification: {} updates of upserts over {} keys, seal every {SEAL_EVERY}, since = upper - {}, \
         compaction_threads {}, merge fan-in {}, space-amplification trigger {}% (0: off), in {}",
        cfg.updates,
        cfg.keys,
        cfg.lag,
        cfg.compaction_threads,
        cfg.fan_in,
        cfg.space_amp,
        dir.path().display()
    );
    let heap_mark = heap_mark();
    let (mut records, mut diffs) = (Vec::new(), Vec::new());
    let (mut emitted, mut since_seal, mut upper) = (0u64, 0usize, 0u64);
    let (mut t_write, mut t_seal, mut t_since) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let (mut seal_bytes, mut seals, mut max_batches, mut sum_batches) = (0u64, 0u64, 0usize, 0usize);
    // Peak bytes of the batches the manifest names, and of every batch file on disk, sampled after seals.
    let (mut max_live, mut max_disk, mut max_live_at) = (0u64, 0u64, 0u64);
    let mut next_report = cfg.updates / 10;
    let main_cpu0 = thread_cpu();
    let all_cpu0 = process_cpu();
    let start = Instant::now();
    while emitted < cfg.updates {
        records.clear();
        diffs.clear();
        let mut n = 0;
        while n < CHUNK && emitted + (n as u64) < cfg.updates {
            n += gen.push(&mut records, &mut diffs);
        }
        let rec = KEY_BYTES + VAL_BYTES;
        let updates = records
            .chunks_exact(rec)
            .zip(&diffs)
            .map(|(r, &d)| (&r[..KEY_BYTES], &r[KEY_BYTES..], upper, d));
        let t0 = Instant::now();
        store.write_bytes(id, updates).unwrap();
        t_write += t0.elapsed();
        emitted += n as u64;
        since_seal += n;
        if since_seal >= SEAL_EVERY || emitted >= cfg.updates {
            let t0 = Instant::now();
            let info = store.seal(id, upper + 1).unwrap();
            t_seal += t0.elapsed();
            upper += 1;
            seals += 1;
            since_seal = 0;
            seal_bytes += info.batch.as_ref().map_or(0, |b| b.size_bytes());
            if upper > cfg.lag {
                let t0 = Instant::now();
                store.allow_compaction(id, upper - cfg.lag).unwrap();
                t_since += t0.elapsed();
            }
            let batches = store.sealed(id).unwrap().batches;
            max_batches = max_batches.max(batches.len());
            sum_batches += batches.len();
            let live: u64 = batches.iter().map(|b| b.size_bytes()).sum();
            if live > max_live {
                (max_live, max_live_at) = (live, emitted);
            }
            drop(batches);
            let (_, committed, tmp) = batch_files_on_disk(dir.path());
            max_disk = max_disk.max(committed + tmp);
        }
        if emitted >= next_report {
            let batches = store.sealed(id).unwrap().batches;
            let levels: Vec<String> = batches
                .iter()
                .map(|b| level_of(b.update_count()).to_string())
                .collect();
            eprintln!(
                "  {emitted} updates, {:.1} s, {:.0} MB of batch files written; {} batches, {:.0} MB live, \
                 levels {}",
                start.elapsed().as_secs_f64(),
                mb(counters.batch_bytes.load(Relaxed)),
                batches.len(),
                mb(batches.iter().map(|b| b.size_bytes()).sum()),
                levels.join(" ")
            );
            next_report += cfg.updates / 10;
        }
    }
    let ingest = start.elapsed();
    // Let due merges finish: the final state is the policy's fixpoint.
    let t0 = Instant::now();
    loop {
        if let Some(e) = store.background_error() {
            panic!("background merge failed: {e}");
        }
        let counts: Vec<u64> = store
            .sealed(id)
            .unwrap()
            .batches
            .iter()
            .map(|b| b.update_count())
            .collect();
        let space_amp = (cfg.space_amp > 0).then(|| pick_space_amp(&counts, cfg.space_amp));
        if pick_merge(&counts, cfg.fan_in).is_none() && space_amp.flatten().is_none() {
            break;
        }
        if cfg.compaction_threads == 0 {
            store.compact(id).unwrap();
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let settle = t0.elapsed();
    // The background merge threads are named `ddpersist-compact-N` (truncated to 15 bytes by the kernel).
    let merge_cpu = threads_cpu("ddpersist-compa");
    let main_cpu = thread_cpu().saturating_sub(main_cpu0);
    // Everything else the process ran: the merge threads plus the short-lived I/O helper thread each merge's
    // batch writer starts (exited by now, so not in `/proc/self/task`).
    let background_cpu = process_cpu().saturating_sub(all_cpu0).saturating_sub(main_cpu);
    let heap_peak = heap_peak_since(heap_mark);
    let written_batch = counters.batch_bytes.load(Relaxed);
    let written_files = counters.batch_files.load(Relaxed);
    let written_other = counters.other_bytes.load(Relaxed);
    let wal = counters.wal_bytes.load(Relaxed);
    let wal_records = counters.wal_records.load(Relaxed);
    let sealed = store.sealed(id).unwrap();
    let since = store.since(id).unwrap();
    let live_bytes: u64 = sealed.batches.iter().map(|b| b.size_bytes()).sum();
    let live_updates: u64 = sealed.batches.iter().map(|b| b.update_count()).sum();
    let levels: Vec<String> = sealed
        .batches
        .iter()
        .map(|b| {
            format!(
                "L{} ({} upd, {:.1} MB, since {})",
                level_of(b.update_count()),
                b.update_count(),
                mb(b.size_bytes()),
                b.description().since
            )
        })
        .collect();
    // The size of one fully merged batch of the final contents: every time advanced to upper - 1.
    let lower = sealed.batches.first().map_or(0, |b| b.description().lower);
    let full = merge_batches(
        &sealed.batches,
        Description {
            lower,
            upper: sealed.upper,
            since: sealed.upper - 1,
        },
        Box::<NullWriter>::default(),
        &options,
        &AtomicBool::new(false),
    )
    .unwrap()
    .unwrap();
    let live_pairs = gen.live_pairs();
    drop(sealed);
    drop(store);
    let (disk_files, disk_bytes, _) = batch_files_on_disk(dir.path());

    let logical = cfg.updates * LOGICAL_BYTES;
    let logical_live = live_pairs * LOGICAL_BYTES;
    let merge_bytes = written_batch - seal_bytes;
    println!(
        "\nSummary (amplification): {} updates ({} upserts) over {} keys, {CHUNK} per write, seal every \
         {SEAL_EVERY} ({seals} seals), since = upper - {}, compaction_threads {}; logical bytes = {LOGICAL_BYTES} \
         per update (key + val); MB = 10^6 bytes",
        cfg.updates,
        gen.counter,
        cfg.keys,
        cfg.lag,
        cfg.compaction_threads
    );
    let row = |figure: &str, value: String, note: String| println!("{figure:<50} {value:>12}  {note}");
    row("figure", "value".into(), "note".into());
    row(
        "logical bytes ingested (MB)",
        format!("{:.1}", mb(logical)),
        "updates x 116".into(),
    );
    row(
        "batch bytes written (MB)",
        format!("{:.1}", mb(written_batch)),
        format!(
            "{written_files} files: seals {:.1} MB, merges (and spills) {:.1} MB",
            mb(seal_bytes),
            mb(merge_bytes)
        ),
    );
    row(
        "write amplification, batch files",
        format!("{:.2}", written_batch as f64 / logical as f64),
        format!(
            "seals {:.2} + merges {:.2}",
            seal_bytes as f64 / logical as f64,
            merge_bytes as f64 / logical as f64
        ),
    );
    row(
        "WAL bytes (MB)",
        format!("{:.1}", mb(wal)),
        format!(
            "{wal_records} records; {:.2} x logical",
            wal as f64 / logical as f64
        ),
    );
    row(
        "manifest bytes (MB)",
        format!("{:.1}", mb(written_other)),
        String::new(),
    );
    row(
        "write amplification, all (batch + WAL + manifest)",
        format!(
            "{:.2}",
            (written_batch + wal + written_other) as f64 / logical as f64
        ),
        String::new(),
    );
    row(
        "live batches (manifest)",
        format!("{}", levels.len()),
        format!("upper {upper}, since {since}"),
    );
    row(
        "live batch bytes (MB)",
        format!("{:.1}", mb(live_bytes)),
        format!(
            "{live_updates} updates; on disk after close: {disk_files} files, {:.1} MB",
            mb(disk_bytes)
        ),
    );
    row(
        "live (key, val) pairs x 116 (MB)",
        format!("{:.1}", mb(logical_live)),
        format!("{live_pairs} pairs"),
    );
    row(
        "one fully merged batch (MB)",
        format!("{:.1}", mb(full.size_bytes)),
        format!(
            "{} updates ({})",
            full.update_count,
            if full.update_count == live_pairs {
                "= live pairs".to_string()
            } else {
                format!("MISMATCH: expected {live_pairs}")
            }
        ),
    );
    row(
        "space amplification vs logical live",
        format!("{:.2}", live_bytes as f64 / logical_live as f64),
        "live batch bytes / (live pairs x 116)".into(),
    );
    row(
        "space amplification vs fully merged batch",
        format!("{:.2}", live_bytes as f64 / full.size_bytes as f64),
        "live batch bytes / one fully merged batch".into(),
    );
    row(
        "peak live batch bytes after a seal (MB)",
        format!("{:.1}", mb(max_live)),
        format!(
            "{:.2} x final live pairs x 116; at {max_live_at} updates",
            max_live as f64 / logical_live as f64
        ),
    );
    row(
        "peak batch files on disk after a seal (MB)",
        format!("{:.1}", mb(max_disk)),
        format!(
            "{:.2} x final live pairs x 116 (retired inputs and .tmp outputs included)",
            max_disk as f64 / logical_live as f64
        ),
    );
    row(
        "batches per stream after seals (max / mean)",
        format!("{max_batches} / {:.1}", sum_batches as f64 / seals.max(1) as f64),
        String::new(),
    );
    row(
        "time: total ingest (s)",
        format!("{:.1}", ingest.as_secs_f64()),
        format!(
            "{:.0} updates/s; write_bytes {:.1} s, seal {:.1} s, allow_compaction {:.1} s; settle {:.1} s",
            cfg.updates as f64 / ingest.as_secs_f64(),
            t_write.as_secs_f64(),
            t_seal.as_secs_f64(),
            t_since.as_secs_f64(),
            settle.as_secs_f64()
        ),
    );
    row(
        "CPU: merge threads / all background / main thread (s)",
        format!(
            "{:.1} / {:.1} / {:.1}",
            merge_cpu.as_secs_f64(),
            background_cpu.as_secs_f64(),
            main_cpu.as_secs_f64()
        ),
        format!(
            "all background = merge threads + their batch writers' I/O helpers; busy {:.0}% of ingest + \
             settle wall time",
            100.0 * background_cpu.as_secs_f64() / (ingest + settle).as_secs_f64()
        ),
    );
    row(
        "peak heap during ingest (MB)",
        format!("{:.1}", mb(heap_peak as u64)),
        "includes the generator's key table".into(),
    );
    println!("final batches, oldest first: {}", levels.join(", "));
}

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
