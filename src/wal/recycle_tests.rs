//! Unit tests of WAL segment recycling (version 6, [`super`]): released segments kept and reused by
//! rollovers, checksums seeded with the LSN, and replay of a recycled last segment.

use super::super::file::{FileLog, WalRecovery};
use super::super::format::{
    checksum_seed, record_header, reseed_records, MARK_BYTES, RECORD_HEADER_BYTES, SEGMENT_FLAG_RECYCLED,
    SEGMENT_HEADER_BYTES,
};
use super::super::scan::{list_segments, record_at, Found, Segment};
use super::super::{CutKind, Log, Lsn, ReplayReport};
use super::{SegmentFaultHook, SegmentStep, FREE_SUFFIX, RECYCLE_KEEP};
use crate::error::{Error, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Replayed = Vec<(Lsn, Vec<u8>)>;

/// Segments roll over past this size.
const SEGMENT: u64 = 1000;

fn replay_all(log: &FileLog) -> Result<(Replayed, ReplayReport)> {
    let mut out = Vec::new();
    let report = log.replay(&mut |lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok((out, report))
}

fn open(dir: &Path) -> FileLog {
    FileLog::open(dir, SEGMENT, WalRecovery::Strict).unwrap()
}

/// Appends and syncs `n` records of 300 bytes (byte `first + i`), one group commit each.
fn write(log: &FileLog, first: u8, n: u8) -> Vec<(Lsn, Vec<u8>)> {
    write_len(log, first, n, 300)
}

/// As [`write`], records of `len` bytes.
fn write_len(log: &FileLog, first: u8, n: u8, len: usize) -> Vec<(Lsn, Vec<u8>)> {
    (first..first + n)
        .map(|b| {
            let payload = vec![b; len];
            let (start, end) = log.append(&payload).unwrap();
            log.sync(end).unwrap();
            (start, payload)
        })
        .collect()
}

fn flags(seg: &Segment) -> u32 {
    let bytes = fs::read(&seg.path).unwrap();
    u32::from_le_bytes(bytes[12..16].try_into().unwrap())
}

fn free_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(FREE_SUFFIX))
        .collect();
    out.sort();
    out
}

/// A log in `dir` whose last segment is a recycled file holding `written` (the records since the last
/// release) and, past them, an earlier incarnation's records.
fn log_ending_in_a_recycled_segment(dir: &Path) -> (FileLog, Replayed) {
    let log = open(dir);
    replay_all(&log).unwrap();
    // Three records fill a segment: 3 rollovers, then everything before the last segment released.
    let first = write(&log, 1, 9);
    log.release_before(first.last().unwrap().0).unwrap();
    assert_eq!(
        free_files(dir).len(),
        RECYCLE_KEEP,
        "the newest released segments are kept"
    );
    // The next rollover reuses a kept file.
    let written = write(&log, 20, 4);
    let segments = list_segments(dir).unwrap();
    let last = segments.last().unwrap();
    assert_eq!(flags(last), SEGMENT_FLAG_RECYCLED, "{segments:?}");
    let records_end = log.state.lock().active_bytes;
    assert!(
        fs::metadata(&last.path).unwrap().len() > records_end,
        "the recycled file holds an earlier incarnation's bytes past the log's end"
    );
    let live: Replayed = first.last().into_iter().cloned().chain(written).collect();
    (log, live)
}

