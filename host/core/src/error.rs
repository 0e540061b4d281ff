//! The one error type of the data model and of every Store.

use std::path::PathBuf;

use crate::hash::Hash;

/// Shorthand for results carrying [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong in the data model or in a Store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O operation failed; `what` says on what.
    #[error("{what}: {cause}")]
    Io {
        /// What was being done, and on which path.
        what: String,
        /// The underlying error (shown in the message, so not a `source`).
        cause: std::io::Error,
    },
    /// Encoded data (binary or text) is malformed.
    #[error("malformed {what}: {detail}")]
    Decode {
        /// What kind of thing was being decoded.
        what: &'static str,
        /// What was wrong with it.
        detail: String,
    },
    /// A block is not in the store.
    #[error("block {0} is not in the store")]
    Missing(Hash),
    /// Stored data failed its checksum or hash check; it is never returned.
    #[error("block {hash} is corrupt in {}: {detail}", file.display())]
    Corrupt {
        /// The block that could not be read.
        hash: Hash,
        /// The datafile holding it.
        file: PathBuf,
        /// What check failed.
        detail: String,
    },
    /// The store cannot do this (keep archives, take writes).
    #[error("{0}")]
    Unsupported(String),
    /// Anything else a store reports (index database errors, configuration).
    #[error("{0}")]
    Store(String),
}

impl Error {
    /// Wraps an I/O error with a description of what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            cause: source,
        }
    }

    /// A decoding error.
    pub fn decode(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Decode {
            what,
            detail: detail.into(),
        }
    }
}
