//! [`Persister`]: the write path of one worker's stream, the state machine inside the persisting operators
//! (`ArrangePersisted`, whose seals are pipelined, and the pass-through `Persist`), and [`PersistHandle`],
//! the caller's view of it.
//!
//! The persister works in the store's `u64` times: input times of any [`PersistTime`] `T` are converted
//! with [`PersistTime::to_u64`] as they are staged, input frontiers by [`input_bound`], and the spans it
//! makes for a trace over `T` by [`description`] (an upper beyond `T`'s range is `T`'s empty frontier).
//!
//! - [`stage`](Persister::stage) encodes input updates (by [`Codec`](crate::codec::Codec)) into one reused buffer, skipping
//!   those below the trace's upper: persisted already (a restarted input replays, idempotently; a durable
//!   stream's must not: [`refuse_times`](Persister::refuse_times) refuses them, `super::replays`);
//! - [`write_staged`](Persister::write_staged) writes the staged updates with one `Store::write_bytes`
//!   call and notes their times as pending (written, not sealed);
//! - [`advance`](Persister::advance) reacts to the input frontier moving to `f`: it seals the stream at
//!   `f` (one manifest commit, and one batch file if updates are pending below `f`), so every stream
//!   records every frontier advance, with or without data (advances deferred while seals are queued are
//!   sealed together: see below; the restart protocol, [`super::resume`], needs every worker's upper). When the input is exhausted (`f` empty) it seals what is pending up to one
//!   past its greatest time, marks the stream *finished*, and closes the *trace* but not the stream, so a
//!   later run can continue at later times. In the arranging operator seals are *pipelined*
//!   ([`Sealer`]): `advance` requests the seal (the pending times below it are the seal's from then on)
//!   and returns the spans of the seals done since the last call, in order; the operator keeps taking
//!   input while a seal's fsyncs run, and its capability, the trace's upper and the handle move only as
//!   seals finish. At most `MAX_SEALS_IN_FLIGHT` are queued; an advance beyond them is deferred, and the
//!   next seal requested covers every deferred advance (seals coalesce while the disk is behind, so batches
//!   grow with the backlog instead of the operator waiting). While the input is slower than seals, seals
//!   run inline on the worker's thread instead ([`SealMode::Adaptive`]). Coalescing is bounded: once the
//!   stream's memtable holds half of `Options::memtable_budget_bytes`, `advance` waits for the oldest
//!   seal rather than let the store spill (write the updates once more).
//! - the since: an arranging operator's trace hands the since its readers allow to the persister
//!   ([`AllowedSince`]), and each seal requested carries it (at most the seal's upper) in its own manifest
//!   edit, so readers advance the stream's since without a commit of their own.
//!
//! Invariants: `upper` is the trace's upper (of the seals done); `requested` and `requested_seal` are the
//! trace and stream uppers of the last seal requested, at or beyond it; every pending time is at or
//! beyond `requested_seal`; the stream's sealed upper in the store lies between `upper`'s seal and
//! `requested_seal`, and the stream has no update beyond it that is not pending or in a requested seal.
//!
//! Errors (I/O, a poisoned store, a time the store cannot hold) cannot be returned from a timely operator.
//! The first one is recorded in the shared [`ErrorSlot`] and the persister *stops*: it writes, seals and
//! emits nothing more, and its operator holds its capability at the last upper it served for good (also
//! once the input is exhausted), so no operator downstream ever sees an incomplete time as complete — a
//! persisted operator downstream never seals past it. The dataflow then never completes: a caller sees
//! the error in [`PersistHandle::error`] (or waits for it from any thread with [`ErrorSlot::wait`]) and
//! drops the dataflow (`worker.drop_dataflow`) or the process; a restart resumes from the last upper.

pub(crate) use super::persist_handle::{PersistHandle, Shared};
use super::resume::{ResumeState, WorkerStream};
use super::sealer::{Placement, Request, SealCounts, SealMode, Sealer};
pub(crate) use super::time::input_bound;
use super::PersistTime;
use crate::error::Error;
use crate::manager::PersistManager;
use crate::store::{SealOptions, Store, WriterClaim};
use crate::trace::batch::description;
use crate::trace::persisted::AllowedSince;
use crate::trace::{antichain, ErrorSlot, PersistedBatch, PersistedSpan, PersistedTrace};
use crate::FRONTIER_CLOSED;
use differential_dataflow::operators::arrange::TraceWriter;
use differential_dataflow::trace::Span;
use std::cell::Cell;
use std::collections::BTreeSet;
use std::rc::Rc;
use timely::dataflow::operators::Capability;
use timely::progress::Stamp;
use timely::scheduling::SyncActivator;

