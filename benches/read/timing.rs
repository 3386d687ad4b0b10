//! Criterion registration for the `scan`, `lookup` and `typed_scan` groups, recording each benchmark's
//! per-iteration times for the summary.

use criterion::{BenchmarkGroup, SamplingMode};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-iteration durations seen by each benchmark (warm-up included), for the summary.
pub(crate) static SEEN: Mutex<BTreeMap<String, Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// Registers `name` in `group` (named `group_name`), timing `f` per iteration.
pub(crate) fn bench<M, R>(
    group: &mut BenchmarkGroup<'_, M>,
    group_name: &str,
    name: &str,
    mut f: impl FnMut() -> R,
) where
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

pub(crate) fn configure<M: criterion::measurement::Measurement>(
    group: &mut BenchmarkGroup<'_, M>,
    secs: u64,
) {
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(secs));
}
