//! The checks behind ddpersist's fuzz targets, one `check_*` function per decoder.
//!
//! Each target in `fuzz_targets/` is `fuzz_target!(|data: &[u8]| ddpersist_fuzz::check_xxx(data))`, so the
//! logic here compiles and runs on stable Rust too: `tests/smoke.rs` drives every check over deterministic
//! pseudo-random and mutated valid inputs.
//!
//! A check never panics on bad input: decoders must return an error. It does panic (a finding) when a
//! decoder panics, returns the wrong kind of error, or accepts bytes that then break a property the format
//! promises (round trips, sort order, seeks, replay idempotence, "a failed replay changes nothing").
//!
//! Every on-disk format is checksummed, so random mutations almost always stop at the first checksum.
//! To reach the structural checks behind them, the file-format checks run twice: on the input as is, and
//! on a copy whose checksums were recomputed ("repaired") wherever the damaged structure still lets us
//! find them.

pub mod store_model;
pub use store_model::check_store_model;

use ddpersist::batch::format::{
    partition_checksum, FOOTER_BYTES, HEADER_BYTES, INDEX_ENTRY_BYTES, PARTITION_ENTRY_BYTES,
};
use ddpersist::batch::{BatchFile, UpdateCursor};
use ddpersist::blob::BlobBytes;
use ddpersist::codec::Codec;
use ddpersist::encoding::{checksum, checksum_seeded};
use ddpersist::version::{Manifest, ManifestEdit};
use ddpersist::wal::record::{
    decode, decode_record, encode_seal, Record, RecordEncoder, RecordFormat, RECORD_PREFIX_BYTES, TAG_SEAL,
};
use ddpersist::wal::{FileLog, Log, Lsn, ReplayReport, WalRecovery};
use ddpersist::{Error, OwnedUpdate};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::fs;
use std::path::Path;
use std::sync::Arc;

fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Errors a decoder of persisted bytes may return.
fn assert_format_error(e: &Error, what: &str) {
    assert!(
        matches!(e, Error::Corrupt { .. } | Error::VersionTooNew { .. }),
        "{what}: unexpected kind of error: {e:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Batch files
// ---------------------------------------------------------------------------------------------------------

/// Where the index entries of a (possibly damaged) batch file are, if the footer lets us find them:
/// `(footer offset, index range, entry offsets)`.
fn batch_index(b: &[u8]) -> Option<(usize, std::ops::Range<usize>, Vec<usize>)> {
    let len = b.len();
    if len < HEADER_BYTES + FOOTER_BYTES {
        return None;
    }
    let footer_at = len - FOOTER_BYTES;
    let block_count = le_u32(b, footer_at + 12)? as usize;
    let (index_offset, index_len) = (le_u64(b, footer_at + 64)?, le_u64(b, footer_at + 72)?);
    let index_end = index_offset
        .checked_add(index_len)
        .filter(|&e| e <= footer_at as u64)?;
    let (start, end) = (index_offset as usize, index_end as usize);
    let entries = block_count.min((end - start) / INDEX_ENTRY_BYTES);
    Some((
        footer_at,
        start..end,
        (0..entries).map(|i| start + i * INDEX_ENTRY_BYTES).collect(),
    ))
}

/// Recomputes every checksum of a batch file that the (possibly damaged) layout still lets us locate:
/// block checksums in the index entries, the index checksum in the footer, the key filter's, header and
/// footer checksums.
pub fn repair_batch(b: &mut [u8]) {
    let len = b.len();
    if len >= HEADER_BYTES {
        let sum = checksum(&b[..24]);
        put_u64(b, 24, sum);
    }
    if len < HEADER_BYTES + FOOTER_BYTES {
        return;
    }
    let footer_at = len - FOOTER_BYTES;
    if let Some((_, index, entries)) = batch_index(b) {
        for at in entries {
            let (Some(offset), Some(stored)) = (le_u64(b, at), le_u32(b, at + 16)) else {
                continue;
            };
            let block_end = offset.checked_add(stored as u64);
            if let Some(block_end) = block_end.filter(|&e| e <= len as u64) {
                let sum = checksum(&b[offset as usize..block_end as usize]);
                put_u64(b, at + 8, sum);
            }
        }
        let table = repair_partitions(b, footer_at, index.clone(), entries_len(b, footer_at));
        let sum = checksum(&b[table.unwrap_or(index)]);
        put_u64(b, footer_at + 80, sum);
    }
    // The key filter section (kind 1) ends with the checksum of the rest of it.
    if let (Some(1), Some(offset), Some(filter_len)) = (
        le_u32(b, footer_at + 104),
        le_u64(b, footer_at + 88),
        le_u64(b, footer_at + 96),
    ) {
        let end = offset
            .checked_add(filter_len)
            .filter(|&e| e <= footer_at as u64 && filter_len >= 8);
        if let Some(end) = end {
            let sum = checksum(&b[offset as usize..end as usize - 8]);
            put_u64(b, end as usize - 8, sum);
        }
    }
    let sum = checksum(&b[footer_at..footer_at + 120]);
    put_u64(b, footer_at + 120, sum);
}

/// The length of the index entries the footer claims (block count × 48 bytes).
fn entries_len(b: &[u8], footer_at: usize) -> usize {
    le_u32(b, footer_at + 12).map_or(0, |n| n as usize * INDEX_ENTRY_BYTES)
}

/// In a version 3 file whose partition table the footer lets us locate inside `index`: recomputes each
/// partition's checksum (its entries and key bytes, where they lie inside the index); returns the table's
/// range (what the footer's index checksum covers), or `None` for older versions.
fn repair_partitions(
    b: &mut [u8],
    footer_at: usize,
    index: std::ops::Range<usize>,
    entries_len: usize,
) -> Option<std::ops::Range<usize>> {
    if le_u32(b, footer_at + 8)? < 3 {
        return None;
    }
    let (per, table_len) = (
        le_u32(b, footer_at + 112)? as usize,
        le_u32(b, footer_at + 116)? as usize,
    );
    let table_at = index.end.checked_sub(table_len).filter(|&t| t >= index.start)?;
    let key_area = index.start + entries_len;
    let blocks = entries_len / INDEX_ENTRY_BYTES;
    if per == 0 || key_area > table_at {
        return Some(table_at..index.end);
    }
    for p in 0..blocks.div_ceil(per) {
        let at = table_at + p * PARTITION_ENTRY_BYTES;
        if at + PARTITION_ENTRY_BYTES > index.end {
            break;
        }
        let (Some(key_off), Some(key_len)) = (le_u32(b, at + 8), le_u32(b, at + 12)) else {
            break;
        };
        let keys = key_area + key_off as usize..key_area + key_off as usize + key_len as usize;
        let entries = index.start + p * per * INDEX_ENTRY_BYTES
            ..index.start + ((p + 1) * per).min(blocks) * INDEX_ENTRY_BYTES;
        if keys.end <= table_at {
            let sum = partition_checksum(&b[entries], &b[keys]);
            put_u64(b, at, sum);
        }
    }
    Some(table_at..index.end)
}

/// Whether to skip inputs that hit bugs already reported (`DDP_FUZZ_SKIP_KNOWN` set), so a fuzzing run
/// gets past them. Each is a test in `tests/regressions.rs`.
fn skip_known_bugs() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("DDP_FUZZ_SKIP_KNOWN").is_some())
}

