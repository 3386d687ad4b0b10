//! [`Consolidated`]: a memtable's updates sorted by `(key, val, time)`, equal triples summed and zero sums
//! dropped, owned (small updates in their entries, the rest in one arena): what a seal writes into its
//! batch (directly, or through `MergeIter` with spilled runs) and what a snapshot reads of the unsealed
//! updates. Sums are exact (`i128`); a total outside `i64` is an [`Error::DiffOverflow`] (DESIGN.md, "Diff
//! arithmetic").

use super::scratch::Scratch;
use crate::batch::seek::key_prefix;
use crate::error::{Error, Result};
use crate::wal::record::UpdateRef;

/// How many updates ahead [`Consolidated::iter`] prefetches: enough to cover a memory miss behind the
/// writer's work on the updates in between.
const PREFETCH_AHEAD: usize = 8;

/// Inputs of at least this many updates are sorted in partitions ([`Consolidated::from_updates`]): about
/// where one seal's arena and entries (~140 bytes an update with 100-byte vals) outgrow a core's 1 MiB
/// L2 cache several times over.
const PARTITION_MIN_UPDATES: usize = 1 << 15;

/// Updates of one partition, about: their 40-byte entries and 16-byte sort words take a quarter of a 1 MiB
/// L2 cache. This machine's is 2 MiB, and 8 Ki-update partitions sorted faster alone on one thread, but
/// slower in a seal, whose sort shares its core with the batch helper and merges (BENCHMARKS.md, "Small
/// updates").
const PARTITION_UPDATES: usize = 4 << 10;

/// The smallest buffer [`advise_huge`] advises, in bytes.
const HUGE_MIN_BYTES: usize = 64 << 20;

/// Cells of sort words a large input is counted in (by their top 16 bits) before they are cut into
/// partitions.
const CELLS: usize = 1 << 16;

/// Key and val bytes an entry holds itself ([`ConsolidatedEntry::data`]): an update of at most this many
/// (a `(u64, u64)`, an `(i32, String)` of a short string) never touches the arena, so the sort, the
/// consolidation and the writer's read in sorted order stay within the entries, which are in that
/// order, where updates in the arena are visited at random (a cache and TLB miss each, past the caches).
const INLINE: usize = 16;

/// One update of a [`Consolidated`] (40 bytes): its time and diff, and in `data` either its key and val
/// (`key_len + val_len ≤ INLINE`: the key, then the val) or its *sort word* and where its key and val
/// are in the arena (8 bytes each: the word, native-endian, then the offset, little-endian). The sort
/// word is the 8 bytes (big-endian, zero-padded) of the key that follow the prefix every key of the
/// input shares, which order most pairs in the sort without reading the key; an entry holding its key
/// computes it from the key ([`word`](Self::word)).
#[derive(Clone, Copy)]
pub(super) struct ConsolidatedEntry {
    time: u64,
    diff: i64,
    key_len: u32,
    val_len: u32,
    data: [u8; INLINE],
}

impl ConsolidatedEntry {
    /// The entry of `key` and `val` at `time` with `diff` and sort word `word`: the bytes copied into it
    /// if they fit, else copied to the end of `arena`.
    #[inline]
    fn new(key: &[u8], val: &[u8], time: u64, diff: i64, word: u64, arena: &mut Vec<u8>) -> Self {
        let mut data = [0u8; INLINE];
        let (k, v) = (key.len(), val.len());
        if k + v <= INLINE {
            put_small(&mut data[..k], key);
            put_small(&mut data[k..k + v], val);
        } else {
            let (w, at) = data.split_at_mut(8);
            w.copy_from_slice(&word.to_ne_bytes());
            at.copy_from_slice(&(arena.len() as u64).to_le_bytes());
            arena.extend_from_slice(key);
            arena.extend_from_slice(val);
        }
        ConsolidatedEntry {
            time,
            diff,
            key_len: k as u32,
            val_len: v as u32,
            data,
        }
    }

    /// Whether the key and val are in `data`, not in the arena.
    #[inline]
    fn inline(&self) -> bool {
        self.key_len as usize + self.val_len as usize <= INLINE
    }

    /// Where the key starts in the arena (for an entry that is not [`inline`](Self::inline)).
    #[inline]
    fn at(&self) -> usize {
        self.data.last_chunk().map_or(0, |at| u64::from_le_bytes(*at)) as usize
    }

