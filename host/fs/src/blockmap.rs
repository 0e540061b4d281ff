//! The blockmap: a file's leaf blocks by offset, so a read anywhere in a
//! huge file is a binary search, not a walk down the block tree.
//!
//! A file's map is built in memory the first time the file is read (one
//! pass over its indirect blocks; leaves are not fetched) and dropped when
//! the file's content changes. It is not persisted. Leaf data is shared by
//! every open file through a [`LeafCache`]; sequential readers get the next
//! leaves fetched ahead of them in parallel, and the store is told of them
//! all at once ([`Store::prefetch`]: a remote store asks for the window in
//! one go).

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use vt_core::read::{children, read_range};
use vt_core::{BlockRef, Error, Hash, Result, Store};

/// Leaves fetched ahead of a sequential reader.
const READAHEAD: usize = 64;

/// A leaf being fetched or fetched: readers of the same leaf wait for
/// one fetch instead of each doing it (`None` after a failed fetch).
type Slot = Arc<OnceLock<Option<Bytes>>>;

/// Decoded leaf blocks, most recently added kept, up to a byte budget.
pub struct LeafCache {
    inner: Mutex<CacheInner>,
    cap: usize,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<Hash, (Slot, usize)>,
    order: VecDeque<Hash>,
    bytes: usize,
}

impl LeafCache {
    /// A cache holding up to `cap` bytes.
    pub fn new(cap: usize) -> Self {
        LeafCache {
            inner: Mutex::default(),
            cap,
        }
    }

    /// Whether `h` has been fetched into the cache (not only reserved).
    fn contains(&self, h: &Hash) -> bool {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.map
            .get(h)
            .is_some_and(|(s, _)| matches!(s.get(), Some(Some(_))))
    }

    /// Makes an empty slot for `h` unless it has one: true if it made
    /// one, so that a fetch about to start is not asked for again.
    fn reserve(&self, h: &Hash, span: u64) -> bool {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.map.contains_key(h) {
            return false;
        }
        self.insert(&mut g, h, span);
        true
    }

    /// The slot for `h`, new (and accounted `span` bytes) if absent.
    fn slot(&self, h: &Hash, span: u64) -> Slot {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((s, _)) = g.map.get(h) {
            return s.clone();
        }
        self.insert(&mut g, h, span)
    }

    /// Adds an empty slot for `h`, evicting the oldest beyond the cap.
    fn insert(&self, g: &mut CacheInner, h: &Hash, span: u64) -> Slot {
        let s: Slot = Arc::default();
        let n = usize::try_from(span).unwrap_or(usize::MAX);
        g.bytes = g.bytes.saturating_add(n);
        g.map.insert(*h, (s.clone(), n));
        g.order.push_back(*h);
        while g.bytes > self.cap && g.order.len() > 1 {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some((_, n)) = g.map.remove(&old) {
                g.bytes -= n;
            }
        }
        s
    }

    fn forget(&self, h: &Hash) {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = g.map.remove(h) {
            g.bytes -= n;
            g.order.retain(|x| x != h);
        }
    }

    /// The whole content of `root` if it is one leaf already fetched.
    pub fn cached(&self, root: &BlockRef) -> Option<Bytes> {
        let BlockRef::Direct { hash, .. } = root else {
            return None;
        };
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.map
            .get(hash)
            .and_then(|(s, _)| s.get().cloned().flatten())
    }

    /// Fetches into the cache the first leaves of the content `root`, up
    /// to `budget` bytes (a file about to be read: its indirect blocks are
    /// read on the way, and read again, from the page cache, when its map
    /// is built). Errors are left for a reader to meet.
    pub fn prefetch_start(&self, store: &dyn Store, root: &BlockRef, budget: u64) {
        let mut left = budget;
        let _ = self.prefetch_walk(store, root, &mut left);
    }

