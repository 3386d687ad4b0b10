//! [`KeyMerge`]: compaction's k-way merge of batch files, one key at a time, advancing times below
//! `since` to `since` and consolidating: it yields exactly what [`MergeIter`](crate::read::MergeIter)
//! yields over the same batches. It compares keys once per key (not `(key, val, time)` per update against
//! every source), and a key present in one input only — the common case — is copied val by val and time
//! by time without further comparisons, advancing and consolidating times within each val. Vals are
//! compared only for a key present in several inputs. It reads blocks directly ([`Block`]), not through
//! [`UpdateCursor`](crate::batch::UpdateCursor). Its CPU against `MergeIter`'s: BENCHMARKS.md, "Figures
//! behind the formats".
//!
//! Sums are exact (`i128`): a total outside `i64` is an [`Error::DiffOverflow`] (partial sums may leave
//! it). Zero sums are dropped.

use crate::batch::builder::cmp_bytes;
use crate::batch::{BatchFile, Block, BlockBytes};
use crate::error::{Error, Result};
use std::cmp::Ordering;

/// One input of a [`KeyMerge`]: a position (block, key) in a batch. The current block is held as its shape
/// and its bytes ([`BatchFile::block_for_merge`]): borrowed from the map for raw blocks, decompressed for
/// this source alone for lz4 blocks (dropped when the source moves on, so a merge holds one decompressed
/// block per input). `shape` is `None` past the end.
struct KeySource<'a> {
    batch: &'a BatchFile,
    block_idx: usize,
    shape: Option<Block<'static>>,
    bytes: BlockBytes<'a>,
    key: usize,
}

impl<'a> KeySource<'a> {
    fn at_block(batch: &'a BatchFile, block_idx: usize) -> Result<Self> {
        let (shape, bytes) = if block_idx < batch.block_count() {
            let (shape, bytes) = batch.block_for_merge(block_idx)?;
            (Some(shape), bytes)
        } else {
            (None, BlockBytes::Borrowed(&[]))
        };
        Ok(KeySource {
            batch,
            block_idx,
            shape,
            bytes,
            key: 0,
        })
    }

    /// The current block, over its bytes.
    #[inline(always)]
    fn block(&self) -> Option<Block<'_>> {
        self.shape.as_ref().map(|s| s.attach(&self.bytes))
    }

    #[inline]
    fn key(&self) -> Option<&[u8]> {
        self.block().map(|b| b.key(self.key))
    }

    /// Moves to the next key; entering a new block verifies it.
    fn advance(&mut self) -> Result<()> {
        let Some(shape) = &self.shape else { return Ok(()) };
        self.key += 1;
        if self.key >= shape.key_count() {
            *self = Self::at_block(self.batch, self.block_idx + 1)?;
        }
        Ok(())
    }
}

/// Where a [`KeyMerge`] sends each update: `(key, val, time, diff)`, in strictly increasing
/// `(key, val, time)` order, diffs non-zero; the slices live for the call only. (A generic parameter, not
/// `dyn`, so that the sink — the batch writer's `push` — inlines into the merge loop.)
pub trait Emit: for<'b> FnMut(&'b [u8], &'b [u8], u64, i64) -> Result<()> {}

impl<F: for<'b> FnMut(&'b [u8], &'b [u8], u64, i64) -> Result<()>> Emit for F {}

/// A k-way merge of batch files, key by key, advancing times below `since` and consolidating: yields
/// exactly what [`MergeIter`](crate::read::MergeIter) yields over the same batches (see the module docs for how it is cheaper),
/// and fails where it fails ([`Error::DiffOverflow`], its stream not named).
pub struct KeyMerge<'a> {
    sources: Vec<KeySource<'a>>,
    since: u64,
    /// Indexes of the sources at the current (smallest) key.
    tied: Vec<usize>,
    scratch: ValScratch,
}

