//! Adversarial concurrency around logged seals flushed late (`Store::seal_logged`, the flush thread's
//! deadlines and size trigger): several threads at once on overlapping streams —
//! * one owner thread per stream `o{i}` mixing `write`, `seal_logged`, `seal`, `append`, `complete_seals`;
//! * a shared stream `sh` that two threads write at times around its upper while a third `seal_logged`s
//!   it (a write refused below a logged upper must leave nothing; an accepted one must never sit below
//!   a seal acknowledged before it began);
//! * a thread dropping and creating stream `d` again while seals of it are logged and unflushed (the new
//!   stream must start empty at upper 0 and never take the old stream's upper);
//! * a thread running `compact`, `complete_seals`, snapshots, `sealed` and lookups on all of them;
//!
//! with flush deadlines of 0, 1 and 5 ms and small flush sizes, merges under pressure (fan-in 2, a bound
//! of 4 batches). At the end every stream equals its model, the store closes within 20 s, and a reopen
//! holds the same. `DDPERSIST_LOGGED_CONC_MS` (default 1500) sets how long each configuration runs; `DDPERSIST_LOGGED_CONC_SEED`
//! is xor-ed into the seeds.

use crate::common;

use common::Rng;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn run_ms() -> u64 {
    std::env::var("DDPERSIST_LOGGED_CONC_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500)
}

type Content = BTreeMap<(u64, u64), i64>;

fn content(store: &Store, s: &str) -> Content {
    let mut out = Content::new();
    for (k, v, t, d) in store.snapshot(s).unwrap().decode::<u64, u64>().unwrap() {
        assert_eq!(k, v);
        *out.entry((k, t)).or_insert(0) += d;
    }
    out.retain(|_, d| *d != 0);
    out
}

/// The owner of stream `o{i}`: returns its model and upper.
fn owner(
    store: &Store,
    i: u64,
    seed: u64,
    stop: &AtomicBool,
    acked: &Mutex<Vec<(u64, u64)>>,
) -> (Content, u64) {
    let s = format!("o{i}");
    let mut rng = Rng(seed);
    let (mut model, mut upper, mut op) = (Content::new(), 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        let k0 = (i + 1) * 1_000_000_000 + op * 100;
        match rng.below(10) {
            0..=4 => {
                let ups: Vec<(u64, u64, u64, i64)> = (0..1 + rng.below(30))
                    .map(|j| (k0 + j, k0 + j, upper + rng.below(5), 1))
                    .collect();
                store.write(&s, &ups).unwrap();
                let mut log = acked.lock().unwrap();
                for (k, _, t, d) in ups {
                    *model.entry((k, t)).or_insert(0) += d;
                    log.push((k, t));
                }
            }
            5..=7 => {
                upper += 1 + rng.below(2);
                store.seal_logged(&s, upper).unwrap();
            }
            8 => {
                let u = upper + 1 + rng.below(3);
                if rng.below(2) == 0 {
                    store.seal(&s, u).unwrap();
                } else {
                    let mut ups: Vec<(u64, u64, u64, i64)> = (0..rng.below(5))
                        .map(|j| (k0 + j, k0 + j, upper + rng.below(u - upper), 1))
                        .collect();
                    ups.sort();
                    store.append(&s, &ups, upper, u).unwrap();
                    let mut log = acked.lock().unwrap();
                    for (k, _, t, d) in ups {
                        *model.entry((k, t)).or_insert(0) += d;
                        log.push((k, t));
                    }
                }
                upper = u;
                assert_eq!(store.upper(&s).unwrap(), u, "{s}: upper after a seal or append");
            }
            _ => {
                store.complete_seals(&s).unwrap();
                assert_eq!(store.upper(&s).unwrap(), upper, "{s}: upper after complete_seals");
            }
        }
    }
    (model, upper)
}

/// The shared stream's writers: write at times around the current pending upper (some refused).
fn shared_writer(store: &Store, w: u64, seed: u64, stop: &AtomicBool, acked_upper: &AtomicU64) -> Content {
    let mut rng = Rng(seed);
    let (mut model, mut op) = (Content::new(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        let base = acked_upper.load(Ordering::SeqCst);
        let t = (base + rng.below(4)).saturating_sub(1);
        let k = (10 + w) * 1_000_000_000 + op;
        match store.write("sh", &[(k, k, t, 1i64)]) {
            Ok(()) => {
                assert!(
                    t >= base,
                    "sh: a write at {t} accepted below a seal to {base} acknowledged before it began"
                );
                model.insert((k, t), 1);
            }
            Err(Error::BadInput { .. }) => {}
            Err(e) => panic!("sh: write at {t}: {e}"),
        }
    }
    model
}

/// The shared stream's sealer: `seal_logged` one past the acknowledged upper, with pauses.
fn shared_sealer(store: &Store, seed: u64, stop: &AtomicBool, acked_upper: &AtomicU64) -> u64 {
    let mut rng = Rng(seed);
    let mut upper = 0;
    while !stop.load(Ordering::Relaxed) {
        upper += 1;
        store.seal_logged("sh", upper).unwrap();
        acked_upper.store(upper, Ordering::SeqCst);
        if rng.below(4) == 0 {
            std::thread::sleep(Duration::from_millis(rng.below(8)));
        }
        if rng.below(20) == 0 {
            store.complete_seals("sh").unwrap();
            assert_eq!(
                store.upper("sh").unwrap(),
                upper,
                "sh: upper after complete_seals"
            );
        }
    }
    upper
}

/// Drops and creates stream `d` again, with logged seals pending at each drop; returns the last model.
fn dropper(store: &Store, seed: u64, stop: &AtomicBool) -> (Content, u64) {
    let mut rng = Rng(seed);
    let (mut model, mut upper, mut op) = (Content::new(), 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        match rng.below(10) {
            0 => {
                store.drop_stream("d").unwrap();
                store.create_stream("d", StreamOptions::default()).unwrap();
                model.clear();
                upper = 0;
                assert_eq!(store.upper("d").unwrap(), 0, "d: created again at upper 0");
                assert!(content(store, "d").is_empty(), "d: created again empty");
            }
            1..=4 => {
                let k = 20_000_000_000 + op;
                let t = upper + rng.below(3);
                store.write("d", &[(k, k, t, 1i64)]).unwrap();
                model.insert((k, t), 1);
            }
            5..=7 => {
                upper += 1;
                store.seal_logged("d", upper).unwrap();
            }
            8 => std::thread::sleep(Duration::from_millis(rng.below(6))),
            _ => {
                let committed = store.upper("d").unwrap();
                assert!(
                    committed <= upper,
                    "d: upper {committed} past the newest seal {upper}"
                );
                assert_eq!(content(store, "d"), model, "d: snapshot");
            }
        }
    }
    (model, upper)
}

/// Reads stream `o{i}` while its owner writes and seals: every update acknowledged before a read began
/// is in it exactly once (snapshots, `get`, `first_time`), whatever flush or merge moves it meanwhile.
fn reader(store: &Store, i: u64, seed: u64, stop: &AtomicBool, acked: &Mutex<Vec<(u64, u64)>>) -> u64 {
    let s = format!("o{i}");
    let mut rng = Rng(seed);
    let mut reads = 0;
    while !stop.load(Ordering::Relaxed) {
        reads += 1;
        let before: Vec<(u64, u64)> = acked.lock().unwrap().clone();
        if rng.below(3) == 0 {
            let got = content(store, &s);
            for kt in &before {
                assert_eq!(
                    got.get(kt),
                    Some(&1),
                    "{s}: acknowledged update {kt:?} in a snapshot"
                );
            }
            assert!(
                got.values().all(|&d| d == 1),
                "{s}: a diff other than 1 in a snapshot"
            );
        } else if let Some(&(k, t)) = before.get(rng.below(before.len() as u64 + 1) as usize) {
            let vals: Vec<(u64, i64)> = store.get(&s, &k, u64::MAX - 1).unwrap();
            assert_eq!(vals, vec![(k, 1)], "{s}: get of acknowledged key {k}");
            assert_eq!(
                store.first_time(&s, &k).unwrap(),
                Some(t),
                "{s}: first_time of key {k}"
            );
        }
    }
    reads
}

/// Compactions, completions and reads on every stream (an unknown stream: `d` between drop and create).
fn meddler(store: &Store, seed: u64, stop: &AtomicBool) {
    let mut rng = Rng(seed);
    let ids = ["o0", "o1", "o2", "sh", "d"];
    while !stop.load(Ordering::Relaxed) {
        let s = ids[rng.below(ids.len() as u64) as usize];
        let r = match rng.below(5) {
            0 => store.compact(s).map(|_| ()),
            1 => store.complete_seals(s),
            2 => store.snapshot(s).and_then(|snap| snap.to_vec()).map(|_| ()),
            3 => store.sealed(s).map(|_| ()),
            _ => store
                .get::<u64, u64>(s, &rng.below(1 << 40), u64::MAX - 1)
                .map(|_| ()),
        };
        match r {
            Ok(()) | Err(Error::UnknownStream { .. }) => {}
            Err(e) => panic!("{s}: {e}"),
        }
        if rng.below(8) == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Closes `store` on another thread; fails if that takes more than 20 s.
fn close_within(store: Store, what: &str) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(store);
        tx.send(()).unwrap();
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what}: the store did not close within 20 s"));
}

fn scenario(dir: &Path, options: Options, seed: u64) {
    let seed = seed
        ^ std::env::var("DDPERSIST_LOGGED_CONC_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0u64);
    let what = format!(
        "seed {seed} flush bytes {} delay {:?}",
        options.logged_flush_bytes, options.logged_flush_delay
    );
    let store = Store::open_with(dir, options.clone()).unwrap();
    for s in ["o0", "o1", "o2", "sh", "d"] {
        store.create_stream(s, StreamOptions::default()).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let shared_models = Arc::new(Mutex::new(Vec::new()));
    let logs: Vec<Mutex<Vec<(u64, u64)>>> = (0..3).map(|_| Mutex::new(Vec::new())).collect();
    let results = std::thread::scope(|scope| {
        let owners: Vec<_> = (0..3)
            .map(|i| {
                let (store, stop, log) = (&store, &stop, &logs[i as usize]);
                scope.spawn(move || owner(store, i, seed * 10 + i, stop, log))
            })
            .collect();
        for i in 0..3u64 {
            let (store, stop, log) = (&store, &stop, &logs[i as usize]);
            scope.spawn(move || reader(store, i, seed * 100 + i, stop, log));
        }
        for w in 0..2 {
            let (store, stop, acked, models) = (&store, &stop, &acked, &shared_models);
            scope.spawn(move || {
                let m = shared_writer(store, w, seed * 10 + 5 + w, stop, acked);
                models.lock().unwrap().push(m);
            });
        }
        let sealer = {
            let (store, stop, acked) = (&store, &stop, &acked);
            scope.spawn(move || shared_sealer(store, seed * 10 + 7, stop, acked))
        };
        let drop_thread = {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || dropper(store, seed * 10 + 8, stop))
        };
        {
            let (store, stop) = (&store, &stop);
            scope.spawn(move || meddler(store, seed * 10 + 9, stop));
        }
        std::thread::sleep(Duration::from_millis(run_ms()));
        stop.store(true, Ordering::Relaxed);
        let owners: Vec<(Content, u64)> = owners.into_iter().map(|h| h.join().unwrap()).collect();
        (owners, sealer.join().unwrap(), drop_thread.join().unwrap())
    });
    let (owners, sh_upper, d) = results;
    let mut sh = Content::new();
    for m in shared_models.lock().unwrap().iter() {
        sh.extend(m.iter().map(|(k, d)| (*k, *d)));
    }
    let mut expect: Vec<(String, Content, u64)> = owners
        .into_iter()
        .enumerate()
        .map(|(i, (m, u))| (format!("o{i}"), m, u))
        .collect();
    expect.push(("sh".into(), sh, sh_upper));
    expect.push(("d".into(), d.0, d.1));
    let check = |store: &Store, when: &str| {
        for (s, m, u) in &expect {
            assert_eq!(&content(store, s), m, "{what} {when}: content of {s}");
            store.complete_seals(s).unwrap();
            assert_eq!(store.upper(s).unwrap(), *u, "{what} {when}: upper of {s}");
        }
    };
    check(&store, "live");
    assert_eq!(store.background_error(), None, "{what}: background error");
    close_within(store, &what);
    let store = Store::open_with(dir, options).unwrap();
    check(&store, "reopened");
    close_within(store, &what);
}

fn options(flush_bytes: usize, delay: Duration, threads: usize) -> Options {
    Options {
        logged_flush_bytes: flush_bytes,
        logged_flush_delay: delay,
        compaction_threads: threads,
        merge_fan_in: 2,
        max_batches_per_stream: 4,
        ..Options::default()
    }
}

#[test]
fn concurrent_logged_seals_with_short_deadlines() {
    for (i, (bytes, delay, threads)) in [
        (0, Duration::ZERO, 1),
        (4096, Duration::from_millis(1), 2),
        (1 << 20, Duration::from_millis(5), 1),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        scenario(dir.path(), options(bytes, delay, threads), 0xad05_2000 + i as u64);
    }
}

#[test]
fn concurrent_logged_seals_waiting_for_close() {
    // The flush thread never fires by time or size: close writes everything.
    for (i, (bytes, delay, threads)) in [
        (usize::MAX, Duration::MAX, 1),
        (8 << 20, Duration::from_secs(3600), 0),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = tempfile::tempdir().unwrap();
        scenario(dir.path(), options(bytes, delay, threads), 0xad05_2100 + i as u64);
    }
}
