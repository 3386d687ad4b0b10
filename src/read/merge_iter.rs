//! [`MergeIter`]: a k-way merge of sorted update sources into one sorted, consolidated sequence, with
//! logical compaction.
//!
//! Sources are batch cursors and, optionally, one in-memory [`Consolidated`]. Each is sorted by `(key, val, time)`.
//! Times below `since` are advanced to `since` as they are read; advancing is monotone, so every source
//! stays sorted under it, and equal `(key, val, advanced time)` triples — within one source or across
//! sources — are summed. Sums are exact (`i128`): a total outside `i64` is an [`Error::DiffOverflow`]
//! (partial sums may leave it). Zero sums are dropped. Optionally only a range of (original) times is read.
//! Used by snapshots (`since` = 0: no advancing) and by seals that draw from spilled runs. (Compaction
//! merges batch files a key at a time instead: [`KeyMerge`](crate::compaction::KeyMerge).)

use crate::batch::UpdateCursor;
use crate::error::{Error, Result};
use crate::memtable::Consolidated;
use crate::wal::record::UpdateRef;
use std::ops::Range;

/// See the module docs.
pub struct MergeIter<'a> {
    cursors: Vec<UpdateCursor<'a>>,
    unsealed: Option<&'a Consolidated>,
    unsealed_pos: usize,
    since: u64,
    /// Only updates whose (original) time lies in this range are read; the rest are skipped.
    times: Range<u64>,
    failed: bool,
    /// The stream read, to name in errors (may be empty).
    stream: String,
}

/// Steps `c` past updates whose time is outside `times`.
fn settle(c: &mut UpdateCursor<'_>, times: &Range<u64>) -> Result<()> {
    while let Some((_, _, t, _)) = c.get() {
        if times.contains(&t) {
            break;
        }
        c.step()?;
    }
    Ok(())
}

impl<'a> MergeIter<'a> {
    /// Merges `cursors` and `unsealed`, advancing times below `since` to `since`.
    pub fn new(cursors: Vec<UpdateCursor<'a>>, unsealed: Option<&'a Consolidated>, since: u64) -> Self {
        MergeIter {
            cursors,
            unsealed,
            unsealed_pos: 0,
            since,
            times: 0..u64::MAX,
            failed: false,
            stream: String::new(),
        }
    }

    /// Names stream `id` in the [`Error::DiffOverflow`]s the merge reports.
    pub fn in_stream(mut self, id: &str) -> Self {
        self.stream = id.to_string();
        self
    }

    /// Reads only updates with time in `times` (before advancing): a seal takes a spilled run's updates
    /// below its upper, and rewrites the rest.
    pub fn with_times(mut self, times: Range<u64>) -> Self {
        self.times = times;
        self
    }

    fn settle_run(&mut self) {
        while let Some((_, _, t, _)) = self.run_head() {
            if self.times.contains(&t) {
                break;
            }
            self.unsealed_pos += 1;
        }
    }

    fn run_head(&self) -> Option<UpdateRef<'a>> {
        let unsealed = self.unsealed?;
        (self.unsealed_pos < unsealed.len()).then(|| unsealed.get(self.unsealed_pos))
    }

    /// The next consolidated update, or `None` at the end.
    fn next_update(&mut self) -> Result<Option<UpdateRef<'a>>> {
        let since = self.since;
        let advance = |(k, v, t, d): UpdateRef<'a>| (k, v, t.max(since), d);
        loop {
            self.settle_run();
            for c in &mut self.cursors {
                settle(c, &self.times)?;
            }
            // The smallest (key, val, advanced time) among the heads. Sources are few (one per batch plus
            // the memtable), so a linear scan beats a heap.
            let mut min: Option<(&'a [u8], &'a [u8], u64)> = None;
            let heads = self
                .run_head()
                .into_iter()
                .chain(self.cursors.iter().filter_map(|c| c.get()));
            for (k, v, t, _) in heads.map(advance) {
                if min.is_none_or(|m| (k, v, t) < m) {
                    min = Some((k, v, t));
                }
            }
            let Some(min) = min else { return Ok(None) };
            let mut diff = 0i128;
            while let Some((k, v, t, d)) = self.run_head().map(advance) {
                if (k, v, t) != min {
                    break;
                }
                diff += i128::from(d);
                self.unsealed_pos += 1;
                self.settle_run();
            }
            for c in &mut self.cursors {
                while let Some((k, v, t, d)) = c.get().map(advance) {
                    if (k, v, t) != min {
                        break;
                    }
                    diff += i128::from(d);
                    c.step()?;
                    settle(c, &self.times)?;
                }
            }
            if diff != 0 {
                let diff = i64::try_from(diff).map_err(|_| Error::diff_overflow(min.0, min.2))?;
                return Ok(Some((min.0, min.1, min.2, diff)));
            }
        }
    }
}

impl<'a> Iterator for MergeIter<'a> {
    type Item = Result<UpdateRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_update() {
            Ok(u) => u.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e.in_stream(&self.stream)))
            }
        }
    }
}
