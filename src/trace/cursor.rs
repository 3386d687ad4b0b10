//! [`PersistedCursor`]: differential dataflow's `Cursor` over one [`PersistedBatch`], reading keys and vals
//! as `&[u8]` straight out of the batch file's memory map, and times as the batch's [`PersistTime`] `T`
//! (`u64` by default; each stored `u64` time converted as it is read).
//!
//! The cursor holds positions only; the batch is the cursor's `Storage`, so every borrowed key or val
//! lives as long as the caller's borrow of the batch. Nothing is allocated or decoded per key: a key is a
//! slice of the map, times and diffs are little-endian loads (a time then converted by
//! [`PersistTime::from_u64`], the identity for `u64`; a time that does not fit `T` is skipped, which cannot
//! happen: a batch's times are checked to fit `T` when it is built).
//!
//! Position: `(block, key, val)`, where `key` indexes keys within `block` and `val` indexes vals within
//! the block. The cursor caches what the hot methods need so that stepping through vals touches no block
//! header: `key_count` of the block and `vals = vals(key)` of the key. Invariants kept by every method:
//! - either `block == block_count` (past the last key; then `key_count`, `vals` are zero), or
//!   `block < block_count`, the block is readable, `key < key_count == block.key_count()`, and
//!   `vals == block.vals(key)`;
//! - `vals.start <= val <= vals.end` (`val == vals.end`: past the key's last val).
//!
//! Every read re-checks its index against the block it reads (a field comparison), so even a cursor
//! used with a batch other than its own reads in bounds.
//!
//! Blocks are read with `PersistedBatch::view`: a block's checksum is checked the first time any
//! reader touches it. A block that fails stops the batch's error slot (fail-stop, see
//! [`super::batch`]) and the cursor moves to the batch's end. The cursor never panics and never returns
//! bytes that failed their checksum.

use super::batch::PersistedBatch;
use super::containers::{BytesContainer, CopyContainer};
use crate::batch::seek::key_prefix;
use crate::batch::{Block, BlockView, KeyProbe};
use crate::operators::PersistTime;
use differential_dataflow::trace::Cursor;
use std::marker::PhantomData;

/// A cursor over a [`PersistedBatch`]. See the module docs.
#[derive(Clone, Debug)]
pub struct PersistedCursor<T = u64> {
    block: usize,
    key: usize,
    key_count: usize,
    val: usize,
    vals: std::ops::Range<usize>,
    /// The current block's shape: rebased onto the whole file's bytes when `raw`, else relative to the
    /// block's decompressed bytes.
    shape: Block<'static>,
    /// Whether the current block is stored raw in the file (read through `shape` over the file's bytes,
    /// with no index lookup or sub-slicing per access).
    raw: bool,
    /// The times' type (the cursor holds no time).
    time: PhantomData<fn() -> T>,
}

impl<T: PersistTime> PersistedCursor<T> {
    /// A cursor at the first key of `batch`.
    pub(crate) fn new(batch: &PersistedBatch<T>) -> Self {
        let mut cursor = PersistedCursor {
            block: 0,
            key: 0,
            key_count: 0,
            val: 0,
            vals: 0..0,
            shape: Block::empty(),
            raw: false,
            time: PhantomData,
        };
        cursor.settle(batch);
        cursor
    }

    /// The block under the cursor, if the cursor is on a key.
    #[inline(always)]
    fn current<'a>(&self, batch: &'a PersistedBatch<T>) -> Option<Block<'a>> {
        let file = batch.file()?;
        if self.raw {
            return Some(self.shape.attach(file.bytes()));
        }
        let bytes = file.verified_block_bytes(self.block)?;
        Some(self.shape.attach(bytes))
    }

    /// Moves forward from `(block, key)` to the first readable key position at or after it (or to the end),
    /// and rewinds the vals of that key.
    fn settle(&mut self, batch: &PersistedBatch<T>) {
        self.settle_from(batch, None)
    }

    /// [`settle`](Self::settle), with `view` the block at `block` if the caller has it already.
    fn settle_from(&mut self, batch: &PersistedBatch<T>, mut view: Option<BlockView<'_>>) {
        let count = batch.block_count();
        while self.block < count {
            match view.take().or_else(|| batch.view(self.block)) {
                Some(v) if self.key < v.shape.key_count() => {
                    let b = v.block();
                    (self.shape, self.raw) = match v.raw_start {
                        Some(start) => (v.shape.rebase(start), true),
                        None => (*v.shape, false),
                    };
                    self.key_count = b.key_count();
                    self.vals = b.vals(self.key);
                    self.val = self.vals.start;
                    return;
                }
                // A block that failed its checksum (fail-stop): serve nothing more of this batch.
                None => break,
                _ => {
                    self.block += 1;
                    self.key = 0;
                }
            }
        }
        self.block = count;
        self.raw = false;
        self.shape = Block::empty();
        self.key = 0;
        self.key_count = 0;
        self.val = 0;
        self.vals = 0..0;
    }
}

