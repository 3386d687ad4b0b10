//! Unit tests of [`super::FileLog`]: replay rules, sync marks, zero-filling, rotation and release.

use super::super::format::{
    MARK_PAYLOAD_BYTES, RECORD_HEADER_BYTES, SEGMENT_FLAG_ZERO_FILLED, SEGMENT_MAGIC,
};
use super::super::scan::list_segments;
use super::super::segments::{segment_name, SegmentFiles, FREE_SUFFIX};
use super::super::zero_fill::{ZERO_AHEAD_BYTES, ZERO_MARGIN_BYTES};
use super::*;
use crate::encoding::checksum;
use crate::wal::CutKind;
use std::fs::{self, OpenOptions};

type Replayed = Vec<(Lsn, Vec<u8>)>;

/// Bytes of a sync mark.
const MARK: u64 = RECORD_HEADER_BYTES + MARK_PAYLOAD_BYTES;

fn replay_all(log: &FileLog) -> Result<(Replayed, ReplayReport)> {
    let mut out = Vec::new();
    let report = log.replay(&mut |lsn, p| {
        out.push((lsn, p.to_vec()));
        Ok(())
    })?;
    Ok((out, report))
}

fn write_records(dir: &Path, segment_bytes: u64, payloads: &[&[u8]]) -> Vec<(Lsn, Lsn)> {
    let log = FileLog::open(dir, segment_bytes, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    let lsns: Vec<_> = payloads.iter().map(|p| log.append(p).unwrap()).collect();
    log.sync(lsns.last().unwrap().1).unwrap();
    lsns
}

#[test]
fn records_come_back_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 3]).collect();
    let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
    // Sync after each to force several rollovers with a tiny segment size.
    let log = FileLog::open(dir.path(), 200, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    let mut lsns = Vec::new();
    for p in &refs {
        let l = log.append(p).unwrap();
        log.sync(l.1).unwrap();
        lsns.push(l);
    }
    drop(log);
    assert!(fs::read_dir(dir.path()).unwrap().count() > 3);
    let log = FileLog::open(dir.path(), 200, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(got.len(), 50);
    for ((lsn, p), ((start, _), want)) in got.iter().zip(lsns.iter().zip(&payloads)) {
        assert_eq!(lsn, start);
        assert_eq!(p, want);
    }
    // Appends continue the LSN space (past the last flush's sync mark, unless that flush rolled over).
    let (start, _) = log.append(b"more").unwrap();
    let gap = start - lsns.last().unwrap().1;
    assert!(gap == 0 || gap == MARK, "{gap}");
}

#[test]
fn torn_tail_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
    let seg = dir.path().join(segment_name(0));
    // The records' end (the file may go on with zeros filled ahead).
    let len = SEGMENT_HEADER_BYTES + lsns[2].1;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 2).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(
        got.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
    let torn = report.torn_tail.unwrap();
    assert_eq!(torn.dropped_bytes, 16 + 5 - 2);
    assert_eq!(fs::metadata(&seg).unwrap().len(), torn.offset);
}

/// Waits until the zero-filler is idle (tests only).
fn fill_idle(log: &FileLog) {
    let mut st = log.fill.state.lock();
    while st.filling.is_some() || st.next_job().is_some() {
        log.fill.changed.wait(&mut st);
    }
}

#[test]
fn zeros_are_filled_ahead_and_are_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join(segment_name(0));
    let log = FileLog::open(dir.path(), 64 << 20, WalRecovery::Strict)
        .unwrap()
        .with_zero_fill(true);
    replay_all(&log).unwrap();
    // An open alone changes nothing.
    fill_idle(&log);
    assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_BYTES);
    let payloads: Vec<Vec<u8>> = (0..40u32).map(|i| vec![i as u8 + 1; 100_000]).collect();
    let mut end = 0;
    let mut over_zeros = 0;
    for p in &payloads {
        let (start, e) = log.append(p).unwrap();
        fill_idle(&log);
        let range = SEGMENT_HEADER_BYTES + start..SEGMENT_HEADER_BYTES + e;
        over_zeros += log.fill.before_write(range) as u32;
        log.sync(e).unwrap();
        end = e;
    }
    // After the first writes, the records went over zeros filled ahead of them.
    assert!(over_zeros >= 30, "only {over_zeros} of 40 writes over zeros");
    let header = fs::read(&seg).unwrap();
    assert_eq!(crate::encoding::le_u32(&header, 8), WAL_VERSION.0);
    assert_eq!(crate::encoding::le_u32(&header, 12), SEGMENT_FLAG_ZERO_FILLED);
    fill_idle(&log);
    let bytes = fs::read(&seg).unwrap();
    // The records, then the last flush's sync mark, then zeros.
    let records_end = (SEGMENT_HEADER_BYTES + end + MARK) as usize;
    assert!(bytes.len() >= records_end + (ZERO_AHEAD_BYTES - ZERO_MARGIN_BYTES) as usize);
    assert!(bytes[records_end..].iter().all(|&b| b == 0));
    drop(log);
    // The zeros are neither records nor a torn tail, and the open leaves them in place.
    let log = FileLog::open(dir.path(), 64 << 20, WalRecovery::Strict)
        .unwrap()
        .with_zero_fill(true);
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        got.iter().map(|r| &r.1).collect::<Vec<_>>(),
        payloads.iter().collect::<Vec<_>>()
    );
    assert_eq!(fs::read(&seg).unwrap(), bytes);
    // Appends continue past the last sync mark, over the zeros.
    let (start, e) = log.append(b"more").unwrap();
    assert_eq!(start, end + MARK);
    log.sync(e).unwrap();
    drop(log);
    let log = FileLog::open(dir.path(), 64 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(got.last().unwrap(), &(end + MARK, b"more".to_vec()));
    assert_eq!(got.len(), 41);
}

