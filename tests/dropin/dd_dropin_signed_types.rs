//! Adversarial round 12, topic 2: drop-in use with everyday types across restarts. Keys `(String,
//! Vec<u8>)` (empty strings, NUL bytes, 0xff, non-ASCII), vals `Option<(i64, String)>` (None, i64::MIN and
//! MAX), `i64` diffs going negative and back to zero, at signed `i64` times from far below zero (stored
//! offset by i64::MIN) with big jumps, two and three workers. Joined with in-memory collections (fed
//! their whole history every run), semijoin, antijoin, reduce, count_total, threshold_total,
//! distinct_total, and an import of the trace into a second dataflow; restarted between (also stopped
//! part way). Outputs from each run's resume point on are compared with DD's at every event time.

use crate::common;

use common::compare::{rec, same_at_every_time, Log};
use common::Rng;
use ddpersist::operators::{ArrangeTyped, PersistTime};
use ddpersist::{Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::ProbeHandle;

type K = (String, Vec<u8>);
type V = Option<(i64, String)>;

const EVENTS: &[i64] = &[
    i64::MIN,
    i64::MIN + 1,
    -1_000_000_000_000,
    -5,
    -1,
    0,
    1,
    9,
    1 << 40,
    (1 << 40) + 1,
    i64::MAX / 2,
];

fn key_pool() -> Vec<K> {
    vec![
        (String::new(), vec![]),
        (String::new(), vec![0]),
        ("\0".to_string(), vec![]),
        ("\0".to_string(), vec![0, 0]),
        ("a".to_string(), vec![0xff]),
        ("a".to_string(), vec![0xff, 0]),
        ("a\0".to_string(), vec![]),
        ("a\0b".to_string(), vec![1]),
        ("ä".to_string(), vec![1, 2]),
        ("zz".to_string(), vec![0xff; 3]),
    ]
}

fn val_pool() -> Vec<V> {
    vec![
        None,
        Some((i64::MIN, "x".to_string())),
        Some((-5, String::new())),
        Some((0, "\0".to_string())),
        Some((0, String::new())),
        Some((i64::MAX, "zz".to_string())),
    ]
}

/// Worker `w`'s persisted-input updates at event `t`: worker 0 always, worker 1 at odd event indexes,
/// worker 2 never.
fn data(w: usize, i: usize) -> Vec<((K, V), i64)> {
    if w >= 2 || (w == 1 && i.is_multiple_of(2)) {
        return Vec::new();
    }
    let (keys, vals) = (key_pool(), val_pool());
    let mut rng = Rng(i as u64 * 7_777 + w as u64 * 13 + 1);
    (0..7)
        .map(|_| {
            let k = keys[rng.below(keys.len() as u64) as usize].clone();
            let v = vals[rng.below(vals.len() as u64) as usize].clone();
            ((k, v), [1i64, -1, 2, -2, 1][rng.below(5) as usize])
        })
        .collect()
}

/// The in-memory side (worker 0 only): keys with a tag, at event `i`.
fn other(i: usize) -> Vec<((K, u8), i64)> {
    let keys = key_pool();
    let mut rng = Rng(i as u64 * 104_729 + 17);
    (0..3)
        .map(|_| {
            (
                (
                    keys[rng.below(keys.len() as u64) as usize].clone(),
                    rng.below(2) as u8,
                ),
                if rng.below(3) == 0 { -1 } else { 1 },
            )
        })
        .collect()
}

fn red(_k: &K, s: &[(&V, i64)], out: &mut Vec<(String, i64)>) {
    let text: Vec<String> = s.iter().map(|(v, d)| format!("{v:?}*{d}")).collect();
    out.push((text.join(";"), 1));
}

fn thresh(_k: &K, c: &i64) -> i64 {
    (*c).clamp(-1, 2)
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum End {
    Drop,
    Close,
    ReadOnly,
    Abrupt(u64),
}

fn options() -> Options {
    Options {
        block_target_bytes: 80,
        merge_fan_in: 2,
        compaction_threads: 1,
        max_space_amplification_percent: Some(0),
        ..Options::default()
    }
}

fn reference(peers: usize) -> Log<String, i64> {
    let log: Log<String, i64> = Default::default();
    let l = log.clone();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut ia, mut io) = worker.dataflow::<i64, _, _>(|scope| {
            let (ia, a) = scope.new_collection::<(K, V), i64>();
            let (io, o) = scope.new_collection::<(K, u8), i64>();
            let keys = o.clone().map(|x| x.0);
            rec(a.clone().map(|x| format!("row {x:?}")), &l, &probe);
            rec(
                a.clone().join(o.clone()).map(|x| format!("join {x:?}")),
                &l,
                &probe,
            );
            rec(
                a.clone().semijoin(keys.clone()).map(|x| format!("semi {x:?}")),
                &l,
                &probe,
            );
            rec(
                a.clone().antijoin(keys.clone()).map(|x| format!("anti {x:?}")),
                &l,
                &probe,
            );
            rec(a.clone().reduce(red).map(|x| format!("reduce {x:?}")), &l, &probe);
            let ks = a.map(|x| x.0);
            rec(
                ks.clone().count_total().map(|x| format!("count {x:?}")),
                &l,
                &probe,
            );
            rec(
                ks.clone()
                    .threshold_total(thresh)
                    .map(|x| format!("thresh {x:?}")),
                &l,
                &probe,
            );
            rec(
                ks.clone().distinct_total().map(|x| format!("distinct {x:?}")),
                &l,
                &probe,
            );
            rec(
                ks.count_total().map(|x| format!("import count {x:?}")),
                &l,
                &probe,
            );
            (ia, io)
        });
        for (i, &t) in EVENTS.iter().enumerate() {
            ia.advance_to(t);
            io.advance_to(t);
            for w in 0..peers {
                for (x, d) in data(w, i) {
                    ia.update(x, d);
                }
            }
            for (x, d) in other(i) {
                io.update(x, d);
            }
        }
        let end = *EVENTS.last().unwrap() + 1;
        ia.advance_to(end);
        io.advance_to(end);
        ia.flush();
        io.flush();
        worker.step_while(|| probe.less_than(&end));
    });
    log
}

