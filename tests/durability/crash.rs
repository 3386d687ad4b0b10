//! kill -9 crash loop: a child process writes, seals and merges as fast as it can and is killed with
//! SIGKILL at a random moment; the parent reopens the store and checks that every write the child saw
//! acknowledged is there, that nothing else is, and that the store opens cleanly. Then the next cycle
//! continues on the same store.
//!
//! A few cycles run by default; `DDPERSIST_CRASH_CYCLES=1000 cargo test --release --test durability crash::` runs many.

use crate::common;

use common::Rng;
use ddpersist::{Options, Store, StreamOptions};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

/// The key of update `i` of child run `cycle`.
fn key(cycle: u64, i: u64) -> Vec<u8> {
    format!("c{cycle:06}-{i:08}").into_bytes()
}

/// Run by the parent as a child process: writes and seals until killed, printing each acknowledged write.
#[test]
#[ignore = "run as a child process by kill_9_at_random_moments_loses_no_acknowledged_write"]
fn crash_child() {
    let Some(dir) = common::child_var("DDPERSIST_CRASH_DIR") else {
        return;
    };
    let cycle: u64 = std::env::var("DDPERSIST_CRASH_CYCLE").unwrap().parse().unwrap();
    // Small segments, blocks and budget so rollovers, merges and spills all happen within a short run.
    let options = Options {
        wal_segment_bytes: 64 << 10,
        block_target_bytes: 1024,
        memtable_budget_bytes: 256 << 10,
        // Every other cycle zero-fills the WAL ahead (format 2), on the same store as the others.
        wal_zero_fill: cycle % 2 == 1,
        ..Options::default()
    };
    let store = Store::open_with(Path::new(&dir), options).unwrap();
    if !store.has_stream("s") {
        store.create_stream("s", StreamOptions::default()).unwrap();
    }
    let mut out = std::io::stdout().lock();
    let mut i = 0u64;
    // Writes made with `write_bytes_unsynced` and not yet acknowledged: their first update, and the
    // greatest ticket.
    let (mut unacked_from, mut ticket) = (None, ddpersist::store::WriteTicket::default());
    loop {
        let upper = store.upper("s").unwrap();
        let keys: Vec<Vec<u8>> = (i..i + 20).map(|j| key(cycle, j)).collect();
        let updates = keys.iter().map(|k| (&k[..], &b"v"[..], upper + 1, 1));
        // Two of three writes do not wait for the WAL; every other one of those syncs; a synced write
        // makes every earlier write durable too (the WAL is written in order).
        let step = i / 20;
        if step.is_multiple_of(3) {
            store.write_bytes("s", updates).unwrap();
        } else {
            ticket = ticket.max(store.write_bytes_unsynced("s", updates).unwrap());
            unacked_from.get_or_insert(i);
            if step % 3 == 2 {
                store.sync(ticket).unwrap();
            }
        }
        if step % 3 != 1 {
            // Acknowledged: durable in the WAL.
            let from = unacked_from.take().unwrap_or(i);
            writeln!(out, "ack {from} {}", i + 20).unwrap();
            out.flush().unwrap();
        }
        i += 20;
        if i.is_multiple_of(100) {
            store.seal("s", upper + 2).unwrap();
        }
    }
}

#[test]
fn kill_9_at_random_moments_loses_no_acknowledged_write() {
    let cycles: u64 = std::env::var("DDPERSIST_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(99);
    let mut acked: BTreeSet<Vec<u8>> = BTreeSet::new();
    for cycle in 0..cycles {
        let mut child = common::spawn_child(
            module_path!(),
            "crash_child",
            &[
                ("DDPERSIST_CRASH_DIR", dir.path().display().to_string()),
                ("DDPERSIST_CRASH_CYCLE", cycle.to_string()),
            ],
        );
        // Kill after a random number of acknowledged writes (somewhere among seals, merges and spills).
        let kill_after = 5 + rng.below(200);
        let mut seen = 0;
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut range = rest.split(' ').map(|x| x.parse::<u64>().unwrap());
                let (from, to) = (range.next().unwrap(), range.next().unwrap());
                acked.extend((from..to).map(|i| key(cycle, i)));
                seen += 1;
                if seen == kill_after {
                    break;
                }
            }
        }
        assert_eq!(
            seen, kill_after,
            "cycle {cycle}: the child stopped before it was killed"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        // A line printed after the last one read may also be acknowledged: that is fine, it only has to be
        // present if it was read. Everything read must be there; nothing unwritten may be.
        let store = Store::open(dir.path()).unwrap();
        let got: Vec<Vec<u8>> = store
            .snapshot("s")
            .unwrap()
            .to_vec()
            .unwrap()
            .into_iter()
            .map(|(k, v, _, d)| {
                assert_eq!((&v[..], d), (&b"v"[..], 1), "cycle {cycle}: unexpected update");
                k
            })
            .collect();
        let got_set: BTreeSet<Vec<u8>> = got.iter().cloned().collect();
        assert_eq!(got_set.len(), got.len(), "cycle {cycle}: an update appears twice");
        let missing: Vec<_> = acked.difference(&got_set).take(3).collect();
        assert!(
            missing.is_empty(),
            "cycle {cycle}: acknowledged writes lost, e.g. {missing:?}"
        );
        for k in &got {
            let c: u64 = std::str::from_utf8(&k[1..7]).unwrap().parse().unwrap();
            assert!(c <= cycle, "cycle {cycle}: key from the future {k:?}");
        }
        // What this cycle wrote beyond the acknowledged lines is kept too (it was durable): count it as
        // acknowledged from now on, so a later loss of it is caught.
        acked.extend(got_set);
    }
}
