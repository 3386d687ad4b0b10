//! Format version 2's narrow blocks (FORMAT.md §2): sizes, round trips of every width, forged headers,
//! and the bound on a block's size.

use super::*;
use crate::blob::{Blob, MemBlob};
use crate::encoding::checksum;
use crate::OwnedUpdate as Owned;
use tests::read_all;

/// Writes `updates` (sorted, consolidated) into a batch over all of time, blocks of `target` bytes.
fn write_any_times(blob: &MemBlob, updates: &[Owned], target: u32, compress: bool) -> BatchFile {
    let desc = Description {
        lower: 0,
        upper: u64::MAX,
        since: 0,
    };
    let w = BatchWriter::new(blob.create("p.batch").unwrap(), desc, target).unwrap();
    let mut w = w.with_compression(compress);
    for (k, v, t, d) in updates {
        w.push(k, v, *t, *d).unwrap();
    }
    w.finish().unwrap();
    let bytes = blob.get("p.batch").unwrap().unwrap().to_vec();
    BatchFile::open("p.batch", crate::blob::BlobBytes::Heap(bytes.into())).unwrap()
}

/// Format version 2's narrow columns: updates of one width of key and val, one val per key and one
/// update per val, times within 256 of each other and one diff cost their key and val bytes plus one
/// byte a time: no offsets, no diffs, no per-update counts (FORMAT.md §2).
#[test]
fn uniform_blocks_store_one_byte_beyond_the_payload_per_update() {
    let blob = MemBlob::new();
    let updates: Vec<Owned> = (0..10_000u32)
        .map(|i| {
            (
                i.to_be_bytes().repeat(4),
                vec![i as u8; 100],
                1_000_000 + u64::from(i % 200),
                1,
            )
        })
        .collect();
    let batch = write_any_times(&blob, &updates, 64 << 10, false);
    let blocks: u64 = (0..batch.block_count())
        .map(|i| u64::from(batch.index_entry(i).unwrap().raw_len))
        .sum();
    let per_block = (format::BLOCK_HEADER_BYTES + 8) as u64 * batch.block_count() as u64;
    assert_eq!(
        blocks,
        10_000 * (16 + 100 + 1) + per_block - 8 * batch.block_count() as u64
    );
    batch.verify().unwrap();
    assert_eq!(read_all(&batch).unwrap(), updates);
}

proptest::proptest! {
    /// Every update written is read back, whatever the widths: times anywhere in `u64` (ranges that need
    /// 0 to 8 bytes), diffs anywhere in `i64` but 0 (ranges past `i64::MAX`, which the wrapping base
    /// handles), keys and vals of one width or of many, one or several vals per key and times per val;
    /// raw and lz4 blocks; and the full structural check passes.
    #[test]
    fn narrow_columns_round_trip_every_update(
        rows in proptest::collection::btree_map(
            (proptest::collection::vec(0u8..4, 0..6), proptest::collection::vec(0u8..3, 0..4)),
            proptest::collection::btree_map(
                proptest::prop_oneof![0u64..4, 1_000u64..1_300, u64::MAX - 300..u64::MAX - 1, 0u64..u64::MAX - 1],
                proptest::prop_oneof![1i64..3, -2i64..-1, i64::MIN..0, 1..i64::MAX],
                1..4,
            ),
            1..120,
        ),
        fixed in proptest::bool::ANY,
        compress in proptest::bool::ANY,
        target in 64u32..2048,
    ) {
        let pad = |mut b: Vec<u8>| {
            if fixed {
                b.resize(6, 7);
            }
            b
        };
        let mut updates: Vec<Owned> = Vec::new();
        for ((k, v), times) in rows {
            for (t, d) in times {
                updates.push((pad(k.clone()), pad(v.clone()), t, d));
            }
        }
        updates.sort();
        updates.dedup_by(|a, b| (&a.0, &a.1, a.2) == (&b.0, &b.1, b.2));
        let blob = MemBlob::new();
        let batch = write_any_times(&blob, &updates, target, compress);
        proptest::prop_assert_eq!(read_all(&batch).unwrap(), updates.clone());
        batch.verify().unwrap();
        for (k, _, _, _) in &updates {
            let mut found = Vec::new();
            batch.for_key(k, |v, t, d| found.push((k.clone(), v.to_vec(), t, d))).unwrap();
            let want: Vec<Owned> = updates.iter().filter(|u| &u.0 == k).cloned().collect();
            proptest::prop_assert_eq!(found, want);
        }
        // A val's updates read at once equal them read one by one; a val past the block's has none.
        for i in 0..batch.block_count() {
            let block = batch.block(i).unwrap();
            for j in 0..block.val_count() + 2 {
                let one_by_one: Vec<(u64, i64)> = if j < block.val_count() {
                    block.updates(j).map(|x| (block.time(x), block.diff(x))).collect()
                } else {
                    Vec::new()
                };
                proptest::prop_assert_eq!(block.times_of(j).collect::<Vec<_>>(), one_by_one);
            }
        }
    }
}

