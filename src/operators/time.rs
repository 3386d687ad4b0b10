//! [`PersistTime`]: the dataflow timestamps a persisted arrangement can have, and how they map onto the
//! store's `u64` times.
//!
//! The store keeps times as `u64`. A timestamp type `T` qualifies when it is totally ordered and embeds
//! into `u64` losslessly and in order, onto a prefix `0 ..= T::MAX` of the `u64`s: `u8`, `u16`, `u32`,
//! `u64` and `usize` (8 bytes in the store on every platform, like its [`Codec`]); the
//! signed `i8`, `i16`, `i32`, `i64` and `isize`, offset by their minimum (timely's `minimum()` is `MIN`;
//! `i32` is what Rust infers for `advance_to(1)` with nothing else to go by, as in DD's tests), so the
//! store time of `t` is `t - MIN`; `std::time::Duration`, stored in nanoseconds (up to about 584 years);
//! and `Product<(), T>` of those (the timestamp of DD's `examples/arrange.rs`), stored as its inner
//! coordinate. Timely's tuple timestamps are no top-level timestamps (`Refines<()>`), so they are not here.
//!
//! Frontiers convert at the boundary with the store ([`crate::trace::antichain`],
//! [`crate::trace::frontier_value`]): a store frontier value `v` is the `T` frontier `[v]` when `v` fits
//! `T`, and the empty frontier (every time of `T` complete) when it is beyond `T::MAX` — exact, because
//! the embedding is a prefix. A stored *time* that does not fit `T` is never produced: batches holding one
//! are refused when a trace over `T` opens them ([`Error::BadInput`]).

use differential_dataflow::lattice::Lattice;
use differential_dataflow::ExchangeData;
use timely::order::{Product, TotalOrder};
use timely::progress::frontier::AntichainRef;
use timely::progress::timestamp::Refines;
use timely::progress::Stamp;
use timely::progress::Timestamp;

use crate::codec::{time_mismatch, time_part, types_of, with_time_part, Codec};
use crate::error::{Error, Result};

/// A totally ordered timely timestamp that maps losslessly, in order, into the store's `u64` times
/// (see the module docs): `u8`, `u16`, `u32`, `u64`, `usize`, the signed `i8` to `i64` and `isize`
/// (offset by their minimum), `std::time::Duration` (in nanoseconds), and `Product<(), T>` of those. A top-level timestamp (`Refines<()>`), so
/// generic code can build a dataflow with it (`worker.dataflow::<T, _, _>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a timestamp a persisted arrangement can have",
    note = "persisted arrangements take the top-level timestamps `u64`, `u32`, `usize`, `u16`, `u8`, `i64`, `i32`, `isize`, `i16`, `i8`, `std::time::Duration` and `Product<(), T>` of those"
)]
pub trait PersistTime: Timestamp + Refines<()> + Lattice + TotalOrder + ExchangeData + Copy {
    /// The time as the store holds it. Order-preserving: `a <= b` exactly when `a.to_u64() <= b.to_u64()`.
    fn to_u64(self) -> u64;

    /// The time the store's `time` stands for, or `None` if `time` is beyond this type's range.
    /// Inverse of [`to_u64`](Self::to_u64).
    fn from_u64(time: u64) -> Option<Self>;

    /// How [`to_u64`](Self::to_u64) maps a time `t`, when it is not the identity: `"t - i32::MIN"` for
    /// `i32`, `""` (the default) for the unsigned types. A persisted operator records it with its stream's
    /// key and val types, so a restart at another mapping (a dataflow at `i32` times over a stream written
    /// at `u64` times, whose stored times would stand for other times) fails to build with
    /// [`Error::BadInput`] instead of losing or doubling updates. Types of one
    /// mapping (`u32` and `u64`; `i64` and `isize`) read each other's streams.
    fn stored_as() -> &'static str {
        ""
    }
}

impl PersistTime for u64 {
    #[inline(always)]
    fn to_u64(self) -> u64 {
        self
    }
    #[inline(always)]
    fn from_u64(time: u64) -> Option<Self> {
        Some(time)
    }
}

