//! The persisted store on disk: built once per size and reused while complete and readable, its files and
//! their bytes, and dropping them from the page cache (for the cold restarts).

use crate::data::{key, val, Shape, KEY_BYTES, RECORD};
use crate::{CHUNK, STREAM};
use ddpersist::trace::PersistedTrace;
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::trace::TraceReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The store directory for `shape`, built unless a complete one is there already.
pub(crate) fn ensure_store(tmp: &Path, shape: Shape) -> PathBuf {
    let dir = tmp.join(format!("read-bench-{}", shape.n));
    let marker = tmp.join(format!("read-bench-{}.complete", shape.n));
    if dir.is_dir() && std::fs::read_to_string(&marker).ok().as_deref() == Some(&shape.marker()) {
        // The crate's file formats may have changed since: reuse only a store this build reads back whole.
        match readable(&dir, shape) {
            Ok(()) => {
                eprintln!("reusing {}", dir.display());
                return dir;
            }
            Err(e) => eprintln!("not reusing {}: {e}", dir.display()),
        }
    }
    let _ = std::fs::remove_file(&marker);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!(
        "building {} ({} updates, {} seals)...",
        dir.display(),
        shape.n,
        shape.seals()
    );
    let start = Instant::now();
    let options = Options {
        compaction_threads: 0,
        memtable_budget_bytes: 1 << 30,
        ..Options::default()
    };
    let store = Store::open_with(&dir, options).unwrap();
    store.create_stream(STREAM, StreamOptions::default()).unwrap();
    let mut buf = Vec::with_capacity(CHUNK * RECORD);
    for s in 0..shape.seals() {
        let (lo, hi) = (s * shape.seal, ((s + 1) * shape.seal).min(shape.n));
        let mut at = lo;
        while at < hi {
            let end = (at + CHUNK).min(hi);
            buf.clear();
            for i in at..end {
                buf.extend_from_slice(&key(i as u64));
                buf.extend_from_slice(&val(i as u64));
            }
            let updates = buf
                .chunks_exact(RECORD)
                .map(|r| (&r[..KEY_BYTES], &r[KEY_BYTES..], s as u64, 1i64));
            store.write_bytes(STREAM, updates).unwrap();
            at = end;
        }
        store.seal(STREAM, s as u64 + 1).unwrap();
    }
    store.compact(STREAM).unwrap();
    let batches = store.sealed(STREAM).unwrap().batches.len();
    drop(store);
    std::fs::write(&marker, shape.marker()).unwrap();
    eprintln!(
        "built in {:.1} s: {batches} batch file(s), {:.1} MB on disk",
        start.elapsed().as_secs_f64(),
        dir_bytes(&dir) as f64 / 1e6
    );
    dir
}

/// Whether the store in `dir` opens, verifies whole (every block) and holds `shape.n` updates.
fn readable(dir: &Path, shape: Shape) -> Result<(), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let trace = PersistedTrace::<u64>::open(&store, STREAM).map_err(|e| e.to_string())?;
    let mut n = 0;
    trace.map_spans(|s| n += s.inner.as_ref().map_or(0, |b| b.len()));
    if n != shape.n {
        return Err(format!("{n} updates, not {}", shape.n));
    }
    Ok(())
}

/// Bytes of every file under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    files(dir)
        .iter()
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Drops every file of `dir` from the page cache (`dd iflag=nocache count=0` = posix_fadvise DONTNEED);
/// false if `dd` failed.
pub(crate) fn evict(dir: &Path) -> bool {
    files(dir).iter().all(|f| {
        std::process::Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success())
    })
}
