//! Tests of the file cache (beside it, but long enough for a file of
//! their own).
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

/// Where the data of the `i`th record of a file of `len`-byte blocks
/// lies.
fn data_off(i: u64, len: u64) -> u64 {
    MAGIC.len() as u64 + i * (REC_HEADER + len) + REC_HEADER
}

/// A new cache on `dir` in front of `mem`, counted.
fn reopen(dir: &Path, limit: u64, mem: &Arc<MemoryStore>) -> (Arc<ProgressStore>, FileCache) {
    let back = Arc::new(ProgressStore::new(mem.clone()));
    let cache = FileCache::open(dir, limit, back.clone()).unwrap();
    (back, cache)
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
    // Blocks were written in order.
    let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
    f.write_all_at(b"X", data_off(2, 1000) + 17).unwrap();
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
    // Files of two 4000-byte blocks: the share is (70000 - 4375) / 8,
    // and two records take 9 + 2 * 4037 bytes.
    let s = setup(70_000);
    assert_eq!(s.cache.per_file, 8203);
    let hs = add_blocks(&s.mem, 10, 4000);
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
fn open_cleans_up_and_drop_keeps_files() {
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
    let mut head = [0u8; 9];
    File::open(&live_files[0])
        .unwrap()
        .read_exact_at(&mut head, 0)
        .unwrap();
    assert_eq!(&head, MAGIC);
    std::fs::write(dir.join("vtcache-1-1.blocks"), b"left over").unwrap();
    std::fs::write(dir.join("vtcache-1-3.blocks"), b"").unwrap();
    std::fs::write(dir.join("vtcache-1-2.tmp"), b"").unwrap();
    std::fs::write(dir.join("unrelated"), b"kept").unwrap();
    std::fs::write(dir.join("vtcache-notes"), b"kept").unwrap();

    let second = FileCache::open(&dir, 1 << 20, mem.clone()).unwrap();
    assert!(
        !dir.join("vtcache-1-1.blocks").exists(),
        "bad magic: deleted"
    );
    assert!(!dir.join("vtcache-1-3.blocks").exists(), "empty: deleted");
    assert!(!dir.join("vtcache-1-2.tmp").exists(), "dead .tmp deleted");
    assert!(dir.join("unrelated").exists());
    assert!(dir.join("vtcache-notes").exists());
    assert_eq!(
        cache_files(&dir),
        live_files,
        "a live cache's files are kept"
    );
    assert_eq!(second.counts().files, 0, "and not adopted");
    assert_eq!(live.get(&h).unwrap().unwrap(), b"x");
    assert_eq!(live.counts().hits, 1);
    drop(second);
    drop(live);
    assert_eq!(cache_files(&dir), live_files, "dropping deletes nothing");
}

#[test]
fn reopened_cache_serves_without_the_backend() {
    let s = setup(1 << 20);
    let dir = s.cache.dir().to_path_buf();
    let hs = add_blocks(&s.mem, 50, 4000);
    for h in &hs {
        s.cache.get(h).unwrap();
    }
    let (a, _) = s.cache.add(b"added").unwrap();
    let files = cache_files(&dir);
    drop(s.cache);
    assert_eq!(cache_files(&dir), files);

    let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
    let c = cache.counts();
    assert_eq!((c.files, c.blocks), (files.len() as u64, 51), "{c:?}");
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 4000));
        assert!(cache.contains(h).unwrap());
    }
    assert_eq!(cache.get(&a).unwrap().unwrap(), b"added");
    cache.prefetch(&hs);
    assert_eq!(back.counts().requests, 0, "no request reached the backend");
    assert_eq!(cache.counts().hits, 51);
    // New blocks go on in the newest adopted file.
    let (b, _) = cache.add(b"more").unwrap();
    assert_eq!(cache_files(&dir), files);
    drop(cache);

    // And a third time, with everything.
    let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
    assert_eq!(cache.counts().blocks, 52);
    assert_eq!(cache.get(&b).unwrap().unwrap(), b"more");
    assert_eq!(cache.get(&hs[0]).unwrap().unwrap(), block(0, 4000));
    assert_eq!(back.counts().get_blocks, 0);
}

