//! Adversarial round 9: the `Store` API against a simple in-memory model, on a real directory, with the
//! calls the other model tests leave out: `append`, `seal_logged` + `complete_seals`, `seal_with` (since,
//! finished), `write_bytes_unsynced` + `sync`, `major_compact`, `drop_stream` and creating the id again
//! (with the other durability), spills under a tiny memtable budget and WAL bound, and reopens between
//! any two steps. Every answer at times at or beyond the since must equal the model's.

use crate::common;

use common::copy_dir;

use ddpersist::store::WriteTicket;
use ddpersist::{Error, Options, OwnedUpdate, SealOptions, Store, StreamOptions};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const IDS: [&str; 2] = ["s0", "s1/with/slashes"];

type Up = (Vec<u8>, Vec<u8>, u64, i64);

#[derive(Clone, Debug)]
enum Op {
    Write {
        s: usize,
        ups: Vec<Up>,
    },
    WriteUnsynced {
        s: usize,
        ups: Vec<Up>,
    },
    Sync,
    Seal {
        s: usize,
        by: u64,
    },
    SealWith {
        s: usize,
        by: u64,
        since_back: u64,
        finished: bool,
    },
    SealLogged {
        s: usize,
        by: u64,
    },
    CompleteSeals {
        s: usize,
    },
    Append {
        s: usize,
        by: u64,
        ups: Vec<Up>,
    },
    AllowCompaction {
        s: usize,
        by: u64,
    },
    Compact {
        s: usize,
    },
    MajorCompact {
        s: usize,
    },
    Check {
        s: usize,
        key: Vec<u8>,
        as_of: u64,
    },
    DropRecreate {
        s: usize,
        durable: bool,
    },
    Reopen,
    /// Copy the directory while the store is open (what a `kill -9` leaves: every byte written to a file)
    /// and open the copy: with no unsynced write outstanding, it must hold everything (only without
    /// background threads, so the copy is not torn by a merge meanwhile).
    CrashImage,
    /// Take a snapshot and keep it: it must read the same after every later step (merges retire the
    /// files it maps, drops remove the stream, reopens drop the store).
    Hold {
        s: usize,
    },
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', 0xff]), 0..3),
        1 => prop::collection::vec(prop::sample::select(vec![0u8, b'a', b'b', 0xff]), 20..90),
    ]
}

fn ups() -> impl Strategy<Value = Vec<Up>> {
    prop::collection::vec((bytes(), bytes(), 0u64..4, -2i64..=2), 0..6)
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0usize..2;
    prop_oneof![
        6 => (s.clone(), ups()).prop_map(|(s, ups)| Op::Write { s, ups }),
        3 => (s.clone(), ups()).prop_map(|(s, ups)| Op::WriteUnsynced { s, ups }),
        1 => Just(Op::Sync),
        3 => (s.clone(), 1u64..4).prop_map(|(s, by)| Op::Seal { s, by }),
        2 => (s.clone(), 0u64..4, 0u64..6, any::<bool>())
            .prop_map(|(s, by, since_back, finished)| Op::SealWith { s, by, since_back, finished }),
        3 => (s.clone(), 1u64..4).prop_map(|(s, by)| Op::SealLogged { s, by }),
        1 => s.clone().prop_map(|s| Op::CompleteSeals { s }),
        3 => (s.clone(), 1u64..4, ups()).prop_map(|(s, by, ups)| Op::Append { s, by, ups }),
        2 => (s.clone(), 0u64..5).prop_map(|(s, by)| Op::AllowCompaction { s, by }),
        1 => s.clone().prop_map(|s| Op::Compact { s }),
        1 => s.clone().prop_map(|s| Op::MajorCompact { s }),
        4 => (s.clone(), bytes(), 0u64..8).prop_map(|(s, key, as_of)| Op::Check { s, key, as_of }),
        1 => (s.clone(), any::<bool>()).prop_map(|(s, durable)| Op::DropRecreate { s, durable }),
        2 => Just(Op::Reopen),
        2 => Just(Op::CrashImage),
        2 => (0usize..2).prop_map(|s| Op::Hold { s }),
    ]
}

#[derive(Clone, Debug)]
struct Setup {
    threads: usize,
    tiny_budget: bool,
    flush_at_once: bool,
    space_amp: bool,
    small_wal: bool,
    /// Tiny blocks, lz4 from level 0, no key filter.
    odd_batches: bool,
    tight: bool,
    durable: [bool; 2],
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        0usize..2,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        (any::<bool>(), any::<bool>()),
        any::<[bool; 2]>(),
    )
        .prop_map(
            |(threads, tiny_budget, flush_at_once, space_amp, small_wal, (odd_batches, tight), durable)| {
                Setup {
                    threads,
                    tiny_budget,
                    flush_at_once,
                    space_amp,
                    small_wal,
                    odd_batches,
                    tight,
                    durable,
                }
            },
        )
}

