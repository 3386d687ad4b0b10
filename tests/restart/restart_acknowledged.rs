//! A source that cannot replay from the start but keeps what is not yet *acknowledged* (a queue with
//! committed offsets, a client that retries): the acknowledgement is the frontier of a probe on the
//! persisted output, which passes a time only once every worker's operators sealed it (DESIGN.md §5.1).
//! A child process (two workers, `persist` "p" → `arrange_persisted` "a", streams not durable) feeds
//! the source from its oldest kept time, prints each acknowledgement, and is killed with SIGKILL at a
//! random point, usually with updates in flight and the workers' uppers uneven. The source then drops
//! what was acknowledged and the next run re-feeds the rest. Checked after every kill: the last
//! acknowledgement is at or below the next run's resume point (nothing the store needs was dropped), and
//! the store holds every update below the acknowledgement exactly once; after a final run, every update
//! of the whole input exactly once, in both operators' streams, and the final run's output equals it.

use crate::common;

use common::restart::operator_content;

use common::Rng;
use ddpersist::operators::{ArrangePersisted, Persist};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

type Row = (String, u64);
/// An update of the whole input: `(key, val, time)`, each once.
type Update = (String, u64, u64);

/// The rows of time `t`: none at times `5k + 3` (idle times), else one to four rows.
fn rows(t: u64) -> Vec<Row> {
    let n = if t % 5 == 3 { 0 } else { 1 + t % 4 };
    (0..n)
        .map(|i| (format!("k{}", (t * 7 + i) % 13), t * 10 + i))
        .collect()
}

fn input(end: u64) -> BTreeMap<Update, i64> {
    (0..end)
        .flat_map(|t| rows(t).into_iter().map(move |(k, v)| ((k, v, t), 1)))
        .collect()
}

/// One run of two workers over `dir`: prints `resume R`, feeds times `from..end` (each worker the rows
/// of its parity) printing `ack A` whenever the probe's frontier moves, then (unless killed) closes the
/// input, runs to the end and prints `out K V T D` for every output update, then `done`.
fn run(dir: &Path, from: u64, end: u64, pause_ms: u64) {
    let manager = PersistManager::new(Store::open(dir).unwrap());
    let out = Arc::new(Mutex::new(Vec::new()));
    let o = out.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let store = manager.store().clone();
        let token = manager.token("p", worker.index()).unwrap();
        let o = o.clone();
        let (mut input, ph, ah) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (persisted, ph) = rows.persist(token).unwrap();
            let (arranged, ah) = persisted.arrange_persisted(&store, "a").unwrap();
            arranged
                .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
                .inner
                .inspect(move |(row, t, d)| o.lock().unwrap().push((row.clone(), *t, *d)))
                .probe_with(&probe);
            (input, ph, ah)
        });
        if worker.index() == 0 {
            println!("resume {}", ph.resume_at().min(ah.resume_at()));
        }
        let mut acked = 0;
        input.advance_to(from);
        for t in from..end {
            for (i, row) in rows(t).into_iter().enumerate() {
                if i % 2 == worker.index() {
                    input.update(row, 1);
                }
            }
            input.advance_to(t + 1);
            input.flush();
            for _ in 0..4 {
                worker.step();
            }
            // The acknowledgement: every worker's operators sealed the times below it.
            let ack = probe.with_frontier(|f| f.first().copied().unwrap_or(end));
            if worker.index() == 0 && ack > acked {
                acked = ack;
                println!("ack {ack}");
            }
            std::thread::sleep(Duration::from_millis(pause_ms));
        }
        drop(input);
        worker.step_while(|| !probe.done());
        assert_eq!((ph.error(), ah.error()), (None, None));
    })
    .unwrap();
    for ((k, v), t, d) in out.lock().unwrap().iter() {
        println!("out {k} {v} {t} {d}");
    }
    println!("done");
}

#[test]
#[ignore = "run as a child process by the kill loop of this file"]
fn acknowledged_child() {
    if common::child_var("DDPERSIST_ACK_DIR").is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).expect("run by a parent test");
    run(
        Path::new(&var("DDPERSIST_ACK_DIR")),
        var("DDPERSIST_ACK_FROM").parse().unwrap(),
        var("DDPERSIST_ACK_END").parse().unwrap(),
        var("DDPERSIST_ACK_PAUSE").parse().unwrap(),
    );
}

