//! [`PersistTime`]: the dataflow timestamps a persisted arrangement can have, and how they map onto the
//! store's `u64` times.
//!
//! The store keeps times as `u64`. A timestamp type `T` qualifies when it is totally ordered and embeds
//! into `u64` losslessly and in order, onto a prefix `0 ..= T::MAX` of the `u64`s: `u8`, `u16`, `u32`,
//! `u64` and `usize` (8 bytes in the store on every platform, like its [`Codec`](crate::Codec)), and
//! `Product<(), T>` of those (the timestamp of DD's `examples/arrange.rs`), stored as its inner coordinate.
//!
//! Frontiers convert at the boundary with the store ([`crate::trace::antichain`],
//! [`crate::trace::frontier_value`]): a store frontier value `v` is the `T` frontier `[v]` when `v` fits
//! `T`, and the empty frontier (every time of `T` complete) when it is beyond `T::MAX` — exact, because
//! the embedding is a prefix. A stored *time* that does not fit `T` is never produced: batches holding one
//! are refused when a trace over `T` opens them ([`Error::BadInput`](crate::Error::BadInput)).

use differential_dataflow::lattice::Lattice;
use differential_dataflow::ExchangeData;
use timely::order::{Product, TotalOrder};
use timely::progress::timestamp::Refines;
use timely::progress::Timestamp;

/// A totally ordered timely timestamp that maps losslessly, in order, into the store's `u64` times
/// (see the module docs): `u8`, `u16`, `u32`, `u64`, `usize`, and `Product<(), T>` of those. A top-level timestamp (`Refines<()>`), so
/// generic code can build a dataflow with it (`worker.dataflow::<T, _, _>`).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a timestamp a persisted arrangement can have",
    note = "persisted arrangements take the top-level timestamps `u64`, `u32`, `usize`, `u16`, `u8` and `Product<(), T>` of those"
)]
pub trait PersistTime: Timestamp + Refines<()> + Lattice + TotalOrder + ExchangeData + Copy {
    /// The time as the store holds it. Order-preserving: `a <= b` exactly when `a.to_u64() <= b.to_u64()`.
    fn to_u64(self) -> u64;

    /// The time the store's `time` stands for, or `None` if `time` is beyond this type's range.
    /// Inverse of [`to_u64`](Self::to_u64).
    fn from_u64(time: u64) -> Option<Self>;
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
}
