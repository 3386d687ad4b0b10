//! Damage to bytes the store made durable is reported, never mistaken for a torn write or passed over:
//! a flipped bit in an acknowledged WAL record fails the open (naming file and offset) and `inspect
//! verify`, while a genuinely torn, never acknowledged tail is still cut and reported.

use crate::common;

use common::snapshot_keys;
use ddpersist::wal::CutKind;
use ddpersist::wal::WalRecovery;
use ddpersist::{Error, Options, Store, StreamOptions};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECORD_MAGIC: [u8; 4] = 0x4C50_4444u32.to_le_bytes();

fn only_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segs.pop().unwrap()
}

/// Offsets of the update records in a segment (found by their magic).
fn record_starts(bytes: &[u8]) -> Vec<usize> {
    (32 + 12..bytes.len().saturating_sub(4))
        .filter(|&p| bytes[p..p + 4] == RECORD_MAGIC)
        .map(|p| p - 12)
        .collect()
}

/// A store with two acknowledged writes of stream "s", "k1" then "k2", nothing sealed; closed.
fn two_acknowledged_writes(dir: &Path) {
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    store.write_bytes("s", [(&b"k1"[..], &b"v"[..], 5, 1)]).unwrap();
    store.write_bytes("s", [(&b"k2"[..], &b"v"[..], 5, 1)]).unwrap();
}

fn verify_exit(dir: &Path) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg("verify")
        .arg(dir)
        .output()
        .unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_flipped_bit_in_the_last_acknowledged_wal_record_is_corruption_not_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    two_acknowledged_writes(dir);
    let seg = only_segment(dir);
    let mut bytes = fs::read(&seg).unwrap();
    let starts = record_starts(&bytes);
    assert_eq!(starts.len(), 2, "{starts:?}");
    let last = starts[1];
    bytes[last + 20] ^= 0x04; // one bit of the payload of k2's record
    fs::write(&seg, &bytes).unwrap();

    let (code, err) = verify_exit(dir);
    assert_ne!(
        code,
        Some(0),
        "inspect verify passed a damaged acknowledged record: {err}"
    );
    assert!(
        err.contains(&format!("offset {last}")) || err.contains(&last.to_string()),
        "{err}"
    );

    match Store::open(dir) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(".wal"), "{file}");
            assert_eq!(offset, last as u64);
        }
        Err(e) => panic!("expected corruption, got {e}"),
        Ok(store) => panic!(
            "opened, dropping an acknowledged write: {:?}, keys {:?}",
            store.recovery_report().torn_tail,
            snapshot_keys(&store, "s")
        ),
    }
    assert_eq!(fs::read(&seg).unwrap(), bytes, "a failed open changes nothing");

    // Point-in-time recovery opens, cutting the damaged record, and says it was acknowledged data.
    let options = Options {
        wal_recovery: WalRecovery::PointInTime,
        ..Options::default()
    };
    let store = Store::open_with(dir, options).unwrap();
    let torn = store.recovery_report().torn_tail.clone().unwrap();
    assert_eq!(torn.offset, last as u64);
    assert_eq!(torn.kind, CutKind::DataLoss);
    assert_eq!(snapshot_keys(&store, "s"), vec![b"k1".to_vec()]);
}

