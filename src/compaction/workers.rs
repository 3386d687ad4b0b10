//! The background merge threads ([`Workers`]): a queue of streams that sealed, `Options::compaction_threads`
//! threads draining it, back-pressure on seals past `Options::max_batches_per_stream`, and the record of
//! background failures.

use super::merge::{Scope, Step};
use super::*;
use crate::store::{Flushed, Inner};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The background threads of one store — merges, and one flush thread for logged seals
/// (`store/logged.rs`) — stopped and joined on drop.
pub(crate) struct Workers {
    queue: Arc<Queue>,
    /// Streams with logged seals to flush: the flush thread's queue (flushes come first, as RocksDB runs
    /// memtable flushes in their own, higher-priority pool: a merge takes seconds, a flush milliseconds).
    flushes: Arc<Queue>,
    /// Whether the flush thread runs (it may have failed to start: then logged seals complete inline).
    has_flusher: bool,
    threads: Vec<JoinHandle<()>>,
    /// The store, to tell running merges to stop when the last user handle drops.
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Queue {
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    /// Streams with work possibly due now.
    now: VecDeque<String>,
    /// Streams with work due by a deadline (the flush queue's: `Store::seal_logged`), at most one each.
    by: Vec<(String, Instant)>,
    stopped: bool,
}

impl Queue {
    fn push(&self, id: &str) {
        let mut pending = self.pending.lock();
        if !pending.now.iter().any(|p| p == id) {
            pending.now.push_back(id.to_string());
        }
        self.wake.notify_one();
    }

    /// Queues `id` for `deadline`, unless it is queued for now; a deadline queued before is replaced (the
    /// store's deadlines of a stream only move later, `Store::logged_deadline`, and the flush thread
    /// checks one when it comes: an early one is queued again).
    fn push_by(&self, id: &str, deadline: Instant) {
        let mut pending = self.pending.lock();
        if pending.now.iter().any(|p| p == id) {
            return;
        }
        match pending.by.iter_mut().find(|(p, _)| p == id) {
            Some((_, at)) => *at = deadline,
            None => pending.by.push((id.to_string(), deadline)),
        }
        self.wake.notify_one();
    }

    /// The next stream, waiting for one: the one whose deadline passed first, if any (so that streams
    /// queued for now, over and over, cannot hold a deadline back), else the oldest queued for now;
    /// `None` once stopped — with `drain`, only once stopped and empty (deadlines then count as passed).
    fn pop(&self, drain: bool) -> Option<String> {
        let mut pending = self.pending.lock();
        loop {
            let stopped = pending.stopped;
            if stopped && !drain {
                return None;
            }
            let now = Instant::now();
            let first = (0..pending.by.len()).min_by_key(|&i| pending.by[i].1);
            if let Some(i) = first.filter(|&i| pending.by[i].1 <= now) {
                return Some(pending.by.swap_remove(i).0);
            }
            if let Some(id) = pending.now.pop_front() {
                return Some(id);
            }
            if stopped {
                return first.map(|i| pending.by.swap_remove(i).0);
            }
            match first.map(|i| pending.by[i].1) {
                Some(deadline) => {
                    self.wake.wait_until(&mut pending, deadline);
                }
                None => self.wake.wait(&mut pending),
            }
        }
    }

    fn stop(&self) {
        self.pending.lock().stopped = true;
        self.wake.notify_all();
    }
}

impl Workers {
    /// Starts `options.compaction_threads` threads merging for the store `inner`.
    /// Starts `options.compaction_threads` threads merging for the store `inner`, and (with any) the flush
    /// thread.
    pub(crate) fn start(inner: &Arc<Inner>) -> Workers {
        let (queue, flushes) = (Arc::new(Queue::default()), Arc::new(Queue::default()));
        let merging = inner.options.compaction_threads;
        let (nice, idle) = (inner.options.background_nice, inner.options.background_idle);
        let mut threads: Vec<JoinHandle<()>> = (0..merging)
            .map(|n| {
                let (store, queue) = (Store::worker_handle(inner.clone()), queue.clone());
                std::thread::Builder::new()
                    .name(format!("ddpersist-compact-{n}"))
                    .spawn(move || {
                        lower_priority(nice);
                        if idle {
                            schedule_idle();
                        }
                        worker_loop(store, queue)
                    })
            })
            .filter_map(|spawned| spawned.ok())
            .collect();
        let mut has_flusher = false;
        if !threads.is_empty() {
            let store = Store::worker_handle(inner.clone());
            let (flushes, merges) = (flushes.clone(), queue.clone());
            let flusher = std::thread::Builder::new()
                .name("ddpersist-flush".into())
                .spawn(move || flush_loop(store, flushes, merges));
            has_flusher = flusher.is_ok();
            threads.extend(flusher.ok());
        }
        Workers {
            queue,
            flushes,
            has_flusher,
            threads,
            inner: inner.clone(),
        }
    }

    fn push(&self, id: &str) {
        self.queue.push(id);
    }

