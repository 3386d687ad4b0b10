//! [`Snapshot`] ([`Store::snapshot`]): a consistent, read-only view of one stream: its sealed batches and a copy of its
//! unsealed updates, as of the moment it was taken.
//!
//! Reading merges the batches (through their mmaps) and the memtable copy into one sequence sorted by
//! `(key, val, time)` and consolidated (equal `(key, val, time)` summed, zero diffs dropped). The batches
//! are held by `Arc`, so files stay mapped for as long as the snapshot lives.

use super::MergeIter;
use crate::batch::{BatchFile, UpdateCursor};
use crate::codec::Codec;
use crate::error::Result;
use crate::memtable::iter_buckets;
use crate::memtable::Consolidated;
use crate::store::Store;
use crate::wal::record::OwnedUpdate;
use std::sync::Arc;

/// A consistent view of one stream. See the module docs.
pub struct Snapshot {
    /// The stream's id, for errors.
    pub(crate) stream: String,
    pub(crate) batches: Vec<Arc<BatchFile>>,
    /// Spilled runs of the FutureLog (unsealed updates written out under memory pressure).
    pub(crate) spills: Vec<Arc<BatchFile>>,
    pub(crate) unsealed: Consolidated,
    pub(crate) upper: u64,
    /// The stream's recorded key and val types (empty: none recorded).
    pub(crate) types: String,
}

impl Snapshot {
    /// The stream's sealed upper when the snapshot was taken: updates below it came from batch files.
    pub fn upper(&self) -> u64 {
        self.upper
    }

    /// The sealed batches in the view, oldest first.
    pub fn batches(&self) -> &[Arc<BatchFile>] {
        &self.batches
    }

    /// The spilled runs in the view: unsealed updates the memtable wrote out under memory pressure.
    pub fn spills(&self) -> &[Arc<BatchFile>] {
        &self.spills
    }

    /// Number of unsealed updates in the view held in memory (after consolidation).
    pub fn unsealed_len(&self) -> usize {
        self.unsealed.len()
    }

    /// The updates, sorted by `(key, val, time)` and consolidated. An item is an error when a batch
    /// block fails its checks, or [`Error::DiffOverflow`](crate::Error::DiffOverflow) when the updates of
    /// one `(key, val, time)` in several spilled runs and the memtable sum outside `i64`; iteration ends
    /// after an error.
    pub fn iter(&self) -> Result<MergeIter<'_>> {
        let files = self.batches.iter().chain(&self.spills);
        let cursors = files.map(|b| UpdateCursor::new(b)).collect::<Result<Vec<_>>>()?;
        Ok(MergeIter::new(cursors, Some(&self.unsealed), 0).in_stream(&self.stream))
    }

    /// Every update, owned: `(key, val, time, diff)`. Errors: as [`iter`](Self::iter).
    pub fn to_vec(&self) -> Result<Vec<OwnedUpdate>> {
        self.iter()?
            .map(|u| u.map(|(k, v, t, d)| (k.to_vec(), v.to_vec(), t, d)))
            .collect()
    }

    /// Every update, decoded by the key and val [`Codec`]s. Errors: as [`iter`](Self::iter);
    /// [`Error::BadInput`](crate::Error::BadInput) if the stream records other key or val types
    /// ([`Store::check_types`]); [`Error::Decode`](crate::Error::Decode).
    pub fn decode<K: Codec, V: Codec>(&self) -> Result<Vec<(K, V, u64, i64)>> {
        crate::store::refuse_other_types::<K, V>(&self.stream, &self.types)?;
        self.iter()?
            .map(|u| u.and_then(|(k, v, t, d)| Ok((K::decode(k)?, V::decode(v)?, t, d))))
            .collect()
    }
}

/// The sealed part of one stream, as [`Store::sealed`] returns it.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// The batches, oldest first, with non-overlapping descriptions below `upper`.
    pub batches: Vec<Arc<BatchFile>>,
    /// Every update below this is in `batches`.
    pub upper: u64,
    /// Times below this may have been advanced to it.
    pub since: u64,
}

impl Store {
    /// A consistent view of everything written to stream `id`: sealed batches and unsealed updates.
    ///
    /// Errors: [`Error::UnknownStream`](crate::Error::UnknownStream),
    /// [`Error::Poisoned`](crate::Error::Poisoned); [`Error::DiffOverflow`](crate::Error::DiffOverflow)
    /// if unsealed updates of one `(key, val, time)` sum outside `i64` (possible only across spilled runs
    /// and the memtable, whose writes are checked separately, or within it after a failed spill put its
    /// buckets back; reading the snapshot may report the same).
    pub fn snapshot(&self, id: &str) -> Result<Snapshot> {
        let view = self.read_view(id, ..)?;
        let flushing = view.flushing.iter().flat_map(|d| iter_buckets(d));
        let unsealed = Consolidated::from_updates(flushing.chain(iter_buckets(&view.buckets)))
            .map_err(|e| e.in_stream(id))?;
        Ok(Snapshot {
            stream: id.to_string(),
            batches: view.version.batches().to_vec(),
            spills: view.version.spills().to_vec(),
            unsealed,
            upper: view.version.upper(),
            types: view.version.meta().types.clone(),
        })
    }

    /// The sealed part of stream `id` only: its batches (oldest first; times between batches that no
    /// batch covers had no updates), its upper and its since. Cheap: no copy of any data.
    pub fn sealed(&self, id: &str) -> Result<Sealed> {
        Ok(Sealed::of(&*self.version(id)?))
    }
}

impl Sealed {
    /// The sealed part of `version`.
    pub(crate) fn of(version: &crate::Version) -> Sealed {
        Sealed {
            batches: version.batches().to_vec(),
            upper: version.upper(),
            since: version.since(),
        }
    }
}
