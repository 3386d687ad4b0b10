//! The manifest: which streams exist, their frontiers, and which batch files hold their sealed updates.
//!
//! It is one blob object, `MANIFEST` (a snapshot), followed by the edit objects committed since
//! (`version::edit`); each is written atomically (the blob's commit protocol: write a temporary, fsync,
//! rename, fsync the directory), so a crash leaves the old or the new manifest, never a mix. Every batch
//! file it names existed and was durable before the commit naming it.
//!
//! Format version 4 (versions 1, without stream flag bit 1, 2, without the stream's types, and 3, the
//! same bytes, are read too): a header with the generation and the next file and stream numbers, then per stream its id,
//! upper, since, flags, batches and spilled runs with `spilled_lsn`, and the names of its key and val
//! encodings, then an xxh3 checksum of everything before it. The byte layout has one home,
//! FORMAT.md §3.
//! Invariants checked on decode: ids and stream numbers unique, stream numbers below `next_stream_no`;
//! per stream, batches ordered by `lower`, not overlapping, all below the stream's `upper` (gaps are
//! frontier advances with no updates); spills ordered by `lower` (they may overlap), all at or beyond the
//! `upper`;
//! file numbers unique and below `next_file_no`.

use crate::encoding::{checksum, open_checksummed, Decoder, FormatVersion, PutLe};
use crate::error::{Error, Result};
use std::collections::HashSet;
use std::sync::Arc;

/// The manifest's object name in the blob.
pub const MANIFEST_NAME: &str = "MANIFEST";
/// The manifest format version this library writes and the newest it reads.
/// Version 2 added the stream flag "finished" (bit 1); version 3 the stream's types; version 4 (the same
/// bytes) says that edit objects may follow the manifest (`version::edit`), which a release before it
/// would ignore.
pub const MANIFEST_VERSION: FormatVersion = FormatVersion(4);
const MAGIC: &[u8; 8] = b"DDPMANIF";
/// Longest stream id, in bytes.
pub const MAX_ID_BYTES: usize = 1024;
/// Longest [`StreamMeta::types`], in bytes.
pub const MAX_TYPES_BYTES: usize = 64 * 1024;

/// The whole manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The store's identity: a random nonzero number chosen when the store was created, which seeds the
    /// checksum of every WAL segment header the store writes (FORMAT.md §4, version 7), so that a
    /// segment of another store is refused at open; 0 for stores created before it was recorded (no
    /// check). In the header's formerly reserved `u32`.
    pub store_id: u32,
    /// Incremented by every commit.
    pub generation: u64,
    /// The next batch file number to hand out.
    pub next_file_no: u64,
    /// The next stream number to hand out.
    pub next_stream_no: u32,
    /// The streams, in creation order. Entries are shared between the manifests of successive commits:
    /// an edit clones the list (a reference count per stream) and replaces the entries it changes
    /// (`Manifest::stream_mut` copies one on write), so what a commit changed is found by
    /// pointer ([`ManifestEdit::between`](super::ManifestEdit::between)).
    pub streams: imbl::Vector<Arc<StreamMeta>>,
    /// Each stream's number by id, for lookups: a cache kept by [`push_stream`](Self::push_stream) and
    /// [`retain_streams`](Self::retain_streams), not part of the manifest's value.
    pub(crate) numbers: StreamNumbers,
}

/// A cache of stream numbers by id beside [`Manifest::streams`] (shared between successive manifests,
/// as the list is). Not part of the manifest's value: equal manifests may hold different caches. A lookup
/// binary-searches the list (in creation order, so by stream number) for the cached number and checks
/// the id it finds, and falls back to a linear search (a list changed other than through
/// [`Manifest::push_stream`] and [`Manifest::retain_streams`], or not in creation order), so a stale cache
/// costs time, never a wrong entry.
#[derive(Clone, Default)]
pub struct StreamNumbers(imbl::HashMap<String, u32>);

impl PartialEq for StreamNumbers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for StreamNumbers {}

impl std::fmt::Debug for StreamNumbers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamNumbers({} ids)", self.0.len())
    }
}

