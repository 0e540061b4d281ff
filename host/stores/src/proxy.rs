//! [`ProxyStore`]: several stores composed into one, after the reference
//! system's ProxyStore.
//!
//! - reads try the `read` stores in order, then the `read2` fallbacks; a
//!   block found in a fallback is copied into the `save` stores (unless
//!   `copy2` is off), so the next read of it stays near;
//! - adds go to every `save` store;
//! - archives go to one store: the one given with
//!   [`ProxyStore::with_archives`], else the first save store, else the
//!   first read store.
//!
//! A comma list in a store spec (`local,remote`) is [`ProxyStore::list`]:
//! read from each in turn, save to the first.

use std::sync::Arc;

use bytes::Bytes;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

/// Several stores seen as one: reads from some, saves to others.
pub struct ProxyStore {
    read: Vec<Arc<dyn Store>>,
    save: Vec<Arc<dyn Store>>,
    read2: Vec<Arc<dyn Store>>,
    copy2: bool,
    archives: Option<Arc<dyn Store>>,
}

/// Remembers the first error of several tries, so one failing store does
/// not hide a block another store has, and a miss is only reported when
/// no store failed to answer.
#[derive(Default)]
struct FirstError(Option<Error>);

impl FirstError {
    fn keep<T>(&mut self, r: Result<T>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.get_or_insert(e);
                None
            }
        }
    }

    fn or_ok<T>(self, v: T) -> Result<T> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }
}

impl ProxyStore {
    /// Reads from `read` in order, then from `read2`; saves to every store
    /// of `save`; with `copy2`, copies blocks found in `read2` into `save`.
    pub fn new(
        read: Vec<Arc<dyn Store>>,
        save: Vec<Arc<dyn Store>>,
        read2: Vec<Arc<dyn Store>>,
        copy2: bool,
    ) -> Self {
        ProxyStore {
            read,
            save,
            read2,
            copy2,
            archives: None,
        }
    }

    /// A comma list in a store spec: reads from `stores` in order, saves to
    /// the first.
    pub fn list(stores: Vec<Arc<dyn Store>>) -> Self {
        let save = stores.first().cloned().into_iter().collect();
        Self::new(stores, save, Vec::new(), true)
    }

    /// Keeps archives in `store` instead of the first save (or read) store.
    pub fn with_archives(mut self, store: Arc<dyn Store>) -> Self {
        self.archives = Some(store);
        self
    }

    /// The stores read first, in order.
    pub fn read_stores(&self) -> &[Arc<dyn Store>] {
        &self.read
    }

    /// The stores every add goes to.
    pub fn save_stores(&self) -> &[Arc<dyn Store>] {
        &self.save
    }

    /// The fallback stores read when no read store has a block.
    pub fn read2_stores(&self) -> &[Arc<dyn Store>] {
        &self.read2
    }

    /// Whether blocks found in a read2 store are copied into the save stores.
    pub fn copy2(&self) -> bool {
        self.copy2
    }

    /// The store that speaks for the proxy's contents: the first save
    /// store, else the first read store, else the first fallback.
    fn primary(&self) -> Option<&Arc<dyn Store>> {
        self.save
            .first()
            .or_else(|| self.read.first())
            .or_else(|| self.read2.first())
    }

    fn archive_store(&self) -> Result<&Arc<dyn Store>> {
        self.archives
            .as_ref()
            .or_else(|| self.save.first())
            .or_else(|| self.read.first())
            .ok_or_else(|| {
                Error::Unsupported("this proxy store has no store to keep archives".into())
            })
    }

    /// Copies a block found in a read2 store into the save stores. The
    /// block is good whatever happens here, so a failed copy is logged and
    /// the read still succeeds; the next read fetches it again. A read
    /// does not know what a block holds, so copies are filed as data.
    fn copy_to_save(&self, hash: &Hash, data: &[u8]) {
        if !self.copy2 {
            return;
        }
        for s in &self.save {
            if let Err(e) = s.add_hashed_as(hash, data, BlockClass::Data) {
                tracing::warn!("copying block {hash} read from a fallback store: {e}");
            }
        }
    }

