//! `inspect DIR`: what the manifest records (generation, each stream's number, durability, frontiers,
//! batches with their levels, and the FutureLog's spilled runs; the operator stream whose upper holds back
//! the compaction of the store's operator state), the batch files being written right now (a seal or a merge in progress:
//! `*.batch.tmp`, or a finished file not yet named by the manifest), and which WAL segments are on disk,
//! as text or as one JSON object. Reads the manifest only: batch contents are checked by `inspect verify`.

use crate::access::{wal_segments, SegmentFile, StoreDir};
use crate::error::ToolResult;
use crate::render::{frontier, interval, table, write_json, write_table, DescriptionJson, Frontier};
use ddpersist::batch::batch_file_name;
use ddpersist::blob::Blob;
use ddpersist::operators::compaction_holder;
use ddpersist::version::{BatchMeta, StreamMeta};
use ddpersist::Description;
use serde::Serialize;
use std::io::{self, Write};
use std::path::Path;

const BATCH_HEADER: [&str; 6] = ["FILE", "LEVEL", "DESCRIPTION", "SINCE", "UPDATES", "BYTES"];

/// Prints the listing of the store in `dir`.
pub fn run(dir: &Path, json: bool, out: &mut dyn Write) -> ToolResult<()> {
    let store = StoreDir::open(dir)?;
    let segments = wal_segments(&store.wal_dir())?;
    let pending = in_progress(&store, dir)?;
    if json {
        write_json(out, &listing_json(&store, &segments, &pending))
    } else {
        Ok(write_text(&store, &segments, &pending, out)?)
    }
}

/// Batch files not (yet) named by the manifest, with their sizes: seals and merges in progress (or the
/// leftovers of a crash, which the next open removes).
fn in_progress(store: &StoreDir, dir: &Path) -> ddpersist::Result<Vec<(String, u64)>> {
    let named: std::collections::HashSet<u64> = store
        .manifest
        .streams
        .iter()
        .flat_map(|s| s.batches.iter().map(|b| b.file_no))
        .collect();
    let mut out: Vec<(String, u64)> = store
        .blob
        .list()?
        .into_iter()
        .filter(|n| {
            let stem = n.strip_suffix(ddpersist::blob::TMP_SUFFIX).unwrap_or(n);
            ddpersist::batch::parse_batch_file_name(stem).is_some_and(|no| !named.contains(&no))
        })
        .filter_map(|n| {
            // A seal's or merge's file gone since the listing was committed (renamed) or removed.
            crate::access::size_if_present(&dir.join(&n))
                .map(|size| size.map(|size| (n, size)))
                .transpose()
        })
        .collect::<ddpersist::Result<_>>()?;
    out.sort();
    Ok(out)
}

fn write_text(
    store: &StoreDir,
    segments: &[SegmentFile],
    pending: &[(String, u64)],
    out: &mut dyn Write,
) -> io::Result<()> {
    let m = &store.manifest;
    writeln!(out, "store {}", store.blob.location())?;
    writeln!(
        out,
        "manifest generation {} (next file number {}, next stream number {})",
        m.generation, m.next_file_no, m.next_stream_no
    )?;
    writeln!(out, "streams: {}", m.streams.len())?;
    if let Some((id, upper)) = compaction_holder(m) {
        writeln!(
            out,
            "operator state compacts below upper {} of {id:?} (the operator stream with the least upper)",
            frontier(upper)
        )?;
    }
    for s in &m.streams {
        write_stream_text(s, out)?;
    }
    writeln!(
        out,
        "batch files in progress (seals or merges being written): {}",
        pending.len()
    )?;
    for (name, bytes) in pending {
        writeln!(out, "  {name}  {bytes} bytes")?;
    }
    writeln!(out, "wal segments: {}", segments.len())?;
    for seg in segments {
        writeln!(out, "  {}  {} bytes", seg.name, seg.size)?;
    }
    Ok(())
}

