//! [`FileBuffer`]: the durable write-ahead log, as numbered segment files in one directory.
//!
//! Segment file `{first_lsn:020}.wal` (format version 1, little-endian):
//! ```text
//! header, 32 bytes:
//!   0  magic      [u8; 8] = "DDPWALSG"
//!   8  version    u32     = 1
//!   12 reserved   u32     = 0
//!   16 first_lsn  u64     LSN of the first record in this segment
//!   24 checksum   u64     xxh3 of bytes 0..24
//! records, back to back:
//!   0  checksum   u64     xxh3 of bytes 8..16 of this header followed by the payload
//!   8  len        u32     payload length in bytes
//!   12 magic      u32     = 0x4C50_4444 ("DDPL" little-endian)
//!   16 payload    [u8; len]
//! ```
//! The LSN of a record is `first_lsn` of its segment plus its offset past the segment header; the LSN
//! space is contiguous across segments.
//!
//! Durability: appends go to an in-memory pending buffer; `sync(lsn)` takes the sync lock, and the first
//! caller writes everything pending and calls `fdatasync` once for all waiting writers (group commit).
//! When a segment passes its size limit it is fsync'd and closed, and a new one is created and fsync'd
//! together with the directory before any record is written to it. So only the last segment can have a
//! torn tail. When every record is released (all sealed) and the active segment holds at least 8 MiB, a
//! new segment is started too, so the old one is deleted and a restart replays almost nothing.
//!
//! Replay: every record of every segment is checked. In the last segment, a record that fails its checks
//! with no valid record after it is a torn tail: the file is truncated there (and fsync'd) and the cut is
//! reported. A bad record followed by a valid one, a bad segment header, a gap in the LSN space, or a torn
//! tail in any segment but the last is corruption: open fails naming the file and offset, and nothing is
//! changed — unless [`WalRecovery::PointInTime`] asks to truncate at the first bad record instead.

use super::scan::{scan, Cut, Scan, Segment};
use super::{Buffer, Lsn, ReplayReport};
use crate::blob::dir::sync_dir;
use crate::error::{Error, Result};
use crate::format::{checksum, FormatVersion, PutLe};
use parking_lot::Mutex;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DDPWALSG";
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const RECORD_MAGIC: u32 = 0x4C50_4444;
pub(crate) const RECORD_HEADER_BYTES: u64 = 16;
/// A fully released active segment at least this large is replaced by a fresh one (see
/// `FileBuffer::release_before`), so restarts do not replay sealed records.
pub const IDLE_ROTATE_BYTES: u64 = 8 << 20;
/// The WAL format version this library writes and the newest it reads.
pub const WAL_VERSION: FormatVersion = FormatVersion(1);

/// What to do with a bad record that has valid records after it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalRecovery {
    /// Fail the open with [`Error::Corrupt`], changing nothing (the default).
    #[default]
    Strict,
    /// Keep the log up to the first bad record, and cut off (and report) everything after it. Loses
    /// acknowledged writes if the bad record was in the synced part of the log; use to recover a store
    /// by hand after inspecting it.
    PointInTime,
}

/// The durable write-ahead log. See the module docs for format and protocol.
pub struct FileBuffer {
    dir: PathBuf,
    segment_bytes: u64,
    recovery: WalRecovery,
    /// Appended records not yet written, and the log's end.
    state: Mutex<State>,
    /// Held while writing and syncing; the holder writes for everyone (group commit).
    sync_lock: Mutex<Vec<u8>>,
    /// Every record ending at or before this LSN is durable.
    durable_lsn: AtomicU64,
}

struct State {
    /// Encoded records appended since the last write; they start at `pending_lsn`.
    pending: Vec<u8>,
    pending_lsn: Lsn,
    /// LSN just past the last appended record.
    next_lsn: Lsn,
    /// Segments, oldest first; the last one is active. Empty until `replay`.
    segments: Vec<Segment>,
    /// The active segment, open for appending; `None` until `replay`.
    active: Option<Arc<File>>,
    /// Bytes in the active segment file.
    active_bytes: u64,
    /// Set after a failed write or sync; every later call fails.
    poisoned: Option<String>,
}

fn segment_name(first_lsn: Lsn) -> String {
    format!("{first_lsn:020}.wal")
}