    /// The sort word, for an input whose keys all share their first `shared` bytes.
    #[inline]
    fn word(&self, shared: usize) -> u64 {
        match self.inline() {
            true => key_prefix(&self.data[shared.min(self.key_len as usize)..self.key_len as usize]),
            false => self
                .data
                .first_chunk()
                .map_or(0, |word| u64::from_ne_bytes(*word)),
        }
    }

    /// The key and val, from `data` or from `arena`.
    #[inline]
    fn key_val<'a>(&'a self, arena: &'a [u8]) -> (&'a [u8], &'a [u8]) {
        let (k, v) = (self.key_len as usize, self.val_len as usize);
        match self.inline() {
            true => (&self.data[..k], &self.data[k..k + v]),
            false => {
                let at = self.at();
                (&arena[at..at + k], &arena[at + k..at + k + v])
            }
        }
    }
}

/// Sorted, consolidated, owned updates: ordered by `(key, val, time)`, no repeated
/// `(key, val, time)`, no zero diff.
#[derive(Default)]
pub struct Consolidated {
    arena: Vec<u8>,
    entries: Vec<ConsolidatedEntry>,
    /// Distinct keys among `entries`, counted as they are consolidated.
    keys: usize,
}

impl Consolidated {
    /// Copies, sorts and consolidates `updates` (read two or three times: hence `Clone`).
    ///
    /// The sort is cache-conscious, after the MSD radix sorts of the literature (Knuth, TAOCP vol. 3,
    /// §5.2.5). A first pass finds the prefix every key shares; each key's *sort word* is the 8 bytes
    /// after it (big-endian, zero-padded: ordered as the keys are, ties aside). The keys and vals are
    /// copied, in arrival order, into the entries (updates of at most `INLINE` bytes of key and val, the
    /// common case for DD's everyday types) or into one arena. A large input (at least
    /// `PARTITION_MIN_UPDATES`) is first counted by the top 16 bits of its words (a histogram of 65,536
    /// cells); the cells are cut, in order, into partitions of about `PARTITION_UPDATES`; and each
    /// update's entry is copied into its partition's place, through a buffer of 8 entries a partition written out whole (software
    /// write-combining, as in the radix partitioning of Polychroniou and Ross, SIGMOD 2014: hundreds of
    /// partitions written one entry at a time each missed the cache and the TLB). Each partition is then
    /// sorted and consolidated on its own, its entries and sort words within the core's cache, where one
    /// sort over a whole large seal visited its entries at random (a memory miss per update), and its
    /// output written in place, over the partitions before it (one array of entries, not two). Output
    /// order is unchanged: equal words share a cell, and a partition's words are all below the next
    /// one's. Keys crowded into one cell (the same 2 bytes after the shared prefix) make a larger
    /// partition, sorted the same way.
    ///
    /// The arena and the partitioned entries of a large input (from 64 MiB) are asked to live on huge
    /// pages (`advise_huge`): their first-touch page faults were half of the copy's time.
    ///
    /// Errors: [`Error::DiffOverflow`] (its stream not yet named) if equal `(key, val, time)` sum outside
    /// `i64`.
    pub(crate) fn from_updates<'a, I>(updates: I) -> Result<Self>
    where
        I: Iterator<Item = UpdateRef<'a>> + Clone,
    {
        Self::build(updates, None, PARTITION_MIN_UPDATES, PARTITION_UPDATES)
    }

    /// [`from_updates`](Self::from_updates) in buffers an earlier one gave back to `scratch`
    /// ([`recycle`](Self::recycle)), when it holds any: a seal's arena and entries are tens of MiB, and
    /// fresh ones fault in page by page (4 KiB pages below `HUGE_MIN_BYTES`), which was a quarter of the
    /// consolidation of small updates (BENCHMARKS.md, "Small updates").
    pub(crate) fn from_updates_in<'a, I>(updates: I, scratch: &Scratch) -> Result<Self>
    where
        I: Iterator<Item = UpdateRef<'a>> + Clone,
    {
        Self::build(updates, Some(scratch), PARTITION_MIN_UPDATES, PARTITION_UPDATES)
    }

    /// Gives this consolidation's buffers to `scratch` for the next [`from_updates_in`](Self::from_updates_in).
    pub(crate) fn recycle(self, scratch: &Scratch) {
        scratch.give_bytes(self.arena);
        scratch.give_entries(self.entries);
    }

