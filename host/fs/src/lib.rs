//! `vt mount`: a read-write FUSE filesystem over a vt snapshot.
//!
//! The tree is loaded lazily from the store: a directory's entries are
//! decoded when it is first looked into. Reads of stored files go through a
//! [`blockmap`] (offset → leaf block, built once per file) and a shared
//! leaf cache with read-ahead. Writes go to memory (small files) or to a
//! local backing file ([`backing`]); closing a written file queues a
//! background sync ([`sync`]) that blockifies it, with the scanner the
//! [`ScannerChooser`] picks, back into the store. A commit (on `fsync`, at
//! unmount, on SIGINT/SIGTERM through [`FsHandle::shutdown`]) waits for the
//! queued syncs, encodes every changed directory and appends the new top
//! Dirent to the archive.
//!
//! The crate depends on the data model and on `fuser` only: the binary
//! passes in the store, the snapshot and the scanner chooser.

pub mod backing;
pub mod blockmap;
pub mod error;
pub mod fence;
mod fs;
pub mod inode;
pub mod readahead;
pub mod sync;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vt_core::archive::{Archive, ArchiveEntry};
use vt_core::{Dirent, Scanner, Store};

pub use error::{FsError, Result};
pub use fs::{FsHandle, VtFs};

/// Picks the scanner that proposes block boundaries for a written file,
/// from its name and its first KiB; `None` means plain content-defined
/// chunking. The vt binary passes in the plugin registry's choice.
pub type ScannerChooser = Arc<dyn Fn(&Path, &[u8]) -> Option<Box<dyn Scanner>> + Send + Sync>;

/// A chooser that never picks a scanner.
pub fn no_scanner() -> ScannerChooser {
    Arc::new(|_: &Path, _: &[u8]| None)
}

/// What a mount may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Everything.
    ReadWrite,
    /// Nothing: every change fails with EROFS.
    ReadOnly,
    /// Nothing may be removed, truncated or overwritten; new files and
    /// directories may be made and files appended to.
    AppendOnly,
}

/// What the mount shows.
pub enum Roots {
    /// One snapshot: `chain` is the path of Dirents from the snapshot's top
    /// down to the directory presented as the mount's root (just the top
    /// when no SUBPATH was given).
    One {
        /// Top first, presented directory last.
        chain: Vec<Dirent>,
    },
    /// Every snapshot of an archive, each a read-only directory named by
    /// its timestamp.
    All(Vec<ArchiveEntry>),
}

/// Everything a mount needs.
pub struct MountConfig {
    /// Where blocks are read from and written to.
    pub store: Arc<dyn Store>,
    /// The snapshot(s) shown.
    pub roots: Roots,
    /// Where new snapshots are recorded; `None` (a Dirent given on the
    /// command line) keeps them only in [`FsHandle::last_top`].
    pub archive: Option<Archive>,
    /// What may change.
    pub mode: Mode,
    /// A private, empty directory for backing files.
    pub backing_dir: PathBuf,
    /// Scanner choice for written files.
    pub chooser: ScannerChooser,
}
