//! Restarts across processes' runs (a `timely::execute` a run) of the rows and upsert chains.

use super::*;

fn sweep(workers: usize, seeds: std::ops::Range<u64>) {
    sweep_of(Source::Rows, workers, seeds)
}

fn sweep_of(source: Source, workers: usize, seeds_default: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in seeds(seeds_default) {
        let mut rng = Rng(seed * 7919 + 3);
        let feed = match seed % 4 {
            0 => Feed::Worker0,
            1 => Feed::Spread,
            2 => Feed::LastEndsEarly,
            _ => Feed::Ahead,
        };
        let keys = match seed % 5 {
            0 => 1,
            1 | 2 => 300,
            _ => KEYS.len(),
        };
        let n = 1 + rng.below(4) as usize;
        let plans = random_plans(&mut rng, workers, 14, n);
        if let Err(e) = scenario(source, workers, feed, 14, seed, keys, &plans) {
            eprintln!("FAIL seed {seed}: {e}");
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert_none_failed(failures);
}

#[test]
fn chain_three_workers() {
    sweep(3, 0..4);
}

#[test]
fn chain_two_workers() {
    sweep(2, 100..104);
}

#[test]
fn chain_without_restarts() {
    // The harness's own check: one key only, then the awkward keys.
    for seed in 0..2 {
        let keys = if seed == 0 { 1 } else { KEYS.len() };
        scenario(Source::Rows, 3, Feed::Spread, 14, seed, keys, &[]).unwrap();
        scenario(Source::Upserts, 3, Feed::Spread, 14, seed, keys, &[]).unwrap();
    }
}

#[test]
fn upsert_chain_three_workers() {
    sweep_of(Source::Upserts, 3, 200..204);
}

#[test]
fn upsert_chain_two_workers() {
    sweep_of(Source::Upserts, 2, 300..304);
}

#[test]
#[ignore = "longer: the original pass's seeds"]
fn long_sweeps() {
    sweep(3, 0..12);
    sweep(2, 100..112);
    sweep_of(Source::Upserts, 3, 200..212);
    sweep_of(Source::Upserts, 2, 300..312);
    eleven_workers(0..4);
}

/// Many workers: worker indexes of two digits in the stream names (`x/w10of11`).
#[test]
fn eleven_workers_two_digit_stream_names() {
    eleven_workers(0..1);
}

fn eleven_workers(default: std::ops::Range<u64>) {
    let mut failures = Vec::new();
    for seed in seeds(default) {
        let mut rng = Rng(seed * 31 + 7);
        let workers = 11;
        let feed = [Feed::Spread, Feed::Worker0, Feed::LastEndsEarly, Feed::Ahead][seed as usize % 4];
        let source = if seed % 2 == 0 {
            Source::Rows
        } else {
            Source::Upserts
        };
        let plans = random_plans(&mut rng, workers, 8, 2);
        if let Err(e) = scenario(source, workers, feed, 8, seed, 300, &plans) {
            eprintln!("FAIL seed {seed}: {e}");
            failures.push(format!("seed {seed}: {e}"));
        }
    }
    assert_none_failed(failures);
}
