//! Helpers of the kill-loop and restart tests (`kill_loops_*.rs`, `restart_chain.rs`): keys placed on a
//! chosen worker, the child's time-by-time feeding loop, and the parent's kill at a random moment.

use super::Rng;
use ddpersist::operators::key_hash;
use ddpersist::Codec;
use differential_dataflow::input::InputSession;
use std::io::{BufRead, BufReader};
use std::ops::Range;
use std::process::{Child, ExitStatus};
use std::sync::Mutex;
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// The worker of `peers` that the store places the `String` key `key` on.
pub fn worker_of(key: &str, peers: usize) -> usize {
    (key_hash(&key.to_string().to_bytes()) % peers as u64) as usize
}

/// A key named `k{i}` that the store places on worker `w` of `peers` (the `i`-th such name).
pub fn key_on(w: usize, peers: usize, i: usize) -> String {
    (0..)
        .map(|j| format!("k{j}"))
        .filter(|k| worker_of(k, peers) == w)
        .nth(i)
        .unwrap()
}

/// The share of `all` that `worker` feeds: the updates at the positions `i` with `i % worker.peers() ==
/// worker.index()`, in order.
pub fn share<D>(worker: &Worker, all: Vec<D>) -> Vec<D> {
    let (index, peers) = (worker.index(), worker.peers());
    all.into_iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, d)| d)
        .collect()
}

/// Feeds `input` time by time over `times`: for each time `t`, advances to `t`, inserts every
/// `(record, diff)` of `updates(worker, t)`, advances to `t + 1` and flushes. When `pause_ms > 0` it then
/// steps `worker` until `probe` passes `t + 1`, prints `complete {t + 1}` (worker 0) and sleeps `pause_ms`
/// (what a parent's kill loop waits for). Returns nothing.
pub fn feed_times<D: differential_dataflow::Data>(
    worker: &mut Worker,
    input: &mut InputSession<u64, D, i64>,
    probe: &ProbeHandle<u64>,
    times: Range<u64>,
    pause_ms: u64,
    mut updates: impl FnMut(&Worker, u64) -> Vec<(D, i64)>,
) {
    for t in times {
        input.advance_to(t);
        for (record, diff) in updates(worker, t) {
            input.update(record, diff);
        }
        input.advance_to(t + 1);
        input.flush();
        if pause_ms > 0 {
            worker.step_while(|| probe.less_than(&(t + 1)));
            if worker.index() == 0 {
                println!("complete {}", t + 1);
            }
            std::thread::sleep(std::time::Duration::from_millis(pause_ms));
        }
    }
}

/// The resume point every worker pushed into `resumed`: asserts they are all the same and returns it.
pub fn agreed_resume(resumed: &Mutex<Vec<u64>>) -> u64 {
    let resumed = resumed.lock().unwrap().clone();
    assert!(
        resumed.windows(2).all(|w| w[0] == w[1]),
        "resume points differ: {resumed:?}"
    );
    resumed[0]
}

/// The environment variable `name` of a kill loop's child process (panics when a parent did not set it).
pub fn var(name: &str) -> String {
    std::env::var(name).expect("run by a parent test")
}

/// How a child killed by [`kill_at_random`] ended, and what it printed before.
pub struct Killed {
    /// Its exit status (check it with `assert_killed_or_succeeded`).
    pub status: ExitStatus,
    /// `N` of its `start N` line, if it printed one.
    pub start: Option<u64>,
    /// `N` of the last `complete N` line read before the kill.
    pub complete: Option<u64>,
}

/// Kills `child` at a random moment: draws `K = rng.below(8)` and then a pause `rng.below(6)` ms, reads
/// the child's stdout until its `K + 1`-th `complete N` line or its `done` line (or the end), sleeps the
/// pause, kills it with SIGKILL (it may have exited already) and waits for it. Returns how it ended.
pub fn kill_at_random(child: &mut Child, rng: &mut Rng) -> Killed {
    let kill_after = rng.below(8);
    let extra_ms = rng.below(6);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut seen, mut start, mut complete) = (0, None, None);
    while let Some(Ok(line)) = lines.next() {
        if let Some(s) = line.strip_prefix("start ") {
            start = Some(s.parse::<u64>().unwrap());
        }
        if let Some(c) = line.strip_prefix("complete ") {
            complete = Some(c.parse::<u64>().unwrap());
            seen += 1;
            if seen > kill_after {
                break;
            }
        }
        if line == "done" {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(extra_ms));
    let _ = child.kill();
    let status = child.wait().unwrap();
    Killed {
        status,
        start,
        complete,
    }
}
