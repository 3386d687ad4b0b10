//! [`PersistHandle`]: the caller's view of one worker's persisting operator (its [`Persister`]), and
//! what the two share.
//!
//! [`Persister`]: super::persister::Persister

use super::resume::ResumeState;
use super::sealer::SealCounts;
use crate::error::Error;
use crate::trace::ErrorSlot;
use std::cell::Cell;
use std::rc::Rc;

/// What the operator shares with its [`PersistHandle`]s.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The stream's sealed upper in the store.
    pub(super) sealed_upper: Cell<u64>,
    /// The upper of the arrangement (its trace): at or above `sealed_upper`.
    pub(super) upper: Cell<u64>,
    pub(super) stopped: Cell<bool>,
    pub(super) seals: Cell<SealCounts>,
    /// Input updates dropped as below the trace's upper (see `PersistHandle::replayed_updates`).
    pub(super) replayed: Cell<u64>,
}

/// The caller's view of one worker's persisting operator: what it has persisted and whether it failed.
/// Cheap to clone; lives with the worker (not `Send`; its [`errors`](Self::errors) slot is).
#[derive(Clone, Debug)]
pub struct PersistHandle {
    pub(super) stream: Rc<str>,
    pub(super) resume: ResumeState,
    pub(super) own_upper: u64,
    pub(super) errors: ErrorSlot,
    pub(super) shared: Rc<Shared>,
}

impl PersistHandle {
    super::resume::worker_handle_accessors!();

    /// The stream's sealed upper now: every update below it is in a batch file.
    pub fn sealed_upper(&self) -> u64 {
        self.shared.sealed_upper.get()
    }

    /// The arrangement's upper: every update below it is in the trace (some intervals may be update-free
    /// spans not yet recorded in the store).
    pub fn upper(&self) -> u64 {
        self.shared.upper.get()
    }

    /// Whether the operator stopped after an error: persisting failed, or (an arrangement) a persisted
    /// block failed its checksum and the arrangement holds its frontier for good (fail-stop).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.get() || self.errors.is_stopped()
    }

    /// Takes the first error out (a stopped operator stays stopped).
    pub fn take_error(&self) -> Option<Error> {
        self.errors.take()
    }

    /// How many seals this worker's operator requested since it was built (not across restarts), by
    /// where they run: inline on the worker's thread, or pipelined on its seal thread (counted when
    /// submitted, so a seal in flight counts). See [`SealMode`](super::SealMode).
    pub fn seals(&self) -> SealCounts {
        self.shared.seals.get()
    }

    /// How many input updates (with nonzero diffs) this worker's operator dropped since it was built
    /// because their times lay below the trace's upper: a replay of input an earlier run persisted (the
    /// restart protocol: [`resume`](crate::operators::resume)). They are not compared with what the
    /// store holds: a restarted input must replay the same updates below [`own_upper`](Self::own_upper),
    /// or start at [`resume_at`](Self::resume_at) with none below it (then this stays 0). A count where
    /// none was expected means the input was fed from too early a time, and what it held there that the
    /// store does not is lost. Always 0 for a durable stream, whose operator refuses such updates
    /// ([`Error::BadInput`](crate::Error::BadInput) in [`error`](Self::error)).
    pub fn replayed_updates(&self) -> u64 {
        self.shared.replayed.get()
    }
}
