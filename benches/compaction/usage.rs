//! What a run costs beyond wall time. Heap accounting: a global allocator that tracks live and peak heap
//! bytes (for "heap a merge holds"); the CPU time of this thread and of named threads (`/proc`); MB.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

struct CountingAlloc;

static HEAP: AtomicUsize = AtomicUsize::new(0);
static HEAP_PEAK: AtomicUsize = AtomicUsize::new(0);

fn heap_grew(bytes: usize) {
    let now = HEAP.fetch_add(bytes, Relaxed) + bytes;
    HEAP_PEAK.fetch_max(now, Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters are only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            heap_grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        HEAP.fetch_sub(layout.size(), Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HEAP.fetch_sub(layout.size(), Relaxed);
            heap_grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Starts a heap measurement: returns the live heap now and resets the peak to it.
pub(crate) fn heap_mark() -> usize {
    let now = HEAP.load(Relaxed);
    HEAP_PEAK.store(now, Relaxed);
    now
}

/// Peak heap above `mark` since `heap_mark`.
pub(crate) fn heap_peak_since(mark: usize) -> usize {
    HEAP_PEAK.load(Relaxed).saturating_sub(mark)
}

/// CPU time this thread has run (`/proc/thread-self/schedstat`, ns; zero where unavailable). Other
/// processes on the machine inflate wall time, much less this.
pub(crate) fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// CPU time of this process's threads whose name starts with `prefix` (from `/proc/self/task`).
pub(crate) fn threads_cpu(prefix: &str) -> Duration {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with(prefix) {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
            ns += stat
                .split_whitespace()
                .next()
                .and_then(|x| x.parse().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

pub(crate) fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
