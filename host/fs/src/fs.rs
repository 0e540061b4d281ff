//! The FUSE operations.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::IoSlice;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use fuser::{
    AccessFlags, Errno, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    KernelConfig, LockOwner, MountOption, OpenAccMode, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};
use vt_core::archive::Archive;
use vt_core::dirent::{SpecialKind, Timestamp};
use vt_core::read::{read_all, write_sparse};
use vt_core::{BlockRef, Dirent, DirentKind, Meta, Store};

use crate::backing::{Backing, BackingDir, MEM_MAX};
use crate::blockmap::{BlockMap, LeafCache};
use crate::fence::{PushFence, Pushed};
use crate::inode::{from_system, now, Content, DirData, Ino, Kind, Node, State, Tree, ROOT};
use crate::readahead;
use crate::sync::{start_workers, SyncQueue};
use crate::{FsError, Mode, MountConfig, Result, Roots, ScannerChooser};

/// How long the kernel may cache names and attributes.
const TTL: Duration = Duration::from_secs(10);

/// Leaf cache budget.
const CACHE_BYTES: usize = 256 << 20;

/// Longest name accepted.
const NAME_MAX: usize = 255;

/// Most parts a READ reply gathers (IOV_MAX is 1024, one is the header).
const MAX_PARTS: usize = 1000;

/// The virtual xattr that shows a file's current block reference.
const XATTR_BLOCKREF: &[u8] = b"user.vt.blockref";
/// The xattr kept as the Dirent's MIME type.
const XATTR_MIME: &[u8] = b"user.mime_type";

enum Handle {
    File { ino: Ino, write: bool },
    Dir(Vec<Listed>),
}

/// One entry of a directory listing: inode, type, name.
type Listed = (Ino, FileType, Vec<u8>);

/// State shared by the FUSE threads, the sync workers and [`FsHandle`]s.
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn Store>,
    state: Mutex<State>,
    mode: Mode,
    backing: BackingDir,
    pub(crate) chooser: ScannerChooser,
    cache: Arc<LeafCache>,
    handles: Mutex<HashMap<u64, Handle>>,
    next_fh: AtomicU64,
    pub(crate) sync: SyncQueue,
    /// Closed (true) once shutdown began: no more changes.
    gate: RwLock<bool>,
    /// Top Dirent down to the mounted directory, as last committed.
    pub(crate) chain: Mutex<Vec<Dirent>>,
    pub(crate) archive: Option<Archive>,
    pub(crate) last_top: Mutex<Option<Dirent>>,
    pub(crate) commit_lock: Mutex<()>,
    pub(crate) commits: AtomicU64,
    /// Per directory, the window of files last fetched ahead.
    prefetched: Mutex<HashMap<Ino, Window>>,
    /// When the mount was served from, and when (milliseconds after that)
    /// a file was last read.
    started: std::time::Instant,
    last_read: AtomicU64,
    /// What puts files fetched ahead straight into the kernel's page
    /// cache (set once the session exists).
    notifier: std::sync::OnceLock<fuser::Notifier>,
    /// Keeps those pushes off files changed during the mount.
    fence: Arc<PushFence>,
    /// Files fetched ahead when a directory was listed from its start, to
    /// be pushed when the lister asks for the part after theirs (by then
    /// the kernel has made inodes of their entries).
    to_push: Mutex<HashMap<Ino, Vec<Ahead>>>,
    /// Where [`Inner::push_files`] sends files to push.
    pusher: std::sync::OnceLock<std::sync::mpsc::Sender<PushBatch>>,
    /// Where [`Inner::walk_ahead`] sends directories to load.
    walker: std::sync::OnceLock<std::sync::mpsc::Sender<Vec<(Ino, BlockRef)>>>,
}

/// A directory's files last fetched ahead.
struct Window {
    /// Where its reader was (the name it opened).
    from: Vec<u8>,
    /// The last name fetched.
    upto: Vec<u8>,
}

/// A file fetched ahead: its position in its directory's listing (from a
/// listing from the start; else 0), inode and content.
type Ahead = (u64, Ino, BlockRef);

/// Files for the pusher thread, and whom to tell once those already
/// fetched are in the page cache.
type PushBatch = (
    Vec<(Ino, BlockRef)>,
    Option<std::sync::mpsc::SyncSender<()>>,
);

/// How long a READDIR waits for the files fetched ahead from the parts of
/// the listing before it to be pushed: the lister opens them as soon as
/// it has the whole listing, and a file pushed a moment too late costs a
/// READ. Bounded, because a push to a page being read waits for that
/// READ's reply (see [`Inner::push_files`]).
const PUSH_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// How long making a file writable waits for a push of its stored content
/// under way (see [`PushFence::mark_changed`]); one that takes longer is
/// dropped from the page cache once done.
const FENCE_WAIT: Duration = Duration::from_millis(200);

/// Files after an opened one whose first blocks are fetched ahead.
const SIBLINGS_AHEAD: usize = 64;

/// Directories whose files wait in [`Inner::push_later`] at most.
const PUSH_PENDING_MAX: usize = 4096;

/// Bytes at the start of each file fetched ahead for a reader of its
/// siblings: the first request a reader makes (the kernel's first
/// read-ahead window is 128 KiB).
const FILE_START: u64 = 128 << 10;

/// Files up to this size fetched ahead are pushed whole into the page
/// cache (see [`push_batch`]); of larger ones only [`FILE_START`] is
/// fetched, and the kernel's read-ahead asks for the rest.
const PUSH_WHOLE: u64 = 1 << 20;

/// Listing entries handed to one READDIR(PLUS) reply at most (a reply
/// holds a few hundred).
const LISTING_PART: usize = 1024;

/// How recent a file read must be for a listing to fetch its directory's
/// first files ahead.
const READING_WINDOW_MS: u64 = 200;

/// Directories loaded ahead of a walk, at most, for each listing: see
/// [`Inner::walk_ahead`].
const WALK_AHEAD: usize = 256;

/// The filesystem given to FUSE.
pub struct VtFs {
    inner: Arc<Inner>,
    /// Read-only mount whose kernel takes ENOSYS from OPEN as "no opens
    /// needed" (FUSE_NO_OPEN_SUPPORT): see [`Filesystem::open`].
    no_open: bool,
    /// Likewise for OPENDIR (FUSE_NO_OPENDIR_SUPPORT).
    no_opendir: bool,
}

/// Commits and shutdown, from outside the FUSE threads.
#[derive(Clone)]
pub struct FsHandle {
    inner: Arc<Inner>,
}

impl FsHandle {
    /// Waits for queued syncs and records a snapshot if anything changed.
    pub fn commit(&self) -> Result<Option<Dirent>> {
        self.inner.commit()
    }

    /// Refuses further changes (waiting for those in flight), then commits.
    pub fn shutdown(&self) -> Result<Option<Dirent>> {
        {
            let mut g = self.inner.gate.write().unwrap_or_else(|e| e.into_inner());
            *g = true;
        }
        self.inner.commit()
    }

