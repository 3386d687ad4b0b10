//! Batch writer / reader / cursor round trips and corruption handling.

use super::*;
use crate::blob::{Blob, MemBlob};
use crate::error::Error;

use crate::OwnedUpdate as Owned;

/// Sorted, consolidated updates with varied key, val and time fan-out.
pub(super) fn sample(n_keys: u32) -> Vec<Owned> {
    let mut out = Vec::new();
    for k in 0..n_keys {
        let key = format!("key-{k:06}").into_bytes();
        for v in 0..(k % 4 + 1) {
            let val = vec![b'v'; (v * 7 + k % 13) as usize];
            let val = [val, v.to_be_bytes().to_vec()].concat();
            for t in 0..(k % 3 + 1) as u64 {
                out.push((
                    key.clone(),
                    val.clone(),
                    t * 2 + 1,
                    (k as i64 % 5) - 2 + if k % 5 == 2 { 1 } else { 0 },
                ));
            }
        }
    }
    out.sort();
    out
}

fn write(blob: &MemBlob, name: &str, updates: &[Owned], target: u32) -> BatchStats {
    write_with(blob, name, updates, target, false)
}

pub(super) fn write_with(
    blob: &MemBlob,
    name: &str,
    updates: &[Owned],
    target: u32,
    compress: bool,
) -> BatchStats {
    let desc = Description {
        lower: 0,
        upper: 100,
        since: 0,
    };
    let w = BatchWriter::new(blob.create(name).unwrap(), desc, target).unwrap();
    let mut w = w.with_filter(updates.len() as u64, 10).with_compression(compress);
    for (k, v, t, d) in updates {
        w.push(k, v, *t, *d).unwrap();
    }
    w.finish().unwrap()
}

pub(super) fn read_all(batch: &BatchFile) -> crate::Result<Vec<Owned>> {
    let mut c = UpdateCursor::new(batch)?;
    let mut out = Vec::new();
    while let Some((k, v, t, d)) = c.get() {
        out.push((k.to_vec(), v.to_vec(), t, d));
        c.step()?;
    }
    Ok(out)
}

#[test]
fn round_trip_many_blocks() {
    let blob = MemBlob::new();
    let updates = sample(2000);
    let stats = write(&blob, "a.batch", &updates, 512);
    assert_eq!(stats.update_count, updates.len() as u64);
    let batch = BatchFile::open("a.batch", blob.get("a.batch").unwrap().unwrap()).unwrap();
    assert!(batch.block_count() > 10, "small target must cut many blocks");
    batch.verify().unwrap();
    assert_eq!(read_all(&batch).unwrap(), updates);
    assert_eq!(batch.footer().key_count, 2000);
}

#[test]
fn seek_finds_first_key_at_or_above() {
    let blob = MemBlob::new();
    let updates = sample(500);
    write(&blob, "a.batch", &updates, 256);
    let batch = BatchFile::open("a.batch", blob.get("a.batch").unwrap().unwrap()).unwrap();
    for probe in [
        "key-000000",
        "key-000250",
        "key-0002505",
        "key-000499",
        "a",
        "zzz",
    ] {
        let c = UpdateCursor::seek(&batch, probe.as_bytes()).unwrap();
        let want = updates
            .iter()
            .find(|u| u.0.as_slice() >= probe.as_bytes())
            .map(|u| u.0.as_slice());
        assert_eq!(c.key(), want, "probe {probe}");
    }
}

#[test]
fn writer_rejects_bad_order_and_zero_diffs() {
    let blob = MemBlob::new();
    let desc = Description {
        lower: 0,
        upper: 10,
        since: 0,
    };
    let mut w = BatchWriter::new(blob.create("x.batch").unwrap(), desc, 64).unwrap();
    w.push(b"b", b"v", 1, 1).unwrap();
    assert!(w.push(b"b", b"v", 1, 1).is_err(), "repeated (key, val, time)");
    assert!(w.push(b"a", b"v", 2, 1).is_err(), "key going backwards");
    assert!(w.push(b"c", b"v", 1, 0).is_err(), "zero diff");
    assert!(w.push(b"c", b"v", 10, 1).is_err(), "time at upper");
}

#[test]
fn empty_batch_round_trips() {
    let blob = MemBlob::new();
    write(&blob, "e.batch", &[], 64);
    let batch = BatchFile::open("e.batch", blob.get("e.batch").unwrap().unwrap()).unwrap();
    assert_eq!(batch.block_count(), 0);
    assert!(read_all(&batch).unwrap().is_empty());
}

