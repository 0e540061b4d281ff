//! Errors of the filesystem crate.

/// Shorthand for results carrying [`FsError`].
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// What can go wrong setting up or committing a mount.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// The data model or the store failed.
    #[error(transparent)]
    Core(#[from] vt_core::Error),
    /// An I/O operation failed; `what` says on what.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The snapshot cannot be mounted as asked.
    #[error("{0}")]
    Unsupported(String),
}

impl FsError {
    /// Wraps an I/O error with a description.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        FsError::Io {
            what: what.into(),
            source,
        }
    }
}
