//! The merge policy: which adjacent batches of a stream to merge next (tiers of `merge_fan_in` batches,
//! fairness between old and new due merges, the back-pressure bound, the size-amplification trigger).
//! Pure functions of the batches' update counts, oldest first; see the module docs of `compaction`.

/// A batch's level: `floor(log2(update_count))` (0 for 0 or 1 updates).
pub fn level_of(update_count: u64) -> u32 {
    63 - update_count.max(1).leading_zeros()
}

/// A batch's tier under merge fan-in `fan_in` (a power of two from 2 to 64): `level / log2(fan_in)`, so
/// merging `fan_in` batches of one tier makes one batch of the next tier.
pub fn tier_of(update_count: u64, fan_in: usize) -> u32 {
    level_of(update_count) / fan_in_bits(fan_in)
}

/// `log2(fan_in)` for a fan-in clamped to a power of two in `2..=64`.
fn fan_in_bits(fan_in: usize) -> u32 {
    let fan_in = fan_in.clamp(2, 64);
    63 - (fan_in as u64).leading_zeros()
}

/// A merge the policy picks: `len` adjacent batches starting at `start` (oldest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    /// Index of the oldest input.
    pub start: usize,
    /// Number of inputs (at least 2).
    pub len: usize,
}

/// The most batches one merge of an inversion takes (as the largest `merge_fan_in`).
const MAX_INPUTS: usize = 64;

/// The due merges of a stream whose batches have `update_counts` (oldest first), in order: runs of
/// `fan_in` adjacent batches of one tier, each starting where its tier's block of adjacent batches starts
/// (the oldest `fan_in` of the block), and inversions: a batch with an older neighbour of a lower tier
/// (after consolidation shrank a batch, or after batches of uneven sizes — logged seals flushed by time,
/// an arrangement's coalesced seals, appends — left a smaller batch between bigger ones), merged with
/// every batch older than it back to the first of its tier or above (at most [`MAX_INPUTS`] in all). A tiered policy (as in Cassandra's STCS and
/// RocksDB's universal compaction): each update is rewritten about `log_fan_in(n / seal size)` times, and a
/// stream keeps fewer than `fan_in` batches per tier.
///
/// Why runs start at their block's start: merging the *newest* `fan_in` of a longer block (a backlog of
/// seals behind the merges) would leave older batches of that tier before the newer, bigger output — an
/// inversion — and each inversion merge then rewrites the big batch (10 M updates appended faster than merges
/// ran wrote 10.5 bytes per payload byte, when an inversion merged one pair at a time). Merged from the
/// block's oldest end, outputs stay older than the batches left, and no inversion is made.
fn due_merges(update_counts: &[u64], fan_in: usize) -> impl DoubleEndedIterator<Item = Pick> + '_ {
    let fan_in = 1usize << fan_in_bits(fan_in);
    let tiers: Vec<u32> = update_counts.iter().map(|&c| tier_of(c, fan_in)).collect();
    (0..update_counts.len().saturating_sub(1)).filter_map(move |i| {
        if tiers[i] < tiers[i + 1] {
            // Every batch older than the bigger one, back from `i`, while of a lower tier than it: one
            // merge, one rewrite of the bigger batch, where merging pairs would rewrite it once for each
            // (a run of 8 batches merged past a smaller batch older than it, then the 7 batches of its
            // old tier before that one: 8 rewrites of the biggest batch of a stream, measured at 10 M
            // updates with logged seals flushed by size on a loaded machine — BENCHMARKS.md, "Logged
            // seals flushed by size").
            let below = (0..=i)
                .rev()
                .take_while(|&j| tiers[j] < tiers[i + 1])
                .take(MAX_INPUTS - 1)
                .count();
            return Some(Pick {
                start: i + 1 - below,
                len: below + 1,
            });
        }
        if i > 0 && tiers[i - 1] == tiers[i] {
            return None;
        }
        let run = tiers.get(i..i + fan_in)?;
        run.iter().all(|&t| t == tiers[i]).then_some(Pick {
            start: i,
            len: fan_in,
        })
    })
}

/// Which merge to run next, if any: the newest due merge (the cheap ones new seals make due), except that
/// every [`FAIR_EVERY`]th pick, when an older merge is due too, it is the oldest — so a big merge is never
/// starved by small ones (with newest-first only, space amplification reached 8.5 over 10 M updates; with
/// oldest-first only, small batches piled up to the back-pressure bound). `turn` counts the picks.
pub fn pick_merge_fair(update_counts: &[u64], fan_in: usize, turn: &mut u32) -> Option<Pick> {
    let newest = due_merges(update_counts, fan_in).next_back()?;
    let oldest = due_merges(update_counts, fan_in).next().unwrap_or(newest);
    if oldest == newest {
        return Some(newest);
    }
    *turn += 1;
    if *turn >= FAIR_EVERY {
        *turn = 0;
        return Some(oldest);
    }
    Some(newest)
}

