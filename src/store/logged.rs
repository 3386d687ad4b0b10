//! Logged seals ([`Store::seal_logged`]): a seal made durable by one WAL record (tag 3, FORMAT.md §4), its
//! batch file and manifest commit written afterwards, off the caller's path, by the store's flush thread
//! — as RocksDB switches a full memtable and flushes it in the background, its WAL keeping it durable
//! meanwhile.
//!
//! The protocol:
//! 1. under `state`: append the seal record `(stream, upper)` and raise `pending_upper` (writes below it
//!    are refused from now on), and note `(upper, record LSN)` in the stream's `logged` list;
//! 2. outside it: the WAL's group commit up to the record (durable when `seal_logged` returns);
//! 3. the flush thread (`compaction::Workers`; inline without threads) seals to the newest logged upper
//!    (`SealTo::Logged`: the flush protocol of `store/flush.rs`), and that commit drops the logged seals it
//!    reaches; the WAL keeps a seal record (`release_point`) until then. A flush writes only if the
//!    stream's upper is still below the logged upper it set out to reach, checked under the locks it
//!    waited for: one that waited while another flush reached it writes nothing.
//!
//! When: as RocksDB flushes a memtable once it reaches `write_buffer_size`, not at every commit. The flush
//! thread takes the stream up once its memtable holds `Options::logged_flush_bytes`; or once no seal was
//! logged on it for `Options::logged_flush_delay`, or its oldest logged seal is ten delays old (as a
//! group commit or Nagle's algorithm: when the input goes quiet, or at a bound on the wait). So
//! consecutive logged seals make one batch of about that size, a tier or more above one seal's, and the
//! merges that would have combined the small batches never run (BENCHMARKS.md, "Logged seals flushed by
//! size"). Past twice the size (the flush thread behind), `seal_logged` completes them on the caller's
//! thread first.
//!
//! At open, replay reads every seal record (even below a stream's `spilled_lsn`: its updates may be in
//! spilled runs, its upper is not) and the open seals each stream to its newest logged upper before it
//! returns, so a crash at any point after step 2 recovers the upper (if that seal fails, the open still
//! succeeds, with the seal logged and a background error).
//!
//! A logged seal is the stream's upper for every call from its return on: `write` refuses times below
//! it, and `seal`, `seal_with` and `append` first complete the logged seals and refuse an upper (or a
//! `lower`) below one logged meanwhile.

use super::seal::SealTo;
use super::*;
use std::time::{Duration, Instant};

/// A stream's logged seals are flushed once the oldest is this many `Options::logged_flush_delay`s old,
/// even while seals keep coming (`Store::logged_deadline`).
const MAX_DELAYS: u32 = 10;

/// The shortest wait before the flush thread tries a failed flush again (`Store::flush_retry_delay`).
const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