mod stage;

/// Seals a pipelined persister may have queued; advances beyond them wait for the next request (coalesce).
const MAX_SEALS_IN_FLIGHT: usize = 2;

/// Staged bytes (keys, vals and 24 bytes of framing per update) that trigger a write before the input is
/// drained, keeping one write well under the store's 512 MiB limit.
const FLUSH_BYTES: usize = 64 << 20;

/// The write path of one worker's stream: see the module docs.
pub(crate) struct Persister {
    store: Store,
    stream: String,
    /// Runs seals on a thread of their own, if pipelined (declared before the claim: dropping it waits for
    /// the seals in flight, which must finish while the claim is held).
    sealer: Option<Sealer>,
    /// The trace upper of the last seal requested (`upper` when none is in flight).
    requested: u64,
    /// The stream upper the last seal requested (the stream's sealed upper once it is done).
    requested_seal: u64,
    /// Held for the persister's life: no other operator writes the stream.
    _claim: WriterClaim,
    resume: ResumeState,
    upper: u64,
    pending: BTreeSet<u64>,
    buf: Vec<u8>,
    /// `(key start, key end = val start, val end, time, diff)` into `buf`.
    staged: Vec<(usize, usize, usize, u64, i64)>,
    stopped: bool,
    shared: Rc<Shared>,
    /// Where the first error goes; its handles hold the same slot.
    errors: ErrorSlot,
    /// Pays for each write under the manager's rate limit, for operators built from a token.
    throttle: Option<PersistManager>,
    /// The since the trace's readers allow, committed with the next seal (arranging operators only).
    allowed: Option<AllowedSince>,
    /// The since the last seal requested (the stream's since before any).
    requested_since: u64,
    /// Where seals run (with the sealer).
    placement: Placement,
    /// Streams of other workers to confirm as this process's before the first seal
    /// ([`confirm_layout`](super::resume::confirm_layout)).
    unconfirmed: Vec<String>,
    /// Whether input arrived since the last seal was requested.
    took_input: bool,
    /// What a durable stream checks of its input ([`refuse_times`](Self::refuse_times)).
    durability: Durability,
}

/// Whether a persister's stream is durable, which makes its input's replays an error (`super::replays`).
#[derive(Clone, Copy, Debug)]
struct Durability {
    /// The stream is durable (its input must not replay); false over a log that keeps nothing
    /// ([`Store::durable_log`]), where it resumes as a stream that is not.
    durable: bool,
    /// It held unsealed updates when built, which a replay would double: it stops on a replay, or when a
    /// sibling worker saw one (a replay below its own upper drops as any stream's does otherwise).
    held_unsealed: bool,
}

impl Drop for Persister {
    /// Clears the stream's replay mark (`super::replays`): it stops the workers of this operator, not of
    /// a later one rebuilt over the same store in this process, which may hold unsealed updates and be fed
    /// by an input that does not replay.
    fn drop(&mut self) {
        if self.durability.durable {
            self.store.clear_replay_refused(&self.stream);
        }
    }
}

impl Persister {
    /// A persister for the worker stream `opened`, whose trace ends at its upper and which has unsealed
    /// updates at `pending` times (recovered by a durable stream); errors go to `errors`.
    pub(crate) fn new(
        store: &Store,
        opened: WorkerStream,
        pending: BTreeSet<u64>,
        errors: ErrorSlot,
    ) -> Self {
        let upper = opened.upper;
        // The stream's since as of the build: a seal asks for a since only above it.
        let requested_since = store.since(&opened.stream).unwrap_or(0);
        // A durable stream over a log that keeps nothing is resumed as one that is not (its input replays).
        let durable = store.durable_log() && store.durability(&opened.stream).is_ok_and(|d| d.0);
        let durability = Durability {
            durable,
            held_unsealed: durable && !pending.is_empty(),
        };
        let shared = Shared {
            sealed_upper: Cell::new(upper),
            upper: Cell::new(upper),
            stopped: Cell::new(false),
            seals: Cell::new(SealCounts::default()),
            replayed: Cell::new(0),
        };
        Persister {
            store: store.clone(),
            stream: opened.stream,
            sealer: None,
            requested: upper,
            requested_seal: upper,
            _claim: opened.claim,
            resume: opened.resume,
            upper,
            pending,
            buf: Vec::new(),
            staged: Vec::new(),
            stopped: false,
            shared: Rc::new(shared),
            errors,
            throttle: None,
            allowed: None,
            requested_since,
            placement: Placement::new(SealMode::Adaptive),
            unconfirmed: opened.unconfirmed,
            took_input: false,
            durability,
        }
    }