    /// The newest snapshot this mount recorded.
    pub fn last_top(&self) -> Option<Dirent> {
        self.inner
            .last_top
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn eio(e: impl std::fmt::Display) -> Errno {
    tracing::error!("{e}");
    Errno::EIO
}

/// The errno for a failed backing-file operation: a full or over-quota
/// disk, or a file too large for it, is passed on as such (a writer must
/// know it can free space and retry), anything else is EIO.
fn io_errno(e: std::io::Error) -> Errno {
    match e.raw_os_error() {
        Some(n @ (libc::ENOSPC | libc::EDQUOT | libc::EFBIG)) => Errno::from_i32(n),
        _ => eio(e),
    }
}

type R<T> = std::result::Result<T, Errno>;

/// Directory `dir`'s entries, if it is a directory and they are loaded.
fn loaded_children(st: &State, dir: Ino) -> Option<&std::collections::BTreeMap<Vec<u8>, Ino>> {
    match st.get(dir) {
        Some(Node {
            kind:
                Kind::Dir(DirData {
                    children: Some(kids),
                    ..
                }),
            ..
        }) => Some(kids),
        _ => None,
    }
}

/// The content of `ino` if it is a non-empty stored file not being read
/// yet.
fn stored_file(st: &State, ino: Ino) -> Option<BlockRef> {
    match st.get(ino) {
        Some(Node {
            kind: Kind::File(Content::Stored { block, map: None }),
            ..
        }) if block.span() > 0 => Some(block.clone()),
        _ => None,
    }
}

/// Puts the files of `batch` into the kernel's page cache for their
/// inodes: a reader then finds them there and sends no READ at all. Those
/// already in the leaf cache go at once (a reader may open them any
/// moment); the others once a pool thread has fetched them, whole if they
/// are up to [`PUSH_WHOLE`] bytes (whole files only, so every page is
/// complete, the last one ending the file), only their start if not.
/// Failures (the kernel forgot the inode, a block cannot be read) are left
/// for a READ to meet.
fn push_batch(
    push: &PagePush,
    store: &Arc<dyn Store>,
    cache: &Arc<LeafCache>,
    batch: Vec<(Ino, BlockRef)>,
) {
    for (ino, block) in batch {
        if let Some(d) = cache.cached(&block) {
            push.file(ino, &d);
            continue;
        }
        let (store, cache, push) = (store.clone(), cache.clone(), push.clone());
        rayon::spawn(move || {
            let span = block.span();
            if span > PUSH_WHOLE {
                cache.prefetch_start(&*store, &block, FILE_START);
                return;
            }
            let data = BlockMap::build(&*store, &block)
                .and_then(|m| Arc::new(m).read(&store, &cache, 0, span));
            // A short read would leave its last page incomplete.
            if let Some(d) = data.ok().filter(|d| d.len() as u64 == span) {
                push.file(ino, &d);
            }
        });
    }
}

/// What puts file contents into the kernel's page cache: the session's
/// notifier, behind the mount's fence against writes.
#[derive(Clone)]
struct PagePush {
    notifier: fuser::Notifier,
    fence: Arc<PushFence>,
}

impl PagePush {
    /// Puts `data`, file `ino`'s whole stored content, into its page
    /// cache, unless the file changed since (see [`PushFence`]); if it
    /// changed while the push ran, what was pushed is dropped again.
    fn file(&self, ino: Ino, data: &[u8]) {
        let pushed = self.fence.push(ino, || {
            let _ = self.notifier.store(INodeNo(ino), 0, data);
        });
        if pushed == Pushed::Overtaken {
            let _ = self.notifier.inval_inode(INodeNo(ino), 0, 0);
        }
    }
}

fn ts(t: TimeOrNow) -> Timestamp {
    match t {
        TimeOrNow::SpecificTime(s) => from_system(s),
        TimeOrNow::Now => now(),
    }
}

impl VtFs {
    /// Sets up the filesystem (nothing is mounted yet).
    pub fn new(cfg: MountConfig) -> Result<Self> {
        let mut snapshots = Vec::new();
        let (root, trees, chain) = match cfg.roots {
            Roots::One { chain } => {
                let Some(d) = chain.last() else {
                    return Err(FsError::Unsupported("nothing to mount".into()));
                };
                if !d.is_dir() {
                    return Err(FsError::Unsupported(format!(
                        "{} is not a directory; only directories can be mounted",
                        d.name_lossy()
                    )));
                }
                let mut root = Node::from_dirent(d, ROOT, 0);
                root.frozen = cfg.mode == Mode::ReadOnly;
                let table = match chain.first().map(|t| &t.kind) {
                    Some(DirentKind::Dir { hardlinks, .. }) => hardlinks.clone(),
                    _ => None,
                };
                let tree = Tree {
                    table,
                    ..Tree::default()
                };
                (root, vec![tree], chain)
            }
            Roots::All(entries) => {
                snapshots = entries;
                let t = now();
                let mut root = Node::from_dirent(
                    &Dirent {
                        name: b"snapshots".to_vec(),
                        uuid: None,
                        kind: DirentKind::Dir {
                            block: vt_core::BlockRef::empty(),
                            hardlinks: None,
                        },
                        meta: Meta {
                            mode: 0o555,
                            mtime: t,
                            ctime: t,
                            ..Meta::default()
                        },
                    },
                    ROOT,
                    0,
                );
                root.frozen = true;
                (root, vec![Tree::default()], Vec::new())
            }
        };
        let read_only = chain.is_empty() || cfg.mode == Mode::ReadOnly;
        let inner = Arc::new(Inner {
            store: cfg.store,
            state: Mutex::new(State::new(root, trees)),
            mode: if read_only { Mode::ReadOnly } else { cfg.mode },
            backing: BackingDir::new(cfg.backing_dir),
            chooser: cfg.chooser,
            cache: Arc::new(LeafCache::new(CACHE_BYTES)),
            handles: Mutex::default(),
            next_fh: AtomicU64::new(1),
            sync: SyncQueue::default(),
            gate: RwLock::new(false),
            chain: Mutex::new(chain),
            archive: cfg.archive,
            last_top: Mutex::new(None),
            commit_lock: Mutex::new(()),
            commits: AtomicU64::new(0),
            prefetched: Mutex::default(),
            notifier: std::sync::OnceLock::new(),
            fence: Arc::default(),
            to_push: Mutex::default(),
            pusher: std::sync::OnceLock::new(),
            walker: std::sync::OnceLock::new(),
            started: std::time::Instant::now(),
            last_read: AtomicU64::new(0),
        });
        start_workers(&inner, 2);
        let fs = VtFs {
            inner,
            no_open: false,
            no_opendir: false,
        };
        if !snapshots.is_empty() {
            fs.add_snapshots(&snapshots);
        }
        Ok(fs)
    }

    /// Adds the snapshots of an `-a` mount as read-only directories.
    fn add_snapshots(&self, entries: &[vt_core::archive::ArchiveEntry]) {
        let mut st = self.inner.state();
        let mut children = std::collections::BTreeMap::new();
        let mut subdirs = 0;
        for e in entries {
            let table = match &e.dirent.kind {
                DirentKind::Dir { hardlinks, .. } => hardlinks.clone(),
                _ => None,
            };
            st.trees.push(Tree {
                table,
                ..Tree::default()
            });
            let tree = st.trees.len() - 1;
            let mut name = e.when().into_bytes();
            let mut k = 2;
            while children.contains_key(&name) {
                name = format!("{}-{k}", e.when()).into_bytes();
                k += 1;
            }
            let mut n = Node::from_dirent(&e.dirent, ROOT, tree);
            n.name = name.clone();
            n.frozen = true;
            if n.is_dir() {
                subdirs += 1;
            }
            let ino = st.add(n);
            children.insert(name, ino);
        }
        if let Some(Node {
            kind: Kind::Dir(d), ..
        }) = st.get_mut(ROOT)
        {
            d.children = Some(children);
            d.subdirs = subdirs;
        }
    }

    /// A handle for commits and shutdown.
    pub fn handle(&self) -> FsHandle {
        FsHandle {
            inner: self.inner.clone(),
        }
    }

    /// Mounts at `mountpoint`, calls `ready`, and serves requests with
    /// `threads` threads until unmounted. After each request one of them
    /// polls for the next for up to `poll` before it sleeps (see
    /// [`fuser::set_request_poll`]; zero: never).
    pub fn run(
        self,
        mountpoint: &Path,
        threads: usize,
        poll: std::time::Duration,
        ready: impl FnOnce(),
    ) -> Result<()> {
        fuser::set_request_poll(poll);
        let mut cfg = fuser::Config::default();
        cfg.mount_options = vec![
            MountOption::FSName("vt".into()),
            MountOption::Subtype("vt".into()),
            MountOption::DefaultPermissions,
        ];
        if self.inner.mode == Mode::ReadOnly {
            cfg.mount_options.push(MountOption::RO);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cfg.acl = SessionACL::All;
        }
        cfg.n_threads = Some(threads.max(1));
        cfg.clone_fd = true;
        let ctx = |e| FsError::io(format!("mount on {}", mountpoint.display()), e);
        // Resolved before mounting: afterwards, resolving the path would
        // ask this filesystem, which is not serving yet.
        let point = mountpoint.canonicalize().map_err(ctx)?;
        let inner = self.inner.clone();
        let session = fuser::Session::new(self, mountpoint, &cfg).map_err(ctx)?;
        if let Err(e) = readahead::set_window(&point, readahead::WINDOW_KB) {
            tracing::debug!("read-ahead of {} left as it was: {e}", point.display());
        }
        let _ = inner.notifier.set(session.notifier());
        ready();
        session.run().map_err(ctx)
    }
}

impl Inner {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a change: fails once shutdown began or on a read-only mount.
    fn change(&self) -> R<RwLockReadGuard<'_, bool>> {
        if self.mode == Mode::ReadOnly {
            return Err(Errno::EROFS);
        }
        let g = self.gate.read().unwrap_or_else(|e| e.into_inner());
        if *g {
            return Err(Errno::EROFS);
        }
        Ok(g)
    }

    fn no_removal(&self) -> R<()> {
        if self.mode == Mode::AppendOnly {
            Err(Errno::EPERM)
        } else {
            Ok(())
        }
    }

    fn node(st: &State, ino: Ino) -> R<&Node> {
        st.get(ino).ok_or(Errno::ENOENT)
    }

    fn writable(st: &State, ino: Ino) -> R<()> {
        if Self::node(st, ino)?.frozen {
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    fn children<'a>(
        &self,
        st: &'a mut State,
        ino: Ino,
    ) -> R<&'a mut std::collections::BTreeMap<Vec<u8>, Ino>> {
        st.load_dir(&*self.store, ino).map_err(eio)?;
        match st.get_mut(ino).map(|n| &mut n.kind) {
            Some(Kind::Dir(DirData {
                children: Some(c), ..
            })) => Ok(c),
            Some(_) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, st: &mut State, ino: Ino) -> R<fuser::FileAttr> {
        if Self::node(st, ino)?.is_dir() {
            st.load_dir(&*self.store, ino).map_err(eio)?;
        }
        st.attr(ino).ok_or(Errno::ENOENT)
    }

    fn lookup(&self, parent: Ino, name: &[u8]) -> R<fuser::FileAttr> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut st = self.state();
        let c = *self
            .children(&mut st, parent)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        self.attr(&mut st, c)
    }

    /// Makes a new node `name` in `parent`.
    fn make(&self, req: &Request, parent: Ino, name: &[u8], kind: Kind, mode: u32) -> R<Ino> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut st = self.state();
        Self::writable(&st, parent)?;
        if self.children(&mut st, parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let p = Self::node(&st, parent)?;
        let is_dir = matches!(kind, Kind::Dir(_));
        let mut mode = mode & 0o7777;
        let gid = if p.meta.mode & libc::S_ISGID != 0 {
            if is_dir {
                mode |= libc::S_ISGID;
            }
            p.meta.gid
        } else {
            req.gid()
        };
        let t = now();
        let n = Node {
            kind,
            meta: Meta {
                mode,
                uid: req.uid(),
                gid,
                mtime: t,
                ctime: t,
                ..Meta::default()
            },
            atime: t,
            nlink: 1,
            parent,
            name: name.to_vec(),
            uuid: None,
            dirty: true,
            gen: 1,
            opens: 0,
            writing: 0,
            tree: 0,
            frozen: false,
        };
        let ino = st.add(n);
        self.children(&mut st, parent)?.insert(name.to_vec(), ino);
        if let Some(p) = st.get_mut(parent) {
            p.meta.mtime = t;
            p.meta.ctime = t;
            if let Kind::Dir(d) = &mut p.kind {
                if is_dir {
                    d.subdirs += 1;
                }
            }
        }
        st.touch(ino);
        Ok(ino)
    }

    /// Up to `max` entries of directory `ino` as listed (`.`, `..`, then
    /// its entries by name), from position `from`: only those are copied,
    /// so paging through a large directory without a handle stays linear.
    fn listing(&self, ino: Ino, from: usize, max: usize) -> R<Vec<Listed>> {
        let mut st = self.state();
        let kids: Vec<(Vec<u8>, Ino)> = self
            .children(&mut st, ino)?
            .iter()
            .skip(from.saturating_sub(2))
            .take(max)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let parent = Inner::node(&st, ino)?.parent;
        let dots = [(ino, &b"."[..]), (parent, &b".."[..])];
        let mut list: Vec<Listed> = dots
            .into_iter()
            .skip(from)
            .map(|(i, n)| (i, FileType::Directory, n.to_vec()))
            .collect();
        for (k, c) in kids {
            if list.len() == max {
                break;
            }
            if let Some(n) = st.get(c) {
                list.push((c, n.file_type(), k));
            }
        }
        Ok(list)
    }

    /// A program reading a file is likely to read the next ones in its
    /// directory (tar, cp -r, rsync): fetches ahead the files after `ino`
    /// (see [`Inner::prefetch_children`]).
    fn prefetch_siblings(&self, st: &State, ino: Ino) -> Vec<Ahead> {
        match st.get(ino) {
            Some(n) => self.prefetch_children(st, n.parent, Some(&n.name)),
            None => Vec::new(),
        }
    }

    /// Fetches ahead, in the background, the first blocks of the next
    /// [`SIBLINGS_AHEAD`] files of directory `dir` after name `after`
    /// (from its first entry with `None`), unless that window was fetched
    /// already; refilled when a reader is within a third of its end.
    /// Listed from its start, the directory's subdirectories whose entries
    /// are loaded have their first files fetched too (a reader goes into
    /// them next). Returns the window's files, for [`Inner::push_files`]
    /// once the kernel knows them.
    fn prefetch_children(&self, st: &State, dir: Ino, after: Option<&[u8]>) -> Vec<Ahead> {
        let Some(kids) = loaded_children(st, dir) else {
            return Vec::new();
        };
        let mut pf = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        if after.is_none() {
            // Listed from its start: a new pass over the directory (its
            // files may have left the caches since the last one).
            pf.remove(&dir);
        }
        let from = after.unwrap_or_default().to_vec();
        // A reader back before the window (files opened in another order)
        // starts a new one.
        let upto = pf
            .get(&dir)
            .filter(|w| from >= w.from)
            .map(|w| w.upto.clone());
        let near_end = match &upto {
            None => true,
            Some(upto) => kids
                .range(from.clone()..)
                .nth(SIBLINGS_AHEAD / 3)
                .is_none_or(|(k, _)| k > upto),
        };
        if !near_end {
            return Vec::new();
        }
        let start = match (upto, after) {
            (Some(u), _) if u > from => std::ops::Bound::Excluded(u),
            (_, Some(_)) => std::ops::Bound::Excluded(from.clone()),
            (_, None) => std::ops::Bound::Unbounded,
        };
        let mut last = None;
        let mut files = Vec::new();
        let mut fetch_only = Vec::new();
        for (rank, (k, c)) in kids
            .range((start, std::ops::Bound::Unbounded))
            .take(SIBLINGS_AHEAD)
            .enumerate()
        {
            last = Some(k.clone());
            if let Some(f) = stored_file(st, *c) {
                // `.` and `..` come first in a listing.
                let pos = if after.is_none() { rank as u64 + 2 } else { 0 };
                files.push((pos, *c, f));
            } else if after.is_none() && fetch_only.len() < SIBLINGS_AHEAD {
                if let Some(sub) = loaded_children(st, *c) {
                    fetch_only.extend(
                        sub.values()
                            .filter_map(|&i| stored_file(st, i))
                            .take(SIBLINGS_AHEAD - fetch_only.len()),
                    );
                }
            }
        }
        if let Some(l) = last {
            pf.insert(dir, Window { from, upto: l });
        }
        // The directory's own files first: its lister reads them next
        // (once they are pushed with the listing's next part, so they are
        // fetched now, while the kernel takes the reply).
        let mut fetch: Vec<BlockRef> = Vec::new();
        if self.notifier.get().is_none() {
            fetch.extend(files.drain(..).map(|(_, _, b)| b));
        } else if after.is_none() {
            fetch.extend(files.iter().map(|(_, _, b)| b.clone()));
        }
        fetch.extend(fetch_only);
        for block in fetch {
            let (store, cache) = (self.store.clone(), self.cache.clone());
            rayon::spawn(move || cache.prefetch_start(&*store, &block, FILE_START));
        }
        files
    }

    /// A directory listed from its start has had its subdirectories
    /// loaded (their attributes need their entries); a walker (`find`,
    /// `du`, `tar`) lists those next, which loads *their* subdirectories
    /// while it waits. Loads those ahead instead, at most [`WALK_AHEAD`]
    /// a listing, in the order a walker goes, on one thread of their own
    /// (not the pool: a request holding the table may wait on the pool,
    /// and this waits for the table). A block is read and decoded without
    /// holding the table, and installed only if no request loaded it
    /// meanwhile; errors are left for a request to meet.
    fn walk_ahead(this: &Arc<Inner>, st: &State, dir: Ino) {
        let Some(kids) = loaded_children(st, dir) else {
            return;
        };
        // Only subdirectories that have subdirectories, and in each only
        // as far as its last one: this runs holding the table, and a
        // listing of directories full of files would scan every file.
        let todo: Vec<(Ino, BlockRef)> = kids
            .values()
            .filter_map(|&k| match st.get(k).map(|n| &n.kind) {
                Some(Kind::Dir(DirData {
                    children: Some(grand),
                    subdirs,
                    ..
                })) if *subdirs > 0 => Some(
                    grand
                        .values()
                        .filter(|&&g| st.get(g).is_some_and(Node::is_dir))
                        .take(*subdirs as usize),
                ),
                _ => None,
            })
            .flatten()
            .filter_map(|&g| st.unloaded_dir(g).map(|b| (g, b)))
            .take(WALK_AHEAD)
            .collect();
        if todo.is_empty() {
            return;
        }
        let walker = this.walker.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<Vec<(Ino, BlockRef)>>();
            // Weak: the thread ends when the filesystem does (its sender
            // goes with it).
            let inner = Arc::downgrade(this);
            let spawned = std::thread::Builder::new()
                .name("vt-walk".into())
                .spawn(move || {
                    for todo in rx {
                        let Some(inner) = inner.upgrade() else {
                            return;
                        };
                        inner.load_ahead(todo);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no walk-ahead thread ({e}): directories load on request");
            }
            tx
        });
        let _ = walker.send(todo);
    }

    /// Loads directories `todo` unless a request has (see
    /// [`Inner::walk_ahead`]).
    fn load_ahead(&self, todo: Vec<(Ino, BlockRef)>) {
        for (ino, block) in todo {
            if self.state().unloaded_dir(ino).is_none() {
                continue;
            }
            let Ok(entries) = vt_core::dir::read_dir(&*self.store, &block) else {
                continue;
            };
            let _ = self.state().install_dir(&*self.store, ino, entries);
        }
    }

    /// Files fetched ahead for a listing of `dir` from its start are
    /// pushed once the lister asks for the part after theirs: the kernel
    /// makes the entries' inodes after our reply, in the lister's own
    /// time, and pushing to an inode it does not know yet is lost. A
    /// request from listing position `offset` means the kernel has taken
    /// in every entry before it. The lister opens the files as soon as it
    /// has the last part, so the request waits (a little, see
    /// [`PUSH_WAIT`]) until those fetched already are pushed.
    fn push_later(&self, dir: Ino, offset: u64, files: Vec<Ahead>) {
        let mut m = self.to_push.lock().unwrap_or_else(|e| e.into_inner());
        if offset == 0 {
            if files.is_empty() {
                m.remove(&dir);
            } else {
                if m.len() >= PUSH_PENDING_MAX {
                    // Listers that stopped after a first part: forget them.
                    m.clear();
                }
                m.insert(dir, files);
            }
            return;
        }
        let Some(mut files) = m.remove(&dir) else {
            return;
        };
        let later = files.split_off(files.partition_point(|f| f.0 < offset));
        if !later.is_empty() {
            m.insert(dir, later);
        }
        drop(m);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.push_files(files, Some(tx)) {
            // The pushes may wait for READs: another thread must take them.
            fuser::hand_off_reading();
            let _ = rx.recv_timeout(PUSH_WAIT);
        }
    }

    /// Puts files fetched ahead ([`Inner::prefetch_children`]) into the
    /// kernel's page cache ([`push_batch`]).
    ///
    /// Never from a FUSE thread: a store to a page the kernel is reading
    /// waits for that READ's reply, which needs a free FUSE thread. The
    /// files go to one pusher thread, started with the first batch, which
    /// tells `done` once those already fetched are pushed. Whether they
    /// were sent.
    fn push_files(&self, files: Vec<Ahead>, done: Option<std::sync::mpsc::SyncSender<()>>) -> bool {
        let Some(notifier) = self.notifier.get() else {
            return false;
        };
        if files.is_empty() {
            return false;
        }
        let pusher = self.pusher.get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::channel::<PushBatch>();
            let (store, cache) = (self.store.clone(), self.cache.clone());
            let push = PagePush {
                notifier: notifier.clone(),
                fence: self.fence.clone(),
            };
            let spawned = std::thread::Builder::new()
                .name("vt-push".into())
                .spawn(move || {
                    for (batch, done) in rx {
                        push_batch(&push, &store, &cache, batch);
                        if let Some(d) = done {
                            let _ = d.try_send(());
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no pusher thread ({e}): files are read on request");
            }
            tx
        });
        let files = files.into_iter().map(|(_, i, b)| (i, b)).collect();
        pusher.send((files, done)).is_ok()
    }

    /// Notes that a file is being read (see [`Inner::reading`]).
    fn note_read(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_read.store(now.max(1), SeqCst);
    }

    /// Whether files were read in the last [`READING_WINDOW_MS`]: then a
    /// directory being listed is probably about to be read too (a copy, an
    /// archiver), not only walked (`find`, `ls`).
    fn reading(&self) -> bool {
        let last = self.last_read.load(SeqCst);
        let now = self.started.elapsed().as_millis() as u64;
        last != 0 && now.saturating_sub(last) < READING_WINDOW_MS
    }

    fn open_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, SeqCst);
        self.handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, h);
        fh
    }

    /// Drops the content of a file with no names and no open handles.
    fn reap(st: &mut State, ino: Ino) {
        if let Some(n) = st.get_mut(ino) {
            if n.nlink == 0 && n.opens == 0 {
                if let Kind::File(c) = &mut n.kind {
                    *c = Content::Mem(Vec::new());
                }
            }
        }
    }

    /// Gives a stored file writable content (memory or a backing file).
    fn ensure_writable(&self, ino: Ino) -> R<()> {
        loop {
            let block = {
                let st = self.state();
                match &Self::node(&st, ino)?.kind {
                    Kind::File(Content::Stored { block, .. }) => block.clone(),
                    Kind::File(_) => return Ok(()),
                    Kind::Dir(_) => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EINVAL),
                }
            };
            let new = if block.span() <= MEM_MAX {
                Content::Mem(read_all(&*self.store, &block).map_err(eio)?)
            } else {
                let b = self.backing.create().map_err(io_errno)?;
                write_sparse(&*self.store, &block, &b.file).map_err(eio)?;
                b.len.store(block.span(), SeqCst);
                Content::Backing(Arc::new(b))
            };
            let mut st = self.state();
            let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
            if let Kind::File(c) = &mut n.kind {
                if matches!(c, Content::Stored { block: b, .. } if *b == block) {
                    *c = new;
                    return Ok(());
                }
            }
        }
    }

    fn spill(&self, v: &[u8]) -> R<Arc<Backing>> {
        let b = self.backing.create().map_err(io_errno)?;
        b.write_at(v, 0).map_err(io_errno)?;
        Ok(Arc::new(b))
    }

    fn set_size(&self, ino: Ino, size: u64) -> R<()> {
        self.fence.mark_changed(ino, FENCE_WAIT);
        {
            let st = self.state();
            let n = Self::node(&st, ino)?;
            let Kind::File(c) = &n.kind else {
                return Err(if n.is_dir() {
                    Errno::EISDIR
                } else {
                    Errno::EINVAL
                });
            };
            if self.mode == Mode::AppendOnly && size < c.len() {
                return Err(Errno::EPERM);
            }
        }
        if size > 0 {
            self.ensure_writable(ino)?;
        }
        let mut st = self.state();
        let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
        let Kind::File(c) = &mut n.kind else {
            return Err(Errno::EINVAL);
        };
        if size == 0 {
            *c = Content::Mem(Vec::new());
        } else {
            match c {
                Content::Mem(v) if size <= MEM_MAX => v.resize(size as usize, 0),
                Content::Mem(v) => {
                    let b = self.spill(v)?;
                    b.set_len(size).map_err(io_errno)?;
                    *c = Content::Backing(b);
                }
                Content::Backing(b) => b.set_len(size).map_err(io_errno)?,
                Content::Stored { .. } => return Err(Errno::EAGAIN),
            }
        }
        n.gen += 1;
        let t = now();
        n.meta.mtime = t;
        n.meta.ctime = t;
        st.touch(ino);
        Ok(())
    }

    fn write(&self, ino: Ino, offset: u64, data: &[u8]) -> R<u32> {
        let _g = self.change()?;
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        {
            let st = self.state();
            let n = Self::node(&st, ino)?;
            if n.frozen {
                return Err(Errno::EROFS);
            }
            if let (Mode::AppendOnly, Kind::File(c)) = (self.mode, &n.kind) {
                if offset < c.len() {
                    return Err(Errno::EPERM);
                }
            }
        }
        loop {
            self.ensure_writable(ino)?;
            let mut st = self.state();
            let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
            let Kind::File(c) = &mut n.kind else {
                return Err(Errno::EISDIR);
            };
            let b = match c {
                Content::Stored { .. } => continue, // synced meanwhile: copy up again
                Content::Mem(v) if end <= MEM_MAX => {
                    if v.len() < end as usize {
                        v.resize(end as usize, 0);
                    }
                    v[offset as usize..end as usize].copy_from_slice(data);
                    None
                }
                Content::Mem(v) => {
                    let b = self.spill(v)?;
                    *c = Content::Backing(b.clone());
                    Some(b)
                }
                Content::Backing(b) => Some(b.clone()),
            };
            if let Some(b) = b {
                // Writing outside the lock: a sync that captured the content
                // before or during this write must not swap its result in.
                n.gen += 1;
                n.writing += 1;
                drop(st);
                let r = b.write_at(data, offset);
                let mut st = self.state();
                if let Some(n) = st.get_mut(ino) {
                    n.writing -= 1;
                }
                r.map_err(io_errno)?;
                Self::after_write(&mut st, ino);
            } else {
                Self::after_write(&mut st, ino);
            }
            return Ok(data.len() as u32);
        }
    }

    fn after_write(st: &mut State, ino: Ino) {
        if let Some(n) = st.get_mut(ino) {
            n.gen += 1;
            let t = now();
            n.meta.mtime = t;
            n.meta.ctime = t;
        }
        st.touch(ino);
    }

    /// Up to `size` bytes at `offset`, in parts to be sent in order (of a
    /// stored file, slices of its cached leaves).
    fn read(&self, ino: Ino, offset: u64, size: u32) -> R<Vec<Bytes>> {
        enum Src {
            Map(Arc<BlockMap>),
            Backing(Arc<Backing>),
        }
        let src = loop {
            let block = {
                let mut st = self.state();
                let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
                match &mut n.kind {
                    Kind::File(Content::Mem(v)) => {
                        let a = (offset as usize).min(v.len());
                        let b = (a + size as usize).min(v.len());
                        return Ok(vec![Bytes::copy_from_slice(&v[a..b])]);
                    }
                    Kind::File(Content::Backing(b)) => break Src::Backing(b.clone()),
                    Kind::File(Content::Stored { map: Some(m), .. }) => break Src::Map(m.clone()),
                    Kind::File(Content::Stored { block, .. }) => block.clone(),
                    Kind::Dir(_) => return Err(Errno::EISDIR),
                    _ => return Err(Errno::EINVAL),
                }
            };
            // Building the map reads the store: another request thread
            // reads the next request meanwhile.
            fuser::hand_off_reading();
            let m = Arc::new(BlockMap::build(&*self.store, &block).map_err(eio)?);
            let mut st = self.state();
            if let Some(Node {
                kind: Kind::File(Content::Stored { block: b, map }),
                ..
            }) = st.get_mut(ino)
            {
                if *b == block {
                    *map = Some(m.clone());
                    break Src::Map(m);
                }
            }
        };
        match src {
            Src::Map(m) => {
                if !m.is_cached(&self.cache, offset, u64::from(size)) {
                    // This READ waits on the store: another request thread
                    // reads the next request meanwhile.
                    fuser::hand_off_reading();
                }
                m.read_parts(&self.store, &self.cache, offset, u64::from(size))
                    .map_err(eio)
            }
            Src::Backing(b) => b
                .read_at(offset, size)
                .map(|d| vec![Bytes::from(d)])
                .map_err(eio),
        }
    }

    fn seek(&self, ino: Ino, offset: i64, whence: i32) -> R<i64> {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return Err(Errno::EINVAL),
        };
        let off = u64::try_from(offset).map_err(|_| Errno::ENXIO)?;
        // Make sure a stored file has its map.
        let _ = self.read(ino, 0, 0)?;
        let st = self.state();
        match &Self::node(&st, ino)?.kind {
            Kind::File(Content::Mem(v)) => {
                if off >= v.len() as u64 {
                    Err(Errno::ENXIO)
                } else if data {
                    Ok(offset)
                } else {
                    Ok(v.len() as i64)
                }
            }
            Kind::File(Content::Backing(b)) => {
                use std::os::unix::io::AsRawFd;
                // SAFETY: lseek on an open descriptor we own; reads and
                // writes use explicit offsets, so moving it is harmless.
                let r = unsafe { libc::lseek(b.file.as_raw_fd(), offset, whence) };
                if r < 0 {
                    Err(Errno::from(std::io::Error::last_os_error()))
                } else {
                    Ok(r)
                }
            }
            Kind::File(Content::Stored { map: Some(m), .. }) => {
                m.seek(off, data).map(|o| o as i64).ok_or(Errno::ENXIO)
            }
            Kind::File(Content::Stored { block, .. }) if block.span() == 0 => Err(Errno::ENXIO),
            _ => Err(Errno::EINVAL),
        }
    }

    fn unlink(&self, parent: Ino, name: &[u8], dir: bool) -> R<()> {
        let _g = self.change()?;
        self.no_removal()?;
        let mut st = self.state();
        Self::writable(&st, parent)?;
        let c = *self
            .children(&mut st, parent)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        self.removable(&mut st, c, dir)?;
        self.children(&mut st, parent)?.remove(name);
        self.unlinked(&mut st, parent, c);
        st.touch(parent);
        Ok(())
    }

    /// Whether `c` may lose its name to an operation on a directory
    /// (`dir`: rmdir, or a rename of a directory over it) or on a
    /// non-directory: the kinds must agree and a directory must be empty.
    fn removable(&self, st: &mut State, c: Ino, dir: bool) -> R<()> {
        let is_dir = Self::node(st, c)?.is_dir();
        if dir && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        if !dir && is_dir {
            return Err(Errno::EISDIR);
        }
        if dir && !self.children(st, c)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        Ok(())
    }

    /// Bookkeeping after `c` lost its name in `parent`.
    fn unlinked(&self, st: &mut State, parent: Ino, c: Ino) {
        let t = now();
        if let Some(p) = st.get_mut(parent) {
            p.meta.mtime = t;
            p.meta.ctime = t;
        }
        let mut was_dir = false;
        if let Some(n) = st.get_mut(c) {
            was_dir = n.is_dir();
            n.nlink = if was_dir {
                0
            } else {
                n.nlink.saturating_sub(1)
            };
            n.meta.ctime = t;
        }
        if was_dir {
            if let Some(Node {
                kind: Kind::Dir(d), ..
            }) = st.get_mut(parent)
            {
                d.subdirs = d.subdirs.saturating_sub(1);
            }
        }
        if st.get(c).is_some_and(|n| n.nlink > 0 && n.uuid.is_some()) {
            st.touch(c);
        }
        Self::reap(st, c);
    }

    fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: RenameFlags,
    ) -> R<()> {
        let _g = self.change()?;
        self.no_removal()?;
        if newname.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut st = self.state();
        Self::writable(&st, parent)?;
        Self::writable(&st, newparent)?;
        let src = *self
            .children(&mut st, parent)?
            .get(name)
            .ok_or(Errno::ENOENT)?;
        let dst = self.children(&mut st, newparent)?.get(newname).copied();
        let t = now();
        let src_dir = Self::node(&st, src)?.is_dir();
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            let dst = dst.ok_or(Errno::ENOENT)?;
            let dst_dir = Self::node(&st, dst)?.is_dir();
            self.children(&mut st, parent)?.insert(name.to_vec(), dst);
            self.children(&mut st, newparent)?
                .insert(newname.to_vec(), src);
            for (i, p, nm) in [(src, newparent, newname), (dst, parent, name)] {
                if let Some(n) = st.get_mut(i) {
                    n.parent = p;
                    n.name = nm.to_vec();
                    n.meta.ctime = t;
                }
            }
            if src_dir != dst_dir && parent != newparent {
                if src_dir {
                    Self::move_subdir(&mut st, parent, newparent);
                } else {
                    Self::move_subdir(&mut st, newparent, parent);
                }
            }
        } else {
            if let Some(d) = dst {
                if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                    return Err(Errno::EEXIST);
                }
                if d == src {
                    return Ok(());
                }
                self.removable(&mut st, d, src_dir)?;
                self.children(&mut st, newparent)?.remove(newname);
                self.unlinked(&mut st, newparent, d);
            }
            self.children(&mut st, parent)?.remove(name);
            self.children(&mut st, newparent)?
                .insert(newname.to_vec(), src);
            if let Some(n) = st.get_mut(src) {
                n.parent = newparent;
                n.name = newname.to_vec();
                n.meta.ctime = t;
            }
            if src_dir && parent != newparent {
                Self::move_subdir(&mut st, parent, newparent);
            }
        }
        for p in [parent, newparent] {
            if let Some(n) = st.get_mut(p) {
                n.meta.mtime = t;
                n.meta.ctime = t;
            }
            st.touch(p);
        }
        st.touch(src);
        if let Some(d) = dst {
            st.touch(d);
        }
        Ok(())
    }

    /// Moves one subdirectory's count (a directory's link count) from
    /// directory `from` to directory `to`.
    fn move_subdir(st: &mut State, from: Ino, to: Ino) {
        if let Some(Node {
            kind: Kind::Dir(d), ..
        }) = st.get_mut(from)
        {
            d.subdirs = d.subdirs.saturating_sub(1);
        }
        if let Some(Node {
            kind: Kind::Dir(d), ..
        }) = st.get_mut(to)
        {
            d.subdirs += 1;
        }
    }

    fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> R<fuser::FileAttr> {
        let _g = self.change()?;
        if newname.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        let mut st = self.state();
        Self::writable(&st, newparent)?;
        Self::writable(&st, ino)?;
        if Self::node(&st, ino)?.is_dir() {
            return Err(Errno::EPERM);
        }
        if self.children(&mut st, newparent)?.contains_key(newname) {
            return Err(Errno::EEXIST);
        }
        let (old_parent, is_file, has_uuid, tree) = {
            let n = Self::node(&st, ino)?;
            (
                n.parent,
                matches!(n.kind, Kind::File(_)),
                n.uuid.is_some(),
                n.tree,
            )
        };
        if is_file && !has_uuid {
            // Its old entry becomes a HardLink: re-encode that directory.
            st.touch(old_parent);
            let u = uuid::Uuid::new_v4();
            if let Some(n) = st.get_mut(ino) {
                n.uuid = Some(u);
            }
            st.trees[tree].links.insert(u, ino);
        }
        self.children(&mut st, newparent)?
            .insert(newname.to_vec(), ino);
        let t = now();
        if let Some(n) = st.get_mut(ino) {
            n.nlink += 1;
            n.meta.ctime = t;
        }
        if let Some(p) = st.get_mut(newparent) {
            p.meta.mtime = t;
            p.meta.ctime = t;
        }
        st.touch(newparent);
        st.touch(ino);
        self.attr(&mut st, ino)
    }

    #[allow(clippy::too_many_arguments)]
    fn setattr(
        &self,
        ino: Ino,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
    ) -> R<fuser::FileAttr> {
        let _g = self.change()?;
        {
            let st = self.state();
            Self::writable(&st, ino)?;
        }
        if let Some(s) = size {
            self.set_size(ino, s)?;
        }
        let mut st = self.state();
        let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
        if let Some(m) = mode {
            n.meta.mode = m & 0o7777;
        }
        if let Some(u) = uid {
            if u != n.meta.uid {
                n.meta.user = None;
            }
            n.meta.uid = u;
        }
        if let Some(g) = gid {
            if g != n.meta.gid {
                n.meta.group = None;
            }
            n.meta.gid = g;
        }
        if let Some(a) = atime {
            n.atime = ts(a);
        }
        if let Some(m) = mtime {
            n.meta.mtime = ts(m);
        }
        n.meta.ctime = ctime.map(from_system).unwrap_or_else(now);
        st.touch(ino);
        self.attr(&mut st, ino)
    }

    fn getxattr(&self, ino: Ino, name: &[u8]) -> R<Vec<u8>> {
        if name == XATTR_BLOCKREF {
            let is_file = matches!(Self::node(&self.state(), ino)?.kind, Kind::File(_));
            if !is_file {
                return Err(Errno::ENODATA);
            }
            let b = self.sync_file(ino).map_err(eio)?.ok_or(Errno::ENODATA)?;
            return Ok(b.to_text().into_bytes());
        }
        let st = self.state();
        let n = Self::node(&st, ino)?;
        if name == XATTR_MIME {
            return n
                .meta
                .mime
                .clone()
                .map(String::into_bytes)
                .ok_or(Errno::ENODATA);
        }
        n.meta
            .xattrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .ok_or(Errno::ENODATA)
    }

    fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> R<()> {
        let _g = self.change()?;
        if name == XATTR_BLOCKREF {
            return Err(Errno::EPERM);
        }
        if !(name.starts_with(b"user.") || name.starts_with(b"trusted.")) {
            return Err(Errno::EOPNOTSUPP);
        }
        let mut st = self.state();
        Self::writable(&st, ino)?;
        let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
        let exists = if name == XATTR_MIME {
            n.meta.mime.is_some()
        } else {
            n.meta.xattrs.iter().any(|(k, _)| k == name)
        };
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(Errno::EEXIST);
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(Errno::ENODATA);
        }
        if name == XATTR_MIME {
            n.meta.mime = Some(String::from_utf8(value.to_vec()).map_err(|_| Errno::EINVAL)?);
        } else {
            n.meta.xattrs.retain(|(k, _)| k != name);
            n.meta.xattrs.push((name.to_vec(), value.to_vec()));
            n.meta.xattrs.sort();
        }
        n.meta.ctime = now();
        st.touch(ino);
        Ok(())
    }

    fn removexattr(&self, ino: Ino, name: &[u8]) -> R<()> {
        let _g = self.change()?;
        let mut st = self.state();
        Self::writable(&st, ino)?;
        let n = st.get_mut(ino).ok_or(Errno::ENOENT)?;
        if name == XATTR_MIME {
            if n.meta.mime.take().is_none() {
                return Err(Errno::ENODATA);
            }
        } else {
            let before = n.meta.xattrs.len();
            n.meta.xattrs.retain(|(k, _)| k != name);
            if n.meta.xattrs.len() == before {
                return Err(Errno::ENODATA);
            }
        }
        n.meta.ctime = now();
        st.touch(ino);
        Ok(())
    }

    fn listxattr(&self, ino: Ino) -> R<Vec<u8>> {
        let st = self.state();
        let n = Self::node(&st, ino)?;
        let mut out = Vec::new();
        for (k, _) in &n.meta.xattrs {
            out.extend_from_slice(k);
            out.push(0);
        }
        if n.meta.mime.is_some() {
            out.extend_from_slice(XATTR_MIME);
            out.push(0);
        }
        Ok(out)
    }

    fn release(&self, fh: u64) {
        let h = self
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
        let Some(Handle::File { ino, write }) = h else {
            return;
        };
        let mut st = self.state();
        let queue = match st.get_mut(ino) {
            Some(n) => {
                n.opens = n.opens.saturating_sub(1);
                write
                    && n.nlink > 0
                    && matches!(n.kind, Kind::File(ref c) if !matches!(c, Content::Stored { .. }))
            }
            None => false,
        };
        Self::reap(&mut st, ino);
        drop(st);
        if queue {
            self.sync.push(ino);
        }
    }
}

