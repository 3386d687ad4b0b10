//! Helpers shared by the integration tests: a naive model of a stream, and file surgery.
#![allow(dead_code)]

pub mod compare;
pub mod dropin;
pub mod fail_stop;
pub mod kill;
pub mod ports;
pub mod restart;
pub mod runs;

use ddpersist::blob::{Blob, DirBlob, FaultyBlob};
use ddpersist::fs::{CrashPoint, CrashState};
use ddpersist::wal::FileLog;
use ddpersist::{Options, OwnedUpdate, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A store on `dir` whose objects go through a `FaultyBlob` (to fail batch and manifest writes on
/// demand: `fail_after`, `heal`), its WAL a plain `FileLog`.
pub fn open_faulty(dir: &Path, options: Options) -> (Store, Arc<FaultyBlob<DirBlob>>) {
    let blob = Arc::new(FaultyBlob::new(DirBlob::open(dir).unwrap()));
    let log = FileLog::open(dir.join("wal"), options.wal_segment_bytes, options.wal_recovery).unwrap();
    let store = Store::open_on(blob.clone(), Arc::new(log), options).unwrap();
    (store, blob)
}

/// Waits (up to 10 s) until stream `id`'s committed upper reaches `upper` (a logged seal's batch written
/// in the background); returns how long it took.
pub fn wait_for_upper(store: &Store, id: &str, upper: u64) -> Duration {
    let start = Instant::now();
    while store.upper(id).unwrap() < upper {
        let now = store.upper(id).unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "upper {now} never reached {upper}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

/// What a stream's snapshot must hold: every written update, consolidated and sorted.
#[derive(Default, Clone, Debug)]
pub struct Model {
    sums: BTreeMap<(Vec<u8>, Vec<u8>, u64), i64>,
}

impl Model {
    pub fn write(&mut self, key: &[u8], val: &[u8], time: u64, diff: i64) {
        *self.sums.entry((key.to_vec(), val.to_vec(), time)).or_default() += diff;
    }

    /// Drops every update at or beyond `upper` (what a non-durable stream loses on restart).
    pub fn forget_from(&mut self, upper: u64) {
        self.sums.retain(|(_, _, t), _| *t < upper);
    }

    pub fn expected(&self) -> Vec<OwnedUpdate> {
        self.sums
            .iter()
            .filter(|(_, d)| **d != 0)
            .map(|((k, v, t), d)| (k.clone(), v.clone(), *t, *d))
            .collect()
    }
}

/// Deterministic pseudo-random numbers (splitmix64).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The power-loss states checked at one crash point (`tests/crash_states*.rs`): only synced data, every
/// later operation, and a random subset of unsynced pages; `full` adds every prefix and 16 page subsets, the
/// default one random prefix.
pub fn states(point: &CrashPoint, full: bool, rng: &mut Rng) -> Vec<CrashState> {
    let n = point.pending();
    let mut out = vec![CrashState::Synced];
    if n > 0 {
        out.push(CrashState::Prefix(n));
    }
    if full {
        out.extend((0..16).map(|_| CrashState::Pages(rng.below(u64::MAX))));
        out.extend((1..n).map(CrashState::Prefix));
    } else {
        if n > 1 {
            out.push(CrashState::Prefix(1 + rng.below(n as u64 - 1) as usize));
        }
        out.push(CrashState::Pages(rng.below(u64::MAX)));
    }
    out
}

/// The batch files in a store directory.
pub fn batch_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, "batch")
}

/// The files of `dir` whose extension is `ext`, sorted.
fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// The `.wal` segment files in a store directory's `wal/`, oldest first (other files there, such as the
/// start file `START` and released `*.free` ones, left out).
pub fn wal_segments(dir: &Path) -> Vec<PathBuf> {
    files_ending(&dir.join("wal"), "wal")
}

/// For each `(dir, key)` of `stores`: opens the store in `dir`, creates stream `"s"` and writes the one
/// update `(key, key, 5, 1)` (`u64`s; durable: acknowledged through the WAL), then closes the store.
/// Returns nothing.
pub fn write_one_each(stores: &[(&Path, u64)]) {
    for &(dir, key) in stores {
        let store = Store::open(dir).unwrap();
        store
            .create_stream("s", ddpersist::StreamOptions::default())
            .unwrap();
        store.write("s", &[(key, key, 5, 1)]).unwrap();
    }
}

/// Copies the store directory `from` to `to`, file by file, but its `LOCK` (taken again at open): what a
/// `kill -9` of the process would leave on disk now (every byte written to a file survives a process
/// crash; nothing still in the process's memory does).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (path, target) = (entry.path(), to.join(entry.file_name()));
        if path.is_dir() {
            copy_dir(&path, &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// Flips one byte of a file.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

/// The collection accumulated at time `t`: every (key, val) with the sum of its diffs at times <= t.
pub fn accumulate(updates: &[OwnedUpdate], t: u64) -> BTreeMap<(Vec<u8>, Vec<u8>), i64> {
    let mut acc = BTreeMap::new();
    for (k, v, time, d) in updates {
        if *time <= t {
            *acc.entry((k.clone(), v.clone())).or_insert(0) += d;
        }
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// The batch files (and runs) every stream of `store`'s manifest names, sorted.
pub fn named_files(store: &Store) -> Vec<String> {
    let mut named: Vec<String> = store
        .manifest()
        .file_nos()
        .map(ddpersist::batch::batch_file_name)
        .collect();
    named.sort();
    named
}

/// The batch files (and temporaries) in `blob`, sorted.
pub fn blob_files(blob: &dyn Blob) -> Vec<String> {
    let ours = |n: &String| n.ends_with(".batch") || n.ends_with(".tmp");
    let mut names: Vec<String> = blob.list().unwrap().into_iter().filter(ours).collect();
    names.sort();
    names
}

/// The environment variable `name` a parent test sets for its child process (`spawn_child`), or `None`
/// when the child test runs on its own (`cargo test -- --ignored`): it then has nothing to do and returns.
pub fn child_var(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if value.is_none() {
        eprintln!("{name} is not set: a child process of another test, run on its own; nothing to do");
    }
    value
}

/// Runs the `#[ignore]`d test `name` of module `module` (the caller's `module_path!()`) of the current test
/// binary as a child process (with `envs` set and its stdout piped), for tests that kill a process midway
/// (`kill -9`) and check what survived. The test binaries group several modules (`tests/<group>/main.rs`),
/// so the child is named by its path in the binary (`module_path!()` without the crate's name); a name the
/// binary does not list fails here instead of running no test at all.
pub fn spawn_child(module: &str, name: &str, envs: &[(&str, String)]) -> std::process::Child {
    let name = match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    };
    assert!(
        ignored_tests().contains(&name),
        "no ignored test {name:?} in this test binary: {:?}",
        ignored_tests()
    );
    let name = name.as_str();
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", name, "--ignored", "--nocapture", "--test-threads=1"])
        .stdout(std::process::Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// `n` addresses `127.0.0.1:PORT`, one per process of a timely cluster (`timely::Config::Cluster`), of
/// ports the OS chose free: all `n` are bound before any is released, so they differ.
pub fn local_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| format!("127.0.0.1:{}", l.local_addr().unwrap().port()))
        .collect()
}

/// `n` new temporary directories (removed when dropped) and their paths: one store directory per process
/// of a cluster.
pub fn temp_dirs(n: usize) -> (Vec<tempfile::TempDir>, Vec<PathBuf>) {
    let dirs: Vec<tempfile::TempDir> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let paths = dirs.iter().map(|d| d.path().to_path_buf()).collect();
    (dirs, paths)
}

/// The names of the current test binary's `#[ignore]`d tests (its `--list --ignored`), read once.
fn ignored_tests() -> &'static Vec<String> {
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--list", "--ignored"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(str::to_string)
            .collect()
    })
}

/// Checks how a killed child process ended: killed by SIGKILL, or exited successfully before the kill
/// (it finished first); a child that failed on its own (a panic, a failed assertion) fails the test.
pub fn assert_killed_or_succeeded(status: std::process::ExitStatus, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(
        status.success() || status.signal() == Some(9),
        "{what}: the child process failed on its own: {status:?}"
    );
}

/// Reads `child`'s stdout until a line `"{prefix}N"` with `N >= at_least`; returns the last such `N`
/// (smaller if the child's output ends first).
pub fn read_until(child: &mut std::process::Child, prefix: &str, at_least: u64) -> u64 {
    use std::io::{BufRead, BufReader};
    let mut last = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(n) = line.unwrap().strip_prefix(prefix) {
            last = n.parse::<u64>().unwrap();
            if last >= at_least {
                break;
            }
        }
    }
    last
}

/// The key of every update a snapshot of stream `id` holds, sorted (a key once per update).
pub fn snapshot_keys(store: &Store, id: &str) -> Vec<Vec<u8>> {
    let updates = store.snapshot(id).unwrap().to_vec().unwrap();
    let mut keys: Vec<Vec<u8>> = updates.into_iter().map(|u| u.0).collect();
    keys.sort();
    keys
}

/// The distinct keys of stream `id`'s snapshot, sorted.
pub fn distinct_keys(store: &Store, id: &str) -> Vec<Vec<u8>> {
    let mut keys = snapshot_keys(store, id);
    keys.dedup();
    keys
}

/// A WAL segment as a release writing format `version` wrote it, built by hand from FORMAT.md §4: its
/// header (starting at `first_lsn`, no flags) and one record per payload, checksums included, with no
/// sync marks (they are optional).
pub fn wal_segment_bytes(version: u32, first_lsn: u64, payloads: &[&[u8]]) -> Vec<u8> {
    use ddpersist::encoding::checksum;
    let mut b = b"DDPWALSG".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&first_lsn.to_le_bytes());
    let sum = checksum(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    for payload in payloads {
        let mut header = (payload.len() as u32).to_le_bytes().to_vec();
        header.extend_from_slice(&0x4C50_4444u32.to_le_bytes());
        // From version 6 a record's checksum is seeded with its LSN (FORMAT.md §4).
        let lsn = first_lsn + (b.len() as u64 - 32);
        let seed = if version >= 6 { lsn } else { 0 };
        let sum = twox_hash::XxHash3_64::oneshot_with_seed(seed, &[&header[..], payload].concat());
        b.extend_from_slice(&sum.to_le_bytes());
        b.extend_from_slice(&header);
        b.extend_from_slice(payload);
    }
    b
}

/// A [`ddpersist::blob::MemBlob`] whose `create` and `create_new` first call `hook(name)`: an error it
/// returns is the call's, and it may block, so a test can fail or hold a store's file writes (a merge's,
/// a spill's) at a moment of its choosing.
pub struct HookBlob {
    pub inner: ddpersist::blob::MemBlob,
    pub hook: Box<WriteHook>,
}

/// The hook of a [`HookBlob`]: called with the name of each object about to be created.
pub type WriteHook = dyn Fn(&str) -> ddpersist::Result<()> + Send + Sync;

impl HookBlob {
    pub fn new(hook: impl Fn(&str) -> ddpersist::Result<()> + Send + Sync + 'static) -> Self {
        HookBlob {
            inner: ddpersist::blob::MemBlob::new(),
            hook: Box::new(hook),
        }
    }
}

impl Blob for HookBlob {
    fn get(&self, name: &str) -> ddpersist::Result<Option<ddpersist::blob::BlobBytes>> {
        self.inner.get(name)
    }
    fn create(&self, name: &str) -> ddpersist::Result<Box<dyn ddpersist::blob::BlobWriter>> {
        (self.hook)(name)?;
        self.inner.create(name)
    }
    fn create_new(&self, name: &str) -> ddpersist::Result<Box<dyn ddpersist::blob::BlobWriter>> {
        (self.hook)(name)?;
        self.inner.create_new(name)
    }
    fn delete(&self, name: &str) -> ddpersist::Result<()> {
        self.inner.delete(name)
    }
    fn list(&self) -> ddpersist::Result<Vec<String>> {
        self.inner.list()
    }
    fn location(&self) -> String {
        self.inner.location()
    }
}

/// A C-like enum with explicit discriminants: derived `Ord` follows the discriminants (Low < Mid < High),
/// serde's encoding the declaration order (High, Low, Mid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Priority {
    High = 3,
    Low = 1,
    Mid = 2,
}
ddpersist::serde_codec!(Priority);

