//! `inspect verify DIR`: checks a store without opening it (no lock, no repair, no change):
//! 1. the manifest decodes (its checksum and invariants);
//! 2. every batch file it names exists, passes `BatchFile::open` and `verify` (every block's checksum
//!    and structure), and agrees with the manifest's description and update count;
//! 3. every WAL segment and record is well formed (a read-only scan, see [`ddpersist::wal`]), and each record
//!    decodes and names a stream in the manifest.
//!
//! Stops at the first failure. On a live store, a batch file a merge deleted after the manifest read
//! named it is skipped (and counted), and a WAL check that fails while the store moved under it (a
//! commit, a released segment: `access::LiveMark`) starts over, for up to 10 s.
//! What is odd but harmless (files the next open removes, a torn WAL tail
//! that no sync mark covers, so never acknowledged) is reported as a warning. Bad WAL bytes it cannot
//! prove were never acknowledged fail the check: damage before a sync mark naming a later LSN, and any
//! bad tail of a segment written before sync marks existed (format version 1 or 2), where a torn write
//! and damage look the same (FORMAT.md §4). On a terminal, a store of more than [`PROGRESS_FROM_BYTES`]
//! shows a progress bar on stderr (never with `--json`).

use crate::access::StoreDir;
use crate::error::{corrupt, ToolError, ToolResult};
use crate::render::write_json;
use ddpersist::batch::{batch_file_name, parse_batch_file_name, BatchFile};
use ddpersist::blob::{Blob, TMP_SUFFIX};
use ddpersist::version::{check_batch, BatchMeta};
use ddpersist::wal::record::decode;
use ddpersist::wal::{self, CutKind, TornTail, WalRecovery};
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
    /// Batch files a live store's merges replaced (and deleted) while they were being checked.
    replaced: u64,
}

impl Tally {
    /// Every warning, the torn tail first.
    fn all_warnings(&self) -> Vec<String> {
        let torn = self.torn_tail.iter().map(|t| {
            format!(
                "torn tail in {} at offset {}: {} bytes of a partial record, never acknowledged (no sync mark \
                 covers them; the next open cuts them off)",
                t.file, t.offset, t.dropped_bytes
            )
        });
        let replaced = (self.replaced > 0).then(|| {
            format!(
                "{} batch files were replaced by merges during the check and not verified",
                self.replaced
            )
        });
        torn.chain(self.warnings.iter().cloned())
            .chain(replaced)
            .collect()
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
            verify_batch(dir, &store, meta, tally)?;
            progress.inc(meta.size_bytes);
        }
    }
    warn_unnamed_files(&store, tally)?;
    progress.set_message("WAL");
    // A live store may release a segment or add a stream while the WAL is read: a failure counts only if
    // the store did not move meanwhile (else the check starts over with the new manifest).
    drop(store);
    let warned = tally.warnings.len();
    let outcome = crate::access::while_moving(dir, || {
        tally.warnings.truncate(warned);
        verify_wal(&StoreDir::open(dir)?, tally)
    });
    progress.finish_and_clear();
    outcome
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

/// Verifies the batch file `meta` names. On a live store a merge may have deleted it since the manifest
/// was read: a missing file is an error only if the current manifest still names it (else it is skipped:
/// the merge's output holds its updates).
fn verify_batch(dir: &Path, store: &StoreDir, meta: &BatchMeta, tally: &mut Tally) -> Result<()> {
    let Some(batch) = store.open_batch_if_present(meta)? else {
        let now = StoreDir::open(dir)?;
        if now.manifest.file_nos().any(|n| n == meta.file_no) {
            return Err(store.missing_batch(meta));
        }
        tally.replaced += 1;
        return Ok(());
    };
    batch.verify_deep()?;
    check_against_manifest(&batch, meta, tally)?;
    tally.batch_files += 1;
    tally.updates += batch.update_count();
    Ok(())
}

/// The store's own check ([`check_batch`]: interval, count, size, fingerprint; it refuses to open
/// otherwise); a since that differs is only reported.
fn check_against_manifest(batch: &BatchFile, meta: &BatchMeta, tally: &mut Tally) -> Result<()> {
    check_batch(batch, meta)?;
    let since = batch.description().since;
    if since != meta.since {
        tally.warnings.push(format!(
            "{}: since {since} differs from the manifest's since {}",
            batch.name(),
            meta.since
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
    let next_stream_no = store.manifest.next_stream_no;
    let location = wal_dir.display().to_string();
    // The library's own scan: the replay rules, without replay's one change (cutting a torn tail), with
    // segment headers checked against the manifest's store id (another store's segment fails).
    let scan = wal::scan_of_store(
        &wal_dir,
        WalRecovery::Strict,
        store.manifest.store_id,
        &mut |lsn, payload| check_record(&location, lsn, payload, &streams, next_stream_no),
    )?;
    tally.wal_records = scan.report.records;
    for stray in &scan.strays {
        tally.warnings.push(format!(
            "{} holds no record and is not part of the log (left by a failed segment creation; the next \
             open removes it)",
            stray.path.display()
        ));
    }
    if let Some(t) = &scan.report.torn_tail {
        if t.kind != CutKind::Unacknowledged {
            return Err(corrupt(
                &t.file,
                t.offset,
                format!(
                    "bad record at the end of a segment without sync marks (format version 1 or 2): {} bytes \
                     that may have been acknowledged (a torn write cannot be told from damage there); the \
                     next open cuts them off",
                    t.dropped_bytes
                ),
            ));
        }
    }
    tally.torn_tail = scan.report.torn_tail;
    Ok(())
}

/// A record must decode as the store writes it and name a stream of the manifest, or one dropped since it
/// was written: a number below the manifest's next one that names no stream (`Store::drop_stream`; numbers
/// are never reused, and the store's replay discards those records, `store/open.rs`).
fn check_record(
    location: &str,
    lsn: u64,
    payload: &[u8],
    streams: &HashSet<u32>,
    next_stream_no: u32,
) -> Result<()> {
    let what = format!("{location} (record at LSN {lsn})");
    let stream_no = decode(payload, &what)?.stream_no();
    if !streams.contains(&stream_no) && stream_no >= next_stream_no {
        return Err(corrupt(
            &what,
            1,
            format!("names unknown stream number {stream_no}"),
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
