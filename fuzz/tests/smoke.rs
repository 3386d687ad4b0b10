//! Runs every fuzz check on stable Rust over deterministic inputs: valid encodings (batches, manifests,
//! WAL records and segments, codec values), mutations of them (bit flips, overwrites with boundary values,
//! truncations, cuts, insertions, duplications), and plain random bytes.
//!
//! `SMOKE_ITERS` scales the number of inputs (default 1 = a few thousand per target). With
//! `DDP_FUZZ_WRITE_CORPUS=1` the valid inputs are also written to `corpus/<target>/` as seeds for
//! `cargo fuzz run`.

use ddpersist::batch::{BatchWriter, Description};
use ddpersist::blob::{Blob, MemBlob};
use ddpersist::codec::Codec;
use ddpersist::version::{BatchMeta, Manifest, ManifestEdit, StreamMeta};
use ddpersist::wal::record::{RecordEncoder, RecordFormat};
use ddpersist::wal::{FileLog, Log, WalRecovery};
use ddpersist_fuzz::*;
use std::path::PathBuf;

fn iters() -> usize {
    std::env::var("SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Boundary values to overwrite integer fields with.
const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    7,
    8,
    16,
    32,
    0x7F,
    0xFFFF,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    u64::MAX,
];

/// One to four random mutations of `input`.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..1 + rng.index(4) {
        let len = b.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.index(len);
                b[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.index(len);
                b[i] = [0, 0xFF, rng.next() as u8][rng.index(3)];
            }
            2 => b.truncate(rng.index(len + 1)),
            3 if len > 0 => {
                let start = rng.index(len);
                let end = (start + 1 + rng.index(16)).min(len);
                b.drain(start..end);
            }
            4 => {
                let at = rng.index(len + 1);
                let extra = rng.bytes(16);
                b.splice(at..at, extra);
            }
            5 if len > 0 => {
                let start = rng.index(len);
                let end = (start + 1 + rng.index(64)).min(len);
                let chunk = b[start..end].to_vec();
                let at = rng.index(len + 1);
                b.splice(at..at, chunk);
            }
            6 | 7 if len >= 4 => {
                // An integer field (aligned, as every field in these formats is) set to a boundary value.
                let width = if rng.chance(2) && len >= 8 { 8 } else { 4 };
                let at = rng.index((len - width) / 4 + 1) * 4;
                let v = INTERESTING[rng.index(INTERESTING.len())]
                    .wrapping_add([0, 0, 1, u64::MAX][rng.index(4)])
                    .to_le_bytes();
                b[at..at + width].copy_from_slice(&v[..width]);
            }
            _ => b.extend(rng.bytes(8)),
        }
    }
    b
}

/// Runs `check` on `valid`, on mutations of it, and on random bytes; optionally saves `valid` as seeds.
fn drive(target: &str, seeds: Vec<Vec<u8>>, mutations_per_seed: usize, random: usize, check: fn(&[u8])) {
    let mut rng = Rng(0xD0D0 ^ target.len() as u64);
    if std::env::var_os("DDP_FUZZ_WRITE_CORPUS").is_some() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i:04}")), s).unwrap();
        }
    }
    let mut runs = 0;
    for seed in &seeds {
        check(seed);
        for _ in 0..mutations_per_seed {
            check(&mutate(&mut rng, seed));
            runs += 1;
        }
    }
    for _ in 0..random {
        let mut b = rng.bytes(256);
        // Some random inputs start like a real file, to get past the magic.
        if rng.chance(2) && !seeds.is_empty() {
            let seed = &seeds[rng.index(seeds.len())];
            let keep = rng.index(seed.len().min(64) + 1);
            b.splice(0..0, seed[..keep].iter().copied());
        }
        check(&b);
        runs += 1;
    }
    eprintln!("{target}: {} seeds, {runs} mutated or random inputs", seeds.len());
}

// ---------------------------------------------------------------------------------------------------------
// Valid inputs
// ---------------------------------------------------------------------------------------------------------

