//! [`BatchWriter`]: streams sorted, consolidated updates into a batch file.
//!
//! Memory use is one block (about `block_target_bytes`, more only for a key with many vals), the block
//! index, and one output chunk of about 1 MiB handed to the [`BlobWriter`] in one `write` (with
//! [`BatchWriter::with_background_io`], a few more blocks in flight to the helper thread). The writer checks its input: updates must
//! come in strictly increasing `(key, val, time)` order with non-zero diffs.

use super::builder::*;
use super::filter::FilterBuilder;
use super::format::encode_header;
use super::sink::*;
use super::Description;
use crate::blob::BlobWriter;
use crate::error::{Error, Result};
use parking_lot::Mutex;
use std::cmp::Ordering;
use std::sync::mpsc::{channel, sync_channel};
use std::sync::Arc;

/// What a finished batch holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchStats {
    /// Distinct keys.
    pub key_count: u64,
    /// Distinct (key, val) pairs.
    pub val_count: u64,
    /// Updates.
    pub update_count: u64,
    /// File size.
    pub size_bytes: u64,
}

/// Where an update goes relative to the block's last one.
enum Step {
    FirstKey,
    NewKey,
    NewVal,
    SameVal,
}

/// Writes one batch file. Create it, [`push`](Self::push) updates in order, then [`finish`](Self::finish).
pub struct BatchWriter {
    description: Description,
    block_target_bytes: u32,
    block: BlockBuilder,
    /// Last key of the previous block, to check order across blocks.
    prev_block_last_key: Option<Vec<u8>>,
    last_time: u64,
    back: Back,
    /// Whether to move the back end to a helper thread when the first block closes.
    background: bool,
    /// The open block's exact closed size, when the cut check of its last key computed it and no update
    /// has been added since but that key's own ([`BatchWriter::key_fits`]).
    known: Option<KnownSize>,
}

impl BatchWriter {
    /// Starts a batch with `description` in `out`, cutting blocks at about `block_target_bytes`.
    pub fn new(
        mut out: Box<dyn BlobWriter>,
        description: Description,
        block_target_bytes: u32,
    ) -> Result<Self> {
        if description.lower > description.upper {
            return Err(Error::bad_input(format!(
                "batch lower {} above upper {}",
                description.lower, description.upper
            )));
        }
        out.write(&encode_header())?;
        let mut block = BlockBuilder::default();
        block.reset();
        Ok(BatchWriter {
            description,
            block_target_bytes: block_target_bytes.max(1),
            block,
            prev_block_last_key: None,
            last_time: 0,
            background: false,
            known: None,
            back: Back::Inline(Box::new(BlockSink {
                out,
                chunk: Vec::new(),
                index: Vec::new(),
                index_keys: Vec::new(),
                block_count: 0,
                filter: None,
                compress: false,
                key_count: 0,
                val_count: 0,
                update_count: 0,
                scratch: Vec::new(),
            })),
        })
    }

    fn inline_sink(&mut self) -> Option<&mut BlockSink> {
        match &mut self.back {
            Back::Inline(sink) => Some(sink),
            _ => None,
        }
    }

    /// Adds a key filter (Bloom, `bits_per_key` bits per key) sized for about `expected_keys` keys: a
    /// lookup of an absent key then skips this batch without reading its blocks. Call before the first
    /// push.
    pub fn with_filter(mut self, expected_keys: u64, bits_per_key: u32) -> Self {
        if let Some(sink) = self.inline_sink() {
            sink.filter = Some(FilterBuilder::new(expected_keys, bits_per_key));
        }
        self
    }

    /// Compresses blocks with lz4 (a block that does not shrink is stored raw). Readers decompress a
    /// block once, on first use, and keep the copy for the life of the open file. Call before the first
    /// push.
    pub fn with_compression(mut self, compress: bool) -> Self {
        if let Some(sink) = self.inline_sink() {
            sink.compress = compress;
        }
        self
    }