#[test]
fn without_zero_fill_records_are_appended() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), 64 << 20, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    // No filler thread: it would only be woken by every write for nothing.
    assert!(log.filler.lock().is_none());
    let mut end = 0;
    for i in 0..10u8 {
        let (_, e) = log.append(&[i + 1; 100_000]).unwrap();
        log.sync(e).unwrap();
        end = e;
    }
    fill_idle(&log);
    let seg = dir.path().join(segment_name(0));
    let len = fs::metadata(&seg).unwrap().len();
    // Appended: the records, each sync followed by its sync mark.
    assert_eq!(len, SEGMENT_HEADER_BYTES + end + MARK);
    // A segment written without zero-filling has no zero-fill flag...
    assert_eq!(crate::encoding::le_u32(&fs::read(&seg).unwrap(), 12), 0);
    drop(log);
    // ...and is never zero-filled, even when reopened with zero-filling on.
    let log = FileLog::open(dir.path(), 64 << 20, WalRecovery::Strict)
        .unwrap()
        .with_zero_fill(true);
    replay_all(&log).unwrap();
    // With zero-filling on, the filler runs (for the segments to come).
    assert!(log.filler.lock().is_some());
    let (_, e) = log.append(&[9; 100_000]).unwrap();
    log.sync(e).unwrap();
    fill_idle(&log);
    assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_BYTES + e + MARK);
}

#[test]
fn a_torn_record_before_zeros_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
    let seg = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&seg).unwrap();
    let third = (SEGMENT_HEADER_BYTES + lsns[2].0) as usize;
    let end = (SEGMENT_HEADER_BYTES + lsns[2].1) as usize;
    // The record's last bytes never reached the disk; zeros follow (filled ahead, or never written).
    bytes.truncate(end);
    bytes[end - 3..].fill(0);
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&seg, &bytes).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 2);
    let torn = report.torn_tail.unwrap();
    assert_eq!(torn.offset, third as u64);
    assert_eq!(torn.dropped_bytes, (bytes.len() - third) as u64);
    assert_eq!(fs::metadata(&seg).unwrap().len(), third as u64);
}

#[test]
fn zeroed_records_in_a_segment_that_is_not_the_last_are_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), 100, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    for i in 0..3u8 {
        let (_, end) = log.append(&[i + 1; 90]).unwrap();
        log.sync(end).unwrap();
    }
    drop(log);
    // Each record filled a segment; zero the first segment's record, as if it had never been written.
    let first = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&first).unwrap();
    bytes[SEGMENT_HEADER_BYTES as usize..].fill(0);
    fs::write(&first, &bytes).unwrap();
    let log = FileLog::open(dir.path(), 100, WalRecovery::Strict).unwrap();
    let err = replay_all(&log).unwrap_err();
    assert!(err.is_corruption(), "{err}");
    // A version 1 segment (no zero-fill) takes the zeros for a bad record; a version 2 one for the
    // end of its records, and the next segment's first LSN then no longer follows on.
    let msg = err.to_string();
    assert!(msg.contains("not the last") || msg.contains("LSN gap"), "{msg}");
}

#[test]
fn bad_record_before_valid_ones_is_corruption_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
    let seg = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&seg).unwrap();
    let second = (SEGMENT_HEADER_BYTES + lsns[1].0) as usize;
    bytes[second + 16] ^= 0xFF; // flip a payload byte of "two"
    fs::write(&seg, &bytes).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    match replay_all(&log) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(&segment_name(0)));
            assert_eq!(offset, second as u64);
        }
        other => panic!("expected corruption, got {:?}", other.map(|r| r.1)),
    }
    assert_eq!(
        fs::read(&seg).unwrap(),
        bytes,
        "a failed open must not change the log"
    );
    // Point-in-time recovery keeps the prefix and cuts the rest.
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::PointInTime).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(report.torn_tail.unwrap().offset, second as u64);
}

