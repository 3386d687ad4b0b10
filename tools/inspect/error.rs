//! The tool's error type and the constructors of the `ddpersist::Error`s it raises itself.
//!
//! Everything that can fail is either a store problem (a [`ddpersist::Error`], whose `Display` names
//! the file and offset) or a failure to write the report to stdout; both print as one line and exit 1.

use std::fmt;

/// A failure of an `inspect` command.
#[derive(Debug)]
pub enum ToolError {
    /// Reading or checking the store failed.
    Store(ddpersist::Error),
    /// Writing the report failed (e.g. a closed pipe).
    Output(std::io::Error),
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ToolError::Store(e) => write!(f, "{e}"),
            ToolError::Output(e) => write!(f, "cannot write output: {e}"),
        }
    }
}

impl From<ddpersist::Error> for ToolError {
    fn from(e: ddpersist::Error) -> Self {
        ToolError::Store(e)
    }
}

impl From<std::io::Error> for ToolError {
    fn from(e: std::io::Error) -> Self {
        ToolError::Output(e)
    }
}

/// The result of an `inspect` step.
pub type ToolResult<T> = std::result::Result<T, ToolError>;

/// An [`ddpersist::Error::Corrupt`] at `file` + `offset`.
pub fn corrupt(file: &str, offset: u64, detail: impl Into<String>) -> ddpersist::Error {
    ddpersist::Error::Corrupt {
        file: file.to_string(),
        offset,
        detail: detail.into(),
    }
}

/// An [`ddpersist::Error::Io`] for doing `what` (which names the path).
pub fn io(what: impl Into<String>, source: std::io::Error) -> ddpersist::Error {
    ddpersist::Error::Io {
        context: what.into(),
        source,
    }
}
