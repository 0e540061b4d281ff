//! Tests of the S3 store against a real S3-compatible server: s3s-fs,
//! started by each test on a free loopback port with a temporary root
//! directory (a bucket is a directory under it, an object a file).

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vt_core::{Hash, HashKind, Store};

use super::*;
use crate::datafile::Verify;

const ACCESS_KEY: &str = "vt-test-access";
const SECRET_KEY: &str = "vt-test-secret-key";
const INSTALL: &str = "cargo install --locked s3s-fs@0.14.1 --features binary";

/// The s3s-fs binary: on PATH or in ~/.cargo/bin. Missing, the test fails
/// saying how to install it (tests/run.sh does), never skips.
fn s3s_fs_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("s3s-fs"))
            .find(|f| f.is_file())
    });
    let in_cargo = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin/s3s-fs"))
        .filter(|f| f.is_file());
    match on_path.or(in_cargo) {
        Some(f) => f,
        None => panic!(
            "the S3 store's tests need the s3s-fs server, which is not on PATH \
             nor in ~/.cargo/bin: install it with `{INSTALL}` (tests/run.sh does)"
        ),
    }
}

/// A running s3s-fs, killed on drop.
struct Server {
    child: Child,
    port: u16,
    root: tempfile::TempDir,
    _logdir: tempfile::TempDir,
}

impl Server {
    /// Starts s3s-fs on a free port with an empty root.
    fn start() -> Server {
        let root = tempfile::tempdir().unwrap();
        Self::start_at(root, None)
    }

    /// Starts s3s-fs serving `root`, on `port` or a free one.
    fn start_at(root: tempfile::TempDir, port: Option<u16>) -> Server {
        let bin = s3s_fs_binary();
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("s3s-fs.log");
        for _ in 0..5 {
            let port = port.unwrap_or_else(|| {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            });
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&bin)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(root.path())
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Server {
                        child,
                        port,
                        root,
                        _logdir: logdir,
                    };
                }
                if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                    // The port was taken meanwhile, or the server failed.
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!(
            "s3s-fs did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server, keeping its root.
    fn stop(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let root = std::mem::replace(&mut self.root, tempfile::tempdir().unwrap());
        drop(self);
        root
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates bucket `name` (a directory of the root).
    fn bucket(&self, name: &str) -> PathBuf {
        let d = self.root.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    }

    /// Options for `bucket` on this server.
    fn opts(&self, bucket: &str, layout: S3Layout, cache: Option<&Path>) -> S3Options {
        let mut o = S3Options::new(bucket);
        o.endpoint = Some(self.endpoint());
        o.access_key_id = Some(ACCESS_KEY.into());
        o.secret_access_key = Some(SECRET_KEY.into());
        o.layout = layout;
        o.cache_dir = cache.map(Path::to_path_buf);
        o.pack_size = 1 << 20;
        o.max_retries = 2;
        o.retry_timeout = Duration::from_secs(5);
        o
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `n` pseudo-random bytes from `seed` (incompressible).
fn random(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `n` bytes of text from `seed` (compresses well, like source code).
fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&str; 12] = [
        "fn ", "let ", "store", "(hash)", " -> ", "Result", ";\n", "    ", "block", "{ ", "} ",
        "data",
    ];
    let r = random(n, seed);
    let mut out = Vec::with_capacity(n + 8);
    let mut i = 0;
    while out.len() < n {
        out.extend_from_slice(WORDS[r[i % n] as usize % WORDS.len()].as_bytes());
        i += 1;
    }
    out.truncate(n);
    out
}

/// A mix of blocks: many small ones (random and text, some tiny), some
/// of 1 MiB.
fn blocks() -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    for i in 0..240u64 {
        let len = [1, 100, 700, 3000, 20_000, 63_000][i as usize % 6];
        v.push(if i % 2 == 0 {
            random(len, i + 1)
        } else {
            text(len, i + 1)
        });
    }
    for i in 0..3u64 {
        v.push(random(1 << 20, 1000 + i));
        v.push(text(1 << 20, 2000 + i));
    }
    v.push(random(100_000, 3000));
    v
}

fn add_all(s: &S3Store, blocks: &[Vec<u8>]) -> Vec<Hash> {
    blocks
        .iter()
        .map(|b| {
            let (h, new) = s.add(b).unwrap();
            assert!(new);
            h
        })
        .collect()
}

fn check_all(s: &S3Store, hashes: &[Hash], blocks: &[Vec<u8>]) {
    for (h, b) in hashes.iter().zip(blocks) {
        let got = s.get(h).unwrap().unwrap_or_else(|| panic!("{h} missing"));
        assert!(got == *b, "{h}: wrong data");
    }
}

/// Files under `dir` whose names end in `ext`, sorted.
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(ext));
    v.sort();
    v
}

