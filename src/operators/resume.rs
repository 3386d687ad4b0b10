//! The restart protocol of persisting operators: which stream a worker writes, whether the directory
//! belongs to this worker, and where the dataflow's input resumes.
//!
//! Every persisting operator ([`ArrangePersisted`](super::ArrangePersisted), [`Persist`](super::Persist),
//! [`UpsertPersisted`](super::UpsertPersisted)) opens its worker's stream through `open_worker_stream`,
//! which
//! 1. refuses a store whose streams of the id were written by another number of workers, or by other
//!    workers than this one (a directory of another process, or a process restarted with more workers),
//!    or were created with the other durability (a durable stream's input continues with new updates,
//!    one that is not durable replays: either way round, the unsealed updates would be lost or doubled);
//! 2. creates the worker's stream if missing, checks that it holds the operator's key and val types (or
//!    records them in a stream that holds nothing yet: [`Store::check_types`]; other types fail to
//!    build), and claims it for the operator's life (a second operator on the same id and worker fails
//!    to build);
//! 3. computes the **resume point** `R` from the streams of the id (all workers' in one process):
//!    - every stream records its upper at every frontier advance (or several at once, when seals
//!      coalesce), with or without data, and, when its input is exhausted, seals what it holds and marks
//!      itself *finished* (no update at or beyond its upper);
//!    - `R` is the least upper of the streams that are not finished, or, when all are finished, the
//!      greatest upper. Below `R` every worker has sealed everything; at or beyond it no finished stream
//!      has anything.
//! 4. moves a finished stream that lags `R` up to `R` (it has nothing there) and clears its mark, so the
//!    value of `R` is the same whichever worker computes it first.
//!
//! The input replays from `R` (the same value on every worker). A worker drops replayed input below its
//! own stream's upper (it is persisted there: the replay must be the same data for those times) and
//! persists the rest; a durable stream's input does not replay (`operators::replays`). After a clean shutdown all uppers are equal, so new input can start at `R`. A
//! closed input is the source's end (its streams are marked finished): a run that only reads keeps its
//! input open (advanced to `R`) and drops its dataflow.
//!
//! Several processes (a timely cluster): each process opens its own store directory (one per process, the
//! same one at every restart); the streams of other processes are not visible there, so each process
//! computes `R` over its own workers' streams, and [`resume_at`] agrees on the dataflow-wide value.

use super::{check_worker_count, worker_stream_id, PersistTime};
use crate::error::{Error, Result};
use crate::store::{HeldAtOpen, SealOptions, Store, StreamOptions, WriterClaim};
use crate::version::{Manifest, MAX_ID_BYTES};
use std::cell::RefCell;
use std::rc::Rc;
use timely::dataflow::operators::vec::Broadcast;
use timely::dataflow::operators::{Input, Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// Where the input of a persisted dataflow resumes, as the streams of one store see it: combined over
/// processes by [`resume_at`]. `Copy`, `Send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ResumeState {
    /// The least upper of the streams that are not finished, if any is not.
    pub least_open_upper: Option<u64>,
    /// The greatest upper of all the streams.
    pub greatest_upper: u64,
}

impl ResumeState {
    /// The resume point: the least open upper, or, when every stream finished, the greatest upper.
    pub fn resume_at(&self) -> u64 {
        self.least_open_upper.unwrap_or(self.greatest_upper)
    }

    /// The state of the union of the streams of `self` and `other`.
    pub fn merge(self, other: ResumeState) -> ResumeState {
        let least_open_upper = match (self.least_open_upper, other.least_open_upper) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        ResumeState {
            least_open_upper,
            greatest_upper: self.greatest_upper.max(other.greatest_upper),
        }
    }

    /// The state of the streams of arrangement `id` persisted by `peers` workers in `store`.
    pub fn of(store: &Store, id: &str, peers: usize) -> ResumeState {
        let manifest = store.manifest();
        let mut state = ResumeState::default();
        for meta in &manifest.streams {
            if worker_of(&meta.id, id).is_some_and(|(_, n)| n == peers) {
                state = state.merge(ResumeState {
                    least_open_upper: (!meta.finished).then_some(meta.upper),
                    greatest_upper: meta.upper,
                });
            }
        }
        state
    }
}

