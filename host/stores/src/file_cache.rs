//! [`FileCache`]: a cache of blocks in local flat files, with an upper
//! limit in bytes, in front of a slower store (the reference system's
//! "flat file cache"). The files outlive the process: the next cache
//! opened on the directory adopts them, so a second run (or a remount)
//! reads what the first one fetched without asking the backend.
//!
//! # Files
//!
//! The cache directory holds up to [`MAX_FILES`] cache files per open
//! cache, named `vtcache-PID-N.blocks` (`PID` of the process that created
//! the file; `N` counts up within a process, starting above every `N` in
//! the directory). A cache file is self-describing:
//!
//! ```text
//! file   = MAGIC record*            MAGIC = "vtcache1\n" (9 bytes)
//! record = HASH LEN DATA            HASH  = 33 bytes: kind byte, digest
//!                                           (as vt_core::Hash::to_bytes)
//!                                   LEN   = u32 little-endian: DATA bytes
//! ```
//!
//! A format change changes the magic. Nothing is synced: a crash may tear
//! the last records or leave a hole of zeros, which adoption cuts off,
//! and any record that lies is caught by the hash check on reading, so a
//! damaged file costs misses, never wrong data.
//!
//! - New blocks are appended to the newest file. A record that would take
//!   that file past its share (the limit, less a little slack for the
//!   directory itself, divided by [`MAX_FILES`]) starts a new file; a block
//!   whose record is larger than a share is not cached.
//! - Starting a ninth file first deletes the oldest, with every block in
//!   it; so does a record that would take all the files past [`MAX_FILES`]
//!   shares (only adopted files, written under a larger limit, can make
//!   that happen). So the files never hold more than the limit: `du -sb`
//!   of the directory stays within it (per open cache: two caches open on
//!   one directory at once each keep their own files and limit).
//! - A hit on a block in the older half of the files copies it to the
//!   newest file (promotion), so blocks in steady use outlive the file
//!   they were first written to. A file left with no blocks (all
//!   promoted, superseded, or found corrupt) is deleted at once.
//! - Every block read from a file is checked against its hash; a block
//!   that fails is forgotten, logged, and read from the backend instead.
//!
//! # Locking and adoption
//!
//! An open cache holds an exclusive `flock` on each of its files, taken
//! on a new file while it is still `….tmp` (with its magic written), so a
//! `.blocks` file nobody holds is one whose cache has gone. Opening a cache:
//!
//! - tries the lock (without waiting) on each `vtcache-*.blocks` file in
//!   the directory; a file another open cache holds, in this process or
//!   another, is left alone. A file it gets (and that still has its name)
//!   is its own from then on: with a bad magic it is deleted; otherwise
//!   its record headers are read (seeking over the data), stopping at the
//!   first record that is cut short or implausible (an unknown hash kind,
//!   a length past the end), where the file is truncated;
//! - orders the files it got by modification time (then `N`) and keeps the
//!   newest that fit in [`MAX_FILES`] files and the limit, deleting the
//!   older ones; these are its oldest files, and the newest of them is
//!   written to until it is full;
//! - indexes each block once, at its newest copy (the last in the newest
//!   file): files left with no block are deleted;
//! - deletes `vtcache-*.tmp` files nobody holds (their creator died
//!   before naming them).
//!
//! Dropping a cache deletes nothing: closing the files releases the locks
//! and the next cache adopts them.
//!
//! Reads and writes of block data use `pread`/`pwrite` outside any lock;
//! the lock guards only the in-memory index and the list of files.

use std::collections::{HashMap, VecDeque};
use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use bytes::Bytes;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

/// Cache files kept at most.
pub const MAX_FILES: usize = 8;

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 9] = b"vtcache1\n";

/// A record header: the hash, then the data length (u32 LE).
const REC_HEADER: u64 = Hash::ENCODED_LEN as u64 + 4;

/// A hit in a file older than the newest this many is promoted.
const PROMOTE_WINDOW: usize = MAX_FILES / 2;

/// Bytes of the limit left for the directory itself (`du` counts it),
/// at most.
const DIR_SLACK: u64 = 64 << 10;

/// Bytes read at once when scanning the record headers of a file.
const SCAN_CHUNK: usize = 64 << 10;

const PREFIX: &str = "vtcache-";
const SUFFIX: &str = ".blocks";

/// Numbers cache files uniquely within this process (and ids them).
static FILE_SEQ: AtomicU64 = AtomicU64::new(0);