/// One stream's persisted state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMeta {
    /// Internal number, used in WAL records.
    pub stream_no: u32,
    /// The user's id.
    pub id: String,
    /// Every update at a time below this is in a batch file.
    pub upper: u64,
    /// Times below this may have been advanced to it (logical compaction).
    pub since: u64,
    /// Whether unsealed writes go through the WAL (survive a crash) or only to memory.
    pub durable: bool,
    /// Whether the stream's writer finished: its input was exhausted when it sealed at `upper`, so the run
    /// that wrote it had no update at or beyond `upper`. A restart may then move `upper` forward without
    /// losing anything (the restart protocol, `operators::resume`). Cleared by any later seal that does not
    /// set it.
    pub finished: bool,
    /// Sealed batches, ordered by `lower`.
    pub batches: Vec<BatchMeta>,
    /// Spilled runs of the memtable: unsealed updates (times at or beyond `upper`) written out when the
    /// memtable passed its budget, ordered by time range. Same file format as batches.
    pub spills: Vec<BatchMeta>,
    /// Every WAL record of this stream with an LSN below this is reflected in the batches and spilled
    /// runs: replay skips such records (their unsealed updates are in the runs).
    pub spilled_lsn: u64,
    /// The names of the encodings of the stream's keys and vals (see `Store::check_types`), recorded by
    /// the first typed operator that opened it; empty if none did (a byte-level stream, or one written
    /// before manifest version 3).
    pub types: String,
}

/// Stream flag: writes skip the WAL.
const FLAG_NOT_DURABLE: u32 = 1;
/// Stream flag (version 2): the writer finished at `upper` (see [`StreamMeta::finished`]).
const FLAG_FINISHED: u32 = 2;

impl BatchMeta {
    /// Appends the 56-byte entry.
    fn encode(&self, b: &mut Vec<u8>) {
        b.put_u64(self.file_no);
        b.put_u32(self.level);
        b.put_u32(self.fingerprint);
        b.put_u64(self.lower);
        b.put_u64(self.upper);
        b.put_u64(self.since);
        b.put_u64(self.update_count);
        b.put_u64(self.size_bytes);
    }

    /// Decodes `count` entries that must be ordered by `lower`, inside `[bounds.0, bounds.1]`, not
    /// overlapping unless `may_overlap`, with file numbers below `next_file_no` and not in `files` (which
    /// collects them).
    fn decode_list(
        d: &mut Decoder<'_>,
        count: usize,
        bounds: (u64, u64),
        may_overlap: bool,
        next_file_no: u64,
        files: &mut HashSet<u64>,
        what: &str,
    ) -> Result<Vec<BatchMeta>> {
        let mut out: Vec<BatchMeta> = Vec::with_capacity(count.min(d.remaining() / 56));
        for _ in 0..count {
            let at = d.offset();
            let file_no = d.u64("file number")?;
            let level = d.u32("level")?;
            let fingerprint = d.u32("fingerprint")?;
            let m = BatchMeta {
                file_no,
                level,
                lower: d.u64("lower")?,
                upper: d.u64("upper")?,
                since: d.u64("since")?,
                update_count: d.u64("update count")?,
                size_bytes: d.u64("size")?,
                fingerprint,
            };
            let prev_upper = out
                .last()
                .map_or(bounds.0, |p| if may_overlap { p.lower } else { p.upper });
            let ordered = m.lower >= prev_upper && m.lower <= m.upper && m.upper <= bounds.1;
            if !ordered || m.file_no >= next_file_no || !files.insert(m.file_no) {
                return Err(d.error_at(
                    at,
                    format!("{what} (file {}) out of order or repeated", m.file_no),
                ));
            }
            out.push(m);
        }
        Ok(out)
    }
}

/// One batch file as the manifest records it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// File number; the file is [`crate::batch::batch_file_name`]`(file_no)`.
    pub file_no: u64,
    /// Compaction level (0 for a freshly sealed batch).
    pub level: u32,
    /// Description lower.
    pub lower: u64,
    /// Description upper.
    pub upper: u64,
    /// Description since.
    pub since: u64,
    /// Updates in the file.
    pub update_count: u64,
    /// File size.
    pub size_bytes: u64,
    /// The file's [`fingerprint`](crate::batch::BatchFile::fingerprint), 0 if not recorded (a batch
    /// committed before it was, FORMAT.md §3): the open compares it, so another batch file's bytes in
    /// this file's place are corruption, not data.
    pub fingerprint: u32,
}

