//! The engines benches/baselines.rs and benches/summary.rs compare on one workload: update `i` =
//! (`hex_key(i)`: 16 bytes, all distinct; `val(i)`: 100 pseudo-random bytes; time `i / SEAL_EVERY`; diff
//! +1). ddpersist through `write_bytes` + `seal` ([`Ours`]), `write_bytes` + `seal_logged` ([`OursLogged`]) and
//! through `append_bytes` ([`OursAppend`]),
//! SQLite with the seed's schema ([`Sqlite`]), fjall ([`Fjall`]) and DD's in-memory batch ([`InMemory`]);
//! [`ingest`] writes the workload into one, `CHUNK` updates per durable write.

use super::{hex_key, splitmix64};
use ddpersist::trace::{BytesBatch, BytesBuilder, BytesUpdate, PersistedBatch, PersistedTrace};
use ddpersist::{Store, StreamOptions};
use differential_dataflow::trace::cursor::cursor_list;
use differential_dataflow::trace::{Builder, Cursor, Navigable, TraceReader};
use std::collections::BTreeMap;
use std::path::Path;

pub const CHUNK: usize = 1_000;
pub const SEAL_EVERY: usize = 10_000;
pub const STREAM: &str = "s";

pub fn val(i: u64) -> [u8; 100] {
    let mut v = [0u8; 100];
    for (j, c) in v.chunks_mut(8).enumerate() {
        let x = splitmix64(i.wrapping_mul(16) + j as u64).to_le_bytes();
        c.copy_from_slice(&x[..c.len()]);
    }
    v
}

pub fn time(i: usize) -> u64 {
    (i / SEAL_EVERY) as u64
}

/// One engine's handle on a directory holding the updates.
pub trait Engine {
    /// Writes updates `range` durably (one fsync'd write).
    fn write(&mut self, range: std::ops::Range<usize>);
    /// Called after every `SEAL_EVERY` updates with the next time.
    fn seal(&mut self, _upper: u64) {}
    /// The consolidated `(val, diff)`s of `key` as of `as_of`.
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)>;
    /// Every update in order: `(count, a checksum of lengths, times and diffs)`.
    fn scan(&self) -> (u64, u64);
    /// After ingest, before the reads: what the engine needs to serve reads (an index, a compaction).
    fn prepare_reads(&mut self) {}
    /// The time uppers of the batches the engine reads from (ddpersist only).
    fn batch_uppers(&self) -> Vec<u64> {
        Vec::new()
    }
}

/// The store, and (for reads) the stream's batches as the persisted trace serves them.
pub struct Ours(pub Store, pub Vec<PersistedBatch>);

impl Ours {
    pub fn open(dir: &Path) -> Self {
        let store = Store::open_with(dir, crate::common::bench_options()).unwrap();
        if !store.has_stream(STREAM) {
            store.create_stream(STREAM, StreamOptions::default()).unwrap();
        }
        Ours(store, Vec::new())
    }

    /// Runs the merges due, opens the stream's trace and keeps its batches, for `scan`.
    pub fn serve(&mut self) {
        self.0.compact(STREAM).unwrap();
        let mut trace = PersistedTrace::open(&self.0, STREAM).unwrap();
        let upper = trace.upper().to_owned();
        self.1 = trace.batches_through(upper.borrow()).unwrap();
        eprintln!("ddpersist serves {} batch(es) after compaction", self.1.len());
    }
}

/// Writes updates `range` of the workload to `store` with one durable `write_bytes`.
fn write_range(store: &Store, range: std::ops::Range<usize>) {
    let data: Vec<([u8; 16], [u8; 100], u64)> = range
        .map(|i| (hex_key(i as u64), val(i as u64), time(i)))
        .collect();
    let updates = data.iter().map(|(k, v, t)| (&k[..], &v[..], *t, 1i64));
    store.write_bytes(STREAM, updates).unwrap();
}

impl Engine for Ours {
    fn write(&mut self, range: std::ops::Range<usize>) {
        write_range(&self.0, range);
    }
    fn seal(&mut self, upper: u64) {
        self.0.seal(STREAM, upper).unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        self.0.get_bytes(STREAM, key, as_of).unwrap()
    }
    fn batch_uppers(&self) -> Vec<u64> {
        self.1.iter().map(|b| b.description().upper()[0]).collect()
    }
    fn scan(&self) -> (u64, u64) {
        if let [batch] = &self.1[..] {
            return walk(&mut batch.cursor(), batch);
        }
        let (mut cursor, storage) = cursor_list(self.1.clone());
        walk(&mut cursor, &storage)
    }
}

pub struct Sqlite(pub rusqlite::Connection);

