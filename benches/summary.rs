//! Issue 15's table in one run: every row measured on one workload, ddpersist and its peer side by side,
//! with the ratio, the goal and whether it is met.
//!
//! `cargo bench --bench summary` (or the built binary with `--bench`). Workload (benches/common/engines.rs):
//! `N` updates (`DDPERSIST_BENCH_UPDATES`, default 1,000,000; 20,000 without `--bench`, as under `cargo test
//! --benches`), update `i` = (16-byte key `hex_key(i)`, all distinct; 100 pseudo-random val bytes; time
//! `i / 10,000`; diff +1). `DDPERSIST_BENCH_ROUNDS` rounds (default 3; 1 without `--bench`); each figure is
//! the median over the rounds. Temporary stores live under `CARGO_TARGET_TMPDIR` and are deleted.
//!
//! 1. `arrange_persisted` wall time, from the first update until the arrangement's frontier passed the last
//!    time (every update sealed, durable), against DD's in-memory `arrange_by_key` (benches/arrange.rs's
//!    run, `common::arrange::run`); the two alternate which goes first. The store's batch count at the end.
//! 2. Durable ingest, updates/s, `common::engines::ingest` (1,000 updates per durable write; after it, untimed,
//!    each engine answers a few lookups, checked): ddpersist
//!    `write_bytes` (durable per call) + `seal` per 10,000; the same with `seal_logged` (each seal durable
//!    through one WAL record when it returns, its batch written by the store's flush thread meanwhile:
//!    when the ingest returns every update and every upper is durable, some batches not yet written, as
//!    SQLite's WAL holds pages not yet checkpointed); ddpersist `append_bytes` per 10,000 (durable at
//!    the seal); SQLite with the seed's schema (WAL, `synchronous=FULL`, one transaction per 1,000); fjall
//!    (one write batch per 1,000, `PersistMode::SyncData`). The engines alternate their order per round.
//! 3. Bytes written per payload byte (key + val: 116 bytes an update) by those same ingests, counted as the
//!    delta of `wchar` in `/proc/self/io` (bytes passed to `write`/`pwrite` by every thread of the process,
//!    exited threads included) from before the engine opens until it is closed; for ddpersist after
//!    `Store::compact` has written every logged seal's batch and run every merge due, so seals and merges
//!    are counted in full (the batch count at the end is
//!    printed). Writes through a shared mmap would not count: ddpersist maps its batch files read-only
//!    (`src/fs/mod.rs`) and writes batch files, WAL and manifest with `write`/`pwrite` (`src/blob/dir.rs`,
//!    `src/fs/mod.rs`, `src/wal/`); fjall and lsm-tree use no mmap; SQLite writes its WAL and database with
//!    `pwrite` (`mmap_size` is 0 by default) and only its wal-index (`-shm`, a hash of page numbers, never
//!    synced) through a shared mmap. fjall's count stops at close: work still queued then (a compaction) is
//!    dropped, not written.
//! 4. Key-as-of-time hit latency, fresh after merges: the store of row 2's `write_bytes` ingest, still open
//!    after `Store::compact` ran every merge due (so the files read are the merges' new outputs), then at
//!    once (before the next engine's ingest) `LOOKUPS` `get_bytes` hits on random keys not looked up
//!    before, mean per lookup; against DD's `OrdValBatch` (`BytesBatch`, one batch of
//!    all `N`) with a fresh cursor per lookup (`seek_key`, vals, `map_times`), the same keys. Every answer is
//!    checked equal. Diagnostic rows, after the other engines' ingests: the same keys again on the same store
//!    (blocks already touched), and the same keys after the store is reopened (a restart: every block read is touched for the first time by the
//!    new process and checksummed then); last, that reopened store after `Store::major_compact` (every
//!    batch merged into one; its time and bytes written printed) on keys not looked up before, against DD's
//!    seek of the same keys.
//! 5. Restart → trace ready, page cache warm: `Store::open`, a timely worker, `arrange_persisted` built
//!    over row 1's store (compacted), and the first cursor seek answered (`common::restart::trace_ready`),
//!    against the store-level first lookup (`Store::open` + `get_bytes`, `common::restart::open_get`).
//!
//! The machine's load average (`/proc/loadavg`) prints at the start and the end. The table is markdown.

