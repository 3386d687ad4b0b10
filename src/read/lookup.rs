//! Point lookups: "key K as of time T", for one key or many, and timestamp lookups ("has this key ever
//! been given a time, and which was the first?").
//!
//! A lookup reads the stream's sealed batches and its unsealed updates (memtable, and buckets a seal in
//! progress is writing), so it sees every acknowledged write. Per batch it checks, without touching a data
//! page: the description (`lower` above `as_of` means no update qualifies), the batch's first and last keys,
//! and the Bloom key filter; only then does it binary-search the block index's fences and read one block.
//! The key's hash and prefix are computed once for all batches, and every batch's filter line is
//! prefetched before any is probed (`batch::seek`): a lookup is bound by cache misses, which then overlap.
//! Batches are held by `Arc` for the lookup's duration, so concurrent merges do not disturb it.
//!
//! Times below the stream's `since` may have been advanced to `since` by merges, or not yet: answers read
//! through the since, so that they never depend on whether a merge ran (found by an adversarial test).
//! A lookup `as_of` a time before the since is refused ([`Error::BadInput`]: as for any DD trace, the
//! collection is known there only as of the since), and a first time is the least time, times below
//! the since read as the since, whose updates of some val do not cancel out.
//!
//! A key's diffs are accumulated exactly (`i128`), in whatever order the sources are read: only the
//! total of each val at `as_of` must fit `i64` (DESIGN.md, "Diff arithmetic").

use crate::batch::{BatchFile, KeyProbe};
use crate::codec::Codec;
use crate::error::{Error, Result};
use crate::memtable::for_key_in;
use crate::store::Store;
use crate::version::Version;
use std::sync::Arc;

/// The consolidated `(val, diff)` pairs of one key, vals in byte order, zero sums dropped.
pub type Vals = Vec<(Vec<u8>, i64)>;

/// Receives `(key index, val, time, diff)` for each update found.
type Visit<'a> = &'a mut dyn FnMut(usize, &[u8], u64, i64);

/// Adds `(val, diff)` to a key's list: onto its last entry when that holds the same val (a batch yields
/// a key's updates in `(val, time)` order, so a val's many times there take one entry).
fn add(found: &mut Vec<(Vec<u8>, i128)>, val: &[u8], diff: i64) {
    match found.last_mut() {
        Some((last, sum)) if last.as_slice() == val => *sum += i128::from(diff),
        _ => found.push((val.to_vec(), i128::from(diff))),
    }
}

/// [`Error::BadInput`] if `as_of` is below the since of the stream `id` as `version` holds it: the
/// stream's updates there may or may not have been advanced to the since yet (module docs).
fn refuse_below_since(id: &str, version: &Version, as_of: u64) -> Result<()> {
    match as_of < version.since() {
        true => Err(Error::bad_input(format!(
            "lookup in stream {id:?} as of {as_of}, below its since {}: times before the since are known \
             only as of the since (Store::allow_compaction)",
            version.since()
        ))),
        false => Ok(()),
    }
}