impl Sqlite {
    pub fn open(dir: &Path) -> Self {
        let conn = rusqlite::Connection::open(dir.join("persisted.sqlite")).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
             CREATE TABLE IF NOT EXISTS persisted (persisted_id INT, key BYTES, val BYTES, ts BYTES, diff BYTES);
             CREATE INDEX IF NOT EXISTS persisted_ts ON persisted (persisted_id, ts, key);",
        )
        .unwrap();
        Sqlite(conn)
    }
}

impl Engine for Sqlite {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let tx = self.0.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO persisted VALUES (1, ?1, ?2, ?3, ?4)")
                .unwrap();
            for i in range {
                let (k, v) = (hex_key(i as u64), val(i as u64));
                let (t, d) = (time(i).to_be_bytes(), 1i64.to_le_bytes());
                insert.execute((&k[..], &v[..], &t[..], &d[..])).unwrap();
            }
        }
        tx.commit().unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT val, diff FROM persisted WHERE persisted_id = 1 AND key = ?1 AND ts <= ?2",
            )
            .unwrap();
        let rows = stmt
            .query_map((key, &as_of.to_be_bytes()[..]), |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })
            .unwrap();
        consolidate(rows.map(|r| {
            let (v, d) = r.unwrap();
            (v, i64::from_le_bytes(d.try_into().unwrap()))
        }))
    }
    /// The seed's index orders by time first: a key lookup would scan every row below its time.
    fn prepare_reads(&mut self) {
        self.0
            .execute_batch(
                "CREATE INDEX IF NOT EXISTS persisted_key ON persisted (persisted_id, key, ts); ANALYZE;",
            )
            .unwrap();
    }
    fn scan(&self) -> (u64, u64) {
        let mut stmt = self
            .0
            .prepare_cached(
                "SELECT key, val, ts, diff FROM persisted WHERE persisted_id = 1 ORDER BY key, val, ts",
            )
            .unwrap();
        let mut rows = stmt.query(()).unwrap();
        let (mut n, mut sum) = (0u64, 0u64);
        while let Some(r) = rows.next().unwrap() {
            let (k, v) = (
                r.get_ref(0).unwrap().as_blob().unwrap(),
                r.get_ref(1).unwrap().as_blob().unwrap(),
            );
            let t = u64::from_be_bytes(r.get_ref(2).unwrap().as_blob().unwrap().try_into().unwrap());
            let d = i64::from_le_bytes(r.get_ref(3).unwrap().as_blob().unwrap().try_into().unwrap());
            n += 1;
            sum = sum.wrapping_add((k.len() + v.len()) as u64 + t + d as u64);
        }
        (n, sum)
    }
}

pub struct Fjall(pub fjall::Database, pub fjall::Keyspace);

impl Fjall {
    pub fn open(dir: &Path) -> Self {
        let db = fjall::Database::builder(dir.join("fjall")).open().unwrap();
        let ks = db
            .keyspace("persisted", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        Fjall(db, ks)
    }
}

impl Engine for Fjall {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let mut batch = self.0.batch().durability(Some(fjall::PersistMode::SyncData));
        for i in range {
            let mut k = Vec::with_capacity(124);
            k.extend_from_slice(&hex_key(i as u64));
            k.extend_from_slice(&val(i as u64));
            k.extend_from_slice(&time(i).to_be_bytes());
            batch.insert(&self.1, k, 1i64.to_le_bytes().to_vec());
        }
        batch.commit().unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        consolidate(self.1.prefix(key).filter_map(|g| {
            let (k, v) = g.into_inner().unwrap();
            let t = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
            let d = i64::from_le_bytes(v[..].try_into().unwrap());
            (t <= as_of).then(|| (k[key.len()..k.len() - 8].to_vec(), d))
        }))
    }
    fn scan(&self) -> (u64, u64) {
        let (mut n, mut sum) = (0u64, 0u64);
        for g in self.1.iter() {
            let (k, v) = g.into_inner().unwrap();
            let t = u64::from_be_bytes(k[k.len() - 8..].try_into().unwrap());
            let d = i64::from_le_bytes(v[..].try_into().unwrap());
            n += 1;
            sum = sum.wrapping_add((k.len() - 8) as u64 + t + d as u64);
        }
        (n, sum)
    }
}

/// DD's in-memory arrangement: one batch of every update.
pub struct InMemory(pub BytesBatch);

impl InMemory {
    pub fn build(n: usize) -> Self {
        let mut updates: Vec<BytesUpdate> = (0..n)
            .map(|i| ((hex_key(i as u64).to_vec(), val(i as u64).to_vec()), time(i), 1))
            .collect();
        updates.sort_unstable();
        let mut builder = BytesBuilder::with_capacity(n, n, n);
        builder.push(&mut updates);
        InMemory(builder.done().unwrap())
    }
}

