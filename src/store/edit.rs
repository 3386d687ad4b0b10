//! The one edit path of the store's durable state.
//!
//! Every change of what the manifest records — creating a stream, a seal, a spill, `allow_compaction`, a
//! merge's swap of its inputs for its output, dropping a stream (and, next, moving batches between
//! streams when re-sharding) — is one *edit* applied by [`Store::apply_edit`], under `edit_lock`:
//! 1. copy the current manifest (O(1): its stream entries are shared, and copied on write), apply the
//!    queued riders' seals to the copy (`store/ride.rs`: seals with nothing to write that waited for
//!    `edit_lock`), then the edit (an edit may refuse, changing nothing; the riders then wait for the next
//!    edit), and find what changed ([`ManifestEdit::between`]: a walk comparing pointers);
//! 2. bump the generation and commit it durably: as an edit object holding the entries of the streams
//!    the edit changed or added and the ids of those it removed (`version::edit`), or, after many edits,
//!    as a new snapshot of the whole manifest; either by the blob's atomic `set` (a temporary, fsync,
//!    rename, fsync the directory); a failed commit poisons the store, since only a reopen can tell
//!    which manifest the disk holds;
//! 3. publish: under `state`, install the new manifest and, for every stream whose entry the edit
//!    changed, a new [`Version`] derived from that entry (its files taken from the previous version and
//!    the files the edit wrote), then make the matching change to the memtable side (`publish`: the
//!    flush in progress ends), so readers see the new state at once.
//!
//! The new versions are derived before the commit (a bug that names a file nobody opened fails the edit,
//! committing nothing), while `edit_lock` keeps every other edit out.
//!
//! Invariants: the manifest in `state` is always the last one committed, and only `apply_edit` replaces it
//! (the initial one is read or created at open); every stream's version is derived from that manifest's
//! entry, so open files and manifest cannot disagree. Two commits happen outside it, at open, before any
//! `Store` exists: recovery drops the spilled runs of streams that lose their unsealed updates at a
//! restart (`store/open.rs`, `drop_volatile_spills`), with the same atomic replace (the blob's `set`) and a
//! bumped generation; and it folds the manifest's edits (or an older version's snapshot) into a new
//! snapshot, which writes only what it read.

use super::*;
use crate::version::edit::{edit_name, MAX_EDITS};
use crate::version::ManifestEdit;
use parking_lot::MutexGuard;

impl Store {
    /// Applies one edit of the manifest: see the module docs. `_edit` proves the caller holds
    /// `edit_lock`; `what` names the operation in the error a failed commit poisons the store with.
    /// `edit` changes the copy and returns what `publish` needs; `publish` makes the in-memory change
    /// under `state` once the commit is durable, and its result is returned.
    ///
    /// Errors: [`Error::Poisoned`]; whatever `edit` returns (nothing is committed then);
    /// [`Error::Corrupt`] naming the manifest if the edited manifest names a batch file that is neither
    /// open nor in `written` (a bug in the edit; nothing is committed then); the commit's I/O error (the
    /// store is then poisoned).
    pub(crate) fn apply_edit<E, P>(
        &self,
        _edit: &MutexGuard<'_, ()>,
        what: &str,
        written: &[Written],
        edit: impl FnOnce(&mut Manifest) -> Result<E>,
        publish: impl FnOnce(&mut State, E) -> P,
    ) -> Result<P> {
        // `edit_lock` keeps `state.manifest` the current one until this edit installs its successor; the
        // clone shares every stream's entry (`Manifest::streams`).
        let (current, riders) = {
            let mut state = self.live_state()?;
            (state.manifest.clone(), std::mem::take(&mut state.riders))
        };
        let mut next = current.clone();
        // Queued riders first: their seals come before this edit (`store/ride.rs`). Unless this edit
        // publishes them, they go back to the queue (or fail with the poisoned store) when `carried`
        // drops: on an error return or a panic alike.
        let mut carried = ride::Carried::new(self, riders);
        carried.apply(&mut next);
        let edited = edit(&mut next)?;
        next.generation = current.generation + 1;
        let change = ManifestEdit::between(&current, &next);
        let versions = self.derive_versions(&change, written)?;
        self.commit_manifest(&next, &change, what)?;
        let mut state = self.inner.state.lock();
        debug_assert_eq!(
            state.manifest.generation, current.generation,
            "an edit raced another"
        );
        state.manifest = next;
        let state = &mut *state;
        for (id, version) in versions {
            match state.streams.get_mut(&id) {
                Some(stream) => stream.version = version,
                None => {
                    state.streams.insert(id, StreamState::new(version));
                }
            }
        }
        // An edit that removes streams takes their in-memory state with it: `drop_stream` discards the
        // stream's unsealed updates (WAL replay skips their records); any other such edit (re-sharding,
        // next) must have moved them first.
        let dropping = state.dropping.take();
        for id in &change.removed {
            let removed = state.streams.remove(id);
            debug_assert!(
                dropping.as_deref() == Some(id.as_str())
                    || removed.is_none_or(|s| s.memtable.update_count() == 0 && s.flushing.is_none()),
                "an edit removed stream {id:?} holding unsealed updates"
            );
        }
        carried.publish(state);
        Ok(publish(state, edited))
    }