#[test]
fn released_segments_are_kept_and_a_rollover_reuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, live) = log_ending_in_a_recycled_segment(dir.path());
    assert_eq!(free_files(dir.path()).len(), RECYCLE_KEEP - 1);
    // More rollovers: each recycled segment that is not the last is cut to its records first. (Records
    // of 180 bytes end these segments at 1,008 bytes, short of the 1,028 the earlier incarnation held.)
    let more = write_len(&log, 40, 6, 180);
    let segments = list_segments(dir.path()).unwrap();
    for pair in segments.windows(2) {
        let len = fs::metadata(&pair[0].path).unwrap().len();
        let records = pair[1].first_lsn - pair[0].first_lsn;
        assert_eq!(len, SEGMENT_HEADER_BYTES + records, "{:?}", pair[0]);
    }
    assert!(
        segments
            .iter()
            .filter(|s| flags(s) == SEGMENT_FLAG_RECYCLED)
            .count()
            >= 2
    );
    drop(log);
    // Every live record comes back, once, at its LSN; no earlier incarnation's record, no torn tail.
    let log = open(dir.path());
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(report.torn_tail, None);
    assert!(report.strays.is_empty());
    let want: Replayed = live.into_iter().chain(more).collect();
    let from = got.iter().position(|(lsn, _)| *lsn == want[0].0).unwrap();
    assert_eq!(&got[from..], &want[..]);
    // Released again, kept again (the newest two), and reused by this run's rollovers.
    log.release_before(want.last().unwrap().0).unwrap();
    assert_eq!(free_files(dir.path()).len(), RECYCLE_KEEP);
    write(&log, 60, 6);
    assert_eq!(free_files(dir.path()).len(), 0);
    drop(log);
    let kept = dir.path().join(format!("{:020}{FREE_SUFFIX}", 1u64));
    fs::write(&kept, b"a kept file of an earlier run").unwrap();
    let log = open(dir.path());
    replay_all(&log).unwrap();
    write(&log, 80, 3);
    assert!(!kept.exists(), "an open adopts the kept files it finds");
}

#[test]
fn a_recycled_last_segment_ends_at_its_records_uncut_and_appends_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let (log, live) = log_ending_in_a_recycled_segment(dir.path());
    let last = list_segments(dir.path()).unwrap().pop().unwrap();
    drop(log);
    let len = fs::metadata(&last.path).unwrap().len();
    let log = open(dir.path());
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(
        report.torn_tail, None,
        "an earlier incarnation's bytes are not a torn tail"
    );
    assert_eq!(&got[got.len() - live.len()..], &live[..]);
    assert_eq!(fs::metadata(&last.path).unwrap().len(), len, "not truncated");
    // Appends go on over the old bytes, and come back.
    let (start, end) = log.append(b"after").unwrap();
    log.sync(end).unwrap();
    drop(log);
    let (got, report) = replay_all(&open(dir.path())).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(got.last().unwrap(), &(start, b"after".to_vec()));
    assert_eq!(&got[got.len() - 1 - live.len()..got.len() - 1], &live[..]);
}

/// Damages the record at `lsn` in the last segment (one payload byte) and, if `drop_mark`, zeroes the
/// sync mark that follows the record ending at `mark_after` (as if the flush had been torn before it).
fn damage(dir: &Path, lsn: Lsn, mark_after: Option<Lsn>) -> (PathBuf, u64) {
    let last = list_segments(dir).unwrap().pop().unwrap();
    let offset = |l: Lsn| SEGMENT_HEADER_BYTES + (l - last.first_lsn);
    let mut bytes = fs::read(&last.path).unwrap();
    let at = offset(lsn) as usize;
    bytes[at + RECORD_HEADER_BYTES as usize + 5] ^= 0xff;
    if let Some(end) = mark_after {
        let m = offset(end) as usize;
        bytes[m..m + MARK_BYTES].fill(0);
    }
    fs::write(&last.path, bytes).unwrap();
    (last.path, offset(lsn))
}

#[test]
fn a_torn_flush_in_a_recycled_segment_with_valid_records_after_it_is_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (log, live) = log_ending_in_a_recycled_segment(dir.path());
    // Two records in one group commit; a crash tore it: the first damaged, its mark never written.
    let (a, _) = log.append(&[7u8; 50]).unwrap();
    let (_, b_end) = log.append(&[8u8; 50]).unwrap();
    log.sync(b_end).unwrap();
    drop(log);
    let (path, offset) = damage(dir.path(), a, Some(b_end));
    let log = open(dir.path());
    let (got, report) = replay_all(&log).unwrap();
    let torn = report.torn_tail.expect("a torn tail");
    assert_eq!((torn.offset, torn.kind), (offset, CutKind::Unacknowledged));
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        offset,
        "cut, so its valid record never comes back"
    );
    assert_eq!(&got[got.len() - live.len()..], &live[..]);
}

