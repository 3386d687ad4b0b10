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

    /// Varint: the records live only as long as this process, whose readers know every format.
    fn record_format(&self) -> super::record::RecordFormat {
        super::record::RecordFormat::Varint
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

    fn next_lsn(&self) -> Option<Lsn> {
        Some(self.next_lsn.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::RecordFormat;

    /// A log wrapper written before the varint records (it does not answer `record_format`).
    struct Wrapper(MemLog);

    impl Log for Wrapper {
        fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
            self.0.replay(f)
        }
        fn append(&self, payload: &[u8]) -> Result<(Lsn, Lsn)> {
            self.0.append(payload)
        }
        fn sync(&self, lsn: Lsn) -> Result<()> {
            self.0.sync(lsn)
        }
        fn release_before(&self, lsn: Lsn) -> Result<()> {
            self.0.release_before(lsn)
        }
        fn is_durable(&self) -> bool {
            self.0.is_durable()
        }
    }

    /// A wrapper that does not pass `record_format` through gets the format every reader knows, so it
    /// never writes varint records into a segment an older release must read.
    #[test]
    fn a_wrapper_that_does_not_answer_gets_the_fixed_format() {
        assert_eq!(MemLog::new().record_format(), RecordFormat::Varint);
        assert_eq!(Wrapper(MemLog::new()).record_format(), RecordFormat::Fixed);
    }
}
