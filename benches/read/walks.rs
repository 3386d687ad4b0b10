//! The reads both sides run, generic over DD's `Cursor`: the full walk, point lookups (fresh cursor per key,
//! or one cursor seeking forward), `Store::get_bytes`, and what each saw ([`Sums`]).

use crate::data::KEY_BYTES;
use crate::STREAM;
use ddpersist::trace::{PersistedBatch, PersistedTrace};
use ddpersist::Store;
use differential_dataflow::trace::{Cursor, Navigable, TraceReader};

/// Times and diffs read by value (ours) or by reference (DD's `Vec` containers).
pub(crate) trait AsNum: Copy {
    fn num(self) -> u64;
}
impl AsNum for u64 {
    fn num(self) -> u64 {
        self
    }
}
impl AsNum for &u64 {
    fn num(self) -> u64 {
        *self
    }
}
impl AsNum for i64 {
    fn num(self) -> u64 {
        self as u64
    }
}
impl AsNum for &i64 {
    fn num(self) -> u64 {
        *self as u64
    }
}

/// What a walk saw; equal on every side for the same data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sums {
    pub(crate) keys: u64,
    pub(crate) vals: u64,
    pub(crate) updates: u64,
    pub(crate) bytes: u64,
    pub(crate) sample: u64,
    pub(crate) times: u64,
    pub(crate) diffs: u64,
}

/// The full cursor walk: every key, val and (time, diff), as DD operators step through a batch.
pub(crate) fn scan<C>(cursor: &mut C, storage: &C::Storage) -> Sums
where
    C: Cursor,
    for<'a> C::Key<'a>: AsRef<[u8]>,
    for<'a> C::Val<'a>: AsRef<[u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    while let Some(key) = cursor.get_key(storage) {
        let key = key.as_ref();
        s.keys += 1;
        s.bytes += key.len() as u64;
        s.sample += key.first().copied().unwrap_or(0) as u64;
        while let Some(val) = cursor.get_val(storage) {
            let val = val.as_ref();
            s.vals += 1;
            s.bytes += val.len() as u64;
            s.sample += val.last().copied().unwrap_or(0) as u64;
            cursor.map_times(storage, |t, d| {
                s.updates += 1;
                s.times = s.times.wrapping_add(t.num());
                s.diffs = s.diffs.wrapping_add(d.num());
            });
            cursor.step_val(storage);
        }
        cursor.step_key(storage);
    }
    s
}

/// One point lookup with a DD cursor: seek, check the key, accumulate each val's diffs at or before `as_of`.
#[inline]
pub(crate) fn probe<C>(cursor: &mut C, storage: &C::Storage, key: &[u8], as_of: u64, s: &mut Sums)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    cursor.seek_key(storage, key);
    if cursor.get_key(storage) == Some(key) {
        s.keys += 1;
        while let Some(val) = cursor.get_val(storage) {
            let mut diff = 0u64;
            cursor.map_times(storage, |t, d| {
                if t.num() <= as_of {
                    diff = diff.wrapping_add(d.num());
                }
            });
            if diff != 0 {
                s.vals += 1;
                s.bytes += val.len() as u64;
                s.diffs = s.diffs.wrapping_add(diff);
            }
            cursor.step_val(storage);
        }
    }
}

/// `keys` looked up one by one, each with a fresh cursor.
pub(crate) fn seek_fresh<B>(batch: &B, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums
where
    B: Navigable,
    B::Cursor: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> <B::Cursor as Cursor>::TimeGat<'a>: AsNum,
    for<'a> <B::Cursor as Cursor>::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    for k in keys {
        let mut cursor = batch.cursor();
        probe(&mut cursor, batch, k, as_of, &mut s);
    }
    s
}

/// `keys` (sorted) looked up with one cursor, seeking forward.
pub(crate) fn seek_sorted<B>(batch: &B, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums
where
    B: Navigable,
    B::Cursor: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> <B::Cursor as Cursor>::TimeGat<'a>: AsNum,
    for<'a> <B::Cursor as Cursor>::DiffGat<'a>: AsNum,
{
    let mut s = Sums::default();
    let mut cursor = batch.cursor();
    for k in keys {
        probe(&mut cursor, batch, k, as_of, &mut s);
    }
    s
}

/// `keys` looked up with the store's public API.
pub(crate) fn get_bytes(store: &Store, keys: &[[u8; KEY_BYTES]], as_of: u64) -> Sums {
    let mut s = Sums::default();
    for k in keys {
        let vals = store.get_bytes(STREAM, k, as_of).unwrap();
        if !vals.is_empty() {
            s.keys += 1;
        }
        for (v, d) in vals {
            s.vals += 1;
            s.bytes += v.len() as u64;
            s.diffs = s.diffs.wrapping_add(d as u64);
        }
    }
    s
}

/// The single batch of the persisted trace (the build leaves one).
pub(crate) fn persisted_batch(trace: &mut PersistedTrace) -> PersistedBatch {
    let upper = trace.upper().clone();
    let mut batches = trace.batches_through(upper.borrow()).unwrap();
    assert_eq!(batches.len(), 1, "the read store should hold one merged batch");
    batches.pop().unwrap()
}
