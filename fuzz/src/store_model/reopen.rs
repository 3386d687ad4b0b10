//! Crash and reopen: what survived must be one of the states the model allows, which the model becomes.

use super::*;

impl Harness {
    /// Whether unsealed updates of `m` survive a reopen (when acknowledged).
    pub(super) fn keeps_unsealed(&self, m: &StreamModel) -> bool {
        m.durable && self.setup.durable_wal
    }

    pub(super) fn reopen(&mut self, fault: Option<Fault>) {
        self.note_fired();
        drop(self.store.take());
        self.stats.reopens += 1;
        let mut store = None;
        if let Some(f) = fault {
            self.faulted = false;
            self.armed = false;
            match self.try_open(Some(f)) {
                // The open's own merges (of batches a crash left unmerged) may fail and poison the store
                // it returns: such a store can only be dropped, as after a failed open.
                Ok(s) if matches!(s.upper(SLOTS[0]), Err(Error::Poisoned { .. })) => {
                    assert!(self.fired(), "open returned a poisoned store, no fault fired");
                    self.stats.failed_opens += 1;
                    self.note_fired();
                }
                Ok(s) => store = Some(s),
                Err(e) => {
                    assert!(
                        self.fired(),
                        "open under an armed fault that never fired failed: {e:?}"
                    );
                    assert!(
                        matches!(e, Error::Io { .. } | Error::Poisoned { .. }),
                        "open under an injected fault: unexpected error {e:?}"
                    );
                    self.stats.failed_opens += 1;
                    self.note_fired();
                }
            }
        }
        let store = match store {
            Some(s) => s,
            None => {
                let s = self.try_open(None);
                s.unwrap_or_else(|e| panic!("open after a crash (no fault armed) failed: {e:?}"))
            }
        };
        let report = store.recovery_report().clone();
        assert!(!report.created, "reopen created a new store");
        if let Some(torn) = &report.torn_tail {
            assert_eq!(
                torn.kind,
                CutKind::Unacknowledged,
                "torn tail at reopen: {report:?}"
            );
        }
        self.store = Some(store);
        self.epoch += 1;
        self.poisoned = false;
        // Faults fired before the crash do not excuse errors after it; one armed at the open does.
        self.faulted = self.fired();
        self.resolve();
        self.check_all("after reopen");
    }