#[test]
fn packed_blocks_round_trip_across_sync_and_reopen() {
    let srv = Server::start();
    let root = srv.bucket("vts");
    let cache = tempfile::tempdir().unwrap();
    let data = blocks();
    let raw: u64 = data.iter().map(|b| b.len() as u64).sum();
    let opts = srv.opts("vts", S3Layout::Packed, Some(cache.path()));
    let hashes = {
        let s = S3Store::open(opts.clone()).unwrap();
        let hashes = add_all(&s, &data);
        // Readable before any sync: pending, or in packs being uploaded.
        check_all(&s, &hashes, &data);
        assert!(!s.add(&data[0]).unwrap().1, "a block already added");
        s.sync().unwrap();
        check_all(&s, &hashes, &data);
        let st = s.stats().unwrap();
        assert_eq!(st.blocks, data.len() as u64);
        assert_eq!(st.raw_bytes, raw);
        let packs = files(&root.join("data"), ".vtd");
        let indexes = files(&root.join("index"), ".idx");
        assert!(packs.len() >= 3, "{} packs", packs.len());
        assert_eq!(packs.len(), indexes.len());
        let size =
            |v: &[PathBuf]| -> u64 { v.iter().map(|p| std::fs::metadata(p).unwrap().len()).sum() };
        assert_eq!(st.stored_bytes, size(&packs), "stored bytes are the packs");
        assert_eq!(
            st.index_bytes,
            size(&indexes),
            "index bytes are the indexes"
        );
        assert!(st.stored_bytes < raw, "text compressed");
        // Every pack is a datafile, which vt's datafile scanner reads
        // whole: together they hold every block.
        let dicts = crate::dict::Dictionaries::none();
        let mut scanned = std::collections::HashSet::new();
        for p in &packs {
            let f = std::fs::File::open(p).unwrap();
            let mut head = [0u8; 8];
            std::os::unix::fs::FileExt::read_exact_at(&f, &mut head, 0).unwrap();
            assert_eq!(head, crate::datafile::FILE_HEADER);
            let res = crate::datafile::scan(&f, 8, &dicts, true).unwrap();
            assert!(res.damaged.is_empty() && res.unreadable.is_empty());
            for r in res.records {
                if r.header.is_group() {
                    scanned.extend(r.members.iter().map(|m| m.hash));
                } else {
                    scanned.insert(r.header.hash);
                }
            }
        }
        assert_eq!(scanned, hashes.iter().copied().collect());
        assert_eq!(files(cache.path(), ".idx").len(), indexes.len());
        hashes
    };
    let n_indexes = files(&root.join("index"), ".idx").len() as u64;

    // Reopened with the cache: one LIST, no GET of an index object.
    let s = S3Store::open(opts.clone()).unwrap();
    let r = s.requests();
    assert_eq!((r.list, r.get, r.get_range), (1, 0, 0), "{r:?}");
    for h in &hashes {
        assert!(s.contains(h).unwrap());
    }
    check_all(&s, &hashes, &data);
    assert_eq!(s.stats().unwrap().raw_bytes, raw);
    // Read in order: a pack's first record with a ranged GET, then the
    // pack whole.
    let r = s.requests();
    assert!(
        r.get <= n_indexes && r.get + r.get_range <= 2 * n_indexes,
        "{r:?} for {n_indexes} packs"
    );
    drop(s);

    // Reopened with an empty cache: every index fetched once, and cached.
    let empty = tempfile::tempdir().unwrap();
    let mut o = opts.clone();
    o.cache_dir = Some(empty.path().join("idx"));
    let s = S3Store::open(o).unwrap();
    assert_eq!(s.requests().get, n_indexes);
    assert_eq!(
        files(&empty.path().join("idx"), ".idx").len() as u64,
        n_indexes
    );
    check_all(&s, &hashes, &data);
    let st = s.stats().unwrap();
    assert_eq!((st.blocks, st.raw_bytes), (data.len() as u64, raw));
}