/// How often [`pick_merge_fair`] takes the oldest due merge when an older one than the newest is due.
pub const FAIR_EVERY: u32 = 4;

/// The size-amplification trigger of RocksDB's universal compaction (`max_size_amplification_percent`):
/// when the batches newer than the oldest hold more than `percent`% as many updates as the oldest, all of
/// them are merged into one. Tiers alone keep up to `fan_in - 1` batches per tier whose updates may cancel
/// (upserts: a retraction and its insertion in different batches), so a stream can take several times
/// its live size on disk; this bounds it, for the price of rewriting the whole stream each time the newer
/// batches grow past the bound (the oldest batch grows by a factor of `1 + percent / 100` per trigger).
pub fn pick_space_amp(update_counts: &[u64], percent: u32) -> Option<Pick> {
    let (&oldest, newer) = update_counts.split_first()?;
    let newer: u128 = newer.iter().map(|&c| u128::from(c)).sum();
    let over = newer > 0 && newer * 100 > u128::from(oldest) * u128::from(percent);
    over.then_some(Pick {
        start: 0,
        len: update_counts.len(),
    })
}

/// The newest due merge, if any: whether a merge is due at all (the policy's fixpoint is `None`).
pub fn pick_merge(update_counts: &[u64], fan_in: usize) -> Option<Pick> {
    due_merges(update_counts, fan_in).next_back()
}

/// [`pick_merge_fair`], and beyond it, when there are more than `bound` batches, the adjacent pair with the
/// fewest updates: the back-pressure bound on the batch count holds even when no merge is due by size.
pub fn pick_merge_bounded(
    update_counts: &[u64],
    fan_in: usize,
    bound: usize,
    turn: &mut u32,
) -> Option<Pick> {
    pick_merge_fair(update_counts, fan_in, turn).or_else(|| {
        (update_counts.len() > bound)
            .then(|| (0..update_counts.len() - 1).min_by_key(|&i| update_counts[i] + update_counts[i + 1]))
            .flatten()
            .map(|start| Pick { start, len: 2 })
    })
}

