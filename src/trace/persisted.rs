//! [`PersistedTrace`]: a differential dataflow trace over the sealed batches of one store stream, at a
//! [`PersistTime`] `T` (`u64` by default; the store's `u64` times and frontiers are converted by
//! [`antichain`] and [`frontier_value`]).
//!
//! The trace is a list of spans tiling `[0, upper)` in time order: each span is a [`PersistedBatch`]
//! (`inner: Some`) or an update-free interval (`inner: None`), exactly as DD's own traces hand them out.
//! It never merges batches itself. The store merges a stream's batch files in the background; the trace's
//! maintenance ([`Trace::exert`], driven by the arranging operator) *adopts* those merged files in place of
//! the spans they replace, which keeps the number of spans (and so the cursor fan-in) logarithmic and lets
//! the store delete the files merged away (a file lives while any `Arc` to it does).
//!
//! Invariants:
//! - spans are contiguous: the first starts at `[0]`, each starts where the previous ends, and the last
//!   ends at `upper`; no span is empty (`lower != upper`);
//! - a span with updates holds a verified batch file whose updates lie in the span's interval;
//! - adoption only replaces spans ending at or before the physical compaction frontier (readers never ask
//!   for a cut there) and only with files whose `since` is not beyond the logical compaction frontier
//!   (readers' accumulations stay exact at every time they may ask about);
//! - a trace opened on a stream reads its batches as of the stream's `since`
//!   ([`PersistedBatch::from_file_as_of`]: times below it read as it, summed), so the spans it hands out
//!   at a restart read the same whichever merges have run;
//! - the stream's `since` in the store is only ever advanced to times at or before both the logical
//!   compaction frontier and the sealed upper, so a restart never loses a distinction a reader could need;
//!   and only by the stream's writer: maintenance hands the allowed since to the arranging operator
//!   (`AllowedSince`), whose next seal commits it. A reader never edits the manifest.
//!
//! Opening reads no block: it costs the store's batch list and one `BatchFile` per batch (header, footer
//! and index, checked when the store opened the file), so a trace is ready in milliseconds whatever the
//! store's size. Blocks are checked (checksum only: see `batch/reader/` for why the structure need not
//! be) on first touch by a cursor, and in the background by the arranging operator's [`SpanChecker`].
//!
//! **Fail-stop.** A DD cursor cannot return an error. A block that fails its checksum — found by a cursor
//! or by the [`SpanChecker`] — is recorded in the trace's [`ErrorSlot`] with [`ErrorSlot::fail_stop`]
//! (the error names file and offset; the arranging operator's `PersistHandle` reports it): cursors stop
//! serving that batch at the bad block, the checker's checked upper stays at or below the bad span's
//! lower, and the operator holds its frontier there for good. So no time whose data the bad block holds
//! ever completes downstream: output a cursor produced without the block is only ever at incomplete
//! times. (Spans below the checked upper passed every check and are served on: their times are complete
//! and their data right.)
//!
//! Maintenance otherwise runs only after something changed (an insert, a compaction frontier moving) and
//! costs one `Store::sealed` call (a lock and a clone of the batch list). A merged file is checksummed
//! block by block before it is adopted, at most `VERIFY_BLOCKS_PER_EXERT` blocks per call. Advancing the
//! stream's `since` costs no commit of its own: it rides the writer's next seal. Other
//! errors met by maintenance cannot be returned either (DD's `exert` is infallible): they are recorded in
//! the trace's [`ErrorSlot`], and the trace keeps serving the spans it has.

