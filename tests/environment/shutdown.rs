//! A power loss on a real file system: ext4 on a loop device shut down with `EXT4_IOC_SHUTDOWN`
//! (`NOLOGFLUSH`) while a store, or a persisted dataflow, runs; then mounted again (journal replay).
//!
//! Expected: calls after the shutdown fail (`EIO`, or the store poisoned naming it), nothing panics or
//! hangs, and after the mount every acknowledged write and seal is in the reopened store; a restarted
//! dataflow resumes at or beyond the probe frontier reached before the loss and equals DD's answer.

use crate::common::compare::Log;
use crate::common::Rng;
use crate::df_full::{assert_frontier_held, restart_and_check, run_with, Kind, Row};
use crate::env::Ext4;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn val(k: u64) -> Vec<u8> {
    vec![(k % 251) as u8; 64]
}

#[derive(Default, Debug)]
struct Acks {
    /// stream -> key -> (time) of each acknowledged write (durable streams) or appended update.
    keys: BTreeMap<String, BTreeMap<u64, u64>>,
    uppers: BTreeMap<String, u64>,
    errors: Vec<String>,
    /// Every call and its outcome, in order.
    ops: Vec<String>,
}

/// One store workload on ext4, shut down after `delay_ms`: stream "d" durable (writes, seals, logged
/// seals), "n" not durable (writes and seals), "a" appended; merges in the background (fan-in 2).
fn store_power_loss(seed: u64) {
    let Some(fs) = Ext4::mount(64) else { return };
    let dir = fs.dir.join("store");
    let o = Options {
        merge_fan_in: 2,
        compaction_threads: 1,
        wal_segment_bytes: 64 * 1024,
        logged_flush_delay: Duration::from_millis(2),
        ..Options::default()
    };
    let store = Store::open_with(&dir, o.clone()).unwrap();
    for (id, durable) in [("d", true), ("n", false), ("a", false)] {
        store.create_stream(id, StreamOptions { durable }).unwrap();
    }
    let acks = Arc::new(Mutex::new(Acks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let (st, ak, sp) = (store.clone(), acks.clone(), stop.clone());
    let writer = std::thread::spawn(move || {
        let mut rng = Rng(seed);
        let mut t = 0u64;
        let mut key = 0u64;
        let mut fails = 0;
        while !sp.load(Ordering::SeqCst) && fails < 20 {
            let n = 1 + rng.below(30);
            let ups: Vec<_> = (key..key + n).map(|k| (k, val(k), t, 1i64)).collect();
            key += n;
            let r = match rng.below(6) {
                0 | 1 => st.write("d", &ups).map(|_| "d"),
                2 => st.write("n", &ups).map(|_| "n-unsealed"),
                _ => {
                    let upper = *ak.lock().unwrap().uppers.get("a").unwrap_or(&0);
                    let ups: Vec<_> = ups
                        .iter()
                        .map(|(k, v, _, d)| (*k, v.clone(), upper, *d))
                        .collect();
                    st.append("a", &ups, upper, upper + 1).map(|_| "a")
                }
            };
            ak.lock().unwrap().ops.push(format!(
                "write/append t{t} keys {}..{}: {:?}",
                key - n,
                key,
                r.as_ref().map_err(|e| e.to_string())
            ));
            match r {
                Ok(id) => {
                    let mut a = ak.lock().unwrap();
                    if id == "a" {
                        *a.uppers.entry("a".into()).or_insert(0) += 1;
                    }
                    if id == "n-unsealed" {
                        // acknowledged only once sealed: keep them pending under "n?"
                        a.keys
                            .entry("n?".into())
                            .or_default()
                            .extend(ups.iter().map(|u| (u.0, t)));
                    } else {
                        a.keys
                            .entry(id.into())
                            .or_default()
                            .extend(ups.iter().map(|u| (u.0, u.2)));
                    }
                }
                Err(e) => {
                    fails += 1;
                    ak.lock().unwrap().errors.push(e.to_string());
                }
            }
            if rng.below(4) == 0 {
                let id = if rng.below(2) == 0 { "d" } else { "n" };
                let logged = id == "d" && rng.below(2) == 0;
                let r = if logged {
                    st.seal_logged(id, t + 1)
                } else {
                    st.seal(id, t + 1).map(|_| ())
                };
                ak.lock().unwrap().ops.push(format!(
                    "seal{} {id} {}: {:?}",
                    if logged { "_logged" } else { "" },
                    t + 1,
                    r.as_ref().map_err(|e| e.to_string())
                ));
                match r {
                    Ok(()) => {
                        let mut a = ak.lock().unwrap();
                        a.uppers.insert(id.into(), t + 1);
                        if id == "n" {
                            let pend = a.keys.remove("n?").unwrap_or_default();
                            a.keys.entry("n".into()).or_default().extend(pend);
                        }
                    }
                    Err(e) => {
                        fails += 1;
                        ak.lock().unwrap().errors.push(e.to_string());
                    }
                }
                t += 1;
            }
        }
    });
    let mut rng = Rng(seed ^ 0xABCD);
    std::thread::sleep(Duration::from_millis(50 + rng.below(400)));
    // Only calls that returned before the shutdown count as acknowledged: on this kernel an `fdatasync`
    // racing with `EXT4_IOC_SHUTDOWN` may return success without its data reaching the disk (a control
    // of plain `pwrite` + `fdatasync` appends lost acknowledged bytes the same way).
    let before = {
        let a = acks.lock().unwrap();
        Acks {
            keys: a.keys.clone(),
            uppers: a.uppers.clone(),
            errors: Vec::new(),
            ops: Vec::new(),
        }
    };
    fs.shutdown();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("the writer panicked");
    eprintln!("seed {seed}: bg {:?}", store.background_error());
    drop(store);
    let mut acks = std::mem::take(&mut *acks.lock().unwrap());
    acks.keys = before.keys;
    acks.uppers = before.uppers;
    eprintln!(
        "seed {seed}: uppers {:?}, acked keys {:?}, first errors {:?}",
        acks.uppers,
        acks.keys
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect::<Vec<_>>(),
        acks.errors.iter().take(3).collect::<Vec<_>>()
    );
    for e in &acks.errors {
        assert!(
            // (under `errors=remount-ro` the shutdown may also turn the mount read-only: os error 30)
            e.contains("os error 5") || e.contains("os error 30") || e.contains("poisoned"),
            "not the shutdown's error: {e}"
        );
    }
    fs.remount();
    // Keep a copy of what the disk held, for `inspect` after a failure.
    let copy = std::path::PathBuf::from(format!("/tmp/ddpersist-powerloss-seed{seed}"));
    let _ = std::fs::remove_dir_all(&copy);
    crate::common::copy_dir(&dir, &copy);
    let listing = std::process::Command::new("ls")
        .args(["-la"])
        .arg(&dir)
        .arg(dir.join("wal"))
        .output()
        .unwrap();
    let store = Store::open_with(&dir, o).unwrap();
    let ops = acks
        .ops
        .iter()
        .rev()
        .take(40)
        .rev()
        .cloned()
        .collect::<Vec<_>>()
        .join("\n");
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    for (id, upper) in &acks.uppers {
        let got = store.upper(id).unwrap();
        assert!(
            got >= *upper,
            "seed {seed}: stream {id} upper {got} below acknowledged {upper}"
        );
    }
    for (id, keys) in &acks.keys {
        if id == "n?" {
            continue;
        }
        let mut held: BTreeMap<u64, i64> = BTreeMap::new();
        for (k, v, _t, d) in store.snapshot(id).unwrap().decode::<u64, Vec<u8>>().unwrap() {
            assert_eq!(v, val(k), "seed {seed}: {id} val of {k}");
            *held.entry(k).or_insert(0) += d;
        }
        let lost: Vec<_> = keys
            .iter()
            .filter(|(k, _)| held.get(k) != Some(&1))
            .map(|(k, t)| (*k, *t, held.get(k).copied()))
            .take(8)
            .collect();
        assert!(
            lost.is_empty(),
            "seed {seed}: stream {id} (upper now {}, acknowledged {:?}) acknowledged keys not held once, (key, time, held diff): {lost:?} (of {}); recovery {:?}; disk copy {}; files:\n{listing}\nlast calls:\n{ops}",
            store.upper(id).unwrap(),
            acks.uppers.get(id),
            keys.len(),
            store.recovery_report(),
            copy.display()
        );
        let dup: Vec<_> = held.iter().filter(|(_, d)| **d != 1).take(5).collect();
        assert!(dup.is_empty(), "seed {seed}: stream {id} diffs not 1: {dup:?}");
    }
    let _ = std::fs::remove_dir_all(&copy);
    let u = store.upper("d").unwrap();
    store.write("d", &[(u64::MAX, val(0), u, 1i64)]).unwrap();
    store.seal("d", u + 1).unwrap();
}

#[test]
fn power_loss_on_ext4_under_a_store_seeds_1_to_4() {
    for seed in 1..=4 {
        store_power_loss(seed);
    }
}

#[test]
#[ignore]
fn power_loss_on_ext4_under_a_store_many_seeds() {
    let seeds: Vec<u64> = match std::env::var("DDPERSIST_ENV_SEEDS") {
        Ok(s) => s.split(',').map(|x| x.parse().unwrap()).collect(),
        Err(_) => (5..=40).collect(),
    };
    for seed in seeds {
        store_power_loss(seed);
    }
}

/// A persisted dataflow (`kind`, `peers`) on ext4, shut down after round `at_round`; then mounted again
/// and restarted from `resume_at()`.
fn dataflow_power_loss(kind: Kind, peers: usize, at_round: u64) {
    let Some(fs) = Ext4::mount(64) else { return };
    let fs = Arc::new(fs);
    let dir = fs.dir.join("store");
    let log: Log<Row> = Default::default();
    let f = fs.clone();
    let first = run_with(
        &dir,
        peers,
        kind,
        400,
        &log,
        Arc::new(move |t| {
            if t == at_round {
                f.shutdown()
            }
        }),
    )
    .unwrap();
    eprintln!("{kind:?} x{peers} power loss: {first:?}");
    assert!(
        first.iter().all(|w| w.stalled.is_none()),
        "a round stalled without an error: {first:?}"
    );
    let frontier = first.iter().filter_map(|w| w.frontier).min().unwrap();
    assert!(
        frontier > at_round,
        "frontier {frontier} not past the rounds completed before the loss"
    );
    // Acknowledged before the shutdown began: the rounds up to `at_round`.
    let acked = at_round + 1;
    assert_frontier_held(&first);
    fs.remount();
    restart_and_check(&dir, peers, kind, acked);
}

#[test]
fn power_loss_on_ext4_under_arrange_typed_2_workers() {
    dataflow_power_loss(Kind::ArrangeTyped, 2, 15);
}

#[test]
fn power_loss_on_ext4_under_persist_1_worker() {
    dataflow_power_loss(Kind::Persist, 1, 25);
}

#[test]
fn power_loss_on_ext4_under_upsert_2_workers() {
    dataflow_power_loss(Kind::Upsert, 2, 30);
}

/// As [`dataflow_power_loss`], the shutdown at a random moment (`delay_ms` after the first round) from
/// another thread, so it lands inside a round's seals and merges.
fn dataflow_power_loss_async(kind: Kind, peers: usize, delay_ms: u64) {
    let Some(fs) = Ext4::mount(64) else { return };
    let fs = Arc::new(fs);
    let dir = fs.dir.join("store");
    let log: Log<Row> = Default::default();
    let f = fs.clone();
    // Rounds worker 0 saw complete (the probe passed them) before the shutdown began.
    let completed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let before = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (c, b) = (completed.clone(), before.clone());
    let first = run_with(
        &dir,
        peers,
        kind,
        100_000,
        &log,
        Arc::new(move |t| {
            c.store(t + 1, Ordering::SeqCst);
            if t == 0 {
                let (f, c, b) = (f.clone(), c.clone(), b.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(delay_ms));
                    b.store(c.load(Ordering::SeqCst), Ordering::SeqCst);
                    f.shutdown();
                });
            }
        }),
    )
    .unwrap();
    eprintln!("{kind:?} x{peers} power loss after {delay_ms} ms: {first:?}");
    assert!(
        first.iter().all(|w| w.stalled.is_none()),
        "a round stalled without an error: {first:?}"
    );
    assert!(
        first.iter().any(|w| w.error.is_some()),
        "no error after the shutdown: {first:?}"
    );
    let acked = before.load(Ordering::SeqCst);
    fs.remount();
    restart_and_check(&dir, peers, kind, acked);
}

#[test]
fn power_loss_at_random_moments_under_dataflows() {
    for (i, kind) in [
        Kind::ArrangeTyped,
        Kind::ArrangeBytes,
        Kind::Persist,
        Kind::Upsert,
    ]
    .into_iter()
    .enumerate()
    {
        for peers in [1, 2] {
            dataflow_power_loss_async(kind, peers, 200 + 137 * i as u64 + 61 * peers as u64);
        }
    }
}
