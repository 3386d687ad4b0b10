//! [`FaultyLog`]: a [`Log`] wrapper that fails every call from a chosen point on, to test what a
//! failing or dying WAL at each step leaves behind (the WAL's counterpart of
//! [`FaultyBlob`](crate::blob::FaultyBlob)).
//!
//! Each `replay`, `append`, `sync` and `release_before` spends one unit of a shared budget; once it is
//! spent, that call and every later one fail with an I/O error before reaching the wrapped log, as if
//! the device had died there. A failed `append` writes nothing; a failed `sync` makes nothing durable that
//! was not already. Reopening a store over the wrapped log's files then shows what survived.

use super::{Log, Lsn, ReplayReport};
use crate::blob::fault::FaultBudget;
use crate::error::Result;
use std::sync::Arc;

/// See the module docs.
#[derive(Clone)]
pub struct FaultyLog {
    inner: Arc<dyn Log>,
    budget: FaultBudget,
}

impl FaultyLog {
    /// Wraps `inner`, failing nothing until [`fail_after`](Self::fail_after) is called.
    pub fn new(inner: Arc<dyn Log>) -> Self {
        let budget = FaultBudget::unlimited();
        FaultyLog { inner, budget }
    }

    /// Lets `ops` more calls succeed, then fails every call.
    pub fn fail_after(&self, ops: u64) {
        self.budget.fail_after(ops)
    }

    /// Whether a call has failed since the last `fail_after`.
    pub fn has_failed(&self) -> bool {
        self.budget.has_failed()
    }
}

impl Log for FaultyLog {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        self.budget.spend("replay the WAL")?;
        self.inner.replay(f)
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        self.budget.spend("append to the WAL")?;
        self.inner.append(payload)
    }

    fn sync(&self, lsn: Lsn) -> Result<()> {
        self.budget.spend("sync the WAL")?;
        self.inner.sync(lsn)
    }

    fn release_before(&self, lsn: Lsn) -> Result<()> {
        self.budget.spend("release WAL segments")?;
        self.inner.release_before(lsn)
    }

    fn next_lsn(&self) -> Option<Lsn> {
        self.inner.next_lsn()
    }

    fn is_durable(&self) -> bool {
        self.inner.is_durable()
    }

    fn record_format(&self) -> super::record::RecordFormat {
        self.inner.record_format()
    }

    fn takes_seal_records(&self) -> bool {
        self.inner.takes_seal_records()
    }

    fn bind_store(&self, store_id: u32) {
        self.inner.bind_store(store_id)
    }
}