/// The bytes of a one-block batch file of `updates` (a 1 MiB target) and the offset of its block.
fn one_block_file(updates: &[Owned]) -> (Vec<u8>, usize) {
    let blob = MemBlob::new();
    let batch = write_any_times(&blob, updates, 1 << 20, false);
    assert_eq!(batch.block_count(), 1);
    let at = batch.index_entry(0).unwrap().offset as usize;
    (blob.get("p.batch").unwrap().unwrap().to_vec(), at)
}

/// Re-seals a one-block file after a forgery: the block's checksum, the index's, the footer's.
fn reseal(b: &mut [u8]) {
    let footer_at = b.len() - format::FOOTER_BYTES;
    let index_at = crate::encoding::le_u64(b, footer_at + 64) as usize;
    let (at, len) = (
        crate::encoding::le_u64(b, index_at) as usize,
        crate::encoding::le_u32(b, index_at + 16) as usize,
    );
    let sum = checksum(&b[at..at + len]);
    b[index_at + 8..index_at + 16].copy_from_slice(&sum.to_le_bytes());
    super::tests::reseal_index(b);
}

fn open(b: Vec<u8>) -> crate::Result<BatchFile> {
    BatchFile::open("f", crate::blob::BlobBytes::Heap(b.into()))
}

/// Three keys of two bytes, one val of one byte each, times 10..13, diff 1.
fn small() -> Vec<Owned> {
    (0..3u8)
        .map(|i| (vec![i, i], vec![i], 10 + i as u64, 1))
        .collect()
}

/// `()` vals (what `arrange_by_self`, `count` and semijoins store) are of one width, 0: no val offsets.
#[test]
fn empty_vals_take_no_bytes() {
    let updates: Vec<Owned> = (0..1000u64)
        .map(|i| (i.to_be_bytes().to_vec(), Vec::new(), 7, 1))
        .collect();
    let (bytes, _) = one_block_file(&updates);
    let batch = open(bytes).unwrap();
    let len = batch.index_entry(0).unwrap().raw_len as usize;
    assert_eq!(
        len,
        format::BLOCK_HEADER_BYTES + 1000 * 8,
        "8 key bytes an update, nothing else"
    );
    assert_eq!(read_all(&batch).unwrap(), updates);
    batch.verify().unwrap();
}

/// `val(j)` past the block's vals is empty, whichever way the vals are stored.
#[test]
fn a_val_past_the_end_is_empty() {
    for updates in [
        vec![
            (b"a".to_vec(), b"x".to_vec(), 1, 1),
            (b"a".to_vec(), b"x".to_vec(), 2, 1),
            (b"b".to_vec(), b"yyyy".to_vec(), 1, 1),
        ],
        small(),
    ] {
        let (bytes, _) = one_block_file(&updates);
        let batch = open(bytes).unwrap();
        let block = batch.block(0).unwrap();
        for j in block.val_count()..block.val_count() + 4 {
            assert!(
                block.val(j).is_empty(),
                "val {j} of {}: {:?}",
                block.val_count(),
                block.val(j)
            );
        }
    }
}

