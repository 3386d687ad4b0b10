//! `inspect verify DIR`: checks a store without opening it (no lock, no repair, no change):
//! 1. the manifest decodes (its checksum and invariants);
//! 2. every batch file it names exists, passes `BatchFile::open` and `verify` (every block's checksum
//!    and structure), and agrees with the manifest's description and update count;
//! 3. every WAL segment and record is well formed (a read-only scan, see [`ddpersist::wal`]), and each record
//!    decodes and names a stream in the manifest.
//!
//! Stops at the first failure. What is odd but harmless (a torn WAL tail, files the next open removes)
//! is reported as a warning. On a terminal, a store of more than [`PROGRESS_FROM_BYTES`] shows a progress
//! bar on stderr (never with `--json`).

use crate::access::StoreDir;
use crate::error::{corrupt, ToolError, ToolResult};
use crate::render::write_json;
use ddpersist::batch::{batch_file_name, parse_batch_file_name, BatchFile};
use ddpersist::blob::{Blob, TMP_SUFFIX};
use ddpersist::manifest::BatchMeta;
use ddpersist::wal::record::decode_record;
use ddpersist::wal::{self, TornTail, WalRecovery};
use ddpersist::Result;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::HashSet;
use std::io::{self, IsTerminal, Write};
use std::path::Path;

/// Stores with more bytes than this (batch files, spilled runs and WAL segments) get a progress bar.
pub const PROGRESS_FROM_BYTES: u64 = 64 << 20;

/// What a verification covered, and what it found that is not an error.
#[derive(Default)]
struct Tally {
    streams: u64,
    batch_files: u64,
    updates: u64,
    wal_records: u64,
    torn_tail: Option<TornTail>,
    warnings: Vec<String>,
}

impl Tally {
    /// Every warning, the torn tail first.
    fn all_warnings(&self) -> Vec<String> {
        let torn = self.torn_tail.iter().map(|t| {
            format!(
                "torn tail in {} at offset {}: {} bytes of a partial record (the next open cuts them off)",
                t.file, t.offset, t.dropped_bytes
            )
        });
        torn.chain(self.warnings.iter().cloned()).collect()
    }
}

/// Verifies the store in `dir`: the summary goes to `out`, warnings of the text report to `err`.
/// Returns the first failure after reporting it.
pub fn run(dir: &Path, json: bool, out: &mut dyn Write, err: &mut dyn Write) -> ToolResult<()> {
    let mut tally = Tally::default();
    let outcome = verify_store(dir, &mut tally, !json && io::stderr().is_terminal());
    if json {
        write_json(out, &report_json(dir, &tally, outcome.as_ref().err()))?;
    } else {
        write_text(&tally, outcome.is_ok(), out, err)?;
    }
    outcome.map_err(ToolError::Store)
}

fn verify_store(dir: &Path, tally: &mut Tally, may_show_progress: bool) -> Result<()> {
    let store = StoreDir::open(dir)?;
    tally.streams = store.manifest.streams.len() as u64;
    let progress = progress_bar(&store, may_show_progress)?;
    for stream in &store.manifest.streams {
        for meta in stream.batches.iter().chain(&stream.spills) {
            progress.set_message(crate::access::batch_name(meta));
            verify_batch(&store, meta, tally)?;
            progress.inc(meta.size_bytes);
        }
    }
    warn_unnamed_files(&store, tally)?;
    progress.set_message("WAL");
    let verified = verify_wal(&store, tally);
    progress.finish_and_clear();
    verified
}

