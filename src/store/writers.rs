//! Who writes a stream: at most one live writer per stream ([`Store::claim_writer`]), and which streams
//! held data when this open of the store began ([`Store::held_data_at_open`]).
//!
//! These serve the restart protocol of the dataflow operators (`operators::resume`): an operator claims
//! its stream for its life, so one arrangement id used twice is refused when the second dataflow is built
//! instead of two operators writing one stream; and a stream that held data at the open tells a worker
//! that the directory was written by some set of workers. It is fixed at the open, not read from the
//! current state: another worker of this process may have written its own stream already when this one
//! looks (found by `tests/durability/crash_states_operators.rs`, where the idle worker refused a layout it had
//! written itself and the dataflow hung).
//!
//! Invariant: `Writers::live` holds exactly the ids of live [`WriterClaim`]s, and [`PROCESS_CLAIMS`] holds
//! exactly one entry per live claim of any store of the process.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Weak;

/// Every live [`WriterClaim`] of the process, across stores: its number, its store and its stream. Only
/// [`Store::process_claimed_uppers`] takes another lock under it (each claimed store's `state`). Read by it: an upsert's
/// state may be compacted only up to the least upper of the persisted operators downstream of it, and
/// those may write other stores of the process.
static PROCESS_CLAIMS: Mutex<BTreeMap<u64, (Weak<Inner>, String)>> = Mutex::new(BTreeMap::new());
/// The next claim's number in [`PROCESS_CLAIMS`].
static NEXT_CLAIM: AtomicU64 = AtomicU64::new(0);

/// The writer registry of one open store (guarded by its own mutex, never held with `state`'s).
#[derive(Default)]
pub(crate) struct Writers {
    /// Streams with a live [`WriterClaim`].
    live: HashSet<String>,
    /// Per stream, the `Store` calls that change it (writes, appends, seals, `allow_compaction`) running
    /// now, each admitted by [`Store::refuse_claimed`] while no claim was live: a claim waits for them
    /// ([`Store::claim_writer`]), so none of them lands once an operator holds the stream.
    in_flight: HashMap<String, usize>,
    /// Streams that held data when this open of the store began (fixed by the open), each with what it
    /// held.
    held_at_open: HashMap<String, HeldAtOpen>,
    /// Streams claimed by a writer since this open (live or released since).
    claimed: HashSet<String>,
    /// Worker streams of persisted operators one of whose durable workers refused its input's replay
    /// since this open (`operators::replays`): each of them stops; cleared when the stream is dropped.
    refused_replay: HashSet<String>,
}

/// What a stream held when the store was opened ([`Store::held_data_at_open`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeldAtOpen {
    /// Sealed data: a sealed upper past 0, or the finished mark (and maybe unsealed updates too).
    Sealed,
    /// Unsealed updates only (a durable stream's, recovered from the WAL, spilled runs or logged seals),
    /// at upper 0.
    Unsealed,
}

impl Writers {
    /// The registry of a store opened with `held_at_open`'s streams holding data.
    pub(crate) fn new(held_at_open: HashMap<String, HeldAtOpen>) -> Self {
        Writers {
            live: HashSet::new(),
            in_flight: HashMap::new(),
            held_at_open,
            claimed: HashSet::new(),
            refused_replay: HashSet::new(),
        }
    }
}

/// The right to write one stream, from [`Store::claim_writer`]; dropping it releases the stream.
#[derive(Debug)]
pub struct WriterClaim {
    inner: Arc<Inner>,
    id: String,
    /// Its number in [`PROCESS_CLAIMS`].
    number: u64,
}

impl WriterClaim {
    /// The claimed stream.
    pub fn stream_id(&self) -> &str {
        &self.id
    }
}

impl Drop for WriterClaim {
    fn drop(&mut self) {
        self.inner.writers.lock().live.remove(&self.id);
        PROCESS_CLAIMS.lock().remove(&self.number);
    }
}

/// A `Store` call's admission to change a stream no operator claims ([`Store::refuse_claimed`]), held for
/// the call's length: a [`Store::claim_writer`] of the stream waits until every such call returned.
#[must_use = "the admission lasts while it is held: keep it until the call returns"]
pub(crate) struct Unclaimed<'a> {
    inner: &'a Inner,
    id: &'a str,
}

impl Drop for Unclaimed<'_> {
    fn drop(&mut self) {
        let mut writers = self.inner.writers.lock();
        let Some(count) = writers.in_flight.get_mut(self.id) else {
            debug_assert!(false, "an admitted call of {:?} is not counted", self.id);
            return;
        };
        *count -= 1;
        if *count == 0 {
            writers.in_flight.remove(self.id);
            self.inner.calls_done.notify_all();
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("blob", &self.blob.location())
            .finish()
    }
}

