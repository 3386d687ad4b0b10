//! `inspect DIR`: what the manifest records (generation, each stream's number, durability, frontiers,
//! batches with their levels, and the FutureLog's spilled runs), the batch files being written right now (a seal or a merge in progress:
//! `*.batch.tmp`, or a finished file not yet named by the manifest), and which WAL segments are on disk,
//! as text or as one JSON object. Reads the manifest only: batch contents are checked by `inspect verify`.

use crate::access::{wal_segments, SegmentFile, StoreDir};
use crate::error::ToolResult;
use crate::json::JsonWriter;
use crate::render::{frontier, header_row, interval, json_description, json_frontier, Widths};
use ddpersist::batch::batch_file_name;
use ddpersist::blob::Blob;
use ddpersist::manifest::{BatchMeta, StreamMeta};
use ddpersist::Description;
use std::io::{self, Write};
use std::path::Path;

const BATCH_HEADER: [&str; 6] = ["FILE", "LEVEL", "DESCRIPTION", "SINCE", "UPDATES", "BYTES"];

/// Prints the listing of the store in `dir`.
pub fn run(dir: &Path, json: bool, out: &mut dyn Write) -> ToolResult<()> {
    let store = StoreDir::open(dir)?;
    let segments = wal_segments(&store.wal_dir())?;
    let pending = in_progress(&store, dir)?;
    if json {
        write_json(&store, &segments, &pending, out)?;
    } else {
        write_text(&store, &segments, &pending, out)?;
    }
    Ok(())
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
        .map(|n| {
            let bytes = std::fs::metadata(dir.join(&n)).map(|m| m.len()).unwrap_or(0);
            (n, bytes)
        })
        .collect();
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
    let rows: Vec<Vec<String>> = batches.iter().map(batch_row).collect();
    let mut widths = Widths::of_header(&BATCH_HEADER);
    rows.iter().for_each(|r| widths.fit(r));
    widths.write_row(out, "    ", &header_row(&BATCH_HEADER))?;
    rows.iter().try_for_each(|r| widths.write_row(out, "    ", r))
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

fn write_json(
    store: &StoreDir,
    segments: &[SegmentFile],
    pending: &[(String, u64)],
    out: &mut dyn Write,
) -> io::Result<()> {
    let m = &store.manifest;
    let mut w = JsonWriter::new(out);
    w.begin_object()?;
    w.field_str("dir", &store.blob.location())?;
    w.field_u64("generation", m.generation)?;
    w.field_u64("next_file_no", m.next_file_no)?;
    w.field_u64("next_stream_no", u64::from(m.next_stream_no))?;
    w.key("streams")?;
    w.begin_array()?;
    for s in &m.streams {
        write_stream_json(&mut w, s)?;
    }
    w.end_array()?;
    w.key("in_progress")?;
    w.begin_array()?;
    for (name, bytes) in pending {
        w.begin_object()?;
        w.field_str("name", name)?;
        w.field_u64("bytes", *bytes)?;
        w.end_object()?;
    }
    w.end_array()?;
    w.key("wal_segments")?;
    w.begin_array()?;
    for seg in segments {
        w.begin_object()?;
        w.field_str("name", &seg.name)?;
        w.field_u64("bytes", seg.size)?;
        w.end_object()?;
    }
    w.end_array()?;
    w.end_object()?;
    w.finish()
}

fn write_stream_json(w: &mut JsonWriter<'_>, s: &StreamMeta) -> io::Result<()> {
    w.begin_object()?;
    w.field_str("id", &s.id)?;
    w.field_u64("stream_no", u64::from(s.stream_no))?;
    w.field_bool("durable", s.durable)?;
    json_frontier(w, "upper", s.upper)?;
    json_frontier(w, "since", s.since)?;
    w.key("batches")?;
    w.begin_array()?;
    for b in &s.batches {
        write_batch_json(w, b)?;
    }
    w.end_array()?;
    w.key("spills")?;
    w.begin_array()?;
    for b in &s.spills {
        write_batch_json(w, b)?;
    }
    w.end_array()?;
    w.end_object()
}

fn write_batch_json(w: &mut JsonWriter<'_>, b: &BatchMeta) -> io::Result<()> {
    w.begin_object()?;
    w.field_str("file", &batch_file_name(b.file_no))?;
    w.field_u64("level", u64::from(b.level))?;
    json_description(w, &description(b))?;
    w.field_u64("update_count", b.update_count)?;
    w.field_u64("bytes", b.size_bytes)?;
    w.end_object()
}
