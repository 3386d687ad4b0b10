//! [`SimFs`]: an in-memory [`Fs`] that keeps what was made durable apart from what was only written, and
//! produces the file-system states a power loss can leave (for crash-state tests, in the way of ALICE,
//! OSDI '14, and CrashMonkey, OSDI '18).
//!
//! Model. Each file (inode) has its contents now and its contents as of its last `fdatasync`/`fsync`.
//! Each directory has its entries (name → inode) now and as of its last directory `fsync`. Every change not
//! yet durable is also kept, in the order it was made, as a pending operation: a write, a `set_len`, a link
//! (file creation), an unlink (removal) or a rename. A file sync makes that file's pending writes durable;
//! a directory sync makes that directory's pending entry changes durable (and nothing else: the entry of a
//! file synced with `fsync` is not durable until its directory is synced, as POSIX allows).
//!
//! Every mutating or syncing call (an open that creates or truncates, a write, `set_len`, a sync, a rename,
//! a removal, a directory creation or sync) is a crash point. With [`SimFs::record_crash_points`] on, the
//! state after each one is kept as a [`CrashPoint`], from which [`CrashPoint::state`] materialises one
//! power-loss state ([`CrashState`]) as a new `SimFs`:
//! - only what was synced (files as of their last sync, directories as of their last directory sync);
//! - that plus any prefix of the pending operations, in the order they were made (the last prefix is
//!   everything: what a process crash leaves);
//! - for each file, any subset of its unsynced pages (4 KiB; its length as synced or as now), and for
//!   each directory, its entries as synced or as now (drawn from a seed).
//!
//! Not modelled: torn writes inside a page (a page is old or new as a whole; sector tearing is left to the
//! checksums), directory creation (directories are durable once created), data corruption of synced bytes
//! (the corruption tests do that), reads of unsynced data failing, and I/O errors (the `Faulty*` wrappers
//! and `FileLog::with_segment_fault_hook` inject those). Renames are within one directory.

use super::{Fs, FsFile, OpenHow};
use crate::blob::BlobBytes;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The page size of the subset states: a page of a file is as synced or as now, as a whole.
pub const SIM_PAGE_BYTES: usize = 4096;

type Ino = u64;

/// One file's contents, now and as of its last sync (copy-on-write, so crash points share them).
#[derive(Clone, Default)]
struct Inode {
    now: Arc<Vec<u8>>,
    synced: Arc<Vec<u8>>,
}

/// One directory's entries, now and as of its last directory sync.
#[derive(Clone, Default)]
struct Dir {
    now: BTreeMap<String, Ino>,
    synced: BTreeMap<String, Ino>,
}

/// A change not yet durable, in the order it was made.
#[derive(Clone)]
enum Pending {
    Write { ino: Ino, offset: u64, bytes: Arc<[u8]> },
    SetLen { ino: Ino, len: u64 },
    Link { dir: PathBuf, name: String, ino: Ino },
    Unlink { dir: PathBuf, name: String },
    Rename { dir: PathBuf, from: String, to: String },
}

/// The whole simulated disk at one moment.
#[derive(Clone, Default)]
struct Image {
    inodes: HashMap<Ino, Inode>,
    dirs: BTreeMap<PathBuf, Dir>,
    pending: Vec<Pending>,
}

#[derive(Default)]
struct Sim {
    image: Image,
    next_ino: Ino,
    /// Mutating or syncing calls so far.
    calls: u64,
    /// Keep a crash point after every call.
    record: bool,
    points: Vec<CrashPoint>,
}

/// An in-memory file system that can crash. Clones share the same files. See the module docs.
#[derive(Clone, Default)]
pub struct SimFs {
    sim: Arc<Mutex<Sim>>,
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SimFs({} calls)", self.calls())
    }
}

/// The state of a [`SimFs`] right after one mutating or syncing call: the crash point "after call `call`".
#[derive(Clone)]
pub struct CrashPoint {
    /// How many mutating or syncing calls had returned (1 for the first call).
    pub call: u64,
    image: Image,
}

