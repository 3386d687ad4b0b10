//! Pieces shared by the benches: the data generator and the sequential-write baseline each bench measures
//! in the same run.
#![allow(dead_code)]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// splitmix64: a bijective mixer of a counter into pseudo-random bits.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE5_E4B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Key `i`: the 16 lowercase hex digits of `splitmix64(i)` (a bijection, so keys `i >= n` are misses).
pub fn hex_key(i: u64) -> [u8; 16] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let x = splitmix64(i);
    let mut k = [0u8; 16];
    for (j, b) in k.iter_mut().enumerate() {
        *b = HEX[((x >> (60 - 4 * j)) & 15) as usize];
    }
    k
}

/// The `dd if=/dev/zero bs=1M conv=fdatasync` equivalent: `bytes` written in `fill.len()`-byte `write_all`s
/// to a new file in `tmp`, then one `sync_data`. With `sync_every`, pieces of that many bytes each followed
/// by a `sync_data` instead (the I/O pattern of a WAL synced once per write call).
pub fn seq_write(tmp: &Path, fill: &[u8], bytes: u64, sync_every: Option<usize>) -> Duration {
    let dir = tempfile::tempdir_in(tmp).unwrap();
    let path = dir.path().join("seq");
    let piece = sync_every.unwrap_or(fill.len());
    let start = Instant::now();
    let mut f = File::create(&path).unwrap();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(piece as u64) as usize;
        f.write_all(&fill[..n]).unwrap();
        if sync_every.is_some() {
            f.sync_data().unwrap();
        }
        left -= n as u64;
    }
    f.sync_data().unwrap();
    let elapsed = start.elapsed();
    drop(f);
    drop(dir);
    elapsed
}

/// Whether criterion runs the full benchmark: `--bench` without `--test` or `--list` (`cargo test
/// --benches` and `--test` run a small version).
pub fn full_run() -> bool {
    has_arg("--bench") && !has_arg("--test") && !has_arg("--list")
}

/// Whether the bench was started with the command-line flag `flag`.
pub fn has_arg(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}
