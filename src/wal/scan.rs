//! Reading the WAL's segments back: every record checked, in order, without changing anything.
//!
//! [`scan`] applies the replay rules of [`super::FileLog`] (see `format.rs` for the format) and reports
//! what replay would cut; `FileLog::replay` then makes that one change. Tools (`inspect verify`) call
//! `scan` directly, so a check never modifies the store.

use super::file::WalRecovery;
use super::format::{
    checksum_seed, checksum_seeded, MARK_MAGIC, MARK_PAYLOAD_BYTES, RECORD_HEADER_BYTES, RECORD_MAGIC,
    SEEDED_VERSION, SEGMENT_FLAG_RECYCLED, SEGMENT_FLAG_ZERO_FILLED, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC,
    STORE_SEEDED_VERSION, WAL_VERSION,
};
use super::{CutKind, Lsn, ReplayReport, TornTail};
use crate::encoding::{checksum, le_u32, le_u64, Decoder, FormatVersion};
use crate::error::{Error, Result};
use crate::fs::{Fs, StdFs};
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
    /// Whether the last segment with a complete header may end in zeros filled ahead of the log (version
    /// 2, or version 3 and later with the zero-filled flag); false when there is none.
    pub last_zero_filled: bool,
    /// Format version of the last segment with a complete header (0 when there is none): sync marks are
    /// written only to segments of version 3 or later, varint records (tag 2) only to version 4 or later,
    /// seal records (tag 3) only to version 5 or later.
    pub last_version: u32,
    /// Whether the last segment with a complete header is a recycled file (version 6 on, header flag bit
    /// 1): past its records it may hold an earlier incarnation's bytes, which replay leaves in place.
    pub last_recycled: bool,
    /// The segments of the log, oldest first.
    pub segments: Vec<Segment>,
    /// Segment files that are not part of the log: at most a header long (so they hold no record) and
    /// either followed by another segment or starting at an LSN the log had already passed. They are what a
    /// failed segment creation leaves (the file created, its header not written or not synced, the store
    /// going on in the old segment). Replay removes them.
    pub strays: Vec<Segment>,
    /// What replay cuts off.
    pub cut: Option<Cut>,
    /// The log's start as its start file records it (`None`: no start file, a log of an older release or
    /// one never opened for appending); the oldest segment was checked to start at or before it.
    pub start: Option<Lsn>,
}

/// The segment files in `dir`, oldest first (other files are ignored).
pub fn list_segments(dir: &Path) -> Result<Vec<Segment>> {
    list_segments_on(&StdFs, dir)
}

/// The segment files in `dir` of the file system `fs`, oldest first (other files are ignored).
pub fn list_segments_on(fs: &dyn Fs, dir: &Path) -> Result<Vec<Segment>> {
    let files = list_numbered_on(fs, dir, ".wal")?;
    Ok(files
        .into_iter()
        .map(|(first_lsn, path)| Segment { first_lsn, path })
        .collect())
}

/// The files in `dir` of the file system `fs` named `{lsn:020}{suffix}` (segments, `.wal`; kept ones,
/// `.free`), as `(lsn, path)`, by LSN (other files are ignored).
pub(crate) fn list_numbered_on(fs: &dyn Fs, dir: &Path, suffix: &str) -> Result<Vec<(Lsn, PathBuf)>> {
    let ctx = || format!("list {}", dir.display());
    let mut out = Vec::new();
    for name in fs.list(dir).map_err(|e| Error::io(ctx(), e))? {
        let Some(stem) = name.strip_suffix(suffix) else {
            continue;
        };
        if stem.len() != 20 {
            continue;
        }
        let Ok(lsn) = stem.parse::<u64>() else {
            continue;
        };
        out.push((lsn, dir.join(&name)));
    }
    out.sort();
    Ok(out)
}

/// A valid record or sync mark found at some offset of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// An update record ending at this offset.
    Record(usize),
    /// A sync mark (format version 3 on) ending at `end`: every record ending at or before `durable` had been
    /// made durable (its `fdatasync` had returned) before the mark was written.
    Mark {
        /// Offset just past the mark.
        end: usize,
        /// The LSN the mark names.
        durable: Lsn,
    },
}