fn write_stream_text(s: &StreamMeta, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "stream {:?}", s.id)?;
    writeln!(
        out,
        "  stream_no {}, durable {}, upper {}, since {}",
        s.stream_no,
        if s.durable { "yes" } else { "no" },
        frontier(s.upper),
        frontier(s.since)
    )?;
    if !s.types.is_empty() {
        writeln!(out, "  types: {}", s.types)?;
    }
    writeln!(out, "  batches: {}", s.batches.len())?;
    write_batch_table(&s.batches, out)?;
    if !s.spills.is_empty() {
        writeln!(
            out,
            "  spilled runs (unsealed updates written out by the FutureLog): {}",
            s.spills.len()
        )?;
        write_batch_table(&s.spills, out)?;
    }
    Ok(())
}

fn write_batch_table(batches: &[BatchMeta], out: &mut dyn Write) -> io::Result<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let mut t = table(&BATCH_HEADER, &[1, 4, 5]);
    t.add_rows(batches.iter().map(batch_row));
    write_table(out, "    ", &t)
}

fn batch_row(b: &BatchMeta) -> Vec<String> {
    vec![
        batch_file_name(b.file_no),
        b.level.to_string(),
        interval(&description(b)),
        frontier(b.since),
        b.update_count.to_string(),
        b.size_bytes.to_string(),
    ]
}

fn description(b: &BatchMeta) -> Description {
    Description {
        lower: b.lower,
        upper: b.upper,
        since: b.since,
    }
}

/// The listing as JSON.
#[derive(Serialize)]
struct ListingJson<'a> {
    dir: String,
    generation: u64,
    next_file_no: u64,
    next_stream_no: u32,
    /// The operator stream whose upper bounds the compaction of every operator's state in the store.
    compaction_holder: Option<HolderJson<'a>>,
    streams: Vec<StreamJson<'a>>,
    in_progress: Vec<FileJson<'a>>,
    wal_segments: Vec<FileJson<'a>>,
}

/// The operator stream with the least upper (`ddpersist::operators::compaction_holder`).
#[derive(Serialize)]
struct HolderJson<'a> {
    stream: &'a str,
    upper: Frontier,
}

/// A stream of the listing.
#[derive(Serialize)]
struct StreamJson<'a> {
    id: &'a str,
    stream_no: u32,
    durable: bool,
    upper: Frontier,
    since: Frontier,
    /// The names of the key's and val's encodings; empty if none recorded.
    types: &'a str,
    batches: Vec<BatchJson>,
    spills: Vec<BatchJson>,
}

/// A batch file or spilled run the manifest names.
#[derive(Serialize)]
pub struct BatchJson {
    file: String,
    level: u32,
    description: DescriptionJson,
    update_count: u64,
    bytes: u64,
}

impl From<&BatchMeta> for BatchJson {
    fn from(b: &BatchMeta) -> Self {
        BatchJson {
            file: batch_file_name(b.file_no),
            level: b.level,
            description: description(b).into(),
            update_count: b.update_count,
            bytes: b.size_bytes,
        }
    }
}

/// A file and its size.
#[derive(Serialize)]
struct FileJson<'a> {
    name: &'a str,
    bytes: u64,
}

fn listing_json<'a>(
    store: &'a StoreDir,
    segments: &'a [SegmentFile],
    pending: &'a [(String, u64)],
) -> ListingJson<'a> {
    let m = &store.manifest;
    ListingJson {
        dir: store.blob.location(),
        generation: m.generation,
        next_file_no: m.next_file_no,
        next_stream_no: m.next_stream_no,
        compaction_holder: compaction_holder(m).map(|(stream, upper)| HolderJson {
            stream,
            upper: Frontier(upper),
        }),
        streams: m.streams.iter().map(|s| stream_json(s)).collect(),
        in_progress: pending
            .iter()
            .map(|(name, bytes)| FileJson { name, bytes: *bytes })
            .collect(),
        wal_segments: segments
            .iter()
            .map(|seg| FileJson {
                name: &seg.name,
                bytes: seg.size,
            })
            .collect(),
    }
}

fn stream_json(s: &StreamMeta) -> StreamJson<'_> {
    StreamJson {
        id: &s.id,
        stream_no: s.stream_no,
        durable: s.durable,
        upper: Frontier(s.upper),
        since: Frontier(s.since),
        types: &s.types,
        batches: s.batches.iter().map(BatchJson::from).collect(),
        spills: s.spills.iter().map(BatchJson::from).collect(),
    }
}
