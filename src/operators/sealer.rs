//! [`Sealer`]: an arranging operator's seals, run on a thread of their own so that the operator keeps
//! taking input while a seal writes and fsyncs its batch and manifest (pipelined seals).
//!
//! A seal is a few dependent `fsync`s (batch file, directory, manifest, directory): milliseconds each, in
//! which the worker would otherwise sit idle. The operator submits each frontier advance as a request; the
//! sealer thread runs them in order (`Store::seal_with`, one at a time: a stream's seals are sequential
//! anyway) and hands each result back, activating the operator (a timely `SyncActivator`). The operator
//! applies results in order on its own thread: only then does the trace's upper move, the new batch reach
//! the trace and the capability move, so what downstream sees is exactly what a synchronous seal shows,
//! later. Writes at times at or beyond a requested upper go on meanwhile (the store takes them while a
//! seal is in flight: they are above its `pending_upper`).
//!
//! Whether a seal runs here or inline on the worker's thread is [`Placement`]'s choice, by the operator's
//! [`SealMode`]: inline while the input is slower than seals, where a spinning timely worker cannot keep
//! the seal waiting for a CPU.
//!
//! After a failed seal the thread runs no further request (the persister stops on the error). Dropping
//! the sealer waits for the seal in flight: the operator's writer claim on the stream outlives every seal
//! it requested.

use crate::error::{Error, Result};
use crate::store::{SealInfo, SealOptions, Store};

/// Seals an adaptive persister runs inline after a pipelined seal found the input idle
/// ([`SealMode::Adaptive`]); the one after them is pipelined again, to look.
const INLINE_SEALS: u32 = 16;

/// The most bytes the stream's memtable may hold for an adaptive seal to run inline (with no spilled
/// run): the seal then writes at most this much, one or a few blocks, in about the time of its fsyncs.
const INLINE_SEAL_MAX_BYTES: usize = 1 << 20;

/// Where an arranging operator runs its seals ([`PersistOptions::seals`](super::PersistOptions::seals)).
///
/// A seal is a batch file and a manifest commit, three dependent fsyncs (~1 ms on this project's
/// machine). On a thread of its own (*pipelined*) the worker keeps taking input meanwhile, and seals
/// coalesce while the disk is behind (DESIGN.md §5). But a timely worker that spins
/// (`worker.step_while`, as DD's examples do) keeps its core busy, and then the seal thread's wake-up
/// after each fsync waits for a time slice: with two such workers on two cores a dataflow waiting for
/// each timestamp's output took 4.1 ms a round pipelined, 1.9–2.3 ms inline, on the worker's thread
/// (BENCHMARKS.md, "One timestamp's latency with two workers"). Inline, the worker does nothing else
/// during the seal: not a cost while it would only wait for the seal's output, a cost to other operators
/// and dataflows on the worker otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SealMode {
    /// Pipelined, except while the input is slower than seals: the first 16 seals run inline, and when a
    /// pipelined seal is done and no frontier advance arrived while it ran (a dataflow that waits for
    /// each timestamp's output; also a source paced slower than the disk), the next 16 seals run inline,
    /// then one is pipelined again to look; a pipelined seal done after the input moved on ends inline seals, so an input that runs
    /// ahead of the disk is pipelined again within at most 16 seals. A seal runs inline only if the
    /// stream's memtable holds at most 1 MiB and no spilled run, and the store runs merges on threads of
    /// its own (`Options::compaction_threads` > 0): else a seal could write, or merge, much more on the
    /// worker's thread. A seal may still run a merge under back-pressure (`Options::max_batches_per_stream`)
    /// on the thread that seals. Whenever the input took nothing and did not move since the last seal was
    /// requested, the operator waits for the seals in flight on the worker's thread: a dataflow that
    /// waits for each timestamp's output sees it within a few worker steps, as in memory, whichever
    /// thread seals.
    #[default]
    Adaptive,
    /// Always on the seal thread.
    Pipelined,
    /// Always on the worker's thread (no seal thread is started).
    Inline,
}

/// How many seals a persisting operator requested, by where they run ([`PersistHandle::seals`](
/// super::PersistHandle::seals)). The pass-through `persist` operator seals inline always.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SealCounts {
    /// Seals run on the worker's thread.
    pub inline: u64,
    /// Seals submitted to the operator's seal thread.
    pub pipelined: u64,
}

/// Where the next seal runs: a [`SealMode`] and, for `Adaptive`, the inline seals left.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Placement {
    mode: SealMode,
    /// Seals left to run inline before the next is pipelined again (`Adaptive` only).
    inline_left: u32,
}