/// The valid record (or, when `marks`, sync mark) starting at `at` in `bytes`, if one does, its checksum
/// seeded with `seed` ([`checksum_seed`] of the segment's version and the LSN at `at`).
pub(crate) fn record_at(bytes: &[u8], at: usize, marks: bool, seed: u64) -> Option<Found> {
    let header_end = at.checked_add(RECORD_HEADER_BYTES as usize)?;
    if header_end > bytes.len() {
        return None;
    }
    let magic = le_u32(bytes, at + 12);
    let is_mark = marks && magic == MARK_MAGIC;
    if magic != RECORD_MAGIC && !is_mark {
        return None;
    }
    let len = le_u32(bytes, at + 8) as usize;
    if is_mark && len != MARK_PAYLOAD_BYTES as usize {
        return None;
    }
    let end = header_end.checked_add(len)?;
    if end > bytes.len() {
        return None;
    }
    // The header's checked bytes and the payload are contiguous here: one one-shot checksum.
    if checksum_seeded(&bytes[at + 8..end], seed) != le_u64(bytes, at) {
        return None;
    }
    Some(if is_mark {
        Found::Mark {
            end,
            durable: le_u64(bytes, header_end),
        }
    } else {
        Found::Record(end)
    })
}

/// The offsets in `range` where a record or sync mark could start in `bytes`: those whose magic field
/// (offset 12) begins with the bytes both magics share ("DDP"). Every valid record or mark starts at one;
/// found with `memchr::memmem`, so that searching megabytes of a recycled segment's old bytes after a bad
/// record costs a scan at memory speed, not a checksum attempt at every byte.
pub(crate) fn magic_starts(bytes: &[u8], range: std::ops::Range<usize>) -> impl Iterator<Item = usize> + '_ {
    const SHARED: &[u8; 3] = b"DDP";
    debug_assert_eq!(&RECORD_MAGIC.to_le_bytes()[..3], SHARED);
    debug_assert_eq!(&MARK_MAGIC.to_le_bytes()[..3], SHARED);
    let lo = (range.start + 12).min(bytes.len());
    let hi = (range.end + 12 + SHARED.len()).min(bytes.len()).max(lo);
    memchr::memmem::find_iter(&bytes[lo..hi], SHARED)
        .map(move |i| range.start + i)
        .filter(move |p| *p < range.end)
}

/// The end of the valid update record starting at `at` in `bytes` (checksum seeded with `seed`), if one
/// does.
pub(crate) fn valid_record_at(bytes: &[u8], at: usize, seed: u64) -> Option<usize> {
    match record_at(bytes, at, false, seed)? {
        Found::Record(end) => Some(end),
        Found::Mark { .. } => None,
    }
}

/// Checks a segment header; returns the segment's first LSN, format version and flags (0 before
/// version 3).
///
/// From version 7 the header checksum is seeded with the store's id: checked against `store` when given
/// (a mismatch with it and with the plain checksum, which a log never bound to a store writes, names the
/// segment as another store's, or damaged), not checked without it.
fn check_header(
    bytes: &[u8],
    seg: &Segment,
    file_name: &str,
    expected_lsn: Option<Lsn>,
    store: Option<u32>,
) -> Result<(Lsn, u32, u32)> {
    let mut d = Decoder::new(bytes, 0, file_name);
    if d.bytes(8, "segment magic")? != SEGMENT_MAGIC {
        return Err(Error::corrupt(file_name, 0, "bad segment magic"));
    }
    let stored_version = if bytes.len() >= 12 { le_u32(bytes, 8) } else { 0 };
    if bytes.len() >= 32 {
        let sum = le_u64(bytes, 24);
        let plain = sum == checksum(&bytes[..24]);
        if stored_version < STORE_SEEDED_VERSION {
            if !plain {
                return Err(Error::corrupt(file_name, 24, "segment header checksum mismatch"));
            }
        } else if let Some(id) = store {
            // Plain: written by a log never bound to a store (a `Log` wrapper that does not pass
            // `bind_store` through, a bare `FileLog`), which records no id; or a newer release's header
            // (refused below as `VersionTooNew`). Either way not another store's.
            if sum != checksum_seeded(&bytes[..24], u64::from(id)) && !plain {
                return Err(Error::corrupt(
                    file_name,
                    24,
                    format!(
                        "segment header checksum mismatch under this store's id {id:#010x}: a WAL segment \
                         of another store, or damaged"
                    ),
                ));
            }
        }
    }
    let version = d.u32("version")?;
    FormatVersion::check(version, WAL_VERSION, file_name, 8)?;
    let reserved = d.u32("flags")?;
    // Before version 3 the field was reserved (written as 0, never read); bit 1 is known from version 6.
    let flags = if version >= 3 { reserved } else { 0 };
    let known = match version >= SEEDED_VERSION {
        true => SEGMENT_FLAG_ZERO_FILLED | SEGMENT_FLAG_RECYCLED,
        false => SEGMENT_FLAG_ZERO_FILLED,
    };
    if flags & !known != 0 {
        return Err(Error::corrupt(
            file_name,
            12,
            format!("unknown segment flags {flags:#x}"),
        ));
    }
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
        _ => Ok((first_lsn, version, flags)),
    }
}

