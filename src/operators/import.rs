//! Imports of a persisted trace into another dataflow whose times complete only over checked blocks
//! (fail-stop, DESIGN.md §5).
//!
//! DD's `TraceAgent::import` replays the trace's spans and then follows the trace's upper: after a
//! restart, the restored spans are in the trace at once (their blocks are checked lazily, in the
//! background, by the arranging operator's [`SpanChecker`]), so a plain import's times below the
//! persisted upper can complete before a damaged block is found — and the import's operators, whose
//! cursors skip that block, would then have passed an incomplete time. [`ImportChecked::import_checked`]
//! (and [`TypedTrace::import`](super::TypedTrace::import), which uses it) puts [`hold_until_checked`]
//! behind the import: the spans pass on at once, but no time at or beyond the lower of a span whose
//! blocks have not all passed their checksums completes. A block that fails stops the trace's
//! [`ErrorSlot`](crate::trace::ErrorSlot) (the [`PersistHandle`](super::PersistHandle) reports the file
//! and offset) and holds the import's frontier there for good, as the arranging operator's is held.
//!
//! The typed trace's imports ([`TypedTrace::import`], `import_named`, `import_core`, `import_frontier`,
//! `import_frontier_core`: DD's `TraceAgent` methods of those names, typed) all hold so.
//!
//! Cost: each block is checked once per process (the verified bits live with the file), so an import made
//! after the arranging operator's checker went through the restored spans checks nothing; one made before
//! shares the work. Checks run 256 blocks per activation, as the arranging operator's.

use super::{PersistTime, TypedArranged, TypedTrace};
use crate::trace::check::CHECK_BLOCKS_PER_ACTIVATION;
use crate::trace::{CheckedBatch, PersistedTrace, SpanChecker};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::{Arranged, ShutdownButton, TraceAgent};
use differential_dataflow::trace::wrappers::frontier::TraceFrontier;
use differential_dataflow::trace::{Span, Trace, TraceReader};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::CapabilitySet;
use timely::dataflow::{Scope, Stream};
use timely::progress::{Antichain, Timestamp};
use timely::PartialOrder;

/// A stream of spans, as an arrangement's `stream`.
type Spans<'scope, T, B> = Stream<'scope, T, Vec<Span<T, B>>>;

/// Passes `spans` on unchanged and holds the output frontier below the lower of the first span whose
/// blocks have not all passed their checksums (see the module docs). Spans of batch types without files
/// ([`CheckedBatch::HAS_FILES`] false) pass with no operator added.
///
/// Takes the spans in time order (as an arrangement's stream, or an import's, carries them); a span
/// stamped with a time beyond its lower (no DD operator sends one) is passed on but held at its stamp.
pub fn hold_until_checked<'scope, T, B>(spans: Spans<'scope, T, B>) -> Spans<'scope, T, B>
where
    T: Timestamp + Lattice,
    B: CheckedBatch + Clone + 'static,
{
    hold_checked_below(spans, Antichain::new(), Antichain::new())
}

/// [`hold_until_checked`] for an import that advances times by `since` and then leaves out those at or
/// beyond `until` (DD's `import_frontier_core`; an empty `until` leaves out none): a span whose every time,
/// advanced by `since`, is there presents nothing, so its blocks are not checked and cannot hold the
/// import (a damaged one held an import whose `until` was below it for good, though nothing it presented
/// came from there: adversarial round 8; and one below `until` whose times `since` advances past it).
/// Every time of a span is at or beyond an element of its lower, and advancing by `since` keeps that
/// order, so the span's lower, advanced, tells.
fn hold_checked_below<'scope, T, B>(
    spans: Spans<'scope, T, B>,
    since: Antichain<T>,
    until: Antichain<T>,
) -> Spans<'scope, T, B>
where
    T: Timestamp + Lattice,
    B: CheckedBatch + Clone + 'static,
{
    if !B::HAS_FILES {
        return spans;
    }
    let scope = spans.scope();
    spans.unary_frontier::<CapacityContainerBuilder<Vec<Span<T, B>>>, _, _, _>(
        Pipeline,
        "HoldUntilChecked",
        move |initial, info| {
            drop(initial);
            let activator = scope.activator_for(info.address);
            // Created with the first span that has a file: the slot its batch's cursors report to.
            let mut checker: Option<SpanChecker<Antichain<T>>> = None;
            let mut held = CapabilitySet::<T>::new();
            move |(input, _frontier), output| {
                input.for_each(|cap, data| {
                    for span in data.iter() {
                        let left_out = !until.is_empty()
                            && span.lower().iter().all(|t| {
                                let mut presented = t.clone();
                                presented.advance_by(since.borrow());
                                until.less_equal(&presented)
                            });
                        if left_out {
                            continue;
                        }
                        if let Some((file, errors)) = span.inner.as_ref().and_then(|b| b.checked_file()) {
                            checker
                                .get_or_insert_with(|| {
                                    SpanChecker::starting_at(errors.clone(), span.lower().clone())
                                })
                                .push_file(Some(file), span.lower().clone(), span.upper().clone());
                        }
                    }
                    let retained = cap.retain_stamp(0);
                    for c in retained.iter() {
                        held.insert(c.clone());
                    }
                    output.session(&cap).give_container(data);
                });
                let Some(checker) = checker.as_mut() else {
                    held = CapabilitySet::new();
                    return;
                };
                if checker.check(CHECK_BLOCKS_PER_ACTIVATION) {
                    activator.activate();
                }
                match checker.unchecked_lower() {
                    None => held = CapabilitySet::new(),
                    Some(lower) => {
                        // Hold at the lower of the first unchecked span, when the held capabilities allow.
                        let allowed = lower
                            .iter()
                            .all(|t| held.iter().any(|c| PartialOrder::less_equal(c.time(), t)));
                        if allowed && !held.is_empty() {
                            held.downgrade(lower.elements());
                        }
                    }
                }
            }
        },
    )
}

