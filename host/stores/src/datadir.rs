//! The DataDir store: vt's embedded default (layout in `vt-datadir.5`).
//!
//! ```text
//! DIR/vt-datadir        format marker: "vt-datadir 1" and the hash name
//! DIR/data/UUID.vtd     append-only datafiles (vtd.5)
//! DIR/index/            LMDB environment: hash -> (file, offset, lengths)
//! DIR/archives/NAME.vt  named archives kept with the store
//! ```
//!
//! Each process appends to a datafile it holds an exclusive `flock` on, so
//! several processes can add to one DataDir at once. Blocks are written to
//! the datafile at once and entered in the index in batches, each batch
//! after an `fdatasync` of the datafile, so the index never points at data
//! that is not durable. The index is derived data: on open, any datafile
//! tail beyond what the index covers (a crashed writer's) is scanned and
//! indexed, and a damaged tail is cut off; `reindex` rebuilds it all.
//!
//! The index is LMDB (through `heed`): memory-mapped, so memory does not
//! grow with the store, safe for several processes, readers never block.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use heed::types::Bytes;
use heed::{Database, Env, EnvFlags, EnvOpenOptions, WithoutTls};
use vt_core::store::StoreStats;
use vt_core::{Error, Hash, HashKind, Result, Store};

use crate::datafile::{self, encode_record, read_record, FILE_HEADER, FLAG_DICT, FLAG_ZSTD};
use crate::dict::Dictionaries;

/// A datafile is not appended to once it reaches this size.
const MAX_DATAFILE: u64 = 1 << 30;
/// Blocks written before the index is brought up to date, while the index
/// is small. LMDB copies every page a transaction touches, so large
/// batches keep a small index compact (every batch rewrites most of it)...
const FLUSH_EVERY_SMALL: usize = 262_144;
/// ...and small batches bound memory in a large index, where each insert
/// touches a page of its own (dirty copy plus mapped original: 8 KiB).
const FLUSH_EVERY_LARGE: usize = 16_384;
/// An index with more entries than this is large.
const LARGE_INDEX: u64 = 1 << 20;
/// Name of the format marker file.
const MARKER: &str = "vt-datadir";
/// The layout version this code reads and writes.
const LAYOUT_VERSION: u32 = 1;

/// Where a block's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Loc {
    file: u32,
    offset: u64,
    stored_len: u32,
    raw_len: u32,
}

impl Loc {
    fn to_bytes(self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[..4].copy_from_slice(&self.file.to_le_bytes());
        b[4..12].copy_from_slice(&self.offset.to_le_bytes());
        b[12..16].copy_from_slice(&self.stored_len.to_le_bytes());
        b[16..].copy_from_slice(&self.raw_len.to_le_bytes());
        b
    }
    fn from_bytes(b: &[u8]) -> Result<Self> {
        if b.len() != 20 {
            return Err(Error::Store(format!(
                "index entry of {} bytes, expected 20: run `vt fsck --reindex`",
                b.len()
            )));
        }
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut o = [0u8; 8];
        o.copy_from_slice(&b[4..12]);
        Ok(Loc {
            file: u32_at(0),
            offset: u64::from_le_bytes(o),
            stored_len: u32_at(12),
            raw_len: u32_at(16),
        })
    }
}

struct Writer {
    num: u32,
    file: File,
    path: PathBuf,
    /// Where the next record goes.
    pos: u64,
    /// End of the records already in the index.
    indexed: u64,
}

#[derive(Default)]
struct State {
    writer: Option<Writer>,
    pending: HashMap<Hash, Loc>,
    /// Set when unindexed blocks were discarded after a write error: from
    /// then on `sync` fails, so nothing can refer to the lost blocks.
    lost: Option<String>,
    /// Datafiles this process filled up; never chosen again for writing.
    full: Vec<u32>,
}

/// What `fsck` found.
#[derive(Debug, Default)]
pub struct FsckReport {
    /// Datafiles checked.
    pub datafiles: usize,
    /// Good records seen.
    pub records: u64,
    /// Problems found, one line each.
    pub problems: Vec<String>,
}