impl FileBuffer {
    /// A log in `dir` (created if missing) whose segments roll over at about `segment_bytes`.
    /// Call [`Buffer::replay`] before appending.
    pub fn open(dir: impl AsRef<Path>, segment_bytes: u64, recovery: WalRecovery) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        Ok(FileBuffer {
            dir,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER_BYTES + 1),
            recovery,
            state: Mutex::new(State {
                pending: Vec::new(),
                pending_lsn: 0,
                next_lsn: 0,
                segments: Vec::new(),
                active: None,
                active_bytes: 0,
                poisoned: None,
            }),
            sync_lock: Mutex::new(Vec::new()),
            durable_lsn: AtomicU64::new(0),
        })
    }

    fn create_segment(&self, first_lsn: Lsn) -> Result<(Segment, File)> {
        let path = self.dir.join(segment_name(first_lsn));
        let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.put_u32(WAL_VERSION.0);
        header.put_u32(0);
        header.put_u64(first_lsn);
        header.put_u64(checksum(&header));
        let ctx = |what: &str| format!("{what} {}", path.display());
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(ctx("create"), e))?;
        file.write_all(&header).map_err(|e| Error::io(ctx("write"), e))?;
        file.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
        sync_dir(&self.dir)?;
        Ok((Segment { first_lsn, path }, file))
    }

    /// When every record is released (nothing unsealed anywhere) and the active segment holds at least
    /// [`IDLE_ROTATE_BYTES`], starts a new segment, so the old one can be deleted right away: a restart then
    /// replays (almost) nothing instead of a segment of sealed records.
    fn rotate_if_all_released(&self, lsn: Lsn) -> Result<()> {
        // The sync lock orders this with writes of pending records, as a rollover in `sync` does.
        let _sync = self.sync_lock.lock();
        let end = {
            let state = self.state.lock();
            let idle = state.pending.is_empty()
                && lsn >= state.next_lsn
                && state.active.is_some()
                && state.poisoned.is_none();
            if !idle || state.active_bytes < IDLE_ROTATE_BYTES {
                return Ok(());
            }
            state.next_lsn
        };
        // Records appended from here on start at `end` or later, and go to the new segment.
        let (seg, file) = self.create_segment(end)?;
        let mut state = self.state.lock();
        state.segments.push(seg);
        state.active = Some(Arc::new(file));
        state.active_bytes = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    fn poison(&self, detail: String) -> Error {
        self.state.lock().poisoned = Some(detail.clone());
        Error::Poisoned { detail }
    }
}

