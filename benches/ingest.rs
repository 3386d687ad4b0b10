//! Durable ingest throughput, against this machine's sequential durable write bandwidth.
//!
//! `cargo bench --bench ingest`. Each iteration opens a fresh store in a fresh directory under
//! `CARGO_TARGET_TMPDIR` (on the same disk as the repository) and writes `UPDATES` updates of a 16-byte
//! pseudo-random key and a 100-byte val, `CHUNK` updates per `write_bytes` call, sealing every
//! `SEAL_EVERY` updates (all updates of one seal interval share one time). Only the writes and seals are
//! timed, not opening the store or removing the directory.
//!
//! Groups (see BENCHMARKS.md for results):
//! - `ingest_updates`: `Throughput::Elements` = updates; also one writer pipelined (seals on a second
//!   thread; then also `write_bytes_unsynced` with a third thread calling `sync`), diagnostic variants
//!   (bigger writes, rarer seals, merges inside `seal`, an in-memory store) and two plain-file baselines
//!   writing the same number of bytes;
//! - `ingest_bytes`: `Throughput::Bytes` = 116 bytes per update (16 key + 100 val; time and diff are not
//!   counted), for the main variants and the sequential baseline (1 MiB `write_all`s, then one
//!   `sync_data`: what `dd bs=1M conv=fdatasync` does);
//! - `fsync`: 4 KiB write + `sync_data` per operation, appending (as the WAL does) or overwriting.
//!
//! After criterion's report, a summary prints each variant's median throughput, its ratio to the
//! sequential baseline of the same run, the share of time spent in `write_bytes` and in `seal`, and the
//! write amplification (bytes written to files per byte of key and val).

mod common;

use common::{median, seq_write, splitmix64, wchar};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::store::WriteTicket;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{mpsc, Barrier, Mutex};
use std::time::{Duration, Instant};

const KEY_BYTES: usize = 16;
const VAL_BYTES: usize = 100;
/// Stored bytes of one update in `data()`: key then val.
const RECORD: usize = KEY_BYTES + VAL_BYTES;
/// Bytes counted per update for `Throughput::Bytes` and written by the baselines: key + val only (the 16
/// bytes of time and diff are not counted).
const UPDATE_BYTES: u64 = (KEY_BYTES + VAL_BYTES) as u64;
/// Updates per timed iteration (all writers together): 12 seals of 10,000, also with 4 writers.
const UPDATES: usize = 120_000;
const CHUNK: usize = 1_000;
const SEAL_EVERY: usize = 10_000;
const WRITERS: usize = 4;
const TOTAL_BYTES: u64 = UPDATES as u64 * UPDATE_BYTES;
/// Name of the baseline the summary divides by.
const BASELINE: &str = "baseline_seq_write_1MiB_fdatasync";

#[derive(Clone, Copy)]
struct Workload {
    writers: usize,
    chunk: usize,
    seal_every: usize,
    durable: bool,
    /// `Options::compaction_threads` (default 1: merges in the background; 0: inside `seal`).
    compaction_threads: usize,
    /// `Store::in_memory()` instead of a directory: the same work without any I/O (the CPU bound).
    in_memory: bool,
    /// Seals run on a second thread (fed the uppers through a channel) while the writer goes on writing
    /// later times; the timed part ends when the last seal has returned.
    seal_thread: bool,
    /// Writes use `write_bytes_unsynced`; a third thread `sync`s the greatest ticket it has received
    /// (acknowledging writes once durable) while the writer goes on. The timed part ends when every
    /// write is synced and every seal has returned.
    unsynced: bool,
    /// `Options::wal_zero_fill`.
    zero_fill: bool,
}

const DURABLE_1W: Workload = Workload {
    writers: 1,
    chunk: CHUNK,
    seal_every: SEAL_EVERY,
    durable: true,
    compaction_threads: 1,
    in_memory: false,
    seal_thread: false,
    unsynced: false,
    zero_fill: false,
};

/// Time spent inside `write_bytes` and `seal` (summed over writer threads), for the summary.
#[derive(Clone, Copy, Default)]
struct Split {
    write: Duration,
    seal: Duration,
}

