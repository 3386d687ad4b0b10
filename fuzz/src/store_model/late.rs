//! Late faults: a blob commit or a WAL sync that takes effect and then reports failure, as when `rename`
//! succeeded but the directory's `fsync` failed, or the data reached the disk but `fdatasync` returned an
//! error. `FaultyBlob` and `FaultyLog` fail before the call reaches the wrapped one, so with them a
//! failed call never took effect; these wrappers give the other outcome, so that the model's "applied or
//! not" is exercised both ways.
//!
//! One budget, shared by both wrappers, counts blob commits and WAL syncs; once it is spent, each such call
//! is passed on and then fails with an I/O error.

use ddpersist::blob::{Blob, BlobBytes, BlobWriter};
use ddpersist::wal::{Log, Lsn, ReplayReport};
use ddpersist::{Error, Result};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Whether the budget is spent (spending one unit).
fn spent(budget: &AtomicI64) -> bool {
    budget.fetch_sub(1, Ordering::SeqCst) <= 0
}

fn late_error(what: &str) -> Error {
    Error::Io {
        context: format!("{what} (took effect)"),
        source: std::io::Error::other("injected late fault"),
    }
}

/// A [`Blob`] whose commits, once `budget` is spent, commit and then fail.
#[derive(Clone)]
pub struct LateBlob<B> {
    pub inner: B,
    pub budget: Arc<AtomicI64>,
}

impl<B: Blob + Clone> Blob for LateBlob<B> {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        self.inner.get(name)
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        Ok(Box::new(LateWriter {
            inner: self.inner.create(name)?,
            budget: self.budget.clone(),
            name: name.to_string(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.inner.delete(name)
    }

    fn list(&self) -> Result<Vec<String>> {
        self.inner.list()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

struct LateWriter {
    inner: Box<dyn BlobWriter>,
    budget: Arc<AtomicI64>,
    name: String,
}

impl BlobWriter for LateWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.inner.write(bytes)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn commit(self: Box<Self>) -> Result<()> {
        let LateWriter { inner, budget, name } = *self;
        inner.commit()?;
        match spent(&budget) {
            true => Err(late_error(&format!("commit {name}"))),
            false => Ok(()),
        }
    }
}

/// A [`Log`] whose syncs, once `budget` is spent, sync and then fail.
pub struct LateLog {
    pub inner: Arc<dyn Log>,
    pub budget: Arc<AtomicI64>,
}

impl Log for LateLog {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        self.inner.replay(f)
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        self.inner.append(payload)
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        self.inner.sync(lsn)?;
        match spent(&self.budget) {
            true => Err(late_error("sync the WAL")),
            false => Ok(()),
        }
    }

    fn release_before(&self, lsn: Lsn) -> Result<()> {
        self.inner.release_before(lsn)
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    fn record_format(&self) -> ddpersist::wal::record::RecordFormat {
        self.inner.record_format()
    }

    fn next_lsn(&self) -> Option<Lsn> {
        self.inner.next_lsn()
    }

    fn bind_store(&self, store_id: u32) {
        self.inner.bind_store(store_id)
    }

    fn takes_seal_records(&self) -> bool {
        self.inner.takes_seal_records()
    }
}
