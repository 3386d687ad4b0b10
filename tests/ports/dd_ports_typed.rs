//! DD 0.26's own `tests/join.rs` and `tests/reduce.rs`, ported to typed persisted arrangements by changing
//! the `arrange_*` calls only (a collection operator that arranges internally, `col1.join(col2)`, becomes
//! `col1.arrange_by_key_persisted(&store, id).unwrap().join(col2)`); the closures, types (`usize`, `isize`,
//! `char`, DD's inferred integer diffs) and expected outputs are DD's. Each port runs twice over one store
//! (the second run replays the same input, which the persisted arrangement drops: it has it already).
//!
//! Then the same operators over a changing input with 1 and 2 workers and a restart in the middle, every
//! output compared with DD's in-memory operators on the same input. `DD_PORTS_LONG=1` runs DD's large
//! scales (`join_scale_1000000`, `reduce_scaling` at 100 000) and a longer restart run.
//!
//! Decode failures, `persist` and `upsert_persisted` at `usize` times, and README's snippet:
//! `tests/operators/typed_operators.rs`.

use crate::common;

use common::ports::{dd_join_inputs, dd_reduce, dd_semijoin_inputs, only_batch};
use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::Store;
use differential_dataflow::input::Input;
use differential_dataflow::operators::{CountTotal, ThresholdTotal};
use differential_dataflow::AsCollection;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use timely::dataflow::operators::capture::Extract;
use timely::dataflow::operators::{Capture, Inspect, Probe, ToStream};
use timely::dataflow::ProbeHandle;

/// Whether the long variants run.
fn long() -> bool {
    std::env::var_os("DD_PORTS_LONG").is_some()
}

/// Runs `port` twice over one fresh store directory, as DD's test body would run once.
fn twice(port: impl Fn(Store)) {
    let dir = tempfile::tempdir().unwrap();
    for _run in 0..2 {
        port(Store::open(dir.path()).unwrap());
    }
}

// ---- DD 0.26 tests/join.rs ----

#[test]
fn join() {
    twice(|store| {
        let data = timely::example(move |scope| {
            let (col1, col2) = dd_join_inputs!(scope);

            // should produce triples `(0,0,'a')` and `(1,2,'B')`.
            col1.arrange_by_key_persisted(&store, "col1")
                .unwrap()
                .join(col2)
                .inner
                .capture()
        });

        assert_eq!(
            only_batch(data.extract()),
            vec![
                ((0, (0, 'a')), Default::default(), 1),
                ((1, (2, 'B')), Default::default(), 1)
            ]
        );
    });
}

#[test]
fn join_map() {
    twice(|store| {
        let data = timely::example(move |scope| {
            let (col1, col2) = dd_join_inputs!(scope);

            // should produce records `(0 + 0,'a')` and `(1 + 2,'B')`.
            col1.arrange_by_key_persisted(&store, "col1")
                .unwrap()
                .join_map(col2, |k, v1, v2| (*k + *v1, *v2))
                .inner
                .capture()
        });

        assert_eq!(
            only_batch(data.extract()),
            vec![
                ((0, 'a'), Default::default(), 1),
                ((3, 'B'), Default::default(), 1)
            ]
        );
    });
}

#[test]
fn semijoin() {
    twice(|store| {
        let data = timely::example(move |scope| {
            let (col1, col2) = dd_semijoin_inputs!(scope);

            // should retain record `(0,0)` and discard `(1,2)`.
            col1.arrange_by_key_persisted(&store, "col1")
                .unwrap()
                .semijoin(col2)
                .inner
                .capture()
        });

        assert_eq!(only_batch(data.extract()), vec![((0, 0), Default::default(), 1)]);
    });
}

#[test]
fn antijoin() {
    twice(|store| {
        let data = timely::example(move |scope| {
            let (col1, col2) = dd_semijoin_inputs!(scope);

            // should retain record `(1,2)` and discard `(0,0)`.
            col1.arrange_by_key_persisted(&store, "col1")
                .unwrap()
                .antijoin(col2)
                .consolidate()
                .inner
                .capture()
        });
        assert_eq!(only_batch(data.extract()), vec![((1, 2), Default::default(), 1)]);
    });
}

#[test]
fn join_scale_1() {
    join_scaling(1);
}
#[test]
fn join_scale_10() {
    join_scaling(10);
}
#[test]
fn join_scale_100() {
    join_scaling(100);
}
#[test]
fn join_scale_1000() {
    join_scaling(1000);
}
#[test]
fn join_scale_10000_and_up() {
    join_scaling(10000);
    if long() {
        join_scaling(100000);
        join_scaling(1000000);
    }
}

