//! A full disk (`ENOSPC`) under a store: a tmpfs of a few MiB, mounted for the test, holds the store
//! directory. Writes and seals go on until the disk is full, and a few more after. Every failure is the
//! full disk's: an I/O error naming the file (`No space left on device`), or the poisoned store naming it
//! (after a failed WAL write or manifest commit; a batch file that did not fit changes nothing, and the
//! store goes on). Nothing panics, and nothing acknowledged is lost:
//! - a reopen on the still full disk either serves exactly what was acknowledged or fails with the same
//!   I/O error, changing nothing;
//! - once the tmpfs is grown, a reopen serves exactly what was acknowledged: every sealed update, and for
//!   a durable stream every acknowledged unsealed write too;
//! - the store then takes writes and seals again.
//!
//! Mounting needs `CAP_SYS_ADMIN` (root, as CI runs here); without it the test says so on stderr and
//! checks nothing.

use crate::env::{is_disk_full, Tmpfs};
use ddpersist::{Error, Store, StreamOptions};
use std::collections::BTreeSet;

/// Updates of one write: 100 keys from `first`, 100-byte vals, at time `time`.
fn updates(first: u64, time: u64) -> Vec<(u64, [u8; 100], u64, i64)> {
    (first..first + 100)
        .map(|k| (k, [k as u8; 100], time, 1))
        .collect()
}

/// The keys stream `s` of `store` holds (each once, diff 1, its val), and its upper.
fn held(store: &Store) -> (BTreeSet<u64>, u64) {
    held_in(store, "s")
}

/// The keys stream `id` of `store` holds (each once, diff 1, its val), and its upper.
fn held_in(store: &Store, id: &str) -> (BTreeSet<u64>, u64) {
    let mut keys = BTreeSet::new();
    for (k, v, _t, d) in store.snapshot(id).unwrap().decode::<u64, [u8; 100]>().unwrap() {
        assert_eq!((v, d), ([k as u8; 100], 1), "key {k}");
        assert!(keys.insert(k), "key {k} twice");
    }
    (keys, store.upper(id).unwrap())
}

/// The keys of `writes` (first key, time) at times below `upper`, or all of them with `durable`.
fn keys(writes: &[(u64, u64)], upper: u64, durable: bool) -> BTreeSet<u64> {
    writes
        .iter()
        .filter(|(_, t)| durable || *t < upper)
        .flat_map(|&(first, _)| first..first + 100)
        .collect()
}

/// The writes of a run: (first key, time) of each acknowledged one and of each that failed, and the
/// acknowledged upper.
#[derive(Default)]
struct Writes {
    acked: Vec<(u64, u64)>,
    failed: Vec<(u64, u64)>,
    upper: u64,
}

impl Writes {
    /// `n` writes of 100 updates (keys from `from`) at the acknowledged upper, a seal one further every
    /// 20 writes; stops at the first error if `stop_at_first`. Returns the errors, each checked to be the
    /// full disk's.
    fn run(&mut self, store: &Store, from: u64, n: u64, stop_at_first: bool) -> Vec<Error> {
        let mut errors = Vec::new();
        for i in 0..n {
            let first = from + i * 100;
            match store.write("s", &updates(first, self.upper)) {
                Ok(()) => self.acked.push((first, self.upper)),
                Err(e) => {
                    self.failed.push((first, self.upper));
                    errors.push(e);
                }
            }
            if i % 20 == 19 {
                match store.seal("s", self.upper + 1) {
                    Ok(_) => self.upper += 1,
                    Err(e) => errors.push(e),
                }
            }
            if stop_at_first && !errors.is_empty() {
                break;
            }
        }
        for e in &errors {
            assert!(is_disk_full(e), "not the full disk's error: {e}");
        }
        errors
    }

    /// Checks what a reopened store holds: its upper is the acknowledged one or, if a failed seal's
    /// commit was ambiguous (the store was poisoned), that seal's; every acknowledged update below it is
    /// held (with `durable`, every acknowledged update), and nothing else but updates of writes that
    /// failed (a failed WAL write may have reached the disk whole).
    fn check(&self, store: &Store, durable: bool, what: &str) {
        let (held, upper) = held(store);
        let acked = self.upper;
        assert!(
            upper == acked || upper == acked + 1,
            "{what}: upper {upper}, acknowledged {acked}"
        );
        let must = keys(&self.acked, upper, durable);
        let may = keys(&self.failed, upper, durable);
        let lost: Vec<_> = must.difference(&held).take(5).collect();
        assert!(lost.is_empty(), "{what}: lost {lost:?}");
        let extra: Vec<_> = held
            .difference(&must)
            .filter(|k| !may.contains(k))
            .take(5)
            .collect();
        assert!(extra.is_empty(), "{what}: never written {extra:?}");
    }
}

