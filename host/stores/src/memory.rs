//! A store in memory: for tests, and as a bounded lossy cache.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;

use vt_core::archive;
use vt_core::store::StoreStats;
use vt_core::{Error, Hash, HashKind, Result, Store};

#[derive(Default)]
struct Inner {
    blocks: HashMap<Hash, Vec<u8>>,
    order: VecDeque<Hash>,
    bytes: u64,
    archives: BTreeMap<String, Vec<u8>>,
}

/// Blocks held in memory. With a capacity, the oldest blocks are dropped
/// once the total exceeds it (a lossy cache, never a primary store).
pub struct MemoryStore {
    kind: HashKind,
    capacity: Option<u64>,
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An unbounded store hashing with `kind`.
    pub fn new(kind: HashKind) -> Self {
        MemoryStore {
            kind,
            capacity: None,
            inner: Mutex::default(),
        }
    }

    /// A lossy cache holding at most `bytes` of block data.
    pub fn bounded(kind: HashKind, bytes: u64) -> Self {
        MemoryStore {
            capacity: Some(bytes),
            ..Self::new(kind)
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::Store("memory store lock poisoned".into()))
    }
}

impl Store for MemoryStore {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        let mut g = self.lock()?;
        if g.blocks.contains_key(hash) {
            return Ok(false);
        }
        g.blocks.insert(*hash, data.to_vec());
        g.order.push_back(*hash);
        g.bytes += data.len() as u64;
        if let Some(cap) = self.capacity {
            while g.bytes > cap {
                let Some(old) = g.order.pop_front() else {
                    break;
                };
                if let Some(d) = g.blocks.remove(&old) {
                    g.bytes -= d.len() as u64;
                }
            }
        }
        Ok(true)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.blocks.get(hash).cloned())
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.lock()?.blocks.contains_key(hash))
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn stats(&self) -> Result<StoreStats> {
        let g = self.lock()?;
        Ok(StoreStats {
            blocks: g.blocks.len() as u64,
            raw_bytes: g.bytes,
            stored_bytes: g.bytes,
            ..StoreStats::default()
        })
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        Ok(self.lock()?.archives.keys().cloned().collect())
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        archive::check_name(name)?;
        Ok(self.lock()?.archives.get(name).cloned())
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        archive::check_name(name)?;
        archive::check_lines(lines)?;
        let mut g = self.lock()?;
        let text = g.archives.entry(name.to_owned()).or_default();
        text.extend_from_slice(lines);
        Ok(())
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        archive::check_name(name)?;
        archive::check_lines(text)?;
        self.lock()?.archives.insert(name.to_owned(), text.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_get_and_evict() {
        let s = MemoryStore::bounded(HashKind::Sha3_256, 10);
        let (a, new) = s.add(b"123456").unwrap();
        assert!(new);
        assert!(!s.add(b"123456").unwrap().1);
        assert_eq!(s.get(&a).unwrap().unwrap(), b"123456");
        let (b, _) = s.add(b"abcdef").unwrap();
        assert!(s.get(&a).unwrap().is_none(), "oldest evicted");
        assert!(s.contains(&b).unwrap());
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "memory",
        summary: "blocks in memory, gone when vt exits",
        settings: &["hash"],
        order: 1,
    }
}