/// Per benchmark, summed over its iterations: `Split`, wall time, bytes this process passed to `write(2)`
/// during the timed part (WAL, batch files, merges, manifests), CPU time of the whole process (every
/// thread, background merges included) during the timed part, and iterations.
#[derive(Clone, Copy, Default)]
struct Totals {
    split: Split,
    wall: Duration,
    written: u64,
    cpu: Duration,
    iters: u64,
}

/// CPU time (user + system, every thread) this process has used so far, from `/proc/self/stat` (in clock
/// ticks of 10 ms; summed over many iterations that is precise enough). Zero where there is no such file.
fn cpu_time() -> Duration {
    let ticks = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = &s[s.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    });
    Duration::from_millis(ticks.unwrap_or(0) * 10)
}

/// `UPDATES` records of key (16 hex digits of a splitmix64 of the index) then val (pseudo-random bytes).
fn data() -> Vec<u8> {
    let mut out = Vec::with_capacity(UPDATES * RECORD);
    for i in 0..UPDATES as u64 {
        write!(out, "{:016x}", splitmix64(i)).unwrap();
        let mut s = splitmix64(i ^ 0x5555_5555_5555_5555);
        for _ in 0..VAL_BYTES {
            s = splitmix64(s);
            out.push(s as u8);
        }
    }
    debug_assert_eq!(out.len(), UPDATES * RECORD);
    out
}

/// Writes `records` to stream `id` as the workload says; times start at 0 and advance at each seal.
fn write_stream(store: &Store, id: &str, records: &[u8], w: Workload) -> Split {
    if w.seal_thread || w.unsynced {
        return write_stream_pipelined(store, id, records, w);
    }
    let mut split = Split::default();
    for call in calls(records, w) {
        let t0 = Instant::now();
        store.write_bytes(id, call.updates()).unwrap();
        split.write += t0.elapsed();
        if let Some(upper) = call.seal {
            let t0 = Instant::now();
            store.seal(id, upper).unwrap();
            split.seal += t0.elapsed();
        }
    }
    split
}

/// One `write_bytes` call of the workload: its records (key then val), their time, and the upper to seal
/// at right after it, if a seal is due.
struct Call<'r> {
    chunk: &'r [u8],
    time: u64,
    seal: Option<u64>,
}

impl<'r> Call<'r> {
    fn updates(&self) -> impl Iterator<Item = (&'r [u8], &'r [u8], u64, i64)> + 'r {
        let time = self.time;
        self.chunk
            .chunks_exact(RECORD)
            .map(move |r| (&r[..KEY_BYTES], &r[KEY_BYTES..], time, 1i64))
    }
}

/// The workload's write calls in order: `w.chunk` updates each, times advancing at each seal.
fn calls(records: &[u8], w: Workload) -> impl Iterator<Item = Call<'_>> {
    assert!(w.seal_every.is_multiple_of(w.chunk));
    let n = records.len() / RECORD;
    records
        .chunks(w.chunk * RECORD)
        .enumerate()
        .map(move |(c, chunk)| {
            let first = c * w.chunk;
            let time = (first / w.seal_every) as u64;
            let done = first + chunk.len() / RECORD;
            let seal = (done.is_multiple_of(w.seal_every) || done == n).then_some(time + 1);
            Call { chunk, time, seal }
        })
}