/// The greatest since a persisted operator's worker stream (of operator `id`, `peers` workers) may take
/// with its seal at `upper`: just below the least sealed upper of every persisted operator's stream in
/// `store`, written this run or not, and of the streams with a live writer in any store of the process
/// ([`Store::process_claimed_uppers`]), and at most `upper`. After a restart every persisted operator
/// re-emits its persisted history, and a persisted operator downstream drops only what lies below its own
/// upper: merges advance times below the since *to* the since, so a since at or beyond a downstream upper
/// would move history that operator holds to times it takes again (rows doubled, retractions lost). A
/// downstream operator not built this run (a dataflow built in parts, one rebuilt later) holds the since
/// back through its stream's recorded upper; which operators are downstream is not recorded, so every
/// other persisted operator in the store holds it back too: safe, at worst less compaction, until that
/// operator runs again or its stream is dropped ([`Store::drop_stream`]; DESIGN.md §5.1). A stream at
/// upper 0 (an id that never sealed anything) holds the since at 0: at a restart it takes its upstream's
/// whole history, which must not be collapsed onto a since (adversarial rounds found its earlier times
/// wrong twice: a stream at 0 claimed this run, then one left at 0 by an earlier run and not built).
/// A downstream operator in another store is seen only while it runs. `None` (no
/// compaction) when the store does not hold every worker's stream of the operator: in a cluster, operators downstream may live in another process's store, whose uppers this
/// one cannot see. For de-upsert's state and the arranging operator's trace (DESIGN.md §5).
pub(crate) fn compaction_since(store: &Store, id: &str, peers: usize, upper: u64) -> Option<u64> {
    let (held, least) = store.with_manifest(|manifest| {
        let held = manifest.streams.iter().filter_map(|m| operator_of(&m.id));
        let held = held.filter(|&(op, n)| op == id && n == peers).count();
        let least = compaction_holder(manifest).map_or(upper, |(_, u)| u.min(upper));
        (held, least)
    });
    if held < peers {
        return None;
    }
    let live = Store::process_claimed_uppers().into_iter().min().unwrap_or(upper);
    Some(least.min(live).saturating_sub(1))
}

/// The persisted operator stream (a worker stream `"{id}/w{index}of{peers}"`) with the least upper in
/// `manifest`, and that upper (a `u64` store time): the since of an operator's state in the store is at
/// most that upper minus one (`compaction_since`; operators live in the process may hold it lower still,
/// and an operator whose workers' streams are not all in the store does not compact).
/// `None` when the store holds no operator stream. `inspect list` shows it, to say which stream holds a
/// store's compaction back (for instance one at upper 0 whose operator never sealed: drop it with
/// [`Store::drop_stream`] when that operator is gone for good).
pub fn compaction_holder(manifest: &Manifest) -> Option<(&str, u64)> {
    let operators = manifest.streams.iter().filter(|m| operator_of(&m.id).is_some());
    operators
        .min_by_key(|m| m.upper)
        .map(|m| (m.id.as_str(), m.upper))
}

/// `(id, peers)` of a worker stream `"{id}/w{index}of{peers}"`.
pub(crate) fn operator_of(stream: &str) -> Option<(&str, usize)> {
    let (id, rest) = stream.rsplit_once("/w")?;
    let (index, peers) = rest.split_once("of")?;
    index.parse::<usize>().ok()?;
    Some((id, peers.parse().ok()?))
}

/// `(index, peers)` of a worker stream `"{id}/w{index}of{peers}"` of arrangement `id`.
pub(crate) fn worker_of(stream: &str, id: &str) -> Option<(usize, usize)> {
    let rest = stream.strip_prefix(id)?.strip_prefix("/w")?;
    let (index, peers) = rest.split_once("of")?;
    Some((index.parse().ok()?, peers.parse().ok()?))
}

/// A worker's stream, opened for one operator: see the module docs.
pub(crate) struct WorkerStream {
    /// The stream's id in the store.
    pub(crate) stream: String,
    /// The operator's claim on it, held for the operator's life.
    pub(crate) claim: WriterClaim,
    /// The stream's sealed upper: input below it is persisted already.
    pub(crate) upper: u64,
    /// The dataflow's resume point as this store sees it (the same on every worker of the process).
    pub(crate) resume: ResumeState,
    /// Other workers' streams of the operator that held only unsealed updates when the store was opened,
    /// while this worker had no stream: this process's own workers must claim them before this worker's
    /// first seal ([`confirm_layout`]).
    pub(crate) unconfirmed: Vec<String>,
}