impl FsckReport {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The embedded default store.
pub struct DataDir {
    root: PathBuf,
    kind: HashKind,
    level: i32,
    env: Env<WithoutTls>,
    blocks: Database<Bytes, Bytes>,
    files: Database<Bytes, Bytes>,
    state: Mutex<State>,
    readers: RwLock<HashMap<u32, (PathBuf, Arc<File>)>>,
    /// Index look-ups since the index's pages were last released.
    lookups: AtomicU64,
    /// Compression dictionaries.
    dicts: Dictionaries,
    /// Entries in the index, as of the last flush.
    indexed: AtomicU64,
}

fn db_err(what: &str) -> impl Fn(heed::Error) -> Error + '_ {
    move |e| Error::Store(format!("DataDir index: {what}: {e}"))
}

/// Opens a datafile for reading and writing.
fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("open {}", path.display()), e))
}

fn flock(f: &File, op: libc::c_int) -> bool {
    // SAFETY: flock on a valid, owned descriptor.
    unsafe { libc::flock(f.as_raw_fd(), op) == 0 }
}

impl DataDir {
    /// Opens the DataDir at `root`, creating it (hashing with `create`) if
    /// it does not exist and `create` is given.
    pub fn open(root: &Path, create: Option<HashKind>) -> Result<Self> {
        let marker = root.join(MARKER);
        let kind = match std::fs::read_to_string(&marker) {
            Ok(text) => parse_marker(&text, &marker)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let Some(kind) = create else {
                    return Err(Error::Store(format!(
                        "{} is not a vt DataDir (no {MARKER} file); create it with `vt init`",
                        root.display()
                    )));
                };
                std::fs::create_dir_all(root.join("data"))
                    .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
                // Several processes may create the DataDir at once: each
                // writes its own temporary file and renames it into place
                // (atomic), then all use what the marker says.
                let tmp = root.join(format!(".{MARKER}.{}.tmp", std::process::id()));
                std::fs::write(&tmp, format!("vt-datadir {LAYOUT_VERSION}\nhash {kind}\n"))
                    .and_then(|_| std::fs::rename(&tmp, &marker))
                    .map_err(|e| Error::io(format!("write {}", marker.display()), e))?;
                let text = std::fs::read_to_string(&marker)
                    .map_err(|e| Error::io(format!("read {}", marker.display()), e))?;
                parse_marker(&text, &marker)?
            }
            Err(e) => return Err(Error::io(format!("read {}", marker.display()), e)),
        };
        for sub in ["data", "index", "archives"] {
            std::fs::create_dir_all(root.join(sub))
                .map_err(|e| Error::io(format!("create {}/{sub}", root.display()), e))?;
        }
        // SAFETY: the LMDB environment is opened once per process (the vt
        // binary opens one store per DataDir) and its files are not
        // modified by other means.
        let env = unsafe {
            let mut o = EnvOpenOptions::new().read_txn_without_tls();
            o.map_size(1 << 40).max_dbs(4).max_readers(1022);
            o.flags(EnvFlags::NO_READ_AHEAD);
            o.open(root.join("index"))
        }
        .map_err(db_err("open"))?;
        let mut wtxn = env.write_txn().map_err(db_err("begin"))?;
        let blocks = env
            .create_database(&mut wtxn, Some("blocks"))
            .map_err(db_err("create blocks table"))?;
        let files = env
            .create_database(&mut wtxn, Some("files"))
            .map_err(db_err("create files table"))?;
        wtxn.commit().map_err(db_err("commit"))?;
        let dd = DataDir {
            root: root.to_path_buf(),
            kind,
            level: 3,
            env,
            blocks,
            files,
            state: Mutex::default(),
            readers: RwLock::default(),
            lookups: AtomicU64::new(0),
            dicts: Dictionaries::open(&root.join("dicts"))?,
            indexed: AtomicU64::new(0),
        };
        dd.recover()?;
        {
            let rtxn = dd.env.read_txn().map_err(db_err("begin"))?;
            let n = dd.blocks.len(&rtxn).map_err(db_err("count"))?;
            dd.indexed.store(n, Relaxed);
        }
        Ok(dd)
    }

    /// The DataDir's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the named archives kept with this store.
    pub fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::Store("DataDir state lock poisoned".into()))
    }

    fn data_path(&self, name: &str) -> PathBuf {
        self.root.join("data").join(name)
    }

    /// Registered datafiles: number -> (name, indexed end).
    fn registered(&self) -> Result<Vec<(u32, String, u64)>> {
        let rtxn = self.env.read_txn().map_err(db_err("begin"))?;
        let mut out = Vec::new();
        for item in self.files.iter(&rtxn).map_err(db_err("list files"))? {
            let (k, v) = item.map_err(db_err("list files"))?;
            if k.len() != 4 || v.len() < 8 {
                return Err(Error::Store(
                    "malformed files table in the index: run `vt fsck --reindex`".into(),
                ));
            }
            let num = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
            let mut e = [0u8; 8];
            e.copy_from_slice(&v[..8]);
            out.push((
                num,
                String::from_utf8_lossy(&v[8..]).into_owned(),
                u64::from_le_bytes(e),
            ));
        }
        Ok(out)
    }

    /// The number of datafile `name`, registering it if new.
    fn register(&self, name: &str) -> Result<u32> {
        let mut wtxn = self.env.write_txn().map_err(db_err("begin"))?;
        let mut next = 0u32;
        for item in self.files.iter(&wtxn).map_err(db_err("list files"))? {
            let (k, v) = item.map_err(db_err("list files"))?;
            let num = u32::from_be_bytes(k.try_into().unwrap_or([0; 4]));
            if v.get(8..) == Some(name.as_bytes()) {
                return Ok(num);
            }
            next = next.max(num + 1);
        }
        let mut v = 0u64.to_le_bytes().to_vec();
        v.extend_from_slice(name.as_bytes());
        self.files
            .put(&mut wtxn, &next.to_be_bytes(), &v)
            .map_err(db_err("register datafile"))?;
        wtxn.commit().map_err(db_err("commit"))?;
        Ok(next)
    }

    /// Names of the datafiles in `data/`.
    fn datafile_names(&self) -> Result<Vec<String>> {
        let dir = self.root.join("data");
        let list = |e| Error::io(format!("list {}", dir.display()), e);
        let mut names = Vec::new();
        for ent in std::fs::read_dir(&dir).map_err(list)? {
            let name = ent
                .map_err(list)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".vtd") {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Scans every datafile tail the index does not cover yet.
    fn recover(&self) -> Result<()> {
        let known: HashMap<String, (u32, u64)> = self
            .registered()?
            .into_iter()
            .map(|(n, name, end)| (name, (n, end)))
            .collect();
        for name in self.datafile_names()? {
            let size = std::fs::metadata(self.data_path(&name))
                .map_err(|e| Error::io(format!("stat {name}"), e))?
                .len();
            let (num, end) = match known.get(&name) {
                Some(&x) => x,
                None => (self.register(&name)?, 0),
            };
            if size > end.max(FILE_HEADER.len() as u64) || size < FILE_HEADER.len() as u64 {
                let path = self.data_path(&name);
                let file = open_rw(&path)?;
                if flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                    if let Err(e) = self.index_tail(num, &file, &path, end, true) {
                        // Reading what is indexed still works (say, on a
                        // full disk); the tail is indexed on a later open.
                        tracing::warn!("{}: cannot index its unindexed tail: {e}", path.display());
                    }
                }
                // Else a live writer holds it; it indexes its own records.
            }
        }
        Ok(())
    }

    /// Indexes the records of a datafile from `end` on; with `repair` (the
    /// caller holds the file's lock) a damaged tail is cut off. Returns the
    /// end of the good data.
    fn index_tail(
        &self,
        num: u32,
        file: &File,
        path: &Path,
        end: u64,
        repair: bool,
    ) -> Result<u64> {
        let hlen = FILE_HEADER.len() as u64;
        let size = file
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if size < hlen {
            if repair {
                file.set_len(0)
                    .and_then(|_| file.write_all_at(&FILE_HEADER, 0))
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::io(format!("repair header of {}", path.display()), e))?;
            }
            return Ok(hlen);
        }
        let mut head = [0u8; 8];
        file.read_exact_at(&mut head, 0)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        if datafile::file_version(&head).is_none() {
            return Err(Error::Store(format!(
                "{} is not a version 1 or 2 vt datafile",
                path.display()
            )));
        }
        let res = datafile::scan(file, end.max(hlen), None)?;
        let mut wtxn = self.env.write_txn().map_err(db_err("begin"))?;
        for f in &res.records {
            let loc = Loc {
                file: num,
                offset: f.offset,
                stored_len: f.header.stored_len,
                raw_len: f.header.raw_len,
            };
            self.insert_if_absent(&mut wtxn, &f.header.hash.to_bytes(), &loc)?;
        }
        let mut good_end = res.good_end;
        if !res.damaged.is_empty() {
            let tail_only = res.damaged.iter().all(|&(o, _)| o >= res.good_end);
            if repair && tail_only {
                tracing::warn!(
                    "{}: cutting off {} bytes of incomplete data after offset {} (left by an interrupted writer)",
                    path.display(),
                    size - res.good_end,
                    res.good_end
                );
                file.set_len(res.good_end)
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
            } else {
                for (o, why) in &res.damaged {
                    tracing::warn!("{}: damaged data at offset {o}: {why}", path.display());
                }
                good_end = size;
            }
        }
        self.set_end(&mut wtxn, num, path, good_end)?;
        wtxn.commit().map_err(db_err("commit"))?;
        Ok(good_end)
    }

    /// Enters a block in the index unless it is there already (another
    /// copy, or another process's, came first; either serves).
    fn insert_if_absent(&self, wtxn: &mut heed::RwTxn<'_>, key: &[u8], loc: &Loc) -> Result<()> {
        if self
            .blocks
            .get(wtxn, key)
            .map_err(db_err("lookup"))?
            .is_none()
        {
            self.blocks
                .put(wtxn, key, &loc.to_bytes())
                .map_err(db_err("insert"))?;
        }
        Ok(())
    }

    fn set_end(&self, wtxn: &mut heed::RwTxn<'_>, num: u32, path: &Path, end: u64) -> Result<()> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut v = end.to_le_bytes().to_vec();
        v.extend_from_slice(name.as_bytes());
        self.files
            .put(wtxn, &num.to_be_bytes(), &v)
            .map_err(db_err("update datafile end"))
    }

    /// Takes (or creates) a datafile to append to, skipping `full` ones.
    fn open_writer(&self, full: &[u32]) -> Result<Writer> {
        for (num, name, end) in self.registered()? {
            if full.contains(&num) {
                continue;
            }
            let path = self.data_path(&name);
            let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
                continue;
            };
            let small = file
                .metadata()
                .map(|m| m.len() < MAX_DATAFILE)
                .unwrap_or(false);
            if small && flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                let pos = match self.index_tail(num, &file, &path, end, true) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!("{}: not appending to it: {e}", path.display());
                        continue;
                    }
                };
                let size = file.metadata().map_or(0, |m| m.len());
                if pos == size {
                    return Ok(Writer {
                        num,
                        file,
                        path,
                        pos,
                        indexed: pos,
                    });
                }
            }
        }
        // Born under a name no other process looks at, locked and with its
        // header, then renamed into place: nobody sees a headerless or
        // unlocked new datafile.
        let name = format!("{}.vtd", uuid::Uuid::new_v4());
        let path = self.data_path(&name);
        let tmp = self.data_path(&format!(".{name}.new"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create datafile {}", tmp.display()), e))?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            return Err(Error::Store(format!(
                "cannot lock new datafile {}",
                tmp.display()
            )));
        }
        file.write_all_at(&FILE_HEADER, 0)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("create datafile {}", path.display()), e))?;
        let num = self.register(&name)?;
        let pos = FILE_HEADER.len() as u64;
        Ok(Writer {
            num,
            file,
            path,
            pos,
            indexed: pos,
        })
    }

    /// Makes pending blocks durable and enters them in the index.
    fn flush_locked(&self, st: &mut State) -> Result<()> {
        if let Some(why) = &st.lost {
            return Err(Error::Store(format!(
                "blocks added earlier were discarded after a write error ({why}); nothing may refer to them"
            )));
        }
        let Some(w) = st.writer.as_mut() else {
            return Ok(());
        };
        w.file
            .sync_data()
            .map_err(|e| Error::io(format!("sync datafile {}", w.path.display()), e))?;
        let mut wtxn = self.env.write_txn().map_err(db_err("begin"))?;
        // In key order: each index page is then touched once per batch.
        let mut batch: Vec<([u8; Hash::ENCODED_LEN], &Loc)> =
            st.pending.iter().map(|(h, l)| (h.to_bytes(), l)).collect();
        batch.sort_unstable_by_key(|e| e.0);
        let mdb = self.root.join("index/data.mdb");
        for (i, (key, loc)) in batch.into_iter().enumerate() {
            if i % RELEASE_EVERY as usize == RELEASE_EVERY as usize - 1 {
                // A large batch touches a page per insert; the kernel maps
                // more around each. LMDB's write transaction copies pages
                // before changing them, so the mapping stays clean.
                release_index_pages(&mdb);
            }
            self.insert_if_absent(&mut wtxn, &key, loc)?;
        }
        self.set_end(&mut wtxn, w.num, &w.path, w.pos)?;
        let entries = self.blocks.len(&wtxn).map_err(db_err("count"))?;
        wtxn.commit().map_err(db_err("commit"))?;
        self.indexed.store(entries, Relaxed);
        w.indexed = w.pos;
        st.pending.clear();
        release_index_pages(&mdb);
        Ok(())
    }

    fn lookup(&self, hash: &Hash) -> Result<Option<Loc>> {
        if let Some(loc) = self.lock()?.pending.get(hash) {
            return Ok(Some(*loc));
        }
        if self.lookups.fetch_add(1, Relaxed) % RELEASE_EVERY == RELEASE_EVERY - 1 {
            release_index_pages(&self.root.join("index/data.mdb"));
        }
        let rtxn = self.env.read_txn().map_err(db_err("begin"))?;
        match self
            .blocks
            .get(&rtxn, &hash.to_bytes())
            .map_err(db_err("lookup"))?
        {
            Some(v) => Ok(Some(Loc::from_bytes(v)?)),
            None => Ok(None),
        }
    }

    fn reader(&self, num: u32) -> Result<(PathBuf, Arc<File>)> {
        if let Some(x) = self.readers.read().ok().and_then(|m| m.get(&num).cloned()) {
            return Ok(x);
        }
        let name = self
            .registered()?
            .into_iter()
            .find(|r| r.0 == num)
            .map(|r| r.1)
            .ok_or_else(|| {
                Error::Store(format!(
                    "index names datafile #{num}, which is not registered: run `vt fsck --reindex`"
                ))
            })?;
        let path = self.data_path(&name);
        let f = Arc::new(
            File::open(&path).map_err(|e| Error::io(format!("open {}", path.display()), e))?,
        );
        if let Ok(mut m) = self.readers.write() {
            m.insert(num, (path.clone(), f.clone()));
        }
        Ok((path, f))
    }

    /// Checks every record of every datafile (checksums, decompression,
    /// hashes) and every index entry.
    pub fn fsck(&self) -> Result<FsckReport> {
        self.sync()?;
        let mut rep = FsckReport::default();
        let rtxn = self.env.read_txn().map_err(db_err("begin"))?;
        for (num, name, _) in self.registered()? {
            let path = self.data_path(&name);
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) => {
                    rep.problems
                        .push(format!("{}: cannot open: {e}", path.display()));
                    continue;
                }
            };
            rep.datafiles += 1;
            let res = datafile::scan(&file, FILE_HEADER.len() as u64, Some(&self.dicts))?;
            for (o, why) in &res.damaged {
                rep.problems
                    .push(format!("{}: offset {o}: {why}", path.display()));
            }
            for f in &res.records {
                rep.records += 1;
                let key = f.header.hash.to_bytes();
                if self
                    .blocks
                    .get(&rtxn, &key)
                    .map_err(db_err("lookup"))?
                    .is_none()
                {
                    rep.problems.push(format!(
                        "{}: block {} at offset {} is not in the index (run `vt fsck --reindex`)",
                        path.display(),
                        f.header.hash,
                        f.offset
                    ));
                }
            }
            let _ = num;
        }
        for item in self.blocks.iter(&rtxn).map_err(db_err("list blocks"))? {
            let (k, v) = item.map_err(db_err("list blocks"))?;
            let hash = match Hash::from_bytes(k) {
                Ok(h) => h,
                Err(e) => {
                    rep.problems.push(format!("index: bad key: {e}"));
                    continue;
                }
            };
            let loc = Loc::from_bytes(v)?;
            match self.reader(loc.file) {
                Ok((path, f)) => {
                    if let Err(e) = read_record(&f, &path, loc.offset, &hash, &self.dicts) {
                        rep.problems.push(format!("index entry: {e}"));
                    }
                }
                Err(e) => rep.problems.push(format!("index entry for {hash}: {e}")),
            }
        }
        Ok(rep)
    }

    /// Rebuilds the index from the datafiles. Run it while no other process
    /// uses the DataDir.
    pub fn reindex(&self) -> Result<()> {
        let mut st = self.lock()?;
        self.flush_locked(&mut st)?;
        st.writer = None;
        let mut wtxn = self.env.write_txn().map_err(db_err("begin"))?;
        self.blocks.clear(&mut wtxn).map_err(db_err("clear"))?;
        self.files.clear(&mut wtxn).map_err(db_err("clear"))?;
        wtxn.commit().map_err(db_err("commit"))?;
        if let Ok(mut r) = self.readers.write() {
            r.clear();
        }
        drop(st);
        // Every file is scanned from the start; files held by a live writer
        // are indexed as far as they go, without repair.
        for name in self.datafile_names()? {
            let num = self.register(&name)?;
            let path = self.data_path(&name);
            let file = open_rw(&path)?;
            let locked = flock(&file, libc::LOCK_EX | libc::LOCK_NB);
            if let Err(e) = self.index_tail(num, &file, &path, 0, false) {
                tracing::warn!("{}: not indexed: {e}", path.display());
            }
            if locked {
                flock(&file, libc::LOCK_UN);
            }
        }
        Ok(())
    }
}

