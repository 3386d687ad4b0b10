//! Too few file descriptors (`EMFILE`): a child process lowers its `RLIMIT_NOFILE` and opens a store of
//! many streams and batch files, writes, seals, merges, and runs a persisted dataflow over it.
//!
//! Expected: the store maps its batch files and needs no descriptor per file (or, failing that, every
//! failure is a clear `Too many open files` error naming the file); nothing panics; whatever the child
//! acknowledged is in the store when the parent reopens it without the limit.

use crate::common::{child_var, spawn_child};
use ddpersist::operators::ArrangeTyped;
use ddpersist::{Options, Store, StreamOptions};
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

const STREAMS: u64 = 20;
const SEALS: u64 = 15;

fn sid(s: u64) -> String {
    format!("s{s:02}")
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// What a worker of the child's dataflow reports when it stopped because another worker's failed.
const SIBLING: &str = "dataflow: stopped after another worker's error";

fn no_merges() -> Options {
    Options {
        compaction_threads: 0,
        merge_fan_in: 1000,
        ..Options::default()
    }
}

/// The child: lowers its descriptor limit to `DDPERSIST_ENV_NOFILE`, opens the store in `DDPERSIST_ENV_DIR` and works
/// on it, printing `ACK stream upper` for every seal that returned and `ERR what: error` for failures.
#[test]
#[ignore]
fn emfile_child() {
    let Some(dir) = child_var("DDPERSIST_ENV_DIR") else {
        return;
    };
    let limit: u64 = child_var("DDPERSIST_ENV_NOFILE").unwrap().parse().unwrap();
    let before = open_fds();
    let r = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: `setrlimit` reads the `rlimit` it is given, a valid local; it changes only this process's
    // limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) }, 0);
    let o = Options {
        compaction_threads: 1,
        merge_fan_in: 4,
        ..Options::default()
    };
    let store = match Store::open_with(&dir, o) {
        Ok(s) => s,
        Err(e) => {
            println!("ERR open: {e}");
            return;
        }
    };
    println!("INFO fds before open {before}, after open {}", open_fds());
    for s in 0..STREAMS {
        let id = sid(s);
        let ups: Vec<_> = (0..5u64)
            .map(|k| (k + 1000 * s, SEALS * 10 + k, SEALS, 1i64))
            .collect();
        if let Err(e) = store.write(&id, &ups) {
            println!("ERR write {id}: {e}");
            continue;
        }
        match store.seal(&id, SEALS + 1) {
            Ok(_) => println!("ACK {id} {}", SEALS + 1),
            Err(e) => println!("ERR seal {id}: {e}"),
        }
    }
    for s in 0..STREAMS {
        if let Err(e) = store.compact(&sid(s)) {
            println!("ERR compact {}: {e}", sid(s));
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    if let Some(b) = store.background_error() {
        println!("ERR background: {b}");
    }
    println!("INFO fds at end {}", open_fds());
    // A persisted dataflow in the same process, over the same store.
    let st = store.clone();
    let failed = Arc::new(AtomicBool::new(false));
    let res = timely::execute(timely::Config::process(2), move |worker| {
        let failed = failed.clone();
        let probe = ProbeHandle::new();
        let (mut input, handle) = worker
            .dataflow::<u64, _, _>(|scope| {
                let (input, c) = scope.new_collection::<(u64, u64), i64>();
                let a = c.arrange_by_key_persisted(&st, "df").map_err(|e| e.to_string())?;
                let h = a.handle().unwrap().clone();
                a.stream.probe_with(&probe);
                Ok::<_, String>((input, h))
            })
            .map_err(|e| format!("build: {e}"))?;
        input.advance_to(handle.resume_at());
        let mut outcome = Ok(());
        for t in handle.resume_at()..handle.resume_at() + 30 {
            input.update((t * 2 + worker.index() as u64, t), 1);
            input.advance_to(t + 1);
            input.flush();
            let start = std::time::Instant::now();
            // Parked at most 10 ms at a time: a sibling's failure or the deadline ends the wait without
            // an event.
            worker.step_or_park_while(Some(Duration::from_millis(10)), || {
                handle.error().is_none()
                    && !failed.load(Ordering::SeqCst)
                    && probe.less_than(&(t + 1))
                    && start.elapsed() < Duration::from_secs(5)
            });
            if let Some(e) = handle.error() {
                failed.store(true, Ordering::SeqCst);
                outcome = Err(format!("dataflow: {e}"));
                break;
            }
            if failed.load(Ordering::SeqCst) {
                // Another worker's operator stopped and holds its frontier (fail-stop): this one's
                // output cannot pass the time either.
                outcome = Err(SIBLING.to_string());
                break;
            }
            if probe.less_than(&(t + 1)) {
                outcome = Err(format!("dataflow: stalled at {t} without an error"));
                break;
            }
        }
        // A stopped operator holds its frontier for good: the dataflow ends only when dropped.
        crate::common::drop_dataflows(worker);
        outcome
    });
    match res {
        Ok(g) => {
            for r in g.join() {
                match r {
                    Ok(Ok(())) => println!("ACK dataflow"),
                    Ok(Err(e)) if e == SIBLING => println!("INFO {e}"),
                    Ok(Err(e)) => println!("ERR {e}"),
                    Err(e) => println!("ERR worker panicked: {e}"),
                }
            }
        }
        Err(e) => println!("ERR execute: {e}"),
    }
    println!("DONE");
}

fn emfile(limit: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let mut want: BTreeMap<String, BTreeMap<(u64, u64), i64>> = BTreeMap::new();
    {
        let store = Store::open_with(&dir, no_merges()).unwrap();
        for s in 0..STREAMS {
            let id = sid(s);
            store.create_stream(&id, StreamOptions::default()).unwrap();
            for t in 0..SEALS {
                let ups: Vec<_> = (0..5u64).map(|k| (k + 1000 * s, t * 10 + k, t, 1i64)).collect();
                store.write(&id, &ups).unwrap();
                store.seal(&id, t + 1).unwrap();
                for (k, v, _, d) in ups {
                    want.entry(id.clone()).or_default().insert((k, v), d);
                }
            }
        }
    }
    let fds = {
        let before = open_fds();
        let s = Store::open_with(&dir, no_merges()).unwrap();
        let n = open_fds() - before;
        drop(s);
        n
    };
    eprintln!(
        "a store of {} batch files holds {fds} descriptors open",
        STREAMS * SEALS
    );
    let mut child = spawn_child(
        module_path!(),
        "emfile_child",
        &[
            ("DDPERSIST_ENV_DIR", dir.display().to_string()),
            ("DDPERSIST_ENV_NOFILE", limit.to_string()),
        ],
    );
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let status = child.wait().unwrap();
    eprintln!("child (limit {limit}):\n{out}");
    assert!(status.success(), "the child failed (a panic?): {status}");
    assert!(
        out.contains("DONE") || out.contains("ERR open"),
        "child output: {out}"
    );
    for line in out.lines().filter(|l| l.starts_with("ERR")) {
        assert!(
            line.contains("Too many open files") || line.contains("os error 24") || line.contains("poisoned"),
            "not a clear descriptor error: {line}"
        );
    }
    let store = Store::open_with(&dir, no_merges()).unwrap();
    for line in out.lines().filter_map(|l| l.strip_prefix("ACK s")) {
        let mut it = line.split(' ');
        let id = format!("s{}", it.next().unwrap());
        let upper: u64 = it.next().unwrap().parse().unwrap();
        assert!(
            store.upper(&id).unwrap() >= upper,
            "{id}: acknowledged seal {upper} lost"
        );
        for k in 0..5u64 {
            let s: u64 = id[1..].parse().unwrap();
            want.get_mut(&id)
                .unwrap()
                .insert((k + 1000 * s, SEALS * 10 + k), 1);
        }
    }
    for (id, w) in &want {
        let mut got = BTreeMap::new();
        for (k, v, _, d) in store.snapshot(id).unwrap().decode::<u64, u64>().unwrap() {
            *got.entry((k, v)).or_insert(0) += d;
        }
        for (kv, d) in w {
            assert_eq!(got.get(kv), Some(d), "{id}: lost acknowledged {kv:?}");
        }
    }
}

/// 64 descriptors for a store of 300 batch files in 20 streams (the parent measures how many it holds).
#[test]
fn few_file_descriptors_many_batch_files() {
    emfile(64);
}

/// 24 descriptors: very tight.
#[test]
fn very_few_file_descriptors() {
    emfile(24);
}

/// Every limit from 3 (below what the test harness holds) to 8.
#[test]
fn descriptor_limits_3_to_8() {
    for limit in 3..=8 {
        emfile(limit);
    }
}
