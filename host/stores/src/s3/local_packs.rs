//! Whole packs on local disk, so that their records are read without a
//! request each.
//!
//! *Metadata packs* (directories and indirect blocks, `FLAG_META`) are
//! kept in the cache directory, under `packs/`, as restic keeps its tree
//! packs: written there when they are uploaded, or fetched whole the
//! first time one of their blocks is read. A walk of any snapshot, and an
//! import comparing a tree with the previous snapshot, then read no
//! directory from the bucket.
//!
//! *Data packs* that a bulk read wants much of (a restore, a mount read
//! through) are fetched whole with one GET into a spool of unlinked
//! temporary files, at most [`SPOOL_BYTES`] and [`SPOOL_FILES`] of them,
//! the least recently used dropped first; they vanish when the store is
//! closed.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use vt_core::{Error, Result};

use super::packed::id_of;
use super::single_flight::SingleFlight;

/// Bytes of data packs the spool holds at most.
pub const SPOOL_BYTES: u64 = 1 << 30;
/// Data packs the spool holds at most (open files).
const SPOOL_FILES: usize = 256;
/// Metadata packs kept open at most (the others are reopened by name).
const META_OPEN: usize = 64;

/// A pack's local copy, open.
struct Copy {
    file: Arc<File>,
    meta: bool,
    size: u64,
    /// When it was last used (a tick of [`Files::clock`]).
    used: u64,
}

#[derive(Default)]
struct Files {
    /// By pack number.
    open: HashMap<u32, Copy>,
    clock: u64,
    spooled_bytes: u64,
}

impl Files {
    /// Closes the least recently used copies of kind `meta` until fewer
    /// than `max_files` are open and (for the spool) at most `max_bytes`
    /// are held. A spooled copy closed is gone; a metadata copy stays on
    /// disk.
    fn shrink(&mut self, meta: bool, max_files: usize, max_bytes: u64) {
        loop {
            let (count, bytes) = self
                .open
                .values()
                .filter(|c| c.meta == meta)
                .fold((0, 0), |(n, b), c| (n + 1, b + c.size));
            if count < max_files && (meta || bytes <= max_bytes) {
                return;
            }
            let Some(oldest) = self
                .open
                .iter()
                .filter(|(_, c)| c.meta == meta)
                .min_by_key(|(_, c)| c.used)
                .map(|(no, _)| *no)
            else {
                return;
            };
            if let Some(c) = self.open.remove(&oldest) {
                if !c.meta {
                    self.spooled_bytes -= c.size;
                }
            }
        }
    }
}

/// The local copies of a packed store's packs.
pub struct LocalPacks {
    /// Where metadata packs are kept: `CACHE_DIR/packs`.
    dir: PathBuf,
    /// Where spooled data packs are created (and at once unlinked).
    spool_dir: PathBuf,
    files: Mutex<Files>,
    /// Packs being fetched whole: the readers of one pack wait for one
    /// GET.
    fetching: SingleFlight<u32>,
}

fn poisoned() -> Error {
    Error::Store("s3 store: lock poisoned".into())
}

impl LocalPacks {
    /// Local copies under `cache_dir`.
    pub fn new(cache_dir: &Path) -> LocalPacks {
        LocalPacks {
            dir: cache_dir.join("packs"),
            spool_dir: cache_dir.to_path_buf(),
            files: Mutex::default(),
            fetching: SingleFlight::default(),
        }
    }

