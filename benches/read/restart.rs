//! Part 3, `restart`: opening the store (warm and cold page cache) to its first read, against rebuilding
//! DD's in-memory batch from updates already in memory.

use crate::common::restart::open_get;
use crate::data::{build_bytes, build_vec, key, key_order, updates, Shape};
use crate::store::{dir_bytes, ensure_store, evict};
use crate::walks::{probe, AsNum, Sums};
use crate::{CHUNK, STREAM};
use ddpersist::trace::{BytesBatcher, BytesUpdate, PersistedTrace};
use ddpersist::Store;
use differential_dataflow::batcher::{Batcher, Extract};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Cursor, TraceReader};
use std::path::Path;
use std::time::{Duration, Instant};
use timely::progress::Antichain;

/// Part 3's measurements (each a list of samples).
#[derive(Default)]
pub(crate) struct Restart {
    pub(crate) n: usize,
    pub(crate) batches: usize,
    pub(crate) store_bytes: u64,
    pub(crate) wal_bytes: u64,
    pub(crate) cold_ok: bool,
    pub(crate) open: Vec<Duration>,
    pub(crate) open_get: Vec<Duration>,
    pub(crate) open_trace: Vec<Duration>,
    pub(crate) cold_open_get: Vec<Duration>,
    pub(crate) cold_open_trace: Vec<Duration>,
    pub(crate) rebuild_bytes: Vec<Duration>,
    pub(crate) rebuild_vec: Vec<Duration>,
    pub(crate) batcher: Vec<Duration>,
}

/// Store::open, PersistedTrace::open (no block read; blocks checksummed on first touch), then a cursor lookup of `probe`.
fn open_trace(dir: &Path, probe: &[u8], as_of: u64) -> Duration {
    let start = Instant::now();
    let store = Store::open(dir).unwrap();
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let upper = trace.upper().clone();
    let (mut cursor, storage) = cursor_list(trace.batches_through(upper.borrow()).unwrap());
    let mut s = Sums::default();
    probe_list(&mut cursor, &storage, probe, as_of, &mut s);
    let total = start.elapsed();
    assert_eq!(s.vals, 1);
    drop((cursor, storage, trace, store));
    total
}

fn probe_list<C>(cursor: &mut C, storage: &C::Storage, key: &[u8], as_of: u64, s: &mut Sums)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8]>,
    for<'a> C::TimeGat<'a>: AsNum,
    for<'a> C::DiffGat<'a>: AsNum,
{
    probe(cursor, storage, key, as_of, s)
}

pub(crate) fn restart(tmp: &Path, n: usize, samples: usize) -> Restart {
    let shape = Shape::new(n);
    let dir = ensure_store(tmp, shape);
    let as_of = shape.as_of();
    let probe = key(n as u64 / 2);
    let mut r = Restart {
        n,
        store_bytes: dir_bytes(&dir),
        wal_bytes: dir_bytes(&dir.join("wal")),
        ..Restart::default()
    };
    {
        let store = Store::open(&dir).unwrap();
        r.batches = store.sealed(STREAM).unwrap().batches.len();
    }
    eprintln!("restart: {n} updates, {} batch file(s)", r.batches);
    // One untimed open first, so the page cache holds the store for the warm runs.
    open_trace(&dir, &probe, as_of);
    for _ in 0..samples {
        let (open, total) = open_get(&dir, STREAM, &probe, as_of);
        r.open.push(open);
        r.open_get.push(total);
        r.open_trace.push(open_trace(&dir, &probe, as_of));
    }
    r.cold_ok = evict(&dir);
    if r.cold_ok {
        for _ in 0..samples {
            evict(&dir);
            r.cold_open_get.push(open_get(&dir, STREAM, &probe, as_of).1);
            evict(&dir);
            r.cold_open_trace.push(open_trace(&dir, &probe, as_of));
        }
    }
    let order = key_order(n);
    for _ in 0..samples {
        let sorted = updates(shape, order.iter().map(|&i| i as usize));
        let start = Instant::now();
        let batch = build_bytes(sorted);
        r.rebuild_bytes.push(start.elapsed());
        assert_eq!(batch.updates, n);
        drop(batch);
        let sorted = updates(shape, order.iter().map(|&i| i as usize));
        let start = Instant::now();
        let batch = build_vec(sorted);
        r.rebuild_vec.push(start.elapsed());
        assert_eq!(batch.updates, n);
        drop(batch);
    }
    drop(order);
    // Arrival order (by index: keys unsorted), in chunks as an `arrange` would receive them.
    let mut chunks: Vec<Vec<BytesUpdate>> = (0..n)
        .step_by(CHUNK)
        .map(|lo| updates(shape, lo..(lo + CHUNK).min(n)))
        .collect();
    let start = Instant::now();
    let mut batcher = BytesBatcher::new(None, 0);
    for chunk in chunks.iter_mut() {
        batcher.insert(chunk);
    }
    let upper = Antichain::from_elem(shape.seals() as u64);
    let (batch, _) = batcher.extract(upper.borrow());
    r.batcher.push(start.elapsed());
    assert_eq!(batch.map_or(0, |b| b.updates), n);
    r
}
