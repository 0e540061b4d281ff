//! [`ProgressStore`]: counts what passes through to one store, for a
//! progress line on a terminal and for tests that prove a layer above a
//! store spared it requests (a cache hit must reach no backend).
//!
//! Callers poll [`ProgressStore::counts`] (a ticker redrawing a status line
//! reads it a few times a second); there is no callback, so a store call
//! never waits on a display.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

/// A snapshot of a [`ProgressStore`]'s counters.
///
/// Each counter is read on its own, so a snapshot taken while calls run
/// may be a few calls apart between fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgressCounts {
    /// Blocks offered to the store (every add, new or not, that succeeded).
    pub add_blocks: u64,
    /// Their bytes.
    pub add_bytes: u64,
    /// Of those, the blocks the store called new.
    pub new_blocks: u64,
    /// Their bytes.
    pub new_bytes: u64,
    /// Reads (`get`, `get_shared`, `fetch`, `fetch_shared`) that returned data.
    pub get_blocks: u64,
    /// Their bytes.
    pub get_bytes: u64,
    /// Reads that found no block.
    pub get_misses: u64,
    /// `contains` calls.
    pub contains: u64,
    /// Requests that reached the store: every call except `hash_kind` and
    /// `overcounted` (which ask about the store, not its data) counts once,
    /// and `prefetch` counts once per hash it names.
    pub requests: u64,
    /// Calls inside the store right now.
    pub outstanding: u64,
    /// Calls that returned an error.
    pub errors: u64,
}

impl ProgressCounts {
    /// The reference system's status line:
    /// `{add bytes}:{add blocks} {get bytes} {outstanding}`, sizes in
    /// binary units (`1.5MiB:12 300KiB 2`).
    pub fn status_line(&self) -> String {
        format!(
            "{}:{} {} {}",
            human(self.add_bytes),
            self.add_blocks,
            human(self.get_bytes),
            self.outstanding
        )
    }
}

impl fmt::Display for ProgressCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.status_line())
    }
}

/// `n` bytes in binary units with at most one decimal.
fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n}B")
    } else if v < 10.0 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

#[derive(Default)]
struct Counters {
    add_blocks: AtomicU64,
    add_bytes: AtomicU64,
    new_blocks: AtomicU64,
    new_bytes: AtomicU64,
    get_blocks: AtomicU64,
    get_bytes: AtomicU64,
    get_misses: AtomicU64,
    contains: AtomicU64,
    requests: AtomicU64,
    outstanding: AtomicU64,
    errors: AtomicU64,
}

/// Marks one call as inside the store until dropped, so `outstanding`
/// comes down even when the store fails or panics.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(c: &'a Counters, requests: u64) -> Self {
        c.requests.fetch_add(requests, Relaxed);
        c.outstanding.fetch_add(1, Relaxed);
        InFlight(c)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Relaxed);
    }
}

/// A store that counts the calls, blocks and bytes passing through to
/// another and otherwise changes nothing.
pub struct ProgressStore {
    inner: Arc<dyn Store>,
    c: Counters,
}

