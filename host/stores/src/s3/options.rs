//! What an S3 store is opened with: which bucket, where, how blocks are
//! laid out in it.

use std::path::PathBuf;
use std::time::Duration;

use vt_core::HashKind;

use crate::datafile::Verify;

/// How an S3 store lays out its blocks in the bucket (see `vt-s3.5`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum S3Layout {
    /// Blocks packed into objects of several megabytes in vt's datafile
    /// format, each with an index object: few requests and compressed
    /// data, as restic's repositories do. The default.
    #[default]
    Packed,
    /// One object per block, holding the block's bytes exactly: any HTTP
    /// client or CDN can serve a block straight from the bucket, at the
    /// cost of one request per block.
    Blocks,
}

/// Where an S3 store lives and how it is laid out.
///
/// Build it with [`S3Options::new`] (every field has a default but the
/// bucket) and set the fields that differ.
#[derive(Clone, Debug)]
pub struct S3Options {
    /// The bucket, which must exist.
    pub bucket: String,
    /// A key prefix, so that one bucket can hold several stores: keys go
    /// under `PREFIX/`; "" (the default) puts them at the bucket's top.
    pub prefix: String,
    /// The server's URL (`http://127.0.0.1:9000` for a local MinIO); given,
    /// requests are path-style and plain HTTP is allowed, as S3-compatible
    /// servers other than AWS want. `None`: AWS itself.
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`, which S3-compatible servers accept).
    pub region: String,
    /// The access key; `None` takes `AWS_ACCESS_KEY_ID` (and the other
    /// standard `AWS_*` variables) from the environment.
    pub access_key_id: Option<String>,
    /// The secret key; `None` takes `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// How blocks are laid out.
    pub layout: S3Layout,
    /// A local directory holding a copy of every index object
    /// ([`S3Layout::Packed`], which requires it), so that opening the store
    /// fetches only the index objects it has not seen.
    pub cache_dir: Option<PathBuf>,
    /// The hash function new blocks are named with (default SHA3-256).
    pub hash_kind: HashKind,
    /// The size a pack object is sealed and uploaded at (default 8 MiB).
    pub pack_size: usize,
    /// How often a failed request (a 5xx or 429 answer, a dropped
    /// connection) is retried, with exponential backoff from 100 ms.
    pub max_retries: usize,
    /// No request is retried once this long has passed since it was first
    /// sent (default 3 minutes).
    pub retry_timeout: Duration,
    /// How the packed layout checks a block it reads: as a DataDir checks
    /// its datafiles, the same format ([`Verify::Checksum`]: CRC-32,
    /// record identity, a member's hash prefix; catches damage in the
    /// bucket and on the wire), or also by hashing it ([`Verify::Hash`]:
    /// catches a bucket rewritten on purpose, at SHA3's cost).
    pub verify: Verify,
}

/// The default [`S3Options::pack_size`].
pub const DEFAULT_PACK_SIZE: usize = 8 << 20;

impl S3Options {
    /// Options for `bucket` with every other field at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        S3Options {
            bucket: bucket.into(),
            prefix: String::new(),
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            layout: S3Layout::Packed,
            cache_dir: None,
            hash_kind: HashKind::Sha3_256,
            pack_size: DEFAULT_PACK_SIZE,
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
            verify: Verify::Checksum,
        }
    }
}