/// Opens worker `index` of `peers`'s stream of arrangement `id` in `store` for one operator, creating it
/// (with `options`) if missing, and checks (or, the first time, records) that it holds keys and vals of
/// `types` ([`types_at`](super::types_at)), and that its times fit `T` (`by_description`: judged by
/// batch descriptions, as an arrangement's trace reads them; else by the updates, as a replay does; see
/// [`check_times_fit`]): see the module docs.
///
/// Errors: [`Error::BadInput`] if the id is empty (and names no stream yet), if the id's streams were
/// persisted by another number of workers and one of them holds something (empty ones are dropped:
/// `retire_empty_streams_of_other_counts`), or the store holds streams of the id written by earlier runs
/// but not this worker's (another process's directory, or a changed layout), or one of the id's streams
/// was created durable and `options` are not, or the reverse ([`check_durability`]), or the stream was
/// written with other types ([`Store::check_types`]), or another live operator writes the stream; store
/// errors, such as a failure to commit the batch of a seal logged on one of the id's streams
/// ([`Store::complete_seals`]).
pub(crate) fn open_worker_stream<T: PersistTime>(
    store: &Store,
    id: &str,
    (index, peers): (usize, usize),
    options: StreamOptions,
    types: &str,
    by_description: bool,
) -> Result<WorkerStream> {
    let stream = worker_stream_id(id, index, peers);
    let exists = store.has_stream(&stream);
    // (Earlier releases took an empty id: its streams stay readable.)
    if id.is_empty() && !exists {
        return Err(Error::bad_input("an operator's id must not be empty"));
    }
    super::retire_empty_streams_of_other_counts(store, id, peers)?;
    check_worker_count(store, id, peers)?;
    check_durability(store, id, options.durable)?;
    check_times_fit::<T>(store, id, by_description)?;
    // A seal logged through the `Store` API (`seal_logged`) is durable and refuses writes below it, but
    // reaches a stream's upper only once its batch commits (the flush thread's, which may have failed):
    // complete those of the id's streams before any upper is read here, or this operator would start
    // below its own stream's seal and have its first writes refused.
    let streams = store.manifest();
    let streams = streams.streams.iter().filter(|m| worker_of(&m.id, id).is_some());
    for s in streams.map(|m| m.id.clone()).collect::<Vec<_>>() {
        store.complete_seals(&s)?;
    }
    let unconfirmed = if exists {
        siblings_held_at_open(store, id, &stream)
    } else {
        let unconfirmed = check_layout(store, id, index)?;
        store.create_stream(&stream, options).map_err(|e| match e {
            // The limit applies to the worker's stream id: name the operator's id and its own limit.
            Error::BadInput { .. } if stream.len() > MAX_ID_BYTES => Error::bad_input(format!(
                "operator id {id:?} is {} bytes; with {peers} workers it may be at most {} (its streams \
                 are named {stream:?})",
                id.len(),
                MAX_ID_BYTES - (stream.len() - id.len())
            )),
            e => e,
        })?;
        unconfirmed
    };
    store.check_types(&stream, types)?;
    let claim = store.claim_writer(&stream)?;
    // A stream that keeps no unsealed update across a restart starts from its upper within a process too:
    // an earlier operator of it, dropped with a time taken in but not sealed, leaves none behind.
    store.discard_volatile_unsealed(&stream)?;
    let resume = ResumeState::of(store, id, peers);
    let meta = store.manifest().stream(&stream).cloned();
    let Some(meta) = meta else {
        return Err(Error::UnknownStream { id: stream });
    };
    if meta.finished {
        // Nothing at or beyond its upper: it may move to the resume point, and stops being finished.
        let upper = meta.upper.max(resume.resume_at());
        store.seal_with_claimed(&stream, upper, SealOptions::default())?;
    }
    let upper = store.upper(&stream)?;
    Ok(WorkerStream {
        stream,
        claim,
        upper,
        resume,
        unconfirmed,
    })
}

