//! Reading the WAL's segments back: every record checked, in order, without changing anything.
//!
//! [`scan`] applies the replay rules of [`super::FileBuffer`] (see `file.rs` for the format) and reports
//! what replay would cut; `FileBuffer::replay` then makes that one change. Tools (`inspect verify`) call
//! `scan` directly, so a check never modifies the store.

use super::file::{
    WalRecovery, RECORD_HEADER_BYTES, RECORD_MAGIC, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC, WAL_VERSION,
};
use super::{Lsn, ReplayReport, TornTail};
use crate::error::{Error, Result};
use crate::format::{checksum, le_u32, le_u64, Decoder, FormatVersion};
use std::fs;
use std::path::{Path, PathBuf};

/// One segment file: `{first_lsn:020}.wal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// LSN of its first record.
    pub first_lsn: Lsn,
    /// The file.
    pub path: PathBuf,
}

/// The one change replay makes to the log, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Truncate the last segment at this offset (a torn last record).
    TruncateLast {
        /// The new length of the file.
        offset: u64,
    },
    /// Remove the last segment: shorter than its header, so it holds no record.
    RemovePartialSegment,
}

/// What a scan found.
#[derive(Clone, Debug)]
pub struct Scan {
    /// Records passed to the callback, and the torn tail if any.
    pub report: ReplayReport,
    /// LSN just past the last valid record (where appends continue).
    pub end_lsn: Lsn,
    /// Offset in the last segment file just past its last valid record (where appends continue); 0 when
    /// there is no segment with a complete header.
    pub end_offset: u64,
    /// Format version of the last segment with a complete header (0 when there is none).
    pub last_version: u32,
    /// The segments, oldest first.
    pub segments: Vec<Segment>,
    /// What replay cuts off.
    pub cut: Option<Cut>,
}