impl ProgressStore {
    /// Counts the traffic to `inner`, from zero.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        ProgressStore {
            inner,
            c: Counters::default(),
        }
    }

    /// The store being counted.
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    /// The counters now.
    pub fn counts(&self) -> ProgressCounts {
        let c = &self.c;
        ProgressCounts {
            add_blocks: c.add_blocks.load(Relaxed),
            add_bytes: c.add_bytes.load(Relaxed),
            new_blocks: c.new_blocks.load(Relaxed),
            new_bytes: c.new_bytes.load(Relaxed),
            get_blocks: c.get_blocks.load(Relaxed),
            get_bytes: c.get_bytes.load(Relaxed),
            get_misses: c.get_misses.load(Relaxed),
            contains: c.contains.load(Relaxed),
            requests: c.requests.load(Relaxed),
            outstanding: c.outstanding.load(Relaxed),
            errors: c.errors.load(Relaxed),
        }
    }

    /// Runs one request to the inner store, counting it and its error.
    fn call<T>(&self, requests: u64, f: impl FnOnce(&dyn Store) -> Result<T>) -> Result<T> {
        let _in = InFlight::enter(&self.c, requests);
        let r = f(self.inner.as_ref());
        if r.is_err() {
            self.c.errors.fetch_add(1, Relaxed);
        }
        r
    }

    fn added(&self, len: usize, new: bool) {
        let c = &self.c;
        c.add_blocks.fetch_add(1, Relaxed);
        c.add_bytes.fetch_add(len as u64, Relaxed);
        if new {
            c.new_blocks.fetch_add(1, Relaxed);
            c.new_bytes.fetch_add(len as u64, Relaxed);
        }
    }

    fn got(&self, len: Option<usize>) {
        match len {
            Some(n) => {
                self.c.get_blocks.fetch_add(1, Relaxed);
                self.c.get_bytes.fetch_add(n as u64, Relaxed);
            }
            None => {
                self.c.get_misses.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts a fetch's outcome: a `Missing` error is a miss.
    fn fetched<T>(&self, r: &Result<T>, len: impl FnOnce(&T) -> usize) {
        match r {
            Ok(d) => self.got(Some(len(d))),
            Err(Error::Missing(_)) => self.got(None),
            Err(_) => {}
        }
    }
}

impl Store for ProgressStore {
    fn hash_kind(&self) -> HashKind {
        self.inner.hash_kind()
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        let new = self.call(1, |s| s.add_hashed(hash, data))?;
        self.added(data.len(), new);
        Ok(new)
    }

    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        let new = self.call(1, |s| s.add_hashed_as(hash, data, class))?;
        self.added(data.len(), new);
        Ok(new)
    }

    fn add(&self, data: &[u8]) -> Result<(Hash, bool)> {
        let (h, new) = self.call(1, |s| s.add(data))?;
        self.added(data.len(), new);
        Ok((h, new))
    }

    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        let (h, new) = self.call(1, |s| s.add_as(data, class))?;
        self.added(data.len(), new);
        Ok((h, new))
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        let d = self.call(1, |s| s.get(hash))?;
        self.got(d.as_ref().map(Vec::len));
        Ok(d)
    }

    fn fetch(&self, hash: &Hash) -> Result<Vec<u8>> {
        let r = self.call(1, |s| s.fetch(hash));
        self.fetched(&r, Vec::len);
        r
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        let d = self.call(1, |s| s.get_shared(hash))?;
        self.got(d.as_ref().map(Bytes::len));
        Ok(d)
    }

    fn fetch_shared(&self, hash: &Hash) -> Result<Bytes> {
        let r = self.call(1, |s| s.fetch_shared(hash));
        self.fetched(&r, Bytes::len);
        r
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        self.c.contains.fetch_add(1, Relaxed);
        self.call(1, |s| s.contains(hash))
    }

    fn sync(&self) -> Result<()> {
        self.call(1, |s| s.sync())
    }

    fn stats(&self) -> Result<StoreStats> {
        self.call(1, |s| s.stats())
    }

    fn prefetch(&self, hashes: &[Hash]) {
        let _in = InFlight::enter(&self.c, hashes.len() as u64);
        self.inner.prefetch(hashes);
    }

    fn locality(&self, hash: &Hash) -> Option<u64> {
        self.inner.locality(hash)
    }

    fn overcounted(&self) -> (u64, u64) {
        self.inner.overcounted()
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        self.call(1, |s| s.archive_names())
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.call(1, |s| s.archive_read(name))
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.call(1, |s| s.archive_append(name, lines))
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.call(1, |s| s.archive_replace(name, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn store() -> (Arc<MemoryStore>, ProgressStore) {
        let m = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let p = ProgressStore::new(m.clone());
        (m, p)
    }

    #[test]
    fn counts_adds_gets_and_misses() {
        let (m, p) = store();
        let (a, new) = p.add(b"hello").unwrap();
        assert!(new);
        assert!(!p.add_as(b"hello", BlockClass::Meta).unwrap().1);
        let b = HashKind::Sha3_256.digest(b"world");
        assert!(p.add_hashed_as(&b, b"world", BlockClass::Data).unwrap());
        assert!(!p.add_hashed(&b, b"world").unwrap());
        assert!(m.contains(&b).unwrap(), "adds reach the inner store");

        assert_eq!(p.get(&a).unwrap().unwrap(), b"hello");
        assert_eq!(&p.get_shared(&b).unwrap().unwrap()[..], b"world");
        assert_eq!(p.fetch(&a).unwrap(), b"hello");
        let missing = HashKind::Sha3_256.digest(b"nope");
        assert!(p.get(&missing).unwrap().is_none());
        assert!(matches!(p.fetch(&missing), Err(Error::Missing(_))));
        assert!(p.fetch_shared(&missing).is_err());
        assert!(p.contains(&a).unwrap());
        assert!(!p.contains(&missing).unwrap());

        let c = p.counts();
        assert_eq!((c.add_blocks, c.add_bytes), (4, 20));
        assert_eq!((c.new_blocks, c.new_bytes), (2, 10));
        assert_eq!((c.get_blocks, c.get_bytes), (3, 15));
        assert_eq!(c.get_misses, 3);
        assert_eq!(c.contains, 2);
        assert_eq!(c.requests, 4 + 6 + 2);
        assert_eq!(c.outstanding, 0);
        assert_eq!(c.errors, 2, "the two failed fetches");
    }

    #[test]
    fn forwards_everything_else() {
        let (m, p) = store();
        p.add(b"x").unwrap();
        p.sync().unwrap();
        assert_eq!(p.stats().unwrap(), m.stats().unwrap());
        assert_eq!(p.hash_kind(), HashKind::Sha3_256);
        assert_eq!(p.overcounted(), (0, 0));
        let h = HashKind::Sha3_256.digest(b"x");
        p.prefetch(&[h, h, h]);
        let before = p.counts().requests;

        let line = "# a comment line\n";
        p.archive_append("a", line.as_bytes()).unwrap();
        assert_eq!(p.archive_names().unwrap(), vec!["a".to_string()]);
        assert_eq!(m.archive_read("a").unwrap().unwrap(), line.as_bytes());
        p.archive_replace("a", b"").unwrap();
        assert_eq!(p.archive_read("a").unwrap().unwrap(), b"");
        let c = p.counts();
        assert_eq!(before, 1 + 1 + 1 + 3);
        assert_eq!(c.requests, before + 4);
    }

    /// Holds every call until released, to see `outstanding` count them.
    struct Gate {
        inner: MemoryStore,
        open: std::sync::Mutex<bool>,
        cv: std::sync::Condvar,
    }

    impl Gate {
        fn wait(&self) {
            let mut g = self.open.lock().unwrap();
            while !*g {
                g = self.cv.wait(g).unwrap();
            }
        }
    }

    impl Store for Gate {
        fn hash_kind(&self) -> HashKind {
            self.inner.hash_kind()
        }
        fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
            self.wait();
            self.inner.add_hashed(hash, data)
        }
        fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
            self.wait();
            self.inner.get(hash)
        }
        fn contains(&self, hash: &Hash) -> Result<bool> {
            self.inner.contains(hash)
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
        fn stats(&self) -> Result<StoreStats> {
            self.inner.stats()
        }
    }

    #[test]
    fn outstanding_counts_calls_in_flight() {
        let gate = Arc::new(Gate {
            inner: MemoryStore::new(HashKind::Sha3_256),
            open: std::sync::Mutex::new(false),
            cv: std::sync::Condvar::new(),
        });
        let p = Arc::new(ProgressStore::new(gate.clone()));
        let threads: Vec<_> = (0..8u8)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || p.add(&[i; 100]).unwrap())
            })
            .collect();
        let t0 = std::time::Instant::now();
        while p.counts().outstanding < 8 {
            assert!(t0.elapsed().as_secs() < 10, "calls never arrived");
            std::thread::yield_now();
        }
        *gate.open.lock().unwrap() = true;
        gate.cv.notify_all();
        for t in threads {
            t.join().unwrap();
        }
        let c = p.counts();
        assert_eq!(c.outstanding, 0);
        assert_eq!((c.add_blocks, c.add_bytes, c.new_blocks), (8, 800, 8));
        assert_eq!(c.requests, 8);
        assert_eq!(c.status_line(), "800B:8 0B 0");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0B");
        assert_eq!(human(1536), "1.5KiB");
        assert_eq!(human(300 << 10), "300KiB");
        assert_eq!(human(5 << 30), "5.0GiB");
    }
}