/// Known bug `lz4_raw_len_does_not_size_a_huge_allocation`: an lz4 block whose index claims a raw length
/// lz4 cannot reach from its stored length (about 255× at most).
fn has_implausible_lz4_block(b: &[u8]) -> bool {
    batch_index(b).is_some_and(|(_, _, entries)| {
        entries.iter().any(|&at| {
            let (stored, raw, codec) = (le_u32(b, at + 16), le_u32(b, at + 20), b.get(at + 44));
            codec == Some(&1) && raw.unwrap_or(0) as u64 > stored.unwrap_or(0) as u64 * 256 + 64
        })
    })
}

/// `BatchFile::open` on arbitrary bytes, then `verify`, then a walk of every update; never panics. When the
/// batch verifies, its updates are sorted, consolidated and counted right, and seeks land where they should.
pub fn check_batch_file(data: &[u8]) {
    check_batch_bytes(data);
    let mut fixed = data.to_vec();
    repair_batch(&mut fixed);
    if fixed != data {
        check_batch_bytes(&fixed);
    }
}

fn walk(cursor: &mut UpdateCursor<'_>) -> ddpersist::Result<Vec<OwnedUpdate>> {
    let mut out = Vec::new();
    while let Some((k, v, t, d)) = cursor.get() {
        out.push((k.to_vec(), v.to_vec(), t, d));
        cursor.step()?;
    }
    Ok(out)
}