    /// Commits the since `allowed` holds with each seal (see [`AllowedSince`]): how an arrangement's
    /// readers advance the stream's `since` without a manifest commit of their own.
    pub(crate) fn advance_since_from(&mut self, allowed: AllowedSince) {
        self.allowed = Some(allowed);
    }

    /// Makes every write pay `manager`'s rate limit first.
    pub(crate) fn throttled_by(mut self, manager: PersistManager) -> Self {
        self.throttle = Some(manager);
        self
    }

    /// Where [`pipeline`](Self::pipeline) runs seals (before it; [`SealMode::Adaptive`] by default).
    pub(crate) fn set_seal_mode(&mut self, mode: SealMode) {
        self.placement = Placement::new(mode);
    }

    /// Runs this persister's seals on a thread of their own (see [`Sealer`]), which activates the operator
    /// through `activator` when one is done, unless its [`SealMode`] is `Inline`. If the thread cannot be
    /// spawned, seals stay on the caller's thread (the same results, without the overlap).
    pub(crate) fn pipeline(&mut self, activator: SyncActivator) {
        if self.placement.mode() != SealMode::Inline {
            self.sealer = Sealer::start(self.store.clone(), self.stream.clone(), activator).ok();
        }
    }

    /// A handle on this persister.
    pub(crate) fn handle(&self) -> PersistHandle {
        PersistHandle {
            stream: self.stream.as_str().into(),
            resume: self.resume,
            own_upper: self.upper,
            errors: self.errors.clone(),
            shared: self.shared.clone(),
        }
    }

    /// The trace's upper.
    pub(crate) fn upper(&self) -> u64 {
        self.upper
    }

    /// Whether the persister stopped after an error.
    pub(crate) fn stopped(&self) -> bool {
        self.stopped
    }

    /// Holds the operator's `capability` at the upper: drops it when done (the upper is closed, or beyond
    /// the range of `T`), releasing the dataflow; else downgrades it. A stopped persister's upper no longer
    /// moves, so its capability stays where it was for good.
    pub(crate) fn hold<T: PersistTime>(&self, capability: &mut Option<Capability<T>>) {
        self.hold_within(capability, FRONTIER_CLOSED);
    }

    /// [`hold`](Self::hold), never beyond `bound`: an arrangement's checked upper, which stops for good
    /// at a persisted block that fails its checksum (fail-stop, `trace/persisted.rs`).
    pub(crate) fn hold_within<T: PersistTime>(&self, capability: &mut Option<Capability<T>>, bound: u64) {
        let upper = antichain::<T>(self.upper.min(bound));
        match upper.first() {
            None => *capability = None,
            Some(upper) => {
                if let Some(cap) = capability.as_mut() {
                    if cap.time() < upper {
                        // Cannot fail: the upper only grows. (A failure would leave the capability lower,
                        // which holds readers back but is never wrong.)
                        let _ = cap.try_downgrade(upper);
                    }
                }
            }
        }
    }

