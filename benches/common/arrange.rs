//! The run of benches/arrange.rs and row 1 of benches/summary.rs: the workload of [`super::engines`]
//! (16-byte key `hex_key(i)`, 100-byte `val(i)`, one time per `SEAL_EVERY` updates) fed by one worker
//! through DD's in-memory `arrange_by_key` or ddpersist's `arrange_persisted`.

use super::engines::{val, SEAL_EVERY};
use super::hex_key;
use ddpersist::operators::ArrangePersisted;
use ddpersist::Store;
use differential_dataflow::input::Input;
use std::time::{Duration, Instant};
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

/// Feeds `n` updates through DD's `arrange_by_key` (`persisted` is `None`) or through `arrange_persisted`
/// into arrangement `id` of `persisted`, and returns the wall time from the first update until the
/// arrangement's frontier passed the last time (for ddpersist: every update sealed into batch files,
/// durable).
pub fn run(n: u64, persisted: Option<&Store>, id: &str) -> Duration {
    let store = persisted.cloned();
    let id = id.to_string();
    let per_time = SEAL_EVERY as u64;
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(Vec<u8>, Vec<u8>), isize>();
            match &store {
                Some(store) => {
                    let (arranged, _handle) = rows.arrange_persisted(store, &id).unwrap();
                    arranged.stream.probe_with(&probe);
                }
                None => {
                    rows.arrange_by_key().stream.probe_with(&probe);
                }
            }
            input
        });
        let start = Instant::now();
        let times = n.div_ceil(per_time);
        for t in 0..times {
            input.advance_to(t);
            for i in t * per_time..((t + 1) * per_time).min(n) {
                input.update((hex_key(i).to_vec(), val(i).to_vec()), 1);
            }
            input.advance_to(t + 1);
            input.flush();
            worker.step();
        }
        worker.step_while(|| probe.less_than(&times));
        let elapsed = start.elapsed();
        drop(input);
        worker.step_while(|| !probe.done());
        elapsed
    })
}