#[test]
fn threads_add_and_sync_at_once() {
    threads_add_and_sync(S3Layout::Packed, 80);
}

#[test]
fn threads_add_and_sync_at_once_one_object_per_block() {
    threads_add_and_sync(S3Layout::Blocks, 30);
}

/// Four threads add `n` blocks each to one store, syncing now and then.
fn threads_add_and_sync(layout: S3Layout, n: u64) {
    let srv = Server::start();
    srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let mut opts = srv.opts("bkt", layout, Some(cache.path()));
    opts.pack_size = 200 << 10;
    let per: Vec<Vec<Vec<u8>>> = (0..4u64)
        .map(|t| {
            (0..n)
                .map(|i| {
                    let seed = t * 1000 + i + 1;
                    match i % 4 {
                        0 => random(70_000, seed),
                        1 => text(30_000, seed),
                        _ => random(500 + (i as usize * 37) % 5000, seed),
                    }
                })
                .collect()
        })
        .collect();
    {
        let s = S3Store::open(opts.clone()).unwrap();
        std::thread::scope(|sc| {
            for blocks in &per {
                let s = &s;
                sc.spawn(move || {
                    for (i, b) in blocks.iter().enumerate() {
                        s.add(b).unwrap();
                        if i % 30 == 29 || i as u64 + 1 == n {
                            s.sync().unwrap();
                        }
                    }
                });
            }
        });
        s.sync().unwrap();
    }
    let s = S3Store::open(opts).unwrap();
    for blocks in &per {
        let hashes: Vec<Hash> = blocks
            .iter()
            .map(|b| HashKind::Sha3_256.digest(b))
            .collect();
        check_all(&s, &hashes, blocks);
    }
    assert_eq!(s.stats().unwrap().blocks, 4 * n);
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn contains_makes_no_request_after_open() {
    let srv = Server::start();
    srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let s = S3Store::open(opts.clone()).unwrap();
    let (a, _) = s.add(b"present").unwrap();
    s.sync().unwrap();
    drop(s);
    let s = S3Store::open(opts).unwrap();
    let before = s.requests();
    assert!(s.contains(&a).unwrap());
    let absent = HashKind::Sha3_256.digest(b"absent");
    assert!(!s.contains(&absent).unwrap());
    assert!(s.get(&absent).unwrap().is_none());
    assert_eq!(s.requests(), before, "no request");
}

#[test]
fn group_members_are_read_with_one_get_and_prefetch_fetches_ahead() {
    let srv = Server::start();
    srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let mut opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    // One pack of 4 MB: a data pack is fetched whole once a sixteenth of
    // it is asked for.
    opts.pack_size = 8 << 20;
    let small: Vec<Vec<u8>> = (0..20).map(|i| text(2000, i + 1)).collect();
    let large: Vec<Vec<u8>> = (0..40).map(|i| random(100_000, i + 50)).collect();
    // A small block of another hash function gets a record of its own.
    let other = HashKind::Blake3.digest(b"blake3 block");
    {
        let s = S3Store::open(opts.clone()).unwrap();
        add_all(&s, &small);
        assert!(s.add_hashed(&other, b"blake3 block").unwrap());
        add_all(&s, &large);
        s.sync().unwrap();
    }
    let s = S3Store::open(opts.clone()).unwrap();
    assert_eq!(s.get(&other).unwrap().unwrap(), b"blake3 block");
    drop(s);
    let s = S3Store::open(opts).unwrap();
    let hs: Vec<Hash> = small.iter().map(|b| HashKind::Sha3_256.digest(b)).collect();
    check_all(&s, &hs, &small);
    assert_eq!(s.requests().get_range, 1, "one group, one GET");
    let hl: Vec<Hash> = large.iter().map(|b| HashKind::Sha3_256.digest(b)).collect();
    s.prefetch(&hl[..2]);
    let after = s.requests();
    // Two records side by side in a pack: one ranged GET for both.
    assert_eq!(
        (after.get, after.get_range),
        (0, 2),
        "prefetch coalesces neighbouring records"
    );
    check_all(&s, &hl[..2], &large[..2]);
    assert_eq!(s.requests(), after, "read from what was prefetched");
    // Asked for more of the pack: it comes whole, with one GET (in the
    // background; the reads wait for it).
    s.prefetch(&hl[2..]);
    check_all(&s, &hl[2..], &large[2..]);
    let whole = s.requests();
    assert_eq!(
        (whole.get, whole.get_range),
        (1, 2),
        "the pack fetched whole"
    );
    check_all(&s, &hl[2..], &large[2..]);
    assert_eq!(s.requests(), whole, "read from the pack's local copy");
}

/// Directories and indirect blocks go to metadata packs, which are kept
/// on local disk: read again without a request, fetched whole once into
/// an empty cache, and read from the bucket when the local copy is
/// damaged.
#[test]
fn metadata_packs_are_kept_on_local_disk() {
    let srv = Server::start();
    let root = srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let dirs: Vec<Vec<u8>> = (0..40).map(|i| text(3000, i + 7)).collect();
    let data: Vec<Vec<u8>> = (0..4).map(|i| random(100_000, i + 90)).collect();
    let (hd, hf) = {
        let s = S3Store::open(opts.clone()).unwrap();
        let hd: Vec<Hash> = dirs
            .iter()
            .map(|b| s.add_as(b, vt_core::BlockClass::Meta).unwrap().0)
            .collect();
        let hf = add_all(&s, &data);
        s.sync().unwrap();
        (hd, hf)
    };
    let indexes = files(&root.join("index"), ".idx");
    assert_eq!(indexes.len(), 2, "one data pack, one metadata pack");
    let flags: Vec<u32> = indexes
        .iter()
        .map(|p| {
            pack_index::PackIndex::decode(&std::fs::read(p).unwrap())
                .unwrap()
                .flags
        })
        .collect();
    assert_eq!(
        flags
            .iter()
            .filter(|f| **f == pack_index::FLAG_META)
            .count(),
        1
    );
    let kept = files(&cache.path().join("packs"), ".vtd");
    assert_eq!(kept.len(), 1, "the metadata pack kept at upload");

    // Reopened: metadata read with no request; file data from the bucket.
    let s = S3Store::open(opts.clone()).unwrap();
    let before = s.requests();
    check_all(&s, &hd, &dirs);
    assert_eq!(s.requests(), before, "metadata read from local disk");
    check_all(&s, &hf, &data);
    assert!(s.requests() != before);
    drop(s);

    // An empty cache: the metadata pack comes whole, once.
    let empty = tempfile::tempdir().unwrap();
    let mut o = opts.clone();
    o.cache_dir = Some(empty.path().to_path_buf());
    let s = S3Store::open(o.clone()).unwrap();
    let before = s.requests();
    s.prefetch(&hd);
    check_all(&s, &hd, &dirs);
    let r = s.requests();
    assert_eq!(
        (r.get - before.get, r.get_range - before.get_range),
        (1, 0),
        "one GET of the whole metadata pack"
    );
    drop(s);
    let copy = files(&empty.path().join("packs"), ".vtd");
    assert_eq!(copy.len(), 1);

    // A damaged copy (same size) is noticed, and the bucket read instead.
    let mut b = std::fs::read(&copy[0]).unwrap();
    let n = b.len();
    for x in &mut b[n / 2..n / 2 + 64] {
        *x ^= 0xa5;
    }
    std::fs::write(&copy[0], &b).unwrap();
    let s = S3Store::open(o).unwrap();
    check_all(&s, &hd, &dirs);
    assert!(s.requests().get_range > 0, "read from the bucket");

    drop(s);

    // Copies of packs the bucket no longer lists are removed at open.
    let stale = cache
        .path()
        .join("packs")
        .join(format!("{}.vtd", "0".repeat(32)));
    std::fs::write(&stale, b"stale").unwrap();
    drop(S3Store::open(opts).unwrap());
    assert!(!stale.exists(), "a stale copy removed");
}

#[test]
fn blocks_layout_round_trip() {
    let srv = Server::start();
    let root = srv.bucket("plain");
    let mut opts = srv.opts("plain", S3Layout::Blocks, None);
    opts.prefix = "some/where/".into();
    let data: Vec<Vec<u8>> = blocks().into_iter().step_by(8).collect();
    let s = S3Store::open(opts.clone()).unwrap();
    assert_eq!(s.requests(), S3Requests::default(), "open makes no request");
    let hashes = add_all(&s, &data);
    check_all(&s, &hashes, &data);
    s.sync().unwrap();
    let st = s.stats().unwrap();
    let raw: u64 = data.iter().map(|b| b.len() as u64).sum();
    assert_eq!(
        (st.blocks, st.raw_bytes, st.stored_bytes),
        (data.len() as u64, raw, raw)
    );
    drop(s);
    // Each block is an object holding exactly its bytes.
    let dir = root.join("some/where/h");
    for (h, b) in hashes.iter().zip(&data) {
        assert!(std::fs::read(dir.join(h.to_string())).unwrap() == *b);
    }
    let s = S3Store::open(opts).unwrap();
    for h in &hashes {
        assert!(s.contains(h).unwrap());
    }
    assert_eq!(s.requests().head, hashes.len() as u64);
    assert!(!s.contains(&HashKind::Sha3_256.digest(b"no")).unwrap());
    assert!(!s.add(&data[0]).unwrap().1, "known present");
    check_all(&s, &hashes, &data);
    assert!(s.get(&HashKind::Sha3_256.digest(b"no")).unwrap().is_none());
    assert!(s.fsck().unwrap().is_clean());
    // A damaged object is an error, never data, and fsck names it.
    std::fs::write(dir.join(hashes[1].to_string()), b"not the block").unwrap();
    let err = s.get(&hashes[1]).unwrap_err().to_string();
    assert!(
        err.contains("s3 bucket plain/some/where at http://127.0.0.1:"),
        "{err}"
    );
    let r = s.fsck().unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.bad_blocks, vec![hashes[1]]);
    assert_eq!(r.blocks_checked, data.len() as u64);
}