    /// The path of metadata pack `id`'s copy.
    fn meta_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.vtd"))
    }

    /// Removes the copies of metadata packs that are not in `listed` (pack
    /// IDs), and leftover temporary files.
    pub fn prune(&self, listed: &HashSet<&str>) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let keep = name
                .to_str()
                .and_then(|n| id_of(n, "vtd"))
                .is_some_and(|id| listed.contains(id));
            if !keep {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }

    /// The open local copy of pack `no` (ID `id`, `size` bytes), if there
    /// is one; a metadata pack's is opened from the cache directory when
    /// it has the right size.
    pub fn get(&self, no: u32, id: &str, meta: bool, size: u64) -> Option<Arc<File>> {
        let mut f = self.files.lock().ok()?;
        f.clock += 1;
        let now = f.clock;
        if let Some(c) = f.open.get_mut(&no) {
            c.used = now;
            return Some(c.file.clone());
        }
        if !meta {
            return None;
        }
        let file = File::open(self.meta_path(id)).ok()?;
        if file.metadata().ok()?.len() != size {
            return None;
        }
        let file = Arc::new(file);
        f.shrink(true, META_OPEN, 0);
        f.open.insert(
            no,
            Copy {
                file: file.clone(),
                meta,
                size,
                used: now,
            },
        );
        Some(file)
    }

    /// Whether pack `no` has an open local copy (no disk access).
    pub fn is_open(&self, no: u32) -> bool {
        self.files.lock().is_ok_and(|f| f.open.contains_key(&no))
    }

    /// The packs with an open local copy.
    pub fn open_packs(&self) -> HashSet<u32> {
        self.files
            .lock()
            .map(|f| f.open.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Keeps metadata pack `id` (`data`, just uploaded) in the cache
    /// directory.
    pub fn keep_meta(&self, id: &str, data: &[u8]) -> Result<()> {
        self.write_meta(id, data).map(|_| ())
    }

    /// Writes metadata pack `id` into the cache directory, through a
    /// temporary file renamed into place; returns it, open.
    fn write_meta(&self, id: &str, data: &[u8]) -> Result<File> {
        let path = self.meta_path(id);
        let tmp = self.dir.join(format!(".{id}.vtd.tmp"));
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, data))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .and_then(|()| File::open(&path))
            .map_err(|e| Error::io(format!("keep a metadata pack in {}", path.display()), e))
    }

    /// Writes data pack `data` into a new spool file.
    fn spool(&self, data: &[u8]) -> Result<File> {
        let mut f = tempfile::tempfile_in(&self.spool_dir).map_err(|e| {
            Error::io(
                format!("create a spool file in {}", self.spool_dir.display()),
                e,
            )
        })?;
        f.write_all(data).map_err(|e| {
            Error::io(
                format!("write a spool file in {}", self.spool_dir.display()),
                e,
            )
        })?;
        Ok(f)
    }

    /// The local copy of pack `no`: the one there is, else the pack
    /// fetched whole by `fetch` (by one of the threads asking at once) and
    /// kept, a metadata pack in the cache directory, a data pack in the
    /// spool.
    pub fn fetch(
        &self,
        no: u32,
        id: &str,
        meta: bool,
        size: u64,
        fetch: impl FnOnce() -> Result<Bytes>,
    ) -> Result<Arc<File>> {
        if let Some(f) = self.get(no, id, meta, size) {
            return Ok(f);
        }
        self.fetching.run(no, || {
            // Whoever went before may have fetched it.
            if let Some(f) = self.get(no, id, meta, size) {
                return Ok(f);
            }
            let t0 = std::time::Instant::now();
            let data = fetch()?;
            tracing::debug!(
                "pack {id} ({} bytes{}) fetched whole in {:?}",
                data.len(),
                if meta { ", metadata" } else { "" },
                t0.elapsed()
            );
            if data.len() as u64 != size {
                return Err(Error::Store(format!(
                    "pack {id} is {} bytes, its index says {size}",
                    data.len()
                )));
            }
            let file = Arc::new(if meta {
                self.write_meta(id, &data)?
            } else {
                self.spool(&data)?
            });
            let mut f = self.files.lock().map_err(|_| poisoned())?;
            f.clock += 1;
            let used = f.clock;
            if meta {
                f.shrink(true, META_OPEN, 0);
            } else {
                f.spooled_bytes += size;
                f.shrink(false, SPOOL_FILES, SPOOL_BYTES.saturating_sub(size));
            }
            f.open.insert(
                no,
                Copy {
                    file: file.clone(),
                    meta,
                    size,
                    used,
                },
            );
            Ok(file)
        })
    }

    /// Forgets the local copy of pack `no` (ID `id`), found damaged; a
    /// metadata pack's is deleted, to be fetched again.
    pub fn discard(&self, no: u32, id: &str) {
        if let Ok(mut f) = self.files.lock() {
            if let Some(c) = f.open.remove(&no) {
                if !c.meta {
                    f.spooled_bytes -= c.size;
                }
            }
        }
        let _ = std::fs::remove_file(self.meta_path(id));
    }
}

/// Bytes `range` of local copy `file`.
pub fn read_range(file: &File, range: std::ops::Range<u64>) -> std::io::Result<Bytes> {
    let mut buf = vec![0u8; (range.end - range.start) as usize];
    file.read_exact_at(&mut buf, range.start)?;
    Ok(Bytes::from(buf))
}