    fn prefetch_walk(&self, store: &dyn Store, r: &BlockRef, left: &mut u64) -> Result<()> {
        match r {
            BlockRef::Direct { hash, span } => {
                *left = left.saturating_sub(*span);
                self.fetch(store, hash, *span).map(|_| ())
            }
            BlockRef::Indirect { .. } => {
                for k in children(store, r)? {
                    if *left == 0 {
                        break;
                    }
                    self.prefetch_walk(store, &k, left)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The data of a direct leaf, from the cache or the store.
    fn fetch(&self, store: &dyn Store, hash: &Hash, span: u64) -> Result<Bytes> {
        let slot = self.slot(hash, span);
        let mut err = None;
        let got = slot.get_or_init(|| match store.fetch_shared(hash) {
            Ok(d) if d.len() as u64 == span => Some(d),
            Ok(d) => {
                err = Some(Error::decode(
                    "block ref",
                    format!("{hash} holds {} bytes, ref says {span}", d.len()),
                ));
                None
            }
            Err(e) => {
                err = Some(e);
                None
            }
        });
        match got {
            Some(d) => Ok(d.clone()),
            None => {
                self.forget(hash);
                Err(err.unwrap_or(Error::Missing(*hash)))
            }
        }
    }
}

/// A file's leaves in order, with their starting offsets.
pub struct BlockMap {
    starts: Vec<u64>,
    leaves: Vec<BlockRef>,
    span: u64,
    /// Leaves below this index have been fetched ahead already.
    ahead: AtomicUsize,
}

impl BlockMap {
    /// Builds the map of `root` (fetching its indirect blocks).
    pub fn build(store: &dyn Store, root: &BlockRef) -> Result<Self> {
        let mut m = BlockMap {
            starts: Vec::new(),
            leaves: Vec::new(),
            span: root.span(),
            ahead: AtomicUsize::new(0),
        };
        let mut pos = 0u64;
        m.walk(store, root, &mut pos)?;
        Ok(m)
    }

    fn walk(&mut self, store: &dyn Store, r: &BlockRef, pos: &mut u64) -> Result<()> {
        if let BlockRef::Indirect { .. } = r {
            for k in children(store, r)? {
                self.walk(store, &k, pos)?;
            }
        } else if r.span() > 0 {
            self.starts.push(*pos);
            self.leaves.push(r.clone());
            *pos += r.span();
        }
        Ok(())
    }

    /// The content's length.
    pub fn span(&self) -> u64 {
        self.span
    }

    /// Indexes of the leaves holding bytes `offset..offset + len` (none
    /// past the end, or for no bytes).
    fn leaves_of(&self, offset: u64, len: u64) -> Range<usize> {
        if offset >= self.span || len == 0 {
            return 0..0;
        }
        let end = self.span.min(offset + len);
        self.index(offset)..self.starts.partition_point(|&s| s < end)
    }

    /// Index of the leaf holding `offset` (which must be below the span).
    fn index(&self, offset: u64) -> usize {
        self.starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1)
    }

    /// The part `from..to` of leaf `i`; of a stored leaf, a slice of the
    /// cached block (no copy).
    fn leaf_part(
        &self,
        store: &dyn Store,
        cache: &LeafCache,
        i: usize,
        from: u64,
        to: u64,
    ) -> Result<Bytes> {
        let (a, b) = (from as usize, to as usize);
        Ok(match &self.leaves[i] {
            BlockRef::Direct { hash, span } => cache.fetch(store, hash, *span)?.slice(a..b),
            BlockRef::Literal(d) => Bytes::copy_from_slice(&d[a..b]),
            BlockRef::Rle { octet, .. } => Bytes::from(vec![*octet; b - a]),
            r => Bytes::from(read_range(store, r, from, to - from)?),
        })
    }

    /// Up to `len` bytes from `offset`, as the parts of the leaves that
    /// hold them, in order: slices of cached blocks, which a reply can
    /// gather without copying them together.
    pub fn read_parts(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        cache: &Arc<LeafCache>,
        offset: u64,
        len: u64,
    ) -> Result<Vec<Bytes>> {
        let Range {
            start: first,
            end: next,
        } = self.leaves_of(offset, len);
        if first == next {
            return Ok(Vec::new());
        }
        let end = self.span.min(offset + len);
        // This read's own leaves after its first come from the pool while
        // this thread fetches the first, and the window ahead is started
        // before this read waits on any of them.
        self.fetch_on_pool(store, cache, first + 1..next);
        self.read_ahead(store, cache, first, next);
        (first..next)
            .map(|i| {
                let a = self.starts[i];
                let from = offset.max(a) - a;
                let to = end.min(a + self.leaves[i].span()) - a;
                self.leaf_part(&**store, cache, i, from, to)
            })
            .collect()
    }

    /// Fetches the stored leaves of `range` not yet cached on the rayon
    /// pool, without waiting. The store hears of them all at once first:
    /// a remote store asks for them in one go, where the fetches, a few
    /// at a time (one per thread of the pool), would each wait for a
    /// round trip; a local store ignores the hint.
    fn fetch_on_pool(&self, store: &Arc<dyn Store>, cache: &Arc<LeafCache>, range: Range<usize>) {
        let want: Vec<(Hash, u64)> = self.leaves[range]
            .iter()
            .filter_map(|l| match l {
                BlockRef::Direct { hash, span } if cache.reserve(hash, *span) => {
                    Some((*hash, *span))
                }
                _ => None,
            })
            .collect();
        if want.is_empty() {
            return;
        }
        let hashes: Vec<Hash> = want.iter().map(|w| w.0).collect();
        store.prefetch(&hashes);
        for (hash, span) in want {
            let (store, cache) = (store.clone(), cache.clone());
            rayon::spawn(move || {
                let _ = cache.fetch(&*store, &hash, span);
            });
        }
    }

    /// Whether reading `len` bytes from `offset` needs no store read:
    /// every stored leaf of the range is in `cache` already.
    pub fn is_cached(&self, cache: &LeafCache, offset: u64, len: u64) -> bool {
        self.leaves[self.leaves_of(offset, len)]
            .iter()
            .all(|l| match l {
                BlockRef::Direct { hash, .. } => cache.contains(hash),
                BlockRef::Literal(_) | BlockRef::Rle { .. } => true,
                _ => false,
            })
    }

    /// Up to `len` bytes from `offset` in one buffer: within one leaf a
    /// slice of it, else the leaves' parts copied together.
    pub fn read(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        cache: &Arc<LeafCache>,
        offset: u64,
        len: u64,
    ) -> Result<Bytes> {
        let mut parts = self.read_parts(store, cache, offset, len)?;
        Ok(match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => Bytes::from(parts.concat()),
        })
    }

    /// Fetches the leaves after `next` into the cache in the background,
    /// when the reader seems sequential (it reached the previous window).
    fn read_ahead(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        cache: &Arc<LeafCache>,
        first: usize,
        next: usize,
    ) {
        let done = self.ahead.load(Relaxed);
        if first > done + READAHEAD || first + 2 * READAHEAD < done {
            // A jump, forward past the window or back before it (the file
            // read again from its start): start a new window after this
            // read.
            self.ahead.store(next, Relaxed);
            return;
        }
        let target = (next + READAHEAD).min(self.leaves.len());
        if target <= done || next >= target {
            return;
        }
        if self
            .ahead
            .compare_exchange(done, target, Relaxed, Relaxed)
            .is_err()
        {
            return;
        }
        let window = next.max(done)..target;
        self.fetch_on_pool(store, cache, window);
    }

    /// The next offset at or after `offset` that is data (`data`) or in a
    /// hole (runs of zeros stored as RLE blocks); the end counts as a hole.
    pub fn seek(&self, offset: u64, data: bool) -> Option<u64> {
        if offset >= self.span {
            return None;
        }
        let mut i = self.index(offset);
        let mut pos = offset;
        while i < self.leaves.len() {
            let hole = matches!(self.leaves[i], BlockRef::Rle { octet: 0, .. });
            if hole != data {
                return Some(pos);
            }
            pos = self.starts[i] + self.leaves[i].span();
            i += 1;
        }
        if data {
            None
        } else {
            Some(self.span)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_core::blockify::{AddStats, Blockifier};
    use vt_core::{ChunkParams, HashKind};
    use vt_stores::MemoryStore;

    /// `n` pseudo-random bytes (xorshift).
    fn random(n: usize) -> Vec<u8> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(n);
        v
    }

    /// `d` blockified into a memory store: the store, the root, its map.
    fn stored(d: &[u8]) -> (Arc<dyn Store>, BlockRef, Arc<BlockMap>) {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new(HashKind::Sha3_256));
        let stats = AddStats::default();
        let root = Blockifier::new(&*store, ChunkParams::default(), &stats)
            .blockify_bytes(d)
            .unwrap();
        let map = Arc::new(BlockMap::build(&*store, &root).unwrap());
        (store, root, map)
    }

    /// A memory store that records what it is asked to prefetch, and
    /// whose fetch of one block can be made to wait (up to 5 s) for
    /// another block's fetch, failing if it does not come.
    struct Recording {
        inner: MemoryStore,
        asked: Mutex<Vec<Vec<Hash>>>,
        /// (the block that waits, the block it waits for)
        gate: Mutex<Option<(Hash, Hash)>>,
        done: Mutex<bool>,
        cv: std::sync::Condvar,
    }

    impl Recording {
        fn new() -> Self {
            Recording {
                inner: MemoryStore::new(HashKind::Sha3_256),
                asked: Mutex::default(),
                gate: Mutex::default(),
                done: Mutex::default(),
                cv: std::sync::Condvar::new(),
            }
        }
    }

    impl Store for Recording {
        fn hash_kind(&self) -> HashKind {
            self.inner.hash_kind()
        }
        fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
            self.inner.add_hashed(hash, data)
        }
        fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
            let gate = *self.gate.lock().unwrap();
            if let Some((waits, awaited)) = gate {
                if *hash == waits {
                    let done = self.done.lock().unwrap();
                    let (done, _) = self
                        .cv
                        .wait_timeout_while(done, std::time::Duration::from_secs(5), |d| !*d)
                        .unwrap();
                    if !*done {
                        return Err(Error::Store(format!("{hash} fetched before {awaited}")));
                    }
                } else if *hash == awaited {
                    *self.done.lock().unwrap() = true;
                    self.cv.notify_all();
                }
            }
            self.inner.get(hash)
        }
        fn contains(&self, hash: &Hash) -> Result<bool> {
            self.inner.contains(hash)
        }
        fn sync(&self) -> Result<()> {
            self.inner.sync()
        }
        fn stats(&self) -> Result<vt_core::store::StoreStats> {
            self.inner.stats()
        }
        fn prefetch(&self, hashes: &[Hash]) {
            self.asked.lock().unwrap().push(hashes.to_vec());
        }
    }