impl Store {
    /// [`Error::BadInput`] if a persisted operator holds stream `id`'s writer claim: a write, append, seal or
    /// `allow_compaction` through the `Store` API would change what the running operator serves (its trace, its output) behind
    /// its back (found by an adversarial test: a typed `write` into a running arrangement's stream was
    /// served by its trace). The operators write and seal through the `*_claimed` calls.
    ///
    /// Otherwise the call is admitted: hold the returned value until it returns, and a claim of the
    /// stream waits for it ([`claim_writer`](Self::claim_writer)), so no call admitted before a claim
    /// lands after it. Calls nest (a `seal_logged` that falls back to a `seal`).
    pub(crate) fn refuse_claimed<'a>(&'a self, id: &'a str) -> Result<Unclaimed<'a>> {
        let mut writers = self.inner.writers.lock();
        if writers.live.contains(id) {
            return Err(Error::bad_input(format!(
                "stream {id:?} is written by a running persisted operator: drop its dataflow before writing, \
                 appending to or sealing the stream through the Store"
            )));
        }
        match writers.in_flight.get_mut(id) {
            Some(count) => *count += 1,
            None => {
                writers.in_flight.insert(id.to_string(), 1);
            }
        }
        Ok(Unclaimed {
            inner: &self.inner,
            id,
        })
    }