/// Where a cached block's data lies.
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

    /// Bytes of all the files.
    fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.reserved).sum()
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

    /// Indexes the block at `loc` (a newer copy than any indexed before).
    fn index_new(&mut self, hash: Hash, loc: Loc) {
        if let Some(pos) = self.pos(loc.file) {
            let f = &mut self.files[pos];
            f.live += 1;
            f.hashes.push(hash);
        }
        if let Some(old) = self.index.insert(hash, loc) {
            self.release(old.file);
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
    /// Bytes of the cache files now (including headers and blocks no
    /// longer indexed).
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

/// Whether `f` is still the file named `path` (not deleted, or replaced,
/// by the cache that held it before we got the lock).
fn still_named(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn is_cache_file(name: &str) -> bool {
    name.starts_with(PREFIX) && name.ends_with(SUFFIX)
}

/// The `N` of a cache file named `vtcache-PID-N.blocks` (0 if not so).
fn file_seq(name: &str) -> u64 {
    name.strip_prefix(PREFIX)
        .and_then(|n| n.strip_suffix(SUFFIX))
        .and_then(|n| n.rsplit_once('-'))
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0)
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

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!("deleting cache file {}: {e}", path.display());
        }
        _ => {}
    }
}

/// A record found in a cache file: its hash, and its data's offset and
/// length.
type Record = (Hash, u64, u64);

/// The records of cache file `f` (`size` bytes, magic checked) up to the
/// first cut short or implausible, and where that one starts.
fn scan(f: &File, size: u64) -> (Vec<Record>, u64) {
    let mut recs = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_at = 0u64;
    let mut off = MAGIC.len() as u64;
    let hdr = REC_HEADER as usize;
    loop {
        if off + REC_HEADER > size {
            break;
        }
        let inside = off >= buf_at && off + REC_HEADER <= buf_at + buf.len() as u64;
        if !inside {
            let n = (size - off).min(SCAN_CHUNK as u64) as usize;
            buf.resize(n, 0);
            if f.read_exact_at(&mut buf, off).is_err() {
                break;
            }
            buf_at = off;
        }
        let i = (off - buf_at) as usize;
        let h = &buf[i..i + hdr];
        let Ok(hash) = Hash::from_bytes(&h[..Hash::ENCODED_LEN]) else {
            break;
        };
        let mut l = [0u8; 4];
        l.copy_from_slice(&h[Hash::ENCODED_LEN..]);
        let len = u64::from(u32::from_le_bytes(l));
        let end = off + REC_HEADER + len;
        if end > size {
            break;
        }
        recs.push((hash, off + REC_HEADER, len));
        off = end;
    }
    (recs, off)
}

/// A cache file in the directory this cache got the lock on.
struct Leftover {
    path: PathBuf,
    file: File,
    mtime: SystemTime,
    seq: u64,
}

/// Takes over the cache files in `dir` nobody holds, keeping the newest
/// that fit in `budget` bytes and [`MAX_FILES`] files (see the module
/// documentation); returns the state they make.
fn adopt(dir: &Path, budget: u64) -> Result<State> {
    let list_err = |e| Error::io(format!("list cache directory {}", dir.display()), e);
    let mut found = Vec::new();
    for ent in std::fs::read_dir(dir).map_err(list_err)? {
        let ent = ent.map_err(list_err)?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let path = ent.path();
        if name.starts_with(PREFIX) && name.ends_with(".tmp") {
            // A `.tmp` file nobody holds is one whose creator died before
            // naming it.
            if let Ok(f) = File::open(&path) {
                if flock_nb(&f) && still_named(&f, &path) {
                    remove_quietly(&path);
                }
            }
            continue;
        }
        if !is_cache_file(name) {
            continue;
        }
        let seq = file_seq(name);
        FILE_SEQ.fetch_max(seq.saturating_add(1), Relaxed);
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        // A live cache (in this process or another) holds its files
        // locked; one it deleted before we got the lock has lost its name.
        if !flock_nb(&file) || !still_named(&file, &path) {
            continue;
        }
        let mut magic = [0u8; MAGIC.len()];
        if file.read_exact_at(&mut magic, 0).is_err() || magic != *MAGIC {
            tracing::info!("deleting {}: not a cache file", path.display());
            remove_quietly(&path);
            continue;
        }
        let mtime = file
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        found.push(Leftover {
            path,
            file,
            mtime,
            seq,
        });
    }
    found.sort_by(|a, b| (a.mtime, a.seq, &a.path).cmp(&(b.mtime, b.seq, &b.path)));

    // The newest that fit, scanned; the rest deleted.
    let mut kept: Vec<(Leftover, Vec<Record>, u64)> = Vec::new();
    let mut total = 0u64;
    let mut full = false;
    while let Some(lf) = found.pop() {
        if !full && kept.len() < MAX_FILES {
            let size = lf.file.metadata().map(|m| m.len()).unwrap_or(0);
            let (recs, end) = scan(&lf.file, size);
            if total + end <= budget {
                if end < size {
                    tracing::info!(
                        "cache file {} is torn at {end} of {size} bytes; truncating it",
                        lf.path.display()
                    );
                    if let Err(e) = lf.file.set_len(end) {
                        tracing::warn!("truncating cache file {}: {e}", lf.path.display());
                        remove_quietly(&lf.path);
                        continue;
                    }
                }
                total += end;
                kept.push((lf, recs, end));
                continue;
            }
        }
        full = true;
        remove_quietly(&lf.path);
    }

    let mut st = State::default();
    for (lf, recs, end) in kept.into_iter().rev() {
        let id = FILE_SEQ.fetch_add(1, Relaxed);
        st.files.push_back(CacheFile {
            id,
            path: lf.path,
            file: Arc::new(lf.file),
            reserved: end,
            hashes: Vec::with_capacity(recs.len()),
            live: 0,
        });
        for (hash, off, len) in recs {
            st.index_new(hash, Loc { file: id, off, len });
        }
    }
    // Files whose blocks all have newer copies (release deleted those
    // emptied as it went; not those that were empty to begin with).
    let mut i = 0;
    while i + 1 < st.files.len() {
        if st.files[i].live == 0 {
            st.drop_file(i);
        } else {
            i += 1;
        }
    }
    Ok(st)
}

