//! `vt export`: a Dirent tree back onto the filesystem.
//!
//! Four passes: the directories, breadth first (each level's directory
//! blocks asked for at once, so a remote store costs a round trip per
//! level, not per directory), creating them with their symlinks and
//! special files; then the files, by several workers taking them in
//! order while the blocks of the files ahead are fetched (prefetched),
//! runs of zeros left as holes; then hard links, each target written once
//! and linked from its other names; then directory metadata, deepest
//! first, so creating entries does not disturb directory mtimes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use uuid::Uuid;
use vt_core::block::BlockRef;
use vt_core::dir::read_dir;
use vt_core::dirent::SpecialKind;
use vt_core::read::write_sparse;
use vt_core::{Dirent, DirentKind, Hash, Meta, Store};

use crate::meta::{apply, apply_file};
use crate::progress::Progress;

/// Files whose first blocks are asked for ahead of the workers writing
/// files: enough to cover a round trip to a distant store.
const FILES_AHEAD: usize = 512;

/// Threads writing files, and reading the directories of one level: many,
/// since a block may be on its way from a server (one round trip) while
/// others are written.
const WORKERS: usize = 16;

/// Writes snapshots out.
pub struct Exporter<'a> {
    store: &'a dyn Store,
    progress: &'a Progress,
    links: Mutex<Vec<(Uuid, PathBuf)>>,
    dirs: Mutex<Vec<(PathBuf, Meta)>>,
    /// Files to write, in the order the walk met them.
    files: Mutex<Vec<(PathBuf, Dirent)>>,
}

/// `files` (in walk order: each directory's files together) reordered so
/// that files next to each other are in different directories, taking
/// them in turn from [`WORKERS`] directories at a time: workers creating
/// files at once then do not all wait on one directory's lock.
fn interleave(files: Vec<(PathBuf, Dirent)>) -> Vec<(PathBuf, Dirent)> {
    let mut runs: std::collections::VecDeque<Vec<(PathBuf, Dirent)>> = Default::default();
    for f in files {
        match runs.back_mut() {
            Some(r) if r[0].0.parent() == f.0.parent() => r.push(f),
            _ => runs.push_back(vec![f]),
        }
    }
    let total = runs.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(total);
    let mut active: Vec<std::vec::IntoIter<(PathBuf, Dirent)>> = Vec::new();
    loop {
        while active.len() < WORKERS {
            match runs.pop_front() {
                Some(r) => active.push(r.into_iter()),
                None => break,
            }
        }
        if active.is_empty() {
            return out;
        }
        active.retain_mut(|it| match it.next() {
            Some(f) => {
                out.push(f);
                true
            }
            None => false,
        });
    }
}

/// The hash of the block at the top of `r`'s tree, if it is stored.
fn top_hash(r: &BlockRef) -> Option<Hash> {
    match r {
        BlockRef::Direct { hash, .. } | BlockRef::Indirect { hash, .. } => Some(*hash),
        BlockRef::Sub { block, .. } => top_hash(block),
        _ => None,
    }
}

fn check_name(name: &[u8]) -> Result<&OsStr> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
    {
        bail!(
            "refusing unsafe entry name {:?} in snapshot",
            String::from_utf8_lossy(name)
        );
    }
    Ok(OsStr::from_bytes(name))
}

impl<'a> Exporter<'a> {
    /// An exporter reading from `store`.
    pub fn new(store: &'a dyn Store, progress: &'a Progress) -> Self {
        Exporter {
            store,
            progress,
            links: Mutex::default(),
            dirs: Mutex::default(),
            files: Mutex::default(),
        }
    }