/// The first index in `lo..hi` at which `less` is false, where `less` is true on a prefix of the range and
/// false after it: gallops forward from `lo` (cheap for the short skips of merge joins), then bisects.
#[inline]
pub(crate) fn gallop(mut lo: usize, hi: usize, less: impl Fn(usize) -> bool) -> usize {
    if lo >= hi || !less(lo) {
        return lo;
    }
    let mut step = 1;
    while lo + step < hi && less(lo + step) {
        lo += step;
        step <<= 1;
    }
    // `less(lo)` holds; the answer is in `lo + 1 ..= min(lo + step, hi)`.
    let mut end = (lo + step).min(hi);
    lo += 1;
    while lo < end {
        let mid = lo + (end - lo) / 2;
        if less(mid) {
            lo = mid + 1;
        } else {
            end = mid;
        }
    }
    lo
}

impl<T: PersistTime> Cursor for PersistedCursor<T> {
    type Storage = PersistedBatch<T>;

    type Key<'a> = &'a [u8];
    type ValOwn = Vec<u8>;
    type Val<'a> = &'a [u8];
    type Time = T;
    type TimeGat<'a> = T;
    type Diff = i64;
    type DiffGat<'a> = i64;

    type KeyContainer = BytesContainer;
    type ValContainer = BytesContainer;
    type TimeContainer = CopyContainer<T>;
    type DiffContainer = CopyContainer<i64>;

    #[inline(always)]
    fn key_valid(&self, storage: &PersistedBatch<T>) -> bool {
        self.block < storage.block_count()
    }

    #[inline(always)]
    fn val_valid(&self, storage: &PersistedBatch<T>) -> bool {
        self.val < self.vals.end && self.key_valid(storage)
    }

