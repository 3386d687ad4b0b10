//! Streams that replay on restart, known on the worker that built them: the outputs of persisting
//! operators (`persist`, `upsert_persisted`) and a persisted arrangement's collection
//! (`TypedArranged::flat_map_ref`, behind `as_collection`), which re-emit what earlier runs persisted.
//! A durable operator built directly over one is refused at build ([`refuse_durable_over`]): its
//! input replays, and it would count its recovered unsealed updates twice (adversarial round 11). An
//! operator in between (a `map`) hides the replay from this check; the persister's
//! [`refuse_times`](super::persister::Persister::refuse_times) then refuses the replay's first update
//! below the operator's upper while running, if the operator held unsealed updates when built (which
//! the replay would double; holding none, it drops the replay below its upper, as a stream that is not
//! durable does).
//!
//! Seeing a replay is per worker: one exchanged between workers may give a worker only updates at or
//! beyond its upper, which it cannot tell from new ones. So the first worker that sees one marks the
//! operator's worker streams in its store ([`refuse_replay`]) and every durable worker of them that held
//! unsealed updates stops at its next activation before it writes or seals ([`refused_by_sibling`]); a worker that sealed the
//! replay's updates in between is not undone (the replay arrives in the first activations, and a seal
//! needs the input frontier past those updates' times, so it is unlikely). The mark lasts until the
//! worker's operator ends (its persister is dropped: a later operator over the stream, rebuilt in this
//! process, decides for itself), the stream is dropped (retiring the id, as a durable stream that took a
//! replay needs) or the store is reopened. Across processes nothing is shared.
//!
//! The set of replaying streams is per worker thread (a timely worker builds and runs its dataflows on one
//! thread), keyed by the worker (its activations, held weakly: `timely::execute_directly` builds a new
//! worker on the same thread, whose dataflow and operator indices start again at 0; a worker's entries
//! are dropped once it is gone), the stream's scope address (a dataflow's index is never reused within
//! a worker) and its source `(operator, port)`; it grows by one entry per such stream built.

use crate::error::{Error, Result};
use crate::store::Store;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use timely::dataflow::Stream;
use timely::progress::Timestamp;
use timely::scheduling::Activations;

/// A replaying stream: its worker, scope address, source operator and source port.
type Entry = (Weak<RefCell<Activations>>, Vec<usize>, usize, usize);

thread_local! {
    /// Each replaying stream built on this thread.
    static REPLAYING: RefCell<Vec<Entry>> = RefCell::default();
}

fn entry<T: Timestamp, C>(stream: &Stream<'_, T, C>) -> Entry {
    let source = stream.name();
    let worker = Rc::downgrade(&stream.scope().activations());
    (worker, stream.scope().addr().to_vec(), source.node, source.port)
}

fn same(a: &Entry, b: &Entry) -> bool {
    Weak::ptr_eq(&a.0, &b.0) && (&a.1, a.2, a.3) == (&b.1, b.2, b.3)
}

/// Records that `stream` replays on restart (see the module docs).
pub(crate) fn mark_replaying<T: Timestamp, C>(stream: &Stream<'_, T, C>) {
    let entry = entry(stream);
    REPLAYING.with(|set| {
        let mut set = set.borrow_mut();
        set.retain(|e| e.0.strong_count() > 0);
        set.push(entry);
    });
}

fn is_replaying<T: Timestamp, C>(stream: &Stream<'_, T, C>) -> bool {
    let entry = entry(stream);
    REPLAYING.with(|set| set.borrow().iter().any(|e| same(e, &entry)))
}

/// Fails with [`Error::BadInput`] if `durable` (and `store`'s WAL keeps unsealed updates) and `input` is a
/// stream marked as replaying: operator `id` would be a durable operator over an input that replays.
pub(crate) fn refuse_durable_over<T: Timestamp, C>(
    store: &Store,
    input: &Stream<'_, T, C>,
    id: &str,
    durable: bool,
) -> Result<()> {
    if !durable || !store.durable_log() || !is_replaying(input) {
        return Ok(());
    }
    Err(Error::bad_input(format!(
        "operator {id:?} is built durable over the output of a persisted operator, which replays what it \
         persisted on restart: a durable stream keeps its unsealed updates and would count those twice; \
         build it not durable (only an operator fed by a source that cannot replay is durable)"
    )))
}

/// [`super::time::refuse_replay`] of the durable worker stream `stream` sealed up to `upper`, which held
/// unsealed updates when built if `recovered`: an update below the upper marks every worker stream of its
/// operator in `store` as fed by a replay (module docs), and is refused if `recovered` (else it is dropped
/// as persisted, as for a stream that is not durable: with nothing recovered a replay doubles nothing).
pub(crate) fn refuse_replay<'a, T: super::PersistTime>(
    store: &Store,
    stream: &str,
    (upper, recovered): (u64, bool),
    times: impl Iterator<Item = &'a T>,
) -> Result<()> {
    let refused = super::time::refuse_replay(stream, upper, times);
    if let (Err(_), Some((id, peers))) = (&refused, super::resume::operator_of(stream)) {
        store.mark_replay_refused((0..peers).map(|i| super::worker_stream_id(id, i, peers)));
    }
    if recovered {
        refused
    } else {
        Ok(())
    }
}

/// [`Error::BadInput`] if `stream` held unsealed updates when built (`recovered`) and is marked by
/// [`refuse_replay`] on any worker.
pub(crate) fn refused_by_sibling(store: &Store, stream: &str, recovered: bool) -> Result<()> {
    match recovered && store.replay_refused(stream) {
        false => Ok(()),
        true => Err(Error::bad_input(format!(
            "a worker of the durable operator of stream {stream:?} refused its input's replay (an update \
             below its upper): every worker of it stops, since a worker given only updates at or beyond \
             its upper could not tell them from new ones and would count them twice; retire the id \
             (Store::drop_stream of each worker's stream) and build it not durable"
        ))),
    }
}