/// The merge a tail merge runs (`Scope::Tail`): among the batches after index `from` (those newer than the
/// running merge's inputs), when the stream has more than `bound` batches the adjacent pair with the fewest
/// updates (the least work that brings the count down by one: a tail merge runs on a sealing thread, at
/// its priority), else the newest due merge. Indices are into `update_counts`.
pub fn pick_tail(update_counts: &[u64], from: usize, fan_in: usize, bound: usize) -> Option<Pick> {
    let tail = update_counts.get(from..)?;
    let pick = if update_counts.len() > bound {
        (tail.len() >= 2)
            .then(|| (0..tail.len() - 1).min_by_key(|&i| tail[i] + tail[i + 1]))
            .flatten()
            .map(|start| Pick { start, len: 2 })
    } else {
        pick_merge(tail, fan_in)
    }?;
    Some(Pick {
        start: from + pick.start,
        len: pick.len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_pick_takes_only_batches_after_its_start() {
        // Batches 0..3 are a running merge's; the tail from 3 holds a due pair (8, 8) at 4 and 5.
        let counts = [1000, 1000, 1000, 100, 8, 8];
        assert_eq!(pick_tail(&counts, 3, 2, 64), Some(Pick { start: 4, len: 2 }));
        // Nothing due in the tail and under the bound: nothing, even with merges due before it.
        let counts = [8, 8, 8, 1000, 9];
        assert_eq!(pick_tail(&counts, 3, 2, 64), None);
        // Over the bound: the tail's adjacent pair with the fewest updates, even where a merge is due.
        let counts = [8, 8, 8, 1000, 300, 100, 40];
        assert_eq!(pick_tail(&counts, 3, 2, 64), None);
        assert_eq!(pick_tail(&counts, 3, 2, 6), Some(Pick { start: 5, len: 2 }));
        let counts = [1000, 1000, 1000, 100, 8, 8, 1];
        assert_eq!(pick_tail(&counts, 3, 2, 6), Some(Pick { start: 5, len: 2 }));
        // A tail of one batch, or none, has nothing to merge.
        assert_eq!(pick_tail(&counts, 6, 2, 1), None);
        assert_eq!(pick_tail(&counts, 7, 2, 1), None);
        assert_eq!(pick_tail(&counts, 9, 2, 1), None);
    }

    #[test]
    fn levels() {
        assert_eq!(level_of(0), 0);
        assert_eq!(level_of(1), 0);
        assert_eq!(level_of(2), 1);
        assert_eq!(level_of(1023), 9);
        assert_eq!(level_of(1024), 10);
    }

    /// Simulates sealing equal chunks of `chunk` updates `seals` times and merging whatever is due after
    /// each seal; returns (most batches at once, updates rewritten by merges).
    fn simulate(fan_in: usize, chunk: u64, seals: usize) -> (usize, u64) {
        let mut batches: Vec<u64> = Vec::new();
        let (mut most, mut rewritten) = (0, 0);
        for _ in 0..seals {
            batches.push(chunk);
            while let Some(p) = pick_merge(&batches, fan_in) {
                let merged: u64 = batches[p.start..p.start + p.len].iter().sum();
                rewritten += merged;
                batches.splice(p.start..p.start + p.len, [merged]);
            }
            most = most.max(batches.len());
        }
        assert_eq!(batches.iter().sum::<u64>(), chunk * seals as u64);
        (most, rewritten)
    }

    /// Seals arrive `backlog` at a time between merges (merges behind ingest), then everything due is
    /// merged: returns the updates rewritten by merges.
    fn simulate_backlog(fan_in: usize, chunk: u64, seals: usize, backlog: usize) -> u64 {
        let (mut batches, mut rewritten, mut turn) = (Vec::new(), 0, 0);
        for s in 0..seals {
            batches.push(chunk);
            if s % backlog == backlog - 1 || s == seals - 1 {
                // One merge per `backlog` seals while ingest runs; all of them at the end.
                let rounds = if s == seals - 1 { usize::MAX } else { 1 };
                for _ in 0..rounds {
                    let Some(p) = pick_merge_fair(&batches, fan_in, &mut turn) else {
                        break;
                    };
                    let merged: u64 = batches[p.start..p.start + p.len].iter().sum();
                    rewritten += merged;
                    batches.splice(p.start..p.start + p.len, [merged]);
                }
            }
        }
        rewritten
    }

    /// A backlog of seals (one merge per 32 seals, as when appends outrun a merge thread) costs about what
    /// merging as they come costs: merges never rewrite a big batch to absorb one small one at a time (the
    /// policy that merged the newest run of a block rewrote 36.8 bytes per payload byte here, not 2.5).
    #[test]
    fn a_backlog_of_seals_is_not_rewritten_over_and_over() {
        let (chunk, seals) = (10_000, 1000);
        let (_, as_they_come) = simulate(8, chunk, seals);
        let behind = simulate_backlog(8, chunk, seals, 32);
        let payload = chunk * seals as u64;
        assert!(
            behind <= as_they_come + payload,
            "{behind} rewritten behind, {as_they_come} as they come ({payload} payload)"
        );
    }

    /// A long run of small seals, merged as they come: each update is rewritten at most
    /// `floor(log_fan_in(seals))` times (once per tier it is promoted through; tiers are powers of the
    /// fan-in, so a run of `fan_in` seals of one tier makes one batch of the next, whatever the seal size),
    /// and the stream never holds more than `fan_in - 1` batches per tier (plus the seal just made).
    #[test]
    fn rewrites_per_update_are_bounded_by_the_tiers_a_long_run_of_seals_spans() {
        for fan_in in [2, 4, 8, 16, 32] {
            for chunk in [1, 100, 10_000, 12_345] {
                let mut seals = 1;
                while seals <= 3000 {
                    let (most, rewritten) = simulate(fan_in, chunk, seals);
                    let payload = chunk * seals as u64;
                    // floor(log_fan_in(seals)), in integers.
                    let tiers = std::iter::successors(Some(fan_in), |p| Some(p * fan_in))
                        .take_while(|&p| p <= seals)
                        .count() as u64;
                    let at = format!("fan-in {fan_in}, {seals} seals of {chunk}");
                    assert!(rewritten <= payload * tiers, "{at}: {rewritten} rewritten");
                    assert!(
                        most <= (fan_in - 1) * (tiers as usize + 1) + 1,
                        "{at}: {most} batches at once"
                    );
                    seals = seals * 3 + 1;
                }
            }
        }
        // The default fan-in over 3,000 seals (30 M updates sealed per 10,000, as in the benches): each
        // update rewritten at most three times (floor(log8(3000)) = 3); fan-in 16 at most twice.
        let default = crate::Options::default().merge_fan_in;
        let (_, rewritten) = simulate(default, 10_000, 3000);
        assert!(
            rewritten <= 3 * 10_000 * 3000,
            "{rewritten} rewritten at fan-in {default}"
        );
        let (_, rewritten) = simulate(16, 10_000, 3000);
        assert!(
            rewritten <= 2 * 10_000 * 3000,
            "{rewritten} rewritten at fan-in 16"
        );
    }

    #[test]
    fn fan_in_2_behaves_like_a_binary_counter() {
        let (most, _) = simulate(2, 100, 1000);
        assert!(most <= 11, "{most} batches");
    }

    #[test]
    fn a_higher_fan_in_rewrites_less_and_bounds_batches_per_tier() {
        let seals = 1000;
        let (most2, rewritten2) = simulate(2, 10_000, seals);
        let (most8, rewritten8) = simulate(8, 10_000, seals);
        // log2(1000) ~ 10 rewrites per update against log8(1000) ~ 3.3.
        assert!(rewritten8 * 5 < rewritten2 * 2, "{rewritten8} vs {rewritten2}");
        assert!(most8 <= 7 * 4 + 1, "{most8} batches at fan-in 8 ({most2} at 2)");
    }

    #[test]
    fn the_space_amplification_trigger_merges_everything_past_its_bound() {
        let all = |len| Some(Pick { start: 0, len });
        assert_eq!(pick_space_amp(&[], 200), None);
        assert_eq!(pick_space_amp(&[10], 200), None);
        assert_eq!(
            pick_space_amp(&[100, 100, 100], 200),
            None,
            "exactly at the bound"
        );
        assert_eq!(pick_space_amp(&[100, 100, 100, 1], 200), all(4));
        assert_eq!(pick_space_amp(&[0, 1], 200), all(2));
        assert_eq!(
            pick_space_amp(&[u64::MAX, u64::MAX, u64::MAX], 100),
            all(3),
            "no overflow"
        );
        // Sealing equal chunks: the oldest batch grows by a factor of about 1 + percent / 100 per trigger.
        let (mut batches, mut oldest): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
        #[allow(clippy::same_item_push)] // one seal of 10 updates per round, merged in between
        for _ in 0..100 {
            batches.push(10);
            if let Some(p) = pick_space_amp(&batches, 200) {
                let merged: u64 = batches[p.start..p.start + p.len].iter().sum();
                batches.splice(p.start..p.start + p.len, [merged]);
                oldest.push(merged);
            }
        }
        assert_eq!(oldest, vec![40, 130, 400], "{batches:?}");
    }

    #[test]
    fn the_bound_forces_the_cheapest_merge() {
        let mut turn = 0;
        let pair = |start| Some(Pick { start, len: 2 });
        assert_eq!(pick_merge_bounded(&[8, 4, 2], 2, 3, &mut turn), None);
        assert_eq!(pick_merge_bounded(&[8, 4, 2], 2, 2, &mut turn), pair(1));
        assert_eq!(pick_merge_bounded(&[100, 2, 30, 1], 2, 2, &mut turn), pair(1));
    }

    #[test]
    fn an_old_due_merge_gets_its_turn() {
        // Pairs (0, 1) and (2, 3) are both due: mostly the newest, every FAIR_EVERY-th pick the oldest.
        let counts = [100, 100, 10, 10];
        let mut turn = 0;
        let picks: Vec<usize> = (0..8)
            .filter_map(|_| pick_merge_fair(&counts, 2, &mut turn))
            .map(|p| p.start)
            .collect();
        assert_eq!(picks, vec![2, 2, 2, 0, 2, 2, 2, 0]);
    }

    #[test]
    fn nothing_to_merge() {
        let pick = |start, len| Some(Pick { start, len });
        assert_eq!(pick_merge(&[], 2), None);
        assert_eq!(pick_merge(&[5], 2), None);
        assert_eq!(pick_merge(&[1000, 10], 2), None);
        assert_eq!(pick_merge(&[1000, 10, 10], 2), pick(1, 2));
        // Fan-in 4: three batches of one tier wait for a fourth; an inversion merges at once.
        assert_eq!(pick_merge(&[64, 64, 64], 4), None);
        assert_eq!(pick_merge(&[64, 64, 64, 64], 4), pick(0, 4));
        assert_eq!(pick_merge(&[1000, 4, 64], 4), pick(1, 2));
    }

    #[test]
    fn an_inversion_takes_every_smaller_older_batch_in_one_merge() {
        let pick = |start, len| Some(Pick { start, len });
        // Fan-in 8 (tier = level / 3): a batch of tier 8 (level 24), then 7 of tier 6 (level 18), one
        // of tier 5 (level 15) and one of tier 7 (level 21), the output of 8 tier-6 batches merged past
        // the tier-5 one. One merge takes the 8 smaller batches and the tier-7 one (pairs would
        // rewrite it 8 times), and stops at the tier-8 batch.
        let mut counts = vec![1 << 24];
        counts.extend([400_000; 7]);
        counts.extend([50_000, 4_000_000]);
        assert_eq!(pick_merge(&counts, 8), pick(1, 9));
        // At most 64 batches in one merge: the newest 63 smaller ones.
        let mut counts = vec![40_000; 100];
        counts[..100].iter_mut().step_by(7).for_each(|c| *c = 300_000);
        counts.push(4_000_000);
        let inversion = due_merges(&counts, 8).find(|p| p.start + p.len == counts.len());
        assert_eq!(inversion, Some(Pick { start: 37, len: 64 }));
    }
}
