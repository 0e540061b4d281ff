//! Store implementations for vt.
//!
//! - [`MemoryStore`]: blocks in memory, optionally a bounded lossy cache.
//! - [`DataDir`]: the embedded default: append-only `.vtd` datafiles of
//!   compressed records plus an index of sorted runs that can be rebuilt
//!   from them.
//! - [`stream`]: `vt serve` and [`StreamStore`], a store on a server.
//! - [`http`]: `vt httpd` and [`HttpStore`], a store on an HTTP server.
//! - [`S3Store`]: a store in an S3 bucket (AWS or any S3-compatible server).

pub mod archive_route;
pub(crate) mod base_cache;
pub mod datadir;
pub mod datafile;
pub mod delta;
pub mod dict;
pub mod effort;
pub mod file_cache;
pub mod http;
pub(crate) mod index;
pub mod mapping;
pub mod mem_cache;
pub mod memory;
pub mod progress;
pub mod proxy;
pub mod s3;
pub mod similar;
pub mod spec;
pub mod stream;

pub use datadir::{DataDir, FsckReport};
pub use datafile::Verify;
pub use effort::Compression;
pub use file_cache::{FileCache, FileCacheCounts};
pub use http::HttpStore;
pub use mem_cache::MemCache;
pub use memory::MemoryStore;
pub use progress::{ProgressCounts, ProgressStore};
pub use proxy::ProxyStore;
pub use s3::{S3Layout, S3Options, S3Store};
pub use stream::StreamStore;