#[test]
fn damage_a_sync_mark_covers_in_a_recycled_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = log_ending_in_a_recycled_segment(dir.path());
    let (a, a_end) = log.append(&[7u8; 50]).unwrap();
    log.sync(a_end).unwrap();
    let (_, b_end) = log.append(&[8u8; 50]).unwrap();
    log.sync(b_end).unwrap();
    drop(log);
    let (path, offset) = damage(dir.path(), a, None);
    let before = fs::read(&path).unwrap();
    match replay_all(&open(dir.path())) {
        Err(Error::Corrupt { file, offset: at, .. }) => {
            assert!(file.ends_with(".wal"), "{file}");
            assert_eq!(at, offset);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), before, "nothing changed");
}

#[test]
fn a_failed_recycle_falls_back_to_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    replay_all(&log).unwrap();
    let first = write(&log, 1, 9);
    log.release_before(first.last().unwrap().0).unwrap();
    assert_eq!(free_files(dir.path()).len(), RECYCLE_KEEP);
    drop(log);
    let hook: SegmentFaultHook = Arc::new(|step: SegmentStep, path: &Path| {
        match step == SegmentStep::Rename && path.to_string_lossy().ends_with(FREE_SUFFIX) {
            true => Err(std::io::Error::other("injected rename failure")),
            false => Ok(()),
        }
    });
    let log = FileLog::open(dir.path(), SEGMENT, WalRecovery::Strict)
        .unwrap()
        .with_segment_fault_hook(hook);
    replay_all(&log).unwrap();
    let more = write(&log, 20, 6);
    let segments = list_segments(dir.path()).unwrap();
    assert!(segments.iter().all(|s| flags(s) == 0), "{segments:?}");
    drop(log);
    let (got, report) = replay_all(&open(dir.path())).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(&got[got.len() - more.len()..], &more[..]);
    // The files that could not be recycled are removed, not leaked (a failure repeated at every rollover
    // would otherwise leave one behind each time).
    assert!(free_files(dir.path()).is_empty(), "{:?}", free_files(dir.path()));
}

#[test]
fn records_pending_at_a_rollover_from_an_older_segment_are_reseeded_for_their_lsn() {
    let payloads: [&[u8]; 3] = [b"one", b"two two", b""];
    let mut pending = Vec::new();
    for p in payloads {
        pending.extend_from_slice(&record_header(p, 0));
        pending.extend_from_slice(p);
    }
    let first: Lsn = 4096;
    let valid = |bytes: &[u8]| {
        let mut at = 0;
        let mut n = 0;
        while at < bytes.len() {
            let seed = checksum_seed(6, first + at as u64);
            match record_at(bytes, at, true, seed) {
                Some(Found::Record(end)) => (at, n) = (end, n + 1),
                _ => return n,
            }
        }
        n
    };
    assert_eq!(
        valid(&pending),
        0,
        "unseeded records fail at their LSN in a version 6 segment"
    );
    reseed_records(&mut pending, first, 6);
    assert_eq!(valid(&pending), 3);
    // Version 5 seeds nothing: reseeding for it restores the plain checksums.
    reseed_records(&mut pending, first, 5);
    assert_eq!(pending[..8], record_header(payloads[0], 0)[..8]);
}

#[test]
fn the_magic_search_finds_every_place_a_record_or_mark_starts() {
    use super::super::format::sync_mark;
    use super::super::scan::magic_starts;
    // Records and marks at odd offsets among noise that holds partial magics ("DDP" followed by others).
    let mut bytes = Vec::new();
    let mut state = 7u64;
    for i in 0..200u64 {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = (state >> 58) as usize;
        bytes.extend((0..noise).map(|j| if j % 5 == 0 { b'D' } else { b'P' }));
        bytes.extend_from_slice(b"DDPX");
        let lsn = bytes.len() as u64;
        if i % 3 == 0 {
            bytes.extend_from_slice(&sync_mark(lsn, checksum_seed(6, lsn)));
        } else {
            let payload = vec![i as u8; (state >> 60) as usize];
            bytes.extend_from_slice(&record_header(&payload, checksum_seed(6, lsn)));
            bytes.extend_from_slice(&payload);
        }
    }
    let candidates: Vec<usize> = magic_starts(&bytes, 0..bytes.len()).collect();
    let valid: Vec<usize> = (0..bytes.len())
        .filter(|&p| record_at(&bytes, p, true, checksum_seed(6, p as u64)).is_some())
        .collect();
    assert_eq!(valid.len(), 200);
    assert!(
        valid.iter().all(|p| candidates.contains(p)),
        "a valid start the search missed"
    );
    // A sub-range finds the same starts within it, and none outside.
    let (lo, hi) = (valid[50] - 1, valid[150] + 1);
    let inside: Vec<usize> = magic_starts(&bytes, lo..hi)
        .filter(|&p| record_at(&bytes, p, true, checksum_seed(6, p as u64)).is_some())
        .collect();
    assert_eq!(inside, valid[50..=150].to_vec());
}

