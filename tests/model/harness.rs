//! The model test's harness: what each stream should hold, the store under test and how to reopen it,
//! and the checks of a store against the model. How each operation is applied: `apply.rs`.

use super::Op;
use ddpersist::batch::{batch_file_name, UpdateCursor};
use ddpersist::blob::MemBlob;
use ddpersist::wal::MemLog;
use ddpersist::{Options, OwnedUpdate, Snapshot, Store, StreamOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

/// `Harness::apply`.
#[path = "apply.rs"]
mod apply;

const STREAM_IDS: [&str; 3] = ["alpha", "beta", "gamma"];

/// Sums diffs of equal `(key, val, time)`, drops zeros, sorts by `(key, val, time)`.
fn consolidate<'a>(updates: impl IntoIterator<Item = &'a OwnedUpdate>) -> Vec<OwnedUpdate> {
    let mut sums: BTreeMap<(&[u8], &[u8], u64), i64> = BTreeMap::new();
    for (k, v, t, d) in updates {
        *sums.entry((k, v, *t)).or_default() += d;
    }
    sums.into_iter()
        .filter(|&(_, d)| d != 0)
        .map(|((k, v, t), d)| (k.to_vec(), v.to_vec(), t, d))
        .collect()
}

/// Times below `since` advanced to `since`, then consolidated.
fn advance<'a>(updates: impl IntoIterator<Item = &'a OwnedUpdate>, since: u64) -> Vec<OwnedUpdate> {
    let advanced: Vec<OwnedUpdate> = updates
        .into_iter()
        .map(|(k, v, t, d)| (k.clone(), v.clone(), (*t).max(since), *d))
        .collect();
    consolidate(&advanced)
}

/// What one stream should hold.
#[derive(Clone, Debug)]
struct StreamModel {
    id: &'static str,
    durable: bool,
    upper: u64,
    since: u64,
    /// Every update written and not lost to a reopen, zero diffs included.
    updates: Vec<OwnedUpdate>,
}

impl StreamModel {
    fn expected(&self) -> Vec<OwnedUpdate> {
        consolidate(&self.updates)
    }

