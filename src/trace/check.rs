//! [`SpanChecker`]: the background checksum pass behind fail-stop (DESIGN.md §5). The arranging operator
//! queues every span it emits (the persisted spans at a restart, then each new one) and runs the checker
//! on each activation with a bounded amount of fuel; it lets no time complete at or beyond the
//! [`checked_upper`](SpanChecker::checked_upper), the lower of the first span whose blocks have not all
//! passed their checksums. A block that fails stops the error slot ([`ErrorSlot::fail_stop`]) and freezes
//! the checked upper for good.
//!
//! The checker lives with the operator, not with the trace: the trace may be dropped by every reader
//! while the arrangement's stream of batches still feeds downstream operators, whose cursors read the
//! same files.

use super::{frontier_value, ErrorSlot, PersistedSpan};
use crate::batch::BatchFile;
use crate::operators::PersistTime;
use std::collections::VecDeque;
use std::sync::Arc;

/// Blocks checked per [`SpanChecker::check`] call by the arranging operator (about 16 MiB at the default
/// block size); the operator re-activates itself while work is left.
pub(crate) const CHECK_BLOCKS_PER_ACTIVATION: usize = 256;

/// A span whose blocks are not all checked yet: its file, the next block to check, and the span's lower.
struct Unchecked {
    file: Arc<BatchFile>,
    next: usize,
    lower: u64,
}

/// Checks the blocks of queued spans in order: see the module docs.
pub struct SpanChecker {
    queue: VecDeque<Unchecked>,
    /// The upper of the last span pushed (a store frontier value).
    upper: u64,
    errors: ErrorSlot,
}

impl SpanChecker {
    /// A checker with nothing queued (checked upper 0), reporting bad blocks to `errors`.
    pub fn new(errors: ErrorSlot) -> Self {
        SpanChecker {
            queue: VecDeque::new(),
            upper: 0,
            errors,
        }
    }

    /// Queues `span` (the next span of the arrangement, in time order).
    pub fn push<T: PersistTime>(&mut self, span: &PersistedSpan<T>) {
        if let Some(file) = span.inner.as_ref().and_then(|b| b.file()) {
            self.queue.push_back(Unchecked {
                file: file.clone(),
                next: 0,
                lower: frontier_value(span.lower().borrow()),
            });
        }
        self.upper = frontier_value(span.upper().borrow());
    }

    /// Checks up to `fuel` blocks not yet verified, in order. A bad block is recorded with
    /// [`ErrorSlot::fail_stop`] and stops the checker for good. Returns whether work is left.
    pub fn check(&mut self, mut fuel: usize) -> bool {
        if self.errors.is_stopped() {
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

    /// Every block of every span below this (a store frontier value) passed its checksum: the lower of
    /// the first span not wholly checked, or the upper of the last span pushed. Once the error slot is
    /// stopped it no longer moves past the first unchecked span.
    pub fn checked_upper(&self) -> u64 {
        self.queue.front().map_or(self.upper, |u| u.lower)
    }
}
