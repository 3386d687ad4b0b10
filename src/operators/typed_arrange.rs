//! Building typed arrangements: [`ArrangeTyped`] (DD's `arrange_by_key`) and [`ArrangeTypedBySelf`]
//! (`arrange_by_self`), each persisted (a [`TypedPersisted`] over a store stream) or encoded in memory
//! (a [`TypedEncoded`] with a persisted one's key encoding and partitioning). The typed view itself and
//! its operators are in [`super::typed`], [`super::typed_join`] and [`super::typed_reduce`].

use super::arrange::{ArrangePersisted, PersistOptions};
use super::typed::{TypedArranged, TypedEncoded, TypedPersisted};
use super::{key_hash, PersistDiff, PersistTime};
use crate::codec::Codec;
use crate::error::Result;
use crate::store::Store;
use crate::trace::{BytesBatcher, BytesSpine, BytesUpdate, ErrorSlot};
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::{ExchangeData, VecCollection};
use std::rc::Rc;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::vec::Map as _;
use timely::progress::Timestamp;

/// Arranging a collection of `(key, val)` pairs into a typed arrangement (DD's `arrange_by_key`).
pub trait ArrangeTyped<'scope, T: Timestamp + Lattice, K, V, R> {
    /// [`ArrangePersisted::arrange_persisted`], typed: the arrangement of stream `id` of `store`, with the
    /// persisting operator's handle inside ([`TypedArranged::handle`]). At a top-level [`PersistTime`].
    ///
    /// Errors: those of [`ArrangePersisted::arrange_persisted`].
    fn arrange_by_key_persisted(self, store: &Store, id: &str) -> Result<TypedPersisted<'scope, K, V, T, R>>
    where
        T: PersistTime,
        R: PersistDiff;

    /// As [`arrange_by_key_persisted`](Self::arrange_by_key_persisted), with options.
    fn arrange_by_key_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<TypedPersisted<'scope, K, V, T, R>>
    where
        T: PersistTime,
        R: PersistDiff;

    /// An in-memory arrangement with a persisted one's encoding and partitioning (by [`key_hash`]), at
    /// any time (also inside `iterate`): the other side of a join with a persisted arrangement.
    fn arrange_by_key_encoded(self) -> TypedEncoded<'scope, K, V, T, R>
    where
        R: PersistDiff;
}

// `R: PersistDiff` sits on the methods, not the impl, so that another diff type (DD's `Present`) is a
// compile error naming `PersistDiff`'s note (what diffs to use), not a method that does not exist.
impl<'scope, T, K, V, R> ArrangeTyped<'scope, T, K, V, R> for VecCollection<'scope, T, (K, V), R>
where
    T: Timestamp + Lattice + ExchangeData,
    K: Codec + ExchangeData,
    V: Codec + ExchangeData,
    R: differential_dataflow::difference::Semigroup + ExchangeData,
{
    fn arrange_by_key_persisted(self, store: &Store, id: &str) -> Result<TypedPersisted<'scope, K, V, T, R>>
    where
        T: PersistTime,
        R: PersistDiff,
    {
        self.arrange_by_key_persisted_with(store, id, PersistOptions::default())
    }

    fn arrange_by_key_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<TypedPersisted<'scope, K, V, T, R>>
    where
        T: PersistTime,
        R: PersistDiff,
    {
        let (arranged, handle) = self.arrange_persisted_with(store, id, options)?;
        let errors = handle.errors().clone();
        let mut typed = TypedArranged::new(arranged, errors, Some(handle.clone()));
        typed.trace.origin = Rc::from(handle.stream_id());
        Ok(typed)
    }

    fn arrange_by_key_encoded(self) -> TypedEncoded<'scope, K, V, T, R>
    where
        R: PersistDiff,
    {
        let encoded = self
            .inner
            .map(|((k, v), t, r): ((K, V), T, R)| ((k.to_bytes(), v.to_bytes()), t, r.to_i64()));
        let exchange = Exchange::new(|update: &BytesUpdate<T>| key_hash(&(update.0).0));
        let arranged = arrange_core::<_, _, BytesBatcher<T>, BytesSpine<T>>(
            encoded,
            exchange,
            "ArrangeByKeyEncoded",
            BytesBatcher::new,
        );
        TypedArranged::new(arranged, ErrorSlot::default(), None)
    }
}

/// Arranging a collection of keys into a typed arrangement with `()` vals (DD's `arrange_by_self`).
pub trait ArrangeTypedBySelf<'scope, T: Timestamp + Lattice, K, R> {
    /// [`ArrangeTyped::arrange_by_key_persisted`] of `(key, ())`.
    fn arrange_by_self_persisted(self, store: &Store, id: &str) -> Result<TypedPersisted<'scope, K, (), T, R>>
    where
        Self: Sized,
        T: PersistTime,
        R: PersistDiff,
    {
        self.arrange_by_self_persisted_with(store, id, PersistOptions::default())
    }

    /// [`ArrangeTyped::arrange_by_key_persisted_with`] of `(key, ())`: with options (a durable stream).
    fn arrange_by_self_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<TypedPersisted<'scope, K, (), T, R>>
    where
        T: PersistTime,
        R: PersistDiff;

    /// [`ArrangeTyped::arrange_by_key_encoded`] of `(key, ())`.
    fn arrange_by_self_encoded(self) -> TypedEncoded<'scope, K, (), T, R>
    where
        R: PersistDiff;
}

impl<'scope, T, K, R> ArrangeTypedBySelf<'scope, T, K, R> for VecCollection<'scope, T, K, R>
where
    T: Timestamp + Lattice + ExchangeData,
    K: Codec + ExchangeData,
    R: differential_dataflow::difference::Semigroup + ExchangeData,
{
    fn arrange_by_self_persisted_with(
        self,
        store: &Store,
        id: &str,
        options: PersistOptions,
    ) -> Result<TypedPersisted<'scope, K, (), T, R>>
    where
        T: PersistTime,
        R: PersistDiff,
    {
        super::replays::refuse_durable_over(store, &self.inner, id, options.durable)?;
        self.map(|k| (k, ()))
            .arrange_by_key_persisted_with(store, id, options)
    }

    fn arrange_by_self_encoded(self) -> TypedEncoded<'scope, K, (), T, R>
    where
        R: PersistDiff,
    {
        self.map(|k| (k, ())).arrange_by_key_encoded()
    }
}
