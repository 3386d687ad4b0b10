//! The memtable (the seed's FutureLog): unsealed updates of one stream, indexed by time.
//!
//! Updates may arrive at any time at or beyond the stream's sealed upper, in any order. They are grouped
//! into one [`Bucket`] per distinct time (a `BTreeMap`), so a seal takes exactly the buckets below its
//! upper with `split_off`, and updates at later times stay put. Each bucket remembers the smallest WAL
//! [`Lsn`] that wrote into it: the WAL may drop a record only once no bucket still needs it.
//!
//! Keys and vals are copied into one byte arena per bucket (no allocation per update). Buckets are shared
//! copy-on-write (`Arc`): a snapshot or lookup takes the bucket index under the store's lock in
//! O(buckets) and reads the buckets after releasing it; a later write into a bucket still shared copies
//! that one bucket first.
//! [`Consolidated`] (`consolidated.rs`) is the sorted, consolidated form that seals and snapshots read.
//!
//! Diff arithmetic (DESIGN.md, "Diff arithmetic"): equal `(key, val, time)` are summed in `i128` and a
//! total outside `i64` is an [`Error::DiffOverflow`]. Each bucket keeps the sum of its diffs' absolute
//! values as a bound: while the bound plus a write's is within `i64`, no total can leave it, and
//! [`MemTable::check_sums`] costs one lookup per time; only past it are the bucket's equal updates summed.

use crate::error::{Error, Result};
use crate::wal::record::UpdateRef;
use crate::wal::Lsn;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

mod consolidated;
mod scratch;
pub use consolidated::Consolidated;
pub(crate) use scratch::Scratch;

/// Whether an exact sum of diffs fits an `i64` diff.
fn fits(sum: i128) -> bool {
    i64::try_from(sum).is_ok()
}

/// One update's place in a bucket's arena: the key at `at`, the val right after it.
#[derive(Clone, Copy, Debug)]
struct Entry {
    at: usize,
    key_len: u32,
    val_len: u32,
    diff: i64,
}

/// The updates of one time.
#[derive(Clone, Debug, Default)]
pub struct Bucket {
    min_lsn: Lsn,
    arena: Vec<u8>,
    entries: Vec<Entry>,
    /// The sum of the absolute values of the diffs: no sum of some of them is further from zero.
    abs_sum: u128,
}

impl Bucket {
    fn push(&mut self, key: &[u8], val: &[u8], diff: i64) {
        let at = self.arena.len();
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(val);
        self.entries.push(Entry {
            at,
            key_len: key.len() as u32,
            val_len: val.len() as u32,
            diff,
        });
        self.abs_sum += u128::from(diff.unsigned_abs());
    }

    fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8], i64)> + Clone + '_ {
        self.entries.iter().map(|e| {
            let key_end = e.at + e.key_len as usize;
            (
                &self.arena[e.at..key_end],
                &self.arena[key_end..key_end + e.val_len as usize],
                e.diff,
            )
        })
    }

    /// Key and val bytes plus the per-update overhead, as the memtable's budget counts them.
    pub fn bytes(&self) -> usize {
        bucket_bytes(self)
    }

    fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.entries.capacity() * std::mem::size_of::<Entry>()
    }
}

/// Unsealed updates of one stream. See the module docs.
#[derive(Default)]
pub struct MemTable {
    buckets: Buckets,
    update_count: usize,
    /// Key and val bytes plus a fixed per-update overhead: what the memory budget is checked against.
    bytes: usize,
}

/// Bytes charged per update on top of its key and val (its arena entry).
const ENTRY_BYTES: usize = std::mem::size_of::<Entry>();

fn bucket_bytes(b: &Bucket) -> usize {
    b.arena.len() + b.entries.len() * ENTRY_BYTES
}

/// Buckets by time: taken out of a memtable by a seal, or shared with a reader ([`MemTable::share`]).
pub type Buckets = BTreeMap<u64, Arc<Bucket>>;

impl MemTable {
    /// Adds an update written by the WAL record at `lsn`. Keys and vals must fit `u32` lengths (the WAL
    /// limits them far below that).
    pub fn insert(&mut self, update: UpdateRef<'_>, lsn: Lsn) {
        self.insert_all(&[update], lsn)
    }