impl Placement {
    /// Starts with inline seals (`Adaptive`): a dataflow's first timestamps complete within a few worker
    /// steps, as with DD's in-memory arrangement (DD code that steps a fixed number of times, as DD's own
    /// tests do, sees their output); the first pipelined seal after them looks at the input.
    pub(crate) fn new(mode: SealMode) -> Self {
        Placement {
            mode,
            inline_left: INLINE_SEALS,
        }
    }

    pub(crate) fn mode(&self) -> SealMode {
        self.mode
    }

    /// Notes that pipelined seals are done, and whether the input was `idle` while they ran (no advance
    /// arrived, none in flight now).
    pub(crate) fn pipelined_done(&mut self, idle: bool) {
        if self.mode == SealMode::Adaptive {
            self.inline_left = if idle { INLINE_SEALS } else { 0 };
        }
    }

    /// Whether the next seal of `stream` runs inline, nothing being in flight (`Adaptive`: within the
    /// bounds of the mode's docs).
    pub(crate) fn inline_next(&self, store: &Store, stream: &str) -> bool {
        match self.mode {
            SealMode::Inline => true,
            SealMode::Pipelined => false,
            SealMode::Adaptive => {
                self.inline_left > 0
                    && store.options().compaction_threads > 0
                    && store
                        .with_stream(stream, |s| {
                            s.memtable.bytes() <= INLINE_SEAL_MAX_BYTES && s.version.spills().is_empty()
                        })
                        .unwrap_or(false)
            }
        }
    }

    /// Notes a seal run inline.
    pub(crate) fn ran_inline(&mut self) {
        self.inline_left = self.inline_left.saturating_sub(1);
    }
}
use std::sync::mpsc;
use std::thread::JoinHandle;
use timely::scheduling::SyncActivator;

/// One requested seal: the stream's new upper `seal_to`, with `options`; `to` is the trace's new upper
/// (beyond `seal_to` only once the input is exhausted: see `Persister::seal_point`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Request {
    pub(crate) to: u64,
    pub(crate) seal_to: u64,
    pub(crate) options: SealOptions,
}

/// A request and what its seal returned.
pub(crate) struct Done {
    pub(crate) request: Request,
    pub(crate) result: Result<SealInfo>,
}

/// See the module docs.
pub(crate) struct Sealer {
    requests: Option<mpsc::Sender<Request>>,
    results: mpsc::Receiver<Done>,
    thread: Option<JoinHandle<()>>,
    in_flight: usize,
    /// Activates the operator after each request.
    wake: SyncActivator,
}

impl Sealer {
    /// Starts the sealer thread of `stream`, which activates the operator through `activator` after each
    /// seal. Errors: [`Error::Io`] if the thread cannot be spawned.
    pub(crate) fn start(store: Store, stream: String, activator: SyncActivator) -> Result<Sealer> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, results) = mpsc::channel::<Done>();
        let wake = activator.clone();
        let thread = std::thread::Builder::new()
            .name("ddpersist-seal".into())
            .spawn(move || {
                for request in inbox {
                    let result = store.seal_with_claimed(&stream, request.seal_to, request.options);
                    let failed = result.is_err();
                    // The operator may be gone (its dataflow dropped): then nobody waits for the result.
                    let _ = outbox.send(Done { request, result });
                    let _ = activator.activate();
                    if failed {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io("spawning the seal thread", e))?;
        Ok(Sealer {
            requests: Some(requests),
            results,
            thread: Some(thread),
            in_flight: 0,
            wake,
        })
    }

    /// Queues a seal, and activates the operator (its next step), which may then find its input idle and
    /// wait for the seal (`Persister::advance`). A request after a failed seal is never run (its `Done`
    /// never comes).
    pub(crate) fn submit(&mut self, request: Request) {
        if let Some(requests) = &self.requests {
            if requests.send(request).is_ok() {
                self.in_flight += 1;
                // An activation error means the worker is gone: nothing to wake.
                let _ = self.wake.activate();
            }
        }
    }

    /// Seals requested and not yet returned by [`try_done`](Self::try_done).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The oldest finished seal not yet returned, if any, without waiting.
    pub(crate) fn try_done(&mut self) -> Option<Done> {
        let done = self.results.try_recv().ok()?;
        self.in_flight -= 1;
        Some(done)
    }

    /// The oldest seal not yet returned, waiting for it; `None` if none is in flight (or the thread ended
    /// after a failure).
    pub(crate) fn wait_done(&mut self) -> Option<Done> {
        if self.in_flight == 0 {
            return None;
        }
        let done = self.results.recv().ok()?;
        self.in_flight -= 1;
        Some(done)
    }
}

impl Drop for Sealer {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop once the seal in flight (and those queued) ran.
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            // A panicked seal thread has nothing left to clean up.
            let _ = thread.join();
        }
    }
}