#[test]
fn compressed_blocks_round_trip_and_shrink() {
    let blob = MemBlob::new();
    let updates = sample(2000);
    let plain = write(&blob, "p.batch", &updates, 4096);
    let packed = write_with(&blob, "c.batch", &updates, 4096, true);
    assert!(
        packed.size_bytes < plain.size_bytes * 3 / 4,
        "{} vs {}",
        packed.size_bytes,
        plain.size_bytes
    );
    let batch = BatchFile::open("c.batch", blob.get("c.batch").unwrap().unwrap()).unwrap();
    assert!((0..batch.block_count()).any(|i| batch.index_entry(i).unwrap().codec == format::CODEC_LZ4));
    batch.verify().unwrap();
    assert_eq!(read_all(&batch).unwrap(), updates);
    let c = UpdateCursor::seek(&batch, b"key-001234").unwrap();
    assert_eq!(c.key(), Some(&b"key-001234"[..]));
}

/// Flipping any single byte either yields an error naming the file, or (for padding, which carries no
/// data) exactly the original updates. Never a panic, never wrong data. Raw and compressed blocks alike.
#[test]
fn every_flipped_byte_is_caught_or_harmless() {
    for compress in [false, true] {
        flips_are_caught_or_harmless(compress);
    }
}

fn flips_are_caught_or_harmless(compress: bool) {
    let blob = MemBlob::new();
    let updates = sample(40);
    write_with(&blob, "f.batch", &updates, 200, compress);
    let good = blob.get("f.batch").unwrap().unwrap().to_vec();
    let mut caught = 0;
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x01;
        let result = BatchFile::open("f.batch", crate::blob::BlobBytes::Heap(bad.into()))
            .and_then(|b| b.verify().map(|_| b))
            .and_then(|b| read_all(&b));
        match result {
            Ok(read) => assert_eq!(read, updates, "flip at {i} changed the data undetected"),
            Err(Error::Corrupt { file, .. }) => {
                assert_eq!(file, "f.batch");
                caught += 1;
            }
            Err(e) => panic!("flip at {i}: unexpected error {e}"),
        }
    }
    assert!(
        caught > good.len() * 9 / 10,
        "only {caught} of {} flips caught",
        good.len()
    );
}

#[test]
fn truncated_files_are_errors() {
    let blob = MemBlob::new();
    write(&blob, "t.batch", &sample(30), 128);
    let good = blob.get("t.batch").unwrap().unwrap().to_vec();
    for cut in [0, 10, 31, 32, 100, good.len() - 129, good.len() - 1] {
        let r = BatchFile::open(
            "t.batch",
            crate::blob::BlobBytes::Heap(good[..cut].to_vec().into()),
        );
        assert!(r.unwrap_err().is_corruption(), "cut at {cut}");
    }
}

#[test]
fn newer_version_is_refused() {
    let blob = MemBlob::new();
    write(&blob, "v.batch", &sample(3), 128);
    let mut bytes = blob.get("v.batch").unwrap().unwrap().to_vec();
    let newer = format::BATCH_VERSION.0 + 1;
    bytes[8..12].copy_from_slice(&newer.to_le_bytes());
    let sum = crate::encoding::checksum(&bytes[..24]);
    bytes[24..32].copy_from_slice(&sum.to_le_bytes());
    let r = BatchFile::open("v.batch", crate::blob::BlobBytes::Heap(bytes.into()));
    assert!(matches!(r, Err(Error::VersionTooNew { found, .. }) if found == newer));
}

#[test]
fn header_and_footer_versions_must_agree() {
    let blob = MemBlob::new();
    write(&blob, "v.batch", &sample(3), 128);
    let mut bytes = blob.get("v.batch").unwrap().unwrap().to_vec();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    let sum = crate::encoding::checksum(&bytes[..24]);
    bytes[24..32].copy_from_slice(&sum.to_le_bytes());
    let r = BatchFile::open("v.batch", crate::blob::BlobBytes::Heap(bytes.into()));
    assert!(r.unwrap_err().is_corruption());
}

#[test]
fn file_names_round_trip() {
    assert_eq!(parse_batch_file_name(&batch_file_name(0xabc)), Some(0xabc));
    assert_eq!(parse_batch_file_name("MANIFEST"), None);
    assert_eq!(parse_batch_file_name("zz.batch"), None);
}

