//! By-self arrangements with `i32` diffs across uneven restarts.

use super::*;

/// Drop-in: by-self arrangements of `(Vec<u8>, u64)` keys with `i32` diffs (signed, through zero),
/// `distinct_total`, `threshold_semigroup`, `count_total_core::<i32>`, an import into a second dataflow,
/// across uneven restarts with two and three workers; compared with DD at every time from the resume point.
/// One update of a by-self collection: its `(bytes, n)` key and an `i32` diff.
type Update = ((Vec<u8>, u64), i32);

/// A persisted by-self arrangement of the updates' keys.
type Arranged<'s> = ddpersist::operators::TypedPersisted<'s, (Vec<u8>, u64), (), u64, i32>;

fn by_self_history(times: u64, seed: u64) -> Vec<Vec<Update>> {
    let mut rng = Rng(seed + 99);
    (0..times)
        .map(|_| {
            (0..rng.below(8))
                .map(|_| {
                    let k = (vec![0u8; rng.below(3) as usize], rng.below(3));
                    let d = [1, -1, 2, -3, 5][rng.below(5) as usize];
                    (k, d)
                })
                .collect()
        })
        .collect()
}

type BLog = Log<String>;

fn by_self_outputs<'s>(
    c: VecCollection<'s, u64, (Vec<u8>, u64), i32>,
    arranged: Option<Arranged<'s>>,
    log: &BLog,
    probe: &ProbeHandle<u64>,
) {
    let rec = |c: VecCollection<'s, u64, String, i32>| {
        let log = log.clone();
        c.inner
            .inspect(move |(x, t, d)| log.lock().unwrap().push((x.clone(), *t, *d as i64)))
            .probe_with(probe);
    };
    let sg = |_k: &(Vec<u8>, u64), new: &i32, old: Option<&i32>| -> Option<i32> {
        // A function of the count (path-independent): f(new) - f(old), f(0) = 0.
        let f = |c: i32| c * c - 3 * c;
        let v = f(*new) - old.copied().map_or(0, f);
        (v != 0).then_some(v)
    };
    match arranged {
        Some(a) => {
            rec(a
                .clone()
                .distinct_total_core::<i32>()
                .map(|k| format!("distinct {k:?}")));
            rec(a.clone().threshold_semigroup(sg).map(|k| format!("sg {k:?}")));
            rec(a
                .clone()
                .count_total_core::<i32>()
                .map(|k| format!("count {k:?}")));
            rec(a.as_collection(|k, _| format!("row {k:?}")));
        }
        None => {
            use differential_dataflow::operators::ThresholdTotal;
            rec(c
                .clone()
                .distinct_total_core::<i32>()
                .map(|k| format!("distinct {k:?}")));
            rec(c.clone().threshold_semigroup(sg).map(|k| format!("sg {k:?}")));
            rec(c
                .clone()
                .count_total_core::<i32>()
                .map(|k| format!("count {k:?}")));
            rec(c.map(|k| format!("row {k:?}")));
        }
    }
}

#[test]
fn by_self_totals_with_i32_diffs() {
    by_self_sweep(0..4);
}

#[test]
#[ignore = "longer: the original pass's seeds"]
fn long_by_self_totals_with_i32_diffs() {
    by_self_sweep(0..16);
}