/// `Options::logged_flush_delay` past this counts as this (so that a deadline is a representable
/// `Instant`: 10 times a year past now).
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A seal logged in the WAL whose batch is not committed yet (`StreamState::logged`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoggedSeal {
    /// The seal's upper.
    pub upper: u64,
    /// The LSN of its seal record: the WAL keeps the record until the batch commits.
    pub lsn: Lsn,
    /// When it was logged (or replayed, at open): the flush thread's deadlines count from it.
    pub at: Instant,
}

impl LoggedSeal {
    /// A seal to `upper` logged now at `lsn`.
    pub fn new(upper: u64, lsn: Lsn) -> Self {
        LoggedSeal {
            upper,
            lsn,
            at: Instant::now(),
        }
    }
}

/// What [`Store::flush_logged_if_due`] did.
pub(crate) enum Flushed {
    /// Flushed, or nothing to flush; whether it committed a batch.
    Done(bool),
    /// Not due before this.
    NotBefore(Instant),
}

/// What `seal_logged` does about a stream's logged seals after logging one, from the stream's memtable
/// bytes and logged seals: [`Flush::Now`] once the memtable holds the flush size, else a flush by their
/// deadline (`Store::logged_deadline`).
enum Flush {
    Now,
    By(Instant),
}

impl Store {
    /// Seals stream `id` up to `upper` as [`seal`](Self::seal) does, but durably through the WAL: returns
    /// once a seal record is fsync'd (one group commit, shared with concurrent writers), and the batch file
    /// and manifest commit are written afterwards by the store's flush thread, all its logged seals as one
    /// batch: once the stream's memtable holds `Options::logged_flush_bytes` (8 MiB by default), once no
    /// seal was logged on it for `Options::logged_flush_delay` (100 ms), or once the oldest is ten delays
    /// old, whichever comes first (and when the store closes). From the return on, writes
    /// below `upper` are refused and the upper is durable: a restart recovers it (the open completes the
    /// seal). [`upper`](Self::upper) and the batches ([`sealed`](Self::sealed), a DD trace) reach it when
    /// the batch commits; [`complete_seals`](Self::complete_seals) waits for that (and
    /// [`compact`](Self::compact) does first). Snapshots and lookups see the updates throughout (from the
    /// memtable until the batch commits).
    ///
    /// A seal that cannot be logged is an ordinary [`seal`](Self::seal) (it returns once the batch is
    /// committed): a stream that is not durable (the seal is its durability point), a log that keeps
    /// nothing, a WAL whose active segment is of version 4 or older (reopened, until it rolls over), and a
    /// stream whose spilled runs reach below `upper`, whose spill in flight holds times below it, or whose
    /// memtable holds a time below it with diffs past the write check's bound (put back by a failed spill
    /// or by replay): only there can the updates of one `(key, val, time)` sum outside `i64`, and an
    /// ordinary seal then fails and lets a compensating write through, which a logged seal, refusing
    /// writes below its upper, could not.
    /// With `Options::compaction_threads == 0` there is no flush thread: the batch is written before this
    /// returns, after the record.
    ///
    /// Back-pressure: as `seal`'s (the stream's batch bound), and when 2 or more logged seals of the stream
    /// are not committed yet and its memtable holds twice `logged_flush_bytes` (the flush thread is
    /// behind), this completes them first.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `upper` does not advance the stream's
    /// pending upper (the newest seal's, logged or not); an error of completing earlier logged seals
    /// (nothing of this seal happened); as `seal`'s when it falls back to one; a WAL error, which poisons
    /// the store (as a write's): the seal record may or may not have reached the disk, so a reopen may
    /// or may not recover the upper. A failure of the background flush is reported by
    /// [`background_error`](Self::background_error); the seal stays durable in the WAL, the flush thread
    /// tries again ten `logged_flush_delay`s later, at least 100 ms (and so on, until the store closes),
    /// and so does the
    /// next `seal_logged`, [`complete_seals`](Self::complete_seals) or `compact` of the stream
    /// (`complete_seals` returns the error if it fails again).
    pub fn seal_logged(&self, id: &str, upper: u64) -> Result<()> {
        let _admitted = self.refuse_claimed(id)?;
        // The number says, under the lock below, that it is still that stream (not dropped and created
        // again meanwhile, perhaps with another durability).
        let (durable, stream_no) = self.durability(id)?;
        let log = &self.inner.log;
        if !durable || !log.is_durable() || !log.takes_seal_records() {
            return self.seal(id, upper).map(|_| ());
        }
        self.wait_for_merges(id)?;
        // The flush thread is behind (a bound on memory, checked before the lock is taken to log, so
        // concurrent callers may pass it by one each): complete the logged seals here first.
        let flush_bytes = self.logged_flush_bytes();
        let behind =
            |s: &StreamState| s.logged.len() >= 2 && s.memtable.bytes() >= flush_bytes.saturating_mul(2);
        if self.with_stream(id, behind)? {
            self.complete_seals(id)?;
        }
        let (end, flush) = {
            let mut guard = self.live_state()?;
            let state = &mut *guard;
            let stream = state
                .streams
                .get_mut(id)
                .filter(|s| s.version.stream_no() == stream_no)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if upper <= stream.pending_upper {
                return Err(Error::bad_input(format!(
                    "seal of {id:?} at {upper} does not advance its upper {}",
                    stream.pending_upper
                )));
            }
            // A logged seal must be able to complete. Its sums can leave `i64` only across spilled runs
            // and the memtable, across a spill in flight and the writes made since it took their buckets
            // (a write is checked against the memtable only), or within a memtable bucket put back
            // without that check (by a failed spill, or by replay after a crash during one: its bound
            // shows it); an ordinary seal reports that and lets a compensating write through, but a
            // logged one already refuses writes below its upper. So those cases seal synchronously.
            // (Past this check, writes are at or above `upper`: no new overlap below it can appear.)
            let spilled_below = stream
                .version
                .spills()
                .iter()
                .any(|s| s.description().lower < upper);
            let spill_in_flight = (stream.flushing.as_ref())
                .is_some_and(|b| b.range(stream.pending_upper..upper).next().is_some());
            if spilled_below || spill_in_flight || stream.memtable.may_overflow_below(upper) {
                drop(guard);
                return self.seal(id, upper).map(|_| ());
            }
            let (lsn, end) = log.append(&record::encode_seal(stream.version.stream_no(), upper))?;
            stream.pending_upper = upper;
            stream.logged.push_back(LoggedSeal::new(upper, lsn));
            state.wal_end = state.wal_end.max(end);
            let flush = match self.logged_deadline(stream) {
                Some(deadline) if stream.memtable.bytes() < flush_bytes => Flush::By(deadline),
                _ => Flush::Now,
            };
            (end, flush)
        };
        self.sync_wal(WriteTicket::at(end, self.inner.id))?;
        match flush {
            Flush::Now => self.schedule_flush(id),
            Flush::By(deadline) => self.schedule_flush_by(id, deadline),
        }
        Ok(())
    }

    /// The memtable bytes at which a stream's logged seals are flushed: `Options::logged_flush_bytes`,
    /// at most a quarter of the memtable budget (a seal whose updates were spilled is not logged).
    fn logged_flush_bytes(&self) -> usize {
        let options = &self.inner.options;
        options.logged_flush_bytes.min(options.memtable_budget_bytes / 4)
    }

    /// When stream `stream`'s logged seals are due by time (`None` without any): once no seal was logged
    /// for `Options::logged_flush_delay` (the stream went quiet), or once the oldest is
    /// [`MAX_DELAYS`] delays old (a stream sealed slowly but steadily). Not while seals keep coming
    /// faster: a deadline flush then would cut a batch short of the size, and a batch a tier below its
    /// neighbours costs a merge that rewrites the bigger newer one (`compaction::policy`, inversions).
    fn logged_deadline(&self, stream: &StreamState) -> Option<Instant> {
        let delay = self.inner.options.logged_flush_delay.min(MAX_DELAY);
        let (oldest, newest) = (stream.logged.front()?, stream.logged.back()?);
        Some((newest.at + delay).min(oldest.at + delay * MAX_DELAYS))
    }

    /// How long the flush thread waits before it tries a failed flush again: the bound on a logged seal's
    /// wait, ten `Options::logged_flush_delay`s, but at least [`MIN_RETRY_DELAY`] (a delay of 0 would
    /// retry a failing disk in a busy loop) and at most ten years (`MAX_DELAY`).
    pub(crate) fn flush_retry_delay(&self) -> Duration {
        (self.inner.options.logged_flush_delay.min(MAX_DELAY) * MAX_DELAYS).max(MIN_RETRY_DELAY)
    }

    /// Queues stream `id`'s logged seals for the flush thread to try again after
    /// [`flush_retry_delay`](Self::flush_retry_delay), if there is a flush thread (without one, as in a
    /// read-only view, the stream's next call tries).
    fn retry_flush_later(&self, id: &str) {
        if let Some(workers) = self.handle.as_ref().filter(|w| w.has_flusher()) {
            workers.push_flush_by(id, Instant::now() + self.flush_retry_delay());
        }
    }

    /// By the flush thread, for a stream [`seal_logged`](Self::seal_logged) queued: flushes stream `id`'s
    /// logged seals if they are due now, by size (the rule `seal_logged` applied; checked again because
    /// seals logged while an earlier flush was queued or running queue the stream again, and that flush
    /// may have taken what they saw) or by time ([`logged_deadline`](Self::logged_deadline)); else returns
    /// when they will be due by time (seals logged since postpone it), for the flush thread to queue the
    /// stream again. Errors: as [`flush_logged`](Self::flush_logged)'s.
    ///
    /// It flushes up to the newest upper logged when it found them due, no further: if a flush on
    /// another thread (`complete_seals`, a `seal_logged` whose memtable was twice the size) reached that
    /// upper meanwhile, it writes nothing, where reading the newest upper again would have flushed the
    /// one or two seals logged since, as a batch of their own (a CI run of `seal_logged_flush` saw a
    /// batch of one seal between two of a dozen).
    pub(crate) fn flush_logged_if_due(&self, id: &str) -> Result<Flushed> {
        let flush_bytes = self.logged_flush_bytes();
        let due = self.with_stream(id, |s| {
            let deadline = self.logged_deadline(s)?;
            let at = (s.memtable.bytes() >= flush_bytes)
                .then(Instant::now)
                .unwrap_or(deadline);
            Some((at, s.logged.back()?.upper, s.version.stream_no()))
        })?;
        Ok(match due {
            None => Flushed::Done(false),
            Some((at, target, stream_no)) if at <= Instant::now() => {
                #[cfg(test)]
                tests::hold_flush(id);
                Flushed::Done(self.flush_logged_to(id, stream_no, target)?)
            }
            Some((at, ..)) => Flushed::NotBefore(at),
        })
    }

    /// Writes the batch of every logged seal of stream `id` not committed yet
    /// ([`seal_logged`](Self::seal_logged)), on this thread (after a flush already running); returns once the stream's
    /// [`upper`](Self::upper) reaches every upper logged before the call.
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`]; as [`seal`](Self::seal)'s when writing the
    /// batch fails (nothing changes: the seal stays logged and is retried by the next call).
    pub fn complete_seals(&self, id: &str) -> Result<()> {
        if self.flush_logged(id)? {
            self.schedule_compaction(id);
        }
        Ok(())
    }

    /// [`complete_seals`](Self::complete_seals) without scheduling merges (the flush thread queues them
    /// itself); returns whether it committed a batch.
    pub(crate) fn flush_logged(&self, id: &str) -> Result<bool> {
        let newest = |s: &StreamState| (s.logged.back().map(|l| l.upper), s.version.stream_no());
        match self.with_stream(id, newest)? {
            (Some(target), stream_no) => self.flush_logged_to(id, stream_no, target),
            (None, _) => Ok(false),
        }
    }

    /// Writes the batches of stream `id`'s logged seals (`stream_no` the stream's number when `target`
    /// was read) until its upper reaches `target`, a logged upper: nothing if it already has (another
    /// flush took them meanwhile). Returns whether it committed a batch.
    fn flush_logged_to(&self, id: &str, stream_no: u32, target: u64) -> Result<bool> {
        let now = |s: &StreamState| (s.version.upper(), s.version.stream_no());
        #[cfg(test)]
        tests::hold_flush(id);
        let mut flushed = false;
        loop {
            // The stream these seals were logged in: not one created again under `id` after a drop, whose
            // upper would never reach `target` (and whose logged seals, if any, are its own).
            let (upper, no) = self.with_stream(id, now)?;
            if no != stream_no {
                return Err(Error::UnknownStream { id: id.to_string() });
            }
            if upper >= target {
                return Ok(flushed);
            }
            let through = SealTo::Logged { through: target };
            let info = self.seal_to(id, through, SealOptions::default(), None)?;
            // Nothing committed if another flush reached `target` while this one waited for the locks.
            flushed |= info.description.upper > info.description.lower;
        }
    }

    /// Hands stream `id`'s logged seals to the flush thread to write by `deadline`, or completes them
    /// inline when there is none (as [`schedule_flush`](Self::schedule_flush)).
    fn schedule_flush_by(&self, id: &str, deadline: Instant) {
        match &self.handle {
            Some(workers) if workers.has_flusher() => workers.push_flush_by(id, deadline),
            _ => self.schedule_flush(id),
        }
    }

    /// Hands stream `id`'s logged seals to the flush thread, or completes them inline when there is none
    /// (a failure is then recorded as a background error: the seal itself is durable).
    fn schedule_flush(&self, id: &str) {
        match &self.handle {
            Some(workers) if workers.has_flusher() => workers.push_flush(id),
            _ => {
                if let Err(e) = self.complete_seals(id) {
                    self.record_flush_failure(id, &e);
                }
            }
        }
    }

    /// Records that writing the batch of stream `id`'s logged seals failed with `e` (they stay logged and
    /// are tried again): a background error.
    pub(crate) fn record_flush_failure(&self, id: &str, e: &Error) {
        self.record_background_error(format!("flush of stream {id:?}'s logged seal failed: {e}"));
    }

    /// At open, after replay: completes every stream's logged seals, before the store is handed out. A
    /// failure that leaves the store working (a full disk; a view whose blob refuses writes,
    /// `tools/inspect`) is recorded as a background error and does not fail the open (one that poisons
    /// it, a failed manifest commit, is returned): the seals stay logged (their updates in the memtable,
    /// visible; writes below their uppers refused) and are tried again by the flush thread (as after a
    /// failed background flush) and by the next `seal_logged`, `complete_seals` or `compact` of the
    /// stream.
    pub(super) fn complete_logged_at_open(&self) -> Result<()> {
        let ids: Vec<String> = (self.live_state()?.streams.iter())
            .filter(|(_, s)| !s.logged.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Err(e) = self.complete_seals(&id) {
                // A failed WAL sync or manifest commit poisons the store: then the open fails.
                if self.inner.state.lock().poisoned.is_some() {
                    return Err(e);
                }
                self.record_flush_failure(&id, &e);
                self.retry_flush_later(&id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test-only pause of a flush of one stream id after it read its target (`flush_logged_to`), and of
    /// the flush thread's after it found the seals due (`flush_logged_if_due`), for the interleavings
    /// below.
    /// The ids held and for how long (tests run in parallel: one test's id each).
    static HOLD: parking_lot::Mutex<Vec<(String, u64)>> = parking_lot::Mutex::new(Vec::new());

    pub(super) fn hold_flush(id: &str) {
        let millis = HOLD.lock().iter().find(|(held, _)| held == id).map(|h| h.1);
        if let Some(millis) = millis {
            std::thread::sleep(std::time::Duration::from_millis(millis));
        }
    }

    /// Holds the flushes of `id` for `millis` ms each, or no longer (`None`).
    fn hold(id: &str, millis: Option<u64>) {
        let mut held = HOLD.lock();
        held.retain(|(h, _)| h != id);
        held.extend(millis.map(|m| (id.to_string(), m)));
    }

    /// The flush thread reads a logged seal's upper by id, then waits for `edit_lock`; a `drop_stream`
    /// and a `create_stream` of the id in between leave it facing a new stream whose upper never reaches
    /// the old seal's. It must stop (`UnknownStream`, which the flush thread ignores), not seal the new
    /// stream forever: with the check removed, this test's store never closes.
    #[test]
    fn a_flush_of_a_stream_dropped_and_created_again_stops() {
        let id = "held-flush";
        hold(id, Some(300));
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_stream(id, StreamOptions { durable: true }).unwrap();
        store.write(id, &[(1u64, 1u64, 0, 1)]).unwrap();
        // Logged: the flush thread takes it up (and is held after reading the target), as does this one.
        store.seal_logged(id, 1).unwrap();
        let flusher = {
            let store = store.clone();
            std::thread::spawn(move || store.flush_logged(id))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        store.drop_stream(id).unwrap();
        store.create_stream(id, StreamOptions { durable: true }).unwrap();
        hold(id, None);
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let flushed = flusher.join().unwrap();
            let upper = store.upper(id);
            drop(store); // joins the flush thread
            done.send((flushed, upper)).unwrap()
        });
        let (flushed, upper) = finished
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the flushes stopped and the store closed");
        assert!(matches!(flushed, Err(Error::UnknownStream { .. })), "{flushed:?}");
        assert_eq!(upper.unwrap(), 0, "the new stream was not sealed");
    }

    /// The flush thread finds a stream's logged seals due by size, then `complete_seals` on another
    /// thread writes them and a smaller seal is logged after them. The flush thread must write nothing:
    /// what it found due is written, and the new seal waits for its own deadline. Reading the newest
    /// upper again after the check wrote that one seal as a batch of its own (a CI run of
    /// `tests/seal/seal_logged_flush.rs` saw one between two of a dozen seals).
    #[test]
    fn a_flush_due_by_size_stops_at_the_upper_it_found_due() {
        let id = "held-due";
        let dir = tempfile::tempdir().unwrap();
        let options = crate::Options {
            logged_flush_bytes: 1 << 10,
            logged_flush_delay: std::time::Duration::from_secs(3600),
            ..Default::default()
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        store.create_stream(id, StreamOptions { durable: true }).unwrap();
        hold(id, Some(300));
        let big: Vec<(u64, Vec<u8>, u64, i64)> = (0..4).map(|k| (k, vec![7u8; 512], 0, 1)).collect();
        store.write(id, &big).unwrap();
        // Past the size: the flush thread takes the stream up now, and is held after finding it due.
        store.seal_logged(id, 1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        hold(id, None);
        store.complete_seals(id).unwrap();
        store.write(id, &[(9u64, vec![1u8], 1u64, 1i64)]).unwrap();
        store.seal_logged(id, 2).unwrap();
        // The held flush wakes, finds upper 1 reached, and writes nothing.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let uppers: Vec<u64> = (store.sealed(id).unwrap().batches.iter())
            .map(|b| b.description().upper)
            .collect();
        assert_eq!(
            uppers,
            [1],
            "the seal logged after the check waits for its deadline"
        );
        store.complete_seals(id).unwrap();
        assert_eq!(store.sealed(id).unwrap().batches.len(), 2);
    }

    /// A flush checks the logged upper it set out to reach again under the locks (`SealTo::Logged`): a
    /// flush that waited for `edit_lock` while another flush reached its target, and a seal was logged
    /// after, writes nothing; one whose target is still ahead writes every logged seal. Without the
    /// check under the locks, a CI run of `tests/seal/seal_logged_flush.rs` saw a batch of one seal
    /// between two of a dozen and more.
    #[test]
    fn a_flush_that_waited_writes_nothing_once_its_target_is_reached() {
        let id = "waited";
        let dir = tempfile::tempdir().unwrap();
        let options = crate::Options {
            logged_flush_delay: std::time::Duration::from_secs(3600),
            ..Default::default()
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        store.create_stream(id, StreamOptions { durable: true }).unwrap();
        store.write(id, &[(1u64, 1u64, 0, 1)]).unwrap();
        store.seal_logged(id, 1).unwrap();
        store.complete_seals(id).unwrap();
        store.write(id, &[(2u64, 2u64, 1, 1)]).unwrap();
        store.seal_logged(id, 2).unwrap();
        // What the waiting flush does once it holds the locks: its target (1) is reached.
        let logged = |through| SealTo::Logged { through };
        let info = store
            .seal_to(id, logged(1), SealOptions::default(), None)
            .unwrap();
        assert_eq!(
            (info.description.upper, info.update_count),
            (1, 0),
            "nothing written"
        );
        assert_eq!(store.upper(id).unwrap(), 1);
        let uppers = |store: &Store| -> Vec<u64> {
            (store.sealed(id).unwrap().batches.iter())
                .map(|b| b.description().upper)
                .collect()
        };
        assert_eq!(uppers(&store), [1]);
        // A target still ahead: the seal logged after it goes in too.
        store.write(id, &[(3u64, 3u64, 2, 1)]).unwrap();
        store.seal_logged(id, 3).unwrap();
        let info = store
            .seal_to(id, logged(2), SealOptions::default(), None)
            .unwrap();
        assert_eq!((info.description.upper, info.update_count), (3, 2));
        assert_eq!(uppers(&store), [1, 3]);
    }
}
