//! [`Version`]: one stream's durable state as of one manifest commit, immutable and shared.
//!
//! A version is what the manifest records about a stream ([`StreamMeta`]: upper, since, the finished flag,
//! the batch and spilled-run lists) together with those files, open. It never changes: every edit of the
//! manifest ([`Store::apply_edit`](super::Store)) derives the new version of each stream it touched from the
//! edited [`StreamMeta`] and swaps it in whole, so the open files cannot drift from the manifest (LevelDB's
//! `Version`/`VersionEdit`, RocksDB's `SuperVersion`). Readers (snapshots, lookups, the DD trace, merges)
//! clone the `Arc` and read without any lock while later edits publish newer versions; a batch file
//! retired by a merge stays mapped until the last version naming it is dropped.

use crate::batch::BatchFile;
use crate::blob::Blob;
use crate::error::{Error, Result};
use crate::manifest::{BatchMeta, StreamMeta};
use std::collections::HashMap;
use std::sync::Arc;

/// One stream's durable state as of one manifest commit: see the module docs.
#[derive(Debug)]
pub struct Version {
    meta: StreamMeta,
    /// `meta.batches`, open, in the same order.
    batches: Vec<Arc<BatchFile>>,
    /// `meta.spills`, open, in the same order.
    spills: Vec<Arc<BatchFile>>,
}

impl Version {
    /// Opens every batch and spilled run `meta` names (at store open).
    ///
    /// Errors: [`Error::Corrupt`] if a file is missing or disagrees with the manifest; I/O errors.
    pub(crate) fn open(blob: &dyn Blob, meta: StreamMeta) -> Result<Version> {
        let open_all = |metas: &[BatchMeta]| -> Result<Vec<Arc<BatchFile>>> {
            metas
                .iter()
                .map(|m| super::open_batch(blob, m).map(Arc::new))
                .collect()
        };
        let (batches, spills) = (open_all(&meta.batches)?, open_all(&meta.spills)?);
        Ok(Version {
            meta,
            batches,
            spills,
        })
    }

    /// The version an edit produced: `meta` (the edited entry), its files taken from `files` (file number
    /// → open file: the previous version's and the ones the edit wrote).
    ///
    /// Errors: [`Error::Corrupt`] naming the manifest if `meta` names a file that is neither (a bug in the
    /// edit; nothing is committed then).
    pub(crate) fn derive(meta: StreamMeta, files: &HashMap<u64, Arc<BatchFile>>) -> Result<Version> {
        let pick = |metas: &[BatchMeta]| -> Result<Vec<Arc<BatchFile>>> {
            metas
                .iter()
                .map(|m| {
                    files.get(&m.file_no).cloned().ok_or_else(|| {
                        Error::corrupt(
                            crate::manifest::MANIFEST_NAME,
                            0,
                            format!(
                                "an edit of {:?} names batch file {} that is not open",
                                meta.id, m.file_no
                            ),
                        )
                    })
                })
                .collect()
        };
        let (batches, spills) = (pick(&meta.batches)?, pick(&meta.spills)?);
        Ok(Version {
            meta,
            batches,
            spills,
        })
    }

    /// Every open file of this version by file number (for [`derive`](Self::derive)).
    pub(crate) fn files(&self) -> impl Iterator<Item = (u64, Arc<BatchFile>)> + '_ {
        let metas = self.meta.batches.iter().chain(&self.meta.spills);
        metas
            .zip(self.batches.iter().chain(&self.spills))
            .map(|(m, b)| (m.file_no, b.clone()))
    }

    /// What the manifest records about the stream.
    pub fn meta(&self) -> &StreamMeta {
        &self.meta
    }

    /// The stream's sealed upper: every update at a time below it is in [`batches`](Self::batches).
    pub fn upper(&self) -> u64 {
        self.meta.upper
    }

    /// Times below this may have been advanced to it in the batches (logical compaction).
    pub fn since(&self) -> u64 {
        self.meta.since
    }

    /// The sealed batches, oldest first, with non-overlapping descriptions below the upper.
    pub fn batches(&self) -> &[Arc<BatchFile>] {
        &self.batches
    }

    /// The spilled runs of the memtable (times at or beyond the upper), ordered by time range.
    pub fn spills(&self) -> &[Arc<BatchFile>] {
        &self.spills
    }

    /// Whether unsealed writes go through the WAL.
    pub fn durable(&self) -> bool {
        self.meta.durable
    }

    /// The stream's number in WAL records.
    pub(crate) fn stream_no(&self) -> u32 {
        self.meta.stream_no
    }
}
