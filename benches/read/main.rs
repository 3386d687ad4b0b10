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
//!
//! Modules: `data.rs` (keys, vals, how a store is sealed, DD's in-memory batches), `store.rs` (the store on
//! disk), `walks.rs` (the cursor walks and lookups both sides run), `timing.rs` (criterion registration, the
//! times kept for the summary); parts 1 and 2 in `scan_lookup.rs`, part 3 in `restart.rs`, part 4 in
//! `typed.rs`, the table in `summary.rs`.

#[path = "../common/mod.rs"]
mod common;

mod data;
mod restart;
mod scan_lookup;
mod store;
mod summary;
mod timing;
mod typed;
mod walks;

use common::env_or;
use criterion::Criterion;
use data::Shape;
use restart::restart;
use scan_lookup::read_benches;
use std::path::Path;
use summary::summary;
use typed::typed_benches;

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