/// Which power-loss state [`CrashPoint::state`] materialises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashState {
    /// Only what was synced: files as of their last file sync, directories as of their last directory sync.
    Synced,
    /// What was synced plus the first `n` pending operations in the order they were made (`n` at most
    /// [`CrashPoint::pending`]; all of them: everything written, as a process crash leaves it).
    Prefix(usize),
    /// Drawn from this seed: per file, its length as synced or as now and each page as synced or as now;
    /// per directory, its entries as synced or as now.
    Pages(u64),
}

/// A small deterministic generator (splitmix64) for the subset states.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file (sim)", path.display()),
    )
}

/// Splits a file path into its directory and name.
fn split(path: &Path) -> io::Result<(PathBuf, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| not_found(path))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((dir, name.to_string()))
}

fn write_into(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + bytes.len());
    if data.len() < end {
        data.resize(end, 0);
    }
    data[start..end].copy_from_slice(bytes);
}

impl Image {
    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        let (dir, name) = split(path)?;
        self.dirs
            .get(&dir)
            .and_then(|d| d.now.get(&name))
            .copied()
            .ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, dir: &Path, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(dir).ok_or_else(|| not_found(path))
    }

    /// Applies one pending operation to the durable state (`synced` contents and entries).
    fn apply_durably(&mut self, op: &Pending) {
        match op {
            Pending::Write { ino, offset, bytes } => {
                let inode = self.inodes.entry(*ino).or_default();
                write_into(Arc::make_mut(&mut inode.synced), *offset, bytes);
            }
            Pending::SetLen { ino, len } => {
                let inode = self.inodes.entry(*ino).or_default();
                Arc::make_mut(&mut inode.synced).resize(*len as usize, 0);
            }
            Pending::Link { dir, name, ino } => {
                self.dirs
                    .entry(dir.clone())
                    .or_default()
                    .synced
                    .insert(name.clone(), *ino);
            }
            Pending::Unlink { dir, name } => {
                self.dirs.entry(dir.clone()).or_default().synced.remove(name);
            }
            Pending::Rename { dir, from, to } => {
                let d = self.dirs.entry(dir.clone()).or_default();
                if let Some(ino) = d.synced.remove(from) {
                    d.synced.insert(to.clone(), ino);
                }
            }
        }
    }

    /// A new disk holding `files` (contents per inode) under `entries` (per directory), all durable.
    fn settled(mut files: HashMap<Ino, Vec<u8>>, entries: BTreeMap<PathBuf, BTreeMap<String, Ino>>) -> Image {
        let mut inodes = HashMap::new();
        for names in entries.values() {
            for ino in names.values() {
                let data = Arc::new(files.remove(ino).unwrap_or_default());
                inodes.insert(
                    *ino,
                    Inode {
                        now: data.clone(),
                        synced: data,
                    },
                );
            }
        }
        let dirs = entries
            .into_iter()
            .map(|(path, names)| {
                (
                    path,
                    Dir {
                        now: names.clone(),
                        synced: names,
                    },
                )
            })
            .collect();
        Image {
            inodes,
            dirs,
            pending: Vec::new(),
        }
    }
}

impl CrashPoint {
    /// How many pending (not yet durable) operations there were at this point: the largest
    /// [`CrashState::Prefix`].
    pub fn pending(&self) -> usize {
        self.image.pending.len()
    }

    /// The disk after a power loss at this point, in state `which`, as a new `SimFs` with everything in
    /// it durable (recording off).
    pub fn state(&self, which: CrashState) -> SimFs {
        let image = match which {
            CrashState::Synced => self.prefix(0),
            CrashState::Prefix(n) => self.prefix(n.min(self.image.pending.len())),
            CrashState::Pages(seed) => self.pages(seed),
        };
        SimFs::from_image(image)
    }

    fn prefix(&self, n: usize) -> Image {
        let mut durable = self.image.clone();
        durable.pending.clear();
        for op in &self.image.pending[..n] {
            durable.apply_durably(op);
        }
        let files = durable
            .inodes
            .iter()
            .map(|(ino, inode)| (*ino, inode.synced.to_vec()))
            .collect();
        let entries = durable
            .dirs
            .into_iter()
            .map(|(path, dir)| (path, dir.synced))
            .collect();
        Image::settled(files, entries)
    }