/// Reads every record of the log in `dir`, in order, calling `f(lsn, payload)` for each; changes nothing.
/// Sync marks (version 3 on) are checked and skipped. An [`Error::Corrupt`] that `f` returns names an
/// offset within the payload: it is returned naming the segment file and the offset in it.
/// In a zero-filled segment (version 2, or 3 and later with the flag), zero bytes from a record's place to the end
/// of the file are the end of that segment's records (space filled ahead of the log), not a record and not
/// a torn tail; the next segment must still start at the LSN where the records ended.
///
/// A bad record (or bad bytes where one should start) is told apart as follows (FORMAT.md §4):
/// - in a segment that is not the last: [`Error::Corrupt`] (every such segment was fsync'd whole before
///   its successor was created);
/// - in the last segment of version 3 or later: if a valid sync mark after it names an LSN past its start, it was
///   made durable, so it is [`Error::Corrupt`] naming file and offset — or, under
///   [`WalRecovery::PointInTime`], cut with everything after it and reported as [`CutKind::DataLoss`].
///   Otherwise no flush that reached it ever returned from its `fdatasync`: a torn tail, cut and reported
///   as [`CutKind::Unacknowledged`];
/// - in the last segment of version 1 or 2 (no sync marks): a torn tail if no valid record follows it (or
///   under `PointInTime`, or in a zero-filled segment), else corruption; reported as [`CutKind::Unknown`].
///
/// The header checksum of a version 7 segment, seeded with its store's id, is not checked here (the id
/// is not known): [`scan_of_store`] checks it.
pub fn scan(dir: &Path, recovery: WalRecovery, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<Scan> {
    scan_on(&StdFs, dir, recovery, None, f)
}

/// [`scan`] of the log of the store whose manifest records `store_id` (0: none recorded): a version 7
/// segment whose header checksum fails under it is [`Error::Corrupt`] naming the segment (another store's
/// segment, or damage).
pub fn scan_of_store(
    dir: &Path,
    recovery: WalRecovery,
    store_id: u32,
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<Scan> {
    scan_on(&StdFs, dir, recovery, Some(store_id), f)
}

/// [`scan`] of the log in `dir` of the file system `fs`, checking version 7 segment headers against
/// `store` (the store's id) when given.
pub fn scan_on(
    fs: &dyn Fs,
    dir: &Path,
    recovery: WalRecovery,
    store: Option<u32>,
    f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>,
) -> Result<Scan> {
    let listed = list_segments_on(fs, dir)?;
    // Files of at most a header's length hold no record. Before the last file, such a file is never part
    // of a healthy log (a segment is succeeded only once it holds records): a stray of a failed creation.
    let mut strays = Vec::new();
    let mut segments = Vec::new();
    let mut tail_len = 0;
    for (i, seg) in listed.iter().enumerate() {
        let len = fs
            .len(&seg.path)
            .map_err(|e| Error::io(format!("stat {}", seg.path.display()), e))?;
        if i + 1 < listed.len() && len <= SEGMENT_HEADER_BYTES {
            strays.push(seg.clone());
        } else {
            segments.push(seg.clone());
            tail_len = len;
        }
    }
    // The oldest segment must hold the log's recorded start: one lost from the front leaves a contiguous
    // log that merely starts later (`start.rs`).
    // A point-in-time open accepts lost records, as it accepts a cut log.
    let start = super::start::read_start(fs, dir)?;
    if let Some(start) = start.filter(|_| recovery == WalRecovery::Strict) {
        super::start::check_start(dir, start, segments.first().map(|s| s.first_lsn))?;
    }
    // The last file, if it holds no record either, may also be a stray that the log went on past (its
    // creation failed, later records went to its predecessor): decided when its predecessor is read.
    let tail_first_lsn = segments
        .last()
        .filter(|_| segments.len() >= 2 && tail_len <= SEGMENT_HEADER_BYTES)
        .map(|s| s.first_lsn);
    let mut drop_tail = false;
    let mut report = ReplayReport::default();
    let mut expected_lsn: Option<Lsn> = None;
    let mut cut = None;
    let mut end_offset = 0;
    let mut last_zero_filled = false;
    let mut last_version = 0;
    let mut last_recycled = false;
    for (i, seg) in segments.iter().enumerate() {
        let file_name = seg.path.display().to_string();
        let bytes = fs
            .read(&seg.path)
            .map_err(|e| Error::io(format!("read {file_name}"), e))?;
        let is_last = i + 1 == segments.len();
        // A last file of at most a header holds no record. If even its header is bad, it is what a power
        // loss while creating it leaves (its size reached the disk, its bytes did not: zeros): a header is
        // synced before any record is written, so no record was ever in it. Cut like a shorter file. A
        // whole header of a newer version is not damage but a newer release's segment: refused
        // (`VersionTooNew`, below), never removed.
        // (Bad here means damaged, checked without the store's id: a whole header of another store is
        // refused below, not removed — found by a review.)
        let bad_header_only = is_last
            && bytes.len() as u64 == SEGMENT_HEADER_BYTES
            && check_header(&bytes, seg, &file_name, None, None).is_err_and(|e| e.is_corruption());
        if is_last && bytes.len() as u64 == SEGMENT_HEADER_BYTES && !bad_header_only {
            if let Some(expected) = expected_lsn {
                let (first_lsn, _, _) = check_header(&bytes, seg, &file_name, None, store)?;
                if first_lsn < expected {
                    // A header and nothing else, starting at an LSN its predecessor has records past: the
                    // stray of a failed creation. (A healthy successor starts where its predecessor ends.)
                    drop_tail = true;
                    break;
                }
            }
        }
        if is_last && ((bytes.len() as u64) < SEGMENT_HEADER_BYTES || bad_header_only) {
            // A crash while creating the newest segment, before its header was synced: it holds no
            // record. Replay removes it; its predecessor (or a fresh segment) becomes active.
            report.torn_tail = Some(TornTail {
                file: file_name,
                offset: 0,
                dropped_bytes: bytes.len() as u64,
                kind: CutKind::Unacknowledged,
            });
            cut = Some(Cut::RemovePartialSegment);
            expected_lsn = expected_lsn.or(Some(seg.first_lsn));
            break;
        }
        let (first_lsn, version, flags) = check_header(&bytes, seg, &file_name, expected_lsn, store)?;
        let marks = version >= 3;
        let zero_filled = version == 2 || (marks && flags & SEGMENT_FLAG_ZERO_FILLED != 0);
        let recycled = flags & SEGMENT_FLAG_RECYCLED != 0;
        last_zero_filled = zero_filled;
        last_version = version;
        last_recycled = recycled;
        let lsn_at = |at: usize| first_lsn.saturating_add(at as u64 - SEGMENT_HEADER_BYTES);
        let seed_at = |at: usize| checksum_seed(version, lsn_at(at));
        let mut at = SEGMENT_HEADER_BYTES as usize;
        while at < bytes.len() {
            if let Some(found) = record_at(&bytes, at, marks, seed_at(at)) {
                let end = match found {
                    Found::Record(end) | Found::Mark { end, .. } => end,
                };
                // The LSN just past the record must fit a u64 (a corrupt or hostile segment name may
                // start the segment near the end of the LSN space).
                let Some(lsn) = first_lsn
                    .checked_add(at as u64 - SEGMENT_HEADER_BYTES)
                    .filter(|lsn| lsn.checked_add((end - at) as u64).is_some())
                else {
                    return Err(Error::corrupt(&file_name, at as u64, "record LSN overflows u64"));
                };
                match found {
                    Found::Record(_) => {
                        let payload_at = at + RECORD_HEADER_BYTES as usize;
                        f(lsn, &bytes[payload_at..end])
                            .map_err(|e| e.within_payload(&file_name, payload_at as u64, lsn))?;
                        report.records += 1;
                    }
                    Found::Mark { durable, .. } if durable > lsn => {
                        return Err(Error::corrupt(
                            &file_name,
                            at as u64,
                            format!("sync mark at LSN {lsn} names LSN {durable}, past itself"),
                        ));
                    }
                    Found::Mark { .. } => {}
                }
                at = end;
                continue;
            }
            // Past the last non-zero byte no record can start (its magic is not zero).
            let tail_end = match bytes[at..].iter().rposition(|&b| b != 0) {
                Some(last_nonzero) => at + last_nonzero + 1,
                // Zeros to the end of a zero-filled file: space the writer filled with zeros ahead of the
                // log, never written by a record. The segment's records end here. (In an appended file
                // zeros are a torn tail, cut as any.)
                None if zero_filled => break,
                None => bytes.len(),
            };
            // The next and last file holds no record and starts at or before this bad record: a stray of a
            // failed creation (a healthy successor starts past every record of this segment, since this
            // one was synced whole before it was created), so this is the log's last segment.
            let before_stray = i + 2 == segments.len() && tail_first_lsn.is_some_and(|t| t <= lsn_at(at));
            if !is_last && !before_stray {
                let why = "bad or partial record in a segment that is not the last";
                return Err(Error::corrupt(&file_name, at as u64, why));
            }
            drop_tail = before_stray;
            let kind = if marks {
                // Proof that the bad bytes were made durable: a sync mark written after them, naming an
                // LSN past their start (a mark is written only once the flush before it is synced).
                let bad_lsn = lsn_at(at);
                let (mut any_valid, mut proven) = (false, false);
                let after = magic_starts(&bytes, at + 1..tail_end);
                for found in after.filter_map(|p| record_at(&bytes, p, true, seed_at(p))) {
                    any_valid = true;
                    if matches!(found, Found::Mark { durable, .. } if durable > bad_lsn) {
                        proven = true;
                        break;
                    }
                }
                // In the last recycled segment, bytes past the records of which none is valid (at the
                // LSN of its place) are an earlier incarnation's, or a torn flush of this one that left
                // no whole record: neither was acknowledged, and no valid bytes remain that a later open
                // could take for records. The segment's records end here: not cut, not reported, as a
                // zero-filled segment's zeros (appends overwrite them).
                if recycled && is_last && !any_valid {
                    break;
                }
                match (proven, recovery) {
                    (true, WalRecovery::Strict) => {
                        return Err(Error::corrupt(
                            &file_name,
                            at as u64,
                            "damaged record in the synced part of the log (a later sync mark shows it \
                             was made durable)",
                        ));
                    }
                    (true, WalRecovery::PointInTime) => CutKind::DataLoss,
                    (false, _) => CutKind::Unacknowledged,
                }
            } else {
                let later_valid = magic_starts(&bytes, at + 1..tail_end)
                    .any(|p| valid_record_at(&bytes, p, seed_at(p)).is_some());
                // The last segment of version 2 is written in place over synced zeros: a power loss during
                // a flush may keep any subset of its pages, so a lost page (zeros) followed by a surviving
                // record of the same, never acknowledged, flush is an ordinary outcome there. Its bad
                // record is a torn tail under both recovery modes, as under `PointInTime` (FORMAT.md §4).
                if later_valid && recovery == WalRecovery::Strict && !zero_filled {
                    let why = "bad record followed by valid records";
                    return Err(Error::corrupt(&file_name, at as u64, why));
                }
                CutKind::Unknown
            };
            report.torn_tail = Some(TornTail {
                file: file_name.clone(),
                offset: at as u64,
                dropped_bytes: (bytes.len() - at) as u64,
                kind,
            });
            cut = Some(Cut::TruncateLast { offset: at as u64 });
            break;
        }
        // Every record's end LSN was checked above, so this cannot overflow.
        expected_lsn = Some(first_lsn.saturating_add(at as u64 - SEGMENT_HEADER_BYTES));
        end_offset = at as u64;
        if drop_tail {
            break;
        }
    }
    if drop_tail {
        strays.extend(segments.pop());
    }
    report.strays = strays.iter().map(|s| s.path.display().to_string()).collect();
    Ok(Scan {
        report,
        end_lsn: expected_lsn.unwrap_or(0),
        end_offset,
        last_zero_filled,
        last_version,
        last_recycled,
        segments,
        strays,
        cut,
        start,
    })
}
