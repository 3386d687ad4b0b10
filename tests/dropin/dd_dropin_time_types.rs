//! Adversarial round 9: the typed drop-in operators at other timestamps than `u32`/`u64` — `i32` times
//! from negative ones, `Product<(), u32>`, `i16` up to its greatest time, `u8` up to 255, `usize`, and
//! `std::time::Duration` (round 17) — with two workers and a restart from the least `resume_at` (converted with `T::from_u64`), compared with DD's
//! in-memory answers at every time from the resume point on.
#![allow(clippy::type_complexity)]

use crate::common;

use common::compare::{rec, same_at_every_time, Log};
use common::Rng;
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf, PersistTime};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::lattice::Lattice;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::fmt::Debug;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::order::{Product, TotalOrder};

fn data(r: usize) -> Vec<((u16, String), isize)> {
    let mut rng = Rng(r as u64 * 31337 + 11);
    (0..8)
        .map(|_| {
            let k = rng.below(7) as u16;
            let v = format!("v{}", rng.below(3));
            ((k, v), [1, 1, -1, 2, -2][rng.below(5) as usize])
        })
        .collect()
}

fn options() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        max_space_amplification_percent: Some(0),
        ..Options::default()
    }
}

type Logs<T> = Arc<Mutex<Vec<(&'static str, Log<String, T>, Log<String, T>)>>>;

fn log<T>(logs: &Logs<T>, name: &'static str) -> (Log<String, T>, Log<String, T>) {
    let mut l = logs.lock().unwrap();
    // One pair per name, shared by the workers.
    if let Some((_, a, b)) = l.iter().find(|(n, _, _)| *n == name) {
        return (a.clone(), b.clone());
    }
    let (a, b): (Log<String, T>, Log<String, T>) = (Default::default(), Default::default());
    l.push((name, a.clone(), b.clone()));
    (a, b)
}

/// One run: rounds `0..to` at times `times[r]` (increasing), the persisted input fed from the agreed
/// resume point. Returns the resume point as a round index (the first round whose time is at or beyond it).
fn run<T>(dir: &Path, times: Vec<T>, to: usize, logs: &Logs<T>) -> usize
where
    T: PersistTime + Lattice + TotalOrder + timely::ExchangeData + Ord + Debug + std::hash::Hash + Sync,
{
    let store = Store::open_with(dir, options()).unwrap();
    let logs = logs.clone();
    let resume = Arc::new(Mutex::new(0usize));
    let r = resume.clone();
    timely::execute(timely::Config::process(2), move |worker| {
        let probe = ProbeHandle::new();
        let s = store.clone();
        let l = logs.clone();
        let (mut pin, mut din, from) = worker.dataflow::<T, _, _>(|scope| {
            let (pin, pdata) = scope.new_collection::<(u16, String), isize>();
            let (din, ddata) = scope.new_collection::<(u16, String), isize>();
            let pd = pdata.clone().arrange_by_key_persisted(&s, "d").unwrap();
            let pk = pdata.map(|(k, _)| k).arrange_by_self_persisted(&s, "k").unwrap();
            let from = pd
                .handle()
                .unwrap()
                .resume_at()
                .min(pk.handle().unwrap().resume_at());
            let (a, b) = log(&l, "as_collection");
            rec(pd.clone().as_collection(|k, v| format!("{k}{v}")), &a, &probe);
            rec(ddata.clone().map(|(k, v)| format!("{k}{v}")), &b, &probe);
            let (a, b) = log(&l, "count_total");
            rec(pd.clone().count_total().map(|x| format!("{x:?}")), &a, &probe);
            rec(
                ddata.clone().map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                &b,
                &probe,
            );
            let (a, b) = log(&l, "self join");
            let other = pd.clone().as_collection(|k: &u16, v: &String| (*k, v.len()));
            rec(pd.clone().join(other).map(|x| format!("{x:?}")), &a, &probe);
            let dother = ddata.clone().map(|(k, v)| (k, v.len()));
            rec(ddata.clone().join(dother).map(|x| format!("{x:?}")), &b, &probe);
            let (a, b) = log(&l, "reduce");
            let red = |_k: &u16, s: &[(&String, isize)], out: &mut Vec<(String, isize)>| {
                out.push((format!("{}:{}", s[0].0, s[0].1), 1));
            };
            rec(pd.clone().reduce(red).map(|x| format!("{x:?}")), &a, &probe);
            rec(ddata.clone().reduce(red).map(|x| format!("{x:?}")), &b, &probe);
            let (a, b) = log(&l, "keys threshold_total");
            let th = |_k: &u16, c: &isize| if *c > 0 { 1isize } else { 0 };
            rec(
                pk.clone().threshold_total(th).map(|x| format!("{x:?}")),
                &a,
                &probe,
            );
            rec(
                ddata
                    .clone()
                    .map(|x| x.0)
                    .threshold_total(th)
                    .map(|x| format!("{x:?}")),
                &b,
                &probe,
            );
            let (a, b) = log(&l, "keys count_total");
            rec(pk.count_total().map(|x| format!("{x:?}")), &a, &probe);
            rec(
                ddata.map(|x| x.0).count_total().map(|x| format!("{x:?}")),
                &b,
                &probe,
            );
            (pin, din, from)
        });
        // The first round whose time is at or beyond the resume point.
        let from_round = times
            .iter()
            .position(|t| (*t).to_u64() >= from)
            .unwrap_or(times.len());
        *r.lock().unwrap() = from_round;
        if from_round < times.len() {
            pin.advance_to(T::from_u64(from).unwrap());
        }
        for round in 0..to {
            let t = times[round];
            din.advance_to(t);
            if round >= from_round {
                pin.advance_to(t);
            }
            for (i, (x, d)) in data(round).into_iter().enumerate() {
                if i % 2 == worker.index() {
                    din.update(x.clone(), d);
                    if round >= from_round {
                        pin.update(x, d);
                    }
                }
            }
            if let Some(next) = times.get(round + 1) {
                din.advance_to(*next);
                if round + 1 >= from_round {
                    pin.advance_to(*next);
                }
                din.flush();
                pin.flush();
                let start = Instant::now();
                worker.step_while(|| {
                    assert!(start.elapsed() < Duration::from_secs(60), "hang at round {round}");
                    probe.less_than(next)
                });
            }
        }
        // The last round completes only when the inputs close (its time may be the greatest).
        drop((pin, din));
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(60), "hang at the close");
            !probe.done()
        });
    })
    .unwrap();
    let from = *resume.lock().unwrap();
    from
}