/// The buffers [`merge_vals`] reuses from key to key.
#[derive(Default)]
struct ValScratch {
    /// For a key in several sources: each one's source index and current and end val index.
    vals: Vec<(usize, usize, usize)>,
    /// Indexes into `vals` of the sources at the current (smallest) val.
    tied_vals: Vec<usize>,
    /// The (advanced time, diff) pairs of one (key, val) across sources, to sort and consolidate.
    times: Vec<(u64, i64)>,
}

impl<'a> KeyMerge<'a> {
    /// Merges `batches`, advancing times below `since` to `since`.
    pub fn new(batches: &[&'a BatchFile], since: u64) -> Result<Self> {
        let sources = batches
            .iter()
            .map(|b| KeySource::at_block(b, 0))
            .collect::<Result<Vec<_>>>()?;
        Ok(KeyMerge {
            sources,
            since,
            tied: Vec::new(),
            scratch: ValScratch::default(),
        })
    }

    /// Emits the consolidated updates of the next key (possibly none, if they all cancel); `false` once
    /// every input is exhausted.
    pub fn next_key(&mut self, emit: &mut impl Emit) -> Result<bool> {
        let (sources, tied) = (&self.sources, &mut self.tied);
        tied.clear();
        let mut min: Option<&[u8]> = None;
        for (i, s) in sources.iter().enumerate() {
            if let Some(k) = s.key() {
                offer(&mut min, tied, k, i);
            }
        }
        let Some(key) = min else { return Ok(false) };
        if let [only] = tied[..] {
            let s = &sources[only];
            if let Some(b) = s.block() {
                for j in b.vals(s.key) {
                    emit_val(key, &b, j, self.since, emit)?;
                }
            }
        } else {
            merge_vals(sources, tied, &mut self.scratch, key, self.since, emit)?;
        }
        for &i in &self.tied {
            self.sources[i].advance()?;
        }
        Ok(true)
    }
}

/// One step of finding the smallest byte string among several inputs and which inputs hold it: keeps
/// `min` the smallest offered so far and `tied` the positions `n` that offered it. (Always inlined: it is
/// the inner loop of both the key and the val comparison.)
#[inline(always)]
fn offer<'b>(min: &mut Option<&'b [u8]>, tied: &mut Vec<usize>, candidate: &'b [u8], n: usize) {
    match min.map(|m| cmp_bytes(candidate, m)) {
        None | Some(Ordering::Less) => {
            *min = Some(candidate);
            tied.clear();
            tied.push(n);
        }
        Some(Ordering::Equal) => tied.push(n),
        Some(Ordering::Greater) => {}
    }
}