/// Times of the unsigned types no wider than `u64`.
macro_rules! narrow_time {
    ($($t:ty),*) => {$(
        impl PersistTime for $t {
            #[inline(always)]
            fn to_u64(self) -> u64 {
                u64::from(self)
            }
            #[inline(always)]
            fn from_u64(time: u64) -> Option<Self> {
                <$t>::try_from(time).ok()
            }
        }
    )*};
}

narrow_time!(u8, u16, u32);

/// Times of the signed types (`i32` is what Rust infers for `input.advance_to(1)` with nothing else to go
/// by, as in DD's tests): stored offset by the type's minimum (timely's `minimum()` for a signed time is
/// `MIN`), so `MIN` is store time 0 and the order is kept: `to_u64(t) = t - MIN`. `i64::MAX` maps to
/// `u64::MAX`, a time the store refuses (as `u64::MAX` itself).
macro_rules! signed_time {
    ($($t:ty => $u:ty),*) => {$(
        impl PersistTime for $t {
            #[inline(always)]
            fn to_u64(self) -> u64 {
                // Flipping the sign bit maps MIN..=MAX onto 0..=<$u>::MAX in order.
                u64::from((self as $u) ^ (1 << (<$u>::BITS - 1)))
            }
            #[inline(always)]
            fn from_u64(time: u64) -> Option<Self> {
                let unsigned = <$u>::try_from(time).ok()?;
                Some((unsigned ^ (1 << (<$u>::BITS - 1))) as $t)
            }
            fn stored_as() -> &'static str {
                concat!("t - ", stringify!($t), "::MIN")
            }
        }
    )*};
}

signed_time!(i8 => u8, i16 => u16, i32 => u32, i64 => u64);

/// `isize` is stored as `i64` (offset by `i64::MIN`, as the other signed times by their minimum).
impl PersistTime for isize {
    #[inline(always)]
    fn to_u64(self) -> u64 {
        i64::try_from(self).unwrap_or(i64::MAX).to_u64()
    }
    #[inline(always)]
    fn from_u64(time: u64) -> Option<Self> {
        i64::from_u64(time).and_then(|t| isize::try_from(t).ok())
    }
    fn stored_as() -> &'static str {
        i64::stored_as()
    }
}

/// `usize` is stored as `u64` (8 bytes). On a target whose `usize` were wider than 64 bits, times beyond
/// `u64` would saturate to `u64::MAX`, a time the store refuses; no such target runs timely today.
impl PersistTime for usize {
    #[inline(always)]
    fn to_u64(self) -> u64 {
        u64::try_from(self).unwrap_or(u64::MAX)
    }
    #[inline(always)]
    fn from_u64(time: u64) -> Option<Self> {
        usize::try_from(time).ok()
    }
}

/// `std::time::Duration` (a timestamp timely and DD take: wall-clock times, as in DD's `examples/`), stored
/// as whole nanoseconds: `0 ..= u64::MAX` ns (about 584 years) embeds in order. A `Duration` beyond it
/// saturates to `u64::MAX`, a time the store refuses (as `i64::MAX`'s), and a frontier there is the
/// closed frontier, exact since no time it leaves open can be stored.
impl PersistTime for std::time::Duration {
    #[inline(always)]
    fn to_u64(self) -> u64 {
        u64::try_from(self.as_nanos()).unwrap_or(u64::MAX)
    }
    #[inline(always)]
    fn from_u64(time: u64) -> Option<Self> {
        Some(std::time::Duration::from_nanos(time))
    }
    fn stored_as() -> &'static str {
        "t in nanoseconds"
    }
}

/// `Product<(), T>`, the top-level timestamp DD's `examples/arrange.rs` uses (`worker.dataflow::<Product<(),
/// usize>, _, _>`): totally ordered by its inner coordinate, stored as that coordinate's `u64`.
impl<T: PersistTime> PersistTime for Product<(), T> {
    #[inline(always)]
    fn to_u64(self) -> u64 {
        self.inner.to_u64()
    }
    #[inline(always)]
    fn from_u64(time: u64) -> Option<Self> {
        T::from_u64(time).map(|inner| Product::new((), inner))
    }
    fn stored_as() -> &'static str {
        T::stored_as()
    }
}