use super::batch::{description, PersistedBatch};
#[cfg(doc)]
use super::SpanChecker;
use super::{antichain, frontier_value, ErrorSlot};
use crate::batch::BatchFile;
use crate::error::{Error, Result};
use crate::operators::PersistTime;
use crate::store::Store;
use crate::FRONTIER_CLOSED;
use differential_dataflow::logging::Logger;
use differential_dataflow::trace::{ExertionLogic, Span, Trace, TraceReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use timely::dataflow::operators::generic::OperatorInfo;
use timely::progress::frontier::AntichainRef;
use timely::progress::Antichain;
use timely::scheduling::Activator;
use timely::PartialOrder;

/// One span of a [`PersistedTrace`] over times `T`.
pub type PersistedSpan<T = u64> = Span<T, PersistedBatch<T>>;

/// The store stream a trace reads, and what its maintenance has done so far.
struct Link {
    store: Store,
    id: String,
    /// The stream's number: a stream dropped and created again under `id` is not this one.
    stream_no: u32,
    /// Set by `insert` and by frontier changes: maintenance has something to look at.
    dirty: bool,
    /// Where maintenance hands the since readers allow to the stream's writer, if it has one.
    allowed: Option<AllowedSince>,
    /// Schedules the operator that exerts this trace while verification of merged files is unfinished.
    activator: Option<Activator>,
}

/// The `since` a trace's readers allow for its stream, handed from the trace's maintenance to the stream's
/// writer (the arranging operator's [`Persister`](crate::operators)), which commits it with its next seal:
/// the manifest is only ever edited by the stream's writer, never by a reader, and advancing the since
/// costs no commit of its own. Holds a store time, at or below the trace's logical compaction frontier
/// and the stream's sealed upper; it only grows.
#[derive(Clone, Debug, Default)]
pub(crate) struct AllowedSince(Arc<AtomicU64>);

impl AllowedSince {
    /// The since allowed so far (0 until readers allow more).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn raise(&self, since: u64) {
        self.0.fetch_max(since, Ordering::Relaxed);
    }
}

/// Blocks of merged batch files checksummed per call of [`Trace::exert`] (about 16 MiB at the default
/// block size): adoption spreads the checking of a large merged file over several activations.
pub(crate) const VERIFY_BLOCKS_PER_EXERT: usize = 256;

/// A trace over persisted batches: see the module docs.
pub struct PersistedTrace<T = u64> {
    spans: Vec<PersistedSpan<T>>,
    upper: Antichain<T>,
    logical: Antichain<T>,
    physical: Antichain<T>,
    link: Option<Link>,
    errors: ErrorSlot,
}

impl<T: PersistTime> PersistedTrace<T> {
    /// An empty trace (upper `[0]`) linked to no store.
    pub fn empty() -> Self {
        PersistedTrace {
            spans: Vec::new(),
            upper: Antichain::from_elem(T::minimum()),
            logical: Antichain::from_elem(T::minimum()),
            physical: Antichain::from_elem(T::minimum()),
            link: None,
            errors: ErrorSlot::default(),
        }
    }