    /// Reads `hash` with `get` from the read stores, then the fallbacks
    /// (copying a fallback's block into the save stores).
    fn read_with<T: AsRef<[u8]>>(
        &self,
        hash: &Hash,
        get: impl Fn(&dyn Store) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let mut err = FirstError::default();
        for s in &self.read {
            if let Some(Some(d)) = err.keep(get(s.as_ref())) {
                return Ok(Some(d));
            }
        }
        for s in &self.read2 {
            if let Some(Some(d)) = err.keep(get(s.as_ref())) {
                self.copy_to_save(hash, d.as_ref());
                return Ok(Some(d));
            }
        }
        err.or_ok(None)
    }

    fn no_save() -> Error {
        Error::Unsupported("this proxy store has no store to save blocks to".into())
    }
}

impl Store for ProxyStore {
    /// The first save store's, else the first read store's (SHA3-256 for a
    /// proxy of no stores).
    fn hash_kind(&self) -> HashKind {
        self.primary()
            .map(|s| s.hash_kind())
            .unwrap_or(HashKind::Sha3_256)
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.add_hashed_as(hash, data, BlockClass::Data)
    }

    /// Adds to every save store, even after one fails (so the others are
    /// as complete as they can be), then reports the first failure. New if
    /// any save store called it new.
    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        if self.save.is_empty() {
            return Err(Self::no_save());
        }
        let mut err = FirstError::default();
        let mut new = false;
        for s in &self.save {
            new |= err
                .keep(s.add_hashed_as(hash, data, class))
                .unwrap_or(false);
        }
        err.or_ok(new)
    }

    fn add(&self, data: &[u8]) -> Result<(Hash, bool)> {
        self.add_as(data, BlockClass::Data)
    }

    /// Hashes once with [`ProxyStore::hash_kind`], so every save store
    /// holds the block under the hash the caller gets back.
    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        let h = self.hash_kind().digest(data);
        let new = self.add_hashed_as(&h, data, class)?;
        Ok((h, new))
    }

    /// The first store that has the block answers. A store that fails is
    /// passed over; if no store has the block and one failed, that failure
    /// is the answer (not "missing", which it may not be).
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        self.read_with(hash, |s| s.get(hash))
    }

    fn fetch(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.get(hash)?.ok_or(Error::Missing(*hash))
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        self.read_with(hash, |s| s.get_shared(hash))
    }

    fn fetch_shared(&self, hash: &Hash) -> Result<Bytes> {
        self.get_shared(hash)?.ok_or(Error::Missing(*hash))
    }

    /// True if any read or read2 store has the block (failures as in
    /// [`ProxyStore::get`]).
    fn contains(&self, hash: &Hash) -> Result<bool> {
        let mut err = FirstError::default();
        for s in self.read.iter().chain(&self.read2) {
            if let Some(true) = err.keep(s.contains(hash)) {
                return Ok(true);
            }
        }
        err.or_ok(false)
    }

    /// Syncs every save store, even after one fails, and reports the first
    /// failure.
    fn sync(&self) -> Result<()> {
        let mut err = FirstError::default();
        for s in &self.save {
            err.keep(s.sync());
        }
        err.or_ok(())
    }

    /// The first save store's stats (else the first read store's): the
    /// store a proxy's blocks are counted in. Other stores may hold more or
    /// fewer; ask them directly for theirs.
    fn stats(&self) -> Result<StoreStats> {
        match self.primary() {
            Some(s) => s.stats(),
            None => Ok(StoreStats::default()),
        }
    }

    /// Forwards the hint to every read store. With fallbacks, the hashes
    /// no read store holds (asked with `contains`; a failure counts as not
    /// held) go to the fallbacks too, as those are the reads that will
    /// reach them.
    fn prefetch(&self, hashes: &[Hash]) {
        if hashes.is_empty() {
            return;
        }
        for s in &self.read {
            s.prefetch(hashes);
        }
        if self.read2.is_empty() {
            return;
        }
        let rest: Vec<Hash> = hashes
            .iter()
            .filter(|h| !self.read.iter().any(|s| s.contains(h).unwrap_or(false)))
            .copied()
            .collect();
        if rest.is_empty() {
            return;
        }
        for s in &self.read2 {
            s.prefetch(&rest);
        }
    }

    /// The smallest of the save stores' counts (taken as a (blocks, bytes)
    /// pair from one store).
    ///
    /// The proxy calls a block new if any save store did, so it was wrong
    /// only if every save store that said new was wrong. Which blocks each
    /// store miscounted is not known here, so no count is exact for more
    /// than one save store; the smallest is exact for one (the usual case),
    /// and never exceeds the blocks the proxy called new, so "new minus
    /// overcounted" never goes below zero. With a store that answers at
    /// once among the save stores this is zero: blocks new to it were
    /// rightly called new.
    fn locality(&self, hash: &Hash) -> Option<u64> {
        self.read.first().and_then(|s| s.locality(hash))
    }

    fn overcounted(&self) -> (u64, u64) {
        self.save
            .iter()
            .map(|s| s.overcounted())
            .min()
            .unwrap_or((0, 0))
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        self.archive_store()?.archive_names()
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.archive_store()?.archive_read(name)
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.archive_store()?.archive_append(name, lines)
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.archive_store()?.archive_replace(name, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryStore, ProgressStore};

    fn mem() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::new(HashKind::Sha3_256))
    }

    fn counted(m: &Arc<MemoryStore>) -> Arc<ProgressStore> {
        Arc::new(ProgressStore::new(m.clone()))
    }

    fn h(data: &[u8]) -> Hash {
        HashKind::Sha3_256.digest(data)
    }

    #[test]
    fn reads_in_order_and_saves_to_all() {
        let (r1, r2, s1, s2) = (mem(), mem(), mem(), mem());
        let (c1, c2) = (counted(&r1), counted(&r2));
        r1.add(b"one").unwrap();
        r2.add(b"one").unwrap();
        r2.add(b"two").unwrap();
        let p = ProxyStore::new(
            vec![c1.clone(), c2.clone()],
            vec![s1.clone(), s2.clone()],
            vec![],
            true,
        );
        assert_eq!(p.get(&h(b"one")).unwrap().unwrap(), b"one");
        assert_eq!(c2.counts().requests, 0, "the first read store answered");
        assert_eq!(&p.get_shared(&h(b"two")).unwrap().unwrap()[..], b"two");
        assert_eq!(p.fetch(&h(b"two")).unwrap(), b"two");
        assert!(p.get(&h(b"three")).unwrap().is_none());
        assert!(matches!(p.fetch(&h(b"three")), Err(Error::Missing(_))));
        assert!(p.fetch_shared(&h(b"three")).is_err());
        assert!(p.contains(&h(b"two")).unwrap());
        assert!(!p.contains(&h(b"three")).unwrap());
        assert!(
            !s1.contains(&h(b"two")).unwrap(),
            "read stores are not copied"
        );

        let (x, new) = p.add(b"new").unwrap();
        assert!(new);
        assert!(s1.contains(&x).unwrap() && s2.contains(&x).unwrap());
        assert!(!r1.contains(&x).unwrap());
        // New if any save store says so.
        s2.add(b"half").unwrap();
        assert!(p.add_hashed(&h(b"half"), b"half").unwrap());
        assert!(!p
            .add_hashed_as(&h(b"half"), b"half", BlockClass::Meta)
            .unwrap());
        assert!(!p.add_as(b"half", BlockClass::Meta).unwrap().1);
        p.sync().unwrap();
        assert_eq!(p.stats().unwrap(), s1.stats().unwrap(), "first save store");
        assert_eq!(p.overcounted(), (0, 0));
    }

    #[test]
    fn read2_hits_are_copied_into_save_stores() {
        let (local, remote, other) = (mem(), mem(), mem());
        let (b, _) = remote.add(b"far away").unwrap();
        let (c, _) = remote.add(b"shared far").unwrap();
        let cr = counted(&remote);
        let p = ProxyStore::new(
            vec![local.clone()],
            vec![local.clone(), other.clone()],
            vec![cr.clone()],
            true,
        );
        assert!(p.contains(&b).unwrap(), "contains asks read2 too");
        assert!(!local.contains(&b).unwrap(), "contains copies nothing");
        assert_eq!(p.get(&b).unwrap().unwrap(), b"far away");
        assert!(local.contains(&b).unwrap() && other.contains(&b).unwrap());
        assert_eq!(&p.get_shared(&c).unwrap().unwrap()[..], b"shared far");
        assert!(local.contains(&c).unwrap() && other.contains(&c).unwrap());
        let before = cr.counts().requests;
        assert_eq!(p.get(&b).unwrap().unwrap(), b"far away");
        assert_eq!(cr.counts().requests, before, "the copy is read now");
    }

    #[test]
    fn read2_without_copy2() {
        let (local, remote) = (mem(), mem());
        let (b, _) = remote.add(b"far away").unwrap();
        let p = ProxyStore::new(
            vec![local.clone()],
            vec![local.clone()],
            vec![remote],
            false,
        );
        assert!(!p.copy2());
        assert_eq!(p.get(&b).unwrap().unwrap(), b"far away");
        assert!(!local.contains(&b).unwrap());
    }

    #[test]
    fn list_reads_all_and_saves_to_first() {
        let (a, b) = (mem(), mem());
        b.add(b"in b").unwrap();
        let p = ProxyStore::list(vec![a.clone(), b.clone()]);
        assert_eq!(p.get(&h(b"in b")).unwrap().unwrap(), b"in b");
        assert!(
            !a.contains(&h(b"in b")).unwrap(),
            "no copy between read stores"
        );
        let (x, _) = p.add(b"new").unwrap();
        assert!(a.contains(&x).unwrap() && !b.contains(&x).unwrap());
        assert_eq!(p.save_stores().len(), 1);
        assert_eq!(p.read_stores().len(), 2);
        assert!(p.read2_stores().is_empty());
    }

    #[test]
    fn archives_go_where_documented() {
        let line = b"# snapshot\n";
        // Default: the first save store.
        let (r, s1, s2) = (mem(), mem(), mem());
        let p = ProxyStore::new(vec![r.clone()], vec![s1.clone(), s2.clone()], vec![], true);
        p.archive_append("home", line).unwrap();
        assert_eq!(s1.archive_read("home").unwrap().unwrap(), line);
        assert!(s2.archive_read("home").unwrap().is_none());
        assert!(r.archive_read("home").unwrap().is_none());
        assert_eq!(p.archive_names().unwrap(), vec!["home".to_string()]);
        p.archive_replace("home", b"").unwrap();
        assert_eq!(p.archive_read("home").unwrap().unwrap(), b"");

        // No save store: the first read store.
        let p = ProxyStore::new(vec![r.clone(), s2.clone()], vec![], vec![], true);
        p.archive_append("ro", line).unwrap();
        assert_eq!(r.archive_read("ro").unwrap().unwrap(), line);
        assert!(p.add(b"x").is_err(), "no save store: adds fail");

        // Given explicitly.
        let arch = mem();
        let p = ProxyStore::new(vec![r.clone()], vec![s1.clone()], vec![], true)
            .with_archives(arch.clone());
        p.archive_append("x", line).unwrap();
        assert_eq!(arch.archive_read("x").unwrap().unwrap(), line);
        assert!(s1.archive_read("x").unwrap().is_none());

        // No store at all.
        let p = ProxyStore::new(vec![], vec![], vec![], true);
        assert!(matches!(p.archive_names(), Err(Error::Unsupported(_))));
        assert_eq!(p.stats().unwrap(), StoreStats::default());
        assert_eq!(p.hash_kind(), HashKind::Sha3_256);
    }

    #[test]
    fn hash_kind_and_stats_follow_first_save_store() {
        let r = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let s = Arc::new(MemoryStore::new(HashKind::Blake3));
        let p = ProxyStore::new(vec![r.clone()], vec![s.clone()], vec![], true);
        assert_eq!(p.hash_kind(), HashKind::Blake3);
        let (x, _) = p.add(b"blake").unwrap();
        assert_eq!(x.kind, HashKind::Blake3);
        assert_eq!(p.stats().unwrap().blocks, 1);
        let p = ProxyStore::new(vec![r.clone()], vec![], vec![], true);
        assert_eq!(p.hash_kind(), HashKind::Sha3_256);
    }

    /// A store that fails every call, and says every add is new and
    /// counts some of those as overcounted.
    struct Broken(u64);

    impl Store for Broken {
        fn hash_kind(&self) -> HashKind {
            HashKind::Sha3_256
        }
        fn add_hashed(&self, _: &Hash, _: &[u8]) -> Result<bool> {
            Err(Error::Store("broken".into()))
        }
        fn get(&self, _: &Hash) -> Result<Option<Vec<u8>>> {
            Err(Error::Store("broken".into()))
        }
        fn contains(&self, _: &Hash) -> Result<bool> {
            Err(Error::Store("broken".into()))
        }
        fn sync(&self) -> Result<()> {
            Err(Error::Store("broken".into()))
        }
        fn stats(&self) -> Result<StoreStats> {
            Err(Error::Store("broken".into()))
        }
        fn overcounted(&self) -> (u64, u64) {
            (self.0, self.0 * 100)
        }
    }

    #[test]
    fn a_failing_store_does_not_hide_others() {
        let good = mem();
        good.add(b"here").unwrap();
        let bad: Arc<dyn Store> = Arc::new(Broken(3));
        let p = ProxyStore::new(
            vec![bad.clone(), good.clone()],
            vec![bad.clone(), good.clone()],
            vec![],
            true,
        );
        assert_eq!(p.get(&h(b"here")).unwrap().unwrap(), b"here");
        assert!(p.contains(&h(b"here")).unwrap());
        assert!(
            p.get(&h(b"gone")).is_err(),
            "a miss with a failure is the failure"
        );
        assert!(p.contains(&h(b"gone")).is_err());
        assert!(p.add(b"both").is_err(), "the add failed on one save store");
        assert!(good.contains(&h(b"both")).unwrap(), "but reached the other");
        assert!(p.sync().is_err());
        assert_eq!(p.overcounted(), (0, 0), "the smallest: the memory store's");
        let p = ProxyStore::new(
            vec![],
            vec![Arc::new(Broken(5)), Arc::new(Broken(2))],
            vec![],
            true,
        );
        assert_eq!(p.overcounted(), (2, 200));
    }

    #[test]
    fn prefetch_goes_to_read_stores_and_unheld_to_read2() {
        let (local, remote) = (mem(), mem());
        local.add(b"near").unwrap();
        remote.add(b"far").unwrap();
        let (cl, cr) = (counted(&local), counted(&remote));
        let p = ProxyStore::new(vec![cl.clone()], vec![], vec![cr.clone()], true);
        p.prefetch(&[h(b"near"), h(b"far")]);
        p.prefetch(&[]);
        // One contains per hash on the read store, then the hint.
        assert_eq!(cl.counts().requests, 2 + 2);
        assert_eq!(cr.counts().requests, 1, "only the hash local lacks");
    }

    #[test]
    fn from_eight_threads() {
        let (local, remote) = (mem(), mem());
        for i in 0..64u32 {
            remote.add(&i.to_le_bytes()).unwrap();
        }
        let p = Arc::new(ProxyStore::new(
            vec![local.clone()],
            vec![local.clone()],
            vec![remote.clone()],
            true,
        ));
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for i in 0..64u32 {
                        let d = i.to_le_bytes();
                        assert_eq!(p.fetch(&h(&d)).unwrap(), d);
                        p.add(&[t as u8, i as u8, 7]).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(local.stats().unwrap().blocks, 64 + 8 * 64);
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "proxy",
        summary: "several stores as one (read, save, read2, copy2)",
        settings: &["read", "save", "read2", "copy2"],
        order: 8,
    }
}
