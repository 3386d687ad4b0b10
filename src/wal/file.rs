//! [`FileBuffer`]: the durable write-ahead log, as numbered segment files in one directory.
//!
//! Segment file `{first_lsn:020}.wal` (format versions 1 and 2, little-endian):
//! ```text
//! header, 32 bytes:
//!   0  magic      [u8; 8] = "DDPWALSG"
//!   8  version    u32     = 1, or 2 when written with zero-filling
//!   12 reserved   u32     = 0
//!   16 first_lsn  u64     LSN of the first record in this segment
//!   24 checksum   u64     xxh3 of bytes 0..24
//! records, back to back:
//!   0  checksum   u64     xxh3 of bytes 8..16 of this header followed by the payload
//!   8  len        u32     payload length in bytes
//!   12 magic      u32     = 0x4C50_4444 ("DDPL" little-endian)
//!   16 payload    [u8; len]
//! zero bytes to the end of the file (version 2): space filled ahead of the log, not yet used
//! ```
//! The LSN of a record is `first_lsn` of its segment plus its offset past the segment header; the LSN
//! space is contiguous across segments.
//!
//! Zero-filling ahead (version 2, opt-in with [`FileBuffer::with_zero_fill`]): `fdatasync` after an
//! append must also write the file's new size (an inode update); after an overwrite of blocks already
//! written and synced it writes only the data, which measured 1.3–4× faster here. (But an `fdatasync`
//! also waits for the filler's dirty zeros in the same file, which made four concurrent writers slower;
//! hence opt-in.) So a background thread keeps the active segment filled with zeros
//! (written, then `fdatasync`'d) a few MiB ahead of the log's end, and records are written over them at
//! explicit offsets. A run of zeros to the end of a file is therefore the end of its records: it holds
//! no record (a record's magic is not zero). Version 1 files hold such a tail only after a crash (size
//! extended, data not written: never acknowledged), so this reader applies the rule to both versions; a
//! version 1 reader would take the zeros for a torn or bad record, so segments created with zero-filling
//! are version 2 (and only those are ever filled). Durability never depends on the zero-filling: each
//! sync is still a full `fdatasync` of the records written, and a failed zero-fill only stops the filling.
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
use parking_lot::{Condvar, Mutex};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DDPWALSG";
pub(crate) const SEGMENT_HEADER_BYTES: u64 = 32;
pub(crate) const RECORD_MAGIC: u32 = 0x4C50_4444;
pub(crate) const RECORD_HEADER_BYTES: u64 = 16;
/// A fully released active segment at least this large is replaced by a fresh one (see
/// `FileBuffer::release_before`), so restarts do not replay sealed records.
pub const IDLE_ROTATE_BYTES: u64 = 8 << 20;
/// The newest WAL format version this library reads, and the one it writes in segments it zero-fills
/// ahead of the log.
pub const WAL_VERSION: FormatVersion = FormatVersion(2);
/// The version of segments written without zero-filling (no zero tail: readers of version 1 read them).
pub const WAL_APPEND_VERSION: FormatVersion = FormatVersion(1);
/// The zero-filler keeps at least this many bytes past the log's end filled with synced zeros...
const ZERO_AHEAD_BYTES: u64 = 4 << 20;
/// ...filling this many at a time (one `fdatasync` each)...
const ZERO_STEP_BYTES: u64 = 2 << 20;
/// ...never closer than this to the log's end, so that it does not hold up the writer on a new segment.
const ZERO_MARGIN_BYTES: u64 = 256 << 10;

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
    /// Shared with the zero-filling thread.
    fill: Arc<ZeroFill>,
    /// The zero-filling thread, started by `replay`; stopped and joined on drop.
    filler: Mutex<Option<JoinHandle<()>>>,
}

/// The zero-filler's view of the active segment (see the module docs). Lock order: `FileBuffer.state`
/// (or `sync_lock`) before this, never the other way.
struct ZeroFill {
    state: Mutex<FillState>,
    changed: Condvar,
}

#[derive(Default)]
struct FillState {
    /// The active segment; `None` until replay.
    file: Option<Arc<File>>,
    /// Counts active segments, so a fill of a segment that has since rolled over is not credited.
    segment: u64,
    /// Offsets of the active segment known to hold zeros written and synced by the filler.
    zeroed: Range<u64>,
    /// A fill in progress: segment and offsets. The writer waits rather than write into it.
    filling: Option<(u64, Range<u64>)>,
    /// Offset the log has been written (or is being written) up to in the active segment.
    write_end: u64,
    /// Never fill past this offset (the segment size limit).
    limit: u64,
    /// Set by the first write, so that an open alone changes no file.
    armed: bool,
    /// A fill failed: no more filling (durability does not depend on it).
    failed: bool,
    /// Zero-filling is turned off (`FileBuffer::with_zero_fill`).
    disabled: bool,
    /// The active segment is of version 2 or later, so it may end in zeros (never fill a version 1 one).
    fillable: bool,
    stop: bool,
}