    /// Queues stream `id`'s logged seals for the flush thread.
    pub(crate) fn push_flush(&self, id: &str) {
        self.flushes.push(id);
    }

    /// Queues stream `id`'s logged seals for the flush thread by `deadline` (`Store::seal_logged`).
    pub(crate) fn push_flush_by(&self, id: &str, deadline: Instant) {
        self.flushes.push_by(id, deadline);
    }

    /// Whether the flush thread runs.
    pub(crate) fn has_flusher(&self) -> bool {
        self.has_flusher
    }

    pub(crate) fn has_threads(&self) -> bool {
        !self.threads.is_empty()
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        // Running merges check this every few thousand updates and discard their output (the merge is
        // due again at the next open).
        self.inner.stopping.store(true, Ordering::Relaxed);
        self.queue.stop();
        // The flush thread first writes the logged seals queued, for now or for a deadline (a seal whose
        // flush failed and was not queued again stays logged, for the next open).
        self.flushes.stop();
        for t in self.threads.drain(..) {
            // A worker that panicked has nothing left to clean up; the store's state is consistent.
            let _ = t.join();
        }
        // The records of unsynced writes (`write_bytes_unsynced`) still pending are written and synced: a
        // clean close loses no acknowledged write (adversarial round 9: they were dropped with the log).
        // Best effort: a failure has no caller to report to, and leaves them lost as a crash would.
        self.inner.sync_pending_writes();
    }
}

/// Lowers the calling thread's CPU priority to that of nice value `nice` (at most 19): raises its nice
/// value to `nice`, never lowering it (a thread that inherited a higher nice value from the thread that
/// opened the store keeps it). On Linux the nice value is per thread (`setpriority(PRIO_PROCESS, tid,
/// ..)`), and threads it starts inherit it (the batch writer's I/O helper). Best effort: a failure (a
/// seccomp filter, say) leaves the thread as it was.
fn lower_priority(nice: u8) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: `gettid` has no preconditions and cannot fail; `__errno_location` returns this thread's
        // `errno`, valid for the thread's life.
        let (tid, errno) = unsafe { (libc::gettid() as libc::id_t, libc::__errno_location()) };
        // SAFETY: `errno` is this thread's (above); `getpriority` only reads its integer arguments and
        // this thread's nice value. It returns -1 both for nice -1 and on error, told apart by `errno`.
        let current = unsafe {
            *errno = 0;
            let p = libc::getpriority(libc::PRIO_PROCESS, tid);
            (*errno == 0).then_some(p)
        };
        let Some(current) = current else {
            return; // Unknown: leave it rather than risk raising it.
        };
        let target = current.max(i32::from(nice.min(19)));
        if target != current {
            // SAFETY: as above; it changes only this thread's nice value, and only upwards (a lower
            // priority, which needs no privilege). Its result is ignored on purpose (best effort).
            unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, target) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Puts the calling thread under `SCHED_IDLE` (`Options::background_idle`): it runs only on a CPU no
/// other thread wants (and the threads it starts inherit that). Best effort: a failure leaves it as it was.
fn schedule_idle() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `pthread_self()` is the calling thread, alive for the call; `param` is a valid
        // `sched_param` that is only read (priority 0, the only one `SCHED_IDLE` takes). Lowering a
        // thread's own policy needs no privilege. (The pthread call, not `sched_setscheduler`, which musl
        // does not implement.) The result is ignored on purpose.
        unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_IDLE, &param) };
    }
}

/// A merge thread: runs the merges due of each stream queued (not its logged seals, which the flush
/// thread writes when they are due: `Store::compact` writes them first).
fn worker_loop(store: Store, queue: Arc<Queue>) {
    while let Some(id) = queue.pop(false) {
        let result = store.merge_while_due(&id, Scope::Due, usize::MAX);
        store.merge_outcome(&id, result);
    }
}

/// The flush thread: completes the logged seals of each stream queued, for now or for a deadline, if they
/// are due by size or by time when its turn comes (`Store::flush_logged_if_due`; all of them when the
/// store closes); a failure is recorded and tried again after ten `Options::logged_flush_delay`s, at
/// least 100 ms (the seals stay logged; the next `seal_logged`, `complete_seals`, `seal`, `append` or
/// `compact` of the stream tries again too).
fn flush_loop(store: Store, queue: Arc<Queue>, merges: Arc<Queue>) {
    while let Some(id) = queue.pop(true) {
        let closing = store.inner.stopping.load(Ordering::Relaxed);
        // Queued for now (by size) or for a deadline, the stream is flushed only if due by either rule
        // when its turn comes; all of it when the store closes.
        let flushed = match closing {
            false => store.flush_logged_if_due(&id),
            true => store.flush_logged(&id).map(Flushed::Done),
        };
        match flushed {
            // Its new batch may make merges due: the merge threads' work.
            Ok(Flushed::Done(true)) => merges.push(&id),
            Ok(Flushed::NotBefore(deadline)) => queue.push_by(&id, deadline),
            // Nothing to flush, or dropped after it was queued.
            Ok(Flushed::Done(false)) | Err(Error::UnknownStream { .. }) => {}
            Err(e) => {
                store.record_flush_failure(&id, &e);
                // Tried again later, as RocksDB resumes after a retryable background error (a full disk
                // freed, a flaky remote blob): an idle stream's upper would otherwise stay behind, and
                // its seal records pin the WAL, until its next call. Not while closing (the next open
                // completes it) nor once poisoned (nothing can commit).
                if !closing && !matches!(e, Error::Poisoned { .. }) {
                    queue.push_by(&id, Instant::now() + store.flush_retry_delay());
                }
            }
        }
    }
}

