//! The since a persisted arrangement's trace readers allow reaches the store with the operator's next
//! seal. In a test binary of its own: the since also stays below the upper of every live persisted
//! operator of the process (`operators::resume::compaction_since`, `tests/compaction/restart_compaction.rs`), so
//! arrangements of other tests running beside it in one binary would hold it back.

use ddpersist::operators::{ArrangePersisted, PersistHandle};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::trace::TraceReader;
use timely::dataflow::operators::probe::Handle as ProbeHandle;
use timely::dataflow::operators::Probe;
use timely::progress::Antichain;

/// The since the trace's readers allow reaches the store with the operator's next seal, not before: a
/// reader never edits the manifest itself, and the since never passes the sealed upper or what readers
/// allow.
#[test]
fn readers_advance_the_since_through_seals() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let s = store.clone();
    let sinces = timely::execute_directly(move |worker| {
        let probe = ProbeHandle::new();
        let (mut input, mut trace, handle) = worker.dataflow::<u64, _, _>(|scope| {
            let (input, a) = scope.new_collection::<(u64, u64), i64>();
            let (arranged, handle): (_, PersistHandle) = a.arrange_persisted(&s, "since").unwrap();
            arranged.stream.probe_with(&probe);
            (input, arranged.trace, handle)
        });
        let since = |s: &Store| s.sealed(handle.stream_id()).unwrap().since;
        let mut sinces = Vec::new();
        for t in 0..10u64 {
            input.advance_to(t);
            input.update((t, t), 1);
            input.advance_to(t + 1);
            input.flush();
            worker.step_while(|| probe.less_than(&(t + 1)));
        }
        sinces.push(since(&s));
        // Readers allow times from 7 on; with no seal to carry it, the store's since stays put.
        trace.set_logical_compaction(Antichain::from_elem(7).borrow());
        trace.set_physical_compaction(Antichain::from_elem(7).borrow());
        for _ in 0..10 {
            worker.step();
        }
        sinces.push(since(&s));
        // The next seal commits it (at most the readers' 7).
        input.update((10, 10), 1);
        input.advance_to(11);
        input.flush();
        worker.step_while(|| probe.less_than(&11));
        worker.step();
        sinces.push(since(&s));
        // Readers allow more than is sealed: the since stops at the sealed upper.
        trace.set_logical_compaction(Antichain::from_elem(100).borrow());
        trace.set_physical_compaction(Antichain::from_elem(100).borrow());
        worker.step();
        input.advance_to(12);
        input.flush();
        worker.step_while(|| probe.less_than(&12));
        worker.step();
        sinces.push(since(&s));
        sinces
    });
    assert_eq!(sinces[0], 0, "nothing allowed yet");
    assert_eq!(sinces[1], 0, "a reader alone does not edit the manifest");
    assert_eq!(sinces[2], 7, "the next seal carries the allowed since");
    assert!(
        sinces[3] > 7 && sinces[3] <= 12,
        "since {} after a seal at 12 with readers at 100",
        sinces[3]
    );
}