impl Store {
    /// The consolidated `(val, diff)` pairs of `key` in stream `id`, over all updates with time at or
    /// before `as_of` (sealed or not).
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], I/O and [`Error::Corrupt`] errors of the
    /// batches; [`Error::BadInput`] if `as_of` is below the stream's since (see the module docs);
    /// [`Error::DiffOverflow`] (naming `as_of`) if a val's diffs sum outside `i64`.
    pub fn get_bytes(&self, id: &str, key: &[u8], as_of: u64) -> Result<Vals> {
        self.get_in_version(id, key, as_of).map(|(found, _)| found)
    }

    /// [`get_bytes`](Self::get_bytes), with the version of the stream it read.
    fn get_in_version(&self, id: &str, key: &[u8], as_of: u64) -> Result<(Vals, Arc<Version>)> {
        // One key: one list, and no per-key vectors or batch list (a lookup's allocations are a
        // measurable part of a warm hit).
        let mut found = Vec::new();
        let version = self.gather_unsealed(id, &[key], as_of, &mut |_, val, _time, diff| {
            add(&mut found, val, diff)
        })?;
        refuse_below_since(id, &version, as_of)?;
        probe_batches(&version, &KeyProbe::new(key), as_of, |val, diff| {
            add(&mut found, val, diff)
        })?;
        consolidate(found, key, as_of)
            .map(|found| (found, version))
            .map_err(|e| e.in_stream(id))
    }

    /// [`get_bytes`](Self::get_bytes) for many keys at once: one result per key, in the same order.
    /// Errors: as [`get_bytes`](Self::get_bytes).
    pub fn get_many_bytes(&self, id: &str, keys: &[&[u8]], as_of: u64) -> Result<Vec<Vals>> {
        // Per key, the `(val, diff)`s found, consolidated at the end: most keys have one val, so a list
        // and one sort cost less than a map.
        let mut acc: Vec<Vec<(Vec<u8>, i128)>> = vec![Vec::new(); keys.len()];
        let version = self.gather_unsealed(id, keys, as_of, &mut |i, val, _time, diff| {
            add(&mut acc[i], val, diff)
        })?;
        refuse_below_since(id, &version, as_of)?;
        for (found, key) in acc.iter_mut().zip(keys) {
            probe_batches(&version, &KeyProbe::new(key), as_of, |val, diff| {
                add(found, val, diff)
            })?;
        }
        acc.into_iter()
            .zip(keys)
            .map(|(found, key)| consolidate(found, key, as_of).map_err(|e| e.in_stream(id)))
            .collect()
    }

    /// Typed [`get_bytes`](Self::get_bytes): the values of `key` as of `as_of`, with their multiplicities.
    /// Errors: as [`get_bytes`](Self::get_bytes); [`Error::BadInput`] if the stream records other key or
    /// val types ([`check_types`](Self::check_types): those of the stream the lookup read, should the id
    /// have been dropped and created again meanwhile); [`Error::Decode`] for a val that does not decode
    /// as `V`.
    pub fn get<K: Codec, V: Codec>(&self, id: &str, key: &K, as_of: u64) -> Result<Vec<(V, i64)>> {
        let (found, version) = self.get_in_version(id, &key.to_bytes(), as_of)?;
        // The types of the stream the lookup read (not of the id now: it may have been dropped and
        // created again meanwhile).
        crate::store::refuse_other_types::<K, V>(id, &version.meta().types)?;
        found.into_iter().map(|(v, d)| Ok((V::decode(&v)?, d))).collect()
    }

    /// The first time at which stream `id` holds an update of `key` (sealed or not) that does not cancel
    /// out: the least time whose updates of some val sum to nonzero, times below the stream's since read
    /// as the since (merges may have advanced them, or not yet); `None` if there is none. For timestamp
    /// persistence: "have we assigned this data a timestamp before?" Reads every update of the key.
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], I/O and [`Error::Corrupt`] errors of the
    /// batches.
    pub fn first_time_bytes(&self, id: &str, key: &[u8]) -> Result<Option<u64>> {
        self.first_time_in_version(id, key).map(|(first, _)| first)
    }

    /// [`first_time_bytes`](Self::first_time_bytes), with the version of the stream it read.
    fn first_time_in_version(&self, id: &str, key: &[u8]) -> Result<(Option<u64>, Arc<Version>)> {
        // Every update of the key, its time advanced to the since, summed per (val, time): the first time
        // with a nonzero sum is what a merge (which advances and consolidates) or a seal (which
        // consolidates) leaves, so the answer never depends on whether one ran (an adversarial review:
        // +1 and -1 below the since answered the since before a merge and none after).
        let mut sums: Vec<(u64, Vec<u8>, i128)> = Vec::new();
        let mut add = |val: &[u8], time: u64, diff: i64| sums.push((time, val.to_vec(), i128::from(diff)));
        let version = self.gather_unsealed(id, &[key], u64::MAX, &mut |_, val, time, diff| {
            add(val, time, diff)
        })?;
        let probe = KeyProbe::new(key);
        for batch in sources(&version) {
            batch.for_key_probe(&probe, &mut add)?;
        }
        let since = version.since();
        for s in &mut sums {
            s.0 = s.0.max(since);
        }
        sums.sort_unstable_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut first = None;
        let mut at = 0;
        while at < sums.len() && first.is_none() {
            let end = at
                + sums[at..]
                    .iter()
                    .take_while(|s| (s.0, &s.1) == (sums[at].0, &sums[at].1))
                    .count();
            if sums[at..end].iter().map(|s| s.2).sum::<i128>() != 0 {
                first = Some(sums[at].0);
            }
            at = end;
        }
        Ok((first, version))
    }

    /// Typed [`first_time_bytes`](Self::first_time_bytes). Errors: as `first_time_bytes`, and
    /// [`Error::BadInput`] if the stream records another key type ([`check_types`](Self::check_types):
    /// another type could encode to the bytes of a key that was written; found by an adversarial test).
    pub fn first_time<K: Codec>(&self, id: &str, key: &K) -> Result<Option<u64>> {
        let (first, version) = self.first_time_in_version(id, &key.to_bytes())?;
        crate::store::refuse_other_key_type::<K>(id, &version.meta().types)?;
        Ok(first)
    }

    /// Calls `f(key index, val, time, diff)` for the unsealed updates of `keys` at or before `as_of`, and
    /// returns the version whose batches and spilled runs are to be read ([`sources`]). Under the state
    /// lock it only clones the stream's version and the memtable's buckets up to `as_of` (shared, copy on
    /// write); the scan runs after.
    fn gather_unsealed(&self, id: &str, keys: &[&[u8]], as_of: u64, f: Visit<'_>) -> Result<Arc<Version>> {
        let view = self.read_view(id, ..=as_of)?;
        for (i, key) in keys.iter().enumerate() {
            for_key_in(&view.buckets, key, as_of, |v, t, d| f(i, v, t, d));
            if let Some(flushing) = &view.flushing {
                for_key_in(flushing, key, as_of, |v, t, d| f(i, v, t, d));
            }
        }
        Ok(view.version)
    }
}

