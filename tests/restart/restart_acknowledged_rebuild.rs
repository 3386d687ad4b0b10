//! From adversarial round 3 (all held): the "acknowledged" protocol (README, DESIGN §5.1 "Durable inputs") with dataflows
//! *dropped* (not killed) at uneven points and rebuilt in the same process, three workers, `u32` times,
//! chains `persist` -> `arrange_persisted` -> DD `count_total`, and `upsert_persisted` -> `arrange_persisted`.
//!
//! Each round every worker feeds its share of times `kept..stop_w` (its own, uneven, stop), records the
//! probe's frontier (the acknowledgement) while stepping, then drops the dataflow; every worker drops before
//! any rebuilds (a barrier with a deadline). The source then forgets what was acknowledged. Checked: the
//! acknowledgement never passes the next run's `resume_at`; the store holds every update below it exactly
//! once; the final run (fed from the last acknowledgement, input closed) outputs the whole input once and
//! DD's `count_total` over the persisted arrangement equals the in-memory answer.

use crate::common;

use common::restart::operator_content;

use ddpersist::operators::{ArrangePersisted, Persist, UpsertPersisted};
use ddpersist::{Codec, PersistManager, Store};
use differential_dataflow::input::Input as _;
use differential_dataflow::operators::CountTotal;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;

const PEERS: usize = 3;
const END: u32 = 60;

type Row = (String, u64);
type Update = (String, u64, u64);

fn rows(t: u32) -> Vec<Row> {
    let t = t as u64;
    let n = if t % 5 == 3 { 0 } else { 1 + t % 4 };
    (0..n)
        .map(|i| (format!("k{}", (t * 7 + i) % 13), t * 10 + i))
        .collect()
}

fn input(end: u32) -> BTreeMap<Update, i64> {
    (0..end)
        .flat_map(|t| rows(t).into_iter().map(move |(k, v)| ((k, v, t as u64), 1)))
        .collect()
}

/// A barrier of `PEERS` threads that panics after a deadline instead of hanging.
struct Barrier {
    arrived: AtomicUsize,
}

