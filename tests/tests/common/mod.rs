//! Shared helpers for the end-to-end tests: run the real `vt` binary in an
//! isolated environment, make trees, compare trees.

#![allow(dead_code)]

pub mod plugin_build;
pub mod proxy;
pub mod s3;
pub mod server;

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `vt` binary: `$VT_BIN`, else beside the test executable's directory.
pub fn vt_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("VT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = dir.join("vt");
    assert!(
        bin.exists(),
        "{} not built: run the tests with `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// An isolated vt environment: its own config and data directories.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("vt-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// The default DataDir of this environment.
    pub fn store(&self) -> PathBuf {
        self.path("xdg-data/vt/store")
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(vt_bin());
        c.env("XDG_CONFIG_HOME", self.path("xdg-config"))
            .env("XDG_DATA_HOME", self.path("xdg-data"))
            .env("XDG_CACHE_HOME", self.path("xdg-cache"))
            .env_remove("VT_STORE")
            .env_remove("VT_CONFIG");
        c
    }

    /// Runs vt with `args`; returns the output whatever the status.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run vt")
    }

    /// Runs vt and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "vt {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

/// Parses "blocks: N new (…), M already stored" from import output.
pub fn new_blocks(out: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with("blocks: "))
        .unwrap_or_else(|| panic!("no blocks line in {out:?}"));
    line["blocks: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("block count")
}

/// The `data:` bytes figure of `vt stats`.
pub fn stats_bytes(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {out:?}"));
    let open = line.find('(').expect("(") + 1;
    line[open..]
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("bytes")
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        v
    }
    /// Text-like content: words from a small vocabulary, in lines.
    pub fn text(&mut self, n: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the", "block", "store", "hash", "index", "vt", "data", "file", "tree", "chunk",
            "archive", "snapshot", "dedup", "content", "defined", "scanner", "fn", "let", "match",
            "Result", "impl", "struct", "pub", "mod", "use", "self", "=>", "{", "}",
        ];
        let mut v = Vec::with_capacity(n + 80);
        while v.len() < n {
            let words = 3 + self.below(12);
            for i in 0..words {
                if i > 0 {
                    v.push(b' ');
                }
                v.extend_from_slice(WORDS[self.below(WORDS.len() as u64) as usize].as_bytes());
            }
            v.extend_from_slice(format!(" {}\n", self.below(100_000)).as_bytes());
        }
        v.truncate(n);
        v
    }
}

/// What a tree looks like, path by path: type, content digest, mode,
/// mtime, symlink target, xattrs, and which paths share an inode.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: char,
    pub content: Option<[u8; 32]>,
    pub len: u64,
    pub mode: u32,
    pub mtime: (i64, i64),
    pub target: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Index of the first path (in sorted order) with the same inode.
    pub link_group: Option<String>,
}

fn digest(path: &Path) -> [u8; 32] {
    use std::io::Read;
    // FNV-style 4-lane hash: enough to tell contents apart in tests.
    let mut f = std::fs::File::open(path).expect("open");
    let mut lanes = [0xcbf2_9ce4_8422_2325u64; 4];
    let mut buf = vec![0u8; 1 << 16];
    let mut i = 0usize;
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            let l = &mut lanes[i & 3];
            *l ^= u64::from(b);
            *l = l.wrapping_mul(0x0100_0000_01b3);
            i += 1;
        }
    }
    let mut out = [0u8; 32];
    for (k, l) in lanes.iter().enumerate() {
        out[k * 8..k * 8 + 8].copy_from_slice(&l.to_le_bytes());
    }
    out
}

/// Describes every path under `root` (relative paths; root is "").
pub fn describe(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), String> = HashMap::new();
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("readdir") {
                stack.push(e.expect("entry").path());
            }
        }
        paths.push(p);
    }
    paths.sort();
    for p in paths {
        let md = std::fs::symlink_metadata(&p).expect("lstat");
        let rel = p
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            'd'
        } else if ft.is_file() {
            'f'
        } else if ft.is_symlink() {
            'l'
        } else {
            's'
        };
        let link_group = (ft.is_file() && md.nlink() > 1).then(|| {
            inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        let xattrs = if ft.is_symlink() {
            BTreeMap::new()
        } else {
            xattr::list(&p)
                .map(|names| {
                    names
                        .filter(|n| n.as_bytes().starts_with(b"user."))
                        .map(|n| {
                            let v = xattr::get(&p, &n).ok().flatten().unwrap_or_default();
                            (n.as_bytes().to_vec(), v)
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        out.insert(
            rel,
            Entry {
                kind,
                content: ft.is_file().then(|| digest(&p)),
                len: if ft.is_file() { md.len() } else { 0 },
                mode: md.permissions().mode() & 0o7777,
                mtime: if ft.is_dir() && p == root {
                    (0, 0)
                } else {
                    (md.mtime(), md.mtime_nsec())
                },
                target: ft.is_symlink().then(|| {
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                }),
                xattrs,
                link_group,
            },
        );
    }
    out
}

/// Asserts two trees are the same in content and metadata.
/// `files` files in `dirs` directories `d0`..., text and random bytes of
/// up to `size` bytes, and a symlink `link` to the first.
pub fn mixed_tree(root: &Path, seed: u64, files: usize, size: usize, dirs: usize) {
    let mut rng = Rng(seed);
    for i in 0..files {
        let d = root.join(format!("d{}", i % dirs));
        std::fs::create_dir_all(&d).unwrap();
        let n = (rng.below(size as u64) as usize).max(1);
        let data = if i % 3 == 0 {
            rng.text(n)
        } else {
            rng.bytes(n)
        };
        std::fs::write(d.join(format!("f{i}")), data).unwrap();
    }
    std::os::unix::fs::symlink("d0/f0", root.join("link")).unwrap();
}

pub fn assert_same_tree(a: &Path, b: &Path) {
    let da = describe(a);
    let db = describe(b);
    assert_eq!(da.len(), db.len(), "different number of paths");
    for (k, ea) in &da {
        let eb = db
            .get(k)
            .unwrap_or_else(|| panic!("{k} missing from {}", b.display()));
        assert_eq!(ea, eb, "path {k:?} differs");
    }
}

/// Sets a file's mtime (seconds, nanoseconds).
pub fn set_mtime(p: &Path, secs: i64, nanos: u32) {
    let t = filetime_of(secs, nanos);
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).expect("cstr");
    let times = [t, t];
    // SAFETY: valid path and times array.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", p.display());
}

fn filetime_of(secs: i64, nanos: u32) -> libc::timespec {
    libc::timespec {
        tv_sec: secs as libc::time_t,
        tv_nsec: nanos as libc::c_long,
    }
}

/// Sum of the sizes of every file under `dir`.
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                stack.push(e.path());
            }
        } else {
            total += md.len();
        }
    }
    total
}