#[test]
fn release_drops_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = FileLog::open(dir.path(), 100, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    let mut lsns = Vec::new();
    for i in 0..10u8 {
        let l = log.append(&[i; 90]).unwrap();
        log.sync(l.1).unwrap();
        lsns.push(l);
    }
    let before = list_segments(&log.dir).unwrap().len();
    log.release_before(lsns[5].0).unwrap();
    let after = list_segments(&log.dir).unwrap();
    assert!(after.len() < before);
    assert!(after[0].first_lsn <= lsns[5].0);
    drop(log);
    let log = FileLog::open(dir.path(), 100, WalRecovery::Strict).unwrap();
    let (got, _) = replay_all(&log).unwrap();
    assert!(got.iter().any(|(l, _)| *l == lsns[5].0));
    assert_eq!(got.last().unwrap().0, lsns[9].0);
}

#[test]
fn a_fully_released_big_segment_is_replaced_so_restarts_replay_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A kept file (left by an earlier run for recycling): an idle rotation does not take it.
    let kept = dir.path().join(format!("{:020}{FREE_SUFFIX}", 1u64));
    fs::write(&kept, vec![1u8; 4096]).unwrap();
    let log = FileLog::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    let payload = vec![7u8; 1 << 20];
    let mut end = 0;
    for _ in 0..9 {
        end = log.append(&payload).unwrap().1;
    }
    log.sync(end).unwrap();
    // Not everything released: nothing changes.
    log.release_before(end - 1).unwrap();
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
    log.release_before(end).unwrap();
    let segments = list_segments(dir.path()).unwrap();
    assert_eq!(segments.len(), 1);
    // The old segment ended in the sync mark of the last flush.
    assert_eq!(segments[0].first_lsn, end + MARK);
    // The new segment is a fresh, small file (a restart reads the last segment whole), not a recycled
    // one; the kept file stays, and the released segment is kept beside it.
    let header = fs::read(&segments[0].path).unwrap();
    assert_eq!(header.len() as u64, SEGMENT_HEADER_BYTES);
    assert_eq!(
        u32::from_le_bytes(header[12..16].try_into().unwrap()),
        0,
        "header flags"
    );
    assert!(kept.exists(), "an idle rotation does not take a kept file");
    let free = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(FREE_SUFFIX)
        })
        .count();
    assert_eq!(free, 2);
    let (start, next) = log.append(b"after").unwrap();
    assert_eq!(start, end + MARK);
    log.sync(next).unwrap();
    drop(log);
    let log = FileLog::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
    let (got, _) = replay_all(&log).unwrap();
    assert_eq!(got, vec![(end + MARK, b"after".to_vec())]);
}

#[test]
fn concurrent_writers_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(FileLog::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap());
    replay_all(&log).unwrap();
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50u8 {
                    let (_, end) = log.append(&[t, i]).unwrap();
                    log.sync(end).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    drop(log);
    let log = FileLog::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
    let (got, _) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 200);
    for t in 0..4u8 {
        let mine: Vec<u8> = got.iter().filter(|r| r.1[0] == t).map(|r| r.1[1]).collect();
        assert_eq!(mine, (0..50).collect::<Vec<u8>>());
    }
}

#[test]
fn a_bad_record_no_sync_mark_covers_is_a_torn_flush_even_with_valid_records_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
    let seg = dir.path().join(segment_name(0));
    let mut bytes = fs::read(&seg).unwrap();
    // One flush wrote all three; a power loss during it kept "one" and "three" but not all of "two", and
    // its fdatasync never returned, so no sync mark follows.
    let end = (SEGMENT_HEADER_BYTES + lsns[2].1) as usize;
    assert_eq!(bytes.len(), end + MARK as usize);
    bytes.truncate(end);
    let second = (SEGMENT_HEADER_BYTES + lsns[1].0) as usize;
    bytes[second + 16] ^= 0xFF;
    fs::write(&seg, &bytes).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 1);
    let torn = report.torn_tail.unwrap();
    assert_eq!((torn.offset, torn.kind), (second as u64, CutKind::Unacknowledged));
    assert_eq!(fs::metadata(&seg).unwrap().len(), second as u64);
}