impl Barrier {
    fn wait(&self, generation: usize) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.arrived.load(Ordering::SeqCst) < PEERS * (generation + 1) {
            assert!(Instant::now() < deadline, "barrier {generation} timed out");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Chain {
    PersistArrange,
    UpsertArrange,
}

struct Outcome {
    violations: Vec<String>,
    final_rows: BTreeMap<Update, i64>,
    final_counts: BTreeMap<String, i64>,
}

fn run(chain: Chain, rounds: usize, seed: u64) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let manager = PersistManager::new(store.clone());
    let barrier = Arc::new(Barrier {
        arrived: AtomicUsize::new(0),
    });
    let kept = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let violations = Arc::new(Mutex::new(Vec::<String>::new()));
    let out_rows = Arc::new(Mutex::new(Vec::<(Row, u32, i64)>::new()));
    let out_counts = Arc::new(Mutex::new(Vec::<(String, u32, i64)>::new()));
    let (b, k, a, v, orows, ocounts, st) = (
        barrier.clone(),
        kept.clone(),
        acked.clone(),
        violations.clone(),
        out_rows.clone(),
        out_counts.clone(),
        store.clone(),
    );
    timely::execute(timely::Config::process(PEERS), move |worker| {
        let w = worker.index();
        let mut generation = 0;
        let mut rng = common::Rng(seed * 1000 + w as u64);
        for round in 0..=rounds {
            let last = round == rounds;
            let probe = ProbeHandle::<u32>::new();
            let store = st.clone();
            let (orows, ocounts) = (orows.clone(), ocounts.clone());
            let token = manager.token("p", w).unwrap();
            let (mut input, mut upserts, resume) = worker.dataflow::<u32, _, _>(|scope| {
                let (arranged, resume, input, upserts) = match chain {
                    Chain::PersistArrange => {
                        let (input, rows) = scope.new_collection::<Row, i64>();
                        let (persisted, ph) = rows.persist(token).unwrap();
                        let (arranged, ah) = persisted.arrange_persisted(&store, "a").unwrap();
                        (arranged, ph.resume_at().min(ah.resume_at()), Some(input), None)
                    }
                    Chain::UpsertArrange => {
                        drop(token);
                        use timely::dataflow::operators::Input as _;
                        let (handle, stream) = scope.new_input::<Vec<(String, Option<u64>, u32)>>();
                        let (upserted, uh) =
                            UpsertPersisted::<String, u64, u32>::upsert_persisted(stream, &store, "u").unwrap();
                        let (arranged, ah) = upserted.arrange_persisted(&store, "a").unwrap();
                        (arranged, uh.resume_at().min(ah.resume_at()), None, Some(handle))
                    }
                };
                let collection = arranged
                    .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()));
                collection
                    .inner.clone()
                    .inspect(move |x| {
                        if last {
                            orows.lock().unwrap().push(x.clone())
                        }
                    })
                    .probe_with(&probe);
                collection
                    .map(|(k, _)| k)
                    .count_total()
                    .inner
                    .inspect(move |((k, c), t, d)| {
                        if last {
                            ocounts.lock().unwrap().push((format!("{k}:{c}"), *t, *d as i64))
                        }
                    })
                    .probe_with(&probe);
                (input, upserts, resume)
            });
            b.wait(generation);
            generation += 1;
            let from = k.load(Ordering::SeqCst) as u32;
            if (from as u64) > resume {
                v.lock().unwrap().push(format!(
                    "round {round} worker {w}: acknowledged {from}, but resume_at is {resume}"
                ));
            }
            let stop = if last { END } else { (from + 3 + rng.below(20) as u32).min(END) };
            if let Some(i) = input.as_mut() {
                i.advance_to(from);
            }
            if let Some(u) = upserts.as_mut() {
                u.advance_to(from);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            for t in from..stop {
                for (j, (key, val)) in rows(t).into_iter().enumerate() {
                    if j % PEERS == w {
                        if let Some(i) = input.as_mut() {
                            i.update((key.clone(), val), 1);
                        }
                        if let Some(u) = upserts.as_mut() {
                            // Each row its own key: an upsert inserts it (keys are unique per row).
                            u.send((format!("{key}/{val}"), Some(val), t));
                        }
                    }
                }
                if let Some(i) = input.as_mut() {
                    i.advance_to(t + 1);
                    i.flush();
                }
                if let Some(u) = upserts.as_mut() {
                    u.advance_to(t + 1);
                }
                for _ in 0..rng.below(6) {
                    worker.step();
                }
                let ack = probe.with_frontier(|f| f.first().copied().unwrap_or(END)) as u64;
                a.fetch_max(ack, Ordering::SeqCst);
                assert!(Instant::now() < deadline);
            }
            if last {
                drop(input.take());
                drop(upserts.take());
                while !probe.done() {
                    worker.step();
                    assert!(Instant::now() < deadline, "final run did not finish");
                }
                let ack = probe.with_frontier(|f| f.first().copied().unwrap_or(END)) as u64;
                a.fetch_max(ack, Ordering::SeqCst);
            } else {
                let until = Instant::now() + Duration::from_millis(rng.below(60));
                while Instant::now() < until {
                    worker.step();
                    let ack = probe.with_frontier(|f| f.first().copied().unwrap_or(END)) as u64;
                    a.fetch_max(ack, Ordering::SeqCst);
                }
            }
            for id in worker.installed_dataflows() {
                worker.drop_dataflow(id);
            }
            drop((input, upserts));
            b.wait(generation);
            generation += 1;
            if w == 0 {
                let ack = a.load(Ordering::SeqCst).min(END as u64);
                k.fetch_max(ack, Ordering::SeqCst);
                let kept = k.load(Ordering::SeqCst) as u32;
                let want = expected_a(chain, kept);
                let id = "a";
                let got = operator_content(&st, id, PEERS, kept as u64);
                if got != want {
                    let lost: Vec<_> = want.keys().filter(|u| got.get(u) != Some(&1)).take(5).collect();
                    let extra: Vec<_> = got.iter().filter(|(u, d)| want.get(u) != Some(d)).take(5).collect();
                    v.lock().unwrap().push(format!(
                        "round {round}: stream {id} below the acknowledgement {kept}: missing/wrong {lost:?}, extra/wrong {extra:?}"
                    ));
                }
            }
            b.wait(generation);
            generation += 1;
        }
    })
    .unwrap();
    let mut final_rows = BTreeMap::new();
    for ((k, val), t, d) in out_rows.lock().unwrap().iter() {
        *final_rows.entry((k.clone(), *val, *t as u64)).or_insert(0) += d;
    }
    final_rows.retain(|_, d| *d != 0);
    let mut final_counts = BTreeMap::new();
    for (kc, _, d) in out_counts.lock().unwrap().iter() {
        *final_counts.entry(kc.clone()).or_insert(0) += d;
    }
    final_counts.retain(|_, d| *d != 0);
    let violations = violations.lock().unwrap().clone();
    Outcome {
        violations,
        final_rows,
        final_counts,
    }
}

fn expected_a(chain: Chain, end: u32) -> BTreeMap<Update, i64> {
    match chain {
        Chain::PersistArrange => input(end),
        Chain::UpsertArrange => input(end)
            .into_keys()
            .map(|(k, v, t)| ((format!("{k}/{v}"), v, t), 1))
            .collect(),
    }
}

fn expected_counts() -> BTreeMap<String, i64> {
    let mut by_key = BTreeMap::<String, i64>::new();
    for (k, _, _) in input(END).keys() {
        *by_key.entry(k.clone()).or_default() += 1;
    }
    by_key.into_iter().map(|(k, c)| (format!("{k}:{c}"), 1)).collect()
}

fn check(chain: Chain, seed: u64) {
    let out = run(chain, 6, seed);
    assert!(
        out.violations.is_empty(),
        "{chain:?} seed {seed}: {:#?}",
        out.violations
    );
    match chain {
        Chain::PersistArrange => {
            assert_eq!(out.final_rows, input(END), "{chain:?} seed {seed}: final rows");
            assert_eq!(
                out.final_counts,
                expected_counts(),
                "{chain:?} seed {seed}: final counts"
            );
        }
        Chain::UpsertArrange => {
            assert_eq!(
                out.final_rows,
                expected_a(chain, END),
                "{chain:?} seed {seed}: final rows"
            );
        }
    }
}

#[test]
fn ack_persist_arrange_three_workers_dropped_unevenly() {
    for seed in 1..=std::env::var("DDPERSIST_ACK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
    {
        check(Chain::PersistArrange, seed);
    }
}

#[test]
fn ack_upsert_arrange_three_workers_dropped_unevenly() {
    for seed in 1..=std::env::var("DDPERSIST_ACK_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
    {
        check(Chain::UpsertArrange, seed);
    }
}