/// Fails with [`Error::BadInput`] if a stream of operator `id` in `store` has another durability than
/// `durable` asks for. The two are resumed differently — a durable stream keeps its unsealed updates and
/// its input continues with new ones at or beyond `greatest_upper`; one that is not durable loses them and
/// its input replays from `resume_at` — so a dataflow built for the other would lose the unsealed updates
/// (a durable build over a stream that is not) or count them twice (the reverse), found by an adversarial
/// test. A stream's durability is fixed when it is created: retire the id to change it.
fn check_durability(store: &Store, id: &str, durable: bool) -> Result<()> {
    let manifest = store.manifest();
    let other = (manifest.streams.iter()).find(|m| worker_of(&m.id, id).is_some() && m.durable != durable);
    let Some(other) = other else { return Ok(()) };
    let name = |durable: bool| if durable { "durable" } else { "not durable" };
    Err(Error::bad_input(format!(
        "operator {id:?} asks for streams that are {}, but its stream {:?} was created {} (a durable stream \
         keeps its unsealed updates and its input continues at its greatest_upper; one that is not durable \
         replays from resume_at): build it as it was created, or retire the id to change it",
        name(durable),
        other.id,
        name(other.durable),
    )))
}

/// Fails with [`Error::BadInput`] if a stream of operator `id` in `store` holds a time that a dataflow at
/// times `T` could not read: with `by_description` (an arrangement, whose trace refuses a batch by its
/// description) a batch or spilled run whose description reaches past `T`'s range, else (a replay, which
/// reads each update) an update of such a batch or run past it — for a stream that is not durable, sealed
/// ones only (its unsealed updates, spilled or not, are dropped when its worker builds); a since past the
/// range over any update (every time below it reads as it); a durable stream's unsealed update past it.
/// Each worker's own trace or replay refuses such a stream when it reads it; judged here over every
/// stream of the id, as the other build checks are, so that every worker refuses alike (adversarial round
/// 9: only the worker whose stream held a `u64` time past `u32`'s range refused a `u32` build; the other
/// built, at a resume point `u32` cannot hold, and a dataflow built on one worker only hangs; round 10:
/// judging a replay by descriptions refused a batch of fitting times whose upper lay past the range; a
/// review: counting a volatile stream's spills refused one rebuilt in the same process that held nothing
/// else).
fn check_times_fit<T: PersistTime>(store: &Store, id: &str, by_description: bool) -> Result<()> {
    let manifest = store.manifest();
    for meta in manifest.streams.iter().filter(|m| worker_of(&m.id, id).is_some()) {
        let fits = |t: u64| T::from_u64(t).is_some();
        // A stream that is not durable drops its spilled runs (unsealed updates) when its worker builds.
        // So does a durable stream over a log that keeps nothing (an in-memory store).
        let durable = meta.durable && store.durable_log();
        let spills = if durable { &meta.spills[..] } else { &[] };
        let reaches_past = (meta.batches.iter().chain(spills)).find(|b| b.upper > 0 && !fits(b.upper - 1));
        let past = match reaches_past {
            None => None,
            Some(b) if by_description => Some(format!("a batch of times up to {}", b.upper - 1)),
            // Rare: read the stream's updates, as its replay will.
            Some(_) => (store.snapshot(&meta.id)?.iter()?)
                .map(|u| u.map(|(_, _, t, _)| t))
                .filter(|t| !matches!(t, Ok(t) if !durable && *t >= meta.upper))
                .find(|t| !matches!(t, Ok(t) if fits((*t).max(meta.since))))
                .transpose()?
                .map(|t| format!("an update at time {t}")),
        };
        let unsealed = match durable {
            true => store.unsealed_max_time(&meta.id)?,
            false => None, // dropped when its worker builds
        };
        let holds_updates = !meta.batches.is_empty() || !spills.is_empty() || unsealed.is_some();
        let past = past
            .or_else(|| (holds_updates && !fits(meta.since)).then(|| format!("its since {}", meta.since)))
            .or_else(|| {
                let t = unsealed.filter(|&t| !fits(t.max(meta.since)))?;
                Some(format!("an unsealed update at time {t}"))
            });
        if let Some(past) = past {
            return Err(Error::bad_input(format!(
                "operator {id:?} is built at times {}, but its stream {:?} holds {past}, beyond the range of \
                 that timestamp type: build it at a type that holds the stream's times",
                std::any::type_name::<T>(),
                meta.id
            )));
        }
    }
    Ok(())
}

/// Updates a restarted operator re-emits: `((key, val), time, diff)`.
pub(crate) type Replay<K, V, T, R = i64> = Vec<((K, V), T, R)>;