/// What a persisted operator at times `T` records as its stream's types ([`Store::check_types`]): the
/// key's and val's ([`types_of`]), then, for times not stored as themselves, `"; time stored as "` and
/// [`PersistTime::stored_as`]. Streams of unsigned times record what earlier releases did.
///
/// [`Store::check_types`]: crate::Store::check_types
pub(crate) fn types_at<K: Codec, V: Codec, T: PersistTime>() -> String {
    with_time_part(types_of::<K, V>(), T::stored_as())
}

/// [`Error::BadInput`] unless stream `id`, whose recorded types are `recorded`, holds times stored as `T`
/// stores them. A stream that records no types (written by the byte-level API) is not checked.
pub(crate) fn refuse_other_time<T: PersistTime>(id: &str, recorded: &str) -> Result<()> {
    if recorded.is_empty() || time_part(recorded) == T::stored_as() {
        return Ok(());
    }
    Err(time_mismatch(id, time_part(recorded), T::stored_as()))
}

/// Fails with [`Error::BadInput`] naming `operator` if one of `times` (the updates of one input message)
/// is not at or beyond an element of the message's `stamp`. Timely's contract: a collection's updates are
/// never before the times of the message that carries them (what progress tracking relies on; a message
/// sent under no capability has an empty stamp and no such time). Such an update cannot be persisted at
/// its time, nor passed on, nor told from a replay of persisted input, so a persisting operator refuses
/// it, stops and holds its frontier (found by adversarial round 9: the de-upsert operator panicked on
/// one, in timely's `delayed`; the others dropped it as a replay).
pub(crate) fn check_message_times<'a, T: Timestamp>(
    operator: &str,
    stamp: &Stamp<T>,
    mut times: impl Iterator<Item = &'a T>,
) -> Result<()> {
    match times.find(|t| !stamp.iter().any(|s| s.less_equal(t))) {
        None => Ok(()),
        Some(t) => Err(Error::bad_input(format!(
            "operator {operator:?} received an update at time {t:?} in a message at times {:?}: a \
             collection's updates are never before their message's time (timely's contract); the operator \
             stops and holds its frontier",
            stamp.iter().collect::<Vec<_>>()
        ))),
    }
}

/// Fails with [`Error::BadInput`] naming `operator`, a durable persisting operator whose stream is sealed
/// up to `upper`, if one of `times` (an input message's) is below `upper`. A durable stream keeps its
/// unsealed updates across a restart, so its input must not replay (README, "Restarting"): a time below
/// the upper can only be a replay, and an input that replays those re-sends the recovered unsealed ones
/// too, which the operator would take as new and count twice. That is what every persisted operator
/// upstream does on restart (it re-emits what it persisted: `persist` its recovered unsealed updates
/// too), so only an operator fed by a source that cannot replay is durable; the operator stops and holds
/// its frontier if it held unsealed updates (`operators::replays`) (adversarial round 11: a durable `persist` or arrangement feeding a durable arrangement
/// held a row sent once twice after a restart). The times at or beyond the upper cannot tell a replay:
/// an input that replays only those is not found.
pub(crate) fn refuse_replay<'a, T: PersistTime>(
    operator: &str,
    upper: u64,
    mut times: impl Iterator<Item = &'a T>,
) -> Result<()> {
    match times.find(|t| t.to_u64() < upper) {
        None => Ok(()),
        Some(t) => Err(Error::bad_input(format!(
            "durable operator {operator:?} received an update at time {t:?}, below its upper {upper}: its \
             input replays (as every persisted operator does on restart, and a source fed from resume_at), \
             and a durable stream, which keeps its unsealed updates, would count those twice; build an \
             operator fed by a persisted one (or by a source that replays) not durable, after retiring its \
             id (Store::drop_stream); the operator stops and holds its frontier"
        ))),
    }
}

