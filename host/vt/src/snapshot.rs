//! Naming snapshots on the command line: archive files, `[store]name`
//! archives, and Dirent texts; and paths inside a snapshot.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use vt_core::archive::Archive;
use vt_core::dir::read_dir;
use vt_core::path::lookup_path;
use vt_core::uri::VtUri;
use vt_core::{Dirent, DirentKind, Store};

use crate::config::Config;
use crate::open::OpenStore;

/// What a SPECIAL argument named.
pub enum Special {
    /// An archive file.
    Archive(Archive),
    /// A literal Dirent.
    Dirent(Box<Dirent>),
}

fn is_dirent_text(s: &str) -> bool {
    ["D{", "F{", "SymLink{", "HardLink{", "Special{"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// Resolves SPECIAL and opens the store its blocks live in:
///
/// - `x-vt:[//HOST:PORT]/BLOCKREF/PATH`: the entry at PATH of that tree,
///   its blocks on the `vt httpd` at HOST:PORT, else in the current store;
/// - `D{…}` (or another Dirent text): that Dirent, in the current store;
/// - `[STORE]NAME`: the named archive NAME of STORE, in STORE;
/// - a path with a `/` or ending in `.vt`: that archive file;
/// - a bare `NAME`: the current store's named archive NAME if it exists,
///   else an archive file of that name in the current directory if one
///   exists, else (for writing) the named archive NAME.
///
/// `store_spec` is the `-S` choice; `create` allows creating the store.
pub fn resolve(
    spec: &str,
    cfg: &Config,
    store_spec: Option<&str>,
    create: bool,
) -> Result<(Special, OpenStore)> {
    if VtUri::is_uri(spec) {
        let uri = VtUri::parse(spec).context("cannot parse the x-vt URI")?;
        let st = match &uri.authority {
            Some(a) => crate::open::http(&format!("http://{a}/"), None, &format!("http://{a}/"))?,
            None => cfg.open_store(store_spec, false)?,
        };
        let block = uri
            .dir
            .resolve(&*st.store)
            .with_context(|| format!("{spec}: cannot read its directory from store {}", st.name))?;
        let top = Dirent::new(
            Vec::new(),
            DirentKind::Dir {
                block,
                hardlinks: None,
            },
        );
        let d =
            lookup_path(&*st.store, &top, &uri.path, true).map_err(|e| anyhow!("{spec}: {e}"))?;
        return Ok((Special::Dirent(Box::new(d)), st));
    }
    if is_dirent_text(spec) {
        let d = Dirent::parse(spec).context("cannot parse the Dirent text")?;
        return Ok((
            Special::Dirent(Box::new(d)),
            cfg.open_store(store_spec, create)?,
        ));
    }
    if let Some(rest) = spec.strip_prefix('[') {
        let (store, name) = rest
            .split_once(']')
            .ok_or_else(|| anyhow!("{spec:?}: expected [STORE]NAME"))?;
        let st = cfg.open_store(Some(store), create)?;
        return Ok((named(&st, name)?, st));
    }
    let st = cfg.open_store(store_spec, create)?;
    let p = PathBuf::from(spec);
    if spec.contains('/') || spec.ends_with(".vt") {
        return Ok((Special::Archive(Archive::new(p)), st));
    }
    let by_name = named(&st, spec);
    if let Ok(Special::Archive(a)) = &by_name {
        if a.exists()? {
            return Ok((by_name?, st));
        }
    }
    if p.is_file() {
        return Ok((Special::Archive(Archive::new(p)), st));
    }
    Ok((by_name?, st))
}

fn named(st: &OpenStore, name: &str) -> Result<Special> {
    Ok(Special::Archive(Archive::in_store(
        st.store.clone(),
        name,
        &st.name,
    )?))
}

impl Special {
    /// The snapshot's top Dirent: the Dirent itself, or the archive's last.
    pub fn top(&self) -> Result<Dirent> {
        match self {
            Special::Dirent(d) => Ok((**d).clone()),
            Special::Archive(a) => Ok(a
                .last()?
                .ok_or_else(|| anyhow!("archive {} has no snapshots", a.describe()))?
                .dirent),
        }
    }
}

/// The Dirent at slash-separated `path` under `top` ("" or "/" is `top`).
pub fn lookup(store: &dyn Store, top: &Dirent, path: &str) -> Result<Dirent> {
    let mut cur = top.clone();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let DirentKind::Dir { block, .. } = &cur.kind else {
            bail!("{path}: {} is not a directory", cur.name_lossy());
        };
        cur = read_dir(store, block)?
            .into_iter()
            .find(|d| d.name == part.as_bytes())
            .ok_or_else(|| anyhow!("{path}: no entry {part:?}"))?;
    }
    if let DirentKind::HardLink { uuid } = &cur.kind {
        if let DirentKind::Dir {
            hardlinks: Some(h), ..
        } = &top.kind
        {
            let name = cur.name.clone();
            let mut t = read_dir(store, h)?
                .into_iter()
                .find(|d| d.uuid == Some(*uuid))
                .ok_or_else(|| anyhow!("{path}: hard link target {uuid} missing"))?;
            t.name = name;
            return Ok(t);
        }
    }
    Ok(cur)
}
