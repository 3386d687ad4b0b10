//! `append`: a whole sealed interval written at once, for sources that need durability only at the seal.
//!
//! [`Store::write_bytes`] makes every call durable on its own (a WAL record and its `fdatasync`), and its
//! updates are copied into the memtable, sorted and written again when sealed. A source that has a whole
//! interval `[lower, upper)` sorted in hand (a DD batch, a sorted file, a replayed log segment) and is
//! durable only once the interval is sealed skips all of that: [`Store::append_bytes`] streams its updates
//! straight into one batch file and commits it with the new upper in one manifest edit — the bytes are
//! written once, with no WAL copy and no sort (the path Materialize's persist takes: write the batch, then
//! commit a pointer to it, `compare_and_append`). `lower` must be the stream's upper (compare-and-append:
//! a writer that lost track of the stream learns it from [`Error::UpperMismatch`] and resumes there).
//!
//! Updates that `write` put below `upper` (in the memtable or spilled runs) are sealed into the same batch:
//! `append` is a seal with more updates, and the stream's invariants are the seal's.

use super::flush::Appended;
use super::streams::CheckedStream;
use super::*;
use std::cmp::Ordering;

impl Store {
    /// Appends the interval `[lower, upper)` to stream `id`: `updates` become one batch file with
    /// description `[lower, upper)` (together with any updates earlier `write`s put below `upper`), and the
    /// stream's upper moves to `upper`, in one manifest commit. Durable when it returns; nothing goes
    /// through the WAL. `updates` must be sorted by `(key, val, time)` (bytes, then time), hold each
    /// `(key, val, time)` once, with nonzero diffs and times in `[lower, upper)`; they are checked as they
    /// are written (no copy and no sort when the stream holds nothing else below `upper`).
    ///
    /// `updates` is read while the store's seal lock is held (every stream's seals, spills and merge
    /// commits wait meanwhile): it must not call into this `Store` (that would deadlock), and should be
    /// quick (data in hand, not a network read). An append clears the stream's `finished` mark, as a
    /// [`seal`](Self::seal) does.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::UpperMismatch`] if `lower` is not the stream's upper —
    /// after its logged seals ([`seal_logged`](Self::seal_logged)) are completed, or the upper of one
    /// logged meanwhile (nothing changes: continue from the upper it names); an error of completing the
    /// logged seals; [`Error::BadInput`] if `upper` is not above
    /// `lower`, an update breaks the order, repeats a `(key, val, time)`, has a zero diff, a time
    /// outside `[lower, upper)`, a key over 16 MiB or a val over 64 MiB — then nothing changes (the partial
    /// file is removed; the same if the iterator panics), or while a persisted operator writes the stream
    /// (its dataflow is running); [`Error::DiffOverflow`] as for [`seal`](Self::seal) when updates written earlier
    /// below `upper` sum with these outside `i64`; I/O errors (nothing changes); a failed manifest commit
    /// poisons the store, as for `seal`.
    pub fn append_bytes<'a>(
        &self,
        id: &str,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
        lower: u64,
        upper: u64,
    ) -> Result<SealInfo> {
        let _admitted = self.refuse_claimed(id)?;
        self.append_checked(id, CheckedStream::Unchecked, updates, (lower, upper))
    }

    /// [`append_bytes`](Self::append_bytes) to the stream a typed call `checked` the types of:
    /// [`Error::UnknownStream`] if the id names another stream by now (or none was there at the check).
    pub(super) fn append_checked<'a>(
        &self,
        id: &str,
        checked: CheckedStream,
        updates: impl IntoIterator<Item = UpdateRef<'a>>,
        (lower, upper): (u64, u64),
    ) -> Result<SealInfo> {
        if upper <= lower {
            return Err(Error::bad_input(format!(
                "append to {id:?} of [{lower}, {upper}): the upper must be above the lower"
            )));
        }
        let updates = updates.into_iter();
        let exact_count = match updates.size_hint() {
            (low, Some(high)) if low == high => Some(low as u64),
            _ => None,
        };
        let mut checked_updates = Checked {
            inner: updates,
            range: (lower, upper),
            prev: None,
            failed: false,
        };
        let appended = Appended {
            lower,
            exact_count,
            updates: &mut checked_updates,
            checked,
        };
        self.seal_appending(id, upper, SealOptions::default(), Some(appended))
    }

    /// Typed [`append_bytes`](Self::append_bytes): `updates` sorted by `(key, val, time)` in the keys' and
    /// vals' [`Codec`] order (which is their encodings' byte order). Errors: as `append_bytes`, and
    /// [`Error::BadInput`] if the stream records other key or val types ([`check_types`](Self::check_types)),
    /// [`Error::UnknownStream`] if the id was dropped and created again between that check and the append.
    pub fn append<K: Codec, V: Codec>(
        &self,
        id: &str,
        updates: &[(K, V, u64, i64)],
        lower: u64,
        upper: u64,
    ) -> Result<SealInfo> {
        let _admitted = self.refuse_claimed(id)?;
        let checked = self.refuse_other_types::<K, V>(id)?;
        let encoded = super::write::Encoded::new(updates);
        self.append_checked(id, checked, encoded.iter(), (lower, upper))
    }
}

/// Checks an appended update stream against [`Store::append_bytes`]'s contract as it is read; the first
/// violation is a [`Error::BadInput`] and ends the stream.
struct Checked<'a, I> {
    inner: I,
    range: (u64, u64),
    prev: Option<UpdateRef<'a>>,
    failed: bool,
}

impl<'a, I: Iterator<Item = UpdateRef<'a>>> Checked<'a, I> {
    fn check(&self, (key, val, time, diff): UpdateRef<'a>) -> Result<()> {
        let (lower, upper) = self.range;
        if key.len() > MAX_KEY_BYTES || val.len() > MAX_VAL_BYTES {
            return Err(Error::bad_input(format!(
                "appended key of {} or val of {} bytes over the limit",
                key.len(),
                val.len()
            )));
        }
        if time < lower || time >= upper {
            return Err(Error::bad_input(format!(
                "appended update at time {time} outside [{lower}, {upper})"
            )));
        }
        if diff == 0 {
            return Err(Error::bad_input("appended update with a zero diff"));
        }
        if let Some((pk, pv, pt, _)) = self.prev {
            let order = pk.cmp(key).then(pv.cmp(val)).then(pt.cmp(&time));
            if order != Ordering::Less {
                return Err(Error::bad_input(
                    "appended updates not sorted by (key, val, time), or one (key, val, time) twice",
                ));
            }
        }
        Ok(())
    }
}

impl<'a, I: Iterator<Item = UpdateRef<'a>>> Iterator for Checked<'a, I> {
    type Item = Result<UpdateRef<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let update = self.inner.next()?;
        if let Err(e) = self.check(update) {
            self.failed = true;
            return Some(Err(e));
        }
        self.prev = Some(update);
        Some(Ok(update))
    }
}