impl StreamMeta {
    /// Appends the stream's entry (FORMAT.md §3), as the manifest and a manifest edit hold it.
    pub(crate) fn encode(&self, b: &mut Vec<u8>) {
        b.put_u32(self.stream_no);
        b.put_u32(self.id.len() as u32);
        b.extend_from_slice(self.id.as_bytes());
        b.put_u64(self.upper);
        b.put_u64(self.since);
        b.put_u32(self.batches.len() as u32);
        let flags =
            if self.durable { 0 } else { FLAG_NOT_DURABLE } | if self.finished { FLAG_FINISHED } else { 0 };
        b.put_u32(flags);
        self.batches.iter().for_each(|m| m.encode(b));
        b.put_u32(self.spills.len() as u32);
        debug_assert!(self.types.len() <= MAX_TYPES_BYTES);
        b.put_u32(self.types.len() as u32);
        b.put_u64(self.spilled_lsn);
        self.spills.iter().for_each(|m| m.encode(b));
        b.extend_from_slice(self.types.as_bytes());
    }

    /// Decodes one stream entry of a manifest (or edit) of format `version`: its batches ordered below its
    /// upper, its spills at or beyond it, file numbers below `next_file_no` and not in `files` (which
    /// collects them).
    pub(crate) fn decode(
        d: &mut Decoder<'_>,
        version: u32,
        next_file_no: u64,
        files: &mut HashSet<u64>,
    ) -> Result<StreamMeta> {
        let known_flags = if version >= 2 {
            FLAG_NOT_DURABLE | FLAG_FINISHED
        } else {
            FLAG_NOT_DURABLE
        };
        let at = d.offset();
        let stream_no = d.u32("stream number")?;
        let id_len = d.u32("id length")? as usize;
        let id = std::str::from_utf8(d.bytes(id_len, "id")?)
            .map_err(|_| d.error_at(at + 8, "stream id is not UTF-8"))?
            .to_string();
        let upper = d.u64("upper")?;
        let since = d.u64("since")?;
        let batch_count = d.u32("batch count")? as usize;
        let flags = d.u32("flags")?;
        if flags & !known_flags != 0 {
            return Err(d.error_at(d.offset() - 4, format!("unknown stream flags {flags:#x}")));
        }
        let what = format!("batch of stream {id:?}");
        let batches = BatchMeta::decode_list(d, batch_count, (0, upper), false, next_file_no, files, &what)?;
        let spill_count = d.u32("spill count")? as usize;
        // Reserved (zero) before version 3.
        let types_at = d.offset();
        let types_len = d.u32("types length")? as usize;
        let spilled_lsn = d.u64("spilled LSN")?;
        let what = format!("spilled run of stream {id:?}");
        let spills = BatchMeta::decode_list(
            d,
            spill_count,
            (upper, crate::FRONTIER_CLOSED),
            true,
            next_file_no,
            files,
            &what,
        )?;
        let types = if version >= 3 {
            if types_len > MAX_TYPES_BYTES {
                return Err(d.error_at(
                    types_at,
                    format!("types of stream {id:?}: {types_len} bytes is over the limit"),
                ));
            }
            let at = d.offset();
            std::str::from_utf8(d.bytes(types_len, "types")?)
                .map_err(|_| d.error_at(at, format!("types of stream {id:?} are not UTF-8")))?
                .to_string()
        } else {
            String::new()
        };
        Ok(StreamMeta {
            stream_no,
            id,
            upper,
            since,
            durable: flags & FLAG_NOT_DURABLE == 0,
            finished: flags & FLAG_FINISHED != 0,
            batches,
            spills,
            spilled_lsn,
            types,
        })
    }
}

impl Manifest {
    /// A manifest without streams.
    pub fn new(store_id: u32, generation: u64, next_file_no: u64, next_stream_no: u32) -> Manifest {
        Manifest {
            store_id,
            generation,
            next_file_no,
            next_stream_no,
            ..Manifest::default()
        }
    }

    /// The stream with id `id`.
    pub fn stream(&self, id: &str) -> Option<&StreamMeta> {
        self.position(id).map(|at| &*self.streams[at])
    }