impl ZeroFill {
    /// A new active segment of format `version`, whose records end at `write_end` and whose file is
    /// `len` bytes long.
    fn set_active(&self, file: Arc<File>, version: u32, write_end: u64, len: u64) {
        let mut st = self.state.lock();
        st.file = Some(file);
        st.fillable = version >= WAL_VERSION.0;
        st.segment += 1;
        st.zeroed = len..len;
        st.write_end = write_end;
        self.changed.notify_all();
    }

    /// Called by the writer before it writes `range` of the active segment: waits while a fill covers
    /// part of it, and lets the filler run ahead of it. Returns whether `range` was already zero-filled
    /// (for tests).
    fn before_write(&self, range: Range<u64>) -> bool {
        let mut st = self.state.lock();
        st.armed = true;
        st.write_end = st.write_end.max(range.end);
        while st
            .filling
            .as_ref()
            .is_some_and(|(seg, f)| *seg == st.segment && f.start < range.end && range.start < f.end)
        {
            self.changed.wait(&mut st);
        }
        self.changed.notify_all();
        st.zeroed.start <= range.start && range.end <= st.zeroed.end
    }

    /// The filler thread: fills `ZERO_STEP_BYTES` of zeros at a time, keeping `ZERO_AHEAD_BYTES` ahead of
    /// the log's end, until stopped.
    fn run(&self) {
        let zeros = vec![0u8; 1 << 20];
        loop {
            let (file, segment, range) = {
                let mut st = self.state.lock();
                loop {
                    if st.stop {
                        return;
                    }
                    if let Some(job) = st.next_job() {
                        st.filling = Some((job.1, job.2.clone()));
                        break job;
                    }
                    self.changed.wait(&mut st);
                }
            };
            let mut at = range.start;
            let mut result = Ok(());
            while at < range.end && result.is_ok() {
                let n = (range.end - at).min(zeros.len() as u64) as usize;
                result = file.write_all_at(&zeros[..n], at);
                at += n as u64;
            }
            let result = result.and_then(|_| file.sync_data());
            let mut st = self.state.lock();
            st.filling = None;
            match result {
                Err(_) => st.failed = true,
                Ok(()) if st.segment == segment => {
                    if st.zeroed.end == range.start && !st.zeroed.is_empty() {
                        st.zeroed.end = range.end;
                    } else {
                        st.zeroed = range;
                    }
                }
                Ok(()) => {}
            }
            self.changed.notify_all();
        }
    }
}

impl FillState {
    /// The next fill to do, if one is due: file, segment, offsets.
    fn next_job(&self) -> Option<(Arc<File>, u64, Range<u64>)> {
        if !self.armed || self.failed || self.disabled || !self.fillable || self.filling.is_some() {
            return None;
        }
        let file = self.file.clone()?;
        // Small segments (tests) get proportionally small fills.
        let ahead = ZERO_AHEAD_BYTES.min(self.limit / 2);
        let margin = ZERO_MARGIN_BYTES.min(self.limit / 8);
        let step = ZERO_STEP_BYTES.min((self.limit / 4).max(4096));
        if self.zeroed.end >= self.write_end.saturating_add(ahead) {
            return None;
        }
        let start = self.zeroed.end.max(self.write_end.saturating_add(margin));
        let end = start.saturating_add(step).min(self.limit);
        (start < end).then_some((file, self.segment, start..end))
    }
}

