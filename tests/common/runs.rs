//! Driving one run of a persisted dataflow in the restart-schedule tests: stepping until a probe passes a
//! time (with a deadline: a loaded machine needs more steps, a hang must still fail), and ending the run
//! by closing its input (the source ends) or by dropping its dataflow with the input open (a stop).

use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

/// Steps `worker` until `probe` passes `t`; fails after 30 s, naming `what`.
pub fn step_past(worker: &mut Worker, probe: &ProbeHandle<u64>, t: u64, what: &str) {
    let start = Instant::now();
    while probe.less_than(&t) {
        assert!(start.elapsed() < Duration::from_secs(30), "hang {what}");
        worker.step();
    }
}

/// Ends a run: with `close`, drops `input` and steps until `probe` is done (30 s at most); else drops the
/// worker's dataflows, then `input`.
pub fn end_run<I>(worker: &mut Worker, input: I, probe: &ProbeHandle<u64>, close: bool) {
    if close {
        drop(input);
        let start = Instant::now();
        while !probe.done() {
            assert!(start.elapsed() < Duration::from_secs(30), "hang at the close");
            worker.step();
        }
    } else {
        for df in worker.installed_dataflows() {
            worker.drop_dataflow(df);
        }
        drop(input);
    }
}