/// Archive line `n` (a valid one: a timestamp and a Dirent).
fn line(n: u32) -> String {
    let d = vt_core::Dirent::parse(&format!("SymLink{{name:\"f{n}\",target:\"x\"}}")).unwrap();
    vt_core::archive::ArchiveEntry {
        secs: 1_700_000_000 + i64::from(n),
        nanos: 0,
        dirent: d,
    }
    .to_line()
}

#[test]
fn archives_appended_by_two_clients_interleave() {
    let srv = Server::start();
    srv.bucket("arch");
    let a = S3Store::open(srv.opts("arch", S3Layout::Blocks, None)).unwrap();
    let b = S3Store::open(srv.opts("arch", S3Layout::Blocks, None)).unwrap();
    assert!(a.archive_read("home").unwrap().is_none());
    let mut want = String::new();
    for i in 0..6 {
        let (who, l) = if i % 2 == 0 {
            (&a, line(i))
        } else {
            (&b, line(i))
        };
        who.archive_append("home", l.as_bytes()).unwrap();
        want.push_str(&l);
    }
    // At the same time, from two threads.
    std::thread::scope(|sc| {
        sc.spawn(|| {
            for i in 10..15 {
                a.archive_append("busy", line(i).as_bytes()).unwrap();
            }
        });
        sc.spawn(|| {
            for i in 20..25 {
                b.archive_append("busy", line(i).as_bytes()).unwrap();
            }
        });
    });
    for s in [&a, &b] {
        assert_eq!(s.archive_read("home").unwrap().unwrap(), want.as_bytes());
        let busy = String::from_utf8(s.archive_read("busy").unwrap().unwrap()).unwrap();
        let mut got: Vec<&str> = busy.lines().collect();
        got.sort();
        let mut all: Vec<String> = (10..15).chain(20..25).map(line).collect();
        all.sort();
        assert_eq!(got, all.iter().map(|l| l.trim_end()).collect::<Vec<_>>());
        assert_eq!(s.archive_names().unwrap(), vec!["busy", "home"]);
    }
    for bad in ["", ".hidden", "a/b", "x#y", "tab\t"] {
        let err = a.archive_append(bad, line(1).as_bytes()).unwrap_err();
        assert!(err.to_string().contains("archive name"), "{bad:?}: {err}");
    }
    let err = a.archive_append("home", b"not a line\n").unwrap_err();
    assert!(err.to_string().contains("archive lines"), "{err}");
}

