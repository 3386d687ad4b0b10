//! [`TypedArranged`]: a persisted (or encoded in-memory) arrangement seen with its key and val types, so
//! that DD code ports by changing its `arrange_*` call only. Closures get `&K`, `&V` decoded from the
//! stored bytes; diffs come out as the input's diff type `R` (`isize` for `new_collection()`).
//!
//! - [`ArrangeTyped`] (in [`super::typed_arrange`]): `collection.arrange_by_key_persisted(&store, "id")?` in
//!   place of DD's `arrange_by_key()` (a [`TypedPersisted`]), and `arrange_by_key_encoded()`, the in-memory
//!   arrangement of the same shape, for the other side of a join or for use inside `iterate` (a
//!   [`TypedEncoded`]); [`ArrangeTypedBySelf`] does the same for collections of keys (`arrange_by_self`).
//! - here: `as_collection`, `flat_map_ref`, `enter`, `enter_region`, `trace.import(scope)`;
//! - [`super::typed_join`]: `join_core`, `join`, `join_map`, `semijoin`, `antijoin`;
//! - [`super::typed_reduce`]: `reduce`, `count_total`, `threshold_total`, `distinct_total`.
//!
//! The typed view adds no state: its operators are DD's (or, for `as_collection` and the `*_total`
//! operators, written the way DD writes them) over the byte-keyed trace, with closures that decode. The
//! codecs are order-preserving ([`Codec`]), so the byte order the operators work in is the typed order.
//!
//! **Decode failures.** The stored bytes passed their batch checksum, so a key or val that does not decode
//! as `K` / `V` means the arrangement is read with other types than it was written with (a version or type
//! mismatch) or a codec bug. DD's operator closures cannot return errors, so a typed operator that meets
//! one (or a diff that does not fit `R`, see [`PersistDiff::from_i64`]): records an
//! [`Error::Decode`] naming the stream and the bytes in the arrangement's
//! [`ErrorSlot`] (for a persisted arrangement, its [`PersistHandle`]'s), skips the record, and holds its
//! output frontier for good at or below the time of the failure. Nothing downstream ever sees a time
//! complete whose output may miss the skipped record: a probe stalls, and the slot says why. Drop the
//! dataflow and fix the types. It never panics and never reports a wrong answer as final.

use super::{PersistDiff, PersistHandle};
// The builders' old path (`operators::typed::ArrangeTyped`) still works.
pub use super::typed_arrange::{ArrangeTyped, ArrangeTypedBySelf};
use crate::codec::Codec;
use crate::error::Error;
use crate::trace::{BytesContainer, BytesSpine, ErrorSlot, PersistedTrace};
use differential_dataflow::difference::Semigroup;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::wrappers::enter::TraceEnter;
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, SpanOf, TraceReader};
use differential_dataflow::{AsCollection, Data, VecCollection};
use std::cell::Cell;
use std::marker::PhantomData;
use std::rc::Rc;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::{Scope, Stream};
use timely::progress::timestamp::Refines;

/// A typed persisted arrangement: `collection.arrange_by_key_persisted(&store, id)?`, over times `T`
/// (`u64` by default) with diffs `R` (`isize` by default, what `new_collection()` gives).
pub type TypedPersisted<'scope, K, V, T = u64, R = isize> =
    TypedArranged<'scope, TraceAgent<PersistedTrace<T>>, K, V, R>;

/// A typed in-memory arrangement with a persisted one's key encoding and partitioning:
/// `collection.arrange_by_key_encoded()`, at any time `T` (also inside `iterate`).
pub type TypedEncoded<'scope, K, V, T = u64, R = isize> =
    TypedArranged<'scope, TraceAgent<BytesSpine<T>>, K, V, R>;