#[test]
fn a_torn_never_acknowledged_flush_is_still_cut() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    two_acknowledged_writes(dir);
    let seg = only_segment(dir);
    let bytes = fs::read(&seg).unwrap();
    let starts = record_starts(&bytes);
    // A crash in the middle of writing k2's flush: its record is cut short and nothing after it was
    // written (in particular no sync mark: its fdatasync never returned).
    let cut = starts[1] + 20;
    fs::write(&seg, &bytes[..cut]).unwrap();
    let (code, err) = verify_exit(dir);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("torn tail"), "{err}");
    let store = Store::open(dir).unwrap();
    let torn = store.recovery_report().torn_tail.clone().unwrap();
    assert_eq!(torn.offset, starts[1] as u64);
    assert_eq!(torn.kind, CutKind::Unacknowledged);
    assert_eq!(snapshot_keys(&store, "s"), vec![b"k1".to_vec()]);
    drop(store);
    // Garbage appended past the acknowledged records (a flush whose pages were half written) is cut too.
    let mut bytes = fs::read(&seg).unwrap();
    let len = bytes.len();
    bytes.extend_from_slice(&[0xAB; 100]);
    fs::write(&seg, &bytes).unwrap();
    let store = Store::open(dir).unwrap();
    assert_eq!(
        store.recovery_report().torn_tail.clone().unwrap().offset,
        len as u64
    );
    assert_eq!(snapshot_keys(&store, "s"), vec![b"k1".to_vec()]);
}

/// A sealed store whose one batch file has several blocks of sizes that are not multiples of 8, so that
/// zero padding lies between blocks and before the index. Returns the batch file's path.
fn store_with_padded_batch(dir: &Path) -> PathBuf {
    padded_store(dir).1
}

/// [`store_with_padded_batch`], with the store still open.
fn padded_store(dir: &Path) -> (Store, PathBuf) {
    let store = Store::open_with(
        dir,
        Options {
            block_target_bytes: 256,
            compaction_threads: 0,
            ..Options::default()
        },
    )
    .unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let keys: Vec<String> = (0..200).map(|i| format!("key{i:03}")).collect();
    store
        .write_bytes("s", keys.iter().map(|k| (k.as_bytes(), &b"oddly"[..], 1, 1)))
        .unwrap();
    let file = store.seal("s", 2).unwrap().file.unwrap();
    (store, dir.join(file))
}

/// The padding gaps of a batch file: between blocks, and between the last block and the index.
fn padding(bytes: &[u8]) -> Vec<std::ops::Range<usize>> {
    let blob = ddpersist::blob::BlobBytes::Heap(bytes.to_vec().into());
    let b = ddpersist::batch::BatchFile::open("batch", blob).unwrap();
    let mut gaps = Vec::new();
    let mut end = 32;
    for i in 0..b.block_count() {
        let e = b.index_entry(i).unwrap();
        gaps.push(end..e.offset as usize);
        end = (e.offset + e.stored_len as u64) as usize;
    }
    gaps.push(end..b.footer().index_offset as usize);
    gaps.into_iter().filter(|g| !g.is_empty()).collect()
}

#[test]
fn a_flipped_bit_in_batch_padding_fails_the_scrub() {
    let tmp = tempfile::tempdir().unwrap();
    let path = store_with_padded_batch(tmp.path());
    let mut bytes = fs::read(&path).unwrap();
    let gaps = padding(&bytes);
    assert!(gaps.len() >= 2, "no padding to damage: {gaps:?}");
    let (code, err) = verify_exit(tmp.path());
    assert_eq!(code, Some(0), "{err}");
    for gap in gaps {
        let at = gap.end - 1;
        bytes[at] ^= 0x10;
        let blob = ddpersist::blob::BlobBytes::Heap(bytes.clone().into());
        let name = path.display().to_string();
        let b = ddpersist::batch::BatchFile::open(&name, blob).unwrap();
        match b.verify() {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!((file, offset), (name.clone(), at as u64));
            }
            other => panic!("padding byte {at} flipped: verify says {other:?}"),
        }
        fs::write(&path, &bytes).unwrap();
        let (code, err) = verify_exit(tmp.path());
        assert_ne!(
            code,
            Some(0),
            "inspect verify passed a flipped padding byte at {at}"
        );
        assert!(err.contains(&format!("offset {at}")), "{err}");
        bytes[at] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
    }
}