fn batch_seed(rng: &mut Rng) -> Vec<u8> {
    // One seed in four spans far apart times (time columns of 2 to 8 bytes, a large base).
    let (lower, upper) = match rng.chance(4) {
        true => (rng.below(1 << 40), u64::MAX - rng.below(4)),
        false => {
            let lower = rng.below(4);
            (lower, lower + 1 + rng.below(6))
        }
    };
    let mut updates = std::collections::BTreeMap::new();
    // One seed in three has keys and vals of one width each: blocks that leave out their offsets.
    let fixed = rng.chance(3);
    // One seed in eight has enough keys for several index partitions at a small block target.
    let count = if rng.chance(8) {
        65 + rng.index(200)
    } else {
        rng.index(40)
    };
    for _ in 0..count {
        let max_key = if rng.chance(8) { 200 } else { 3 };
        let (mut key, mut val) = (rng.small_bytes(max_key), rng.small_bytes(3));
        if fixed {
            key.resize(3, 0);
            val.resize(2, 0);
        }
        let time = lower + rng.below(upper - lower);
        let diff = [-2i64, -1, 1, 2, i64::MAX, i64::MIN][rng.index(6)];
        updates.insert((key, val, time), diff);
    }
    let blob = MemBlob::new();
    let target = [1u32, 16, 64, 512, 64 << 10][rng.index(5)];
    let since = rng.below(lower + 1);
    let desc = Description { lower, upper, since };
    let mut w = BatchWriter::new(blob.create("seed.batch").unwrap(), desc, target).unwrap();
    if rng.chance(2) {
        w = w.with_filter(updates.len() as u64, [1, 10][rng.index(2)]);
    }
    w = w.with_compression(rng.chance(3));
    for ((k, v, t), d) in &updates {
        w.push(k, v, *t, *d).unwrap();
    }
    w.finish().unwrap();
    blob.get("seed.batch").unwrap().unwrap().to_vec()
}

fn manifest_seed(rng: &mut Rng) -> Vec<u8> {
    let mut m = Manifest::new(rng.below(1 << 32) as u32, rng.below(100), 0, 0);
    let meta = |m: &mut Manifest, rng: &mut Rng, lower: u64, upper: u64| {
        let b = BatchMeta {
            file_no: m.next_file_no,
            level: rng.below(2) as u32,
            lower,
            upper,
            since: rng.below(lower + 1),
            update_count: rng.below(1000),
            size_bytes: rng.below(1 << 20),
            fingerprint: rng.below(1 << 32) as u32,
        };
        m.next_file_no += 1 + rng.below(3);
        b
    };
    for s in 0..rng.index(4) {
        let mut upper = 0;
        let mut batches = Vec::new();
        for _ in 0..rng.index(4) {
            let lower = upper + rng.below(3);
            upper = lower + rng.below(5);
            batches.push(meta(&mut m, rng, lower, upper));
        }
        let upper = upper + rng.below(3);
        let mut spills = Vec::new();
        let mut lower = upper;
        for _ in 0..rng.index(3) {
            lower += rng.below(3);
            let spill_upper = lower + rng.below(6);
            spills.push(meta(&mut m, rng, lower, spill_upper));
        }
        let id = if rng.chance(4) {
            format!("stream-é-{s}")
        } else {
            format!("s{s}")
        };
        m.push_stream(std::sync::Arc::new(StreamMeta {
            stream_no: m.next_stream_no,
            id,
            upper,
            since: rng.below(upper + 1),
            durable: rng.chance(2),
            finished: rng.chance(2),
            batches,
            spills,
            spilled_lsn: [0, rng.below(1 << 20)][rng.index(2)],
            types: if rng.chance(2) {
                String::new()
            } else {
                format!("key u64, val Vec<u8> {s}")
            },
        }));
        m.next_stream_no += 1 + rng.below(2) as u32;
    }
    m.encode()
}

fn record_seed(rng: &mut Rng) -> Vec<u8> {
    // Sometimes a seal record (tag 3).
    if rng.chance(6) {
        let upper = [rng.below(10), rng.next(), u64::MAX][rng.index(3)];
        return ddpersist::wal::record::encode_seal(rng.below(5) as u32, upper).to_vec();
    }
    let mut buf = Vec::new();
    // Both tags; varint records (tag 2, what the store writes) with times and diffs of every size.
    let format = [RecordFormat::Fixed, RecordFormat::Varint][rng.index(2)];
    let mut encoder = RecordEncoder::begin(&mut buf, rng.below(5) as u32, format);
    for _ in 0..rng.index(6) {
        let (k, v) = (rng.small_bytes(4), rng.small_bytes(4));
        let (time, diff) = match rng.index(3) {
            0 => (rng.below(10), rng.below(5) as i64 - 2),
            1 => (rng.next(), rng.next() as i64),
            _ => (u64::MAX - rng.below(3), [i64::MIN, i64::MAX, 0][rng.index(3)]),
        };
        encoder.push(&mut buf, (&k, &v, time, diff));
    }
    encoder.finish(&mut buf);
    buf
}