fn join_scaling(scale: u64) {
    twice(move |store| {
        let data = timely::example(move |scope| {
            use timely::dataflow::operators::vec::Map;
            let counts = (0..1)
                .to_stream(scope)
                .flat_map(move |_| (0..scale).map(|i| ((), i, 1)))
                .as_collection()
                .arrange_by_self_persisted(&store, "counts")
                .unwrap()
                .count_total();

            let odds = counts.clone().filter(|x| x.1 % 2 == 1);
            let evens = counts.filter(|x| x.1 % 2 == 0);

            odds.arrange_by_key_persisted(&store, "odds")
                .unwrap()
                .join(evens)
                .inner
                .capture()
        });

        let extracted = data.extract();
        assert_eq!(extracted.len(), 0);
    });
}

// ---- DD 0.26 tests/reduce.rs ----

#[test]
fn reduce() {
    twice(|store| {
        assert_eq!(
            only_batch(dd_reduce(store, "col1")),
            vec![((0, 0), Default::default(), 1), ((1, 1), Default::default(), 2)]
        );
    });
}

#[test]
fn reduce_scaling() {
    twice(|store| {
        let data = timely::example(move |scope| {
            use timely::dataflow::operators::vec::Map;
            let scale = if long() { 100_000 } else { 1_000 };

            (0..1)
                .to_stream(scope)
                .flat_map(move |_| (0..scale).map(|i| ((), i, 1)))
                .as_collection()
                .arrange_by_self_persisted(&store, "scaling")
                .unwrap()
                .count_total()
                .inner
                .capture()
        });

        only_batch(data.extract());
    });
}

// ---- The same operators over a changing input, 1 and 2 workers, a restart in the middle ----

/// Consolidated outputs of the restart runs, by operator: `(operator, record as text) -> diff`.
type Outputs = BTreeMap<(&'static str, String), i64>;

/// Round `round`'s updates of `(node, node)` pairs (`usize`s, `isize` diffs): some added, some of the
/// previous round's removed.
fn pair_updates(round: usize, size: usize) -> Vec<((usize, usize), isize)> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ round as u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % size as u64) as usize
    };
    let mut out = Vec::new();
    for _ in 0..size {
        out.push(((next() % (size / 3 + 1), next()), 1));
    }
    if round > 0 {
        for ((k, v), _) in pair_updates(round - 1, size).into_iter().step_by(3) {
            out.push(((k, v), -1));
        }
    }
    out
}