    /// Adds the updates of one write (one WAL record at `lsn`), as [`insert`](Self::insert) would one by
    /// one, but looking up each time's bucket once per run of equal times (a write usually has one time)
    /// and growing its arena once per run, to the run's size.
    pub fn insert_all(&mut self, updates: &[UpdateRef<'_>], lsn: Lsn) {
        let mut rest = updates;
        while let Some(&(_, _, time, _)) = rest.first() {
            let run_len = rest.iter().position(|u| u.2 != time).unwrap_or(rest.len());
            let (run, later) = rest.split_at(run_len);
            rest = later;
            let bucket = self.buckets.entry(time).or_insert_with(|| {
                Arc::new(Bucket {
                    min_lsn: lsn,
                    ..Bucket::default()
                })
            });
            let bucket = Arc::make_mut(bucket);
            bucket.min_lsn = bucket.min_lsn.min(lsn);
            bucket
                .arena
                .reserve(run.iter().map(|u| u.0.len() + u.1.len()).sum());
            bucket.entries.reserve(run.len());
            for &(key, val, _, diff) in run {
                debug_assert!(key.len() <= u32::MAX as usize && val.len() <= u32::MAX as usize);
                bucket.push(key, val, diff);
                self.update_count += 1;
                self.bytes += key.len() + val.len() + ENTRY_BYTES;
            }
        }
    }

    /// Checks that inserting `updates` keeps the sum of every `(key, val, time)` the memtable holds within
    /// `i64` ([`Error::DiffOverflow`] for the first that leaves it otherwise, its stream not yet named).
    /// Cheap while no bucket comes near the bound (see the module docs).
    pub fn check_sums<'a>(&self, updates: impl Iterator<Item = UpdateRef<'a>> + Clone) -> Result<()> {
        // One pass: the write's bound, and the largest bound of a bucket it writes to (looked up once per
        // run of equal times; a write usually has one time).
        let (mut incoming, mut held, mut prev_time) = (0u128, 0u128, None);
        for (_, _, time, diff) in updates.clone() {
            incoming += u128::from(diff.unsigned_abs());
            if prev_time != Some(time) {
                prev_time = Some(time);
                held = held.max(self.buckets.get(&time).map_or(0, |b| b.abs_sum));
            }
        }
        if held + incoming <= i64::MAX as u128 {
            return Ok(());
        }
        // Exact: the sum of each (key, val, time) written, with the equal updates already held.
        let mut sums: HashMap<(&[u8], &[u8], u64), i128> = HashMap::new();
        for (k, v, t, d) in updates {
            *sums.entry((k, v, t)).or_insert(0) += i128::from(d);
        }
        let times: std::collections::BTreeSet<u64> = sums.keys().map(|x| x.2).collect();
        for time in times {
            if let Some(bucket) = self.buckets.get(&time) {
                for (k, v, d) in bucket.iter() {
                    if let Some(sum) = sums.get_mut(&(k, v, time)) {
                        *sum += i128::from(d);
                    }
                }
            }
        }
        let first_bad = sums
            .into_iter()
            .filter(|(_, sum)| !fits(*sum))
            .map(|((k, v, t), _)| (t, k, v))
            .min();
        match first_bad {
            Some((t, k, _)) => Err(Error::diff_overflow(k, t)),
            None => Ok(()),
        }
    }

    /// Key and val bytes held, plus a fixed overhead per update.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether the updates of one `(key, val, time)` below `upper` might sum outside `i64`: a bucket there
    /// whose diffs' absolute values sum past `i64::MAX` (the bound `check_sums` keeps; a bucket passes it
    /// only when updates were put back without the check, by a failed spill or by WAL replay after a
    /// crash during one). O(buckets below `upper`).
    pub fn may_overflow_below(&self, upper: u64) -> bool {
        (self.buckets.range(..upper)).any(|(_, b)| b.abs_sum > i64::MAX as u128)
    }

    /// Whether a bucket with time below `upper` is held.
    pub fn holds_below(&self, upper: u64) -> bool {
        self.buckets.range(..upper).next().is_some()
    }

    /// Takes every bucket with time below `upper`.
    pub fn drain_below(&mut self, upper: u64) -> Buckets {
        let keep = self.buckets.split_off(&upper);
        let drained = std::mem::replace(&mut self.buckets, keep);
        self.update_count -= drained.values().map(|b| b.entries.len()).sum::<usize>();
        self.bytes -= drained.values().map(|b| bucket_bytes(b)).sum::<usize>();
        drained
    }

