//! Cluster runs (in threads of this process) at their edges: a process whose workers never hold a key
//! (idle), fed by a worker of that idle process; a process whose directory was lost between runs.

use crate::cluster::*;
use crate::common;
use crate::schedule::*;

/// Two processes; every src key lives on process 0's workers, and the only feeder is the last worker
/// (process 1's): process 1's persisted operators never hold a row. Restarted three times (and once
/// more with nothing to feed), each run's output must be DD's.
#[test]
fn an_idle_process_fed_by_its_own_worker() {
    for (threads, source) in [(2, Source::Upsert), (1, Source::Arranged)] {
        let peers = 2 * threads;
        let process0: u32 = (1 << threads) - 1;
        let slots = cluster_slots_masked(peers, 7, source, vec![process0, 1, 0]);
        let expected = oracle(&slots);
        let (_dirs, paths) = common::temp_dirs(2);
        for end in [5, slots.len(), slots.len()] {
            let seen = run_cluster_with(&paths, threads, source, &slots, end, 0, Some(peers - 1));
            check(
                &format!("{threads}/{source:?} idle process 1, to slot {end}"),
                &seen,
                &paths,
                threads,
                &slots,
                &expected,
            )
            .unwrap();
        }
    }
}

/// Process 1's directory lost between runs (replaced by an empty one): the cluster restarted over it
/// agrees on resume point 0 (process 1 holds nothing), the source replays from 0, process 0's workers
/// drop what they hold, process 1's persist everything again. Expected: DD's answer (or a clear
/// error); never a hang or a wrong answer.
#[test]
fn a_process_directory_lost_between_runs_is_replayed_from_the_start() {
    for (threads, source) in [(1, Source::Persist), (2, Source::Arranged)] {
        let slots = cluster_slots(2 * threads, 8, source);
        let expected = oracle(&slots);
        let d0 = tempfile::tempdir().unwrap();
        let mut d1 = tempfile::tempdir().unwrap();
        let paths = |d1: &tempfile::TempDir| vec![d0.path().to_path_buf(), d1.path().to_path_buf()];
        let seen = run_cluster(&paths(&d1), threads, source, &slots, 9);
        check("first run", &seen, &paths(&d1), threads, &slots, &expected).unwrap();
        d1 = tempfile::tempdir().unwrap();
        let seen = run_cluster(&paths(&d1), threads, source, &slots, slots.len());
        let what = format!("{threads}/{source:?}: process 1's directory lost");
        assert!(
            seen.resumes.iter().all(|r| r.1 == 0),
            "{what}: resumes {:?}",
            seen.resumes
        );
        check(&what, &seen, &paths(&d1), threads, &slots, &expected).unwrap();
        assert_eq!(seen.passed, Some(slots.last().unwrap().time + 1), "{what}");
    }
}
