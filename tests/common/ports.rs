//! Helpers of the ports of DD's own tests (`dd_ports*.rs`): DD's inputs built from update vectors, the one
//! batch a captured run answers, DD's `reduce` test.

use ddpersist::operators::ArrangeTyped;
use ddpersist::Store;
use differential_dataflow::{AsCollection, VecCollection};
use timely::dataflow::operators::capture::{Capture, Extract};
use timely::dataflow::operators::ToStream;
use timely::dataflow::Scope;
use timely::progress::Timestamp;

/// `updates` (`(record, time, diff)`) as a collection of `scope`: what DD's tests write as
/// `vec![...].into_iter().to_stream(scope).as_collection()`. Types are inferred as there.
pub fn collection<'s, T: Timestamp, D: Clone + 'static, R: Clone + 'static>(
    scope: Scope<'s, T>,
    updates: Vec<(D, T, R)>,
) -> VecCollection<'s, T, D, R> {
    updates.into_iter().to_stream(scope).as_collection()
}

/// The data of the single batch an `extract()`ed capture holds: asserts there is exactly one
/// `(time, data)` and returns its data.
pub fn only_batch<T, D>(extracted: Vec<(T, Vec<D>)>) -> Vec<D> {
    assert_eq!(extracted.len(), 1);
    extracted.into_iter().next().unwrap().1
}

/// The capture of DD's `reduce` test, extracted: `(time, updates)` batches of `((key, val), time, diff)`.
pub type Reduced = Vec<(u64, Vec<((i32, i32), u64, isize)>)>;

/// DD 0.26's `tests/reduce.rs` `reduce` with its `col1` arranged by `arrange_by_key_persisted(&store, id)`:
/// three updates at the default time reduced to `(key, first val)` with the count of vals as diff, run
/// once with `timely::example`. Returns the extracted capture (`(time, updates)` batches).
pub fn dd_reduce(store: Store, id: &'static str) -> Reduced {
    let data = timely::example(move |scope| {
        let col1 = collection(
            scope,
            vec![
                ((0, 0), Default::default(), 1),
                ((1, 2), Default::default(), 1),
                ((1, 1), Default::default(), 1),
            ],
        );
        col1.arrange_by_key_persisted(&store, id)
            .unwrap()
            .reduce(|_, s, t| t.push((*s[0].0, s.len() as isize)))
            .inner
            .capture()
    });
    data.extract()
}

/// DD 0.26's `tests/join.rs` `col1` in `$scope`: `(0, 0)` and `(1, 2)` at the default time with diff 1. A
/// macro, so that every type is inferred at the use as in DD's test.
#[allow(unused_macros)]
macro_rules! dd_col1 {
    ($scope:expr) => {
        $crate::common::ports::collection(
            $scope,
            vec![((0, 0), Default::default(), 1), ((1, 2), Default::default(), 1)],
        )
    };
}
#[allow(unused_imports)]
pub(crate) use dd_col1;

/// DD 0.26's `tests/join.rs` inputs of `join` (and `join_map`) in `$scope`: `(col1, col2)`, [`dd_col1`]
/// and `col2` = `(0, 'a')`, `(1, 'B')`, at the default time with diff 1 (types inferred at the use).
#[allow(unused_macros)]
macro_rules! dd_join_inputs {
    ($scope:expr) => {
        (
            $crate::common::ports::dd_col1!($scope),
            $crate::common::ports::collection(
                $scope,
                vec![
                    ((0, 'a'), Default::default(), 1),
                    ((1, 'B'), Default::default(), 1),
                ],
            ),
        )
    };
}
#[allow(unused_imports)]
pub(crate) use dd_join_inputs;

/// DD 0.26's `tests/join.rs` inputs of `semijoin` and `antijoin` in `$scope`: `(col1, col2)`, [`dd_col1`]
/// and `col2` = `0`, at the default time with diff 1 (types inferred at the use).
#[allow(unused_macros)]
macro_rules! dd_semijoin_inputs {
    ($scope:expr) => {
        (
            $crate::common::ports::dd_col1!($scope),
            $crate::common::ports::collection($scope, vec![(0, Default::default(), 1)]),
        )
    };
}
#[allow(unused_imports)]
pub(crate) use dd_semijoin_inputs;
