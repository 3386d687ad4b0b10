//! [`FaultyBlob`]: a [`Blob`] wrapper that fails every call from a chosen point on, to test what a crash or
//! a dying disk at each step of a protocol leaves behind.
//!
//! Each call (`get`, `create`, `delete`, `list`, and a writer's `write` and `commit`) spends one unit of a
//! shared budget; once the budget is spent, that call and every later one fail with an I/O error, as if the
//! process had crashed there (a failed commit commits nothing). Reopening a store over the wrapped blob
//! then shows what the crash left.

use super::{Blob, BlobBytes, BlobWriter};
use crate::error::{Error, Result};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// See the module docs.
#[derive(Clone)]
pub struct FaultyBlob<B> {
    inner: B,
    budget: Arc<AtomicI64>,
}

impl<B: Blob + Clone> FaultyBlob<B> {
    /// Wraps `inner`, failing nothing until [`fail_after`](Self::fail_after) is called.
    pub fn new(inner: B) -> Self {
        FaultyBlob {
            inner,
            budget: Arc::new(AtomicI64::new(i64::MAX)),
        }
    }

    /// Lets `ops` more calls succeed, then fails every call.
    pub fn fail_after(&self, ops: u64) {
        self.budget
            .store(ops.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// Stops failing.
    pub fn heal(&self) {
        self.budget.store(i64::MAX, Ordering::SeqCst);
    }

    /// Whether a call has failed since the last `fail_after`.
    pub fn has_failed(&self) -> bool {
        self.budget.load(Ordering::SeqCst) < 0
    }

    /// The wrapped blob.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

/// Fails a call once the shared `budget` of successful calls is spent (for [`FaultyBlob`] and
/// [`FaultyLog`](crate::wal::FaultyLog)): an I/O error naming `what`.
pub(crate) fn spend(budget: &AtomicI64, what: &str) -> Result<()> {
    if budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
        return Err(Error::io(what, std::io::Error::other("injected fault")));
    }
    Ok(())
}

impl<B: Blob + Clone> Blob for FaultyBlob<B> {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        spend(&self.budget, &format!("get {name}"))?;
        self.inner.get(name)
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        spend(&self.budget, &format!("create {name}"))?;
        let inner = self.inner.create(name)?;
        Ok(Box::new(FaultyWriter {
            inner,
            budget: self.budget.clone(),
            name: name.to_string(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        spend(&self.budget, &format!("delete {name}"))?;
        self.inner.delete(name)
    }

    fn list(&self) -> Result<Vec<String>> {
        spend(&self.budget, "list")?;
        self.inner.list()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

struct FaultyWriter {
    inner: Box<dyn BlobWriter>,
    budget: Arc<AtomicI64>,
    name: String,
}

impl BlobWriter for FaultyWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        spend(&self.budget, &format!("write {}", self.name))?;
        self.inner.write(bytes)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn commit(self: Box<Self>) -> Result<()> {
        spend(&self.budget, &format!("commit {}", self.name))?;
        self.inner.commit()
    }
}
