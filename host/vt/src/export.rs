//! `vt export`: a Dirent tree back onto the filesystem.
//!
//! Three passes: create files, directories and symlinks (files in
//! parallel, runs of zeros left as holes); then hard links, each target
//! written once and linked from its other names; then directory metadata,
//! deepest first, so creating entries does not disturb directory mtimes.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use uuid::Uuid;
use vt_core::dir::read_dir;
use vt_core::dirent::SpecialKind;
use vt_core::read::write_sparse;
use vt_core::{Dirent, DirentKind, Meta, Store};

use crate::meta::{apply, apply_file};
use crate::progress::Progress;

/// Writes snapshots out.
pub struct Exporter<'a> {
    store: &'a dyn Store,
    progress: &'a Progress,
    links: Mutex<Vec<(Uuid, PathBuf)>>,
    dirs: Mutex<Vec<(PathBuf, Meta)>>,
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
        self.entry(top, dest)?;
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
            DirentKind::Dir { block, .. } => {
                match std::fs::create_dir(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {}
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("create directory {}", path.display()))
                    }
                }
                let entries = read_dir(self.store, block)
                    .with_context(|| format!("read directory {} from the store", path.display()))?;
                entries.par_iter().try_for_each(|e| {
                    let p = path.join(check_name(&e.name)?);
                    self.entry(e, &p)
                })?;
                self.dirs
                    .lock()
                    .map_err(|_| anyhow!("lock poisoned"))?
                    .push((path.to_path_buf(), d.meta.clone()));
                Ok(())
            }
            DirentKind::File { .. } => self.file(d, path),
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