fn check_batch_bytes(data: &[u8]) {
    if skip_known_bugs() && has_implausible_lz4_block(data) {
        return;
    }
    let bytes = BlobBytes::Heap(Arc::from(data));
    let batch = match BatchFile::open("fuzz.batch", bytes) {
        Ok(b) => b,
        Err(e) => return assert_format_error(&e, "BatchFile::open"),
    };
    assert_eq!(batch.size_bytes(), data.len() as u64);
    // The index, a partition at a time: a partition that fails its check is a format error.
    for i in 0..batch.block_count() {
        let read = [
            batch.index_entry(i).map(drop),
            batch.block_first_key(i).map(drop),
            batch.block_last_key(i).map(drop),
        ];
        for e in read.into_iter().filter_map(|r| r.err()) {
            assert_format_error(&e, "index_entry");
        }
    }
    // Point reads before anything is verified: the filter, the fences, one block each.
    for probe in [&b""[..], b"a", b"\0", b"\xff\xff"] {
        if let Err(e) = batch.may_contain(probe) {
            assert_format_error(&e, "may_contain");
        }
        if let Err(e) = batch.for_key(probe, |_, _, _| {}) {
            assert_format_error(&e, "for_key");
        }
    }
    // The DD trace cursor over a file of its own (it checks blocks itself): no panic, fail-stop.
    let fixed_probes: Vec<Vec<u8>> = [&b""[..], b"a", b"\0", b"\xff\xff"].map(|p| p.to_vec()).into();
    check_trace_cursor(data, &fixed_probes, None);
    // Walk before verifying (blocks are checked lazily as the cursor enters them) ...
    let lazy = UpdateCursor::new(&batch).and_then(|mut c| walk(&mut c));
    if let Err(e) = &lazy {
        assert_format_error(e, "lazy walk");
    }
    // ... then verify everything, and walk again over verified blocks.
    let verified = batch.verify_deep();
    let walked = UpdateCursor::new(&batch).and_then(|mut c| walk(&mut c));
    let Ok(()) = verified else {
        assert_format_error(&verified.unwrap_err(), "verify");
        return;
    };
    let updates = walked.expect("a batch that verified must walk without error");
    if let Ok(lazy) = &lazy {
        assert_eq!(lazy, &updates, "lazy and verified walks differ");
    }
    assert_eq!(updates.len() as u64, batch.update_count(), "update count");
    assert!(updates.iter().all(|u| u.3 != 0), "zero diff in a verified batch");
    for w in updates.windows(2) {
        assert!(
            (&w[0].0, &w[0].1, w[0].2) < (&w[1].0, &w[1].1, w[1].2),
            "verified batch not strictly sorted: {:?} then {:?}",
            w[0],
            w[1]
        );
    }
    let keys: Vec<&[u8]> = {
        let mut k: Vec<&[u8]> = updates.iter().map(|u| &u.0[..]).collect();
        k.dedup();
        k
    };
    assert_eq!(keys.len() as u64, batch.footer().key_count, "key count");
    assert!(batch.is_verified());
    assert!((0..batch.block_count()).all(|i| batch.verified_block(i).is_some()));
    // Point reads: `for_key` yields exactly the key's updates, unless the key filter rules the key out.
    // The fences cannot (keys are sorted between them); the filter can only when it disagrees with the
    // blocks, which `verify` does not check: a file built with valid checksums over altered keys (the
    // repaired inputs) may do that. A file the writer wrote never does (`valid_inputs_decode_and_filter_has_no_false_negatives`).
    for k in keys.iter().take(64) {
        if !batch
            .may_contain(k)
            .expect("the filter of a verified batch passed its checksum")
        {
            assert_ne!(
                batch.footer().filter_kind,
                0,
                "the fences rule out {k:?}, which the batch holds"
            );
            continue;
        }
        let mut got = Vec::new();
        batch
            .for_key(k, |v, t, d| got.push((k.to_vec(), v.to_vec(), t, d)))
            .expect("for_key in a verified batch");
        let want: Vec<OwnedUpdate> = updates.iter().filter(|u| u.0 == *k).cloned().collect();
        assert_eq!(got, want, "for_key({k:?})");
    }
    // Seeks, to every key and to keys between them, land on the first update at or above the key.
    let mut probes: Vec<Vec<u8>> = vec![Vec::new(), vec![0xFF; 4]];
    for k in keys.iter().take(64) {
        probes.push(k.to_vec());
        probes.push([*k, &[0][..]].concat());
        if let Some((_, init)) = k.split_last() {
            probes.push(init.to_vec());
        }
    }
    for probe in &probes {
        if keys.binary_search(&&probe[..]).is_err() {
            let mut n = 0;
            batch
                .for_key(probe, |_, _, _| n += 1)
                .expect("for_key in a verified batch");
            assert_eq!(
                n, 0,
                "for_key({probe:?}) found updates of a key the batch does not hold"
            );
        }
        let at = updates.partition_point(|u| u.0 < *probe);
        let mut c = UpdateCursor::seek(&batch, probe).expect("seek in a verified batch");
        let rest = walk(&mut c).expect("walk after seek in a verified batch");
        assert_eq!(rest, updates[at..], "seek to {probe:?}");
    }
    check_trace_cursor(data, &probes, Some(&keys));
}