/// One run feeding events up to index `to`; returns its log and the resume point (an `i64` time).
fn run(dir: &Path, peers: usize, to: usize, end: End) -> (Log<String, i64>, i64) {
    let store = Store::open_with(dir, options()).unwrap();
    let log: Log<String, i64> = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let (l, rs) = (log.clone(), resumes.clone());
    timely::execute(timely::Config::process(peers), move |worker| {
        let probe = ProbeHandle::new();
        let w = worker.index();
        let (ia, io, handle, mut trace) = worker.dataflow::<i64, _, _>(|scope| {
            let (ia, a) = scope.new_collection::<(K, V), i64>();
            let (io, o) = scope.new_collection::<(K, u8), i64>();
            let keys = o.clone().map(|x| x.0);
            let p = a.arrange_by_key_persisted(&store, "typed").unwrap();
            rec(
                p.clone()
                    .as_collection(|k, v| format!("row {:?}", (k.clone(), v.clone()))),
                &l,
                &probe,
            );
            rec(
                p.clone().join(o.clone()).map(|x| format!("join {x:?}")),
                &l,
                &probe,
            );
            rec(
                p.clone().semijoin(keys.clone()).map(|x| format!("semi {x:?}")),
                &l,
                &probe,
            );
            rec(
                p.clone().antijoin(keys.clone()).map(|x| format!("anti {x:?}")),
                &l,
                &probe,
            );
            rec(p.clone().reduce(red).map(|x| format!("reduce {x:?}")), &l, &probe);
            rec(
                p.clone().count_total().map(|x| format!("count {x:?}")),
                &l,
                &probe,
            );
            rec(
                p.clone().threshold_total(thresh).map(|x| format!("thresh {x:?}")),
                &l,
                &probe,
            );
            rec(
                p.clone().distinct_total().map(|x| format!("distinct {x:?}")),
                &l,
                &probe,
            );
            (ia, io, p.handle().unwrap().clone(), p.trace.clone())
        });
        // A second dataflow importing the trace.
        worker.dataflow::<i64, _, _>(|scope| {
            let imported = trace.import(scope);
            rec(
                imported.count_total().map(|x| format!("import count {x:?}")),
                &l,
                &probe,
            );
        });
        let resume = i64::from_u64(handle.resume_at()).expect("an i64 resume point");
        rs.lock().unwrap().push(resume);
        let (mut ia, mut io) = (ia, io);
        let last = if end == End::ReadOnly {
            resume
        } else {
            EVENTS[to] + 1
        };
        // The in-memory side gets its whole history every run; the persisted input from the resume point.
        for (i, &t) in EVENTS.iter().enumerate() {
            if end == End::ReadOnly && t >= resume {
                break;
            }
            if end != End::ReadOnly && i > to {
                break;
            }
            io.advance_to(t);
            if w == 0 {
                for (x, d) in other(i) {
                    io.update(x, d);
                }
            }
            if t >= resume {
                ia.advance_to(t);
                for (x, d) in data(w, i) {
                    ia.update(x, d);
                }
            }
        }
        ia.advance_to(last.max(resume));
        io.advance_to(last.max(resume));
        ia.flush();
        io.flush();
        if let End::Abrupt(seed) = end {
            for _ in 0..Rng(seed ^ w as u64).below(10) {
                worker.step();
            }
            common::drop_dataflows(worker);
            return;
        }
        let deadline = common::compare::deadline(30);
        worker.step_while(|| deadline() && probe.less_than(&last));
        assert_eq!(handle.error(), None, "worker {w}");
        if end == End::Close {
            drop((ia, io));
            worker.step_while(|| deadline() && !probe.done());
        } else {
            common::drop_dataflows(worker);
        }
    })
    .unwrap();
    let resumes = resumes.lock().unwrap().clone();
    assert!(resumes.iter().all(|r| *r == resumes[0]), "{resumes:?}");
    (log, resumes[0])
}