fn by_self_sweep(default: std::ops::Range<u64>) {
    use ddpersist::operators::ArrangeTypedBySelf;
    let times = 12u64;
    let mut failures = Vec::new();
    for seed in seeds(default) {
        let workers = 2 + (seed % 2) as usize;
        let hist = by_self_history(times, seed);
        // DD.
        let dd: BLog = Default::default();
        {
            let (l, h) = (dd.clone(), hist.clone());
            timely::execute_directly(move |worker| {
                let probe = ProbeHandle::<u64>::new();
                let mut input = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, c) = scope.new_collection::<(Vec<u8>, u64), i32>();
                    by_self_outputs(c, None, &l, &probe);
                    input
                });
                for (t, at) in h.iter().enumerate() {
                    input.advance_to(t as u64);
                    for (k, d) in at {
                        input.update(k.clone(), *d);
                    }
                }
                input.advance_to(times);
                input.flush();
                worker.step_while(|| probe.less_than(&times));
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(seed * 13 + 1);
        let nruns = 1 + rng.below(3);
        for run in 0..=nruns {
            let last = run == nruns;
            let stops: Vec<u64> = (0..workers).map(|_| rng.below(times)).collect();
            let steps: Vec<u64> = (0..workers).map(|_| rng.below(10)).collect();
            let log: BLog = Default::default();
            let resumes = Arc::new(Mutex::new(Vec::new()));
            let store = Store::open(dir.path()).unwrap();
            let (l, h, rs) = (log.clone(), hist.clone(), resumes.clone());
            let errors = Arc::new(Mutex::new(Vec::<String>::new()));
            let errs = errors.clone();
            timely::execute(timely::Config::process(workers), move |worker| {
                let index = worker.index();
                let probe = ProbeHandle::<u64>::new();
                let (mut input, handle, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
                    let (input, c) = scope.new_collection::<(Vec<u8>, u64), i32>();
                    let a = c.clone().arrange_by_self_persisted(&store, "s").unwrap();
                    let handle = a.handle().unwrap().clone();
                    let trace = a.trace.clone();
                    by_self_outputs(c, Some(a), &l, &probe);
                    (input, handle, trace)
                });
                // The import's outputs go to a log of their own prefix.
                let l2 = l.clone();
                worker.dataflow::<u64, _, _>(|scope| {
                    let imp = trace.import(scope);
                    let log = l2.clone();
                    imp.count_total_core::<i32>()
                        .map(|k| format!("count {k:?}"))
                        .inner
                        .inspect(move |(x, t, d)| {
                            log.lock().unwrap().push((format!("imp {x}"), *t, *d as i64))
                        })
                        .probe_with(&probe);
                });
                drop(trace);
                let resume = handle.resume_at();
                rs.lock().unwrap().push(resume);
                let deadline = Instant::now() + DEADLINE;
                for t in resume..times {
                    input.advance_to(t);
                    for (j, (k, d)) in h[t as usize].iter().enumerate() {
                        if j % workers == index {
                            input.update(k.clone(), *d);
                        }
                    }
                    input.advance_to(t + 1);
                    input.flush();
                    if !last && t >= stops[index] {
                        for _ in 0..steps[index] {
                            worker.step();
                        }
                        common::drop_dataflows(worker);
                        return;
                    }
                    if !last && t >= *stops.iter().min().unwrap() {
                        worker.step();
                        continue;
                    }
                    worker.step_while(|| {
                        probe.less_than(&(t + 1)) && Instant::now() < deadline && handle.error().is_none()
                    });
                }
                if last {
                    input.advance_to(times);
                    input.flush();
                    worker.step_while(|| {
                        probe.less_than(&times) && Instant::now() < deadline && handle.error().is_none()
                    });
                    if probe.less_than(&times) {
                        errs.lock()
                            .unwrap()
                            .push(format!("worker {index} incomplete: {:?}", handle.error()));
                    }
                }
                common::drop_dataflows(worker);
            })
            .unwrap();
            let errors = errors.lock().unwrap().clone();
            if !errors.is_empty() {
                failures.push(format!("seed {seed} run {run}: {errors:?}"));
                break;
            }
            let rs = resumes.lock().unwrap().clone();
            if last {
                let resume = rs[0];
                for t in resume..times {
                    let got = common::compare::at(&log, &t);
                    let mut want = common::compare::at(&dd, &t);
                    let imp: Vec<(String, i64)> = want
                        .iter()
                        .filter(|(k, _)| k.starts_with("count "))
                        .map(|(k, v)| (format!("imp {k}"), *v))
                        .collect();
                    want.extend(imp);
                    if got != want {
                        let diff = difference(&got, &want);
                        failures.push(format!(
                            "seed {seed} ({workers} workers) at {t} (resume {resume}):\n{diff}"
                        ));
                        break;
                    }
                }
            }
        }
    }
    assert_none_failed(failures);
}
