//! `vt export`: a Dirent tree back onto the filesystem.
//!
//! Four passes: the directories, breadth first (each level's directory
//! blocks asked for at once, so a remote store costs a round trip per
//! level, not per directory), creating them with their symlinks and
//! special files; then the files, by several workers taking them in the
//! order their data lies in the store (where the store can say) while
//! the blocks of the files ahead are fetched (prefetched),
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

/// Files ahead of the workers writing files whose children (of files of
/// several blocks) are asked for; the top blocks of twice as many are.
/// Enough to cover a round trip to a distant store.
const FILES_AHEAD: usize = 512;

/// Threads reading the top blocks of files of several blocks ahead of the
/// workers, to ask for their children.
const READ_AHEADERS: usize = 4;

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
    /// The threads that read directories and write files: [`WORKERS`],
    /// more than the cores, since they mostly wait (on a server's reply,
    /// on the disk), and their own, so that the blocks of one file read
    /// in parallel (`vt_core::read`) wait in them and not in the two
    /// threads of the global pool.
    pool: rayon::ThreadPool,
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
    pub fn new(store: &'a dyn Store, progress: &'a Progress) -> Result<Self> {
        Ok(Exporter {
            store,
            progress,
            links: Mutex::default(),
            dirs: Mutex::default(),
            files: Mutex::default(),
            pool: rayon::ThreadPoolBuilder::new()
                .num_threads(WORKERS)
                .thread_name(|i| format!("vt-export-{i}"))
                .build()
                .context("start the export's threads")?,
        })
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

    /// Creates the directory tree under `dest` breadth first, by
    /// [`WORKERS`] threads taking directories from one queue: a directory's
    /// subdirectories are asked for all at once as soon as it is read, so
    /// a remote store costs a round trip per level of the tree, not per
    /// directory. Other entries are created (symlinks, devices) or listed
    /// for the later passes (files, hard links).
    fn walk(&self, top: &Dirent, dest: &Path) -> Result<()> {
        struct Queue {
            dirs: std::collections::VecDeque<(PathBuf, Dirent)>,
            /// Directories taken and not yet done.
            busy: usize,
            failed: Option<anyhow::Error>,
        }
        let q = Mutex::new(Queue {
            dirs: [(dest.to_path_buf(), top.clone())].into(),
            busy: 0,
            failed: None,
        });
        let cv = std::sync::Condvar::new();
        let lock = || q.lock().unwrap_or_else(|e| e.into_inner());
        // Threads of their own, not jobs of the pool: reading a large
        // directory fetches its blocks in parallel in the pool (read.rs),
        // and a pool thread waiting for that runs other queued jobs
        // meanwhile; had the walkers been such jobs, it would have run one,
        // which waits on `cv` for the directory below it on its own stack
        // to finish: a deadlock (seen with a directory of 50,000 files).
        std::thread::scope(|s| {
            for _ in 0..WORKERS {
                s.spawn(|| loop {
                    let (path, d) = {
                        let mut g = lock();
                        loop {
                            if g.failed.is_some() {
                                return;
                            }
                            if let Some(x) = g.dirs.pop_front() {
                                g.busy += 1;
                                break x;
                            }
                            if g.busy == 0 {
                                return;
                            }
                            g = cv.wait(g).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    // A panic must not leave `busy` counted (the other
                    // workers would wait for it for ever): it fails the
                    // export with its message.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.pool.install(|| self.dir(&d, &path))
                    }))
                    .unwrap_or_else(|p| {
                        let why = p
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| p.downcast_ref::<&str>().copied())
                            .unwrap_or("a panic");
                        Err(anyhow!("{}: internal error: {why}", path.display()))
                    });
                    let mut g = lock();
                    g.busy -= 1;
                    match r {
                        Ok(sub) => {
                            // Their listings are asked for now, all at once.
                            let blocks: Vec<Hash> = sub
                                .iter()
                                .filter_map(|(_, d)| d.block().and_then(top_hash))
                                .collect();
                            self.store.prefetch(&blocks);
                            g.dirs.extend(sub);
                        }
                        Err(e) => {
                            g.failed.get_or_insert(e);
                        }
                    }
                    cv.notify_all();
                });
            }
        });
        match q.into_inner().unwrap_or_else(|e| e.into_inner()).failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
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

    /// Where the data of a file whose content is `r` lies in the store (see
    /// [`Store::locality`]): that of its first data block, found through
    /// its indirect blocks (which such a store keeps at hand) when it has
    /// any.
    fn locality(&self, r: &BlockRef) -> Option<u64> {
        let at = self.store.locality(&top_hash(r)?)?;
        let mut r = r.clone();
        for _ in 0..8 {
            let BlockRef::Indirect { .. } = r else {
                return self.store.locality(&top_hash(&r)?).or(Some(at));
            };
            r = vt_core::read::children(self.store, &r)
                .ok()?
                .into_iter()
                .next()?;
        }
        Some(at)
    }

    /// Writes the files the walk listed: workers take them in order, and
    /// the top blocks of the next [`FILES_AHEAD`] files are asked for
    /// before they are needed.
    fn write_files(&self) -> Result<()> {
        let mut files =
            std::mem::take(&mut *self.files.lock().map_err(|_| anyhow!("lock poisoned"))?);
        // In the order their data lies in the store, where it can say
        // (an S3 store: by pack), so that each part of the store is read
        // once, while it is at hand; else in walk order.
        files.sort_by_cached_key(|(_, d)| d.block().and_then(|r| self.locality(r)));
        let files = interleave(files);
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
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            // Files of several blocks: their top (indirect) block is read
            // here, ahead of the workers, and its children asked for, so
            // that no worker waits a round trip for them. Several threads,
            // each taking every READ_AHEADERS-th file, since each waits for
            // the top blocks it reads.
            for k in 0..READ_AHEADERS {
                let (next, done) = (&next, &done);
                let files = &files;
                s.spawn(move || {
                    for (j, (_, d)) in files.iter().enumerate().skip(k).step_by(READ_AHEADERS) {
                        // Between the workers and the files whose top
                        // blocks are asked for: their tops have had time
                        // to come.
                        while j >= next.load(Relaxed) + FILES_AHEAD {
                            if done.load(Relaxed) {
                                return;
                            }
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        if done.load(Relaxed) {
                            return;
                        }
                        if j < next.load(Relaxed) {
                            continue; // a worker has it already
                        }
                        if let Some(r @ BlockRef::Indirect { hash, .. }) = d.block() {
                            // A second reader of the top block: the worker
                            // that writes the file still finds it.
                            self.store.prefetch(&[*hash]);
                            if let Ok(kids) = vt_core::read::children(self.store, r) {
                                let hs: Vec<Hash> = kids.iter().filter_map(top_hash).collect();
                                self.store.prefetch(&hs);
                            }
                        }
                    }
                });
            }
            // The workers run in the export's own pool, so that a file's
            // blocks fetched in parallel (read.rs) wait in its threads,
            // not in the two of the global pool.
            self.pool.scope(|ps| {
                for _ in 0..workers {
                    ps.spawn(|_| loop {
                        if failed.lock().map_or(true, |f| f.is_some()) {
                            return;
                        }
                        let i = next.fetch_add(1, Relaxed);
                        let Some((path, d)) = files.get(i) else {
                            return;
                        };
                        ask_ahead(i + 2 * FILES_AHEAD);
                        if let Err(e) = self.file(d, path) {
                            let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                            f.get_or_insert(e);
                            return;
                        }
                    });
                }
            });
            // The workers are done (or one failed): the read-ahead stops.
            done.store(true, Relaxed);
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