/// A trace handle with its key, val and diff types: DD's trace handle (`inner`, also reached through
/// `Deref`, for `set_logical_compaction` and friends), the arrangement's error slot, and for a persisted
/// arrangement its [`PersistHandle`]. [`import`](TypedTrace::import) gives a typed arrangement.
pub struct TypedTrace<Tr, K, V, R> {
    /// DD's trace handle, whose cursors read encoded keys and vals (`&[u8]`) and `i64` diffs.
    pub inner: Tr,
    pub(crate) errors: ErrorSlot,
    pub(crate) handle: Option<PersistHandle>,
    /// The store stream the trace reads, for messages (empty for an in-memory trace).
    pub(crate) origin: Rc<str>,
    types: Types<K, V, R>,
}

/// The key, val and diff types a typed trace stands for (it holds none).
type Types<K, V, R> = PhantomData<fn() -> (K, V, R)>;

impl<Tr: Clone, K, V, R> Clone for TypedTrace<Tr, K, V, R> {
    fn clone(&self) -> Self {
        TypedTrace {
            inner: self.inner.clone(),
            errors: self.errors.clone(),
            handle: self.handle.clone(),
            origin: self.origin.clone(),
            types: PhantomData,
        }
    }
}

impl<Tr, K, V, R> std::ops::Deref for TypedTrace<Tr, K, V, R> {
    type Target = Tr;
    fn deref(&self) -> &Tr {
        &self.inner
    }
}

impl<Tr, K, V, R> std::ops::DerefMut for TypedTrace<Tr, K, V, R> {
    fn deref_mut(&mut self) -> &mut Tr {
        &mut self.inner
    }
}

impl<Tr, K, V, R> TypedTrace<Tr, K, V, R> {
    /// The slot where the typed operators record decode failures (see the module docs); for a persisted
    /// arrangement, the one its [`PersistHandle`] reports.
    pub fn errors(&self) -> &ErrorSlot {
        &self.errors
    }

    /// The handle on the persisting operator: `Some` for an arrangement made by `arrange_by_*_persisted`
    /// (and its imports and `enter`s), `None` for an encoded in-memory one.
    pub fn handle(&self) -> Option<&PersistHandle> {
        self.handle.as_ref()
    }

    /// The same trace with other types (no check: the operators report bytes that do not decode).
    pub(crate) fn with<Tr2, K2, V2, R2>(&self, inner: Tr2) -> TypedTrace<Tr2, K2, V2, R2> {
        TypedTrace {
            inner,
            errors: self.errors.clone(),
            handle: self.handle.clone(),
            origin: self.origin.clone(),
            types: PhantomData,
        }
    }
}

/// What a typed operator asks of a trace: DD's [`TraceReader`] at times `T` (cloneable, `'static`)
/// whose batch cursors read keys and vals as byte slices (keys in a [`BytesContainer`]) with `i64`
/// diffs: the layout of a persisted arrangement and of an encoded in-memory one. Implemented for every
/// such trace; written once here so that each operator's bounds name it in one line.
pub trait BytesTrace:
    TraceReader<Batch: Navigable<Cursor: BytesCursor<<Self as TraceReader>::Time>>> + Clone + 'static
{
}

impl<Tr> BytesTrace for Tr where
    Tr: TraceReader<Batch: Navigable<Cursor: BytesCursor<<Tr as TraceReader>::Time>>> + Clone + 'static
{
}

/// The batch cursor of a [`BytesTrace`]: keys and vals as byte slices, keys in a [`BytesContainer`],
/// times `T`, diffs `i64`. Implemented for every such cursor.
pub trait BytesCursor<T>:
    for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8], Time = T, Diff = i64, KeyContainer = BytesContainer>
{
}

impl<T, C> BytesCursor<T> for C where
    C: for<'a> Cursor<
        Key<'a> = &'a [u8],
        Val<'a> = &'a [u8],
        Time = T,
        Diff = i64,
        KeyContainer = BytesContainer,
    >
{
}

