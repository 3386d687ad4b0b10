//! A stream's life in the store: creating it, its frontiers (`upper`, `since`) and current [`Version`],
//! and [`Store::allow_compaction`], the edit that advances its since (which merges then advance times
//! to). Each change is one edit through `Store::apply_edit` (`store/edit.rs`); seals, which also move the
//! upper and may carry a since, are in `store/flush.rs`.

use super::*;

impl Store {
    /// Creates a stream named `id` (1 to 1024 bytes of UTF-8). Durable when it returns.
    /// Errors with [`Error::BadInput`] if the id is taken or invalid.
    pub fn create_stream(&self, id: &str, options: StreamOptions) -> Result<()> {
        if id.is_empty() || id.len() > MAX_ID_BYTES {
            return Err(Error::bad_input(format!(
                "stream id must be 1 to {MAX_ID_BYTES} bytes, got {}",
                id.len()
            )));
        }
        let guard = self.inner.edit_lock.lock();
        let what = format!("create_stream of {id:?}");
        // Under `edit_lock` the streams in `state` are the manifest's (a lookup of a missing id there is
        // O(1), in the manifest O(streams)).
        if self.has_stream(id) {
            return Err(Error::bad_input(format!("stream {id:?} already exists")));
        }
        let edit = |next: &mut Manifest| {
            debug_assert!(
                next.stream(id).is_none(),
                "stream {id:?} in the manifest, not in `state`"
            );
            let stream_no = next.next_stream_no;
            next.next_stream_no = stream_no
                .checked_add(1)
                .ok_or_else(|| Error::bad_input("stream numbers exhausted"))?;
            next.push_stream(Arc::new(StreamMeta {
                stream_no,
                id: id.to_string(),
                upper: 0,
                since: 0,
                durable: options.durable,
                finished: false,
                batches: Vec::new(),
                spills: Vec::new(),
                spilled_lsn: 0,
                types: String::new(),
            }));
            Ok(())
        };
        // `apply_edit` installs the new stream's (empty) version.
        self.apply_edit(&guard, &what, &[], edit, |_, _| ())
    }

