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
//!
//! One module per target's check (`batch_file`, `manifest` for `manifest` and `manifest_edit`,
//! `wal_record`, `wal_segment`, `codec`), its public items re-exported here; `store_model` is the
//! whole-store target. This file keeps what they share: little-endian field access, the error kinds a
//! decoder may return, the switch for known bugs, scratch directories, and the tests' generator [`Rng`].

mod batch_file;
mod codec;
mod manifest;
pub mod store_model;
mod wal_record;
mod wal_segment;

pub use batch_file::{check_batch_file, repair_batch};
pub use codec::{check_codec, FuzzKind, FuzzRecord};
pub use manifest::{check_manifest, check_manifest_edit, repair_manifest};
pub use store_model::check_store_model;
pub use wal_record::check_wal_record;
pub use wal_segment::{check_wal_segment, repair_segment, segment_files, segment_name, TWO_SEGMENTS};

use ddpersist::Error;

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

/// Whether to skip inputs that hit bugs already reported (`DDP_FUZZ_SKIP_KNOWN` set), so a fuzzing run
/// gets past them. Each is a test in `tests/regressions.rs`.
fn skip_known_bugs() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| std::env::var_os("DDP_FUZZ_SKIP_KNOWN").is_some())
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
