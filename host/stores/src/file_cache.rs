//! [`FileCache`]: a cache of blocks in local flat files, with an upper
//! limit in bytes, in front of a slower store (the reference system's
//! "flat file cache").
//!
//! # Files
//!
//! The cache directory holds up to [`MAX_FILES`] cache files named
//! `vtcache-PID-N.blocks` (`N` counts up within a process). A cache file
//! is nothing but block data laid end to end, with no header or framing:
//! where each block lies (file, offset, length) is kept in memory only, so
//! the files mean nothing without the process that wrote them. Each open
//! cache holds an exclusive `flock` on each of its files.
//!
//! - New blocks are appended to the newest file. A block that would take
//!   that file past its share (the limit, less a little slack for the
//!   directory itself, divided by [`MAX_FILES`]) starts a new file; a block
//!   larger than a share is not cached.
//! - Starting a ninth file first deletes the oldest, with every block in
//!   it. So the files never hold more than the limit: `du -sb` of the
//!   directory stays within it.
//! - A hit on a block in the older half of the files copies it to the
//!   newest file (promotion), so blocks in steady use outlive the file
//!   they were first written to. A file left with no blocks (all
//!   promoted, or found corrupt) is deleted at once.
//! - Every block read from a file is checked against its hash; a block
//!   that fails is forgotten, logged, and read from the backend instead.
//! - Opening a cache deletes cache files left in the directory by
//!   processes that have gone (those nobody holds a lock on; a file is
//!   created as `….tmp` and locked before it gets its name); the cache
//!   deletes its own files when dropped. It is never reused across runs,
//!   and two caches open on one directory each keep their own files.
//!
//! Reads and writes of block data use `pread`/`pwrite` outside any lock;
//! the lock guards only the in-memory index and the list of files.

use std::collections::{HashMap, VecDeque};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

/// Cache files kept at most.
pub const MAX_FILES: usize = 8;

/// A hit in a file older than the newest this many is promoted.
const PROMOTE_WINDOW: usize = MAX_FILES / 2;

/// Bytes of the limit left for the directory itself (`du` counts it),
/// at most.
const DIR_SLACK: u64 = 64 << 10;

const PREFIX: &str = "vtcache-";
const SUFFIX: &str = ".blocks";

/// Numbers cache files uniquely within this process.
static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a cached block lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    file: u64,
    off: u64,
    len: u64,
}

struct CacheFile {
    id: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes handed out to writers: the file's size once they land.
    reserved: u64,
    /// Every block written here (some may have moved on since).
    hashes: Vec<Hash>,
    /// Blocks the index places here now.
    live: u64,
}

#[derive(Default)]
struct State {
    /// Oldest first; the last is the one written to.
    files: VecDeque<CacheFile>,
    index: HashMap<Hash, Loc>,
}

impl State {
    fn pos(&self, id: u64) -> Option<usize> {
        self.files.iter().position(|f| f.id == id)
    }

    /// Deletes the file at `pos` and forgets the blocks in it.
    fn drop_file(&mut self, pos: usize) {
        let Some(f) = self.files.remove(pos) else {
            return;
        };
        for h in &f.hashes {
            if self.index.get(h).is_some_and(|l| l.file == f.id) {
                self.index.remove(h);
            }
        }
        if let Err(e) = std::fs::remove_file(&f.path) {
            tracing::warn!("deleting cache file {}: {e}", f.path.display());
        }
    }

    /// One block fewer in file `id`; deletes the file if that was its last
    /// and it is not the one written to.
    fn release(&mut self, id: u64) {
        let Some(pos) = self.pos(id) else {
            return;
        };
        let f = &mut self.files[pos];
        f.live = f.live.saturating_sub(1);
        if f.live == 0 && pos + 1 < self.files.len() {
            self.drop_file(pos);
        }
    }
}

/// Counts of a [`FileCache`]'s work and contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileCacheCounts {
    /// Reads answered from the cache files.
    pub hits: u64,
    /// Reads that went to the backend.
    pub misses: u64,
    /// Cached blocks that failed their hash check.
    pub corrupt: u64,
    /// Blocks copied to the newest file on a hit.
    pub promoted: u64,
    /// Cache files now.
    pub files: u64,
    /// Blocks cached now.
    pub blocks: u64,
    /// Bytes of the cache files now (including blocks no longer indexed).
    pub bytes: u64,
}