/// `write_stream` with seals on a second thread and, if `w.unsynced`, writes that do not wait for the WAL,
/// synced by a third thread. `Split::seal` is then the seal thread's time inside `seal`, which overlaps
/// the writer's.
fn write_stream_pipelined(store: &Store, id: &str, records: &[u8], w: Workload) -> Split {
    let (seal_tx, seal_rx) = mpsc::channel::<u64>();
    let (sync_tx, sync_rx) = mpsc::channel::<WriteTicket>();
    std::thread::scope(|scope| {
        let sealer = scope.spawn(move || {
            let mut busy = Duration::ZERO;
            for upper in seal_rx {
                let t0 = Instant::now();
                store.seal(id, upper).unwrap();
                busy += t0.elapsed();
            }
            busy
        });
        let syncer = scope.spawn(move || {
            while let Ok(mut ticket) = sync_rx.recv() {
                ticket = sync_rx.try_iter().fold(ticket, Ord::max);
                store.sync(ticket).unwrap();
            }
        });
        let mut write = Duration::ZERO;
        for call in calls(records, w) {
            let t0 = Instant::now();
            if w.unsynced {
                let ticket = store.write_bytes_unsynced(id, call.updates()).unwrap();
                sync_tx.send(ticket).unwrap();
            } else {
                store.write_bytes(id, call.updates()).unwrap();
            }
            write += t0.elapsed();
            if let Some(upper) = call.seal {
                seal_tx.send(upper).unwrap();
            }
        }
        drop((seal_tx, sync_tx));
        syncer.join().unwrap();
        Split {
            write,
            seal: sealer.join().unwrap(),
        }
    })
}

/// One timed iteration: a fresh store in a fresh directory, `w.writers` streams written concurrently.
fn ingest(tmp: &Path, records: &[u8], w: Workload, key: &str) -> Duration {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let options = Options {
        compaction_threads: w.compaction_threads,
        wal_zero_fill: w.zero_fill,
        ..Options::default()
    };
    let store = if w.in_memory {
        Store::in_memory().unwrap()
    } else {
        Store::open_with(dir.path(), options).unwrap()
    };
    let ids: Vec<String> = (0..w.writers).map(|s| format!("s{s}")).collect();
    for id in &ids {
        store
            .create_stream(id, StreamOptions { durable: w.durable })
            .unwrap();
    }
    let per = records.len() / w.writers;
    let (written_before, cpu_before) = (wchar(), cpu_time());
    let (start, split);
    if w.writers == 1 {
        start = Instant::now();
        split = write_stream(&store, &ids[0], records, w);
    } else {
        let barrier = Barrier::new(w.writers + 1);
        let (mut started, mut sum) = (None, Split::default());
        std::thread::scope(|scope| {
            let threads: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(s, id)| {
                    let (store, barrier) = (&store, &barrier);
                    let mine = &records[s * per..(s + 1) * per];
                    scope.spawn(move || {
                        barrier.wait();
                        write_stream(store, id, mine, w)
                    })
                })
                .collect();
            barrier.wait();
            started = Some(Instant::now());
            for t in threads {
                let one = t.join().unwrap();
                sum.write += one.write;
                sum.seal += one.seal;
            }
        });
        (start, split) = (started.unwrap(), sum);
    }
    let elapsed = start.elapsed();
    let written = wchar() - written_before;
    let cpu = cpu_time().saturating_sub(cpu_before);
    {
        let mut totals = TOTALS.lock().unwrap();
        let total = totals.entry(key.to_string()).or_default();
        total.split.write += split.write;
        total.split.seal += split.seal;
        total.wall += elapsed;
        total.written += written;
        total.cpu += cpu;
        total.iters += 1;
    }
    for id in &ids {
        assert_eq!(
            store.unsealed_len(id).unwrap(),
            0,
            "every update should be sealed"
        );
    }
    drop(store);
    drop(dir);
    elapsed
}

/// Per benchmark, for the summary.
static TOTALS: Mutex<BTreeMap<String, Totals>> = Mutex::new(BTreeMap::new());

/// Per-iteration durations seen by each benchmark (warm-up included), for the summary.
static SEEN: Mutex<BTreeMap<String, Vec<Duration>>> = Mutex::new(BTreeMap::new());

fn record(name: &str, iters: u64, total: Duration) {
    if iters > 0 {
        let mut seen = SEEN.lock().unwrap();
        let v = seen.entry(name.to_string()).or_default();
        v.push(total / iters as u32);
    }
}