mod common;

use common::arrange;
use common::engines::{
    ingest, time, val, Engine, Fjall, InMemory, Ours, OursAppend, OursLogged, Sqlite, SEAL_EVERY, STREAM,
};
use common::restart::{open_get, trace_ready};
use common::{env_or, full_run, has_arg, hex_key, loadavg, median, print_table, splitmix64, wchar, yes, Row};
use ddpersist::codec::Codec;
use ddpersist::operators::worker_stream_id;
use ddpersist::Store;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Lookups per round of row 4.
const LOOKUPS: usize = 10_000;
/// Key and val bytes of one update.
const PAYLOAD: u64 = 16 + 100;
/// The arrangement of rows 1 and 5.
const ARRANGEMENT: &str = "summary";

/// The ingest paths of rows 2 and 3.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Write,
    Logged,
    Append,
    Sqlite,
    Fjall,
}

const KINDS: [Kind; 5] = [Kind::Write, Kind::Logged, Kind::Append, Kind::Sqlite, Kind::Fjall];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Write => "ddpersist write_bytes",
            Kind::Logged => "ddpersist write_bytes + seal_logged",
            Kind::Append => "ddpersist append_bytes",
            Kind::Sqlite => "SQLite",
            Kind::Fjall => "fjall",
        }
    }
}

/// One ingest of the workload: its wall time, the bytes written until the engine closed, ddpersist's
/// batch count after `Store::compact`, and the directory (kept for row 4).
struct Ingested {
    took: Duration,
    written: u64,
    batches: Option<usize>,
    /// ddpersist's store, still open after `compact` (its merged files new to it).
    store: Option<Store>,
    dir: TempDir,
}

/// Writes the `n` updates into a fresh directory through `kind`, checks a few lookups (untimed; reads
/// write nothing), then (ddpersist) runs every merge due, then closes the engine.
fn ingest_once(tmp: &Path, n: usize, kind: Kind) -> Ingested {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let before = wchar();
    let timed = |engine: &mut dyn Engine| {
        let start = Instant::now();
        ingest(engine, n);
        let took = start.elapsed();
        // The first, middle and last update, and a key never written (SQLite scans for each: few).
        let as_of = time(n - 1);
        for i in [0, n / 2, n - 1, n] {
            let want = if i < n {
                vec![(val(i as u64).to_vec(), 1)]
            } else {
                Vec::new()
            };
            let got = engine.get(&hex_key(i as u64), as_of);
            assert_eq!(got, want, "{}: the lookup of update {i}", kind.name());
        }
        took
    };
    let (took, batches, kept) = match kind {
        Kind::Write | Kind::Logged | Kind::Append => {
            let store = Ours::open(dir.path()).0;
            let took = match kind {
                Kind::Write => timed(&mut Ours(store.clone(), Vec::new())),
                Kind::Logged => timed(&mut OursLogged(store.clone())),
                _ => timed(&mut OursAppend(store.clone(), Vec::with_capacity(SEAL_EVERY), 0)),
            };
            store.compact(STREAM).unwrap();
            (
                took,
                Some(store.sealed(STREAM).unwrap().batches.len()),
                Some(store),
            )
        }
        Kind::Sqlite => (timed(&mut Sqlite::open(dir.path())), None, None),
        Kind::Fjall => (timed(&mut Fjall::open(dir.path())), None, None),
    };
    Ingested {
        took,
        // Counted before the store is dropped: a store kept open for row 4 writes nothing more.
        written: wchar() - before,
        batches,
        store: kept,
        dir,
    }
}

/// Random present keys for round `round` of row 4.
fn lookup_keys(n: usize, round: u64) -> Vec<[u8; 16]> {
    (0..LOOKUPS as u64)
        .map(|j| hex_key(splitmix64(round * LOOKUPS as u64 + j + 0x5eed) % n as u64))
        .collect()
}

type Answers = Vec<Vec<(Vec<u8>, i64)>>;

