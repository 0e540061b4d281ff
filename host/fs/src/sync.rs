//! Background syncs and commits.
//!
//! Closing a written file queues it; worker threads blockify queued files
//! into the store (with the scanner the chooser picks) and swap their
//! content to the stored block if nothing wrote to them meanwhile. A
//! commit waits until the queue is idle, encodes every dirty directory
//! bottom-up (and the hard link table, and the directories above a
//! SUBPATH), makes the store durable and appends the new top Dirent to
//! the archive.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Condvar, Mutex};

use vt_core::blockify::{AddStats, Blockifier};
use vt_core::dir::{encode_dir, read_dir};
use vt_core::{BlockRef, ChunkParams, Dirent, DirentKind, Scanner};

use crate::backing::Backing;
use crate::error::Result;
use crate::fs::Inner;
use crate::inode::{Content, Ino, Kind, State, ROOT};

/// Files waiting to be synced.
#[derive(Default)]
pub struct SyncQueue {
    q: Mutex<QueueState>,
    work: Condvar,
    idle: Condvar,
}

#[derive(Default)]
struct QueueState {
    queue: VecDeque<Ino>,
    queued: HashSet<Ino>,
    busy: usize,
}

impl SyncQueue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `ino` (once).
    pub fn push(&self, ino: Ino) {
        let mut g = self.lock();
        if g.queued.insert(ino) {
            g.queue.push_back(ino);
            self.work.notify_one();
        }
    }

    fn pop(&self) -> Ino {
        let mut g = self.lock();
        loop {
            if let Some(i) = g.queue.pop_front() {
                g.queued.remove(&i);
                g.busy += 1;
                return i;
            }
            g = self.work.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn done(&self) {
        let mut g = self.lock();
        g.busy -= 1;
        if g.busy == 0 && g.queue.is_empty() {
            self.idle.notify_all();
        }
    }

    /// Waits until nothing is queued or being synced.
    pub fn wait_idle(&self) {
        let mut g = self.lock();
        while g.busy > 0 || !g.queue.is_empty() {
            g = self.idle.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Starts `n` sync workers.
pub(crate) fn start_workers(inner: &Arc<Inner>, n: usize) {
    for i in 0..n {
        let inner = inner.clone();
        let r = std::thread::Builder::new()
            .name(format!("vt-sync-{i}"))
            .spawn(move || loop {
                let ino = inner.sync.pop();
                if let Err(e) = inner.sync_file(ino) {
                    tracing::error!("background sync of inode {ino} failed: {e}; it stays in its backing file and is retried at commit");
                }
                inner.sync.done();
            });
        if let Err(e) = r {
            tracing::error!("cannot start sync worker: {e}");
        }
    }
}

/// A written file's content captured for blockifying.
enum Source {
    Mem(Vec<u8>),
    Backing(Arc<Backing>, u64),
}

impl Inner {
    fn blockify(&self, name: &[u8], src: &Source) -> vt_core::Result<BlockRef> {
        let stats = AddStats::default();
        let bf = Blockifier::new(&*self.store, ChunkParams::default(), &stats);
        let path = Path::new(OsStr::from_bytes(name));
        match src {
            Source::Mem(v) => {
                let first = &v[..v.len().min(1024)];
                let mut sc = (self.chooser)(path, first);
                bf.blockify_sized(&v[..], Some(v.len() as u64), scanner(&mut sc))
            }
            Source::Backing(b, len) => {
                let first = b.read_at(0, 1024).unwrap_or_default();
                let mut sc = (self.chooser)(path, &first);
                bf.blockify_sized(b.reader(*len), Some(*len), scanner(&mut sc))
            }
        }
    }

    /// Blockifies file `ino` if it was written, and makes the stored block
    /// its content unless it was written again meanwhile. Returns the
    /// content's block ref (`None` for an unlinked file).
    pub(crate) fn sync_file(&self, ino: Ino) -> vt_core::Result<Option<BlockRef>> {
        let (gen, src, name) = {
            let st = self.state();
            let Some(n) = st.get(ino) else {
                return Ok(None);
            };
            if n.nlink == 0 {
                return Ok(None);
            }
            let src = match &n.kind {
                Kind::File(Content::Stored { block, .. }) => return Ok(Some(block.clone())),
                Kind::File(Content::Mem(v)) => Source::Mem(v.clone()),
                Kind::File(Content::Backing(b)) => Source::Backing(b.clone(), b.len()),
                _ => return Ok(None),
            };
            (n.gen, src, n.name.clone())
        };
        let block = self.blockify(&name, &src)?;
        let mut st = self.state();
        if let Some(n) = st.get_mut(ino) {
            if n.gen == gen && n.writing == 0 {
                if let Kind::File(c) = &mut n.kind {
                    if !matches!(c, Content::Stored { .. }) {
                        *c = Content::Stored {
                            block: block.clone(),
                            map: None,
                        };
                    }
                }
            }
        }
        Ok(Some(block))
    }

    /// Encodes node `ino` as a Dirent named `name`, re-encoding dirty
    /// directories below it.
    fn encode_node(
        &self,
        st: &mut State,
        bf: &Blockifier<'_>,
        ino: Ino,
        name: Vec<u8>,
    ) -> vt_core::Result<Dirent> {
        let Some(n) = st.get(ino) else {
            return Err(vt_core::Error::Store(format!("inode {ino} vanished")));
        };
        let meta = n.meta.clone();
        let kind = match &n.kind {
            Kind::Dir(d) => {
                if d.children.is_none() || !n.dirty {
                    DirentKind::Dir {
                        block: d.stored.clone(),
                        hardlinks: None,
                    }
                } else {
                    let kids: Vec<(Vec<u8>, Ino)> = d
                        .children
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), *v))
                        .collect();
                    let mut entries = Vec::with_capacity(kids.len());
                    for (nm, c) in kids {
                        let linked = st
                            .get(c)
                            .and_then(|cn| cn.uuid.filter(|_| matches!(cn.kind, Kind::File(_))));
                        match linked {
                            Some(uuid) => {
                                entries.push(Dirent::new(nm, DirentKind::HardLink { uuid }))
                            }
                            None => entries.push(self.encode_node(st, bf, c, nm)?),
                        }
                    }
                    let block = encode_dir(bf, entries)?;
                    if let Some(n) = st.get_mut(ino) {
                        n.dirty = false;
                        if let Kind::Dir(d) = &mut n.kind {
                            d.stored = block.clone();
                        }
                    }
                    DirentKind::Dir {
                        block,
                        hardlinks: None,
                    }
                }
            }
            Kind::File(c) => {
                let src = match c {
                    Content::Stored { .. } => None,
                    Content::Mem(v) => Some(Source::Mem(v.clone())),
                    Content::Backing(b) => Some(Source::Backing(b.clone(), b.len())),
                };
                let block = match (src, c) {
                    (Some(s), _) => self.blockify(&name, &s)?,
                    (None, Content::Stored { block, .. }) => block.clone(),
                    (None, _) => BlockRef::empty(),
                };
                DirentKind::File { block }
            }
            Kind::Symlink(t) => DirentKind::Symlink { target: t.clone() },
            Kind::Special { kind, rdev } => DirentKind::Special {
                kind: *kind,
                rdev: *rdev,
            },
        };
        Ok(Dirent {
            name,
            uuid: None,
            kind,
            meta,
        })
    }

    /// Waits for queued syncs, then records a new snapshot if anything
    /// changed. Returns the new top Dirent, if one was recorded.
    pub fn commit(&self) -> Result<Option<Dirent>> {
        let _one = self.commit_lock.lock().unwrap_or_else(|e| e.into_inner());
        self.sync.wait_idle();
        let mut chain = self.chain.lock().unwrap_or_else(|e| e.into_inner());
        if chain.is_empty() {
            return Ok(None); // -a: nothing is writable
        }
        let mut st = self.state();
        if !st.changed {
            return Ok(None);
        }
        let stats = AddStats::default();
        let bf = Blockifier::new(&*self.store, ChunkParams::default(), &stats);
        let root_name = chain.last().map(|d| d.name.clone()).unwrap_or_default();
        let mut cur = self.encode_node(&mut st, &bf, ROOT, root_name)?;
        // Directories above a SUBPATH: replace the entry on the way up.
        let mut new_chain = vec![cur.clone()];
        for parent in chain.iter().rev().skip(1) {
            let Some(block) = parent.block() else {
                return Err(crate::FsError::Unsupported(
                    "a SUBPATH's ancestor is not a directory".into(),
                ));
            };
            let mut entries = read_dir(&*self.store, block)?;
            match entries.iter_mut().find(|e| e.name == cur.name) {
                Some(e) => *e = cur.clone(),
                None => entries.push(cur.clone()),
            }
            let mut p = parent.clone();
            p.kind = DirentKind::Dir {
                block: encode_dir(&bf, entries)?,
                hardlinks: None,
            };
            new_chain.push(p.clone());
            cur = p;
        }
        new_chain.reverse();
        // The hard link table hangs off the snapshot's top.
        let old_table = match chain.first().map(|d| &d.kind) {
            Some(DirentKind::Dir { hardlinks, .. }) => hardlinks.clone(),
            _ => None,
        };
        let table = if st.table_dirty {
            let links: Vec<(uuid::Uuid, Ino)> =
                st.trees[0].links.iter().map(|(u, i)| (*u, *i)).collect();
            if let Some(t) = &old_table {
                if st.trees[0].entries.is_none() {
                    let mut m = std::collections::HashMap::new();
                    for e in read_dir(&*self.store, t)? {
                        if let Some(u) = e.uuid {
                            m.insert(u, e);
                        }
                    }
                    st.trees[0].entries = Some(m);
                }
            }
            let mut entries = st.trees[0].entries.clone().unwrap_or_default();
            for (u, i) in links {
                let mut d = self.encode_node(&mut st, &bf, i, u.to_string().into_bytes())?;
                d.uuid = Some(u);
                entries.insert(u, d);
            }
            st.trees[0].entries = Some(entries.clone());
            if entries.is_empty() {
                None
            } else {
                Some(encode_dir(&bf, entries.into_values().collect())?)
            }
        } else {
            old_table
        };
        if let DirentKind::Dir { hardlinks, .. } = &mut cur.kind {
            *hardlinks = table;
        }
        new_chain[0] = cur.clone();
        self.store.sync()?;
        if let Some(a) = &self.archive {
            a.append(&cur)?;
        }
        *chain = new_chain;
        st.changed = false;
        st.table_dirty = false;
        *self.last_top.lock().unwrap_or_else(|e| e.into_inner()) = Some(cur.clone());
        self.commits.fetch_add(1, SeqCst);
        Ok(Some(cur))
    }
}

fn scanner(sc: &mut Option<Box<dyn Scanner>>) -> Option<&mut dyn Scanner> {
    match sc {
        Some(b) => Some(&mut **b),
        None => None,
    }
}