#[test]
fn archive_replace_starts_a_new_base() {
    let srv = Server::start();
    let root = srv.bucket("arch");
    let cache = tempfile::tempdir().unwrap();
    let s = S3Store::open(srv.opts("arch", S3Layout::Packed, Some(cache.path()))).unwrap();
    for i in 0..4 {
        s.archive_append("t", line(i).as_bytes()).unwrap();
    }
    let kept = format!("{}{}", line(1), line(3));
    s.archive_replace("t", kept.as_bytes()).unwrap();
    assert_eq!(s.archive_read("t").unwrap().unwrap(), kept.as_bytes());
    s.archive_append("t", line(9).as_bytes()).unwrap();
    let want = format!("{kept}{}", line(9));
    assert_eq!(s.archive_read("t").unwrap().unwrap(), want.as_bytes());
    let objects = files(&root.join("archives/t"), "");
    let names: Vec<String> = objects
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
        .filter(|n| n.ends_with(".base") || n.ends_with(".lines"))
        .collect();
    assert_eq!(names.len(), 2, "older objects deleted: {names:?}");
    assert!(names[0].ends_with(".base") && names[1].ends_with(".lines"));
    assert_eq!(names[0].len(), 20 + 1 + 16 + ".base".len());
    s.archive_replace("t", b"").unwrap();
    assert_eq!(s.archive_read("t").unwrap().unwrap(), b"");
}