#[test]
fn parallel_verify_reports_the_first_bad_block_in_block_order() {
    let blob = MemBlob::new();
    let updates = sample(2000);
    write(&blob, "p.batch", &updates, 256);
    let good = blob.get("p.batch").unwrap().unwrap().to_vec();
    let batch = BatchFile::open("p.batch", crate::blob::BlobBytes::Heap(good.clone().into())).unwrap();
    let n = batch.block_count();
    assert!(
        n >= 2 * super::verify::PARALLEL_VERIFY_BLOCKS,
        "{n} blocks: too few to split"
    );
    batch.verify().unwrap();
    // Corrupt one block in the first quarter and one in the last: the error names the earlier one.
    let (early, late) = (n / 4, n - 2);
    let (at_early, at_late) = (
        batch.index_entry(early).unwrap().offset,
        batch.index_entry(late).unwrap().offset,
    );
    let mut bad = good;
    for at in [at_early, at_late] {
        bad[at as usize + 20] ^= 0x40;
    }
    let batch = BatchFile::open("p.batch", crate::blob::BlobBytes::Heap(bad.into())).unwrap();
    match batch.verify() {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!((file.as_str(), offset), ("p.batch", at_early));
        }
        other => panic!("expected corruption at block {early}, got {other:?}"),
    }
}

/// Reads check a block's checksum and shape, not its contents' structure (the writer's guarantee): a block
/// rewritten with a matching checksum (a forged file, or a writer bug) must still never panic a read, and
/// `verify` (the structural pass of `inspect verify`) must report what the checksum cannot.
#[test]
fn forged_blocks_with_valid_checksums_never_panic_a_read() {
    use crate::encoding::checksum;
    let blob = MemBlob::new();
    let updates = sample(30);
    write(&blob, "g.batch", &updates, 400);
    let good = blob.get("g.batch").unwrap().unwrap().to_vec();
    let file = BatchFile::open("g.batch", crate::blob::BlobBytes::Heap(good.clone().into())).unwrap();
    let e = *file.index_entry(0).unwrap();
    let index_at = file.footer().index_offset as usize;
    let block = e.offset as usize..e.offset as usize + e.stored_len as usize;
    let (mut structural, mut reads_erred) = (0, 0);
    for at in block.clone() {
        for value in [0u8, 0xFF, good[at] ^ 0x01] {
            let mut bad = good.clone();
            if bad[at] == value {
                continue;
            }
            bad[at] = value;
            // Re-seal the forgery: block checksum, index partition, table and footer checksums.
            let sum = checksum(&bad[block.clone()]);
            bad[index_at + 8..index_at + 16].copy_from_slice(&sum.to_le_bytes());
            reseal_index(&mut bad);
            let Ok(b) = BatchFile::open("g.batch", crate::blob::BlobBytes::Heap(bad.into())) else {
                continue;
            };
            // None of these may panic; what they return is not checked against the data.
            let mut erred = read_all(&b).is_err();
            for (k, ..) in &updates {
                erred |= b.for_key(k, |_, _, _| {}).is_err();
            }
            let _ = UpdateCursor::seek(&b, b"key-000010").map(|c| c.get().map(|u| u.0.len()));
            reads_erred += usize::from(erred);
            if matches!(b.verify(), Err(Error::Corrupt { .. })) {
                structural += 1;
            }
        }
    }
    assert!(structural > 0, "verify caught no forged block");
    assert!(
        reads_erred < structural,
        "reads should not pay for the structural pass ({reads_erred} read errors, {structural} caught)"
    );
}

/// `check_written` checks every raw block once, marking it verified without counting reads, and names the
/// first block whose mapped bytes differ from those written.
#[test]
fn check_written_verifies_every_raw_block_and_names_a_bad_one() {
    let blob = MemBlob::new();
    let updates = sample(200);
    write(&blob, "w.batch", &updates, 400);
    let good = blob.get("w.batch").unwrap().unwrap().to_vec();
    let batch = BatchFile::open("w.batch", crate::blob::BlobBytes::Heap(good.clone().into())).unwrap();
    assert!(batch.block_count() >= 3, "{} blocks", batch.block_count());
    assert!(!batch.is_verified());
    batch.check_written().unwrap();
    assert!(batch.is_verified());
    assert_eq!(batch.block_reads(), 0, "the writer's check is not a read");
    assert_eq!(read_all(&batch).unwrap().len(), updates.len());

    let second = batch.index_entry(1).unwrap().offset;
    let mut bad = good;
    bad[second as usize + 3] ^= 0x10;
    let batch = BatchFile::open("w.batch", crate::blob::BlobBytes::Heap(bad.into())).unwrap();
    match batch.check_written() {
        Err(Error::Corrupt { file, offset, .. }) => assert_eq!((file.as_str(), offset), ("w.batch", second)),
        other => panic!("expected corruption at block 1, got {other:?}"),
    }
}

