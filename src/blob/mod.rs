//! `Blob`: a flat namespace of immutable byte objects that holds batch files and the manifest.
//!
//! Two ways to write an object, as in an object store with a pointer committed after the data (the
//! protocol of Materialize's persist: write the part, then compare-and-set the pointer to it):
//! - [`Blob::create`]: an object that replaces its name atomically (the manifest). It becomes visible
//!   under its name only when its writer's [`BlobWriter::commit`] returns, and then it is durable (for the
//!   directory implementation: data fsync'd, renamed into place, directory fsync'd). A crash before that
//!   leaves at most a temporary object that [`Blob::list`] reports with the [`TMP_SUFFIX`] and that the
//!   store removes on the next open. Readers of an existing name see the old bytes or the new ones.
//! - [`Blob::create_new`]: an immutable object under a fresh name (a batch file), that only a pointer
//!   committed later (a manifest written with `create`) makes part of the store. Its commit makes its
//!   bytes durable; its *name* is durable once a later `create` commit returns (for the directory
//!   implementation: the file is written in place and fsync'd, and the manifest's directory fsync makes
//!   both names durable; an object store's put is atomic and durable at once). Until then a crash may
//!   leave it absent, or partial under its name: the store names it in no manifest then, and removes it on
//!   the next open.
//!
//! Objects are never modified after commit, so [`Blob::get`] may hand out a read-only memory map.
//!
//! Two implementations: [`DirBlob`] (files in a directory, read through mmap) and [`MemBlob`] (in memory,
//! for tests), and a wrapper, [`FaultyBlob`], that fails every call from a chosen point on.

pub(crate) mod dir;
pub(crate) mod fault;
mod mem;

pub use dir::{DirBlob, RESERVE_BYTES, RESERVE_NAME};
pub use fault::FaultyBlob;
pub use mem::MemBlob;

use crate::error::Result;
use std::ops::Deref;
use std::sync::Arc;

/// Suffix of an object still being written. Such objects are never read and are removed on open.
pub const TMP_SUFFIX: &str = ".tmp";

/// The bytes of one committed object: a read-only memory map of a file, or shared heap bytes.
#[derive(Clone)]
pub enum BlobBytes {
    /// A read-only map of an immutable file.
    Mmap(Arc<memmap2::Mmap>),
    /// Bytes held in memory.
    Heap(Arc<[u8]>),
}

impl Deref for BlobBytes {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        match self {
            BlobBytes::Mmap(m) => m,
            BlobBytes::Heap(h) => h,
        }
    }
}

impl std::fmt::Debug for BlobBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            BlobBytes::Mmap(_) => "mmap",
            BlobBytes::Heap(_) => "heap",
        };
        write!(f, "BlobBytes({kind}, {} bytes)", self.len())
    }
}

/// A store of immutable named objects. See the module docs for the contract.
pub trait Blob: Send + Sync + 'static {
    /// The committed bytes under `name`, or `None` if there is no such object.
    fn get(&self, name: &str) -> Result<Option<BlobBytes>>;

    /// Starts writing an object that will be visible under `name` once committed.
    fn create(&self, name: &str) -> Result<Box<dyn BlobWriter>>;

    /// Starts writing an immutable object under `name`, a name no object holds (a new file number), that a
    /// later [`create`](Self::create) commit in this blob (the manifest naming it) publishes; see the
    /// module docs. Its writer's commit makes the bytes durable, and the name is durable once a later
    /// `create` commit returns; until then the object may be listed while partial (a reader must only
    /// look up names a committed pointer holds). Dropping the writer without commit removes it.
    ///
    /// The default is [`create`](Self::create), which is also correct (durable at once, at the cost of the
    /// directory implementation's extra directory fsync).
    fn create_new(&self, name: &str) -> Result<Box<dyn BlobWriter>> {
        self.create(name)
    }

    /// Writes `bytes` under `name` in one go (create, write, commit).
    fn set(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut w = self.create(name)?;
        w.write(bytes)?;
        w.commit()
    }

    /// As [`set`](Self::set), for a write its caller can do without (the open's fold of manifest edits
    /// into a snapshot): it never spends space kept for commits that must go through
    /// ([`DirBlob`]'s space reserve). The default is `set`.
    fn set_optional(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let mut w = self.create(name)?;
        w.write(bytes)?;
        w.commit()
    }

    /// Removes `name`; removing an absent name is not an error. Not necessarily durable: a crash may bring
    /// the object back (the store only deletes objects that no manifest names, which open removes again).
    fn delete(&self, name: &str) -> Result<()>;

    /// Makes every [`delete`](Self::delete) so far durable (a directory fsync for files; the default does
    /// nothing, for blobs whose deletes are durable when they return). The store's open calls it after
    /// removing orphans, before it creates any object, so that it can number new files past the named ones
    /// only.
    fn sync_deletes(&self) -> Result<()> {
        Ok(())
    }

    /// Every object name, committed or temporary (ending in [`TMP_SUFFIX`]), in no particular order.
    fn list(&self) -> Result<Vec<String>>;

    /// Where the objects live, for error messages and tools (a directory path, or `mem:`).
    fn location(&self) -> String;
}

