//! From an adversarial round: `compaction_since` let an upstream arrangement's since pass the upper of a
//! downstream persisted stream that sat at upper 0 (it "holds nothing back") once no live operator
//! claimed it. A chain `a -> b` over 2 workers: worker 0's operator of `b` took in rows (unsealed, not
//! durable) and its worker dropped the dataflow before sealing anything (an error handled by dropping it,
//! or a rebuild at its own moment), while worker 1 kept running: `a`'s readers allowed compaction and `a`
//! sealed again, with a since past `b/w0of2`'s upper. After a restart `b/w0of2` (upper 0, resume point
//! 0) took `a`'s re-emission, whose history below the since was collapsed onto the since: `b`'s history
//! no longer matched the in-memory collection at times from the resume point on. Fixed: a stream at
//! upper 0 that an operator claimed since the store's open holds the since at 0; since adversarial round
//! 12 every stream at upper 0 does (`tests/compaction/compaction_readers.rs`).

use ddpersist::operators::{key_hash, worker_stream_id, ArrangePersisted};
use ddpersist::{Codec, Store};
use differential_dataflow::input::Input as _;
use differential_dataflow::trace::TraceReader;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::{Inspect, Probe};
use timely::dataflow::ProbeHandle;
use timely::progress::frontier::AntichainRef;

type Row = (String, u64);
type Update = (Row, u64, i64);
/// `b`'s rows: (bucket, (key, time)).
type BRow = (String, String);

const END: u64 = 6;

/// Strings that timely's exchange (`hash & 1` with 2 workers) sends to worker `w`.
fn strings_of(w: u64, prefix: &str, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .filter(|k| key_hash(&k.to_bytes()) & 1 == w)
        .take(n)
        .collect()
}

/// `a`'s input: keys of worker 1, each row inserted at `t`, the even ones retracted at `t + 1`.
fn updates() -> Vec<Update> {
    let keys = strings_of(1, "k", 6);
    let mut out = Vec::new();
    for t in 0..END {
        for (i, k) in keys.iter().enumerate() {
            let row = (k.clone(), t);
            out.push((row.clone(), t, 1));
            if i % 2 == 0 && t + 1 < END {
                out.push((row, t + 1, -1));
            }
        }
    }
    out.sort_by_key(|u| u.1);
    out
}

/// `a`'s row to `b`'s: keyed by a bucket of worker 0.
fn rekey((k, t): &Row) -> BRow {
    let buckets = strings_of(0, "b", 1);
    (buckets[0].clone(), format!("{k}@{t}"))
}