/// Registers `name` in `group` (named `group_name`): `iters` calls of `f`, each timing itself and given
/// the summary key `group_name/name`.
fn bench<M>(
    group: &mut BenchmarkGroup<'_, M>,
    group_name: &str,
    name: &str,
    mut f: impl FnMut(&str) -> Duration,
) where
    M: criterion::measurement::Measurement<Value = Duration>,
{
    let key = format!("{group_name}/{name}");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let total: Duration = (0..iters).map(|_| f(&key)).sum();
            record(&key, iters, total);
            total
        })
    });
}

fn configure<M: criterion::measurement::Measurement>(group: &mut BenchmarkGroup<'_, M>, secs: u64) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(secs));
}

fn benches(c: &mut Criterion, tmp: &Path) {
    let records = data();
    let fill = &records[..1 << 20];
    let variants: [(&str, Workload); 5] = [
        ("durable_1writer", DURABLE_1W),
        (
            "durable_4writers",
            Workload {
                writers: WRITERS,
                ..DURABLE_1W
            },
        ),
        (
            "nondurable_1writer",
            Workload {
                durable: false,
                ..DURABLE_1W
            },
        ),
        // One writer, pipelined: seals on a second thread; then also writes that do not wait for their
        // fsync (`write_bytes_unsynced`), acknowledged by a third thread calling `sync`.
        (
            "durable_1writer_seal_thread",
            Workload {
                seal_thread: true,
                ..DURABLE_1W
            },
        ),
        (
            "durable_1writer_pipelined",
            Workload {
                seal_thread: true,
                unsynced: true,
                ..DURABLE_1W
            },
        ),
    ];
    // Diagnostics: the WAL zero-filled ahead (1 and 4 writers), 10x bigger write calls, one seal per iteration,
    // merges inside `seal`, no I/O at all.
    let diagnostics: [(&str, Workload); 7] = [
        (
            "durable_1writer_zero_fill",
            Workload {
                zero_fill: true,
                ..DURABLE_1W
            },
        ),
        (
            "durable_4writers_zero_fill",
            Workload {
                writers: WRITERS,
                zero_fill: true,
                ..DURABLE_1W
            },
        ),
        (
            "durable_1writer_chunk10000",
            Workload {
                chunk: 10_000,
                ..DURABLE_1W
            },
        ),
        (
            "durable_1writer_seal_once",
            Workload {
                seal_every: UPDATES,
                ..DURABLE_1W
            },
        ),
        (
            "nondurable_1writer_seal_once",
            Workload {
                seal_every: UPDATES,
                durable: false,
                ..DURABLE_1W
            },
        ),
        (
            "durable_1writer_inline_compaction",
            Workload {
                compaction_threads: 0,
                ..DURABLE_1W
            },
        ),
        (
            "in_memory_1writer",
            Workload {
                in_memory: true,
                ..DURABLE_1W
            },
        ),
    ];
    let wal_like = CHUNK * UPDATE_BYTES as usize;

    let gname = "ingest_updates";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 2);
    g.throughput(Throughput::Elements(UPDATES as u64));
    for (name, w) in variants.iter().chain(&diagnostics) {
        bench(&mut g, gname, name, |key| ingest(tmp, &records, *w, key));
    }
    bench(&mut g, gname, BASELINE, |_| {
        seq_write(tmp, fill, TOTAL_BYTES, None)
    });
    bench(&mut g, gname, "baseline_seq_write_fdatasync_per_116KB", |_| {
        seq_write(tmp, fill, TOTAL_BYTES, Some(wal_like))
    });
    g.finish();

    let gname = "ingest_bytes";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 2);
    g.throughput(Throughput::Bytes(TOTAL_BYTES));
    for (name, w) in &variants {
        bench(&mut g, gname, name, |key| ingest(tmp, &records, *w, key));
    }
    bench(&mut g, gname, BASELINE, |_| {
        seq_write(tmp, fill, TOTAL_BYTES, None)
    });
    g.finish();

    let mut g = c.benchmark_group("fsync");
    configure(&mut g, 2);
    g.throughput(Throughput::Elements(1));
    // Appending changes the file size, so each fdatasync also commits the file system journal; the WAL
    // does this. Overwriting an already written and synced file does not.
    for (name, append) in [
        ("append_4KiB_fdatasync", true),
        ("overwrite_4KiB_fdatasync", false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir_in(tmp).unwrap();
                let mut f = File::create(dir.path().join("f")).unwrap();
                if !append {
                    for _ in 0..iters {
                        f.write_all(&fill[..4096]).unwrap();
                    }
                    f.sync_all().unwrap();
                    f.seek(SeekFrom::Start(0)).unwrap();
                }
                let start = Instant::now();
                for _ in 0..iters {
                    f.write_all(&fill[..4096]).unwrap();
                    f.sync_data().unwrap();
                }
                let total = start.elapsed();
                record(&format!("fsync/{name}"), iters, total);
                total
            })
        });
    }
    g.finish();
}

