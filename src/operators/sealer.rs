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
//! A persister whose input waits for each seal (latency-bound) runs its seals inline instead, on the
//! worker's thread (`SealCounts` in `persister.rs`): there a spinning timely worker cannot keep the seal
//! waiting for a CPU.
//!
//! After a failed seal the thread runs no further request (the persister stops on the error). Dropping
//! the sealer waits for the seal in flight: the operator's writer claim on the stream outlives every seal
//! it requested.

use crate::error::{Error, Result};
use crate::store::{SealInfo, SealOptions, Store};
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
}

impl Sealer {
    /// Starts the sealer thread of `stream`, which activates the operator through `activator` after each
    /// seal. Errors: [`Error::Io`] if the thread cannot be spawned.
    pub(crate) fn start(store: Store, stream: String, activator: SyncActivator) -> Result<Sealer> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (outbox, results) = mpsc::channel::<Done>();
        let thread = std::thread::Builder::new()
            .name("ddpersist-seal".into())
            .spawn(move || {
                for request in inbox {
                    let result = store.seal_with(&stream, request.seal_to, request.options);
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
        })
    }

    /// Queues a seal. A request after a failed seal is never run (its `Done` never comes).
    pub(crate) fn submit(&mut self, request: Request) {
        if let Some(requests) = &self.requests {
            if requests.send(request).is_ok() {
                self.in_flight += 1;
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