    /// The sealed part of stream `id` of `store` as a trace: one span per batch file and one per gap
    /// between them, covering `[0, upper)`. Reads no block (they are checked on first touch, and in the
    /// background by the operator's [`SpanChecker`]; see the module docs), so it takes milliseconds at any
    /// size. Its
    /// logical compaction frontier starts at the stream's `since`. The trace stays linked to the stream:
    /// maintenance adopts the store's merged batches. (The stream's `since` is advanced by its writer: an
    /// arranging operator hands its trace's allowed since to its seals; a trace opened here does not.)
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], [`Error::Corrupt`] (batches overlap),
    /// [`Error::BadInput`] (a batch holds times beyond `T`'s range, or a persisted operator wrote the stream
    /// at times stored otherwise than `T`'s: [`PersistTime::stored_as`]). A damaged block is not an error here:
    /// it stops the trace when met (fail-stop, module docs).
    ///
    /// With times other than `u64`, name the type: `PersistedTrace::<u32>::open(&store, id)`.
    pub fn open(store: &Store, id: &str) -> Result<Self> {
        // Types, number and batches from one version.
        let version = store.version(id)?;
        let stream_no = version.stream_no();
        crate::operators::refuse_other_time::<T>(id, &version.meta().types)?;
        let sealed = crate::read::Sealed::of(&version);
        let mut trace = PersistedTrace::<T>::empty();
        for span in tile(&sealed.batches, sealed.upper, sealed.since, id)? {
            trace.push(span);
        }
        trace.logical = antichain(sealed.since);
        trace.link = Some(Link {
            store: store.clone(),
            id: id.to_string(),
            stream_no,
            dirty: false,
            allowed: None,
            activator: None,
        });
        Ok(trace)
    }

    /// The upper frontier: every update of the stream below it is in the trace.
    pub fn upper(&self) -> &Antichain<T> {
        &self.upper
    }

    /// Number of spans, with and without updates.
    pub fn span_count(&self) -> usize {
        self.spans.len()
    }

    /// The id of the store stream the trace reads (`None` for a trace linked to no store).
    pub fn stream_id(&self) -> Option<&str> {
        self.link.as_ref().map(|l| l.id.as_str())
    }

    /// Where maintenance records the errors it cannot return.
    pub fn errors(&self) -> &ErrorSlot {
        &self.errors
    }

    /// Shares `errors` as this trace's error slot (so an operator and its trace report in one place); its
    /// batches' cursors report there too.
    pub fn set_errors(&mut self, errors: ErrorSlot) {
        for span in &mut self.spans {
            if let Some(batch) = span.inner.take() {
                span.inner = Some(batch.reporting_to(errors.clone()));
            }
        }
        self.errors = errors;
    }

    /// Has `activator` scheduled while maintenance has unfinished work (checking merged files), so that
    /// work proceeds even when nothing else activates the operator that exerts the trace.
    pub fn set_activator(&mut self, activator: Activator) {
        if let Some(link) = self.link.as_mut() {
            link.activator = Some(activator);
        }
    }

    /// Hands the since this trace's readers allow to the stream's writer through `allowed` (see
    /// [`AllowedSince`]); without it, the trace never advances the stream's since.
    pub(crate) fn allow_since_through(&mut self, allowed: AllowedSince) {
        if let Some(link) = self.link.as_mut() {
            link.allowed = Some(allowed);
        }
    }

    /// Removes and returns every span, leaving the trace empty (upper `[0]`) but linked, with its
    /// compaction frontiers: for replaying the spans through a `TraceWriter`, which starts at `[0]`.
    pub(crate) fn take_spans(&mut self) -> Vec<PersistedSpan<T>> {
        self.upper = Antichain::from_elem(T::minimum());
        std::mem::take(&mut self.spans)
    }

    /// Appends `span`, which must start at the trace's upper and not be empty; its batch reports to the
    /// trace's error slot.
    fn push(&mut self, mut span: PersistedSpan<T>) {
        if let Some(batch) = span.inner.take() {
            span.inner = Some(batch.reporting_to(self.errors.clone()));
        }
        self.upper.clone_from(span.upper());
        self.spans.push(span);
    }

    /// Maintenance: adopt merged batches from the store, then hand the allowed since to the writer.
    fn maintain(&mut self) -> Result<()> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        if !std::mem::take(&mut link.dirty) {
            return Ok(());
        }
        let (store, id) = (link.store.clone(), link.id.clone());
        // Dropped (`Store::drop_stream`), perhaps created again under the id: not this trace's stream.
        // The number and the batches come from one version.
        let version = store.version(&id)?;
        if version.stream_no() != link.stream_no {
            return Err(Error::UnknownStream { id });
        }
        let sealed = crate::read::Sealed::of(&version);
        self.adopt(&sealed.batches, sealed.upper, &id)?;
        if let Some(allowed) = self.link.as_ref().and_then(|l| l.allowed.as_ref()) {
            let since = frontier_value(self.logical.borrow()).min(sealed.upper);
            if since != FRONTIER_CLOSED {
                allowed.raise(since);
            }
        }
        Ok(())
    }

    /// Replaces the longest prefix of spans that the store's current batches tile more coarsely, within
    /// the physical and logical compaction frontiers.
    fn adopt(&mut self, batches: &[Arc<BatchFile>], store_upper: u64, id: &str) -> Result<()> {
        let limit = frontier_value(self.physical.borrow())
            .min(store_upper)
            .min(frontier_value(self.upper.borrow()));
        let logical = frontier_value(self.logical.borrow());
        // The store's tiling of [0, store_upper), cut before the first tile we may not adopt.
        let mut tiles = Vec::new();
        let mut at = 0;
        for b in batches {
            let d = b.description();
            if d.upper > limit || d.since > logical {
                break;
            }
            if d.lower > at {
                tiles.push((at, d.lower, None));
            }
            tiles.push((d.lower, d.upper, Some(b)));
            at = d.upper;
        }
        let next_lower = batches.iter().map(|b| b.description().lower).find(|&l| l >= at);
        let gap_end = next_lower.unwrap_or(store_upper).min(limit);
        if gap_end > at {
            tiles.push((at, gap_end, None));
        }
        if tiles.is_empty() {
            return Ok(());
        }
        // Keep the tiles up to the last boundary that is also one of ours.
        let ours: Vec<u64> = self
            .spans
            .iter()
            .map(|s| frontier_value(s.upper().borrow()))
            .collect();
        while let Some(&(_, hi, _)) = tiles.last() {
            if ours.contains(&hi) {
                break;
            }
            tiles.pop();
        }
        let Some(&(_, boundary, _)) = tiles.last() else {
            return Ok(());
        };
        let replaced = ours.iter().position(|&u| u == boundary).map_or(0, |i| i + 1);
        let same = replaced == tiles.len()
            && tiles.iter().zip(&self.spans).all(|((lo, hi, file), span)| {
                frontier_value(span.lower().borrow()) == *lo
                    && frontier_value(span.upper().borrow()) == *hi
                    && match (file, &span.inner) {
                        (Some(f), Some(b)) => b.file().is_some_and(|g| Arc::ptr_eq(f, g)),
                        (None, None) => true,
                        _ => false,
                    }
            });
        if same {
            return Ok(());
        }
        // Merged files are new to us: check their blocks, a bounded number per call, before adopting.
        let mut fuel = VERIFY_BLOCKS_PER_EXERT;
        for file in tiles.iter().filter_map(|t| t.2) {
            for i in 0..file.block_count() {
                if fuel == 0 {
                    if let Some(link) = self.link.as_mut() {
                        link.dirty = true;
                        if let Some(activator) = &link.activator {
                            activator.activate();
                        }
                    }
                    return Ok(());
                }
                if file.verified_block(i).is_none() {
                    file.block(i)?;
                    fuel -= 1;
                }
            }
        }
        let mut fresh = Vec::with_capacity(tiles.len());
        for (lo, hi, file) in tiles {
            // A span we already serve over the same file and interval is reused as it is (no re-checks).
            let kept = self.spans[..replaced].iter().find(|s| {
                frontier_value(s.lower().borrow()) == lo
                    && frontier_value(s.upper().borrow()) == hi
                    && match (file, &s.inner) {
                        (Some(f), Some(b)) => b.file().is_some_and(|g| Arc::ptr_eq(f, g)),
                        _ => false,
                    }
            });
            if let Some(span) = kept {
                fresh.push(span.clone());
                continue;
            }
            let since = file.map_or(0, |f| f.description().since);
            let desc = description(lo, hi, since)?;
            // Every block's checksum is checked by now.
            let inner = file
                .map(|f| PersistedBatch::new(f.clone(), desc.clone()))
                .transpose()?
                .map(|b| b.reporting_to(self.errors.clone()));
            fresh.push(Span::new(desc, inner));
        }
        if fresh.is_empty() {
            return Err(Error::bad_input(format!("stream {id:?}: nothing to adopt")));
        }
        self.spans.splice(..replaced, fresh);
        Ok(())
    }
}

