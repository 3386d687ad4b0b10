//! Lookups racing the background: one thread writes and logs seals (`seal_logged`, flushed by a
//! background thread) or seals, advances the since and merges, while readers look keys up as of times
//! the writer has already sealed (published after the seal returned): the answer must be the model's,
//! whatever the flush or merge threads are doing (an update must never be in neither the memtable, the
//! flushing buckets nor a batch).

use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

const KEYS: u32 = 8;

/// `(key, val, time, diff)` of every update written, shared with the reading threads.
type Model = Arc<RwLock<Vec<(u32, u32, u64, i64)>>>;

fn update(i: u64) -> (u32, u32, i64) {
    (
        (i * 7 % KEYS as u64) as u32,
        (i % 3) as u32,
        if i % 5 == 4 { -1 } else { 1 },
    )
}

fn race(options: Options, logged: bool, advance_since: bool) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let sealed = Arc::new(AtomicU64::new(0));
    let since = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let model: Model = Arc::default();
    let writer = {
        let (store, sealed, since, done, model) = (
            store.clone(),
            sealed.clone(),
            since.clone(),
            done.clone(),
            model.clone(),
        );
        std::thread::spawn(move || {
            let mut i = 0u64;
            for t in 0..100u64 {
                let mut ups = Vec::new();
                for _ in 0..20 {
                    let (k, v, d) = update(i);
                    ups.push((k, v, t, d));
                    i += 1;
                }
                model.write().unwrap().extend(ups.iter().copied());
                store.write("s", &ups).unwrap();
                if logged && t % 3 != 0 {
                    store.seal_logged("s", t + 1).unwrap();
                } else {
                    store.seal("s", t + 1).unwrap();
                }
                sealed.store(t + 1, Ordering::SeqCst);
                if advance_since && t % 10 == 9 {
                    let s = t - 5;
                    store.allow_compaction("s", s).unwrap();
                    since.store(s, Ordering::SeqCst);
                    if t % 20 == 19 {
                        store.compact("s").unwrap();
                    }
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..2)
        .map(|r| {
            let (store, sealed, since, done, model) = (
                store.clone(),
                sealed.clone(),
                since.clone(),
                done.clone(),
                model.clone(),
            );
            std::thread::spawn(move || {
                let mut checks = 0u64;
                loop {
                    let finished = done.load(Ordering::SeqCst);
                    let upper = sealed.load(Ordering::SeqCst);
                    if upper == 0 {
                        std::thread::yield_now();
                        continue;
                    }
                    let s = since.load(Ordering::SeqCst);
                    let as_of = (upper - 1).max(s);
                    let m: Vec<(u32, u32, u64, i64)> = model
                        .read()
                        .unwrap()
                        .iter()
                        .filter(|u| u.2 <= as_of)
                        .copied()
                        .collect();
                    for key in (r as u32..KEYS).step_by(2) {
                        let got = match store.get::<u32, u32>("s", &key, as_of) {
                            Ok(got) => got,
                            // The since moved past as_of meanwhile: a documented refusal.
                            Err(Error::BadInput { .. }) if since.load(Ordering::SeqCst) > as_of => continue,
                            Err(e) => panic!("get {key} as of {as_of}: {e}"),
                        };
                        let mut want: BTreeMap<u32, i64> = BTreeMap::new();
                        for u in m.iter().filter(|u| u.0 == key) {
                            *want.entry(u.1).or_insert(0) += u.3;
                        }
                        let want: Vec<(u32, i64)> = want.into_iter().filter(|x| x.1 != 0).collect();
                        assert_eq!(
                            got, want,
                            "reader {r}: key {key} as of {as_of} (sealed to {upper}, since {s})"
                        );
                        checks += 1;
                    }
                    if finished {
                        break;
                    }
                }
                checks
            })
        })
        .collect();
    writer.join().unwrap();
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
}

#[test]
fn lookups_race_logged_flushes() {
    race(
        Options {
            logged_flush_bytes: 0,
            logged_flush_delay: std::time::Duration::from_millis(1),
            merge_fan_in: 2,
            ..Options::default()
        },
        true,
        false,
    );
}

#[test]
fn lookups_race_merges_and_since() {
    race(
        Options {
            merge_fan_in: 2,
            block_target_bytes: 128,
            ..Options::default()
        },
        false,
        true,
    );
    race(
        Options {
            logged_flush_bytes: 0,
            merge_fan_in: 2,
            max_space_amplification_percent: Some(0),
            ..Options::default()
        },
        true,
        true,
    );
}
