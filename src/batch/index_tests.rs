//! Format version 3's partitioned block index (FORMAT.md §2, "Index partitions"; `batch::index`): an open
//! checks the partition table only, a read checks the partitions it touches, and damage to a partition is
//! an error for the reads that need it (naming the file and the partition's offset), never a panic or a
//! wrong answer, and fails `verify`.

use super::format::{FOOTER_BYTES, INDEX_ENTRY_BYTES, PARTITION_BLOCKS, PARTITION_ENTRY_BYTES};
use super::tests::{read_all, reseal_index, sample, write_with};
use super::*;
use crate::blob::{Blob, BlobBytes, MemBlob};
use crate::encoding::{le_u32, le_u64};
use crate::error::Error;
use crate::OwnedUpdate as Owned;

/// A batch of several index partitions (small blocks): its bytes and updates.
fn partitioned() -> (Vec<u8>, Vec<Owned>) {
    let blob = MemBlob::new();
    let updates = sample(3000);
    write_with(&blob, "p.batch", &updates, 256, false);
    (blob.get("p.batch").unwrap().unwrap().to_vec(), updates)
}

fn open(bytes: &[u8]) -> crate::Result<BatchFile> {
    BatchFile::open("p.batch", BlobBytes::Heap(bytes.to_vec().into()))
}

/// Where the index, the key area and the partition table lie in `bytes`: (index start, key area start,
/// table start).
fn layout(bytes: &[u8]) -> (usize, usize, usize) {
    let footer_at = bytes.len() - FOOTER_BYTES;
    let index = le_u64(bytes, footer_at + 64) as usize;
    let end = index + le_u64(bytes, footer_at + 72) as usize;
    let blocks = le_u32(bytes, footer_at + 12) as usize;
    (
        index,
        index + blocks * INDEX_ENTRY_BYTES,
        end - le_u32(bytes, footer_at + 116) as usize,
    )
}

/// Every update of `key` in `batch`.
fn lookup(batch: &BatchFile, key: &[u8]) -> crate::Result<Vec<(Vec<u8>, u64, i64)>> {
    let mut out = Vec::new();
    batch.for_key(key, |v, t, d| out.push((v.to_vec(), t, d)))?;
    Ok(out)
}

fn want(updates: &[Owned], key: &[u8]) -> Vec<(Vec<u8>, u64, i64)> {
    let of_key = updates.iter().filter(|u| u.0 == key);
    of_key.map(|(_, v, t, d)| (v.clone(), *t, *d)).collect()
}

#[test]
fn an_open_checks_no_partition_and_a_lookup_one() {
    let (bytes, updates) = partitioned();
    let batch = open(&bytes).unwrap();
    let partitions = batch.block_count().div_ceil(PARTITION_BLOCKS as usize);
    assert!(partitions >= 3, "{} blocks", batch.block_count());
    assert_eq!(batch.index_partitions(), partitions);
    assert_eq!(batch.index_partitions_checked(), 0);
    let middle = &updates[updates.len() / 2].0;
    assert_eq!(lookup(&batch, middle).unwrap(), want(&updates, middle));
    assert_eq!(batch.index_partitions_checked(), 1);
    // Keys outside the batch's range are answered from the table alone.
    let fresh = open(&bytes).unwrap();
    assert!(lookup(&fresh, b"a").unwrap().is_empty());
    assert!(lookup(&fresh, b"zzz").unwrap().is_empty());
    assert_eq!(fresh.index_partitions_checked(), 0);
}

#[test]
fn seeks_and_reads_across_partitions_equal_the_plain_search() {
    let (bytes, updates) = partitioned();
    let batch = open(&bytes).unwrap();
    let n = batch.block_count();
    let mut keys: Vec<Vec<u8>> = updates.iter().map(|u| u.0.clone()).collect();
    keys.dedup();
    // Probes: every key, and keys between and around them.
    let probes = keys.iter().flat_map(|k| {
        [
            k.clone(),
            [k.as_slice(), b"\0"].concat(),
            k[..k.len() - 1].to_vec(),
        ]
    });
    for probe in probes.chain([Vec::new(), b"zzz".to_vec()]) {
        let plain = (0..n)
            .position(|i| batch.block_last_key(i).unwrap() >= probe.as_slice())
            .unwrap_or(n);
        assert_eq!(batch.seek_block(&probe).unwrap(), plain, "{probe:?}");
        assert_eq!(lookup(&batch, &probe).unwrap(), want(&updates, &probe));
        let c = UpdateCursor::seek(&batch, &probe).unwrap();
        let first = updates.iter().find(|u| u.0 >= probe);
        assert_eq!(
            c.get().map(|u| u.0.to_vec()),
            first.map(|u| u.0.clone()),
            "{probe:?}"
        );
    }
    assert_eq!(read_all(&batch).unwrap(), updates);
    batch.verify_deep().unwrap();
    assert!(batch.is_verified());
}

