//! The version stage: the [`Manifest`] (`manifest`: the one durable record of every stream's batches,
//! spilled runs, upper and since, and its byte layout) and [`Version`], one stream's durable state as of
//! one manifest commit, immutable and shared. The one function that edits the manifest, commits it and
//! publishes the new versions is the store's (`Store::apply_edit`, in `store/edit.rs`), since it works
//! under the store's locks.
//!
//! A version is what the manifest records about a stream ([`StreamMeta`]: upper, since, the finished flag,
//! the batch and spilled-run lists) together with those files, open. It never changes: every edit of the
//! manifest (`Store::apply_edit`) derives the new version of each stream it touched from the
//! edited [`StreamMeta`] and swaps it in whole, so the open files cannot drift from the manifest (LevelDB's
//! `Version`/`VersionEdit`, RocksDB's `SuperVersion`). Readers (snapshots, lookups, the DD trace, merges)
//! clone the `Arc` and read without any lock while later edits publish newer versions; a batch file
//! retired by a merge stays mapped until the last version naming it is dropped.

use crate::batch::{batch_file_name, BatchFile};
use crate::blob::Blob;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::Arc;

pub mod edit;
mod manifest;

pub use edit::{read_manifest, ManifestEdit, ReadManifest};
pub use manifest::{
    BatchMeta, Manifest, StreamMeta, MANIFEST_NAME, MANIFEST_VERSION, MAX_ID_BYTES, MAX_TYPES_BYTES,
};

/// One stream's durable state as of one manifest commit: see the module docs.
#[derive(Debug)]
pub struct Version {
    meta: Arc<StreamMeta>,
    /// `meta.batches`, open, in the same order.
    batches: Vec<Arc<BatchFile>>,
    /// `meta.spills`, open, in the same order.
    spills: Vec<Arc<BatchFile>>,
}

impl Version {
    /// Opens every batch and spilled run `meta` names (at store open).
    ///
    /// Errors: [`Error::Corrupt`] if a file is missing or disagrees with the manifest; I/O errors.
    pub(crate) fn open(blob: &dyn Blob, meta: Arc<StreamMeta>) -> Result<Version> {
        let open_all = |metas: &[BatchMeta]| -> Result<Vec<Arc<BatchFile>>> {
            metas.iter().map(|m| open_batch(blob, m).map(Arc::new)).collect()
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
    pub(crate) fn derive(meta: Arc<StreamMeta>, files: &HashMap<u64, Arc<BatchFile>>) -> Result<Version> {
        let pick = |metas: &[BatchMeta]| -> Result<Vec<Arc<BatchFile>>> {
            metas
                .iter()
                .map(|m| {
                    files.get(&m.file_no).cloned().ok_or_else(|| {
                        Error::corrupt(
                            MANIFEST_NAME,
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

/// Opens the batch file `meta` names, which this process has just written (a seal's, spill's or merge's
/// output, before its commit), and checks its raw blocks through the mapping
/// ([`BatchFile::check_written`]): the writing thread pays the first touch, not the first reader.
/// Records the file's fingerprint in `meta`.
pub(crate) fn open_written_batch(blob: &dyn Blob, meta: &mut BatchMeta) -> Result<BatchFile> {
    let batch = open_batch(blob, meta)?;
    batch.check_written()?;
    meta.fingerprint = batch.fingerprint();
    Ok(batch)
}

/// Opens the batch file `meta` names and checks it is the one the manifest names ([`check_batch`]).
pub(crate) fn open_batch(blob: &dyn Blob, meta: &BatchMeta) -> Result<BatchFile> {
    let name = batch_file_name(meta.file_no);
    let full = format!("{}/{name}", blob.location());
    let bytes = blob
        .get(&name)?
        .ok_or_else(|| Error::corrupt(&full, 0, "batch file named by the manifest is missing"))?;
    let batch = BatchFile::open(full, bytes)?;
    check_batch(&batch, meta)?;
    Ok(batch)
}

/// Checks that `batch` is the file the manifest entry `meta` names: its description's interval, its
/// update count, its size in bytes and, where recorded (not 0), its fingerprint
/// ([`BatchFile::fingerprint`], FORMAT.md §3). A file of the right name with another batch's bytes (a
/// misdirected write, a file copied or restored over it) fails here instead of being served as this one.
/// The open of a store and `inspect verify` both check every batch so.
///
/// Errors: [`Error::Corrupt`] naming the file (offset 0) and what differs.
pub fn check_batch(batch: &BatchFile, meta: &BatchMeta) -> Result<()> {
    let d = batch.description();
    if (d.lower, d.upper, batch.update_count()) != (meta.lower, meta.upper, meta.update_count) {
        return Err(Error::corrupt(
            batch.name(),
            0,
            format!(
                "the file holds [{}, {}) with {} updates, the manifest names [{}, {}) with {}",
                d.lower,
                d.upper,
                batch.update_count(),
                meta.lower,
                meta.upper,
                meta.update_count
            ),
        ));
    }
    let recorded = meta.fingerprint != 0;
    if batch.size_bytes() != meta.size_bytes || (recorded && batch.fingerprint() != meta.fingerprint) {
        return Err(Error::corrupt(
            batch.name(),
            0,
            format!(
                "not the batch file the manifest names: {} bytes with fingerprint {:#010x}, the manifest \
                 records {} bytes{}",
                batch.size_bytes(),
                batch.fingerprint(),
                meta.size_bytes,
                match recorded {
                    true => format!(" with fingerprint {:#010x}", meta.fingerprint),
                    false => String::new(),
                }
            ),
        ));
    }
    Ok(())
}