    /// [`from_updates`](Self::from_updates), in buffers of `scratch` if given, partitioning inputs of at
    /// least `partition_min` updates into partitions of about `partition_updates` (tests take every path
    /// with small inputs).
    fn build<'a, I>(
        updates: I,
        scratch: Option<&Scratch>,
        partition_min: usize,
        partition_updates: usize,
    ) -> Result<Self>
    where
        I: Iterator<Item = UpdateRef<'a>> + Clone,
    {
        // Pass 1: how many updates and bytes, and the prefix every key shares (one memcmp a key against
        // the first, the usual case; none once nothing is shared).
        let (mut count, mut bytes, mut shared) = (0usize, 0usize, 0usize);
        let mut first: &[u8] = &[];
        // Internal iteration (`for_each`) throughout: over the memtable's buckets (a `flat_map`) it runs as
        // nested loops, where a `for` loop's `next` re-checks the inner and outer iterators each update.
        updates.clone().for_each(|(k, v, ..)| {
            if count == 0 {
                (first, shared) = (k, k.len());
            } else if shared > 0 && (k.len() < shared || k[..shared] != first[..shared]) {
                shared = first.iter().zip(k).take_while(|(a, b)| a == b).count();
            }
            count += 1;
            // Only what does not fit an entry goes to the arena.
            if k.len() + v.len() > INLINE {
                bytes += k.len() + v.len();
            }
        });
        let word = |k: &[u8]| key_prefix(&k[shared..]);
        // Where each partition's entries start, ending with `count`; the partition of each cell.
        let mut starts = vec![0usize];
        let mut cell_part: Vec<u32> = Vec::new();
        if count >= partition_min {
            // Pass 2: updates by cell, then the cells cut, in order, into partitions.
            let mut cells = vec![0usize; CELLS];
            updates
                .clone()
                .for_each(|(k, ..)| cells[(word(k) >> 48) as usize] += 1);
            cell_part.reserve_exact(CELLS);
            let mut at = 0;
            for n in cells {
                cell_part.push((starts.len() - 1) as u32);
                at += n;
                if at - starts[starts.len() - 1] >= partition_updates {
                    starts.push(at);
                }
            }
        }
        if starts.last() != Some(&count) {
            starts.push(count);
        }
        let parts = starts.len() - 1;
        // Pass 3: each entry into its partition's next place; keys and vals that do not fit it into the
        // arena (none taken from `scratch` when every update fits its entry: the kept one stays for a
        // seal that needs it).
        let mut arena = match (scratch, bytes) {
            (Some(s), 1..) => s.take_bytes(bytes),
            _ => Vec::with_capacity(bytes),
        };
        advise_huge(arena.spare_capacity_mut());
        let mut staged = scratch.map_or_else(|| Vec::with_capacity(count), |s| s.take_entries(count));
        advise_huge(staged.spare_capacity_mut());
        let blank = ConsolidatedEntry {
            time: 0,
            diff: 0,
            key_len: 0,
            val_len: 0,
            data: [0; INLINE],
        };
        // Written in partition order, not in place order: into the buffer's spare capacity, each slot once.
        // The buffer is empty (as `Scratch` hands them out), so its spare capacity starts at slot 0.
        staged.clear();
        let slots = &mut staged.spare_capacity_mut()[..count];
        let mut next = starts[..parts].to_vec();
        // Entries go to their partitions through a buffer of `WC` entries each (320 bytes: 4 to 16 measured
        // the same), written out whole.
        const WC: usize = 8;
        let mut wc = vec![blank; parts * WC];
        let mut fill = vec![0u8; parts];
        updates.for_each(|(k, v, time, diff)| {
            let w = word(k);
            let p = match parts {
                1 => 0,
                _ => cell_part[(w >> 48) as usize] as usize,
            };
            let f = fill[p] as usize;
            wc[p * WC + f] = ConsolidatedEntry::new(k, v, time, diff, w, &mut arena);
            if f + 1 == WC {
                write_slots(&mut slots[next[p]..next[p] + WC], &wc[p * WC..(p + 1) * WC]);
                next[p] += WC;
                fill[p] = 0;
            } else {
                fill[p] += 1;
            }
        });
        for p in 0..parts {
            let f = fill[p] as usize;
            write_slots(&mut slots[next[p]..next[p] + f], &wc[p * WC..p * WC + f]);
            next[p] += f;
        }
        // Each partition's slots were written from its start, one after another (a write past the
        // buffer's `count` slots panics at its index): so if each ends at the next one's start, every slot
        // below `count` was written. The passes read the same updates (a clone of one iterator).
        assert!(
            (0..parts).all(|p| next[p] == starts[p + 1]),
            "partitions filled exactly"
        );
        // SAFETY: the slots below `count` are within the capacity (`take_entries(count)`), and were all
        // written (initialized), as the assertion above shows.
        unsafe { staged.set_len(count) };
        // Each partition is consolidated in place: its output never reaches past its own end (at most
        // one entry out per entry in), and its entries are read from a copy (`part`).
        let mut out = Consolidated {
            arena,
            entries: staged,
            keys: 0,
        };
        let (mut kept, mut part, mut order) = (0, Vec::new(), Vec::new());
        let consolidated = (0..parts).try_for_each(|p| {
            part.clear();
            part.extend_from_slice(&out.entries[starts[p]..starts[p + 1]]);
            kept = out.consolidate_part(&part, shared, kept, &mut order)?;
            Ok(())
        });
        out.entries.truncate(kept);
        // On an error (a diff overflow, rare) the buffers are freed, not given back.
        consolidated.map(|()| out)
    }

    /// Sorts `staged` (entries into `self.arena` of keys that all share their first `shared` bytes, so
    /// that their sort words are order-consistent; every key above the keys of `self.entries[..kept]`,
    /// and the keys of one sort word all in `staged`) by `(key, val, time)`, sums equal triples (exactly:
    /// partial sums may leave `i64`), drops zero sums and writes the rest to `self.entries` from `kept`
    /// on, counting new keys; returns where they end. `self.entries` must hold
    /// at least `kept + staged.len()` entries (they are overwritten). `order` is scratch space, kept
    /// between calls.
    ///
    /// Errors: [`Error::DiffOverflow`] (its stream not yet named) if a sum is outside `i64`.
    fn consolidate_part(
        &mut self,
        staged: &[ConsolidatedEntry],
        shared: usize,
        mut kept: usize,
        order: &mut Vec<u128>,
    ) -> Result<usize> {
        debug_assert!(
            kept + staged.len() <= self.entries.len(),
            "room for the output in place"
        );
        // Sort 16-byte words rather than the 40-byte entries (about half the time for random keys): above
        // the entry's index, the 8 bytes (big-endian, zero-padded) of its key that follow the bytes every
        // key shares (`user:` of string keys, a small tuple field's zeros), which order most pairs without
        // touching the arena. Skipping a shared prefix keeps the byte order, and the zero padding keeps it
        // for keys that end within the 8 bytes. Runs of one word are then ordered by their bytes.
        let arena = &self.arena;
        fn kv<'a>(arena: &'a [u8], e: &'a ConsolidatedEntry) -> (&'a [u8], &'a [u8], u64) {
            let (key, val) = e.key_val(arena);
            (key, val, e.time)
        }
        order.clear();
        order
            .extend((staged.iter().enumerate()).map(|(i, e)| (u128::from(e.word(shared)) << 64) | i as u128));
        order.sort_unstable();
        let at = |word: u128| &staged[word as u64 as usize];
        for run in order.chunk_by_mut(|a, b| a >> 64 == b >> 64) {
            if run.len() > 1 {
                run.sort_unstable_by(|&a, &b| kv(arena, at(a)).cmp(&kv(arena, at(b))));
            }
        }
        // The sort word of the last update kept from `staged`, none yet.
        let mut last_word = None;
        // By index, not a `Peekable` (whose `next_if`, not inlined, was 3% of a seal's samples).
        let mut i = 0;
        while let Some(&first) = order.get(i) {
            let (word, mut e) = ((first >> 64) as u64, *at(first));
            let mut sum = i128::from(e.diff);
            i += 1;
            while let Some(&next) = order.get(i) {
                let n = at(next);
                if (next >> 64) as u64 != word || kv(arena, n) != kv(arena, &e) {
                    break;
                }
                sum += i128::from(n.diff);
                i += 1;
            }
            e.diff = i64::try_from(sum).map_err(|_| {
                let (key, _, time) = kv(arena, &e);
                Error::diff_overflow(key, time)
            })?;
            if e.diff != 0 {
                // A new key unless the previous kept update has the same one (the words, in a register,
                // tell most keys apart without reading them; an update kept before `staged` has another
                // key, as every key of this word is in `staged`).
                let same_key =
                    last_word == Some(word) && self.entries[kept - 1].key_val(arena).0 == e.key_val(arena).0;
                if !same_key {
                    self.keys += 1;
                }
                last_word = Some(word);
                self.entries[kept] = e;
                kept += 1;
            }
        }
        Ok(kept)
    }

    /// Number of updates.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of distinct keys (counted as the updates were consolidated: a pass over the sorted order
    /// would visit the arena at random).
    pub fn key_count(&self) -> usize {
        debug_assert_eq!(
            self.keys,
            self.iter()
                .map(|(k, ..)| k)
                .collect::<Vec<_>>()
                .chunk_by(|a, b| a == b)
                .count(),
            "key count kept by consolidate_part"
        );
        self.keys
    }

    /// Update `i` (`i < len()`).
    #[inline]
    pub fn get(&self, i: usize) -> UpdateRef<'_> {
        let e = &self.entries[i];
        let (key, val) = e.key_val(&self.arena);
        (key, val, e.time, e.diff)
    }

    /// The updates in order. Entries are in that order, and so are the keys and vals they hold; those in
    /// the arena are visited at random, one cache miss or two per update, so the iterator asks for the key
    /// and val bytes of the update 8 places ahead (`PREFETCH_AHEAD`) as it yields each one: a seal writing
    /// the updates then waits on memory far less (the writer's order check on each key was most of a
    /// seal's time).
    pub fn iter(&self) -> impl Iterator<Item = UpdateRef<'_>> + '_ {
        (0..self.len()).map(|i| {
            if let Some(ahead) = self.entries.get(i + PREFETCH_AHEAD).filter(|e| !e.inline()) {
                let (at, len) = (ahead.at(), ahead.key_len as usize + ahead.val_len as usize);
                // The cache lines of the update's first 256 bytes, and its last byte's; longer vals are
                // read sequentially, which the hardware prefetcher follows.
                for off in (0..len.min(256)).step_by(64) {
                    crate::batch::prefetch(&self.arena, at + off);
                }
                crate::batch::prefetch(&self.arena, at + len.saturating_sub(1));
            }
            self.get(i)
        })
    }
}

