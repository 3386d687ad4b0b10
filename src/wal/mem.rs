//! [`MemLog`]: a non-durable [`Log`] for recomputable operator state.

use super::{Log, Lsn, ReplayReport};
use crate::error::Result;
use std::sync::atomic::{AtomicU64, Ordering};

/// Keeps no records at all: updates live only in the memtable until sealed, and a restart loses whatever
/// was not sealed. LSNs still advance, so the store's bookkeeping is the same as with a durable log.
#[derive(Debug, Default)]
pub struct MemLog {
    next_lsn: AtomicU64,
}

impl MemLog {
    /// A new, empty log.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Log for MemLog {
    fn replay(&self, _f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        Ok(ReplayReport::default())
    }

    fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
        let len = payload.len() as u64 + 1;
        let start = self.next_lsn.fetch_add(len, Ordering::Relaxed);
        Ok((start, start + len))
    }

    fn sync(&self, _lsn: Lsn) -> Result<()> {
        Ok(())
    }

    fn release_before(&self, _lsn: Lsn) -> Result<()> {
        Ok(())
    }

    fn is_durable(&self) -> bool {
        false
    }
}