fn reply_xattr(v: R<Vec<u8>>, size: u32, reply: ReplyXattr) {
    match v {
        Err(e) => reply.error(e),
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
    }
}

fn special_kind(mode: u32) -> Option<SpecialKind> {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => Some(SpecialKind::Fifo),
        libc::S_IFSOCK => Some(SpecialKind::Socket),
        libc::S_IFCHR => Some(SpecialKind::CharDevice),
        libc::S_IFBLK => Some(SpecialKind::BlockDevice),
        _ => None,
    }
}

impl VtFs {
    /// Calls `f` with up to [`LISTING_PART`] entries of directory `ino`'s
    /// listing from position `from`: from the listing taken at OPENDIR
    /// (handle `fh`), or without opendirs from the directory itself.
    fn with_listing<T>(
        &self,
        ino: Ino,
        fh: u64,
        from: usize,
        f: impl FnOnce(&[Listed]) -> T,
    ) -> R<T> {
        if self.no_opendir {
            return Ok(f(&self.inner.listing(ino, from, LISTING_PART)?));
        }
        let h = self.inner.handles.lock().unwrap_or_else(|e| e.into_inner());
        match h.get(&fh) {
            Some(Handle::Dir(list)) => {
                let part = list.get(from..).unwrap_or_default();
                Ok(f(&part[..part.len().min(LISTING_PART)]))
            }
            _ => Err(Errno::EBADF),
        }
    }
}

