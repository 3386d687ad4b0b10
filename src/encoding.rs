//! Shared pieces of every on-disk format: the checksum function (and the key filter's 128-bit key hash),
//! format versions, and a bounds-checked
//! little-endian reader that turns every out-of-range read into [`Error::Corrupt`] naming file and offset.
//!
//! All integers on disk are little-endian. All checksums are xxh3-64 (seed 0) over the bytes they cover.

use crate::error::{Error, Result};

/// xxh3-64 of `bytes`: the one checksum used by every file this crate writes (the `twox-hash` crate,
/// which uses AVX2 where the CPU has it).
#[inline]
pub fn checksum(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// xxh3 of `bytes` seeded with `seed` (seed 0 is [`checksum`]): WAL records and sync marks of version 6
/// seed theirs with their LSN (FORMAT.md §4).
pub fn checksum_seeded(bytes: &[u8], seed: u64) -> u64 {
    twox_hash::XxHash3_64::oneshot_with_seed(seed, bytes)
}

/// [`checksum_seeded`] of the concatenation of `parts`, without concatenating them (a streaming hasher:
/// it allocates its state, so one-shot [`checksum_seeded`] is cheaper for contiguous bytes).
pub fn checksum_parts_seeded(parts: &[&[u8]], seed: u64) -> u64 {
    use std::hash::Hasher;
    let mut h = twox_hash::XxHash3_64::with_seed(seed);
    for part in parts {
        h.write(part);
    }
    h.finish()
}

/// xxh3-128 of `bytes`: the key filter's hash of a key (FORMAT.md §2, "Key filter section").
#[inline]
pub fn hash128(bytes: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(bytes)
}

/// A format version: the `u32` written after each file's magic. Readers accept versions up to their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FormatVersion(pub u32);

impl FormatVersion {
    /// Checks a version read from `file`: newer than `supported` is [`Error::VersionTooNew`], zero is
    /// corruption (no file is ever written with version 0).
    pub fn check(found: u32, supported: FormatVersion, file: &str, offset: u64) -> Result<()> {
        if found == 0 {
            return Err(Error::corrupt(file, offset, "format version 0"));
        }
        if found > supported.0 {
            return Err(Error::VersionTooNew {
                file: file.to_string(),
                found,
                supported: supported.0,
            });
        }
        Ok(())
    }
}

/// Opens a checksummed object read from `file` (the manifest snapshot and its edits, FORMAT.md §3): an
/// 8-byte `magic`, a `u32` format version, the body, and the xxh3 checksum (`u64`) of everything before
/// it. `what` names the object in errors; objects are at least `min_len` bytes. The checksum is checked
/// before the version, so a damaged version field reads as corruption. Returns the version and a decoder
/// over the body (absolute offset 12).
///
/// Errors: [`Error::Corrupt`] naming `file` (short object at 0, bad magic at 0, checksum mismatch at the
/// checksum's offset, version 0 at 8); [`Error::VersionTooNew`] for a version above `supported`.
pub fn open_checksummed<'a>(
    bytes: &'a [u8],
    magic: &[u8; 8],
    what: &str,
    min_len: usize,
    supported: FormatVersion,
    file: &'a str,
) -> Result<(u32, Decoder<'a>)> {
    debug_assert!(min_len >= 20, "magic, version and checksum");
    if bytes.len() < min_len {
        let detail = format!("{} bytes is too short for a {what}", bytes.len());
        return Err(Error::corrupt(file, 0, detail));
    }
    if &bytes[..8] != magic {
        return Err(Error::corrupt(file, 0, format!("not a {what} (bad magic)")));
    }
    let body_len = bytes.len() - 8;
    if checksum(&bytes[..body_len]) != le_u64(bytes, body_len) {
        return Err(Error::corrupt(
            file,
            body_len as u64,
            format!("{what} checksum mismatch"),
        ));
    }
    let version = le_u32(bytes, 8);
    FormatVersion::check(version, supported, file, 8)?;
    Ok((version, Decoder::new(&bytes[12..body_len], 12, file)))
}

/// A cursor over bytes read from `file`, starting at absolute offset `base`. Every read checks bounds and
/// reports the absolute offset of a short read.
pub struct Decoder<'a> {
    bytes: &'a [u8],
    pos: usize,
    base: u64,
    file: &'a str,
}

