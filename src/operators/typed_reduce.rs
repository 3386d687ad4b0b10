//! Reductions of a [`TypedArranged`] with DD's signatures: `reduce` (typed input `&[(&V, R)]`, typed
//! output `VecCollection<(K, V2), R2>`), and over totally ordered times `count_total`, `threshold_total`,
//! `threshold_semigroup`, `distinct_total`.
//!
//! `reduce` is DD's `reduce_core` over the byte-keyed trace, with a closure that decodes each key and
//! its vals before calling the user's logic; its output is arranged in memory with the key as stored and
//! the typed `V2` vals (no re-encoding), then flattened with the key decoded. `reduce_abelian` and
//! `reduce_core` take DD's type arguments (builder, trace) and arrange that output once more into the
//! caller's trace type, keyed by `&K` and placed on workers by DD's `Hashable` as DD's own arrangements
//! are (DD's reduce keeps the input's key read type, `&[u8]` here, so it cannot output `&K` keys itself).
//!
//! The `*_total` operators are written as DD writes `count_total` / `threshold_total` (for each key in a
//! new batch, its count before the batch is read from the trace, then the batch's updates are applied in
//! time order), but they read any val type (a key's count is the sum of the diffs of all its `(key, val)`
//! pairs, i.e. DD's `as_collection(|k, _| k).count_total()`), sum exactly in `i128`, and convert the
//! counts to the diff type `R` ([`PersistDiff::from_i64`]). Decode failures, and counts that do not fit
//! `R` (reported as [`Error::Decode`]): see [`super::typed`] (recorded, skipped, output frontier held for
//! good).

use super::typed::{BytesTrace, TypedArranged};
use super::PersistDiff;
use crate::codec::Codec;
use crate::error::Error;
use crate::trace::BytesContainer;
use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::{MergeBatcher, Sealer};
use differential_dataflow::consolidation::consolidate;
use differential_dataflow::difference::{Abelian, Semigroup};
use differential_dataflow::hashable::Hashable;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::operators::arrange::{Arranged, TraceAgent};
use differential_dataflow::trace::cursor::{cursor_list, BatchDiff, BatchValOwn};
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, OrdValBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{ContainerChunker, OffsetList};
use differential_dataflow::trace::{BatchCursor, Cursor, Navigable, Trace};
use differential_dataflow::{AsCollection, Data, ExchangeData, VecCollection};
use std::rc::Rc;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::CapabilitySet;
use timely::order::TotalOrder;
use timely::progress::{Antichain, Timestamp};

/// Column layout of a typed `reduce`'s output arrangement: keys as stored (bytes), typed vals `V2`,
/// times `T`, diffs `R2`.
pub type ReduceLayout<V2, T, R2> = (BytesContainer, Vec<V2>, Vec<T>, Vec<R2>, OffsetList);
/// The in-memory spine of a typed `reduce`'s output.
pub type ReduceSpine<V2, T, R2> = Spine<Rc<OrdValBatch<ReduceLayout<V2, T, R2>>>>;
/// The builder of a typed `reduce`'s output batches.
pub type ReduceBuilder<V2, T, R2> = OrdValBuilder<ReduceLayout<V2, T, R2>, Vec<((Vec<u8>, V2), T, R2)>>;

