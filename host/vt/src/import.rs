//! `vt import`: a file tree into Dirents and blocks.
//!
//! Directories are walked in parallel (rayon fork-join: each directory's
//! entries are imported concurrently). A file whose size, mtime, ctime and
//! inode match its Dirent in the previous snapshot is not read again.
//! Hard-linked files are stored once, in the snapshot's hard link table.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};

use rayon::prelude::*;
use uuid::Uuid;
use vt_core::blockify::Blockifier;
use vt_core::dir::{encode_dir, read_dir};
use vt_core::dirent::SpecialKind;
use vt_core::scanner::{ScannerSource, SNIFF_LEN};
use vt_core::Scanner;
use vt_core::{Dirent, DirentKind, Error, Meta, Result};

use crate::meta::{meta_of, Names};
use crate::progress::Progress;

/// What became of a hard-linked file: its table UUID, or `None` if it
/// could not be read (then every name of it is left out).
type LinkSlot = Arc<OnceLock<Option<Uuid>>>;

/// Hard link bookkeeping for one import.
#[derive(Default)]
struct HardLinks {
    /// (dev, ino) -> the file's slot; the first name to arrive fills it,
    /// the others wait for it.
    seen: HashMap<(u64, u64), LinkSlot>,
    /// The table: UUID -> target Dirent (content and metadata).
    table: Vec<Dirent>,
}

/// Imports trees into a store.
pub struct Importer<'a> {
    bf: Blockifier<'a>,
    names: Names,
    links: Mutex<HardLinks>,
    /// Hard link table of the previous snapshot.
    prev_links: HashMap<Uuid, Dirent>,
    progress: &'a Progress,
    /// Picks the scanner for each file read.
    scanners: &'a dyn ScannerSource,
    /// Directories never to descend into (the store's own), as (dev, ino).
    exclude: Vec<(u64, u64)>,
    /// Files that could not be read (warned about each).
    pub unreadable: AtomicU64,
    /// Files reused from the previous snapshot without reading.
    pub reused: AtomicU64,
    /// Files read.
    pub files: AtomicU64,
}

/// The last component of `path` as bytes (a Dirent's name).
fn name_of(path: &Path) -> &[u8] {
    path.file_name().map(|n| n.as_bytes()).unwrap_or_default()
}

fn same_file(prev: &Dirent, md: &Metadata) -> bool {
    prev.block().is_some_and(|b| b.span() == md.len()) && same_inode(prev, md)
}

/// Whether `md` is the inode `prev` was made from, untouched since: same
/// inode number, mtime and ctime (any change of mode, owner or xattrs
/// sets the ctime).
fn same_inode(prev: &Dirent, md: &Metadata) -> bool {
    let m = &prev.meta;
    m.ino == Some(md.ino())
        && m.mtime.secs == md.mtime()
        && m.mtime.nanos == md.mtime_nsec() as u32
        && m.ctime.secs == md.ctime()
        && m.ctime.nanos == md.ctime_nsec() as u32
}

impl<'a> Importer<'a> {
    /// An importer adding through `bf`; `prev` is the previous snapshot of
    /// the same tree, if any.
    pub fn new(
        bf: Blockifier<'a>,
        prev: Option<&Dirent>,
        progress: &'a Progress,
        scanners: &'a dyn ScannerSource,
    ) -> Self {
        let mut prev_links = HashMap::new();
        if let Some(DirentKind::Dir {
            hardlinks: Some(h), ..
        }) = prev.map(|d| &d.kind)
        {
            match read_dir(bf.store(), h) {
                Ok(entries) => {
                    for e in entries {
                        if let Some(u) = e.uuid {
                            prev_links.insert(u, e);
                        }
                    }
                }
                Err(e) => tracing::warn!("previous snapshot's hard link table unreadable: {e}"),
            }
        }
        Importer {
            bf,
            names: Names::default(),
            links: Mutex::default(),
            prev_links,
            progress,
            scanners,
            exclude: Vec::new(),
            unreadable: AtomicU64::new(0),
            reused: AtomicU64::new(0),
            files: AtomicU64::new(0),
        }
    }

    /// Never descends into `dir` (if it exists): used to keep the store
    /// out of an import of a tree that contains it.
    pub fn exclude(&mut self, dir: &Path) {
        if let Ok(md) = std::fs::metadata(dir) {
            self.exclude.push((md.dev(), md.ino()));
        }
    }

