//! `inspect stats DIR`: per stream, what the store holds and what it costs on disk: batches by level,
//! spilled runs, the stream's share of the WAL, update counts, and space amplification. Opens the store on
//! a read-only view ([`crate::view`]) and reads every update of every stream once (its snapshot). See
//! [`HELP`] for what each figure means.

use crate::access::wal_segments;
use crate::error::ToolResult;
use crate::render::{count, frontier, table, write_json, write_table, Frontier};
use crate::view::{open_read_only, WalShare};
use ddpersist::version::{BatchMeta, StreamMeta};
use ddpersist::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

/// The `stats --help` text: what each figure means.
pub const HELP: &str = "\
Per stream: batches by level, sizes, update counts, spilled runs, WAL share, and amplification.

Reads the manifest, the sizes of the files, and every update of every stream once (its consolidated
snapshot, as `scan` prints it). The figures, per stream:
  levels          sealed batches by compaction level (floor(log2(updates)) of a batch): how many, their
                  updates and bytes, the smallest and largest file
  batches         sealed batch files: how many, updates, bytes
  spilled runs    unsealed updates the memtable wrote to files under memory pressure: files, updates, bytes
  WAL             the stream's records in the WAL segments on disk, and their payload bytes (a segment is
                  kept until every record in it is sealed, so sealed records may still be counted)
  stored updates  updates in batch files and spilled runs, plus unsealed ones replayed from the WAL
  live updates    updates of the consolidated snapshot (what merging everything would keep); keys: the
                  distinct keys among them
  logical bytes   the live updates' key and val bytes, plus 16 per update (time and diff)
  disk bytes      batch files + spilled runs + the stream's WAL payload bytes
  space amp       space amplification = disk bytes / logical bytes
  update amp      stored updates / live updates (how many updates a full merge would consolidate away)
The store's totals count the WAL segment files whole. Write amplification (bytes written to disk per
byte written by the user) cannot be known from the files: the store keeps no count of what its seals
and merges wrote over time, so it is not shown (null in JSON); space amplification is shown instead.";

/// The report.
#[derive(Serialize)]
struct StatsJson {
    dir: String,
    streams: Vec<StreamStats>,
    totals: Totals,
    /// Always null: see [`HELP`].
    write_amplification: Option<f64>,
}

/// The store's totals.
#[derive(Serialize, Default)]
struct Totals {
    batches: Files,
    spilled_runs: Files,
    wal_segments: Files,
    /// Batch files, spilled runs and WAL segment files.
    disk_bytes: u64,
    live_updates: u64,
    logical_bytes: u64,
    space_amplification: Option<f64>,
}

/// Some files.
#[derive(Serialize, Default, Clone, Copy)]
struct Files {
    count: u64,
    updates: u64,
    bytes: u64,
}

/// One stream's figures (see [`HELP`]).
#[derive(Serialize)]
struct StreamStats {
    id: String,
    stream_no: u32,
    durable: bool,
    upper: Frontier,
    since: Frontier,
    levels: Vec<Level>,
    batches: Files,
    spilled_runs: Files,
    wal: WalJson,
    stored_updates: u64,
    live_updates: u64,
    keys: u64,
    logical_bytes: u64,
    disk_bytes: u64,
    space_amplification: Option<f64>,
    update_amplification: Option<f64>,
}

/// The sealed batches of one level.
#[derive(Serialize)]
struct Level {
    level: u32,
    batches: u64,
    updates: u64,
    bytes: u64,
    smallest_bytes: u64,
    largest_bytes: u64,
}

/// A stream's records in the WAL.
#[derive(Serialize)]
struct WalJson {
    records: u64,
    bytes: u64,
}

/// Prints the statistics of the store in `dir`.
pub fn run(dir: &Path, json: bool, out: &mut dyn Write) -> ToolResult<()> {
    let view = open_read_only(dir)?;
    let manifest = view.store.manifest();
    let streams = manifest
        .streams
        .iter()
        .map(|s| {
            stream_stats(
                &view.store,
                s,
                view.wal.get(&s.stream_no).copied().unwrap_or_default(),
            )
        })
        .collect::<ddpersist::Result<Vec<_>>>()?;
    let location = view.store.blob().location();
    let segments = wal_segments(&dir.join(ddpersist::store::WAL_DIR))?;
    let totals = totals(
        &streams,
        Files {
            count: segments.len() as u64,
            updates: 0,
            bytes: segments.iter().map(|s| s.size).sum(),
        },
    );
    let report = StatsJson {
        dir: location,
        streams,
        totals,
        write_amplification: None,
    };
    if json {
        write_json(out, &report)
    } else {
        Ok(write_text(&report, out)?)
    }
}

fn stream_stats(store: &Store, s: &StreamMeta, wal: WalShare) -> ddpersist::Result<StreamStats> {
    let snapshot = store.snapshot(&s.id)?;
    let (mut live, mut keys, mut logical) = (0u64, 0u64, 0u64);
    let mut last_key: Option<&[u8]> = None;
    for u in snapshot.iter()? {
        let (key, val, _, _) = u?;
        live += 1;
        logical += (key.len() + val.len() + 16) as u64;
        if last_key != Some(key) {
            keys += 1;
            last_key = Some(key);
        }
    }
    let (batches, spilled_runs) = (files(&s.batches), files(&s.spills));
    let stored = batches.updates + spilled_runs.updates + snapshot.unsealed_len() as u64;
    let disk_bytes = batches.bytes + spilled_runs.bytes + wal.bytes;
    Ok(StreamStats {
        id: s.id.clone(),
        stream_no: s.stream_no,
        durable: s.durable,
        upper: Frontier(s.upper),
        since: Frontier(s.since),
        levels: levels(&s.batches),
        batches,
        spilled_runs,
        wal: WalJson {
            records: wal.records,
            bytes: wal.bytes,
        },
        stored_updates: stored,
        live_updates: live,
        keys,
        logical_bytes: logical,
        disk_bytes,
        space_amplification: ratio(disk_bytes, logical),
        update_amplification: ratio(stored, live),
    })
}