/// One run over `dir`: rounds `0..rounds` of [`pair_updates`] into DD's in-memory operators and, from
/// the persisted arrangements' resume point on, into the persisted ones. Returns the consolidated outputs
/// of both sides and the resume point.
fn run_ops(dir: &Path, workers: usize, rounds: usize, size: usize) -> (Outputs, Outputs, u64) {
    let store = Store::open(dir).unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let want = Arc::new(Mutex::new(Vec::new()));
    let resume = Arc::new(Mutex::new(0));
    let (g, w, r) = (got.clone(), want.clone(), resume.clone());
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let (mut persisted_input, mut memory_input, mut other_input, from) =
            worker.dataflow::<usize, _, _>(|scope| {
                let (persisted_input, p) = scope.new_collection::<(usize, usize), isize>();
                let (memory_input, m) = scope.new_collection::<(usize, usize), isize>();
                let (other_input, other) = scope.new_collection::<(usize, char), isize>();
                let keys = other.clone().map(|(k, _)| k).filter(|k| k % 3 != 0).distinct();

                let arranged = p.clone().arrange_by_key_persisted(&store, "pairs").unwrap();
                let arranged_keys = p
                    .map(|(k, _)| k)
                    .arrange_by_self_persisted(&store, "keys")
                    .unwrap();
                let from = arranged
                    .handle()
                    .unwrap()
                    .resume_at()
                    .min(arranged_keys.handle().unwrap().resume_at());

                let mut outputs: Vec<(&'static str, _, _)> = Vec::new();
                macro_rules! both {
                    ($name:literal, $persisted:expr, $memory:expr) => {
                        outputs.push((
                            $name,
                            $persisted.map(|x| format!("{x:?}")).inner,
                            $memory.map(|x| format!("{x:?}")).inner,
                        ));
                    };
                }
                both!(
                    "as_collection",
                    arranged.clone().as_collection(|k, v| (*k, *v)),
                    m.clone()
                );
                both!(
                    "join",
                    arranged.clone().join(other.clone()),
                    m.clone().join(other.clone())
                );
                both!(
                    "join_map",
                    arranged
                        .clone()
                        .join_map(other.clone(), |k, v1, v2| (*k + *v1, *v2)),
                    m.clone().join_map(other.clone(), |k, v1, v2| (*k + *v1, *v2))
                );
                both!(
                    "join_core",
                    arranged
                        .clone()
                        .join_core(other.clone().arrange_by_key_encoded(), |k, v, c| Some((
                            *k, *v, *c
                        ))),
                    m.clone()
                        .arrange_by_key()
                        .join_core(other.clone().arrange_by_key(), |k, v, c| Some((*k, *v, *c)))
                );
                both!(
                    "semijoin",
                    arranged.clone().semijoin(keys.clone()),
                    m.clone().semijoin(keys.clone())
                );
                both!(
                    "antijoin",
                    arranged.clone().antijoin(keys.clone()),
                    m.clone().antijoin(keys.clone())
                );
                both!(
                    "reduce",
                    arranged
                        .clone()
                        .reduce(|_, s, t| t.push((*s[0].0, s.len() as isize))),
                    m.clone().reduce(|_, s, t| t.push((*s[0].0, s.len() as isize)))
                );
                let m_keys = m.map(|(k, _)| k);
                both!(
                    "count_total",
                    arranged.count_total(),
                    m_keys.clone().count_total()
                );
                both!(
                    "count_total by self",
                    arranged_keys.clone().count_total(),
                    m_keys.clone().count_total()
                );
                both!(
                    "threshold_total",
                    arranged_keys.clone().threshold_total(|_, c| c % 2),
                    m_keys.clone().threshold_total(|_, c| c % 2)
                );
                both!(
                    "distinct_total",
                    arranged_keys.distinct_total(),
                    m_keys.distinct_total()
                );
                for (name, persisted, memory) in outputs {
                    let (g, w) = (g.clone(), w.clone());
                    persisted
                        .inspect(move |(d, _, r)| g.lock().unwrap().push(((name, d.clone()), *r as i64)))
                        .probe_with(&probe);
                    memory
                        .inspect(move |(d, _, r)| w.lock().unwrap().push(((name, d.clone()), *r as i64)))
                        .probe_with(&probe);
                }
                (persisted_input, memory_input, other_input, from as usize)
            });
        *r.lock().unwrap() = from as u64;
        persisted_input.advance_to(from);
        for round in 0..rounds {
            memory_input.advance_to(round);
            other_input.advance_to(round);
            if round >= from {
                persisted_input.advance_to(round);
            }
            if worker.index() == 0 {
                for (pair, diff) in pair_updates(round, size) {
                    memory_input.update(pair, diff);
                    if round >= from {
                        persisted_input.update(pair, diff);
                    }
                    if round % 2 == 0 {
                        let c = char::from(b'a' + (pair.1 % 26) as u8);
                        other_input.update((pair.1 % (size / 3 + 1), c), diff);
                    }
                }
            }
        }
        for input in [&mut persisted_input, &mut memory_input] {
            input.advance_to(rounds);
            input.flush();
        }
        other_input.advance_to(rounds);
        other_input.flush();
        worker.step_while(|| probe.less_than(&rounds));
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
    })
    .unwrap();
    let consolidate = |updates: &[((&'static str, String), i64)]| {
        let mut acc = Outputs::new();
        for (d, r) in updates {
            *acc.entry(d.clone()).or_insert(0) += r;
        }
        acc.retain(|_, r| *r != 0);
        acc
    };
    let got = consolidate(&got.lock().unwrap());
    let want = consolidate(&want.lock().unwrap());
    let resume = *resume.lock().unwrap();
    (got, want, resume)
}

/// Every operator's output equals DD's in-memory operator's, with 1 and 2 workers, after a first run and
/// after a restart that resumes from the handle's resume point.
#[test]
fn typed_operators_equal_in_memory_with_a_restart() {
    let (rounds, size) = if long() { (40, 300) } else { (6, 30) };
    for workers in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let (got, want, resume) = run_ops(dir.path(), workers, rounds / 2, size);
        assert_eq!(resume, 0);
        for name in [
            "join",
            "semijoin",
            "antijoin",
            "reduce",
            "count_total",
            "distinct_total",
        ] {
            assert!(want.keys().any(|(n, _)| *n == name), "{name} has output");
        }
        assert_eq!(got, want, "{workers} workers, first run");
        let (got, want, resume) = run_ops(dir.path(), workers, rounds, size);
        assert_eq!(resume, (rounds / 2) as u64, "the first run persisted its rounds");
        assert_eq!(got, want, "{workers} workers, after the restart");
        for name in [
            "join",
            "semijoin",
            "antijoin",
            "reduce",
            "count_total",
            "threshold_total",
        ] {
            assert!(
                got.keys().any(|(n, _)| *n == name),
                "{name} has output after the restart"
            );
        }
    }
}
