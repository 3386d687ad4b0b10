//! Adversarial round 12, topic 1d: sources that end before any data, or with nothing at all. Three
//! workers; a run closes its input at once (nothing fed, nothing advanced), or after a big jump with no
//! data; later runs add data from the resume point. Every run serves what DD would.

use crate::common;

use common::compare::{at, rec, Log};
use common::kill::key_on;
use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::ProbeHandle;

#[derive(Clone, Copy, Debug)]
enum Step {
    /// Close the input at once (after advancing to `adv` if given), nothing fed.
    CloseEmpty(Option<u64>),
    /// Feed `n` rows per worker at the resume point, advance one past it, drop with the input open.
    Feed(u64),
    /// Read only: advance to the resume point, drop.
    ReadOnly,
}

fn rows(w: usize, t: u64, n: u64) -> Vec<(String, u64)> {
    (0..n)
        .map(|i| (key_on((w + i as usize) % 3, 3, i as usize), t * 100 + w as u64))
        .collect()
}

/// Returns the output log and the resume point.
fn run(dir: &Path, step: Step) -> (Log<String>, u64, bool) {
    let store = Store::open(dir).unwrap();
    let log: Log<String> = Default::default();
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(Mutex::new(true));
    let (l, rs, dn) = (log.clone(), resumes.clone(), done.clone());
    timely::execute(timely::Config::process(3), move |worker| {
        let probe = ProbeHandle::new();
        let w = worker.index();
        let (mut input, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(String, u64), isize>();
            let x = rows.arrange_by_key_persisted(&store, "e").unwrap();
            rec(x.clone().as_collection(|k, v| format!("{k}={v}")), &l, &probe);
            (input, x.handle().unwrap().clone())
        });
        let resume = handle.resume_at();
        rs.lock().unwrap().push(resume);
        let start = std::time::Instant::now();
        match step {
            Step::CloseEmpty(adv) => {
                if let Some(a) = adv {
                    input.advance_to(a.max(resume));
                }
                drop(input);
                while !probe.done() && start.elapsed().as_secs() < 10 {
                    worker.step();
                }
                if !probe.done() {
                    *dn.lock().unwrap() = false;
                }
            }
            Step::Feed(n) => {
                input.advance_to(resume);
                for r in rows(w, resume, n) {
                    input.insert(r);
                }
                input.advance_to(resume + 1);
                input.flush();
                while probe.less_than(&(resume + 1)) && start.elapsed().as_secs() < 10 {
                    worker.step();
                }
                if probe.less_than(&(resume + 1)) {
                    *dn.lock().unwrap() = false;
                }
            }
            Step::ReadOnly => {
                input.advance_to(resume);
                input.flush();
                while probe.less_than(&resume) && start.elapsed().as_secs() < 10 {
                    worker.step();
                }
                if probe.less_than(&resume) {
                    *dn.lock().unwrap() = false;
                }
            }
        }
        assert_eq!(handle.error(), None);
        common::drop_dataflows(worker);
    })
    .unwrap();
    let r = resumes.lock().unwrap().clone();
    assert!(r.iter().all(|x| *x == r[0]), "{r:?}");
    let done = *done.lock().unwrap();
    (log, r[0], done)
}

#[test]
fn sources_that_end_empty_then_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mut model: BTreeMap<String, i64> = BTreeMap::new();
    let plan = [
        Step::CloseEmpty(None),
        Step::ReadOnly,
        Step::CloseEmpty(None),
        Step::Feed(2),
        Step::ReadOnly,
        Step::CloseEmpty(Some(1 << 36)),
        Step::ReadOnly,
        Step::Feed(3),
        Step::CloseEmpty(None),
        Step::ReadOnly,
    ];
    for (i, step) in plan.iter().enumerate() {
        let (log, resume, done) = run(dir.path(), *step);
        assert!(done, "run {i} ({step:?}) did not complete (resume at {resume})");
        let latest = log.lock().unwrap().iter().map(|x| x.1).max().unwrap_or(0);
        let upto = latest.max(resume);
        if !matches!(step, Step::Feed(_)) {
            assert_eq!(at(&log, &upto), model, "run {i} ({step:?}), resume at {resume}");
        }
        if let Step::Feed(n) = step {
            for w in 0..3 {
                for (k, v) in rows(w, resume, *n) {
                    *model.entry(format!("{k}={v}")).or_insert(0) += 1;
                }
            }
            assert_eq!(
                at(&log, &resume),
                model,
                "run {i} ({step:?}) after feeding at {resume}"
            );
        }
    }
}