/// A progress bar over the bytes to verify: hidden unless allowed and the store is large.
fn progress_bar(store: &StoreDir, allowed: bool) -> Result<ProgressBar> {
    if !allowed {
        return Ok(ProgressBar::hidden());
    }
    let files = store
        .manifest
        .streams
        .iter()
        .flat_map(|s| s.batches.iter().chain(&s.spills));
    let batch_bytes: u64 = files.map(|m| m.size_bytes).sum();
    let wal_bytes: u64 = crate::access::wal_segments(&store.wal_dir())?
        .iter()
        .map(|s| s.size)
        .sum();
    let total = batch_bytes + wal_bytes;
    if total <= PROGRESS_FROM_BYTES {
        return Ok(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(total);
    let template = "verify {bar:40} {bytes}/{total_bytes} ({eta} left) {msg}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    Ok(bar)
}

fn verify_batch(store: &StoreDir, meta: &BatchMeta, tally: &mut Tally) -> Result<()> {
    let batch = store.open_batch(meta)?;
    batch.verify_deep()?;
    check_against_manifest(&batch, meta, tally)?;
    tally.batch_files += 1;
    tally.updates += batch.update_count();
    Ok(())
}

/// The store refuses to open when interval or count differ; since and size are only reported.
fn check_against_manifest(batch: &BatchFile, meta: &BatchMeta, tally: &mut Tally) -> Result<()> {
    let d = batch.description();
    if (d.lower, d.upper, batch.update_count()) != (meta.lower, meta.upper, meta.update_count) {
        return Err(corrupt(
            batch.name(),
            0,
            format!(
                "file holds [{}, {}) with {} updates, the manifest says [{}, {}) with {}",
                d.lower,
                d.upper,
                batch.update_count(),
                meta.lower,
                meta.upper,
                meta.update_count
            ),
        ));
    }
    if d.since != meta.since || batch.size_bytes() != meta.size_bytes {
        tally.warnings.push(format!(
            "{}: since {} and size {} differ from the manifest's since {} and size {}",
            batch.name(),
            d.since,
            batch.size_bytes(),
            meta.since,
            meta.size_bytes
        ));
    }
    Ok(())
}

/// Warns about temporaries and batch files the manifest does not name (the next open removes them).
fn warn_unnamed_files(store: &StoreDir, tally: &mut Tally) -> Result<()> {
    let named: HashSet<String> = store.manifest.file_nos().map(batch_file_name).collect();
    let mut names = store.blob.list()?;
    names.sort();
    for name in names {
        let unnamed_batch = parse_batch_file_name(&name).is_some() && !named.contains(&name);
        if name.ends_with(TMP_SUFFIX) || unnamed_batch {
            tally.warnings.push(format!(
                "{}/{name} is not named by the manifest (the next open removes it)",
                store.blob.location()
            ));
        }
    }
    Ok(())
}

fn verify_wal(store: &StoreDir, tally: &mut Tally) -> Result<()> {
    let wal_dir = store.wal_dir();
    if !wal_dir.is_dir() {
        return Ok(());
    }
    let streams: HashSet<u32> = store.manifest.streams.iter().map(|s| s.stream_no).collect();
    let location = wal_dir.display().to_string();
    // The library's own scan: the replay rules, without replay's one change (cutting a torn tail).
    let scan = wal::scan(&wal_dir, WalRecovery::Strict, &mut |lsn, payload| {
        check_record(&location, lsn, payload, &streams)
    })?;
    tally.wal_records = scan.report.records;
    tally.torn_tail = scan.report.torn_tail;
    Ok(())
}

/// A record must decode as the store writes it and name a stream of the manifest.
fn check_record(location: &str, lsn: u64, payload: &[u8], streams: &HashSet<u32>) -> Result<()> {
    let what = format!("{location} (record at LSN {lsn})");
    let decoded = decode_record(payload, &what)?;
    if !streams.contains(&decoded.stream_no) {
        return Err(corrupt(
            &what,
            0,
            format!("names unknown stream number {}", decoded.stream_no),
        ));
    }
    Ok(())
}

fn write_text(tally: &Tally, ok: bool, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<()> {
    for warning in tally.all_warnings() {
        writeln!(err, "warning: {warning}")?;
    }
    if ok {
        writeln!(
            out,
            "ok: {} streams, {} batch files, {} updates, {} WAL records verified",
            tally.streams, tally.batch_files, tally.updates, tally.wal_records
        )?;
    }
    Ok(())
}

/// The verification report as JSON.
#[derive(Serialize)]
struct ReportJson {
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    dir: String,
    streams: u64,
    batch_files: u64,
    updates: u64,
    wal_records: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    torn_tail: Option<TornTailJson>,
    warnings: Vec<String>,
}

/// `{"file", "offset", "dropped_bytes"}` of a torn WAL tail.
#[derive(Serialize)]
struct TornTailJson {
    file: String,
    offset: u64,
    dropped_bytes: u64,
}

fn report_json(dir: &Path, tally: &Tally, error: Option<&ddpersist::Error>) -> ReportJson {
    ReportJson {
        ok: error.is_none(),
        error: error.map(ToString::to_string),
        dir: dir.display().to_string(),
        streams: tally.streams,
        batch_files: tally.batch_files,
        updates: tally.updates,
        wal_records: tally.wal_records,
        torn_tail: tally.torn_tail.as_ref().map(|t| TornTailJson {
            file: t.file.clone(),
            offset: t.offset,
            dropped_bytes: t.dropped_bytes,
        }),
        warnings: tally.all_warnings(),
    }
}
