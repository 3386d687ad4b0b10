//! Part 2, write and space amplification: the upsert workload, the run (writes, seals, the since trailing
//! the upper, then the policy's fixpoint) and its summary.

use crate::common::{process_cpu, splitmix64};
use crate::counting::{Counters, CountingBlob, CountingLog};
use crate::data::{key_of, push_val, KEY_BYTES, LOGICAL_BYTES, VAL_BYTES};
use crate::merge::NullWriter;
use crate::usage::{heap_mark, heap_peak_since, mb, thread_cpu, threads_cpu};
use crate::{CHUNK, SEAL_EVERY};
use ddpersist::batch::parse_batch_file_name;
use ddpersist::blob::DirBlob;
use ddpersist::compaction::{level_of, merge_batches, pick_merge, pick_space_amp};
use ddpersist::wal::{FileLog, WalRecovery};
use ddpersist::{Description, Options, Store, StreamOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) struct AmpConfig {
    pub(crate) updates: u64,
    pub(crate) keys: usize,
    pub(crate) lag: u64,
    pub(crate) compaction_threads: usize,
    pub(crate) fan_in: usize,
    /// `Options::max_space_amplification_percent` (0: off).
    pub(crate) space_amp: u32,
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

pub(crate) fn amplification(tmp: &Path, cfg: &AmpConfig) {
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
