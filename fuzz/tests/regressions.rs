//! Inputs the fuzz targets found, kept as tests: regressions for fixed bugs, and `#[ignore]`d tests for open
//! ones (run them with `cargo test -- --ignored`).

use ddpersist::batch::format::FOOTER_BYTES;
use ddpersist::batch::{BatchFile, BatchWriter, Description, UpdateCursor};
use ddpersist::blob::{Blob, BlobBytes, MemBlob};
use ddpersist::wal::{FileLog, Log, WalRecovery};
use ddpersist_fuzz::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, recording the largest single allocation (for the allocation-bound tests).
struct Tracking;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator, whose contract is the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// A segment header plus records, checksums included, as `FileLog` writes them.
fn segment_bytes(first_lsn: u64, payloads: &[&[u8]]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"DDPWALSG");
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&first_lsn.to_le_bytes());
    b.extend_from_slice(&[0; 8]);
    for p in payloads {
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&(p.len() as u32).to_le_bytes());
        b.extend_from_slice(&0x4C50_4444u32.to_le_bytes());
        b.extend_from_slice(p);
    }
    repair_segment(&mut b);
    b
}

/// Regression (found by the `wal_segment` target): replaying a log whose only segment starts near
/// `u64::MAX` overflowed the LSN arithmetic in `wal::scan::scan`: a panic ("attempt to add with overflow")
/// in debug builds; in release builds the LSNs wrapped and appends continued at LSN 16. A segment name is
/// any 20-digit number, so a damaged or hand-edited WAL directory was enough. Replay must return
/// `Error::Corrupt`.
#[test]
fn wal_lsn_overflow_is_corruption_not_a_panic() {
    let first_lsn = u64::MAX - 4;
    let seg = segment_bytes(first_lsn, &[b"hello"]);
    // Through the fuzz check (which names a two-segment input's parts after their headers) ...
    let input = [&[TWO_SEGMENTS, 0, 0][..], &seg].concat();
    assert_eq!(segment_files(&input), vec![(first_lsn, seg.clone())]);
    let outcome = std::panic::catch_unwind(|| check_wal_segment(&input));
    assert!(outcome.is_ok(), "check_wal_segment panicked");
    // ... and directly: replay must refuse the log.
    let dir = scratch_dir();
    std::fs::write(dir.path().join(segment_name(first_lsn)), &seg).unwrap();
    let replayed = std::panic::catch_unwind(|| {
        let buf = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
        buf.replay(&mut |_, _| Ok(())).map(drop)
    });
    match replayed {
        Ok(Err(e)) => assert!(e.is_corruption(), "{e}"),
        Ok(Ok(())) => panic!("replay accepted a log whose LSNs overflow u64"),
        Err(_) => panic!("replay panicked"),
    }
}

/// Found by the `wal_segment` target: a log that replays fine but ends near `u64::MAX` — here a lone
/// segment named `18446744073709551615.wal` that is shorter than its header (replay treats it as a segment
/// whose creation crashed, removes it, and creates a fresh one at the same LSN), or a header-only segment
/// named a few bytes below `u64::MAX` — makes the next `FileLog::append` overflow `next_lsn`
/// (`wal/file.rs`, `state.next_lsn += RECORD_HEADER_BYTES + len`): a panic in debug builds, and in release
/// builds the LSN wraps, the record lands in a segment whose name says it starts near `u64::MAX`, and the
/// next replay rejects the log as corrupt. `append` (or replay) should return an error instead.
#[test]
fn wal_append_at_the_end_of_the_lsn_space_is_an_error_not_a_panic() {
    // The fuzzer's input, as found: two-segment mode, one 24-byte part named after the LSN it claims.
    let found: &[u8] =
        b"\xd2\xf9\x00DDPAWLS\x19\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    assert_eq!(segment_files(found)[0].0, u64::MAX);
    assert!(
        std::panic::catch_unwind(|| check_wal_segment(found)).is_ok(),
        "check_wal_segment panicked"
    );
    // Directly: a valid header-only segment a few bytes short of the end of the LSN space.
    let first_lsn = u64::MAX - 4;
    let dir = scratch_dir();
    std::fs::write(
        dir.path().join(segment_name(first_lsn)),
        segment_bytes(first_lsn, &[]),
    )
    .unwrap();
    let appended = std::panic::catch_unwind(|| {
        let buf = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
        buf.replay(&mut |_, _| Ok(()))?;
        let (_, end) = buf.append(b"payload")?;
        buf.sync(end)
    });
    match appended {
        Err(_) => panic!("append panicked"),
        Ok(Err(_)) => {} // refused: fine
        Ok(Ok(())) => {
            // Accepted: then the record must come back.
            let buf = FileLog::open(dir.path(), 1 << 20, WalRecovery::Strict).unwrap();
            let mut got = Vec::new();
            buf.replay(&mut |_, p| {
                got.push(p.to_vec());
                Ok(())
            })
            .expect("a log that accepted an append must replay");
            assert_eq!(got, vec![b"payload".to_vec()]);
        }
    }
}

/// Found by the `batch_file` target (libFuzzer "out-of-memory (malloc(4278190147))"): an lz4 block's
/// `raw_len` comes from the block index and is trusted as the size of the decompression buffer
/// (`lz4_flex::block::decompress(stored, raw_len)` in `BatchFile::block` allocates it zeroed up front). A
/// file whose checksums are valid but whose index claims a raw length near 4 GiB for a block of a few
/// hundred bytes makes every read of that block allocate ~4 GiB before failing with `Corrupt` — an abort
/// where memory cannot be overcommitted. lz4 expands at most ~255×, so `raw_len` could be bounded by
/// `stored_len` (or by the block size limit) at open.
#[test]
fn lz4_raw_len_does_not_size_a_huge_allocation() {
    let blob = MemBlob::new();
    let desc = Description {
        lower: 0,
        upper: 10,
        since: 0,
    };
    let mut w = BatchWriter::new(blob.create("x.batch").unwrap(), desc, 64 << 10)
        .unwrap()
        .with_compression(true);
    for k in 0..200u32 {
        w.push(format!("key-{k:06}").as_bytes(), b"vvvvvvvv", 1, 1)
            .unwrap();
    }
    w.finish().unwrap();
    let mut bytes = blob.get("x.batch").unwrap().unwrap().to_vec();
    // Block 0's index entry: `raw_len` at +20, codec at +44 (1 = lz4).
    let footer_at = bytes.len() - FOOTER_BYTES;
    let index_at = u64::from_le_bytes(bytes[footer_at + 64..footer_at + 72].try_into().unwrap()) as usize;
    assert_eq!(bytes[index_at + 44], 1, "the block did not compress");
    bytes[index_at + 20..index_at + 24].copy_from_slice(&0xFF00_0000u32.to_le_bytes());
    repair_batch(&mut bytes);
    let len = bytes.len();
    LARGEST.store(0, Ordering::Relaxed);
    let batch = match BatchFile::open("x.batch", BlobBytes::Heap(bytes.into())) {
        // Refused at open (the claim is checked against the stored length): nothing allocated.
        Err(e) => {
            assert!(e.is_corruption(), "{e}");
            assert!(LARGEST.load(Ordering::Relaxed) < 64 << 20);
            return;
        }
        Ok(batch) => batch,
    };
    let read = UpdateCursor::new(&batch).map(drop);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(read.unwrap_err().is_corruption());
    assert!(
        largest < 64 << 20,
        "reading a {len}-byte batch allocated {largest} bytes at once"
    );
}
