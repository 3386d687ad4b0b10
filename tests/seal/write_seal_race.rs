//! Writes racing seals on one stream: writer threads write at times just at or above the upper they last
//! saw, while a sealer thread keeps advancing it (`seal`, `seal_logged`, `append` of nothing). Every write
//! must be either refused (`BadInput`, below the upper) or kept — in the batch of the seal that passed
//! it or unsealed — never lost or sealed into a later interval wrongly; checked by snapshot and lookups,
//! before and after a reopen. Writers are paced a little, or not at all (`unpaced_writers_race_seals`).

use ddpersist::{Error, Options, Store, StreamOptions};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// `(writer, index, time, diff)` of every write the store took.
type Kept = Arc<Mutex<Vec<(u32, u32, u64, i64)>>>;

/// How the writers of [`race`] write.
#[derive(Clone, Copy, PartialEq)]
enum Pace {
    /// A 50 µs pause every 4 writes, for 150 seals.
    Paced,
    /// No pause, until the sealer has done `seals` seals (or a writer `max_writes` writes, a bound on the
    /// test's time): every seal races the writers.
    Unpaced { seals: u64, max_writes: u32 },
}

fn race(durable: bool, logged: bool) {
    race_paced(durable, logged, Pace::Paced)
}

fn race_paced(durable: bool, logged: bool, pace: Pace) {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        logged_flush_bytes: 0,
        merge_fan_in: 2,
        ..Options::default()
    };
    let store = Store::open_with(dir.path(), options.clone()).unwrap();
    store.create_stream("s", StreamOptions { durable }).unwrap();
    let seen = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let kept: Kept = Arc::default();
    let writers: Vec<_> = (0..3u32)
        .map(|w| {
            let (store, seen, stop, kept) = (store.clone(), seen.clone(), stop.clone(), kept.clone());
            std::thread::spawn(move || {
                let (mut ok, mut refused) = (0u64, 0u64);
                let mut i = 0u32;
                while !stop.load(Ordering::SeqCst)
                    && !matches!(pace, Pace::Unpaced { max_writes, .. } if i >= max_writes)
                {
                    let t = seen.load(Ordering::SeqCst) + (i % 3) as u64;
                    let up = (w * 1000 + i % 50, i, t, 1i64);
                    match store.write("s", &[up]) {
                        Ok(()) => {
                            kept.lock().unwrap().push(up);
                            ok += 1;
                        }
                        Err(Error::BadInput { .. }) => refused += 1,
                        Err(e) => panic!("writer {w}: {e}"),
                    }
                    i += 1;
                    if pace == Pace::Paced && i.is_multiple_of(4) {
                        std::thread::sleep(std::time::Duration::from_micros(50));
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    let mut upper = 0u64;
    let rounds = match pace {
        Pace::Paced => 0..150u64,
        Pace::Unpaced { seals, .. } => 0..seals,
    };
    for round in rounds {
        upper += 1;
        match round % 3 {
            0 => drop(store.seal("s", upper).unwrap()),
            1 if logged => store.seal_logged("s", upper).unwrap(),
            _ => match store.append::<u32, u32>("s", &[], upper - 1, upper) {
                Ok(_) => {}
                Err(e) => panic!("append [{}, {upper}): {e}", upper - 1),
            },
        }
        seen.store(upper, Ordering::SeqCst);
    }
    stop.store(true, Ordering::SeqCst);
    let mut total_ok = 0;
    for w in writers {
        let (ok, _refused) = w.join().unwrap();
        total_ok += ok;
    }
    assert!(total_ok > 0);
    store.complete_seals("s").unwrap();
    let kept = kept.lock().unwrap().clone();
    let check = |store: &Store, what: &str, lost_unsealed: bool| {
        let upper = store.upper("s").unwrap();
        let mut want: BTreeMap<(u32, u32, u64), i64> = BTreeMap::new();
        for (k, v, t, d) in &kept {
            if lost_unsealed && *t >= upper {
                continue;
            }
            *want.entry((*k, *v, *t)).or_insert(0) += d;
        }
        let mut got: BTreeMap<(u32, u32, u64), i64> = BTreeMap::new();
        for (k, v, t, d) in store.snapshot("s").unwrap().decode::<u32, u32>().unwrap() {
            *got.entry((k, v, t)).or_insert(0) += d;
        }
        let missing: Vec<_> = want
            .iter()
            .filter(|(k, d)| got.get(k) != Some(d))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .iter()
            .filter(|(k, d)| want.get(k) != Some(d))
            .take(5)
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{what}: {} kept writes, missing {missing:?}, extra {extra:?}",
            kept.len()
        );
        // Lookups agree for a few keys.
        for key in [0u32, 1, 1000, 2049] {
            let mut acc: BTreeMap<u32, i64> = BTreeMap::new();
            for ((k, v, _), d) in want.iter().filter(|x| x.0 .0 == key) {
                let _ = k;
                *acc.entry(*v).or_insert(0) += d;
            }
            let acc: Vec<(u32, i64)> = acc.into_iter().collect();
            assert_eq!(
                store.get::<u32, u32>("s", &key, u64::MAX - 1).unwrap(),
                acc,
                "{what}: key {key}"
            );
        }
    };
    check(&store, "running", false);
    drop(store);
    let store = Store::open_with(dir.path(), options).unwrap();
    check(&store, "reopened", !durable);
}

#[test]
fn writes_race_seals_durable() {
    race(true, true);
}

#[test]
fn writes_race_seals_not_durable() {
    race(false, false);
}

/// Three writers writing one update at a time with no pause (about 2 M writes a second between them on
/// this project's machine) beside seals: every write is kept or refused, as with paced writers. Seals then
/// take as long as what they seal (BENCHMARKS.md, "Seals beside unpaced writers"); an earlier reading of
/// that as the sealer starved of the state lock was not borne out.
#[test]
fn unpaced_writers_race_seals() {
    let pace = Pace::Unpaced {
        seals: 30,
        max_writes: 200_000,
    };
    race_paced(false, false, pace);
    // Each durable write waits for its WAL group's fsync: fewer.
    let pace = Pace::Unpaced {
        seals: 30,
        max_writes: 20_000,
    };
    race_paced(true, true, pace);
}
