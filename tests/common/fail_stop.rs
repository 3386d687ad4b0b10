//! Shared by the fail-stop tests (`tests/fail_stop*.rs`): a store of `ROUNDS` sealed rounds, one batch
//! file each, one of whose blocks a test damages between runs; and the check of outputs at complete times.

use super::{batch_files, flip_byte};
use ddpersist::batch::BatchFile;
use ddpersist::blob::BlobBytes;
use ddpersist::operators::{ArrangePersisted, ArrangeTyped};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

/// Times 0..ROUNDS, one sealed batch each.
pub const ROUNDS: u64 = 5;

/// Many small blocks per batch, and no merges, so each round stays its own file.
pub fn options() -> Options {
    Options {
        block_target_bytes: 256,
        compaction_threads: 0,
        merge_fan_in: 64,
        ..Options::default()
    }
}

/// Round `t`'s 60 `(key, val)` pairs, each inserted once at time `t`.
pub fn round(t: u64) -> Vec<(String, u64)> {
    (0..60)
        .map(|i| (format!("k{t:02}-{i:03}"), i + 100 * t))
        .collect()
}

/// Persists rounds 0..ROUNDS into stream "a", one time (one seal, one batch file) each, and finishes the
/// input: arranged by `arrange_persisted`, or by `arrange_by_key_persisted` if `typed`.
pub fn first_run(dir: &Path, typed: bool) {
    let store = Store::open_with(dir, options()).unwrap();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(String, u64), i64>();
            if typed {
                let arranged = a.arrange_by_key_persisted(&store, "a").unwrap();
                let handle = arranged.handle().unwrap().clone();
                arranged.stream.probe_with(&probe);
                return (input, handle);
            }
            let (arranged, handle) = a.arrange_persisted(&store, "a").unwrap();
            arranged.stream.probe_with(&probe);
            (input, handle)
        });
        for t in 0..ROUNDS {
            for kv in round(t) {
                input.update(kv, 1);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
        }
        assert!(handle.error().is_none());
        drop(input);
        worker.step_while(|| !probe.done());
    });
}

/// The batch file `[bad, bad + 1)` in `dir`, opened from a copy of its bytes.
fn batch_starting_at(dir: &Path, bad: u64) -> (std::path::PathBuf, BatchFile) {
    for path in batch_files(dir) {
        let bytes = std::fs::read(&path).unwrap();
        let file = BatchFile::open("x", BlobBytes::Heap(bytes.into())).unwrap();
        if file.description().lower == bad {
            return (path, file);
        }
    }
    panic!("no batch starts at {bad}");
}

/// The file name of `path`.
fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// Flips a byte inside block 1 of the batch `[bad, bad + 1)`; returns the file's name and the block's
/// offset.
pub fn damage(dir: &Path, bad: u64) -> (String, u64) {
    let (path, file) = batch_starting_at(dir, bad);
    assert!(file.block_count() > 2, "the batch needs several blocks");
    let offset = file.index_entry(1).unwrap().offset;
    flip_byte(&path, offset + 40);
    (file_name(&path), offset)
}

/// Flips a byte inside index entry 1 of the batch `[bad, bad + 1)` (its key count), in the index partition
/// that holds it; returns the file's name and the partition's offset (the start of its entries). The
/// open checks only the partition table, so the damage is met on the partition's first touch.
pub fn damage_index(dir: &Path, bad: u64) -> (String, u64) {
    let (path, file) = batch_starting_at(dir, bad);
    let index = file.footer().index_offset;
    flip_byte(&path, index + 48 + 24);
    (file_name(&path), index)
}

/// Every output `((key, val), time, diff)` at a time below `frontier` (a complete time) accumulates to
/// the rounds up to that time.
pub fn assert_complete_outputs_right(out: &[((String, u64), u64, i64)], frontier: u64) {
    for t in 0..frontier {
        let mut got: BTreeMap<(String, u64), i64> = BTreeMap::new();
        for (d, _, r) in out.iter().filter(|(_, time, _)| *time <= t) {
            *got.entry(d.clone()).or_default() += r;
        }
        got.retain(|_, r| *r != 0);
        let want: BTreeMap<(String, u64), i64> = (0..=t).flat_map(round).map(|kv| (kv, 1)).collect();
        assert_eq!(got, want, "output at complete time {t}");
    }
}
