//! The full check of a batch file, for tools and tests ([`BatchFile::verify`], `inspect verify`, the
//! scrubber): every block's checksum *and* the structure of its contents (monotone offsets, sorted and
//! consolidated updates, no time past `u64::MAX` from its block's base, fences equal to the index), order across blocks, times within the description,
//! the footer's val count, and (`scrub.rs`) every byte of the layout. Reads skip the structural pass
//! (DESIGN.md §5, "Verify once": the writer guarantees the structure, the checksum proves the bytes);
//! this is where what a checksum cannot catch — a writer bug, a forged file — is found.

use super::format::{CODEC_RAW, FOOTER_BYTES};
use super::BatchFile;
use crate::error::{Error, Result};

/// [`BatchFile::verify`] splits files of at least this many blocks across threads.
pub(crate) const PARALLEL_VERIFY_BLOCKS: usize = 64;
/// At most this many threads verify one file.
const MAX_VERIFY_THREADS: usize = 4;

impl BatchFile {
    /// Checks the key filter's checksum, every block (checksum, then the full structural pass: monotone offsets, sorted and
    /// consolidated contents, fences equal to the index), and across blocks: keys increase, every time lies in the description, and the
    /// val count matches the footer; then the layout: padding, reserved fields and the sections' places,
    /// so that every byte of the file is checked against the format (`batch/scrub.rs`). Returns the first problem found, in block order. (See also
    /// [`verify_deep`](Self::verify_deep).) Files of `PARALLEL_VERIFY_BLOCKS` (64) blocks or more are checked
    /// by up to `MAX_VERIFY_THREADS` (4) scoped threads over contiguous block ranges.
    pub fn verify(&self) -> Result<()> {
        self.checked_filter()?;
        let n = self.block_count();
        let threads = if n >= PARALLEL_VERIFY_BLOCKS {
            std::thread::available_parallelism()
                .map_or(1, |p| p.get())
                .min(MAX_VERIFY_THREADS)
        } else {
            1
        };
        let counts = if threads <= 1 {
            self.verify_blocks(0..n)?
        } else {
            // Contiguous ranges, one per thread; the first error in block order wins.
            let chunk = n.div_ceil(threads);
            let results: Vec<Result<[u64; 3]>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let range = (t * chunk).min(n)..((t + 1) * chunk).min(n);
                        scope.spawn(move || self.verify_blocks(range))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::io(
                                format!("verify {}", self.name()),
                                std::io::Error::other("a verification thread panicked"),
                            ))
                        })
                    })
                    .collect()
            });
            let mut counts = [0; 3];
            for r in results {
                let r = r?;
                (0..3).for_each(|c| counts[c] += r[c]);
            }
            counts
        };
        let f = self.footer();
        let footer_at = self.bytes().len() as u64 - FOOTER_BYTES as u64;
        for (c, (what, want, at)) in [
            ("key", f.key_count, 40),
            ("val", f.val_count, 48),
            ("update", f.update_count, 56),
        ]
        .into_iter()
        .enumerate()
        {
            if counts[c] != want {
                let detail = format!("footer {what} count disagrees with the blocks");
                return Err(Error::corrupt(self.name(), footer_at + at, detail));
            }
        }
        // The bytes no checksum covers (padding) and the reserved fields.
        self.verify_layout()
    }

    /// The per-block part of [`verify`](Self::verify) over blocks `range`: each block's checksum and
    /// structure, its times within the description, and its order after the previous block (by the
    /// index's fence keys). Returns the blocks' key, val and update counts.
    fn verify_blocks(&self, range: std::ops::Range<usize>) -> Result<[u64; 3]> {
        let d = self.footer().description;
        let mut counts = [0u64; 3];
        for i in range {
            let block = self.block(i)?;
            let e = self.index_entry(i)?;
            let at = e.offset;
            let bad = |detail: String| Error::corrupt(self.name(), at, format!("block {i}: {detail}"));
            // The structural pass reads skip (the writer's guarantee, checked here against the bytes). An
            // lz4 block's offsets are within its decompressed bytes: reported at the block's start.
            block
                .check_contents(self.block_first_key(i)?, self.block_last_key(i)?)
                .map_err(|(off, detail)| {
                    let off = if e.codec == CODEC_RAW { off as u64 } else { 0 };
                    Error::corrupt(self.name(), at + off, format!("block {i}: {detail}"))
                })?;
            if i > 0 && self.block_last_key(i - 1)? >= self.block_first_key(i)? {
                return Err(bad(format!("does not start above block {}", i - 1)));
            }
            // Times lie in the description (or were advanced to its since by a merge).
            if let Some(x) = (0..block.update_count()).find(|&x| {
                let t = block.time(x);
                t < d.lower || (t >= d.upper && t != d.since)
            }) {
                return Err(bad(format!(
                    "time {} outside the description {d:?}",
                    block.time(x)
                )));
            }
            counts[0] += block.key_count() as u64;
            counts[1] += block.val_count() as u64;
            counts[2] += block.update_count() as u64;
        }
        Ok(counts)
    }

    /// [`verify`](Self::verify), and also that every key passes the key filter (a hash per key: several times
    /// the cost of `verify` on large batches; BENCHMARKS.md, "Figures behind the formats"). The filter's bytes are checksummed by `verify` in any case;
    /// this catches a writer that built the filter wrong. For tools (`inspect verify`) and fuzzing.
    pub fn verify_deep(&self) -> Result<()> {
        self.verify()?;
        for i in 0..self.block_count() {
            let block = self.block(i)?;
            if let Some(k) =
                (0..block.key_count()).find(|&k| !matches!(self.may_contain(block.key(k)), Ok(true)))
            {
                let at = self.index_entry(i)?.offset;
                let detail = format!("block {i}: key {k} is missing from the key filter");
                return Err(Error::corrupt(self.name(), at, detail));
            }
        }
        Ok(())
    }
}
