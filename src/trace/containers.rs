//! Batch containers for byte-string keys and vals, and an in-memory differential arrangement built on
//! them.
//!
//! Differential dataflow's cursors name a container type per column (`KeyContainer`, `ValContainer`,
//! `TimeContainer`, `DiffContainer`) whose `ReadItem<'a>` must equal the cursor's borrowed types, and some
//! operators (reduce, upsert) allocate and fill those containers. This module owns:
//! - [`BytesContainer`]: byte strings, `ReadItem<'a> = &'a [u8]`, the key and val container of
//!   [`PersistedCursor`](super::PersistedCursor) and of the in-memory [`BytesSpine`];
//! - [`CopyContainer`]: `Copy` values read by value (`ReadItem<'a> = T`), so a cursor can decode
//!   little-endian times and diffs out of a memory map instead of handing out references;
//! - [`BytesSpine`] and friends: DD's ordinary in-memory arrangement, keyed by byte strings, so that a
//!   persisted arrangement can be joined with an in-memory one (`join_core` needs equal key types).
//!
//! Invariants: `BytesContainer::ends` is non-decreasing and its last element is `bytes.len()`; item `i`
//! is `bytes[ends[i-1]..ends[i]]` (with `ends[-1] = 0`). Indexing past `len()` panics, as it does for
//! DD's own containers; DD only indexes below `len()`.

use differential_dataflow::batcher::merge::chunker::ContainerChunker;
use differential_dataflow::batcher::merge::vec::VecMerger;
use differential_dataflow::batcher::merge::MergeBatcher;
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, OrdValBuilder};
use differential_dataflow::trace::implementations::spine_fueled::Spine;
use differential_dataflow::trace::implementations::{BatchContainer, OffsetList};
use std::rc::Rc;
use timely::container::PushInto;

/// A growable sequence of byte strings, read as `&[u8]`.
///
/// Unlike DD's `SliceContainer<u8>`, it accepts `Vec<u8>` by value (which DD's `OrdValBuilder` pushes when
/// fed `((Vec<u8>, Vec<u8>), time, diff)` updates) and its `clone_onto` handles differing lengths.
#[derive(Clone, Debug, Default)]
pub struct BytesContainer {
    /// `ends[i]` is the end offset in `bytes` of item `i`.
    ends: Vec<usize>,
    bytes: Vec<u8>,
}

impl BytesContainer {
    #[inline]
    fn start(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1]
        }
    }
}

impl BatchContainer for BytesContainer {
    type Owned = Vec<u8>;
    type ReadItem<'a> = &'a [u8];

    #[inline(always)]
    fn into_owned(item: &[u8]) -> Vec<u8> {
        item.to_vec()
    }
    #[inline(always)]
    fn clone_onto(item: &[u8], other: &mut Vec<u8>) {
        other.clear();
        other.extend_from_slice(item);
    }
    fn push_ref(&mut self, item: &[u8]) {
        self.push_into(item)
    }
    fn push_own(&mut self, item: &Vec<u8>) {
        self.push_into(&item[..])
    }
    fn clear(&mut self) {
        self.ends.clear();
        self.bytes.clear();
    }
    fn with_capacity(size: usize) -> Self {
        BytesContainer {
            ends: Vec::with_capacity(size),
            bytes: Vec::new(),
        }
    }
    fn merge_capacity(cont1: &Self, cont2: &Self) -> Self {
        BytesContainer {
            ends: Vec::with_capacity(cont1.ends.len() + cont2.ends.len()),
            bytes: Vec::with_capacity(cont1.bytes.len() + cont2.bytes.len()),
        }
    }
    #[inline(always)]
    fn reborrow<'b, 'a: 'b>(item: &'a [u8]) -> &'b [u8] {
        item
    }
    #[inline]
    fn index(&self, index: usize) -> &[u8] {
        &self.bytes[self.start(index)..self.ends[index]]
    }
    #[inline]
    fn len(&self) -> usize {
        self.ends.len()
    }
}

