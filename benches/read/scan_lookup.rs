//! Parts 1 and 2, `scan` and `lookup`: the persisted batch and DD's in-memory batches of the same updates,
//! checked equal, then the full walks and the point lookups timed.

use crate::common::splitmix64;
use crate::data::{build_bytes, build_vec, key, key_order, updates, Shape, KEY_BYTES};
use crate::store::ensure_store;
use crate::timing::{bench, configure};
use crate::walks::{get_bytes, persisted_batch, scan, seek_fresh, seek_sorted};
use crate::{LOOKUPS, STREAM};
use criterion::{Criterion, Throughput};
use ddpersist::trace::{BytesBatch, PersistedTrace};
use ddpersist::Store;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::Navigable;
use std::path::Path;
use std::rc::Rc;

/// Parts 1 and 2.
pub(crate) fn read_benches(c: &mut Criterion, tmp: &Path, shape: Shape) {
    let dir = ensure_store(tmp, shape);
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.compact(STREAM).unwrap(), 0, "the store is fully merged");
    let mut trace = PersistedTrace::<u64>::open(&store, STREAM).unwrap();
    let ours = persisted_batch(&mut trace);
    let order = key_order(shape.n);
    let bytes = build_bytes(updates(shape, order.iter().map(|&i| i as usize)));
    let vec = build_vec(updates(shape, order.iter().map(|&i| i as usize)));
    drop(order);
    let as_of = shape.as_of();

    // Same data on every side.
    let want = scan(&mut bytes.cursor(), &bytes);
    assert_eq!(want.updates, shape.n as u64);
    assert_eq!(scan(&mut ours.cursor(), &ours), want);
    assert_eq!(scan(&mut vec.cursor(), &vec), want);

    let mut rng = 0x1234_5678u64;
    let mut pick = |bound: usize| {
        rng = splitmix64(rng);
        rng % bound as u64
    };
    let hits: Vec<[u8; KEY_BYTES]> = (0..LOOKUPS).map(|_| key(pick(shape.n))).collect();
    let misses: Vec<[u8; KEY_BYTES]> = (0..LOOKUPS)
        .map(|_| key(shape.n as u64 + pick(shape.n)))
        .collect();
    let sorted = |keys: &[[u8; KEY_BYTES]]| {
        let mut v = keys.to_vec();
        v.sort_unstable();
        v
    };
    let (hits_sorted, misses_sorted) = (sorted(&hits), sorted(&misses));
    for keys in [&hits, &misses] {
        let want = seek_fresh(&bytes, keys, as_of);
        assert_eq!(seek_fresh(&ours, keys, as_of), want);
        assert_eq!(get_bytes(&store, keys, as_of), want);
    }
    assert_eq!(seek_fresh(&bytes, &hits, as_of).keys, LOOKUPS as u64);
    assert_eq!(seek_fresh(&bytes, &misses, as_of).keys, 0);
    assert_eq!(
        seek_sorted(&ours, &hits_sorted, as_of),
        seek_sorted(&bytes, &hits_sorted, as_of)
    );

    let gname = "scan";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 3);
    g.throughput(Throughput::Elements(shape.n as u64));
    bench(&mut g, gname, "persisted", || scan(&mut ours.cursor(), &ours));
    bench(&mut g, gname, "inmem_bytes", || scan(&mut bytes.cursor(), &bytes));
    bench(&mut g, gname, "inmem_vec", || scan(&mut vec.cursor(), &vec));
    let (ours_list, bytes_list) = (vec![ours.clone()], vec![Rc::new(bytes)]);
    bench(&mut g, gname, "persisted_cursor_list", || {
        let (mut cursor, storage) = cursor_list(ours_list.clone());
        scan(&mut cursor, &storage)
    });
    bench(&mut g, gname, "inmem_bytes_cursor_list", || {
        let (mut cursor, storage) = cursor_list(bytes_list.clone());
        scan(&mut cursor, &storage)
    });
    g.finish();
    let bytes: &BytesBatch = &bytes_list[0];

    let gname = "lookup";
    let mut g = c.benchmark_group(gname);
    configure(&mut g, 2);
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for (what, keys, keys_sorted) in [("hit", &hits, &hits_sorted), ("miss", &misses, &misses_sorted)] {
        bench(&mut g, gname, &format!("seek_fresh_{what}/persisted"), || {
            seek_fresh(&ours, keys, as_of)
        });
        bench(&mut g, gname, &format!("seek_fresh_{what}/inmem_bytes"), || {
            seek_fresh(bytes, keys, as_of)
        });
        bench(&mut g, gname, &format!("get_bytes_{what}/persisted"), || {
            get_bytes(&store, keys, as_of)
        });
        bench(&mut g, gname, &format!("seek_sorted_{what}/persisted"), || {
            seek_sorted(&ours, keys_sorted, as_of)
        });
        bench(&mut g, gname, &format!("seek_sorted_{what}/inmem_bytes"), || {
            seek_sorted(bytes, keys_sorted, as_of)
        });
    }
    g.finish();
    drop(trace);
    drop(store);
}