#[test]
fn torn_tail_is_cut_off_and_refetched() {
    let s = setup(1 << 20);
    let dir = s.cache.dir().to_path_buf();
    let hs = add_blocks(&s.mem, 4, 1000);
    for h in &hs {
        s.cache.get(h).unwrap();
    }
    drop(s.cache);
    let files = cache_files(&dir);
    assert_eq!(files.len(), 1);
    let good = data_off(3, 1000) - REC_HEADER;
    assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good + 1037);

    // Block 3 cut short in its data, then in its header.
    for cut in [good + 500, good + 10] {
        let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
        assert_eq!(cache.counts().blocks, 3);
        assert_eq!(
            std::fs::metadata(&files[0]).unwrap().len(),
            good,
            "truncated at the tear"
        );
        for (i, h) in hs.iter().enumerate() {
            assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 1000));
        }
        assert_eq!(back.counts().get_blocks, 1, "only block 3 refetched");
        assert_eq!(cache.counts().corrupt, 0);
        // Cached again at the end of the same file.
        assert_eq!(std::fs::metadata(&files[0]).unwrap().len(), good + 1037);
    }

    // A hole of zeros (a write that never landed before a later one)
    // ends the file there too.
    let f = OpenOptions::new().write(true).open(&files[0]).unwrap();
    f.write_all_at(&[0u8; 1037], data_off(1, 1000) - REC_HEADER)
        .unwrap();
    drop(f);
    let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
    assert_eq!(cache.counts().blocks, 1);
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 1000));
    }
    assert_eq!(back.counts().get_blocks, 3);
}

#[test]
fn flipped_byte_in_an_adopted_file_is_refetched() {
    let s = setup(1 << 20);
    let dir = s.cache.dir().to_path_buf();
    let hs = add_blocks(&s.mem, 4, 1000);
    for h in &hs {
        s.cache.get(h).unwrap();
    }
    drop(s.cache);
    let files = cache_files(&dir);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&files[0])
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, data_off(2, 1000) + 300).unwrap();
    f.write_all_at(&[b[0] ^ 0x20], data_off(2, 1000) + 300)
        .unwrap();
    drop(f);

    let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
    assert_eq!(cache.counts().blocks, 4);
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 1000));
    }
    assert_eq!(back.counts().get_blocks, 1, "block 2 refetched");
    assert_eq!(cache.counts().corrupt, 1);
    drop(cache);

    // The good copy, newer, is the one indexed next time.
    let (back, cache) = reopen(&dir, 1 << 20, &s.mem);
    assert_eq!(cache.counts().blocks, 4);
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 1000));
    }
    assert_eq!(back.counts().requests, 0);
    assert_eq!(cache.counts().corrupt, 0);
}

/// Writes a cache file of `blocks` by hand, with modification time
/// `age` seconds ago.
fn write_cache_file(path: &Path, blocks: &[&[u8]], age: u64) {
    let mut d = MAGIC.to_vec();
    for b in blocks {
        d.extend_from_slice(&HashKind::Sha3_256.digest(b).to_bytes());
        d.extend_from_slice(&(b.len() as u32).to_le_bytes());
        d.extend_from_slice(b);
    }
    std::fs::write(path, d).unwrap();
    let t = SystemTime::now() - std::time::Duration::from_secs(age);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_block_in_several_files_is_indexed_at_its_newest_copy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    std::fs::create_dir(&dir).unwrap();
    let mem = Arc::new(MemoryStore::new(HashKind::Sha3_256));
    let (a, _) = mem.add(b"alpha").unwrap();
    let (b, _) = mem.add(b"beta").unwrap();
    let (c, _) = mem.add(b"gamma").unwrap();
    // The oldest file has a bad copy of alpha (its hash, other data)
    // and nothing else: it goes. The middle one's beta is
    // superseded, but it keeps gamma.
    let old = dir.join("vtcache-7-5000000.blocks");
    let mid = dir.join("vtcache-7-5.blocks");
    let new = dir.join("vtcache-3-1.blocks");
    let mut bad = MAGIC.to_vec();
    bad.extend_from_slice(&a.to_bytes());
    bad.extend_from_slice(&5u32.to_le_bytes());
    bad.extend_from_slice(b"ALPHA");
    std::fs::write(&old, bad).unwrap();
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - std::time::Duration::from_secs(300))
        .unwrap();
    write_cache_file(&mid, &[b"beta", b"gamma"], 200);
    write_cache_file(&new, &[b"alpha", b"beta", b"beta"], 100);

    let (back, cache) = reopen(&dir, 1 << 20, &mem);
    let n = cache.counts();
    assert_eq!((n.files, n.blocks), (2, 3), "{n:?}");
    assert!(!old.exists() && mid.exists() && new.exists());
    assert_eq!(cache.get(&a).unwrap().unwrap(), b"alpha");
    assert_eq!(cache.get(&b).unwrap().unwrap(), b"beta");
    assert_eq!(cache.get(&c).unwrap().unwrap(), b"gamma");
    assert_eq!(back.counts().requests, 0);
    assert_eq!(cache.counts().corrupt, 0);
    // New files are numbered past every file seen. (This block does
    // not fit in the newest adopted file, written to until then.)
    cache.add(&block(1, 122_800)).unwrap();
    assert_eq!(cache.counts().files, 3);
    let names: Vec<u64> = cache_files(&dir)
        .iter()
        .map(|p| file_seq(p.file_name().unwrap().to_str().unwrap()))
        .collect();
    assert!(names.iter().any(|&n| n > 5_000_000), "{names:?}");
}