/// Fills a 16 MiB tmpfs through one stream (`durable` or not), tries 100 more writes and 5 seals on the
/// full disk, and checks the reopen on the full disk, the reopen after growing it, and writes after.
fn fill(durable: bool) {
    let Some(fs) = Tmpfs::mount(16) else {
        return;
    };
    let dir = fs.0.join("store");
    let store = Store::open(&dir).unwrap();
    store.create_stream("s", StreamOptions { durable }).unwrap();
    let mut w = Writes::default();
    assert!(!w.run(&store, 0, 100_000, true).is_empty(), "16 MiB never filled");
    assert!(
        w.acked.len() > 100,
        "only {} writes before the disk filled",
        w.acked.len()
    );
    let first = w.failed.first().copied();
    // A background merge that ends after the disk filled deletes its inputs and frees their space (a CI
    // run under load saw the next 100 writes and 5 seals all succeed): fill again until the disk stays
    // full through 100 more writes and 5 seals. Key ranges: 10 M + 10,000 a round for those writes,
    // 1 G + 100 M a round for the fills (each stops at its first error, far below 100 M keys).
    let mut errors = Vec::new();
    for round in 0..20 {
        errors = w.run(&store, 10_000_000 + round * 10_000, 100, false);
        if !errors.is_empty() {
            break;
        }
        w.run(&store, 1_000_000_000 + round * 100_000_000, 100_000, true);
    }
    eprintln!(
        "durable {durable}: {} writes acknowledged, upper {}, first failed write {first:?}, then {} errors: {:?}",
        w.acked.len(),
        w.upper,
        errors.len(),
        errors.first().map(|e| e.to_string())
    );
    assert!(
        !errors.is_empty(),
        "the full disk took 100 more writes and 5 seals, 20 times after filling it again"
    );
    drop(store);
    // On the full disk: what was acknowledged, or the full disk's error.
    match Store::open(&dir) {
        Ok(store) => w.check(&store, durable, "reopened on the full disk"),
        Err(e) => assert!(is_disk_full(&e), "reopen on the full disk: {e}"),
    }
    fs.resize(64);
    let store = Store::open(&dir).unwrap();
    w.check(&store, durable, "reopened with room");
    // And it goes on, from the upper it reopened at.
    let mut more = Writes {
        upper: store.upper("s").unwrap(),
        ..Writes::default()
    };
    assert!(more.run(&store, 20_000_000, 40, false).is_empty());
    drop(store);
    let store = Store::open(&dir).unwrap();
    let (held_now, upper) = held(&store);
    assert_eq!(upper, more.upper);
    let new = keys(&more.acked, upper, durable);
    assert!(new.is_subset(&held_now), "the writes after growing the disk");
}

#[test]
fn a_full_disk_under_a_durable_stream_loses_nothing_acknowledged() {
    fill(true);
}

#[test]
fn a_full_disk_under_a_stream_that_is_not_durable_loses_no_seal() {
    fill(false);
}

/// A full disk freed through the store: two streams hold sealed batches when another file fills the disk
/// to its last byte. `drop_stream` of one commits (its manifest edit takes the space reserve, `RESERVE`,
/// where a full disk would refuse it and poison the store) and frees its batch files: the other stream
/// then takes writes and seals, whose commits renew the reserve; the disk filled again, the renewed
/// reserve serves a `create_stream`; and a reopen once the filler is gone writes a new reserve and has
/// that stream whole and the dropped one gone.
#[test]
fn a_full_disk_is_freed_by_dropping_a_stream() {
    let Some(fs) = Tmpfs::mount(16) else {
        return;
    };
    let dir = fs.0.join("store");
    let reserve = dir.join(ddpersist::blob::RESERVE_NAME);
    // No background merge: one finishing after the disk filled would free space or take the reserve.
    let options = ddpersist::Options {
        compaction_threads: 0,
        ..Default::default()
    };
    let store = Store::open_with(&dir, options.clone()).unwrap();
    assert!(reserve.exists(), "no reserve");
    // "keep" holds 2,000 updates, "big" 40,000 (4.6 MB, which its drop frees: room for a new reserve).
    for (id, writes) in [("keep", 1), ("big", 20)] {
        store.create_stream(id, StreamOptions { durable: false }).unwrap();
        for t in 0..20u64 {
            for w in 0..writes {
                store.write(id, &updates((t * writes + w) * 100, t)).unwrap();
            }
            store.seal(id, t + 1).unwrap();
        }
    }
    store.compact("big").unwrap();
    let _filler = crate::store_full::fill(&dir);
    let e = store
        .write("keep", &updates(2_000, 20))
        .and_then(|()| store.seal("keep", 21).map(|_| ()));
    assert!(
        e.as_ref().is_err_and(is_disk_full),
        "a seal on the filled disk: {e:?}"
    );
    store.drop_stream("big").unwrap();
    assert!(
        !reserve.exists(),
        "the drop did not need the reserve: the disk was not full"
    );
    for t in 21..30u64 {
        store.write("keep", &updates(t * 100, t)).unwrap();
        store.seal("keep", t + 1).unwrap();
    }
    // The drop freed "big"'s files: the seals' commits renewed the reserve.
    let len = std::fs::metadata(&reserve).map(|m| m.len()).ok();
    assert_eq!(
        len,
        Some(ddpersist::blob::RESERVE_BYTES as u64),
        "renewed in the run"
    );
    // The filler grows again (another file takes what is left, and a bit more): the next commit that
    // finds the disk full takes the renewed reserve and succeeds.
    let filler = crate::store_full::fill(&dir);
    store
        .create_stream("after", StreamOptions { durable: false })
        .unwrap();
    assert!(!reserve.exists(), "the create_stream did not need the reserve");
    drop(store);
    std::fs::remove_file(filler).unwrap();
    let store = Store::open_with(&dir, options).unwrap();
    let len = std::fs::metadata(&reserve).map(|m| m.len()).ok();
    assert_eq!(
        len,
        Some(ddpersist::blob::RESERVE_BYTES as u64),
        "the new reserve"
    );
    assert!(!store.has_stream("big"));
    let (keys, upper) = held_in(&store, "keep");
    assert_eq!(upper, 30);
    assert_eq!(keys, (0..3_000).collect::<BTreeSet<u64>>());
}
