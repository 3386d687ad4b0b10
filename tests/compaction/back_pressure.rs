//! Back-pressure: a seal over `max_batches_per_stream` waits for background merges to bring the stream
//! under the bound, and never forever (not when no merge is due, and again after a merge failed); while a
//! background merge runs, a seal at the bound merges the newest batches itself (a tail merge), and both
//! merges' commits keep every update in either order.

use crate::common;

use common::Model;
use ddpersist::blob::MemBlob;
use ddpersist::wal::MemLog;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::sync::Arc;

/// Regression: with background merges, `seal` waits while the stream has more than
/// `max_batches_per_stream` batches "until background merges bring it under" (`Store::wait_for_merges`).
/// When no merge was due under the size-tiered policy (batch levels strictly decreasing, e.g. batches of
/// 8, 4 and 2 updates with a bound of 2), no merge ever ran and the seal waited forever.
#[test]
fn back_pressure_with_no_merge_due_does_not_block_seal_forever() {
    let options = Options {
        compaction_threads: 1,
        max_batches_per_stream: 2,
        ..Options::default()
    };
    let store = Store::open_on(Arc::new(MemBlob::new()), Arc::new(MemLog::new()), options).unwrap();
    store
        .create_stream("s", StreamOptions { durable: false })
        .unwrap();
    for (t, n) in [8u64, 4, 2, 1].into_iter().enumerate() {
        let t = t as u64;
        let updates: Vec<(u64, u64, u64, i64)> = (0..n).map(|k| (k, 0, t, 1)).collect();
        store.write("s", &updates).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        // The thread is leaked if the seal hangs: the test fails either way.
        std::thread::spawn(move || {
            let _ = tx.send(s.seal("s", t + 1).map(|i| i.update_count));
        });
        let sealed = rx.recv_timeout(std::time::Duration::from_secs(10));
        let counts: Vec<u64> = store
            .sealed("s")
            .unwrap()
            .batches
            .iter()
            .map(|b| b.update_count())
            .collect();
        assert!(
            matches!(sealed, Ok(Ok(c)) if c == n),
            "seal {} did not return within 10 s (batches {counts:?}): {sealed:?}",
            t + 1
        );
    }
}

/// What a [`common::HookBlob`] does to `create` calls on background merge threads: fail while `fail` is
/// set, wait while the gate is closed; seals (on the caller's thread) pass straight through.
#[derive(Default)]
struct MergeGate {
    fail: std::sync::atomic::AtomicBool,
    closed: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
    /// Background `create` calls that found the gate closed.
    held: std::sync::atomic::AtomicUsize,
}

impl MergeGate {
    fn set_closed(&self, closed: bool) {
        *self.closed.lock() = closed;
        self.opened.notify_all();
    }

    fn enter(&self) -> ddpersist::Result<()> {
        let thread = std::thread::current();
        let background = thread
            .name()
            .is_some_and(|n| n.starts_with("ddpersist-compact") || n.starts_with("ddpersist-batch-io"));
        if background {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Io {
                    context: "create".into(),
                    source: std::io::Error::other("injected merge failure"),
                });
            }
            let mut closed = self.closed.lock();
            if *closed {
                self.held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            while *closed {
                self.opened.wait(&mut closed);
            }
        }
        Ok(())
    }
}