/// A byte of partition 1 damaged (one of its entries, or one of its fence keys in the key area): the
/// open passes, reads of other partitions are right, reads that need partition 1 fail naming it.
#[test]
fn a_damaged_partition_is_an_error_where_it_is_needed() {
    let (good, updates) = partitioned();
    let (index, key_area, _) = layout(&good);
    let per = PARTITION_BLOCKS as usize;
    let batch = open(&good).unwrap();
    let second_at = index + per * INDEX_ENTRY_BYTES;
    let key_in = |i: usize| batch.block_first_key(i).unwrap().to_vec();
    let (in_first, in_second) = (key_in(3), key_in(per + 3));
    let fence = key_area + batch.index_entry(per + 5).unwrap().first_key_off as usize;
    for at in [second_at + 24, second_at + 5 * INDEX_ENTRY_BYTES + 8, fence] {
        let mut bad = good.clone();
        bad[at] ^= 0x20;
        let b = open(&bad).unwrap();
        assert_eq!(lookup(&b, &in_first).unwrap(), want(&updates, &in_first));
        let expect = |r: crate::Result<()>, what: &str| match r {
            Err(Error::Corrupt { file, offset, detail }) => {
                assert_eq!((file.as_str(), offset), ("p.batch", second_at as u64), "{what}");
                assert!(detail.contains("index partition 1"), "{what}: {detail}");
            }
            other => panic!("{what}: byte {at} damaged, got {other:?}"),
        };
        expect(lookup(&b, &in_second).map(drop), "for_key");
        expect(b.seek_block(&in_second).map(drop), "seek_block");
        expect(b.index_entry(per).map(drop), "index_entry");
        expect(b.block(per + 1).map(drop), "block");
        assert!(matches!(b.verify(), Err(Error::Corrupt { .. })));
        assert!(read_all(&b).is_err());
    }
}

#[test]
fn a_damaged_partition_table_fails_the_open() {
    let (good, _) = partitioned();
    let (_, _, table) = layout(&good);
    let footer_at = good.len() - FOOTER_BYTES;
    let index_end = (le_u64(&good, footer_at + 64) + le_u64(&good, footer_at + 72)) as usize;
    for at in [table, table + PARTITION_ENTRY_BYTES + 9, index_end - 1] {
        let mut bad = good.clone();
        bad[at] ^= 1;
        match open(&bad) {
            Err(Error::Corrupt { offset, detail, .. }) => {
                assert_eq!(offset, table as u64, "{detail}");
                assert!(detail.contains("partition table"), "{detail}");
            }
            other => panic!("byte {at} of the table damaged: {other:?}"),
        }
    }
}

/// Forgeries under valid checksums (a writer bug or a forger): a table entry whose key bytes do not
/// hold its blocks' fence keys, and a table whose copy of a partition's first key differs from the
/// partition's. The first touch of the partition refuses both; `verify` too; nothing panics.
#[test]
fn forged_partitions_under_valid_checksums_are_refused_on_touch() {
    let (good, _) = partitioned();
    let (_, _, table) = layout(&good);
    let n = open(&good).unwrap().index_partitions();
    let keys_at = table + n * PARTITION_ENTRY_BYTES;
    let entry1 = table + PARTITION_ENTRY_BYTES;
    type Forge<'a> = Box<dyn Fn(&mut Vec<u8>) + 'a>;
    let forgeries: [(&str, Forge<'_>); 3] = [
        (
            "key bytes cut short",
            Box::new(move |b| b[entry1 + 12..entry1 + 16].copy_from_slice(&8u32.to_le_bytes())),
        ),
        (
            "key bytes moved",
            Box::new(move |b| b[entry1 + 8..entry1 + 12].copy_from_slice(&0u32.to_le_bytes())),
        ),
        (
            "first key changed",
            Box::new(move |b| {
                let fence_off = le_u32(b, entry1 + 16) as usize;
                b[keys_at + fence_off] ^= 1;
            }),
        ),
    ];
    for (what, forge) in forgeries {
        let mut bad = good.clone();
        forge(&mut bad);
        reseal_index(&mut bad);
        let b = open(&bad).unwrap();
        assert!(b.index_entry(0).is_ok(), "{what}: partition 0 is intact");
        match b.index_entry(PARTITION_BLOCKS as usize) {
            Err(Error::Corrupt { detail, .. }) => assert!(
                detail.contains("index partition 1") || detail.contains("block 64"),
                "{what}: {detail}"
            ),
            other => panic!("{what}: {other:?}"),
        }
        assert!(matches!(b.verify(), Err(Error::Corrupt { .. })), "{what}");
    }
}
