//! Manifest edits: a commit writes only what it changed, as one blob object of its own, instead of the
//! whole manifest (the log of version edits of LevelDB's and RocksDB's `MANIFEST`, kept as one object per
//! edit so that a blob without appends, object storage, can hold it).
//!
//! The manifest is the snapshot object `MANIFEST` at some generation `g` followed by the edit objects
//! `MANIFEST-EDIT-{g+1}`, `MANIFEST-EDIT-{g+2}`, ... (generation in 16 hex digits), applied in order. An
//! edit holds the new global numbers and the whole entry of every stream it added or changed, and the ids
//! of the streams it removed: a seal writes one stream's entry, not every stream's, and an edit moving
//! batches between streams (re-sharding) changes two entries in one object, atomically. Every object
//! is written by the blob's atomic `set` (a temporary, fsync, rename, fsync of the directory), so a crash
//! leaves each edit whole or absent; edit `g+k+1` is only written once edit `g+k` is durable, so a gap
//! is damage, not a crash ([`Error::Corrupt`]). After `MAX_EDITS` edits, or once they hold as many bytes
//! as the snapshot, the next commit writes a new snapshot instead and then deletes the edits it covers;
//! edits at or below the snapshot's generation are left over from such a rewrite and are ignored (the
//! next open removes them). A writable open folds any edits into a new snapshot first.
//!
//! Bytes: FORMAT.md §3.1. Invariants: the manifest an edit produces passes every check of
//! [`Manifest::decode`] (checked on read by decoding it again), and an edit's store id and generation
//! follow the manifest it applies to.

use super::manifest::{Manifest, StreamMeta, MANIFEST_NAME, MANIFEST_VERSION};
use crate::blob::Blob;
use crate::encoding::{checksum, open_checksummed, FormatVersion, PutLe};
use crate::error::{Error, Result};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// The prefix of an edit object's name; the rest is its generation in 16 hex digits.
pub const EDIT_PREFIX: &str = "MANIFEST-EDIT-";
/// The edit format version this library writes and the newest it reads.
pub const EDIT_VERSION: FormatVersion = FormatVersion(1);
/// Edits after a snapshot before the next commit writes a snapshot instead.
pub const MAX_EDITS: usize = 64;
const MAGIC: &[u8; 8] = b"DDPMEDIT";

/// The object name of the edit producing `generation`.
pub fn edit_name(generation: u64) -> String {
    format!("{EDIT_PREFIX}{generation:016x}")
}

/// The generation an object name holds, if it names an edit.
pub fn parse_edit_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix(EDIT_PREFIX)?;
    let canonical = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| u64::from_str_radix(hex, 16).ok())?
}

/// What one commit changed: see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEdit {
    /// The store's id (as the manifest's): an edit of another store is corruption.
    pub store_id: u32,
    /// The generation the edit produces (the manifest's it applies to, plus one).
    pub generation: u64,
    /// The manifest's next batch file number after the edit.
    pub next_file_no: u64,
    /// The manifest's next stream number after the edit.
    pub next_stream_no: u32,
    /// Ids of the streams the edit removed.
    pub removed: Vec<String>,
    /// The whole entry of every stream the edit added or changed, in the new manifest's order.
    pub changed: Vec<Arc<StreamMeta>>,
}

impl ManifestEdit {
    /// The edit from `old` to `new` (`new.generation` must be `old.generation + 1`).
    ///
    /// O(streams) pointer comparisons and O(changed streams) entry comparisons: `new` is `old` edited
    /// as every edit does (a clone whose entries are shared, changed ones copied on write, removed ones
    /// taken out in place, new ones appended with stream numbers from `old.next_stream_no` on), so one
    /// walk of both lists in step finds what changed. A `new` made otherwise (entries reordered) is
    /// compared by id instead.
    pub fn between(old: &Manifest, new: &Manifest) -> ManifestEdit {
        debug_assert_eq!(new.generation, old.generation + 1);
        let (removed, changed) = Self::walk(old, new).unwrap_or_else(|| Self::by_id(old, new));
        debug_assert_eq!((removed.clone(), changed.clone()), Self::by_id(old, new));
        ManifestEdit {
            store_id: new.store_id,
            generation: new.generation,
            next_file_no: new.next_file_no,
            next_stream_no: new.next_stream_no,
            removed,
            changed,
        }
    }