fn compare(persisted: &Log<String, i64>, dd: &Log<String, i64>, times: &[i64], what: &str) {
    same_at_every_time(persisted, dd, times, what)
}

fn scenario(peers: usize, plan: &[(usize, End)]) {
    let dir = tempfile::tempdir().unwrap();
    let dd = reference(peers);
    for (i, &(to, end)) in plan.iter().enumerate() {
        let (log, resume) = run(dir.path(), peers, to, end);
        let what = format!("{peers} workers, plan {plan:?}, run {i}, resume at {resume}");
        match end {
            End::Drop | End::Close => {
                let times: Vec<i64> = EVENTS[..=to].iter().copied().filter(|t| *t >= resume).collect();
                compare(&log, &dd, &times, &what);
            }
            End::ReadOnly => {
                if resume > i64::MIN {
                    compare(&log, &dd, &[resume - 1], &what);
                }
            }
            End::Abrupt(_) => {}
        }
    }
}

#[test]
fn typed_keys_at_signed_times_across_restarts_two_workers() {
    scenario(
        2,
        &[
            (2, End::Drop),
            (2, End::ReadOnly),
            (5, End::Abrupt(3)),
            (7, End::Drop),
            (8, End::Close),
            (8, End::ReadOnly),
            (10, End::Drop),
        ],
    );
}

#[test]
fn typed_keys_at_signed_times_across_restarts_three_workers() {
    scenario(
        3,
        &[
            (0, End::Drop),
            (4, End::Abrupt(11)),
            (4, End::Abrupt(12)),
            (6, End::Close),
            (9, End::Drop),
            (9, End::ReadOnly),
            (10, End::Close),
        ],
    );
}

/// The store's typed lookups on an arrangement's worker streams after restarts at signed times: for every
/// key of the pool (on the worker `key_hash` places it), `Store::get` as of each event time at or past
/// the stream's since equals the rows the source accumulates to there, and `first_time` is the key's
/// first event time (or the since). Reads a typed arrangement's stream with the types it records (key,
/// val, and its times stored offset by `i64::MIN`).
#[test]
fn store_lookups_on_a_typed_arrangement_at_signed_times() {
    use ddpersist::operators::{key_hash, worker_stream_id};
    use ddpersist::Codec;
    use std::collections::BTreeMap;
    let peers = 3;
    let dir = tempfile::tempdir().unwrap();
    for (to, end) in [(3, End::Drop), (6, End::Close), (10, End::Drop)] {
        run(dir.path(), peers, to, end);
    }
    let store = Store::open(dir.path()).unwrap();
    for key in key_pool() {
        let w = (key_hash(&key.to_bytes()) % peers as u64) as usize;
        let stream = worker_stream_id("typed", w, peers);
        let since = store.since(&stream).unwrap();
        let mut model: BTreeMap<V, i64> = BTreeMap::new();
        let mut first: Option<u64> = None;
        for (i, &t) in EVENTS.iter().enumerate() {
            for ww in 0..peers {
                for ((k, v), d) in data(ww, i) {
                    if k == key {
                        *model.entry(v).or_insert(0) += d;
                        first.get_or_insert(t.to_u64());
                    }
                }
            }
            let st = t.to_u64();
            if st < since {
                continue;
            }
            let want: Vec<(V, i64)> = model
                .iter()
                .filter(|(_, d)| **d != 0)
                .map(|(v, d)| (v.clone(), *d))
                .collect();
            let got: Vec<(V, i64)> = store
                .get(&stream, &key, st)
                .unwrap_or_else(|e| panic!("get {key:?} as of {t} in {stream}: {e}"));
            assert_eq!(
                got, want,
                "key {key:?} as of {t} (store time {st}, since {since}) in {stream}"
            );
        }
        let got_first = store
            .first_time(&stream, &key)
            .unwrap_or_else(|e| panic!("first_time {key:?} in {stream}: {e}"));
        assert_eq!(
            got_first,
            first.map(|f| f.max(since)),
            "first time of {key:?} in {stream}"
        );
    }
}
