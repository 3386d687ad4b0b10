//! Part 1, merge throughput: the input batch files, the variants (where the output goes, compression, key
//! filter), the output writers that time or discard, and one timed merge iteration.

use crate::common::process_cpu;
use crate::data::{key_of, push_val, KEY_BYTES, VAL_BYTES};
use crate::usage::{heap_mark, heap_peak_since, thread_cpu};
use crate::{merge_inputs, OUT};
use ddpersist::batch::format::DEFAULT_BLOCK_TARGET_BYTES;
use ddpersist::batch::{batch_file_name, BatchFile, BatchWriter};
use ddpersist::blob::{Blob, BlobWriter, DirBlob};
use ddpersist::compaction::{merge_batches, KeyMerge};
use ddpersist::{Description, Options};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a merge's output goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sink {
    /// A new object of the `DirBlob` (written, fsync'd, renamed).
    Dir,
    /// A writer that counts and discards: the merge's CPU cost alone.
    Null,
    /// No output at all: only the merge iterator over the inputs runs.
    IterOnly,
}

#[derive(Clone, Copy)]
pub(crate) struct MergeCase {
    pub(crate) name: &'static str,
    pub(crate) compress: bool,
    filter_bits_per_key: u32,
    pub(crate) sink: Sink,
}

pub(crate) const MERGE_CASES: [MergeCase; 7] = [
    MergeCase {
        name: "merge_raw",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "merge_lz4",
        compress: true,
        filter_bits_per_key: 10,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "diag_raw_no_filter",
        compress: false,
        filter_bits_per_key: 0,
        sink: Sink::Dir,
    },
    MergeCase {
        name: "diag_raw_to_null",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_raw_no_filter_to_null",
        compress: false,
        filter_bits_per_key: 0,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_lz4_to_null",
        compress: true,
        filter_bits_per_key: 10,
        sink: Sink::Null,
    },
    MergeCase {
        name: "diag_raw_iter_only",
        compress: false,
        filter_bits_per_key: 10,
        sink: Sink::IterOnly,
    },
];

/// A `BlobWriter` that counts bytes and keeps none.
#[derive(Default)]
pub(crate) struct NullWriter {
    len: u64,
}

impl BlobWriter for NullWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        self.len += std::hint::black_box(bytes).len() as u64;
        Ok(())
    }
    fn len(&self) -> u64 {
        self.len
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        Ok(())
    }
}

/// A `BlobWriter` that adds the time spent in its inner writer's `write` and `commit` to `nanos[0]` and
/// `nanos[1]`: where a merge into a file waits for the kernel.
struct TimedWriter {
    inner: Box<dyn BlobWriter>,
    nanos: Arc<[AtomicU64; 2]>,
}

impl BlobWriter for TimedWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        let t0 = Instant::now();
        let r = self.inner.write(bytes);
        self.nanos[0].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        r
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        let t0 = Instant::now();
        let r = self.inner.commit();
        self.nanos[1].fetch_add(t0.elapsed().as_nanos() as u64, Relaxed);
        r
    }
}

/// Input batch files of one encoding, in one directory.
pub(crate) struct MergeInputs {
    _dir: tempfile::TempDir,
    blob: DirBlob,
    names: Vec<String>,
    /// Sum of the input files' sizes.
    pub(crate) bytes: u64,
    pub(crate) updates: u64,
}

/// Writes [`merge_inputs`] sorted batches of `per_input` updates, as a seal would (filter, compression).
pub(crate) fn write_inputs(tmp: &Path, per_input: usize, compress: bool) -> MergeInputs {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let blob = DirBlob::open(dir.path()).unwrap();
    let (mut names, mut bytes) = (Vec::new(), 0);
    let mut val = Vec::with_capacity(VAL_BYTES);
    for j in 0..merge_inputs() {
        let mut keys: Vec<([u8; KEY_BYTES], u64)> = (0..per_input as u64)
            .map(|i| {
                let n = (j * per_input) as u64 + i;
                (key_of(n), n)
            })
            .collect();
        keys.sort_unstable();
        let name = batch_file_name(j as u64);
        let description = Description {
            lower: j as u64,
            upper: j as u64 + 1,
            since: 0,
        };
        let mut writer = BatchWriter::new(
            blob.create(&name).unwrap(),
            description,
            DEFAULT_BLOCK_TARGET_BYTES,
        )
        .unwrap()
        .with_filter(per_input as u64, 10)
        .with_compression(compress);
        for (k, n) in &keys {
            val.clear();
            push_val(n ^ 0x5555_5555_5555_5555, &mut val);
            writer.push(k, &val, j as u64, 1).unwrap();
        }
        bytes += writer.finish().unwrap().size_bytes;
        names.push(name);
    }
    MergeInputs {
        _dir: dir,
        blob,
        names,
        bytes,
        updates: (merge_inputs() * per_input) as u64,
    }
}