/// An arrangement whose stored keys and vals are the [`Codec`] encodings of `K` and `V`, with `i64`
/// diffs standing for diffs of type `R`, used with DD's operators on `&K` and `&V` (see the module docs
/// and the table in [`crate::operators`]). Fields as DD's `Arranged`: the stream of batches and the trace.
pub struct TypedArranged<'scope, Tr: TraceReader, K, V, R> {
    /// The stream of batches (of encoded updates), as DD's `Arranged::stream`.
    pub stream: Stream<'scope, Tr::Time, Vec<SpanOf<Tr>>>,
    /// The trace, typed.
    pub trace: TypedTrace<Tr, K, V, R>,
}

impl<'scope, Tr: TraceReader + Clone, K, V, R> Clone for TypedArranged<'scope, Tr, K, V, R> {
    fn clone(&self) -> Self {
        TypedArranged {
            stream: self.stream.clone(),
            trace: self.trace.clone(),
        }
    }
}

impl<'scope, Tr: TraceReader + Clone, K, V, R> TypedArranged<'scope, Tr, K, V, R> {
    /// Wraps a byte-keyed arrangement whose keys and vals encode `K` and `V`; typed operators record
    /// decode failures in `errors` (see the module docs).
    pub fn new(arranged: Arranged<'scope, Tr>, errors: ErrorSlot, handle: Option<PersistHandle>) -> Self {
        TypedArranged {
            stream: arranged.stream,
            trace: TypedTrace {
                inner: arranged.trace,
                errors,
                handle,
                origin: Rc::from(""),
                types: PhantomData,
            },
        }
    }

    /// The byte-keyed DD arrangement underneath (keys and vals `&[u8]`, diffs `i64`), e.g. for
    /// [`CountPersisted`](super::CountPersisted) or DD operators over bytes.
    pub fn arranged(&self) -> Arranged<'scope, Tr> {
        Arranged {
            stream: self.stream.clone(),
            trace: self.trace.inner.clone(),
        }
    }

    /// See [`TypedTrace::handle`].
    pub fn handle(&self) -> Option<&PersistHandle> {
        self.trace.handle()
    }

    /// See [`TypedTrace::errors`].
    pub fn errors(&self) -> &ErrorSlot {
        self.trace.errors()
    }

    /// DD's `Arranged::enter`: the arrangement in a nested scope (read-only use inside `iterate`).
    pub fn enter<'inner, TInner>(
        self,
        child: Scope<'inner, TInner>,
    ) -> TypedArranged<'inner, TraceEnter<Tr, TInner>, K, V, R>
    where
        TInner: Refines<Tr::Time> + Lattice,
    {
        let trace = self.trace.clone();
        let entered = self.arranged().enter(child);
        TypedArranged {
            stream: entered.stream,
            trace: trace.with(entered.trace),
        }
    }

    /// DD's `Arranged::enter_region`.
    pub fn enter_region<'inner>(self, child: Scope<'inner, Tr::Time>) -> TypedArranged<'inner, Tr, K, V, R> {
        let entered = self.arranged().enter_region(child);
        TypedArranged {
            stream: entered.stream,
            trace: self.trace,
        }
    }

    /// DD's `Arranged::leave_region`: back out of a region entered with
    /// [`enter_region`](Self::enter_region).
    pub fn leave_region<'outer>(self, outer: Scope<'outer, Tr::Time>) -> TypedArranged<'outer, Tr, K, V, R> {
        let left = self.arranged().leave_region(outer);
        TypedArranged {
            stream: left.stream,
            trace: self.trace,
        }
    }

    /// Where a typed operator reports decode failures.
    pub(crate) fn failures(&self) -> Failures {
        Failures::new(vec![self.trace.errors.clone()], self.trace.origin.clone())
    }
}