    /// The key under the cursor; the empty slice if the cursor is past the end (DD never asks then).
    #[inline(always)]
    fn key<'a>(&self, storage: &'a PersistedBatch<T>) -> &'a [u8] {
        self.get_key(storage).unwrap_or(&[])
    }

    /// The val under the cursor; the empty slice if there is none (DD never asks then).
    #[inline(always)]
    fn val<'a>(&self, storage: &'a PersistedBatch<T>) -> &'a [u8] {
        self.get_val(storage).unwrap_or(&[])
    }

    #[inline(always)]
    fn get_key<'a>(&self, storage: &'a PersistedBatch<T>) -> Option<&'a [u8]> {
        let b = self.current(storage)?;
        (self.key < b.key_count()).then(|| b.key(self.key))
    }

    #[inline(always)]
    fn get_val<'a>(&self, storage: &'a PersistedBatch<T>) -> Option<&'a [u8]> {
        if self.val >= self.vals.end {
            return None;
        }
        let b = self.current(storage)?;
        (self.val < b.val_count()).then(|| b.val(self.val))
    }

    #[inline(always)]
    fn map_times<L: FnMut(T, i64)>(&mut self, storage: &PersistedBatch<T>, mut logic: L) {
        if self.val >= self.vals.end {
            return;
        }
        let Some(b) = self.current(storage) else { return };
        let since = storage.since();
        let mut times = b.times_of(self.val).peekable();
        if since > 0 {
            // Times ascend within a val: those below the since come first; they read as the since, summed
            // (a sum past `i64` goes out in parts: the same total).
            let mut sum = 0i64;
            while let Some((_, diff)) = times.next_if(|(time, _)| *time <= since) {
                sum = match sum.checked_add(diff) {
                    Some(sum) => sum,
                    None => {
                        if let Some(time) = T::from_u64(since) {
                            logic(time, sum);
                        }
                        diff
                    }
                };
            }
            if sum != 0 {
                if let Some(time) = T::from_u64(since) {
                    logic(time, sum);
                }
            }
        }
        for (time, diff) in times {
            if let Some(time) = T::from_u64(time) {
                logic(time, diff);
            }
        }
    }

    #[inline(always)]
    fn step_key(&mut self, storage: &PersistedBatch<T>) {
        if self.key_valid(storage) {
            self.key += 1;
            if self.key < self.key_count {
                if let Some(b) = self.current(storage) {
                    self.vals = b.vals(self.key);
                    self.val = self.vals.start;
                    return;
                }
            }
            self.settle(storage);
        }
    }

    /// Moves forward to the first key `>= key` (never backward), through the block fences when the key is
    /// beyond the current block, then by galloping search within the block (or, in a block it moved to, a
    /// search of the keys between two of the block's key samples); rewinds the vals.
    fn seek_key(&mut self, storage: &PersistedBatch<T>, key: &[u8]) {
        let Some(b) = self.current(storage) else { return };
        let (count, prefix) = (b.key_count(), key_prefix(key));
        if self.key < count && !b.key_below(count - 1, key, prefix) {
            self.key = gallop(self.key, count, |i| b.key_below(i, key, prefix));
        } else if let Some(file) = storage.file() {
            // Every key of this block is below `key`: the fences pick the first block that may hold it, and
            // its key samples the keys to search. An index partition or block that fails its check is
            // fail-stop (`trace::batch`).
            let probe = KeyProbe::unhashed(key);
            match storage.fail_stop(file.seek_view(&probe, self.block + 1)) {
                Some(Some((block, view))) => {
                    (self.block, self.key) = (block, view.seek_key(&probe));
                    return self.settle_from(storage, Some(view));
                }
                _ => (self.block, self.key) = (storage.block_count(), 0),
            }
        }
        self.settle(storage);
    }

    #[inline(always)]
    fn step_val(&mut self, _storage: &PersistedBatch<T>) {
        if self.val < self.vals.end {
            self.val += 1;
        }
    }

    /// Moves forward to the first val `>= val` of the current key (never backward).
    fn seek_val(&mut self, storage: &PersistedBatch<T>, val: &[u8]) {
        if self.val >= self.vals.end {
            return;
        }
        if let Some(b) = self.current(storage) {
            let end = self.vals.end.min(b.val_count());
            self.val = gallop(self.val, end, |j| b.val(j) < val);
        }
    }

    fn rewind_keys(&mut self, storage: &PersistedBatch<T>) {
        self.block = 0;
        self.key = 0;
        self.settle(storage);
    }

    #[inline]
    fn rewind_vals(&mut self, _storage: &PersistedBatch<T>) {
        self.val = self.vals.start;
    }
}

#[cfg(test)]
mod tests {
    use super::gallop;
    use crate::batch::{BatchFile, BatchWriter, Description};
    use crate::blob::{Blob, MemBlob};
    use crate::trace::PersistedBatch;
    use differential_dataflow::trace::{Cursor, Navigable};
    use std::sync::Arc;

    /// A batch file over `[0, 10)`, since 0, holding `updates` (sorted).
    fn file(updates: &[(&[u8], &[u8], u64, i64)]) -> Arc<BatchFile> {
        let blob = MemBlob::new();
        let desc = Description {
            lower: 0,
            upper: 10,
            since: 0,
        };
        let mut w = BatchWriter::new(blob.create("b").unwrap(), desc, 4096).unwrap();
        for (k, v, t, d) in updates {
            w.push(k, v, *t, *d).unwrap();
        }
        w.finish().unwrap();
        Arc::new(BatchFile::open("b", blob.get("b").unwrap().unwrap()).unwrap())
    }