/// The replay of `stream` with its diffs as `R`. Errors: [`Error::Decode`] naming the stream, the key's
/// time and the diff if one does not fit `R` (a sum of written diffs, after merges).
pub(crate) fn narrow_diffs<K, V, T: super::PersistTime, R: super::PersistDiff>(
    replay: Replay<K, V, T>,
    stream: &str,
) -> Result<Replay<K, V, T, R>> {
    replay
        .into_iter()
        .map(|(kv, time, diff)| match R::from_i64(diff) {
            Some(diff) => Ok((kv, time, diff)),
            None => Err(crate::error::Error::decode(format!(
                "stream {stream:?} holds a diff of {diff} at time {}, beyond the range of the collection's \
                 diff type",
                time.to_u64()
            ))),
        })
        .collect()
}

/// What a restarted operator re-emits of its `stream`: the snapshot's updates (sealed ones, and a durable
/// stream's unsealed ones) decoded at `T`, each time below the stream's since read as the since and each
/// `(key, val)`'s diffs there summed (zero sums dropped; a sum past `i64` in parts), so the re-emission
/// depends on the since and not on which merges happened to run, as a trace's batches read
/// ([`PersistedBatch::from_file_as_of`](crate::trace::PersistedBatch::from_file_as_of)); and the
/// snapshot's upper. (Found for arrangements by an adversarial test: a downstream operator built after
/// its upstream's since passed sealed rows whose retractions a later merge folded into the since.)
///
/// Errors: the store's; [`Error::Decode`] for bytes that do not decode as `K` / `V`; [`Error::BadInput`]
/// for a time beyond `T`'s range.
pub(crate) fn replay_as_of_since<K, V, T>(store: &Store, stream: &str) -> Result<(Replay<K, V, T>, u64)>
where
    K: crate::codec::Codec + PartialEq,
    V: crate::codec::Codec + PartialEq,
    T: super::PersistTime,
{
    // The stream's writer is this operator (claimed): nothing moves its since meanwhile.
    let since = store.since(stream)?;
    let snapshot = store.snapshot(stream)?;
    let upper = snapshot.upper();
    let mut out: Replay<K, V, T> = Vec::new();
    // Whether `out`'s last update is a sum at the since that the next one may join.
    let mut summing = false;
    for (k, v, t, d) in snapshot.decode::<K, V>()? {
        let time = T::from_u64(t.max(since)).ok_or_else(|| {
            Error::bad_input(format!(
                "stream {stream:?} holds time {t} (read as of its since {since}), beyond the range of the \
                 dataflow's timestamp type"
            ))
        })?;
        if t <= since && summing {
            // Snapshot order is (key, val, time): a `(key, val)`'s times below the since are adjacent.
            if let Some(((lk, lv), _, sum)) = out.last_mut() {
                if *lk == k && *lv == v {
                    if let Some(total) = sum.checked_add(d) {
                        *sum = total;
                        continue;
                    }
                }
            }
        }
        summing = t <= since;
        out.push(((k, v), time, d));
    }
    out.retain(|u| u.2 != 0);
    Ok((out, upper))
}

/// Refuses to create worker `index`'s stream of `id` where earlier runs persisted the id by other workers
/// only: the directory belongs to another process (or the process now runs more workers than wrote it).
/// Unsealed data is judged by what the streams held when the store was opened
/// ([`Store::held_data_at_open`]), never by what they hold now: workers build at different moments, and
/// one that built first may have written its stream already (under load in CI, a worker refused the directory another worker of its own process had
/// just written, and the dataflow, built on one worker only, hung; `tests/restart/restart_build_order.rs`).
///
/// - A stream that held sealed data: refused now. In one process no worker seals before every worker
///   built (the frontier waits for all), and building creates the worker's stream durably first, so no
///   crash of a run leaves one worker's stream sealed and another's missing.
/// - A stream that holds sealed data now (sealed since the open): refused too, by the same argument: this
///   worker's stream existed when it sealed, so it was dropped since (`Store::drop_stream` of some of
///   the id's streams, not all; found by an adversarial test, where the rebuilt workers read resume
///   points 0 and 1 and the run never completed, or served a partial collection).
/// - A stream that held only unsealed (durable) updates: ambiguous. A crashed run of this same process
///   leaves it when one worker wrote before another had built; another process's directory looks the
///   same. Returned: [`confirm_layout`] decides before this worker's first seal, when every worker of
///   the process has built and claimed its stream.
/// - Streams that held nothing hold nothing to lose and do not count.
fn check_layout(store: &Store, id: &str, index: usize) -> Result<Vec<String>> {
    let manifest = store.manifest();
    let mut sealed = Vec::new();
    let mut unsealed = Vec::new();
    for m in manifest.streams.iter().filter(|m| worker_of(&m.id, id).is_some()) {
        let sealed_now = m.upper > 0 || m.finished;
        match (store.held_data_at_open(&m.id), sealed_now) {
            (Some(HeldAtOpen::Sealed), _) | (_, true) => sealed.push(m.id.clone()),
            (Some(HeldAtOpen::Unsealed), false) => unsealed.push(m.id.clone()),
            (None, false) => {}
        }
    }
    match sealed.is_empty() {
        true => Ok(unsealed),
        false => Err(foreign_layout(store, id, (index, false), &sealed)),
    }
}

