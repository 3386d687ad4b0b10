//! The background threads' CPU priority (`Options::background_nice`, `Options::background_idle`). One test in a file of its own: the
//! test reads the nice value of every thread of its process, so no other test's store may run beside it.

#![cfg(target_os = "linux")]

use ddpersist::{Options, Store};
use std::time::{Duration, Instant};

/// Field `n` (1-based, as proc(5) numbers them) of thread `stat` (the text of `/proc/.../stat`), counted
/// after the name's last ')' (field 2, which may hold spaces).
fn stat_field(stat: &str, n: usize) -> i64 {
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

/// The nice value of thread `stat` (field 19).
fn nice_of(stat: &str) -> i64 {
    stat_field(stat, 19)
}

/// `SCHED_IDLE`, as field 41 (`policy`) of `/proc/.../stat` gives it.
const SCHED_IDLE: i64 = 5;

/// `(thread name, nice value)` of every thread of this process whose name starts with `prefix` (Linux keeps
/// a thread name's first 15 bytes: "ddpersist-compact-0" reads "ddpersist-compa").
fn threads(prefix: &str) -> Vec<(String, i64)> {
    threads_with(prefix, nice_of)
}

/// `(thread name, scheduling policy)` of every thread whose name starts with `prefix` (0: `SCHED_OTHER`).
fn policies(prefix: &str) -> Vec<(String, i64)> {
    threads_with(prefix, |stat| stat_field(stat, 41))
}

fn threads_with(prefix: &str, field: impl Fn(&str) -> i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let (Ok(stat), Ok(name)) = (
            std::fs::read_to_string(task.path().join("stat")),
            std::fs::read_to_string(task.path().join("comm")),
        ) else {
            continue; // The thread exited meanwhile.
        };
        let name = name.trim().to_string();
        if name.starts_with(prefix) {
            out.push((name, field(&stat)));
        }
    }
    out.sort();
    out
}

#[test]
fn merge_threads_lower_themselves_to_the_background_nice_value_and_never_raise_it() {
    let own = nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap());
    // The threads inherit the opener's policy (0, `SCHED_OTHER`, unless the tests run under `chrt`).
    let own_policy = stat_field(&std::fs::read_to_string("/proc/thread-self/stat").unwrap(), 41);
    for (asked, want, idle) in [
        (13u8, own.max(13), false),
        (0, own, false),
        (11, own.max(11), true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            background_nice: asked,
            background_idle: idle,
            ..Options::default()
        };
        let store = Store::open_with(dir.path(), options).unwrap();
        // Each thread sets its name, and the merge thread its nice value, as it starts: wait (bounded).
        let (merging, flushing) = (
            vec![("ddpersist-compa".to_string(), want)],
            vec![("ddpersist-flush".to_string(), own)],
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while (threads("ddpersist-compa") != merging || threads("ddpersist-flush") != flushing)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(threads("ddpersist-compa"), merging, "asked {asked}");
        // With `background_idle`, the merge thread (only) runs under SCHED_IDLE; it is set right after
        // the nice value, so wait for it too (bounded).
        let policy = if idle { SCHED_IDLE } else { own_policy };
        while policies("ddpersist-compa") != [("ddpersist-compa".to_string(), policy)]
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            policies("ddpersist-compa"),
            [("ddpersist-compa".to_string(), policy)],
            "idle {idle}"
        );
        assert_eq!(
            policies("ddpersist-flush"),
            [("ddpersist-flush".to_string(), own_policy)]
        );
        // The flush thread and the caller's thread keep the opener's priority.
        assert_eq!(threads("ddpersist-flush"), flushing);
        assert_eq!(
            nice_of(&std::fs::read_to_string("/proc/thread-self/stat").unwrap()),
            own
        );
        drop(store);
        // A joined thread may stay listed for a moment after `join` returns (the kernel wakes the joiner
        // before it removes the thread): wait (bounded) for the list to empty.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !threads("ddpersist-").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            threads("ddpersist-"),
            Vec::new(),
            "the store's threads end with it"
        );
    }
}