/// An object being written. Dropping it without `commit` discards it.
pub trait BlobWriter: Send {
    /// Appends bytes.
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Bytes written so far.
    fn len(&self) -> u64;
    /// Whether nothing was written yet.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Makes the object durable and visible under its name, replacing any previous object of that name.
    fn commit(self: Box<Self>) -> Result<()>;
}

/// Checks that `name` is a plain object name: 1 to 128 bytes of `[A-Za-z0-9._-]`, not starting with a dot.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(crate::Error::bad_input(format!("invalid blob name {name:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The contract, run against each implementation.
    pub(crate) fn contract(blob: &dyn Blob) {
        assert!(blob.get("a.batch").unwrap().is_none());
        blob.set("a.batch", b"hello").unwrap();
        assert_eq!(&*blob.get("a.batch").unwrap().unwrap(), b"hello");
        // Uncommitted writes are invisible; dropping discards them.
        let mut w = blob.create("b.batch").unwrap();
        w.write(b"xy").unwrap();
        assert_eq!(w.len(), 2);
        assert!(blob.get("b.batch").unwrap().is_none());
        drop(w);
        assert!(blob.get("b.batch").unwrap().is_none());
        // Replacement keeps old readers' bytes intact.
        let old = blob.get("a.batch").unwrap().unwrap();
        blob.set("a.batch", b"world!").unwrap();
        assert_eq!(&*old, b"hello");
        assert_eq!(&*blob.get("a.batch").unwrap().unwrap(), b"world!");
        let mut names = blob.list().unwrap();
        names.sort();
        assert_eq!(names, vec!["a.batch".to_string()]);
        blob.delete("a.batch").unwrap();
        blob.delete("a.batch").unwrap();
        assert!(blob.get("a.batch").unwrap().is_none());
        assert!(blob.create("../x").is_err());
        assert!(blob.create("").is_err());
        assert!(blob.create_new("../x").is_err());
        // A new object: readable under its name once committed; dropped uncommitted, it is gone.
        let mut w = blob.create_new("7.batch").unwrap();
        w.write(b"new").unwrap();
        w.commit().unwrap();
        assert_eq!(&*blob.get("7.batch").unwrap().unwrap(), b"new");
        let mut w = blob.create_new("8.batch").unwrap();
        w.write(b"partial").unwrap();
        drop(w);
        assert!(blob.get("8.batch").unwrap().is_none());
        assert_eq!(blob.list().unwrap(), vec!["7.batch".to_string()]);
        blob.delete("7.batch").unwrap();
    }

    #[test]
    fn mem_blob_keeps_the_contract() {
        contract(&MemBlob::new());
    }

    #[test]
    fn dir_blob_keeps_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        contract(&DirBlob::open(dir.path()).unwrap());
    }

    #[test]
    fn dir_blob_on_a_simulated_file_system_keeps_the_contract() {
        let fs = crate::fs::SimFs::new();
        contract(&DirBlob::on(fs.shared(), "/store").unwrap());
    }
}