impl<'a> Decoder<'a> {
    /// A decoder over `bytes`, which start at offset `base` of `file`.
    pub fn new(bytes: &'a [u8], base: u64, file: &'a str) -> Self {
        Decoder {
            bytes,
            pos: 0,
            base,
            file,
        }
    }

    /// The absolute offset of the next byte to read.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// An [`Error::Corrupt`] at absolute offset `offset` of this decoder's file.
    pub fn error_at(&self, offset: u64, detail: impl Into<String>) -> Error {
        Error::corrupt(self.file, offset, detail)
    }

    /// An [`Error::Corrupt`] at the current offset.
    pub fn error(&self, detail: impl Into<String>) -> Error {
        Error::corrupt(self.file, self.offset(), detail)
    }

    /// The next `len` bytes.
    pub fn bytes(&mut self, len: usize, what: &str) -> Result<&'a [u8]> {
        if self.remaining() < len {
            return Err(self.error(format!("{what}: need {len} bytes, {} left", self.remaining())));
        }
        let out = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N, what)?);
        Ok(out)
    }

    /// A `u8`.
    pub fn u8(&mut self, what: &str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16(&mut self, what: &str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A little-endian `i64`.
    pub fn i64(&mut self, what: &str) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// Fails unless every byte was read.
    pub fn finish(&self, what: &str) -> Result<()> {
        if self.remaining() != 0 {
            return Err(self.error(format!("{what}: {} trailing bytes", self.remaining())));
        }
        Ok(())
    }
}

/// Appends little-endian integers to a buffer: the writing twin of [`Decoder`].
pub trait PutLe {
    /// Appends a `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends an `i64`.
    fn put_i64(&mut self, v: i64);
}

impl PutLe for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_i64(&mut self, v: i64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
}

/// Reads the little-endian `u64` at `bytes[at..at + 8]`; the caller guarantees the range (checked by
/// `debug_assert!`, and by slice indexing in release).
#[inline]
pub(crate) fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads the little-endian `u32` at `bytes[at..at + 4]`.
#[inline]
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Every length class of XXH3 (0, 1-3, 4-8, 9-16, 17-128, 129-240, over 240 bytes, streamed in
        /// parts) gives what xxhash-rust, which wrote the files of earlier versions, gives.
        #[test]
        fn checksums_equal_the_reference_crate(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
            split in 0usize..4096,
        ) {
            let split = split.min(bytes.len());
            proptest::prop_assert_eq!(checksum(&bytes), xxhash_rust::xxh3::xxh3_64(&bytes));
            proptest::prop_assert_eq!(hash128(&bytes), xxhash_rust::xxh3::xxh3_128(&bytes));
            proptest::prop_assert_eq!(checksum_parts_seeded(&[&bytes[..split], &bytes[split..]], 0), checksum(&bytes));
            proptest::prop_assert_eq!(
                checksum_parts_seeded(&[&bytes[..split], &bytes[split..]], split as u64),
                checksum_seeded(&bytes, split as u64)
            );
        }
    }

    /// The on-disk checksums are the reference XXH3 (seed 0): the published values for the empty input
    /// pin the algorithm whichever crate computes it.
    #[test]
    fn checksums_are_the_reference_xxh3() {
        assert_eq!(checksum(b""), 0x2D06_8005_38D3_94C2);
        assert_eq!(hash128(b""), 0x99AA_06D3_0147_98D8_6001_C324_468D_497F);
        let long: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(
            checksum_parts_seeded(&[&long[..1234], &long[1234..]], 0),
            checksum(&long)
        );
    }

    #[test]
    fn decoder_reports_absolute_offset_on_short_read() {
        let bytes = [1u8, 0, 0, 0, 7];
        let mut d = Decoder::new(&bytes, 100, "f");
        assert_eq!(d.u32("a").unwrap(), 1);
        match d.u64("b") {
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!(file, "f");
                assert_eq!(offset, 104);
            }
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn version_check() {
        assert!(FormatVersion::check(1, FormatVersion(1), "f", 0).is_ok());
        assert!(matches!(
            FormatVersion::check(2, FormatVersion(1), "f", 0),
            Err(Error::VersionTooNew { found: 2, .. })
        ));
        assert!(FormatVersion::check(0, FormatVersion(1), "f", 0)
            .unwrap_err()
            .is_corruption());
    }
}