proptest::proptest! {
    /// `for_key` and `seek` against a sorted list: keys either share long prefixes (so fence and sample
    /// prefixes tie and the full keys decide) or differ in their first bytes, and are either all of one
    /// width (blocks read keys without their offsets) or of mixed widths, in blocks of a few keys each or
    /// of hundreds (so a lookup's key samples narrow its search, `seek::KeySamples`), raw or lz4.
    #[test]
    fn lookups_and_seeks_agree_with_a_model_for_fixed_and_mixed_width_keys(
        suffixes in proptest::collection::btree_set(proptest::collection::vec(0u8..3, 1..7), 1..400),
        fixed in proptest::bool::ANY,
        prefixed in proptest::bool::ANY,
        target in proptest::sample::select(vec![256u32, 8192]),
        compress in proptest::bool::ANY,
        absent in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..7), 0..20),
    ) {
        let key = |s: &[u8]| {
            let mut k = if prefixed { b"common-prefix/".to_vec() } else { Vec::new() };
            k.extend_from_slice(s);
            if fixed {
                k.resize(if prefixed { 14 } else { 0 } + 7, 9);
            }
            k
        };
        let mut keys: Vec<Vec<u8>> = suffixes.iter().map(|s| key(s)).collect();
        keys.sort();
        keys.dedup();
        let updates: Vec<Owned> = keys.iter().enumerate().map(|(i, k)| (k.clone(), vec![i as u8], 1, 1)).collect();
        let blob = MemBlob::new();
        // A 256-byte target: blocks of a few keys, so each block's key search takes several steps; 8 KiB:
        // blocks of hundreds, each sampled.
        write_with(&blob, "a.batch", &updates, target, compress);
        let batch = BatchFile::open("a.batch", blob.get("a.batch").unwrap().unwrap()).unwrap();
        // Present keys, absent ones, and each present key with a byte more (longer than any stored key
        // of a fixed width).
        let longer = keys.iter().map(|k| [k.as_slice(), &[0]].concat());
        let probes = keys
            .iter()
            .cloned()
            .chain(absent.iter().map(|s| key(s)))
            .chain(absent.iter().cloned())
            .chain(longer);
        for probe in probes {
            let mut got = Vec::new();
            batch.for_key(&probe, |v, t, d| got.push((v.to_vec(), t, d))).unwrap();
            let want: Vec<_> = updates.iter().filter(|u| u.0 == probe).map(|u| (u.1.clone(), u.2, u.3)).collect();
            proptest::prop_assert_eq!(got, want);
            let c = UpdateCursor::seek(&batch, &probe).unwrap();
            proptest::prop_assert_eq!(c.key(), keys.iter().find(|k| **k >= probe).map(|k| k.as_slice()));
            // The searches' comparison (8-byte prefixes first, whole keys on a tie) is the byte order's.
            let prefix = crate::batch::seek::key_prefix(&probe);
            for b in 0..batch.block_count() {
                let block = batch.block(b).unwrap();
                for i in 0..block.key_count() {
                    proptest::prop_assert_eq!(block.key_below(i, &probe, prefix), block.key(i) < &probe[..]);
                }
            }
        }
    }
}

/// Re-seals a batch file of the current format after its index entries were edited (a forgery): every
/// index partition's checksum, the partition table's (the footer's index checksum) and the footer's.
pub(super) fn reseal_index(b: &mut [u8]) {
    use crate::encoding::{checksum, le_u32, le_u64};
    let footer_at = b.len() - format::FOOTER_BYTES;
    let index_at = le_u64(b, footer_at + 64) as usize;
    let index_end = index_at + le_u64(b, footer_at + 72) as usize;
    let blocks = le_u32(b, footer_at + 12) as usize;
    let per = le_u32(b, footer_at + 112) as usize;
    let table_at = index_end - le_u32(b, footer_at + 116) as usize;
    let key_area = index_at + blocks * format::INDEX_ENTRY_BYTES;
    for p in 0..blocks.div_ceil(per) {
        let at = table_at + p * format::PARTITION_ENTRY_BYTES;
        let (key_off, key_len) = (le_u32(b, at + 8) as usize, le_u32(b, at + 12) as usize);
        let entries = index_at + p * per * format::INDEX_ENTRY_BYTES
            ..index_at + ((p + 1) * per).min(blocks) * format::INDEX_ENTRY_BYTES;
        let keys = key_area + key_off..key_area + key_off + key_len;
        let sum = format::partition_checksum(&b[entries], &b[keys]);
        b[at..at + 8].copy_from_slice(&sum.to_le_bytes());
    }
    let sum = checksum(&b[table_at..index_end]);
    b[footer_at + 80..footer_at + 88].copy_from_slice(&sum.to_le_bytes());
    let sum = checksum(&b[footer_at..footer_at + 120]);
    b[footer_at + 120..footer_at + 128].copy_from_slice(&sum.to_le_bytes());
}
