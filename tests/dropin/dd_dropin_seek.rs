//! From adversarial round 4 (held): sparse probes into a large persisted trace (many blocks, fixed- and
//! variable-width keys) through join, semijoin, antijoin and count_total, whose cursors seek the trace
//! key by key; against DD's in-memory arrangement at every time.
#![allow(clippy::type_complexity)]

use crate::common;

use common::Rng;

use common::compare::{at, rec, same_at_every_time, Log};

use ddpersist::operators::{ArrangeTyped, ArrangeTypedBySelf};
use ddpersist::{Codec, Options, Store};
use differential_dataflow::input::Input;
use differential_dataflow::operators::CountTotal;
use std::fmt::Debug;
use std::time::{Duration, Instant};
use timely::dataflow::ProbeHandle;

fn small_blocks() -> Options {
    Options {
        block_target_bytes: 64,
        merge_fan_in: 2,
        compaction_threads: 1,
        ..Options::default()
    }
}

/// `key(i)`: the key type under test, with `i` ordered as the keys are for the fixed-width ones.
fn run<K>(key: fn(u64) -> K, options: Options, workers: usize, n: u64)
where
    K: Codec
        + differential_dataflow::ExchangeData
        + differential_dataflow::hashable::Hashable
        + Ord
        + Debug
        + Clone,
{
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), options).unwrap();
    type L<K> = Log<(K, u64)>;
    type C<K> = Log<(K, isize)>;
    let logs: (L<K>, L<K>, L<K>, L<K>, L<K>, L<K>, C<K>, C<K>) = Default::default();
    let l = logs.clone();
    let rounds = 12u64;
    timely::execute(timely::Config::process(workers), move |worker| {
        let probe = ProbeHandle::new();
        let index = worker.index() as u64;
        let peers = worker.peers() as u64;
        let (mut base, mut q) = worker.dataflow::<u64, _, _>(|scope| {
            let (bin, b) = scope.new_collection::<(K, u64), isize>();
            let (qin, q) = scope.new_collection::<K, isize>();
            let p = b.clone().arrange_by_key_persisted(&store, "base").unwrap();
            rec(p.clone().semijoin(q.clone()), &l.0, &probe);
            rec(b.clone().semijoin(q.clone()), &l.1, &probe);
            rec(
                p.clone().antijoin(q.clone()).filter(|x| x.1 % 7 == 0),
                &l.2,
                &probe,
            );
            rec(
                b.clone().antijoin(q.clone()).filter(|x| x.1 % 7 == 0),
                &l.3,
                &probe,
            );
            rec(
                q.clone()
                    .map(|k| (k, ()))
                    .arrange_by_key_encoded()
                    .join_core(p.clone(), |k: &K, _: &(), v: &u64| Some((k.clone(), *v))),
                &l.4,
                &probe,
            );
            rec(
                q.clone()
                    .map(|k| (k, ()))
                    .join_map(b.clone(), |k, _, v| (k.clone(), *v)),
                &l.5,
                &probe,
            );
            rec(p.count_total(), &l.6, &probe);
            rec(b.map(|x| x.0).count_total(), &l.7, &probe);
            let _ = q.arrange_by_self_encoded();
            (bin, qin)
        });
        // Time 0: every third key, some with several vals.
        for i in 0..n {
            if i % peers == index && i % 3 == 0 {
                base.update((key(i), i % 5), 1);
                if i % 9 == 0 {
                    base.update((key(i), 100 + i % 4), 1);
                }
            }
        }
        let mut rng = Rng(index + 1);
        for t in 1..rounds {
            base.advance_to(t);
            q.advance_to(t);
            // Sparse probes: present, absent, first, last, beyond.
            for _ in 0..40 {
                let i = rng.next() % (n + 10);
                q.update(key(i), 1);
            }
            if index == 0 {
                q.update(key(0), 1);
                q.update(key(n - 1), 1);
                q.update(key(n + 3), 1);
            }
            // A few updates to the base at random keys (count_total seeks the trace for each).
            for _ in 0..20 {
                let i = (rng.next() % n) / 3 * 3;
                base.update((key(i), i % 5), -1);
                base.update((key(i + 1), 7), 1);
            }
            base.flush();
            q.flush();
            let start = Instant::now();
            worker.step_while(|| {
                assert!(start.elapsed() < Duration::from_secs(120), "hang");
                probe.less_than(&t)
            });
        }
        base.advance_to(rounds);
        q.advance_to(rounds);
        base.flush();
        q.flush();
        let start = Instant::now();
        worker.step_while(|| {
            assert!(start.elapsed() < Duration::from_secs(120), "hang");
            probe.less_than(&rounds)
        });
    })
    .unwrap();
    let times: Vec<u64> = (0..rounds).collect();
    assert!(!at(&logs.1, &(rounds - 1)).is_empty());
    same_at_every_time(&logs.0, &logs.1, &times, "semijoin");
    same_at_every_time(&logs.2, &logs.3, &times, "antijoin");
    same_at_every_time(&logs.4, &logs.5, &times, "encoded.join_core(persisted)");
    same_at_every_time(&logs.6, &logs.7, &times, "count_total");
}

fn k_u32(i: u64) -> u32 {
    i as u32 * 2654435761u32.wrapping_mul(0) + i as u32
}
fn k_string(i: u64) -> String {
    // Shared prefixes, varied lengths, an embedded NUL now and then.
    let mut s = format!("{}", i % 97);
    for _ in 0..(i % 7) {
        s.push('x');
    }
    if i.is_multiple_of(13) {
        s.push('\0');
    }
    s.push_str(&format!("{i}"));
    s
}
fn k_bytes(i: u64) -> Vec<u8> {
    let len = (i % 11) as usize;
    let mut v = vec![(i % 3) as u8; len];
    v.extend_from_slice(&i.to_be_bytes()[5..]);
    if i.is_multiple_of(17) {
        v.clear();
        v.push((i >> 8) as u8);
    }
    v
}
fn k_pair(i: u64) -> (String, u64) {
    (format!("p{}", i % 50), i)
}

#[test]
fn seek_u32_keys_small_blocks() {
    run(k_u32, small_blocks(), 1, 20_000);
}
#[test]
fn seek_u32_keys_default_blocks_two_workers() {
    run(k_u32, Options::default(), 2, 60_000);
}
#[test]
fn seek_string_keys_small_blocks() {
    run(k_string, small_blocks(), 1, 20_000);
}
#[test]
fn seek_string_keys_default_blocks_two_workers() {
    run(k_string, Options::default(), 2, 60_000);
}
#[test]
fn seek_byte_keys_small_blocks() {
    run(k_bytes, small_blocks(), 2, 20_000);
}
#[test]
fn seek_pair_keys_default_blocks() {
    run(k_pair, Options::default(), 1, 60_000);
}
#[test]
fn seek_u64_keys_small_blocks() {
    run(
        |i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        small_blocks(),
        1,
        20_000,
    );
}