/// Every header field a forger can set wrongly (under a valid checksum) is corruption at first touch: a
/// width code outside 0, 1, 2, 4, 8, an unknown flag, the reserved byte, a flag the counts contradict, a
/// width without its flag (or a flag without its width), a width that overruns the block.
#[test]
fn forged_block_headers_are_corruption() {
    let (base, at) = one_block_file(&small());
    let forgeries: Vec<(usize, Vec<u8>)> = vec![
        (12, vec![3]),
        (13, vec![16]),
        (14, vec![0x10]),
        (15, vec![1]),
        (4, vec![4]),
        (16, u32::MAX.to_le_bytes().to_vec()),
        (16, 0u32.to_le_bytes().to_vec()),
        (20, 3u32.to_le_bytes().to_vec()),
    ];
    for (field, value) in forgeries {
        let mut b = base.clone();
        b[at + field..at + field + value.len()].copy_from_slice(&value);
        reseal(&mut b);
        let err = open(b).unwrap().block(0).unwrap_err();
        assert!(err.is_corruption(), "field {field} = {value:?}: {err:?}");
    }
}

/// A time or diff width code outside 0, 1, 2, 4, 8 (under a valid checksum) is corruption naming the
/// file and the code's own offset in it, whether the block is read in place or for a merge.
#[test]
fn a_forged_width_code_names_the_file_and_its_offset() {
    let (base, at) = one_block_file(&small());
    for (field, code) in [(12usize, 3u8), (12, 9), (12, u8::MAX), (13, 5), (13, 16)] {
        let mut b = base.clone();
        b[at + field] = code;
        reseal(&mut b);
        let batch = open(b).unwrap();
        for err in [batch.block(0).unwrap_err(), batch.block_for_merge(0).unwrap_err()] {
            match err {
                crate::Error::Corrupt { file, offset, detail } => {
                    assert_eq!(file, "f");
                    assert_eq!(offset, (at + field) as u64, "{detail}");
                    assert!(detail.contains(&format!("width {code}")), "{detail}");
                }
                e => panic!("field {field} = {code}: {e:?}"),
            }
        }
    }
}

/// A forged time base that carries a time past `u64::MAX` reads as a wrapped time (reads check the
/// checksum only) and fails the full structural check.
#[test]
fn a_forged_time_past_the_maximum_fails_verify() {
    let (mut b, at) = one_block_file(&small());
    b[at + 24..at + 32].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
    reseal(&mut b);
    let batch = open(b).unwrap();
    batch.for_key(&[2, 2], |_, _, _| {}).unwrap();
    assert!(batch.verify().unwrap_err().is_corruption());
}

/// A key that would widen the block's columns (a time or diff out of the block's range, a new key or
/// val width) is put in the next block when the widened block would pass the target: blocks stay within
/// the target but for one key's own data (a key never spans blocks).
#[test]
fn a_widening_key_starts_a_new_block() {
    let blob = MemBlob::new();
    let target = 4096;
    let mut updates: Vec<Owned> = (0..2000u32)
        .map(|n| (n.to_be_bytes()[1..].to_vec(), vec![0], 0, 1))
        .collect();
    updates.push((vec![0xFF, 0, 0, 0], vec![], 1 << 60, i64::MIN));
    updates.push((vec![0xFF, 0, 0, 0], vec![1, 2], 1 << 61, i64::MAX));
    updates.push((vec![0xFF, 0, 0, 1], vec![0], 0, 1));
    let batch = write_any_times(&blob, &updates, target, false);
    for i in 0..batch.block_count() {
        let len = batch.index_entry(i).unwrap().raw_len;
        assert!(len <= target, "block {i} of {}: {len} bytes", batch.block_count());
    }
    assert_eq!(read_all(&batch).unwrap(), updates);
}