/// Index look-ups between releases of the index's mapped pages.
const RELEASE_EVERY: u64 = 1024;

/// Drops this process's page table entries for the memory-mapped index
/// file, so resident memory does not grow with the index: the pages stay
/// in the page cache and a later access maps them again (a minor fault).
/// LMDB maps the file read-only and shared, so this never changes data.
fn release_index_pages(file: &Path) {
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return;
    };
    let Some(want) = std::fs::canonicalize(file)
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
    else {
        return;
    };
    for line in maps.lines().filter(|l| l.ends_with(want.as_str())) {
        let Some((range, _)) = line.split_once(' ') else {
            continue;
        };
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) else {
            continue;
        };
        // SAFETY: the range is a whole mapping of this process, read-only
        // and file-backed; MADV_DONTNEED only drops its page table entries.
        unsafe {
            libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_DONTNEED);
        }
    }
}

fn parse_marker(text: &str, path: &Path) -> Result<HashKind> {
    let mut version = None;
    let mut kind = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("vt-datadir", v)) => version = v.trim().parse::<u32>().ok(),
            Some(("hash", h)) => kind = Some(h.trim().parse::<HashKind>()?),
            _ => {}
        }
    }
    match version {
        Some(LAYOUT_VERSION) => {}
        Some(v) => {
            return Err(Error::Store(format!(
                "{} says layout version {v}; this vt reads version {LAYOUT_VERSION}",
                path.display()
            )))
        }
        None => return Err(Error::Store(format!("{} is malformed", path.display()))),
    }
    Ok(kind.unwrap_or(HashKind::Sha3_256))
}