/// The spans tiling `[0, upper)` for `batches` (oldest first, non-overlapping), gaps included, each batch
/// read as of the stream's `since` ([`PersistedBatch::from_file_as_of`]).
fn tile<T: PersistTime>(
    batches: &[Arc<BatchFile>],
    upper: u64,
    since: u64,
    id: &str,
) -> Result<Vec<PersistedSpan<T>>> {
    let mut spans = Vec::with_capacity(batches.len() * 2 + 1);
    let mut at = 0;
    for b in batches {
        let d = b.description();
        if d.lower < at || d.upper > upper || d.lower >= d.upper {
            return Err(Error::corrupt(
                b.name(),
                0,
                format!("batch [{}, {}) out of order in stream {id:?}", d.lower, d.upper),
            ));
        }
        if d.lower > at {
            spans.push(Span::new(description(at, d.lower, 0)?, None));
        }
        // The span's description is the batch's own (read as of the stream's since).
        let batch = PersistedBatch::from_file_as_of(b.clone(), since)?;
        spans.push(Span::new(batch.description().clone(), Some(batch)));
        at = d.upper;
    }
    if upper > at {
        spans.push(Span::new(description(at, upper, 0)?, None));
    }
    Ok(spans)
}

impl<T: PersistTime> TraceReader for PersistedTrace<T> {
    type Time = T;
    type Batch = PersistedBatch<T>;

