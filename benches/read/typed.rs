//! Part 4, `typed_scan`: the cost of typed access. A store of typed updates, DD's typed in-memory batch of
//! the same updates, and the walks that decode (or not) each key and val.

use crate::common::splitmix64;
use crate::data::Shape;
use crate::timing::{bench, configure};
use crate::walks::{persisted_batch, scan};
use crate::STREAM;
use criterion::{Criterion, Throughput};
use ddpersist::trace::{PersistedBatch, PersistedTrace};
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::trace::implementations::ord_neu::{OrdValBatch, VecOrdValBuilder};
use differential_dataflow::trace::implementations::Vector;
use differential_dataflow::trace::{Builder, Cursor, Navigable};
use std::path::PathBuf;

/// Typed val `i`: 100 characters (hex digits of a pseudo-random sequence).
fn typed_val(i: u64) -> String {
    let mut out = String::with_capacity(100);
    let mut s = i ^ 0x5555_5555_5555_5555;
    while out.len() < 100 {
        s = splitmix64(s);
        out.push_str(&format!("{s:016x}"));
    }
    out.truncate(100);
    out
}

/// DD's in-memory batch of the typed updates.
type TypedBatch = OrdValBatch<Vector<((u64, String), u64, i64)>>;

/// What a typed walk saw: keys, vals, updates, the sum of the keys, of the vals' lengths and last bytes,
/// of the times and of the diffs.
type TypedSums = (u64, u64, u64, u64, u64, u64, u64);

/// The typed walk over DD's in-memory batch (`&u64` keys, `&String` vals).
fn scan_inmem_typed(batch: &TypedBatch) -> TypedSums {
    let mut s: TypedSums = Default::default();
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        s.0 += 1;
        s.3 = s.3.wrapping_add(*key);
        while let Some(val) = cursor.get_val(batch) {
            s.1 += 1;
            s.4 += val.len() as u64 + u64::from(val.as_bytes()[val.len() - 1]);
            cursor.map_times(batch, |t, d| {
                s.2 += 1;
                s.5 = s.5.wrapping_add(*t);
                s.6 = s.6.wrapping_add(*d as u64);
            });
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
    s
}

/// The typed walk over the persisted batch: each key decoded as `u64`, each val as `String`.
fn scan_persisted_typed(batch: &PersistedBatch) -> TypedSums {
    use ddpersist::Codec;
    let mut s: TypedSums = Default::default();
    let mut cursor = batch.cursor();
    while let Some(key) = cursor.get_key(batch) {
        let key = u64::decode(key).expect("a u64 key");
        s.0 += 1;
        s.3 = s.3.wrapping_add(key);
        while let Some(val) = cursor.get_val(batch) {
            let val = String::decode(val).expect("a String val");
            s.1 += 1;
            s.4 += val.len() as u64 + u64::from(val.as_bytes()[val.len() - 1]);
            cursor.map_times(batch, |t, d| {
                s.2 += 1;
                s.5 = s.5.wrapping_add(t);
                s.6 = s.6.wrapping_add(d as u64);
            });
            cursor.step_val(batch);
        }
        cursor.step_key(batch);
    }
    s
}

/// Part 4: the typed store, DD's typed batch, and the three walks.
pub(crate) fn typed_benches(c: &mut Criterion, n: usize) {
    use ddpersist::Codec;
    let dir = tempfile_dir();
    let shape = Shape::new(n);
    let store = Store::open_with(
        &dir,
        Options {
            compaction_threads: 0,
            memtable_budget_bytes: 1 << 30,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream(STREAM, StreamOptions::default()).unwrap();
    let mut sorted: Vec<((u64, String), u64, i64)> = Vec::with_capacity(n);
    for s in 0..shape.seals() {
        let (lo, hi) = (s * shape.seal, ((s + 1) * shape.seal).min(n));
        let mut encoded = Vec::with_capacity(hi - lo);
        for i in lo..hi {
            let (k, v) = (splitmix64(i as u64), typed_val(i as u64));
            encoded.push((k.to_bytes(), v.to_bytes()));
            sorted.push(((k, v), s as u64, 1));
        }
        store
            .write_bytes(
                STREAM,
                encoded.iter().map(|(k, v)| (&k[..], &v[..], s as u64, 1i64)),
            )
            .unwrap();
        store.seal(STREAM, s as u64 + 1).unwrap();
    }
    store.compact(STREAM).unwrap();
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let ours = persisted_batch(&mut trace);
    sorted.sort_unstable();
    let mut builder = VecOrdValBuilder::<u64, String, u64, i64>::with_capacity(n, n, n);
    builder.push(&mut sorted);
    let inmem: TypedBatch = builder.done().unwrap();
    drop(sorted);

    let want = scan_inmem_typed(&inmem);
    assert_eq!(want.2, n as u64);
    assert_eq!(scan_persisted_typed(&ours), want);

    let gname = "typed_scan";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 3);
    g.throughput(Throughput::Elements(n as u64));
    bench(&mut g, gname, "persisted_typed", || scan_persisted_typed(&ours));
    bench(&mut g, gname, "inmem_ordvalspine", || scan_inmem_typed(&inmem));
    bench(&mut g, gname, "persisted_bytes", || {
        scan(&mut ours.cursor(), &ours)
    });
    g.finish();
    drop((ours, trace, store));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh directory under the system's temporary directory.
fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("read-bench-typed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