/// The segment files in `dir`, oldest first (other files are ignored).
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    let ctx = || format!("list {}", dir.display());
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(ctx(), e))? {
        let entry = entry.map_err(|e| Error::io(ctx(), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        let Ok(first_lsn) = stem.parse::<u64>() else {
            continue;
        };
        out.push(Segment {
            first_lsn,
            path: entry.path(),
        });
    }
    out.sort_by_key(|s| s.first_lsn);
    Ok(out)
}

/// The end of the valid record starting at `at` in `bytes`, if one does.
pub(crate) fn valid_record_at(bytes: &[u8], at: usize) -> Option<usize> {
    let header_end = at.checked_add(RECORD_HEADER_BYTES as usize)?;
    if header_end > bytes.len() || le_u32(bytes, at + 12) != RECORD_MAGIC {
        return None;
    }
    let len = le_u32(bytes, at + 8) as usize;
    let end = header_end.checked_add(len)?;
    if end > bytes.len() {
        return None;
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&bytes[at + 8..header_end]);
    h.update(&bytes[header_end..end]);
    (h.digest() == le_u64(bytes, at)).then_some(end)
}

/// Checks a segment header; returns the segment's first LSN and format version.
fn check_header(
    bytes: &[u8],
    seg: &Segment,
    file_name: &str,
    expected_lsn: Option<Lsn>,
) -> Result<(Lsn, u32)> {
    let mut d = Decoder::new(bytes, 0, file_name);
    if d.bytes(8, "segment magic")? != SEGMENT_MAGIC {
        return Err(Error::corrupt(file_name, 0, "bad segment magic"));
    }
    if bytes.len() >= 32 && le_u64(bytes, 24) != checksum(&bytes[..24]) {
        return Err(Error::corrupt(file_name, 24, "segment header checksum mismatch"));
    }
    let version = d.u32("version")?;
    FormatVersion::check(version, WAL_VERSION, file_name, 8)?;
    d.u32("reserved")?;
    let first_lsn = d.u64("first lsn")?;
    d.u64("header checksum")?;
    if first_lsn != seg.first_lsn {
        return Err(Error::corrupt(
            file_name,
            16,
            "first LSN does not match the file name",
        ));
    }
    match expected_lsn {
        Some(expected) if first_lsn != expected => Err(Error::corrupt(
            file_name,
            16,
            format!("LSN gap: segment starts at {first_lsn}, previous ended at {expected}"),
        )),
        _ => Ok((first_lsn, version)),
    }
}

/// Reads every record of the log in `dir`, in order, calling `f(lsn, payload)` for each; changes nothing.
/// In a segment of format version 2, zero bytes from a record's place to the end of the file are the end
/// of that segment's records (space filled ahead of the log), not a record and not a torn tail; the next
/// segment must still start at the LSN where the records ended.
/// A bad record is a torn tail (reported, to be cut) only at the end of the last segment with no valid
/// record after it — or anywhere in the last segment under [`WalRecovery::PointInTime`], or if that
/// segment is of version 2 (written in place, where a power loss can drop any page of an unsynced flush);
/// otherwise it is [`Error::Corrupt`] naming the file and offset.
pub fn scan(dir: &Path, recovery: WalRecovery, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<Scan> {
    let segments = list_segments(dir)?;
    let mut report = ReplayReport::default();
    let mut expected_lsn: Option<Lsn> = None;
    let mut cut = None;
    let mut end_offset = 0;
    let mut last_version = 0;
    for (i, seg) in segments.iter().enumerate() {
        let file_name = seg.path.display().to_string();
        let bytes = fs::read(&seg.path).map_err(|e| Error::io(format!("read {file_name}"), e))?;
        let is_last = i + 1 == segments.len();
        if is_last && (bytes.len() as u64) < SEGMENT_HEADER_BYTES {
            // A crash while creating the newest segment, before its header was synced: it holds no
            // record. Replay removes it; its predecessor (or a fresh segment) becomes active.
            report.torn_tail = Some(TornTail {
                file: file_name,
                offset: 0,
                dropped_bytes: bytes.len() as u64,
            });
            cut = Some(Cut::RemovePartialSegment);
            expected_lsn = expected_lsn.or(Some(seg.first_lsn));
            break;
        }
        let (first_lsn, version) = check_header(&bytes, seg, &file_name, expected_lsn)?;
        last_version = version;
        let mut at = SEGMENT_HEADER_BYTES as usize;
        while at < bytes.len() {
            if let Some(end) = valid_record_at(&bytes, at) {
                // The LSN just past the record must fit a u64 (a corrupt or hostile segment name may
                // start the segment near the end of the LSN space).
                let Some(lsn) = first_lsn
                    .checked_add(at as u64 - SEGMENT_HEADER_BYTES)
                    .filter(|lsn| lsn.checked_add((end - at) as u64).is_some())
                else {
                    return Err(Error::corrupt(&file_name, at as u64, "record LSN overflows u64"));
                };
                f(lsn, &bytes[at + RECORD_HEADER_BYTES as usize..end])?;
                report.records += 1;
                at = end;
                continue;
            }
            let zero_filled = version >= 2;
            // Past the last non-zero byte no record can start (its magic is not zero).
            let tail_end = match bytes[at..].iter().rposition(|&b| b != 0) {
                Some(last_nonzero) => at + last_nonzero + 1,
                // Zeros to the end of a version 2 file: space the writer filled with zeros ahead of the
                // log, never written by a record. The segment's records end here. (In a version 1 file,
                // which is only ever appended to, zeros are a torn tail, cut as before.)
                None if zero_filled => break,
                None => bytes.len(),
            };
            let later_valid = (at + 1..tail_end).any(|p| valid_record_at(&bytes, p).is_some());
            // The last segment of version 2 is written in place over synced zeros: a power loss during a
            // flush may keep any subset of its pages, so a lost page (zeros) followed by a surviving record
            // of the same, never acknowledged, flush is an ordinary outcome there. Its bad record is a torn
            // tail under both recovery modes, as under `PointInTime` (see DESIGN.md 2.4).
            let strict = recovery == WalRecovery::Strict && !zero_filled;
            if !is_last || (later_valid && strict) {
                let why = if is_last {
                    "bad record followed by valid records"
                } else {
                    "bad or partial record in a segment that is not the last"
                };
                return Err(Error::corrupt(&file_name, at as u64, why));
            }
            report.torn_tail = Some(TornTail {
                file: file_name.clone(),
                offset: at as u64,
                dropped_bytes: (bytes.len() - at) as u64,
            });
            cut = Some(Cut::TruncateLast { offset: at as u64 });
            break;
        }
        // Every record's end LSN was checked above, so this cannot overflow.
        expected_lsn = Some(first_lsn.saturating_add(at as u64 - SEGMENT_HEADER_BYTES));
        end_offset = at as u64;
    }
    Ok(Scan {
        report,
        end_lsn: expected_lsn.unwrap_or(0),
        end_offset,
        last_version,
        segments,
        cut,
    })
}
