//! Joins of a [`TypedArranged`] (persisted, or encoded in memory) with DD's signatures: `join_core`,
//! `join`, `join_map`, `semijoin`, `antijoin`, closures on `&K`, `&V`, `&V2`.
//!
//! The other side is a [`JoinSide`]: a collection of `(K, V2)` pairs, arranged by one call inside the
//! operator ([`ArrangeTyped::arrange_by_key_encoded`]: same key encoding, partitioned by
//! [`key_hash`](super::key_hash) like the persisted side), or a typed arrangement
//! (`arrange_by_key_encoded()`, or another persisted one). DD's own `arrange_by_key()` arrangement cannot
//! be: its keys are `&K` (not the encoded bytes the persisted cursor reads) and it is partitioned by DD's
//! `Hashable`, so the compiler says to call `arrange_by_key_encoded()` instead.
//!
//! Each match is decoded once per distinct key, val and val2 bytes in a row (the last decoded value is
//! kept), and the diffs are converted to the sides' diff types and multiplied as DD does
//! (`R: Multiply<R2>`). Decode failures: see [`super::typed`] (reported in both sides' error slots;
//! the output frontier is held).

use super::typed::{BytesTrace, Failures, TypedArranged};
use super::typed_arrange::{ArrangeTyped, ArrangeTypedBySelf};
use super::PersistDiff;
use crate::codec::Codec;
use crate::trace::{BytesContainer, BytesSpine};
use differential_dataflow::consolidation::ConsolidatingContainerBuilder;
use differential_dataflow::difference::{Abelian, Multiply, Semigroup};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::TraceAgent;
use differential_dataflow::operators::join::join_traces;
use differential_dataflow::trace::TraceReader;
use differential_dataflow::{AsCollection, Data, ExchangeData, VecCollection};
use timely::container::PushInto;
use timely::progress::Timestamp;

/// The other side of a typed join: a collection of `(K, V2)` pairs, or a typed arrangement of them.
///
/// DD's own `arrange_by_key()` arrangement is refused at compile time, with a note to call
/// `arrange_by_key_encoded()`:
///
/// ```compile_fail,E0277
/// use ddpersist::operators::ArrangeTyped;
/// use differential_dataflow::VecCollection;
///
/// fn port<'s>(
///     store: &ddpersist::Store,
///     a: VecCollection<'s, u64, (u64, String), isize>,
///     b: VecCollection<'s, u64, (u64, u32), isize>,
/// ) {
///     let persisted = a.arrange_by_key_persisted(store, "a").unwrap();
///     persisted.join(b.arrange_by_key()); // use `b` or `b.arrange_by_key_encoded()`
/// }
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the other side of a join with a typed persisted arrangement",
    label = "expected a `VecCollection` of `(key, val)` pairs or an `arrange_by_key_encoded()` arrangement",
    note = "a persisted arrangement's keys are encoded bytes, partitioned by `ddpersist::operators::key_hash`; \
            DD's `arrange_by_key()` arrangement has `&K` keys partitioned by `Hashable`, so the two cannot \
            be joined",
    note = "call `.arrange_by_key_encoded()` (trait `ddpersist::operators::ArrangeTyped`) in place of \
            `.arrange_by_key()`, or pass the collection itself: `join` arranges it that way"
)]
pub trait JoinSide<'scope, T: Timestamp + Lattice, K> {
    /// The other side's val type.
    type Val: Codec + 'static;
    /// The other side's diff type.
    type Diff: PersistDiff;
    /// The other side's trace: bytes, as a persisted arrangement's.
    type Trace: BytesTrace + TraceReader<Time = T>;
    /// The other side as a typed arrangement (arranging a collection with `arrange_by_key_encoded`).
    fn into_side(self) -> TypedArranged<'scope, Self::Trace, K, Self::Val, Self::Diff>;
}

impl<'scope, T, K, V2, R2> JoinSide<'scope, T, K> for VecCollection<'scope, T, (K, V2), R2>
where
    T: Timestamp + Lattice + ExchangeData,
    K: Codec + ExchangeData,
    V2: Codec + ExchangeData,
    R2: PersistDiff + Semigroup,
{
    type Val = V2;
    type Diff = R2;
    type Trace = TraceAgent<BytesSpine<T>>;
    fn into_side(self) -> TypedArranged<'scope, Self::Trace, K, V2, R2> {
        self.arrange_by_key_encoded()
    }
}