fn at<R: Ord + Clone>(updates: &[(R, u64, i64)], t: u64) -> BTreeMap<R, i64> {
    let mut acc = BTreeMap::new();
    for (row, time, d) in updates {
        if *time <= t {
            *acc.entry(row.clone()).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

fn wait(phase: &AtomicUsize, at_least: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while phase.load(Ordering::SeqCst) < at_least {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Builds `input -> a -> rekey -> b`; returns the input, `a`'s trace (held by the caller) and a probe on
/// `b`'s output, logged to `out` when `log`.
#[allow(clippy::type_complexity)]
fn build(
    worker: &mut timely::worker::Worker,
    store: &Store,
    out: Option<Arc<Mutex<Vec<(BRow, u64, i64)>>>>,
) -> (
    differential_dataflow::input::InputSession<u64, Row, i64>,
    differential_dataflow::operators::arrange::TraceAgent<ddpersist::trace::PersistedTrace<u64>>,
    differential_dataflow::operators::arrange::TraceAgent<ddpersist::trace::PersistedTrace<u64>>,
    ProbeHandle<u64>,
    [u64; 2],
) {
    let probe = ProbeHandle::new();
    worker.dataflow::<u64, _, _>(|scope| {
        let (input, rows) = scope.new_collection::<Row, i64>();
        let (a, ah) = rows.arrange_persisted(store, "a").unwrap();
        let a_trace = a.trace.clone();
        let rekeyed = a
            .as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), u64::decode(v).unwrap()))
            .map(|row| rekey(&row));
        let (b, bh) = rekeyed.arrange_persisted(store, "b").unwrap();
        let b_trace = b.trace.clone();
        b.as_collection(|k: &[u8], v: &[u8]| (String::decode(k).unwrap(), String::decode(v).unwrap()))
            .inner
            .inspect(move |u| {
                if let Some(o) = &out {
                    o.lock().unwrap().push(u.clone())
                }
            })
            .probe_with(&probe);
        (input, a_trace, b_trace, probe, [ah.resume_at(), bh.resume_at()])
    })
}

#[test]
fn downstream_history_is_exact_after_an_upstream_compacted_past_its_unclaimed_upper_0() {
    let dir = tempfile::tempdir().unwrap();
    let info = Arc::new(Mutex::new(Vec::<String>::new()));
    let s = |id: &str, w: usize| worker_stream_id(id, w, 2);
    // The first run.
    {
        let store = Store::open(dir.path()).unwrap();
        let phase = Arc::new(AtomicUsize::new(0));
        let inf = info.clone();
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let (mut input, mut a_trace, _b_trace, _probe, _) = build(worker, &store, None);
            let all = updates();
            let deadline = Instant::now() + Duration::from_secs(20);
            if index == 0 {
                drop(input);
                worker.step();
                phase.store(1, Ordering::SeqCst);
                // Take in b's rows of times 0..3 (then stop at once: not sealed).
                let want = all.iter().filter(|u| u.1 < 3).count();
                wait(&phase, 2);
                while store.snapshot(&s("b", 0)).unwrap().unsealed_len() < want && Instant::now() < deadline {
                    worker.step();
                }
                inf.lock().unwrap().push(format!(
                    "w0 drops: a/w0 upper {}, b/w0 upper {} unsealed {}",
                    store.upper(&s("a", 0)).unwrap(),
                    store.upper(&s("b", 0)).unwrap(),
                    store.snapshot(&s("b", 0)).unwrap().unsealed_len()
                ));
                drop(a_trace);
                for id in worker.installed_dataflows() {
                    worker.drop_dataflow(id);
                }
                phase.store(3, Ordering::SeqCst);
            } else {
                wait(&phase, 1);
                for (row, t, d) in all.iter().filter(|u| u.1 < 3) {
                    input.advance_to(*t);
                    input.update_at(row.clone(), *t, *d);
                }
                input.advance_to(3);
                input.flush();
                while store.upper(&s("a", 1)).unwrap() < 3 && Instant::now() < deadline {
                    worker.step();
                }
                phase.store(2, Ordering::SeqCst);
                // b/w1 seals once worker 0 took in b's rows (it then has dropped its dataflow).
                while store.upper(&s("b", 1)).unwrap() < 3 && Instant::now() < deadline {
                    worker.step();
                }
                wait(&phase, 3);
                // a's readers allow compaction to 3; a seals on to END.
                a_trace.set_logical_compaction(AntichainRef::new(&[3]));
                a_trace.set_physical_compaction(AntichainRef::new(&[3]));
                for (row, t, d) in all.iter().filter(|u| u.1 >= 3) {
                    input.advance_to(*t);
                    input.update_at(row.clone(), *t, *d);
                }
                input.advance_to(END);
                input.flush();
                while store.upper(&s("a", 1)).unwrap() < END && Instant::now() < deadline {
                    worker.step();
                }
                for _ in 0..20 {
                    worker.step();
                }
                inf.lock().unwrap().push(format!(
                    "w1 drops: a/w1 upper {} since {}, b/w1 upper {}",
                    store.upper(&s("a", 1)).unwrap(),
                    store.since(&s("a", 1)).unwrap(),
                    store.upper(&s("b", 1)).unwrap()
                ));
                drop(input);
                drop(a_trace);
                for id in worker.installed_dataflows() {
                    worker.drop_dataflow(id);
                }
            }
        })
        .unwrap();
    }
    // The restart: fed again from the least resume point.
    let store = Store::open(dir.path()).unwrap();
    let out = Arc::new(Mutex::new(Vec::new()));
    let (o, inf) = (out.clone(), info.clone());
    timely::execute(timely::Config::process(2), move |worker| {
        let index = worker.index();
        let (mut input, _a, _b, probe, resumes) = build(worker, &store, Some(o.clone()));
        inf.lock()
            .unwrap()
            .push(format!("restart w{index}: resume_at (a, b) {resumes:?}"));
        let from = resumes[0].min(resumes[1]);
        if index == 1 {
            for (row, t, d) in updates().into_iter().filter(|u| u.1 >= from) {
                input.advance_to(t);
                input.update_at(row, t, d);
            }
        }
        input.advance_to(END);
        input.flush();
        let deadline = Instant::now() + Duration::from_secs(30);
        while probe.less_than(&END) && Instant::now() < deadline {
            worker.step();
        }
        drop(input);
        for id in worker.installed_dataflows() {
            worker.drop_dataflow(id);
        }
    })
    .unwrap();
    let out = out.lock().unwrap().clone();
    let info = info.lock().unwrap().clone();
    eprintln!("{info:?}");
    let want: Vec<(BRow, u64, i64)> = updates().iter().map(|(r, t, d)| (rekey(r), *t, *d)).collect();
    let mut wrong = Vec::new();
    for t in 0..END {
        let (got, want) = (at(&out, t), at(&want, t));
        if got != want {
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(*k))
                .map(|k| &k.1)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(*k))
                .map(|k| &k.1)
                .collect();
            wrong.push(format!("b at time {t}: missing {missing:?}, extra {extra:?}"));
        }
    }
    assert!(wrong.is_empty(), "{info:?}\n{}", wrong.join("\n"));
}
