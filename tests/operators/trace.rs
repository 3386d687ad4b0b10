//! The persisted trace's mechanics under an arrangement: the cursor against a model (steps and seeks
//! over many small blocks), adoption of the store's merged batches (and deletion of the files merged
//! away). (Readers' compaction frontiers reaching the store's since through seals: `tests/readers_since.rs`,
//! a binary of its own.)

use ddpersist::operators::{ArrangePersisted, PersistHandle};
use ddpersist::trace::PersistedTrace;
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::input::Input;
use differential_dataflow::trace::{Cursor, Navigable, TraceReader};
use std::collections::BTreeMap;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::progress::Antichain;

/// `(key, val)` to its `(time, diff)` history.
type History = BTreeMap<(Vec<u8>, Vec<u8>), Vec<(u64, i64)>>;

/// Many small blocks: the cursor's steps and seeks agree with a sorted model; blocks of one or two keys,
/// and blocks of dozens (a seek into a new block narrows its search by the block's key samples).
#[test]
fn cursor_agrees_with_a_model() {
    for block_target_bytes in [64, 512] {
        cursor_agrees_with_a_model_in_blocks_of(block_target_bytes);
    }
}

fn cursor_agrees_with_a_model_in_blocks_of(block_target_bytes: u32) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(
        dir.path(),
        Options {
            block_target_bytes,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let mut model = History::new();
    for t in 0..3u64 {
        let mut updates = Vec::new();
        for i in 0..300u64 {
            let (k, v) = (
                format!("key{:03}", (i * 37 + t) % 150).into_bytes(),
                format!("v{}", i % 7).into_bytes(),
            );
            updates.push((k, v, t, 1i64));
        }
        store
            .write_bytes("s", updates.iter().map(|(k, v, t, d)| (&k[..], &v[..], *t, *d)))
            .unwrap();
        store.seal("s", t + 1).unwrap();
    }
    for (k, v, t, d) in store.snapshot("s").unwrap().to_vec().unwrap() {
        model.entry((k, v)).or_default().push((t, d));
    }
    let mut trace = PersistedTrace::open(&store, "s").unwrap();
    let mut read = History::new();
    let batches = trace.batches_through(Antichain::from_elem(3).borrow()).unwrap();
    let most_blocks = batches
        .iter()
        .map(|b| b.file().unwrap().block_count())
        .max()
        .unwrap();
    assert!(
        most_blocks > if block_target_bytes <= 64 { 5 } else { 1 },
        "{most_blocks} blocks"
    );
    for batch in &batches {
        let mut cursor = batch.cursor();
        for ((k, v), upds) in cursor.to_vec(batch, |k| k.to_vec(), |v| v.to_vec()) {
            read.entry((k, v)).or_default().extend(upds);
        }
    }
    for upds in read.values_mut() {
        upds.sort();
    }
    assert_eq!(read, model);

    // Seeks: forward only, to the first key (val) at or above the target.
    let batch = &batches[0];
    let keys: Vec<Vec<u8>> = batch
        .cursor()
        .to_vec(batch, |k| k.to_vec(), |_| ())
        .into_iter()
        .map(|((k, _), _)| k)
        .collect();
    let mut cursor = batch.cursor();
    for target in [
        "key000", "key0005", "key050", "key051x", "key100", "key149", "key2",
    ] {
        cursor.seek_key(batch, target.as_bytes());
        let want = keys.iter().find(|k| k.as_slice() >= target.as_bytes());
        assert_eq!(cursor.get_key(batch), want.map(|k| k.as_slice()), "seek {target}");
    }
    // Every key and every gap between keys, forward: each seek that leaves its block lands in another.
    cursor.rewind_keys(batch);
    let mut distinct = keys.clone();
    distinct.dedup();
    for key in &distinct {
        for target in [key.clone(), [key.as_slice(), b"x"].concat()] {
            cursor.seek_key(batch, &target);
            let want = keys.iter().find(|k| **k >= target);
            assert_eq!(
                cursor.get_key(batch),
                want.map(|k| k.as_slice()),
                "seek {target:?}"
            );
        }
    }
    cursor.rewind_keys(batch);
    cursor.seek_key(batch, b"key010");
    cursor.seek_val(batch, b"v3");
    assert!(cursor.get_val(batch).is_none_or(|v| v >= &b"v3"[..]));
    cursor.seek_key(batch, b"key000");
    assert_eq!(
        cursor.get_key(batch),
        Some(&b"key010"[..]),
        "seek_key never moves backward"
    );
}

/// With merges inline (no threads) and a reader that advances, the trace adopts the store's merged batches
/// and the files merged away are deleted.
#[test]
fn merged_batches_are_adopted() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny blocks: merged files have more blocks than one exert checks, so adoption takes several. Fan-in
    // 8: forty seals make merges of two tiers (the batch count below is sized for it).
    let options = Options {
        compaction_threads: 0,
        block_target_bytes: 64,
        merge_fan_in: 8,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options).unwrap();
    let s = store.clone();
    let (spans, batches) = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut trace, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(u64, u64), i64>();
            let (arranged, handle): (_, PersistHandle) = a.arrange_persisted(&s, "m").unwrap();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace, handle)
        });
        for t in 0..40u64 {
            input.advance_to(t);
            for i in 0..10 {
                input.update((t * 10 + i, i), 1);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
            trace.set_physical_compaction(Antichain::from_elem(t + 1).borrow());
            trace.set_logical_compaction(Antichain::from_elem(t + 1).borrow());
        }
        // Let maintenance finish checking the last merged files.
        for _ in 0..20 {
            worker.step();
        }
        let mut spans = 0;
        trace.map_spans(|_| spans += 1);
        let batches = s.sealed(handle.stream_id()).unwrap().batches.len();
        (spans, batches)
    });
    assert!(batches <= 6, "{batches} batches in the store");
    assert!(
        spans <= batches * 2 + 2,
        "{spans} spans in the trace for {batches} store batches"
    );
    drop(store);
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "batch")
        })
        .count();
    assert!(files <= 6, "{files} batch files left");
}