#[test]
fn a_corrupt_pack_is_an_error_never_data_and_fsck_reports_it() {
    let srv = Server::start();
    let root = srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let big = random(300_000, 7);
    let small: Vec<Vec<u8>> = (0..5).map(|i| text(1000, i + 1)).collect();
    let other = random(200_000, 8);
    {
        let s = S3Store::open(opts.clone()).unwrap();
        s.add(&big).unwrap();
        add_all(&s, &small);
        s.add(&other).unwrap();
        s.sync().unwrap();
        let r = s.fsck().unwrap();
        assert!(r.is_clean(), "{r:?}");
        assert_eq!(r.blocks_checked, 7);
        assert_eq!(r.objects_checked, 2);
    }
    let packs = files(&root.join("data"), ".vtd");
    assert_eq!(packs.len(), 1);
    let mut b = std::fs::read(&packs[0]).unwrap();
    // The big block's record comes first: flip a byte of its payload, and
    // one of the group's (which follows the other large block).
    b[8 + 52 + 1000] ^= 1;
    let group_at = 8 + (52 + 300_000) + (52 + 200_000) + 52 + 20;
    b[group_at] ^= 1;
    std::fs::write(&packs[0], &b).unwrap();

    let s = S3Store::open(opts).unwrap();
    let hb = HashKind::Sha3_256.digest(&big);
    let err = s.get(&hb).unwrap_err();
    assert!(matches!(err, vt_core::Error::Corrupt { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("s3 bucket bkt at http://127.0.0.1:"), "{msg}");
    assert!(msg.contains("checksum"), "{msg}");
    for d in &small {
        assert!(s.get(&HashKind::Sha3_256.digest(d)).is_err());
    }
    let ho = HashKind::Sha3_256.digest(&other);
    assert!(
        s.get(&ho).unwrap().unwrap() == other,
        "an intact record reads"
    );
    let r = s.fsck().unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.bad_blocks.len(), 1 + small.len(), "{r:?}");
    assert!(r.bad_blocks.contains(&hb));
    assert!(!r.bad_blocks.contains(&ho));
}

#[test]
fn fsck_notes_unindexed_packs_and_reports_missing_ones() {
    let srv = Server::start();
    let root = srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let s = S3Store::open(opts.clone()).unwrap();
    s.add(b"one").unwrap();
    s.sync().unwrap();
    s.add(b"two").unwrap();
    s.sync().unwrap();
    let packs = files(&root.join("data"), ".vtd");
    let indexes = files(&root.join("index"), ".idx");
    assert_eq!((packs.len(), indexes.len()), (2, 2));
    // An upload interrupted after its pack: a note, not a problem.
    std::fs::remove_file(&indexes[0]).unwrap();
    let r = s.fsck().unwrap();
    assert!(r.is_clean(), "{r:?}");
    assert_eq!(r.notes.len(), 1, "{r:?}");
    assert!(r.notes[0].contains("unindexed pack"), "{r:?}");
    // A pack gone that an index lists: a problem.
    let unindexed = indexes[0].file_stem().unwrap();
    let gone = packs
        .iter()
        .find(|p| p.file_stem().unwrap() != unindexed)
        .unwrap();
    let bytes = std::fs::read(gone).unwrap();
    let held: &[u8] = if bytes.windows(3).any(|w| w == b"one") {
        b"one"
    } else {
        b"two"
    };
    std::fs::remove_file(gone).unwrap();
    let r = s.fsck().unwrap();
    assert!(!r.is_clean());
    assert_eq!(r.bad_blocks, vec![HashKind::Sha3_256.digest(held)]);
    assert!(r.problems[0].contains("missing"), "{r:?}");
}

#[test]
fn a_failed_upload_is_reported_and_the_next_sync_retries_it() {
    let srv = Server::start();
    srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let mut opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    opts.max_retries = 0;
    opts.pack_size = 64 << 10;
    let s = S3Store::open(opts.clone()).unwrap();
    let root = srv.stop();
    let data: Vec<Vec<u8>> = (0..8).map(|i| random(50_000, i + 1)).collect();
    let mut err = None;
    for d in &data {
        if let Err(e) = s.add(d) {
            err = Some(e);
            break;
        }
    }
    let err = match err {
        Some(e) => e,
        None => s.sync().unwrap_err(),
    };
    assert!(
        err.to_string().contains("s3 bucket bkt at http://"),
        "{err}"
    );
    // Reported once; a sync tries again and fails again.
    s.add(b"after the failure").unwrap();
    let err = s.sync().unwrap_err();
    assert!(err.to_string().contains("cannot write data/"), "{err}");
    // Still readable from memory.
    let h0 = HashKind::Sha3_256.digest(&data[0]);
    assert!(s.get(&h0).unwrap().unwrap() == data[0]);
    let port = opts.endpoint.clone().unwrap();
    let port: u16 = port.rsplit(':').next().unwrap().parse().unwrap();
    let _srv = Server::start_at(root, Some(port));
    for d in &data {
        s.add(d).unwrap();
    }
    s.sync().unwrap();
    drop(s);
    let s = S3Store::open(opts).unwrap();
    for d in &data {
        assert!(s.get(&HashKind::Sha3_256.digest(d)).unwrap().unwrap() == *d);
    }
    assert!(s.fsck().unwrap().is_clean());
}

#[test]
fn open_errors_name_the_store() {
    let srv = Server::start();
    srv.bucket("bkt");
    let mut o = srv.opts("bkt", S3Layout::Packed, None);
    o.prefix = "p".into();
    let err = S3Store::open(o).err().unwrap().to_string();
    assert!(
        err.contains("s3 bucket bkt/p at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("cache"), "{err}");
    let cache = tempfile::tempdir().unwrap();
    let mut o = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    o.secret_access_key = Some("wrong".into());
    let err = S3Store::open(o).err().unwrap().to_string();
    assert!(err.contains("s3 bucket bkt at http://127.0.0.1:"), "{err}");
    let o = srv.opts("nonesuch", S3Layout::Packed, Some(cache.path()));
    let err = S3Store::open(o).err().unwrap().to_string();
    assert!(err.contains("s3 bucket nonesuch at"), "{err}");
}

#[test]
fn packs_above_16_mib_go_up_as_multipart_uploads() {
    let srv = Server::start();
    let root = srv.bucket("vtm");
    let cache = tempfile::tempdir().unwrap();
    let mut opts = srv.opts("vtm", S3Layout::Packed, Some(cache.path()));
    opts.pack_size = 40 << 20;
    // 20 incompressible blocks of 1 MiB: one pack of about 20 MiB.
    let data: Vec<Vec<u8>> = (0..20u64).map(|i| random(1 << 20, 500 + i)).collect();
    let hashes = {
        let s = S3Store::open(opts.clone()).unwrap();
        let hashes = add_all(&s, &data);
        s.sync().unwrap();
        hashes
    };
    let packs = files(&root.join("data"), ".vtd");
    assert_eq!(packs.len(), 1);
    let size = std::fs::metadata(&packs[0]).unwrap().len();
    assert!(size > 20 << 20, "a pack of {size} bytes");
    let s = S3Store::open(opts).unwrap();
    check_all(&s, &hashes, &data);
    assert!(s.fsck().unwrap().is_clean());
}

/// A record rewritten on purpose, with a good CRC, passes the checksums
/// of `verify = checksum` (as a DataDir's would) but never `verify =
/// hash`, nor fsck.
#[test]
fn verify_hash_refuses_a_forged_record_that_checksums_pass() {
    let srv = Server::start();
    let root = srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let good = random(100_000, 3);
    let forged = random(100_000, 4);
    let h = {
        let s = S3Store::open(opts.clone()).unwrap();
        let (h, _) = s.add(&good).unwrap();
        s.sync().unwrap();
        h
    };
    let idx = files(&root.join("index"), ".idx");
    let e = pack_index::PackIndex::decode(&std::fs::read(&idx[0]).unwrap())
        .unwrap()
        .entries
        .into_iter()
        .find(|e| e.hash == h)
        .unwrap();
    let rec = crate::datafile::encode_record(&h, 0, &forged, forged.len() as u32);
    assert_eq!(rec.len(), e.len as usize, "random data is stored plain");
    let packs = files(&root.join("data"), ".vtd");
    let mut b = std::fs::read(&packs[0]).unwrap();
    b[e.offset as usize..e.offset as usize + rec.len()].copy_from_slice(&rec);
    std::fs::write(&packs[0], &b).unwrap();

    let mut o = opts.clone();
    o.verify = Verify::Hash;
    let s = S3Store::open(o).unwrap();
    let err = s.get(&h).unwrap_err();
    assert!(err.to_string().contains("does not match its hash"), "{err}");
    let r = s.fsck().unwrap();
    assert_eq!(r.bad_blocks, vec![h], "{r:?}");
    drop(s);
    // The checksums hold: only the hash tells.
    let s = S3Store::open(opts).unwrap();
    assert_eq!(s.get(&h).unwrap().unwrap(), forged);
}

/// Where no local copy of a pack can be kept (here `packs` is a file),
/// blocks are read record by record instead, never an error.
#[test]
fn reads_work_when_no_local_copy_can_be_kept() {
    let srv = Server::start();
    srv.bucket("bkt");
    let cache = tempfile::tempdir().unwrap();
    let opts = srv.opts("bkt", S3Layout::Packed, Some(cache.path()));
    let dirs: Vec<Vec<u8>> = (0..10).map(|i| text(3000, i + 3)).collect();
    let hd: Vec<Hash> = {
        let s = S3Store::open(opts.clone()).unwrap();
        let hd = dirs
            .iter()
            .map(|b| s.add_as(b, vt_core::BlockClass::Meta).unwrap().0)
            .collect();
        s.sync().unwrap();
        hd
    };
    let other = tempfile::tempdir().unwrap();
    std::fs::write(other.path().join("packs"), b"not a directory").unwrap();
    let mut o = opts;
    o.cache_dir = Some(other.path().to_path_buf());
    let s = S3Store::open(o).unwrap();
    check_all(&s, &hd, &dirs);
    assert!(s.requests().get_range > 0, "read record by record");
}