impl<'scope, Tr, K, V, R> TypedArranged<'scope, Tr, K, V, R>
where
    Tr: BytesTrace,
    K: Codec + Data,
    V: Codec + Data,
    R: PersistDiff,
{
    /// DD's `reduce`: for each key with records, `logic(&key, &[(&val, r)], &mut output)` with the vals in
    /// order and their accumulated diffs; the output `(val2, r2)` pairs become `((key, val2), r2)`.
    pub fn reduce<L, V2, R2>(self, logic: L) -> VecCollection<'scope, Tr::Time, (K, V2), R2>
    where
        L: FnMut(&K, &[(&V, R)], &mut Vec<(V2, R2)>) + 'static,
        V2: Data,
        R2: Ord + Abelian + 'static,
    {
        self.reduce_named("TypedReduce", logic)
    }

    /// [`reduce`](Self::reduce), with the operator named `name`.
    pub fn reduce_named<L, V2, R2>(self, name: &str, logic: L) -> VecCollection<'scope, Tr::Time, (K, V2), R2>
    where
        L: FnMut(&K, &[(&V, R)], &mut Vec<(V2, R2)>) + 'static,
        V2: Data,
        R2: Ord + Abelian + 'static,
    {
        self.reduce_typed(name, abelian(logic))
    }

    /// DD's `reduce_abelian::<L, Bu, T2>(name, logic)`: [`reduce`](Self::reduce) whose output is arranged
    /// into DD's trace type `T2` by the builder `Bu` (e.g. `ValBuilder<_, _, _, _>`, `ValSpine<_, _, _, _>`),
    /// with `&K` keys partitioned by DD's `Hashable` as DD's own arrangements are, so the result joins with
    /// them. The output vals may be of another type than the input's. The reduction runs over the persisted
    /// byte-keyed trace and its output is arranged once more, keyed by `K` (one more copy of the output
    /// than DD's in-memory `reduce_abelian`, which keys both by `&K`). `Bu` must also be DD's batch
    /// sealer of the output updates (`ValBuilder` and `KeyBuilder` are).
    pub fn reduce_abelian<L, Bu, T2>(self, name: &str, logic: L) -> Arranged<'scope, TraceAgent<T2>>
    where
        K: ExchangeData + Hashable,
        T2: Trace<Batch: Navigable, Time = Tr::Time> + 'static,
        for<'a> BatchCursor<T2>:
            Cursor<Key<'a> = &'a K, ValOwn: ExchangeData, Time = T2::Time, Diff: ExchangeData + Abelian>,
        Bu: Sealer<Vec<((K, BatchValOwn<T2>), Tr::Time, BatchDiff<T2>)>, Output: Into<T2::Batch>> + 'static,
        L: FnMut(&K, &[(&V, R)], &mut Vec<(BatchValOwn<T2>, BatchDiff<T2>)>) + 'static,
    {
        self.reduce_core::<_, Bu, T2>(name, abelian(logic))
    }

    /// DD's `reduce_core::<L, Bu, T2>(name, logic)`: `logic(&key, &[(&val, r)], &output, &mut change)`
    /// with the key's current output (vals and diffs, consolidated) and the changes to make to it, called
    /// also for a key whose input is empty but whose output is not; arranged as
    /// [`reduce_abelian`](Self::reduce_abelian)'s output.
    pub fn reduce_core<L, Bu, T2>(self, name: &str, logic: L) -> Arranged<'scope, TraceAgent<T2>>
    where
        K: ExchangeData + Hashable,
        T2: Trace<Batch: Navigable, Time = Tr::Time> + 'static,
        for<'a> BatchCursor<T2>:
            Cursor<Key<'a> = &'a K, ValOwn: ExchangeData, Time = T2::Time, Diff: ExchangeData + Semigroup>,
        Bu: Sealer<Vec<((K, BatchValOwn<T2>), Tr::Time, BatchDiff<T2>)>, Output: Into<T2::Batch>> + 'static,
        L: FnMut(
                &K,
                &[(&V, R)],
                &mut Vec<(BatchValOwn<T2>, BatchDiff<T2>)>,
                &mut Vec<(BatchValOwn<T2>, BatchDiff<T2>)>,
            ) + 'static,
    {
        type Update<K, V2, T, R2> = ((K, V2), T, R2);
        let output = self.reduce_typed(name, logic);
        let exchange = Exchange::new(|update: &Update<K, BatchValOwn<T2>, Tr::Time, BatchDiff<T2>>| {
            (update.0).0.hashed().into()
        });
        arrange_core::<
            _,
            _,
            MergeBatcher<
                ContainerChunker<Vec<Update<K, BatchValOwn<T2>, Tr::Time, BatchDiff<T2>>>>,
                VecMerger<(K, BatchValOwn<T2>), Tr::Time, BatchDiff<T2>>,
                Bu,
            >,
            T2,
        >(
            output.inner,
            exchange,
            &format!("Arrange: {name}"),
            MergeBatcher::new,
        )
    }

    /// The reduction under every typed `reduce*`: DD's `reduce_core` over the byte-keyed trace, the key
    /// and vals decoded for `logic` (a key or val that does not decode, or a diff that does not fit `R`,
    /// is reported and the key left unchanged), the output arranged in memory with the key as stored and
    /// typed `V2` vals, then flattened with the key decoded; the guard holds the frontier on a failure.
    fn reduce_typed<L, V2, R2>(self, name: &str, mut logic: L) -> VecCollection<'scope, Tr::Time, (K, V2), R2>
    where
        L: FnMut(&K, &[(&V, R)], &mut Vec<(V2, R2)>, &mut Vec<(V2, R2)>) + 'static,
        V2: Data,
        R2: Ord + Semigroup + 'static,
    {
        let failures = self.failures();
        let guard = self.guard(&failures);
        let f = failures.clone();
        let mut vals: Vec<(V, i128)> = Vec::new();
        let reduced = self
            .arranged()
            .reduce_core::<_, ReduceBuilder<V2, Tr::Time, R2>, ReduceSpine<V2, Tr::Time, R2>, BytesContainer, _>(
                name,
                move |k: &[u8], input: &[(&[u8], i64)], output: &mut Vec<(V2, R2)>, change: &mut Vec<(V2, R2)>| {
                    let Some(key) = f.decode::<K>("key", k) else { return };
                    vals.clear();
                    for (v, d) in input {
                        let Some(v) = f.decode::<V>("val", v) else { return };
                        vals.push((v, i128::from(*d)));
                    }
                    // DD hands `logic` the vals in `Ord` order, each once. Stored vals come in the order
                    // of their encodings, which a codec may give otherwise (a serde enum with explicit
                    // discriminants: `Ord` follows them, serde the declaration order), and persisted in
                    // separate batches no operator compared them: sort, and sum `Ord`-equal vals.
                    if !vals.is_sorted_by(|a, b| a.0 < b.0) {
                        vals.sort_by(|a, b| a.0.cmp(&b.0));
                        vals.dedup_by(|later, kept| {
                            let equal = later.0 == kept.0;
                            if equal {
                                kept.1 += later.1;
                            }
                            equal
                        });
                        vals.retain(|(_, d)| *d != 0);
                    }
                    let mut refs: Vec<(&V, R)> = Vec::with_capacity(vals.len());
                    for (v, d) in vals.iter() {
                        let Ok(d) = i64::try_from(*d) else {
                            f.out_of_range::<R>(k, *d);
                            return;
                        };
                        let Some(d) = f.diff::<R>(k, d) else { return };
                        refs.push((v, d));
                    }
                    logic(&key, &refs, output, change);
                },
                |buffer, key: &[u8], updates| {
                    buffer.clear();
                    buffer.extend(updates.drain(..).map(|(v, t, r)| ((key.to_vec(), v), t, r)));
                },
            );
        let f = failures.clone();
        let output =
            reduced.flat_map_ref(move |k: &[u8], v: &V2| f.decode::<K>("key", k).map(|k| (k, v.clone())));
        output.concat(guard)
    }
}