/// A flag shared by the workers of one timely run: set by a worker whose dataflow failed to build. The
/// dataflow then runs on some workers only and never completes, so the others stop waiting for it
/// (`step_while(|| ... && !failed.is_set())`) and the test fails with the error instead of hanging.
#[derive(Clone, Default)]
pub struct BuildFailed(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl BuildFailed {
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Records that `worker` failed to build with `error`: sets the flag and drops the worker's
    /// dataflows (a worker returns only once it has none). Returns `error`.
    pub fn fail<E>(&self, worker: &mut timely::worker::Worker, error: E) -> E {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        error
    }

    /// After a worker's loops: if a worker's build failed, drops this worker's dataflows too (it stopped
    /// waiting for them: they never complete) and says so.
    pub fn check(&self, worker: &mut timely::worker::Worker) -> Result<(), String> {
        match self.is_set() {
            true => Err(self.fail(worker, "another worker's build failed".to_string())),
            false => Ok(()),
        }
    }
}

/// The collection `updates` (`(row, time, diff)`, DD's update triples) accumulate to over all times: each
/// row's summed diff, zero sums dropped.
pub fn accumulate_rows<R: Ord + Clone, T>(updates: &[(R, T, i64)]) -> BTreeMap<R, i64> {
    let mut acc = BTreeMap::new();
    for (row, _, d) in updates {
        *acc.entry(row.clone()).or_insert(0) += d;
    }
    acc.retain(|_, d| *d != 0);
    acc
}

/// Copies the fixture directory `tests/fixtures/{name}` into `tmp` and returns the copy's path.
pub fn copy_fixture(name: &str, tmp: &tempfile::TempDir) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dst = tmp.path().join(name);
    for entry in files_under(&src) {
        let to = dst.join(entry.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &to).unwrap();
    }
    dst
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Drops every dataflow `worker` has installed (returns once none is left to drop).
pub fn drop_dataflows(worker: &mut timely::worker::Worker) {
    for dataflow in worker.installed_dataflows() {
        worker.drop_dataflow(dataflow);
    }
}