    /// After a reopen: reads what the store holds, checks it is one of the states the model allows, and
    /// makes the model that state.
    pub(super) fn resolve(&mut self) {
        let store = self.store.clone().expect("open");
        // Streams whose creation is uncertain.
        for (slot, id) in SLOTS.iter().enumerate() {
            let exists = store.has_stream(id);
            match self.slots[slot].clone() {
                Slot::Absent => assert!(!exists, "{id}: exists after reopen, never created"),
                Slot::Exists(_) => assert!(exists, "{id}: lost by the reopen"),
                Slot::MaybeCreated { durable } => {
                    if exists {
                        self.stats.uncertain_applied += 1;
                        self.slots[slot] = Slot::Exists(StreamModel::new(durable));
                    } else {
                        self.stats.uncertain_not_applied += 1;
                        self.slots[slot] = Slot::Absent;
                    }
                }
            }
        }
        // Uppers and sinces: the model's, or an uncertain call's.
        let mut acked_by_seal: Option<u64> = None;
        for (slot, id) in SLOTS.iter().enumerate() {
            let Some(m) = self.model(slot) else { continue };
            let upper = store.upper(id).expect("upper after reopen");
            let since = store.since(id).expect("since after reopen");
            let (model_upper, model_since) = (m.upper, m.since);
            let mut upper_ok = upper == model_upper;
            let mut since_ok = since == model_since;
            for u in &self.uncertain {
                match *u {
                    Uncertain::Seal {
                        slot: s,
                        seq,
                        upper: to,
                    } if s == slot => {
                        if upper == to && !upper_ok {
                            upper_ok = true;
                            self.stats.uncertain_applied += 1;
                            acked_by_seal = Some(acked_by_seal.map_or(seq, |a: u64| a.max(seq)));
                        } else {
                            self.stats.uncertain_not_applied += 1;
                        }
                    }
                    Uncertain::Since { slot: s, since: to } if s == slot => {
                        if since == to && !since_ok {
                            since_ok = true;
                            self.stats.uncertain_applied += 1;
                        } else {
                            self.stats.uncertain_not_applied += 1;
                        }
                    }
                    _ => {}
                }
            }
            assert!(
                upper_ok,
                "{id}: upper {upper} after reopen; model {model_upper}, uncertain {:?}",
                self.uncertain
            );
            assert!(
                since_ok,
                "{id}: since {since} after reopen; model {model_since}, uncertain {:?}",
                self.uncertain
            );
            let m = self.model_mut(slot).expect("exists");
            m.upper = upper;
            m.since = since;
        }
        self.uncertain.clear();
        if let Some(seq) = acked_by_seal {
            // The seal synced the WAL before it committed.
            self.acknowledge_through(seq);
        }
        // Observed contents.
        let mut observed: Vec<Option<Vec<OwnedUpdate>>> = vec![None; SLOTS.len()];
        for (slot, seen) in observed.iter_mut().enumerate() {
            if self.model(slot).is_some() {
                let snap = store.snapshot(SLOTS[slot]).expect("snapshot after reopen");
                *seen = Some(snap.to_vec().expect("reading a snapshot after reopen"));
            }
        }
        // Unacknowledged writes of streams that keep unsealed updates: survivors are a prefix.
        let candidates: Vec<u64> = self
            .unacked
            .iter()
            .copied()
            .filter(|seq| {
                (0..SLOTS.len()).any(|s| {
                    self.model(s)
                        .is_some_and(|m| self.keeps_unsealed(m) && m.writes.iter().any(|w| w.0 == *seq))
                })
            })
            .collect();
        let expected_with = |h: &Harness, survivors: &BTreeSet<u64>, slot: usize| -> Vec<OwnedUpdate> {
            let m = h.model(slot).expect("exists");
            let keeps = h.keeps_unsealed(m);
            let kept: Vec<OwnedUpdate> = m
                .writes
                .iter()
                .filter(|(seq, _)| !h.unacked.contains(seq) || survivors.contains(seq))
                .flat_map(|(_, w)| w.iter())
                .filter(|u| u.2 < m.upper || keeps)
                .cloned()
                .collect();
            kept
        };
        let matches = |h: &Harness, survivors: &BTreeSet<u64>| -> bool {
            (0..SLOTS.len()).all(|slot| {
                let Some(seen) = &observed[slot] else { return true };
                let m = h.model(slot).expect("exists");
                let expected = expected_with(h, survivors, slot);
                advance(seen, m.since) == advance(&expected, m.since)
                    && (m.since > 0 || *seen == consolidate(&expected))
            })
        };
        let mut chosen = None;
        for j in (0..=candidates.len()).rev() {
            let survivors: BTreeSet<u64> = candidates[..j].iter().copied().collect();
            if matches(self, &survivors) {
                chosen = Some(survivors);
                break;
            }
        }
        let Some(survivors) = chosen else {
            let all: BTreeSet<u64> = candidates.iter().copied().collect();
            let detail: Vec<String> = (0..SLOTS.len())
                .filter(|&s| self.model(s).is_some())
                .map(|s| {
                    let m = self.model(s).expect("exists");
                    format!(
                        "{}: (durable {}, upper {}, since {}) observed {:?}\n  expected with every \
                         unacknowledged write {:?}\n  expected with none {:?}",
                        SLOTS[s],
                        m.durable,
                        m.upper,
                        m.since,
                        observed[s],
                        consolidate(&expected_with(self, &all, s)),
                        consolidate(&expected_with(self, &BTreeSet::new(), s)),
                    )
                })
                .collect();
            panic!(
                "contents after reopen match no allowed state (unacknowledged writes {candidates:?}):\n{}",
                detail.join("\n")
            );
        };
        self.stats.unacked_survived += survivors.len() as u64;
        self.stats.unacked_lost += (candidates.len() - survivors.len()) as u64;
        // The model becomes what survived.
        let unacked = std::mem::take(&mut self.unacked);
        let durable_wal = self.setup.durable_wal;
        for slot in &mut self.slots {
            if let Slot::Exists(m) = slot {
                let keeps = m.durable && durable_wal;
                let upper = m.upper;
                m.writes
                    .retain(|(seq, _)| !unacked.contains(seq) || survivors.contains(seq));
                for (_, w) in &mut m.writes {
                    w.retain(|u| u.2 < upper || keeps);
                }
                m.writes.retain(|(_, w)| !w.is_empty());
            }
        }
    }
}