/// WAL segments written by `FileLog` itself: one segment, or two after a rollover, as an input for
/// `check_wal_segment`.
fn segment_seed(rng: &mut Rng) -> Vec<u8> {
    let dir = scratch_dir();
    let two = rng.chance(2);
    let segment_bytes = if two { 64 + rng.below(200) } else { 1 << 20 };
    let buf = FileLog::open(dir.path(), segment_bytes, WalRecovery::Strict).unwrap();
    buf.replay(&mut |_, _| Ok(())).unwrap();
    for _ in 0..rng.index(8) {
        let payload = if rng.chance(2) {
            record_seed(rng)
        } else {
            rng.bytes(40)
        };
        let (_, end) = buf.append(&payload).unwrap();
        if rng.chance(2) {
            buf.sync(end).unwrap();
        }
    }
    let (_, end) = buf.append(b"last").unwrap();
    buf.sync(end).unwrap();
    drop(buf);
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    if two && segments.len() >= 2 {
        // The last two segments (each named after its header by `segment_files`).
        let a = std::fs::read(&segments[segments.len() - 2]).unwrap();
        let b = std::fs::read(&segments[segments.len() - 1]).unwrap();
        let split = (a.len() as u16).to_le_bytes();
        [&[TWO_SEGMENTS, split[0], split[1]][..], &a, &b].concat()
    } else {
        std::fs::read(&segments[0]).unwrap()
    }
}

fn codec_seed(rng: &mut Rng) -> Vec<u8> {
    let one = |rng: &mut Rng| -> Vec<u8> {
        match rng.below(9) {
            0 => INTERESTING[rng.index(INTERESTING.len())].to_bytes(),
            1 => (rng.next() as i64 >> rng.below(64)).to_bytes(),
            2 => String::from_utf8_lossy(&rng.small_bytes(6))
                .into_owned()
                .to_bytes(),
            3 => rng.small_bytes(6).to_bytes(),
            4 => (
                String::from_utf8_lossy(&rng.small_bytes(4)).into_owned(),
                rng.next() as u32,
            )
                .to_bytes(),
            6 => fuzz_record(rng).to_bytes(),
            7 => (fuzz_kind(rng), (!rng.chance(3)).then(|| fuzz_record(rng))).to_bytes(),
            _ => (!rng.chance(3)).then(|| rng.small_bytes(4)).to_bytes(),
        }
    };
    let (a, b) = (one(rng), one(rng));
    [&[a.len() as u8][..], &a, &b].concat()
}

fn small_string(rng: &mut Rng) -> String {
    String::from_utf8_lossy(&rng.small_bytes(4)).into_owned()
}

fn fuzz_kind(rng: &mut Rng) -> FuzzKind {
    match rng.below(3) {
        0 => FuzzKind::A,
        1 => FuzzKind::B(rng.next() as i16 >> rng.below(16)),
        _ => FuzzKind::C {
            x: rng.small_bytes(3),
            y: rng.chance(2),
        },
    }
}

fn fuzz_record(rng: &mut Rng) -> FuzzRecord {
    let tags = (0..rng.below(3))
        .map(|_| (!rng.chance(3)).then(|| ['a', '\0', 'é', char::MAX][rng.index(4)]))
        .collect();
    FuzzRecord {
        id: rng.below(3) as u32,
        name: small_string(rng),
        tags,
        kind: fuzz_kind(rng),
    }
}

fn seeds(n: usize, mut f: impl FnMut(&mut Rng) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut rng = Rng(42);
    (0..n).map(|_| f(&mut rng)).collect()
}

// ---------------------------------------------------------------------------------------------------------
// The smoke tests
// ---------------------------------------------------------------------------------------------------------