/// Calls `f(val, diff)` for every update of `probe`'s key at or before `as_of` in the batches and spilled
/// runs of `version` that can hold one (`lower <= as_of`). Every such batch's filter line is requested
/// before any is read, so the batches' cache misses overlap (`batch::seek`).
fn probe_batches(
    version: &Version,
    probe: &KeyProbe<'_>,
    as_of: u64,
    mut f: impl FnMut(&[u8], i64),
) -> Result<()> {
    let batches = || sources(version).filter(|b| b.description().lower <= as_of);
    for batch in batches() {
        batch.prefetch(probe);
    }
    for batch in batches() {
        batch.for_key_probe(probe, |val, time, diff| {
            if time <= as_of {
                f(val, diff)
            }
        })?;
    }
    Ok(())
}

/// A key's found `(val, diff)`s consolidated: vals in byte order, each val's diffs summed (exactly, in
/// `i128`), zero sums dropped. Errors: [`Error::DiffOverflow`] naming `key` and `as_of` if a sum is
/// outside `i64`.
fn consolidate(mut found: Vec<(Vec<u8>, i128)>, key: &[u8], as_of: u64) -> Result<Vals> {
    found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vals = Vec::with_capacity(found.len());
    let mut found = found.into_iter().peekable();
    while let Some((val, mut sum)) = found.next() {
        while let Some((_, d)) = found.next_if(|(v, _)| *v == val) {
            sum += d;
        }
        if sum != 0 {
            let d = i64::try_from(sum).map_err(|_| Error::diff_overflow(key, as_of))?;
            out.push((val, d));
        }
    }
    Ok(out)
}

/// The batches of `version`, then its spilled runs: all in time order, as `first_time_bytes` relies on.
fn sources(version: &Version) -> impl Iterator<Item = &BatchFile> {
    version.batches().iter().chain(version.spills()).map(|b| &**b)
}