    /// With `true`, a helper thread serialises, checksums, filters and writes the closed blocks while this
    /// thread builds the next ones (merges and flushes use it: on 2 cores it overlaps the block output and
    /// the `write` calls with reading and merging the inputs, or with building a seal's blocks). The thread starts when the first block closes
    /// (a batch of one block never starts it). The file is the same byte for byte, and the blob sees the
    /// same calls in the same order. If the thread cannot be started, blocks are written inline.
    pub fn with_background_io(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Moves the sink to a helper thread (see [`with_background_io`](Self::with_background_io)).
    fn start_helper(&mut self) {
        let Back::Inline(sink) = std::mem::replace(&mut self.back, Back::Gone) else {
            return;
        };
        let (to_sink, blocks) = sync_channel(GROUPS_IN_FLIGHT);
        let (free_tx, free) = channel();
        // The sink moves into the thread through a shared slot: if spawning fails, the closure is dropped
        // unrun and the sink is still in the slot, to be written inline.
        let slot = Arc::new(Mutex::new(Some(sink)));
        let in_thread = slot.clone();
        let spawned = std::thread::Builder::new()
            .name("ddpersist-batch-io".into())
            .spawn(move || {
                let sink = in_thread.lock().take();
                match sink {
                    Some(sink) => sink_loop(*sink, blocks, free_tx),
                    None => Ok(None),
                }
            });
        self.back = match spawned {
            Ok(handle) => Back::Thread {
                to_sink,
                free,
                group: Vec::new(),
                group_bytes: 0,
                spare: Vec::new(),
                handle,
            },
            Err(_) => match slot.lock().take() {
                Some(sink) => Back::Inline(sink),
                None => Back::Gone,
            },
        };
    }

    /// Appends an update. Updates must come in strictly increasing `(key, val, time)` order, with a
    /// non-zero diff and a time below the description's upper (or equal to its since).
    pub fn push(&mut self, key: &[u8], val: &[u8], time: u64, diff: i64) -> Result<()> {
        if diff == 0 {
            return Err(Error::bad_input("batch update with zero diff"));
        }
        // Times lie below the upper, except those a merge advanced to a since beyond it.
        if time >= self.description.upper && time != self.description.since {
            return Err(Error::bad_input(format!(
                "time {time} not below batch upper {}",
                self.description.upper
            )));
        }
        let step = match (self.block.last_key(), self.block.last_val()) {
            (Some(last_key), Some(last_val)) => match cmp_bytes(last_key, key) {
                Ordering::Less => Step::NewKey,
                Ordering::Equal => match cmp_bytes(last_val, val) {
                    Ordering::Less => Step::NewVal,
                    Ordering::Equal if self.last_time < time => Step::SameVal,
                    _ => return Err(Error::bad_input(ORDER)),
                },
                Ordering::Greater => return Err(Error::bad_input(ORDER)),
            },
            _ => {
                if self
                    .prev_block_last_key
                    .as_deref()
                    .is_some_and(|prev| prev >= key)
                {
                    return Err(Error::bad_input("batch keys not in strictly increasing order"));
                }
                Step::FirstKey
            }
        };
        let fits = match step {
            Step::NewKey => self.key_fits(key.len(), val.len(), time, diff),
            _ => {
                self.known = None;
                true
            }
        };
        match step {
            Step::NewKey if !fits => {
                // Cut the block at a key boundary (keys never span blocks), before a key that would take
                // it past the target: with it, not only its own bytes but every column it widens.
                self.write_block()?;
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::NewKey => {
                self.block.close_val()?;
                self.block.close_key()?;
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::NewVal => {
                self.block.close_val()?;
                self.block.start_val(val)?;
            }
            Step::FirstKey => {
                self.block.start_key(key)?;
                self.block.start_val(val)?;
            }
            Step::SameVal => {}
        }
        self.block.push_update(time, diff);
        self.last_time = time;
        Ok(())
    }

    /// Whether the block stays within its target with one more key of `key_len` bytes holding one val of
    /// `val_len` bytes with one update at `time` with `diff`; notes the block's exact size with it when
    /// known. From the size known after the last key when the key changes no column's layout
    /// ([`BlockBuilder::grown`]), else by [`Stats::fit_with_key`].
    #[inline]
    fn key_fits(&mut self, key_len: usize, val_len: usize, time: u64, diff: i64) -> bool {
        let target = self.block_target_bytes as usize;
        let grown = (self.known).and_then(|known| self.block.grown(known, key_len, val_len, time, diff));
        if let Some(grown) = grown {
            debug_assert_eq!(
                grown.len,
                self.block.stats().with_key(key_len, val_len, time, diff).len(),
                "a grown block size is its exact size"
            );
            let fits = grown.len <= target;
            self.known = fits.then_some(grown);
            return fits;
        }
        match self
            .block
            .stats()
            .fit_with_key(key_len, val_len, time, diff, target)
        {
            Fit::Below => {
                self.known = None;
                true
            }
            Fit::Exact(known) => {
                self.known = Some(known);
                true
            }
            Fit::Over => {
                self.known = None;
                false
            }
        }
    }

    /// Closes the current block and hands it to the sink.
    fn write_block(&mut self) -> Result<()> {
        if self.block.key_count() == 0 {
            return Ok(());
        }
        self.block.close()?;
        let prev = self.prev_block_last_key.get_or_insert_with(Vec::new);
        prev.clear();
        prev.extend_from_slice(self.block.last_key().unwrap_or_default());
        if std::mem::take(&mut self.background) {
            self.start_helper();
        }
        match &mut self.back {
            Back::Inline(sink) => sink.add_block(&self.block)?,
            Back::Thread {
                to_sink,
                free,
                group,
                group_bytes,
                spare,
                ..
            } => {
                if spare.is_empty() {
                    if let Ok(back) = free.try_recv() {
                        spare.extend(back);
                    }
                }
                let mut next = spare.pop().unwrap_or_default();
                next.reset();
                *group_bytes += self.block.raw_len();
                group.push(std::mem::replace(&mut self.block, next));
                if *group_bytes >= HANDOFF_BYTES {
                    *group_bytes = 0;
                    let blocks = ToSink::Blocks(std::mem::take(group));
                    if to_sink.send(blocks).is_err() {
                        // The helper stopped: it failed, and its error is the one to report.
                        return Err(self.helper_error());
                    }
                }
                return Ok(());
            }
            Back::Gone => return Err(Error::bad_input("batch writer used after a failure")),
        }
        self.block.reset();
        Ok(())
    }

    /// The error that stopped the helper thread (joining it).
    fn helper_error(&mut self) -> Error {
        match std::mem::replace(&mut self.back, Back::Gone) {
            Back::Thread { handle, .. } => match join_sink(handle) {
                Err(e) => e,
                Ok(_) => helper_failed("stopped early"),
            },
            _ => Error::bad_input("batch writer used after a failure"),
        }
    }

    /// Writes the last block, the index and the footer, and commits the file (durable when this returns).
    pub fn finish(mut self) -> Result<BatchStats> {
        // A batch of one block (a small seal: a frontier advance of a few updates) is written on this
        // thread: a helper started for its last block would only add a thread start and two hand-offs to
        // the seal's latency (several milliseconds per round on a busy 2-core machine).
        self.background = false;
        self.write_block()?;
        let (description, target) = (self.description, self.block_target_bytes);
        match std::mem::replace(&mut self.back, Back::Gone) {
            Back::Inline(sink) => sink.finish(description, target),
            Back::Thread {
                to_sink,
                handle,
                group,
                ..
            } => {
                // A send error means the helper already stopped with an error, which the join returns.
                if !group.is_empty() {
                    let _ = to_sink.send(ToSink::Blocks(group));
                }
                let _ = to_sink.send(ToSink::Finish(description, target));
                match join_sink(handle)? {
                    Some(stats) => Ok(stats),
                    None => Err(helper_failed("stopped early")),
                }
            }
            Back::Gone => Err(Error::bad_input("batch writer used after a failure")),
        }
    }
}

const ORDER: &str = "batch updates not in strictly increasing (key, val, time) order";

impl Drop for BatchWriter {
    fn drop(&mut self) {
        // Not finished: stop the helper (closing its channel makes it drop the uncommitted output) and
        // wait for it, so the discarded temporary object is gone when the drop returns.
        if let Back::Thread { to_sink, handle, .. } = std::mem::replace(&mut self.back, Back::Gone) {
            drop(to_sink);
            let _ = join_sink(handle);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{Blob, FaultyBlob, MemBlob};

    #[test]
    fn cmp_bytes_is_slice_order() {
        let words: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"ab",
            b"abcdefg",
            b"abcdefgh",
            b"abcdefgh\0",
            b"abcdefghi",
            b"abcdefgi",
            b"b",
            b"\xff\xff\xff\xff\xff\xff\xff\xff",
            b"\xff\xff\xff\xff\xff\xff\xff\xff\x01",
            b"\x00\x00\x00\x00\x00\x00\x00\x01",
        ];
        for a in &words {
            for b in &words {
                assert_eq!(cmp_bytes(a, b), a.cmp(b), "{a:?} {b:?}");
            }
        }
    }

    const DESC: Description = Description {
        lower: 0,
        upper: 10,
        since: 0,
    };

    /// Enough updates for several hand-off groups: ~2.5 MB of blocks.
    fn updates() -> Vec<(Vec<u8>, Vec<u8>, u64, i64)> {
        (0..20_000u32)
            .flat_map(|k| {
                let key = format!("key-{k:08}").into_bytes();
                (0..(k % 3 + 1)).map(move |t| (key.clone(), vec![b'v'; 100], t as u64, 1 + t as i64))
            })
            .collect()
    }

    fn write(blob: &dyn Blob, name: &str, background: bool) -> Result<BatchStats> {
        let mut w = BatchWriter::new(blob.create(name)?, DESC, 4096)?
            .with_filter(20_000, 10)
            .with_background_io(background);
        for (k, v, t, d) in updates() {
            w.push(&k, &v, t, d)?;
        }
        w.finish()
    }

    #[test]
    fn background_io_writes_the_same_bytes() {
        let blob = MemBlob::new();
        let inline = write(&blob, "a", false).unwrap();
        let background = write(&blob, "b", true).unwrap();
        assert_eq!(inline, background);
        let (a, b) = (blob.get("a").unwrap().unwrap(), blob.get("b").unwrap().unwrap());
        assert!(a.len() > 2 * HANDOFF_BYTES);
        assert!(a[..] == b[..], "the helper thread must write the same file");
    }

    #[test]
    fn background_io_failures_are_errors_and_commit_nothing() {
        for ops in [0, 1, 2, 3, 5] {
            let blob = FaultyBlob::new(MemBlob::new());
            blob.fail_after(ops);
            assert!(write(&blob, "a", true).is_err(), "fail after {ops}");
            blob.heal();
            assert!(blob.get("a").unwrap().is_none(), "fail after {ops}");
        }
    }

    #[test]
    fn an_unfinished_background_writer_discards_its_output() {
        let blob = MemBlob::new();
        let mut w = BatchWriter::new(blob.create("a").unwrap(), DESC, 4096)
            .unwrap()
            .with_background_io(true);
        for (k, v, t, d) in updates() {
            w.push(&k, &v, t, d).unwrap();
        }
        drop(w);
        assert!(blob.get("a").unwrap().is_none());
        assert!(blob.list().unwrap().is_empty());
    }
}
