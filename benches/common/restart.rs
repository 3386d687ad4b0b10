//! Restart measurements shared by benches/restart.rs, benches/read/ and benches/summary.rs: a persisted
//! arrangement's trace ready to answer a cursor seek, and the store-level first lookup.

use ddpersist::operators::{worker_stream_id, ArrangePersisted};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Cursor, TraceReader};
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;

/// Restart of arrangement `id` (worker 0 of 1) in the store at `dir`: `Store::open`, a timely worker, a
/// dataflow with `arrange_persisted` (keys and vals as `Vec<u8>`), a cursor over its trace seeking `probe`
/// (the key's bytes as stored, which must be present with one update); with `complete`, then steps until
/// the arrangement's frontier reaches the persisted upper. Returns the time taken.
pub fn trace_ready(dir: &Path, id: &str, probe: &[u8], complete: bool) -> Duration {
    let start = Instant::now();
    let store = Store::open_with(dir, crate::common::bench_options()).unwrap();
    let (id, probe) = (id.to_string(), probe.to_vec());
    let upper = store.upper(&worker_stream_id(&id, 0, 1)).unwrap();
    timely::execute_directly(move |worker| {
        let frontier = ProbeHandle::new();
        let (mut input, mut trace) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, coll) = scope.new_collection::<(Vec<u8>, Vec<u8>), i64>();
            let (arranged, _handle) = coll.arrange_persisted(&store, &id).unwrap();
            arranged.stream.probe_with(&frontier);
            (input, arranged.trace)
        });
        let mut through = timely::progress::Antichain::new();
        trace.read_upper(&mut through);
        let (mut cursor, storage) = cursor_list(trace.batches_through(through.borrow()).unwrap());
        cursor.seek_key(&storage, &probe[..]);
        assert_eq!(
            cursor.get_key(&storage),
            Some(&probe[..]),
            "the probe key is missing"
        );
        let mut found = 0;
        while let Some(v) = cursor.get_val(&storage) {
            cursor.map_times(&storage, |t, d| found += i64::from(t < upper) * d);
            black_box(v);
            cursor.step_val(&storage);
        }
        assert_eq!(found, 1);
        if complete {
            // The input's frontier bounds the output's too: move it to the persisted upper (no seal).
            input.advance_to(upper);
            input.flush();
            worker.step_while(|| frontier.less_than(&upper));
        }
        let elapsed = start.elapsed();
        drop((cursor, storage, trace, input));
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        elapsed
    })
}

/// `Store::open` of `dir`, then the first `get_bytes` of `probe` (present with one val) in stream `id`:
/// (open, open + get).
pub fn open_get(dir: &Path, id: &str, probe: &[u8], as_of: u64) -> (Duration, Duration) {
    let start = Instant::now();
    let store = Store::open_with(dir, crate::common::bench_options()).unwrap();
    let open = start.elapsed();
    let vals = store.get_bytes(id, probe, as_of).unwrap();
    let total = start.elapsed();
    assert_eq!(vals.len(), 1);
    drop(store);
    (open, total)
}
