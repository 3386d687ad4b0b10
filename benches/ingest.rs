//! Durable ingest throughput, against this machine's sequential durable write bandwidth.
//!
//! `cargo bench --bench ingest`. Each iteration opens a fresh store in a fresh directory under
//! `CARGO_TARGET_TMPDIR` (on the same disk as the repository) and writes `UPDATES` updates of a 16-byte
//! pseudo-random key and a 100-byte val, `CHUNK` updates per `write_bytes` call, sealing every
//! `SEAL_EVERY` updates (all updates of one seal interval share one time). Only the writes and seals are
//! timed, not opening the store or removing the directory.
//!
//! Groups (see BENCHMARKS.md for results):
//! - `ingest_updates`: `Throughput::Elements` = updates; also diagnostic variants (bigger writes, rarer
//!   seals, merges inside `seal`) and two plain-file baselines writing the same number of bytes;
//! - `ingest_bytes`: `Throughput::Bytes` = 116 bytes per update (16 key + 100 val; time and diff are not
//!   counted), for the main variants and the sequential baseline (1 MiB `write_all`s, then one
//!   `sync_data`: what `dd bs=1M conv=fdatasync` does);
//! - `fsync`: 4 KiB write + `sync_data` per operation, appending (as the WAL does) or overwriting.
//!
//! After criterion's report, a summary prints each variant's median throughput, its ratio to the
//! sequential baseline of the same run, and the share of time spent in `write_bytes` and in `seal`.

use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

const KEY_BYTES: usize = 16;
const VAL_BYTES: usize = 100;
/// Stored bytes of one update in `data()`: key then val.
const RECORD: usize = KEY_BYTES + VAL_BYTES;
/// Bytes counted per update for `Throughput::Bytes` and written by the baselines: key + val only (the 16
/// bytes of time and diff are not counted).
const UPDATE_BYTES: u64 = (KEY_BYTES + VAL_BYTES) as u64;
/// Updates per timed iteration (all writers together).
const UPDATES: usize = 200_000;
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
}

const DURABLE_1W: Workload = Workload {
    writers: 1,
    chunk: CHUNK,
    seal_every: SEAL_EVERY,
    durable: true,
    compaction_threads: 1,
};

/// Time spent inside `write_bytes` and `seal` (summed over writer threads), for the summary.
#[derive(Clone, Copy, Default)]
struct Split {
    write: Duration,
    seal: Duration,
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
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
    assert!(w.seal_every.is_multiple_of(w.chunk));
    let n = records.len() / RECORD;
    let mut split = Split::default();
    for (c, chunk) in records.chunks(w.chunk * RECORD).enumerate() {
        let first = c * w.chunk;
        let time = (first / w.seal_every) as u64;
        let updates = chunk
            .chunks_exact(RECORD)
            .map(|r| (&r[..KEY_BYTES], &r[KEY_BYTES..], time, 1i64));
        let t0 = Instant::now();
        store.write_bytes(id, updates).unwrap();
        split.write += t0.elapsed();
        let done = first + chunk.len() / RECORD;
        if done.is_multiple_of(w.seal_every) || done == n {
            let t0 = Instant::now();
            store.seal(id, time + 1).unwrap();
            split.seal += t0.elapsed();
        }
    }
    split
}