    /// `d` blockified into a [`Recording`] store: the store, as itself and
    /// as a `Store`, and the map.
    fn recorded(d: &[u8]) -> (Arc<Recording>, Arc<dyn Store>, Arc<BlockMap>) {
        let rec = Arc::new(Recording::new());
        let store: Arc<dyn Store> = rec.clone();
        let stats = AddStats::default();
        let root = Blockifier::new(&*store, ChunkParams::default(), &stats)
            .blockify_bytes(d)
            .unwrap();
        let map = Arc::new(BlockMap::build(&*store, &root).unwrap());
        (rec, store, map)
    }

    /// The hashcode of leaf `i` of `map`, a stored block.
    fn leaf_hash(map: &BlockMap, i: usize) -> Hash {
        match &map.leaves[i] {
            BlockRef::Direct { hash, .. } => *hash,
            r => panic!("leaf {i} is {r:?}"),
        }
    }

    #[test]
    fn a_sequential_reader_s_window_is_asked_of_the_store_at_once() {
        let d = random(24 << 20);
        let (rec, store, map) = recorded(&d);
        let hash_of = |i: usize| leaf_hash(&map, i);
        assert!(map.leaves.len() > 3 * READAHEAD);
        let cache = Arc::new(LeafCache::new(64 << 20));
        let step = 128 << 10;
        assert_eq!(
            map.read(&store, &cache, 0, step).unwrap(),
            &d[..step as usize]
        );
        // One request for the read's own leaves after its first (fetched
        // on the pool meanwhile), then one for the whole window after the
        // read, in file order.
        let next = map.index(step - 1) + 1;
        assert!(next > 1, "the first read spans several leaves");
        let own: Vec<Hash> = (1..next).map(hash_of).collect();
        let want: Vec<Hash> = (next..next + READAHEAD).map(hash_of).collect();
        let expect: Vec<Vec<Hash>> = [own, want].into_iter().filter(|w| !w.is_empty()).collect();
        assert_eq!(*rec.asked.lock().unwrap(), expect);
        // Read to the end: every later leaf is asked for once, in order.
        let mut off = step;
        while off < d.len() as u64 {
            let got = map.read(&store, &cache, off, step).unwrap();
            assert_eq!(
                got,
                &d[off as usize..(off + step).min(d.len() as u64) as usize]
            );
            off += step;
        }
        let asked: Vec<Hash> = rec.asked.lock().unwrap().concat();
        let later: Vec<Hash> = (1..map.leaves.len()).map(hash_of).collect();
        assert_eq!(asked, later);
    }