    fn warn_unreadable(&self, path: &Path, what: &str, e: impl std::fmt::Display) {
        self.unreadable.fetch_add(1, Relaxed);
        self.progress
            .warn(&format!("{}: {what}: {e}; skipped", path.display()));
    }

    /// Imports `path` (a directory, file or symlink) as a snapshot's top
    /// Dirent.
    pub fn import_top(&self, path: &Path, prev: Option<&Dirent>) -> Result<Dirent> {
        match walk_pool() {
            Some(pool) => pool.install(|| self.import_top_here(path, prev)),
            None => self.import_top_here(path, prev),
        }
    }

    fn import_top_here(&self, path: &Path, prev: Option<&Dirent>) -> Result<Dirent> {
        let md = std::fs::symlink_metadata(path)
            .map_err(|e| Error::io(format!("cannot import {}", path.display()), e))?;
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_else(|| b".".to_vec());
        let top = if md.is_file() {
            // A lone file is its own snapshot, hard-linked elsewhere or not.
            let prev = prev.filter(|p| matches!(p.kind, DirentKind::File { .. }));
            self.import_file(path, &md, prev).map(|r| {
                r.map(|block| Dirent {
                    name: name.clone(),
                    uuid: None,
                    kind: DirentKind::File { block },
                    meta: meta_of(path, &md, &self.names),
                })
            })
        } else {
            self.import_entry(path, name, md, prev).transpose()
        };
        let mut top = top
            .transpose()?
            .ok_or_else(|| Error::Store(format!("{} could not be imported", path.display())))?;
        let table = std::mem::take(
            &mut self
                .links
                .lock()
                .map_err(|_| Error::Store("hard link table lock poisoned".into()))?
                .table,
        );
        if !table.is_empty() {
            let block = encode_dir(&self.bf, table)?;
            if let DirentKind::Dir { hardlinks, .. } = &mut top.kind {
                *hardlinks = Some(block);
            }
        }
        Ok(top)
    }

    /// One entry; `Ok(None)` when it was skipped with a warning.
    fn import_entry(
        &self,
        path: &Path,
        name: Vec<u8>,
        md: Metadata,
        prev: Option<&Dirent>,
    ) -> Result<Option<Dirent>> {
        let ft = md.file_type();
        let meta = || meta_of(path, &md, &self.names);
        let d = if ft.is_dir() {
            if self.exclude.contains(&(md.dev(), md.ino())) {
                self.progress.warn(&format!(
                    "{}: this is the store itself; not imported",
                    path.display()
                ));
                return Ok(None);
            }
            let prev_dir = prev.filter(|p| p.is_dir());
            match self.import_dir(path, prev_dir)? {
                Some(block) => Dirent {
                    name,
                    uuid: None,
                    kind: DirentKind::Dir {
                        block,
                        hardlinks: None,
                    },
                    // An untouched directory inode keeps its recorded
                    // metadata (no xattr or owner-name look-ups).
                    meta: match prev_dir.filter(|p| same_inode(p, &md)) {
                        Some(p) => p.meta.clone(),
                        None => meta(),
                    },
                },
                None => return Ok(None),
            }
        } else if ft.is_file() {
            if md.nlink() > 1 {
                return self.import_hardlink(path, name, md, prev);
            }
            if let Some(p) = self.unchanged(prev, &md) {
                // Unchanged ctime: mode, owner and xattrs are unchanged too,
                // so the whole Dirent is reused.
                return Ok(Some(p.clone()));
            }
            match self.import_file(path, &md, prev) {
                Some(r) => Dirent {
                    name,
                    uuid: None,
                    kind: DirentKind::File { block: r? },
                    meta: meta(),
                },
                None => return Ok(None),
            }
        } else if ft.is_symlink() {
            match std::fs::read_link(path) {
                Ok(t) => Dirent {
                    name,
                    uuid: None,
                    kind: DirentKind::Symlink {
                        target: t.as_os_str().as_bytes().to_vec(),
                    },
                    meta: meta(),
                },
                Err(e) => {
                    self.warn_unreadable(path, "cannot read symlink", e);
                    return Ok(None);
                }
            }
        } else {
            let kind = if ft.is_fifo() {
                SpecialKind::Fifo
            } else if ft.is_socket() {
                SpecialKind::Socket
            } else if ft.is_char_device() {
                SpecialKind::CharDevice
            } else {
                SpecialKind::BlockDevice
            };
            self.progress.warn(&format!(
                "{}: special file ({kind:?}) recorded as such, contents not read",
                path.display()
            ));
            Dirent {
                name,
                uuid: None,
                kind: DirentKind::Special {
                    kind,
                    rdev: md.rdev(),
                },
                meta: meta(),
            }
        };
        Ok(Some(d))
    }