impl Filesystem for VtFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_readahead(readahead::WINDOW_KB << 10);
        let _ = config.set_max_write(1 << 20);
        // Listings carry attributes: a walk needs no lookup per entry.
        // Every part of a listing, not only the first (READDIRPLUS_AUTO):
        // the kernel makes inodes for READDIRPLUS entries only, and files
        // pushed into the page cache need their inodes.
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_DO_READDIRPLUS);
        let ro = self.inner.mode == Mode::ReadOnly;
        self.no_open = ro
            && config
                .add_capabilities(fuser::InitFlags::FUSE_NO_OPEN_SUPPORT)
                .is_ok();
        self.no_opendir = ro
            && config
                .add_capabilities(fuser::InitFlags::FUSE_NO_OPENDIR_SUPPORT)
                .is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.inner.lookup(parent.0, name.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let mut st = self.inner.state();
        match self.inner.attr(&mut st, ino.0) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self
            .inner
            .setattr(ino.0, mode, uid, gid, size, atime, mtime, ctime)
        {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let st = self.inner.state();
        match st.get(ino.0).map(|n| &n.kind) {
            Some(Kind::Symlink(t)) => reply.data(t),
            Some(_) => reply.error(Errno::EINVAL),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let r = self.inner.change().and_then(|_g| {
            let kind = match special_kind(mode) {
                Some(kind) => Kind::Special {
                    kind,
                    rdev: u64::from(rdev),
                },
                None if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 => {
                    Kind::File(Content::Mem(Vec::new()))
                }
                None => return Err(Errno::EINVAL),
            };
            let ino = self
                .inner
                .make(req, parent.0, name.as_bytes(), kind, mode & !umask)?;
            self.inner.attr(&mut self.inner.state(), ino)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self.inner.change().and_then(|_g| {
            let kind = Kind::Dir(DirData {
                stored: vt_core::BlockRef::empty(),
                children: Some(Default::default()),
                subdirs: 0,
            });
            let ino = self
                .inner
                .make(req, parent.0, name.as_bytes(), kind, mode & !umask)?;
            self.inner.attr(&mut self.inner.state(), ino)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.unlink(parent.0, name.as_bytes(), false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.unlink(parent.0, name.as_bytes(), true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self.inner.change().and_then(|_g| {
            let kind = Kind::Symlink(target.as_os_str().as_bytes().to_vec());
            let ino = self
                .inner
                .make(req, parent.0, link_name.as_bytes(), kind, 0o777)?;
            self.inner.attr(&mut self.inner.state(), ino)
        });
        match r {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.inner.rename(
            parent.0,
            name.as_bytes(),
            newparent.0,
            newname.as_bytes(),
            flags,
        ) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.inner.link(ino.0, newparent.0, newname.as_bytes()) {
            Ok(a) => reply.entry(&TTL, &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if self.no_open {
            // A read-only mount keeps nothing per open file. Answered
            // ENOSYS, the kernel opens files itself from now on (keeping
            // their page cache) and sends neither OPEN nor RELEASE: one
            // round trip less per file read. Siblings are prefetched on a
            // file's first read instead.
            reply.error(Errno::ENOSYS);
            return;
        }
        let write = flags.acc_mode() != OpenAccMode::O_RDONLY;
        let r = (|| {
            let _g = if write {
                let g = self.inner.change()?;
                // Before the writes reach the page cache: no push of the
                // stored content may land after them.
                self.inner.fence.mark_changed(ino.0, FENCE_WAIT);
                Some(g)
            } else {
                None
            };
            let mut st = self.inner.state();
            let n = st.get_mut(ino.0).ok_or(Errno::ENOENT)?;
            if write && n.frozen {
                return Err(Errno::EROFS);
            }
            match &n.kind {
                Kind::File(c) => {
                    if write
                        && self.inner.mode == Mode::AppendOnly
                        && flags.0 & libc::O_TRUNC != 0
                        && !c.is_empty()
                    {
                        return Err(Errno::EPERM);
                    }
                }
                Kind::Dir(_) => return Err(Errno::EISDIR),
                _ => return Err(Errno::EINVAL),
            }
            n.opens += 1;
            let ahead = if write {
                Vec::new()
            } else {
                self.inner.prefetch_siblings(&st, ino.0)
            };
            drop(st);
            self.inner.push_files(ahead, None);
            Ok((
                self.inner.open_handle(Handle::File { ino: ino.0, write }),
                write,
            ))
        })();
        match r {
            Ok((fh, write)) => reply.opened(
                FileHandle(fh),
                if write {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    // Nothing to do at close: spare the FLUSH round trip.
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH
                },
            ),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.inner.note_read();
        let ahead = if self.no_open && offset == 0 {
            let st = self.inner.state();
            self.inner.prefetch_siblings(&st, ino.0)
        } else {
            Vec::new()
        };
        match self.inner.read(ino.0, offset, size) {
            Ok(mut parts) => {
                // Gathered by the kernel from the cached leaves: no copy
                // (but a writev takes at most IOV_MAX slices).
                if parts.len() > MAX_PARTS {
                    parts = vec![Bytes::from(parts.concat())];
                }
                let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                reply.data_vectored(&iov)
            }
            Err(e) => reply.error(e),
        }
        self.inner.push_files(ahead, None);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.inner.write(ino.0, offset, data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do at close (data is synced in the background, and on
        // fsync): ENOSYS tells the kernel to stop sending FLUSH, one round
        // trip less per close, which it then treats as success.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.inner.release(fh.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.inner.commit() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir {
            // As for files (see open): the kernel then sends no OPENDIR or
            // RELEASEDIR and caches listings; readdir lists from the inode.
            reply.error(Errno::ENOSYS);
            return;
        }
        let r = self
            .inner
            .listing(ino.0, 0, usize::MAX)
            .map(|list| self.inner.open_handle(Handle::Dir(list)));
        match r {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        // Before the reply: the lister opens the files once it has it.
        self.inner.push_later(ino.0, offset, Vec::new());
        let r = self.with_listing(ino.0, fh.0, offset as usize, |part| {
            for (i, (ino, kind, name)) in part.iter().enumerate() {
                if reply.add(
                    INodeNo(*ino),
                    offset + i as u64 + 1,
                    *kind,
                    OsStr::from_bytes(name),
                ) {
                    break;
                }
            }
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let part = self.with_listing(ino.0, fh.0, offset as usize, |part| {
            part.iter()
                .map(|(i, _, n)| (*i, n.clone()))
                .collect::<Vec<(Ino, Vec<u8>)>>()
        });
        let part = match part {
            Ok(p) => p,
            Err(e) => {
                reply.error(e);
                return;
            }
        };
        let mut st = self.inner.state();
        for (k, (ino, name)) in part.iter().enumerate() {
            let Ok(a) = self.inner.attr(&mut st, *ino) else {
                continue;
            };
            let off = offset + k as u64 + 1;
            if reply.add(
                INodeNo(*ino),
                off,
                OsStr::from_bytes(name),
                &TTL,
                &a,
                Generation(0),
            ) {
                break;
            }
        }
        // After the entries' attributes: that loaded the subdirectories'
        // entries, whose files are fetched ahead too.
        let ahead = if offset == 0 && self.inner.reading() {
            self.inner.prefetch_children(&st, ino.0, None)
        } else {
            Vec::new()
        };
        if offset == 0 {
            Inner::walk_ahead(&self.inner, &st, ino.0);
        }
        drop(st);
        reply.ok();
        self.inner.push_later(ino.0, offset, ahead);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.inner
            .handles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.inner.commit() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(eio(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let Ok(c) = std::ffi::CString::new(self.inner.backing.path().as_os_str().as_bytes()) else {
            reply.error(Errno::EIO);
            return;
        };
        // SAFETY: statvfs fills the zeroed struct; the path is a valid C string.
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            reply.error(Errno::from(std::io::Error::last_os_error()));
            return;
        }
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            NAME_MAX as u32,
            s.f_frsize as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.inner.setxattr(ino.0, name.as_bytes(), value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        reply_xattr(self.inner.getxattr(ino.0, name.as_bytes()), size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        reply_xattr(self.inner.listxattr(ino.0), size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.inner.removexattr(ino.0, name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let write = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let r = self.inner.change().and_then(|_g| {
            let ino = self.inner.make(
                req,
                parent.0,
                name.as_bytes(),
                Kind::File(Content::Mem(Vec::new())),
                mode & !umask,
            )?;
            let mut st = self.inner.state();
            if let Some(n) = st.get_mut(ino) {
                n.opens += 1;
            }
            let a = self.inner.attr(&mut st, ino)?;
            drop(st);
            Ok((a, self.inner.open_handle(Handle::File { ino, write })))
        });
        match r {
            Ok((a, fh)) => reply.created(
                &TTL,
                &a,
                Generation(0),
                FileHandle(fh),
                FopenFlags::FOPEN_KEEP_CACHE,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            reply.error(Errno::EOPNOTSUPP);
            return;
        }
        let r = self.inner.change().and_then(|_g| {
            let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
            let len = match &Inner::node(&self.inner.state(), ino.0)?.kind {
                Kind::File(c) => c.len(),
                _ => return Err(Errno::ENODEV),
            };
            if end > len {
                self.inner.set_size(ino.0, end)?;
            }
            Ok(())
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.inner.seek(ino.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(e),
        }
    }
}
