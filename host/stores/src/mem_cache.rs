//! [`MemCache`]: a bounded in-memory cache of blocks in front of a slower
//! store, so blocks read again (directory and indirect blocks above all)
//! cost no request.
//!
//! The least recently used blocks are dropped once the cached bytes pass
//! the limit. Adds are written through: they reach the backend before they
//! return, and the block is cached too, as what was just written is often
//! read next. Everything that is not about reading a block goes straight
//! to the backend.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

/// The blocks cached, with a use stamp each: `order` maps stamps to
/// hashes, oldest first, so the least recently used is the first entry.
#[derive(Default)]
struct Lru {
    map: HashMap<Hash, (Bytes, u64)>,
    order: BTreeMap<u64, Hash>,
    stamp: u64,
    bytes: u64,
}

impl Lru {
    fn next_stamp(&mut self) -> u64 {
        self.stamp += 1;
        self.stamp
    }

    /// The block, marked as just used.
    fn get(&mut self, hash: &Hash) -> Option<Bytes> {
        let now = self.next_stamp();
        let (data, stamp) = self.map.get_mut(hash)?;
        self.order.remove(stamp);
        *stamp = now;
        self.order.insert(now, *hash);
        Some(data.clone())
    }

    /// Caches a block (or marks it used), then drops the least recently
    /// used blocks until at most `limit` bytes are held.
    fn put(&mut self, hash: &Hash, data: Bytes, limit: u64) {
        if self.get(hash).is_some() {
            return;
        }
        let now = self.next_stamp();
        self.bytes += data.len() as u64;
        self.map.insert(*hash, (data, now));
        self.order.insert(now, *hash);
        while self.bytes > limit {
            let Some((_, old)) = self.order.pop_first() else {
                break;
            };
            if let Some((d, _)) = self.map.remove(&old) {
                self.bytes -= d.len() as u64;
            }
        }
    }
}