    /// Claims stream `id` for one writer (an operator) until the returned claim drops. While it is held,
    /// the `Store`'s own writes, appends, seals and `allow_compaction` of the stream are refused
    /// ([`Error::BadInput`]): the claim is for the persisted operators, which write through the crate's
    /// own calls. A write, append, seal or `allow_compaction` of the stream running when this is called
    /// is waited for (it returns first, and what it did is in the stream before the claim is taken).
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if a live claim on `id` exists (two operators
    /// would write one stream: e.g. one arrangement id used in two dataflows of a worker; or
    /// [`drop_stream`](Self::drop_stream) is removing it, which the message says).
    pub fn claim_writer(&self, id: &str) -> Result<WriterClaim> {
        if !self.has_stream(id) {
            return Err(Error::UnknownStream { id: id.to_string() });
        }
        let inserted = {
            let mut writers = self.inner.writers.lock();
            // The `Store`'s calls admitted before this claim finish first (none is admitted meanwhile
            // once the claim is live; until then this waits, releasing the lock).
            while !writers.live.contains(id) && writers.in_flight.contains_key(id) {
                self.inner.calls_done.wait(&mut writers);
            }
            let inserted = writers.live.insert(id.to_string());
            writers.claimed.insert(id.to_string());
            inserted
        };
        if !inserted {
            // `drop_stream` claims the stream while it removes it.
            let dropping = self.with_stream(id, |s| s.dropping).unwrap_or(false);
            return Err(Error::bad_input(match dropping {
                true => format!(
                    "stream {id:?} is being dropped (`Store::drop_stream`): build again once it returns"
                ),
                false => format!(
                    "stream {id:?} is already written by a live operator: a persisted id may be used by one \
                     operator per worker at a time (is the same id used in two dataflows?)"
                ),
            }));
        }
        let number = NEXT_CLAIM.fetch_add(1, Ordering::Relaxed);
        let entry = (Arc::downgrade(&self.inner), id.to_string());
        PROCESS_CLAIMS.lock().insert(number, entry);
        Ok(WriterClaim {
            inner: self.inner.clone(),
            id: id.to_string(),
            number,
        })
    }

    /// The sealed upper of every stream with a live [`WriterClaim`] in any store of this process, in no
    /// order: the persisted operators running here, whichever store they write.
    ///
    /// Reads each store's `state` under the [`PROCESS_CLAIMS`] lock: a claim leaves the registry (under
    /// that lock) before its own strong reference to the store drops, so the reference taken here is
    /// never the store's last, and a store closed by its last handle meanwhile still releases its
    /// directory lock on that thread, at once (not later, on this one: a reopen would find it `Locked`).
    /// Lock order: `PROCESS_CLAIMS`, then a store's `state`; nothing takes `PROCESS_CLAIMS` under `state`.
    pub(crate) fn process_claimed_uppers() -> Vec<u64> {
        let claims = PROCESS_CLAIMS.lock();
        claims
            .values()
            .filter_map(|(inner, id)| {
                let inner = inner.upgrade()?;
                #[cfg(test)]
                tests::hold_a_moment();
                let upper = inner.state.lock().streams.get(id).map(|s| s.version.upper());
                upper
            })
            .collect()
    }

    /// What stream `id` held when this store was opened, if anything: sealed data (a sealed upper past
    /// 0, or marked finished), or only unsealed updates recovered from the WAL, spilled runs or logged
    /// seals. Fixed by the open: what this process writes afterwards never counts, and a stream created
    /// since holds `None`.
    pub fn held_data_at_open(&self, id: &str) -> Option<HeldAtOpen> {
        self.inner.writers.lock().held_at_open.get(id).copied()
    }

    /// Whether stream `id` has been claimed by a writer ([`claim_writer`](Self::claim_writer)) since
    /// this store was opened, whether or not the claim is still live.
    pub fn claimed_since_open(&self, id: &str) -> bool {
        self.inner.writers.lock().claimed.contains(id)
    }

    /// Marks `streams` (every worker stream of a persisted operator) as having had their input's replay
    /// refused by one of them (see `operators::replays`), until each is dropped, its operator ends
    /// ([`clear_replay_refused`](Self::clear_replay_refused)) or the store is reopened.
    pub(crate) fn mark_replay_refused(&self, streams: impl IntoIterator<Item = String>) {
        self.inner.writers.lock().refused_replay.extend(streams);
    }

    /// Whether stream `id` is marked by [`mark_replay_refused`](Self::mark_replay_refused).
    pub(crate) fn replay_refused(&self, id: &str) -> bool {
        self.inner.writers.lock().refused_replay.contains(id)
    }

    /// Clears the mark of [`mark_replay_refused`](Self::mark_replay_refused) on stream `id`: its
    /// operator ended, and a later one (a rebuild in this process) decides for itself.
    pub(crate) fn clear_replay_refused(&self, id: &str) {
        self.inner.writers.lock().refused_replay.remove(id);
    }

    /// Notes that stream `id` was dropped: what it held at the open is gone.
    pub(crate) fn forget_held_at_open(&self, id: &str) {
        let mut writers = self.inner.writers.lock();
        writers.held_at_open.remove(id);
        writers.refused_replay.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// Microseconds [`Store::process_claimed_uppers`] holds each store it upgraded before reading it (a
    /// test widens the window in which it holds a reference).
    static HOLD_MICROS: AtomicU64 = AtomicU64::new(0);

    pub(super) fn hold_a_moment() {
        let micros = HOLD_MICROS.load(Ordering::Relaxed);
        if micros > 0 {
            std::thread::sleep(std::time::Duration::from_micros(micros));
        }
    }

    /// A store closed by its last handle releases its directory at once, even while another thread
    /// reads the process's claimed uppers (as every arranging operator's seal does): a reopen right
    /// after never finds it `Locked`. (When the reader held the last strong reference for a moment, the
    /// store dropped later on the reader's thread.)
    #[test]
    fn a_closed_store_reopens_while_claimed_uppers_are_read() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.create_stream("s", Default::default()).unwrap();
        }
        HOLD_MICROS.store(500, Ordering::Relaxed);
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(Store::process_claimed_uppers());
                }
            })
        };
        for round in 0..100 {
            let store = Store::open(dir.path())
                .unwrap_or_else(|e| panic!("round {round}: the closed store was not released: {e}"));
            let claim = store.claim_writer("s").unwrap();
            drop(claim);
            drop(store);
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        HOLD_MICROS.store(0, Ordering::Relaxed);
    }

    /// A claim refused while `drop_stream` holds the stream says so, not that the id is used twice.
    #[test]
    fn a_claim_during_a_drop_says_the_stream_is_being_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", Default::default()).unwrap();
        let first = store.claim_writer("s").unwrap();
        let err = store.claim_writer("s").err().unwrap().to_string();
        assert!(err.contains("already written by a live operator"), "{err}");
        // As `drop_stream` marks the stream it has claimed.
        store.inner.state.lock().streams.get_mut("s").unwrap().dropping = true;
        let err = store.claim_writer("s").err().unwrap().to_string();
        assert!(err.contains("being dropped"), "{err}");
        drop(first);
    }

    /// A claim waits for the `Store` calls admitted before it (a write racing an operator's build landed
    /// after the claim when the check came first and the write after), and refuses those that come after.
    #[test]
    fn a_claim_waits_for_admitted_calls_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_stream("s", Default::default()).unwrap();
        store.create_stream("t", Default::default()).unwrap();
        let outer = store.refuse_claimed("s").unwrap();
        let nested = store.refuse_claimed("s").unwrap();
        let claimed = Arc::new(AtomicBool::new(false));
        let claimer = {
            let (store, claimed) = (store.clone(), claimed.clone());
            std::thread::spawn(move || {
                let claim = store.claim_writer("s").unwrap();
                claimed.store(true, Ordering::SeqCst);
                claim
            })
        };
        // Another stream's calls and claims go on meanwhile.
        drop(store.claim_writer("t").unwrap());
        store.write_bytes("t", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !claimed.load(Ordering::SeqCst),
            "the claim did not wait for the calls in flight"
        );
        drop(nested);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !claimed.load(Ordering::SeqCst),
            "the claim did not wait for the outer call"
        );
        drop(outer);
        let claim = claimer.join().unwrap();
        assert!(claimed.load(Ordering::SeqCst));
        let err = store
            .write_bytes("s", [(&b"k"[..], &b"v"[..], 0, 1)])
            .unwrap_err();
        assert!(matches!(err, Error::BadInput { .. }), "{err}");
        drop(claim);
        store.write_bytes("s", [(&b"k"[..], &b"v"[..], 0, 1)]).unwrap();
        assert!(store.inner.writers.lock().in_flight.is_empty());
    }
}