fn options(s: &Setup) -> Options {
    Options {
        compaction_threads: s.threads,
        merge_fan_in: if s.tight { 8 } else { 2 },
        memtable_budget_bytes: if s.tiny_budget { 200 } else { 256 << 20 },
        logged_flush_bytes: if s.flush_at_once { 0 } else { 8 << 20 },
        logged_flush_delay: Duration::from_millis(5),
        max_space_amplification_percent: if s.space_amp { Some(0) } else { None },
        max_wal_bytes: if s.small_wal { Some(400) } else { Some(1 << 30) },
        wal_segment_bytes: if s.small_wal { 200 } else { 16 << 20 },
        block_target_bytes: if s.odd_batches {
            32
        } else {
            Options::default().block_target_bytes
        },
        compress_from_level: if s.odd_batches { Some(0) } else { None },
        filter_bits_per_key: if s.odd_batches {
            0
        } else {
            Options::default().filter_bits_per_key
        },
        // Back-pressure at 2 batches, tiers of 8: seals wait for merges, and run tail merges beside one.
        max_batches_per_stream: if s.tight { 2 } else { 64 },
        wal_zero_fill: s.tight,
        ..Options::default()
    }
}

#[derive(Clone, Debug)]
struct M {
    durable: bool,
    /// The upper of the newest seal (logged or not).
    upper: u64,
    since: u64,
    updates: Vec<Up>,
}

impl M {
    fn new(durable: bool) -> M {
        M {
            durable,
            upper: 0,
            since: 0,
            updates: Vec::new(),
        }
    }
}

/// Times advanced to `since`, consolidated, zeros dropped, sorted by (key, val, time).
fn advance(updates: &[Up], since: u64) -> Vec<Up> {
    let mut sums: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
    for (k, v, t, d) in updates {
        *sums.entry((k.clone(), v.clone(), (*t).max(since))).or_default() += d;
    }
    sums.into_iter()
        .filter(|(_, d)| *d != 0)
        .map(|((k, v, t), d)| (k, v, t, d))
        .collect()
}

struct H {
    dir: tempfile::TempDir,
    setup: Setup,
    store: Option<Store>,
    models: [M; 2],
    /// Every ticket not yet synced (a ticket of a non-durable stream does not cover earlier ones, and a
    /// clean close does not write pending records: `tests/adv9_unsynced_close.rs`).
    tickets: Vec<WriteTicket>,
    held: Vec<(ddpersist::Snapshot, Vec<OwnedUpdate>)>,
    log: Vec<String>,
}

