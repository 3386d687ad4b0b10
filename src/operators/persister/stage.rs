//! The input path of a [`Persister`]: refusing an input message's times, staging its updates (encoded by
//! their [`Codec`], with the check that the encoding orders as `Ord` does, unless the types order by
//! construction) and writing them to the store.

use super::{Persister, FLUSH_BYTES};
use crate::codec::{truncated, Codec};
use crate::error::Error;
use crate::operators::PersistTime;
use timely::progress::Stamp;

impl Persister {
    /// Stops the persister if one of an input message's `times` is before its `stamp`, or, for a durable
    /// stream, below its upper ([`crate::operators::time::refuse_replay`]); returns whether.
    pub(crate) fn refuse_times<'a, T: PersistTime>(
        &mut self,
        message: &Stamp<T>,
        times: impl Iterator<Item = &'a T> + Clone,
    ) -> bool {
        let mut check = crate::operators::time::check_message_times(&self.stream, message, times.clone());
        if self.durability.durable && check.is_ok() {
            check = crate::operators::replays::refuse_replay(
                &self.store,
                &self.stream,
                (self.upper, self.durability.held_unsealed),
                times,
            );
        }
        check.map_err(|e| self.fail(e)).is_err()
    }

    /// Encodes the updates of `data` not yet persisted into the staging buffer, and clears `data`.
    ///
    /// Checks, for each update and the one staged before it from `data`, that the encodings of their
    /// `(key, val)` compare as the values do under `Ord` (the [`Codec`] contract: a type whose encoding
    /// orders or equates values unlike its `Ord` — an enum with explicit discriminants or a
    /// `std::cmp::Reverse` field through `serde_codec!`, a hand-written `Ord` — would give other answers
    /// than DD's in-memory arrangement, since the store sorts and groups by bytes). A disagreement stops
    /// the persister with [`Error::BadInput`] naming the types (a check of neighbours in input order: it
    /// finds a codec that misorders common values at once, not every one). Skipped when both `K` and `V`
    /// order by construction ([`Codec::ORDERED`]: the built-in types and compositions of them), where the
    /// check cost two byte comparisons and an `Ord` comparison an update on the worker's thread (a seventh
    /// of its time staging `(u64, u64)` updates).
    pub(crate) fn stage<K, V, T, R>(&mut self, data: &mut Vec<((K, V), T, R)>)
    where
        K: Codec + Ord,
        V: Codec + Ord,
        T: PersistTime,
        R: crate::operators::PersistDiff,
    {
        self.took_input = true;
        let mut replayed = 0;
        let mut previous: Option<(&(K, V), usize)> = None;
        let check_order = !(K::ORDERED && V::ORDERED);
        for (kv, time, diff) in data.iter() {
            let diff = &diff.to_i64();
            let time = &time.to_u64();
            if self.stopped || *diff == 0 {
                continue;
            }
            if *time < self.upper {
                replayed += 1;
                continue;
            }
            let start = self.buf.len();
            kv.0.encode(&mut self.buf);
            let mid = self.buf.len();
            kv.1.encode(&mut self.buf);
            self.staged.push((start, mid, self.buf.len(), *time, *diff));
            if let Some((prev, at)) = previous {
                let (p_start, p_mid, p_end, ..) = self.staged[at];
                let bytes = (&self.buf[start..mid], &self.buf[mid..]);
                let prev_bytes = (&self.buf[p_start..p_mid], &self.buf[p_mid..p_end]);
                if prev.cmp(kv) != prev_bytes.cmp(&bytes) {
                    self.fail(Error::bad_input(format!(
                        "the Codec of ({}, {}) orders two updates' (key, val) unlike their Ord (encodings \
                         {:02x?} and {:02x?}, key then val): the store would sort or group them unlike DD's \
                         arrangement \
                         (enum variants with explicit discriminants, `Reverse` fields and hand-written `Ord`s \
                         do not order as serde encodes them; see `codec::ordered_serde`)",
                        K::schema(),
                        V::schema(),
                        (truncated(prev_bytes.0), truncated(prev_bytes.1)),
                        (truncated(bytes.0), truncated(bytes.1)),
                    )));
                    continue;
                }
            }
            if check_order {
                previous = Some((kv, self.staged.len() - 1));
            }
            if self.buf.len() + 24 * self.staged.len() >= FLUSH_BYTES {
                self.write_staged();
                previous = None;
            }
        }
        if replayed > 0 {
            self.shared.replayed.set(self.shared.replayed.get() + replayed);
        }
        data.clear();
    }

    /// Writes the staged updates to the store in one call.
    pub(crate) fn write_staged(&mut self) {
        let marked = !self.stopped && self.durability.held_unsealed;
        if let Err(e) = crate::operators::replays::refused_by_sibling(&self.store, &self.stream, marked) {
            self.fail(e);
        }
        if self.stopped {
            // A stopped persister writes nothing more (module docs).
            self.staged.clear();
            self.buf.clear();
        }
        if self.staged.is_empty() {
            return;
        }
        if let Some(manager) = &self.throttle {
            manager.throttle(self.buf.len() + 24 * self.staged.len());
        }
        let buf = &self.buf;
        let updates = self
            .staged
            .iter()
            .map(|&(s, m, e, t, d)| (&buf[s..m], &buf[m..e], t, d));
        match self.store.write_bytes_claimed(&self.stream, updates) {
            Ok(()) => {
                let mut last = None;
                for &(_, _, _, time, _) in &self.staged {
                    if last != Some(time) {
                        self.pending.insert(time);
                        last = Some(time);
                    }
                }
            }
            Err(e) => self.fail(e),
        }
        self.staged.clear();
        self.buf.clear();
    }
}
