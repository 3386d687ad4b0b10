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

/// The fail-from-the-k-th-call logic of [`FaultyBlob`] and [`FaultyLog`](crate::wal::FaultyLog): a
/// budget of successful calls shared by a wrapper's clones (and a blob's writers); once it is spent, every
/// call fails.
#[derive(Clone)]
pub(crate) struct FaultBudget(Arc<AtomicI64>);

impl FaultBudget {
    /// A budget that fails nothing until [`fail_after`](Self::fail_after).
    pub(crate) fn unlimited() -> Self {
        FaultBudget(Arc::new(AtomicI64::new(i64::MAX)))
    }

    /// Lets `ops` more calls succeed, then fails every call.
    pub(crate) fn fail_after(&self, ops: u64) {
        self.0.store(ops.min(i64::MAX as u64) as i64, Ordering::SeqCst);
    }

    /// Stops failing.
    pub(crate) fn heal(&self) {
        self.0.store(i64::MAX, Ordering::SeqCst);
    }

    /// Whether a call has failed since the last `fail_after`.
    pub(crate) fn has_failed(&self) -> bool {
        self.0.load(Ordering::SeqCst) < 0
    }

    /// Spends one call: an I/O error naming `what` once the budget is spent.
    pub(crate) fn spend(&self, what: &str) -> Result<()> {
        if self.0.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(Error::io(what, std::io::Error::other("injected fault")));
        }
        Ok(())
    }
}

/// See the module docs.
#[derive(Clone)]
pub struct FaultyBlob<B> {
    inner: B,
    budget: FaultBudget,
}

impl<B: Blob + Clone> FaultyBlob<B> {
    /// Wraps `inner`, failing nothing until [`fail_after`](Self::fail_after) is called.
    pub fn new(inner: B) -> Self {
        let budget = FaultBudget::unlimited();
        FaultyBlob { inner, budget }
    }

    /// Lets `ops` more calls succeed, then fails every call.
    pub fn fail_after(&self, ops: u64) {
        self.budget.fail_after(ops)
    }

    /// Stops failing.
    pub fn heal(&self) {
        self.budget.heal()
    }

    /// Whether a call has failed since the last `fail_after`.
    pub fn has_failed(&self) -> bool {
        self.budget.has_failed()
    }

    /// The wrapped blob.
    pub fn inner(&self) -> &B {
        &self.inner
    }
}

impl<B: Blob + Clone> Blob for FaultyBlob<B> {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        self.budget.spend(&format!("get {name}"))?;
        self.inner.get(name)
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        self.budget.spend(&format!("create {name}"))?;
        let inner = self.inner.create(name)?;
        Ok(Box::new(FaultyWriter {
            inner,
            budget: self.budget.clone(),
            name: name.to_string(),
        }))
    }

    fn create_new(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        self.budget.spend(&format!("create {name}"))?;
        let inner = self.inner.create_new(name)?;
        Ok(Box::new(FaultyWriter {
            inner,
            budget: self.budget.clone(),
            name: name.to_string(),
        }))
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.budget.spend(&format!("delete {name}"))?;
        self.inner.delete(name)
    }

    fn sync_deletes(&self) -> Result<()> {
        self.budget.spend("sync deletes")?;
        self.inner.sync_deletes()
    }

    fn list(&self) -> Result<Vec<String>> {
        self.budget.spend("list")?;
        self.inner.list()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
}

struct FaultyWriter {
    inner: Box<dyn BlobWriter>,
    budget: FaultBudget,
    name: String,
}

impl BlobWriter for FaultyWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.budget.spend(&format!("write {}", self.name))?;
        self.inner.write(bytes)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn commit(self: Box<Self>) -> Result<()> {
        self.budget.spend(&format!("commit {}", self.name))?;
        self.inner.commit()
    }
}