    /// The stream with id `id`, to edit (copied on write); [`Error::UnknownStream`] if there is none.
    pub(crate) fn stream_mut(&mut self, id: &str) -> Result<&mut StreamMeta> {
        match self.position(id) {
            Some(at) => Ok(Arc::make_mut(&mut self.streams[at])),
            None => Err(Error::UnknownStream { id: id.to_string() }),
        }
    }

    /// Where the stream with id `id` is in [`streams`](Self::streams): O(log streams) through the cache
    /// of numbers, O(streams) for an id it does not hold ([`StreamNumbers`]).
    pub(crate) fn position(&self, id: &str) -> Option<usize> {
        let cached = self.numbers.0.get(id).and_then(|no| {
            let at = self.streams.binary_search_by_key(no, |s| s.stream_no).ok()?;
            (self.streams[at].id == id).then_some(at)
        });
        cached.or_else(|| self.streams.iter().position(|s| s.id == id))
    }

    /// Appends a stream (a new one: its number at or above every other's keeps the list in creation
    /// order).
    pub fn push_stream(&mut self, stream: Arc<StreamMeta>) {
        self.numbers.0.insert(stream.id.clone(), stream.stream_no);
        self.streams.push_back(stream);
    }

    /// Keeps only the streams for which `keep` holds.
    pub fn retain_streams(&mut self, mut keep: impl FnMut(&StreamMeta) -> bool) {
        let numbers = &mut self.numbers.0;
        self.streams.retain(|s| {
            let kept = keep(s);
            if !kept {
                numbers.remove(&s.id);
            }
            kept
        });
    }

    /// Every stream for which `select` holds, to edit (each copied on write).
    pub(crate) fn streams_mut_where(
        &mut self,
        mut select: impl FnMut(&StreamMeta) -> bool,
    ) -> impl Iterator<Item = &mut StreamMeta> {
        self.streams
            .iter_mut()
            .filter(move |s| select(s))
            .map(Arc::make_mut)
    }

    /// The numbers of every file the manifest names: each stream's batches and spilled runs.
    pub fn file_nos(&self) -> impl Iterator<Item = u64> + '_ {
        self.streams
            .iter()
            .flat_map(|s| s.batches.iter().chain(&s.spills).map(|b| b.file_no))
    }

    /// The manifest as bytes, version 4: the snapshot the manifest's edits follow (`version::edit`).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.put_u32(MANIFEST_VERSION.0);
        b.put_u32(self.store_id);
        b.put_u64(self.generation);
        b.put_u64(self.next_file_no);
        b.put_u32(self.next_stream_no);
        b.put_u32(self.streams.len() as u32);
        for s in &self.streams {
            s.encode(&mut b);
        }
        let sum = checksum(&b);
        b.put_u64(sum);
        b
    }

    /// Decodes and checks a manifest read from `file`.
    pub fn decode(bytes: &[u8], file: &str) -> Result<Self> {
        // Magic, version and the trailing checksum keep their places in every version.
        let (version, mut d) = open_checksummed(bytes, MAGIC, "manifest", 48, MANIFEST_VERSION, file)?;
        // Reserved (written 0) before the store id was recorded: 0 reads as none.
        let store_id = d.u32("store id")?;
        let generation = d.u64("generation")?;
        let next_file_no = d.u64("next file number")?;
        let next_stream_no = d.u32("next stream number")?;
        let stream_count = d.u32("stream count")? as usize;
        let mut manifest = Manifest::new(store_id, generation, next_file_no, next_stream_no);
        let (mut ids, mut nos, mut files) = (HashSet::new(), HashSet::new(), HashSet::new());
        for _ in 0..stream_count {
            let at = d.offset();
            let stream = StreamMeta::decode(&mut d, version, next_file_no, &mut files)?;
            if stream.stream_no >= next_stream_no
                || !nos.insert(stream.stream_no)
                || !ids.insert(stream.id.clone())
            {
                return Err(Error::corrupt(
                    file,
                    at,
                    format!("stream {:?} number or id repeated or out of range", stream.id),
                ));
            }
            manifest.push_stream(Arc::new(stream));
        }
        d.finish("manifest")?;
        Ok(manifest)
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