    /// Puts back buckets taken by [`drain_below`](Self::drain_below) (a seal that failed).
    pub fn restore(&mut self, drained: Buckets) {
        for (time, bucket) in drained {
            self.update_count += bucket.entries.len();
            self.bytes += bucket_bytes(&bucket);
            match self.buckets.get_mut(&time) {
                None => {
                    self.buckets.insert(time, bucket);
                }
                Some(existing) => {
                    let existing = Arc::make_mut(existing);
                    existing.min_lsn = existing.min_lsn.min(bucket.min_lsn);
                    for (k, v, d) in bucket.iter() {
                        existing.push(k, v, d);
                    }
                }
            }
        }
    }

    /// The buckets with times in `range`, shared (O(buckets), no update copied): see the module docs.
    pub fn share(&self, range: impl std::ops::RangeBounds<u64>) -> Buckets {
        self.buckets.range(range).map(|(t, b)| (*t, b.clone())).collect()
    }

    /// The smallest WAL LSN any held update came from.
    pub fn min_lsn(&self) -> Option<Lsn> {
        min_lsn(&self.buckets)
    }

    /// The latest time of an update held, if any.
    pub fn max_time(&self) -> Option<u64> {
        self.buckets.keys().next_back().copied()
    }

    /// Updates held.
    pub fn update_count(&self) -> usize {
        self.update_count
    }

    /// Heap bytes used, approximately.
    pub fn heap_bytes(&self) -> usize {
        self.buckets.values().map(|b| b.heap_bytes()).sum()
    }

    /// Calls `f(val, time, diff)` for every held update of `key` with time at or before `as_of`. A scan of
    /// those buckets (the memtable has no key index: it is bounded by how often the stream seals).
    pub fn for_key(&self, key: &[u8], as_of: u64, f: impl FnMut(&[u8], u64, i64)) {
        for_key_in(&self.buckets, key, as_of, f)
    }

    /// Every update held, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = UpdateRef<'_>> + '_ {
        iter_buckets(&self.buckets)
    }
}

/// [`MemTable::for_key`] over drained buckets.
pub fn for_key_in(buckets: &Buckets, key: &[u8], as_of: u64, mut f: impl FnMut(&[u8], u64, i64)) {
    for (&time, bucket) in buckets.range(..=as_of) {
        for (k, v, d) in bucket.iter() {
            if k == key {
                f(v, time, d);
            }
        }
    }
}

/// The smallest WAL LSN any update in `buckets` came from.
pub fn min_lsn(buckets: &Buckets) -> Option<Lsn> {
    buckets.values().map(|b| b.min_lsn).min()
}

/// Every update in `buckets` with time in `times`, in no particular order.
pub fn iter_buckets_in(
    buckets: &Buckets,
    times: std::ops::RangeInclusive<u64>,
) -> impl Iterator<Item = UpdateRef<'_>> + Clone + '_ {
    buckets
        .range(times)
        .flat_map(|(&time, b)| b.iter().map(move |(k, v, d)| (k, v, time, d)))
}

