//! Durable sources and replays: a durable `persist` source in a cluster whose downstream persisted
//! arrangement replays it after a SIGKILL (nothing doubled, the output DD's answer over what the source
//! kept); a durable arrangement fed through a `map` of a replaying `persist` whose replay lies wholly at
//! or beyond the durable operator's upper (DESIGN §5: "not found"); idle processes.

use crate::cluster::*;
use crate::cluster_killed::spawn_cluster;
use crate::common::{self, Rng};
use crate::schedule::*;
use ddpersist::operators::{ArrangeTyped, Persist, PersistOptions};
use ddpersist::{PersistManager, Store};
use differential_dataflow::input::Input as _;
use std::collections::BTreeMap;
use std::time::Duration;
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

/// The slots with their src updates replaced by what src's durable streams stored at their times.
fn slots_as_stored(slots: &[Slot], stored: &[(Row, u64, i64)]) -> Vec<Slot> {
    let mut by_time: BTreeMap<u64, BTreeMap<Row, i64>> = BTreeMap::new();
    for (r, t, d) in stored {
        *by_time.entry(*t).or_default().entry(r.clone()).or_insert(0) += d;
    }
    slots
        .iter()
        .map(|s| {
            let mut s = s.clone();
            s.src = by_time
                .remove(&s.time)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, d)| *d != 0)
                .collect();
            s
        })
        .collect()
}

/// Nothing stored twice: per slot time, every stored src row's diff is one the slot fed (a row stored
/// with diff 2 where the source sent it once is a double).
fn no_doubles(slots: &[Slot], stored: &[(Row, u64, i64)]) -> Result<(), String> {
    let mut by_time: BTreeMap<(u64, Row), i64> = BTreeMap::new();
    for (r, t, d) in stored {
        *by_time.entry((*t, r.clone())).or_insert(0) += d;
    }
    for ((t, r), d) in by_time.into_iter().filter(|(_, d)| *d != 0) {
        let fed: i64 = slots
            .iter()
            .filter(|s| s.time == t)
            .flat_map(|s| s.src.iter())
            .filter(|(row, _)| *row == r)
            .map(|(_, d)| d)
            .sum();
        if fed != d {
            return Err(format!(
                "src stored {r:?} at {t} with diff {d}, the source fed {fed}"
            ));
        }
    }
    Ok(())
}

