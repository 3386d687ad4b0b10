//! Compaction: merging a stream's batches into fewer, larger ones, and advancing times to the stream's
//! `since` while doing so (logical compaction).
//!
//! One file per part: `policy` (which batches to merge), `merge` (one merge: picking under the lock and
//! writing the output, `Store::compact`, `Store::major_compact`), `key_merge` (the k-way merge itself, [`KeyMerge`]), `commit`
//! (step 3 of the protocol, and `Store::allow_compaction`), `workers` (threads and back-pressure).
//!
//! **Policy** (tiered, as in Cassandra's size-tiered and RocksDB's universal compaction; with fan-in 2 it
//! is differential dataflow's Spine, a binary counter). A batch's level is `floor(log2(updates))`, its tier
//! `level / log2(fan_in)` (`Options::merge_fan_in`, default 8). Batches are ordered by time; `fan_in`
//! adjacent batches of one tier are merged into one of the next tier, and a batch whose older neighbour is of
//! a lower tier (consolidation shrank it, or batches of uneven sizes) is merged with every older batch of a
//! lower tier before it, in one merge (up to 64 inputs). The newest due merge runs, and
//! every fourth pick the oldest, so big merges are not starved by the small ones new seals keep making due
//! ([`pick_merge_fair`]). A stream of n updates sealed in chunks of s keeps fewer than `fan_in` batches per
//! tier over `log_fan_in(n / s)` tiers, and each update is rewritten about `log_fan_in(n / s)` times: a
//! third of the binary counter's rewrites at fan-in 8, for at most 7 batches per tier.
//! `Store::major_compact` merges all of a stream's batches into one, when the caller asks.
//!
//! **Merge.** [`merge_batches`] streams the inputs through their mmaps ([`KeyMerge`], a key at a time) into
//! a [`BatchWriter`](crate::batch::BatchWriter) whose helper thread serialises and writes the output blocks while this thread merges:
//! memory is one block per input plus a few output blocks and a 1 MiB output chunk, never a whole batch.
//! Times below `since` become `since`; equal `(key, val, time)` are summed and zeros dropped.
//!
//! **Protocol** (one merge of stream S, inputs A..B adjacent in S's batch list):
//! 1. under `state`: pick A..B; mark S as merging (one merge per stream at a time, besides a tail merge of
//!    batches newer than its inputs, below); allocate a file number;
//! 2. no lock: write the output under its final name `N.batch` (`Blob::create_new`), fsync it; open it (its
//!    name becomes durable with step 3's directory fsync: DESIGN.md §3);
//! 3. under `edit_lock` (no seal or other commit interleaves): write the manifest with A..B replaced by N
//!    (temp, fsync, rename, fsync dir); then publish in memory and mark the inputs to be deleted when their
//!    last reader drops them.
//!
//! A crash before 3's rename leaves the old manifest and an orphan `N.batch` (removed on open); after it, the
//! new manifest and orphan inputs (removed on open). Never a mix, never a lost update. A failure in 2 leaves
//! everything as it was; a failure in 3 poisons the store (the manifest's fate is unknown until reopen).
//!
//! **Threads.** `Workers` runs `Options::compaction_threads` background threads fed by a queue of streams
//! that sealed. `seal` waits only when a stream has more than `Options::max_batches_per_stream` batches
//! (back-pressure); past that bound a merge is always due, of the adjacent pair with the fewest updates
//! if none is due by size ([`pick_merge_bounded`]). While a merge of the stream runs, the held seal runs
//! tail merges itself, on its thread: batches newer than that merge's inputs ([`pick_tail`]), which it
//! never touches, so the two commit in either order (each finds its inputs by file number). With zero
//! threads, merges run inside `seal`.

mod commit;
mod key_merge;
mod merge;
mod policy;
mod workers;

pub use key_merge::{Emit, KeyMerge};
pub use merge::merge_batches;
pub use policy::{
    level_of, pick_merge, pick_merge_bounded, pick_merge_fair, pick_space_amp, pick_tail, tier_of, Pick,
    FAIR_EVERY,
};
pub(crate) use workers::Workers;

use crate::error::{Error, Result};
use crate::store::Store;
