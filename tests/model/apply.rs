//! `Harness::apply`: one operation on the store and on the model, with the checks it calls for.

use super::{consolidate, Harness, StreamModel};
use crate::model::Op;
use ddpersist::batch::batch_file_name;
use ddpersist::{Error, OwnedUpdate, StreamOptions, FRONTIER_CLOSED};
use std::collections::BTreeSet;

const UNKNOWN: &str = "no-such-stream";

impl Harness {
    pub(super) fn apply(&mut self, op: &Op) {
        match op {
            Op::Write { stream, updates } => {
                let i = self.stream(*stream);
                let upper = self.models[i].upper;
                let owned: Vec<OwnedUpdate> = updates
                    .iter()
                    .map(|(k, v, off, d)| (k.clone(), v.clone(), upper + off, *d))
                    .collect();
                self.store()
                    .write_bytes(
                        self.models[i].id,
                        owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)),
                    )
                    .unwrap();
                self.models[i].updates.extend(owned);
            }
            Op::WriteBelow {
                stream,
                updates,
                bad_at,
                below,
                diff,
            } => {
                let i = self.stream(*stream);
                let upper = self.models[i].upper;
                let mut owned: Vec<OwnedUpdate> = updates
                    .iter()
                    .map(|(k, v, off, d)| (k.clone(), v.clone(), upper + off, *d))
                    .collect();
                let bad_time = if upper == 0 {
                    FRONTIER_CLOSED
                } else {
                    upper - 1 - below.min(&(upper - 1))
                };
                owned.insert(
                    *bad_at.min(&owned.len()),
                    (b"a".to_vec(), b"b".to_vec(), bad_time, *diff),
                );
                let id = self.models[i].id;
                let r = self
                    .store()
                    .write_bytes(id, owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)));
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write at {bad_time} below {upper}: {r:?}"
                );
                self.check_stream(i, "after a refused write");
            }
            Op::WriteClosed { stream, diff } => {
                let i = self.stream(*stream);
                let id = self.models[i].id;
                let r = self.store().write(id, &[(1u8, 2u8, FRONTIER_CLOSED, *diff)]);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write at FRONTIER_CLOSED: {r:?}"
                );
                self.check_stream(i, "after a refused write at the closed frontier");
            }
            Op::Seal { stream, by } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let (lower, upper) = (m.upper, m.upper + by);
                let interval = consolidate(m.between(lower, upper));
                let info = self.store().seal(m.id, upper).unwrap();
                let d = info.description;
                assert_eq!(
                    (d.lower, d.upper, d.since),
                    (lower, upper, 0),
                    "{}: sealed description",
                    m.id
                );
                assert_eq!(info.update_count, interval.len() as u64, "{}: sealed count", m.id);
                assert_eq!(
                    info.file.is_some(),
                    !interval.is_empty(),
                    "{}: file iff updates",
                    m.id
                );
                assert_eq!(
                    info.batch.is_some(),
                    !interval.is_empty(),
                    "{}: batch iff updates",
                    m.id
                );
                self.models[i].upper = upper;
            }
            Op::SealStale { stream, back } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let to = m.upper.saturating_sub(*back);
                let r = self.store().seal(m.id, to);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "seal of {} to {to}: {r:?}",
                    m.id
                );
                self.check_stream(i, "after a refused seal");
            }
            Op::Compact { stream } => {
                let i = self.stream(*stream);
                self.store().compact(self.models[i].id).unwrap();
                self.check_stream(i, "after compact");
            }
            Op::AllowCompaction { stream, by } => {
                let i = self.stream(*stream);
                let since = self.models[i].since + by;
                self.store().allow_compaction(self.models[i].id, since).unwrap();
                self.models[i].since = since;
            }
            Op::AllowCompactionBack { stream } => {
                let i = self.stream(*stream);
                let m = &self.models[i];
                let to = m.since.checked_sub(1).unwrap_or(FRONTIER_CLOSED);
                let r = self.store().allow_compaction(m.id, to);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "since of {} to {to}: {r:?}",
                    m.id
                );
                self.check_stream(i, "after a refused allow_compaction");
            }
            Op::Lookup {
                stream,
                key,
                others,
                as_of,
            } => self.lookup(self.stream(*stream), key, others, *as_of),
            Op::Unknown { which } => {
                let store = self.store();
                let unknown = |r: Result<(), Error>, what: &str| {
                    assert!(
                        matches!(r, Err(Error::UnknownStream { .. })),
                        "{what} on unknown stream: {r:?}"
                    );
                };
                match which {
                    0 => unknown(store.write(UNKNOWN, &[(1u8, 2u8, 3, 1)]), "write"),
                    1 => unknown(store.write::<u8, u8>(UNKNOWN, &[]), "empty write"),
                    2 => unknown(store.seal(UNKNOWN, 5).map(drop), "seal"),
                    3 => {
                        unknown(store.snapshot(UNKNOWN).map(drop), "snapshot");
                        unknown(store.sealed(UNKNOWN).map(drop), "sealed");
                        unknown(store.allow_compaction(UNKNOWN, 1), "allow_compaction");
                    }
                    _ => {
                        unknown(store.upper(UNKNOWN).map(drop), "upper");
                        unknown(store.since(UNKNOWN).map(drop), "since");
                        unknown(store.unsealed_len(UNKNOWN).map(drop), "unsealed_len");
                        unknown(store.get_bytes(UNKNOWN, b"a", 1).map(drop), "get_bytes");
                        unknown(
                            store.first_time_bytes(UNKNOWN, b"a").map(drop),
                            "first_time_bytes",
                        );
                    }
                }
                assert!(!store.has_stream(UNKNOWN));
                self.check_all("after an operation on an unknown stream");
            }
            Op::CreateDuplicate { stream } => {
                let i = self.stream(*stream);
                let r = self
                    .store()
                    .create_stream(self.models[i].id, StreamOptions { durable: true });
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "duplicate create: {r:?}"
                );
                self.check_all("after a refused create");
            }
            Op::Snapshot { stream } => {
                let i = self.stream(*stream);
                self.check_stream(i, "on request");
            }
            Op::Hold { stream } => {
                let i = self.stream(*stream);
                let snap = self.store().snapshot(self.models[i].id).unwrap();
                let read = snap.to_vec().unwrap();
                self.held.push((snap, read));
                if self.held.len() > 4 {
                    self.held.remove(0);
                }
            }
            Op::Reopen => {
                // A stream that is not durable loses its spilled runs too: their files become orphans.
                let volatile_runs: BTreeSet<String> = self
                    .store()
                    .manifest()
                    .streams
                    .iter()
                    .filter(|s| !s.durable)
                    .flat_map(|s| s.spills.iter().map(|b| batch_file_name(b.file_no)))
                    .collect();
                drop(self.store.take());
                let store = self.open();
                for i in 0..self.models.len() {
                    if !self.survives(&self.models[i]) {
                        let m = &mut self.models[i];
                        let upper = m.upper;
                        m.updates.retain(|u| u.2 < upper);
                    }
                }
                let report = store.recovery_report().clone();
                // Replay puts back the unsealed updates of durable streams, except those in WAL records a
                // spill made redundant.
                let manifest = store.manifest();
                let spilled = |m: &StreamModel| manifest.stream(m.id).is_some_and(|s| s.spilled_lsn > 0);
                let (mut exact, mut at_most) = (0, 0);
                for m in self.models.iter().filter(|m| self.survives(m)) {
                    if spilled(m) {
                        at_most += m.unsealed_raw_count() as u64;
                    } else {
                        exact += m.unsealed_raw_count() as u64;
                    }
                }
                assert!(!report.created);
                let replayed = report.updates_replayed;
                assert!(
                    exact <= replayed && replayed <= exact + at_most,
                    "updates replayed: {report:?}"
                );
                assert_eq!(report.torn_tail, None);
                // Orphans: never a file the manifest names; with inline merges, only merged-away batches
                // that held snapshots kept alive.
                let named: BTreeSet<String> = store.manifest().file_nos().map(batch_file_name).collect();
                let held = self.held_batch_names();
                for orphan in &report.orphans_removed {
                    assert!(
                        !named.contains(orphan),
                        "removed {orphan}, which the manifest names"
                    );
                    let expected = held.contains(orphan) || volatile_runs.contains(orphan);
                    assert!(
                        self.background || expected,
                        "unexpected orphan {orphan}: {report:?}"
                    );
                }
                self.store = Some(store);
                self.check_all("after reopen");
            }
        }
    }
}
