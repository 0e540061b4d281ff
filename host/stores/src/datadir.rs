//! The DataDir store: vt's embedded default (layout in `vt-datadir.5`).
//!
//! ```text
//! DIR/vt-datadir        format marker: "vt-datadir 1" and the hash name
//! DIR/data/UUID.vtd     append-only datafiles (vtd.5)
//! DIR/index/            hash -> (file, offset, lengths): sorted runs (index.rs)
//! DIR/archives/NAME.vt  named archives kept with the store
//! ```
//!
//! Each process appends to a datafile it holds an exclusive `flock` on, so
//! several processes can add to one DataDir at once. Large blocks are
//! written to the datafile at once; small ones are collected into a group
//! (one per adding thread) that is compressed as one record when it is
//! full or on `sync` (small blocks compressed alone compress poorly).
//! Records are entered in the index in batches, each batch after an
//! `fdatasync` of the datafile, so the index never points at data that is
//! not durable. The index is derived data: on open, any datafile tail
//! beyond what the index covers (a crashed writer's) is scanned and
//! indexed, and a damaged tail is cut off; `reindex` rebuilds it all.
//!
//! The index is a set of sorted, immutable, memory-mapped runs (`index.rs`):
//! about 59 bytes a block on disk however the store grew, memory that does
//! not grow with the store, several processes at once.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::ThreadId;

use vt_core::archive::ArchiveDir;
use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

use crate::base_cache::BaseCache;
use crate::datafile::{
    self, encode_group, encode_record, read_group, read_record, resolve_delta, Group, Source,
    Stored, Verify, FILE_HEADER, FLAG_DELTA, FLAG_DICT, FLAG_ZSTD,
};
use crate::delta;
use crate::dict::Dictionaries;
use crate::effort::{Compression, Effort, BASE_LEVEL};
use crate::index::{InGroup, Index, Loc};
use crate::mapping;
use crate::similar::{self, Hints, Supers};

/// A datafile is not appended to once it reaches this size.
const MAX_DATAFILE: u64 = 1 << 30;
/// Blocks written before the index is brought up to date: each flush
/// writes a run (merged with the newest ones when they add up), and
/// pending entries take memory (about 100 bytes each).
const FLUSH_EVERY: usize = 131_072;
/// Name of the format marker file.
const MARKER: &str = "vt-datadir";
/// The layout version this code reads and writes.
const LAYOUT_VERSION: u32 = 1;
/// Blocks smaller than this are stored in group records: compressed alone
/// they compress poorly (each frame starts with an empty history). The
/// chunker's minimum block size, so only scanner-cut blocks and file tails
/// are grouped.
const GROUP_BELOW: usize = 16 << 10;
/// A group is written once its blocks add up to this many bytes. On mail
/// (bench/mbox.sh) 128 KiB groups store 3% less than 64 KiB ones, 256 KiB
/// ones 4% less again (what takes v2 below plain CDC), 512 KiB ones 3%
/// less again; but every read of a member decompresses its whole group
/// (256 KiB: about 0.3 ms here), as reading the largest block of a file
/// does.
const GROUP_TARGET: usize = 256 << 10;
/// The group size when the compression budget pays for more than the
/// base level (an incremental import: few of the blocks offered are new,
/// see `effort.rs`). On the messages appended to a mailbox, zstd level 9
/// stores 14% less in 1 MiB pieces than in 256 KiB ones (905 KB against
/// 1,051 KB for 5.6 MB of `git format-patch` mail); a read of a member
/// decompresses the whole group (about 1 ms), but such groups hold only
/// what incremental imports added.
const GROUP_TARGET_HARD: usize = 1 << 20;
/// Decompressed groups kept for reads (each at most about
/// `GROUP_TARGET + GROUP_BELOW` bytes when written by this code), so
/// reading a group's members one after another decompresses it once.
/// Readers that go through a tree in another order than it was written
/// (an export's threads, a mount) come back to a group after reading
/// others: with 8 groups an export of a kernel tree decompressed its
/// bytes several times over (a third of its CPU); 64 (16 MiB) do it once.
const GROUP_CACHE: usize = 64;
/// Decompressed bytes the group cache holds at most (so 1 MiB groups do
/// not make it four times larger).
const GROUP_CACHE_BYTES: usize = 24 << 20;
/// Decoded delta bases kept for the deltas that share them (see
/// `base_cache.rs`). A cold read of the mount benchmark's 1 GiB file
/// through `vt mount` resolves 654 deltas against 273 bases of about 80
/// KiB: FIFO over that order, 128 bases (about 10 MiB) would answer 253
/// look-ups, all 273 would answer 381. A `vt export` of a kernel tree
/// (with that file) found 1,515 of its 3,661 bases kept. The budget is
/// memory every reader may hold: that export's anonymous memory peaked at
/// 148 MB against 128 MB without the cache.
const BASE_CACHE_BYTES: usize = 16 << 20;
/// Data blocks shorter than this are never stored as deltas, nor kept as
/// bases: a delta record's header and base hashcode take 85 bytes.
const DELTA_MIN: usize = 1024;
/// A block is stored as a delta only when the delta takes at most this
/// fraction of what the block takes compressed alone: a delta costs a
/// second record's read whenever it is read, and depends on its base.
const DELTA_PAYS: (usize, usize) = (1, 2);
/// Candidate bases tried for one block (of its super features' hints).
const DELTA_TRIES: usize = 2;
/// Group-member index entries fsck sorts by place before reading them, so
/// each group is decompressed about once per batch.
const FSCK_BATCH: usize = 1 << 18;

/// Small blocks gathered for one group record.
#[derive(Default)]
struct GroupBuf {
    /// Each block: hashcode, offset in `data`, length.
    members: Vec<(Hash, u32, u32)>,
    data: Vec<u8>,
}

/// Small blocks not written yet: the open groups and groups being
/// compressed. They are visible to `contains` and `get` until they are
/// written (then `pending` has them).
///
/// Each adding thread has an open group of its own: a thread adds the
/// blocks of a stretch of a file (or of a directory's small files) in
/// order, so its group holds neighbours, which compress better together
/// than blocks of several threads interleaved (bench/mbox.sh: 3% less).
#[derive(Default)]
struct Unwritten {
    /// Id of the next group opened; ids only grow.
    next_id: u64,
    /// Each thread's open group and its id.
    open: HashMap<ThreadId, (u64, GroupBuf)>,
    /// Sealed groups some thread is compressing and writing, by id.
    sealed: HashMap<u64, Arc<GroupBuf>>,
    /// Each unwritten block: its group's id and position in it.
    blocks: HashMap<Hash, (u64, usize)>,
}

impl Unwritten {
    /// Adds a block to `thread`'s open group; seals the group and returns
    /// it once it holds `target` bytes.
    fn push(
        &mut self,
        thread: ThreadId,
        hash: Hash,
        data: &[u8],
        target: usize,
    ) -> Option<(u64, Arc<GroupBuf>)> {
        let next_id = &mut self.next_id;
        let (id, g) = self.open.entry(thread).or_insert_with(|| {
            *next_id += 1;
            (*next_id - 1, GroupBuf::default())
        });
        self.blocks.insert(hash, (*id, g.members.len()));
        g.members
            .push((hash, g.data.len() as u32, data.len() as u32));
        g.data.extend_from_slice(data);
        if g.data.len() < target {
            return None;
        }
        let (id, g) = self.open.remove(&thread)?;
        Some(self.seal(id, g))
    }

    fn seal(&mut self, id: u64, g: GroupBuf) -> (u64, Arc<GroupBuf>) {
        let g = Arc::new(g);
        self.sealed.insert(id, g.clone());
        (id, g)
    }

    /// A copy of an unwritten block's data.
    fn data(&self, hash: &Hash) -> Option<Vec<u8>> {
        let &(id, i) = self.blocks.get(hash)?;
        let g = match self.sealed.get(&id) {
            Some(g) => g,
            None => self.open.values().find(|(o, _)| *o == id).map(|(_, g)| g)?,
        };
        let &(_, off, len) = g.members.get(i)?;
        g.data
            .get(off as usize..(off + len) as usize)
            .map(<[u8]>::to_vec)
    }

    /// Seals every open group for writing. Groups are merged, in the
    /// order they were opened, into as few as hold `target` bytes each:
    /// a sync then does not write a small group per thread.
    fn seal_all(&mut self, target: usize) -> Vec<(u64, Arc<GroupBuf>)> {
        let mut open: Vec<(u64, GroupBuf)> = self.open.drain().map(|(_, g)| g).collect();
        open.sort_unstable_by_key(|(id, _)| *id);
        let mut merged: Vec<(u64, GroupBuf)> = Vec::new();
        for (id, g) in open {
            match merged.last_mut() {
                Some((into, m)) if m.data.len() + g.data.len() <= target => {
                    for (h, off, len) in g.members {
                        self.blocks.insert(h, (*into, m.members.len()));
                        m.members.push((h, m.data.len() as u32 + off, len));
                    }
                    m.data.extend_from_slice(&g.data);
                }
                _ => merged.push((id, g)),
            }
        }
        merged.into_iter().map(|(id, g)| self.seal(id, g)).collect()
    }

    /// Group `id` is written (or lost): its blocks leave.
    fn done(&mut self, id: u64) {
        if let Some(g) = self.sealed.remove(&id) {
            for (h, _, _) in &g.members {
                if self.blocks.get(h).is_some_and(|&(i, _)| i == id) {
                    self.blocks.remove(h);
                }
            }
        }
    }

    /// Drops the open groups (after a write error, nothing may refer to
    /// their blocks); sealed groups leave as their writers finish.
    fn drop_open(&mut self) {
        for (_, (id, _)) in self.open.drain() {
            self.blocks.retain(|_, &mut (i, _)| i != id);
        }
    }
}

/// Decompressed groups by (datafile number, record offset), most recently
/// used last.
type GroupCache = VecDeque<((u32, u64), Arc<Group>)>;

/// Where `lookup` found a block.
enum Place {
    /// In a datafile, in the index.
    Disk(Loc),
    /// In a datafile, written by this process and not yet in the index
    /// (never read through a map: an append that fails cuts it off).
    Pending(Loc),
    /// In a group not yet written; its data if asked for.
    Unwritten(Option<Vec<u8>>),
}

/// Which datafiles a record is appended to. Metadata records (directory
/// and indirect blocks) go to datafiles of their own, named
/// `meta-UUID.vtd`: a walk or an incremental import reads every directory
/// of a snapshot and no file data, and with the directories packed
/// together it reads a few megabytes in long runs instead of a page here
/// and there across every datafile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Lane {
    Data = 0,
    Meta = 1,
}

/// Name prefix of the datafiles of [`Lane::Meta`].
const META_PREFIX: &str = "meta-";