/// Looks `keys` up with `get`, returning the mean time per lookup and the answers.
fn timed_lookups(keys: &[[u8; 16]], get: impl Fn(&[u8]) -> Vec<(Vec<u8>, i64)>) -> (Duration, Answers) {
    let mut answers = Vec::with_capacity(keys.len());
    let start = Instant::now();
    for k in keys {
        answers.push(black_box(get(k)));
    }
    (start.elapsed() / keys.len() as u32, answers)
}

/// A row of the table: `ours` against `peer` (their figures as printed), `ratio` = ours / peer, and
/// whether `ratio` (or, for an absolute goal, ours) meets `goal`.
fn row(figure: &str, ours: String, peer: String, ratio: f64, goal: &str, met: Option<bool>) -> Row {
    Row {
        figure: figure.into(),
        ours,
        baseline: peer,
        ratio: format!("{ratio:.2}×"),
        goal: goal.into(),
        met: met.map_or("-".into(), yes),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn micros(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    if has_arg("--list") {
        return;
    }
    let full = full_run();
    let n: usize = env_or("DDPERSIST_BENCH_UPDATES", if full { 1_000_000 } else { 20_000 });
    let rounds: u64 = env_or("DDPERSIST_BENCH_ROUNDS", if full { 3 } else { 1 }).max(1);
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(tmp).unwrap();
    let load_start = loadavg();
    let started = Instant::now();
    eprintln!("summary: {n} updates, {rounds} round(s); load average {load_start}");

    // Row 1, and row 5's store (the last round's, compacted).
    let (mut dd, mut ours) = (Vec::new(), Vec::new());
    let (mut arranged_batches, mut arranged_dir) = (0, None);
    let stream = worker_stream_id(ARRANGEMENT, 0, 1);
    for round in 0..rounds {
        let mut persisted = || {
            let dir = tempfile::tempdir_in(tmp).unwrap();
            let store = Store::open_with(dir.path(), common::bench_options()).unwrap();
            let took = arrange::run(n as u64, Some(&store), ARRANGEMENT);
            arranged_batches = store.sealed(&stream).unwrap().batches.len();
            store.compact(&stream).unwrap();
            drop(store);
            arranged_dir = Some(dir);
            took
        };
        if round % 2 == 0 {
            dd.push(arrange::run(n as u64, None, ARRANGEMENT));
            ours.push(persisted());
        } else {
            ours.push(persisted());
            dd.push(arrange::run(n as u64, None, ARRANGEMENT));
        }
        eprintln!(
            "row 1, round {round}: DD {:?}, ddpersist {:?}",
            dd[dd.len() - 1],
            ours[ours.len() - 1]
        );
    }
    let (dd_arrange, ours_arrange) = (median(&mut dd), median(&mut ours));

    // Rows 2 and 3; row 4's store is the last `write_bytes` ingest.
    let mut took: Vec<Vec<Duration>> = vec![Vec::new(); KINDS.len()];
    let mut written: Vec<Vec<u64>> = vec![Vec::new(); KINDS.len()];
    let mut batches = [0usize; 3];
    let mut read_stores = Vec::new();
    for round in 0..rounds as usize {
        for j in 0..KINDS.len() {
            let k = (j + round) % KINDS.len();
            let got = ingest_once(tmp, n, KINDS[k]);
            eprintln!(
                "rows 2-3, round {round}, {}: {:?}, {} bytes written",
                KINDS[k].name(),
                got.took,
                got.written
            );
            took[k].push(got.took);
            written[k].push(got.written);
            if let Some(b) = got.batches {
                batches[k] = b;
            }
            if KINDS[k] == Kind::Write {
                // Row 4's fresh lookups run now, right after the merges, before the next engine's ingest
                // (gigabytes of writes) ages this store's pages in the page cache.
                let store = got.store.expect("write_bytes keeps its store open");
                let keys = lookup_keys(n, read_stores.len() as u64);
                let fresh = timed_lookups(&keys, |k| store.get_bytes(STREAM, k, time(n - 1)).unwrap());
                read_stores.push((store, got.dir, keys, fresh));
            }
        }
    }
    let ingest_rate: Vec<f64> = took.iter_mut().map(|t| rate(n, median(t))).collect();
    let amp: Vec<f64> = written
        .iter_mut()
        .map(|w| median(w) as f64 / (n as u64 * PAYLOAD) as f64)
        .collect();

    // Row 4: fresh hits after merges, against a fresh DD cursor per lookup.
    let dd_batch = InMemory::build(n);
    let as_of = time(n - 1);
    let (mut fresh, mut warm, mut dd_seek, mut reopened) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut reopened_stores = Vec::new();
    for (store, dir, keys, (ours_fresh, answers)) in read_stores {
        let (ours_warm, again) = timed_lookups(&keys, |k| store.get_bytes(STREAM, k, as_of).unwrap());
        drop(store);
        let store = Store::open_with(dir.path(), common::bench_options()).unwrap();
        let (ours_reopened, restarted) = timed_lookups(&keys, |k| store.get_bytes(STREAM, k, as_of).unwrap());
        let (dd_fresh, want) = timed_lookups(&keys, |k| InMemory::get_in(&dd_batch.0, k, as_of));
        assert!(
            answers == want && again == want && restarted == want,
            "row 4: ddpersist's answers differ from DD's"
        );
        assert!(want.iter().all(|a| a.len() == 1), "row 4: every key is a hit");
        fresh.push(ours_fresh);
        warm.push(ours_warm);
        reopened.push(ours_reopened);
        dd_seek.push(dd_fresh);
        reopened_stores.push((store, dir));
    }
    // Diagnostic, after every other row-4 measurement (its writes would disturb them): each reopened store
    // merged into one batch (`major_compact`: its time and bytes written), then keys not looked up before,
    // fresh, against DD's seek of the same keys.
    let (mut major, mut dd_major, mut major_took, mut major_written) = (vec![], vec![], vec![], vec![]);
    for (round, (store, _dir)) in reopened_stores.into_iter().enumerate() {
        let (before, start) = (wchar(), Instant::now());
        store.major_compact(STREAM).unwrap();
        major_took.push(start.elapsed());
        major_written.push(wchar() - before);
        assert_eq!(
            store.sealed(STREAM).unwrap().batches.len(),
            1,
            "major_compact leaves one batch"
        );
        let keys = lookup_keys(n, 1_000 + round as u64);
        let (ours_major, got) = timed_lookups(&keys, |k| store.get_bytes(STREAM, k, as_of).unwrap());
        let (dd_major_seek, want) = timed_lookups(&keys, |k| InMemory::get_in(&dd_batch.0, k, as_of));
        assert!(
            got == want,
            "row 4: ddpersist's answers after major_compact differ from DD's"
        );
        assert!(want.iter().all(|a| a.len() == 1), "row 4: every key is a hit");
        major.push(ours_major);
        dd_major.push(dd_major_seek);
    }
    drop(dd_batch);
    let (fresh, warm, dd_seek) = (median(&mut fresh), median(&mut warm), median(&mut dd_seek));
    let reopened = median(&mut reopened);
    let (major, dd_major) = (median(&mut major), median(&mut dd_major));
    let major_took = median(&mut major_took);
    let major_amp = median(&mut major_written) as f64 / (n as u64 * PAYLOAD) as f64;

    // Row 5: restart of row 1's arrangement, warm; one untimed run first fills the page cache.
    let arranged_dir = arranged_dir.unwrap();
    // Row 1's arrangement holds `(Vec<u8>, Vec<u8>)` pairs: its keys are stored in their `Codec` encoding.
    let probe = hex_key(n as u64 / 2).to_vec().to_bytes();
    trace_ready(arranged_dir.path(), ARRANGEMENT, &probe, false);
    let samples = rounds.max(5);
    let mut ready: Vec<Duration> = (0..samples)
        .map(|_| trace_ready(arranged_dir.path(), ARRANGEMENT, &probe, false))
        .collect();
    let mut first_get: Vec<Duration> = (0..samples)
        .map(|_| open_get(arranged_dir.path(), &stream, &probe, u64::MAX - 1).1)
        .collect();
    let restart_batches = Store::open_with(arranged_dir.path(), common::bench_options())
        .unwrap()
        .sealed(&stream)
        .unwrap()
        .batches
        .len();
    drop(arranged_dir);
    let (ready, first_get) = (median(&mut ready), median(&mut first_get));

    let (w, l, a, s, f) = (0, 1, 2, 3, 4);
    let ingest_row = |k: usize, what: &str| {
        row(
            &format!("2. durable ingest: {what}"),
            format!("{:.0} k/s", ingest_rate[k] / 1e3),
            format!(
                "SQLite {:.0} k/s; fjall {:.0} k/s",
                ingest_rate[s] / 1e3,
                ingest_rate[f] / 1e3
            ),
            ingest_rate[k] / ingest_rate[s],
            "≥ 3× SQLite",
            Some(ingest_rate[k] >= 3.0 * ingest_rate[s]),
        )
    };
    let amp_row = |k: usize, what: &str| {
        row(
            &format!("3. bytes written / payload byte: {what} ingest, after `compact`"),
            format!("{:.2}× ({} batches)", amp[k], batches[k]),
            format!("SQLite {:.2}×; fjall {:.2}×", amp[s], amp[f]),
            amp[k] / amp[s],
            "≤ 5×",
            Some(amp[k] <= 5.0),
        )
    };
    let (fresh_s, warm_s, dd_s) = (fresh.as_secs_f64(), warm.as_secs_f64(), dd_seek.as_secs_f64());
    let rows = [
        row(
            "1. `arrange_persisted` wall time (frontier past the last time)",
            format!("{} ({arranged_batches} batches)", secs(ours_arrange)),
            format!("DD `arrange_by_key` {}", secs(dd_arrange)),
            ours_arrange.as_secs_f64() / dd_arrange.as_secs_f64(),
            "≤ 1.0× DD",
            Some(ours_arrange <= dd_arrange),
        ),
        ingest_row(w, "`write_bytes` (durable) + `seal` per 10,000"),
        ingest_row(l, "`write_bytes` (durable) + `seal_logged` per 10,000"),
        ingest_row(a, "`append_bytes` per 10,000 (durable at the seal)"),
        amp_row(w, "`write_bytes` + `seal`"),
        amp_row(l, "`write_bytes` + `seal_logged`"),
        amp_row(a, "`append_bytes`"),
        row(
            "4. key-as-of-time hit, fresh after merges (mean)",
            micros(fresh),
            format!("DD fresh-cursor seek {}", micros(dd_seek)),
            fresh_s / dd_s,
            "≤ 0.5× DD",
            Some(fresh_s <= 0.5 * dd_s),
        ),
        row(
            "4. (diagnostic) the same keys again, blocks touched",
            micros(warm),
            format!("DD fresh-cursor seek {}", micros(dd_seek)),
            warm_s / dd_s,
            "-",
            None,
        ),
        row(
            "4. (diagnostic) the same keys fresh after a restart (store reopened)",
            micros(reopened),
            format!("DD fresh-cursor seek {}", micros(dd_seek)),
            reopened.as_secs_f64() / dd_s,
            "-",
            None,
        ),
        row(
            &format!(
                "4. (diagnostic) new keys fresh after `major_compact` (one batch; it took {}, wrote {major_amp:.2} bytes / payload byte)",
                secs(major_took)
            ),
            micros(major),
            format!("DD fresh-cursor seek {}", micros(dd_major)),
            major.as_secs_f64() / dd_major.as_secs_f64(),
            "-",
            None,
        ),
        row(
            &format!("5. restart → trace ready, warm ({restart_batches} batches)"),
            millis(ready),
            format!("store open + first `get_bytes` {}", millis(first_get)),
            ready.as_secs_f64() / first_get.as_secs_f64(),
            "≤ 20 ms",
            Some(ready <= Duration::from_millis(20)),
        ),
    ];
    println!(
        "summary: {n} updates (16-byte keys, 100-byte vals, a time per {SEAL_EVERY}), {rounds} round(s), medians; \
         {LOOKUPS} lookups a round; bytes written = /proc/self/io wchar deltas"
    );
    println!("load average (1, 5, 15 min) at the start: {load_start}");
    println!();
    print_table("ddpersist", "peer, same run", &rows);
    println!();
    println!(
        "load average (1, 5, 15 min) at the end: {}; run took {:.0} s",
        loadavg(),
        started.elapsed().as_secs_f64()
    );
}
