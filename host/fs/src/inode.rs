//! The inode table: every file, directory and link the mount has shown,
//! numbered for the life of the mount.
//!
//! Nodes are created as directories are first looked into. Names of one
//! hard-linked file (Dirents of kind HardLink, resolved through the
//! snapshot's hard link table) share one node, so they share an inode
//! number and content. Changes mark the node and its ancestors dirty; a
//! commit re-encodes only dirty directories.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use uuid::Uuid;
use vt_core::dir::read_dir;
use vt_core::dirent::{SpecialKind, Timestamp};
use vt_core::{BlockRef, Dirent, DirentKind, Meta, Result, Store};

use crate::backing::Backing;
use crate::blockmap::BlockMap;

/// An inode number.
pub type Ino = u64;

/// The root directory's inode number.
pub const ROOT: Ino = 1;

/// A file's content.
pub enum Content {
    /// In the store; `map` is built on first read.
    Stored {
        /// The content.
        block: BlockRef,
        /// Its blockmap, once built.
        map: Option<Arc<BlockMap>>,
    },
    /// Written, small, in memory.
    Mem(Vec<u8>),
    /// Written, in a backing file.
    Backing(Arc<Backing>),
}

impl Content {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Content::Stored { block, .. } => block.span(),
            Content::Mem(v) => v.len() as u64,
            Content::Backing(b) => b.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A directory's entries.
pub struct DirData {
    /// The content as last encoded (or loaded).
    pub stored: BlockRef,
    /// Name → inode, once loaded.
    pub children: Option<BTreeMap<Vec<u8>, Ino>>,
    /// How many children are directories (for nlink).
    pub subdirs: u32,
}

/// What a node is.
pub enum Kind {
    /// A regular file.
    File(Content),
    /// A directory.
    Dir(DirData),
    /// A symbolic link.
    Symlink(Vec<u8>),
    /// A fifo, socket or device node.
    Special {
        /// Which.
        kind: SpecialKind,
        /// Device number.
        rdev: u64,
    },
}

/// One inode.
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Metadata as recorded in Dirents.
    pub meta: Meta,
    /// Access time (kept in memory only: Dirents do not record it).
    pub atime: Timestamp,
    /// Number of names.
    pub nlink: u32,
    /// The directory holding it (for a hard-linked file: the last one).
    pub parent: Ino,
    /// Its last name, for Dirents and scanner choice.
    pub name: Vec<u8>,
    /// Identity in the hard link table, for a hard-linked regular file.
    pub uuid: Option<Uuid>,
    /// Changed since the last commit (directories: must be re-encoded).
    pub dirty: bool,
    /// Content generation: bumped on every content change.
    pub gen: u64,
    /// Open file handles.
    pub opens: u32,
    /// Writes to its backing file in progress (outside the table's lock).
    pub writing: u32,
    /// Which snapshot tree it belongs to (for hard link resolution).
    pub tree: usize,
    /// Read-only (snapshots shown by `-a`).
    pub frozen: bool,
}

/// One snapshot's hard link table.
#[derive(Default)]
pub struct Tree {
    /// The table's content, if the snapshot has one.
    pub table: Option<BlockRef>,
    /// Its entries by UUID, once loaded.
    pub entries: Option<HashMap<Uuid, Dirent>>,
    /// Nodes of hard-linked files seen so far.
    pub links: HashMap<Uuid, Ino>,
}

/// Current time as a Timestamp.
pub fn now() -> Timestamp {
    from_system(SystemTime::now())
}

/// SystemTime → Timestamp.
pub fn from_system(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => Timestamp {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        },
        Err(e) => {
            let d = e.duration();
            let mut secs = -(d.as_secs() as i64);
            let mut nanos = d.subsec_nanos();
            if nanos > 0 {
                secs -= 1;
                nanos = 1_000_000_000 - nanos;
            }
            Timestamp { secs, nanos }
        }
    }
}

/// Timestamp → SystemTime.
pub fn to_system(t: Timestamp) -> SystemTime {
    if t.secs >= 0 {
        UNIX_EPOCH + Duration::new(t.secs as u64, t.nanos)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs())
            + Duration::from_nanos(t.nanos.into())
    }
}