impl FileCache {
    /// A cache of at most `limit_bytes` in files in `dir` (created, mode
    /// 0700, if missing), in front of `backend`. Adopts the cache files in
    /// `dir` that no open cache holds (see the module documentation).
    pub fn open(dir: &Path, limit_bytes: u64, backend: Arc<dyn Store>) -> Result<Self> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(format!("create cache directory {}", dir.display()), e))?;
        // `du` counts the directory too: a page of it on most filesystems.
        let slack = (limit_bytes / 16).clamp(4096.min(limit_bytes / 2), DIR_SLACK);
        let per_file = (limit_bytes - slack) / MAX_FILES as u64;
        let state = adopt(dir, per_file * MAX_FILES as u64)?;
        Ok(FileCache {
            dir: dir.to_path_buf(),
            backend,
            limit: limit_bytes,
            per_file,
            state: Mutex::new(state),
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
            bytes: g.bytes(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change to the state is whole between statements, so a
        // panic elsewhere while it was held leaves it usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a new cache file, locked, with its magic, under its final
    /// name.
    fn new_file(&self) -> Result<CacheFile> {
        let mut tries = 0;
        loop {
            let n = FILE_SEQ.fetch_add(1, Relaxed);
            let name = format!("{PREFIX}{}-{n}", std::process::id());
            let tmp = self.dir.join(format!("{name}.tmp"));
            let path = self.dir.join(format!("{name}{SUFFIX}"));
            if path.exists() {
                continue; // left by an earlier process with our pid
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| Error::io(format!("create cache file {}", tmp.display()), e))?;
            // Locked before it has a name another cache would look at. An
            // opening cache may have taken the `.tmp` for a dead one's in
            // the instant before: then it is deleted, and we try again.
            let named = flock_nb(&file)
                && file.write_all_at(MAGIC, 0).is_ok()
                && std::fs::rename(&tmp, &path).is_ok();
            if named {
                return Ok(CacheFile {
                    id: n,
                    path,
                    file: Arc::new(file),
                    reserved: MAGIC.len() as u64,
                    hashes: Vec::new(),
                    live: 0,
                });
            }
            let _ = std::fs::remove_file(&tmp);
            tries += 1;
            if tries == 3 {
                return Err(Error::io(
                    format!("create cache file {}", path.display()),
                    std::io::Error::other("could not lock and name it"),
                ));
            }
        }
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
        let rec = REC_HEADER + len;
        let Ok(len32) = u32::try_from(len) else {
            return false;
        };
        if MAGIC.len() as u64 + rec > self.per_file {
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
                .is_none_or(|f| f.reserved + rec > self.per_file);
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
            // Files adopted from a cache with a larger limit may hold more
            // than their share: the oldest go until the record fits.
            while g.files.len() > 1 && g.bytes() + rec > self.per_file * MAX_FILES as u64 {
                g.drop_file(0);
            }
            let Some(cur) = g.files.back_mut() else {
                return false;
            };
            let off = cur.reserved;
            cur.reserved += rec;
            (cur.id, off, cur.file.clone())
        };
        let mut buf = Vec::with_capacity(rec as usize);
        buf.extend_from_slice(&hash.to_bytes());
        buf.extend_from_slice(&len32.to_le_bytes());
        buf.extend_from_slice(data);
        if let Err(e) = file.write_all_at(&buf, off) {
            tracing::warn!("caching block {hash} in {}: {e}", self.dir.display());
            return false;
        }
        let mut g = self.lock();
        if !may_index(&g, hash, from) {
            return false;
        }
        if g.pos(id).is_none() {
            return false; // the file was deleted while we wrote
        }
        let off = off + REC_HEADER;
        g.index_new(*hash, Loc { file: id, off, len });
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

    /// Syncs the backend. Cache files are never synced: a cache may lose
    /// its last blocks in a crash, which costs only misses.
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
mod tests;

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "cache",
        summary: "a cache (files or memory) in front of another store",
        settings: &["store", "limit", "dir", "kind"],
        order: 9,
    }
}
