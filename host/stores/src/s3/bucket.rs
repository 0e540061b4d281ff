//! The bucket an S3 store talks to: object_store's S3 client, the store's
//! key prefix and name (every error names the store), and counts of the
//! requests made.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectMeta, ObjectStore, PutPayload, RetryConfig};

use vt_core::{Error, Result};

use super::options::S3Options;

/// Objects above this size are uploaded in parts (packs normally stay
/// below it: they are sealed at [`S3Options::pack_size`]).
const MULTIPART_ABOVE: usize = 16 << 20;
/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;

/// How many requests of each kind a store has made since it was opened:
/// what a test checks to see that the index cache saved requests, and
/// what a user sees to know what a run cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct S3Requests {
    /// Whole-object GETs.
    pub get: u64,
    /// Ranged GETs (one record of a pack).
    pub get_range: u64,
    /// PUTs (a multipart upload counts once).
    pub put: u64,
    /// HEADs.
    pub head: u64,
    /// LIST requests (a listing of many pages counts once).
    pub list: u64,
    /// DELETEs.
    pub delete: u64,
}

#[derive(Default)]
struct Counters {
    get: AtomicU64,
    get_range: AtomicU64,
    put: AtomicU64,
    head: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// One store's bucket and prefix, shared by the store and its background
/// uploads.
pub(crate) struct Bucket {
    client: Arc<dyn ObjectStore>,
    /// `s3 bucket BUCKET[/PREFIX] at ENDPOINT`.
    name: String,
    /// The prefix without slashes at either end; "" for none.
    prefix: String,
    counts: Counters,
}

impl Bucket {
    /// A client for the bucket of `opts` (no request is made).
    pub(crate) fn new(opts: &S3Options) -> Result<Self> {
        let prefix = opts.prefix.trim_matches('/').to_owned();
        let endpoint = opts
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", opts.region));
        let name = if prefix.is_empty() {
            format!("s3 bucket {} at {endpoint}", opts.bucket)
        } else {
            format!("s3 bucket {}/{prefix} at {endpoint}", opts.bucket)
        };
        if opts.bucket.is_empty() {
            return Err(Error::Store(format!("{name}: no bucket name given")));
        }
        if !prefix.is_empty() {
            Path::parse(&prefix).map_err(|e| {
                Error::Store(format!(
                    "{name}: prefix {:?} cannot be part of a key: {e}",
                    opts.prefix
                ))
            })?;
        }
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: std::time::Duration::from_millis(100),
                ..BackoffConfig::default()
            },
            max_retries: opts.max_retries,
            retry_timeout: opts.retry_timeout,
        };
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&opts.bucket)
            .with_region(&opts.region)
            .with_retry(retry);
        if let Some(ep) = &opts.endpoint {
            b = b
                .with_endpoint(ep)
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false);
        }
        if let Some(k) = &opts.access_key_id {
            b = b.with_access_key_id(k);
        }
        if let Some(k) = &opts.secret_access_key {
            b = b.with_secret_access_key(k);
        }
        let client = b
            .build()
            .map_err(|e| Error::Store(format!("{name}: cannot set up the S3 client: {e}")))?;
        Ok(Bucket {
            client: Arc::new(client),
            name,
            prefix,
            counts: Counters::default(),
        })
    }

    /// `s3 bucket BUCKET[/PREFIX] at ENDPOINT`, for messages.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The key of `rest` (a path relative to the store's prefix, whose
    /// parts need no escaping: callers build it from hex, fixed words and
    /// checked archive names).
    pub(crate) fn key(&self, rest: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(rest)
        } else {
            Path::from(format!("{}/{rest}", self.prefix))
        }
    }

    /// `key` relative to the store's prefix, for messages and for listings.
    pub(crate) fn rel<'a>(&self, key: &'a Path) -> &'a str {
        let k = key.as_ref();
        if self.prefix.is_empty() {
            return k;
        }
        k.strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(k)
    }

    /// An error about `what` done on `key`.
    pub(crate) fn error(&self, what: &str, key: &Path, e: impl std::fmt::Display) -> Error {
        Error::Store(format!("{}: {what} {}: {e}", self.name, self.rel(key)))
    }

    /// The requests made so far.
    pub(crate) fn requests(&self) -> S3Requests {
        let c = &self.counts;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        S3Requests {
            get: n(&c.get),
            get_range: n(&c.get_range),
            put: n(&c.put),
            head: n(&c.head),
            list: n(&c.list),
            delete: n(&c.delete),
        }
    }

    /// Writes `data` to `key` (in parts if it is large).
    pub(crate) async fn put(&self, key: &Path, data: Bytes) -> Result<()> {
        bump(&self.counts.put);
        if data.len() <= MULTIPART_ABOVE {
            self.client
                .put(key, PutPayload::from(data))
                .await
                .map_err(|e| self.error("cannot write", key, e))?;
            return Ok(());
        }
        let mut up = self
            .client
            .put_multipart(key)
            .await
            .map_err(|e| self.error("cannot start uploading", key, e))?;
        let mut parts = Vec::new();
        for at in (0..data.len()).step_by(PART_SIZE) {
            let end = (at + PART_SIZE).min(data.len());
            parts.push(up.put_part(PutPayload::from(data.slice(at..end))));
        }
        let sent = futures::future::try_join_all(parts).await;
        if let Err(e) = sent {
            let _ = up.abort().await;
            return Err(self.error("cannot upload", key, e));
        }
        up.complete()
            .await
            .map_err(|e| self.error("cannot complete the upload of", key, e))?;
        Ok(())
    }

    /// The whole of `key`; `None` if there is no such object.
    pub(crate) async fn get(&self, key: &Path) -> Result<Option<Bytes>> {
        bump(&self.counts.get);
        let r = match self.client.get(key).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error("cannot read", key, e)),
        };
        r.bytes()
            .await
            .map(Some)
            .map_err(|e| self.error("cannot read", key, e))
    }

    /// Bytes `range` of `key`, exactly.
    pub(crate) async fn get_range(&self, key: &Path, range: Range<u64>) -> Result<Bytes> {
        bump(&self.counts.get_range);
        let want = range.end - range.start;
        let b = self
            .client
            .get_range(key, range.clone())
            .await
            .map_err(|e| self.error("cannot read", key, e))?;
        if b.len() as u64 != want {
            return Err(self.error(
                "short read of",
                key,
                format!(
                    "asked for bytes {}..{}, got {} bytes",
                    range.start,
                    range.end,
                    b.len()
                ),
            ));
        }
        Ok(b)
    }

    /// The size of `key`; `None` if there is no such object.
    pub(crate) async fn head(&self, key: &Path) -> Result<Option<u64>> {
        bump(&self.counts.head);
        match self.client.head(key).await {
            Ok(m) => Ok(Some(m.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error("cannot look up", key, e)),
        }
    }

    /// Every object under `dir` (relative to the prefix, no slash at the
    /// end), at any depth.
    pub(crate) async fn list(&self, dir: &str) -> Result<Vec<ObjectMeta>> {
        bump(&self.counts.list);
        let key = self.key(dir);
        self.client
            .list(Some(&key))
            .try_collect()
            .await
            .map_err(|e| self.error("cannot list", &key, e))
    }

    /// Whether any object lies under `dir` (reads one page of a listing).
    pub(crate) async fn any(&self, dir: &str) -> Result<bool> {
        bump(&self.counts.list);
        let key = self.key(dir);
        match self.client.list(Some(&key)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(self.error("cannot list", &key, e)),
        }
    }

    /// The names of the "directories" right under `dir`.
    pub(crate) async fn list_dirs(&self, dir: &str) -> Result<Vec<String>> {
        bump(&self.counts.list);
        let key = self.key(dir);
        let r = self
            .client
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| self.error("cannot list", &key, e))?;
        Ok(r.common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// Deletes `key` (no error if it is gone already).
    pub(crate) async fn delete(&self, key: &Path) -> Result<()> {
        bump(&self.counts.delete);
        match self.client.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("cannot delete", key, e)),
        }
    }
}