/// A tiny deterministic generator (xorshift).
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_batch_file_rewritten_in_place_under_a_running_store_never_panics_a_read() {
    for seed in 1..=40u64 {
        let tmp = tempfile::tempdir().unwrap();
        // The same store throughout (reopening it in a test binary whose other tests spawn processes can
        // race with a child that briefly shares the LOCK file's descriptor between fork and exec).
        let (store, path) = padded_store(tmp.path());
        let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key{i:03}").into_bytes()).collect();
        // First reads: every block is verified and (for raw blocks) served from the map from now on.
        for k in &keys {
            assert_eq!(store.get_bytes("s", k, 1).unwrap().len(), 1);
        }
        let snapshot = store.snapshot("s").unwrap();
        // Another program rewrites the blocks' bytes in place (same length: the map stays valid).
        let mut bytes = fs::read(&path).unwrap();
        let blocks_end = {
            let blob = ddpersist::blob::BlobBytes::Heap(bytes.clone().into());
            let b = ddpersist::batch::BatchFile::open("b", blob).unwrap();
            b.footer().index_offset as usize
        };
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for _ in 0..(1 + seed % 8) * 16 {
            let at = 32 + (next(&mut rng) as usize) % (blocks_end - 32);
            bytes[at] = match seed % 3 {
                0 => 0xFF,
                1 => 0,
                _ => next(&mut rng) as u8,
            };
        }
        {
            use std::io::{Seek, SeekFrom, Write};
            let mut f = fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.seek(SeekFrom::Start(0)).unwrap();
            f.write_all(&bytes).unwrap();
        }
        // Reads may fail or see the changed bytes, but never panic.
        for k in &keys {
            let _ = store.get_bytes("s", k, 1);
            let _ = store.first_time_bytes("s", k);
        }
        let _ = store.snapshot("s").and_then(|s| s.to_vec());
        let _ = snapshot.to_vec();
    }
}

/// A store with one durable stream "s" (number 0) whose WAL is only a version 5 segment of `payloads`.
fn store_with_records(dir: &Path, payloads: &[&[u8]]) -> PathBuf {
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    drop(store);
    fs::remove_file(only_segment(dir)).unwrap();
    let path = dir.join("wal").join(format!("{:020}.wal", 0));
    fs::write(&path, common::wal_segment_bytes(5, 0, payloads)).unwrap();
    path
}

/// A fixed-width record (tag 1) of one update to stream `stream_no`.
fn record(stream_no: u32, key: &[u8], time: u64, diff: i64) -> Vec<u8> {
    let mut p = vec![1u8];
    p.extend_from_slice(&stream_no.to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(&time.to_le_bytes());
    p.extend_from_slice(&diff.to_le_bytes());
    p.extend_from_slice(&(key.len() as u32).to_le_bytes());
    p.extend_from_slice(&1u32.to_le_bytes());
    p.extend_from_slice(key);
    p.push(b'v');
    p
}

/// A record whose checksum holds but whose contents `write` never logs (an update at the closed frontier,
/// a zero diff, an unknown stream, a bad payload) fails the open, naming the segment file and the offset
/// of the bad bytes in it — never replayed, never cut as a torn tail.
#[test]
fn checksummed_wal_records_write_never_logs_are_corruption_at_their_file_and_offset() {
    let good = record(0, b"k", 3, 1);
    // Segment header 32 bytes, then each record's 16-byte header before its payload.
    let second_payload = 32 + 16 + good.len() as u64 + 16;
    let key_at = 9 + 24;
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (record(0, b"k", u64::MAX, 1), key_at, "closed frontier"),
        (record(0, b"k", 5, 0), key_at, "diff 0"),
        (record(7, b"k", 5, 1), 1, "unknown stream number 7"),
        (vec![9, 0, 0], 0, "unknown record tag 9"),
    ];
    for (payload, at, what) in cases {
        let dir = tempfile::tempdir().unwrap();
        let segment = store_with_records(dir.path(), &[&good, &payload]);
        match Store::open(dir.path()) {
            Err(Error::Corrupt { file, offset, detail }) => {
                assert_eq!(Path::new(&file), segment, "{what}");
                assert_eq!(offset, second_payload + at, "{what}: {detail}");
                assert!(detail.contains(what), "{what}: {detail}");
                assert!(detail.contains("LSN"), "{what}: {detail}");
            }
            other => panic!("{what}: expected Corrupt, got {:?}", other.err()),
        }
    }
}