    fn data() -> Vec<u8> {
        // 3 MiB of pseudo-random bytes, a 2 MiB hole, 1 MiB more.
        let mut v = random(3 << 20);
        v.resize(5 << 20, 0);
        let tail: Vec<u8> = v[..1 << 20].to_vec();
        v.extend_from_slice(&tail);
        v
    }

    #[test]
    fn a_file_read_again_from_its_start_is_fetched_ahead_again() {
        let d = random(24 << 20);
        let (store, _, map) = stored(&d);
        assert!(
            map.leaves.len() > 3 * READAHEAD,
            "{} leaves",
            map.leaves.len()
        );
        // Room for a window of leaves, not the file: the first pass's
        // early leaves are gone by the time the file is read again.
        let cache = Arc::new(LeafCache::new(8 << 20));
        let step = 128 << 10;
        let mut off = 0;
        while off < d.len() as u64 {
            map.read(&store, &cache, off, step).unwrap();
            off += step;
        }
        let probe = |i: usize| match &map.leaves[i] {
            BlockRef::Direct { hash, .. } => cache.contains(hash),
            r => panic!("leaf {i} is {r:?}"),
        };
        assert!(!probe(10), "leaf 10 evicted after the first pass");
        // Read the start again: leaves ahead of the reader come back.
        let got = map.read(&store, &cache, 0, step).unwrap();
        assert_eq!(got, &d[..step as usize]);
        map.read(&store, &cache, step, step).unwrap();
        let t0 = std::time::Instant::now();
        while !probe(10) && t0.elapsed() < std::time::Duration::from_secs(10) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(probe(10), "leaf 10 fetched ahead of a reader at the start");
    }

