//! Property test of logical compaction: for every time t at or beyond the since, the collection
//! accumulated at t is the same as the model's, across any sequence of writes, seals, `allow_compaction`,
//! merges, restarts and crashes (a `FaultyBlob` failing every call from a random point on).

use crate::common;

use common::accumulate;
use ddpersist::blob::{FaultyBlob, MemBlob};
use ddpersist::wal::MemLog;
use ddpersist::{Options, OwnedUpdate, Store, StreamOptions};
use proptest::prelude::*;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Op {
    /// Updates at `upper + dt`: (key, val, dt, diff).
    Write(Vec<(u8, u8, u64, i64)>),
    /// Seal at `upper + by`.
    Seal(u64),
    /// Since moves to `since + (upper - since) * num / 4`.
    Allow(u64),
    Compact,
    Reopen,
    /// Seal at `upper + 1` and merge, failing every blob call after `ops` of them; then reopen.
    Crash(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0u8..6, 0u8..3, 0u64..4, -2i64..=2), 1..12).prop_map(Op::Write),
        3 => (1u64..4).prop_map(Op::Seal),
        2 => (0u64..=4).prop_map(Op::Allow),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => (0u64..40).prop_map(Op::Crash),
    ]
}

struct Harness {
    blob: FaultyBlob<MemBlob>,
    store: Option<Store>,
    /// Every update written whose fate is settled or pending: (key, val, time, diff).
    written: Vec<OwnedUpdate>,
}

impl Harness {
    fn open(blob: &FaultyBlob<MemBlob>) -> Store {
        // Small blocks and merges inline, so every seal exercises the merge path deterministically.
        let options = Options {
            compaction_threads: 0,
            block_target_bytes: 64,
            ..Options::default()
        };
        Store::open_on(Arc::new(blob.clone()), Arc::new(MemLog::new()), options).unwrap()
    }

    fn store(&self) -> &Store {
        self.store.as_ref().unwrap()
    }

    /// Unsealed updates of a non-durable stream die with the store.
    fn restart(&mut self) {
        self.store = None;
        self.blob.heal();
        let store = Self::open(&self.blob);
        let upper = store.upper("s").unwrap();
        self.written.retain(|u| u.2 < upper);
        self.store = Some(store);
    }

    fn apply(&mut self, op: &Op) {
        let (upper, since) = (self.store().upper("s").unwrap(), self.store().since("s").unwrap());
        match op {
            Op::Write(ups) => {
                let ups: Vec<OwnedUpdate> = ups
                    .iter()
                    .map(|&(k, v, dt, d)| (vec![k], vec![v], upper + dt, d))
                    .collect();
                self.store()
                    .write_bytes("s", ups.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
                    .unwrap();
                self.written.extend(ups);
            }
            Op::Seal(by) => {
                self.store().seal("s", upper + by).unwrap();
            }
            Op::Allow(num) => {
                let target = since + upper.saturating_sub(since) * num / 4;
                self.store().allow_compaction("s", target).unwrap();
            }
            Op::Compact => {
                self.store().compact("s").unwrap();
            }
            Op::Reopen => self.restart(),
            Op::Crash(ops) => {
                self.blob.fail_after(*ops);
                // Either may fail; the reopen below shows what survived.
                let _ = self.store().seal("s", upper + 1);
                let _ = self.store().compact("s");
                self.restart();
            }
        }
    }

    fn check(&self) {
        let store = self.store();
        let (upper, since) = (store.upper("s").unwrap(), store.since("s").unwrap());
        let got = store.snapshot("s").unwrap().to_vec().unwrap();
        for t in since..upper + 5 {
            assert_eq!(
                accumulate(&got, t),
                accumulate(&self.written, t),
                "accumulation at {t} (since {since})"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn accumulations_at_or_beyond_since_survive_merges_restarts_and_crashes(ops in prop::collection::vec(op(), 1..40)) {
        let blob = FaultyBlob::new(MemBlob::new());
        let store = Harness::open(&blob);
        store.create_stream("s", StreamOptions { durable: false }).unwrap();
        let mut h = Harness { blob, store: Some(store), written: Vec::new() };
        for op in &ops {
            h.apply(op);
            h.check();
        }
    }
}
