//! Applying one operation to the store and the model.

use super::*;

impl Harness {
    pub(super) fn absolute(&self, slot: usize, updates: &[GenUpdate]) -> Vec<OwnedUpdate> {
        let upper = self.model(slot).map_or(0, |m| m.upper);
        updates
            .iter()
            .map(|(k, v, off, d)| (k.clone(), v.clone(), upper + u64::from(*off), i64::from(*d)))
            .collect()
    }

    /// Marks every unacknowledged write up to `seq` acknowledged.
    pub(super) fn acknowledge_through(&mut self, seq: u64) {
        self.unacked = self.unacked.split_off(&(seq + 1));
    }

    pub(super) fn apply(&mut self, op: &Op) {
        self.stats.operations += 1;
        match op {
            Op::Create { slot, durable } => {
                let slot = usize::from(*slot % 3);
                let exists = !matches!(self.slots[slot], Slot::Absent);
                let r = self
                    .store()
                    .create_stream(SLOTS[slot], StreamOptions { durable: *durable });
                match self.outcome(&r, "create_stream", exists, false) {
                    Outcome::Ok => {
                        assert!(!exists, "created {} twice", SLOTS[slot]);
                        self.slots[slot] = Slot::Exists(StreamModel::new(*durable));
                    }
                    Outcome::Io if self.poisoned && !exists => {
                        self.slots[slot] = Slot::MaybeCreated { durable: *durable };
                    }
                    _ => {}
                }
                self.check_all("after create_stream");
            }
            Op::Write {
                slot,
                updates,
                synced,
            } => {
                let slot = usize::from(*slot % 3);
                let owned = self.absolute(slot, updates);
                let id = SLOTS[slot];
                let refs = owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
                let exists = self.model(slot).is_some();
                let (r, ticket) = if *synced {
                    (self.store().write_bytes(id, refs), None)
                } else {
                    let r = self.store().write_bytes_unsynced(id, refs);
                    let t = r.as_ref().ok().copied();
                    (r.map(|_| ()), t)
                };
                let seq = self.next_seq;
                self.next_seq += 1;
                let durable = self.model(slot).is_some_and(|m| m.durable);
                let nonzero = owned.iter().any(|u| u.3 != 0);
                match self.outcome(&r, "write", false, !exists) {
                    Outcome::Ok => {
                        self.stats.writes += 1;
                        if let Some(m) = self.model_mut(slot) {
                            m.writes.push((seq, owned));
                        }
                        if durable && nonzero {
                            self.unacked.insert(seq);
                            if *synced {
                                self.acknowledge_through(seq);
                            }
                        }
                        if let Some(t) = ticket {
                            self.tickets.push((t, self.epoch, seq));
                            if self.tickets.len() > MAX_TICKETS {
                                self.tickets.remove(0);
                            }
                        }
                    }
                    Outcome::Io if self.poisoned => {
                        // Its WAL sync failed: the record may or may not be on disk.
                        if let Some(m) = self.model_mut(slot) {
                            m.writes.push((seq, owned));
                        }
                        if durable {
                            self.unacked.insert(seq);
                        }
                    }
                    _ => {}
                }
                self.check_stream(slot, "after a write");
            }
            Op::Sync { ticket } => {
                if self.tickets.is_empty() {
                    return;
                }
                let (t, epoch, seq) = self.tickets[usize::from(*ticket) % self.tickets.len()];
                let foreign = epoch != self.epoch && t.lsn() != 0;
                let r = self.store().sync(t);
                if foreign {
                    assert!(
                        matches!(r, Err(Error::BadInput { .. })),
                        "sync of a ticket of an earlier store: {r:?}"
                    );
                    return;
                }
                // The zero ticket (a write to a non-durable stream, or of zero diffs only) syncs nothing.
                if self.outcome(&r, "sync", false, false) == Outcome::Ok && t.lsn() != 0 {
                    self.acknowledge_through(seq);
                }
            }
            Op::WriteBelow {
                slot,
                updates,
                bad_at,
                below,
                diff,
            } => {
                let slot = usize::from(*slot % 3);
                let mut owned = self.absolute(slot, updates);
                let upper = self.model(slot).map_or(0, |m| m.upper);
                let bad_time = match upper {
                    0 => FRONTIER_CLOSED,
                    _ => upper - 1 - u64::from(*below).min(upper - 1),
                };
                let at = usize::from(*bad_at) % (owned.len() + 1);
                owned.insert(at, (b"a".to_vec(), b"b".to_vec(), bad_time, i64::from(*diff)));
                let exists = self.model(slot).is_some();
                let r = self.store().write_bytes(
                    SLOTS[slot],
                    owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)),
                );
                let o = self.outcome(&r, "write below the upper", true, !exists);
                assert!(
                    o != Outcome::Ok && o != Outcome::Io,
                    "write at {bad_time} below {upper}: {r:?}"
                );
                self.check_stream(slot, "after a refused write");
            }
            Op::WriteClosed { slot, diff } => {
                let slot = usize::from(*slot % 3);
                let r = self
                    .store()
                    .write(SLOTS[slot], &[(1u8, 2u8, FRONTIER_CLOSED, i64::from(*diff))]);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write at FRONTIER_CLOSED: {r:?}"
                );
                self.check_stream(slot, "after a refused write at the closed frontier");
            }
            Op::Seal { slot, by } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let (lower, upper) = self
                    .model(slot)
                    .map_or((0, 1), |m| (m.upper, m.upper + u64::from(*by)));
                let interval = self
                    .model(slot)
                    .map(|m| consolidate(m.between(lower, upper)))
                    .unwrap_or_default();
                let r = self.store().seal(SLOTS[slot], upper);
                let seq = self.next_seq;
                self.next_seq += 1;
                match self.outcome(&r, "seal", false, !exists) {
                    Outcome::Ok => {
                        let info = r.expect("Ok");
                        let d = info.description;
                        assert_eq!(
                            (d.lower, d.upper, d.since),
                            (lower, upper, 0),
                            "sealed description"
                        );
                        assert_eq!(info.update_count, interval.len() as u64, "sealed count");
                        assert_eq!(info.batch.is_some(), !interval.is_empty(), "batch iff updates");
                        self.stats.seals += 1;
                        if let Some(m) = self.model_mut(slot) {
                            m.upper = upper;
                        }
                        // A seal syncs the WAL up to every earlier write first.
                        self.acknowledge_through(seq);
                    }
                    Outcome::Io if self.poisoned => {
                        self.uncertain.push(Uncertain::Seal { slot, seq, upper });
                    }
                    _ => {}
                }
                self.check_stream(slot, "after a seal");
            }
            Op::SealLogged { slot, by } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let upper = self.model(slot).map_or(1, |m| m.upper + u64::from(*by));
                let r = self.store().seal_logged(SLOTS[slot], upper);
                let seq = self.next_seq;
                self.next_seq += 1;
                match self.outcome(&r, "seal_logged", false, !exists) {
                    Outcome::Ok => {
                        self.stats.seals += 1;
                        if let Some(m) = self.model_mut(slot) {
                            m.upper = upper;
                        }
                        // The seal record's group commit synced every earlier write.
                        self.acknowledge_through(seq);
                        if self.store().upper(SLOTS[slot]).ok() != Some(upper) {
                            // Logged, its batch not written (a fault failed it): durable all the same. A
                            // crash now; the open completes it.
                            self.reopen(None);
                        }
                    }
                    Outcome::Io if self.poisoned => {
                        self.uncertain.push(Uncertain::Seal { slot, seq, upper });
                    }
                    _ => {}
                }
                self.check_stream(slot, "after seal_logged");
            }
            Op::SealWith { slot, by, since_by } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let (lower, since) = self.model(slot).map_or((0, 0), |m| (m.upper, m.since));
                let (upper, to) = (lower + u64::from(*by), since + u64::from(*since_by));
                // Refused: a since above the new upper, or nothing to change (the upper stays, the since
                // does not advance, `finished` stays false).
                let refused = to > upper || (*by == 0 && to <= since);
                let options = ddpersist::SealOptions {
                    finished: false,
                    since: Some(to),
                };
                let r = self.store().seal_with(SLOTS[slot], upper, options);
                let seq = self.next_seq;
                self.next_seq += 1;
                match self.outcome(&r, "seal_with", refused, !exists && to <= upper) {
                    Outcome::Ok => {
                        assert!(!refused, "seal_with to {upper}, since {to} accepted: {r:?}");
                        let d = r.expect("Ok").description;
                        assert_eq!((d.lower, d.upper), (lower, upper), "seal_with description");
                        self.stats.seals += 1;
                        if let Some(m) = self.model_mut(slot) {
                            m.upper = upper;
                            m.since = m.since.max(to);
                        }
                        self.acknowledge_through(seq);
                    }
                    Outcome::Io if self.poisoned => {
                        self.uncertain.push(Uncertain::Seal { slot, seq, upper });
                        self.uncertain.push(Uncertain::Since { slot, since: to });
                    }
                    Outcome::BadInput | Outcome::Unknown | Outcome::Poisoned | Outcome::Io => {}
                }
                self.check_stream(slot, "after seal_with");
            }
            Op::SealStale { slot, back } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let to = self
                    .model(slot)
                    .map_or(0, |m| m.upper.saturating_sub(u64::from(*back)));
                let r = self.store().seal(SLOTS[slot], to);
                let o = self.outcome(&r, "stale seal", exists, !exists);
                assert!(o != Outcome::Ok, "seal to {to}: {r:?}");
                self.check_stream(slot, "after a refused seal");
            }
            Op::AllowCompaction { slot, by } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let since = self.model(slot).map_or(0, |m| m.since) + u64::from(*by);
                let r = self.store().allow_compaction(SLOTS[slot], since);
                match self.outcome(&r, "allow_compaction", false, !exists) {
                    Outcome::Ok => {
                        if let Some(m) = self.model_mut(slot) {
                            m.since = since;
                        }
                    }
                    Outcome::Io if self.poisoned => self.uncertain.push(Uncertain::Since { slot, since }),
                    _ => {}
                }
                self.check_stream(slot, "after allow_compaction");
            }
            Op::AllowCompactionBack { slot } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let since = self.model(slot).map_or(0, |m| m.since);
                let to = since.checked_sub(1).unwrap_or(FRONTIER_CLOSED);
                let r = self.store().allow_compaction(SLOTS[slot], to);
                let o = self.outcome(&r, "allow_compaction back", true, !exists);
                assert!(
                    o != Outcome::Ok && o != Outcome::Io,
                    "since {since} to {to}: {r:?}"
                );
                self.check_stream(slot, "after a refused allow_compaction");
            }
            Op::Compact { slot, major } => {
                let slot = usize::from(*slot % 3);
                let exists = self.model(slot).is_some();
                let (r, what) = match major {
                    true => (self.store().major_compact(SLOTS[slot]), "major_compact"),
                    false => (self.store().compact(SLOTS[slot]), "compact"),
                };
                self.outcome(&r, what, false, !exists);
                if *major && r.is_ok() && exists {
                    let batches = self.store().sealed(SLOTS[slot]).map(|v| v.batches.len());
                    assert!(
                        batches.as_ref().is_ok_and(|n| *n <= 1),
                        "{what} left {batches:?} batches"
                    );
                }
                self.check_stream(slot, &format!("after {what}"));
            }
            Op::Lookup {
                slot,
                key,
                others,
                as_of,
            } => {
                let slot = usize::from(*slot % 3);
                if self.poisoned {
                    return;
                }
                if self.model(slot).is_none() {
                    let r = self.store().get_bytes(SLOTS[slot], key, u64::from(*as_of));
                    self.outcome(&r, "lookup", false, true);
                    return;
                }
                let probe = self.store().upper(SLOTS[slot]);
                if !self.read_poisoned(&probe) {
                    self.check_lookup(slot, key, others, u64::from(*as_of));
                }
            }
            Op::Snapshot { slot } => {
                let slot = usize::from(*slot % 3);
                if self.model(slot).is_none() && !self.poisoned {
                    let r = self.store().snapshot(SLOTS[slot]).map(drop);
                    self.outcome(&r, "snapshot", false, matches!(self.slots[slot], Slot::Absent));
                }
                self.check_stream(slot, "on request");
                self.check_held("on request");
            }
            Op::Hold { slot } => {
                let slot = usize::from(*slot % 3);
                if self.poisoned || self.model(slot).is_none() {
                    return;
                }
                let snap = self.store().snapshot(SLOTS[slot]);
                if self.read_poisoned(&snap) {
                    return;
                }
                let snap = snap.expect("snapshot to hold");
                let read = snap.to_vec().expect("reading a snapshot to hold");
                self.held.push((snap, read));
                if self.held.len() > MAX_HELD {
                    self.held.remove(0);
                }
            }
            Op::Fault(f) => self.arm(*f),
            Op::Heal => self.heal(),
            Op::Reopen { fault } => self.reopen(*fault),
        }
    }
}