/// Every update in `buckets`, in no particular order.
pub fn iter_buckets(buckets: &Buckets) -> impl Iterator<Item = UpdateRef<'_>> + Clone + '_ {
    buckets
        .iter()
        .flat_map(|(&time, b)| b.iter().map(move |(k, v, d)| (k, v, time, d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every update of `buckets`, sorted.
    fn sorted(buckets: &Buckets) -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
        let mut all: Vec<_> = iter_buckets(buckets)
            .map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn shared_buckets_are_copied_on_write() {
        let mut m = MemTable::default();
        m.insert((b"a", b"1", 5, 1), 10);
        m.insert((b"b", b"1", 6, 1), 11);
        let view = m.share(..);
        let before = sorted(&view);
        // Into a shared bucket, a new bucket, and a bucket the view does not hold.
        m.insert((b"c", b"1", 5, 1), 12);
        m.insert((b"d", b"1", 7, 1), 13);
        let narrow = m.share(..=5);
        m.insert((b"e", b"1", 6, -1), 14);
        assert_eq!(sorted(&view), before, "a reader's view never changes");
        assert_eq!(sorted(&narrow).len(), 2, "{narrow:?}");
        assert_eq!((m.update_count(), m.min_lsn()), (5, Some(10)));
        // A failed flush puts back buckets that a reader still shares: the memtable and the view stay right.
        let drained = m.drain_below(7);
        let held = drained.clone();
        m.insert((b"f", b"1", 5, 1), 15);
        m.restore(drained);
        assert_eq!(sorted(&held).len(), 4);
        assert_eq!(m.update_count(), 6);
        assert_eq!(m.bytes(), 6 * (2 + ENTRY_BYTES));
        let mut all = sorted(&m.share(..));
        all.dedup();
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn drain_takes_exactly_the_times_below_upper() {
        let mut m = MemTable::default();
        m.insert((b"a", b"x", 5, 1), 10);
        m.insert((b"b", b"x", 2, 1), 20);
        m.insert((b"c", b"x", 9, 1), 5);
        assert_eq!(m.min_lsn(), Some(5));
        let d = m.drain_below(6);
        assert_eq!(iter_buckets(&d).count(), 2);
        assert_eq!(m.update_count(), 1);
        assert_eq!(m.min_lsn(), Some(5));
        m.restore(d);
        assert_eq!(m.update_count(), 3);
        assert_eq!(m.min_lsn(), Some(5));
    }

    #[test]
    fn insert_all_equals_one_by_one() {
        let ups: Vec<UpdateRef<'_>> = vec![
            (b"b", b"1", 3, 1),
            (b"a", b"22", 3, -1),
            (b"c", b"", 1, 2),
            (b"a", b"1", 3, 1),
            (b"", b"x", 7, 1),
        ];
        let (mut one, mut all) = (MemTable::default(), MemTable::default());
        one.insert(ups[0], 4);
        for &u in &ups {
            one.insert(u, 9);
        }
        all.insert_all(&[ups[0]], 4);
        all.insert_all(&ups, 9);
        assert_eq!(one.update_count(), all.update_count());
        assert_eq!(one.bytes(), all.bytes());
        assert_eq!(one.min_lsn(), all.min_lsn());
        let (a, b): (Vec<_>, Vec<_>) = (one.iter().collect(), all.iter().collect());
        assert_eq!(a, b);
        assert_eq!(one.buckets.get(&3).map(|b| b.min_lsn), Some(4));
        assert_eq!(all.buckets.get(&1).map(|b| b.min_lsn), Some(9));
    }

    #[test]
    fn may_overflow_below_sees_buckets_past_the_bound_below_the_upper() {
        let mut m = MemTable::default();
        m.insert((b"k", b"v", 3, i64::MAX), 1);
        assert!(!m.may_overflow_below(10));
        // What a failed spill or a replay puts back without the check.
        m.insert((b"k", b"v", 3, 1), 2);
        assert!(m.may_overflow_below(4));
        assert!(!m.may_overflow_below(3), "the bucket at 3 is not below 3");
        m.insert((b"k", b"v", 3, -1), 3);
        assert!(m.may_overflow_below(4), "a bound, not the sum: |MAX| + 1 + 1");
    }

    #[test]
    fn check_sums_rejects_exactly_the_totals_out_of_range() {
        let max = i64::MAX;
        let mut m = MemTable::default();
        m.insert((b"a", b"x", 1, max), 1);
        m.insert((b"a", b"y", 1, 5), 1);
        // Another key: accepted.
        assert!(m.check_sums([(&b"b"[..], &b"x"[..], 1, 3)].into_iter()).is_ok());
        // Another val, another time, or a total that fits despite a partial sum out of range: accepted.
        let ok: Vec<UpdateRef<'_>> = vec![
            (b"a", b"y", 1, max - 5),
            (b"a", b"x", 2, max),
            (b"a", b"x", 1, -1),
        ];
        assert!(m.check_sums(ok.iter().copied()).is_ok());
        let fits: Vec<UpdateRef<'_>> = vec![(b"a", b"x", 1, max), (b"a", b"x", 1, -max)];
        assert!(m.check_sums(fits.iter().copied()).is_ok());
        // One over: rejected, naming the key and time.
        let bad: Vec<UpdateRef<'_>> = vec![(b"c", b"x", 1, 1), (b"a", b"x", 1, 1)];
        match m.check_sums(bad.iter().copied()) {
            Err(Error::DiffOverflow { key, time, .. }) => assert_eq!((&key[..], time), (&b"a"[..], 1)),
            other => panic!("{other:?}"),
        }
        // Below the minimum too.
        let mut m = MemTable::default();
        m.insert((b"a", b"x", 1, i64::MIN), 1);
        assert!(m.check_sums([(&b"a"[..], &b"x"[..], 1, -1)].into_iter()).is_err());
        assert!(m.check_sums([(&b"a"[..], &b"x"[..], 1, 1)].into_iter()).is_ok());
    }
}
