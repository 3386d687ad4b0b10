//! Part 1, merge throughput: the criterion group (every merge variant and the sequential-write baseline),
//! the per-iteration figures it records, and the summary printed after criterion's report.

use crate::common::{median, seq_write, splitmix64};
use crate::merge::{merge_iteration, write_inputs, Sink, MERGE_CASES};
use crate::usage::mb;
use crate::{merge_inputs, BASELINE};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

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

pub(crate) fn merge_benches(c: &mut Criterion, tmp: &Path, per_input: usize) {
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
pub(crate) fn merge_summary(per_input: usize) {
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
