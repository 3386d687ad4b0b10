//! Writers on several threads, seals interleaved, one store.

use crate::common;

use common::Model;
use ddpersist::{Store, StreamOptions};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[test]
fn concurrent_writers_and_sealer_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.create_stream("shared", StreamOptions::default()).unwrap();
    // Writers write at times at or beyond `floor`; the sealer seals below it.
    let floor = Arc::new(AtomicU64::new(0));
    let threads = 4u64;
    let per_thread = 300u64;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, floor) = (store.clone(), floor.clone());
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                for i in 0..per_thread {
                    let key = (t * per_thread + i).to_be_bytes();
                    loop {
                        let time = floor.load(Ordering::SeqCst) + 2;
                        match store.write_bytes("shared", [(&key[..], &b"v"[..], time, 1)]) {
                            Ok(()) => {
                                mine.push((key.to_vec(), time));
                                break;
                            }
                            // The sealer overtook us between reading the floor and writing: retry.
                            Err(ddpersist::Error::BadInput { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
                mine
            })
        })
        .collect();
    let sealer = {
        let (store, floor) = (store.clone(), floor.clone());
        std::thread::spawn(move || {
            for upper in 1..=40u64 {
                floor.store(upper, Ordering::SeqCst);
                store.seal("shared", upper).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let mut model = Model::default();
    for h in handles {
        for (key, time) in h.join().unwrap() {
            model.write(&key, b"v", time, 1);
        }
    }
    sealer.join().unwrap();
    assert_eq!(
        store.snapshot("shared").unwrap().to_vec().unwrap(),
        model.expected()
    );
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    let got = store.snapshot("shared").unwrap().to_vec().unwrap();
    assert_eq!(got.len(), (threads * per_thread) as usize);
    assert_eq!(got, model.expected());
}

/// Holds the `create` of batch files by threads named `seal-a` while closed (or fails them while
/// `fail` is set), and counts the calls it held.
#[derive(Default)]
struct SealGate {
    closed: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
    fail: AtomicU64,
    held: AtomicU64,
}

impl SealGate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock() = closed;
        self.opened.notify_all();
    }

    fn enter(&self, name: &str) -> ddpersist::Result<()> {
        if !name.ends_with(".batch") || std::thread::current().name() != Some("seal-a") {
            return Ok(());
        }
        let mut closed = self.closed.lock();
        self.held.fetch_add(1, Ordering::SeqCst);
        while *closed {
            self.opened.wait(&mut closed);
        }
        if self.fail.load(Ordering::SeqCst) == 1 {
            return Err(ddpersist::Error::Io {
                context: "create".into(),
                source: std::io::Error::other("injected failure"),
            });
        }
        Ok(())
    }
}

/// A store over a [`common::HookBlob`] gated by `gate`, with streams `a` to `d` and an update of `a` at
/// time 0; merges inline, so that every manifest commit is a seal's.
fn gated_store(gate: &Arc<SealGate>) -> (Arc<common::HookBlob>, Arc<ddpersist::wal::MemLog>, Store) {
    let hooked = gate.clone();
    let blob = Arc::new(common::HookBlob::new(move |name| hooked.enter(name)));
    let log = Arc::new(ddpersist::wal::MemLog::new());
    let options = ddpersist::Options {
        compaction_threads: 0,
        ..ddpersist::Options::default()
    };
    let store = Store::open_on(blob.clone(), log.clone(), options).unwrap();
    for id in ["a", "b", "c", "d"] {
        store.create_stream(id, StreamOptions::default()).unwrap();
    }
    store.write_bytes("a", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
    (blob, log, store)
}

/// Starts the seal of `a` at 1 on a thread named `seal-a` and waits until it holds `edit_lock`, inside
/// the gated `create` of its batch file.
fn seal_a_held(
    store: &Store,
    gate: &SealGate,
) -> std::thread::JoinHandle<ddpersist::Result<ddpersist::SealInfo>> {
    gate.set_closed(true);
    let store = store.clone();
    let sealer = std::thread::Builder::new()
        .name("seal-a".into())
        .spawn(move || store.seal("a", 1))
        .unwrap();
    while gate.held.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    sealer
}

/// Seals `id` at `upper` on a thread of its own and waits until the seal is queued as a rider (its upper
/// refuses writes below it: a write of a zero diff at time 0, which changes nothing otherwise).
fn queued_rider(
    store: &Store,
    id: &'static str,
    upper: u64,
) -> std::thread::JoinHandle<ddpersist::Result<ddpersist::SealInfo>> {
    let sealer = {
        let store = store.clone();
        std::thread::spawn(move || store.seal(id, upper))
    };
    while store.write_bytes(id, [(&b"k"[..], &b"v"[..], 0, 0)]).is_ok() {
        std::thread::yield_now();
    }
    sealer
}

#[test]
fn seals_with_nothing_to_write_ride_on_the_commit_in_flight() {
    let gate = Arc::new(SealGate::default());
    let (blob, log, store) = gated_store(&gate);
    let generation = store.manifest().generation;
    let sealer = seal_a_held(&store, &gate);
    let riders: Vec<_> = [("b", 5), ("c", 6), ("d", 7)]
        .into_iter()
        .map(|(id, upper)| queued_rider(&store, id, upper))
        .collect();
    // A seal of `b` with an update at 8, queued behind them: not a rider (it has a batch to write); it
    // plans after the riders' commit is published, so it starts at 5. (A seal planned while a rider of
    // its stream is still queued starts at the rider's upper: `store/ride.rs`'s unit tests.)
    store.write_bytes("b", [(&b"k"[..], &b"v"[..], 8, 1)]).unwrap();
    let with_data = {
        let store = store.clone();
        std::thread::spawn(move || store.seal("b", 9))
    };
    gate.set_closed(false);
    assert_eq!(sealer.join().unwrap().unwrap().update_count, 1);
    for rider in riders {
        let info = rider.join().unwrap().unwrap();
        assert_eq!(
            (info.description.lower, info.update_count, info.file),
            (0, 0, None)
        );
    }
    let info = with_data.join().unwrap().unwrap();
    assert_eq!((info.description.lower, info.description.upper), (5, 9));
    // `a`'s commit carried the three riders; the seal of `b` at 9 made its own.
    assert_eq!(store.manifest().generation, generation + 2);
    let uppers = |store: &Store| ["a", "b", "c", "d"].map(|id| store.upper(id).unwrap());
    assert_eq!(uppers(&store), [1, 9, 6, 7]);
    drop(store);
    let store = Store::open_on(blob, log, ddpersist::Options::default()).unwrap();
    assert_eq!(uppers(&store), [1, 9, 6, 7]);
    assert_eq!(store.snapshot("a").unwrap().to_vec().unwrap().len(), 1);
    assert_eq!(store.snapshot("b").unwrap().to_vec().unwrap().len(), 1);
}

#[test]
fn riders_commit_on_their_own_when_the_edit_in_flight_fails() {
    let gate = Arc::new(SealGate::default());
    let (_blob, _log, store) = gated_store(&gate);
    let generation = store.manifest().generation;
    gate.fail.store(1, Ordering::SeqCst);
    let sealer = seal_a_held(&store, &gate);
    // A seal of `a` itself cannot ride while `a`'s flush is in progress: it waits, then seals after it.
    let same_stream = {
        let store = store.clone();
        std::thread::spawn(move || store.seal("a", 3))
    };
    let rider = queued_rider(&store, "b", 5);
    gate.set_closed(false);
    assert!(sealer.join().unwrap().is_err(), "the gated seal fails");
    assert_eq!(rider.join().unwrap().unwrap().description.upper, 5);
    // The failed seal committed nothing and put `b`'s rider back; the rider and the seal of `a` at 3 (its
    // update at 0 put back) committed, together (whichever took `edit_lock` first carried the rider) or
    // apart.
    let info = same_stream.join().unwrap().unwrap();
    assert_eq!((info.description.lower, info.update_count), (0, 1));
    let commits = store.manifest().generation - generation;
    assert!((1..=2).contains(&commits), "{commits} commits");
    assert_eq!([store.upper("a").unwrap(), store.upper("b").unwrap()], [3, 5]);
}

/// A durable log in memory that records how far it was synced (and keeps nothing).
#[derive(Default)]
struct SyncLog {
    next: AtomicU64,
    synced: AtomicU64,
}

impl ddpersist::wal::Log for SyncLog {
    fn replay(
        &self,
        _f: &mut dyn FnMut(ddpersist::wal::Lsn, &[u8]) -> ddpersist::Result<()>,
    ) -> ddpersist::Result<ddpersist::wal::ReplayReport> {
        Ok(Default::default())
    }
    fn append(&self, payload: &[u8]) -> ddpersist::Result<(u64, u64)> {
        let len = payload.len() as u64 + 1;
        let start = self.next.fetch_add(len, Ordering::SeqCst) + 1;
        Ok((start, start + len))
    }
    fn sync(&self, lsn: u64) -> ddpersist::Result<()> {
        self.synced.fetch_max(lsn, Ordering::SeqCst);
        Ok(())
    }
    fn release_before(&self, _lsn: u64) -> ddpersist::Result<()> {
        Ok(())
    }
    fn is_durable(&self) -> bool {
        true
    }
}

/// `write_bytes_unsynced`'s promise holds for a rider: a write made before any seal returns is durable
/// when it does, though the seal in flight synced the WAL before that write.
#[test]
fn a_rider_syncs_the_writes_before_it() {
    let gate = Arc::new(SealGate::default());
    let hooked = gate.clone();
    let blob = Arc::new(common::HookBlob::new(move |name| hooked.enter(name)));
    let log = Arc::new(SyncLog::default());
    let options = ddpersist::Options {
        compaction_threads: 0,
        ..ddpersist::Options::default()
    };
    let store = Store::open_on(blob, log.clone(), options).unwrap();
    for id in ["a", "b", "c"] {
        store.create_stream(id, StreamOptions::default()).unwrap();
    }
    store.write_bytes("a", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
    let sealer = seal_a_held(&store, &gate);
    // `a`'s seal synced the WAL before its batch's `create`, where it is held now.
    let ticket = store
        .write_bytes_unsynced("c", [(&b"k"[..], &b"v"[..], 10, 1)])
        .unwrap();
    let rider = queued_rider(&store, "b", 5);
    assert!(
        log.synced.load(Ordering::SeqCst) >= ticket.lsn(),
        "synced before it queued"
    );
    gate.set_closed(false);
    sealer.join().unwrap().unwrap();
    rider.join().unwrap().unwrap();
}
