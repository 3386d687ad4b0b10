//! Compaction's manifest edits, each one edit through `Store::apply_edit`: step 3 of a merge (the inputs
//! replaced by the output in the manifest, then in memory, the inputs retired once unreferenced) and
//! [`Store::allow_compaction`] (a stream's since, which merges then advance times to).

use crate::batch::{batch_file_name, BatchFile};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::version::{BatchMeta, Manifest};
use std::sync::Arc;

impl Store {
    /// Step 3 of the protocol: swap the inputs for the output in the manifest, then in memory.
    pub(super) fn commit_merge(
        &self,
        id: &str,
        inputs: &[Arc<BatchFile>],
        input_nos: Vec<u64>,
        output: Option<(Arc<BatchFile>, BatchMeta)>,
        file_no: u64,
    ) -> Result<()> {
        let seal = self.inner.seal_lock.lock();
        let n = input_nos.len();
        let edit = |next: &mut Manifest| {
            next.next_file_no = next.next_file_no.max(file_no + 1);
            let stream = next.streams.iter_mut().find(|s| s.id == id);
            let at = stream.and_then(|s| {
                let at = s.batches.iter().position(|b| b.file_no == input_nos[0])?;
                let found: Vec<u64> = s.batches.get(at..at + n)?.iter().map(|b| b.file_no).collect();
                (found == input_nos).then(|| {
                    s.batches.splice(at..at + n, output.as_ref().map(|o| o.1));
                    at
                })
            });
            // Only this merge removes these batches, and seals only append, so they are still adjacent.
            at.map(|_| ())
                .ok_or_else(|| Error::corrupt("MANIFEST", 0, format!("merge inputs of {id:?} vanished")))
        };
        let written: Vec<_> = output.iter().cloned().collect();
        self.apply_edit(&seal, &format!("a merge of {id:?}"), &written, edit, |_, _| ())?;
        for (input, no) in inputs.iter().zip(input_nos) {
            input.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
        }
        Ok(())
    }

    /// Allows merges to advance times below `since` to `since` (and so to consolidate updates whose diffs
    /// then sum to zero). Reads at times at or beyond `since` are unaffected. Durable when it returns.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `since` is below the stream's current since
    /// (it never goes backward) or is `u64::MAX`.
    pub fn allow_compaction(&self, id: &str, since: u64) -> Result<()> {
        if since == crate::FRONTIER_CLOSED {
            return Err(Error::bad_input(
                "since u64::MAX is reserved for the closed frontier",
            ));
        }
        let seal = self.inner.seal_lock.lock();
        let edit = |next: &mut Manifest| {
            let meta = next
                .streams
                .iter_mut()
                .find(|s| s.id == id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if since < meta.since {
                return Err(Error::bad_input(format!(
                    "since {since} of {id:?} is below its current since {}; since never goes backward",
                    meta.since
                )));
            }
            meta.since = since;
            Ok(())
        };
        if self.since(id)? == since {
            return Ok(());
        }
        self.apply_edit(
            &seal,
            &format!("allow_compaction of {id:?}"),
            &[],
            edit,
            |_, ()| (),
        )
    }

    /// The since of stream `id`: merges may have advanced times below it to it.
    pub fn since(&self, id: &str) -> Result<u64> {
        let state = self.live_state()?;
        state
            .manifest
            .stream(id)
            .map(|s| s.since)
            .ok_or_else(|| Error::UnknownStream { id: id.to_string() })
    }
}
