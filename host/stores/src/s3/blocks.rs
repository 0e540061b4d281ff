//! The blocks layout (`vt-s3.5`): each block its own object
//! `h/KIND:HEX`, holding exactly the block's bytes, so that any HTTP
//! client (a CDN in front of the bucket) can serve a block by its name.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use bytes::Bytes;
use tokio::runtime::Handle;

use vt_core::store::StoreStats;
use vt_core::{Error, Hash, Result};

use super::bucket::Bucket;
use super::uploads::Uploads;

/// The key of block `hash`, relative to the prefix.
pub fn block_key(hash: &Hash) -> String {
    format!("h/{hash}")
}

fn poisoned() -> Error {
    Error::Store("s3 store: lock poisoned".into())
}

/// The blocks layout's state.
pub struct Blocks {
    bucket: Arc<Bucket>,
    rt: Handle,
    /// Blocks known to be in the bucket (uploaded or seen by a HEAD).
    present: Arc<RwLock<HashSet<Hash>>>,
    /// Blocks being uploaded (or whose upload failed), read from here.
    pending: Arc<Mutex<HashMap<Hash, Bytes>>>,
    uploads: Uploads<(Hash, Bytes)>,
}

impl Blocks {
    /// The layout in `bucket` (no request is made).
    pub fn open(bucket: Arc<Bucket>, rt: Handle) -> Self {
        Blocks {
            bucket,
            uploads: Uploads::new(rt.clone()),
            rt,
            present: Arc::default(),
            pending: Arc::default(),
        }
    }

    fn pending(&self) -> Result<MutexGuard<'_, HashMap<Hash, Bytes>>> {
        self.pending.lock().map_err(|_| poisoned())
    }

    fn known(&self, hash: &Hash) -> Result<bool> {
        if self.present.read().map_err(|_| poisoned())?.contains(hash) {
            return Ok(true);
        }
        Ok(self.pending()?.contains_key(hash))
    }

    /// Uploads block `hash` in the background unless it is known to be
    /// there; true unless known (a block already in the bucket is simply
    /// written again, which costs a PUT and changes nothing).
    pub fn add(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.uploads.check()?;
        if self.known(hash)? {
            return Ok(false);
        }
        let bytes = Bytes::copy_from_slice(data);
        let ticket = {
            let mut p = self.pending()?;
            if p.contains_key(hash) {
                return Ok(false);
            }
            p.insert(*hash, bytes.clone());
            // Taken while the block becomes visible as added: a sync from
            // now on waits for its upload.
            self.uploads.begin()?
        };
        let job = self.job();
        self.uploads
            .spawn(ticket, (*hash, bytes), move |(hash, data)| job(hash, data))?;
        Ok(true)
    }

    /// What uploads one block and then marks it present.
    fn job(
        &self,
    ) -> impl FnOnce(
        Hash,
        Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> {
        let bucket = self.bucket.clone();
        let pending = self.pending.clone();
        let present = self.present.clone();
        move |hash, data| {
            Box::pin(async move {
                bucket.put(&bucket.key(&block_key(&hash)), data).await?;
                // Present before it stops being pending: never neither.
                if let Ok(mut p) = present.write() {
                    p.insert(hash);
                }
                if let Ok(mut p) = pending.lock() {
                    p.remove(&hash);
                }
                Ok(())
            })
        }
    }

    /// Waits for every upload; those that failed are tried once more.
    pub fn sync(&self) -> Result<()> {
        self.uploads.wait()?;
        let mut failed = self.uploads.take_failed()?.into_iter();
        while let Some(((hash, data), _)) = failed.next() {
            let job = self.job()(hash, data.clone());
            if let Err(e) = self.rt.block_on(job) {
                let mut back = vec![((hash, data), e.to_string())];
                back.extend(failed);
                self.uploads.put_back(back)?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether a final sync is due (see [`super::packed::Packed::dirty`]).
    pub fn dirty(&self) -> bool {
        !self.uploads.failed() && self.uploads.running()
    }

    /// Whether block `hash` is in the bucket: known, else one HEAD.
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        if self.known(hash)? {
            return Ok(true);
        }
        let key = self.bucket.key(&block_key(hash));
        let found = self.rt.block_on(self.bucket.head(&key))?.is_some();
        if found {
            self.present.write().map_err(|_| poisoned())?.insert(*hash);
        }
        Ok(found)
    }

    /// Block `hash`'s data (one GET), checked against its hash.
    pub fn get(&self, hash: &Hash) -> Result<Option<Bytes>> {
        if let Some(d) = self.pending()?.get(hash) {
            return Ok(Some(d.clone()));
        }
        let key = self.bucket.key(&block_key(hash));
        let Some(data) = self.rt.block_on(self.bucket.get(&key))? else {
            return Ok(None);
        };
        if hash.kind.digest(&data) != *hash {
            return Err(Error::Corrupt {
                hash: *hash,
                file: format!("{}, object {}", self.bucket.name(), block_key(hash)).into(),
                detail: "the object's data does not match its hash".into(),
            });
        }
        self.present.write().map_err(|_| poisoned())?.insert(*hash);
        Ok(Some(data))
    }

    /// Counts from a listing of every block object (blocks are stored as
    /// they are: raw and stored bytes are the same).
    pub fn stats(&self) -> Result<StoreStats> {
        let objects = self.rt.block_on(self.bucket.list("h"))?;
        let bytes: u64 = objects.iter().map(|m| m.size).sum();
        let keys: HashSet<&str> = objects.iter().map(|m| m.location.as_ref()).collect();
        let mut blocks = objects.len() as u64;
        let mut raw = bytes;
        for (h, d) in self.pending()?.iter() {
            let key = self.bucket.key(&block_key(h));
            if !keys.contains(key.as_ref()) {
                blocks += 1;
                raw += d.len() as u64;
            }
        }
        Ok(StoreStats {
            blocks,
            raw_bytes: raw,
            stored_bytes: bytes,
            ..StoreStats::default()
        })
    }
}