    /// Whether the stream's layout is confirmed before its first seal (`resume::confirm_layout`); a
    /// refusal stops the persister.
    fn layout_confirmed(&mut self) -> bool {
        let confirmed = super::resume::confirm_layout(&self.store, &self.stream, &mut self.unconfirmed);
        match confirmed {
            Ok(()) => true,
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn fail(&mut self, error: Error) {
        self.errors.record(error);
        self.stopped = true;
        self.shared.stopped.set(true);
    }

    /// Advances the trace to `to` (the input frontier; [`FRONTIER_CLOSED`] once the input is exhausted),
    /// sealing the stream there (see [`seal_point`](Self::seal_point)). Inserts the new spans into `writer`
    /// (each stamped with its lower) and returns them for the output. Blocks the worker for a whole seal
    /// when it runs inline ([`SealMode`]), and for the oldest pipelined one under back-pressure (below).
    pub(crate) fn advance<T: PersistTime>(
        &mut self,
        to: u64,
        writer: &mut TraceWriter<PersistedTrace<T>>,
    ) -> Vec<PersistedSpan<T>> {
        let mut spans: Vec<PersistedSpan<T>> = Vec::new();
        let mut drained = false;
        while let Some(done) = self.sealer.as_mut().and_then(Sealer::try_done) {
            spans.extend(self.finish(done.request, done.result));
            drained = true;
        }
        // An adaptive persister whose input took nothing and did not move since the last seal was
        // requested waits for the seals in flight on the worker's thread, as an inline seal would have:
        // the input waits for their output (a dataflow that feeds a timestamp, then steps until its output
        // comes), and spinning through steps until the seal thread is done would leave DD code that steps
        // a fixed number of times without that output (found by an adversarial test: every 17th round,
        // the pipelined seal that looks at the input, took ~2,500 steps instead of 3). The operator is
        // activated after each pipelined seal's request to look (`Sealer::submit`).
        if self.placement.mode() == SealMode::Adaptive && to == self.requested && !self.took_input {
            while let Some(done) = self.sealer.as_mut().and_then(Sealer::wait_done) {
                spans.extend(self.finish(done.request, done.result));
                drained = true;
            }
        }
        // The pipelined seals just done found the input where they left it (no advance arrived while
        // they ran) or not: see `SealMode::Adaptive`.
        if drained {
            let idle = to == self.requested && self.sealer.as_ref().is_some_and(|s| s.in_flight() == 0);
            self.placement.pipelined_done(idle);
        }
        // With `MAX_SEALS_IN_FLIGHT` seals queued the advance is deferred, not waited for: the operator
        // keeps taking input, and the next seal, requested when one finishes (the sealer activates the
        // operator), covers every advance since (seals coalesce while the disk is behind).
        // Coalescing is bounded: once the stream's memtable (updates written and not yet in a seal that
        // started) holds half the store's memtable budget, the operator waits for the oldest seal
        // (back-pressure) rather than have the store spill them to disk, which would write them once more.
        if let Some(sealer) = self.sealer.as_mut() {
            if sealer.in_flight() >= MAX_SEALS_IN_FLIGHT
                && 2 * self.store.memtable_bytes(&self.stream).unwrap_or(0)
                    >= self.store.options().memtable_budget_bytes
            {
                if let Some(done) = sealer.wait_done() {
                    spans.extend(self.finish(done.request, done.result));
                }
            }
        }
        let slot = self
            .sealer
            .as_ref()
            .is_none_or(|s| s.in_flight() < MAX_SEALS_IN_FLIGHT);
        if !self.stopped && to > self.requested && slot && self.layout_confirmed() {
            let inline = match &self.sealer {
                None => true,
                Some(sealer) => {
                    sealer.in_flight() == 0 && self.placement.inline_next(&self.store, &self.stream)
                }
            };
            let request = self.request(to);
            match (&mut self.sealer, inline) {
                (Some(sealer), false) => {
                    sealer.submit(request);
                    self.count_seal(false);
                }
                _ => {
                    self.count_seal(true);
                    self.placement.ran_inline();
                    let result = self
                        .store
                        .seal_with_claimed(&self.stream, request.seal_to, request.options);
                    spans.extend(self.finish(request, result));
                }
            }
        }
        // Each span goes to the trace's listeners (`TraceAgent::import`s) stamped with its lower: their
        // capabilities follow the trace's upper, which is the span's lower, while the operator's own
        // capability may be held below it (the block check after a restart, `hold_within`).
        for span in &spans {
            let stamp = if span.has_updates() {
                let mut stamp = Stamp::new();
                for time in span.lower().elements() {
                    stamp.insert(*time);
                }
                stamp
            } else {
                Stamp::new()
            };
            writer.insert(span.clone(), stamp);
        }
        self.shared.upper.set(self.upper);
        spans
    }

    /// Counts a seal requested, run `inline` or pipelined ([`PersistHandle::seals`]).
    fn count_seal(&self, inline: bool) {
        let mut counts = self.shared.seals.get();
        match inline {
            true => counts.inline += 1,
            false => counts.pipelined += 1,
        }
        self.shared.seals.set(counts);
    }

    /// Plans the seal of an advance of the trace to `to` (see [`seal_point`](Self::seal_point)): the
    /// pending times below the seal point are its from now on.
    fn request(&mut self, to: u64) -> Request {
        let (seal_to, finished) = self.seal_point(to);
        self.pending = self.pending.split_off(&seal_to);
        self.took_input = false;
        self.requested = to;
        self.requested_seal = seal_to;
        // What the readers allow, at most what persisted operators downstream allow (below their uppers:
        // `compaction_since`), so at or below the seal's upper, as a stream's since must be; a since not
        // above the last one is no edit.
        // The cap reads the manifest and the process's claims: only when the readers allow more.
        let since = self
            .allowed
            .as_ref()
            .map(|a| a.get())
            .filter(|&allowed| allowed > self.requested_since)
            .and_then(|allowed| {
                let (id, peers) = super::resume::operator_of(&self.stream)?;
                super::resume::compaction_since(&self.store, id, peers, seal_to).map(|cap| allowed.min(cap))
            })
            .filter(|&s| s > self.requested_since);
        self.requested_since = since.unwrap_or(self.requested_since);
        let options = SealOptions { finished, since };
        Request { to, seal_to, options }
    }

    /// Applies a seal's `result` (requests finish in order): the new batch's span `[upper, seal_to)`, and
    /// once the input is exhausted the closing span up to `request.to`. An error stops the persister.
    fn finish<T: PersistTime>(
        &mut self,
        request: Request,
        result: crate::Result<crate::SealInfo>,
    ) -> Vec<PersistedSpan<T>> {
        let mut spans = Vec::new();
        if self.stopped {
            return spans;
        }
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                self.fail(e);
                return spans;
            }
        };
        let (to, seal_to) = (request.to, request.seal_to);
        self.shared.sealed_upper.set(seal_to);
        if seal_to > self.upper {
            match self.span(seal_to, info) {
                Ok(span) => {
                    spans.push(span);
                    self.upper = seal_to;
                }
                Err(e) => {
                    self.fail(e);
                    return spans;
                }
            }
        }
        if to > self.upper && antichain::<T>(self.upper).is_empty() {
            // The seal went beyond `T`'s range: the trace is closed already.
            self.upper = to;
        } else if to > self.upper {
            // Only once the input is exhausted: the trace closes, the stream stays open for later runs.
            // On an error the span sealed above is still inserted: the caller emits it.
            match description(self.upper, to, 0) {
                Ok(desc) => {
                    spans.push(Span::new(desc, None));
                    self.upper = to;
                }
                Err(e) => self.fail(e),
            }
        }
        spans
    }

