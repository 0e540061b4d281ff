//! What `vt fsck` tells a user beyond the store's own check: which
//! snapshots lost data, and where in them.
//!
//! The DataDir's check names damaged blocks (records that fail their
//! checks, index entries whose datafile is gone); a block may also simply
//! be missing (a datafile deleted and the index rebuilt). Neither says
//! what was lost. So every snapshot of every archive is walked, reading
//! its directories and indirect blocks, and every block it refers to is
//! looked up: a snapshot that refers to a damaged or missing block lost
//! the files (or directories) that hold it.

use std::collections::{HashMap, HashSet};

use vt_core::archive::ArchiveEntry;
use vt_core::dir::read_dir;
use vt_core::{BlockRef, Dirent, DirentKind, Hash, Store};

/// Paths listed per damaged snapshot; the rest are counted.
const PATHS_SHOWN: usize = 10;

/// One snapshot that refers to damaged or missing blocks.
pub struct Lost {
    /// Its archive, as the user names it.
    pub archive: String,
    /// Its number in `vt log`.
    pub number: usize,
    /// When it was recorded.
    pub when: String,
    /// Paths in it whose data is lost (a directory's own path when the
    /// directory cannot be read), at most [`PATHS_SHOWN`].
    pub paths: Vec<String>,
    /// How many more.
    pub more: usize,
}

/// Walks snapshots looking for blocks in `bad` or not in the store.
pub struct LostData<'a> {
    store: &'a dyn Store,
    bad: HashSet<Hash>,
    /// Indirect blocks already checked, and whether their tree lost data
    /// (snapshots share most of their files).
    trees: HashMap<Hash, bool>,
    /// Directories (by their block's hash) found whole, with everything
    /// below them: snapshots share most of their directories, and a store
    /// written through a mount may hold tens of thousands of snapshots.
    whole_dirs: HashSet<Hash>,
}

impl<'a> LostData<'a> {
    /// A walker of `store`'s snapshots, with `bad` the blocks its check
    /// found damaged.
    pub fn new(store: &'a dyn Store, bad: impl IntoIterator<Item = Hash>) -> Self {
        LostData {
            store,
            bad: bad.into_iter().collect(),
            trees: HashMap::new(),
            whole_dirs: HashSet::new(),
        }
    }

    fn block_lost(&self, h: &Hash) -> bool {
        self.bad.contains(h) || !self.store.contains(h).unwrap_or(false)
    }

    /// Whether the content `r` refers to lost a block.
    fn tree_lost(&mut self, r: &BlockRef) -> bool {
        match r {
            BlockRef::Direct { hash, .. } => self.block_lost(hash),
            BlockRef::Indirect { hash, .. } => {
                if let Some(&lost) = self.trees.get(hash) {
                    return lost;
                }
                let lost = self.block_lost(hash)
                    || match vt_core::read::children(self.store, r) {
                        Ok(kids) => kids.iter().any(|k| self.tree_lost(k)),
                        Err(_) => true,
                    };
                self.trees.insert(*hash, lost);
                lost
            }
            BlockRef::Sub { block, .. } => self.tree_lost(block),
            BlockRef::Literal(_) | BlockRef::Rle { .. } => false,
        }
    }

    /// The paths under snapshot `top` whose data is lost, and how many
    /// more there are than [`PATHS_SHOWN`].
    fn walk(&mut self, top: &Dirent) -> (Vec<String>, usize) {
        let mut lost = Vec::new();
        let mut more = 0;
        let mut note = |p: String| {
            if lost.len() < PATHS_SHOWN {
                lost.push(p);
            } else {
                more += 1;
            }
        };
        // Depth first with a stack of its own (trees may be deep); a
        // directory's exit is seen after everything below it, and if
        // nothing was noted meanwhile, it is whole.
        enum Step {
            Enter(String, Box<Dirent>),
            Exit(Hash, usize),
        }
        let mut noted = 0usize;
        let mut stack = vec![Step::Enter(String::new(), Box::new(top.clone()))];
        while let Some(step) = stack.pop() {
            let (path, d) = match step {
                Step::Enter(p, d) => (p, d),
                Step::Exit(h, before) => {
                    if noted == before {
                        self.whole_dirs.insert(h);
                    }
                    continue;
                }
            };
            match &d.kind {
                DirentKind::File { block } => {
                    if self.tree_lost(block) {
                        noted += 1;
                        note(path);
                    }
                }
                DirentKind::Dir { block, hardlinks } => {
                    let key = dir_key(block, hardlinks.as_ref());
                    if key.is_some_and(|k| self.whole_dirs.contains(&k)) {
                        continue;
                    }
                    if let Some(k) = key {
                        stack.push(Step::Exit(k, noted));
                    }
                    let shown = if path.is_empty() { "/" } else { &path };
                    if let Some(h) = hardlinks {
                        match read_dir(self.store, h) {
                            Ok(files) => {
                                for f in files {
                                    if f.block().is_some_and(|b| self.tree_lost(b)) {
                                        noted += 1;
                                        note(format!(
                                            "{shown} (hard-linked file {})",
                                            f.name_lossy()
                                        ));
                                    }
                                }
                            }
                            Err(_) => {
                                noted += 1;
                                note(format!("{shown} (its hard link table)"));
                            }
                        }
                    }
                    match read_dir(self.store, block) {
                        Ok(entries) => {
                            for e in entries.into_iter().rev() {
                                let p = format!("{path}/{}", e.name_lossy());
                                stack.push(Step::Enter(p, Box::new(e)));
                            }
                        }
                        Err(_) => {
                            noted += 1;
                            note(format!("{shown} (the directory itself)"));
                        }
                    }
                }
                DirentKind::Symlink { .. }
                | DirentKind::HardLink { .. }
                | DirentKind::Special { .. } => {}
            }
        }
        (lost, more)
    }

    /// The snapshots among `entries` (archive `archive`'s, numbered from
    /// 1 as `vt log` numbers them) that lost data.
    pub fn check(&mut self, archive: &str, entries: &[ArchiveEntry]) -> Vec<Lost> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let (paths, more) = self.walk(&e.dirent);
            if !paths.is_empty() {
                out.push(Lost {
                    archive: archive.to_string(),
                    number: i + 1,
                    when: e.when(),
                    paths,
                    more,
                });
            }
        }
        out
    }
}

/// The key a directory is remembered by once found whole: its block's
/// hash, mixed with its hard link table's at a snapshot's top; `None` for
/// a directory stored inline (cheap to look at again).
fn dir_key(block: &BlockRef, hardlinks: Option<&BlockRef>) -> Option<Hash> {
    let top = |r: &BlockRef| match r {
        BlockRef::Direct { hash, .. } | BlockRef::Indirect { hash, .. } => Some(*hash),
        _ => None,
    };
    let h = top(block)?;
    match hardlinks.map(top) {
        None => Some(h),
        Some(None) => None,
        Some(Some(l)) => {
            let mut both = h.bytes.to_vec();
            both.extend_from_slice(&l.bytes);
            Some(h.kind.digest(&both))
        }
    }
}
