//! The zero-filler of [`super::FileLog`] (opt-in): a background thread that keeps the active segment
//! filled with synced zeros a few MiB ahead of the log, so that the log's `fdatasync`s overwrite blocks
//! instead of extending the file. Bytes and the zero-tail rule: FORMAT.md §4; reasons: DESIGN.md §6; effect:
//! BENCHMARKS.md, "Figures behind the formats". Durability never depends on it.

use crate::fs::FsFile;
use parking_lot::{Condvar, Mutex};
use std::ops::Range;
use std::sync::Arc;

/// The zero-filler keeps at least this many bytes past the log's end filled with synced zeros...
pub(super) const ZERO_AHEAD_BYTES: u64 = 4 << 20;
/// ...filling this many at a time (one `fdatasync` each)...
const ZERO_STEP_BYTES: u64 = 2 << 20;
/// ...never closer than this to the log's end, so that it does not hold up the writer on a new segment.
pub(super) const ZERO_MARGIN_BYTES: u64 = 256 << 10;

/// The zero-filler's view of the active segment (see the module docs). Lock order: `FileLog.state`
/// (or `sync_lock`) before this, never the other way; the filler thread takes only this lock.
pub(super) struct ZeroFill {
    pub(super) state: Mutex<FillState>,
    pub(super) changed: Condvar,
}

#[derive(Default)]
pub(super) struct FillState {
    /// The active segment; `None` until replay.
    pub(super) file: Option<Arc<dyn FsFile>>,
    /// Counts active segments, so a fill of a segment that has since rolled over is not credited.
    pub(super) segment: u64,
    /// Offsets of the active segment known to hold zeros written and synced by the filler.
    pub(super) zeroed: Range<u64>,
    /// A fill in progress: segment and offsets. The writer waits rather than write into it.
    pub(super) filling: Option<(u64, Range<u64>)>,
    /// Offset the log has been written (or is being written) up to in the active segment.
    pub(super) write_end: u64,
    /// Never fill past this offset (the segment size limit).
    pub(super) limit: u64,
    /// Set by the first write, so that an open alone changes no file.
    pub(super) armed: bool,
    /// A fill failed: no more filling (durability does not depend on it).
    pub(super) failed: bool,
    /// Zero-filling is turned off (`FileLog::with_zero_fill`).
    pub(super) disabled: bool,
    /// The active segment was created zero-filled (version 2, or 3 with the flag), so it may end in zeros
    /// (never fill one that was not).
    pub(super) fillable: bool,
    pub(super) stop: bool,
}

impl ZeroFill {
    /// A new active segment of format `version`, whose records end at `write_end` and whose file is
    /// `len` bytes long.
    /// Waits for a fill in progress to end first (callers that hold `FileLog.state` call
    /// [`retire`](Self::retire) before taking it, so that this wait is instant): once a segment is no
    /// longer the active one it may be released and recycled, and a fill still writing zeros into it
    /// would then overwrite the records of its next incarnation.
    pub(super) fn set_active(&self, file: Arc<dyn FsFile>, fillable: bool, write_end: u64, len: u64) {
        let mut st = self.state.lock();
        while st.filling.is_some() {
            self.changed.wait(&mut st);
        }
        st.file = Some(file);
        st.fillable = fillable;
        st.segment += 1;
        st.zeroed = len..len;
        st.write_end = write_end;
        self.changed.notify_all();
    }

    /// Stops filling the active segment, which is about to be replaced: no new fill starts, and this
    /// returns once the fill in progress (if any) has ended. Called by a rollover before it takes
    /// `FileLog.state`, so that no lock is held across the fill's write and `fdatasync`.
    pub(super) fn retire(&self) {
        let mut st = self.state.lock();
        st.file = None;
        while st.filling.is_some() {
            self.changed.wait(&mut st);
        }
    }

    /// Called by the writer before it writes `range` of the active segment: waits while a fill covers
    /// part of it, and lets the filler run ahead of it. Returns whether `range` was already zero-filled
    /// (for tests).
    pub(super) fn before_write(&self, range: Range<u64>) -> bool {
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
    pub(super) fn run(&self) {
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
                result = file.write_at(&zeros[..n], at);
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
    pub(super) fn next_job(&self) -> Option<(Arc<dyn FsFile>, u64, Range<u64>)> {
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
