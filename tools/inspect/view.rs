//! A [`Store`] opened on a read-only view of a store directory, for the commands that read updates
//! (`get`, `scan`, `stats`): they use the library's own read path (`Store::get_bytes`, `Store::snapshot`),
//! including its WAL replay, without taking the store's lock or changing a byte on disk.
//!
//! `Store::open_on` is given:
//! - [`ReadOnlyBlob`]: the directory's files as they are. What an open would change stays in this
//!   process: removing an orphan (a seal or merge in progress elsewhere, or a crash's leftovers) only hides
//!   it, and a manifest commit (dropping the spilled runs of streams that are not durable, as any open
//!   does) is kept in memory. Every other write — a merge's batch file, the batch of a seal logged in the
//!   WAL whose batch was not written (`Store::seal_logged`, a crash between the two) — is refused, so no
//!   merge runs and such a seal stays logged, its updates read from the replayed memtable (the store
//!   records each refusal as a background error and serves reads as before).
//! - [`WalReader`]: replays the WAL segments with the library's read-only scan ([`ddpersist::wal::scan()`]:
//!   the replay rules without cutting a torn tail) and refuses appends.
//!
//! Unsealed updates of streams that are not durable live only in the memory of the process that wrote
//! them, so they are not seen here.

use crate::access::StoreDir;
use ddpersist::blob::{Blob, BlobBytes, BlobWriter, DirBlob, MemBlob};
use ddpersist::version::MANIFEST_NAME;
use ddpersist::wal::record::decode;
use ddpersist::wal::{self, Log, Lsn, ReplayReport, WalRecovery};
use ddpersist::{Error, Options, Result, Store};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The WAL records of one stream found on disk.
#[derive(Clone, Copy, Debug, Default)]
pub struct WalShare {
    /// Records.
    pub records: u64,
    /// Their payload bytes (the records' framing and the segments' headers not counted).
    pub bytes: u64,
}

/// A store opened read-only, and what its WAL holds per stream number.
pub struct ReadOnlyStore {
    /// The store, opened on the view.
    pub store: Store,
    /// WAL records on disk, by stream number.
    pub wal: BTreeMap<u32, WalShare>,
}

/// Opens the store in `dir` on a read-only view (see the module docs). On a live store a merge may commit
/// and delete a file between the view's manifest read and its mapping, and a seal's release delete a WAL segment
/// the replay listed: an open that fails while the store moved under it ([`crate::access::LiveMark`]:
/// the manifest's generation or the WAL's segments changed) starts over, a little later each time (at most 50 ms between tries), for up
/// to 10 s (found by an adversarial test: 42 of 240 reads of a store merging all the time reported a
/// missing batch file as corruption; 5 tries still failed 22 times; 20 tries failed
/// 4 of 120 reads on a loaded machine once commits got cheaper and merges more frequent).
pub fn open_read_only(dir: &Path) -> Result<ReadOnlyStore> {
    crate::access::while_moving(dir, || open_read_only_once(dir))
}

fn open_read_only_once(dir: &Path) -> Result<ReadOnlyStore> {
    // Decodes the manifest first, so that a missing or damaged one is reported as `list` reports it
    // (an open would otherwise create an empty store in the view).
    let StoreDir { blob, .. } = StoreDir::open(dir)?;
    let wal_dir = blob.dir().join(ddpersist::store::WAL_DIR);
    let blob = Arc::new(ReadOnlyBlob::new(blob));
    let wal = Arc::new(WalReader {
        dir: wal_dir,
        shares: Mutex::default(),
        store_id: Mutex::default(),
    });
    let options = Options {
        create_if_missing: false,
        // No merge threads; merges an open would start inline fail at their first write.
        compaction_threads: 0,
        ..Options::default()
    };
    let store = Store::open_on(blob, wal.clone(), options)?;
    let shares = std::mem::take(&mut *wal.shares.lock());
    Ok(ReadOnlyStore { store, wal: shares })
}

/// A [`Blob`] over a store directory that never writes to it. See the module docs.
pub struct ReadOnlyBlob {
    dir: DirBlob,
    /// Manifest commits made through the view.
    overlay: MemBlob,
    /// Names deleted through the view.
    hidden: Mutex<HashSet<String>>,
}

impl ReadOnlyBlob {
    /// A view of `dir`.
    pub fn new(dir: DirBlob) -> Self {
        ReadOnlyBlob {
            dir,
            overlay: MemBlob::new(),
            hidden: Mutex::default(),
        }
    }
}