    fn pages(&self, seed: u64) -> Image {
        let mut mix = Mix(seed);
        // How likely an unsynced page is kept: drawn once per state, so that some states keep most of
        // them and some few.
        let keep = mix.next() % 101;
        let mut files = HashMap::new();
        let mut inos: Vec<&Ino> = self.image.inodes.keys().collect();
        inos.sort();
        for ino in inos {
            let inode = &self.image.inodes[ino];
            let (now, synced) = (&inode.now, &inode.synced);
            let len = if mix.next().is_multiple_of(2) {
                now.len()
            } else {
                synced.len()
            };
            let mut data = vec![0u8; len];
            for (i, page) in data.chunks_mut(SIM_PAGE_BYTES).enumerate() {
                let at = i * SIM_PAGE_BYTES;
                let from = if mix.next() % 100 < keep { now } else { synced };
                let end = (at + page.len()).min(from.len());
                if at < end {
                    page[..end - at].copy_from_slice(&from[at..end]);
                }
            }
            files.insert(*ino, data);
        }
        let entries = self
            .image
            .dirs
            .iter()
            .map(|(path, dir)| {
                let names = if mix.next().is_multiple_of(2) {
                    &dir.now
                } else {
                    &dir.synced
                };
                (path.clone(), names.clone())
            })
            .collect();
        Image::settled(files, entries)
    }
}

impl SimFs {
    /// An empty file system (no directories: create them first).
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn from_image(image: Image) -> SimFs {
        let next_ino = image.inodes.keys().max().map_or(0, |m| m + 1);
        SimFs {
            sim: Arc::new(Mutex::new(Sim {
                image,
                next_ino,
                ..Sim::default()
            })),
        }
    }

    /// A shared handle, as `DirBlob` and `FileLog` take it.
    pub fn shared(&self) -> Arc<dyn Fs> {
        Arc::new(self.clone())
    }

    /// Mutating or syncing calls made so far (the crash point after the next call is `calls() + 1`).
    pub fn calls(&self) -> u64 {
        self.sim.lock().calls
    }

    /// From now on (`on`), keep a [`CrashPoint`] after every mutating or syncing call.
    pub fn record_crash_points(&self, on: bool) {
        self.sim.lock().record = on;
    }

    /// The crash points recorded so far, removing them from the file system.
    pub fn take_crash_points(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.sim.lock().points)
    }

    /// Runs one mutating or syncing call under the lock, then counts it (and records a crash point).
    fn mutate<T>(&self, f: impl FnOnce(&mut Sim) -> io::Result<T>) -> io::Result<T> {
        let mut sim = self.sim.lock();
        let out = f(&mut sim)?;
        sim.calls += 1;
        if sim.record {
            let point = CrashPoint {
                call: sim.calls,
                image: sim.image.clone(),
            };
            sim.points.push(point);
        }
        Ok(out)
    }

    fn file(&self, ino: Ino) -> Arc<dyn FsFile> {
        Arc::new(SimFile {
            fs: self.clone(),
            ino,
            cursor: Mutex::new(0),
        })
    }
}

impl Sim {
    fn write(&mut self, ino: Ino, offset: u64, bytes: &[u8]) {
        let inode = self.image.inodes.entry(ino).or_default();
        write_into(Arc::make_mut(&mut inode.now), offset, bytes);
        self.image.pending.push(Pending::Write {
            ino,
            offset,
            bytes: Arc::from(bytes),
        });
    }

    fn set_len(&mut self, ino: Ino, len: u64) {
        let inode = self.image.inodes.entry(ino).or_default();
        Arc::make_mut(&mut inode.now).resize(len as usize, 0);
        self.image.pending.push(Pending::SetLen { ino, len });
    }