#[test]
fn two_caches_on_one_directory_keep_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let mem = Arc::new(MemoryStore::new(HashKind::Sha3_256));
    let hs = add_blocks(&mem, 400, 2048);
    let limit = 64 << 10;
    let (_, a) = reopen(&dir, limit, &mem);
    for h in &hs[..10] {
        a.get(h).unwrap();
    }
    let a_files = cache_files(&dir);
    let (b_back, b) = reopen(&dir, limit, &mem);
    assert_eq!(b.counts().files, 0, "a's files are a's");
    // b churns through far more than its limit; a's files stay.
    for (i, h) in hs.iter().enumerate().skip(10) {
        assert_eq!(b.get(h).unwrap().unwrap(), block(i as u32, 2048));
        let all = cache_files(&dir);
        assert!(a_files.iter().all(|f| all.contains(f)));
    }
    assert!(b_back.counts().get_blocks >= 390);
    let b_files: Vec<PathBuf> = cache_files(&dir)
        .into_iter()
        .filter(|f| !a_files.contains(f))
        .collect();
    assert!(!b_files.is_empty());
    // Both still serve their own blocks from their files.
    let (a_hits, b_hits) = (a.counts().hits, b.counts().hits);
    for (i, h) in hs.iter().enumerate().take(10) {
        assert_eq!(a.get(h).unwrap().unwrap(), block(i as u32, 2048));
    }
    assert_eq!(b.get(&hs[399]).unwrap().unwrap(), block(399, 2048));
    assert_eq!(a.counts().hits, a_hits + 10);
    assert_eq!(b.counts().hits, b_hits + 1);

    // A third, opened while a is live, adopts only b's files.
    drop(b);
    let (c_back, c) = reopen(&dir, limit, &mem);
    assert_eq!(c.counts().files, b_files.len() as u64);
    assert_eq!(c.get(&hs[399]).unwrap().unwrap(), block(399, 2048));
    assert_eq!(c_back.counts().requests, 0);
    assert_eq!(a.get(&hs[0]).unwrap().unwrap(), block(0, 2048));
    assert!(a_files.iter().all(|f| f.exists()));
    drop(a);
    drop(c);

    // With both gone, the next takes everything that fits (a's files,
    // the oldest, go first).
    let (_, d) = reopen(&dir, limit, &mem);
    let n = d.counts();
    assert!(n.files as usize <= MAX_FILES && n.bytes <= limit, "{n:?}");
    assert!(du(&dir) <= limit);
}

#[test]
fn a_smaller_limit_drops_the_oldest_adopted_files() {
    let s = setup(1 << 20);
    let dir = s.cache.dir().to_path_buf();
    // 30 blocks of 4000 fill a 1 MiB cache's file: 7 files.
    let hs = add_blocks(&s.mem, 200, 4000);
    for h in &hs {
        s.cache.get(h).unwrap();
    }
    assert_eq!(s.cache.counts().files, 7);
    drop(s.cache);
    assert!(du(&dir) > 256 << 10);

    // A share of 30720 bytes: the two newest files (20 and 30 blocks)
    // fit in 8 shares, the third does not.
    let limit = 256 << 10;
    let (back, cache) = reopen(&dir, limit, &s.mem);
    assert_eq!(cache.per_file, 30720);
    let n = cache.counts();
    assert_eq!((n.files, n.blocks), (2, 50), "{n:?}");
    assert_eq!(cache_files(&dir).len(), 2);
    assert!(du(&dir) <= limit, "{} > {limit}", du(&dir));
    for (i, h) in hs.iter().enumerate().skip(150) {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 4000));
    }
    assert_eq!(back.counts().requests, 0);
    // The big adopted files go first as new blocks come.
    for (i, h) in hs.iter().enumerate().take(150) {
        assert_eq!(cache.get(h).unwrap().unwrap(), block(i as u32, 4000));
        assert!(du(&dir) <= limit, "{} > {limit}", du(&dir));
        assert!(cache_files(&dir).len() <= MAX_FILES);
    }
    let n = cache.counts();
    assert!(n.bytes <= limit && n.bytes > limit / 2, "{n:?}");
    drop(cache);

    // And a zero limit leaves nothing.
    let (_, zero) = reopen(&dir, 0, &s.mem);
    assert_eq!(zero.counts().files, 0);
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