/// A cache of blocks in local files, bounded in bytes, in front of another
/// store. See the module documentation for the layout.
pub struct FileCache {
    dir: PathBuf,
    backend: Arc<dyn Store>,
    limit: u64,
    /// The most one file may hold.
    per_file: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    corrupt: AtomicU64,
    promoted: AtomicU64,
}

fn flock_nb(f: &File) -> bool {
    // SAFETY: flock on a valid descriptor owned by `f`.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

fn is_cache_file(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// Whether a block at `from` (none: not cached) may be indexed anew: it
/// is still there, or no longer cached at all (its file was deleted, or it
/// was forgotten; the data in hand was checked, so caching it is right).
fn may_index(g: &State, hash: &Hash, from: Option<Loc>) -> bool {
    match g.index.get(hash) {
        None => true,
        Some(l) => Some(*l) == from,
    }
}

/// Deletes the cache files in `dir` that no open cache holds locked.
fn remove_stale(dir: &Path) -> Result<()> {
    let rd = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("list cache directory {}", dir.display()), e))?;
    for ent in rd {
        let ent =
            ent.map_err(|e| Error::io(format!("list cache directory {}", dir.display()), e))?;
        let name = ent.file_name();
        // A `.tmp` file is one whose creator died before naming it.
        let ours = name
            .to_str()
            .is_some_and(|n| is_cache_file(n) || (n.starts_with(PREFIX) && n.ends_with(".tmp")));
        if !ours {
            continue;
        }
        let path = ent.path();
        let Ok(f) = OpenOptions::new().read(true).open(&path) else {
            continue;
        };
        // A live cache (in this process or another) holds its files
        // locked; a file nobody locks is left over.
        if flock_nb(&f) {
            match std::fs::remove_file(&path) {
                // Another cache opening at once got there first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|e| {
                    Error::io(format!("delete old cache file {}", path.display()), e)
                })?,
            }
        }
    }
    Ok(())
}