impl Lane {
    /// How the names of this lane's datafiles begin.
    fn prefix(self) -> &'static str {
        match self {
            Lane::Data => "",
            Lane::Meta => META_PREFIX,
        }
    }

    /// The lane a datafile named `name` belongs to.
    fn of_name(name: &str) -> Lane {
        if name.starts_with(META_PREFIX) {
            Lane::Meta
        } else {
            Lane::Data
        }
    }

    /// The lane for a block of class `class`.
    fn of_class(class: BlockClass) -> Lane {
        match class {
            BlockClass::Data => Lane::Data,
            BlockClass::Meta => Lane::Meta,
        }
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
    /// The datafile being appended to, per [`Lane`].
    writers: [Option<Writer>; 2],
    /// Blocks written but not yet in the index.
    pending: HashMap<Hash, Loc>,
    /// Small blocks not yet written.
    groups: Unwritten,
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
    /// Blocks whose index entry leads to no good data (damaged, their
    /// datafile gone, or a delta whose base is), so that the caller can
    /// say what they cost.
    pub bad_blocks: Vec<Hash>,
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
    /// What reads check.
    verify: Verify,
    /// Where each block is, and the datafiles' numbers.
    index: Index,
    state: Mutex<State>,
    /// Signalled whenever a sealed group is written (or lost).
    written: Condvar,
    /// Recently decompressed groups, most recent last, by (file, offset).
    group_cache: Mutex<GroupCache>,
    /// Recently decoded bases of deltas, by hashcode.
    bases: BaseCache,
    readers: RwLock<HashMap<u32, (PathBuf, Arc<File>)>>,
    /// Datafiles mapped for [`Store::get_shared`], each as long as it was
    /// when last mapped (remapped when a read needs more).
    maps: RwLock<HashMap<u32, bytes::Bytes>>,
    /// Bytes read through maps since their pages were last released.
    mapped_reads: AtomicU64,
    /// Compression dictionaries.
    dicts: Dictionaries,
    /// How hard new data blocks are compressed.
    effort: Effort,
    /// Flushes so far: a block not found before a flush may be in the
    /// index after it, instead of in `pending`.
    flushes: AtomicU64,
    /// Whether new data blocks may be stored as deltas.
    deltas: bool,
    /// Which stored blocks resemble a new one (`similar.rs`). Never held
    /// while taking `state`.
    hints: Mutex<Hints>,
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
        let index_dir = root.join("index");
        if index_dir.join("data.mdb").exists() {
            // Written by an earlier vt (LMDB): rebuilt from the datafiles,
            // as after `vt fsck --reindex`.
            tracing::warn!(
                "{}: converting the index to the current format (reading every datafile once)",
                root.display()
            );
            for f in ["data.mdb", "lock.mdb"] {
                let p = index_dir.join(f);
                std::fs::remove_file(&p)
                    .or_else(|e| match e.kind() {
                        std::io::ErrorKind::NotFound => Ok(()),
                        _ => Err(e),
                    })
                    .map_err(|e| Error::io(format!("remove {}", p.display()), e))?;
            }
        }
        let index = Index::open(&index_dir)?;
        let dd = DataDir {
            root: root.to_path_buf(),
            kind,
            verify: Verify::default(),
            index,
            state: Mutex::default(),
            written: Condvar::new(),
            group_cache: Mutex::default(),
            bases: BaseCache::new(BASE_CACHE_BYTES),
            readers: RwLock::default(),
            maps: RwLock::default(),
            mapped_reads: AtomicU64::new(0),
            dicts: Dictionaries::open(&root.join("dicts"))?,
            effort: Effort::default(),
            flushes: AtomicU64::new(0),
            deltas: true,
            hints: Mutex::new(Hints::new(root)),
        };
        dd.recover()?;
        Ok(dd)
    }

    /// Sets what reads check (the default is [`Verify::Checksum`]).
    pub fn set_verify(&mut self, verify: Verify) {
        self.verify = verify;
    }

    /// Sets how new data is compressed (the default is
    /// [`Compression::Auto`], see `effort.rs`).
    pub fn set_compression(&mut self, mode: Compression) {
        self.effort = Effort::new(mode);
        // The fastest imports look for no bases.
        self.deltas = mode != Compression::Fast;
    }

    /// The DataDir's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the named archives kept with this store.
    pub fn archives_dir(&self) -> PathBuf {
        self.root.join("archives")
    }

    /// The named archives kept with this store.
    pub fn archives(&self) -> ArchiveDir {
        ArchiveDir::new(self.archives_dir())
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
        let ends = self.index.ends();
        Ok(self
            .index
            .datafiles()?
            .into_iter()
            .map(|(n, name)| {
                let end = ends.get(&n).copied().unwrap_or(0);
                (n, name, end)
            })
            .collect())
    }

    /// The number of datafile `name`, registering it if new.
    fn register(&self, name: &str) -> Result<u32> {
        self.index.register(name)
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
                "{} is not a vt datafile of version 1 to 4",
                path.display()
            )));
        }
        let res = datafile::scan(file, end.max(hlen), &self.dicts, false)?;
        if let Some((o, why)) = res.unreadable.first() {
            // Not damage: left for a later open, once the dictionary is
            // back (a reindex indexes around it).
            if repair {
                return Err(Error::Store(format!(
                    "{}: cannot index the group record at offset {o}: {why}",
                    path.display()
                )));
            }
            for (o, why) in &res.unreadable {
                tracing::warn!(
                    "{}: group record at offset {o} not indexed: {why}",
                    path.display()
                );
            }
        }
        let entries: Vec<(Hash, Loc)> = res.records.iter().flat_map(|f| locs_of(num, f)).collect();
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
        self.index.add_run(entries, &[(num, good_end)])?;
        Ok(good_end)
    }

    /// Takes (or creates) a datafile of `lane` to append to, skipping
    /// `full` ones.
    fn open_writer(&self, full: &[u32], lane: Lane) -> Result<Writer> {
        for (num, name, end) in self.registered()? {
            if full.contains(&num) || Lane::of_name(&name) != lane {
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
                // New records go only into files of this version: older
                // readers refuse those rather than cut records they do not
                // know off as damage.
                let mut head = [0u8; 8];
                let current = file.read_exact_at(&mut head, 0).is_ok() && head == FILE_HEADER;
                if pos == size && current {
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
        let name = format!("{}{}.vtd", lane.prefix(), uuid::Uuid::new_v4());
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
        if st.writers.iter().all(Option::is_none) {
            return Ok(());
        }
        for w in st.writers.iter().flatten() {
            w.file
                .sync_data()
                .map_err(|e| Error::io(format!("sync datafile {}", w.path.display()), e))?;
        }
        let entries: Vec<(Hash, Loc)> = st.pending.iter().map(|(h, l)| (*h, *l)).collect();
        let ends: Vec<(u32, u64)> = st
            .writers
            .iter()
            .flatten()
            .map(|w| (w.num, w.pos))
            .collect();
        self.index.add_run(entries, &ends)?;
        for w in st.writers.iter_mut().flatten() {
            w.indexed = w.pos;
        }
        st.pending.clear();
        self.flushes.fetch_add(1, Relaxed);
        if let Err(e) = self.hints().flushed() {
            tracing::debug!("similarity hints not saved: {e}");
        }
        Ok(())
    }

    /// Block `hash`'s data; `mapped`: through the datafile's map where it
    /// is in the index.
    fn read(&self, hash: &Hash, mapped: bool) -> Result<Option<bytes::Bytes>> {
        let mut place = self.lookup(hash, true)?;
        if let Some(Place::Unwritten(None)) = place {
            // Written between the two looks: read it from the datafile.
            place = self.lookup(hash, false)?;
            if let None | Some(Place::Unwritten(_)) = place {
                return Err(Error::Store(format!(
                    "block {hash} vanished while being written"
                )));
            }
        }
        match place {
            None => Ok(None),
            Some(Place::Disk(loc)) => self.read_at(hash, &loc, self.verify, mapped).map(Some),
            Some(Place::Pending(loc)) => self.read_at(hash, &loc, self.verify, false).map(Some),
            Some(Place::Unwritten(data)) => Ok(data.map(bytes::Bytes::from)),
        }
    }

    /// Datafile `num` mapped at least up to `end`, mapped anew (as long as
    /// the file is now) if its map is shorter; `None` if it cannot be
    /// mapped (then it is read with `pread`).
    fn map_of(&self, num: u32, f: &File, path: &Path, end: u64) -> Result<Option<bytes::Bytes>> {
        if let Some(m) = self.maps.read().ok().and_then(|m| m.get(&num).cloned()) {
            if m.len() as u64 >= end {
                return Ok(Some(m));
            }
        }
        let size = f
            .metadata()
            .map_err(|e| Error::io(format!("stat {}", path.display()), e))?
            .len();
        if size < end {
            return Err(Error::Store(format!(
                "{} is {size} bytes long, but the index has a record ending at {end}: run `vt fsck`",
                path.display()
            )));
        }
        match mapping::map(f, size) {
            Ok(Some(m)) => {
                if let Ok(mut maps) = self.maps.write() {
                    maps.insert(num, m.clone());
                }
                Ok(Some(m))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                tracing::debug!("cannot map {}: {e}", path.display());
                Ok(None)
            }
        }
    }

    /// Counts `n` bytes read through maps; every [`RELEASE_MAPPED`] bytes
    /// releases the maps' pages (see [`mapping::release`]), as the index's
    /// are, so resident memory does not grow with what a mount has read.
    fn note_mapped_read(&self, n: u64) {
        let before = self.mapped_reads.fetch_add(n, Relaxed);
        if (before + n) / RELEASE_MAPPED == before / RELEASE_MAPPED {
            return;
        }
        if let Ok(maps) = self.maps.read() {
            maps.values().for_each(mapping::release);
        }
    }

    /// Where block `hash` is; with `copy`, the data of a block not yet
    /// written.
    fn lookup(&self, hash: &Hash, copy: bool) -> Result<Option<Place>> {
        {
            let st = self.lock()?;
            if let Some(loc) = st.pending.get(hash) {
                return Ok(Some(Place::Pending(*loc)));
            }
            if st.groups.blocks.contains_key(hash) {
                return Ok(Some(Place::Unwritten(
                    copy.then(|| st.groups.data(hash)).flatten(),
                )));
            }
        }
        Ok(self.indexed(hash)?.map(Place::Disk))
    }

    /// Block `hash`'s index entry; on a miss, the index is looked at again
    /// if another process changed it since (one `fstat`).
    fn indexed(&self, hash: &Hash) -> Result<Option<Loc>> {
        if let Some(loc) = self.index.get(hash)? {
            return Ok(Some(loc));
        }
        self.index.refresh()?;
        self.index.get(hash)
    }

    /// Reads block `hash` at `loc`, checking what `verify` says; `mapped`
    /// (for records in the index only) through the datafile's map. A delta
    /// is resolved against its base.
    fn read_at(
        &self,
        hash: &Hash,
        loc: &Loc,
        verify: Verify,
        mapped: bool,
    ) -> Result<bytes::Bytes> {
        self.read_loc(hash, loc, verify, mapped, true)
    }

    /// [`DataDir::read_at`]; a delta record is an error unless
    /// `deltas_ok` (a base is never a delta).
    fn read_loc(
        &self,
        hash: &Hash,
        loc: &Loc,
        verify: Verify,
        mapped: bool,
        deltas_ok: bool,
    ) -> Result<bytes::Bytes> {
        let (path, f) = self.reader(loc.file)?;
        let Some(m) = loc.member else {
            let map = self.map_for(loc, &f, &path, mapped)?;
            let stored = read_record(
                Source::of(map.as_ref(), &f),
                &path,
                loc.offset,
                Some(loc.stored_len),
                hash,
                &self.dicts,
                verify,
            )?;
            return match stored {
                Stored::Block(data) => Ok(data),
                Stored::Delta {
                    base,
                    payload,
                    raw_len,
                } if deltas_ok => {
                    let data = self.read_base(hash, &path, &base, verify, mapped)?;
                    resolve_delta(&path, hash, &data, &payload, raw_len, verify)
                }
                Stored::Delta { .. } => Err(Error::Corrupt {
                    hash: *hash,
                    file: path.clone(),
                    detail: "a delta record where a base was expected (bases are never deltas)"
                        .into(),
                }),
            };
        };
        let corrupt = |detail: String| Error::Corrupt {
            hash: *hash,
            file: path.clone(),
            detail,
        };
        let g = match self.cached_group(loc) {
            Some(g) => g,
            None => {
                // Decompressed outside the cache's lock: readers of other
                // groups go on.
                let map = self.map_for(loc, &f, &path, mapped)?;
                let src = Source::of(map.as_ref(), &f);
                let g = read_group(src, loc.offset, Some(loc.stored_len), &self.dicts)
                    .map_err(&corrupt)?;
                self.keep_group(loc, Arc::new(g))
            }
        };
        // The member table names no blocks: the place and length must be
        // the index entry's, and the member's hash is checked.
        if g.spans.get(m.index as usize).map(|x| (x.offset, x.len)) != Some((m.offset, loc.raw_len))
        {
            return Err(corrupt(format!(
                "index entry does not match member #{} of the group record at offset {}: run `vt fsck --reindex`",
                m.index, loc.offset
            )));
        }
        g.member(m.index, hash, verify)
            .map(|d| g.data.slice_ref(d))
            .map_err(|e| corrupt(format!("group record at offset {}: {e}", loc.offset)))
    }

    /// The data of `base`, the base of delta block `hash` (whose record is
    /// in `path`): a damaged or missing base is reported as damage to
    /// `hash`, naming the base.
    fn read_base(
        &self,
        hash: &Hash,
        path: &Path,
        base: &Hash,
        verify: Verify,
        mapped: bool,
    ) -> Result<bytes::Bytes> {
        let corrupt = |detail: String| Error::Corrupt {
            hash: *hash,
            file: path.to_path_buf(),
            detail,
        };
        if let Some(d) = self.bases.get(base) {
            return Ok(d);
        }
        let read = match self.lookup(base, false)? {
            // A record of its own (a group member is a slice of its group,
            // which the group cache keeps).
            Some(Place::Disk(l)) if l.member.is_none() => {
                let d = self.read_loc(base, &l, verify, mapped, false);
                if let Ok(d) = &d {
                    self.bases.keep(base, d);
                }
                d
            }
            Some(Place::Disk(l)) => self.read_loc(base, &l, verify, mapped, false),
            Some(Place::Pending(l)) => self.read_loc(base, &l, verify, false, false),
            // Never: a base is chosen among blocks already written.
            Some(Place::Unwritten(_)) => self
                .read(base, false)?
                .ok_or_else(|| Error::Store(format!("block {base} vanished while being written"))),
            None => {
                return Err(corrupt(format!(
                    "the base of this delta, block {base}, is missing"
                )))
            }
        };
        read.map_err(|e| corrupt(format!("the base of this delta cannot be read: {e}")))
    }

    /// How much data a group gathers before it is written: more when
    /// the budget compresses harder ([`GROUP_TARGET_HARD`]).
    fn group_target(&self) -> usize {
        if self.effort.above_base(GROUP_TARGET_HARD) {
            GROUP_TARGET_HARD
        } else {
            GROUP_TARGET
        }
    }

    /// The similarity hints, locked.
    fn hints(&self) -> MutexGuard<'_, Hints> {
        self.hints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The super features of block `hash` if it may be stored as a delta
    /// or serve as a base. Metadata blocks too: an indirect block of a file
    /// edited in one place, or a directory block with one entry changed,
    /// differs from its old version in a few hashcodes, which do not
    /// compress, so as a delta it costs tens of bytes instead of its whole
    /// size again.
    fn supers_of(&self, hash: &Hash, data: &[u8]) -> Option<Supers> {
        let fits = self.deltas && hash.kind == self.kind && data.len() >= DELTA_MIN;
        fits.then(|| similar::supers(data)).flatten()
    }

    /// A stored block with hashcode prefix `p` that may serve as a base,
    /// and its data; `None` if there is none, or it is a delta, or it
    /// cannot be read (a delta against it is then not made).
    fn base_for(&self, p: u32) -> Result<Option<(Hash, bytes::Bytes)>> {
        let fresh = self.hints().fresh(p);
        let (h, loc, mapped) = match fresh {
            Some(h) => match self.lookup(&h, false)? {
                Some(Place::Disk(l)) => (h, l, true),
                Some(Place::Pending(l)) => (h, l, false),
                _ => return Ok(None),
            },
            None => match self.index.find_prefix(p)? {
                Some((h, l)) => (h, l, true),
                None => return Ok(None),
            },
        };
        if loc.delta || h.kind != self.kind {
            return Ok(None);
        }
        match self.read_loc(&h, &loc, self.verify, mapped, false) {
            Ok(d) => Ok(Some((h, d))),
            Err(e) => {
                tracing::debug!("block {h} not used as a base: {e}");
                Ok(None)
            }
        }
    }

    /// A delta record for new block `hash`, against the first of its
    /// candidate bases for which the delta pays ([`DELTA_PAYS`] of
    /// `plain`, what the block takes compressed alone, worked out here if
    /// not given); `None` if none does.
    fn delta_record(
        &self,
        hash: &Hash,
        data: &[u8],
        supers: &Supers,
        mut plain: Option<usize>,
    ) -> Result<Option<Vec<u8>>> {
        let candidates = self.hints().candidates(supers);
        for p in candidates.into_iter().take(DELTA_TRIES) {
            let Some((base, base_data)) = self.base_for(p)? else {
                continue;
            };
            if base == *hash {
                continue;
            }
            // At the base level, not charged to the budget: most attempts
            // make no delta, and the budget is for the data that is stored.
            let frame = match delta::compress(&base_data, data, BASE_LEVEL) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!("no delta of {hash} against {base}: {e}");
                    continue;
                }
            };
            let plain = match plain {
                Some(n) => n,
                None => {
                    let n = self
                        .dicts
                        .compress(data, BASE_LEVEL)?
                        .0
                        .len()
                        .min(data.len());
                    *plain.insert(n)
                }
            };
            let cost = delta::BASE_LEN + frame.len();
            if cost * DELTA_PAYS.1 <= plain * DELTA_PAYS.0 {
                let payload = delta::encode_payload(&base, &frame);
                return Ok(Some(encode_record(
                    hash,
                    FLAG_DELTA | FLAG_ZSTD,
                    &payload,
                    data.len() as u32,
                )));
            }
        }
        Ok(None)
    }

    /// Appends `rec`, block `hash`'s own record (`raw_len` bytes of data),
    /// to a datafile of `lane`, unless another thread added the block since
    /// this one looked (when `flushes` flushes had happened). Returns
    /// whether it was appended.
    fn append_whole(
        &self,
        hash: &Hash,
        rec: &[u8],
        raw_len: u32,
        lane: Lane,
        flushes: u64,
    ) -> Result<bool> {
        let mut st = self.lock()?;
        Self::check_lost(&st)?;
        if self.added_meanwhile(&st, hash, flushes)? {
            return Ok(false);
        }
        let (file, offset) = self.append_locked(&mut st, rec, lane)?;
        let loc = Loc {
            file,
            offset,
            stored_len: (rec.len() - datafile::RECORD_HEADER) as u32,
            raw_len,
            member: None,
            delta: rec[4] & FLAG_DELTA != 0,
        };
        st.pending.insert(*hash, loc);
        self.maybe_flush(&mut st)?;
        Ok(true)
    }

    /// With `mapped`, the map of the datafile holding the record at `loc`
    /// (about to be read through it, which is counted); else `None`.
    fn map_for(
        &self,
        loc: &Loc,
        f: &File,
        path: &Path,
        mapped: bool,
    ) -> Result<Option<bytes::Bytes>> {
        if !mapped {
            return Ok(None);
        }
        let end = loc.offset + datafile::RECORD_HEADER as u64 + u64::from(loc.stored_len);
        let map = self.map_of(loc.file, f, path, end)?;
        if map.is_some() {
            self.note_mapped_read(u64::from(loc.stored_len));
        }
        Ok(map)
    }

    /// The group record at `loc`, decompressed, if it is in the cache of
    /// recent groups.
    fn cached_group(&self, loc: &Loc) -> Option<Arc<Group>> {
        let key = (loc.file, loc.offset);
        let mut c = self.group_cache.lock().ok()?;
        let i = c.iter().position(|(k, _)| *k == key)?;
        let e = c.remove(i)?;
        let g = e.1.clone();
        c.push_back(e);
        Some(g)
    }

    /// Puts the group record at `loc` in the cache of recent groups
    /// (unless another reader did first); returns it.
    fn keep_group(&self, loc: &Loc, g: Arc<Group>) -> Arc<Group> {
        let key = (loc.file, loc.offset);
        if let Ok(mut c) = self.group_cache.lock() {
            if !c.iter().any(|(k, _)| *k == key) {
                c.push_back((key, g.clone()));
                let mut bytes: usize = c.iter().map(|(_, g)| g.data.len()).sum();
                while c.len() > GROUP_CACHE || (bytes > GROUP_CACHE_BYTES && c.len() > 1) {
                    if let Some((_, g)) = c.pop_front() {
                        bytes -= g.data.len();
                    }
                }
            }
        }
        g
    }

    /// Whether another thread added `hash` since this one looked (when
    /// `flushes` flushes had happened): it is pending or unwritten, or a
    /// flush since then moved it to the index.
    fn added_meanwhile(&self, st: &State, hash: &Hash, flushes: u64) -> Result<bool> {
        if st.pending.contains_key(hash) || st.groups.blocks.contains_key(hash) {
            return Ok(true);
        }
        if self.flushes.load(Relaxed) == flushes {
            return Ok(false);
        }
        self.index.contains(hash)
    }

    /// Refuses to write once blocks were lost.
    fn check_lost(st: &State) -> Result<()> {
        match &st.lost {
            Some(why) => Err(Error::Store(format!(
                "DataDir is not writable after an earlier error: {why}"
            ))),
            None => Ok(()),
        }
    }

    /// Appends record `rec` to this process's datafile (choosing one, or
    /// the next when it is full). Returns the datafile number and offset.
    /// A failed write discards every unindexed block and sets `lost`.
    fn append_locked(&self, st: &mut State, rec: &[u8], lane: Lane) -> Result<(u32, u64)> {
        Self::check_lost(st)?;
        let l = lane as usize;
        if st.writers[l]
            .as_ref()
            .is_some_and(|w| w.pos + rec.len() as u64 > MAX_DATAFILE)
        {
            self.flush_locked(st)?;
            if let Some(w) = st.writers[l].take() {
                st.full.push(w.num);
            }
        }
        if st.writers[l].is_none() {
            st.writers[l] = Some(self.open_writer(&st.full, lane)?);
        }
        let w = st.writers[l]
            .as_mut()
            .ok_or_else(|| Error::Store("no datafile".into()))?;
        if let Err(e) = w.file.write_all_at(rec, w.pos) {
            // ENOSPC and the like: give back the space of every block not yet
            // in the index (nothing can refer to them yet) and refuse to
            // sync from now on, so nothing ever will.
            let err = Error::io(format!("append to datafile {}", w.path.display()), e);
            for w in st.writers.iter_mut().flatten() {
                let _ = w.file.set_len(w.indexed);
                w.pos = w.indexed;
            }
            st.pending.clear();
            st.groups.drop_open();
            st.lost = Some(err.to_string());
            return Err(err);
        }
        let at = (w.num, w.pos);
        w.pos += rec.len() as u64;
        Ok(at)
    }

    /// Flushes when a batch is full.
    fn maybe_flush(&self, st: &mut State) -> Result<()> {
        if st.pending.len() >= FLUSH_EVERY {
            self.flush_locked(st)?;
        }
        Ok(())
    }

    /// Compresses sealed group `id` and writes it as one record. Its blocks
    /// stay visible (in `groups`) until they are in `pending`. Any failure
    /// loses blocks already acknowledged, so it sets `lost`.
    fn write_group(&self, id: u64, g: Arc<GroupBuf>) -> Result<()> {
        // Compressed without the lock: other threads go on adding.
        let rec = self.encode_group(&g);
        let mut st = self.lock()?;
        let res = rec.and_then(|rec| {
            let at = self.append_locked(&mut st, &rec, Lane::Data)?;
            Ok((at, (rec.len() - datafile::RECORD_HEADER) as u32))
        });
        match &res {
            Ok(((file, offset), stored_len)) => {
                for (i, &(h, off, len)) in g.members.iter().enumerate() {
                    let loc = Loc {
                        file: *file,
                        offset: *offset,
                        stored_len: *stored_len,
                        raw_len: len,
                        member: Some(InGroup {
                            index: i as u32,
                            offset: off,
                        }),
                        delta: false,
                    };
                    st.pending.insert(h, loc);
                }
            }
            Err(e) => {
                if st.lost.is_none() {
                    st.lost = Some(e.to_string());
                }
            }
        }
        st.groups.done(id);
        self.written.notify_all();
        res?;
        self.maybe_flush(&mut st)
    }

    /// Compresses new data (a group, or a block stored alone) at the
    /// level the compression budget pays for (`effort.rs`); above the
    /// base level with the dictionary, but for the largest groups.
    fn compress_data(&self, data: &[u8]) -> Result<(Vec<u8>, bool)> {
        match self.effort.level_for(data.len()) {
            BASE_LEVEL => self.dicts.compress(data, BASE_LEVEL),
            // A group of GROUP_TARGET_HARD has history enough of its own:
            // with the dictionary it took 2% more (mail, level 9).
            level => self
                .dicts
                .compress_at(data, level, data.len() <= GROUP_TARGET + GROUP_BELOW),
        }
    }

    fn encode_group(&self, g: &GroupBuf) -> Result<Vec<u8>> {
        let raw_len = g.data.len() as u32;
        let members: Vec<(Hash, u32)> = g.members.iter().map(|&(h, _, l)| (h, l)).collect();
        let (compressed, with_dict) = self.compress_data(&g.data)?;
        Ok(if compressed.len() < g.data.len() {
            let flags = if with_dict {
                FLAG_ZSTD | FLAG_DICT
            } else {
                FLAG_ZSTD
            };
            encode_group(self.kind, &members, flags, &compressed, raw_len)
        } else {
            encode_group(self.kind, &members, 0, &g.data, raw_len)
        })
    }

    /// Writes the open groups, waits for groups other threads are
    /// writing, and flushes: every block added before the call is then
    /// durable and indexed.
    fn sync_all(&self) -> Result<()> {
        let (sealed, next) = {
            let mut st = self.lock()?;
            let next = st.groups.next_id;
            (st.groups.seal_all(self.group_target()), next)
        };
        let mut res = Ok(());
        for (id, g) in sealed {
            // After a failure the rest are lost too (`lost` is set).
            match res {
                Ok(()) => res = self.write_group(id, g),
                Err(_) => self.lock()?.groups.done(id),
            }
        }
        res?;
        let mut st = self.lock()?;
        while st.lost.is_none() && st.groups.sealed.keys().any(|&k| k < next) {
            st = self
                .written
                .wait(st)
                .map_err(|_| Error::Store("DataDir state lock poisoned".into()))?;
        }
        self.flush_locked(&mut st)
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
        if Lane::of_name(&name) == Lane::Meta {
            // Whoever reads one directory of a snapshot reads the others.
            prefetch_whole(&f);
        }
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
        self.index.refresh()?;
        rep.problems.extend(self.index.check());
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
            let res = datafile::scan(&file, FILE_HEADER.len() as u64, &self.dicts, true)?;
            for (o, why) in res.damaged.iter().chain(&res.unreadable) {
                rep.problems
                    .push(format!("{}: offset {o}: {why}", path.display()));
            }
            for f in &res.records {
                rep.records += 1;
                for (hash, loc) in locs_of(num, f) {
                    if !self.index.contains(&hash)? {
                        let what = match loc.member {
                            Some(m) => format!("member #{} of the group record", m.index),
                            None => "the record".into(),
                        };
                        rep.problems.push(format!(
                            "{}: block {hash} ({what} at offset {}) is not in the index (run `vt fsck --reindex`)",
                            path.display(),
                            f.offset
                        ));
                    }
                }
            }
        }
        // Group members are checked in batches sorted by place, so that
        // the group cache serves a group's members with one decompression.
        let mut members = Vec::new();
        for item in self.index.entries() {
            let (hash, loc) = match item {
                Ok(e) => e,
                Err(e) => {
                    rep.problems.push(format!("index: {e}"));
                    continue;
                }
            };
            if loc.member.is_some() {
                members.push((hash, loc));
                if members.len() >= FSCK_BATCH {
                    self.check_entries(&mut members, &mut rep);
                }
            } else {
                self.check_entries(&mut vec![(hash, loc)], &mut rep);
            }
        }
        self.check_entries(&mut members, &mut rep);
        Ok(rep)
    }

    /// Reads and verifies the block each index entry points at, in
    /// datafile order; empties `entries`. Group members are hashed (a
    /// member table holds only prefixes of their hashcodes); a whole
    /// record's header names its block, and the scan hashed its data.
    fn check_entries(&self, entries: &mut Vec<(Hash, Loc)>, rep: &mut FsckReport) {
        entries.sort_unstable_by_key(|(_, l)| (l.file, l.offset, l.member.map(|m| m.index)));
        for (hash, loc) in entries.drain(..) {
            match self.read_at(&hash, &loc, Verify::Hash, false) {
                Ok(_) => continue,
                Err(e @ Error::Corrupt { .. }) => rep.problems.push(format!("index entry: {e}")),
                Err(e) => rep.problems.push(format!("index entry for {hash}: {e}")),
            }
            rep.bad_blocks.push(hash);
        }
    }

    /// Rebuilds the index from the datafiles. Run it while no other process
    /// uses the DataDir.
    pub fn reindex(&self) -> Result<()> {
        self.sync_all()?;
        let mut st = self.lock()?;
        st.writers = [None, None];
        // Datafile numbers may change.
        if let Ok(mut c) = self.group_cache.lock() {
            c.clear();
        }
        self.index.clear()?;
        if let Ok(mut r) = self.readers.write() {
            r.clear();
        }
        if let Ok(mut m) = self.maps.write() {
            m.clear();
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
        // One run per datafile so far: merged into one.
        self.index.compact()
    }
}