    #[test]
    fn a_read_s_leaves_are_fetched_side_by_side() {
        // The first leaf's fetch waits for the second's: fetched one
        // after the other, as a read's leaves once were, the read fails.
        let d = random(4 << 20);
        let (gated, store, map) = recorded(&d);
        *gated.gate.lock().unwrap() = Some((leaf_hash(&map, 0), leaf_hash(&map, 1)));
        let cache = Arc::new(LeafCache::new(64 << 20));
        let len = map.starts[2];
        let got = map.read(&store, &cache, 0, len).unwrap();
        assert_eq!(got, &d[..len as usize]);
    }

    #[test]
    fn a_range_is_cached_once_its_leaves_are_fetched() {
        let d = random(24 << 20);
        let (store, _, map) = stored(&d);
        // The last leaf lies beyond the window fetched ahead of the read.
        assert!(map.leaves.len() > 3 * READAHEAD);
        let cache = Arc::new(LeafCache::new(64 << 20));
        let len = map.starts[2];
        assert!(!map.is_cached(&cache, 0, len), "nothing fetched yet");
        assert!(map.is_cached(&cache, d.len() as u64, 1), "past the end");
        map.read(&store, &cache, 0, len).unwrap();
        assert!(map.is_cached(&cache, 0, len));
        assert!(map.is_cached(&cache, 1, len - 1));
        let last = map.starts[map.leaves.len() - 1];
        assert!(!map.is_cached(&cache, last, 1), "the last leaf is not");
    }