/// DD's trace cursor ([`PersistedCursor`](ddpersist::trace::PersistedCursor)) over `data` opened anew, so
/// that its blocks and index partitions are checked by the cursor's own first touches: `seek_key` to each
/// probe with a fresh cursor, and with one cursor over the probes in order (a seek within its block, and
/// the fences' seek into another), then a walk of every key. Over any bytes: no panic, the walk ends, and a
/// failed check stops the batch (the error recorded in its slot, nothing after it served). Over a batch that
/// verified (`keys`: its keys in order): every seek lands on the first key at or above the probe, and the
/// walk yields exactly `keys`.
fn check_trace_cursor(data: &[u8], probes: &[Vec<u8>], keys: Option<&[&[u8]]>) {
    use differential_dataflow::trace::{Cursor, Navigable};
    let Ok(file) = BatchFile::open("fuzz.batch", BlobBytes::Heap(Arc::from(data))) else {
        return;
    };
    let Ok(batch) = ddpersist::trace::PersistedBatch::<u64>::from_file(Arc::new(file)) else {
        return;
    };
    let mut sorted = probes.to_vec();
    sorted.sort();
    sorted.dedup();
    let want = |p: &[u8]| keys.and_then(|keys| keys.iter().find(|k| **k >= p).copied());
    let mut one = batch.cursor();
    for p in &sorted {
        let mut fresh = batch.cursor();
        fresh.seek_key(&batch, p);
        one.seek_key(&batch, p);
        if keys.is_some() {
            assert_eq!(fresh.get_key(&batch), want(p), "fresh trace cursor seek to {p:?}");
            assert_eq!(one.get_key(&batch), want(p), "trace cursor seek to {p:?}");
        }
    }
    let mut walked = Vec::new();
    let mut c = batch.cursor();
    // Every key takes at least a byte of its block (its offset or its fixed width), and a block's bytes
    // lie in the file: a walk of a hostile file whose blocks overlap still ends within this bound.
    let blocks = batch.file().map_or(0, |f| f.block_count());
    let bound = data.len().saturating_mul(blocks + 1);
    while let Some(k) = c.get_key(&batch) {
        walked.push(k);
        assert!(walked.len() <= bound, "the trace cursor's walk does not end");
        c.step_key(&batch);
    }
    match keys {
        Some(keys) => {
            assert_eq!(walked, keys, "trace cursor walk");
            assert!(
                !batch.errors().is_set(),
                "a verified batch failed in the trace cursor"
            );
        }
        None => {
            if let Some(e) = batch.errors().take() {
                assert_format_error(&e, "trace cursor");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------------------------

/// Recomputes the manifest's trailing checksum.
pub fn repair_manifest(b: &mut [u8]) {
    if b.len() >= 48 {
        let n = b.len() - 8;
        let sum = checksum(&b[..n]);
        put_u64(b, n, sum);
    }
}

/// `Manifest::decode` on arbitrary bytes; a decoded manifest keeps its documented invariants and
/// survives `encode` then `decode` unchanged.
pub fn check_manifest(data: &[u8]) {
    check_manifest_bytes(data);
    let mut fixed = data.to_vec();
    repair_manifest(&mut fixed);
    if fixed != data {
        check_manifest_bytes(&fixed);
    }
}

fn check_manifest_bytes(data: &[u8]) {
    let m = match Manifest::decode(data, "MANIFEST") {
        Ok(m) => m,
        Err(e) => return assert_format_error(&e, "Manifest::decode"),
    };
    let encoded = m.encode();
    assert_eq!(
        encoded.len(),
        data.len(),
        "re-encoded manifest has another length"
    );
    let again = Manifest::decode(&encoded, "MANIFEST").expect("a re-encoded manifest decodes");
    assert_eq!(again, m, "manifest round trip");
    assert_eq!(again.encode(), encoded, "manifest encoding is not stable");
    // The invariants decode promises to check.
    let (mut ids, mut nos, mut files) = (HashSet::new(), HashSet::new(), HashSet::new());
    for s in &m.streams {
        assert!(s.stream_no < m.next_stream_no, "stream number out of range");
        assert!(nos.insert(s.stream_no) && ids.insert(&s.id), "stream repeated");
        let mut prev_upper = 0;
        for b in &s.batches {
            assert!(
                prev_upper <= b.lower && b.lower <= b.upper && b.upper <= s.upper,
                "batch order"
            );
            assert!(
                b.file_no < m.next_file_no && files.insert(b.file_no),
                "file number"
            );
            prev_upper = b.upper;
        }
        // Spilled runs: unsealed, so at or beyond the upper; ordered by lower, possibly overlapping.
        let mut prev_lower = s.upper;
        for b in &s.spills {
            assert!(prev_lower <= b.lower && b.lower <= b.upper, "spill order");
            assert!(
                b.file_no < m.next_file_no && files.insert(b.file_no),
                "file number"
            );
            prev_lower = b.lower;
        }
        assert!(m.stream(&s.id).is_some());
    }
}

/// `ManifestEdit::decode` on arbitrary bytes (and with the checksum repaired); a decoded edit survives
/// `encode` then `decode` unchanged, and each changed stream keeps the manifest's per-stream invariants.
pub fn check_manifest_edit(data: &[u8]) {
    check_manifest_edit_bytes(data);
    let mut fixed = data.to_vec();
    repair_manifest(&mut fixed);
    if fixed != data {
        check_manifest_edit_bytes(&fixed);
    }
}

fn check_manifest_edit_bytes(data: &[u8]) {
    let edit = match ManifestEdit::decode(data, "MANIFEST-EDIT") {
        Ok(edit) => edit,
        Err(e) => return assert_format_error(&e, "ManifestEdit::decode"),
    };
    let encoded = edit.encode();
    assert_eq!(encoded, data, "a decoded edit re-encodes to its bytes");
    for s in &edit.changed {
        let mut prev_upper = 0;
        for b in &s.batches {
            assert!(
                prev_upper <= b.lower && b.lower <= b.upper && b.upper <= s.upper,
                "batch order"
            );
            assert!(b.file_no < edit.next_file_no, "file number");
            prev_upper = b.upper;
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// WAL records
// ---------------------------------------------------------------------------------------------------------

/// `decode_record` on arbitrary bytes (both updates tags: fixed-width and varint framing; tag 3, a seal
/// record, through `decode`); a decoded record
/// re-encodes to exactly the input (the encoding is canonical: the count is exact, nothing may trail, every
/// varint is as short as can be) and, in the other format, to the same updates.
pub fn check_wal_record(data: &[u8]) {
    // Tag 3, a seal record: decodes only from exactly its 13 bytes, and re-encodes to them.
    if data.first() == Some(&TAG_SEAL) {
        match decode(data, "fuzz record") {
            Ok(Record::Seal(seal)) => assert_eq!(&encode_seal(seal.stream_no, seal.upper)[..], data),
            Ok(other) => panic!("tag 3 decoded as {other:?}"),
            Err(e) => assert!(e.is_corruption(), "decode: unexpected kind of error: {e:?}"),
        }
        return;
    }
    let rec = match decode_record(data, "fuzz record") {
        Ok(r) => r,
        Err(e) => {
            assert!(
                e.is_corruption(),
                "decode_record: unexpected kind of error: {e:?}"
            );
            return;
        }
    };
    // Both formats: its own re-encodes to exactly the input, with the size `update_bytes` computes (as the
    // store's write path sizes a record before encoding it); the other decodes to the same updates.
    for format in [rec.format, other_format(rec.format)] {
        let mut size = RECORD_PREFIX_BYTES;
        let mut prev_time = 0;
        for &u in &rec.updates {
            size += format.update_bytes(prev_time, u);
            prev_time = u.2;
        }
        let mut buf = Vec::new();
        let mut encoder = RecordEncoder::begin(&mut buf, rec.stream_no, format);
        for &u in &rec.updates {
            encoder.push(&mut buf, u);
        }
        encoder.finish(&mut buf);
        assert_eq!(buf.len(), size, "{format:?} record size");
        if format == rec.format {
            assert_eq!(buf, data, "record does not re-encode to its bytes");
        } else {
            let again = decode_record(&buf, "re-encoded record").expect("a re-encoded record decodes");
            assert_eq!((again.stream_no, again.format), (rec.stream_no, format));
            assert_eq!(
                again.updates, rec.updates,
                "{format:?} record changes the updates"
            );
        }
    }
}

fn other_format(format: RecordFormat) -> RecordFormat {
    match format {
        RecordFormat::Fixed => RecordFormat::Varint,
        RecordFormat::Varint => RecordFormat::Fixed,
    }
}

// ---------------------------------------------------------------------------------------------------------
// WAL segments
// ---------------------------------------------------------------------------------------------------------

/// First byte of a `wal_segment` input that holds up to two segments instead of one: then bytes 1..3
/// (`u16` LE, modulo the rest's length + 1) say where the rest splits into two segments. Each non-empty
/// part is named after the first LSN its header claims (so header checks pass and what gets tested is
/// LSN chaining, rollover and released-prefix logs that start anywhere in the LSN space).
pub const TWO_SEGMENTS: u8 = 0xD2;
const SEGMENT_HEADER: usize = 32;

/// The name of the segment whose first record has LSN `lsn`.
pub fn segment_name(lsn: Lsn) -> String {
    format!("{lsn:020}.wal")
}

/// Recomputes the segment header checksum and the checksum of every record the length fields chain to.
pub fn repair_segment(b: &mut [u8]) {
    if b.len() < SEGMENT_HEADER {
        return;
    }
    let sum = checksum(&b[..24]);
    put_u64(b, 24, sum);
    // From WAL version 6 a record's checksum is seeded with its LSN (FORMAT.md §4).
    let version = le_u32(b, 8).unwrap_or(0);
    let first_lsn = le_u64(b, 16).unwrap_or(0);
    let mut at = SEGMENT_HEADER;
    while let Some(len) = le_u32(b, at + 8) {
        let end = at + 16 + len as usize;
        if end > b.len() {
            break;
        }
        let mut covered = b[at + 8..at + 16].to_vec();
        covered.extend_from_slice(&b[at + 16..end]);
        let lsn = first_lsn.wrapping_add((at - SEGMENT_HEADER) as u64);
        let sum = checksum_seeded(&covered, if version >= 6 { lsn } else { 0 });
        put_u64(b, at, sum);
        at = end;
    }
}

/// The segment files an input stands for: `(first LSN in the name, bytes)`, at least one.
pub fn segment_files(data: &[u8]) -> Vec<(Lsn, Vec<u8>)> {
    if data.len() < 3 || data[0] != TWO_SEGMENTS {
        return vec![(0, data.to_vec())];
    }
    let rest = &data[3..];
    let split = u16::from_le_bytes([data[1], data[2]]) as usize % (rest.len() + 1);
    let (a, b) = rest.split_at(split);
    let mut files: Vec<(Lsn, Vec<u8>)> = Vec::new();
    for part in [a, b] {
        if part.is_empty() {
            continue;
        }
        // A part too short for a header follows the previous one, as a rollover would name it.
        let follows = files.last().map_or(0, |(lsn, p)| {
            lsn.saturating_add((p.len() as u64).saturating_sub(SEGMENT_HEADER as u64).max(1))
        });
        let mut lsn = le_u64(part, 16).unwrap_or(follows);
        if files.iter().any(|(l, _)| *l == lsn) {
            lsn = follows;
        }
        if files.iter().all(|(l, _)| *l != lsn) {
            files.push((lsn, part.to_vec()));
        }
    }
    if files.is_empty() {
        files.push((0, Vec::new()));
    }
    files
}

/// The segment file(s) of `data` in a `wal` directory, opened with `FileLog::open(dir, 1 << 20,
/// WalRecovery::Strict)` and replayed; never panics. A failed replay changes no file; a successful one cuts
/// only a torn tail, replays the same records again after a reopen, agrees with point-in-time recovery,
/// and lets appends continue the LSN space.
pub fn check_wal_segment(data: &[u8]) {
    let files = segment_files(data);
    // Known bug `wal_append_at_the_end_of_the_lsn_space_is_an_error_not_a_panic`.
    if skip_known_bugs() && files.iter().any(|(lsn, _)| *lsn > u64::MAX - (1 << 32)) {
        return;
    }
    check_segments(&files);
    let mut fixed = files.clone();
    for (_, bytes) in &mut fixed {
        repair_segment(bytes);
    }
    if fixed != files {
        check_segments(&fixed);
    }
}

type Records = Vec<(Lsn, Vec<u8>)>;

fn replay(dir: &Path, recovery: WalRecovery) -> ddpersist::Result<(FileLog, Records, ReplayReport)> {
    let log = FileLog::open(dir, 1 << 20, recovery)?;
    let mut records = Vec::new();
    let report = log.replay(&mut |lsn, payload| {
        // The store decodes every payload it replays; so do we (any result is fine).
        let _ = decode_record(payload, "replayed record");
        records.push((lsn, payload.to_vec()));
        Ok(())
    })?;
    Ok((log, records, report))
}

fn dir_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().into_string().unwrap(), fs::read(e.path()).unwrap())
        })
        .collect()
}

/// A temporary directory: under `DDP_FUZZ_TMPDIR` if set, else in `/dev/shm` when there is one (fsync is
/// free on tmpfs, and the WAL checks fsync a lot), else the system's temporary directory.
pub fn scratch_dir() -> tempfile::TempDir {
    let base = std::env::var_os("DDP_FUZZ_TMPDIR")
        .map(std::path::PathBuf::from)
        .or_else(|| Some(std::path::PathBuf::from("/dev/shm")).filter(|p| p.is_dir()));
    match base {
        Some(dir) => tempfile::Builder::new()
            .prefix("ddp-fuzz-")
            .tempdir_in(dir)
            .or_else(|_| tempfile::tempdir())
            .unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn wal_dir(files: &[(Lsn, Vec<u8>)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = scratch_dir();
    let wal = tmp.path().join("wal");
    fs::create_dir(&wal).unwrap();
    for (lsn, bytes) in files {
        fs::write(wal.join(segment_name(*lsn)), bytes).unwrap();
    }
    (tmp, wal)
}

fn base_name(path: &str) -> String {
    Path::new(path)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn check_segments(files: &[(Lsn, Vec<u8>)]) {
    let (_tmp, wal) = wal_dir(files);
    let before = dir_contents(&wal);
    match replay(&wal, WalRecovery::Strict) {
        Err(e) => {
            assert_format_error(&e, "strict replay");
            assert_eq!(
                dir_contents(&wal),
                before,
                "a failed replay changed the log ({e})"
            );
            // Point-in-time recovery may keep a prefix; whatever it keeps must then behave.
            if let Ok((log, records, report)) = replay(&wal, WalRecovery::PointInTime) {
                check_replayed(&wal, &before, log, records, report);
            }
        }
        Ok((log, records, report)) => {
            let strict = (records.clone(), report.clone());
            check_replayed(&wal, &before, log, records, report);
            check_zero_tail(files, &strict.0, &strict.1);
            // Point-in-time recovery differs only for bad records followed by valid ones: here it agrees.
            let (_tmp2, wal2) = wal_dir(files);
            let (_, records, report) =
                replay(&wal2, WalRecovery::PointInTime).expect("point-in-time replay after strict succeeded");
            assert_eq!(records, strict.0, "point-in-time and strict replays differ");
            let torn = |r: &ReplayReport| {
                r.torn_tail
                    .as_ref()
                    .map(|t| (base_name(&t.file), t.offset, t.dropped_bytes))
            };
            assert_eq!(
                torn(&report),
                torn(&strict.1),
                "point-in-time and strict torn tails differ"
            );
        }
    }
}

/// Zeros appended to the last segment (space the writer fills ahead of the log, format version 2) are not
/// content: a log that replayed replays the same records with them, and the same torn tail (longer by the
/// zeros) if it had one; in a version 1 segment they are a torn tail of their own if there was none.
fn check_zero_tail(files: &[(Lsn, Vec<u8>)], records: &Records, report: &ReplayReport) {
    // The newest segment is the one named by the greatest LSN (the directory's order, not the input's);
    // of files with one name, the last written.
    let Some(newest) = (0..files.len()).rev().max_by_key(|&i| files[i].0) else {
        return;
    };
    let (last_lsn, last) = &files[newest];
    if last.len() < SEGMENT_HEADER {
        return; // a partial segment: zeros would make its header bad
    }
    let cut_whole =
        |t: &ddpersist::wal::TornTail| t.offset == 0 && base_name(&t.file) == segment_name(*last_lsn);
    if last.len() == SEGMENT_HEADER && report.torn_tail.as_ref().is_some_and(cut_whole) {
        // A header-long last segment with a bad header: what a power loss while creating it leaves, cut
        // whole as holding no record; with zeros after it, it would hold records, so its header must be good.
        return;
    }
    const ZEROS: usize = 4096;
    let mut padded = files.to_vec();
    padded[newest].1.extend_from_slice(&[0; ZEROS]);
    let (_tmp, wal) = wal_dir(&padded);
    let version = u32::from_le_bytes([last[8], last[9], last[10], last[11]]);
    let flags = u32::from_le_bytes([last[12], last[13], last[14], last[15]]);
    let zero_filled = version == 2 || (version >= 3 && flags & 1 != 0);
    // A recycled last segment (version 6, flag bit 1) ends its records at the first bad bytes when no valid
    // record follows them, zeros included: not a torn tail (FORMAT.md §4, "Recycled segments").
    let recycled = version >= 6 && flags & 2 != 0;
    let (_, again, report2) = match replay(&wal, WalRecovery::Strict) {
        // In an appended segment with sync marks (version 3), zeros may complete a sync mark whose zero
        // high bytes were cut off, and the mark then proves the cut bytes durable: corruption, fine.
        Err(e) if version >= 3 && !zero_filled && report.torn_tail.is_some() && e.is_corruption() => return,
        other => other.expect("a log that replayed replays with a zero tail"),
    };
    if again.len() > records.len() && !zero_filled {
        // A record cut short in its trailing zero bytes (a seal record's upper below 2^56 ends in zeros;
        // any payload may) is completed by the zeros, exactly as written: it was the torn tail (or, in a
        // recycled segment, bytes past the records' end, not cut), and is read now, the log's last record
        // (nothing but zeros follows it).
        let cut = report.torn_tail.as_ref();
        assert!(
            cut.is_some() || recycled,
            "a record appeared where nothing was cut"
        );
        assert_eq!(
            &again[..records.len()],
            &records[..],
            "a zero tail changed the earlier records"
        );
        assert_eq!(
            again.len(),
            records.len() + 1,
            "a zero tail completed more than one record"
        );
        let (lsn, payload) = &again[records.len()];
        if let Some(cut) = cut {
            let start = cut.offset - SEGMENT_HEADER as u64 + *last_lsn;
            assert_eq!(*lsn, start, "the completed record starts at the cut");
        }
        assert!(payload.ends_with(&[0]), "a completed record ends in a zero byte");
        return;
    }
    assert_eq!(&again, records, "a zero tail changed the records");
    let torn = |r: &ReplayReport, extra: u64| {
        r.torn_tail
            .as_ref()
            .map(|t| (base_name(&t.file), t.offset, t.dropped_bytes + extra))
    };
    // Zero-filled segments (version 2, or 3 with flag bit 0) end their records at a zero tail; appended
    // segments take zeros past their records for a torn tail, cut at the old end.
    let expected = match torn(report, ZEROS as u64) {
        None if !zero_filled && !recycled => Some((segment_name(*last_lsn), last.len() as u64, ZEROS as u64)),
        t => t,
    };
    if let (Some(want), Some(got), true) = (
        &expected,
        torn(&report2, 0),
        version >= 3 && !zero_filled && !recycled,
    ) {
        // Zeros may complete a sync mark cut short (its high bytes are zeros): the cut then starts later,
        // never earlier, and still runs to the end of the file.
        assert_eq!(got.0, want.0, "a zero tail moved the torn tail to another file");
        assert!(got.1 >= want.1, "a zero tail moved the torn tail earlier");
        assert_eq!(
            got.1 + got.2,
            want.1 + want.2,
            "a zero tail changed where the file ends"
        );
        return;
    }
    assert_eq!(torn(&report2, 0), expected, "a zero tail changed the torn tail");
}

/// After a successful replay of the files `before`: the cut matches the report, appends continue the LSN
/// space, and a second open replays the same records plus the appended one, with no torn tail.
fn check_replayed(
    wal: &Path,
    before: &BTreeMap<String, Vec<u8>>,
    log: FileLog,
    records: Records,
    report: ReplayReport,
) {
    assert_eq!(report.records, records.len() as u64);
    for w in records.windows(2) {
        assert!(
            w[0].0 + 16 + w[0].1.len() as u64 <= w[1].0,
            "replayed LSNs overlap"
        );
    }
    let after = dir_contents(wal);
    for (name, bytes) in before {
        let torn_here = report.torn_tail.as_ref().filter(|t| base_name(&t.file) == *name);
        let stray = report.strays.iter().any(|s| base_name(s) == *name);
        match (torn_here, after.get(name)) {
            // A stray of a failed segment creation (at most a header long: no record) is removed.
            (None, None) if stray => assert!(bytes.len() <= SEGMENT_HEADER, "{name}: stray with records"),
            (None, now) => assert_eq!(now, Some(bytes), "{name} changed without a torn tail"),
            (Some(t), now)
                if bytes.len() < SEGMENT_HEADER || (bytes.len() == SEGMENT_HEADER && t.offset == 0) =>
            {
                // A partial segment (a crash while creating it: shorter than a header, or a header long
                // with a bad header) is removed; when it was the only one, a fresh segment with the same
                // first LSN replaces it.
                assert_eq!(
                    (t.offset, t.dropped_bytes),
                    (0, bytes.len() as u64),
                    "partial segment {name}"
                );
                assert!(
                    now.is_none_or(|n| n.len() == SEGMENT_HEADER),
                    "{name} not replaced by a header"
                );
            }
            (Some(t), Some(now)) => {
                assert_eq!(now.len() as u64, t.offset, "{name} not cut where reported");
                assert_eq!(&bytes[..now.len()], &now[..], "{name} changed before the cut");
                assert_eq!(
                    t.offset + t.dropped_bytes,
                    bytes.len() as u64,
                    "dropped bytes of {name}"
                );
            }
            (Some(t), None) => assert_eq!(t.dropped_bytes, bytes.len() as u64, "{name} removed"),
        }
    }
    let payload = b"appended by the fuzz check";
    // A log whose LSN space is used up refuses appends (as corruption); nothing else may fail here.
    let (start, end) = match log.append(payload) {
        Err(e) if e.to_string().contains("LSN space exhausted") => return,
        other => other.expect("append after replay"),
    };
    log.sync(end).expect("sync after replay");
    if let Some((lsn, p)) = records.last() {
        // Sync marks (version 3) may follow the last record.
        assert!(
            start >= lsn + 16 + p.len() as u64,
            "append does not continue the LSN space"
        );
    }
    drop(log);
    let (_, again, report2) = replay(wal, WalRecovery::Strict).expect("a log that replayed replays again");
    assert_eq!(report2.torn_tail, None, "torn tail on the second open");
    assert_eq!(
        again.len(),
        records.len() + 1,
        "records lost or gained on the second open"
    );
    assert_eq!(
        again[..records.len()],
        records[..],
        "records changed on the second open"
    );
    assert_eq!(again.last().unwrap(), &(start, payload.to_vec()));
}

// ---------------------------------------------------------------------------------------------------------
// Codecs
// ---------------------------------------------------------------------------------------------------------

/// Decodes `data` as a `T`: errors must be `Error::Decode`; a decoded value re-encodes to exactly `data`
/// (every encoding is canonical) and decodes back to itself; `decode_from` consumes exactly the encoding.
fn codec_round_trip<T: Codec + Debug + PartialEq>(data: &[u8]) -> Option<T> {
    let mut rest = data;
    if let Ok(v) = T::decode_from(&mut rest) {
        let used = data.len() - rest.len();
        assert_eq!(
            data[..used],
            v.to_bytes()[..],
            "decode_from consumed other bytes than {v:?}'s encoding"
        );
    }
    match T::decode(data) {
        Ok(v) => {
            let bytes = v.to_bytes();
            assert_eq!(bytes, data, "{v:?} re-encodes differently");
            assert_eq!(T::decode(&bytes).expect("re-encoded value decodes"), v);
            Some(v)
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Decode { .. }),
                "codec: unexpected kind of error: {e:?}"
            );
            None
        }
    }
}

/// Both halves of `data` decoded as `T`: when both decode, values compare as their encodings do.
fn codec_order<T: Codec + Debug + PartialEq + Ord>(a: &[u8], b: &[u8]) {
    if let (Some(x), Some(y)) = (codec_round_trip::<T>(a), codec_round_trip::<T>(b)) {
        assert_eq!(
            x.cmp(&y),
            a.cmp(b),
            "order of {x:?} and {y:?} differs from their encodings'"
        );
    }
}

/// A user struct stored through `ddpersist::serde_codec!` (the ordered serde format): integers, a string,
/// a sequence of options, an enum, in declaration order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FuzzRecord {
    /// A fixed-width integer.
    pub id: u32,
    /// An escaped string.
    pub name: String,
    /// A tagged sequence of options.
    pub tags: Vec<Option<char>>,
    /// An enum.
    pub kind: FuzzKind,
}

/// A user enum with unit, newtype and struct variants.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FuzzKind {
    /// A unit variant.
    A,
    /// A newtype variant.
    B(i16),
    /// A struct variant.
    C {
        /// A serde sequence of bytes.
        x: Vec<u8>,
        /// A bool.
        y: bool,
    },
}

ddpersist::serde_codec!(FuzzRecord, FuzzKind);

/// A key of std types whose encodings invert (`Reverse`) and must be in order (a set).
type StdMix = (std::cmp::Reverse<String>, std::collections::BTreeSet<u16>);

/// Decodes `data` as several [`Codec`] types (`u64`, `i64`, `usize`, `char`, `String`, `Vec<u8>`,
/// `Vec<String>`, `(String, u32)`, `Option<Vec<u8>>`, `(Reverse<String>, BTreeSet<u16>)`,
/// `Result<Duration, IpAddr>`, `BTreeMap<u8, SocketAddr>`, and the serde types [`FuzzRecord`] and
/// `(FuzzKind, Option<FuzzRecord>)`), checking round trips; then splits it in two (at `data[0]`) and checks
/// that decoded values order as their encodings do.
pub fn check_codec(data: &[u8]) {
    codec_round_trip::<u64>(data);
    codec_round_trip::<i64>(data);
    codec_round_trip::<usize>(data);
    codec_round_trip::<char>(data);
    codec_round_trip::<String>(data);
    codec_round_trip::<Vec<u8>>(data);
    codec_round_trip::<Vec<String>>(data);
    codec_round_trip::<(String, u32)>(data);
    codec_round_trip::<Option<Vec<u8>>>(data);
    codec_round_trip::<StdMix>(data);
    codec_round_trip::<Result<std::time::Duration, std::net::IpAddr>>(data);
    codec_round_trip::<std::collections::BTreeMap<u8, std::net::SocketAddr>>(data);
    codec_round_trip::<FuzzRecord>(data);
    codec_round_trip::<(FuzzKind, Option<FuzzRecord>)>(data);
    if let Some((&split, rest)) = data.split_first() {
        let (a, b) = rest.split_at(split as usize % (rest.len() + 1));
        codec_order::<u64>(a, b);
        codec_order::<i64>(a, b);
        codec_order::<usize>(a, b);
        codec_order::<char>(a, b);
        codec_order::<String>(a, b);
        codec_order::<Vec<u8>>(a, b);
        codec_order::<Vec<String>>(a, b);
        codec_order::<(String, u32)>(a, b);
        codec_order::<Option<Vec<u8>>>(a, b);
        codec_order::<StdMix>(a, b);
        codec_order::<Result<std::time::Duration, std::net::IpAddr>>(a, b);
        codec_order::<std::collections::BTreeMap<u8, std::net::SocketAddr>>(a, b);
        codec_order::<FuzzRecord>(a, b);
        codec_order::<(FuzzKind, Option<FuzzRecord>)>(a, b);
    }
}

/// splitmix64: a small deterministic generator for the smoke tests' inputs and mutations (seeded, so a
/// failure names the input that reproduces it).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    #[allow(clippy::should_implement_trait)] // not an iterator: it never ends
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// An index below `n` (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
    /// True once in `one_in` times.
    pub fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
    /// Random bytes, `len` of them.
    pub fn exact_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
    /// Random bytes, 0 to `max_len` of them.
    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.index(max_len + 1);
        self.exact_bytes(len)
    }
    /// 0 to `max_len` bytes from a tiny alphabet (with the zero byte), so values collide and escapes are
    /// common.
    pub fn small_bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.index(max_len + 1);
        (0..len).map(|_| [0u8, 1, b'a', 0xFF][self.index(4)]).collect()
    }
}