    fn between(&self, lower: u64, upper: u64) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.updates.iter().filter(move |u| lower <= u.2 && u.2 < upper)
    }

    fn unsealed(&self) -> impl Iterator<Item = &OwnedUpdate> + '_ {
        self.between(self.upper, u64::MAX)
    }

    /// Updates the memtable holds: unsealed, zero diffs dropped on write, not consolidated.
    fn unsealed_raw_count(&self) -> usize {
        self.unsealed().filter(|u| u.3 != 0).count()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Backend {
    /// A directory store; `None` opens with `Store::open` (default options), `Some` with `Store::open_with`.
    Dir(Option<Options>),
    /// `MemBlob` + a fresh `MemLog` on every open.
    Mem(Options),
}

impl Backend {
    fn options(&self) -> Options {
        match self {
            Backend::Dir(o) => o.clone().unwrap_or_default(),
            Backend::Mem(o) => o.clone(),
        }
    }
}

/// The store under test, and what is needed to reopen it.
struct Harness {
    backend: Backend,
    /// Whether merges run on background threads (then the batch list changes behind our back).
    background: bool,
    /// Whether the memtable budget is small enough for writes to spill.
    may_spill: bool,
    _dir: Option<tempfile::TempDir>,
    path: Option<PathBuf>,
    blob: MemBlob,
    store: Option<Store>,
    models: Vec<StreamModel>,
    /// Snapshots taken earlier, with what they read then.
    held: Vec<(Snapshot, Vec<OwnedUpdate>)>,
}

fn base_name(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_string()
}

impl Harness {
    fn new(backend: Backend, durable: &[bool]) -> Self {
        let dir = matches!(backend, Backend::Dir(_)).then(|| tempfile::tempdir().unwrap());
        let path = dir.as_ref().map(|d| d.path().join("store"));
        let mut h = Harness {
            background: backend.options().compaction_threads > 0,
            may_spill: backend.options().memtable_budget_bytes < 1 << 20,
            backend,
            _dir: dir,
            path,
            blob: MemBlob::new(),
            store: None,
            models: Vec::new(),
            held: Vec::new(),
        };
        let store = h.open();
        assert!(store.recovery_report().created);
        for (&durable, id) in durable.iter().zip(STREAM_IDS) {
            store.create_stream(id, StreamOptions { durable }).unwrap();
            h.models.push(StreamModel {
                id,
                durable,
                upper: 0,
                since: 0,
                updates: Vec::new(),
            });
        }
        h.store = Some(store);
        h
    }

    fn open(&self) -> Store {
        match &self.backend {
            Backend::Dir(None) => Store::open(self.path.as_ref().unwrap()).unwrap(),
            Backend::Dir(Some(options)) => {
                Store::open_with(self.path.as_ref().unwrap(), options.clone()).unwrap()
            }
            Backend::Mem(options) => Store::open_on(
                Arc::new(self.blob.clone()),
                Arc::new(MemLog::new()),
                options.clone(),
            )
            .unwrap(),
        }
    }

    /// Whether unsealed writes to this stream survive a reopen.
    fn survives(&self, m: &StreamModel) -> bool {
        m.durable && matches!(self.backend, Backend::Dir(_))
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn stream(&self, i: usize) -> usize {
        i % self.models.len()
    }

    /// Names of the batch and run files the held snapshots keep alive (merged-away batches are deleted
    /// only when their last reader drops them).
    fn held_batch_names(&self) -> BTreeSet<String> {
        self.held
            .iter()
            .flat_map(|(s, _)| s.batches().iter().chain(s.spills()).map(|b| base_name(b.name())))
            .collect()
    }

    /// Full check of one stream: snapshot contents and metadata, each batch against the model, upper,
    /// since, unsealed counts, manifest.
    fn check_stream(&self, i: usize, when: &str) {
        let m = &self.models[i];
        let id = m.id;
        let store = self.store();
        let snap = store.snapshot(id).unwrap();
        let got = snap.to_vec().unwrap();
        if m.since == 0 {
            assert_eq!(got, m.expected(), "{id}: snapshot {when}");
        } else {
            assert_eq!(
                advance(&got, m.since),
                advance(&m.updates, m.since),
                "{id}: advanced snapshot {when}"
            );
        }
        assert_eq!(snap.upper(), m.upper, "{id}: snapshot upper {when}");
        // Every batch holds exactly the model's updates in its interval, advanced to its since; intervals
        // are ordered and disjoint, below the upper; what no batch covers consolidates to nothing.
        let mut covered_to = 0;
        let mut from_batches = Vec::new();
        for b in snap.batches() {
            b.verify().unwrap();
            let d = b.description();
            assert!(
                covered_to <= d.lower && d.lower < d.upper && d.upper <= m.upper,
                "{id}: batch {d:?} {when}"
            );
            assert!(
                d.since <= m.since,
                "{id}: batch {d:?} beyond the stream's since {}",
                m.since
            );
            let gap: Vec<OwnedUpdate> = m.between(covered_to, d.lower).cloned().collect();
            assert_eq!(
                advance(&gap, m.since),
                vec![],
                "{id}: updates in [{covered_to}, {}) lost",
                d.lower
            );
            covered_to = d.upper;
            let mut content = Vec::new();
            let mut c = UpdateCursor::new(b).unwrap();
            while let Some((k, v, t, diff)) = c.get() {
                content.push((k.to_vec(), v.to_vec(), t, diff));
                c.step().unwrap();
            }
            assert_eq!(
                content,
                advance(m.between(d.lower, d.upper), d.since),
                "{id}: batch {d:?} {when}"
            );
            from_batches.extend(content);
        }
        let gap: Vec<OwnedUpdate> = m.between(covered_to, m.upper).cloned().collect();
        assert_eq!(
            advance(&gap, m.since),
            vec![],
            "{id}: updates in [{covered_to}, {}) lost",
            m.upper
        );
        // Spilled runs hold unsealed updates as written (consolidated), at or beyond the upper.
        for r in snap.spills() {
            r.verify().unwrap();
            let d = r.description();
            assert!(
                m.upper <= d.lower && d.lower <= d.upper,
                "{id}: spilled run {d:?} {when}"
            );
            let mut c = UpdateCursor::new(r).unwrap();
            while let Some((.., t, _)) = c.get() {
                assert!(
                    d.lower <= t && t < d.upper,
                    "{id}: time {t} outside spilled run {d:?}"
                );
                c.step().unwrap();
            }
        }
        // The snapshot is the batches plus the unsealed updates, as they are.
        from_batches.extend(m.unsealed().cloned());
        assert_eq!(
            got,
            consolidate(&from_batches),
            "{id}: snapshot is not batches + memtable {when}"
        );
        // The memtable holds the unsealed updates not spilled (a spill that consolidates to nothing writes
        // no run, so only the budget tells whether one may have happened).
        let spilled = !snap.spills().is_empty() || self.may_spill;
        let unsealed = consolidate(m.unsealed());
        if !spilled {
            assert_eq!(
                snap.unsealed_len(),
                unsealed.len(),
                "{id}: snapshot unsealed {when}"
            );
        }
        assert_eq!(store.upper(id).unwrap(), m.upper, "{id}: upper {when}");
        assert_eq!(store.since(id).unwrap(), m.since, "{id}: since {when}");
        let sealed = store.sealed(id).unwrap();
        assert_eq!(
            (sealed.upper, sealed.since),
            (m.upper, m.since),
            "{id}: sealed() {when}"
        );
        let in_memory = store.unsealed_len(id).unwrap();
        if spilled {
            assert!(in_memory <= m.unsealed_raw_count(), "{id}: memtable {when}");
        } else {
            assert_eq!(in_memory, m.unsealed_raw_count(), "{id}: memtable {when}");
        }
        let manifest = store.manifest();
        let meta = manifest.stream(id).unwrap();
        assert_eq!(
            (meta.upper, meta.since, meta.durable),
            (m.upper, m.since, m.durable),
            "{id}: manifest"
        );
        if !self.background {
            assert_eq!(
                meta.batches.len(),
                snap.batches().len(),
                "{id}: manifest batches {when}"
            );
            assert_eq!(
                sealed.batches.len(),
                snap.batches().len(),
                "{id}: sealed() batches {when}"
            );
        }
    }

    fn check_all(&self, when: &str) {
        for i in 0..self.models.len() {
            self.check_stream(i, when);
        }
        for (n, (snap, expected)) in self.held.iter().enumerate() {
            assert_eq!(
                &snap.to_vec().unwrap(),
                expected,
                "held snapshot {n} changed ({when})"
            );
        }
        let store = self.store();
        assert_eq!(store.background_error(), None, "{when}");
        let ids: Vec<String> = self.models.iter().map(|m| m.id.to_string()).collect();
        assert_eq!(store.streams(), ids);
        // The blob holds every batch file the manifest names; with inline merges, nothing else but the
        // merged-away batches held snapshots still read. With background merges, the manifest is read before
        // and after listing the blob, and the check counts only if no commit came in between (a merge writes
        // its output before committing it, and deletes its inputs only after).
        let named = |m: &ddpersist::version::Manifest| -> BTreeSet<String> {
            m.file_nos().map(batch_file_name).collect()
        };
        for _ in 0..100 {
            let before = store.manifest();
            let present: BTreeSet<String> = store
                .blob()
                .list()
                .unwrap()
                .into_iter()
                .filter(|n| n.ends_with(".batch") || n.ends_with(".tmp"))
                .collect();
            if self.background && store.manifest().generation != before.generation {
                std::thread::sleep(std::time::Duration::from_millis(1));
                continue;
            }
            let named = named(&before);
            let missing: Vec<_> = named.difference(&present).collect();
            assert!(
                missing.is_empty(),
                "batch files named by the manifest are missing: {missing:?} ({when})"
            );
            if !self.background {
                let held = self.held_batch_names();
                let extra: Vec<_> = present
                    .difference(&named)
                    .filter(|n| !held.contains(*n))
                    .collect();
                assert!(extra.is_empty(), "blob {present:?}, manifest {named:?} ({when})");
            }
            break;
        }
    }

    /// `get_bytes`, `get_many_bytes` and `first_time_bytes` against the model.
    fn lookup(&self, i: usize, key: &[u8], others: &[Vec<u8>], as_of: u64) {
        let m = &self.models[i];
        let store = self.store();
        // As of a time at or beyond the since, advanced times read the same as the originals.
        let as_of = m.since + as_of;
        let expect = |key: &[u8]| -> Vec<(Vec<u8>, i64)> {
            let mut vals: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
            for (k, v, t, d) in &m.updates {
                if k == key && *t <= as_of {
                    *vals.entry(v.clone()).or_default() += d;
                }
            }
            vals.into_iter().filter(|(_, d)| *d != 0).collect()
        };
        let got = store.get_bytes(m.id, key, as_of).unwrap();
        assert_eq!(got, expect(key), "{}: get {key:?} as of {as_of}", m.id);
        let keys: Vec<&[u8]> = std::iter::once(key)
            .chain(others.iter().map(|k| &k[..]))
            .collect();
        let many = store.get_many_bytes(m.id, &keys, as_of).unwrap();
        let expected: Vec<_> = keys.iter().map(|k| expect(k)).collect();
        assert_eq!(many, expected, "{}: get_many {keys:?} as of {as_of}", m.id);
        // The first time: the first time the key has a nonzero update once everything is advanced to the
        // since and consolidated (what merges leave), whether or not merges ran.
        let first = store.first_time_bytes(m.id, key).unwrap();
        let held_first = advance(&m.updates, m.since)
            .into_iter()
            .filter(|u| u.0 == key)
            .map(|u| u.2)
            .min();
        assert_eq!(first, held_first, "{}: first time of {key:?}", m.id);
    }
}

pub(crate) fn run(backend: Backend, durable: &[bool], ops: &[Op]) {
    let mut h = Harness::new(backend, durable);
    for op in ops {
        h.apply(op);
    }
    h.check_all("at the end");
    // One last reopen: the final state must survive it too.
    h.apply(&Op::Reopen);
}