    /// Every `(key, val, time, diff)` a cursor over `batch` reads.
    fn read(batch: &PersistedBatch<u64>) -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
        let mut out = Vec::new();
        let mut c = batch.cursor();
        while let Some(k) = c.get_key(batch) {
            while let Some(v) = c.get_val(batch) {
                c.map_times(batch, |t, d| out.push((k.to_vec(), v.to_vec(), t, d)));
                c.step_val(batch);
            }
            c.step_key(batch);
        }
        out
    }

    /// Read as of a since beyond the file's, times below it read as it, summed per `(key, val)` (a sum
    /// of zero reads as nothing, a sum past `i64` in parts); times at or beyond it unchanged.
    #[test]
    fn a_batch_reads_as_of_its_since() {
        let f = file(&[
            (b"a", b"x", 1, 1),
            (b"a", b"x", 3, 2),
            (b"a", b"x", 7, 1),
            (b"a", b"y", 2, 1),
            (b"a", b"y", 4, -1),
            (b"b", b"z", 1, i64::MAX),
            (b"b", b"z", 2, 5),
            (b"b", b"z", 5, 1),
        ]);
        let plain = PersistedBatch::<u64>::from_file(f.clone()).unwrap();
        assert_eq!(read(&plain).len(), 8, "as written");
        let as_of = PersistedBatch::<u64>::from_file_as_of(f, 5).unwrap();
        let (a, b, x, z) = (b"a".to_vec(), b"b".to_vec(), b"x".to_vec(), b"z".to_vec());
        assert_eq!(
            read(&as_of),
            vec![
                (a.clone(), x.clone(), 5, 3),
                (a, x, 7, 1),
                (b.clone(), z.clone(), 5, i64::MAX),
                (b, z, 5, 6),
            ],
            "(a, y)'s diffs cancel; (b, z)'s do not fit one i64"
        );
    }

    /// A seek out of the cursor's block into a block, or into an index partition, that fails its check
    /// is fail-stop: the batch's error slot holds the error (naming the file and the offset of the block
    /// or partition), the cursor is past the end, and a later seek serves nothing either.
    #[test]
    fn a_seek_into_a_damaged_block_or_index_partition_stops_the_batch() {
        use crate::blob::BlobBytes;
        use crate::error::Error;
        let keys: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("key{i:06}").into_bytes()).collect();
        let val = [7u8; 100];
        let updates: Vec<(&[u8], &[u8], u64, i64)> = keys.iter().map(|k| (&k[..], &val[..], 1, 1)).collect();
        let good = file(&updates);
        assert!(
            good.block_count() > 70 && good.index_partitions() >= 2,
            "block 70 is in partition 1"
        );
        let target = good.block_first_key(70).unwrap().to_vec();
        let block_at = good.index_entry(70).unwrap().offset;
        // Partition 1's index entries start 64 entries of 48 bytes into the index.
        let partition_at = good.footer().index_offset + 64 * 48;
        for at in [block_at, partition_at] {
            let mut bytes = good.bytes().to_vec();
            bytes[at as usize + 5] ^= 0xff;
            let damaged = BatchFile::open("b", BlobBytes::Heap(Arc::from(bytes))).unwrap();
            let batch = PersistedBatch::<u64>::from_file(Arc::new(damaged)).unwrap();
            let mut c = batch.cursor();
            assert_eq!(c.get_key(&batch), Some(&keys[0][..]), "block 0 serves");
            c.seek_key(&batch, &target);
            assert!(!c.key_valid(&batch), "damage at {at}: the cursor stops");
            c.seek_key(&batch, &keys[keys.len() - 1]);
            assert!(!c.key_valid(&batch), "and serves nothing after");
            assert!(batch.errors().is_stopped());
            match batch.errors().take() {
                Some(Error::Corrupt { file, offset, .. }) => assert_eq!((file.as_str(), offset), ("b", at)),
                other => panic!("damage at {at}: {other:?}"),
            }
        }
    }

    /// A since a narrower timestamp cannot hold would read every time as nothing: refused.
    #[test]
    fn a_since_beyond_the_timestamp_range_is_refused() {
        let f = file(&[(b"a", b"x", 1, 1)]);
        assert!(PersistedBatch::<u32>::from_file_as_of(f.clone(), 5).is_ok());
        let err = PersistedBatch::<u32>::from_file_as_of(f, 1 << 33).unwrap_err();
        assert!(
            err.to_string().contains("since 8589934592, beyond the range"),
            "{err}"
        );
    }

    #[test]
    fn gallop_finds_the_first_non_less_index() {
        let xs: Vec<u32> = (0..100).map(|x| x * 2).collect();
        for lo in 0..xs.len() {
            for target in 0..210 {
                let want = lo
                    + xs[lo..]
                        .iter()
                        .position(|&x| x >= target)
                        .unwrap_or(xs.len() - lo);
                assert_eq!(
                    gallop(lo, xs.len(), |i| xs[i] < target),
                    want,
                    "lo {lo} target {target}"
                );
            }
        }
        assert_eq!(gallop(5, 5, |_| true), 5);
    }
}