    /// Advances to `to` as [`advance`](Self::advance) does, for an operator without a trace (the
    /// pass-through [`Persist`](super::Persist) operator): seals the stream and moves the upper. Returns
    /// whether the upper moved (false when stopped, or on an error, which stops it).
    pub(crate) fn advance_untraced(&mut self, to: u64) -> bool {
        if self.stopped || to <= self.upper || !self.layout_confirmed() {
            return false;
        }
        let request = self.request(to);
        self.count_seal(true);
        if let Err(e) = self
            .store
            .seal_with_claimed(&self.stream, request.seal_to, request.options)
        {
            self.fail(e);
            return false;
        }
        self.shared.sealed_upper.set(request.seal_to);
        self.upper = to;
        self.requested = to;
        self.shared.upper.set(to);
        true
    }

    /// Where an advance to `to` seals the stream, and whether it marks it finished: at `to`, while the
    /// input runs; once it is exhausted (`to` is [`FRONTIER_CLOSED`]), at one past the greatest pending
    /// time (or at the last requested seal's upper, if nothing is pending), finished.
    fn seal_point(&self, to: u64) -> (u64, bool) {
        if to == FRONTIER_CLOSED {
            let last = self.pending.last().map_or(0, |t| t.saturating_add(1));
            // Not below a seal still in flight: seals of a stream only move its upper forward.
            (self.requested_seal.max(last), true)
        } else {
            (to, false)
        }
    }

    /// The span `[upper, to)` serving the batch a seal at `to` wrote (none if it had no update).
    fn span<T: PersistTime>(&self, to: u64, info: crate::SealInfo) -> crate::Result<PersistedSpan<T>> {
        let desc = description(self.upper, to, 0)?;
        let inner = info
            .batch
            .map(|file| PersistedBatch::new(file, desc.clone()))
            .transpose()?
            .map(|b| b.reporting_to(self.errors.clone()));
        Ok(Span::new(desc, inner))
    }
}
