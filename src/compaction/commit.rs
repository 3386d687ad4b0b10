//! A merge's manifest edit, through `Store::apply_edit`: step 3 of the protocol (the inputs replaced by
//! the output in the manifest, then in memory, the inputs retired once unreferenced).

use crate::batch::{batch_file_name, BatchFile};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::version::{BatchMeta, Manifest};
use std::sync::Arc;

impl Store {
    /// Step 3 of the protocol: swap the inputs for the output in the manifest, then in memory, in stream
    /// `id` numbered `stream_no` (the one the merge read). Errors: [`Error::UnknownStream`] if that
    /// stream was dropped meanwhile (the output is retired); as `apply_edit`.
    pub(super) fn commit_merge(
        &self,
        (id, stream_no): (&str, u32),
        inputs: &[Arc<BatchFile>],
        input_nos: Vec<u64>,
        output: Option<(Arc<BatchFile>, BatchMeta)>,
        file_no: u64,
    ) -> Result<()> {
        let guard = self.inner.edit_lock.lock();
        let n = input_nos.len();
        let edit = |next: &mut Manifest| {
            next.next_file_no = next.next_file_no.max(file_no.saturating_add(1));
            // Dropped while the merge ran (`Store::drop_stream`; perhaps created again under the id, with
            // another number): nothing to commit.
            let found = next
                .streams_mut_where(|s| s.id == id && s.stream_no == stream_no)
                .next();
            let Some(stream) = found else {
                return Err(Error::UnknownStream { id: id.to_string() });
            };
            let at = Some(stream).and_then(|s| {
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
        let committed = self.apply_edit(&guard, &format!("a merge of {id:?}"), &written, edit, |_, _| ());
        if let Err(e @ Error::UnknownStream { .. }) = committed {
            // The output names nothing: removed now (else the next open removes it as an orphan).
            if let Some((batch, meta)) = output {
                batch.retire_on_drop(self.inner.blob.clone(), batch_file_name(meta.file_no));
            }
            return Err(e);
        }
        committed?;
        for (input, no) in inputs.iter().zip(input_nos) {
            input.retire_on_drop(self.inner.blob.clone(), batch_file_name(no));
        }
        Ok(())
    }
}