/// One timed iteration: a fresh store in a fresh directory, `w.writers` streams written concurrently.
fn ingest(tmp: &Path, records: &[u8], w: Workload, key: &str) -> Duration {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let options = Options {
        compaction_threads: w.compaction_threads,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let ids: Vec<String> = (0..w.writers).map(|s| format!("s{s}")).collect();
    for id in &ids {
        store
            .create_stream(id, StreamOptions { durable: w.durable })
            .unwrap();
    }
    let per = records.len() / w.writers;
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
    let mut splits = SPLITS.lock().unwrap();
    let total = splits.entry(key.to_string()).or_default();
    total.0.write += split.write;
    total.0.seal += split.seal;
    total.1 += elapsed;
    assert_eq!(
        store.unsealed_len(&ids[0]).unwrap(),
        0,
        "every update should be sealed"
    );
    drop(store);
    drop(dir);
    elapsed
}

/// The `dd if=/dev/zero bs=1M conv=fdatasync` equivalent: `bytes` written in 1 MiB `write_all`s to a new
/// file, then one `sync_data`. With `sync_every`, a `sync_data` after every that many bytes instead (the
/// I/O pattern of a WAL synced once per write call).
fn seq_write(tmp: &Path, fill: &[u8], bytes: u64, sync_every: Option<usize>) -> Duration {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let path = dir.path().join("seq");
    let piece = sync_every.unwrap_or(1 << 20);
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

/// Per benchmark: write/seal time and wall time summed over all its iterations, for the summary.
static SPLITS: Mutex<BTreeMap<String, (Split, Duration)>> = Mutex::new(BTreeMap::new());

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
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(secs));
}

fn benches(c: &mut Criterion, tmp: &Path) {
    let records = data();
    let fill = &records[..1 << 20];
    let variants: [(&str, Workload); 3] = [
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
    ];
    // Diagnostics: what moves with 10x bigger write calls, 10x rarer seals, or merges inside `seal`.
    let diagnostics: [(&str, Workload); 4] = [
        (
            "durable_1writer_chunk10000",
            Workload {
                chunk: 10_000,
                ..DURABLE_1W
            },
        ),
        (
            "durable_1writer_seal100000",
            Workload {
                seal_every: 100_000,
                ..DURABLE_1W
            },
        ),
        (
            "nondurable_1writer_seal100000",
            Workload {
                seal_every: 100_000,
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
    ];
    let wal_like = CHUNK * UPDATE_BYTES as usize;

    let gname = "ingest_updates";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 3);
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
    configure(&mut g, 3);
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

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Prints each benchmark's median time per iteration as throughput, its ratio to the sequential baseline
/// of its group, and (ingest only) the share of writer time spent in `write_bytes` and in `seal`.
fn summary() {
    let mut seen = SEEN.lock().unwrap();
    let splits = SPLITS.lock().unwrap();
    if seen.is_empty() {
        return;
    }
    let per_iter: BTreeMap<String, Duration> = seen.iter_mut().map(|(k, v)| (k.clone(), median(v))).collect();
    println!(
        "\nSummary: median time per iteration (warm-up included) of {UPDATES} updates = {:.1} MB \
         ({UPDATE_BYTES} B/update); write/seal = share of writer time inside write_bytes / seal",
        TOTAL_BYTES as f64 / 1e6
    );
    println!(
        "{:<50} {:>9} {:>11} {:>8} {:>7} {:>6} {:>6}",
        "benchmark", "ms/iter", "updates/s", "MB/s", "vs seq", "write", "seal"
    );
    for (k, d) in per_iter.iter().filter(|(k, _)| k.starts_with("ingest")) {
        let secs = d.as_secs_f64();
        let group = k.split('/').next().unwrap_or_default();
        let ratio = per_iter
            .get(&format!("{group}/{BASELINE}"))
            .map_or("-".to_string(), |b| {
                format!("{:.0}%", 100.0 * b.as_secs_f64() / secs)
            });
        let (write, seal) = splits.get(k).map_or(("-".into(), "-".into()), |(s, wall)| {
            let writers = if k.contains("4writers") { WRITERS } else { 1 } as f64;
            let pct = |x: Duration| format!("{:.0}%", 100.0 * x.as_secs_f64() / wall.as_secs_f64() / writers);
            (pct(s.write), pct(s.seal))
        });
        println!(
            "{:<50} {:>9.1} {:>11.0} {:>8.1} {:>7} {:>6} {:>6}",
            k,
            secs * 1e3,
            UPDATES as f64 / secs,
            TOTAL_BYTES as f64 / secs / 1e6,
            ratio,
            write,
            seal
        );
    }
    for (k, d) in per_iter.iter().filter(|(k, _)| k.starts_with("fsync")) {
        println!(
            "{:<50} {:>9.3} {:>11.0} ops/s",
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
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, tmp);
    c.final_summary();
    summary();
}
