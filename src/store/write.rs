//! The write path: validating and encoding updates, appending their WAL record (group commit for durable
//! streams) and inserting them into the stream's memtable; and the spill a write triggers past the memory
//! budget. `state` is held only for the append (a memcpy) and the insert, never across an fsync.

use super::streams::CheckedStream;
use super::*;
use crate::wal::record::{RecordEncoder, RecordFormat};

impl Store {
    /// Writes typed updates `(key, val, time, diff)` to stream `id`. See [`write_bytes`](Self::write_bytes).
    /// Also [`Error::BadInput`] if the stream records other key or val types ([`check_types`](Self::check_types)),
    /// and [`Error::UnknownStream`] if the id was dropped and created again between that check and the
    /// write (the write goes to the stream checked or nowhere).
    pub fn write<K: Codec, V: Codec>(&self, id: &str, updates: &[(K, V, u64, i64)]) -> Result<()> {
        let _admitted = self.refuse_claimed(id)?;
        let checked = self.refuse_other_types::<K, V>(id)?;
        self.write_checked(id, checked, Encoded::new(updates).iter())
    }

    /// Writes updates to stream `id`, all at once: when this returns `Ok`, they are in the memtable and,
    /// for a durable stream, fsync'd in the WAL. On error nothing was written.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] for a time below the stream's sealed upper
    /// (or at [`FRONTIER_CLOSED`]), a key over 16 MiB, a val over 64 MiB, or more than 512 MiB in one call;
    /// [`Error::DiffOverflow`] if the diffs of one `(key, val, time)` — this write's together with those the
    /// memtable holds — would sum outside `i64` (DESIGN.md, "Diff arithmetic"; partial sums do not count).
    /// Zero diffs are dropped. [`Error::BadInput`] too while a persisted operator writes the stream (its
    /// dataflow is running).
    pub fn write_bytes<'a>(&self, id: &str, updates: impl IntoIterator<Item = UpdateRef<'a>>) -> Result<()> {
        let _admitted = self.refuse_claimed(id)?;
        self.write_checked(id, CheckedStream::Unchecked, updates)
    }

    /// [`write_bytes`](Self::write_bytes) by the persisted operator that holds the stream's writer claim.
    pub(crate) fn write_bytes_claimed<'a>(
        &self,
        id: &str,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
    ) -> Result<()> {
        self.write_checked(id, CheckedStream::Unchecked, updates)
    }

    /// [`write_bytes`](Self::write_bytes) into the stream a typed call `checked` the types of:
    /// [`Error::UnknownStream`] if the id names another stream by now (or none was there at the check).
    pub(super) fn write_checked<'a>(
        &self,
        id: &str,
        checked: CheckedStream,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
    ) -> Result<()> {
        let (ticket, over_budget) = self.write_unsynced(id, checked, updates)?;
        self.sync_wal(ticket)?;
        if over_budget {
            self.spill_after_write(id);
        }
        self.bound_wal();
        Ok(())
    }

    /// Writes updates to stream `id` like [`write_bytes`](Self::write_bytes), but returns without waiting
    /// for the WAL's fsync: the updates are in the memtable (visible to snapshots and lookups) and their
    /// WAL record is queued. They are durable once [`sync`](Self::sync) with the returned ticket (or a
    /// later one) has returned, or once any [`seal`](Self::seal) (of any stream) or a memtable spill has
    /// returned: both sync the WAL up to every earlier write first. A crash before that may lose them —
    /// this write whole, never a part of it, together with every later write not yet durable (the WAL is
    /// written in order). This lets one thread keep writing while another waits for durability (group
    /// commit for a single writer): e.g. a source acknowledging its input only after `sync`.
    ///
    /// The ticket of a write with nothing to log (to a stream that is not durable, or of no update) stands
    /// for the WAL as it is: syncing it makes every earlier write durable too. A clean close (the last
    /// handle dropped) writes and syncs what is still pending.
    ///
    /// Errors: as [`write_bytes`](Self::write_bytes).
    pub fn write_bytes_unsynced<'a>(
        &self,
        id: &str,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
    ) -> Result<WriteTicket> {
        let _admitted = self.refuse_claimed(id)?;
        let (mut ticket, over_budget) = self.write_unsynced(id, CheckedStream::Unchecked, updates)?;
        if ticket.lsn() == 0 {
            // Later than every write before it (found by adversarial round 9: such a ticket was the zero
            // ticket, and syncing it left an earlier write to a durable stream unsynced).
            ticket = WriteTicket::at(self.inner.state.lock().wal_end, self.inner.id);
        }
        if over_budget {
            self.spill_after_write(id);
        }
        self.bound_wal();
        Ok(ticket)
    }

    /// Returns once every update written with `ticket` (and before it, by any thread) is durable: the
    /// first caller writes every queued WAL record and `fdatasync`s once for all waiting callers. Returns
    /// at once for tickets of non-durable streams or already durable ones.
    ///
    /// Errors: [`Error::BadInput`] for a ticket another `Store` issued (nothing changes); [`Error::Poisoned`];
    /// an I/O error of the WAL, which poisons the store (the memtable may hold updates that a crash would
    /// lose).
    pub fn sync(&self, ticket: WriteTicket) -> Result<()> {
        if ticket.lsn != 0 && ticket.store != self.inner.id {
            return Err(Error::bad_input(
                "a write ticket of another Store: sync it with the store that issued it",
            ));
        }
        drop(self.live_state()?);
        self.sync_wal(ticket)
    }

    /// Waits for the WAL up to `ticket`; a failure poisons the store.
    pub(super) fn sync_wal(&self, ticket: WriteTicket) -> Result<()> {
        if ticket.lsn == 0 {
            return Ok(());
        }
        if let Err(e) = self.inner.log.sync(ticket.lsn) {
            // The updates are in the memtable but may not be durable: refuse further work rather than
            // serve writes that a crash could lose.
            self.poison(format!("WAL sync failed: {e}"));
            return Err(e);
        }
        Ok(())
    }

    /// A write's spill of an over-budget memtable. The write itself is done: a failed spill must not
    /// report it as failed. The updates stay in memory, the failure is recorded (`background_error`), and
    /// the next write tries again. (A failed manifest commit poisons the store, as everywhere.)
    fn spill_after_write(&self, id: &str) {
        if let Err(e) = self.spill_if_over_budget(id) {
            self.record_background_error(format!("spill of stream {id:?} failed: {e}"));
        }
    }

    /// Keeps the WAL bytes held for unsealed updates under `Options::max_wal_bytes`: while the log from
    /// the oldest record still holding an unsealed update to its end is longer, spills the stream holding
    /// that record (once per stream per call). A failed spill is recorded as a background error; the
    /// write that triggered it has succeeded.
    fn bound_wal(&self) {
        let Some(max) = self.inner.options.max_wal_bytes else {
            return;
        };
        let mut spilled: Vec<String> = Vec::new();
        loop {
            let oldest = {
                let state = self.inner.state.lock();
                if state.wal_end <= max {
                    return; // the whole log is within the bound (the common case: one comparison)
                }
                let oldest = state
                    .streams
                    .iter()
                    .filter(|(id, s)| s.flushing.is_none() && !spilled.contains(id))
                    .filter_map(|(id, s)| s.memtable.min_lsn().map(|lsn| (lsn, id.clone())))
                    .filter(|(lsn, _)| *lsn != NO_LSN)
                    .min();
                oldest.filter(|(lsn, _)| state.wal_end.saturating_sub(*lsn) > max)
            };
            let Some((_, id)) = oldest else {
                return;
            };
            if let Err(e) = self.spill_if_over(&id, 0) {
                self.record_background_error(format!("spill of stream {id:?} (WAL bound) failed: {e}"));
                return;
            }
            spilled.push(id);
        }
    }

    /// Validates `updates`, encodes and appends their WAL record (not synced; durable streams only) and
    /// inserts them into the memtable. Returns the ticket to sync and whether the memtable is now over its
    /// budget. A stream that is not durable gets no record: its updates are copied once, into the memtable.
    /// The stream must be the one `checked` admits ([`Error::UnknownStream`] otherwise).
    fn write_unsynced<'a>(
        &self,
        id: &str,
        checked: CheckedStream,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
    ) -> Result<(WriteTicket, bool)> {
        // Validate outside the lock, keeping references to the caller's bytes.
        let updates = updates.into_iter();
        let mut refs: Vec<UpdateRef<'a>> = Vec::with_capacity(updates.size_hint().0);
        // The record's exact size in either format: the log picks one below. The limit applies to both
        // (varint framing is usually smaller, but up to 28 bytes an update against 24).
        let mut fixed_bytes = record::RECORD_PREFIX_BYTES;
        let mut varint_bytes = record::RECORD_PREFIX_BYTES;
        let mut prev_time = 0;
        let mut min_time = u64::MAX;
        for (k, v, t, d) in updates {
            if k.len() > MAX_KEY_BYTES || v.len() > MAX_VAL_BYTES {
                return Err(Error::bad_input(format!(
                    "key of {} or val of {} bytes over the limit",
                    k.len(),
                    v.len()
                )));
            }
            if t == FRONTIER_CLOSED {
                return Err(Error::bad_input(
                    "time u64::MAX is reserved for the closed frontier",
                ));
            }
            // Every time is checked against the upper, even a zero diff's (which is then dropped).
            min_time = min_time.min(t);
            if d == 0 {
                continue;
            }
            fixed_bytes += RecordFormat::Fixed.update_bytes(prev_time, (k, v, t, d));
            varint_bytes += RecordFormat::Varint.update_bytes(prev_time, (k, v, t, d));
            prev_time = t;
            if fixed_bytes.max(varint_bytes) > MAX_RECORD_BYTES {
                return Err(Error::bad_input(format!(
                    "one write over {MAX_RECORD_BYTES} bytes; split it"
                )));
            }
            refs.push((k, v, t, d));
        }
        let count =
            u32::try_from(refs.len()).map_err(|_| Error::bad_input("too many updates in one write"))?;
        // A stream's durability is fixed when it is created: read it with a short look under the lock,
        // and encode the WAL record (durable streams only) outside it. The stream's number says, under
        // the lock below, that it is still that stream (not dropped and created again meanwhile).
        let (durable, stream_no) = self.durability(id)?;
        if !checked.admits(stream_no) {
            return Err(Error::UnknownStream { id: id.to_string() });
        }
        let mut payload = Vec::new();
        if durable && count > 0 {
            // Varint unless the log's active segment is of an older WAL version (then until it rolls over).
            // Read before the append: a log that takes varint records never goes back.
            let format = self.inner.log.record_format();
            let record_bytes = match format {
                RecordFormat::Fixed => fixed_bytes,
                RecordFormat::Varint => varint_bytes,
            };
            payload.reserve_exact(record_bytes);
            let mut encoder = RecordEncoder::begin(&mut payload, 0, format);
            for &update in &refs {
                encoder.push(&mut payload, update);
            }
            encoder.finish(&mut payload);
            debug_assert_eq!(payload.len(), record_bytes);
        }
        let mut state = self.live_state()?;
        let stream = state
            .streams
            .get_mut(id)
            .filter(|s| s.version.stream_no() == stream_no)
            .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
        if min_time < stream.pending_upper {
            return Err(Error::bad_input(format!(
                "write at time {min_time} below stream {id:?}'s sealed upper {}",
                stream.pending_upper
            )));
        }
        if count == 0 {
            return Ok((WriteTicket::default(), false));
        }
        // Before anything is logged: a write that would take a sum out of range is rejected whole.
        stream
            .memtable
            .check_sums(refs.iter().copied())
            .map_err(|e| e.in_stream(id))?;
        let (lsn, end) = if durable {
            payload[1..5].copy_from_slice(&stream.version.stream_no().to_le_bytes());
            self.inner.log.append(&payload)?
        } else {
            (NO_LSN, 0)
        };
        stream.memtable.insert_all(&refs, lsn);
        let over_budget = stream.memtable.bytes() > self.inner.options.memtable_budget_bytes;
        if durable {
            state.wal_end = state.wal_end.max(end);
        }
        let ticket = match durable {
            true => WriteTicket {
                lsn: end,
                store: self.inner.id,
            },
            false => WriteTicket::default(),
        };
        Ok((ticket, over_budget))
    }
}