/// The other workers' streams of `id` that held data when the store was opened, beside this worker's
/// own `stream` (which exists): this process's own workers must claim them before this worker's first
/// seal ([`confirm_layout`]). One never claimed here was written by a worker of another process: the
/// directory was written by one process of two workers and is now reopened by one process of a cluster
/// of two processes of one worker each, which would serve half the collection (the other half, in this
/// directory, never read) and start the other process's worker empty.
fn siblings_held_at_open(store: &Store, id: &str, stream: &str) -> Vec<String> {
    let manifest = store.manifest();
    let siblings = manifest
        .streams
        .iter()
        .filter(|m| m.id != stream && worker_of(&m.id, id).is_some());
    siblings
        .filter(|m| store.held_data_at_open(&m.id).is_some())
        .map(|m| m.id.clone())
        .collect()
}

/// Before the first seal of a worker's `stream`, for which [`open_worker_stream`] left `unconfirmed`
/// ([`check_layout`] when the stream was missing, [`siblings_held_at_open`] when it existed):
/// every such stream must have been claimed in this process since the store was opened (by its own
/// worker's operator, which every worker of the process has built once the frontier moved). One that was
/// not belongs to another process's workers: [`Error::BadInput`] as at build, and the operator stops
/// before it seals anything. Clears `unconfirmed` once confirmed.
pub(crate) fn confirm_layout(store: &Store, stream: &str, unconfirmed: &mut Vec<String>) -> Result<()> {
    if unconfirmed.is_empty() {
        return Ok(());
    }
    let foreign: Vec<String> = unconfirmed
        .iter()
        .filter(|s| !store.claimed_since_open(s))
        .cloned()
        .collect();
    match foreign.is_empty() {
        true => {
            unconfirmed.clear();
            Ok(())
        }
        false => {
            let (id, _) = operator_of(stream).unwrap_or((stream, 0));
            let index = worker_of(stream, id).map_or(0, |w| w.0);
            // This worker's own stream from earlier runs too: the others are no worker's here.
            let own = store.held_data_at_open(stream).is_some();
            Err(foreign_layout(store, id, (index, own), &foreign))
        }
    }
}

/// The error of a store holding `foreign` streams of `id` from earlier runs that no worker of this process
/// writes: none of worker `index` either, or (`own`) worker `index`'s own stream from earlier runs beside
/// them (the directory reopened under another split of processes and workers).
fn foreign_layout(store: &Store, id: &str, (index, own): (usize, bool), foreign: &[String]) -> Error {
    let what = match own {
        true => "which no worker of this process writes".to_string(),
        false => format!("but no stream of worker {index} for {id:?}"),
    };
    Error::bad_input(format!(
        "store {} holds {foreign:?} from earlier runs, {what}: each process must reopen the directory it \
         wrote, with the same number of workers (one directory per process; a cluster rerun with processes \
         and workers split otherwise is refused); to build the id again empty, drop every worker's stream \
         of it (Store::drop_stream)",
        store.blob().location()
    ))
}

/// The dataflow-wide resume point of the persisted operators whose local states are `states` (e.g.
/// [`PersistHandle::resume_state`](super::PersistHandle::resume_state) of each), agreed by every worker of
/// every process: [`agree_resume_state`]'s [`ResumeState::resume_at`]. Every worker must call it, in the
/// same order relative to its other dataflows. Returns the same value on every worker. With one process,
/// and every worker's operators built before any stepped them, it equals each handle's
/// [`resume_at`](super::PersistHandle::resume_at).
pub fn resume_at(worker: &mut Worker, states: &[ResumeState]) -> u64 {
    agree_resume_state(worker, states).resume_at()
}