#[test]
fn back_pressure_holds_again_after_a_merge_failure() {
    let gate = Arc::new(MergeGate::default());
    let hooked = gate.clone();
    let blob = Arc::new(common::HookBlob::new(move |_| hooked.enter()));
    let options = Options {
        compaction_threads: 1,
        max_batches_per_stream: 2,
        ..Options::default()
    };
    let store = Store::open_on(blob, Arc::new(MemLog::new()), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let batches = |store: &Store| store.manifest().stream("s").unwrap().batches.len();
    let seal_one = |store: &Store| {
        let t = store.upper("s").unwrap();
        store.write_bytes("s", [(&b"k"[..], &b"v"[..], t, 1)]).unwrap();
        store.seal("s", t + 1).unwrap();
    };
    // 1. A merge fails.
    gate.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..500 {
        if store.background_error().is_some() {
            break;
        }
        seal_one(&store);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(store.background_error().is_some(), "no merge failed");
    // 2. Merges work again and catch up.
    gate.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    seal_one(&store);
    for _ in 0..1000 {
        if batches(&store) <= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        batches(&store) <= 2,
        "merges did not catch up: {}",
        batches(&store)
    );
    // 3. Merges stall: seals past the bound must wait for them instead of piling batches up. (With a bound
    // of 2 the held merge takes the newest two batches or all but one, so no tail merge can run beside it
    // and the seal waits: `a_seal_at_the_bound_merges_the_newest_batches_beside_a_running_merge`.)
    gate.set_closed(true);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sealer = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            for _ in 0..6 {
                seal_one(&store);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let (n, sealed) = (batches(&store), done.load(std::sync::atomic::Ordering::SeqCst));
    gate.set_closed(false);
    sealer.join().unwrap();
    assert!(
        n <= 3 && sealed < 6,
        "no back-pressure after a merge failure: {n} batches, {sealed} seals done"
    );
}

/// The back-pressure bound of the tail-merge tests.
const TAIL_BOUND: usize = 4;

/// A store whose one merge thread is held in a merge (at its output's `create`, by `gate`), its stream
/// "s" sealed one update at a time, and the model of what was sealed.
struct HeldMerge {
    store: Store,
    gate: Arc<MergeGate>,
    model: Arc<parking_lot::Mutex<Model>>,
    /// The number of the next seal (`seal_one`'s `i`).
    next: u64,
}

impl HeldMerge {
    /// Opens the store (bound `TAIL_BOUND`, fan-in 2, one merge thread) over a blob whose `create` first
    /// calls `hook`, then seals until a background merge is held.
    fn start(hook: impl Fn() + Send + Sync + 'static) -> HeldMerge {
        let gate = Arc::new(MergeGate::default());
        let hooked = gate.clone();
        let blob = Arc::new(common::HookBlob::new(move |_| {
            hook();
            hooked.enter()
        }));
        let options = Options {
            compaction_threads: 1,
            max_batches_per_stream: TAIL_BOUND,
            merge_fan_in: 2,
            ..Options::default()
        };
        let store = Store::open_on(blob, Arc::new(MemLog::new()), options).unwrap();
        store.create_stream("s", StreamOptions::default()).unwrap();
        let model = Arc::new(parking_lot::Mutex::new(Model::default()));
        gate.set_closed(true);
        let mut next = 0;
        while gate.held.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(next < 1000, "no background merge started");
            seal_one(&store, &model, next);
            next += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        HeldMerge {
            store,
            gate,
            model,
            next,
        }
    }

    /// After both merges: a compaction leaves exactly the model, and no merge failed.
    fn check(&self) {
        self.store.compact("s").unwrap();
        assert_eq!(
            self.store.snapshot("s").unwrap().to_vec().unwrap(),
            self.model.lock().expected()
        );
        assert!(
            self.store.background_error().is_none(),
            "{:?}",
            self.store.background_error()
        );
    }
}

/// Writes one update of key `i % 50` at the stream's upper and seals past it, recording it in `model`.
fn seal_one(store: &Store, model: &parking_lot::Mutex<Model>, i: u64) {
    let t = store.upper("s").unwrap();
    let (k, v) = (format!("k{:03}", i % 50).into_bytes(), vec![b'a' + (i % 3) as u8]);
    store.write_bytes("s", [(&k[..], &v[..], t, 1)]).unwrap();
    model.lock().write(&k, &v, t, 1);
    store.seal("s", t + 1).unwrap();
}

fn batches(store: &Store) -> usize {
    store.manifest().stream("s").unwrap().batches.len()
}

/// While a background merge runs (held here at its output's `create`), a seal at the back-pressure bound
/// merges the batches newer than that merge's inputs itself (a tail merge, on the sealing thread) instead
/// of waiting for it: the seals go on, the batch count stays bounded, and every update survives both
/// merges' commits in either order.
#[test]
fn a_seal_at_the_bound_merges_the_newest_batches_beside_a_running_merge() {
    let held = HeldMerge::start(|| {});
    let (store, gate, bound) = (&held.store, &held.gate, TAIL_BOUND);
    // 2. Seal on, past the bound: every seal returns, and the batches stay bounded.
    let sealer = {
        let (store, model, i) = (store.clone(), held.model.clone(), held.next);
        std::thread::spawn(move || {
            let mut most = 0;
            for j in 0..40 {
                seal_one(&store, &model, i + j);
                most = most.max(batches(&store));
            }
            most
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !sealer.is_finished() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let finished = sealer.is_finished();
    gate.set_closed(false);
    let most = sealer.join().unwrap();
    assert!(
        finished,
        "seals waited for the held merge instead of merging beside it"
    );
    // A seal goes on at the bound (the held merge's inputs counted in it) and adds one batch.
    assert!(most <= bound + 1, "the batches piled up to {most}");
    // 3. Both merges commit; nothing is lost or doubled.
    held.check();
}

/// The other commit order of a tail merge: the running merge commits while a tail merge (held at its
/// output's `create` on the sealing thread) is in flight, then the tail merge commits, finding its inputs
/// after the running merge's splice. Every update survives.
#[test]
fn a_tail_merge_commits_after_the_merge_it_ran_beside() {
    // One-shot: holds the next `create` on the thread named "tail-sealer" once armed.
    let tail = Arc::new((
        parking_lot::Mutex::new((false, false)), // (armed, held)
        parking_lot::Condvar::new(),
    ));
    let tail_hook = tail.clone();
    let held = HeldMerge::start(move || {
        if std::thread::current().name() == Some("tail-sealer") {
            let mut state = tail_hook.0.lock();
            if state.0 {
                *state = (false, true);
                tail_hook.1.notify_all();
                while state.1 {
                    tail_hook.1.wait(&mut state);
                }
            }
        }
    });
    let (store, gate, bound) = (&held.store, &held.gate, TAIL_BOUND);
    // 2. Seal past the bound on "tail-sealer": the first seal there over the bound runs a tail merge
    // (its first `create`), which the hook holds.
    let sealer = {
        let (store, model, tail, i) = (store.clone(), held.model.clone(), tail.clone(), held.next);
        std::thread::Builder::new()
            .name("tail-sealer".into())
            .spawn(move || {
                let mut armed = false;
                for j in 0..20 {
                    if !armed && batches(&store) > bound {
                        tail.0.lock().0 = true;
                        armed = true;
                    }
                    seal_one(&store, &model, i + j);
                }
            })
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    wait_until("a tail merge", &|| tail.0.lock().1);
    // 3. The running merge commits first (one batch fewer: its two inputs become one).
    let before = batches(store);
    gate.set_closed(false);
    wait_until("the running merge's commit", &|| batches(store) < before);
    // 4. Then the tail merge.
    tail.0.lock().1 = false;
    tail.1.notify_all();
    sealer.join().unwrap();
    held.check();
}