impl FileCache {
    /// A cache of at most `limit_bytes` in files in `dir` (created, mode
    /// 0700, if missing), in front of `backend`. Deletes cache files left
    /// in `dir` by caches no longer open.
    pub fn open(dir: &Path, limit_bytes: u64, backend: Arc<dyn Store>) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("create cache directory {}", dir.display()), e))?;
        remove_stale(dir)?;
        // `du` counts the directory too: a page of it on most filesystems.
        let slack = (limit_bytes / 16).clamp(4096.min(limit_bytes / 2), DIR_SLACK);
        Ok(FileCache {
            dir: dir.to_path_buf(),
            backend,
            limit: limit_bytes,
            per_file: (limit_bytes - slack) / MAX_FILES as u64,
            state: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            promoted: AtomicU64::new(0),
        })
    }

    /// The store behind the cache.
    pub fn backend(&self) -> &Arc<dyn Store> {
        &self.backend
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The most bytes the cache files hold together.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// What the cache has done and holds.
    pub fn counts(&self) -> FileCacheCounts {
        let g = self.lock();
        FileCacheCounts {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            promoted: self.promoted.load(Relaxed),
            files: g.files.len() as u64,
            blocks: g.index.len() as u64,
            bytes: g.files.iter().map(|f| f.reserved).sum(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is whole between statements, so a
        // panic elsewhere while it was held leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a new cache file, locked, under its final name.
    fn new_file(&self) -> Result<CacheFile> {
        let n = FILE_SEQ.fetch_add(1, Relaxed);
        let name = format!("{PREFIX}{}-{n}", std::process::id());
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}{SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create cache file {}", tmp.display()), e))?;
        // Locked before it has a name another cache would look at.
        flock_nb(&file);
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(Error::io(format!("name cache file {}", path.display()), e));
        }
        Ok(CacheFile {
            id: n,
            path,
            file: Arc::new(file),
            reserved: 0,
            hashes: Vec::new(),
            live: 0,
        })
    }

    /// The cached block, checked against its hash, promoted if its file is
    /// old. A block that fails the check, or cannot be read, is forgotten.
    fn lookup(&self, hash: &Hash) -> Option<Vec<u8>> {
        let (loc, file, old) = {
            let g = self.lock();
            let loc = *g.index.get(hash)?;
            let pos = g.pos(loc.file)?;
            let old = pos + PROMOTE_WINDOW < g.files.len();
            (loc, g.files[pos].file.clone(), old)
        };
        let Ok(len) = usize::try_from(loc.len) else {
            self.forget(hash, loc);
            return None;
        };
        let mut data = vec![0u8; len];
        if let Err(e) = file.read_exact_at(&mut data, loc.off) {
            tracing::warn!(
                "reading block {hash} from the cache in {}: {e}",
                self.dir.display()
            );
            self.forget(hash, loc);
            return None;
        }
        if hash.kind.digest(&data) != *hash {
            tracing::warn!(
                "block {hash} is corrupt in the cache in {}; reading it from the backend",
                self.dir.display()
            );
            self.corrupt.fetch_add(1, Relaxed);
            self.forget(hash, loc);
            return None;
        }
        if old && self.put(hash, &data, Some(loc)) {
            self.promoted.fetch_add(1, Relaxed);
        }
        Some(data)
    }

    /// Drops the index entry for `hash` if it is still `loc`.
    fn forget(&self, hash: &Hash, loc: Loc) {
        let mut g = self.lock();
        if g.index.get(hash) == Some(&loc) {
            g.index.remove(hash);
            g.release(loc.file);
        }
    }

    /// Writes a block to the newest file and indexes it there: a new block
    /// (`from` none) or a promotion from `from`, skipped if another thread
    /// cached or moved the block meanwhile. True if done.
    fn put(&self, hash: &Hash, data: &[u8], from: Option<Loc>) -> bool {
        let len = data.len() as u64;
        if self.per_file == 0 || len > self.per_file {
            return false;
        }
        let (id, off, file) = {
            let mut g = self.lock();
            if !may_index(&g, hash, from) {
                return false;
            }
            let full = g
                .files
                .back()
                .is_none_or(|f| f.reserved > 0 && f.reserved + len > self.per_file);
            if full {
                while g.files.len() >= MAX_FILES {
                    g.drop_file(0);
                }
                match self.new_file() {
                    Ok(f) => g.files.push_back(f),
                    Err(e) => {
                        tracing::warn!("caching block {hash}: {e}");
                        return false;
                    }
                }
            }
            let Some(cur) = g.files.back_mut() else {
                return false;
            };
            let off = cur.reserved;
            cur.reserved += len;
            (cur.id, off, cur.file.clone())
        };
        if let Err(e) = file.write_all_at(data, off) {
            tracing::warn!("caching block {hash} in {}: {e}", self.dir.display());
            return false;
        }
        let mut g = self.lock();
        if !may_index(&g, hash, from) {
            return false;
        }
        let Some(pos) = g.pos(id) else {
            return false; // the file was deleted while we wrote
        };
        let f = &mut g.files[pos];
        f.live += 1;
        f.hashes.push(*hash);
        let was = g.index.insert(*hash, Loc { file: id, off, len });
        if let Some(old) = was {
            g.release(old.file);
        }
        true
    }

    /// Caches a block read from or added to the backend.
    fn keep(&self, hash: &Hash, data: &[u8]) {
        self.put(hash, data, None);
    }

    fn cached(&self, hash: &Hash) -> bool {
        self.lock().index.contains_key(hash)
    }

    fn hit(&self, hash: &Hash) -> Option<Vec<u8>> {
        let d = self.lookup(hash);
        match d {
            Some(_) => self.hits.fetch_add(1, Relaxed),
            None => self.misses.fetch_add(1, Relaxed),
        };
        d
    }
}

impl Drop for FileCache {
    /// Deletes the cache's files: nothing can use them after this.
    fn drop(&mut self) {
        let mut g = self.lock();
        while !g.files.is_empty() {
            g.drop_file(0);
        }
    }
}

impl Store for FileCache {
    fn hash_kind(&self) -> HashKind {
        self.backend.hash_kind()
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        let new = self.backend.add_hashed(hash, data)?;
        self.keep(hash, data);
        Ok(new)
    }

    /// Written through: the backend has the block before this returns
    /// (adds of cached blocks too, as the cache cannot know the backend
    /// keeps what it was given); then the block is cached.
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
        if let Some(d) = self.hit(hash) {
            return Ok(Some(d));
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
        if let Some(d) = self.hit(hash) {
            return Ok(Some(Bytes::from(d)));
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
        if self.cached(hash) {
            return Ok(true);
        }
        self.backend.contains(hash)
    }

    /// Syncs the backend. Cache files are never synced: they do not
    /// outlive the process.
    fn sync(&self) -> Result<()> {
        self.backend.sync()
    }

    /// The backend's stats: the cache holds copies, not blocks of its own
    /// (see [`FileCache::counts`] for those).
    fn stats(&self) -> Result<StoreStats> {
        self.backend.stats()
    }

    /// Forwards only the hashes not cached: the others will be read here.
    fn prefetch(&self, hashes: &[Hash]) {
        let rest: Vec<Hash> = {
            let g = self.lock();
            hashes
                .iter()
                .filter(|h| !g.index.contains_key(h))
                .copied()
                .collect()
        };
        if !rest.is_empty() {
            self.backend.prefetch(&rest);
        }
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
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::{MemoryStore, ProgressStore};

    struct Setup {
        mem: Arc<MemoryStore>,
        back: Arc<ProgressStore>,
        cache: FileCache,
        _tmp: tempfile::TempDir,
    }

    fn setup(limit: u64) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let mem = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let back = Arc::new(ProgressStore::new(mem.clone()));
        let cache = FileCache::open(&tmp.path().join("cache"), limit, back.clone()).unwrap();
        Setup {
            mem,
            back,
            cache,
            _tmp: tmp,
        }
    }

    fn block(i: u32, len: usize) -> Vec<u8> {
        let mut d = vec![(i % 251) as u8; len];
        d[..4].copy_from_slice(&i.to_le_bytes());
        d
    }

    fn add_blocks(m: &MemoryStore, n: u32, len: usize) -> Vec<Hash> {
        (0..n).map(|i| m.add(&block(i, len)).unwrap().0).collect()
    }

    /// What `du -sb` would say: the directory and its files.
    fn du(dir: &Path) -> u64 {
        let mut n = std::fs::metadata(dir).unwrap().len();
        for e in std::fs::read_dir(dir).unwrap() {
            n += e.unwrap().metadata().unwrap().len();
        }
        n
    }

    fn cache_files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(is_cache_file)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn second_read_makes_no_backend_request() {
        let s = setup(1 << 20);
        let hs = add_blocks(&s.mem, 50, 4000);
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(s.cache.get(h).unwrap().unwrap(), block(i as u32, 4000));
        }
        assert_eq!(s.back.counts().get_blocks, 50);
        let before = s.back.counts().requests;
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(s.cache.get(h).unwrap().unwrap(), block(i as u32, 4000));
            let d = s.cache.get_shared(h).unwrap().unwrap();
            assert_eq!(&d[..], &block(i as u32, 4000)[..]);
            assert_eq!(s.cache.fetch(h).unwrap().len(), 4000);
            assert!(s.cache.contains(h).unwrap());
        }
        assert_eq!(s.back.counts().requests, before, "all hits");
        let c = s.cache.counts();
        assert_eq!((c.hits, c.misses, c.blocks), (150, 50, 50));
        let missing = HashKind::Sha3_256.digest(b"none");
        assert!(s.cache.get(&missing).unwrap().is_none());
        assert!(s.cache.fetch_shared(&missing).is_err());
        assert!(!s.cache.contains(&missing).unwrap());
    }

    #[test]
    fn directory_stays_within_the_limit() {
        let limit = 256 << 10;
        let s = setup(limit);
        let dir = s.cache.dir().to_path_buf();
        // 4 MiB of distinct blocks, sixteen times the limit, read twice.
        let hs = add_blocks(&s.mem, 1024, 4096);
        for _ in 0..2 {
            for (i, h) in hs.iter().enumerate() {
                assert_eq!(s.cache.get(h).unwrap().unwrap(), block(i as u32, 4096));
                if i % 64 == 0 {
                    assert!(du(&dir) <= limit, "{} > {limit}", du(&dir));
                    assert!(cache_files(&dir).len() <= MAX_FILES);
                }
            }
        }
        assert!(du(&dir) <= limit, "{} > {limit}", du(&dir));
        let c = s.cache.counts();
        assert!(c.bytes <= limit && c.files as usize <= MAX_FILES, "{c:?}");
        assert!(c.bytes > limit / 2, "the cache is used: {c:?}");
        let on_disk: u64 = cache_files(&dir)
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum();
        assert_eq!(on_disk, c.bytes);
        // The most recent blocks are still there.
        let before = s.back.counts().requests;
        s.cache.get(&hs[1023]).unwrap();
        assert_eq!(s.back.counts().requests, before);
    }

    #[test]
    fn corrupt_block_is_refetched() {
        let s = setup(1 << 20);
        let hs = add_blocks(&s.mem, 4, 1000);
        for h in &hs {
            s.cache.get(h).unwrap();
        }
        let files = cache_files(s.cache.dir());
        assert_eq!(files.len(), 1);
        // Blocks were written in order: block 2 starts at 2000.
        let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
        f.write_all_at(b"X", 2000 + 17).unwrap();
        let gets = s.back.counts().get_blocks;
        assert_eq!(s.cache.get(&hs[2]).unwrap().unwrap(), block(2, 1000));
        assert_eq!(s.back.counts().get_blocks, gets + 1, "refetched");
        assert_eq!(s.cache.counts().corrupt, 1);
        // Cached again, good this time; the others were never touched.
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(s.cache.get(h).unwrap().unwrap(), block(i as u32, 1000));
        }
        assert_eq!(s.back.counts().get_blocks, gets + 1);
        assert_eq!(s.cache.counts().corrupt, 1);
    }

    #[test]
    fn hot_blocks_are_promoted_and_survive() {
        let limit = 128 << 10;
        let s = setup(limit);
        let hot = s.mem.add(b"hot block").unwrap().0;
        let hs = add_blocks(&s.mem, 512, 4096);
        s.cache.get(&hot).unwrap();
        for h in &hs {
            s.cache.get(h).unwrap();
            assert_eq!(s.cache.get(&hot).unwrap().unwrap(), b"hot block");
        }
        let c = s.back.counts();
        assert_eq!(c.get_blocks, 1 + 512, "the hot block was read once");
        assert!(s.cache.counts().promoted > 0);
        assert!(du(s.cache.dir()) <= limit);
    }

    #[test]
    fn emptied_file_is_dropped_early() {
        // Files of two 4096-byte blocks: the share is (70000 - 4375) / 8.
        let s = setup(70_000);
        assert_eq!(s.cache.per_file, 8203);
        let hs = add_blocks(&s.mem, 10, 4096);
        for h in &hs {
            s.cache.get(h).unwrap();
        }
        assert_eq!(s.cache.counts().files, 5);
        // Blocks 0 and 1 are in the oldest file, 4 files behind the newest:
        // hits move them to a sixth file and the first is deleted.
        let before = s.back.counts().requests;
        s.cache.get(&hs[0]).unwrap();
        s.cache.get(&hs[1]).unwrap();
        let c = s.cache.counts();
        assert_eq!((c.promoted, c.files, c.blocks), (2, 5, 10), "{c:?}");
        assert_eq!(cache_files(s.cache.dir()).len(), 5);
        s.cache.get(&hs[0]).unwrap();
        s.cache.get(&hs[1]).unwrap();
        assert_eq!(s.cache.counts().promoted, 2, "now in the newest file");
        assert_eq!(s.back.counts().requests, before);
    }

    #[test]
    fn large_blocks_and_zero_limit_pass_through() {
        let s = setup(70_000);
        let (big, _) = s.mem.add(&block(1, 9000)).unwrap();
        assert_eq!(s.cache.get(&big).unwrap().unwrap().len(), 9000);
        assert_eq!(s.cache.counts().blocks, 0);
        let z = setup(0);
        let (a, _) = z.mem.add(b"a").unwrap();
        assert_eq!(z.cache.get(&a).unwrap().unwrap(), b"a");
        assert_eq!(z.cache.get(&a).unwrap().unwrap(), b"a");
        assert_eq!(z.back.counts().get_blocks, 2);
        assert!(cache_files(z.cache.dir()).is_empty());
    }

    #[test]
    fn adds_write_through_and_are_cached() {
        let s = setup(1 << 20);
        let (a, new) = s.cache.add(b"alpha").unwrap();
        assert!(new && s.mem.contains(&a).unwrap());
        let (b, _) = s.cache.add_as(b"beta", BlockClass::Meta).unwrap();
        let g = HashKind::Sha3_256.digest(b"gamma");
        assert!(s
            .cache
            .add_hashed_as(&g, b"gamma", BlockClass::Data)
            .unwrap());
        assert!(!s.cache.add_hashed(&g, b"gamma").unwrap());
        assert_eq!(
            s.back.counts().add_blocks,
            4,
            "every add reached the backend"
        );
        assert_eq!(s.cache.counts().blocks, 3);
        let before = s.back.counts().requests;
        for h in [a, b, g] {
            assert!(s.cache.get(&h).unwrap().is_some());
            assert!(s.cache.contains(&h).unwrap());
        }
        assert_eq!(s.back.counts().requests, before);
    }

    #[test]
    fn prefetch_and_the_rest_forward() {
        let s = setup(1 << 20);
        let (a, _) = s.mem.add(b"cached").unwrap();
        let (b, _) = s.mem.add(b"not cached").unwrap();
        s.cache.get(&a).unwrap();
        let before = s.back.counts().requests;
        s.cache.prefetch(&[a, b]);
        assert_eq!(s.back.counts().requests, before + 1);
        s.cache.prefetch(&[a]);
        assert_eq!(s.back.counts().requests, before + 1);

        s.cache.sync().unwrap();
        assert_eq!(s.cache.stats().unwrap(), s.mem.stats().unwrap());
        assert_eq!(s.cache.hash_kind(), HashKind::Sha3_256);
        assert_eq!(s.cache.overcounted(), (0, 0));
        s.cache.archive_append("a", b"# one\n").unwrap();
        assert_eq!(s.mem.archive_read("a").unwrap().unwrap(), b"# one\n");
        s.cache.archive_replace("a", b"# two\n").unwrap();
        assert_eq!(s.cache.archive_read("a").unwrap().unwrap(), b"# two\n");
        assert_eq!(s.cache.archive_names().unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn open_cleans_up_and_drop_removes_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/cache");
        let mem: Arc<dyn Store> = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let (h, _) = mem.add(b"x").unwrap();
        let live = FileCache::open(&dir, 1 << 20, mem.clone()).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        live.get(&h).unwrap();
        let live_files = cache_files(&dir);
        assert_eq!(live_files.len(), 1);
        std::fs::write(dir.join("vtcache-1-1.blocks"), b"left over").unwrap();
        std::fs::write(dir.join("vtcache-1-2.tmp"), b"").unwrap();
        std::fs::write(dir.join("unrelated"), b"kept").unwrap();

        let second = FileCache::open(&dir, 1 << 20, mem.clone()).unwrap();
        assert!(
            !dir.join("vtcache-1-1.blocks").exists(),
            "stale file removed"
        );
        assert!(dir.join("unrelated").exists());
        assert_eq!(
            cache_files(&dir),
            live_files,
            "a live cache's files are kept"
        );
        assert_eq!(live.get(&h).unwrap().unwrap(), b"x");
        assert_eq!(live.counts().hits, 1);
        drop(second);
        drop(live);
        assert!(cache_files(&dir).is_empty());
    }

    #[test]
    fn from_eight_threads() {
        let limit = 192 << 10;
        let s = setup(limit);
        let hs = Arc::new(add_blocks(&s.mem, 400, 2048));
        let cache = Arc::new(s.cache);
        let threads: Vec<_> = (0..8usize)
            .map(|t| {
                let (c, hs) = (cache.clone(), hs.clone());
                std::thread::spawn(move || {
                    for round in 0..3 {
                        for k in 0..400 {
                            let i = (k * 7 + t * 31 + round) % 400;
                            let d = c.fetch(&hs[i]).unwrap();
                            assert_eq!(d, block(i as u32, 2048));
                            let j = k % 8;
                            let d = c.get_shared(&hs[j]).unwrap().unwrap();
                            assert_eq!(&d[..], &block(j as u32, 2048)[..]);
                        }
                        c.add(&block(10_000 + (t * 10 + round) as u32, 1000))
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(du(cache.dir()) <= limit);
        let c = cache.counts();
        assert_eq!(c.hits + c.misses, 8 * 3 * 800);
        assert_eq!(c.corrupt, 0);
        assert_eq!(s.back.counts().get_blocks, c.misses);
        assert!(c.hits > 8 * 3 * 300, "the hot set hits: {c:?}");
    }
}
