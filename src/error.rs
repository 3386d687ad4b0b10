//! The one error type of the crate.
//!
//! Variants are split by what the caller can do about them: fix the input (`BadInput`, `UnknownStream`,
//! `NotAStore`, `DiffOverflow`), wait or pick another directory (`Locked`), upgrade the library
//! (`VersionTooNew`), restore from a backup or inspect the named file (`Corrupt`), or retry / fix the
//! machine (`Io`).

use std::fmt;
use std::path::PathBuf;

/// A `Result` whose error is this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in ddpersist.
#[derive(Debug)]
pub enum Error {
    /// An I/O operation failed. `context` names the file or operation.
    Io {
        /// What was being done, usually with the path.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Persisted bytes failed a check: bad magic, checksum mismatch, an offset out of range.
    /// Nothing was changed on disk because of it.
    Corrupt {
        /// The file (or blob name) holding the bad bytes.
        file: String,
        /// Byte offset in that file where the bad structure starts.
        offset: u64,
        /// What check failed.
        detail: String,
    },
    /// A file was written by a newer format version than this library reads.
    VersionTooNew {
        /// The file (or blob name).
        file: String,
        /// The version found in the file.
        found: u32,
        /// The newest version this library reads.
        supported: u32,
    },
    /// The directory is locked by another process (or another `Store` in this one).
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The path holds no store and may not become one (not a directory, or other files and no manifest,
    /// or missing and creation was not asked for).
    NotAStore {
        /// The path.
        path: PathBuf,
        /// Why it is not a store.
        reason: String,
    },
    /// No stream with this id exists in the store.
    UnknownStream {
        /// The id asked for.
        id: String,
    },
    /// The request is invalid and was rejected without changing anything (e.g. a write below the sealed
    /// upper, a seal that does not advance, an empty or duplicate id).
    BadInput {
        /// What is wrong with it.
        detail: String,
    },
    /// A value could not be decoded by its [`crate::Codec`].
    Decode {
        /// What is wrong with the bytes.
        detail: String,
    },
    /// The diffs of one key's updates sum to a value outside `i64` (DESIGN.md, "Diff arithmetic"): the
    /// updates of one `(key, val, time)` (written, or made equal by advancing times to the stream's
    /// `since`), or the updates of a `(key, val)` accumulated up to a lookup's time. Only the true total
    /// counts (sums are computed in `i128`): partial sums out of range are fine.
    ///
    /// A write that would cause it in the memtable is rejected whole, before anything is logged. Elsewhere
    /// the operation fails and changes nothing: a seal or snapshot reading unsealed updates from spilled
    /// runs and the memtable, a lookup, or a merge advancing times (recorded as the store's
    /// [`background_error`](crate::Store::background_error); the batches stay unmerged and readable).
    /// What the caller can do: write a compensating update (an opposite diff at the same key, val and a
    /// time not yet sealed) so that the total fits again, or read as of an earlier time.
    DiffOverflow {
        /// The stream (empty if the operation does not know it, e.g. a merge of bare batch files).
        stream: String,
        /// The key's bytes (its [`crate::Codec`] encoding).
        key: Vec<u8>,
        /// The time of the update whose diff overflowed, or the lookup's `as_of`.
        time: u64,
    },
    /// The store was closed after a failed durable write; reopen it to recover.
    Poisoned {
        /// The failure that poisoned it.
        detail: String,
    },
    /// A compare-and-append ([`Store::append`](crate::Store::append)) expected the stream's upper at
    /// `expected`, but it is at `current` (another writer moved it, or the caller lost track): nothing
    /// changed. Continue from `current` (the interval below it is persisted).
    UpperMismatch {
        /// The stream's id.
        stream: String,
        /// The lower the append named.
        expected: u64,
        /// The stream's upper.
        current: u64,
    },
}

impl Error {
    /// An [`Error::Io`] with `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Corrupt`] at `file` + `offset`.
    pub(crate) fn corrupt(file: impl Into<String>, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// An [`Error::BadInput`].
    pub(crate) fn bad_input(detail: impl Into<String>) -> Self {
        Error::BadInput {
            detail: detail.into(),
        }
    }

    /// An [`Error::Decode`].
    pub(crate) fn decode(detail: impl Into<String>) -> Self {
        Error::Decode {
            detail: detail.into(),
        }
    }

    /// An [`Error::DiffOverflow`] for `key` at `time`, its stream not yet named (see
    /// [`in_stream`](Self::in_stream)).
    pub(crate) fn diff_overflow(key: &[u8], time: u64) -> Self {
        Error::DiffOverflow {
            stream: String::new(),
            key: key.to_vec(),
            time,
        }
    }

    /// This error, with the stream named `id` if it is an [`Error::DiffOverflow`] that names none yet.
    pub(crate) fn in_stream(self, id: &str) -> Self {
        match self {
            Error::DiffOverflow { stream, key, time } if stream.is_empty() => Error::DiffOverflow {
                stream: id.to_string(),
                key,
                time,
            },
            other => other,
        }
    }

    /// A replay callback's error about a WAL record's payload, re-anchored: an [`Error::Corrupt`] at
    /// `offset` within the payload becomes one at `payload_at + offset` of the segment file `file`, its
    /// detail naming the record's LSN. Other errors are unchanged.
    pub(crate) fn within_payload(self, file: &str, payload_at: u64, lsn: u64) -> Self {
        match self {
            Error::Corrupt { offset, detail, .. } => Error::Corrupt {
                file: file.to_string(),
                offset: payload_at.saturating_add(offset),
                detail: format!("record at LSN {lsn}: {detail}"),
            },
            other => other,
        }
    }

    /// Whether this error reports persisted bytes that failed a check.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// Whether this error is an I/O error for want of space: a full disk (`ENOSPC`) or an exhausted quota
    /// (`EDQUOT`), by [`std::io::ErrorKind`]. Such a failure is retryable once space is freed; the store
    /// keeps a space reserve for it (DESIGN.md §3).
    pub fn is_no_space(&self) -> bool {
        use std::io::ErrorKind::{QuotaExceeded, StorageFull};
        matches!(self, Error::Io { source, .. } if matches!(source.kind(), StorageFull | QuotaExceeded))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { context, source } => write!(f, "I/O error: {context}: {source}"),
            Error::Corrupt { file, offset, detail } => {
                write!(f, "corruption in {file} at offset {offset}: {detail}")
            }
            Error::VersionTooNew {
                file,
                found,
                supported,
            } => write!(
                f,
                "{file} has format version {found}, newer than the newest this library reads ({supported})"
            ),
            Error::Locked { path } => {
                write!(
                    f,
                    "store {} is locked by another process or handle (open a store once per process, \
                     before `timely::execute`, and clone the `Store` into the workers)",
                    path.display()
                )
            }
            Error::NotAStore { path, reason } => {
                write!(f, "{} is not a ddpersist store: {reason}", path.display())
            }
            Error::UnknownStream { id } => write!(f, "unknown stream id {id:?}"),
            Error::BadInput { detail } => write!(f, "bad input: {detail}"),
            Error::Decode { detail } => write!(f, "decode error: {detail}"),
            Error::DiffOverflow { stream, key, time } => write!(
                f,
                "diff overflow: the diffs of key {} (hex {}) in stream {stream:?} at time {time} sum \
                 outside i64",
                key.escape_ascii(),
                Hex(key)
            ),
            Error::Poisoned { detail } => write!(f, "store poisoned by an earlier failure: {detail}"),
            Error::UpperMismatch {
                stream,
                expected,
                current,
            } => write!(
                f,
                "append to stream {stream:?} at lower {expected}, but its upper is {current}"
            ),
        }
    }
}

/// Bytes as lowercase hex, for messages.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