impl<'scope, Tr, K, V, R> TypedArranged<'scope, Tr, K, V, R>
where
    Tr: BytesTrace,
    K: Codec + 'static,
    V: Codec + 'static,
    R: PersistDiff,
{
    /// DD's `Arranged::as_collection` with `&K`, `&V`: `logic` maps each decoded `(key, val)` to a record;
    /// diffs are `R`. A key or val that does not decode is skipped and reported (module docs).
    pub fn as_collection<D: Data, L>(self, mut logic: L) -> VecCollection<'scope, Tr::Time, D, R>
    where
        L: FnMut(&K, &V) -> D + 'static,
    {
        self.flat_map_ref(move |k, v| Some(logic(k, v)))
    }

    /// DD's `Arranged::as_vecs`: the `(key, val)` pairs, decoded, with diffs `R`. Decode failures as in
    /// [`as_collection`](Self::as_collection).
    pub fn as_vecs(self) -> VecCollection<'scope, Tr::Time, (K, V), R>
    where
        K: Data,
        V: Data,
    {
        self.as_collection(|k, v| (k.clone(), v.clone()))
    }

    /// DD's `Arranged::flat_map_ref` with `&K`, `&V`. Decode failures as in
    /// [`as_collection`](Self::as_collection).
    pub fn flat_map_ref<I, L>(self, mut logic: L) -> VecCollection<'scope, Tr::Time, I::Item, R>
    where
        I: IntoIterator<Item: Data>,
        L: FnMut(&K, &V) -> I + 'static,
    {
        let failures = self.failures();
        let persisted = self.trace.handle.is_some();
        let output = self.stream.unary(Pipeline, "TypedAsCollection", move |_, _| {
            // Capabilities held for good after a failure (module docs).
            let mut held = Vec::new();
            move |input, output| {
                input.for_each(|time, data| {
                    let failed_before = failures.count();
                    let mut session = output.session(&time);
                    for span in data.iter() {
                        let Some(batch) = span.inner.as_ref() else {
                            continue;
                        };
                        let mut cursor = batch.cursor();
                        while let Some(key_bytes) = cursor.get_key(batch) {
                            if let Some(key) = failures.decode::<K>("key", key_bytes) {
                                while let Some(val_bytes) = cursor.get_val(batch) {
                                    if let Some(val) = failures.decode::<V>("val", val_bytes) {
                                        for datum in logic(&key, &val) {
                                            cursor.map_times(batch, |t, d| {
                                                let diff = <BatchCursor<Tr> as Cursor>::owned_diff(d);
                                                if let Some(diff) = failures.diff::<R>(key_bytes, diff) {
                                                    let t = <BatchCursor<Tr> as Cursor>::owned_time(t);
                                                    session.give((datum.clone(), t, diff));
                                                }
                                            });
                                        }
                                    }
                                    cursor.step_val(batch);
                                }
                            }
                            cursor.step_key(batch);
                        }
                    }
                    if failures.count() > failed_before {
                        held.push(time.retain_stamp(0));
                    }
                });
            }
        });
        if persisted {
            // A persisted arrangement re-emits its batches on restart.
            super::replays::mark_replaying(&output);
        }
        output.as_collection()
    }

    /// An empty collection that holds its frontier for good at the time of every batch of this
    /// arrangement holding a key or val that does not decode (or a diff that does not fit `R`), each
    /// recorded in `failures`. Concatenated to the output of an operator that cannot hold its own
    /// capabilities (DD's join and reduce), it keeps downstream from seeing a time complete whose output
    /// may miss a skipped record. It holds nothing otherwise (also inside `iterate`). Each batch is decoded
    /// once more for it.
    pub(crate) fn guard<D: Data, R2: Semigroup + 'static>(
        &self,
        failures: &Failures,
    ) -> VecCollection<'scope, Tr::Time, D, R2> {
        let failures = failures.clone();
        self.stream
            .clone()
            .unary::<CapacityContainerBuilder<Vec<(D, Tr::Time, R2)>>, _, _, _>(
                Pipeline,
                "TypedGuard",
                move |_, _| {
                    let mut held = Vec::new();
                    move |input, _output| {
                        input.for_each(|time, data| {
                            let failed_before = failures.count();
                            for span in data.iter() {
                                let Some(batch) = span.inner.as_ref() else {
                                    continue;
                                };
                                let mut cursor = batch.cursor();
                                while let Some(key_bytes) = cursor.get_key(batch) {
                                    let _ = failures.decode::<K>("key", key_bytes);
                                    while let Some(val_bytes) = cursor.get_val(batch) {
                                        let _ = failures.decode::<V>("val", val_bytes);
                                        cursor.map_times(batch, |_, d| {
                                            let _ = failures.diff::<R>(
                                                key_bytes,
                                                <BatchCursor<Tr> as Cursor>::owned_diff(d),
                                            );
                                        });
                                        cursor.step_val(batch);
                                    }
                                    cursor.step_key(batch);
                                }
                            }
                            if failures.count() > failed_before {
                                held.push(time.retain_stamp(0));
                            }
                        });
                    }
                },
            )
            .as_collection()
    }
}

