//! Group commit of [`FileLog`]: appends and syncs.
//!
//! Durability: appends go to an in-memory pending buffer; `sync(lsn)` takes the sync lock, and the first
//! caller writes everything pending and calls `fdatasync` once for all waiting writers (group commit).
//! After each group commit's `fdatasync`, before anyone is acknowledged, the leader writes a sync mark
//! naming the LSN synced (not synced itself: the next flush syncs it): see [`super::format`]. A flush
//! that fills the active segment rolls over to a new one instead ([`super::segments`]).

use super::file::FileLog;
use super::format::{checksum_seed, record_header, sync_mark, MARK_BYTES, RECORD_HEADER_BYTES};
use super::segments::SegmentStep;
use super::Lsn;
use crate::error::{Error, Result};
use std::sync::atomic::Ordering;

impl FileLog {
    /// [`Log::append`](super::Log::append): the record goes to the pending buffer, written by the next
    /// group commit.
    pub(super) fn append_record(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
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
        let start = state.next_lsn;
        // Read under `state`, which a rollover holds while it changes the active segment (and re-seeds
        // the records still pending if their seed changes: `FileLog::start_segment`).
        let version = self.active_version.load(Ordering::Acquire);
        let header = record_header(payload, checksum_seed(version, start));
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
        state.records_end = end;
        Ok((start, end))
    }

    /// [`Log::sync`](super::Log::sync): the first caller to take the sync lock writes every pending
    /// record and `fdatasync`s once for all waiting writers, then writes a sync mark (or rolls over to a
    /// new segment once the active one is full).
    pub(super) fn group_commit(&self, lsn: Lsn) -> Result<()> {
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
                if lsn <= state.failed_upto {
                    // This record was in the flush that failed: that is its own failure, not an earlier one.
                    let context = format!("WAL flush up to LSN {}", state.failed_upto);
                    return Err(Error::io(context, std::io::Error::other(p.clone())));
                }
                return Err(Error::Poisoned { detail: p.clone() });
            }
            let Some(file) = state.active.clone() else {
                return Err(Error::bad_input("WAL sync before replay"));
            };
            if lsn > state.next_lsn {
                // Not a position of this log (a ticket of another one?): nothing to wait for.
                return Err(Error::bad_input(format!(
                    "WAL sync to LSN {lsn}, past the end of the log at {}",
                    state.next_lsn
                )));
            }
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
        let path = || {
            self.state
                .lock()
                .segments
                .last()
                .map(|s| s.path.display().to_string())
        };
        let active_path = self.state.lock().segments.last().map(|s| s.path.clone());
        let flushed = match &active_path {
            Some(p) => self.files.step(SegmentStep::Flush, p),
            None => Ok(()),
        };
        if let Err(e) = flushed.and_then(|_| file.write_at(&pending, offset).and_then(|_| file.sync_data())) {
            let what = format!("WAL write/fdatasync of {:?}", path());
            self.poison(format!("{what} failed: {e}"), end_lsn);
            // This call's own failure (later calls get `Poisoned`).
            return Err(Error::io(what, e));
        }
        pending.clear();
        *spare = pending;
        if !rotate_at {
            // The sync mark: once on disk, proof that everything before `end_lsn` was made durable, so
            // that damage there is never taken for a torn write. Written before anyone is acknowledged
            // (a process crash keeps it), synced by the next flush. A failure poisons the log for later
            // calls; this flush is durable all the same.
            let marked = self.write_sync_mark(end_lsn, &mut spare);
            self.durable_lsn.store(end_lsn, Ordering::Release);
            if let Err(e) = marked {
                self.poison(format!("WAL sync mark write of {:?} failed: {e}", path()), 0);
            }
            return Ok(());
        }
        self.durable_lsn.store(end_lsn, Ordering::Release);
        // The old segment is fully synced; records appended meanwhile start at `end_lsn` and go to the new
        // segment.
        if let Err(e) = self.start_segment(end_lsn, true) {
            self.poison(format!("WAL segment rollover failed: {e}"), 0);
            return Err(e);
        }
        Ok(())
    }

    /// Appends a sync mark naming `durable` (every record ending at or before it is synced) and writes it,
    /// with any records appended meanwhile, without syncing: the next flush syncs them. Called by the
    /// group commit leader (holding `sync_lock`, whose buffer `spare` is) right after its `fdatasync`.
    fn write_sync_mark(&self, durable: Lsn, spare: &mut Vec<u8>) -> std::io::Result<()> {
        let (mut bytes, offset, file) = {
            let mut state = self.state.lock();
            let Some(file) = state.active.clone().filter(|_| state.active_marks) else {
                return Ok(());
            };
            let start = state.next_lsn;
            let Some(end) = start.checked_add(MARK_BYTES as u64) else {
                // The LSN space is used up; appends fail from here on anyway.
                return Ok(());
            };
            let seed = checksum_seed(self.active_version.load(Ordering::Acquire), start);
            state.pending.extend_from_slice(&sync_mark(durable, seed));
            state.next_lsn = end;
            spare.clear();
            let bytes = std::mem::replace(&mut state.pending, std::mem::take(spare));
            state.pending_lsn = state.next_lsn;
            let offset = state.active_bytes;
            state.active_bytes += bytes.len() as u64;
            (bytes, offset, file)
        };
        self.fill.before_write(offset..offset + bytes.len() as u64);
        let result = file.write_at(&bytes, offset);
        bytes.clear();
        *spare = bytes;
        result
    }

    /// Refuses every later call because of `detail`; records ending at or before `failed_upto` were in
    /// the flush that failed (their `sync` reports that failure as its own).
    pub(super) fn poison(&self, detail: String, failed_upto: Lsn) {
        let mut state = self.state.lock();
        state.poisoned.get_or_insert(detail);
        state.failed_upto = state.failed_upto.max(failed_upto);
    }
}
