//! Errors of the plugin host.

use std::path::PathBuf;

/// What went wrong loading, installing or running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{what} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// The system's reason.
        #[source]
        cause: std::io::Error,
    },
    /// The bytes are not a component vt can use.
    #[error("{plugin}: not a usable vt scanner plugin: {detail}")]
    Invalid {
        /// The plugin's file or name.
        plugin: String,
        /// Why.
        detail: String,
    },
    /// The plugin was built against another major version of `vt:plugin`.
    #[error(
        "{plugin}: built against vt:plugin@{found}, but this vt speaks vt:plugin@{}; \
         rebuild the plugin against a matching vt-sdk",
        crate::WIT_VERSION
    )]
    Incompatible {
        /// The plugin's file or name.
        plugin: String,
        /// The WIT version it exports.
        found: String,
    },
    /// The plugin failed while running (trap, deadline, memory limit).
    #[error("plugin {plugin}: {detail}")]
    Failed {
        /// The plugin's name.
        plugin: String,
        /// What happened.
        detail: String,
    },
    /// No such plugin.
    #[error("no plugin named {0:?} (see `vt plugin list`)")]
    NotFound(String),
}

/// Result with the plugin host's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(what: &'static str, path: &std::path::Path, cause: std::io::Error) -> Self {
        Error::Io {
            what,
            path: path.to_path_buf(),
            cause,
        }
    }
}