#[test]
fn a_stray_segment_of_a_failed_creation_is_removed_and_its_predecessor_stays_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
    // An idle rotation at the end of "one" created its segment but failed before adopting it; the log went
    // on in segment 0, whose last flush was then torn by a crash (no sync mark, part of "three").
    let files = SegmentFiles {
        fs: StdFs::shared(),
        dir: dir.path().to_path_buf(),
        hook: None,
        free: Default::default(),
        store_id: Default::default(),
        start: Default::default(),
    };
    let (stray, _) = files.create(lsns[0].1, false).unwrap();
    let seg = dir.path().join(segment_name(0));
    let end = SEGMENT_HEADER_BYTES + lsns[2].1;
    let f = OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(end - 2).unwrap();
    // A short stray (its header never written) before it too.
    fs::write(dir.path().join(segment_name(lsns[0].0 + 1)), b"DDP").unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 2);
    let torn = report.torn_tail.unwrap();
    assert!(torn.file.ends_with(&segment_name(0)), "{}", torn.file);
    assert_eq!(torn.kind, CutKind::Unacknowledged);
    assert_eq!(list_segments(dir.path()).unwrap().len(), 1, "strays removed");
    assert!(!stray.path.exists());
    // Appends continue in segment 0.
    let (start, e) = log.append(b"four").unwrap();
    assert_eq!(start, lsns[1].1);
    log.sync(e).unwrap();
}

#[test]
fn a_reopened_segment_of_an_older_version_gets_no_sync_marks() {
    let dir = tempfile::tempdir().unwrap();
    // A version 1 segment, as an older release wrote it: header only.
    let mut header = Vec::new();
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&1u32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&0u64.to_le_bytes());
    let sum = checksum(&header);
    header.extend_from_slice(&sum.to_le_bytes());
    let seg = dir.path().join(segment_name(0));
    fs::write(&seg, &header).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    let (_, end) = log.append(b"one").unwrap();
    log.sync(end).unwrap();
    drop(log);
    // Only the record: a version 1 reader would take a mark for a bad record.
    assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_BYTES + end);
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!((got.len(), report.torn_tail), (1, None));
}

#[test]
fn a_last_segment_of_a_header_of_zeros_is_a_torn_creation() {
    // Found by `tests/durability/crash_states.rs`: a power loss while creating a segment kept its size (a header) but
    // not its bytes. It never held a record (records follow the header's fsync), so it is cut, not corrupt.
    let dir = tempfile::tempdir().unwrap();
    let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two"]);
    let next = lsns[1].1 + MARK;
    let stray = dir.path().join(segment_name(next));
    fs::write(&stray, [0u8; SEGMENT_HEADER_BYTES as usize]).unwrap();
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    let (got, report) = replay_all(&log).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(report.torn_tail.unwrap().kind, CutKind::Unacknowledged);
    assert!(!stray.exists());
    let (start, end) = log.append(b"three").unwrap();
    assert_eq!(start, next);
    log.sync(end).unwrap();
    drop(log);
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    assert_eq!(replay_all(&log).unwrap().0.len(), 3);
}

#[test]
fn a_reopened_segment_of_an_older_version_takes_only_its_tags_until_it_rolls_over() {
    for version in [1u32, 2, 3, 4] {
        let dir = tempfile::tempdir().unwrap();
        let mut header = Vec::new();
        header.extend_from_slice(SEGMENT_MAGIC);
        header.extend_from_slice(&version.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&0u64.to_le_bytes());
        let sum = checksum(&header);
        header.extend_from_slice(&sum.to_le_bytes());
        fs::write(dir.path().join(segment_name(0)), &header).unwrap();
        let log = FileLog::open(dir.path(), 256, WalRecovery::Strict).unwrap();
        replay_all(&log).unwrap();
        // Varint records from version 4, seal records from version 5.
        let tags = |log: &FileLog| (log.record_format(), log.takes_seal_records());
        let old = match version {
            4 => (RecordFormat::Varint, false),
            _ => (RecordFormat::Fixed, false),
        };
        assert_eq!(tags(&log), old, "version {version}");
        let (_, end) = log.append(&[7u8; 100]).unwrap();
        log.sync(end).unwrap();
        assert_eq!(tags(&log), old, "version {version}: not yet full");
        // Past 256 bytes the segment rolls over to one of the current version, which takes every tag.
        let (_, end) = log.append(&[8u8; 200]).unwrap();
        log.sync(end).unwrap();
        assert_eq!(tags(&log), (RecordFormat::Varint, true), "version {version}");
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 2);
        let new = fs::read(&segments[1].path).unwrap();
        assert_eq!(crate::encoding::le_u32(&new, 8), WAL_VERSION.0);
    }
    // A new log, and a reopened current segment: every tag from the start.
    let dir = tempfile::tempdir().unwrap();
    write_records(dir.path(), 1 << 20, &[b"one"]);
    let log = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
    replay_all(&log).unwrap();
    assert_eq!(log.record_format(), RecordFormat::Varint);
    assert!(log.takes_seal_records());
}
