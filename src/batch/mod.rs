//! Batch files: immutable, sorted, consolidated, checksummed sets of updates with a [`Description`].
//!
//! A batch holds every update of one stream with time in `[lower, upper)` (times below `since` may have
//! been advanced to `since` by logical compaction). Updates are sorted by `(key, val, time)` and
//! consolidated: no two share `(key, val, time)` and no diff is zero.
//!
//! The layout (specified byte by byte in FORMAT.md §2; constants in [`format`](mod@format)) is a sequence of *blocks*, each a small
//! columnar trie (keys → vals → (time, diff)) addressed by `u32` offset arrays (left out where fixed widths
//! or one-to-one counts imply them) with frame-of-reference coded times and diffs (format version 2), so a
//! reader serves keys and vals as `&[u8]` straight out of the read-only memory map with no decoding pass. A block index with the
//! first and last key of every block (a sparse index with fences) lets a reader seek without touching the
//! data pages of other blocks. Every block, the index, the header and the footer carry xxh3 checksums.
//!
//! - [`writer`]: [`BatchWriter`] streams sorted updates into a [`crate::blob::BlobWriter`].
//! - [`reader`]: [`BatchFile`] opens a batch's bytes, checks them, and hands out verified [`Block`]s.
//! - [`cursor`]: [`UpdateCursor`] walks a batch's updates in order.
//! - `block`: [`Block`], one block read in place, every access bounds-checked.
//! - `column`: a block's frame-of-reference coded times or diffs, their width resolved once per block.
//! - `builder`: builds one block's columns as the writer pushes updates.
//! - `sink`: the writer's output side: chunks, index, key filter, footer (optionally on a helper I/O
//!   thread).
//! - [`filter`]: the key filter (a blocked Bloom filter).
//! - `seek`: a lookup's [`KeyProbe`] (hash and prefix computed once) and the in-memory fence prefixes
//!   that find a key's block with few cache misses.
//! - [`format`](mod@format): the layout's constants and encoders (FORMAT.md §2).
//! - `scrub`: checks padding, reserved fields and section places (every byte of a file).
//! - `verify`: [`BatchFile::verify`], the full structural check for tools and tests.

mod block;
pub(crate) mod builder;
mod column;
pub mod cursor;
pub mod filter;
pub mod format;
mod index;
pub mod reader;
mod scrub;
pub(crate) mod seek;
mod sink;
mod verify;
pub mod writer;

pub use block::Block;
pub use cursor::UpdateCursor;
pub(crate) use reader::BlockView;
pub use reader::{BatchFile, BlockBytes};
pub use seek::KeyProbe;
pub use writer::{BatchStats, BatchWriter};

/// The frontier value that stands for the empty antichain (a closed stream: no time is beyond it).
/// Times are `u64` below this value.
pub const FRONTIER_CLOSED: u64 = u64::MAX;

/// The times a batch covers, as differential dataflow describes batches: updates with `lower <= time <
/// upper`, where times not beyond `since` may have been advanced to `since`. Frontiers are single `u64`s
/// (times are totally ordered); [`FRONTIER_CLOSED`] is the empty frontier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Description {
    /// Every update's time is at or beyond this.
    pub lower: u64,
    /// Every update's time is below this.
    pub upper: u64,
    /// Times below this may have been advanced to it.
    pub since: u64,
}

/// The name of batch file number `file_no` in the blob.
pub fn batch_file_name(file_no: u64) -> String {
    format!("{file_no:016x}.batch")
}

/// The file number in a batch file name, if `name` is one.
pub fn parse_batch_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".batch")?;
    if stem.len() != 16 {
        return None;
    }
    u64::from_str_radix(stem, 16).ok()
}

/// The first index in `0..n` at which `below` is false, where `below` holds on a prefix of `0..n` (a
/// binary search: std's `slice::partition_point`, over indexes whose items are computed, not stored).
fn partition_point(n: usize, mut below: impl FnMut(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if below(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// Asks the CPU to bring the cache line of `items[at]` in, without waiting for it (a hint; nothing if
/// `at` is out of range or the target has no prefetch instruction).
#[inline]
pub(crate) fn prefetch<T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(w) = items.get(at) {
        // SAFETY: prefetching reads nothing architecturally and cannot fault; the pointer is to a live
        // element anyway. SSE (and so `prefetcht0`) is part of the x86_64 baseline.
        unsafe {
            core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(
                (w as *const T).cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}

#[cfg(test)]
mod index_tests;
#[cfg(test)]
mod narrow_tests;
#[cfg(test)]
mod tests;