    /// The removed ids and changed entries of `new` against `old`, by walking both lists in step; `None`
    /// if `new` is not ordered as an edit leaves it.
    fn walk(old: &Manifest, new: &Manifest) -> Option<(Vec<String>, Vec<Arc<StreamMeta>>)> {
        let (mut removed, mut changed) = (Vec::new(), Vec::new());
        let mut next = new.streams.iter().peekable();
        for before in &old.streams {
            // A shared entry is unchanged (its pointer, no read of the entry); an entry copied on write
            // is compared.
            if next.next_if(|after| Arc::ptr_eq(before, after)).is_some() {
                continue;
            }
            match next.next_if(|after| after.stream_no == before.stream_no) {
                Some(after) if before.id != after.id => return None,
                Some(after) if before != after => changed.push(after.clone()),
                Some(_) => {}
                None => removed.push(before.id.clone()),
            }
        }
        for added in next {
            if added.stream_no < old.next_stream_no {
                return None;
            }
            changed.push(added.clone());
        }
        Some((removed, changed))
    }

    /// The removed ids and changed entries of `new` against `old`, matched by id.
    fn by_id(old: &Manifest, new: &Manifest) -> (Vec<String>, Vec<Arc<StreamMeta>>) {
        let before: HashMap<&str, &Arc<StreamMeta>> =
            old.streams.iter().map(|s| (s.id.as_str(), s)).collect();
        let after: HashSet<&str> = new.streams.iter().map(|s| s.id.as_str()).collect();
        let removed = old.streams.iter().filter(|s| !after.contains(s.id.as_str()));
        let changed = new
            .streams
            .iter()
            .filter(|s| before.get(s.id.as_str()) != Some(s));
        (
            removed.map(|s| s.id.clone()).collect(),
            changed.cloned().collect(),
        )
    }

    /// Applies the edit to `manifest` (read from `file`, for errors). Removed streams go, changed ones
    /// replace their entry in place, new ones are appended (creation order).
    ///
    /// Errors: [`Error::Corrupt`] naming `file` if the edit is of another store or does not follow the
    /// manifest's generation.
    pub fn apply(&self, manifest: &mut Manifest, file: &str) -> Result<()> {
        if self.store_id != manifest.store_id {
            return Err(Error::corrupt(
                file,
                12,
                format!(
                    "an edit of store {:#x}, not of this store ({:#x})",
                    self.store_id, manifest.store_id
                ),
            ));
        }
        if self.generation != manifest.generation + 1 {
            return Err(Error::corrupt(
                file,
                16,
                format!(
                    "generation {} does not follow the manifest's {}",
                    self.generation, manifest.generation
                ),
            ));
        }
        manifest.generation = self.generation;
        manifest.next_file_no = self.next_file_no;
        manifest.next_stream_no = self.next_stream_no;
        let removed: HashSet<&str> = self.removed.iter().map(String::as_str).collect();
        manifest.retain_streams(|s| !removed.contains(s.id.as_str()));
        for stream in &self.changed {
            match manifest.position(&stream.id) {
                Some(at) => manifest.streams[at] = stream.clone(),
                None => manifest.push_stream(stream.clone()),
            }
        }
        Ok(())
    }