fn check<T: Ord + Clone + Debug>(logs: &Logs<T>, times: &[T], what: &str) {
    for (name, a, b) in logs.lock().unwrap().iter() {
        same_at_every_time(a, b, times, &format!("{what}: {name}"));
    }
}

/// Two runs over one store: rounds `0..split` (inputs closed at the end: the source ends there), then
/// rounds `0..n` continuing from the resume point.
fn restart<T>(times: Vec<T>, split: usize)
where
    T: PersistTime + Lattice + TotalOrder + timely::ExchangeData + Ord + Debug + std::hash::Hash + Sync,
{
    let dir = tempfile::tempdir().unwrap();
    let logs: Logs<T> = Arc::default();
    let from = run(dir.path(), times.clone(), split, &logs);
    assert_eq!(from, 0);
    check(&logs, &times[..split], "first run");
    let logs: Logs<T> = Arc::default();
    let from = run(dir.path(), times.clone(), times.len(), &logs);
    assert_eq!(from, split, "resume round of the second run");
    check(&logs, &times[from..], "second run");
}

#[test]
fn i32_times_from_negative_ones() {
    let times: Vec<i32> = vec![
        i32::MIN,
        i32::MIN + 1,
        -1000,
        -7,
        -1,
        0,
        1,
        5,
        6,
        1 << 20,
        i32::MAX - 1,
        i32::MAX,
    ];
    restart(times, 6);
}

#[test]
fn product_times() {
    let times: Vec<Product<(), u32>> = [0u32, 1, 2, 5, 9, 10, 11, 40, 41, u32::MAX - 1]
        .into_iter()
        .map(|t| Product::new((), t))
        .collect();
    restart(times, 5);
}

#[test]
fn i16_times_to_the_greatest() {
    let times: Vec<i16> = vec![-5, -4, 0, 3, 100, 101, i16::MAX - 2, i16::MAX - 1, i16::MAX];
    restart(times, 4);
}

#[test]
fn u8_times_to_255() {
    let times: Vec<u8> = (240..=255).collect();
    restart(times, 9);
}

#[test]
fn usize_times_sparse() {
    let times: Vec<usize> = vec![3, 4, 1000, 1001, 1 << 40, (1 << 40) + 1, usize::MAX - 2];
    restart(times, 3);
}

#[test]
fn i64_times_to_just_below_the_greatest() {
    let times: Vec<i64> = vec![i64::MIN, -3, 0, 7, i64::MAX - 5, i64::MAX - 3, i64::MAX - 1];
    restart(times, 3);
}

/// `std::time::Duration` times (adversarial round 17: refused as a timestamp type), stored in
/// nanoseconds, from zero to just below 2^64 ns (about 584 years).
#[test]
fn duration_times_to_just_below_584_years() {
    let times: Vec<Duration> = [
        0,
        1,
        999,
        1_000_000_000,
        1_000_000_001,
        u64::MAX - 9,
        u64::MAX - 2,
    ]
    .into_iter()
    .map(Duration::from_nanos)
    .collect();
    restart(times, 4);
}

#[test]
fn u64_times_to_just_below_the_closed_frontier() {
    let times: Vec<u64> = vec![0, 1, u64::MAX - 9, u64::MAX - 3, u64::MAX - 2, u64::MAX - 1];
    restart(times, 4);
}