/// Where a typed operator reports records it skips: the error slots to record in, and a per-operator
/// count (an operator holds its frontier when it grew during an activation).
#[derive(Clone)]
pub(crate) struct Failures {
    slots: Vec<ErrorSlot>,
    origin: Rc<str>,
    count: Rc<Cell<usize>>,
}

impl Failures {
    pub(crate) fn new(slots: Vec<ErrorSlot>, origin: Rc<str>) -> Self {
        Failures {
            slots,
            origin,
            count: Rc::new(Cell::new(0)),
        }
    }

    /// Also records in `other`'s slots (a binary operator reports to both sides), once per distinct slot.
    pub(crate) fn and(mut self, other: &Failures) -> Self {
        for slot in &other.slots {
            if !self.slots.iter().any(|s| s.same(slot)) {
                self.slots.push(slot.clone());
            }
        }
        if self.origin.is_empty() {
            self.origin = other.origin.clone();
        }
        self
    }

    /// How many records this operator skipped so far.
    pub(crate) fn count(&self) -> usize {
        self.count.get()
    }

    /// Counts a skipped record and records `error()` in every slot.
    pub(crate) fn record(&self, error: impl Fn() -> Error) {
        self.count.set(self.count.get() + 1);
        for slot in &self.slots {
            slot.record(error());
        }
    }

    /// `bytes` decoded as `D`, or `None` after recording an [`Error::Decode`].
    #[inline]
    pub(crate) fn decode<D: Codec>(&self, what: &str, bytes: &[u8]) -> Option<D> {
        match D::decode(bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                self.record(|| {
                    Error::decode(format!(
                        "a {what} of arrangement {:?} does not decode as {} ({error}); bytes {:02x?}: the \
                         arrangement is read with other types than it was written with, or a codec is wrong",
                        self.origin,
                        std::any::type_name::<D>(),
                        crate::codec::truncated(bytes)
                    ))
                });
                None
            }
        }
    }

    /// `diff` as an `R`, or `None` after recording an [`Error::Decode`] naming `key`.
    #[inline]
    pub(crate) fn diff<R: PersistDiff>(&self, key: &[u8], diff: i64) -> Option<R> {
        let converted = R::from_i64(diff);
        if converted.is_none() {
            self.out_of_range::<R>(key, i128::from(diff));
        }
        converted
    }

    /// Records an [`Error::Decode`]: the diff (or count) `value` of `key` does not fit the diff type `R`.
    pub(crate) fn out_of_range<R>(&self, key: &[u8], value: i128) {
        self.record(|| {
            Error::decode(format!(
                "a diff of the key encoded as {:02x?} of arrangement {:?} accumulates to {value}, outside \
                 the diff type {}",
                crate::codec::truncated(key),
                self.origin,
                std::any::type_name::<R>()
            ))
        });
    }
}