/// Prints each benchmark's median time per iteration as throughput, its ratio to the sequential baseline
/// of its group, and for ingest: the share of writer time spent in `write_bytes` and in `seal`, and the
/// bytes written to files per byte of key and val (write amplification so far: WAL, batches, merges).
fn summary() {
    let mut seen = SEEN.lock().unwrap();
    let totals = TOTALS.lock().unwrap();
    if seen.is_empty() {
        return;
    }
    let per_iter: BTreeMap<String, Duration> = seen.iter_mut().map(|(k, v)| (k.clone(), median(v))).collect();
    println!(
        "\nSummary: median time per iteration (warm-up included) of {UPDATES} updates = {:.1} MB \
         ({UPDATE_BYTES} B/update, key + val).\nwrite / seal: share of writer time inside write_bytes / seal; \
         amp: bytes written to files during the timed part per byte of key + val; cpu: CPU ms per \
         iteration (all threads, mean over the timed parts).",
        TOTAL_BYTES as f64 / 1e6
    );
    println!(
        "{:<52} {:>8} {:>10} {:>7} {:>6} {:>5} {:>5} {:>5} {:>6}",
        "benchmark", "ms/iter", "updates/s", "MB/s", "vs seq", "write", "seal", "amp", "cpu"
    );
    for (k, d) in per_iter.iter().filter(|(k, _)| k.starts_with("ingest")) {
        let secs = d.as_secs_f64();
        let group = k.split('/').next().unwrap_or_default();
        let ratio = per_iter
            .get(&format!("{group}/{BASELINE}"))
            .map_or("-".to_string(), |b| {
                format!("{:.0}%", 100.0 * b.as_secs_f64() / secs)
            });
        let dash = || "-".to_string();
        let (write, seal, amp, cpu) = totals.get(k).map_or((dash(), dash(), dash(), dash()), |t| {
            let writers = if k.contains("4writers") { WRITERS } else { 1 } as f64;
            let pct =
                |x: Duration| format!("{:.0}%", 100.0 * x.as_secs_f64() / t.wall.as_secs_f64() / writers);
            let amp = t.written as f64 / (t.iters * TOTAL_BYTES) as f64;
            let cpu = t.cpu.as_secs_f64() * 1e3 / t.iters as f64;
            (
                pct(t.split.write),
                pct(t.split.seal),
                format!("{amp:.1}"),
                format!("{cpu:.1}"),
            )
        });
        println!(
            "{:<52} {:>8.1} {:>10.0} {:>7.1} {:>6} {:>5} {:>5} {:>5} {:>6}",
            k,
            secs * 1e3,
            UPDATES as f64 / secs,
            TOTAL_BYTES as f64 / secs / 1e6,
            ratio,
            write,
            seal,
            amp,
            cpu
        );
    }
    for (k, d) in per_iter.iter().filter(|(k, _)| k.starts_with("fsync")) {
        println!(
            "{:<52} {:>8.3} {:>10.0} ops/s",
            k,
            d.as_secs_f64() * 1e3,
            1.0 / d.as_secs_f64()
        );
    }
}

fn main() {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    eprintln!("temporary directories under {}", tmp.display());
    // Plotting takes seconds per benchmark here and is not needed for the throughput figures.
    let mut c = Criterion::default().without_plots().configure_from_args();
    benches(&mut c, tmp);
    c.final_summary();
    summary();
}