    /// Checks that stream `id` holds keys and vals of `types` — a name of their encodings, as typed
    /// persisted operators give it at build ([`Codec::schema`] of the key
    /// and of the val, `"key K, val V"`, and for operators at signed times how their times are stored,
    /// `"key K, val V; time stored as t - i32::MIN"`) — and records `types` if the stream has none
    /// recorded and holds no update yet (no batch, no spilled run, nothing unsealed), durably, in one
    /// manifest edit. A stream
    /// that holds updates but no types (written through the `Store` API alone, or before manifest version
    /// 3) is not checked and gets none recorded: its types are not known, and recording the caller's could
    /// lock the right ones out; [`set_types`](Self::set_types) records them. Reading a stream through other
    /// types than it was written with could decode other values from the same bytes, which no later check
    /// would notice; this is the check. It compares names, not layouts: a type whose encoding changes must
    /// change its name (`Codec::schema`).
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if the stream records other types (nothing
    /// changes) or `types` is empty or over 64 KiB; [`Error::Poisoned`]; the manifest commit's I/O error
    /// (which poisons the store).
    pub fn check_types(&self, id: &str, types: &str) -> Result<()> {
        check_types_arg(id, types)?;
        // Under `edit_lock` no other edit changes the record between the look and the commit.
        let guard = self.inner.edit_lock.lock();
        let (recorded, holds) = self.with_stream(id, |s| {
            let v = &s.version;
            let holds = !v.batches().is_empty() || !v.spills().is_empty() || s.memtable.update_count() > 0;
            (v.meta().types.clone(), holds)
        })?;
        refuse_unless_recorded(id, &recorded, types)?;
        if !recorded.is_empty() || holds {
            return Ok(());
        }
        self.record_types(&guard, id, types)
    }

    /// Records `types` as stream `id`'s key and val types, replacing any recorded (`""` clears them): for
    /// a stream whose contents were converted to other types, or one written without a record (through
    /// the `Store` API alone, or before manifest version 3) whose types the caller knows. Durable when it
    /// returns. See [`check_types`](Self::check_types).
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `types` is over 64 KiB;
    /// [`Error::Poisoned`]; the manifest commit's I/O error (which poisons the store).
    pub fn set_types(&self, id: &str, types: &str) -> Result<()> {
        if !types.is_empty() {
            check_types_arg(id, types)?;
        }
        let guard = self.inner.edit_lock.lock();
        if self.with_stream(id, |s| s.version.meta().types == types)? {
            return Ok(());
        }
        self.record_types(&guard, id, types)
    }

    /// The edit of `check_types` and `set_types`: stream `id`'s types become `types`.
    fn record_types(&self, guard: &parking_lot::MutexGuard<'_, ()>, id: &str, types: &str) -> Result<()> {
        let edit = |next: &mut Manifest| {
            next.stream_mut(id)?.types = types.to_string();
            Ok(())
        };
        self.apply_edit(guard, &format!("types of {id:?}"), &[], edit, |_, ()| ())
    }

    /// Whether a stream named `id` exists.
    pub fn has_stream(&self, id: &str) -> bool {
        self.inner.state.lock().streams.contains_key(id)
    }

    /// Drops stream `id` and everything it holds — its batches, spilled runs, unsealed updates, logged
    /// seals not yet written and types — in one manifest edit, durable when it returns; its files are
    /// deleted once no reader maps them. The id can then be created again, as a new, empty stream (a
    /// stream is known by its number inside the store: calls that looked at the old one fail with
    /// [`Error::UnknownStream`] rather than reach the new one). For retiring a persisted operator's id that
    /// no dataflow runs any more: every persisted operator's stream in a store holds back the compaction of
    /// the store's other operators (DESIGN.md §5.1), so a retired id must be dropped, each of its workers'
    /// streams ([`worker_stream_id`](crate::operators::worker_stream_id)); after a crash part way through,
    /// drop the rest (the ones already dropped are [`Error::UnknownStream`]).
    ///
    /// It claims the stream (as an operator would, so none can start writing it meanwhile), stops new
    /// merges of it and waits for the one in flight; no seal or spill of it can commit while its edit holds
    /// `edit_lock`. Its WAL records stay in the log until released and are skipped at replay: a record of
    /// a stream number below the manifest's next one that names no stream belongs to a dropped stream
    /// (numbers are never reused). Writes, seals and reads of the id after the drop fail with
    /// [`Error::UnknownStream`]; a [`PersistedTrace`](crate::trace::PersistedTrace) still open on it keeps
    /// the files it maps and stops at its next maintenance with that error in its slot (fail-stop).
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if a live operator writes the stream (a
    /// [`WriterClaim`]: drop its dataflow first); [`Error::Poisoned`]; the manifest commit's I/O error
    /// (which poisons the store).
    pub fn drop_stream(&self, id: &str) -> Result<()> {
        self.drop_stream_if(id, |_| true).map(|_| ())
    }

    /// Whether stream `id` holds nothing: upper 0, not finished, no batch, no spilled run, no unsealed
    /// update, no logged seal, no flush in progress. False for an unknown stream.
    pub(crate) fn holds_nothing(&self, id: &str) -> bool {
        self.with_stream(id, |s| {
            let meta = s.version.meta();
            meta.upper == 0
                && !meta.finished
                && s.pending_upper == 0
                && s.version.batches().is_empty()
                && !s.holds_unsealed()
        })
        .unwrap_or(false)
    }

    /// [`drop_stream`](Self::drop_stream) if stream `id` still [holds nothing](Self::holds_nothing) once
    /// claimed (no write or seal through the store gets in between the check and the drop); returns
    /// whether it was dropped. Errors: as `drop_stream` ([`Error::BadInput`] for a live operator's stream).
    pub(crate) fn drop_stream_if_empty(&self, id: &str) -> Result<bool> {
        self.drop_stream_if(id, |store| store.holds_nothing(id))
    }

    /// Claims stream `id`, and drops it if `drop_it` says so under the claim; returns whether it did.
    fn drop_stream_if(&self, id: &str, drop_it: impl FnOnce(&Self) -> bool) -> Result<bool> {
        let claim = self.claim_writer(id).map_err(|e| match e {
            Error::BadInput { .. } => Error::bad_input(format!(
                "stream {id:?} is written by a live operator: drop its dataflow before the stream"
            )),
            e => e,
        })?;
        if !drop_it(self) {
            return Ok(false);
        }
        if let Some(s) = self.inner.state.lock().streams.get_mut(id) {
            s.dropping = true;
        }
        // However `drop_claimed` ends (an error, a panic), a stream still there merges again.
        let _unmark = Unmark { store: self, id };
        let dropped = self.drop_claimed(id);
        drop(claim);
        dropped.map(|()| true)
    }

    /// [`drop_stream`](Self::drop_stream) once the stream is claimed and marked: no new merge of it starts.
    fn drop_claimed(&self, id: &str) -> Result<()> {
        self.wait_for_merge_in_flight(id)?;
        let guard = self.inner.edit_lock.lock();
        // Under edit_lock no seal, spill or merge of the stream commits (a flush holds edit_lock whole),
        // and no merge of it runs (waited for; none starts once marked): its version and files stay as
        // read here. Its logged seals and memtable leave with its in-memory state.
        let files: Vec<(u64, Arc<BatchFile>)> = {
            let mut state = self.live_state()?;
            let stream = state
                .streams
                .get(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            debug_assert!(!stream.merging && !stream.tail_merging && stream.flushing.is_none());
            let files = stream.version.files().collect();
            state.dropping = Some(id.to_string());
            files
        };
        let edit = |next: &mut Manifest| {
            next.retain_streams(|s| s.id != id);
            Ok(())
        };
        let dropped = self.apply_edit(&guard, &format!("drop_stream of {id:?}"), &[], edit, |_, ()| ());
        self.inner.state.lock().dropping = None;
        dropped?;
        // A stream created again under this id holds nothing from before this open.
        self.forget_held_at_open(id);
        for (no, file) in files {
            file.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
        }
        self.inner.batches_changed.notify_all();
        Ok(())
    }

    /// Discards the unsealed updates of stream `id` if it keeps none across a restart (not durable, or any
    /// stream over a WAL that keeps nothing): its memtable, and its spilled runs (one manifest edit). A
    /// persisted operator that takes over such a stream calls it (holding the stream's writer claim), so
    /// it starts from the stream's upper, as after a restart, also when an earlier operator of the stream
    /// in this process was dropped with a time taken in but not sealed (found by an adversarial test: the
    /// rebuilt operator, fed again from its resume point, wrote and emitted that time's updates twice).
    /// Returns how many updates it discarded (spilled runs counted as written). Nothing for a durable
    /// stream: its unsealed updates are the source's, which does not replay them.
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`], the manifest commit's.
    pub(crate) fn discard_volatile_unsealed(&self, id: &str) -> Result<u64> {
        let durable_log = self.inner.log.is_durable();
        // A flush holds edit_lock whole: none is in progress while it is held here.
        let guard = self.inner.edit_lock.lock();
        let (discarded, spills) = {
            let mut state = self.live_state()?;
            let stream = state
                .streams
                .get_mut(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if stream.version.meta().durable && durable_log {
                return Ok(0);
            }
            debug_assert!(stream.flushing.is_none(), "a flush in progress outside edit_lock");
            let discarded = stream.memtable.update_count() as u64;
            stream.memtable = crate::memtable::MemTable::default();
            let metas = &stream.version.meta().spills;
            let spills: Vec<(u64, Arc<BatchFile>)> = (metas.iter().map(|m| m.file_no))
                .zip(stream.version.spills().iter().cloned())
                .collect();
            let spilled: u64 = metas.iter().map(|m| m.update_count).sum();
            (discarded + spilled, spills)
        };
        if spills.is_empty() {
            return Ok(discarded);
        }
        let edit = |next: &mut Manifest| {
            if let Ok(s) = next.stream_mut(id) {
                s.spills.clear();
            }
            Ok(())
        };
        self.apply_edit(
            &guard,
            &format!("discarding the unsealed updates of {id:?}"),
            &[],
            edit,
            |_, ()| (),
        )?;
        for (no, file) in spills {
            file.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
        }
        Ok(discarded)
    }

    /// The sealed upper of stream `id`: every update below it is in a batch file.
    pub fn upper(&self, id: &str) -> Result<u64> {
        self.with_stream(id, |s| s.version.upper())
    }

    /// The current [`Version`] of stream `id`: its durable state as of the last manifest commit, shared
    /// (an `Arc` clone; later seals and merges publish new versions and leave this one as it is).
    ///
    /// Errors: [`Error::UnknownStream`], [`Error::Poisoned`].
    pub fn version(&self, id: &str) -> Result<Arc<Version>> {
        self.with_stream(id, |s| s.version.clone())
    }

    /// Allows merges to advance times below `since` to `since` (and so to consolidate updates whose diffs
    /// then sum to zero). Reads at times at or beyond `since` are unaffected; lookups below it are refused
    /// (`read::lookup`). Durable when it returns.
    ///
    /// A since beyond the stream's upper is allowed (as DD's logical compaction frontier may be): updates
    /// written later at times below it are advanced too. A persisted operator's stream
    /// (`operators`) has its since set by the operator's seals, below the uppers of the persisted
    /// operators downstream of it. Do not raise it by hand: the history the operator re-emits after a
    /// restart would be collapsed to the new since, the restarted dataflow's answers below it lost, and a
    /// persisted operator downstream whose upper is below it would take that history again (rows doubled,
    /// retractions lost; `tests/compaction/restart_compaction.rs` shows the rule the operators follow).
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `since` is below the stream's current since
    /// (it never goes backward) or is `u64::MAX`, or while a persisted operator writes the stream (its
    /// dataflow is running: the operator sets its since).
    pub fn allow_compaction(&self, id: &str, since: u64) -> Result<()> {
        let _admitted = self.refuse_claimed(id)?;
        if since == crate::FRONTIER_CLOSED {
            return Err(Error::bad_input(
                "since u64::MAX is reserved for the closed frontier",
            ));
        }
        let guard = self.inner.edit_lock.lock();
        let edit = |next: &mut Manifest| {
            let meta = next.stream_mut(id)?;
            if since < meta.since {
                return Err(Error::bad_input(format!(
                    "since {since} of {id:?} is below its current since {}; since never goes backward",
                    meta.since
                )));
            }
            meta.since = since;
            Ok(())
        };
        if self.since(id)? == since {
            return Ok(());
        }
        self.apply_edit(
            &guard,
            &format!("allow_compaction of {id:?}"),
            &[],
            edit,
            |_, ()| (),
        )
    }

    /// The since of stream `id`: merges may have advanced times below it to it.
    pub fn since(&self, id: &str) -> Result<u64> {
        self.with_stream(id, |s| s.version.since())
    }

    /// The latest time of stream `id`'s unsealed updates held in memory (its memtable's, and a seal's in
    /// flight), if any.
    pub(crate) fn unsealed_max_time(&self, id: &str) -> Result<Option<u64>> {
        self.with_stream(id, |s| {
            let flushing = s.flushing.as_ref().and_then(|b| b.keys().next_back().copied());
            s.memtable.max_time().max(flushing)
        })
    }

    /// Whether the store's WAL keeps what it logs across a reopen: a durable stream keeps its unsealed
    /// updates only then (an in-memory log keeps nothing, and such a stream is treated as not durable).
    pub(crate) fn durable_log(&self) -> bool {
        self.inner.log.is_durable()
    }

    /// Whether stream `id` is durable, and its number (which tells a call that reads it before taking the
    /// lock again that it is still that stream, not one of the id dropped and created again meanwhile).
    pub(crate) fn durability(&self, id: &str) -> Result<(bool, u32)> {
        self.with_stream(id, |s| (s.version.durable(), s.version.stream_no()))
    }
}

/// Clears the `dropping` mark of stream `id` (if still there) when `drop_stream` ends.
struct Unmark<'a> {
    store: &'a Store,
    id: &'a str,
}

impl Drop for Unmark<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.store.inner.state.lock().streams.get_mut(self.id) {
            s.dropping = false;
        }
    }
}

/// [`Error::BadInput`] if stream `id` records types (`recorded`, non-empty) other than `types`. Nothing
/// recorded: no check.
fn refuse_unless_recorded(id: &str, recorded: &str, types: &str) -> Result<()> {
    if recorded.is_empty() || recorded == types {
        return Ok(());
    }
    use crate::codec::{key_val_part, time_mismatch, time_part};
    if key_val_part(recorded) == key_val_part(types) {
        return Err(time_mismatch(id, time_part(recorded), time_part(types)));
    }
    Err(Error::bad_input(format!(
        "stream {id:?} was written with {recorded}, not {types}: use the types it was written with (a \
         stream's keys and vals are read back by their encodings, which other types may decode to other \
         values), or its bytes as they are (the *_bytes calls), or, after converting its contents, record \
         the new types with Store::set_types"
    )))
}

/// For the typed `Store` API (`write`, `append`, `get`, `Snapshot::decode`): [`Error::BadInput`] if stream
/// `id` records types (`recorded`) other than keys `K`'s and vals `V`'s. Nothing recorded: no check.
pub(crate) fn refuse_other_types<K: crate::codec::Codec, V: crate::codec::Codec>(
    id: &str,
    recorded: &str,
) -> Result<()> {
    if recorded.is_empty() {
        return Ok(()); // the common case, without forming the names
    }
    // The store's API reads and writes store times: how an operator's times map onto them is not checked.
    let key_val = crate::codec::key_val_part(recorded);
    refuse_unless_recorded(id, key_val, &crate::codec::types_of::<K, V>())
}

/// [`Error::BadInput`] unless a stream `id` whose recorded types are `recorded` (empty: none) holds keys
/// of type `K` (a typed call that names no val type: `Store::first_time`).
pub(crate) fn refuse_other_key_type<K: crate::codec::Codec>(id: &str, recorded: &str) -> Result<()> {
    let key_val = crate::codec::key_val_part(recorded);
    if key_val.is_empty() || key_val.starts_with(&format!("key {}, val ", K::schema())) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "stream {id:?} was written with {key_val}, not keys of {}: use the key type it was written with, \
         or its key's bytes (first_time_bytes)",
        K::schema()
    )))
}

/// Which stream a typed call checked the types of ([`Store::refuse_other_types`]), for the write or append
/// that follows to act on that stream only: one of the id created, or dropped and created again, since
/// the check is [`Error::UnknownStream`](crate::Error::UnknownStream) to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckedStream {
    /// No check (the byte-level calls): any stream of the id.
    Unchecked,
    /// The stream of this number.
    Stream(u32),
    /// No stream of the id existed at the check: none may be written.
    Absent,
}

impl CheckedStream {
    /// Whether the stream numbered `no` is the one checked.
    pub(crate) fn admits(self, no: u32) -> bool {
        match self {
            CheckedStream::Unchecked => true,
            CheckedStream::Stream(checked) => checked == no,
            CheckedStream::Absent => false,
        }
    }
}

impl Store {
    /// [`refuse_other_types`] for stream `id` as it is now; returns which stream it checked, for the call
    /// that follows to refuse another stream of the id (created, or dropped and created again meanwhile,
    /// `Store::drop_stream`). Any other error (an unknown stream, a poisoned store) is left to the call that
    /// follows, which reports it in its own order.
    pub(crate) fn refuse_other_types<K: crate::codec::Codec, V: crate::codec::Codec>(
        &self,
        id: &str,
    ) -> Result<CheckedStream> {
        // The record is copied only when there is one (a stream a typed operator wrote).
        let types = |s: &StreamState| {
            let t = &s.version.meta().types;
            ((!t.is_empty()).then(|| t.clone()), s.version.stream_no())
        };
        match self.with_stream(id, types) {
            Ok((Some(recorded), no)) => {
                refuse_other_types::<K, V>(id, &recorded).map(|()| CheckedStream::Stream(no))
            }
            Ok((None, no)) => Ok(CheckedStream::Stream(no)),
            Err(_) => Ok(CheckedStream::Absent),
        }
    }
}

/// Refuses empty or over-long types of stream `id`, and types that say twice how times are stored (an
/// encoding name holding `"; time stored as "` would be read as the time part).
fn check_types_arg(id: &str, types: &str) -> Result<()> {
    if types.is_empty() || types.len() > crate::version::MAX_TYPES_BYTES {
        return Err(Error::bad_input(format!(
            "types of stream {id:?} must be 1 to 64 KiB, got {} bytes",
            types.len()
        )));
    }
    if types.matches(crate::codec::TIME_PART).count() > 1 {
        return Err(Error::bad_input(format!(
            "types of stream {id:?} ({types:?}) name an encoding holding {:?}: rename it \
             (`serde_codec!(T as \"name\")`)",
            crate::codec::TIME_PART
        )));
    }
    Ok(())
}