/// Typed updates encoded into one buffer by their [`Codec`]s, read back as [`UpdateRef`]s (for the typed
/// `write` and `append`).
pub(super) struct Encoded {
    bytes: Vec<u8>,
    /// Per update: where its key starts, where its val starts and ends, its time and diff.
    spans: Vec<(usize, usize, usize, u64, i64)>,
}

impl Encoded {
    pub(super) fn new<K: Codec, V: Codec>(updates: &[(K, V, u64, i64)]) -> Self {
        let mut bytes = Vec::new();
        let mut spans = Vec::with_capacity(updates.len());
        for (k, v, t, d) in updates {
            let start = bytes.len();
            k.encode(&mut bytes);
            let mid = bytes.len();
            v.encode(&mut bytes);
            spans.push((start, mid, bytes.len(), *t, *d));
        }
        Encoded { bytes, spans }
    }

    pub(super) fn iter(&self) -> impl ExactSizeIterator<Item = UpdateRef<'_>> + '_ {
        let bytes = &self.bytes;
        self.spans
            .iter()
            .map(move |&(s, m, e, t, d)| (&bytes[s..m], &bytes[m..e], t, d))
    }
}

impl super::Inner {
    /// Writes and syncs the WAL records of every write so far, if one is pending (a `write_bytes_unsynced`
    /// whose ticket no one synced): for a clean close. A failure is ignored (no caller to report to): those
    /// writes are then lost as in a crash, which their contract allows.
    pub(crate) fn sync_pending_writes(&self) {
        let end = self.state.lock().wal_end;
        if end > 0 {
            let _ = self.log.sync(end);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Store, StreamOptions};
    use crate::Error;

    /// A typed call checks the types of one stream and then writes, appends or reads: if the id was
    /// dropped and created again in between (with other types, say), the write or append refuses the new
    /// stream, and a lookup checks the types of the stream it read.
    #[test]
    fn a_typed_call_acts_on_the_stream_it_checked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let old = store.refuse_other_types::<String, u64>("s").unwrap();
        store.drop_stream("s").unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        store.set_types("s", "key u32, val u32").unwrap();
        let update = [(&b"k"[..], &b"v"[..], 0, 1)];
        let err = store.write_checked("s", old, update).unwrap_err();
        assert!(matches!(err, Error::UnknownStream { .. }), "{err}");
        let err = store.append_checked("s", old, update, (0, 1)).unwrap_err();
        assert!(matches!(err, Error::UnknownStream { .. }), "{err}");
        assert_eq!(
            store.snapshot("s").unwrap().iter().unwrap().count(),
            0,
            "nothing reached the new stream"
        );
        // Checked against the new stream, they go through; the typed lookup refuses its types.
        let new = store.refuse_other_types::<u32, u32>("s").unwrap();
        store
            .write_checked("s", new, [(&0u32.to_be_bytes()[..], &[0, 0, 0, 1][..], 0, 1)])
            .unwrap();
        assert!(store.get::<String, u64>("s", &"k".to_string(), 0).is_err());
        assert_eq!(store.get::<u32, u32>("s", &0, 0).unwrap(), vec![(1, 1)]);
        // Checked while no stream of the id existed: one created since is refused too (review).
        let absent = store.refuse_other_types::<String, u64>("t").unwrap();
        store.create_stream("t", StreamOptions::default()).unwrap();
        let err = store.write_checked("t", absent, update).unwrap_err();
        assert!(matches!(err, Error::UnknownStream { .. }), "{err}");
        let err = store.append_checked("t", absent, update, (0, 1)).unwrap_err();
        assert!(matches!(err, Error::UnknownStream { .. }), "{err}");
    }
}