impl Store {
    /// The last failure of a background merge, if any. Merges are retried after the next seal; the store
    /// keeps working (with more batches) meanwhile.
    pub fn background_error(&self) -> Option<String> {
        self.inner.state.lock().background_error.clone()
    }

    /// Records how a background (or inline) run of merges of stream `id` ended: a failure is reported by
    /// [`background_error`](Self::background_error) and lets seals past the back-pressure bound go on
    /// without waiting for merges; a success makes them wait again.
    pub(crate) fn merge_outcome(&self, id: &str, result: Result<usize>) {
        match result {
            Ok(_) => {
                self.inner.state.lock().merges_failing = false;
            }
            // Dropped (`Store::drop_stream`) after it was queued or while it merged: nothing failed.
            Err(Error::UnknownStream { .. }) => {}
            Err(e) => {
                self.inner.state.lock().merges_failing = true;
                self.record_background_error(format!("merge of stream {id:?} failed: {e}"));
            }
        }
    }

    pub(crate) fn record_background_error(&self, detail: String) {
        self.inner.state.lock().background_error = Some(detail);
        self.inner.batches_changed.notify_all();
    }

    /// Queues stream `id` for the background workers, or merges inline when there are none.
    pub(crate) fn schedule_compaction(&self, id: &str) {
        match &self.handle {
            Some(workers) if workers.has_threads() => workers.push(id),
            _ => {
                let result = self.compact(id);
                self.merge_outcome(id, result);
            }
        }
    }

    /// Queues every stream (after open: merges a crash interrupted are due again).
    pub(crate) fn schedule_compaction_all(&self) {
        for id in self.streams() {
            self.schedule_compaction(&id);
        }
    }

    /// Back-pressure: waits while stream `id` has more batches than the configured bound and background
    /// merges are making progress. While a merge of the stream runs, it does not just wait: it merges the
    /// batches newer than that merge's inputs itself (a tail merge, `Scope::Tail`: their cheapest adjacent
    /// pair), one merge at a time, so that one big merge (seconds) does not hold every seal at the bound
    /// meanwhile. It waits when fewer than two such batches exist (the running merge holds nearly all of
    /// them: a major compaction, or the size-amplification trigger, started near the bound).
    pub(crate) fn wait_for_merges(&self, id: &str) -> Result<()> {
        let bound = self.inner.options.max_batches_per_stream.max(2);
        let mut state = self.live_state()?;
        loop {
            let Some(stream) = state.streams.get(id) else {
                return Ok(());
            };
            if stream.version.batches().len() <= bound || state.merges_failing || state.poisoned.is_some() {
                return Ok(());
            }
            let workers = self.handle.as_ref().filter(|w| w.has_threads());
            let Some(workers) = workers else {
                drop(state);
                return match self.compact(id) {
                    // A merge whose sum is out of range fails every time: record it as a background merge
                    // would, rather than fail the seal (whose own updates are not at fault).
                    Err(e @ Error::DiffOverflow { .. }) => {
                        self.record_background_error(format!("merge of stream {id:?} failed: {e}"));
                        Ok(())
                    }
                    other => other.map(|_| ()),
                };
            };
            // Over the bound a merge is always due (`pick_merge_bounded`); make sure a worker is on it.
            if !stream.merging {
                workers.push(id);
            } else if !stream.tail_merging {
                // A merge runs (maybe a big one, for seconds): rather than wait for it, merge the newest
                // batches, which it does not hold, on this thread. A failure is recorded as a background
                // merge's is (and lets this seal go on), not returned: the seal's own updates are not at
                // fault.
                drop(state);
                // Checked again at once after a merge or a failure (which lets the seal go on); after
                // nothing to merge, checked again once the batches change.
                let again = match self.merge_once(id, Scope::Tail) {
                    Ok(step) => matches!(step, Step::Merged),
                    Err(e @ Error::Poisoned { .. }) => return Err(e),
                    Err(e) => {
                        self.merge_outcome(id, Err(e));
                        true
                    }
                };
                state = self.live_state()?;
                if again {
                    continue;
                }
            }
            self.inner
                .batches_changed
                .wait_for(&mut state, Duration::from_millis(100));
        }
    }
}