impl Blob for ReadOnlyBlob {
    fn get(&self, name: &str) -> Result<Option<BlobBytes>> {
        if let Some(bytes) = self.overlay.get(name)? {
            return Ok(Some(bytes));
        }
        if self.hidden.lock().contains(name) {
            return Ok(None);
        }
        self.dir.get(name)
    }

    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        // The manifest's snapshot and edits: what the store's open and edits commit, kept in memory.
        if name == MANIFEST_NAME || ddpersist::version::edit::parse_edit_name(name).is_some() {
            self.hidden.lock().remove(name);
            return self.overlay.create(name);
        }
        Err(Error::BadInput {
            detail: format!("inspect reads the store only: {name} is not written"),
        })
    }

    fn delete(&self, name: &str) -> Result<()> {
        self.overlay.delete(name)?;
        self.hidden.lock().insert(name.to_string());
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>> {
        let hidden = self.hidden.lock().clone();
        let mut names: Vec<String> = self.dir.list()?;
        names.extend(self.overlay.list()?);
        names.retain(|n| !hidden.contains(n));
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn location(&self) -> String {
        self.dir.location()
    }
}

/// A WAL [`Log`] that replays the segment files of a directory and refuses appends.
pub struct WalReader {
    dir: PathBuf,
    /// What the replay saw, by stream number.
    shares: Mutex<BTreeMap<u32, WalShare>>,
    /// The store's id (`Log::bind_store`), which the scan checks segment headers against.
    store_id: Mutex<Option<u32>>,
}

impl Log for WalReader {
    fn replay(&self, f: &mut dyn FnMut(Lsn, &[u8]) -> Result<()>) -> Result<ReplayReport> {
        if !self.dir.is_dir() {
            return Ok(ReplayReport::default());
        }
        let location = self.dir.display().to_string();
        let mut shares = self.shares.lock();
        let mut each = |lsn, payload: &[u8]| {
            let what = format!("{location} (record at LSN {lsn})");
            let share = shares.entry(decode(payload, &what)?.stream_no()).or_default();
            share.records += 1;
            share.bytes += payload.len() as u64;
            f(lsn, payload)
        };
        let scan = match *self.store_id.lock() {
            Some(id) => wal::scan_of_store(&self.dir, WalRecovery::Strict, id, &mut each)?,
            None => wal::scan(&self.dir, WalRecovery::Strict, &mut each)?,
        };
        Ok(scan.report)
    }

    fn append(&self, _payload: &[u8]) -> Result<(Lsn, Lsn)> {
        Err(Error::BadInput {
            detail: "inspect reads the store only: nothing is appended to the WAL".to_string(),
        })
    }

    fn sync(&self, _lsn: Lsn) -> Result<()> {
        Ok(())
    }

    fn release_before(&self, _lsn: Lsn) -> Result<()> {
        Ok(())
    }

    fn is_durable(&self) -> bool {
        true
    }

    fn bind_store(&self, store_id: u32) {
        *self.store_id.lock() = Some(store_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_never_writes_to_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST_NAME), b"on disk").unwrap();
        std::fs::write(tmp.path().join("0000000000000001.batch.tmp"), b"in progress").unwrap();
        let view = ReadOnlyBlob::new(DirBlob::open(tmp.path()).unwrap());
        // A merge's output is refused; a manifest commit stays in memory.
        assert!(view.create("0000000000000002.batch").is_err());
        view.set(MANIFEST_NAME, b"in memory").unwrap();
        assert_eq!(&*view.get(MANIFEST_NAME).unwrap().unwrap(), b"in memory");
        // Removing an orphan hides it.
        view.delete("0000000000000001.batch.tmp").unwrap();
        assert!(view.get("0000000000000001.batch.tmp").unwrap().is_none());
        assert_eq!(view.list().unwrap(), vec![MANIFEST_NAME.to_string()]);
        // The directory is as it was.
        assert_eq!(std::fs::read(tmp.path().join(MANIFEST_NAME)).unwrap(), b"on disk");
        assert!(tmp.path().join("0000000000000001.batch.tmp").exists());
        assert!(!tmp.path().join("0000000000000002.batch").exists());
        // The WAL refuses appends.
        let wal = WalReader {
            dir: tmp.path().join("wal"),
            shares: Mutex::default(),
            store_id: Mutex::default(),
        };
        assert!(wal.append(b"x").is_err());
        assert_eq!(wal.replay(&mut |_, _| Ok(())).unwrap(), ReplayReport::default());
    }
}