/// The inode table.
pub struct State {
    /// Nodes by inode number (index 0 is unused).
    pub nodes: Vec<Node>,
    /// Snapshot trees: 0 is the writable one (or the `-a` listing).
    pub trees: Vec<Tree>,
    /// The hard link table of tree 0 changed.
    pub table_dirty: bool,
    /// Something changed since the last commit.
    pub changed: bool,
}

impl Node {
    /// A node for Dirent `d` (not a HardLink) in `tree` under `parent`.
    pub fn from_dirent(d: &Dirent, parent: Ino, tree: usize) -> Node {
        let kind = match &d.kind {
            DirentKind::File { block } => Kind::File(Content::Stored {
                block: block.clone(),
                map: None,
            }),
            DirentKind::Dir { block, .. } => Kind::Dir(DirData {
                stored: block.clone(),
                children: None,
                subdirs: 0,
            }),
            DirentKind::Symlink { target } => Kind::Symlink(target.clone()),
            DirentKind::Special { kind, rdev } => Kind::Special {
                kind: *kind,
                rdev: *rdev,
            },
            // Resolved by the caller; an unresolvable one shows as empty.
            DirentKind::HardLink { .. } => Kind::File(Content::Mem(Vec::new())),
        };
        Node {
            kind,
            atime: d.meta.mtime,
            meta: d.meta.clone(),
            nlink: 1,
            parent,
            name: d.name.clone(),
            uuid: None,
            dirty: false,
            gen: 0,
            opens: 0,
            writing: 0,
            tree,
            frozen: false,
        }
    }

    /// The FUSE file type.
    pub fn file_type(&self) -> FileType {
        match &self.kind {
            Kind::File(_) => FileType::RegularFile,
            Kind::Dir(_) => FileType::Directory,
            Kind::Symlink(_) => FileType::Symlink,
            Kind::Special { kind, .. } => match kind {
                SpecialKind::Fifo => FileType::NamedPipe,
                SpecialKind::Socket => FileType::Socket,
                SpecialKind::CharDevice => FileType::CharDevice,
                SpecialKind::BlockDevice => FileType::BlockDevice,
            },
        }
    }

    /// True for directories.
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }
}

impl State {
    /// A table with `root` as inode 1.
    pub fn new(root: Node, trees: Vec<Tree>) -> Self {
        let placeholder = Node::from_dirent(
            &Dirent::new(Vec::new(), DirentKind::Symlink { target: Vec::new() }),
            0,
            0,
        );
        State {
            nodes: vec![placeholder, root],
            trees,
            table_dirty: false,
            changed: false,
        }
    }

    /// Adds a node; returns its inode number.
    pub fn add(&mut self, n: Node) -> Ino {
        self.nodes.push(n);
        (self.nodes.len() - 1) as Ino
    }

    /// The node `ino`, if it exists.
    pub fn get(&self, ino: Ino) -> Option<&Node> {
        if ino == 0 {
            return None;
        }
        self.nodes.get(ino as usize)
    }

    /// The node `ino`, mutably.
    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Node> {
        if ino == 0 {
            return None;
        }
        self.nodes.get_mut(ino as usize)
    }

    fn table_entries(&mut self, store: &dyn Store, tree: usize) -> Result<()> {
        let t = &mut self.trees[tree];
        if t.entries.is_none() {
            let mut m = HashMap::new();
            if let Some(b) = &t.table {
                for e in read_dir(store, b)? {
                    if let Some(u) = e.uuid {
                        m.insert(u, e);
                    }
                }
            }
            t.entries = Some(m);
        }
        Ok(())
    }

    /// Loads directory `ino`'s entries from the store, if not yet loaded.
    pub fn load_dir(&mut self, store: &dyn Store, ino: Ino) -> Result<()> {
        let Some(block) = self.unloaded_dir(ino) else {
            return Ok(());
        };
        let entries = read_dir(store, &block)?;
        self.install_dir(store, ino, entries)
    }

    /// The stored block of directory `ino`, if its entries are not loaded
    /// yet.
    pub fn unloaded_dir(&self, ino: Ino) -> Option<BlockRef> {
        match self.get(ino) {
            Some(Node {
                kind: Kind::Dir(d), ..
            }) if d.children.is_none() => Some(d.stored.clone()),
            _ => None,
        }
    }

