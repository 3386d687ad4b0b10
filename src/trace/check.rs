//! [`SpanChecker`]: the background checksum pass behind fail-stop (DESIGN.md §5). The arranging operator
//! queues every span it emits (the persisted spans at a restart, then each new one) and runs the checker
//! on each activation with a bounded amount of fuel; it lets no time complete at or beyond the
//! [`checked_upper`](SpanChecker::checked_upper), the lower of the first span whose blocks have not all
//! passed their checksums. A block that fails stops the error slot ([`ErrorSlot::fail_stop`]) and freezes
//! the checked upper for good.
//!
//! The checker lives with the operator, not with the trace: the trace may be dropped by every reader
//! while the arrangement's stream of batches still feeds downstream operators, whose cursors read the
//! same files. An import of the trace into another dataflow (`operators::import`) runs a checker of its
//! own over the spans it receives, so that its times too complete only over checked blocks; blocks checked
//! once are skipped (the verified bits live with the file, [`BatchFile::verified_block`]).

use super::{frontier_value, BytesBatch, ErrorSlot, PersistedBatch, PersistedSpan};
use crate::batch::BatchFile;
use crate::operators::PersistTime;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;

/// Blocks checked per [`SpanChecker::check`] call by the arranging operator (about 16 MiB at the default
/// block size); the operator re-activates itself while work is left.
pub(crate) const CHECK_BLOCKS_PER_ACTIVATION: usize = 256;

/// A span whose blocks are not all checked yet: its file, the next block to check, and the span's lower.
struct Unchecked<L> {
    file: Arc<BatchFile>,
    next: usize,
    lower: L,
}

/// Checks the blocks of queued spans in order: see the module docs. `L` is how a span's lower is held: a
/// store frontier value (`u64`, the arranging operator's) or DD's antichain (an import's,
/// `operators::import`).
pub struct SpanChecker<L = u64> {
    queue: VecDeque<Unchecked<L>>,
    /// The upper of the last span pushed.
    upper: L,
    errors: ErrorSlot,
    /// Set when a block failed: the checker stops there for good.
    failed: bool,
}

impl SpanChecker {
    /// A checker with nothing queued (checked upper 0), reporting bad blocks to `errors`.
    pub fn new(errors: ErrorSlot) -> Self {
        SpanChecker::starting_at(errors, 0)
    }

    /// Queues `span` (the next span of the arrangement, in time order).
    pub fn push<T: PersistTime>(&mut self, span: &PersistedSpan<T>) {
        self.push_file(
            span.inner.as_ref().and_then(|b| b.file()),
            frontier_value(span.lower().borrow()),
            frontier_value(span.upper().borrow()),
        );
    }
}

impl<L: Clone> SpanChecker<L> {
    /// A checker with nothing queued whose checked upper is `upper`, reporting bad blocks to `errors`.
    pub fn starting_at(errors: ErrorSlot, upper: L) -> Self {
        SpanChecker {
            queue: VecDeque::new(),
            upper,
            errors,
            failed: false,
        }
    }

    /// Queues the next span, in time order: its batch file (`None` for a span without updates, which has
    /// nothing to check), its lower and its upper.
    pub fn push_file(&mut self, file: Option<&Arc<BatchFile>>, lower: L, upper: L) {
        if let Some(file) = file {
            self.queue.push_back(Unchecked {
                file: file.clone(),
                next: 0,
                lower,
            });
        }
        self.upper = upper;
    }

    /// Checks up to `fuel` blocks not yet verified, in order. A bad block is recorded with
    /// [`ErrorSlot::fail_stop`] and stops the checker for good there. (A slot another reader stopped — a
    /// cursor, or another checker of the same trace — does not stop this one: it goes on to the first bad
    /// block of its own spans, so every checker of a trace holds its readers at the same span.)
    /// Returns whether work is left.
    pub fn check(&mut self, mut fuel: usize) -> bool {
        if self.failed {
            return false;
        }
        while let Some(u) = self.queue.front_mut() {
            while u.next < u.file.block_count() {
                if fuel == 0 {
                    return true;
                }
                if u.file.verified_block(u.next).is_none() {
                    if let Err(e) = u.file.block(u.next) {
                        self.errors.fail_stop(e);
                        self.failed = true;
                        return false;
                    }
                    fuel -= 1;
                }
                u.next += 1;
            }
            self.queue.pop_front();
        }
        false
    }

    /// Every block of every span below this passed its checksum: the lower of the first span not wholly
    /// checked, or the upper of the last span pushed. Once a block failed it no longer moves.
    pub fn checked_upper(&self) -> L {
        self.queue.front().map_or(&self.upper, |u| &u.lower).clone()
    }

    /// The lower of the first span not wholly checked, if one is queued.
    pub fn unchecked_lower(&self) -> Option<&L> {
        self.queue.front().map(|u| &u.lower)
    }
}

/// A batch type whose blocks a [`SpanChecker`] can check before its times complete: a persisted batch has
/// a file and the slot its cursors report to; DD's in-memory batches have neither.
pub trait CheckedBatch {
    /// Whether batches of this type can have a file (if not, an import needs no checker).
    const HAS_FILES: bool;
    /// The batch's file and the slot its cursors report to, if it has a file.
    fn checked_file(&self) -> Option<(&Arc<BatchFile>, &ErrorSlot)>;
}

impl<T: PersistTime> CheckedBatch for PersistedBatch<T> {
    const HAS_FILES: bool = true;
    fn checked_file(&self) -> Option<(&Arc<BatchFile>, &ErrorSlot)> {
        self.file().map(|f| (f, self.errors()))
    }
}

/// An import's batch with its times advanced and cut (`import_frontier`): its file is the wrapped one's.
impl<B: CheckedBatch, T> CheckedBatch
    for differential_dataflow::trace::wrappers::frontier::BatchFrontier<B, T>
{
    const HAS_FILES: bool = B::HAS_FILES;
    fn checked_file(&self) -> Option<(&Arc<BatchFile>, &ErrorSlot)> {
        self.inner().checked_file()
    }
}

impl<T: timely::progress::Timestamp + differential_dataflow::lattice::Lattice> CheckedBatch
    for Rc<BytesBatch<T>>
{
    const HAS_FILES: bool = false;
    fn checked_file(&self) -> Option<(&Arc<BatchFile>, &ErrorSlot)> {
        None
    }
}