    /// The new version of every stream `change` added or changed, its files taken from its current
    /// version and `written`. O(changed streams).
    fn derive_versions(
        &self,
        change: &ManifestEdit,
        written: &[Written],
    ) -> Result<Vec<(String, Arc<Version>)>> {
        // The current versions under the lock (`edit_lock` keeps them current), then the derivations
        // without it.
        let current: Vec<Option<Arc<Version>>> = {
            let state = self.live_state()?;
            let version = |id: &String| Some(state.streams.get(id)?.version.clone());
            change.changed.iter().map(|meta| version(&meta.id)).collect()
        };
        let mut derived = Vec::with_capacity(change.changed.len());
        for (meta, current) in change.changed.iter().zip(current) {
            let mut files: HashMap<u64, Arc<BatchFile>> =
                current.map(|v| v.files().collect()).unwrap_or_default();
            files.extend(written.iter().map(|(b, m)| (m.file_no, b.clone())));
            let version = Version::derive(meta.clone(), &files)?;
            derived.push((meta.id.clone(), Arc::new(version)));
        }
        Ok(derived)
    }

    /// Commits `next`, which is `change` applied to the current manifest (`what` names the operation, for
    /// the error): as the edit object `change`, or, once the edits since the snapshot are many or large,
    /// as a new snapshot, after which the edits it covers are deleted (`version::edit`; a delete that does
    /// not reach the disk leaves a stale edit the next open removes). A failure poisons the store: the
    /// commit may or may not have reached the disk, and only a reopen can tell.
    fn commit_manifest(&self, next: &Manifest, change: &ManifestEdit, what: &str) -> Result<()> {
        let mut log = self.inner.manifest_log.lock();
        let committed =
            if log.edits.len() < MAX_EDITS && log.edit_bytes < log.snapshot_bytes.max(MIN_SNAPSHOT_BYTES) {
                let bytes = change.encode();
                let set = self.inner.blob.set(&edit_name(next.generation), &bytes);
                set.map(|()| {
                    log.edits.push(next.generation);
                    log.edit_bytes += bytes.len();
                })
            } else {
                let bytes = next.encode();
                match self.inner.blob.set(MANIFEST_NAME, &bytes) {
                    Ok(()) => {
                        for generation in log.edits.drain(..) {
                            let _ = self.inner.blob.delete(&edit_name(generation));
                        }
                        log.edit_bytes = 0;
                        log.snapshot_bytes = bytes.len();
                        Ok(())
                    }
                    // A snapshot that does not fit on a full disk: the edit object (a few hundred bytes)
                    // may. Either way the disk reads back `next`: the snapshot at `next`'s generation if
                    // its rename happened (the edit then stale), else the edits and this one.
                    Err(e) if e.is_no_space() => {
                        let bytes = change.encode();
                        let set = self.inner.blob.set(&edit_name(next.generation), &bytes);
                        set.map(|()| {
                            log.edits.push(next.generation);
                            log.edit_bytes += bytes.len();
                        })
                    }
                    Err(e) => Err(e),
                }
            };
        if let Err(e) = &committed {
            self.poison(format!("manifest commit failed in {what}: {e}"));
        }
        committed
    }
}

/// A snapshot is rewritten once the edits since it hold at least this many bytes, or the snapshot's size
/// if larger (`version::edit`).
const MIN_SNAPSHOT_BYTES: usize = 64 << 10;

/// The edits committed since the manifest's snapshot (guarded by its own mutex, taken only under
/// `edit_lock`).
#[derive(Debug, Default)]
pub(crate) struct ManifestLog {
    /// Their generations, in order.
    pub(crate) edits: Vec<u64>,
    /// Their total size in bytes.
    pub(crate) edit_bytes: usize,
    /// The snapshot's size in bytes.
    pub(crate) snapshot_bytes: usize,
}

impl ManifestLog {
    /// The log of a store whose snapshot is `snapshot_bytes` long, with no edit after it.
    pub(crate) fn new(snapshot_bytes: usize) -> Self {
        ManifestLog {
            snapshot_bytes,
            ..ManifestLog::default()
        }
    }

    /// The log of a store whose snapshot is `snapshot_bytes` long and is followed by `edits` (generation
    /// and size in bytes, in order): an open that could not fold them (a full disk).
    pub(crate) fn continuing(snapshot_bytes: usize, edits: &[(u64, usize)]) -> Self {
        ManifestLog {
            edits: edits.iter().map(|e| e.0).collect(),
            edit_bytes: edits.iter().map(|e| e.1).sum(),
            snapshot_bytes,
        }
    }
}