impl<'scope, Tr: BytesTrace, K, V2: Codec + 'static, R2: PersistDiff> JoinSide<'scope, Tr::Time, K>
    for TypedArranged<'scope, Tr, K, V2, R2>
{
    type Val = V2;
    type Diff = R2;
    type Trace = Tr;
    fn into_side(self) -> Self {
        self
    }
}

/// The other side of a typed `semijoin` / `antijoin`: a collection of keys, or a typed arrangement with
/// `()` vals.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the other side of a semijoin with a typed persisted arrangement",
    label = "expected a `VecCollection` of keys or an `arrange_by_self_encoded()` arrangement",
    note = "call `.arrange_by_self_encoded()` (trait `ddpersist::operators::ArrangeTypedBySelf`) in place of \
            `.arrange_by_self()`, or pass the collection of keys itself"
)]
pub trait SemijoinSide<'scope, T: Timestamp + Lattice, K> {
    /// The other side's diff type.
    type Diff: PersistDiff;
    /// The other side's trace: bytes, as a persisted arrangement's.
    type Trace: BytesTrace + TraceReader<Time = T>;
    /// The other side as a typed arrangement of `(key, ())`.
    fn into_keys(self) -> TypedArranged<'scope, Self::Trace, K, (), Self::Diff>;
}

impl<'scope, T, K, R2> SemijoinSide<'scope, T, K> for VecCollection<'scope, T, K, R2>
where
    T: Timestamp + Lattice + ExchangeData,
    K: Codec + ExchangeData,
    R2: PersistDiff + Semigroup,
{
    type Diff = R2;
    type Trace = TraceAgent<BytesSpine<T>>;
    fn into_keys(self) -> TypedArranged<'scope, Self::Trace, K, (), R2> {
        self.arrange_by_self_encoded()
    }
}

impl<'scope, Tr: BytesTrace, K, R2: PersistDiff> SemijoinSide<'scope, Tr::Time, K>
    for TypedArranged<'scope, Tr, K, (), R2>
{
    type Diff = R2;
    type Trace = Tr;
    fn into_keys(self) -> Self {
        self
    }
}

/// The diff of a join's output: `R * R2`, as DD multiplies them.
type Product<R, R2> = <R as Multiply<R2>>::Output;

/// A record of `join`'s output: `(key, (val, val2))`.
pub type Pair<K, V, V2> = (K, (V, V2));

/// A join's output collection of `D`, with diffs `R * R2`.
pub type Joined<'scope, T, D, R, R2> = VecCollection<'scope, T, D, Product<R, R2>>;

/// The last bytes decoded and their value, so runs of equal bytes decode once.
struct Decoded<D> {
    bytes: Vec<u8>,
    value: Option<D>,
}

impl<D: Codec> Decoded<D> {
    fn new() -> Self {
        Decoded {
            bytes: Vec::new(),
            value: None,
        }
    }

    #[inline]
    fn get(&mut self, bytes: &[u8], failures: &Failures, what: &str) -> Option<&D> {
        if self.value.is_none() || self.bytes != bytes {
            self.bytes.clear();
            self.bytes.extend_from_slice(bytes);
            self.value = failures.decode(what, bytes);
        }
        self.value.as_ref()
    }
}