impl Store for DataDir {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        if self.contains(hash)? {
            return Ok(false);
        }
        let raw_len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= datafile::MAX_RECORD)
            .ok_or_else(|| Error::Store(format!("block of {} bytes is too large", data.len())))?;
        self.dicts.sample(data);
        let (compressed, with_dict) = self.dicts.compress(data, self.level)?;
        let rec = if compressed.len() < data.len() {
            let flags = if with_dict {
                FLAG_ZSTD | FLAG_DICT
            } else {
                FLAG_ZSTD
            };
            encode_record(hash, flags, &compressed, raw_len)
        } else {
            encode_record(hash, 0, data, raw_len)
        };
        let mut st = self.lock()?;
        if let Some(why) = &st.lost {
            return Err(Error::Store(format!(
                "DataDir is not writable after an earlier error: {why}"
            )));
        }
        if st.pending.contains_key(hash) {
            return Ok(false);
        }
        if st
            .writer
            .as_ref()
            .is_some_and(|w| w.pos + rec.len() as u64 > MAX_DATAFILE)
        {
            self.flush_locked(&mut st)?;
            if let Some(w) = st.writer.take() {
                st.full.push(w.num);
            }
        }
        if st.writer.is_none() {
            st.writer = Some(self.open_writer(&st.full)?);
        }
        let w = st
            .writer
            .as_mut()
            .ok_or_else(|| Error::Store("no datafile".into()))?;
        if let Err(e) = w.file.write_all_at(&rec, w.pos) {
            // ENOSPC and the like: give back the space of every block not yet
            // in the index (nothing can refer to them yet) and refuse to
            // sync from now on, so nothing ever will.
            let err = Error::io(format!("append to datafile {}", w.path.display()), e);
            let _ = w.file.set_len(w.indexed);
            w.pos = w.indexed;
            st.pending.clear();
            st.lost = Some(err.to_string());
            return Err(err);
        }
        let loc = Loc {
            file: w.num,
            offset: w.pos,
            stored_len: (rec.len() - datafile::RECORD_HEADER) as u32,
            raw_len,
        };
        w.pos += rec.len() as u64;
        st.pending.insert(*hash, loc);
        let batch = if self.indexed.load(Relaxed) > LARGE_INDEX {
            FLUSH_EVERY_LARGE
        } else {
            FLUSH_EVERY_SMALL
        };
        if st.pending.len() >= batch {
            self.flush_locked(&mut st)?;
        }
        Ok(true)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        let Some(loc) = self.lookup(hash)? else {
            return Ok(None);
        };
        let (path, f) = self.reader(loc.file)?;
        read_record(&f, &path, loc.offset, hash, &self.dicts).map(Some)
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.lookup(hash)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        let mut st = self.lock()?;
        self.flush_locked(&mut st)
    }

    fn stats(&self) -> Result<StoreStats> {
        let mut s = StoreStats::default();
        let rtxn = self.env.read_txn().map_err(db_err("begin"))?;
        for item in self.blocks.iter(&rtxn).map_err(db_err("list blocks"))? {
            let (_, v) = item.map_err(db_err("list blocks"))?;
            let loc = Loc::from_bytes(v)?;
            s.blocks += 1;
            s.raw_bytes += u64::from(loc.raw_len);
        }
        for (_, name, _) in self.registered()? {
            s.stored_bytes += std::fs::metadata(self.data_path(&name)).map_or(0, |m| m.len());
        }
        Ok(s)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if let Ok(mut st) = self.state.lock() {
            if st.lost.is_some() {
                return; // already reported to whoever added the blocks
            }
            if let Err(e) = self.flush_locked(&mut st) {
                tracing::warn!("DataDir {}: final flush failed: {e}", self.root.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_reopen_get() {
        let t = tempfile::tempdir().unwrap();
        let (h, data) = {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            let data = b"hello hello hello hello hello".repeat(100);
            let (h, new) = dd.add(&data).unwrap();
            assert!(new);
            assert!(!dd.add(&data).unwrap().1);
            assert_eq!(dd.get(&h).unwrap().unwrap(), data);
            dd.sync().unwrap();
            (h, data)
        };
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(dd.get(&h).unwrap().unwrap(), data);
        let s = dd.stats().unwrap();
        assert_eq!(s.blocks, 1);
        assert!(s.stored_bytes < data.len() as u64, "compressed");
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn crashed_writers_tail_is_indexed_and_garbage_cut() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join(MARKER), "vt-datadir 1\nhash blake3\n").unwrap();
        // A datafile as a killed writer leaves it: records never indexed,
        // then half a record.
        let h = HashKind::Blake3.digest(b"block one");
        let mut content = FILE_HEADER.to_vec();
        content.extend(encode_record(&h, 0, b"block one", 9));
        let good = content.len() as u64;
        content.extend_from_slice(&encode_record(&h, 0, b"block one", 9)[..30]);
        let path = t
            .path()
            .join("data/8d3c1b52-0000-4000-8000-000000000000.vtd");
        std::fs::write(&path, &content).unwrap();
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(dd.get(&h).unwrap().unwrap(), b"block one");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        assert!(dd.fsck().unwrap().is_clean());
        // The repaired file is reused for appending.
        let (h2, _) = dd.add(b"block two").unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.get(&h2).unwrap().unwrap(), b"block two");
        assert!(std::fs::metadata(&path).unwrap().len() > good);
    }

    #[test]
    fn corrupt_byte_is_detected_never_returned() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (h, _) = dd.add(&data).unwrap();
        dd.sync().unwrap();
        let path = dd.lock().unwrap().writer.as_ref().unwrap().path.clone();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x55], 8 + 60).unwrap();
        let err = dd.get(&h).unwrap_err().to_string();
        assert!(
            err.contains(&h.to_string()) && err.contains(".vtd"),
            "{err}"
        );
        assert!(!dd.fsck().unwrap().is_clean());
    }

    fn text_block(i: usize) -> Vec<u8> {
        format!(
            "/* block {i} */\nstatic int handler_{i}(struct device *dev, unsigned long flags)\n{{\n\treturn dev->ops->probe(dev, flags | {i});\n}}\n"
        )
        .repeat(40 + i % 17)
        .into_bytes()
    }

    #[test]
    fn a_dictionary_is_trained_and_used_and_needed() {
        let t = tempfile::tempdir().unwrap();
        let mut hashes = Vec::new();
        {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            let mut i = 0;
            while std::fs::read_dir(t.path().join("dicts")).unwrap().count() == 0 {
                hashes.push((dd.add(&text_block(i)).unwrap().0, i));
                i += 1;
                assert!(i < 20_000, "no dictionary after {i} blocks");
            }
            for j in i..i + 50 {
                hashes.push((dd.add(&text_block(j)).unwrap().0, j));
            }
            dd.sync().unwrap();
        }
        let dd = DataDir::open(t.path(), None).unwrap();
        for (h, i) in &hashes {
            assert_eq!(dd.get(h).unwrap().unwrap(), text_block(*i));
        }
        assert!(dd.fsck().unwrap().is_clean());
        // The last blocks were compressed with the dictionary: without it
        // they cannot be read, and the error says what is missing.
        let (h, _) = hashes.last().unwrap();
        drop(dd);
        for e in std::fs::read_dir(t.path().join("dicts")).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        let dd = DataDir::open(t.path(), None).unwrap();
        // A fresh thread: this one has the dictionary loaded already.
        let h = *h;
        let err = std::thread::scope(|sc| sc.spawn(|| dd.get(&h).map(|_| ())).join().unwrap());
        match err {
            Err(e) => assert!(
                e.to_string().contains("needs compression dictionary"),
                "{e}"
            ),
            Ok(()) => panic!("a block was read without its dictionary"),
        }
    }
}
