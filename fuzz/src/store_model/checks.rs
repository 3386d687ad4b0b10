//! Checks of the store against the model while it works: streams, held snapshots, lookups.

use super::*;

impl Harness {
    /// The stream in `slot` against the model, unless the store is poisoned: snapshot contents (advanced
    /// to the since once it moved), upper, since, each batch's contents, spilled runs' time ranges.
    pub(super) fn check_stream(&mut self, slot: usize, when: &str) {
        if self.poisoned {
            return;
        }
        let id = SLOTS[slot];
        if self.model(slot).is_none() {
            if matches!(self.slots[slot], Slot::Absent) {
                assert!(
                    !self.store().has_stream(id),
                    "{id}: exists, never created ({when})"
                );
            }
            return;
        };
        let snap = self.store().snapshot(id);
        if self.read_poisoned(&snap) {
            return;
        }
        let m = self.model(slot).expect("exists");
        let store = self.store();
        let snap = snap.unwrap_or_else(|e| panic!("{id}: snapshot {when}: {e:?}"));
        let got = snap
            .to_vec()
            .unwrap_or_else(|e| panic!("{id}: reading the snapshot {when}: {e:?}"));
        if m.since == 0 {
            assert_eq!(got, consolidate(m.updates()), "{id}: snapshot {when}");
        } else {
            assert_eq!(
                advance(&got, m.since),
                advance(m.updates(), m.since),
                "{id}: snapshot advanced to {} {when}",
                m.since
            );
        }
        assert_eq!(snap.upper(), m.upper, "{id}: snapshot upper {when}");
        assert_eq!(store.upper(id).ok(), Some(m.upper), "{id}: upper {when}");
        assert_eq!(store.since(id).ok(), Some(m.since), "{id}: since {when}");
        let mut covered_to = 0;
        for b in snap.batches() {
            b.verify()
                .unwrap_or_else(|e| panic!("{id}: batch {}: {e:?}", b.name()));
            let d = b.description();
            assert!(
                covered_to <= d.lower && d.lower < d.upper && d.upper <= m.upper && d.since <= m.since,
                "{id}: batch {d:?} (upper {}, since {}) {when}",
                m.upper,
                m.since
            );
            assert_eq!(
                advance(m.between(covered_to, d.lower), m.since),
                vec![],
                "{id}: updates in [{covered_to}, {}) lost {when}",
                d.lower
            );
            covered_to = d.upper;
            let mut content = Vec::new();
            let mut c = UpdateCursor::new(b).unwrap_or_else(|e| panic!("{id}: cursor: {e:?}"));
            while let Some((k, v, t, diff)) = c.get() {
                content.push((k.to_vec(), v.to_vec(), t, diff));
                c.step().unwrap_or_else(|e| panic!("{id}: cursor step: {e:?}"));
            }
            assert_eq!(
                content,
                advance(m.between(d.lower, d.upper), d.since),
                "{id}: batch {d:?} {when}"
            );
        }
        for r in snap.spills() {
            let d = r.description();
            assert!(
                m.upper <= d.lower && d.lower <= d.upper,
                "{id}: spilled run {d:?} {when}"
            );
        }
        if !snap.spills().is_empty() {
            self.stats.spilled_checks += 1;
        }
    }

    /// Whether a read failed because the store is poisoned, by a failure inside a call that returned `Ok`
    /// (a write's spill whose manifest commit failed): allowed once a fault fired.
    pub(super) fn read_poisoned<T>(&mut self, r: &ddpersist::Result<T>) -> bool {
        self.note_fired();
        if let Err(e @ Error::Poisoned { .. }) = r {
            assert!(
                self.faulted,
                "a read found the store poisoned, no fault fired: {e:?}"
            );
            self.probe_poisoned();
            return true;
        }
        false
    }

    pub(super) fn check_held(&self, when: &str) {
        for (n, (snap, expected)) in self.held.iter().enumerate() {
            let now = snap
                .to_vec()
                .unwrap_or_else(|e| panic!("held snapshot {n}: {e:?}"));
            assert_eq!(&now, expected, "held snapshot {n} changed ({when})");
        }
    }

    pub(super) fn check_all(&mut self, when: &str) {
        for slot in 0..SLOTS.len() {
            self.check_stream(slot, when);
        }
        self.check_held(when);
        // Background failures (a write's spill, a merge) come only from injected faults.
        self.note_fired();
        if !self.faulted {
            let e = self.store().background_error();
            assert_eq!(e, None, "background error with no fault fired ({when})");
        }
    }

    /// `get_bytes`, `get_many_bytes` and `first_time_bytes` against the model (as `tests/model.rs`).
    pub(super) fn check_lookup(&self, slot: usize, key: &[u8], others: &[Vec<u8>], as_of: u64) {
        let m = self.model(slot).expect("lookup of an existing stream");
        let id = SLOTS[slot];
        let store = self.store();
        let as_of = m.since.saturating_add(as_of);
        let expect = |key: &[u8]| -> Vec<(Vec<u8>, i64)> {
            let mut vals: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (k, v, t, d) in m.updates() {
                if k == key && *t <= as_of {
                    *vals.entry(v.clone()).or_default() += d;
                }
            }
            vals.into_iter().filter(|(_, d)| *d != 0).collect()
        };
        let got = store
            .get_bytes(id, key, as_of)
            .unwrap_or_else(|e| panic!("{id}: get: {e:?}"));
        assert_eq!(got, expect(key), "{id}: get {key:?} as of {as_of}");
        let keys: Vec<&[u8]> = std::iter::once(key)
            .chain(others.iter().map(|k| &k[..]))
            .collect();
        let many = store
            .get_many_bytes(id, &keys, as_of)
            .unwrap_or_else(|e| panic!("{id}: get_many: {e:?}"));
        let expected: Vec<_> = keys.iter().map(|k| expect(k)).collect();
        assert_eq!(many, expected, "{id}: get_many {keys:?} as of {as_of}");
        let first = store
            .first_time_bytes(id, key)
            .unwrap_or_else(|e| panic!("{id}: first_time: {e:?}"));
        let raw_first = m.updates().filter(|u| u.0 == key && u.3 != 0).map(|u| u.2).min();
        let held_first = advance(m.updates(), m.since)
            .into_iter()
            .filter(|u| u.0 == key)
            .map(|u| u.2)
            .min();
        if let Some(f) = first {
            assert!(
                raw_first.is_some_and(|r| r <= f),
                "{id}: first time {f} of {key:?} before any write"
            );
        }
        if let Some(h) = held_first {
            assert!(
                first.is_some_and(|f| f <= h),
                "{id}: first time {first:?} of {key:?}, held at {h}"
            );
        }
    }
}