proptest::proptest! {
    /// The writer's block cut: `Stats::fit_with_key` (a widest-columns bound, then the exact size) agrees
    /// with the exact size of the block with the key, at every target around it, whatever the block's
    /// widths (keys and vals of one width or mixed, times and diffs spread or not, several vals a key).
    #[test]
    fn the_block_cut_check_equals_the_exact_size(
        keys in proptest::collection::vec(
            (
                1usize..6,
                proptest::collection::vec(
                    (0usize..4, proptest::collection::vec((0u64..70_000, -3i64..3), 1..3)),
                    1..3,
                ),
            ),
            0..20,
        ),
        next in (1usize..6, 0usize..4, 0u64..70_000, -3i64..3),
    ) {
        let mut b = builder::BlockBuilder::default();
        b.reset(); // as the writer starts each block: offset arrays with their leading 0
        for (k, (key_len, vals)) in keys.iter().enumerate() {
            let key = vec![k as u8; *key_len];
            b.start_key(&key).unwrap();
            for (j, (val_len, updates)) in vals.iter().enumerate() {
                b.start_val(&vec![j as u8; *val_len]).unwrap();
                for &(t, d) in updates {
                    b.push_update(t, d);
                }
                b.close_val().unwrap();
            }
            b.close_key().unwrap();
        }
        let (key_len, val_len, time, diff) = next;
        let stats = b.stats();
        let exact = stats.with_key(key_len, val_len, time, diff).len();
        // Up to well past the widest-columns bound, so both of its answers are checked.
        for target in exact.saturating_sub(40)..exact + 2_000 {
            let fit = stats.fit_with_key(key_len, val_len, time, diff, target);
            proptest::prop_assert_eq!(fit != builder::Fit::Over, exact <= target, "target {}", target);
            if let builder::Fit::Exact(known) = fit {
                proptest::prop_assert_eq!(known.len, exact);
            }
        }
    }

    /// The writer's cut check after the first exact one: `BlockBuilder::grown` gives the exact size of the
    /// block with each next key of one val and one update, whenever it gives one, and gives one whenever
    /// the key leaves the layout as it is (keys and vals of the block's widths, the time and diff inside
    /// the block's ranges).
    #[test]
    fn a_grown_block_size_is_the_exact_size(
        keys in proptest::collection::vec((1usize..4, 0usize..3, 0u64..300, -2i64..3), 1..40),
    ) {
        let mut b = builder::BlockBuilder::default();
        b.reset();
        let mut known: Option<builder::KnownSize> = None;
        for (k, &(key_len, val_len, time, diff)) in keys.iter().enumerate() {
            let stats = b.stats();
            let exact = stats.with_key(key_len, val_len, time, diff).len();
            if let Some(prev) = known {
                let before = &keys[..k];
                // A column of one width so far that the key's would change.
                let fixed_other = |lens: Vec<usize>, len: usize| lens.iter().all(|&l| l == lens[0]) && lens[0] != len;
                let widens = fixed_other(before.iter().map(|x| x.0).collect(), key_len)
                    || fixed_other(before.iter().map(|x| x.1).collect(), val_len)
                    || !(before.iter().map(|x| x.2).min().unwrap()..=before.iter().map(|x| x.2).max().unwrap()).contains(&time)
                    || !(before.iter().map(|x| x.3).min().unwrap()..=before.iter().map(|x| x.3).max().unwrap()).contains(&diff);
                match b.grown(prev, key_len, val_len, time, diff) {
                    Some(grown) => proptest::prop_assert_eq!(grown.len, exact),
                    None => proptest::prop_assert!(widens, "key {} widens nothing", k),
                }
            }
            // The exact size with the key, as the writer learns it near the target (the widest bound
            // answers `Below` only when it equals the exact size).
            known = match stats.fit_with_key(key_len, val_len, time, diff, exact) {
                builder::Fit::Exact(known) => Some(known),
                builder::Fit::Below => None,
                builder::Fit::Over => {
                    return Err(proptest::test_runner::TestCaseError::fail("over at its own size"))
                }
            };
            if k > 0 {
                b.close_val().unwrap();
                b.close_key().unwrap();
            }
            // Keys increase: the key's first byte is its index, the rest zeros.
            let mut key = vec![0u8; key_len];
            key[0] = k as u8;
            b.start_key(&key).unwrap();
            b.start_val(&vec![7u8; val_len]).unwrap();
            b.push_update(time, diff);
        }
    }
}