/// A durable `persist` source ("srcD") in a two-process cluster, killed at random, restarted and fed
/// new input from the agreed greatest upper of src's streams (README: a durable input continues there):
/// src must hold each slot's updates at most once (updates in flight at the kill may be lost), and dst
/// (downstream, not durable, caught up from src's replay) must be DD's answer over what src holds.
fn durable_killed(threads: usize, seed: u64, rounds: u64) {
    let source = Source::Durable;
    let peers = 2 * threads;
    let slots = cluster_slots(peers, seed, source);
    let (_dirs, paths) = common::temp_dirs(2);
    let mut rng = Rng(seed * 77 + threads as u64);
    // The greatest slot time any run gave src updates of: later runs send only later slots.
    let mut sent: Option<u64> = None;
    for round in 0..rounds {
        let from = sent.map_or(0, |t| t + 1);
        let from_env = [("DDPERSIST_CLUSTERS_CLUSTER_FROM", from.to_string())];
        let mut children = spawn_cluster(&paths, threads, source, seed, &from_env);
        // Every line of both children, read to their end by threads.
        let readers: Vec<_> = children
            .iter_mut()
            .map(|c| {
                let out = c.stdout.take().unwrap();
                let (tx, rx) = std::sync::mpsc::channel::<String>();
                let h = std::thread::spawn(move || {
                    use std::io::BufRead;
                    let mut all = Vec::new();
                    for line in std::io::BufReader::new(out).lines() {
                        let Ok(line) = line else { break };
                        let _ = tx.send(line.clone());
                        all.push(line);
                    }
                    all
                });
                (h, rx)
            })
            .collect();
        let victim = rng.below(2) as usize;
        let kill_after = rng.below(8) + 1;
        let mut completes = 0;
        while completes < kill_after {
            match readers[0].1.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l.starts_with("complete ") => completes += 1,
                Ok(l) if l.starts_with("done") => break,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        std::thread::sleep(Duration::from_millis(rng.below(6)));
        let _ = children[victim].kill();
        std::thread::sleep(Duration::from_millis(20));
        for c in children.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (h, _) in readers {
            for l in h.join().unwrap() {
                if let Some(t) = l.strip_prefix("sent ") {
                    let t: u64 = t.parse().unwrap();
                    sent = Some(sent.map_or(t, |s| s.max(t)));
                }
            }
        }
        let what = format!(
            "{threads}/durable seed {seed} round {round}: killed {victim} after {completes} completes, sent up to {sent:?}"
        );
        eprintln!("{what}");
        let end = slots.len() * (round as usize + 1) / rounds as usize;
        let from = sent.map_or(0, |t| t + 1);
        let seen = run_cluster_from(&paths, threads, source, &slots, end, from);
        if let Some(t) = slots
            .iter()
            .take(end)
            .map(|s| s.time)
            .filter(|t| *t >= from)
            .max()
        {
            sent = Some(sent.map_or(t, |s| s.max(t)));
        }
        let (src, _) = stored_all::<String, u64>(&paths, threads, "srcD");
        no_doubles(&slots, &src)
            .map_err(|e| format!("{what}: {e}"))
            .unwrap();
        let expected = oracle(&slots_as_stored(&slots, &src));
        // What the restarted source emitted must be what srcD holds, at every completed time.
        let passed = seen.passed.unwrap_or(0);
        for s in slots.iter().filter(|s| s.time < passed) {
            let (got, want) = (acc_at(&seen.log_src, s.time), acc_at(&src, s.time));
            assert_eq!(
                got, want,
                "{what}: srcD's output at {} differs from what it stores; resumes {:?}",
                s.time, seen.resumes
            );
        }
        check(&what, &seen, &paths, threads, &slots, &expected).unwrap();
    }
}

#[test]
fn durable_source_in_a_cluster_killed_at_random_1() {
    durable_killed(1, 21, 3);
}

#[test]
fn durable_source_in_a_cluster_killed_at_random_2() {
    durable_killed(2, 22, 3);
}

#[test]
#[ignore = "longer: more seeds"]
fn durable_source_in_a_cluster_killed_at_random_long() {
    for seed in 30..36 {
        durable_killed(1 + (seed as usize % 2), seed, 4);
    }
}

/// One run of `rows → persist("p", not durable) → map(identity) → arrange_by_key_persisted_with("d",
/// durable)` over `dir` with one worker: feeds `rows` at time 0, then either advances past 0 and waits
/// for the output (`complete`) or steps `steps` times without advancing and drops the dataflow (a
/// crash before any seal). Returns what `d` emitted accumulated, and `d`'s handle error.
fn durable_over_map_run(
    dir: &std::path::Path,
    rows: &[Row],
    complete: bool,
) -> (BTreeMap<Row, i64>, Option<String>) {
    let store = Store::open(dir).unwrap();
    let out: std::sync::Arc<std::sync::Mutex<Vec<Upd>>> = Default::default();
    let o = out.clone();
    let rows = rows.to_vec();
    let err = std::sync::Arc::new(std::sync::Mutex::new(None));
    let e2 = err.clone();
    timely::execute_directly(move |worker| {
        let manager = PersistManager::new(store.clone());
        let probe = ProbeHandle::<u64>::new();
        let o = o.clone();
        let (mut input, ph, dh) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<Row, i64>();
            let (p, ph) = rows.persist(manager.token("p", 0).unwrap()).unwrap();
            let d = p
                .map(|r| r)
                .arrange_by_key_persisted_with(
                    &store,
                    "d",
                    PersistOptions {
                        durable: true,
                        ..Default::default()
                    },
                )
                .unwrap();
            let dh = d.handle().unwrap().clone();
            d.as_collection(|k: &String, v: &u64| (k.clone(), *v))
                .inner
                .inspect(move |(r, t, d)| o.lock().unwrap().push((r.clone(), *t, *d)))
                .probe_with(&probe);
            (input, ph, dh)
        });
        let resume = ph.resume_at().min(dh.resume_at());
        input.advance_to(resume);
        if resume == 0 {
            for r in &rows {
                input.update(r.clone(), 1);
            }
        }
        if complete {
            input.advance_to(1.max(resume));
            input.flush();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while probe.less_than(&1) && dh.error().is_none() && std::time::Instant::now() < deadline {
                worker.step();
            }
        } else {
            input.flush();
            for _ in 0..50 {
                worker.step();
            }
        }
        *e2.lock().unwrap() = dh.error().or(ph.error());
        common::drop_dataflows(worker);
    });
    let acc = common::accumulate_rows(&out.lock().unwrap());
    let e = err.lock().unwrap().clone();
    (acc, e)
}

/// A durable arrangement fed through a `map` of a replaying (not durable) `persist`: the build's check
/// (a durable operator directly over a persisted operator's output is refused) does not see through the
/// `map`, and the run-time check needs a replayed update below the durable operator's upper. A crash
/// before either operator's first seal leaves `d` (durable) holding the rows unsealed at time 0 and `p`
/// (not durable) holding nothing, both at upper 0: the source replays from `resume_at() = 0` as README
/// says, and `d` takes the replay as new input.
///
/// Expected: each row once in `d` (or the build or the handle refusing the dataflow, `BadInput`).
/// Observed: every row twice (`d` keeps its recovered unsealed rows and writes the replay again).
/// DESIGN §5 lists this as not detected ("a replay through other operators with nothing below any
/// worker's upper"); README's rule ("an operator downstream of one is built not durable") is the
/// user's to follow. Cause: `operators::replays` only checks a durable operator's input against its
/// upper and the build-time `refuse_durable_over` only the direct output stream of a persisted operator.
/// Kept, ignored, as the limitation's failing input (DESIGN.md §5).
#[test]
#[ignore = "known limitation, DESIGN.md §5: a replay through other operators with nothing below any worker's upper"]
fn durable_arrangement_behind_a_map_of_a_replaying_persist_doubles_rows() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row> = (0..4).map(|i| (format!("k{i}"), i)).collect();
    let (_, e) = durable_over_map_run(dir.path(), &rows, false);
    assert_eq!(e, None);
    let (got, e) = durable_over_map_run(dir.path(), &rows, true);
    let want: BTreeMap<Row, i64> = rows.iter().map(|r| (r.clone(), 1)).collect();
    assert!(
        e.is_some() || got == want,
        "durable `d` behind a map of a replaying persist: expected each row once (or a refusal), got {got:?} (error {e:?})"
    );
}