/// Emits the vals of `key`, which the sources in `tied` all hold, merged.
fn merge_vals(
    sources: &[KeySource<'_>],
    tied: &[usize],
    scratch: &mut ValScratch,
    key: &[u8],
    since: u64,
    emit: &mut impl Emit,
) -> Result<()> {
    let ValScratch {
        vals,
        tied_vals,
        times,
    } = scratch;
    vals.clear();
    for &i in tied {
        let s = &sources[i];
        if let Some(b) = s.block() {
            let r = b.vals(s.key);
            vals.push((i, r.start, r.end));
        }
    }
    // Every source in `vals` is on a block (it was pushed only then).
    let block = |i: usize| sources[i].block();
    loop {
        tied_vals.clear();
        let mut min: Option<&[u8]> = None;
        for (n, &(i, j, end)) in vals.iter().enumerate() {
            if j >= end {
                continue;
            }
            if let Some(b) = block(i) {
                offer(&mut min, tied_vals, b.val(j), n);
            }
        }
        let Some(val) = min else { return Ok(()) };
        if let [only] = tied_vals[..] {
            let (i, j, _) = vals[only];
            if let Some(b) = block(i) {
                emit_val(key, &b, j, since, emit)?;
            }
        } else {
            times.clear();
            for &n in tied_vals.iter() {
                let (i, j, _) = vals[n];
                if let Some(b) = block(i) {
                    times.extend(b.updates(j).map(|x| (b.time(x).max(since), b.diff(x))));
                }
            }
            times.sort_unstable_by_key(|&(t, _)| t);
            emit_consolidated(key, val, times.iter().copied(), emit)?;
        }
        for &n in tied_vals.iter() {
            vals[n].1 += 1;
        }
    }
}

/// Emits val `j` of block `b` (under `key`), with times advanced to `since` and consolidated.
/// (Inlined into the merge loop: as a call it cost a prologue and a copy of the block's shape per val.)
#[inline(always)]
fn emit_val(key: &[u8], b: &Block<'_>, j: usize, since: u64, emit: &mut impl Emit) -> Result<()> {
    let val = b.val(j);
    let upds = b.updates(j);
    // Times are strictly increasing within a val: if the first is at or beyond `since`, none moves.
    if b.time(upds.start) >= since {
        for x in upds {
            emit(key, val, b.time(x), b.diff(x))?;
        }
        return Ok(());
    }
    emit_consolidated(key, val, upds.map(|x| (b.time(x).max(since), b.diff(x))), emit)
}

/// Emits `times` (sorted by time, possibly repeating) with equal times summed (exactly: an
/// [`Error::DiffOverflow`] if a sum leaves `i64`) and zero sums dropped.
#[inline]
fn emit_consolidated(
    key: &[u8],
    val: &[u8],
    times: impl Iterator<Item = (u64, i64)>,
    emit: &mut impl Emit,
) -> Result<()> {
    let mut emit_sum = |t: u64, sum: i128| match i64::try_from(sum) {
        Ok(0) => Ok(()),
        Ok(d) => emit(key, val, t, d),
        Err(_) => Err(Error::diff_overflow(key, t)),
    };
    let mut cur: Option<(u64, i128)> = None;
    for (t, d) in times {
        cur = match cur {
            Some((ct, cd)) if ct == t => Some((ct, cd + i128::from(d))),
            Some((ct, cd)) => {
                emit_sum(ct, cd)?;
                Some((t, i128::from(d)))
            }
            None => Some((t, i128::from(d))),
        };
    }
    match cur {
        Some((t, d)) => emit_sum(t, d),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchWriter, Description, UpdateCursor};
    use crate::blob::{Blob, MemBlob};
    use crate::read::MergeIter;
    use crate::OwnedUpdate;

    /// A batch file of `updates` (sorted and consolidated first), lz4-compressed if `compress`.
    fn batch_with(blob: &MemBlob, name: &str, mut updates: Vec<OwnedUpdate>, compress: bool) -> BatchFile {
        updates.sort();
        updates.dedup_by(|a, b| (&a.0, &a.1, a.2) == (&b.0, &b.1, b.2));
        updates.retain(|u| u.3 != 0);
        let desc = Description {
            lower: 0,
            upper: 1000,
            since: 0,
        };
        let mut w = BatchWriter::new(blob.create(name).unwrap(), desc, 300)
            .unwrap()
            .with_compression(compress);
        for (k, v, t, d) in &updates {
            w.push(k, v, *t, *d).unwrap();
        }
        w.finish().unwrap();
        BatchFile::open(name, blob.get(name).unwrap().unwrap()).unwrap()
    }

    /// Small pseudo-random generator (splitmix64).
    fn next(s: &mut u64) -> u64 {
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn both_merges_sum_exactly_and_report_totals_out_of_range() {
        let max = i64::MAX;
        let blob = MemBlob::new();
        let k = || b"k".to_vec();
        let a = batch_with(
            &blob,
            "a.batch",
            vec![(k(), vec![], 0, max), (k(), vec![], 1, max)],
            false,
        );
        let b = batch_with(
            &blob,
            "b.batch",
            vec![(k(), vec![], 2, -max), (k(), vec![], 3, 1)],
            false,
        );
        let run = |since: u64| -> (Result<Vec<OwnedUpdate>>, Result<Vec<OwnedUpdate>>) {
            let mut got = Vec::new();
            let key_merge = KeyMerge::new(&[&a, &b], since).and_then(|mut m| {
                let mut emit = |k: &[u8], v: &[u8], t: u64, d: i64| {
                    got.push((k.to_vec(), v.to_vec(), t, d));
                    Ok(())
                };
                while m.next_key(&mut emit)? {}
                Ok(())
            });
            let cursors = [&a, &b].iter().map(|b| UpdateCursor::new(b).unwrap()).collect();
            let merge_iter = MergeIter::new(cursors, None, since)
                .map(|u| u.map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d)))
                .collect();
            (key_merge.map(|()| got), merge_iter)
        };
        // Times up to 2 collapse: max + max - max within range in all, partial sum out of it.
        let (km, mi) = run(2);
        let want = vec![(k(), vec![], 2, max), (k(), vec![], 3, 1)];
        assert_eq!((km.unwrap(), mi.unwrap()), (want.clone(), want));
        // Times 0 and 1 collapse: max + max is out of range.
        let (km, mi) = run(1);
        for r in [km, mi] {
            match r {
                Err(Error::DiffOverflow { key, time, .. }) => assert_eq!((key, time), (k(), 1)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn key_merge_equals_merge_iter() {
        let mut seed = 7;
        let mut compressed_blocks = 0;
        for round in 0..72 {
            let blob = MemBlob::new();
            // Up to 9 inputs: past the tiered policy's fan-in of 8, as a major compaction merges.
            let inputs = 1 + round % 9;
            // Few keys, vals and times, so that keys, vals and (advanced) times collide across inputs
            // and diffs cancel.
            let (keys, vals, times) = (
                1 + next(&mut seed) % 40,
                1 + next(&mut seed) % 4,
                1 + next(&mut seed) % 9,
            );
            let batches: Vec<BatchFile> = (0..inputs)
                .map(|i| {
                    let n = next(&mut seed) % 300;
                    let updates = (0..n)
                        .map(|_| {
                            let k = format!("k{:03}", next(&mut seed) % keys).into_bytes();
                            let v = vec![b'v'; (next(&mut seed) % vals) as usize];
                            let t = next(&mut seed) % times;
                            let d = (next(&mut seed) % 5) as i64 - 2;
                            (k, v, t, d)
                        })
                        .collect();
                    // Every other round compressed: the merge then decompresses block by block.
                    batch_with(&blob, &format!("{i}.batch"), updates, round % 2 == 1)
                })
                .collect();
            if round % 2 == 1 {
                let lz4 = |b: &BatchFile| {
                    (0..b.block_count())
                        .any(|i| b.index_entry(i).unwrap().codec == crate::batch::format::CODEC_LZ4)
                };
                compressed_blocks += batches.iter().filter(|b| lz4(b)).count();
            }
            for since in [0, 1, 4, 9, 20] {
                let refs: Vec<&BatchFile> = batches.iter().collect();
                let mut merge = KeyMerge::new(&refs, since).unwrap();
                let mut got = Vec::new();
                let mut emit = |k: &[u8], v: &[u8], t: u64, d: i64| {
                    got.push((k.to_vec(), v.to_vec(), t, d));
                    Ok(())
                };
                while merge.next_key(&mut emit).unwrap() {}
                if since == 0 {
                    // The merge kept no decompressed block (MergeIter, below, caches them).
                    assert!(batches.iter().all(|b| b.cached_blocks() == 0), "round {round}");
                }
                let cursors = batches.iter().map(|b| UpdateCursor::new(b).unwrap()).collect();
                let want: Vec<OwnedUpdate> = MergeIter::new(cursors, None, since)
                    .map(|u| u.map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d)))
                    .collect::<Result<_>>()
                    .unwrap();
                assert_eq!(got, want, "round {round}, since {since}");
            }
        }
        assert!(
            compressed_blocks > 0,
            "the compressed rounds must hold lz4 blocks"
        );
    }
}