/// How far an operator's input `frontier` completes times, as a store time: [`crate::FRONTIER_CLOSED`] once the
/// input is exhausted; a frontier at `u64::MAX`, a time the store cannot hold, completes the times below it
/// only.
pub(crate) fn input_bound<T: PersistTime>(frontier: AntichainRef<T>) -> u64 {
    if frontier.is_empty() {
        crate::FRONTIER_CLOSED
    } else {
        crate::trace::frontier_value(frontier).min(crate::FRONTIER_CLOSED - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::PersistTime;

    #[test]
    fn times_round_trip_in_order() {
        for t in [
            0u64,
            1,
            255,
            256,
            65_535,
            65_536,
            u64::from(u32::MAX),
            u64::from(u32::MAX) + 1,
        ] {
            assert_eq!(u64::from_u64(t).map(PersistTime::to_u64), Some(t));
            assert_eq!(usize::from_u64(t).map(PersistTime::to_u64), Some(t));
            assert_eq!(
                u32::from_u64(t).map(PersistTime::to_u64),
                (t <= u64::from(u32::MAX)).then_some(t)
            );
            assert_eq!(
                u16::from_u64(t).map(PersistTime::to_u64),
                (t <= 65_535).then_some(t)
            );
            assert_eq!(u8::from_u64(t).map(PersistTime::to_u64), (t <= 255).then_some(t));
            assert_eq!(
                timely::order::Product::<(), usize>::from_u64(t).map(PersistTime::to_u64),
                Some(t)
            );
        }
        assert!(3u32.to_u64() < 4u32.to_u64());
    }

    #[test]
    fn signed_times_round_trip_in_order_from_their_minimum() {
        let i32s = [i32::MIN, i32::MIN + 1, -1, 0, 1, 7, i32::MAX];
        assert_eq!(i32::MIN.to_u64(), 0, "timely's minimum is store time 0");
        assert_eq!(i32::MAX.to_u64(), u64::from(u32::MAX));
        for w in i32s.windows(2) {
            assert!(w[0].to_u64() < w[1].to_u64(), "{w:?}");
        }
        for t in i32s {
            assert_eq!(i32::from_u64(t.to_u64()), Some(t));
            assert_eq!(i64::from_u64(i64::from(t).to_u64()), Some(i64::from(t)));
            assert_eq!(isize::from_u64((t as isize).to_u64()), Some(t as isize));
        }
        assert_eq!(i32::from_u64(u64::from(u32::MAX) + 1), None, "beyond i32::MAX");
        assert_eq!(i64::MIN.to_u64(), 0);
        assert_eq!(i64::MAX.to_u64(), u64::MAX);
        assert_eq!(i8::from_u64(0), Some(i8::MIN));
        assert_eq!(i16::from_u64(u64::from(u16::MAX)), Some(i16::MAX));
    }

    #[test]
    fn a_stream_records_how_its_times_are_stored() {
        use super::{refuse_other_time, types_at};
        use crate::codec::{key_val_part, time_part};
        use timely::order::Product;
        let unsigned = types_at::<u64, String, u64>();
        assert_eq!(unsigned, "key u64, val String", "as earlier releases recorded");
        assert_eq!(types_at::<u64, String, u32>(), unsigned);
        assert_eq!(types_at::<u64, String, Product<(), usize>>(), unsigned);
        let signed = types_at::<u64, String, i32>();
        assert_eq!(signed, "key u64, val String; time stored as t - i32::MIN");
        assert_eq!(key_val_part(&signed), unsigned);
        assert_eq!(time_part(&signed), "t - i32::MIN");
        assert_eq!(time_part(&unsigned), "");
        assert_eq!(types_at::<u64, String, isize>(), types_at::<u64, String, i64>());
        assert_ne!(types_at::<u64, String, i64>(), signed);

        assert!(refuse_other_time::<u64>("s", &unsigned).is_ok());
        assert!(refuse_other_time::<i32>("s", &signed).is_ok());
        assert!(refuse_other_time::<Product<(), i32>>("s", &signed).is_ok());
        assert!(refuse_other_time::<i32>("s", "").is_ok(), "nothing recorded");
        let e = refuse_other_time::<i32>("s", &unsigned).unwrap_err().to_string();
        assert!(e.contains("stored as t, not as t - i32::MIN"), "{e}");
        assert!(refuse_other_time::<u64>("s", &signed).is_err());
        assert!(refuse_other_time::<i64>("s", &signed).is_err());
    }
}