/// What a child printed: its resume point, its last acknowledgement, its output, whether it finished.
#[derive(Default)]
struct Printed {
    resume: Option<u64>,
    ack: u64,
    out: BTreeMap<Update, i64>,
    done: bool,
}

/// Runs a child from `from` to `end`; kills it after `kill_ms` milliseconds (`None`: lets it finish).
fn child(dir: &Path, from: u64, end: u64, pause_ms: u64, kill_ms: Option<u64>) -> Printed {
    let mut child = common::spawn_child(
        module_path!(),
        "acknowledged_child",
        &[
            ("DDPERSIST_ACK_DIR", dir.display().to_string()),
            ("DDPERSIST_ACK_FROM", from.to_string()),
            ("DDPERSIST_ACK_END", end.to_string()),
            ("DDPERSIST_ACK_PAUSE", pause_ms.to_string()),
        ],
    );
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut printed = Printed::default();
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            // (The test harness prints `test acknowledged_child ... ` before the first line.)
            let line = line.rsplit("... ").next().unwrap_or_default();
            let words: Vec<&str> = line.split(' ').collect();
            match words[..] {
                ["resume", r] => printed.resume = Some(r.parse().unwrap()),
                ["ack", a] => printed.ack = printed.ack.max(a.parse().unwrap()),
                ["out", k, v, t, d] => {
                    let update = (k.to_string(), v.parse().unwrap(), t.parse().unwrap());
                    *printed.out.entry(update).or_insert(0) += d.parse::<i64>().unwrap();
                }
                ["done"] => printed.done = true,
                _ => {}
            }
        }
        printed
    });
    if let Some(ms) = kill_ms {
        std::thread::sleep(Duration::from_millis(ms));
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    common::assert_killed_or_succeeded(status, &format!("child from {from}"));
    let mut printed = reader.join().unwrap();
    printed.out.retain(|_, d| *d != 0);
    printed
}

fn kill_loop(cycles: u64, seed: u64) {
    const END: u64 = 100;
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(seed);
    // The source keeps the times at and after `kept`: what was acknowledged is gone for good.
    let mut kept = 0;
    for cycle in 0..cycles {
        let pause = 1 + rng.below(4);
        let kill_ms = 40 + rng.below(250);
        let printed = child(dir.path(), kept, END, pause, Some(kill_ms));
        let what = format!("seed {seed} cycle {cycle} (fed from {kept}, killed after {kill_ms} ms)");
        if let Some(resume) = printed.resume {
            assert!(
                kept <= resume,
                "{what}: the source dropped times up to {kept}, the run resumed at {resume}"
            );
        }
        kept = kept.max(printed.ack.min(END));
        let store = Store::open(dir.path()).unwrap();
        for id in ["p", "a"] {
            assert_eq!(
                operator_content(&store, id, 2, kept),
                input(kept),
                "{what}: {id} below the acknowledgement {kept}"
            );
        }
    }
    let printed = child(dir.path(), kept, END, 0, None);
    let resume = printed.resume.unwrap();
    assert!(
        kept <= resume,
        "final run resumed at {resume}, the source kept times from {kept}"
    );
    assert!(printed.done, "the final run did not finish");
    let store = Store::open(dir.path()).unwrap();
    for id in ["p", "a"] {
        assert_eq!(
            operator_content(&store, id, 2, u64::MAX),
            input(END),
            "seed {seed}: {id} after the final run"
        );
    }
    assert_eq!(printed.out, input(END), "seed {seed}: the final run's output");
}

/// Kills a two-worker run again and again; the source re-feeds only what was not acknowledged.
/// `DDPERSIST_ACK_LOOPS=long` runs 6 seeds of 8 kills, by default 2 of 4.
#[test]
fn an_acknowledging_source_loses_nothing_and_doubles_nothing() {
    let long = std::env::var("DDPERSIST_ACK_LOOPS").is_ok_and(|v| v == "long");
    let (seeds, cycles) = if long { (6, 8) } else { (2, 4) };
    for seed in 0..seeds {
        kill_loop(cycles, seed + 1);
    }
}
