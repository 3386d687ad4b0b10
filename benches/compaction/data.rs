//! The updates both parts write: 16-byte keys and 100-byte pseudo-random vals.

use crate::common::{hex_key, splitmix64};

pub(crate) const KEY_BYTES: usize = 16;
pub(crate) const VAL_BYTES: usize = 100;
/// Logical bytes of one update (key + val), the denominator of write and space amplification.
pub(crate) const LOGICAL_BYTES: u64 = (KEY_BYTES + VAL_BYTES) as u64;

/// A 16-byte key: 16 hex digits of a splitmix64 of `i` (as in benches/ingest.rs).
pub(crate) fn key_of(i: u64) -> [u8; KEY_BYTES] {
    hex_key(i)
}

/// Appends a 100-byte pseudo-random val derived from `seed`.
pub(crate) fn push_val(seed: u64, out: &mut Vec<u8>) {
    let mut s = seed;
    let mut left = VAL_BYTES;
    while left > 0 {
        s = splitmix64(s);
        let n = left.min(8);
        out.extend_from_slice(&s.to_le_bytes()[..n]);
        left -= n;
    }
}
