//! Store implementations for vt.
//!
//! - [`MemoryStore`]: blocks in memory, optionally a bounded lossy cache.
//! - [`DataDir`]: the embedded default: append-only `.vtd` datafiles of
//!   compressed records plus an LMDB index that can be rebuilt from them.

pub mod datadir;
pub mod datafile;
pub mod dict;
pub mod effort;
pub mod mapping;
pub mod memory;
pub mod vtd_scanner;

pub use datadir::{DataDir, FsckReport};
pub use datafile::Verify;
pub use effort::Compression;
pub use memory::MemoryStore;