/// A key filter damaged between runs: the store opens (an open reads no key filter), every lookup that
/// uses the filter fails naming the file and the filter's checksum offset (never a wrong answer), a
/// snapshot (which uses no filter) still reads every update, and `inspect verify` reports the damage.
#[test]
fn a_damaged_key_filter_fails_lookups_not_the_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let store = Store::open(dir).unwrap();
    store.create_stream("s", StreamOptions::default()).unwrap();
    let keys: Vec<Vec<u8>> = (0..100).map(|i| format!("k{i:03}").into_bytes()).collect();
    store
        .write_bytes("s", keys.iter().map(|k| (&k[..], &b"v"[..], 1, 1)))
        .unwrap();
    store.seal("s", 2).unwrap();
    drop(store);
    let files = common::batch_files(dir);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    let bytes = fs::read(path).unwrap();
    let file =
        ddpersist::batch::BatchFile::open("x", ddpersist::blob::BlobBytes::Heap(bytes.into())).unwrap();
    let (at, len) = (file.footer().filter_offset, file.footer().filter_len);
    assert!(len > 24, "the batch has a key filter");
    drop(file);
    common::flip_byte(path, at + 20);

    let store = Store::open(dir).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for _ in 0..2 {
        match store.get_bytes("s", b"k005", 2) {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert!(file.ends_with(&name), "{file} is not {name}");
                assert_eq!(offset, at + len - 8, "the filter's checksum");
            }
            other => panic!("expected the filter's damage, got {other:?}"),
        }
    }
    assert_eq!(snapshot_keys(&store, "s"), keys);
    drop(store);
    let (code, err) = verify_exit(dir);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("key filter"), "{err}");
}

/// A batch file whose bytes are another batch's (a misdirected write, a file restored under the wrong
/// name): the manifest records each batch's size and fingerprint (FORMAT.md §3), so the open fails
/// naming the file, as does `inspect verify`, whether the other batch's size differs or not. (Found by
/// an adversarial test: a batch of the same interval and count was served as the stream's data.)
#[test]
fn another_batch_files_bytes_in_a_batchs_place_are_corruption() {
    for (a_key, b_key) in [("alice", "bob"), ("alic", "bobb")] {
        let dir = tempfile::tempdir().unwrap();
        let names = {
            let store = Store::open(dir.path()).unwrap();
            for (id, key, val) in [("a", a_key, 1u64), ("b", b_key, 666)] {
                store.create_stream(id, StreamOptions::default()).unwrap();
                store.write(id, &[(key.to_string(), val, 0, 1)]).unwrap();
                store.seal(id, 1).unwrap();
            }
            let manifest = store.manifest();
            let name = |id: &str| {
                let file_no = manifest.stream(id).unwrap().batches[0].file_no;
                dir.path().join(ddpersist::batch::batch_file_name(file_no))
            };
            (name("a"), name("b"))
        };
        let same_size = fs::metadata(&names.0).unwrap().len() == fs::metadata(&names.1).unwrap().len();
        assert_eq!(
            same_size,
            a_key.len() == b_key.len(),
            "{a_key}: the sizes differ or not, as meant"
        );
        fs::copy(&names.1, &names.0).unwrap();
        let err = Store::open(dir.path()).err().expect("the open fails");
        assert!(err.is_corruption(), "{err}");
        let file = names.0.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.to_string().contains(&file), "{err} names {file}");
        let (code, stderr) = verify_exit(dir.path());
        assert_eq!(code, Some(1), "inspect verify: {stderr}");
    }
}
