//! Part 2, write and space amplification: the `Blob` and `Log` wrappers the store runs over, which count
//! every byte written to batch files, the manifest and the WAL.

use ddpersist::batch::parse_batch_file_name;
use ddpersist::blob::{Blob, BlobBytes, BlobWriter, DirBlob};
use ddpersist::wal::{FileLog, Log, Lsn, ReplayReport};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Bytes written, by destination.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) batch_bytes: AtomicU64,
    pub(crate) batch_files: AtomicU64,
    pub(crate) other_bytes: AtomicU64,
    pub(crate) wal_bytes: AtomicU64,
    pub(crate) wal_records: AtomicU64,
}

/// A `DirBlob` that counts the bytes written to each object (batch files apart from the rest).
pub(crate) struct CountingBlob {
    pub(crate) inner: DirBlob,
    pub(crate) counters: Arc<Counters>,
}

struct CountingWriter {
    inner: Box<dyn BlobWriter>,
    counters: Arc<Counters>,
    batch: bool,
}

impl BlobWriter for CountingWriter {
    fn write(&mut self, bytes: &[u8]) -> ddpersist::Result<()> {
        let c = if self.batch {
            &self.counters.batch_bytes
        } else {
            &self.counters.other_bytes
        };
        c.fetch_add(bytes.len() as u64, Relaxed);
        self.inner.write(bytes)
    }
    fn len(&self) -> u64 {
        self.inner.len()
    }
    fn commit(self: Box<Self>) -> ddpersist::Result<()> {
        self.inner.commit()
    }
}

impl CountingBlob {
    /// `inner`, writing object `name`, with its bytes counted.
    fn counted(&self, name: &str, inner: Box<dyn BlobWriter>) -> ddpersist::Result<Box<dyn BlobWriter>> {
        let batch = parse_batch_file_name(name).is_some();
        if batch {
            self.counters.batch_files.fetch_add(1, Relaxed);
        }
        Ok(Box::new(CountingWriter {
            inner,
            counters: self.counters.clone(),
            batch,
        }))
    }
}

impl Blob for CountingBlob {
    fn get(&self, name: &str) -> ddpersist::Result<Option<BlobBytes>> {
        self.inner.get(name)
    }
    fn create(&self, name: &str) -> ddpersist::Result<Box<dyn BlobWriter>> {
        self.counted(name, self.inner.create(name)?)
    }
    fn create_new(&self, name: &str) -> ddpersist::Result<Box<dyn BlobWriter>> {
        self.counted(name, self.inner.create_new(name)?)
    }
    fn delete(&self, name: &str) -> ddpersist::Result<()> {
        self.inner.delete(name)
    }
    fn list(&self) -> ddpersist::Result<Vec<String>> {
        self.inner.list()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// A `FileLog` that counts the log bytes appended (records with their 16-byte headers).
pub(crate) struct CountingLog {
    pub(crate) inner: FileLog,
    pub(crate) counters: Arc<Counters>,
}

impl Log for CountingLog {
    fn replay(
        &self,
        f: &mut dyn FnMut(Lsn, &[u8]) -> ddpersist::Result<()>,
    ) -> ddpersist::Result<ReplayReport> {
        self.inner.replay(f)
    }
    fn append(&self, payload: &[u8]) -> ddpersist::Result<(Lsn, Lsn)> {
        let (start, end) = self.inner.append(payload)?;
        self.counters.wal_bytes.fetch_add(end - start, Relaxed);
        self.counters.wal_records.fetch_add(1, Relaxed);
        Ok((start, end))
    }
    fn sync(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.inner.sync(lsn)
    }
    fn release_before(&self, lsn: Lsn) -> ddpersist::Result<()> {
        self.inner.release_before(lsn)
    }
    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }
    fn record_format(&self) -> ddpersist::wal::record::RecordFormat {
        self.inner.record_format()
    }

    fn takes_seal_records(&self) -> bool {
        self.inner.takes_seal_records()
    }

    fn next_lsn(&self) -> Option<Lsn> {
        self.inner.next_lsn()
    }

    fn bind_store(&self, store_id: u32) {
        self.inner.bind_store(store_id)
    }
}