/// A bounded LRU cache of blocks in memory in front of another store.
pub struct MemCache {
    backend: Arc<dyn Store>,
    limit: u64,
    lru: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl MemCache {
    /// Caches up to `limit_bytes` of blocks read from or added to `backend`.
    pub fn new(backend: Arc<dyn Store>, limit_bytes: u64) -> Self {
        MemCache {
            backend,
            limit: limit_bytes,
            lru: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The store behind the cache.
    pub fn backend(&self) -> &Arc<dyn Store> {
        &self.backend
    }

    /// Reads answered from the cache, and reads that went to the backend.
    pub fn hits_misses(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// Blocks cached now, and their bytes.
    pub fn cached(&self) -> (u64, u64) {
        let g = self.lock();
        (g.map.len() as u64, g.bytes)
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        // The LRU is consistent between statements, so a panic elsewhere
        // while it was held leaves nothing half done.
        self.lru.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached_block(&self, hash: &Hash) -> Option<Bytes> {
        let d = self.lock().get(hash);
        match d {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        d
    }

    /// Keeps a copy of `data` (never a slice of the backend's buffers,
    /// which could hold far more memory alive than the block's size).
    fn keep(&self, hash: &Hash, data: &[u8]) {
        if data.len() as u64 > self.limit {
            return;
        }
        let d = Bytes::copy_from_slice(data);
        self.lock().put(hash, d, self.limit);
    }
}

impl Store for MemCache {
    fn hash_kind(&self) -> HashKind {
        self.backend.hash_kind()
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        let new = self.backend.add_hashed(hash, data)?;
        self.keep(hash, data);
        Ok(new)
    }

    /// Always reaches the backend, even for a cached block: the cache does
    /// not know that the backend keeps what it was given (a proxy may read
    /// from one store and save to another).
    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        let new = self.backend.add_hashed_as(hash, data, class)?;
        self.keep(hash, data);
        Ok(new)
    }

    fn add(&self, data: &[u8]) -> Result<(Hash, bool)> {
        let (h, new) = self.backend.add(data)?;
        self.keep(&h, data);
        Ok((h, new))
    }

    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        let (h, new) = self.backend.add_as(data, class)?;
        self.keep(&h, data);
        Ok((h, new))
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        if let Some(d) = self.cached_block(hash) {
            return Ok(Some(d.to_vec()));
        }
        let d = self.backend.get(hash)?;
        if let Some(d) = &d {
            self.keep(hash, d);
        }
        Ok(d)
    }

    fn fetch(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.get(hash)?.ok_or(Error::Missing(*hash))
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        if let Some(d) = self.cached_block(hash) {
            return Ok(Some(d));
        }
        let d = self.backend.get_shared(hash)?;
        if let Some(d) = &d {
            self.keep(hash, d);
        }
        Ok(d)
    }

    fn fetch_shared(&self, hash: &Hash) -> Result<Bytes> {
        self.get_shared(hash)?.ok_or(Error::Missing(*hash))
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        if self.lock().map.contains_key(hash) {
            return Ok(true);
        }
        self.backend.contains(hash)
    }

    fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    /// The backend's stats: the cache holds copies, not blocks of its own.
    fn stats(&self) -> Result<StoreStats> {
        self.backend.stats()
    }

    /// Forwards only the hashes not cached: the others will be read here.
    fn prefetch(&self, hashes: &[Hash]) {
        let rest: Vec<Hash> = {
            let g = self.lock();
            hashes
                .iter()
                .filter(|h| !g.map.contains_key(h))
                .copied()
                .collect()
        };
        if !rest.is_empty() {
            self.backend.prefetch(&rest);
        }
    }

    fn locality(&self, hash: &Hash) -> Option<u64> {
        self.backend.locality(hash)
    }

    fn overcounted(&self) -> (u64, u64) {
        self.backend.overcounted()
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        self.backend.archive_names()
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.backend.archive_read(name)
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.backend.archive_append(name, lines)
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.backend.archive_replace(name, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, ProgressStore};

    fn setup(limit: u64) -> (Arc<MemoryStore>, Arc<ProgressStore>, MemCache) {
        let m = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let p = Arc::new(ProgressStore::new(m.clone()));
        let c = MemCache::new(p.clone(), limit);
        (m, p, c)
    }

    fn block(i: u32, len: usize) -> Vec<u8> {
        let mut d = vec![(i % 251) as u8; len];
        d[..4].copy_from_slice(&i.to_le_bytes());
        d
    }

    #[test]
    fn second_read_costs_no_request() {
        let (m, p, c) = setup(1 << 20);
        let hs: Vec<Hash> = (0..10).map(|i| m.add(&block(i, 1000)).unwrap().0).collect();
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(c.get(h).unwrap().unwrap(), block(i as u32, 1000));
        }
        assert_eq!(p.counts().get_blocks, 10);
        let before = p.counts().requests;
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(c.get(h).unwrap().unwrap(), block(i as u32, 1000));
            assert_eq!(
                &c.get_shared(h).unwrap().unwrap()[..],
                &block(i as u32, 1000)[..]
            );
            assert_eq!(c.fetch(h).unwrap(), block(i as u32, 1000));
            assert!(c.contains(h).unwrap());
        }
        assert_eq!(p.counts().requests, before, "every read was a hit");
        assert_eq!(c.hits_misses(), (30, 10));
        let missing = HashKind::Sha3_256.digest(b"no such block");
        assert!(c.get(&missing).unwrap().is_none());
        assert!(c.fetch_shared(&missing).is_err());
        assert!(!c.contains(&missing).unwrap());
    }

    #[test]
    fn bounded_and_least_recently_used_goes_first() {
        let (m, _p, c) = setup(10_000);
        let hs: Vec<Hash> = (0..100)
            .map(|i| m.add(&block(i, 1000)).unwrap().0)
            .collect();
        c.get(&hs[0]).unwrap();
        for h in &hs[1..] {
            c.get(h).unwrap();
            c.get(&hs[0]).unwrap(); // keep block 0 in use
            let (n, bytes) = c.cached();
            assert!(bytes <= 10_000 && n <= 10, "{n} blocks, {bytes} bytes");
        }
        let g = c.lock();
        assert!(g.map.contains_key(&hs[0]), "the hot block survived");
        assert!(g.map.contains_key(&hs[99]));
        assert!(!g.map.contains_key(&hs[50]));
        assert_eq!(g.map.len(), g.order.len());
        drop(g);
        // A block over the limit passes through uncached.
        let (big, _) = m.add(&block(7, 20_000)).unwrap();
        assert_eq!(c.get(&big).unwrap().unwrap().len(), 20_000);
        assert!(c.cached().1 <= 10_000);
    }

    #[test]
    fn adds_write_through_and_are_cached() {
        let (m, p, c) = setup(1 << 20);
        let (a, new) = c.add(b"alpha").unwrap();
        assert!(new && m.contains(&a).unwrap());
        let (b, _) = c.add_as(b"beta", BlockClass::Meta).unwrap();
        let g = HashKind::Sha3_256.digest(b"gamma");
        assert!(c.add_hashed_as(&g, b"gamma", BlockClass::Data).unwrap());
        assert!(
            !c.add_hashed(&g, b"gamma").unwrap(),
            "adds always reach the backend"
        );
        assert_eq!(p.counts().add_blocks, 4);
        let before = p.counts().requests;
        for h in [a, b, g] {
            assert!(c.get(&h).unwrap().is_some());
        }
        assert_eq!(p.counts().requests, before);
    }

    #[test]
    fn prefetch_forwards_only_uncached_and_the_rest_forwards() {
        let (m, p, c) = setup(1 << 20);
        let (a, _) = m.add(b"cached").unwrap();
        let (b, _) = m.add(b"not cached").unwrap();
        c.get(&a).unwrap();
        let before = p.counts().requests;
        c.prefetch(&[a, b]);
        assert_eq!(p.counts().requests, before + 1, "one hash forwarded");
        c.prefetch(&[a]);
        assert_eq!(p.counts().requests, before + 1, "nothing to forward");

        c.sync().unwrap();
        assert_eq!(c.stats().unwrap(), m.stats().unwrap());
        assert_eq!(c.hash_kind(), HashKind::Sha3_256);
        assert_eq!(c.overcounted(), (0, 0));
        c.archive_append("a", b"# one\n").unwrap();
        assert_eq!(m.archive_read("a").unwrap().unwrap(), b"# one\n");
        c.archive_replace("a", b"# two\n").unwrap();
        assert_eq!(c.archive_read("a").unwrap().unwrap(), b"# two\n");
        assert_eq!(c.archive_names().unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn from_eight_threads() {
        let (m, p, c) = setup(150_000);
        let hs: Vec<Hash> = (0..200)
            .map(|i| m.add(&block(i, 1000)).unwrap().0)
            .collect();
        let c = Arc::new(c);
        let hs = Arc::new(hs);
        let threads: Vec<_> = (0..8usize)
            .map(|t| {
                let (c, hs) = (c.clone(), hs.clone());
                std::thread::spawn(move || {
                    for round in 0..5 {
                        for k in 0..200 {
                            let i = (k * 7 + t * 13 + round) % 200;
                            let d = c.fetch_shared(&hs[i]).unwrap();
                            assert_eq!(&d[..], &block(i as u32, 1000)[..]);
                            // A hot set every thread shares.
                            let j = k % 10;
                            assert_eq!(c.get(&hs[j]).unwrap().unwrap(), block(j as u32, 1000));
                        }
                        c.add(&block(1000 + t as u32 * 10 + round as u32, 500))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(c.cached().1 <= 150_000);
        let (hits, misses) = c.hits_misses();
        assert_eq!(hits + misses, 8 * 5 * 400);
        assert!(hits >= 8 * 5 * 200 - 8 * 10, "the hot set hits: {hits}");
        assert_eq!(p.counts().get_blocks, misses);
    }
}