impl Engine for InMemory {
    fn write(&mut self, _range: std::ops::Range<usize>) {}
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        Self::get_in(&self.0, key, as_of)
    }
    fn scan(&self) -> (u64, u64) {
        walk(&mut self.0.cursor(), &self.0)
    }
}

impl InMemory {
    /// The consolidated `(val, diff)`s of `key` as of `as_of` in `batch`.
    pub fn get_in(batch: &BytesBatch, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        let (mut cursor, storage) = (batch.cursor(), batch);
        cursor.seek_key(storage, key);
        let mut out = Vec::new();
        if cursor.get_key(storage) == Some(key) {
            while let Some(v) = cursor.get_val(storage) {
                let mut sum = 0;
                cursor.map_times(storage, |t, d| {
                    if *t <= as_of {
                        sum += *d
                    }
                });
                if sum != 0 {
                    out.push((v.to_vec(), sum));
                }
                cursor.step_val(storage);
            }
        }
        out
    }
}

/// Every update under `cursor`, as `Engine::scan` reports it.
pub fn walk<C>(cursor: &mut C, storage: &C::Storage) -> (u64, u64)
where
    C: for<'a> Cursor<Key<'a> = &'a [u8], Val<'a> = &'a [u8], Time = u64, Diff = i64>,
{
    let (mut n, mut sum) = (0u64, 0u64);
    while let Some(k) = cursor.get_key(storage) {
        while let Some(v) = cursor.get_val(storage) {
            let len = (k.len() + v.len()) as u64;
            cursor.map_times(storage, |t, d| {
                let (t, d) = (C::owned_time(t), C::owned_diff(d));
                n += 1;
                sum = sum.wrapping_add(len + t + d as u64);
            });
            cursor.step_val(storage);
        }
        cursor.step_key(storage);
    }
    (n, sum)
}

pub fn consolidate(pairs: impl Iterator<Item = (Vec<u8>, i64)>) -> Vec<(Vec<u8>, i64)> {
    let mut sums = BTreeMap::new();
    for (v, d) in pairs {
        *sums.entry(v).or_insert(0) += d;
    }
    sums.into_iter().filter(|(_, d)| *d != 0).collect()
}

/// The store fed as [`Ours`] is, but sealed with `Store::seal_logged`: each seal durable through one WAL
/// record when it returns, its batch written by the store's flush thread meanwhile.
pub struct OursLogged(pub Store);

impl Engine for OursLogged {
    fn write(&mut self, range: std::ops::Range<usize>) {
        write_range(&self.0, range);
    }
    fn seal(&mut self, upper: u64) {
        self.0.seal_logged(STREAM, upper).unwrap();
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        self.0.get_bytes(STREAM, key, as_of).unwrap()
    }
    fn scan(&self) -> (u64, u64) {
        unreachable!("ingest only")
    }
}

/// The store fed by `Store::append_bytes`: a source durable only at the seal (every `SEAL_EVERY`
/// updates), which sorts its interval and appends it as one batch, bypassing the WAL and the memtable.
pub struct OursAppend(pub Store, pub Vec<([u8; 16], [u8; 100], u64)>, pub u64);

impl Engine for OursAppend {
    fn write(&mut self, range: std::ops::Range<usize>) {
        let batch = range.map(|i| (hex_key(i as u64), val(i as u64), time(i)));
        self.1.extend(batch);
    }
    fn seal(&mut self, upper: u64) {
        self.1.sort_unstable();
        let updates = self.1.iter().map(|(k, v, t)| (&k[..], &v[..], *t, 1i64));
        self.0.append_bytes(STREAM, updates, self.2, upper).unwrap();
        self.1.clear();
        self.2 = upper;
    }
    fn get(&self, key: &[u8], as_of: u64) -> Vec<(Vec<u8>, i64)> {
        self.0.get_bytes(STREAM, key, as_of).unwrap()
    }
    fn scan(&self) -> (u64, u64) {
        unreachable!("ingest only")
    }
}

/// Writes the workload into `engine`: `CHUNK` per write, a seal every `SEAL_EVERY`.
pub fn ingest(engine: &mut dyn Engine, n: usize) {
    for start in (0..n).step_by(CHUNK) {
        let end = (start + CHUNK).min(n);
        engine.write(start..end);
        if end.is_multiple_of(SEAL_EVERY) || end == n {
            engine.seal(time(end - 1) + 1);
        }
    }
}

pub type Open = fn(&Path) -> Box<dyn Engine>;

pub fn engines() -> Vec<(&'static str, Open)> {
    vec![
        ("ddpersist", |d| Box::new(Ours::open(d))),
        ("sqlite", |d| Box::new(Sqlite::open(d))),
        ("fjall", |d| Box::new(Fjall::open(d))),
    ]
}