/// The union of the local states `states` of every worker of every process ([`ResumeState::merge`]):
/// builds and runs a small dataflow that broadcasts each worker's state, so every worker must call it, in
/// the same order relative to its other dataflows. Returns the same state on every worker: feed a
/// replayable input from its [`resume_at`](ResumeState::resume_at), and an input that cannot replay
/// (durable streams) with new updates at or beyond its `greatest_upper` (a worker's own handle sees only
/// its process's streams, and, in a dataflow rebuilt in a running process, the streams as they were when
/// that worker built: another worker's old dataflow may have sealed further meanwhile).
pub fn agree_resume_state(worker: &mut Worker, states: &[ResumeState]) -> ResumeState {
    let local = states
        .iter()
        .copied()
        .reduce(ResumeState::merge)
        .unwrap_or_default();
    let agreed: Rc<RefCell<Option<ResumeState>>> = Rc::default();
    let sink = agreed.clone();
    let probe = ProbeHandle::new();
    let mut input = worker.dataflow::<u64, _, _>(|scope| {
        let (input, stream) = scope.new_input::<Vec<ResumeState>>();
        stream
            .broadcast()
            .inspect(move |state: &ResumeState| {
                let mut agreed = sink.borrow_mut();
                *agreed = Some(agreed.map_or(*state, |a| a.merge(*state)));
            })
            .probe_with(&probe);
        input
    });
    input.send(local);
    drop(input);
    worker.step_while(|| !probe.done());
    let agreed = *agreed.borrow();
    agreed.unwrap_or(local)
}

/// The accessors every persisting operator's handle shares ([`PersistHandle`](super::PersistHandle),
/// [`UpsertHandle`](super::UpsertHandle)): its worker's stream, where its input resumes, and its error
/// slot. The handle has fields `stream` (derefs to `str`), `resume` ([`ResumeState`]), `own_upper`
/// (`u64`) and `errors` ([`ErrorSlot`](crate::trace::ErrorSlot)).
macro_rules! worker_handle_accessors {
    () => {
        /// The store stream this worker persists into (`"{id}/w{index}of{peers}"`).
        pub fn stream_id(&self) -> &str {
            &self.stream
        }

        /// Where the dataflow's input resumes: the same value on every worker of the process (see
        /// [`resume`](crate::operators::resume)). Feed the input from this time on, replaying what earlier
        /// runs were given at later times. In a cluster of processes, agree on the value with
        /// [`resume_at`](crate::operators::resume_at) over [`resume_state`](Self::resume_state).
        /// Closing the input declares that the source ends there: a run that only reads must not close
        /// it (after a crash another worker may hold times this one must still replay, and a close
        /// would skip them for good); advance it to this time and drop the dataflow instead.
        ///
        /// A durable stream's input does not replay: its *new* updates must be at or beyond
        /// [`ResumeState::greatest_upper`](crate::operators::ResumeState::greatest_upper) (after a crash
        /// the workers' uppers may differ, and a worker refuses input below its own upper as a replay,
        /// [`Error::BadInput`](crate::Error::BadInput), stopping).
        pub fn resume_at(&self) -> u64 {
            self.resume.resume_at()
        }

        /// What this store knows of the resume point, to combine across processes with
        /// [`resume_at`](crate::operators::resume_at).
        pub fn resume_state(&self) -> crate::operators::ResumeState {
            self.resume
        }

        /// This worker's stream's sealed upper when the operator was built (at or above
        /// [`resume_at`](Self::resume_at)): input below it was persisted by an earlier run and is dropped
        /// (refused, for a durable stream, whose input must not replay).
        pub fn own_upper(&self) -> u64 {
            self.own_upper
        }

        /// The first error the operator (or its trace's maintenance) met, as a message. After an error
        /// the operator stops and holds its output frontier for good.
        pub fn error(&self) -> Option<String> {
            self.errors.message()
        }

        /// The shared error slot (`Send + Sync`: any thread may wait on it).
        pub fn errors(&self) -> &crate::trace::ErrorSlot {
            &self.errors
        }
    };
}
pub(crate) use worker_handle_accessors;

#[cfg(test)]
#[path = "resume_tests.rs"]
mod tests;
