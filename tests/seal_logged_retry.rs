//! The cost of the flush thread's retries of a failing flush of logged seals (`Store::seal_logged`; a
//! failed background flush is tried again ten `Options::logged_flush_delay`s later) with a zero delay. A
//! binary of its own: it measures the process's CPU time.

mod common;

use ddpersist::{Options, StreamOptions};
use std::time::{Duration, Instant};

/// This process's CPU time (user + system) so far.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 of the file (utime, stime), 12 and 13 after the command.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs_f64(ticks as f64 / hz as f64)
}

/// With `logged_flush_delay` zero, a failing flush is retried "ten delays later": at once, over and over.
/// The flush thread then spins on the failing blob (taking `edit_lock`, recording the error each time)
/// for as long as the failure lasts. Measured: the process's CPU time over half a second of an idle,
/// failing store.
#[test]
fn a_failing_flush_with_zero_delay_does_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        logged_flush_bytes: 0,
        logged_flush_delay: Duration::ZERO,
        ..Options::default()
    };
    let (store, blob) = common::open_faulty(dir.path(), options);
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write("s", &[(1u64, 1u64, 0, 1i64)]).unwrap();
    blob.fail_after(0);
    store.seal_logged("s", 1).unwrap();
    let start = Instant::now();
    while store.background_error().is_none() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    let (cpu0, wall0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let (cpu, wall) = (cpu_time() - cpu0, wall0.elapsed());
    blob.heal();
    assert!(
        cpu < wall / 4,
        "the idle store used {cpu:?} of CPU in {wall:?} retrying a failing flush (delay 0)"
    );
}