/// A record appended while a rollover from a version 5 segment is in flight (after the leader took the
/// pending records, before the new segment exists) was encoded for version 5, unseeded; it lands in the
/// new version 6 segment, so the rollover re-seeds it. Without that it would fail its checksum there.
#[test]
fn a_record_appended_during_a_rollover_from_a_version_5_segment_comes_back() {
    use super::super::format::{segment_header, SEGMENT_FLAG_ZERO_FILLED};
    use super::segment_name;
    use crate::encoding::checksum;
    use std::sync::{Mutex, OnceLock};
    let dir = tempfile::tempdir().unwrap();
    // A version 5 segment (first LSN 0) holding one record, as the previous release wrote it.
    let mut header = segment_header(0, 0, 0);
    header[8..12].copy_from_slice(&5u32.to_le_bytes());
    let sum = checksum(&header[..24]);
    header[24..32].copy_from_slice(&sum.to_le_bytes());
    let first = b"written by version 5".to_vec();
    let mut segment = header;
    segment.extend_from_slice(&record_header(&first, 0));
    segment.extend_from_slice(&first);
    fs::write(dir.path().join(segment_name(0)), &segment).unwrap();
    assert_eq!(SEGMENT_FLAG_ZERO_FILLED & SEGMENT_FLAG_RECYCLED, 0);
    // The hook appends once, while the flush that rolls over is in flight.
    // Weak: the log holds the hook, which must not keep the log alive.
    let log_cell: Arc<OnceLock<std::sync::Weak<FileLog>>> = Arc::new(OnceLock::new());
    let during: Arc<Mutex<Option<(Lsn, Lsn)>>> = Arc::default();
    let hook: SegmentFaultHook = {
        let (log_cell, during) = (log_cell.clone(), during.clone());
        Arc::new(move |step: SegmentStep, _: &Path| {
            if step == SegmentStep::Flush {
                let mut during = during.lock().unwrap();
                if during.is_none() {
                    let log = log_cell.get().and_then(|weak| weak.upgrade()).unwrap();
                    *during = Some(log.append(b"appended mid-rollover").unwrap());
                }
            }
            Ok(())
        })
    };
    let log = Arc::new(
        FileLog::open(dir.path(), 100, WalRecovery::Strict)
            .unwrap()
            .with_segment_fault_hook(hook),
    );
    let _ = log_cell.set(Arc::downgrade(&log));
    let (replayed, _) = replay_all(&log).unwrap();
    assert_eq!(replayed, vec![(0, first.clone())]);
    // Fills the version 5 segment past 100 bytes: this flush rolls over.
    let big = vec![9u8; 80];
    let (a, a_end) = log.append(&big).unwrap();
    log.sync(a_end).unwrap();
    let (b, b_end) = during.lock().unwrap().expect("the hook appended");
    assert_eq!(b, a_end, "appended after the flush's records");
    log.sync(b_end).unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments.len(), 2, "rolled over: {segments:?}");
    assert_eq!(segments[1].first_lsn, b);
    drop(log);
    assert!(log_cell.get().unwrap().upgrade().is_none(), "the log was dropped");
    let (got, report) = replay_all(&open(dir.path())).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        got,
        vec![(0, first), (a, big), (b, b"appended mid-rollover".to_vec())]
    );
}
