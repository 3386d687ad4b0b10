//! The run of benches/arrange.rs and row 1 of benches/summary.rs: the workload of [`super::engines`]
//! (16-byte key `hex_key(i)`, 100-byte `val(i)`, one time per `SEAL_EVERY` updates) fed by one worker
//! through DD's in-memory `arrange_by_key` or ddpersist's `arrange_persisted`; and [`run_small`], the same
//! with DD's everyday small types, `(u64, u64)` pairs, through `arrange_by_key_persisted`.

use super::engines::{val, SEAL_EVERY};
use super::hex_key;
use ddpersist::operators::{ArrangePersisted, ArrangeTyped};
use ddpersist::Store;
use differential_dataflow::input::{Input, InputSession};
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
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let input = worker.dataflow::<u64, _, _>(|scope| {
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
        feed(worker, input, &probe, n, |i| {
            (hex_key(i).to_vec(), val(i).to_vec())
        })
    })
}

/// [`run`] with `(u64, u64)` updates: key `i · φ` (the 64-bit golden ratio, wrapping: all distinct, spread
/// over the key space), val `i`, one time per `SEAL_EVERY` updates, through DD's `arrange_by_key` or
/// ddpersist's typed `arrange_by_key_persisted` (keys and vals encoded as 8 big-endian bytes each: 16
/// payload bytes an update, where [`run`]'s updates have 116).
pub fn run_small(n: u64, persisted: Option<&Store>, id: &str) -> Duration {
    let store = persisted.cloned();
    let id = id.to_string();
    timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, rows) = scope.new_collection::<(u64, u64), isize>();
            match &store {
                Some(store) => {
                    let arranged = rows.arrange_by_key_persisted(store, &id).unwrap();
                    arranged.arranged().stream.probe_with(&probe);
                }
                None => {
                    rows.arrange_by_key().stream.probe_with(&probe);
                }
            }
            input
        });
        feed(worker, input, &probe, n, |i| {
            (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), i)
        })
    })
}

/// Feeds update `update(i)` for `i` in `0..n` into `input`, `SEAL_EVERY` a time, stepping `worker` once a
/// time, and returns the wall time until `probe` passed the last time; then closes the input and steps
/// until the dataflow is done.
fn feed<D: differential_dataflow::Data>(
    worker: &mut timely::worker::Worker,
    mut input: InputSession<u64, D, isize>,
    probe: &ProbeHandle<u64>,
    n: u64,
    update: impl Fn(u64) -> D,
) -> Duration {
    let per_time = SEAL_EVERY as u64;
    let start = Instant::now();
    let times = n.div_ceil(per_time);
    for t in 0..times {
        input.advance_to(t);
        for i in t * per_time..((t + 1) * per_time).min(n) {
            input.update(update(i), 1);
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
}