    /// Writes `top` to `dest`, which must not exist or be an empty directory.
    pub fn export(&self, top: &Dirent, dest: &Path) -> Result<()> {
        if let Ok(md) = std::fs::symlink_metadata(dest) {
            let empty_dir = md.is_dir()
                && std::fs::read_dir(dest)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !top.is_dir() && md.is_dir() {
                bail!(
                    "{} is a directory; give the path of the file to create",
                    dest.display()
                );
            }
            if !(top.is_dir() && empty_dir) {
                bail!(
                    "{} already exists{}; nothing was written",
                    dest.display(),
                    if md.is_dir() { " and is not empty" } else { "" }
                );
            }
        }
        let t = std::time::Instant::now();
        if top.is_dir() {
            self.walk(top, dest)?;
        } else {
            self.entry(top, dest)?;
        }
        let walked = t.elapsed();
        self.write_files()?;
        tracing::debug!(
            "export: directories in {:.2}s, files in {:.2}s",
            walked.as_secs_f64(),
            (t.elapsed() - walked).as_secs_f64()
        );
        // Hard links: first name gets the content, the others link to it.
        let table: HashMap<Uuid, Dirent> = match &top.kind {
            DirentKind::Dir {
                hardlinks: Some(h), ..
            } => read_dir(self.store, h)?
                .into_iter()
                .filter_map(|d| d.uuid.map(|u| (u, d)))
                .collect(),
            _ => HashMap::new(),
        };
        let links = std::mem::take(&mut *self.links.lock().map_err(|_| anyhow!("lock poisoned"))?);
        let mut written: HashMap<Uuid, PathBuf> = HashMap::new();
        for (uuid, path) in links {
            if let Some(first) = written.get(&uuid) {
                std::fs::hard_link(first, &path)
                    .with_context(|| format!("link {} to {}", path.display(), first.display()))?;
                continue;
            }
            let target = table.get(&uuid).ok_or_else(|| {
                anyhow!(
                    "{}: hard link target {uuid} missing from the snapshot",
                    path.display()
                )
            })?;
            let mut t = target.clone();
            t.name = path
                .file_name()
                .map(|n| n.as_bytes().to_vec())
                .unwrap_or_default();
            self.file(&t, &path)?;
            written.insert(uuid, path);
        }
        let mut dirs =
            std::mem::take(&mut *self.dirs.lock().map_err(|_| anyhow!("lock poisoned"))?);
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, m) in dirs {
            apply(&p, &m, false).with_context(|| format!("set metadata of {}", p.display()))?;
        }
        Ok(())
    }

    fn entry(&self, d: &Dirent, path: &Path) -> Result<()> {
        match &d.kind {
            DirentKind::Dir { .. } => {
                // Reached only for a top that is not walked.
                Err(anyhow!("{}: a directory outside the walk", path.display()))
            }
            DirentKind::File { .. } => {
                self.files
                    .lock()
                    .map_err(|_| anyhow!("lock poisoned"))?
                    .push((path.to_path_buf(), d.clone()));
                Ok(())
            }
            DirentKind::Symlink { target } => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), path)
                    .with_context(|| format!("create symlink {}", path.display()))?;
                apply(path, &d.meta, true)
                    .with_context(|| format!("set metadata of {}", path.display()))
            }
            DirentKind::HardLink { uuid } => {
                self.links
                    .lock()
                    .map_err(|_| anyhow!("lock poisoned"))?
                    .push((*uuid, path.to_path_buf()));
                Ok(())
            }
            DirentKind::Special { kind, rdev } => {
                let ftype = match kind {
                    SpecialKind::Fifo => libc::S_IFIFO,
                    SpecialKind::CharDevice => libc::S_IFCHR,
                    SpecialKind::BlockDevice => libc::S_IFBLK,
                    SpecialKind::Socket => {
                        self.progress
                            .warn(&format!("{}: sockets are not recreated", path.display()));
                        return Ok(());
                    }
                };
                let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
                // SAFETY: valid C string; mknod only creates a node.
                let rc = unsafe {
                    libc::mknod(
                        c.as_ptr(),
                        ftype | (d.meta.mode & 0o7777),
                        *rdev as libc::dev_t,
                    )
                };
                if rc != 0 {
                    self.progress.warn(&format!(
                        "{}: cannot create {kind:?} node: {}",
                        path.display(),
                        std::io::Error::last_os_error()
                    ));
                    return Ok(());
                }
                apply(path, &d.meta, false)
                    .with_context(|| format!("set metadata of {}", path.display()))
            }
        }
    }

    /// Creates the directory tree under `dest` breadth first, a level at a
    /// time: every directory block of a level is asked for before any is
    /// read. Other entries are created (symlinks, devices) or listed for
    /// the later passes (files, hard links).
    fn walk(&self, top: &Dirent, dest: &Path) -> Result<()> {
        let mut level: Vec<(PathBuf, Dirent)> = vec![(dest.to_path_buf(), top.clone())];
        while !level.is_empty() {
            let blocks: Vec<Hash> = level
                .iter()
                .filter_map(|(_, d)| match &d.kind {
                    DirentKind::Dir { block, .. } => top_hash(block),
                    _ => None,
                })
                .collect();
            self.store.prefetch(&blocks);
            let next = Mutex::new(Vec::new());
            let at = AtomicUsize::new(0);
            let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
            std::thread::scope(|s| {
                for _ in 0..WORKERS.min(level.len()) {
                    s.spawn(|| {
                        while let Some((path, d)) = level.get(at.fetch_add(1, Relaxed)) {
                            match self.dir(d, path) {
                                Ok(sub) => {
                                    next.lock().unwrap_or_else(|e| e.into_inner()).extend(sub)
                                }
                                Err(e) => {
                                    failed
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .get_or_insert(e);
                                    return;
                                }
                            }
                        }
                    });
                }
            });
            if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
                return Err(e);
            }
            level = next.into_inner().unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Creates directory `d` at `path` and its entries that are not
    /// directories; returns its subdirectories.
    fn dir(&self, d: &Dirent, path: &Path) -> Result<Vec<(PathBuf, Dirent)>> {
        let DirentKind::Dir { block, .. } = &d.kind else {
            return Err(anyhow!("{}: not a directory", path.display()));
        };
        match std::fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(e) => {
                return Err(e).with_context(|| format!("create directory {}", path.display()))
            }
        }
        let entries = read_dir(self.store, block)
            .with_context(|| format!("read directory {} from the store", path.display()))?;
        let mut subdirs = Vec::new();
        for e in entries {
            let p = path.join(check_name(&e.name)?);
            if e.is_dir() {
                subdirs.push((p, e));
            } else {
                self.entry(&e, &p)?;
            }
        }
        self.dirs
            .lock()
            .map_err(|_| anyhow!("lock poisoned"))?
            .push((path.to_path_buf(), d.meta.clone()));
        Ok(subdirs)
    }

    /// Writes the files the walk listed: workers take them in order, and
    /// the top blocks of the next [`FILES_AHEAD`] files are asked for
    /// before they are needed.
    fn write_files(&self) -> Result<()> {
        let files = interleave(std::mem::take(
            &mut *self.files.lock().map_err(|_| anyhow!("lock poisoned"))?,
        ));
        let next = AtomicUsize::new(0);
        let asked = Mutex::new(0usize);
        let failed: Mutex<Option<anyhow::Error>> = Mutex::new(None);
        let ask_ahead = |upto: usize| {
            let mut a = asked.lock().unwrap_or_else(|e| e.into_inner());
            let upto = upto.min(files.len());
            if *a >= upto {
                return;
            }
            let hs: Vec<Hash> = files[*a..upto]
                .iter()
                .filter_map(|(_, d)| d.block().and_then(top_hash))
                .collect();
            *a = upto;
            drop(a);
            self.store.prefetch(&hs);
        };
        let workers = WORKERS.min(files.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    if failed.lock().map_or(true, |f| f.is_some()) {
                        return;
                    }
                    let i = next.fetch_add(1, Relaxed);
                    let Some((path, d)) = files.get(i) else {
                        return;
                    };
                    ask_ahead(i + FILES_AHEAD);
                    if let Err(e) = self.file(d, path) {
                        let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                        f.get_or_insert(e);
                        return;
                    }
                });
            }
        });
        match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn file(&self, d: &Dirent, path: &Path) -> Result<()> {
        let block = d.block().ok_or_else(|| anyhow!("not a file"))?;
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("create {}", path.display()))?;
        write_sparse(self.store, block, &f).with_context(|| format!("write {}", path.display()))?;
        self.progress.add_bytes(block.span());
        apply_file(&f, path, &d.meta).with_context(|| format!("set metadata of {}", path.display()))
    }
}
