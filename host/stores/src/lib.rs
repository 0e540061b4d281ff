//! Store implementations for vt.
//!
//! - [`MemoryStore`]: blocks in memory, optionally a bounded lossy cache.
//! - [`DataDir`]: the embedded default: append-only `.vtd` datafiles of
//!   compressed records plus an LMDB index that can be rebuilt from them.
//! - [`stream`]: `vt serve` and [`StreamStore`], a store on a server.

pub mod datadir;
pub mod datafile;
pub mod dict;
pub mod effort;
pub mod mapping;
pub mod memory;
pub mod stream;
pub mod vtd_scanner;

pub use datadir::{DataDir, FsckReport};
pub use datafile::Verify;
pub use effort::Compression;
pub use memory::MemoryStore;
pub use stream::StreamStore;