    #[test]
    fn the_start_of_a_file_is_fetched_ahead_within_the_budget() {
        let (store, root, map) = stored(&random(4 << 20));
        let cache = LeafCache::new(64 << 20);
        cache.prefetch_start(&*store, &root, 128 << 10);
        let cached = |i: usize| match &map.leaves[i] {
            BlockRef::Direct { hash, .. } => cache.contains(hash),
            r => panic!("leaf {i} is {r:?}"),
        };
        // Leaves up to the one that reaches 128 KiB, and none after.
        let upto = map.index(128 << 10);
        assert!((0..upto).all(cached), "the first {upto} leaves");
        assert!(!cached(upto + 1) && !cached(map.leaves.len() - 1));
    }

    #[test]
    fn a_read_across_leaves_is_slices_of_the_cached_leaves() {
        let d = random(2 << 20);
        let (store, _, map) = stored(&d);
        let cache = Arc::new(LeafCache::new(64 << 20));
        let (off, len) = (100_000u64, 1u64 << 20);
        let parts = map.read_parts(&store, &cache, off, len).unwrap();
        assert!(
            parts.len() > 4,
            "1 MiB spans several leaves: {}",
            parts.len()
        );
        assert_eq!(parts.concat(), &d[off as usize..(off + len) as usize]);
        // Each part lies in its leaf's cached data: nothing was copied.
        for (i, p) in (map.index(off)..).zip(&parts) {
            let BlockRef::Direct { hash, .. } = &map.leaves[i] else {
                panic!("leaf {i} is not stored");
            };
            let g = cache.inner.lock().unwrap();
            let leaf = g.map[hash].0.get().cloned().flatten().unwrap();
            let range = leaf.as_ptr_range();
            assert!(range.contains(&p.as_ptr()) && p.as_ptr_range().end <= range.end);
        }
        assert_eq!(
            map.read(&store, &cache, off, len).unwrap(),
            &d[off as usize..(off + len) as usize]
        );
    }

    #[test]
    fn reads_anywhere_match_the_content_and_holes_are_found() {
        let d = data();
        let (store, _, map) = stored(&d);
        let cache = Arc::new(LeafCache::new(1 << 20));
        assert_eq!(map.span(), d.len() as u64);
        let mut x = 12345u64;
        for _ in 0..200 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let off = (x >> 11) % d.len() as u64;
            let len = (x >> 3) % 300_000;
            let got = map.read(&store, &cache, off, len).unwrap();
            let end = (off + len).min(d.len() as u64) as usize;
            assert_eq!(got, &d[off as usize..end], "read at {off} len {len}");
        }
        assert!(map
            .read(&store, &cache, d.len() as u64, 10)
            .unwrap()
            .is_empty());
        // The hole: some zero run inside 3..5 MiB is an RLE leaf.
        let hole = map.seek(0, false).unwrap();
        assert!((3 << 20..5 << 20).contains(&hole), "hole at {hole}");
        let next = map.seek(hole, true).unwrap();
        assert!(next > hole && next <= 5 << 20, "data again at {next}");
        assert_eq!(map.seek(d.len() as u64 - 1, false), Some(d.len() as u64));
        assert_eq!(map.seek(d.len() as u64, true), None);
    }
}