    /// `prev` if it is a file Dirent that `md` shows unchanged (counted as
    /// reused: the file will not be read).
    fn unchanged<'p>(&self, prev: Option<&'p Dirent>, md: &Metadata) -> Option<&'p Dirent> {
        let p = prev.filter(|p| matches!(p.kind, DirentKind::File { .. }) && same_file(p, md))?;
        self.reused.fetch_add(1, Relaxed);
        self.progress.add_bytes(md.len());
        Some(p)
    }

    /// Imports a batch of small regular files of one directory: reads them
    /// whole and blockifies them together. Files a scanner wants, or that
    /// change while read, go the one-file way.
    fn import_small_files(
        &self,
        batch: &[SmallFile],
        prev_entries: &PrevEntries,
    ) -> Result<Vec<Dirent>> {
        let mut out = Vec::with_capacity(batch.len());
        let mut read: Vec<(&SmallFile, Vec<u8>)> = Vec::new();
        for f in batch {
            match self.read_small(f) {
                SmallRead::Content(data) => read.push((f, data)),
                SmallRead::Skipped => {}
                SmallRead::OneByOne => {
                    let key = name_of(&f.path);
                    let prev = prev_entries.get(key);
                    out.extend(self.import_entry(&f.path, key.to_vec(), f.md.clone(), prev)?);
                }
            }
        }
        let contents: Vec<&[u8]> = read.iter().map(|(_, d)| d.as_slice()).collect();
        let blocks = self.bf.blockify_many(&contents)?;
        for ((f, _), block) in read.iter().zip(blocks) {
            out.push(Dirent {
                name: name_of(&f.path).to_vec(),
                uuid: None,
                kind: DirentKind::File { block },
                meta: meta_of(&f.path, &f.md, &self.names),
            });
        }
        Ok(out)
    }

    /// Reads a small file whole, checking that it did not change meanwhile
    /// (size and mtime as the directory walk saw them, before and after).
    fn read_small(&self, f: &SmallFile) -> SmallRead {
        let file = match File::open(&f.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.warn_unreadable(&f.path, "vanished during import", e);
                return SmallRead::Skipped;
            }
            Err(e) => {
                self.warn_unreadable(&f.path, "cannot open", e);
                return SmallRead::Skipped;
            }
        };
        let len = f.md.len();
        if self.scanner_for(&f.path, &file, len).is_some() {
            return SmallRead::OneByOne;
        }
        let mut data = Vec::with_capacity(len as usize + 1);
        // One byte more than expected shows a file that grew.
        if let Err(e) =
            std::io::Read::read_to_end(&mut std::io::Read::take(&file, len + 1), &mut data)
        {
            self.warn_unreadable(&f.path, "read error", e);
            return SmallRead::Skipped;
        }
        let same = |m: &Metadata| {
            m.len() == len && m.mtime() == f.md.mtime() && m.mtime_nsec() == f.md.mtime_nsec()
        };
        if data.len() as u64 != len || !file.metadata().is_ok_and(|m| same(&m)) {
            return SmallRead::OneByOne;
        }
        self.files.fetch_add(1, Relaxed);
        self.progress.add_bytes(len);
        SmallRead::Content(data)
    }

    /// A regular file's content; `None` if it was skipped with a warning.
    /// Reuses the previous Dirent's content when the file is unchanged.
    fn import_file(
        &self,
        path: &Path,
        md: &Metadata,
        prev: Option<&Dirent>,
    ) -> Option<Result<vt_core::BlockRef>> {
        if let Some(p) = self.unchanged(prev, md) {
            return p.block().cloned().map(Ok);
        }
        self.files.fetch_add(1, Relaxed);
        for attempt in 0..2 {
            let f = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.warn_unreadable(path, "vanished during import", e);
                    return None;
                }
                Err(e) => {
                    self.warn_unreadable(path, "cannot open", e);
                    return None;
                }
            };
            // The directory walk's lstat serves as "before" the first time.
            let before = if attempt == 0 {
                Some(md.clone())
            } else {
                f.metadata().ok()
            };
            // Read no more than the size seen before reading, so a file
            // that grows faster than we read still ends; growth is noticed
            // below and reported.
            let expected = before.as_ref().map_or(md.len(), |b| b.len());
            let mut reader = ProgressReader {
                inner: std::io::Read::take(&f, expected),
                progress: self.progress,
                failed: None,
            };
            let mut scanner = self.scanner_for(path, &f, expected);
            let scan = scanner.as_mut().map(|b| &mut **b as &mut dyn Scanner);
            let r = match self.bf.blockify_sized(&mut reader, Some(expected), scan) {
                Ok(r) => r,
                Err(e) => {
                    // A read error skips the file; a store error ends the import.
                    if let Some(re) = reader.failed {
                        self.warn_unreadable(path, "read error", re);
                        return None;
                    }
                    return Some(Err(e));
                }
            };
            let after = f.metadata().ok();
            let changed = match (&before, &after) {
                (Some(b), Some(a)) => {
                    b.len() != a.len()
                        || b.mtime() != a.mtime()
                        || b.mtime_nsec() != a.mtime_nsec()
                        || a.len() != r.span()
                }
                _ => false,
            };
            if !changed {
                return Some(Ok(r));
            }
            if attempt == 1 {
                self.progress.warn(&format!(
                    "{}: changed while being read; stored as read",
                    path.display()
                ));
                return Some(Ok(r));
            }
        }
        None
    }

    /// The scanner for a file of `size` bytes: only a file longer than the
    /// minimum block can be cut where a scanner proposes.
    fn scanner_for(&self, path: &Path, f: &File, size: u64) -> Option<Box<dyn Scanner>> {
        if size <= self.bf.params().scan_min as u64 {
            return None;
        }
        let mut head = [0u8; SNIFF_LEN];
        let mut n = 0;
        while n < head.len() {
            match f.read_at(&mut head[n..], n as u64) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        self.scanners.scanner_for(path, &head[..n])
    }

    /// One name of a hard-linked file. The first name to arrive reads the
    /// file into the hard link table; every name becomes a HardLink Dirent.
    fn import_hardlink(
        &self,
        path: &Path,
        name: Vec<u8>,
        md: Metadata,
        prev: Option<&Dirent>,
    ) -> Result<Option<Dirent>> {
        let poisoned = || Error::Store("hard link table lock poisoned".into());
        let prev_target = match prev.map(|p| &p.kind) {
            Some(DirentKind::HardLink { uuid }) => self
                .prev_links
                .get(uuid)
                .filter(|t| t.meta.ino == Some(md.ino())),
            _ => None,
        };
        let slot: LinkSlot = self
            .links
            .lock()
            .map_err(|_| poisoned())?
            .seen
            .entry((md.dev(), md.ino()))
            .or_default()
            .clone();
        let mut failure = None;
        let uuid = *slot.get_or_init(|| {
            let block = match self.import_file(path, &md, prev_target)? {
                Ok(b) => b,
                Err(e) => {
                    failure = Some(e);
                    return None;
                }
            };
            let uuid = prev_target
                .and_then(|t| t.uuid)
                .unwrap_or_else(Uuid::new_v4);
            let target = Dirent {
                name: uuid.to_string().into_bytes(),
                uuid: Some(uuid),
                kind: DirentKind::File { block },
                meta: meta_of(path, &md, &self.names),
            };
            match self.links.lock() {
                Ok(mut l) => {
                    l.table.push(target);
                    Some(uuid)
                }
                Err(_) => {
                    failure = Some(poisoned());
                    None
                }
            }
        });
        if let Some(e) = failure {
            return Err(e);
        }
        Ok(uuid.map(|uuid| Dirent {
            name,
            uuid: None,
            kind: DirentKind::HardLink { uuid },
            meta: Meta::default(),
        }))
    }

    /// The entries of directory `path` with their metadata; `None` (after a
    /// warning) when it cannot be listed.
    ///
    /// An entry's metadata is read relative to the open directory (statx
    /// on its descriptor), which spares the kernel a walk of the whole
    /// path for each. The stats go in inode-number order, so a cold walk
    /// reads each directory's inode table blocks in one sweep.
    #[allow(clippy::type_complexity)]
    fn list_and_stat(
        &self,
        path: &Path,
    ) -> Option<Vec<(std::path::PathBuf, std::io::Result<Metadata>)>> {
        let rd = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => {
                self.warn_unreadable(path, "cannot read directory", e);
                return None;
            }
        };
        let mut listed = Vec::new();
        for ent in rd {
            match ent {
                Ok(e) => listed.push(e),
                Err(e) => self.warn_unreadable(path, "directory listing failed", e),
            }
        }
        // (The order of entries does not matter: a Dir is encoded sorted.)
        listed.sort_unstable_by_key(|e| e.ino());
        Some(
            listed
                .par_iter()
                .map(|e| (e.path(), e.metadata()))
                .collect(),
        )
    }

    /// The previous snapshot's entries of a directory (none when there is
    /// no previous snapshot or it cannot be read).
    fn previous_entries(&self, path: &Path, prev: Option<&Dirent>) -> PrevEntries {
        let Some(b) = prev.and_then(Dirent::block) else {
            return PrevEntries::default();
        };
        match read_dir(self.bf.store(), b) {
            Ok(v) => {
                // The walk goes into the subdirectories next: a remote store
                // fetches all their previous listings at once.
                let subdirs: Vec<vt_core::Hash> = v
                    .iter()
                    .filter(|d| d.is_dir())
                    .filter_map(|d| match d.block() {
                        Some(vt_core::BlockRef::Direct { hash, .. })
                        | Some(vt_core::BlockRef::Indirect { hash, .. }) => Some(*hash),
                        _ => None,
                    })
                    .collect();
                if !subdirs.is_empty() {
                    self.bf.store().prefetch(&subdirs);
                }
                PrevEntries::new(v)
            }
            Err(e) => {
                tracing::warn!(
                    "{}: previous snapshot unreadable ({e}); reading all files",
                    path.display()
                );
                PrevEntries::default()
            }
        }
    }

    /// A directory's entries, imported in parallel, as Dir content; `None`
    /// if the directory cannot be listed (warned about).
    fn import_dir(&self, path: &Path, prev: Option<&Dirent>) -> Result<Option<vt_core::BlockRef>> {
        // The previous snapshot's listing comes from the store while the
        // directory is listed and its entries stat'ed: on a cold re-import
        // both wait on the disk.
        let (stats, prev_entries) = rayon::join(
            || self.list_and_stat(path),
            || self.previous_entries(path, prev),
        );
        let Some(stats) = stats else {
            return Ok(None);
        };
        // Unchanged files (not hard-linked) are the previous snapshot's
        // Dirents, borrowed. Small regular files that must be read go in
        // batches whose blocks are hashed together (SHA3 four at a time);
        // the others one by one.
        let mut all: Vec<Cow<'_, Dirent>> = Vec::new();
        let mut batched: Vec<SmallFile> = Vec::new();
        let mut single: Vec<(std::path::PathBuf, std::io::Result<Metadata>)> = Vec::new();
        for (p, md) in stats {
            let prev = prev_entries.get(name_of(&p));
            if let Ok(m) = &md {
                if m.is_file() && m.nlink() == 1 {
                    if let Some(d) = self.unchanged(prev, m) {
                        all.push(Cow::Borrowed(d));
                        continue;
                    }
                }
            }
            let to_read = md
                .as_ref()
                .is_ok_and(|md| md.is_file() && !prev.is_some_and(|d| same_file(d, md)));
            if to_read && md.as_ref().is_ok_and(|md| md.len() > 0) {
                readahead(&p);
            }
            let batch = to_read
                && md
                    .as_ref()
                    .is_ok_and(|md| md.nlink() == 1 && md.len() <= SMALL_FILE);
            match md {
                Ok(md) if batch => batched.push(SmallFile { path: p, md }),
                md => single.push((p, md)),
            }
        }
        let (from_batches, from_single) = rayon::join(
            || -> Result<Vec<Cow<'_, Dirent>>> {
                let parts: Vec<Vec<Dirent>> = batched
                    .par_chunks(SMALL_BATCH)
                    .map(|b| self.import_small_files(b, &prev_entries))
                    .collect::<Result<_>>()?;
                Ok(parts.into_iter().flatten().map(Cow::Owned).collect())
            },
            || -> Result<Vec<Cow<'_, Dirent>>> {
                let entries: Vec<Option<Cow<'_, Dirent>>> = single
                    .into_par_iter()
                    .map(|(p, md)| {
                        let md = match md {
                            Ok(md) => md,
                            Err(e) => {
                                self.warn_unreadable(&p, "vanished during import", e);
                                return Ok(None);
                            }
                        };
                        let key = name_of(&p);
                        let prev = prev_entries.get(key);
                        Ok(self
                            .import_entry(&p, key.to_vec(), md, prev)?
                            .map(Cow::Owned))
                    })
                    .collect::<Result<_>>()?;
                Ok(entries.into_iter().flatten().collect())
            },
        );
        all.extend(from_batches?);
        all.extend(from_single?);
        // Nothing changed here (same names, every entry as it was): the
        // previous block is this directory's block; encoding and hashing
        // it again would give the same.
        if let Some(b) = prev.and_then(Dirent::block) {
            let as_before = |e: &Cow<'_, Dirent>| match e {
                Cow::Borrowed(_) => true,
                Cow::Owned(d) => prev_entries.get(&d.name) == Some(d),
            };
            if all.len() == prev_entries.len() && all.iter().all(as_before) {
                return Ok(Some(b.clone()));
            }
        }
        let entries: Vec<Dirent> = all.into_iter().map(Cow::into_owned).collect();
        encode_dir(&self.bf, entries).map(Some)
    }
}