    /// The spans with updates wholly below `upper`; `None` if `upper` cuts through one (readers hold the
    /// physical compaction frontier at their cuts, so this does not happen to them).
    fn spans_through(&mut self, upper: AntichainRef<T>) -> Option<Vec<PersistedSpan<T>>> {
        if upper.less_equal(&T::minimum()) {
            return Some(Vec::new());
        }
        let mut out = Vec::new();
        for span in self.spans.iter().filter(|s| s.has_updates()) {
            let include_lower = PartialOrder::less_equal(&span.lower().borrow(), &upper);
            let include_upper = PartialOrder::less_equal(&span.upper().borrow(), &upper);
            if include_lower != include_upper && upper != span.lower().borrow() {
                return None;
            }
            if include_upper {
                out.push(span.clone());
            }
        }
        Some(out)
    }

    fn set_logical_compaction(&mut self, frontier: AntichainRef<T>) {
        if self.logical.borrow() != frontier {
            self.logical = frontier.to_owned();
            if let Some(link) = self.link.as_mut() {
                link.dirty = true;
            }
        }
    }

    fn get_logical_compaction(&mut self) -> AntichainRef<'_, T> {
        self.logical.borrow()
    }

    fn set_physical_compaction(&mut self, frontier: AntichainRef<'_, T>) {
        if self.physical.borrow() != frontier {
            self.physical = frontier.to_owned();
            if let Some(link) = self.link.as_mut() {
                link.dirty = true;
            }
        }
    }

    fn get_physical_compaction(&mut self) -> AntichainRef<'_, T> {
        self.physical.borrow()
    }

    fn map_spans<F: FnMut(&PersistedSpan<T>)>(&self, mut f: F) {
        for span in &self.spans {
            f(span)
        }
    }
}

impl<T: PersistTime> Trace for PersistedTrace<T> {
    /// An empty trace linked to no store (DD's constructor for operator-made traces).
    fn new(_info: OperatorInfo, _logging: Option<Logger>, _activator: Option<Activator>) -> Self {
        PersistedTrace::empty()
    }

    /// Maintenance, when something changed since the last call: adopts merged batches from the store and
    /// hands the since its readers allow to the stream's writer (see the module docs). Errors go to [`errors`](Self::errors).
    fn exert(&mut self) {
        if let Err(e) = self.maintain() {
            self.errors.record(e);
        }
    }

    /// Ignored: the store's compaction decides how much merge work to do.
    fn set_exert_logic(&mut self, _logic: ExertionLogic) {}

    /// Appends `span`. A span that does not start at the trace's upper, or is empty, would break the
    /// trace's tiling: it is refused and recorded as an error (DD's `TraceWriter` checks the same first).
    fn insert(&mut self, span: PersistedSpan<T>) {
        if span.lower() != &self.upper || span.lower() == span.upper() {
            self.errors.record(Error::bad_input(format!(
                "span [{:?}, {:?}) does not extend a trace at {:?}",
                span.lower(),
                span.upper(),
                self.upper
            )));
            return;
        }
        if let Some(link) = self.link.as_mut() {
            link.dirty = true;
        }
        self.push(span);
    }

    fn close(&mut self) {
        if !self.upper.is_empty() {
            self.insert(Span::empty(self.upper.clone(), Antichain::new()));
        }
    }
}