/// A key's output vals with their diffs (its current output, or the changes to make to it).
type Changes<V2, R2> = Vec<(V2, R2)>;

/// A `reduce_core` logic: `(key, input, current output, changes)`.
trait CoreLogic<K, V, R, V2, R2>: FnMut(&K, &[(&V, R)], &mut Changes<V2, R2>, &mut Changes<V2, R2>) {}
impl<K, V, R, V2, R2, F> CoreLogic<K, V, R, V2, R2> for F where
    F: FnMut(&K, &[(&V, R)], &mut Changes<V2, R2>, &mut Changes<V2, R2>)
{
}

/// DD's `reduce_abelian` as a `reduce_core` logic: the key's new output is `logic`'s (nothing for an empty
/// input), the change is that minus the current output, consolidated.
fn abelian<K, V, R, V2: Ord, R2: Abelian>(
    mut logic: impl FnMut(&K, &[(&V, R)], &mut Changes<V2, R2>),
) -> impl CoreLogic<K, V, R, V2, R2> {
    move |key, input, output, change| {
        if !input.is_empty() {
            logic(key, input, change);
        }
        change.extend(output.drain(..).map(|(v, mut r)| {
            r.negate();
            (v, r)
        }));
        consolidate(change);
    }
}

impl<'scope, Tr, K, V, R> TypedArranged<'scope, Tr, K, V, R>
where
    Tr: BytesTrace<Time: TotalOrder>,
    K: Codec + Data,
    V: 'static,
    R: PersistDiff,
{
    /// DD's `count_total`: `((key, count), ±1)` with `count` the key's accumulated diff (over all its vals)
    /// as an `R`; keys with count zero are absent.
    pub fn count_total(self) -> VecCollection<'scope, Tr::Time, (K, R), isize> {
        self.count_total_core()
    }

    /// DD's `count_total_core`: [`count_total`](Self::count_total) with output diffs of type `R2`
    /// (`R2::from(1)` and `R2::from(-1)`), e.g. `i32`.
    pub fn count_total_core<R2>(self) -> VecCollection<'scope, Tr::Time, (K, R), R2>
    where
        R2: differential_dataflow::difference::Semigroup + From<i8> + 'static,
    {
        self.total("TypedCountTotal", |key, _prior, old, new, out| {
            if let Some(old) = old {
                out.push(((key.clone(), old), R2::from(-1)));
            }
            if let Some(new) = new {
                out.push(((key.clone(), new), R2::from(1)));
            }
        })
    }

    /// DD's `threshold_total`: each key with weight `thresh(&key, &count)` (for non-zero counts; a zero
    /// count thresholds to zero).
    pub fn threshold_total<R2, F>(self, mut thresh: F) -> VecCollection<'scope, Tr::Time, K, R2>
    where
        R2: Abelian + 'static,
        F: FnMut(&K, &R) -> R2 + 'static,
    {
        self.total("TypedThresholdTotal", move |key, _prior, old, new, out| {
            let mut diff = new.map_or_else(R2::zero, |new| thresh(key, &new));
            if let Some(old) = old {
                let mut old = thresh(key, &old);
                old.negate();
                diff.plus_equals(&old);
            }
            if !diff.is_zero() {
                out.push((key.clone(), diff));
            }
        })
    }

    /// DD's `threshold_semigroup`: for each time at which a key's count changes,
    /// `thresh(&key, &new_count, old_count)` with `old_count` `None` when the key had no update before
    /// (DD: no update in the trace or earlier in the batch) and `Some(&count)` otherwise, zero included;
    /// a `Some(r2)` output that is not zero goes out as `(key, r2)` at the time. `threshold_total` is this
    /// with zero counts treated as absent. (DD calls `thresh` for each of a key's times in a batch; a time
    /// at which the key's vals' diffs cancel, possible here since the count sums over every val, leaves
    /// the count unchanged and is skipped.)
    pub fn threshold_semigroup<R2, F>(self, mut thresh: F) -> VecCollection<'scope, Tr::Time, K, R2>
    where
        R2: Semigroup + 'static,
        F: FnMut(&K, &R, Option<&R>) -> Option<R2> + 'static,
    {
        self.total("TypedThresholdSemigroup", move |key, prior, old, new, out| {
            // Every diff type holds zero (`PersistDiff::from_i64`'s contract); a type that did not
            // would have no count to pass.
            let Some(zero) = R::from_i64(0) else { return };
            let old = prior.then(|| old.unwrap_or(zero));
            if let Some(diff) = thresh(key, &new.unwrap_or(zero), old.as_ref()) {
                if !diff.is_zero() {
                    out.push((key.clone(), diff));
                }
            }
        })
    }

    /// DD's `distinct_total`: each key with a non-zero count, once.
    pub fn distinct_total(self) -> VecCollection<'scope, Tr::Time, K, isize> {
        self.distinct_total_core()
    }

    /// DD's `distinct_total_core`: [`distinct_total`](Self::distinct_total) with output diffs of type `R2`.
    pub fn distinct_total_core<R2: Abelian + From<i8> + 'static>(
        self,
    ) -> VecCollection<'scope, Tr::Time, K, R2> {
        self.threshold_total(|_, _| R2::from(1))
    }

    /// The driver of the `*_total` operators (module docs): `emit(&key, prior, old, new, &mut out)` for each
    /// change of a key's count at a time, `None` standing for zero and `prior` telling whether the key had
    /// any update before the time (in the trace or at an earlier time of the batch); `out`'s records go out
    /// at the time.
    fn total<D, R2, F>(self, name: &str, mut emit: F) -> VecCollection<'scope, Tr::Time, D, R2>
    where
        D: Data,
        R2: Semigroup + 'static,
        F: FnMut(&K, bool, Option<R>, Option<R>, &mut Vec<(D, R2)>) + 'static,
    {
        let failures = self.failures();
        let mut trace = self.trace.inner.clone();
        self.stream
            .unary_frontier(Pipeline, name, move |_, _| {
                let mut lower = Antichain::from_elem(Tr::Time::minimum());
                let mut upper = Antichain::from_elem(Tr::Time::minimum());
                let mut held = Vec::new();
                let mut times: Vec<(Tr::Time, i128)> = Vec::new();
                let mut out = Vec::new();
                move |(input, _frontier), output| {
                    lower.clone_from(&upper);
                    let mut batches = Vec::new();
                    let mut caps = CapabilitySet::new();
                    input.for_each(|capability, spans| {
                        for capability in capability.retain_stamp(0).iter() {
                            caps.insert(capability.clone());
                        }
                        for span in spans.drain(..) {
                            upper.clone_from(span.upper()); // spans arrive in order
                            batches.extend(span.inner);
                        }
                    });
                    if !caps.is_empty() {
                        let failed_before = failures.count();
                        let Some(prior) = trace.batches_through(lower.borrow()) else {
                            failures.record(|| {
                                Error::bad_input("a trace span straddles a total operator's lower bound")
                            });
                            held.push(caps);
                            return;
                        };
                        let mut session = output.session(&caps);
                        let (mut batch_cursor, batch_storage) = cursor_list(batches);
                        let (mut trace_cursor, trace_storage) = cursor_list(prior);
                        while let Some(k) = batch_cursor.get_key(&batch_storage) {
                            let Some(key) = failures.decode::<K>("key", k) else {
                                batch_cursor.step_key(&batch_storage);
                                continue;
                            };
                            let mut count = 0i128;
                            trace_cursor.seek_key(&trace_storage, k);
                            // Whether the trace holds an update of the key (one that consolidated away
                            // below the since does not count, as in DD's compacted trace).
                            let mut prior = false;
                            if trace_cursor.get_key(&trace_storage) == Some(k) {
                                while trace_cursor.val_valid(&trace_storage) {
                                    trace_cursor.map_times(&trace_storage, |_, d| {
                                        prior = true;
                                        count += i128::from(<BatchCursor<Tr> as Cursor>::owned_diff(d))
                                    });
                                    trace_cursor.step_val(&trace_storage);
                                }
                            }
                            times.clear();
                            while batch_cursor.val_valid(&batch_storage) {
                                batch_cursor.map_times(&batch_storage, |t, d| {
                                    let t = <BatchCursor<Tr> as Cursor>::owned_time(t);
                                    times.push((t, i128::from(<BatchCursor<Tr> as Cursor>::owned_diff(d))));
                                });
                                batch_cursor.step_val(&batch_storage);
                            }
                            times.sort_by(|a, b| a.0.cmp(&b.0));
                            let mut i = 0;
                            while i < times.len() {
                                let time = times[i].0.clone();
                                let old = count;
                                while i < times.len() && times[i].0 == time {
                                    count += times[i].1;
                                    i += 1;
                                }
                                if count == old {
                                    continue;
                                }
                                let seen = std::mem::replace(&mut prior, true);
                                let (Some(old), Some(new)) = (as_diff::<R>(old), as_diff::<R>(count)) else {
                                    failures.out_of_range::<R>(k, count);
                                    continue;
                                };
                                emit(&key, seen, old, new, &mut out);
                                for (datum, diff) in out.drain(..) {
                                    session.give((datum, time.clone(), diff));
                                }
                            }
                            batch_cursor.step_key(&batch_storage);
                        }
                        drop(session);
                        if failures.count() > failed_before {
                            held.push(caps);
                        }
                    }
                    trace.advance_upper(&mut upper);
                    trace.set_logical_compaction(upper.borrow());
                    trace.set_physical_compaction(upper.borrow());
                }
            })
            .as_collection()
    }
}

/// A count as the diff type: `Some(None)` for zero, `Some(Some(r))` when it fits `R`, `None` when not.
fn as_diff<R: PersistDiff>(count: i128) -> Option<Option<R>> {
    if count == 0 {
        return Some(None);
    }
    let count = i64::try_from(count).ok()?;
    R::from_i64(count).map(Some)
}