    fn sync_file(&mut self, ino: Ino) {
        let image = &mut self.image;
        if let Some(inode) = image.inodes.get_mut(&ino) {
            inode.synced = inode.now.clone();
        }
        image.pending.retain(|op| match op {
            Pending::Write { ino: i, .. } | Pending::SetLen { ino: i, .. } => *i != ino,
            _ => true,
        });
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, how: OpenHow) -> io::Result<Arc<dyn FsFile>> {
        let (dir, name) = split(path)?;
        let existing = self.sim.lock().image.lookup(path).ok();
        let ino = match (how, existing) {
            (OpenHow::Existing, Some(ino)) => ino,
            (OpenHow::Existing, None) => return Err(not_found(path)),
            (OpenHow::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    path.display().to_string(),
                ))
            }
            (OpenHow::CreateTruncate, Some(ino)) => self.mutate(|sim| {
                sim.set_len(ino, 0);
                Ok(ino)
            })?,
            (_, None) => self.mutate(|sim| {
                let ino = sim.next_ino;
                sim.next_ino += 1;
                sim.image.dir_mut(&dir, path)?.now.insert(name.clone(), ino);
                sim.image.inodes.insert(ino, Inode::default());
                sim.image.pending.push(Pending::Link { dir, name, ino });
                Ok(ino)
            })?,
        };
        Ok(self.file(ino))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let sim = self.sim.lock();
        let ino = sim.image.lookup(path)?;
        Ok(sim
            .image
            .inodes
            .get(&ino)
            .map(|i| i.now.to_vec())
            .unwrap_or_default())
    }

    fn map(&self, path: &Path) -> io::Result<Option<BlobBytes>> {
        match self.read(path) {
            Ok(bytes) => Ok(Some(BlobBytes::Heap(Arc::from(bytes)))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        let sim = self.sim.lock();
        let ino = sim.image.lookup(path)?;
        Ok(sim.image.inodes.get(&ino).map_or(0, |i| i.now.len() as u64))
    }

    fn exists(&self, path: &Path) -> bool {
        let sim = self.sim.lock();
        sim.image.dirs.contains_key(path) || sim.image.lookup(path).is_ok()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        if dir != to_dir {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "SimFs renames only within a directory",
            ));
        }
        self.mutate(|sim| {
            let d = sim.image.dir_mut(&dir, from)?;
            let ino = d.now.remove(&from_name).ok_or_else(|| not_found(from))?;
            d.now.insert(to_name.clone(), ino);
            sim.image.pending.push(Pending::Rename {
                dir,
                from: from_name,
                to: to_name,
            });
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let (dir, name) = split(path)?;
        self.mutate(|sim| {
            let d = sim.image.dir_mut(&dir, path)?;
            d.now.remove(&name).ok_or_else(|| not_found(path))?;
            sim.image.pending.push(Pending::Unlink { dir, name });
            Ok(())
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let sim = self.sim.lock();
        let d = sim.image.dirs.get(dir).ok_or_else(|| not_found(dir))?;
        Ok(d.now.keys().cloned().collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if self.sim.lock().image.dirs.contains_key(dir) {
            return Ok(());
        }
        self.mutate(|sim| {
            for d in dir.ancestors() {
                sim.image.dirs.entry(d.to_path_buf()).or_default();
            }
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.mutate(|sim| {
            let image = &mut sim.image;
            if let Some(d) = image.dirs.get_mut(dir) {
                d.synced = d.now.clone();
            } else if !dir.as_os_str().is_empty() && dir != Path::new(".") {
                return Err(not_found(dir));
            }
            image.pending.retain(|op| match op {
                Pending::Link { dir: d, .. }
                | Pending::Unlink { dir: d, .. }
                | Pending::Rename { dir: d, .. } => d != dir,
                _ => true,
            });
            Ok(())
        })
    }
}

/// An open file of a [`SimFs`]: its inode, and a cursor for appends.
struct SimFile {
    fs: SimFs,
    ino: Ino,
    cursor: Mutex<u64>,
}

impl FsFile for SimFile {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.fs.mutate(|sim| {
            sim.write(self.ino, offset, buf);
            Ok(())
        })
    }

    fn append(&self, buf: &[u8]) -> io::Result<()> {
        let mut cursor = self.cursor.lock();
        self.write_at(buf, *cursor)?;
        *cursor += buf.len() as u64;
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.mutate(|sim| {
            sim.set_len(self.ino, len);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.fs.mutate(|sim| {
            sim.sync_file(self.ino);
            Ok(())
        })
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn len(&self) -> io::Result<u64> {
        let sim = self.fs.sim.lock();
        Ok(sim.image.inodes.get(&self.ino).map_or(0, |i| i.now.len() as u64))
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