    /// Makes `entries`, read from its stored block, directory `ino`'s
    /// children, unless they were loaded meanwhile (the block can be read
    /// and decoded without holding the table).
    pub fn install_dir(&mut self, store: &dyn Store, ino: Ino, entries: Vec<Dirent>) -> Result<()> {
        let (tree, frozen) = match self.get(ino) {
            Some(Node {
                kind: Kind::Dir(d),
                tree,
                frozen,
                ..
            }) if d.children.is_none() => (*tree, *frozen),
            _ => return Ok(()),
        };
        let mut children = BTreeMap::new();
        let mut subdirs = 0;
        for e in entries {
            let child = if let DirentKind::HardLink { uuid } = e.kind {
                if let Some(&i) = self.trees[tree].links.get(&uuid) {
                    self.nodes[i as usize].nlink += 1;
                    i
                } else {
                    self.table_entries(store, tree)?;
                    let target = self.trees[tree]
                        .entries
                        .as_ref()
                        .and_then(|m| m.get(&uuid))
                        .cloned();
                    let Some(target) = target else {
                        tracing::warn!(
                            "{}: hard link target {uuid} missing from the snapshot; not shown",
                            e.name_lossy()
                        );
                        continue;
                    };
                    let mut n = Node::from_dirent(&target, ino, tree);
                    n.name = e.name.clone();
                    n.uuid = Some(uuid);
                    n.frozen = frozen;
                    let i = self.add(n);
                    self.trees[tree].links.insert(uuid, i);
                    i
                }
            } else {
                let mut n = Node::from_dirent(&e, ino, tree);
                n.frozen = frozen;
                if n.is_dir() {
                    subdirs += 1;
                }
                self.add(n)
            };
            children.insert(e.name, child);
        }
        if let Some(Node {
            kind: Kind::Dir(d), ..
        }) = self.get_mut(ino)
        {
            d.children = Some(children);
            d.subdirs = subdirs;
        }
        Ok(())
    }

    /// Marks `ino` changed: its directory chain (or, for a hard-linked
    /// file, the hard link table) must be re-encoded at the next commit.
    pub fn touch(&mut self, ino: Ino) {
        self.changed = true;
        let Some(n) = self.get_mut(ino) else {
            return;
        };
        n.dirty = true;
        if n.uuid.is_some() && !n.is_dir() {
            self.table_dirty = true;
            return;
        }
        let mut p = n.parent;
        while let Some(pn) = self.get_mut(p) {
            pn.dirty = true;
            if p == ROOT {
                break;
            }
            p = pn.parent;
        }
    }

    /// The attributes FUSE reports for `ino`.
    pub fn attr(&self, ino: Ino) -> Option<FileAttr> {
        let n = self.get(ino)?;
        let (size, blocks, rdev) = match &n.kind {
            Kind::File(c) => {
                let len = c.len();
                let blocks = match c {
                    Content::Backing(b) => {
                        use std::os::unix::fs::MetadataExt;
                        b.file
                            .metadata()
                            .map(|m| m.blocks())
                            .unwrap_or(len.div_ceil(512))
                    }
                    _ => len.div_ceil(512),
                };
                (len, blocks, 0)
            }
            Kind::Dir(d) => {
                let n = d.children.as_ref().map_or(0, |c| c.len() as u64);
                (4096 + 32 * n, 8, 0)
            }
            Kind::Symlink(t) => (t.len() as u64, 0, 0),
            Kind::Special { rdev, .. } => (0, 0, *rdev as u32),
        };
        let nlink = match &n.kind {
            Kind::Dir(d) => 2 + d.subdirs,
            _ => n.nlink,
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks,
            atime: to_system(n.atime),
            mtime: to_system(n.meta.mtime),
            ctime: to_system(n.meta.ctime),
            crtime: to_system(n.meta.mtime),
            kind: n.file_type(),
            perm: (n.meta.mode & 0o7777) as u16,
            nlink,
            uid: n.meta.uid,
            gid: n.meta.gid,
            rdev,
            blksize: 4096,
            flags: 0,
        })
    }
}
