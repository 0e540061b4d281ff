//! [`ArchiveRoute`]: a store whose archives (some or all) are kept by
//! other stores: vtrc's `archives_from = "GLOB:STORESPEC"`. Blocks go to
//! and come from the inner store; an archive whose name matches a route's
//! glob is read and written in that route's store (the first match wins),
//! any other in the inner store.

use std::sync::Arc;

use vt_core::glob::glob_match;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Hash, HashKind, Result, Store};

/// A store with routed archives.
pub struct ArchiveRoute {
    inner: Arc<dyn Store>,
    routes: Vec<(String, Arc<dyn Store>)>,
}

impl ArchiveRoute {
    /// `inner` with the archives matching each glob of `routes` kept in
    /// that route's store.
    pub fn new(inner: Arc<dyn Store>, routes: Vec<(String, Arc<dyn Store>)>) -> Self {
        ArchiveRoute { inner, routes }
    }

    fn keeper(&self, name: &str) -> &dyn Store {
        self.routes
            .iter()
            .find(|(g, _)| glob_match(g.as_bytes(), name.as_bytes()))
            .map_or(&*self.inner, |(_, s)| &**s)
    }
}

impl Store for ArchiveRoute {
    fn hash_kind(&self) -> HashKind {
        self.inner.hash_kind()
    }
    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.inner.add_hashed(hash, data)
    }
    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        self.inner.add_hashed_as(hash, data, class)
    }
    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        self.inner.add_as(data, class)
    }
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        self.inner.get(hash)
    }
    fn get_shared(&self, hash: &Hash) -> Result<Option<bytes::Bytes>> {
        self.inner.get_shared(hash)
    }
    fn get_packed(&self, hash: &Hash) -> Result<Option<bytes::Bytes>> {
        self.inner.get_packed(hash)
    }
    fn contains(&self, hash: &Hash) -> Result<bool> {
        self.inner.contains(hash)
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
    fn stats(&self) -> Result<StoreStats> {
        self.inner.stats()
    }
    fn prefetch(&self, hashes: &[Hash]) {
        self.inner.prefetch(hashes)
    }
    fn locality(&self, hash: &Hash) -> Option<u64> {
        self.inner.locality(hash)
    }
    fn overcounted(&self) -> (u64, u64) {
        self.inner.overcounted()
    }

    /// The inner store's archives that no route claims, and each route's
    /// archives that match its glob (and no earlier one's).
    fn archive_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        let claimed = |n: &str, upto: usize| {
            self.routes[..upto]
                .iter()
                .any(|(g, _)| glob_match(g.as_bytes(), n.as_bytes()))
        };
        if let Ok(own) = self.inner.archive_names() {
            names.extend(own.into_iter().filter(|n| !claimed(n, self.routes.len())));
        }
        for (i, (g, s)) in self.routes.iter().enumerate() {
            for n in s.archive_names()? {
                if glob_match(g.as_bytes(), n.as_bytes()) && !claimed(&n, i) {
                    names.push(n);
                }
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.keeper(name).archive_read(name)
    }
    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.keeper(name).archive_append(name, lines)
    }
    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.keeper(name).archive_replace(name, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use vt_core::archive::ArchiveEntry;

    #[test]
    fn archives_go_where_their_names_say() {
        let blocks: Arc<dyn Store> = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let home: Arc<dyn Store> = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let r = ArchiveRoute::new(blocks.clone(), vec![("home*".into(), home.clone())]);
        let line =
            ArchiveEntry::now(&vt_core::Dirent::parse("SymLink{name:\"a\",target:\"b\"}").unwrap())
                .to_line();
        r.archive_append("home-laptop", line.as_bytes()).unwrap();
        r.archive_append("work", line.as_bytes()).unwrap();
        assert!(home.archive_read("home-laptop").unwrap().is_some());
        assert!(blocks.archive_read("home-laptop").unwrap().is_none());
        assert!(blocks.archive_read("work").unwrap().is_some());
        assert_eq!(r.archive_names().unwrap(), vec!["home-laptop", "work"]);
        let (h, _) = r.add(b"data").unwrap();
        assert!(blocks.contains(&h).unwrap() && !home.contains(&h).unwrap());
    }
}