#[test]
fn batch_file() {
    drive(
        "batch_file",
        seeds(40 * iters(), batch_seed),
        60,
        500 * iters(),
        check_batch_file,
    );
}

/// The batch files of fixture `tests/fixtures/<name>` (written by an earlier release), sorted.
fn fixture_batches(name: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "batch"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    seeds.sort();
    seeds
}

/// Batch files of format version 1 (full-width columns), which stores written before format 2 hold: the
/// files of the fixture `tests/fixtures/batch_v1` (written by that release) as seeds.
#[test]
fn batch_file_version_1() {
    let seeds = fixture_batches("batch_v1");
    assert_eq!(seeds.len(), 2, "the fixture's batch files");
    drive("batch_file_v1", seeds, 20 * iters(), 0, check_batch_file);
}

/// Batch files of format version 2 (no index partitions: the whole index checked at open), which stores
/// written before format 3 hold: the fixture `tests/fixtures/batch_v2`'s files as seeds.
#[test]
fn batch_file_version_2() {
    let seeds = fixture_batches("batch_v2");
    assert_eq!(seeds.len(), 4, "the fixture's batch files");
    drive("batch_file_v2", seeds, 20 * iters(), 0, check_batch_file);
}

#[test]
fn manifest() {
    drive(
        "manifest",
        seeds(40 * iters(), manifest_seed),
        60,
        500 * iters(),
        check_manifest,
    );
}

/// Manifest edits: each seed the edit from a random manifest to a changed copy of it.
fn manifest_edit_seed(rng: &mut Rng) -> Vec<u8> {
    let old = Manifest::decode(&manifest_seed(rng), "M").unwrap();
    let mut new = old.clone();
    new.generation += 1;
    if !new.streams.is_empty() && rng.chance(2) {
        new.streams.remove(rng.index(new.streams.len()));
    }
    for s in new.streams.iter_mut() {
        if rng.chance(2) {
            continue;
        }
        let s = std::sync::Arc::make_mut(s);
        s.upper += 1 + rng.below(3);
        s.spills.clear();
        s.finished = rng.chance(2);
    }
    ManifestEdit::between(&old, &new).encode()
}

#[test]
fn manifest_edit() {
    drive(
        "manifest_edit",
        seeds(40 * iters(), manifest_edit_seed),
        60,
        500 * iters(),
        check_manifest_edit,
    );
}

#[test]
fn wal_record() {
    drive(
        "wal_record",
        seeds(60 * iters(), record_seed),
        50,
        1000 * iters(),
        check_wal_record,
    );
}

#[test]
fn wal_segment() {
    drive(
        "wal_segment",
        seeds(40 * iters(), segment_seed),
        40,
        300 * iters(),
        check_wal_segment,
    );
}

#[test]
fn wal_segment_of_a_header_with_bad_bytes() {
    // What a power loss while creating the only segment can leave (its size, not its bytes): cut whole.
    check_wal_segment(&[0u8; 32]);
    check_wal_segment(&[0xA5u8; 32]);
}

#[test]
fn codec() {
    drive(
        "codec",
        seeds(200 * iters(), codec_seed),
        20,
        2000 * iters(),
        check_codec,
    );
}

/// The seeds themselves must pass the deep checks (they are valid): guards against a check that
/// silently accepts everything by failing early.
#[test]
fn valid_inputs_decode_and_filter_has_no_false_negatives() {
    let mut rng = Rng(7);
    for _ in 0..200 {
        let b = batch_seed(&mut rng);
        let batch =
            ddpersist::batch::BatchFile::open("b", ddpersist::blob::BlobBytes::Heap(b.into())).unwrap();
        batch.verify().unwrap();
        // Batches the writer wrote: the key filter has no false negatives.
        let mut c = ddpersist::batch::UpdateCursor::new(&batch).unwrap();
        while let Some((k, ..)) = c.get() {
            assert!(batch.may_contain(k).unwrap(), "filter rules out {k:?}");
            c.step().unwrap();
        }
        assert!(Manifest::decode(&manifest_seed(&mut rng), "M").is_ok());
        assert!(ddpersist::wal::record::decode(&record_seed(&mut rng), "r").is_ok());
        let r = fuzz_record(&mut rng);
        assert_eq!(FuzzRecord::decode(&r.to_bytes()).unwrap(), r);
    }
}