impl Drop for FileBuffer {
    fn drop(&mut self) {
        self.fill.state.lock().stop = true;
        self.fill.changed.notify_all();
        if let Some(filler) = self.filler.lock().take() {
            // A panic in the filler has nothing to report here; the log is unaffected by it.
            let _ = filler.join();
        }
    }
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
            fill: Arc::new(ZeroFill {
                state: Mutex::new(FillState {
                    limit: segment_bytes,
                    disabled: true,
                    ..FillState::default()
                }),
                changed: Condvar::new(),
            }),
            filler: Mutex::new(None),
        })
    }

    /// Whether to keep the active segment zero-filled ahead of the log (default false; see the module
    /// docs). Segments created with it are format version 2; without it, version 1 (plain appends). A
    /// version 1 segment is never zero-filled, even when reopened with this on.
    pub fn with_zero_fill(self, on: bool) -> Self {
        self.fill.state.lock().disabled = !on;
        self
    }

    /// The format version of new segments: 2 if they will be zero-filled, else 1.
    fn new_segment_version(&self) -> u32 {
        if self.fill.state.lock().disabled {
            WAL_APPEND_VERSION.0
        } else {
            WAL_VERSION.0
        }
    }

    fn create_segment(&self, first_lsn: Lsn) -> Result<(Segment, File)> {
        let path = self.dir.join(segment_name(first_lsn));
        let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
        header.extend_from_slice(SEGMENT_MAGIC);
        header.put_u32(self.new_segment_version());
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
        let file = Arc::new(file);
        let mut state = self.state.lock();
        state.segments.push(seg);
        state.active = Some(file.clone());
        state.active_bytes = SEGMENT_HEADER_BYTES;
        let version = self.new_segment_version();
        self.fill
            .set_active(file, version, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES);
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
            end_offset,
            last_version,
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
        let (segments, active, version, active_bytes, file_len) = match segments.last() {
            Some(last) => {
                let ctx = |what: &str| format!("{what} {}", last.path.display());
                // Not O_APPEND: records are written at explicit offsets, over the zero-filled tail.
                let file = OpenOptions::new()
                    .write(true)
                    .open(&last.path)
                    .map_err(|e| Error::io(ctx("open"), e))?;
                if let Some(Cut::TruncateLast { offset }) = cut {
                    file.set_len(offset).map_err(|e| Error::io(ctx("truncate"), e))?;
                    file.sync_all().map_err(|e| Error::io(ctx("fsync"), e))?;
                }
                let len = file.metadata().map_err(|e| Error::io(ctx("stat"), e))?.len();
                (segments, file, last_version, end_offset, len)
            }
            None => {
                let (seg, file) = self.create_segment(next_lsn)?;
                let version = self.new_segment_version();
                (
                    vec![seg],
                    file,
                    version,
                    SEGMENT_HEADER_BYTES,
                    SEGMENT_HEADER_BYTES,
                )
            }
        };
        let active = Arc::new(active);
        self.fill
            .set_active(active.clone(), version, active_bytes, file_len);
        let fill = self.fill.clone();
        let filler = std::thread::Builder::new()
            .name("ddpersist-wal-zero".into())
            .spawn(move || fill.run())
            .map_err(|e| Error::io("start the WAL zero-filling thread", e))?;
        *self.filler.lock() = Some(filler);
        state.segments = segments;
        state.active = Some(active);
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
            let offset = state.active_bytes;
            state.active_bytes += pending.len() as u64;
            let rotate = state.active_bytes >= self.segment_bytes;
            (pending, state.next_lsn, (file, offset), rotate)
        };
        let (file, offset) = file;
        self.fill.before_write(offset..offset + pending.len() as u64);
        debug_assert!(end_lsn >= lsn, "sync past the end of the log");
        let path = || {
            self.state
                .lock()
                .segments
                .last()
                .map(|s| s.path.display().to_string())
        };
        if let Err(e) = file.write_all_at(&pending, offset).and_then(|_| file.sync_data()) {
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
            let new_file = Arc::new(new_file);
            let mut state = self.state.lock();
            state.segments.push(seg);
            state.active = Some(new_file.clone());
            state.active_bytes = SEGMENT_HEADER_BYTES;
            let version = self.new_segment_version();
            self.fill
                .set_active(new_file, version, SEGMENT_HEADER_BYTES, SEGMENT_HEADER_BYTES);
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
        let lsns = write_records(dir.path(), 1 << 20, &[b"one", b"two", b"three"]);
        let seg = dir.path().join(segment_name(0));
        // The records' end (the file may go on with zeros filled ahead).
        let len = SEGMENT_HEADER_BYTES + lsns[2].1;
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

    /// Waits until the zero-filler is idle (tests only).
    fn fill_idle(buf: &FileBuffer) {
        let mut st = buf.fill.state.lock();
        while st.filling.is_some() || st.next_job().is_some() {
            buf.fill.changed.wait(&mut st);
        }
    }

    #[test]
    fn zeros_are_filled_ahead_and_are_not_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let seg = dir.path().join(segment_name(0));
        let buf = FileBuffer::open(dir.path(), 64 << 20, WalRecovery::Strict)
            .unwrap()
            .with_zero_fill(true);
        replay_all(&buf).unwrap();
        // An open alone changes nothing.
        fill_idle(&buf);
        assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_BYTES);
        let payloads: Vec<Vec<u8>> = (0..40u32).map(|i| vec![i as u8 + 1; 100_000]).collect();
        let mut end = 0;
        let mut over_zeros = 0;
        for p in &payloads {
            let (start, e) = buf.append(p).unwrap();
            fill_idle(&buf);
            let range = SEGMENT_HEADER_BYTES + start..SEGMENT_HEADER_BYTES + e;
            over_zeros += buf.fill.before_write(range) as u32;
            buf.sync(e).unwrap();
            end = e;
        }
        // After the first writes, the records went over zeros filled ahead of them.
        assert!(over_zeros >= 30, "only {over_zeros} of 40 writes over zeros");
        assert_eq!(crate::format::le_u32(&fs::read(&seg).unwrap(), 8), 2);
        fill_idle(&buf);
        let bytes = fs::read(&seg).unwrap();
        let records_end = (SEGMENT_HEADER_BYTES + end) as usize;
        assert!(bytes.len() >= records_end + (ZERO_AHEAD_BYTES - ZERO_MARGIN_BYTES) as usize);
        assert!(bytes[records_end..].iter().all(|&b| b == 0));
        drop(buf);
        // The zeros are neither records nor a torn tail, and the open leaves them in place.
        let buf = FileBuffer::open(dir.path(), 64 << 20, WalRecovery::Strict)
            .unwrap()
            .with_zero_fill(true);
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(
            got.iter().map(|r| &r.1).collect::<Vec<_>>(),
            payloads.iter().collect::<Vec<_>>()
        );
        assert_eq!(fs::read(&seg).unwrap(), bytes);
        // Appends continue at the records' end, over the zeros.
        let (start, e) = buf.append(b"more").unwrap();
        assert_eq!(start, end);
        buf.sync(e).unwrap();
        drop(buf);
        let buf = FileBuffer::open(dir.path(), 64 << 20, WalRecovery::Strict).unwrap();
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(report.torn_tail, None);
        assert_eq!(got.last().unwrap(), &(end, b"more".to_vec()));
        assert_eq!(got.len(), 41);
    }

    #[test]
    fn without_zero_fill_records_are_appended() {
        let dir = tempfile::tempdir().unwrap();
        let buf = FileBuffer::open(dir.path(), 64 << 20, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        let mut end = 0;
        for i in 0..10u8 {
            let (_, e) = buf.append(&[i + 1; 100_000]).unwrap();
            buf.sync(e).unwrap();
            end = e;
        }
        fill_idle(&buf);
        let seg = dir.path().join(segment_name(0));
        let len = fs::metadata(&seg).unwrap().len();
        assert_eq!(len, SEGMENT_HEADER_BYTES + end);
        // A segment written without zero-filling is version 1 (readable by older versions)...
        assert_eq!(crate::format::le_u32(&fs::read(&seg).unwrap(), 8), 1);
        drop(buf);
        // ...and is never zero-filled, even when reopened with zero-filling on.
        let buf = FileBuffer::open(dir.path(), 64 << 20, WalRecovery::Strict)
            .unwrap()
            .with_zero_fill(true);
        replay_all(&buf).unwrap();
        let (_, e) = buf.append(&[9; 100_000]).unwrap();
        buf.sync(e).unwrap();
        fill_idle(&buf);
        assert_eq!(fs::metadata(&seg).unwrap().len(), SEGMENT_HEADER_BYTES + e);
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
        let buf = FileBuffer::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
        let (got, report) = replay_all(&buf).unwrap();
        assert_eq!(got.len(), 2);
        let torn = report.torn_tail.unwrap();
        assert_eq!(torn.offset, third as u64);
        assert_eq!(torn.dropped_bytes, (bytes.len() - third) as u64);
        assert_eq!(fs::metadata(&seg).unwrap().len(), third as u64);
    }

    #[test]
    fn zeroed_records_in_a_segment_that_is_not_the_last_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let buf = FileBuffer::open(dir.path(), 100, WalRecovery::Strict).unwrap();
        replay_all(&buf).unwrap();
        for i in 0..3u8 {
            let (_, end) = buf.append(&[i + 1; 90]).unwrap();
            buf.sync(end).unwrap();
        }
        drop(buf);
        // Each record filled a segment; zero the first segment's record, as if it had never been written.
        let first = dir.path().join(segment_name(0));
        let mut bytes = fs::read(&first).unwrap();
        bytes[SEGMENT_HEADER_BYTES as usize..].fill(0);
        fs::write(&first, &bytes).unwrap();
        let buf = FileBuffer::open(dir.path(), 100, WalRecovery::Strict).unwrap();
        let err = replay_all(&buf).unwrap_err();
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