    /// The edit as bytes (FORMAT.md §3.1).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.put_u32(EDIT_VERSION.0);
        b.put_u32(self.store_id);
        b.put_u64(self.generation);
        b.put_u64(self.next_file_no);
        b.put_u32(self.next_stream_no);
        b.put_u32(self.removed.len() as u32);
        for id in &self.removed {
            b.put_u32(id.len() as u32);
            b.extend_from_slice(id.as_bytes());
        }
        b.put_u32(self.changed.len() as u32);
        for s in &self.changed {
            s.encode(&mut b);
        }
        let sum = checksum(&b);
        b.put_u64(sum);
        b
    }

    /// Decodes an edit read from `file`. Checks its own entries (each stream's batches and spills as the
    /// manifest's, file numbers below its `next_file_no` and unique); what depends on the manifest it
    /// applies to is checked once applied ([`read_manifest`]).
    ///
    /// Errors: [`Error::Corrupt`] naming `file` and the offset; [`Error::VersionTooNew`].
    pub fn decode(bytes: &[u8], file: &str) -> Result<ManifestEdit> {
        let (_, mut d) = open_checksummed(bytes, MAGIC, "manifest edit", 48, EDIT_VERSION, file)?;
        let store_id = d.u32("store id")?;
        let generation = d.u64("generation")?;
        let next_file_no = d.u64("next file number")?;
        let next_stream_no = d.u32("next stream number")?;
        let removed_count = d.u32("removed count")? as usize;
        let mut removed = Vec::with_capacity(removed_count.min(d.remaining() / 4));
        for _ in 0..removed_count {
            let at = d.offset();
            let len = d.u32("id length")? as usize;
            let id = std::str::from_utf8(d.bytes(len, "id")?)
                .map_err(|_| d.error_at(at + 4, "removed stream id is not UTF-8"))?;
            removed.push(id.to_string());
        }
        let changed_count = d.u32("changed count")? as usize;
        let mut changed = Vec::with_capacity(changed_count.min(d.remaining() / 32));
        let mut files = HashSet::new();
        for _ in 0..changed_count {
            changed.push(Arc::new(StreamMeta::decode(
                &mut d,
                MANIFEST_VERSION.0,
                next_file_no,
                &mut files,
            )?));
        }
        d.finish("manifest edit")?;
        Ok(ManifestEdit {
            store_id,
            generation,
            next_file_no,
            next_stream_no,
            removed,
            changed,
        })
    }
}

/// The manifest a blob holds: the snapshot and the edits after it, applied in order.
#[derive(Debug)]
pub struct ReadManifest {
    /// The manifest as of the last edit.
    pub manifest: Manifest,
    /// The snapshot's generation (before the edits).
    pub snapshot_generation: u64,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: usize,
    /// The snapshot's format version (below [`MANIFEST_VERSION`]: written by an older release, which
    /// would not read edits after it; a writable open rewrites it before any edit).
    pub snapshot_version: u32,
    /// The edits applied: generation and size in bytes, in order.
    pub edits: Vec<(u64, usize)>,
    /// Names of edit objects at or below the snapshot's generation (left over from a snapshot rewrite).
    pub stale: Vec<String>,
}

/// Reads the manifest of `blob`: `None` if it has no `MANIFEST`.
///
/// Errors: [`Error::Corrupt`] naming the object and offset for a damaged snapshot or edit, an edit of
/// another store, a gap in the edits' generations, or a manifest the edits leave inconsistent; I/O
/// errors; [`Error::VersionTooNew`].
pub fn read_manifest(blob: &dyn Blob) -> Result<Option<ReadManifest>> {
    let location = blob.location();
    let Some(bytes) = blob.get(MANIFEST_NAME)? else {
        return Ok(None);
    };
    let mut manifest = Manifest::decode(&bytes, &format!("{location}/{MANIFEST_NAME}"))?;
    let snapshot_generation = manifest.generation;
    let mut generations: Vec<u64> = blob.list()?.iter().filter_map(|n| parse_edit_name(n)).collect();
    generations.sort_unstable();
    let (stale, later): (Vec<u64>, Vec<u64>) =
        generations.into_iter().partition(|&g| g <= snapshot_generation);
    let mut edits = Vec::new();
    for generation in later {
        let name = edit_name(generation);
        let file = format!("{location}/{name}");
        if generation != manifest.generation + 1 {
            let detail = format!(
                "edit {generation} after the manifest's generation {}: edits are missing",
                manifest.generation
            );
            return Err(Error::corrupt(file, 0, detail));
        }
        // Listed but gone: the store rewrote its snapshot meanwhile (a live store read by `inspect`).
        let bytes = blob.get(&name)?.ok_or_else(|| {
            Error::corrupt(
                &file,
                0,
                "the edit was removed while it was read (the store is live)",
            )
        })?;
        ManifestEdit::decode(&bytes, &file)?.apply(&mut manifest, &file)?;
        edits.push((generation, bytes.len()));
    }
    if !edits.is_empty() {
        // Every invariant a manifest's decode checks holds for the edited one.
        let file = format!("{location}/{}", edit_name(manifest.generation));
        Manifest::decode(&manifest.encode(), &file)?;
    }
    Ok(Some(ReadManifest {
        manifest,
        snapshot_generation,
        snapshot_bytes: bytes.len(),
        snapshot_version: crate::encoding::le_u32(&bytes, 8),
        edits,
        stale: stale.into_iter().map(edit_name).collect(),
    }))
}

#[cfg(test)]
#[path = "edit_tests.rs"]
mod tests;