impl<'scope, Tr, K, V, R> TypedArranged<'scope, Tr, K, V, R>
where
    Tr: BytesTrace,
    K: Codec + Data,
    V: Codec + Data,
    R: PersistDiff,
{
    /// DD's `join_core`: for each `(key, val)` here and `(key, val2)` of `other` (a [`JoinSide`]), the
    /// records `result(&key, &val, &val2)` yields, with diff `r * r2`.
    pub fn join_core<S, I, L>(
        self,
        other: S,
        mut result: L,
    ) -> VecCollection<'scope, Tr::Time, I::Item, <R as Multiply<S::Diff>>::Output>
    where
        S: JoinSide<'scope, Tr::Time, K>,
        R: Multiply<S::Diff, Output: Semigroup + 'static>,
        I: IntoIterator<Item: Data>,
        L: FnMut(&K, &V, &S::Val) -> I + 'static,
    {
        let other = other.into_side();
        let failures = self.failures().and(&other.failures());
        let guards = self.guard(&failures).concat(other.guard(&failures));
        let f = failures.clone();
        let (mut keys, mut vals, mut vals2) =
            (Decoded::<K>::new(), Decoded::<V>::new(), Decoded::<S::Val>::new());
        type Out<D, T, R> = ConsolidatingContainerBuilder<Vec<(D, T, R)>>;
        let stream = join_traces::<_, _, BytesContainer, _, Out<I::Item, Tr::Time, _>>(
            self.arranged(),
            other.arranged(),
            "TypedJoin",
            move |k, v1, v2, t, d1, d2, c| {
                let (Some(r1), Some(r2)) = (f.diff::<R>(k, *d1), f.diff::<S::Diff>(k, *d2)) else {
                    return;
                };
                let (Some(key), Some(v1), Some(v2)) = (
                    keys.get(k, &f, "key"),
                    vals.get(v1, &f, "val"),
                    vals2.get(v2, &f, "val"),
                ) else {
                    return;
                };
                let r = r1.multiply(&r2);
                for datum in result(key, v1, v2) {
                    c.push_into((datum, t.clone(), r.clone()));
                }
            },
        );
        stream.as_collection().concat(guards)
    }

    /// DD's `join`: `((key, (val, val2)), r * r2)` for each match with `other` (a [`JoinSide`]: a
    /// collection of `(key, val2)` pairs, arranged by `arrange_by_key_encoded` inside, or a typed
    /// arrangement).
    #[allow(clippy::type_complexity)] // DD's `join` signature, with the other side's associated types
    pub fn join<S>(self, other: S) -> Joined<'scope, Tr::Time, Pair<K, V, S::Val>, R, S::Diff>
    where
        S: JoinSide<'scope, Tr::Time, K>,
        S::Val: Data,
        R: Multiply<S::Diff, Output: Semigroup + 'static>,
    {
        self.join_core(other, |k, v, v2| Some((k.clone(), (v.clone(), v2.clone()))))
    }

    /// DD's `join_map`: `logic(&key, &val, &val2)` for each match with `other` (see [`join`](Self::join)).
    pub fn join_map<S, D, L>(
        self,
        other: S,
        mut logic: L,
    ) -> VecCollection<'scope, Tr::Time, D, <R as Multiply<S::Diff>>::Output>
    where
        S: JoinSide<'scope, Tr::Time, K>,
        R: Multiply<S::Diff, Output: Semigroup + 'static>,
        D: Data,
        L: FnMut(&K, &V, &S::Val) -> D + 'static,
    {
        self.join_core(other, move |k, v, v2| Some(logic(k, v, v2)))
    }

    /// DD's `semijoin`: the `(key, val)` records whose key is in `other` (a [`SemijoinSide`]: a collection
    /// of keys, or an `arrange_by_self_encoded()` arrangement), with diff `r * r2`.
    pub fn semijoin<S>(self, other: S) -> Joined<'scope, Tr::Time, (K, V), R, S::Diff>
    where
        S: SemijoinSide<'scope, Tr::Time, K>,
        R: Multiply<S::Diff, Output: Semigroup + 'static>,
    {
        self.join_core(other.into_keys(), |k, v, _| Some((k.clone(), v.clone())))
    }

    /// DD's `antijoin`: the `(key, val)` records whose key is not in `other` (see
    /// [`semijoin`](Self::semijoin)): the collection minus its semijoin, as DD computes it.
    pub fn antijoin<S>(self, other: S) -> VecCollection<'scope, Tr::Time, (K, V), R>
    where
        S: SemijoinSide<'scope, Tr::Time, K>,
        R: Multiply<S::Diff, Output = R> + Abelian + 'static,
    {
        let all = self.clone().as_collection(|k, v| (k.clone(), v.clone()));
        all.concat(self.semijoin(other).negate())
    }
}