/// What one merge iteration did, beyond its time.
#[derive(Clone, Copy, Default)]
pub(crate) struct MergeResult {
    pub(crate) out_bytes: u64,
    pub(crate) heap_peak: usize,
    /// CPU time of the merging thread.
    pub(crate) cpu: Duration,
    /// CPU time of the whole process (the merging thread and its helper).
    pub(crate) cpu_all: Duration,
    /// Time inside the output file's `write` calls and its `commit` (fsync, rename, directory fsync).
    pub(crate) write: Duration,
    pub(crate) commit: Duration,
}

/// One iteration: reopen the inputs (untimed), merge (timed), drop inputs and delete the output (untimed).
pub(crate) fn merge_iteration(inputs: &MergeInputs, case: MergeCase) -> (Duration, MergeResult) {
    let batches: Vec<Arc<BatchFile>> = inputs
        .names
        .iter()
        .map(|n| Arc::new(BatchFile::open(n.clone(), inputs.blob.get(n).unwrap().unwrap()).unwrap()))
        .collect();
    let k = batches.len() as u64;
    // Times are advanced to the since, as in a store whose since has moved past both inputs.
    let description = Description {
        lower: 0,
        upper: k,
        since: k - 1,
    };
    let options = Options {
        compress_from_level: case.compress.then_some(0),
        filter_bits_per_key: case.filter_bits_per_key,
        ..Options::default()
    };
    let stop = AtomicBool::new(false);
    let nanos = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let mark = heap_mark();
    let cpu0 = thread_cpu();
    let all0 = process_cpu();
    let start = Instant::now();
    let out_bytes = match case.sink {
        Sink::Dir | Sink::Null => {
            let out: Box<dyn BlobWriter> = match case.sink {
                Sink::Dir => Box::new(TimedWriter {
                    inner: inputs.blob.create(OUT).unwrap(),
                    nanos: nanos.clone(),
                }),
                _ => Box::<NullWriter>::default(),
            };
            let stats = merge_batches(&batches, description, out, &options, &stop)
                .unwrap()
                .unwrap();
            assert_eq!(stats.update_count, inputs.updates);
            stats.size_bytes
        }
        Sink::IterOnly => {
            // The merge `merge_batches` runs, without the output.
            let refs: Vec<&BatchFile> = batches.iter().map(|b| &**b).collect();
            let mut merge = KeyMerge::new(&refs, description.since).unwrap();
            let (mut n, mut sum) = (0u64, 0u64);
            let mut emit = |key: &[u8], val: &[u8], time: u64, diff: i64| {
                n += 1;
                sum = sum.wrapping_add(key.len() as u64 + val.len() as u64 + time + diff as u64);
                Ok(())
            };
            while merge.next_key(&mut emit).unwrap() {}
            assert_eq!(n, inputs.updates);
            std::hint::black_box(sum);
            0
        }
    };
    let elapsed = start.elapsed();
    let cpu = thread_cpu().saturating_sub(cpu0);
    let cpu_all = process_cpu().saturating_sub(all0);
    let heap_peak = heap_peak_since(mark);
    drop(batches);
    if case.sink == Sink::Dir {
        inputs.blob.delete(OUT).unwrap();
    }
    let [write, commit] = [0, 1].map(|i| Duration::from_nanos(nanos[i].load(Relaxed)));
    (
        elapsed,
        MergeResult {
            out_bytes,
            heap_peak,
            cpu,
            cpu_all,
            write,
            commit,
        },
    )
}