impl Buffer for FileBuffer {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        let mut state = self.state.lock();
        if state.active.is_some() {
            return Err(Error::bad_input("WAL replayed twice"));
        }
        let Scan {
            report,
            end_lsn: next_lsn,
            segments,
            cut,
        } = scan(&self.dir, self.recovery, f)?;
        // Everything checked: now cut the torn tail (the only change replay makes) and open for append.
        let mut segments = segments;
        if cut == Some(Cut::RemovePartialSegment) {
            if let Some(partial) = segments.pop() {
                let p = partial.path.display();
                fs::remove_file(&partial.path).map_err(|e| Error::io(format!("remove {p}"), e))?;
                sync_dir(&self.dir)?;
            }
        }
        let (segments, active, active_bytes) = match segments.last() {
            Some(last) => {
                let ctx = |what: &str| format!("{what} {}", last.path.display());
                let file = OpenOptions::new()
                    .append(true)
                    .open(&last.path)
                    .map_err(|e| Error::io(ctx("open"), e))?;
                if let Some(Cut::TruncateLast { offset }) = cut {
                    file.set_len(offset).map_err(|e| Error::io(ctx("truncate"), e))?;
                    file.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
                }
                let len = file.metadata().map_err(|e| Error::io(ctx("stat"), e))?.len();
                (segments, file, len)
            }
            None => {
                let (seg, file) = self.create_segment(next_lsn)?;
                (vec![seg], file, SEGMENT_HEADER_BYTES)
            }
        };
        state.segments = segments;
        state.active = Some(Arc::new(active));
        state.active_bytes = active_bytes;
        state.next_lsn = next_lsn;
        state.pending_lsn = next_lsn;
        self.durable_lsn.store(next_lsn, Ordering::Release);
        Ok(report)
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        if payload.len() > u32::MAX as usize {
            return Err(Error::bad_input("WAL record larger than 4 GiB"));
        }
        let mut state = self.state.lock();
        if let Some(p) = &state.poisoned {
            return Err(Error::Poisoned { detail: p.clone() });
        }
        if state.active.is_none() {
            return Err(Error::bad_input("WAL append before replay"));
        }
        let mut header = [0u8; RECORD_HEADER_BYTES as usize];
        header[8..12].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[12..16].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&header[8..16]);
        h.update(payload);
        header[0..8].copy_from_slice(&h.digest().to_le_bytes());
        let start = state.next_lsn;
        let Some(end) = start.checked_add(RECORD_HEADER_BYTES + payload.len() as u64) else {
            // Only reachable with a segment named near u64::MAX: the log's LSN space is used up.
            return Err(Error::corrupt(
                self.dir.display().to_string(),
                start,
                "WAL LSN space exhausted",
            ));
        };
        state.pending.extend_from_slice(&header);
        state.pending.extend_from_slice(payload);
        state.next_lsn = end;
        Ok((start, end))
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        if self.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let mut spare = self.sync_lock.lock();
        if self.durable_lsn.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        // We are the leader: write everything appended so far, for every waiting writer.
        let (mut pending, end_lsn, file, rotate_at) = {
            let mut state = self.state.lock();
            if let Some(p) = &state.poisoned {
                return Err(Error::Poisoned { detail: p.clone() });
            }
            let Some(file) = state.active.clone() else {
                return Err(Error::bad_input("WAL sync before replay"));
            };
            spare.clear();
            let pending = std::mem::replace(&mut state.pending, std::mem::take(&mut *spare));
            state.pending_lsn = state.next_lsn;
            state.active_bytes += pending.len() as u64;
            let rotate = state.active_bytes >= self.segment_bytes;
            (pending, state.next_lsn, file, rotate)
        };
        debug_assert!(end_lsn >= lsn, "sync past the end of the log");
        let path = || {
            self.state
                .lock()
                .segments
                .last()
                .map(|s| s.path.display().to_string())
        };
        if let Err(e) = (&*file).write_all(&pending).and_then(|_| file.sync_data()) {
            return Err(self.poison(format!("WAL write/fdatasync of {:?} failed: {e}", path())));
        }
        self.durable_lsn.store(end_lsn, Ordering::Release);
        pending.clear();
        *spare = pending;
        if rotate_at {
            // The old segment is fully synced; records appended meanwhile start at `end_lsn` and go to
            // the new segment.
            let (seg, new_file) = match self.create_segment(end_lsn) {
                Ok(x) => x,
                Err(e) => return Err(self.poison(format!("WAL segment rollover failed: {e}"))),
            };
            let mut state = self.state.lock();
            state.segments.push(seg);
            state.active = Some(Arc::new(new_file));
            state.active_bytes = SEGMENT_HEADER_BYTES;
        }
        Ok(())
    }

    fn release_before(&self, lsn: Lsn) -> Result<()> {
        self.rotate_if_all_released(lsn)?;
        let doomed: Vec<PathBuf> = {
            let mut state = self.state.lock();
            // Segment i holds LSNs [first_lsn(i), first_lsn(i + 1)); it may go once that end is <= lsn.
            // The active (last) segment always stays.
            let keep_from = (1..state.segments.len())
                .find(|&i| state.segments[i].first_lsn > lsn)
                .map_or(state.segments.len().saturating_sub(1), |i| i - 1);
            state.segments.drain(..keep_from).map(|s| s.path).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for path in &doomed {
            fs::remove_file(path).map_err(|e| Error::io(format!("remove {}", path.display()), e))?;
        }
        sync_dir(&self.dir)
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::scan::list_segments;
    use super::*;

    type Replayed = Vec<(Lsn, Vec<u8>)>;

    fn replay_all(buf: &FileBuffer) -> Result<(Replayed, ReplayReport)> {
        let mut out = Vec::new();
        let report = buf.replay(&mut |lsn, p| {
            out.push((lsn, p.to_vec()));
            Ok(())
        })?;
        Ok((out, report))
    }

    fn write_records(dir: &Path, segment_bytes: u64, payloads: &[&[u8]]) -> Vec<(Lsn, Lsn)> {
        let buf = FileBuffer::open(dir, segment_bytes, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        let lsns: Vec<_> = payloads.iter().map(|p| buf.append(p).unwrap()).collect();
        buf.sync(lsns.last().unwrap().1).unwrap();
        lsns
    }

    #[test]
    fn records_come_back_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let payloads: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; i as usize * 3]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(|p| &p[..]).collect();
        // Sync after each to force several rollovers with a tiny segment size.
        let buf = FileBuffer::open(dir.path(), 200, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        let mut lsns = Vec::new();
        for p in &refs {
            let l = buf.append(p).unwrap();
            buf.sync(l.1).unwrap();
            lsns.push(l);
        }
        drop(buf);
        assert!(fs::read_dir(dir.path()).unwrap().count() > 3);
        let buf = FileBuffer::open(dir.path(), 200, WalRecovery::Strict).unwrap();
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(got.len(), 50);
        for ((lsn, p), ((start, _), want)) in got.iter().zip(lsns.iter().zip(&payloads)) {
            assert_eq!(lsn, start);
            assert_eq!(p, want);
        }
        // Appends continue the LSN space.
        let (start, _) = buf.append(b"more").unwrap();
        assert_eq!(start, lsns.last().unwrap().1);
    }

    #[test]
    fn torn_tail_is_cut_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
        let seg = dir.path().join(segment_name(0));
        let len = fs::metadata(&seg).unwrap().len();
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(len - 2).unwrap();
        let buf = FileBuffer::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(
            got.iter().map(|r| r.1.clone()).collect::<Vec<_>>(),
            vec![b"one".to_vec(), b"two".to_vec()]
        );
        let torn = report.torn_tail.unwrap();
        assert_eq!(torn.dropped_bytes, 16 + 5 - 2);
        assert_eq!(fs::metadata(&seg).unwrap().len(), torn.offset);
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
        let buf = FileBuffer::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
        match replay_all(&buf) {
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
        let buf = FileBuffer::open(dir.path(), 1 << 20, WalRecovery::PointInTime).unwrap();
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(report.torn_tail.unwrap().offset, second as u64);
    }

    #[test]
    fn release_drops_whole_old_segments_only() {
        let dir = tempfile::tempdir().unwrap();
        let buf = FileBuffer::open(dir.path(), 100, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        let mut lsns = Vec::new();
        for i in 0..10u8 {
            let l = buf.append(&[i; 90]).unwrap();
            buf.sync(l.1).unwrap();
            lsns.push(l);
        }
        let before = list_segments(&buf.dir).unwrap().len();
        buf.release_before(lsns[5].0).unwrap();
        let after = list_segments(&buf.dir).unwrap();
        assert!(after.len() < before);
        assert!(after[0].first_lsn <= lsns[5].0);
        drop(buf);
        let buf = FileBuffer::open(dir.path(), 100, WalRecovery::Strict).unwrap();
        let (got, _) = replay_all(&buf).unwrap();
        assert!(got.iter().any(|(l, _)| *l == lsns[5].0));
        assert_eq!(got.last().unwrap().0, lsns[9].0);
    }

    #[test]
    fn a_fully_released_big_segment_is_replaced_so_restarts_replay_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let buf = FileBuffer::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        let payload = vec![7u8; 1 << 20];
        let mut end = 0;
        for _ in 0..9 {
            end = buf.append(&payload).unwrap().1;
        }
        buf.sync(end).unwrap();
        // Not everything released: nothing changes.
        buf.release_before(end - 1).unwrap();
        assert_eq!(list_segments(dir.path()).unwrap().len(), 1);
        buf.release_before(end).unwrap();
        let segments = list_segments(dir.path()).unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!(segments[0].first_lsn, end);
        let (start, next) = buf.append(b"after").unwrap();
        assert_eq!(start, end);
        buf.sync(next).unwrap();
        drop(buf);
        let buf = FileBuffer::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
        let (got, _) = replay_all(&buf).unwrap();
        assert_eq!(got, vec![(end, b"after".to_vec())]);
    }

    #[test]
    fn concurrent_writers_share_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let buf = Arc::new(FileBuffer::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap());
        replay_all(&buf).unwrap();
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let buf = buf.clone();
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let (_, end) = buf.append(&[t, i]).unwrap();
                        buf.sync(end).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(buf);
        let buf = FileBuffer::open(dir.path(), 1 << 30, WalRecovery::Strict).unwrap();
        let (got, _) = replay_all(&buf).unwrap();
        assert_eq!(got.len(), 200);
        for t in 0..4u8 {
            let mine: Vec<u8> = got.iter().filter(|r| r.1[0] == t).map(|r| r.1[1]).collect();
            assert_eq!(mine, (0..50).collect::<Vec<u8>>());
        }
    }
}