/// The index entries for the block(s) of record `f` of datafile `num`.
fn locs_of(num: u32, f: &datafile::Found) -> Vec<(Hash, Loc)> {
    let whole = Loc {
        file: num,
        offset: f.offset,
        stored_len: f.header.stored_len,
        raw_len: f.header.raw_len,
        member: None,
        delta: f.header.is_delta(),
    };
    if !f.header.is_group() {
        return vec![(f.header.hash, whole)];
    }
    f.members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let loc = Loc {
                raw_len: m.len,
                member: Some(InGroup {
                    index: i as u32,
                    offset: m.offset,
                }),
                ..whole
            };
            (m.hash, loc)
        })
        .collect()
}

/// Files up to this size are read ahead whole when opened by
/// [`prefetch_whole`].
const PREFETCH_BELOW: u64 = 64 << 20;

/// Asks the kernel to start reading `file` into the page cache (without
/// waiting) if it is under [`PREFETCH_BELOW`]: on a cold cache one long
/// read costs less than the scattered page reads that follow otherwise.
fn prefetch_whole(file: &File) {
    if file.metadata().is_ok_and(|m| m.len() < PREFETCH_BELOW) {
        // SAFETY: fadvise only reads the descriptor; it is advisory.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
}

/// Bytes read through datafile maps between releases of their pages: few,
/// so that a finished read does not leave its pages mapped (which would
/// also keep them through `drop_caches`, flattering a cold benchmark).
const RELEASE_MAPPED: u64 = 8 << 20;

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
        self.add_hashed_as(hash, data, BlockClass::Data)
    }

    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        let flushes = self.flushes.load(Relaxed);
        if class == BlockClass::Data {
            self.effort.offer(data.len());
        }
        if self.contains(hash)? {
            return Ok(false);
        }
        let raw_len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= datafile::MAX_RECORD)
            .ok_or_else(|| Error::Store(format!("block of {} bytes is too large", data.len())))?;
        self.dicts.sample(data);
        let supers = self.supers_of(hash, data);
        // A group's members all have the header's hash function (the table
        // does not say): blocks of another (copied from a store that uses
        // it) are stored alone. So are metadata blocks: they are read
        // without the file data around them (a walk, an incremental import),
        // and a group would make each such read decompress its neighbours.
        let grouped =
            class == BlockClass::Data && data.len() < GROUP_BELOW && hash.kind == self.kind;
        let plain = if grouped {
            None
        } else if class == BlockClass::Data {
            Some(self.compress_data(data)?)
        } else {
            Some(self.dicts.compress(data, BASE_LEVEL)?)
        };
        if let Some(s) = &supers {
            let plain_len = plain.as_ref().map(|(c, _)| c.len().min(data.len()));
            if let Some(rec) = self.delta_record(hash, data, s, plain_len)? {
                return self.append_whole(hash, &rec, raw_len, Lane::of_class(class), flushes);
            }
        }
        let Some((compressed, with_dict)) = plain else {
            let sealed = {
                let mut st = self.lock()?;
                Self::check_lost(&st)?;
                if self.added_meanwhile(&st, hash, flushes)? {
                    return Ok(false);
                }
                let thread = std::thread::current().id();
                st.groups.push(thread, *hash, data, self.group_target())
            };
            if let Some(s) = &supers {
                self.hints().insert(s, hash);
            }
            if let Some((id, g)) = sealed {
                self.write_group(id, g)?;
            }
            return Ok(true);
        };
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
        let added = self.append_whole(hash, &rec, raw_len, Lane::of_class(class), flushes)?;
        if let Some(s) = supers.as_ref().filter(|_| added) {
            self.hints().insert(s, hash);
        }
        Ok(added)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        // Read into a buffer of its own (not mapped), so this is no copy.
        Ok(self.read(hash, false)?.map(Vec::from))
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<bytes::Bytes>> {
        self.read(hash, true)
    }

    fn get_packed(&self, hash: &Hash) -> Result<Option<bytes::Bytes>> {
        // Checking the hash needs the data: then the caller reads it.
        if self.verify == Verify::Hash {
            return Ok(None);
        }
        let Some(Place::Disk(loc)) = self.lookup(hash, false)? else {
            return Ok(None);
        };
        if loc.member.is_some() || loc.delta {
            return Ok(None);
        }
        let (path, f) = self.reader(loc.file)?;
        let map = self.map_for(&loc, &f, &path, true)?;
        datafile::read_record_packed(
            Source::of(map.as_ref(), &f),
            &path,
            loc.offset,
            Some(loc.stored_len),
            hash,
        )
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        Ok(self.lookup(hash, false)?.is_some())
    }

    fn sync(&self) -> Result<()> {
        self.sync_all()
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        self.archives().names()
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.archives().read(name)
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        self.archives().append(name, lines)
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.archives().replace(name, text)
    }

    fn stats(&self) -> Result<StoreStats> {
        let mut s = StoreStats::default();
        for item in self.index.entries() {
            let (_, loc) = item?;
            // Per block, also for group members.
            s.blocks += 1;
            s.raw_bytes += u64::from(loc.raw_len);
            if loc.delta {
                s.delta_blocks += 1;
                s.delta_raw_bytes += u64::from(loc.raw_len);
                s.delta_stored_bytes += loc.record_len();
            }
        }
        for (_, name, _) in self.registered()? {
            s.stored_bytes += std::fs::metadata(self.data_path(&name)).map_or(0, |m| m.len());
        }
        s.index_bytes = self.index.disk_bytes();
        s.hint_bytes = self.hints().disk_bytes();
        Ok(s)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.state.lock().map_or(true, |st| st.lost.is_some()) {
            return; // already reported to whoever added the blocks
        }
        if let Err(e) = self.sync_all() {
            tracing::warn!("DataDir {}: final flush failed: {e}", self.root.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datafile::encode_group;

    const RECORD_HEADER_LEN: u64 = datafile::RECORD_HEADER as u64;

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
    fn blocks_stored_as_plain_zstd_frames_are_given_packed() {
        let t = tempfile::tempdir().unwrap();
        let mut dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        // Large and compressible: one record, a zstd frame of its own.
        let big = text_block(7).repeat(300);
        let (hb, _) = dd.add(&big).unwrap();
        // Small: a member of a group record.
        let (hs, _) = dd.add(b"a small block, grouped").unwrap();
        // Large and random: stored as it is.
        let raw = noise(3, 64 << 10);
        let (hr, _) = dd.add(&raw).unwrap();
        dd.sync().unwrap();
        let frame = dd.get_packed(&hb).unwrap().expect("a plain frame");
        assert!(frame.len() < big.len() / 4);
        assert_eq!(zstd::bulk::decompress(&frame, big.len()).unwrap(), big);
        assert!(dd.get_packed(&hs).unwrap().is_none());
        assert!(dd.get_packed(&hr).unwrap().is_none());
        let absent = HashKind::Sha3_256.digest(b"absent");
        assert!(dd.get_packed(&absent).unwrap().is_none());
        // A store that checks hashes on reads must see the data.
        dd.set_verify(Verify::Hash);
        assert!(dd.get_packed(&hb).unwrap().is_none());
    }

    #[test]
    fn crashed_writers_tail_is_indexed_and_garbage_cut() {
        // A datafile as a killed writer leaves it: records never indexed,
        // then half a record.
        let h = HashKind::Blake3.digest(b"block one");
        let mut content = FILE_HEADER.to_vec();
        content.extend(encode_record(&h, 0, b"block one", 9));
        let good = content.len() as u64;
        content.extend_from_slice(&encode_record(&h, 0, b"block one", 9)[..30]);
        let (t, path) = handmade_datadir(&content, "000000000000");
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
        let path = dd.lock().unwrap().writers[Lane::Data as usize]
            .as_ref()
            .unwrap()
            .path
            .clone();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x55], 8 + 60).unwrap();
        let err = dd.get(&h).unwrap_err().to_string();
        assert!(
            err.contains(&h.to_string()) && err.contains(".vtd"),
            "{err}"
        );
        assert!(!dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn verify_hash_catches_data_stored_under_a_wrong_hash() {
        // A writer bug, not corruption: the checksums are all right.
        let t = tempfile::tempdir().unwrap();
        let wrong = HashKind::Sha3_256.digest(b"something else");
        for data in [
            vec![7u8; 100],
            (0..40_000u32).map(|i| (i % 253) as u8).collect(),
        ] {
            let mut dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            dd.add_hashed(&wrong, &data).unwrap();
            dd.sync().unwrap();
            if data.len() >= GROUP_BELOW {
                // A record names its block: with checksums only, the
                // writer is trusted. (Group members are always hashed.)
                assert_eq!(dd.get(&wrong).unwrap().unwrap(), data, "checksum only");
            }
            dd.set_verify(Verify::Hash);
            let err = dd.get(&wrong).unwrap_err().to_string();
            assert!(err.contains("does not match its hash"), "{err}");
            drop(dd);
            std::fs::remove_dir_all(t.path()).unwrap();
        }
    }

    fn text_block(i: usize) -> Vec<u8> {
        format!(
            "/* block {i} */\nstatic int handler_{i}(struct device *dev, unsigned long flags)\n{{\n\treturn dev->ops->probe(dev, flags | {i});\n}}\n"
        )
        .repeat(40 + i % 17)
        .into_bytes()
    }

    /// Adds `text_block(0)`, `text_block(1)`, ... to `dd` (at `dir`) until
    /// it has trained a dictionary; their hashes, in order.
    fn add_until_trained(dd: &DataDir, dir: &Path) -> Vec<Hash> {
        let mut hashes = Vec::new();
        while std::fs::read_dir(dir.join("dicts")).unwrap().count() == 0 {
            hashes.push(dd.add(&text_block(hashes.len())).unwrap().0);
            assert!(hashes.len() < 20_000, "no dictionary after 20,000 blocks");
        }
        hashes
    }

    #[test]
    fn a_dictionary_is_trained_and_used_and_needed() {
        let t = tempfile::tempdir().unwrap();
        let mut hashes = Vec::new();
        {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            hashes.extend(add_until_trained(&dd, t.path()).into_iter().zip(0..));
            let i = hashes.len();
            // Stored alone and under 16 KiB: compressed with it.
            for j in i..i + 50 {
                let (h, _) = dd.add_as(&text_block(j), BlockClass::Meta).unwrap();
                hashes.push((h, j));
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

    #[test]
    fn a_version_1_datafile_is_read_but_not_appended_to() {
        let h = HashKind::Blake3.digest(b"old block");
        let mut content = datafile::FILE_HEADER_V1.to_vec();
        content.extend(encode_record(&h, 0, b"old block", 9));
        let (t, path) = handmade_datadir(&content, "000000000001");
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(dd.get(&h).unwrap().unwrap(), b"old block");
        // Its index entry is a 20-byte whole-record one.
        let (h2, _) = dd.add(b"new block").unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.get(&h2).unwrap().unwrap(), b"new block");
        assert_eq!(std::fs::read(&path).unwrap(), content, "v1 file untouched");
        assert_eq!(dd.datafile_names().unwrap().len(), 2);
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn a_version_2_datafile_with_a_group_is_read_but_not_appended_to() {
        let a = HashKind::Blake3.digest(b"old one");
        let b = HashKind::Blake3.digest(b"old two");
        let mut content = datafile::FILE_HEADER_V2.to_vec();
        content.extend(datafile::tests::encode_group_v2(
            HashKind::Blake3,
            &[(a, b"old one"), (b, b"old two")],
        ));
        let (t, path) = handmade_datadir(&content, "000000000002");
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(dd.get(&a).unwrap().unwrap(), b"old one");
        assert_eq!(dd.get(&b).unwrap().unwrap(), b"old two");
        let (h, _) = dd.add(b"new").unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.get(&h).unwrap().unwrap(), b"new");
        assert_eq!(std::fs::read(&path).unwrap(), content, "v2 file untouched");
        let names = dd.datafile_names().unwrap();
        assert_eq!(names.len(), 2);
        let new = names.iter().find(|n| !path.ends_with(n)).unwrap();
        let head = std::fs::read(dd.data_path(new)).unwrap();
        assert_eq!(
            head[..8],
            datafile::FILE_HEADER,
            "new records in a version 3 file"
        );
        assert!(dd.fsck().unwrap().is_clean());
        dd.reindex().unwrap();
        assert_eq!(dd.get(&b).unwrap().unwrap(), b"old two");
    }

    /// Mail-like text of `len` bytes, different for each `seed`: compresses
    /// about as well as real messages.
    fn mail(seed: u64, len: usize) -> Vec<u8> {
        const WORDS: &[&str] = &[
            "the",
            "patch",
            "fixes",
            "a",
            "bug",
            "in",
            "function",
            "when",
            "it",
            "is",
            "called",
            "with",
            "an",
            "empty",
            "list",
            "and",
            "adds",
            "test",
            "for",
            "that",
            "case;",
            "also",
            "update",
            "docs,",
            "rename",
            "variable",
            "to",
            "make",
            "clear",
            "self",
            "return",
            "None",
            "def",
            "import",
            "from",
            "cs.logutils",
            "if",
            "else:",
            "value",
            "of",
            "option",
            "-",
            "+",
            "@@",
            "lib/python/cs/app.py",
            "which",
            "was",
            "not",
            "set",
            "before",
            "this",
            "change.",
            "Signed-off-by:",
            "Cameron",
            "Simpson",
            "<cs@cskk.id.au>",
        ];
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut out = format!(
            "From {seed:016x} Mon Sep 17 00:00:00 2001\nFrom: Cameron Simpson <cs@cskk.id.au>\nDate: {} Mar 2024\nSubject: [PATCH] change number {seed}\n\n",
            seed % 28 + 1
        )
        .into_bytes();
        let mut n = 0;
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
            n += 1;
            out.push(if n % 11 == 0 { b'\n' } else { b' ' });
        }
        out.truncate(len);
        out
    }

    /// The records of datafile `path`.
    fn records(path: &Path) -> Vec<datafile::Found> {
        let f = File::open(path).unwrap();
        let root = path.parent().unwrap().parent().unwrap();
        let dicts = Dictionaries::open(&root.join("dicts")).unwrap();
        datafile::scan(&f, FILE_HEADER.len() as u64, &dicts, false)
            .unwrap()
            .records
    }

    /// A BLAKE3 DataDir holding one hand-made datafile, `content`, named
    /// with `n` (12 digits), not yet indexed; and the datafile's path.
    fn handmade_datadir(content: &[u8], n: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("data")).unwrap();
        std::fs::write(t.path().join(MARKER), "vt-datadir 1\nhash blake3\n").unwrap();
        let path = t
            .path()
            .join(format!("data/8d3c1b52-0000-4000-8000-{n}.vtd"));
        std::fs::write(&path, content).unwrap();
        (t, path)
    }

    fn only_datafile(dd: &DataDir) -> PathBuf {
        let names = dd.datafile_names().unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        dd.data_path(&names[0])
    }

    /// `n` bytes that do not compress: a chain of hashes.
    fn noise(seed: u64, n: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..n as u64 / 32 + 1)
            .flat_map(|i| {
                let at = [seed.to_le_bytes(), i.to_le_bytes()].concat();
                HashKind::Sha3_256.digest(&at).bytes
            })
            .collect();
        v.truncate(n);
        v
    }

    #[test]
    fn shared_reads_map_indexed_records_and_read_the_rest() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let blocks = [noise(1, 100 << 10), mail(1, 100 << 10), mail(2, 1500)];
        let hashes: Vec<Hash> = blocks.iter().map(|b| dd.add(b).unwrap().0).collect();
        let maps = || dd.maps.read().unwrap().len();
        // Not yet in the index (the small one not even written): read, not mapped.
        for (h, b) in hashes.iter().zip(&blocks) {
            assert_eq!(dd.get_shared(h).unwrap().unwrap(), b[..]);
        }
        assert_eq!(maps(), 0, "records not in the index are never mapped");
        dd.sync().unwrap();
        for (h, b) in hashes.iter().zip(&blocks) {
            assert_eq!(dd.get(h).unwrap().unwrap(), *b);
        }
        assert_eq!(maps(), 0, "get reads into buffers of its own");
        let shared: Vec<_> = hashes
            .iter()
            .map(|h| dd.get_shared(h).unwrap().unwrap())
            .collect();
        for (s, b) in shared.iter().zip(&blocks) {
            assert_eq!(s[..], b[..]);
        }
        assert_eq!(maps(), 1, "the data datafile is mapped");
        let first_len = dd.maps.read().unwrap().values().next().unwrap().len();
        // Appended after the map was made: mapped again, longer; the
        // slices of the first map stay good.
        let more = noise(2, 300 << 10);
        let (mh, _) = dd.add(&more).unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.get_shared(&mh).unwrap().unwrap(), more[..]);
        let second_len = dd.maps.read().unwrap().values().next().unwrap().len();
        assert!(
            second_len >= first_len + (300 << 10),
            "{first_len} -> {second_len}"
        );
        for (s, b) in shared.iter().zip(&blocks) {
            assert_eq!(s[..], b[..]);
        }
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn a_datafile_shorter_than_the_index_says_is_an_error_when_mapped() {
        let t = tempfile::tempdir().unwrap();
        let data = noise(3, 200 << 10);
        let h = {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            let (h, _) = dd.add(&data).unwrap();
            dd.sync().unwrap();
            let path = only_datafile(&dd);
            drop(dd);
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(f.metadata().unwrap().len() - 1000).unwrap();
            h
        };
        let dd = DataDir::open(t.path(), None).unwrap();
        let err = dd.get_shared(&h).unwrap_err().to_string();
        assert!(
            err.contains("the index has a record ending at") && err.contains("vt fsck"),
            "{err}"
        );
        assert!(dd.get(&h).is_err(), "a plain read fails too");
    }

    #[test]
    fn small_and_large_blocks_round_trip_through_groups() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..600u64)
            .map(|i| match i % 10 {
                0 => mail(i, 40_000 + i as usize), // large: a record each
                1 => i.to_string().into_bytes(),   // tiny
                2 => mail(i, GROUP_BELOW - 1),     // largest grouped
                3 => mail(i, GROUP_BELOW),         // smallest alone
                _ => mail(i, 500 + (i as usize * 37) % 3000), // small
            })
            .collect();
        let mut hashes = Vec::new();
        {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            for b in &blocks {
                let (h, new) = dd.add(b).unwrap();
                assert!(new);
                // Readable at once, written or not.
                assert_eq!(dd.get(&h).unwrap().as_ref(), Some(b));
                hashes.push(h);
            }
            dd.sync().unwrap();
            // Added after the last sync: written when the store is dropped.
            let (h, _) = dd.add(b"the very last block").unwrap();
            hashes.push(h);
        }
        let dd = DataDir::open(t.path(), None).unwrap();
        for (h, b) in hashes.iter().zip(&blocks) {
            assert_eq!(dd.get(h).unwrap().as_ref(), Some(b));
        }
        assert_eq!(
            dd.get(hashes.last().unwrap()).unwrap().unwrap(),
            b"the very last block"
        );
        let s = dd.stats().unwrap();
        assert_eq!(s.blocks, 601);
        let raw: usize = blocks.iter().map(Vec::len).sum::<usize>() + 19;
        assert_eq!(s.raw_bytes, raw as u64);
        let recs = records(&only_datafile(&dd));
        let groups = recs.iter().filter(|r| r.header.is_group()).count();
        let singles = recs.len() - groups;
        assert_eq!(singles, 120, "blocks of 16 KiB and more stand alone");
        assert!((6..40).contains(&groups), "{groups} groups");
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn the_same_block_twice_in_a_pending_group_is_stored_once() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let a = mail(1, 1000);
        let (h, new) = dd.add(&a).unwrap();
        assert!(new);
        assert!(dd.contains(&h).unwrap());
        assert!(!dd.add(&a).unwrap().1);
        assert!(!dd.add_hashed(&h, &a).unwrap());
        dd.add(&mail(2, 1000)).unwrap();
        dd.sync().unwrap();
        assert!(!dd.add(&a).unwrap().1, "written and pending in the index");
        dd.sync().unwrap();
        let recs = records(&only_datafile(&dd));
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].members.len(), 2);
        assert_eq!(dd.stats().unwrap().blocks, 2);
        assert_eq!(dd.get(&h).unwrap().unwrap(), a);
    }

    #[test]
    fn recovery_indexes_group_members_and_cuts_a_torn_group() {
        let t = tempfile::tempdir().unwrap();
        let blocks: Vec<Vec<u8>> = (0..400).map(|i| mail(i, 1500)).collect();
        let path = {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            for b in &blocks {
                dd.add(b).unwrap();
            }
            dd.sync().unwrap();
            only_datafile(&dd)
        };
        let recs = records(&path);
        assert!(recs.len() >= 3 && recs.iter().all(|r| r.header.is_group()));
        let last = recs.last().unwrap();
        // As a writer killed in the middle of its last record leaves the
        // store, with an index that never heard of any of it (the index is
        // derived data).
        std::fs::remove_dir_all(t.path().join("index")).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(last.offset + 100).unwrap();
        drop(f);
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last.offset);
        let torn: Vec<Hash> = last.members.iter().map(|m| m.hash).collect();
        let mut kept = 0;
        for b in &blocks {
            let h = HashKind::Sha3_256.digest(b);
            if torn.contains(&h) {
                assert_eq!(dd.get(&h).unwrap(), None);
            } else {
                assert_eq!(dd.get(&h).unwrap().as_ref(), Some(b));
                kept += 1;
            }
        }
        assert_eq!(kept, 400 - torn.len());
        assert_eq!(dd.stats().unwrap().blocks, kept as u64);
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn a_corrupt_group_is_detected_never_returned() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let hashes: Vec<Hash> = (0..100)
            .map(|i| dd.add(&mail(i, 1500)).unwrap().0)
            .collect();
        dd.sync().unwrap();
        let path = only_datafile(&dd);
        let recs = records(&path);
        let g = &recs[0];
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let at = g.offset + RECORD_HEADER_LEN + u64::from(g.header.stored_len) * 2 / 3;
        f.write_all_at(&[0x55], at).unwrap();
        for m in &g.members {
            let err = dd.get(&m.hash).unwrap_err().to_string();
            assert!(
                err.contains(&m.hash.to_string())
                    && err.contains(".vtd")
                    && err.contains("checksum"),
                "{err}"
            );
        }
        // The other groups are intact.
        for h in &hashes {
            if !g.members.iter().any(|m| m.hash == *h) {
                assert!(dd.get(h).unwrap().is_some());
            }
        }
        let rep = dd.fsck().unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            rep.problems
                .iter()
                .any(|p| p.contains(&name) && p.contains("checksum mismatch in group record")),
            "{:?}",
            rep.problems
        );
        // One problem per member's index entry, and the damaged record.
        assert_eq!(
            rep.problems.len(),
            g.members.len() + 1,
            "{:?}",
            rep.problems
        );
    }

    #[test]
    fn a_group_member_stored_under_a_wrong_hash_is_never_returned_and_fsck_reports_it() {
        // A writer bug, not corruption: the checksums are all right.
        let t = tempfile::tempdir().unwrap();
        let mut dd = DataDir::open(t.path(), Some(HashKind::Blake3)).unwrap();
        let a = dd.add(b"first").unwrap().0;
        let b = HashKind::Blake3.digest(b"second");
        assert!(dd.add_hashed(&b, b"SECOND").unwrap());
        dd.sync().unwrap();
        // Like a record of its own, a group member is checked by its hash
        // with `verify = "hash"`; by default its hash prefix in the member
        // table names it, and the writer wrote b's.
        dd.set_verify(Verify::Hash);
        assert_eq!(dd.get(&a).unwrap().unwrap(), b"first");
        let err = dd.get(&b).unwrap_err().to_string();
        assert!(
            err.contains(&b.to_string()) && err.contains("does not match its hash"),
            "{err}"
        );
        dd.set_verify(Verify::Checksum);
        assert_eq!(dd.get(&a).unwrap().unwrap(), b"first");
        let rep = dd.fsck().unwrap();
        let name = only_datafile(&dd)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            rep.problems
                .iter()
                .any(|p| p.contains(&name) && p.contains("do not hash to the record's digest")),
            "{:?}",
            rep.problems
        );
        assert!(
            rep.problems
                .iter()
                .any(|p| p.contains(&b.to_string()) && p.contains("does not match its hash")),
            "{:?}",
            rep.problems
        );
        assert_eq!(rep.problems.len(), 2, "{:?}", rep.problems);
    }

    #[test]
    fn recovery_skips_but_keeps_a_group_that_fails_its_digest() {
        // Never indexed: a group whose data is not what its writer hashed
        // (good checksum), then a good group.
        let a = HashKind::Blake3.digest(b"first");
        let b = HashKind::Blake3.digest(b"second");
        let c = HashKind::Blake3.digest(b"third");
        let mut content = FILE_HEADER.to_vec();
        content.extend(encode_group(
            HashKind::Blake3,
            &[(a, 5), (b, 6)],
            0,
            b"firstSECOND",
            11,
        ));
        content.extend(encode_group(HashKind::Blake3, &[(c, 5)], 0, b"third", 5));
        let (t, path) = handmade_datadir(&content, "000000000002");
        let dd = DataDir::open(t.path(), None).unwrap();
        assert_eq!(dd.get(&c).unwrap().unwrap(), b"third");
        assert_eq!(dd.get(&a).unwrap(), None, "members of a bad group");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            content,
            "a record with a good checksum is never cut off"
        );
        let rep = dd.fsck().unwrap();
        assert_eq!(rep.problems.len(), 1, "{:?}", rep.problems);
        assert!(
            rep.problems[0].contains("offset 8:") && rep.problems[0].contains("digest"),
            "{:?}",
            rep.problems
        );
    }

    #[test]
    fn reindex_rebuilds_group_members() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let blocks: Vec<Vec<u8>> = (0..300u64)
            .map(|i| mail(i, if i % 7 == 0 { 30_000 } else { 1200 }))
            .collect();
        let hashes: Vec<Hash> = blocks.iter().map(|b| dd.add(b).unwrap().0).collect();
        dd.sync().unwrap();
        let before = dd.stats().unwrap();
        dd.reindex().unwrap();
        let after = dd.stats().unwrap();
        assert_eq!(
            (after.blocks, after.raw_bytes),
            (before.blocks, before.raw_bytes)
        );
        for (h, b) in hashes.iter().zip(&blocks) {
            assert_eq!(dd.get(h).unwrap().as_ref(), Some(b));
        }
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn groups_whose_dictionary_is_missing_are_left_for_later_not_cut() {
        let t = tempfile::tempdir().unwrap();
        let mut blocks = Vec::new();
        {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            add_until_trained(&dd, t.path());
            dd.sync().unwrap();
            // Small blocks in a group small enough (under 16 KiB) to be
            // compressed with the dictionary, never indexed below.
            for j in 0..8 {
                let b = mail(j, 1500);
                dd.add(&b).unwrap();
                blocks.push(b);
            }
        }
        let path = std::fs::read_dir(t.path().join("data"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let size = std::fs::metadata(&path).unwrap().len();
        let hidden = t.path().join("hidden");
        std::fs::rename(t.path().join("dicts"), &hidden).unwrap();
        std::fs::remove_dir_all(t.path().join("index")).unwrap();
        let h0 = HashKind::Sha3_256.digest(&blocks[0]);
        {
            // The whole tail waits: nothing indexed, nothing cut, and the
            // file is not appended to.
            let dd = DataDir::open(t.path(), None).unwrap();
            assert_eq!(dd.get(&h0).unwrap(), None);
            assert_eq!(
                dd.get(&HashKind::Sha3_256.digest(&text_block(0))).unwrap(),
                None
            );
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
            dd.add(b"a block for another datafile").unwrap();
            dd.sync().unwrap();
            assert_eq!(dd.datafile_names().unwrap().len(), 2);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
            // fsck says why.
            let rep = dd.fsck().unwrap();
            assert!(
                rep.problems
                    .iter()
                    .any(|p| p.contains("needs compression dictionary")),
                "{:?}",
                rep.problems
            );
        }
        let restore = || {
            std::fs::remove_dir_all(t.path().join("dicts")).unwrap();
            std::fs::rename(&hidden, t.path().join("dicts")).unwrap();
        };
        let all_there = |dd: &DataDir| {
            for b in &blocks {
                let h = HashKind::Sha3_256.digest(b);
                assert_eq!(dd.get(&h).unwrap().as_ref(), Some(b));
            }
            assert!(dd.fsck().unwrap().is_clean());
        };
        // With the dictionary back, the next open indexes the tail.
        restore();
        all_there(&DataDir::open(t.path(), None).unwrap());
        // A reindex without it indexes around what it cannot read.
        std::fs::rename(t.path().join("dicts"), &hidden).unwrap();
        let dd = DataDir::open(t.path(), None).unwrap();
        dd.reindex().unwrap();
        let first = HashKind::Sha3_256.digest(&text_block(0));
        assert!(dd.get(&first).unwrap().is_some(), "grouped before training");
        assert_eq!(dd.get(&h0).unwrap(), None);
        drop(dd);
        restore();
        let dd = DataDir::open(t.path(), None).unwrap();
        dd.reindex().unwrap();
        all_there(&dd);
    }

    #[test]
    fn a_small_block_of_another_hash_is_stored_alone() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let own = dd.add(b"hashed the store's way").unwrap().0;
        let other = HashKind::Blake3.digest(b"copied from a blake3 store");
        assert!(dd
            .add_hashed(&other, b"copied from a blake3 store")
            .unwrap());
        dd.sync().unwrap();
        let recs = records(&only_datafile(&dd));
        assert_eq!(recs.len(), 2);
        assert!(recs
            .iter()
            .any(|r| !r.header.is_group() && r.header.hash == other));
        assert!(recs
            .iter()
            .any(|r| r.header.is_group() && r.members[0].hash == own));
        dd.reindex().unwrap();
        assert_eq!(
            dd.get(&other).unwrap().unwrap(),
            b"copied from a blake3 store"
        );
        assert_eq!(dd.get(&own).unwrap().unwrap(), b"hashed the store's way");
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn each_thread_fills_a_group_of_its_own_and_a_sync_merges_what_is_left() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        // Two threads add in lock step; one adds enough for a full group.
        let n = GROUP_TARGET / 1500 + 10;
        let turn = std::sync::Barrier::new(2);
        let added: Vec<Vec<Hash>> = std::thread::scope(|sc| {
            let workers: Vec<_> = [(0u64, n), (1_000_000, 20)]
                .into_iter()
                .map(|(seed, count)| {
                    let (dd, turn) = (&dd, &turn);
                    sc.spawn(move || {
                        let mut hashes = Vec::new();
                        for i in 0..n as u64 {
                            if (i as usize) < count {
                                hashes.push(dd.add(&mail(seed + i, 1500)).unwrap().0);
                            }
                            turn.wait();
                        }
                        hashes
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        });
        dd.sync().unwrap();
        let recs = records(&only_datafile(&dd));
        let order: Vec<Vec<Hash>> = recs
            .iter()
            .map(|r| r.members.iter().map(|m| m.hash).collect())
            .collect();
        // The full group holds only the first thread's blocks, in order;
        // the sync writes both threads' rest as one group, each in order.
        assert_eq!(order.len(), 2, "{} groups", order.len());
        let full = added[0].len() - (n - GROUP_TARGET.div_ceil(1500));
        assert_eq!(order[0], added[0][..full]);
        // (The second thread's group was opened first.)
        let mut rest = added[1].clone();
        rest.extend_from_slice(&added[0][full..]);
        assert_eq!(order[1], rest);
        for h in added.iter().flatten() {
            assert!(dd.get(h).unwrap().is_some());
        }
    }

    #[test]
    fn many_threads_add_and_read_at_once() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let block = |i: u64| {
            mail(
                i,
                if i.is_multiple_of(13) {
                    20_000
                } else {
                    700 + (i % 5) as usize * 300
                },
            )
        };
        // Neighbouring threads add overlapping ranges: the same blocks race.
        let new: u64 = std::thread::scope(|sc| {
            let workers: Vec<_> = (0..8u64)
                .map(|t| {
                    let dd = &dd;
                    sc.spawn(move || {
                        let mut new = 0;
                        for i in t * 300..t * 300 + 450 {
                            let b = block(i);
                            let (h, n) = dd.add(&b).unwrap();
                            new += u64::from(n);
                            assert_eq!(dd.get(&h).unwrap().unwrap(), b);
                            if i % 50 == 0 {
                                dd.sync().unwrap();
                            }
                        }
                        new
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        let distinct = 7 * 300 + 450;
        assert_eq!(new, distinct);
        dd.sync().unwrap();
        assert_eq!(dd.stats().unwrap().blocks, distinct);
        drop(dd);
        let dd = DataDir::open(t.path(), None).unwrap();
        for i in 0..distinct {
            let b = block(i);
            let h = HashKind::Sha3_256.digest(&b);
            assert_eq!(dd.get(&h).unwrap().unwrap(), b);
        }
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn metadata_blocks_are_stored_alone_and_data_blocks_in_groups() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let (data, _) = dd.add(&mail(1, 1536)).unwrap();
        let (meta, _) = dd.add_as(&mail(2, 1536), BlockClass::Meta).unwrap();
        dd.sync().unwrap();
        let member = |h: &Hash| match dd.lookup(h, false).unwrap() {
            Some(Place::Disk(loc)) => loc.member.is_some(),
            _ => panic!("{h} not on disk after sync"),
        };
        assert!(member(&data), "a small data block joins a group");
        assert!(!member(&meta), "a metadata block is a record of its own");
        assert_eq!(dd.get(&meta).unwrap().unwrap(), mail(2, 1536));
    }

    #[test]
    fn metadata_goes_to_meta_datafiles_and_each_kind_is_reused() {
        let t = tempfile::tempdir().unwrap();
        let names = || {
            let mut v: Vec<String> = std::fs::read_dir(t.path().join("data"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        let file_of = |dd: &DataDir, h: &Hash| match dd.lookup(h, false).unwrap() {
            Some(Place::Disk(loc)) => loc.file,
            _ => panic!("{h} not on disk after sync"),
        };
        let big = |i: u64| mail(i, 40 << 10);
        let mut written = Vec::new();
        for round in 0..2u64 {
            let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
            let (d1, _) = dd.add(&big(10 * round)).unwrap();
            let (d2, _) = dd.add(&mail(10 * round + 1, 1536)).unwrap();
            let (m1, _) = dd.add_as(&big(10 * round + 2), BlockClass::Meta).unwrap();
            let (m2, _) = dd
                .add_as(&mail(10 * round + 3, 200), BlockClass::Meta)
                .unwrap();
            dd.sync().unwrap();
            let (data_file, meta_file) = (file_of(&dd, &d1), file_of(&dd, &m1));
            assert_ne!(data_file, meta_file);
            assert_eq!(file_of(&dd, &d2), data_file);
            assert_eq!(file_of(&dd, &m2), meta_file);
            written.extend([(d1, big(10 * round)), (m1, big(10 * round + 2))]);
            written.extend([(d2, mail(10 * round + 1, 1536))]);
            written.extend([(m2, mail(10 * round + 3, 200))]);
            // The second process appends to the same two files.
            let n = names();
            assert_eq!(n.len(), 2, "{n:?}");
            assert!(n[0].ends_with(".vtd") && !n[0].starts_with(META_PREFIX));
            assert!(n[1].starts_with(META_PREFIX) && n[1].ends_with(".vtd"));
        }
        let dd = DataDir::open(t.path(), None).unwrap();
        for (h, b) in &written {
            assert_eq!(&dd.get(h).unwrap().unwrap(), b);
        }
        assert!(dd.fsck().unwrap().is_clean());
        // The index is derived data for both kinds of file.
        dd.reindex().unwrap();
        for (h, b) in &written {
            assert_eq!(&dd.get(h).unwrap().unwrap(), b);
        }
    }

    #[test]
    fn small_text_blocks_take_far_fewer_bytes_in_groups() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let blocks: Vec<Vec<u8>> = (0..1000).map(|i| mail(i, 1536)).collect();
        for b in &blocks {
            dd.add(b).unwrap();
        }
        dd.sync().unwrap();
        let stored = dd.stats().unwrap().stored_bytes;
        // What a record per block would take (no dictionary either way:
        // 1.5 MB of samples is too few to train one).
        let alone: usize = blocks
            .iter()
            .map(|b| datafile::RECORD_HEADER + zstd::bulk::compress(b, 3).unwrap().len())
            .sum();
        let raw = 1000 * 1536;
        eprintln!("1000 x 1.5 KiB: raw {raw}, a record each {alone}, grouped {stored}");
        // Measured: 714203 bytes alone; grouped with 37-byte member table
        // entries, 427611 in 64 KiB groups and 418964 in 128 KiB ones;
        // with lengths only, 371450 in 256 KiB groups.
        assert!(alone > 650_000, "alone: {alone} bytes");
        assert!(stored < 480_000, "grouped: {stored} bytes");
    }

    #[test]
    fn new_blocks_among_many_stored_ones_are_compressed_harder() {
        // The same history in two stores; then 300 new messages, offered
        // with the 3000 stored ones again (an incremental import) to one,
        // alone (as a first import would) to the other.
        let old: Vec<Vec<u8>> = (0..3000).map(|i| mail(i, 1536)).collect();
        let new: Vec<Vec<u8>> = (3000..3300).map(|i| mail(i, 1536)).collect();
        let added = |reoffer: bool| {
            let t = tempfile::tempdir().unwrap();
            {
                let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
                for b in &old {
                    dd.add(b).unwrap();
                }
                dd.sync().unwrap();
            }
            let dd = DataDir::open(t.path(), None).unwrap();
            let before = dd.stats().unwrap().stored_bytes;
            if reoffer {
                for b in &old {
                    assert!(!dd.add(b).unwrap().1);
                }
            }
            let hashes: Vec<Hash> = new.iter().map(|b| dd.add(b).unwrap().0).collect();
            dd.sync().unwrap();
            let added = dd.stats().unwrap().stored_bytes - before;
            drop(dd);
            let dd = DataDir::open(t.path(), None).unwrap();
            for (h, b) in hashes.iter().zip(&new) {
                assert_eq!(&dd.get(h).unwrap().unwrap(), b);
            }
            assert!(dd.fsck().unwrap().is_clean());
            added
        };
        let incremental = added(true);
        let first = added(false);
        eprintln!("300 new messages: {incremental} bytes among 3000 stored, {first} alone");
        assert!(
            (incremental as f64) < 0.95 * first as f64,
            "{incremental} against {first}"
        );
    }

    /// `base` with a few bytes changed at `seed`-dependent places.
    fn edited(base: &[u8], seed: u64) -> Vec<u8> {
        let mut v = base.to_vec();
        for k in 0..3u64 {
            let at = ((seed * 7919 + k * 104_729) % (v.len() as u64 - 16)) as usize;
            v[at..at + 8].copy_from_slice(&(seed + k).to_le_bytes());
        }
        v
    }

    /// The base named by the delta record of `h`, if it is one.
    fn base_of(dd: &DataDir, h: &Hash) -> Option<Hash> {
        let loc = dd.index.get(h).unwrap().unwrap();
        let (path, f) = dd.reader(loc.file).unwrap();
        match read_record(&*f, &path, loc.offset, None, h, &dd.dicts, Verify::Hash).unwrap() {
            Stored::Delta { base, .. } => Some(base),
            Stored::Block(_) => None,
        }
    }

    #[test]
    fn near_copies_are_stored_as_deltas_of_one_level_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        // A large block and a small (grouped) one, then near copies.
        let (big, small) = (noise(1, 100 << 10), noise(2, 6000));
        let (hb, _) = dd.add(&big).unwrap();
        let (hs, _) = dd.add(&small).unwrap();
        dd.sync().unwrap();
        let big2 = edited(&big, 1);
        let small2 = edited(&small, 2);
        let (hb2, _) = dd.add(&big2).unwrap();
        let (hs2, _) = dd.add(&small2).unwrap();
        // A near copy of a delta: its base is the first block, not the delta.
        let big3 = edited(&big2, 3);
        let (hb3, _) = dd.add(&big3).unwrap();
        dd.sync().unwrap();
        let st = dd.stats().unwrap();
        assert_eq!(st.delta_blocks, 3, "{st:?}");
        assert_eq!(st.delta_raw_bytes, (big2.len() * 2 + small2.len()) as u64);
        assert!(st.delta_stored_bytes < 1000, "{st:?}");
        assert!(st.hint_bytes > 0);
        assert_eq!(base_of(&dd, &hb2), Some(hb));
        assert_eq!(base_of(&dd, &hs2), Some(hs));
        assert_eq!(base_of(&dd, &hb3), Some(hb));
        assert_eq!(base_of(&dd, &hb), None);
        for (h, d) in [(&hb2, &big2), (&hs2, &small2), (&hb3, &big3)] {
            assert_eq!(&dd.get(h).unwrap().unwrap(), d);
            assert_eq!(&dd.get_shared(h).unwrap().unwrap()[..], &d[..]);
            assert_eq!(dd.get_packed(h).unwrap(), None);
        }
        let rep = dd.fsck().unwrap();
        assert!(rep.is_clean(), "{:?}", rep.problems);
        drop(dd);
        // Reopened, and with the index rebuilt from the datafiles.
        let dd = DataDir::open(t.path(), None).unwrap();
        dd.reindex().unwrap();
        assert_eq!(dd.stats().unwrap().delta_blocks, 3);
        assert_eq!(dd.get(&hb3).unwrap().unwrap(), big3);
        assert!(dd.fsck().unwrap().is_clean());
    }

    #[test]
    fn unrelated_blocks_and_fast_compression_make_no_deltas() {
        let t = tempfile::tempdir().unwrap();
        let mut dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        dd.add(&noise(1, 100 << 10)).unwrap();
        dd.sync().unwrap();
        dd.add(&noise(2, 100 << 10)).unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.stats().unwrap().delta_blocks, 0);
        dd.set_compression(Compression::Fast);
        let (h, _) = dd.add(&edited(&noise(1, 100 << 10), 5)).unwrap();
        dd.sync().unwrap();
        assert_eq!(dd.stats().unwrap().delta_blocks, 0);
        assert_eq!(base_of(&dd, &h), None);
    }

    /// Stores 64 KiB of noise from `seed`, then its `n` near copies
    /// `edited(&base, 1..=n)`, which are stored as its deltas; returns the
    /// base, its hash and the copies' hashes.
    fn base_and_deltas(dd: &DataDir, seed: u64, n: u64) -> (Vec<u8>, Hash, Vec<Hash>) {
        let base = noise(seed, 64 << 10);
        let (hb, _) = dd.add(&base).unwrap();
        dd.sync().unwrap();
        let deltas: Vec<Hash> = (1..=n)
            .map(|i| dd.add(&edited(&base, i)).unwrap().0)
            .collect();
        dd.sync().unwrap();
        assert_eq!(dd.stats().unwrap().delta_blocks, n);
        (base, hb, deltas)
    }

    #[test]
    fn deltas_sharing_a_base_decode_it_once() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let (base, hb, deltas) = base_and_deltas(&dd, 9, 4);
        let dd = DataDir::open(t.path(), None).unwrap();
        for (i, h) in (1..).zip(&deltas) {
            let d = edited(&base, i);
            assert_eq!(base_of(&dd, h), Some(hb));
            assert_eq!(&dd.get_shared(h).unwrap().unwrap()[..], &d[..]);
        }
        // The first delta decoded the base; the other three found it kept.
        assert_eq!(dd.bases.hits(), 3);
        assert_eq!(dd.get(&hb).unwrap().unwrap(), base);
    }

    #[test]
    fn a_damaged_base_is_reported_for_every_delta_and_never_returned() {
        let t = tempfile::tempdir().unwrap();
        let dd = DataDir::open(t.path(), Some(HashKind::Sha3_256)).unwrap();
        let (_, hb, deltas) = base_and_deltas(&dd, 7, 3);
        let loc = dd.index.get(&hb).unwrap().unwrap();
        let path = dd.reader(loc.file).unwrap().0;
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.write_all_at(&[0x55], loc.offset + 52 + 1000).unwrap();
        drop(f);
        let dd = DataDir::open(t.path(), None).unwrap();
        for h in &deltas {
            let err = dd.get(h).unwrap_err().to_string();
            assert!(
                err.contains(&h.to_string()) && err.contains("base"),
                "{err}"
            );
        }
        let rep = dd.fsck().unwrap();
        for h in deltas.iter().chain([&hb]) {
            assert!(
                rep.problems.iter().any(|p| p.contains(&h.to_string())),
                "{h} not reported: {:?}",
                rep.problems
            );
        }
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "datadir",
        summary: "a DataDir: append-only datafiles and an index, on a local filesystem",
        settings: &["path", "hash", "verify", "compression"],
        order: 0,
    }
}