/// Importing a byte-level persisted trace ([`PersistedTrace`], as
/// [`ArrangePersisted`](super::ArrangePersisted) makes it) into another dataflow with fail-stop (see the
/// module docs). The typed arrangement's `trace.import(scope)` does this already; DD's plain `import` of
/// the byte-level trace follows the trace's upper, and its times may complete over blocks not yet checked.
pub trait ImportChecked<T: PersistTime> {
    /// DD's `TraceAgent::import`, with the import's times completing only over checked blocks.
    fn import_checked<'scope>(
        &mut self,
        scope: Scope<'scope, T>,
    ) -> Arranged<'scope, TraceAgent<PersistedTrace<T>>>;
}

impl<T: PersistTime> ImportChecked<T> for TraceAgent<PersistedTrace<T>> {
    fn import_checked<'scope>(
        &mut self,
        scope: Scope<'scope, T>,
    ) -> Arranged<'scope, TraceAgent<PersistedTrace<T>>> {
        let arranged = self.import(scope);
        Arranged {
            stream: hold_until_checked(arranged.stream),
            trace: arranged.trace,
        }
    }
}

impl<Tr: Trace<Batch: CheckedBatch> + 'static, K, V, R> TypedTrace<TraceAgent<Tr>, K, V, R> {
    /// DD's `TraceAgent::import`: the arrangement, typed, in another dataflow over the same times. For a
    /// persisted trace the import's times complete only over blocks that passed their checksums
    /// ([`hold_until_checked`]; fail-stop as for the arranging operator, DESIGN.md §5).
    pub fn import<'scope>(
        &mut self,
        scope: Scope<'scope, Tr::Time>,
    ) -> TypedArranged<'scope, TraceAgent<Tr>, K, V, R> {
        self.import_named(scope, "ArrangedSource")
    }

    /// DD's `TraceAgent::import_named`: [`import`](Self::import) with the import operator named `name`.
    pub fn import_named<'scope>(
        &mut self,
        scope: Scope<'scope, Tr::Time>,
        name: &str,
    ) -> TypedArranged<'scope, TraceAgent<Tr>, K, V, R> {
        self.import_core(scope, name).0
    }

    /// DD's `TraceAgent::import_core`: [`import_named`](Self::import_named), and the button that shuts the
    /// import down (its frontier then closes, as DD's, once the blocks it received are checked; a damaged
    /// one holds it, as fail-stop does).
    pub fn import_core<'scope>(
        &mut self,
        scope: Scope<'scope, Tr::Time>,
        name: &str,
    ) -> TypedImport<'scope, TraceAgent<Tr>, K, V, R> {
        let (arranged, button) = self.inner.import_core(scope, name);
        let typed = TypedArranged {
            stream: hold_until_checked(arranged.stream),
            trace: self.with(arranged.trace),
        };
        (typed, button)
    }

    /// DD's `TraceAgent::import_frontier`: the arrangement, typed, in another dataflow, with every time
    /// advanced by the trace's logical compaction frontier (as it is now), so an import of a compacted
    /// trace presents each update once, at a time the trace can still distinguish. Fail-stop as
    /// [`import`](Self::import).
    pub fn import_frontier<'scope>(
        &mut self,
        scope: Scope<'scope, Tr::Time>,
        name: &str,
    ) -> TypedImport<'scope, TraceFrontier<TraceAgent<Tr>>, K, V, R> {
        let since = self.inner.get_logical_compaction().to_owned();
        self.import_frontier_core(scope, name, since, Antichain::new())
    }

    /// DD's `TraceAgent::import_frontier_core`: the updates of times in `[since, until)`, each time first
    /// advanced by `since`; times at or beyond `until` are left out, and the import's frontier closes once
    /// every time is (an empty `until` leaves nothing out). Fail-stop as [`import`](Self::import), over
    /// the spans it presents: one whose every time, advanced by `since`, is at or beyond `until` is not
    /// checked and cannot hold it.
    pub fn import_frontier_core<'scope>(
        &mut self,
        scope: Scope<'scope, Tr::Time>,
        name: &str,
        since: Antichain<Tr::Time>,
        until: Antichain<Tr::Time>,
    ) -> TypedImport<'scope, TraceFrontier<TraceAgent<Tr>>, K, V, R> {
        let (arranged, button) = self
            .inner
            .import_frontier_core(scope, name, since.clone(), until.clone());
        let typed = TypedArranged {
            stream: hold_checked_below(arranged.stream, since, until),
            trace: self.with(arranged.trace),
        };
        (typed, button)
    }
}

/// The button that shuts down an import ([`TypedTrace::import_core`]): DD's.
pub type ImportButton<T> = ShutdownButton<CapabilitySet<T>>;

/// What [`TypedTrace::import_core`] and [`TypedTrace::import_frontier_core`] return: the typed import
/// (over trace `Tr`: DD's `TraceAgent`, or its `TraceFrontier`) and its [`ImportButton`].
pub type TypedImport<'scope, Tr, K, V, R> = (
    TypedArranged<'scope, Tr, K, V, R>,
    ImportButton<<Tr as TraceReader>::Time>,
);
