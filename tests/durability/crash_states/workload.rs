//! The crash-states workload: durable, unsynced and non-durable writes, seals (ordinary and logged),
//! spills, WAL rollovers, merges and reopens, run once on a recording `SimFs`, with the file-system
//! call counts at which each write and seal was issued and acknowledged.

use super::{open, Model, Rng, Seal, Update, DURABLE, STREAMS, WAL_DIR};
use ddpersist::fs::{Fs, SimFs};
use ddpersist::StreamOptions;

/// The workload: runs on `fs` (recording crash points), returns what it did.
pub(crate) fn run_workload(fs: &SimFs, seed: u64, steps: usize, zero_fill: bool) -> Model {
    let mut rng = Rng(seed);
    let mut m = Model::default();
    let mut store = Some(open(fs, zero_fill).unwrap());
    for (s, id) in STREAMS.iter().enumerate() {
        store
            .as_ref()
            .unwrap()
            .create_stream(id, StreamOptions { durable: DURABLE[s] })
            .unwrap();
        m.created[s] = Some(fs.calls());
    }
    let mut time = [0u64; 2];
    let mut tickets = Vec::new();
    let mut seq = 0u64;
    let mut spills_seen = std::collections::BTreeSet::new();
    let mut segments_seen = std::collections::BTreeSet::new();
    let mut recycled_seen = std::collections::BTreeSet::new();
    let mut merged_seen = std::collections::BTreeSet::new();
    for _ in 0..steps {
        {
            let manifest = store.as_ref().unwrap().manifest();
            for (s, meta) in manifest.streams.iter().enumerate() {
                for run in &meta.spills {
                    if spills_seen.insert(run.file_no) {
                        m.cover.spills += 1;
                    }
                }
                for b in meta.batches.iter().filter(|b| b.level > 0) {
                    if merged_seen.insert((s, b.file_no)) {
                        m.cover.merges += 1;
                    }
                }
            }
            let wal = fs.list(std::path::Path::new(WAL_DIR)).unwrap_or_default();
            for name in wal.iter().filter(|n| n.ends_with(".wal")) {
                let path = std::path::Path::new(WAL_DIR).join(name);
                let header = fs.read(&path).unwrap_or_default();
                if header.len() >= 16 && header[12] & 2 != 0 && recycled_seen.insert(name.clone()) {
                    m.cover.recycled += 1;
                }
            }
            segments_seen.extend(wal);
            m.cover.segments = segments_seen.len() as u64;
        }
        let st = store.as_ref().unwrap();
        let op = rng.below(100);
        match op {
            0..=54 => {
                // A write of 1 to 12 updates at times from the stream's upper up to 3 past it.
                let s = if op < 35 { 0 } else { 1 };
                let unsynced = DURABLE[s] && op >= 27;
                let n = 1 + rng.below(12);
                let issued = fs.calls();
                let mut keys = Vec::new();
                for _ in 0..n {
                    seq += 1;
                    let key = format!("{}{seq:05}", STREAMS[s]).into_bytes();
                    let val = format!("v{}", rng.below(1000)).into_bytes();
                    let t = time[s] + rng.below(4);
                    m.updates.insert(
                        key.clone(),
                        Update {
                            stream: s,
                            val,
                            time: t,
                            issued,
                            acked: None,
                            dropped: None,
                        },
                    );
                    keys.push(key);
                }
                let batch: Vec<(&[u8], &[u8], u64, i64)> = keys
                    .iter()
                    .map(|k| {
                        let u = &m.updates[k];
                        (&k[..], &u.val[..], u.time, 1)
                    })
                    .collect();
                if unsynced {
                    let ticket = st.write_bytes_unsynced(STREAMS[s], batch).unwrap();
                    tickets.push(ticket);
                    m.unsynced.extend(keys.iter().cloned());
                } else {
                    st.write_bytes(STREAMS[s], batch).unwrap();
                    if DURABLE[s] {
                        let at = fs.calls();
                        keys.iter().for_each(|k| m.ack(k, at));
                    }
                }
                m.groups.push(keys);
            }
            55..=61 => {
                if let Some(ticket) = tickets.pop() {
                    st.sync(ticket).unwrap();
                    tickets.clear();
                    let at = fs.calls();
                    for k in std::mem::take(&mut m.unsynced) {
                        m.ack(&k, at);
                    }
                }
            }
            62..=83 => {
                let s = (op % 2) as usize;
                let upper = time[s] + 1 + rng.below(3);
                let issued = fs.calls();
                // Half the seals are logged (`seal_logged`: a WAL seal record, then the batch; for the
                // non-durable stream an ordinary seal).
                match rng.below(2) {
                    0 => st.seal_logged(STREAMS[s], upper).unwrap(),
                    _ => drop(st.seal(STREAMS[s], upper).unwrap()),
                }
                let at = fs.calls();
                m.seals.push(Seal {
                    stream: s,
                    upper,
                    issued,
                    acked: Some(at),
                });
                let below: Vec<Vec<u8>> = m
                    .updates
                    .iter()
                    .filter(|(_, u)| u.stream == s && u.time < upper && u.dropped.is_none())
                    .map(|(k, _)| k.clone())
                    .collect();
                below.iter().for_each(|k| m.ack(k, at));
                time[s] = upper;
            }
            84..=91 => {
                let s = (op % 2) as usize;
                let since = time[s].saturating_sub(1).max(m.since[s]);
                st.allow_compaction(STREAMS[s], since).unwrap();
                m.since[s] = since;
                st.compact(STREAMS[s]).unwrap();
            }
            _ => {
                // A clean reopen: a non-durable stream loses its unsealed updates (never acknowledged).
                drop(store.take());
                m.cover.reopens += 1;
                let at = fs.calls();
                store = Some(open(fs, zero_fill).unwrap());
                tickets.clear();
                // A clean close does not sync the WAL: unsynced writes not made durable by a spill or
                // a seal are gone (never acknowledged). Those the reopened store does not hold are dropped.
                let held: std::collections::BTreeSet<Vec<u8>> = store
                    .as_ref()
                    .unwrap()
                    .snapshot(STREAMS[0])
                    .and_then(|s| s.to_vec())
                    .unwrap()
                    .into_iter()
                    .map(|u| u.0)
                    .collect();
                for k in std::mem::take(&mut m.unsynced) {
                    let u = m.updates.get_mut(&k).unwrap();
                    if !held.contains(&k) && u.acked.is_none() {
                        u.dropped = Some(at);
                    }
                }
                for (s, t) in time.iter_mut().enumerate() {
                    let upper = store.as_ref().unwrap().upper(STREAMS[s]).unwrap();
                    *t = (*t).max(upper);
                    for u in m.updates.values_mut() {
                        if u.stream == s && !DURABLE[s] && u.time >= upper && u.dropped.is_none() {
                            u.dropped = Some(at);
                        }
                    }
                }
            }
        }
    }
    drop(store);
    m
}
