//! The `wal_segment` target's check: one or two WAL segment files from arbitrary bytes ([`segment_files`],
//! [`TWO_SEGMENTS`]) in a `wal` directory, opened with a `FileLog` and replayed, reopened, appended to,
//! replayed again, and replayed with a zero tail; [`repair_segment`] recomputes the checksums the length
//! fields chain to.

use crate::{assert_format_error, le_u32, le_u64, put_u64, scratch_dir, skip_known_bugs};
use ddpersist::encoding::{checksum, checksum_seeded};
use ddpersist::wal::record::decode_record;
use ddpersist::wal::{FileLog, Log, Lsn, ReplayReport, WalRecovery};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// First byte of a `wal_segment` input that holds up to two segments instead of one: then bytes 1..3
/// (`u16` LE, modulo the rest's length + 1) say where the rest splits into two segments. Each non-empty
/// part is named after the first LSN its header claims (so header checks pass and what gets tested is
/// LSN chaining, rollover and released-prefix logs that start anywhere in the LSN space).
pub const TWO_SEGMENTS: u8 = 0xD2;
const SEGMENT_HEADER: usize = 32;

/// The name of the segment whose first record has LSN `lsn`.
pub fn segment_name(lsn: Lsn) -> String {
    format!("{lsn:020}.wal")
}

/// Recomputes the segment header checksum and the checksum of every record the length fields chain to.
pub fn repair_segment(b: &mut [u8]) {
    if b.len() < SEGMENT_HEADER {
        return;
    }
    let sum = checksum(&b[..24]);
    put_u64(b, 24, sum);
    // From WAL version 6 a record's checksum is seeded with its LSN (FORMAT.md §4).
    let version = le_u32(b, 8).unwrap_or(0);
    let first_lsn = le_u64(b, 16).unwrap_or(0);
    let mut at = SEGMENT_HEADER;
    while let Some(len) = le_u32(b, at + 8) {
        let end = at + 16 + len as usize;
        if end > b.len() {
            break;
        }
        let mut covered = b[at + 8..at + 16].to_vec();
        covered.extend_from_slice(&b[at + 16..end]);
        let lsn = first_lsn.wrapping_add((at - SEGMENT_HEADER) as u64);
        let sum = checksum_seeded(&covered, if version >= 6 { lsn } else { 0 });
        put_u64(b, at, sum);
        at = end;
    }
}

/// The segment files an input stands for: `(first LSN in the name, bytes)`, at least one.
pub fn segment_files(data: &[u8]) -> Vec<(Lsn, Vec<u8>)> {
    if data.len() < 3 || data[0] != TWO_SEGMENTS {
        return vec![(0, data.to_vec())];
    }
    let rest = &data[3..];
    let split = u16::from_le_bytes([data[1], data[2]]) as usize % (rest.len() + 1);
    let (a, b) = rest.split_at(split);
    let mut files: Vec<(Lsn, Vec<u8>)> = Vec::new();
    for part in [a, b] {
        if part.is_empty() {
            continue;
        }
        // A part too short for a header follows the previous one, as a rollover would name it.
        let follows = files.last().map_or(0, |(lsn, p)| {
            lsn.saturating_add((p.len() as u64).saturating_sub(SEGMENT_HEADER as u64).max(1))
        });
        let mut lsn = le_u64(part, 16).unwrap_or(follows);
        if files.iter().any(|(l, _)| *l == lsn) {
            lsn = follows;
        }
        if files.iter().all(|(l, _)| *l != lsn) {
            files.push((lsn, part.to_vec()));
        }
    }
    if files.is_empty() {
        files.push((0, Vec::new()));
    }
    files
}

/// The segment file(s) of `data` in a `wal` directory, opened with `FileLog::open(dir, 1 << 20,
/// WalRecovery::Strict)` and replayed; never panics. A failed replay changes no file; a successful one cuts
/// only a torn tail, replays the same records again after a reopen, agrees with point-in-time recovery,
/// and lets appends continue the LSN space.
pub fn check_wal_segment(data: &[u8]) {
    let files = segment_files(data);
    // Known bug `wal_append_at_the_end_of_the_lsn_space_is_an_error_not_a_panic`.
    if skip_known_bugs() && files.iter().any(|(lsn, _)| *lsn > u64::MAX - (1 << 32)) {
        return;
    }
    check_segments(&files);
    let mut fixed = files.clone();
    for (_, bytes) in &mut fixed {
        repair_segment(bytes);
    }
    if fixed != files {
        check_segments(&fixed);
    }
}

type Records = Vec<(Lsn, Vec<u8>)>;

fn replay(dir: &Path, recovery: WalRecovery) -> ddpersist::Result<(FileLog, Records, ReplayReport)> {
    let log = FileLog::open(dir, 1 << 20, recovery)?;
    let mut records = Vec::new();
    let report = log.replay(&mut |lsn, payload| {
        // The store decodes every payload it replays; so do we (any result is fine).
        let _ = decode_record(payload, "replayed record");
        records.push((lsn, payload.to_vec()));
        Ok(())
    })?;
    Ok((log, records, report))
}

fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap())
        })
        .collect()
}

fn wal_dir(files: &[(Lsn, Vec<u8>)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = scratch_dir();
    let wal = tmp.path().join("wal");
    fs::create_dir(&wal).unwrap();
    for (lsn, bytes) in files {
        fs::write(wal.join(segment_name(*lsn)), bytes).unwrap();
    }
    (tmp, wal)
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn check_segments(files: &[(Lsn, Vec<u8>)]) {
    let (_tmp, wal) = wal_dir(files);
    let before = dir_contents(&wal);
    match replay(&wal, WalRecovery::Strict) {
        Err(e) => {
            assert_format_error(&e, "strict replay");
            assert_eq!(
                dir_contents(&wal),
                before,
                "a failed replay changed the log ({e})"
            );
            // Point-in-time recovery may keep a prefix; whatever it keeps must then behave.
            if let Ok((log, records, report)) = replay(&wal, WalRecovery::PointInTime) {
                check_replayed(&wal, &before, log, records, report);
            }
        }
        Ok((log, records, report)) => {
            let strict = (records.clone(), report.clone());
            check_replayed(&wal, &before, log, records, report);
            check_zero_tail(files, &strict.0, &strict.1);
            // Point-in-time recovery differs only for bad records followed by valid ones: here it agrees.
            let (_tmp2, wal2) = wal_dir(files);
            let (_, records, report) =
                replay(&wal2, WalRecovery::PointInTime).expect("point-in-time replay after strict succeeded");
            assert_eq!(records, strict.0, "point-in-time and strict replays differ");
            let torn = |r: &ReplayReport| {
                r.torn_tail
                    .as_ref()
                    .map(|t| (base_name(&t.file), t.offset, t.dropped_bytes))
            };
            assert_eq!(
                torn(&report),
                torn(&strict.1),
                "point-in-time and strict torn tails differ"
            );
        }
    }
}

/// Zeros appended to the last segment (space the writer fills ahead of the log, format version 2) are not
/// content: a log that replayed replays the same records with them, and the same torn tail (longer by the
/// zeros) if it had one; in a version 1 segment they are a torn tail of their own if there was none.
fn check_zero_tail(files: &[(Lsn, Vec<u8>)], records: &Records, report: &ReplayReport) {
    // The newest segment is the one named by the greatest LSN (the directory's order, not the input's);
    // of files with one name, the last written.
    let Some(newest) = (0..files.len()).rev().max_by_key(|&i| files[i].0) else {
        return;
    };
    let (last_lsn, last) = &files[newest];
    if last.len() < SEGMENT_HEADER {
        return; // a partial segment: zeros would make its header bad
    }
    let cut_whole =
        |t: &ddpersist::wal::TornTail| t.offset == 0 && base_name(&t.file) == segment_name(*last_lsn);
    if last.len() == SEGMENT_HEADER && report.torn_tail.as_ref().is_some_and(cut_whole) {
        // A header-long last segment with a bad header: what a power loss while creating it leaves, cut
        // whole as holding no record; with zeros after it, it would hold records, so its header must be good.
        return;
    }
    const ZEROS: usize = 4096;
    let mut padded = files.to_vec();
    padded[newest].1.extend_from_slice(&[0; ZEROS]);
    let (_tmp, wal) = wal_dir(&padded);
    let version = u32::from_le_bytes([last[8], last[9], last[10], last[11]]);
    let flags = u32::from_le_bytes([last[12], last[13], last[14], last[15]]);
    let zero_filled = version == 2 || (version >= 3 && flags & 1 != 0);
    // A recycled last segment (version 6, flag bit 1) ends its records at the first bad bytes when no valid
    // record follows them, zeros included: not a torn tail (FORMAT.md §4, "Recycled segments").
    let recycled = version >= 6 && flags & 2 != 0;
    let (_, again, report2) = match replay(&wal, WalRecovery::Strict) {
        // In an appended segment with sync marks (version 3), zeros may complete a sync mark whose zero
        // high bytes were cut off, and the mark then proves the cut bytes durable: corruption, fine.
        Err(e) if version >= 3 && !zero_filled && report.torn_tail.is_some() && e.is_corruption() => return,
        other => other.expect("a log that replayed replays with a zero tail"),
    };
    if again.len() > records.len() && !zero_filled {
        // A record cut short in its trailing zero bytes (a seal record's upper below 2^56 ends in zeros;
        // any payload may) is completed by the zeros, exactly as written: it was the torn tail (or, in a
        // recycled segment, bytes past the records' end, not cut), and is read now, the log's last record
        // (nothing but zeros follows it).
        let cut = report.torn_tail.as_ref();
        assert!(
            cut.is_some() || recycled,
            "a record appeared where nothing was cut"
        );
        assert_eq!(
            &again[..records.len()],
            &records[..],
            "a zero tail changed the earlier records"
        );
        assert_eq!(
            again.len(),
            records.len() + 1,
            "a zero tail completed more than one record"
        );
        let (lsn, payload) = &again[records.len()];
        if let Some(cut) = cut {
            let start = cut.offset - SEGMENT_HEADER as u64 + *last_lsn;
            assert_eq!(*lsn, start, "the completed record starts at the cut");
        }
        assert!(payload.ends_with(&[0]), "a completed record ends in a zero byte");
        return;
    }
    assert_eq!(&again, records, "a zero tail changed the records");
    let torn = |r: &ReplayReport, extra: u64| {
        r.torn_tail
            .as_ref()
            .map(|t| (base_name(&t.file), t.offset, t.dropped_bytes + extra))
    };
    // Zero-filled segments (version 2, or 3 with flag bit 0) end their records at a zero tail; appended
    // segments take zeros past their records for a torn tail, cut at the old end.
    let expected = match torn(report, ZEROS as u64) {
        None if !zero_filled && !recycled => Some((segment_name(*last_lsn), last.len() as u64, ZEROS as u64)),
        t => t,
    };
    if let (Some(want), Some(got), true) = (
        &expected,
        torn(&report2, 0),
        version >= 3 && !zero_filled && !recycled,
    ) {
        // Zeros may complete a sync mark cut short (its high bytes are zeros): the cut then starts later,
        // never earlier, and still runs to the end of the file.
        assert_eq!(got.0, want.0, "a zero tail moved the torn tail to another file");
        assert!(got.1 >= want.1, "a zero tail moved the torn tail earlier");
        assert_eq!(
            got.1 + got.2,
            want.1 + want.2,
            "a zero tail changed where the file ends"
        );
        return;
    }
    assert_eq!(torn(&report2, 0), expected, "a zero tail changed the torn tail");
}

/// After a successful replay of the files `before`: the cut matches the report, appends continue the LSN
/// space, and a second open replays the same records plus the appended one, with no torn tail.
fn check_replayed(
    wal: &Path,
    before: &BTreeMap<String, Vec<u8>>,
    log: FileLog,
    records: Records,
    report: ReplayReport,
) {
    assert_eq!(report.records, records.len() as u64);
    for w in records.windows(2) {
        assert!(
            w[0].0 + 16 + w[0].1.len() as u64 <= w[1].0,
            "replayed LSNs overlap"
        );
    }
    let after = dir_contents(wal);
    for (name, bytes) in before {
        let torn_here = report.torn_tail.as_ref().filter(|t| base_name(&t.file) == *name);
        let stray = report.strays.iter().any(|s| base_name(s) == *name);
        match (torn_here, after.get(name)) {
            // A stray of a failed segment creation (at most a header long: no record) is removed.
            (None, None) if stray => assert!(bytes.len() <= SEGMENT_HEADER, "{name}: stray with records"),
            (None, now) => assert_eq!(now, Some(bytes), "{name} changed without a torn tail"),
            (Some(t), now)
                if bytes.len() < SEGMENT_HEADER || (bytes.len() == SEGMENT_HEADER && t.offset == 0) =>
            {
                // A partial segment (a crash while creating it: shorter than a header, or a header long
                // with a bad header) is removed; when it was the only one, a fresh segment with the same
                // first LSN replaces it.
                assert_eq!(
                    (t.offset, t.dropped_bytes),
                    (0, bytes.len() as u64),
                    "partial segment {name}"
                );
                assert!(
                    now.is_none_or(|n| n.len() == SEGMENT_HEADER),
                    "{name} not replaced by a header"
                );
            }
            (Some(t), Some(now)) => {
                assert_eq!(now.len() as u64, t.offset, "{name} not cut where reported");
                assert_eq!(&bytes[..now.len()], &now[..], "{name} changed before the cut");
                assert_eq!(
                    t.offset + t.dropped_bytes,
                    bytes.len() as u64,
                    "dropped bytes of {name}"
                );
            }
            (Some(t), None) => assert_eq!(t.dropped_bytes, bytes.len() as u64, "{name} removed"),
        }
    }
    let payload = b"appended by the fuzz check";
    // A log whose LSN space is used up refuses appends (as corruption); nothing else may fail here.
    let (start, end) = match log.append(payload) {
        Err(e) if e.to_string().contains("LSN space exhausted") => return,
        other => other.expect("append after replay"),
    };
    log.sync(end).expect("sync after replay");
    if let Some((lsn, p)) = records.last() {
        // Sync marks (version 3) may follow the last record.
        assert!(
            start >= lsn + 16 + p.len() as u64,
            "append does not continue the LSN space"
        );
    }
    drop(log);
    let (_, again, report2) = replay(wal, WalRecovery::Strict).expect("a log that replayed replays again");
    assert_eq!(report2.torn_tail, None, "torn tail on the second open");
    assert_eq!(
        again.len(),
        records.len() + 1,
        "records lost or gained on the second open"
    );
    assert_eq!(
        again[..records.len()],
        records[..],
        "records changed on the second open"
    );
    assert_eq!(again.last().unwrap(), &(start, payload.to_vec()));
}
