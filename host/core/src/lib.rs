//! vt's data model.
//!
//! Everything here is independent of where blocks live and of how the host
//! talks to plugins: hashes ([`hash`]), block references and their codecs
//! ([`block`]), the content-defined chunker and the [`Scanner`] trait
//! ([`chunker`], [`scanner`]), turning byte streams into block trees ([`blockify`]),
//! reading them back ([`read`]), directory entries ([`dirent`], [`dir`]),
//! archives of snapshots ([`archive`]), the [`Store`] trait ([`store`]) and
//! `x-vt:` URIs ([`uri`]).

pub mod archive;
pub mod block;
pub mod blockify;
pub mod chunker;
pub mod codec;
pub mod dir;
pub mod dirent;
pub mod error;
pub mod glob;
pub mod hash;
pub mod path;
pub mod read;
pub mod scanner;
pub mod sha3x4;
pub mod store;
#[cfg(test)]
mod testdata;
pub mod timefmt;
pub mod transcribe;
pub mod uri;

pub use block::BlockRef;
pub use chunker::ChunkParams;
pub use dirent::{Dirent, DirentKind, Meta};
pub use error::{Error, Result};
pub use hash::{Hash, HashKind};
pub use scanner::{Scanner, ScannerSource};
pub use store::{BlockClass, Store};
