//! Sealing: the memtable's updates below a new upper become one batch file, and the manifest commits it.

use super::*;

impl Store {
    /// Seals stream `id` up to `upper`: every update with time below `upper` becomes one immutable batch
    /// file with description `[previous upper, upper)`, and the stream's upper advances in the manifest.
    /// Durable when it returns. With no updates in the interval no file is written, only the upper moves.
    ///
    /// Errors: [`Error::UnknownStream`]; [`Error::BadInput`] if `upper` does not advance the stream's upper.
    /// If writing the batch file fails, nothing changes. If committing the manifest fails, the store is
    /// poisoned (the manifest may or may not have reached the disk); reopen it to recover.
    pub fn seal(&self, id: &str, upper: u64) -> Result<SealInfo> {
        self.wait_for_merges(id)?;
        let seal_guard = self.inner.seal_lock.lock();
        let (drained, lower, file_no, manifest) = {
            let mut state = self.live_state()?;
            let file_no = state.alloc_file_no();
            let manifest = state.manifest.clone();
            let stream = state
                .streams
                .get_mut(id)
                .ok_or_else(|| Error::UnknownStream { id: id.to_string() })?;
            if upper <= stream.upper {
                return Err(Error::bad_input(format!(
                    "seal of {id:?} at {upper} does not advance its upper {}",
                    stream.upper
                )));
            }
            let drained = Arc::new(stream.memtable.drain_below(upper));
            stream.sealing_min_lsn = min_lsn(&drained);
            stream.sealing = Some(drained.clone());
            stream.pending_upper = upper;
            (drained, stream.upper, file_no, manifest)
        };
        // A fresh batch's times are as written: its since is the minimum time, as in DD's batchers.
        // Merges advance times to the stream's since.
        let description = Description {
            lower,
            upper,
            since: 0,
        };
        let written = self.write_batch(&drained, description, file_no);
        let (batch, meta) = match written {
            Ok(x) => x,
            Err(e) => {
                self.abort_seal(id, lower);
                return Err(e);
            }
        };
        let mut next = manifest;
        next.generation += 1;
        next.next_file_no = next.next_file_no.max(file_no + 1);
        if let Some(s) = next.streams.iter_mut().find(|s| s.id == id) {
            s.upper = upper;
            s.batches.extend(meta);
        }
        if let Err(e) = self.commit_manifest(&next) {
            self.poison(format!("manifest commit failed during seal of {id:?}: {e}"));
            return Err(e);
        }
        let release = {
            let mut state = self.inner.state.lock();
            state.manifest = next;
            if let Some(stream) = state.streams.get_mut(id) {
                stream.upper = upper;
                stream.sealing = None;
                stream.sealing_min_lsn = None;
                stream.batches.extend(batch.clone());
            }
            release_point(&state)
        };
        // The sealed records are durable in the batch file now; old WAL segments may go. A failure here
        // is harmless (the segments stay, their records are skipped on replay as sealed, and the next seal
        // tries again), and the seal itself has committed, so it is not reported as the seal's failure.
        let _ = self.inner.buffer.release_before(release);
        self.inner.batches_changed.notify_all();
        // Merges commit under `seal_lock` too, so release it before one may run inline.
        drop(seal_guard);
        self.schedule_compaction(id);
        Ok(SealInfo {
            description,
            update_count: batch.as_ref().map_or(0, |b| b.update_count()),
            file: batch.as_ref().map(|b| b.name().to_string()),
            batch,
        })
    }

    /// Sorts, consolidates and writes `drained` as batch file `file_no`; `None` if nothing remains.
    fn write_batch(
        &self,
        drained: &Drained,
        description: Description,
        file_no: u64,
    ) -> Result<(Option<Arc<BatchFile>>, Option<BatchMeta>)> {
        let run = Run::from_updates(iter_buckets(drained));
        if run.is_empty() {
            return Ok((None, None));
        }
        let name = batch_file_name(file_no);
        let blob = &self.inner.blob;
        let options = &self.inner.options;
        let mut writer = BatchWriter::new(blob.create(&name)?, description, options.block_target_bytes)?;
        if options.filter_bits_per_key > 0 {
            writer = writer.with_filter(run.key_count() as u64, options.filter_bits_per_key);
        }
        writer = writer.with_compression(options.compress(run.len() as u64));
        for (k, v, t, d) in run.iter() {
            writer.push(k, v, t, d)?;
        }
        let stats = writer.finish()?;
        let meta = BatchMeta {
            file_no,
            level: 0,
            lower: description.lower,
            upper: description.upper,
            since: description.since,
            update_count: stats.update_count,
            size_bytes: stats.size_bytes,
        };
        match open_batch(&**blob, &meta) {
            Ok(batch) => Ok((Some(Arc::new(batch)), Some(meta))),
            Err(e) => {
                // Not named by any manifest: safe to remove (and removed on the next open if this fails).
                let _ = blob.delete(&name);
                Err(e)
            }
        }
    }

    /// Puts a failed seal's updates back into the memtable and its upper back to `lower`.
    fn abort_seal(&self, id: &str, lower: u64) {
        let mut state = self.inner.state.lock();
        if let Some(stream) = state.streams.get_mut(id) {
            if let Some(drained) = stream.sealing.take() {
                // A snapshot may briefly share the buckets; then restore a copy.
                let drained = Arc::try_unwrap(drained).unwrap_or_else(|shared| (*shared).clone());
                stream.memtable.restore(drained);
            }
            stream.sealing_min_lsn = None;
            stream.pending_upper = lower;
        }
    }
}