/// A directory's entries in the previous snapshot, sorted by name (as a
/// Dir is encoded), looked up by binary search.
#[derive(Default)]
struct PrevEntries(Vec<Dirent>);

impl PrevEntries {
    fn new(mut v: Vec<Dirent>) -> Self {
        if !v.is_sorted_by(|a, b| a.name <= b.name) {
            v.sort_by(|a, b| a.name.cmp(&b.name));
        }
        PrevEntries(v)
    }

    fn get(&self, name: &[u8]) -> Option<&Dirent> {
        let i = self
            .0
            .binary_search_by(|d| d.name.as_slice().cmp(name))
            .ok()?;
        Some(&self.0[i])
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Regular files up to this size are read whole and imported in batches
/// of [`SMALL_BATCH`], their blocks hashed together.
const SMALL_FILE: u64 = 256 << 10;
/// Files per batch: with blocks of several files in hand SHA3 runs four at
/// a time (a kernel tree's files are mostly one block each).
const SMALL_BATCH: usize = 16;

/// A small regular file to read and import with others.
struct SmallFile {
    path: std::path::PathBuf,
    md: Metadata,
}

/// What reading a small file gave.
enum SmallRead {
    /// Its content, read whole while it did not change.
    Content(Vec<u8>),
    /// It needs the one-file path (a scanner wants it, or it changed).
    OneByOne,
    /// It was skipped with a warning.
    Skipped,
}

/// A thread pool for walking a tree, with twice as many threads as cores:
/// stat and directory reads wait on the disk, and a cold walk finishes
/// sooner with several requests in flight. More threads cost CPU: on a
/// kernel tree (2 cores) an unchanged cold re-import took 1.6 s with 2
/// threads, 1.4 s with 4 and 1.3 s with 8, but the first import 14.4 s,
/// 14.9 s and 16.1 s (idle rayon workers spin looking for work). `None`
/// (use the global pool) when `RAYON_NUM_THREADS` is set or the pool
/// cannot start.
fn walk_pool() -> Option<rayon::ThreadPool> {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    rayon::ThreadPoolBuilder::new()
        .num_threads((cores * 2).clamp(4, 32))
        .thread_name(|i| format!("vt-walk-{i}"))
        .build()
        .ok()
}

/// Starts reading `path` into the page cache in the background.
fn readahead(path: &Path) {
    use std::os::unix::io::AsRawFd;
    if let Ok(f) = File::open(path) {
        // SAFETY: advisory call on an open descriptor.
        unsafe {
            libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
}

/// Counts bytes read into the progress display, and remembers a read error
/// (to tell it from a store error).
struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p Progress,
    failed: Option<std::io::Error>,
}

impl<R: std::io::Read> std::io::Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.progress.add_bytes(n as u64);
                Ok(n)
            }
            Err(e) => {
                let kind = e.kind();
                let msg = e.to_string();
                self.failed = Some(e);
                Err(std::io::Error::new(kind, msg))
            }
        }
    }
}
