//! The workload: keys, vals, how a store of `n` updates is sealed ([`Shape`]), and the same updates in key
//! order as DD's in-memory batches (`BytesLayout` and `Vector`).

use crate::common::{hex_key, splitmix64};
use crate::MAX_SEAL;
use ddpersist::trace::{BytesBatch, BytesBuilder, BytesUpdate};
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, VecOrdValBuilder};
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::Builder;

pub(crate) const KEY_BYTES: usize = 16;
const VAL_BYTES: usize = 100;
pub(crate) const RECORD: usize = KEY_BYTES + VAL_BYTES;

/// DD's default in-memory batch layout: `Vec<Vec<u8>>` keys and vals.
type VecBatch = OrdValBatch<Vector<((Vec<u8>, Vec<u8>), u64, i64)>>;
type VecBuilder = VecOrdValBuilder<Vec<u8>, Vec<u8>, u64, i64>;

/// Key `i`: 16 lowercase hex digits of splitmix64(i) (a bijection, so keys `i >= n` are misses).
pub(crate) fn key(i: u64) -> [u8; KEY_BYTES] {
    hex_key(i)
}

/// Val `i`: pseudo-random bytes.
pub(crate) fn val(i: u64) -> [u8; VAL_BYTES] {
    let mut v = [0u8; VAL_BYTES];
    let mut s = splitmix64(i ^ 0x5555_5555_5555_5555);
    for piece in v.chunks_mut(8) {
        s = splitmix64(s);
        piece.copy_from_slice(&s.to_le_bytes()[..piece.len()]);
    }
    v
}

/// How a store of `n` updates is sealed: `seals` seals of `seal` updates (the last may be short); update
/// `i` has time `i / seal`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shape {
    pub(crate) n: usize,
    pub(crate) seal: usize,
}

impl Shape {
    pub(crate) fn new(n: usize) -> Self {
        let seals = n.div_ceil(MAX_SEAL).next_power_of_two().max(8);
        Shape {
            n,
            seal: n.div_ceil(seals).max(1),
        }
    }
    pub(crate) fn seals(&self) -> usize {
        self.n.div_ceil(self.seal)
    }
    fn time(&self, i: usize) -> u64 {
        (i / self.seal) as u64
    }
    /// A time at or beyond every update's.
    pub(crate) fn as_of(&self) -> u64 {
        self.seals() as u64 - 1
    }
    pub(crate) fn marker(&self) -> String {
        format!(
            "read-bench v1 n={} seal={} key={KEY_BYTES} val={VAL_BYTES}\n",
            self.n, self.seal
        )
    }
}

/// Update indexes `0..n` in key order.
pub(crate) fn key_order(n: usize) -> Vec<u32> {
    let mut v: Vec<(u64, u32)> = (0..n as u32).map(|i| (splitmix64(i as u64), i)).collect();
    v.sort_unstable();
    v.into_iter().map(|(_, i)| i).collect()
}

/// The updates with indexes `order`, owned as DD's builders and batchers take them.
pub(crate) fn updates(shape: Shape, order: impl Iterator<Item = usize>) -> Vec<BytesUpdate> {
    order
        .map(|i| {
            let u = i as u64;
            ((key(u).to_vec(), val(u).to_vec()), shape.time(i), 1)
        })
        .collect()
}

pub(crate) fn build_bytes(mut sorted: Vec<BytesUpdate>) -> BytesBatch {
    let n = sorted.len();
    let mut builder = BytesBuilder::with_capacity(n, n, n);
    builder.push(&mut sorted);
    builder.done().unwrap()
}

pub(crate) fn build_vec(mut sorted: Vec<BytesUpdate>) -> VecBatch {
    let n = sorted.len();
    let mut builder = VecBuilder::with_capacity(n, n, n);
    builder.push(&mut sorted);
    builder.done().unwrap()
}
