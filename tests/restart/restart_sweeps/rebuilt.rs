//! The chain dropped and rebuilt inside one `timely::execute`.

use super::*;

/// Each worker's resume point of a run: `(worker, resume)`.
type Resumes = Arc<Mutex<Vec<(usize, u64)>>>;

/// `plans` then a completing round in one process: each round's dataflows dropped on every worker (at its
/// own moment), then rebuilt on every worker before any steps them. Returns the last round's log and
/// resume point.
#[allow(clippy::too_many_arguments)]
fn run_rebuilt(
    dir: &Path,
    source: Source,
    workers: usize,
    feed: Feed,
    times: u64,
    seed: u64,
    keys: usize,
    plans: &[Plan],
    agree: bool,
) -> Result<(OutLog, u64), String> {
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let manager = PersistManager::new(store.clone());
    let mut all = plans.to_vec();
    all.push(Plan::completing(workers));
    let logs: Vec<OutLog> = all.iter().map(|_| Default::default()).collect();
    let resumes: Vec<Resumes> = all.iter().map(|_| Default::default()).collect();
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let ctx = Arc::new(Ctx::new(store, manager, source, feed, times, seed, keys));
    let between = Arc::new(std::sync::Barrier::new(workers));
    let built = Arc::new(std::sync::Barrier::new(workers));
    let (ls, rs, errs) = (logs.clone(), resumes.clone(), errors.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        for (i, plan) in all.iter().enumerate() {
            if agree {
                round(worker, &ctx, plan, &ls[i], &rs[i], &errs, None, true);
            } else {
                round(worker, &ctx, plan, &ls[i], &rs[i], &errs, Some(&built), false);
                between.wait();
            }
        }
    })
    .map_err(|e| e.to_string())?;
    let errors = errors.lock().unwrap().clone();
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    let mut trail = Vec::new();
    for r in &resumes {
        let r = r.lock().unwrap().clone();
        let resume = r.iter().map(|r| r.1).min().unwrap_or(0);
        if !r.iter().all(|x| x.1 == resume) {
            return Err(format!("workers read different resume points: {r:?}"));
        }
        trail.push(resume);
    }
    Ok((logs.last().unwrap().clone(), *trail.last().unwrap()))
}

#[allow(clippy::too_many_arguments)]
fn rebuilt_scenario(
    source: Source,
    workers: usize,
    feed: Feed,
    times: u64,
    seed: u64,
    keys: usize,
    plans: &[Plan],
    agree: bool,
) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let fed = delivered(source, times, seed, keys, move |j, t| {
        feed != Feed::LastEndsEarly || j % workers + 1 != workers || t < 4
    });
    let expected = in_memory(times, fed);
    if expected.lock().unwrap().is_empty() {
        return Err(format!(
            "seed {seed}: DD in memory produced no output, nothing to compare"
        ));
    }
    let (log, resume) = run_rebuilt(dir.path(), source, workers, feed, times, seed, keys, plans, agree)?;
    match first_difference(&log, &expected, resume..times) {
        Some((t, diff)) => Err(format!(
            "rebuilt (agree {agree}) {source:?} {feed:?} seed {seed} keys {keys}: at time {t} (final resume {resume}; plans {plans:?}):\n{diff}"
        )),
        None => Ok(()),
    }
}

/// Every worker drops its dataflows at its own moment, a barrier, then every worker rebuilds them
/// before any steps them.
#[test]
fn rebuilt_in_process_after_a_barrier() {
    rebuilt_sweep(false, 500..504)
}

/// Rebuilt at each worker's own moment (no barrier), each operator's resume point agreed with
/// `agree_resume_state`, as README says.
#[test]
fn rebuilt_at_different_moments_with_agreed_resume() {
    rebuilt_sweep(true, 500..504)
}

#[test]
#[ignore = "longer: the original pass's seeds"]
fn long_rebuilt_sweeps() {
    rebuilt_sweep(false, 500..516);
    rebuilt_sweep(true, 500..516);
}

fn rebuilt_sweep(agree: bool, default: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in seeds(default) {
        let mut rng = Rng(seed * 7919 + 3);
        let feed = [Feed::Worker0, Feed::Spread, Feed::LastEndsEarly, Feed::Ahead][seed as usize % 4];
        let source = if seed % 3 == 0 {
            Source::Upserts
        } else {
            Source::Rows
        };
        let keys = [1, 300, KEYS.len()][seed as usize % 3];
        let workers = 2 + (seed % 2) as usize;
        let n = 1 + rng.below(4) as usize;
        let plans = random_plans(&mut rng, workers, 14, n);
        if let Err(e) = rebuilt_scenario(source, workers, feed, 14, seed, keys, &plans, agree) {
            eprintln!("FAIL seed {seed}: {e}");
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert_none_failed(failures);
}
