//! The `batch_file` target's check: a batch file opened from arbitrary bytes, verified, walked with an
//! `UpdateCursor`, probed by point reads and seeks, and read through DD's trace cursor; and
//! [`repair_batch`], which recomputes the checksums a damaged layout still lets us find.

use crate::{assert_format_error, le_u32, le_u64, put_u64, skip_known_bugs};
use ddpersist::batch::format::{
    partition_checksum, FOOTER_BYTES, HEADER_BYTES, INDEX_ENTRY_BYTES, PARTITION_ENTRY_BYTES,
};
use ddpersist::batch::{BatchFile, UpdateCursor};
use ddpersist::blob::BlobBytes;
use ddpersist::encoding::checksum;
use ddpersist::OwnedUpdate;
use std::sync::Arc;

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
