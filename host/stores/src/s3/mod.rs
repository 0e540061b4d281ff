//! A store in an S3 bucket (AWS or any S3-compatible server: MinIO, Ceph,
//! Garage), laid out as `vt-s3.5` specifies.
//!
//! The client is the `object_store` crate (Apache Arrow's): it speaks any
//! S3-compatible server, retries 5xx and 429 answers with exponential
//! backoff, uploads large objects in parts and takes credentials from the
//! standard `AWS_*` environment variables. It is asynchronous; the
//! [`Store`] trait is not, so an [`S3Store`] owns a small tokio runtime
//! and blocks on it. Store methods are called from plain threads (or a
//! runtime's blocking threads), never from async code, where blocking
//! would stall the caller's runtime.
//!
//! Two layouts ([`S3Layout`]): *packed* (the default) gathers blocks into
//! datafile objects of several megabytes with an index object each, as
//! restic does, so a backup of a million small files is a few hundred
//! requests; *blocks* stores each block as its own object, exactly its
//! bytes, for serving blocks over plain HTTP.

mod archives;
mod blocks;
mod bucket;
mod fsck;
mod local_packs;
mod options;
mod pack;
mod pack_index;
mod packed;
mod record_cache;
mod single_flight;
mod uploads;

#[cfg(test)]
mod tests;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

use archives::Archives;
use blocks::Blocks;
use bucket::Bucket;
use packed::Packed;

pub use bucket::S3Requests;
pub use fsck::S3FsckReport;
pub use options::{S3Layout, S3Options, DEFAULT_PACK_SIZE};

/// Worker threads of a store's runtime: enough to keep several uploads
/// and fetches in flight (they wait on the network, not the CPU).
const WORKERS: usize = 2;

enum Layout {
    Packed(Box<Packed>),
    Blocks(Blocks),
}

/// A store in an S3 bucket.
pub struct S3Store {
    layout: Layout,
    bucket: Arc<Bucket>,
    kind: HashKind,
    /// The last archive object timestamp (see [`archives`]).
    clock: AtomicU64,
    /// Declared last: dropped after everything that runs on it.
    rt: tokio::runtime::Runtime,
}

impl S3Store {
    /// Opens the store `opts` describes. The packed layout lists the index
    /// objects and fetches those its cache lacks; the blocks layout makes
    /// no request.
    pub fn open(opts: S3Options) -> Result<S3Store> {
        let bucket = Arc::new(Bucket::new(&opts)?);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .on_thread_start(crate::stream::block_sigpipe)
            .worker_threads(WORKERS)
            .thread_name("vt-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(format!("{}: start the S3 client", bucket.name()), e))?;
        let layout = match opts.layout {
            S3Layout::Packed => {
                let Some(cache) = &opts.cache_dir else {
                    return Err(Error::Store(format!(
                        "{}: the packed layout needs a directory for its index cache (cache_dir)",
                        bucket.name()
                    )));
                };
                Layout::Packed(Box::new(Packed::open(
                    bucket.clone(),
                    rt.handle().clone(),
                    opts.hash_kind,
                    opts.pack_size,
                    cache,
                    opts.verify,
                )?))
            }
            S3Layout::Blocks => Layout::Blocks(Blocks::open(bucket.clone(), rt.handle().clone())),
        };
        Ok(S3Store {
            layout,
            bucket,
            kind: opts.hash_kind,
            clock: AtomicU64::new(0),
            rt,
        })
    }

    /// `s3 bucket BUCKET[/PREFIX] at ENDPOINT`: how messages name the
    /// store.
    pub fn name(&self) -> &str {
        self.bucket.name()
    }

    /// The requests made since the store was opened.
    pub fn requests(&self) -> S3Requests {
        self.bucket.requests()
    }

    /// Reads every object of the store back and checks every block's hash
    /// (see [`S3FsckReport`]). Blocks added since the last sync are not
    /// in the bucket yet and not checked.
    pub fn fsck(&self) -> Result<S3FsckReport> {
        match &self.layout {
            Layout::Packed(_) => self.rt.block_on(fsck::packed(&self.bucket)),
            Layout::Blocks(_) => self.rt.block_on(fsck::blocks(&self.bucket)),
        }
    }

    fn archives(&self) -> Archives<'_> {
        Archives {
            bucket: &self.bucket,
            rt: self.rt.handle(),
            clock: &self.clock,
        }
    }

    fn get_bytes(&self, hash: &Hash) -> Result<Option<Bytes>> {
        match &self.layout {
            Layout::Packed(p) => p.get(hash),
            Layout::Blocks(b) => b.get(hash),
        }
    }
}

impl Store for S3Store {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.add_hashed_as(hash, data, BlockClass::Data)
    }

    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        let lane = match class {
            BlockClass::Data => pack::Lane::Data,
            BlockClass::Meta => pack::Lane::Meta,
        };
        match &self.layout {
            Layout::Packed(p) => p.add(hash, data, lane),
            Layout::Blocks(b) => b.add(hash, data),
        }
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self.get_bytes(hash)?.map(|b| b.to_vec()))
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        self.get_bytes(hash)
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        match &self.layout {
            Layout::Packed(p) => p.contains(hash),
            Layout::Blocks(b) => b.contains(hash),
        }
    }

    fn sync(&self) -> Result<()> {
        match &self.layout {
            Layout::Packed(p) => p.sync(),
            Layout::Blocks(b) => b.sync(),
        }
    }

    fn stats(&self) -> Result<StoreStats> {
        match &self.layout {
            Layout::Packed(p) => p.stats(),
            Layout::Blocks(b) => b.stats(),
        }
    }

    fn prefetch(&self, hashes: &[Hash]) {
        if let Layout::Packed(p) = &self.layout {
            p.prefetch(hashes);
        }
    }

    fn locality(&self, hash: &Hash) -> Option<u64> {
        match &self.layout {
            Layout::Packed(p) => p.locality(hash),
            Layout::Blocks(_) => None,
        }
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        self.archives().names()
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.archives().read(name)
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.archives().append(name, lines)
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.archives().replace(name, text)
    }
}

impl Drop for S3Store {
    /// Uploads what was added since the last sync, as a DataDir's blocks
    /// reach its datafiles when it is dropped; a failure can only be
    /// logged here (callers that must know call [`Store::sync`]).
    fn drop(&mut self) {
        let dirty = match &self.layout {
            Layout::Packed(p) => p.dirty(),
            Layout::Blocks(b) => b.dirty(),
        };
        if dirty {
            if let Err(e) = self.sync() {
                tracing::warn!(
                    "{}: blocks added since the last sync are lost: {e}",
                    self.name()
                );
            }
        }
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "s3",
        summary: "an S3 bucket (AWS or any S3-compatible server)",
        settings: &["bucket", "prefix", "endpoint", "region", "access_key_id", "secret_access_key", "layout", "cache_dir", "pack_size", "hash", "retry_timeout", "verify"],
        order: 7,
    }
}