impl PushInto<&[u8]> for BytesContainer {
    fn push_into(&mut self, item: &[u8]) {
        self.bytes.extend_from_slice(item);
        self.ends.push(self.bytes.len());
    }
}

impl PushInto<&Vec<u8>> for BytesContainer {
    fn push_into(&mut self, item: &Vec<u8>) {
        self.push_into(&item[..])
    }
}

impl PushInto<Vec<u8>> for BytesContainer {
    fn push_into(&mut self, item: Vec<u8>) {
        self.push_into(&item[..])
    }
}

/// A sequence of `Copy` values read by value: `ReadItem<'a> = T`.
#[derive(Clone, Debug, Default)]
pub struct CopyContainer<T>(pub Vec<T>);

impl<T: Copy + Ord + 'static> BatchContainer for CopyContainer<T> {
    type Owned = T;
    type ReadItem<'a> = T;

    #[inline(always)]
    fn into_owned<'a>(item: T) -> T {
        item
    }
    fn push_ref(&mut self, item: T) {
        self.0.push(item)
    }
    fn push_own(&mut self, item: &T) {
        self.0.push(*item)
    }
    fn clear(&mut self) {
        self.0.clear()
    }
    fn with_capacity(size: usize) -> Self {
        CopyContainer(Vec::with_capacity(size))
    }
    fn merge_capacity(cont1: &Self, cont2: &Self) -> Self {
        CopyContainer(Vec::with_capacity(cont1.0.len() + cont2.0.len()))
    }
    #[inline(always)]
    fn reborrow<'b, 'a: 'b>(item: T) -> T {
        item
    }
    #[inline]
    fn index(&self, index: usize) -> T {
        self.0[index]
    }
    #[inline]
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> PushInto<T> for CopyContainer<T> {
    fn push_into(&mut self, item: T) {
        self.0.push(item)
    }
}

/// Column layout of the in-memory byte-keyed arrangement: byte-string keys and vals, times `T` (`u64` at
/// the top level; a product time inside `iterate`), `i64` diffs.
pub type BytesLayout<T = u64> = (BytesContainer, BytesContainer, Vec<T>, Vec<i64>, OffsetList);
/// One update fed to the in-memory byte-keyed arrangement: `((key, val), time, diff)`.
pub type BytesUpdate<T = u64> = ((Vec<u8>, Vec<u8>), T, i64);
/// An in-memory batch of byte-string updates (DD's `OrdValBatch`).
pub type BytesBatch<T = u64> = OrdValBatch<BytesLayout<T>>;
/// DD's in-memory fueled spine of [`BytesBatch`]es; its cursor's keys and vals are `&[u8]`, like those of
/// a [`PersistedTrace`](super::PersistedTrace), so the two can be joined.
pub type BytesSpine<T = u64> = Spine<Rc<BytesBatch<T>>>;
/// Builds [`BytesBatch`]es from sorted, consolidated [`BytesUpdate`]s (e.g. as `reduce` output).
pub type BytesBuilder<T = u64> = OrdValBuilder<BytesLayout<T>, Vec<BytesUpdate<T>>>;
/// Sorts and consolidates [`BytesUpdate`]s into [`BytesBatch`]es (the `arrange` batcher).
pub type BytesBatcher<T = u64> = MergeBatcher<
    ContainerChunker<Vec<BytesUpdate<T>>>,
    VecMerger<(Vec<u8>, Vec<u8>), T, i64>,
    BytesBuilder<T>,
>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_container_roundtrip() {
        let mut c = BytesContainer::with_capacity(2);
        c.push_ref(b"ab");
        c.push_own(&Vec::new());
        c.push_into(b"xyz".to_vec());
        assert_eq!(c.len(), 3);
        assert_eq!(c.index(0), b"ab");
        assert_eq!(c.index(1), b"");
        assert_eq!(c.index(2), b"xyz");
        let mut owned = vec![1, 2, 3, 4];
        BytesContainer::clone_onto(c.index(0), &mut owned);
        assert_eq!(owned, b"ab");
        c.clear();
        assert!(c.is_empty());
    }
}