impl H {
    fn open(dir: &Path, setup: &Setup) -> Store {
        Store::open_with(dir, options(setup)).unwrap()
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    fn check(&self, s: usize, what: &str) {
        let m = &self.models[s];
        let id = IDS[s];
        let store = self.store();
        assert_eq!(
            store.since(id).unwrap(),
            m.since,
            "{what}: since of {id}\n{:#?}",
            self.log
        );
        let up = store.upper(id).unwrap();
        assert!(
            up <= m.upper,
            "{what}: upper {up} of {id} past the newest seal {}",
            m.upper
        );
        let snapshot = store.snapshot(id).unwrap();
        // Every file the view holds passes the full structural check (order, consolidation, descriptions,
        // padding, the key filter).
        for file in snapshot.batches().iter().chain(snapshot.spills()) {
            file.verify_deep()
                .unwrap_or_else(|e| panic!("{what}: a file of {id} fails verify: {e}\nlog {:#?}", self.log));
        }
        let snap: Vec<OwnedUpdate> = snapshot.to_vec().unwrap();
        let got = advance(&snap, m.since);
        let want = advance(&m.updates, m.since);
        assert_eq!(
            got, want,
            "{what}: snapshot of {id} (since {})\nlog {:#?}",
            m.since, self.log
        );
    }

    fn lookups(&self, s: usize, key: &[u8], as_of_off: u64) {
        let m = &self.models[s];
        let id = IDS[s];
        let store = self.store();
        let as_of = m.since + as_of_off;
        let mut want: BTreeMap<Vec<u8>, i64> = BTreeMap::new();
        for (k, v, t, d) in &m.updates {
            if k == key && *t <= as_of {
                *want.entry(v.clone()).or_default() += d;
            }
        }
        want.retain(|_, d| *d != 0);
        let got: BTreeMap<Vec<u8>, i64> = store.get_bytes(id, key, as_of).unwrap().into_iter().collect();
        assert_eq!(
            got, want,
            "get {key:?} as of {as_of} in {id} (since {})\nlog {:#?}",
            m.since, self.log
        );
        let many = store.get_many_bytes(id, &[key, b"a", key], as_of).unwrap();
        assert_eq!(many.len(), 3);
        for i in [0, 2] {
            let got: BTreeMap<Vec<u8>, i64> = many[i].clone().into_iter().collect();
            assert_eq!(got, want, "get_many {key:?} (position {i}) as of {as_of} in {id}");
        }
        assert!(store.get_many_bytes(id, &[], as_of).unwrap().is_empty());
        // First time: times advanced to the since, consolidated per (val, time), least nonzero.
        let adv: Vec<Up> = advance(&m.updates, m.since);
        let want_first = adv.iter().filter(|u| u.0 == key).map(|u| u.2).min();
        let got_first = store.first_time_bytes(id, key).unwrap();
        assert_eq!(
            got_first, want_first,
            "first time of {key:?} in {id} (since {})\nlog {:#?}",
            m.since, self.log
        );
        if m.since > 0 {
            let r = store.get_bytes(id, key, m.since - 1);
            assert!(
                matches!(r, Err(Error::BadInput { .. })),
                "lookup below the since: {r:?}"
            );
        }
    }

    fn reopen(&mut self) {
        for t in std::mem::take(&mut self.tickets) {
            self.store().sync(t).unwrap();
        }
        self.store = None;
        let store = Self::open(self.dir.path(), &self.setup);
        self.store = Some(store);
        for m in &mut self.models {
            if !m.durable {
                let upper = m.upper;
                m.updates.retain(|u| u.2 < upper);
            }
        }
        for (s, id) in IDS.iter().enumerate() {
            assert_eq!(
                self.store().upper(id).unwrap(),
                self.models[s].upper,
                "upper after reopen of {id}"
            );
            self.check(s, "after reopen");
        }
    }

    fn apply(&mut self, op: &Op) {
        self.log.push(format!("{op:?}"));
        for (snap, then) in &self.held {
            assert_eq!(
                &snap.to_vec().unwrap(),
                then,
                "a held snapshot changed\nlog {:#?}",
                self.log
            );
        }
        match op {
            Op::Write { s, ups } | Op::WriteUnsynced { s, ups } => {
                let m = &self.models[*s];
                let owned: Vec<Up> = ups
                    .iter()
                    .map(|(k, v, o, d)| (k.clone(), v.clone(), m.upper + o, *d))
                    .collect();
                let it = owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d));
                if matches!(op, Op::Write { .. }) {
                    self.store().write_bytes(IDS[*s], it).unwrap();
                } else {
                    let t = self.store().write_bytes_unsynced(IDS[*s], it).unwrap();
                    self.tickets.push(t);
                }
                self.models[*s].updates.extend(owned);
            }
            Op::Sync => {
                for t in std::mem::take(&mut self.tickets) {
                    self.store().sync(t).unwrap();
                }
            }
            Op::Seal { s, by } => {
                let upper = self.models[*s].upper + by;
                self.store().seal(IDS[*s], upper).unwrap();
                self.models[*s].upper = upper;
                assert_eq!(self.store().upper(IDS[*s]).unwrap(), upper);
            }
            Op::SealWith {
                s,
                by,
                since_back,
                finished,
            } => {
                let upper = self.models[*s].upper + by;
                let since = upper.saturating_sub(*since_back);
                if *by == 0 && since <= self.models[*s].since {
                    return; // would change nothing (or only the flag, which the model does not track)
                }
                let options = SealOptions {
                    finished: *finished,
                    since: Some(since),
                };
                self.store().seal_with(IDS[*s], upper, options).unwrap();
                let m = &mut self.models[*s];
                m.upper = upper;
                m.since = m.since.max(since);
            }
            Op::SealLogged { s, by } => {
                let upper = self.models[*s].upper + by;
                self.store().seal_logged(IDS[*s], upper).unwrap();
                self.models[*s].upper = upper;
                // A write below the logged upper is refused.
                let r = self
                    .store()
                    .write_bytes(IDS[*s], [(&b"z"[..], &b"z"[..], upper - 1, 1)]);
                assert!(
                    matches!(r, Err(Error::BadInput { .. })),
                    "write below a logged seal: {r:?}"
                );
            }
            Op::CompleteSeals { s } => {
                self.store().complete_seals(IDS[*s]).unwrap();
                assert_eq!(
                    self.store().upper(IDS[*s]).unwrap(),
                    self.models[*s].upper,
                    "upper after complete_seals"
                );
            }
            Op::Append { s, by, ups } => {
                let lower = self.models[*s].upper;
                let upper = lower + by;
                let mut sums: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64> = BTreeMap::new();
                for (k, v, o, d) in ups {
                    *sums.entry((k.clone(), v.clone(), lower + o % by)).or_default() += d;
                }
                let owned: Vec<Up> = sums
                    .into_iter()
                    .filter(|(_, d)| *d != 0)
                    .map(|((k, v, t), d)| (k, v, t, d))
                    .collect();
                let info = self
                    .store()
                    .append_bytes(
                        IDS[*s],
                        owned.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)),
                        lower,
                        upper,
                    )
                    .unwrap();
                assert_eq!(
                    (info.description.lower, info.description.upper),
                    (lower, upper),
                    "append's description"
                );
                let m = &mut self.models[*s];
                m.updates.extend(owned);
                m.upper = upper;
                assert_eq!(self.store().upper(IDS[*s]).unwrap(), upper);
            }
            Op::AllowCompaction { s, by } => {
                let since = self.models[*s].since + by;
                self.store().allow_compaction(IDS[*s], since).unwrap();
                self.models[*s].since = since;
            }
            Op::Compact { s } => {
                self.store().compact(IDS[*s]).unwrap();
            }
            Op::MajorCompact { s } => {
                self.store().major_compact(IDS[*s]).unwrap();
                self.check(*s, "after major_compact");
            }
            Op::Check { s, key, as_of } => {
                self.check(*s, "check");
                self.lookups(*s, key, *as_of);
            }
            Op::DropRecreate { s, durable } => {
                self.store().drop_stream(IDS[*s]).unwrap();
                assert!(matches!(
                    self.store().upper(IDS[*s]),
                    Err(Error::UnknownStream { .. })
                ));
                self.store()
                    .create_stream(IDS[*s], StreamOptions { durable: *durable })
                    .unwrap();
                self.models[*s] = M::new(*durable);
                self.check(*s, "after drop and create");
            }
            Op::Reopen => self.reopen(),
            Op::Hold { s } => {
                let snap = self.store().snapshot(IDS[*s]).unwrap();
                let now = snap.to_vec().unwrap();
                self.held.push((snap, now));
                if self.held.len() > 4 {
                    self.held.remove(0);
                }
            }
            Op::CrashImage => {
                if self.setup.threads != 0 || !self.tickets.is_empty() {
                    return;
                }
                let image = tempfile::tempdir().unwrap();
                copy_dir(self.dir.path(), image.path());
                let _ = std::fs::remove_file(image.path().join("LOCK"));
                let crashed = Self::open(image.path(), &self.setup);
                for (m, &id) in self.models.iter().zip(IDS.iter()) {
                    assert_eq!(
                        crashed.upper(id).unwrap(),
                        m.upper,
                        "crash image: upper of {id}\nlog {:#?}",
                        self.log
                    );
                    assert_eq!(crashed.since(id).unwrap(), m.since, "crash image: since of {id}");
                    let mut kept = m.updates.clone();
                    if !m.durable {
                        kept.retain(|u| u.2 < m.upper);
                    }
                    let snap = crashed.snapshot(id).unwrap().to_vec().unwrap();
                    assert_eq!(
                        advance(&snap, m.since),
                        advance(&kept, m.since),
                        "crash image: snapshot of {id}\nlog {:#?}",
                        self.log
                    );
                }
            }
        }
    }
}

fn run(setup: Setup, ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let store = H::open(dir.path(), &setup);
    for (s, id) in IDS.iter().enumerate() {
        store
            .create_stream(
                id,
                StreamOptions {
                    durable: setup.durable[s],
                },
            )
            .unwrap();
    }
    let models = [M::new(setup.durable[0]), M::new(setup.durable[1])];
    let mut h = H {
        dir,
        setup,
        store: Some(store),
        models,
        tickets: Vec::new(),
        held: Vec::new(),
        log: Vec::new(),
    };
    for op in &ops {
        h.apply(op);
    }
    for s in 0..2 {
        h.check(s, "at the end");
    }
    h.reopen();
    for (s, id) in IDS.iter().enumerate() {
        h.store().complete_seals(id).unwrap();
        h.store().major_compact(id).unwrap();
        h.check(s, "at the end, compacted");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("ADV9_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48), max_shrink_iters: 400, ..ProptestConfig::default() })]

    #[test]
    fn store_api_matches_the_model(setup in setup(), ops in prop::collection::vec(op(), 1..std::env::var("ADV9_OPS").ok().and_then(|c| c.parse().ok()).unwrap_or(40usize))) {
        run(setup, ops);
    }
}