/// Copies `from` into `to` (as long, at most [`INLINE`] bytes), with a fixed-size copy for the widths of
/// the built-in codecs' integers (a call to `memcpy` otherwise).
#[inline]
fn put_small(to: &mut [u8], from: &[u8]) {
    match (<&mut [u8; 8]>::try_from(&mut *to), <&[u8; 8]>::try_from(from)) {
        (Ok(to), Ok(from)) => *to = *from,
        _ => to.copy_from_slice(from),
    }
}

/// Copies `from` into the uninitialized `slots` (as many).
fn write_slots<T: Copy>(slots: &mut [std::mem::MaybeUninit<T>], from: &[T]) {
    debug_assert_eq!(slots.len(), from.len());
    for (slot, &value) in slots.iter_mut().zip(from) {
        slot.write(value);
    }
}

/// Asks the kernel to back `buf` with transparent huge pages (`madvise(MADV_HUGEPAGE)`, Linux; nothing
/// elsewhere): a 2 MiB page faults once where 512 small ones fault one by one. Only for buffers of at
/// least `HUGE_MIN_BYTES`, above glibc's largest mmap threshold (32 MiB on 64-bit): such a buffer is a
/// mapping of its own, so the advice leaves with it and never marks heap memory that outlives it.
/// Advice only: the contents and the allocation are unchanged, and a refusal (huge pages off) is ignored.
fn advise_huge<T>(buf: &mut [std::mem::MaybeUninit<T>]) {
    #[cfg(target_os = "linux")]
    {
        let len = std::mem::size_of_val(buf);
        // SAFETY: sysconf only reads a system constant.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => return,
        };
        if len < HUGE_MIN_BYTES {
            return;
        }
        let start = buf.as_mut_ptr() as usize;
        let (first, end) = (start.next_multiple_of(page), (start + len) / page * page);
        // SAFETY: `[first, end)` is whole pages inside `buf`'s own allocation, which this call borrows
        // mutably; MADV_HUGEPAGE only changes how the kernel backs those pages, never their contents.
        unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buf;
}

#[cfg(test)]
#[path = "consolidated_tests.rs"]
mod tests;