/// `a / b`, or `None` when `b` is 0.
fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn files(metas: &[BatchMeta]) -> Files {
    Files {
        count: metas.len() as u64,
        updates: metas.iter().map(|m| m.update_count).sum(),
        bytes: metas.iter().map(|m| m.size_bytes).sum(),
    }
}

fn levels(batches: &[BatchMeta]) -> Vec<Level> {
    let mut by_level: BTreeMap<u32, Vec<&BatchMeta>> = BTreeMap::new();
    for b in batches {
        by_level.entry(b.level).or_default().push(b);
    }
    by_level
        .into_iter()
        .map(|(level, metas)| Level {
            level,
            batches: metas.len() as u64,
            updates: metas.iter().map(|m| m.update_count).sum(),
            bytes: metas.iter().map(|m| m.size_bytes).sum(),
            smallest_bytes: metas.iter().map(|m| m.size_bytes).min().unwrap_or(0),
            largest_bytes: metas.iter().map(|m| m.size_bytes).max().unwrap_or(0),
        })
        .collect()
}

fn totals(streams: &[StreamStats], wal_segments: Files) -> Totals {
    let mut t = Totals {
        wal_segments,
        ..Totals::default()
    };
    for s in streams {
        for (sum, part) in [(&mut t.batches, s.batches), (&mut t.spilled_runs, s.spilled_runs)] {
            sum.count += part.count;
            sum.updates += part.updates;
            sum.bytes += part.bytes;
        }
        t.live_updates += s.live_updates;
        t.logical_bytes += s.logical_bytes;
    }
    t.disk_bytes = t.batches.bytes + t.spilled_runs.bytes + t.wal_segments.bytes;
    t.space_amplification = ratio(t.disk_bytes, t.logical_bytes);
    t
}

/// A ratio for text output: two decimals, or `-` when there is nothing to divide by.
fn shown(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

const STREAM_HEADER: [&str; 12] = [
    "STREAM",
    "UPPER",
    "BATCHES",
    "SPILLED RUNS",
    "WAL RECORDS",
    "STORED UPDATES",
    "LIVE UPDATES",
    "KEYS",
    "DISK BYTES",
    "LOGICAL BYTES",
    "SPACE AMP",
    "UPDATE AMP",
];
const LEVEL_HEADER: [&str; 6] = ["LEVEL", "BATCHES", "UPDATES", "BYTES", "SMALLEST", "LARGEST"];

fn write_text(r: &StatsJson, out: &mut dyn Write) -> io::Result<()> {
    let t = &r.totals;
    writeln!(
        out,
        "store {}: {}",
        r.dir,
        count(r.streams.len() as u64, "stream")
    )?;
    writeln!(
        out,
        "  {} ({} bytes), {} ({} bytes), {} ({} bytes): {} bytes on disk",
        count(t.batches.count, "batch file"),
        t.batches.bytes,
        count(t.spilled_runs.count, "spilled run"),
        t.spilled_runs.bytes,
        count(t.wal_segments.count, "WAL segment"),
        t.wal_segments.bytes,
        t.disk_bytes
    )?;
    writeln!(
        out,
        "  consolidated snapshots: {}, {} logical bytes; space amplification {} (bytes on disk / logical bytes)",
        count(t.live_updates, "update"),
        t.logical_bytes,
        shown(t.space_amplification)
    )?;
    writeln!(
        out,
        "  write amplification: not known (the store records no count of bytes written; see stats --help)"
    )?;
    if r.streams.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let mut streams = table(&STREAM_HEADER, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    streams.add_rows(r.streams.iter().map(stream_row));
    write_table(out, "", &streams)?;
    for s in r.streams.iter().filter(|s| !s.levels.is_empty()) {
        writeln!(out)?;
        writeln!(out, "stream {:?}: batches by level", s.id)?;
        let mut levels = table(&LEVEL_HEADER, &[0, 1, 2, 3, 4, 5]);
        levels.add_rows(s.levels.iter().map(|l| {
            [
                l.level as u64,
                l.batches,
                l.updates,
                l.bytes,
                l.smallest_bytes,
                l.largest_bytes,
            ]
            .map(|n| n.to_string())
        }));
        write_table(out, "  ", &levels)?;
    }
    Ok(())
}

fn stream_row(s: &StreamStats) -> Vec<String> {
    vec![
        format!("{:?}", s.id),
        frontier(s.upper.0),
        s.batches.count.to_string(),
        s.spilled_runs.count.to_string(),
        s.wal.records.to_string(),
        s.stored_updates.to_string(),
        s.live_updates.to_string(),
        s.keys.to_string(),
        s.disk_bytes.to_string(),
        s.logical_bytes.to_string(),
        shown(s.space_amplification),
        shown(s.update_amplification),
    ]
}
