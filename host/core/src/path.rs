//! Finding an entry of a tree by its path, as a reader who only has the
//! tree (a web browser through `vt httpd`, an `x-vt:` URI) expects: hard
//! links lead to their file, and symbolic links that stay inside the tree
//! are followed.

use crate::dir::read_dir;
use crate::dirent::{Dirent, DirentKind};
use crate::error::Error;
use crate::store::Store;

/// Most symbolic links one lookup follows (as the kernel's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// Why a path does not lead to an entry.
#[derive(Debug)]
pub enum PathError {
    /// No such entry, or a component that is not a directory, or a
    /// symbolic link leading out of the tree: the message says which.
    NotFound(String),
    /// The store failed (a missing or damaged block).
    Store(Error),
}

impl From<Error> for PathError {
    fn from(e: Error) -> Self {
        PathError::Store(e)
    }
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PathError::NotFound(m) => f.write_str(m),
            PathError::Store(e) => write!(f, "{e}"),
        }
    }
}

/// The entry at `path` (components, none empty, `.` or `..`) below the
/// directory `top`. The hard link table used is the nearest one on the
/// way down (a snapshot keeps it on its top directory). With
/// `follow_last`, a symbolic link at the end is followed too.
pub fn lookup_path(
    store: &dyn Store,
    top: &Dirent,
    path: &[Vec<u8>],
    follow_last: bool,
) -> std::result::Result<Dirent, PathError> {
    // The directories from `top` down to the current one.
    let mut stack: Vec<Dirent> = vec![top.clone()];
    let mut todo: Vec<Vec<u8>> = path.iter().rev().cloned().collect();
    let mut links = 0;
    let mut last: Option<Dirent> = None;
    let shown = || {
        path.iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect::<Vec<_>>()
            .join("/")
    };
    while let Some(name) = todo.pop() {
        if let Some(l) = last.take() {
            stack.push(l);
        }
        match name.as_slice() {
            b"" | b"." => continue,
            b".." => {
                if stack.len() < 2 {
                    return Err(PathError::NotFound(format!(
                        "{}: leads out of the tree",
                        shown()
                    )));
                }
                stack.pop();
                continue;
            }
            _ => {}
        }
        let dir = stack.last().cloned().unwrap_or_else(|| top.clone());
        let DirentKind::Dir { block, .. } = &dir.kind else {
            return Err(PathError::NotFound(format!(
                "{}: {} is not a directory",
                shown(),
                dir.name_lossy()
            )));
        };
        let mut found = read_dir(store, block)?
            .into_iter()
            .find(|d| d.name == name)
            .ok_or_else(|| {
                PathError::NotFound(format!(
                    "{}: no entry {:?}",
                    shown(),
                    String::from_utf8_lossy(&name)
                ))
            })?;
        if let DirentKind::HardLink { uuid } = &found.kind {
            let table = stack.iter().rev().find_map(|d| match &d.kind {
                DirentKind::Dir {
                    hardlinks: Some(h), ..
                } => Some(h.clone()),
                _ => None,
            });
            let Some(table) = table else {
                return Err(PathError::NotFound(format!(
                    "{}: hard link {uuid} with no hard link table above it",
                    shown()
                )));
            };
            let mut t = read_dir(store, &table)?
                .into_iter()
                .find(|d| d.uuid == Some(*uuid))
                .ok_or_else(|| {
                    PathError::NotFound(format!("{}: hard link target {uuid} missing", shown()))
                })?;
            t.name = found.name.clone();
            found = t;
        }
        if let DirentKind::Symlink { target } = &found.kind {
            if !todo.is_empty() || follow_last {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(PathError::NotFound(format!(
                        "{}: too many symbolic links",
                        shown()
                    )));
                }
                if target.starts_with(b"/") {
                    return Err(PathError::NotFound(format!(
                        "{}: symbolic link to {} leads out of the tree",
                        shown(),
                        String::from_utf8_lossy(target)
                    )));
                }
                for part in target.split(|&c| c == b'/').rev() {
                    todo.push(part.to_vec());
                }
                continue;
            }
        }
        last = Some(found);
    }
    Ok(last.unwrap_or_else(|| stack.pop().unwrap_or_else(|| top.clone())))
}
