//! `vt push` and `vt pull`: copy snapshots from one store to another.
//!
//! For each archive line the other side lacks: walk the snapshot's tree in
//! the source, ask the destination which of its blocks it lacks (a
//! batched WANT when it is a server), send those (straight into ADD-BATCH,
//! compressed), make them durable, and only then append the line, with
//! its timestamp, to the destination's archive. An archive line in a
//! store therefore means the whole snapshot is there: a snapshot whose
//! line the destination already has is not walked again, and the newest
//! such snapshot's blocks are not even asked about (what changed since is
//! all a second push sends). An interrupted copy, run again, asks again
//! and sends only what did not arrive.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use rayon::prelude::*;
use vt_core::archive::{parse_text, Archive, ArchiveEntry};
use vt_core::block::{decode_indirect, BlockRef};
use vt_core::dir::read_dir;
use vt_core::{BlockClass, Dirent, DirentKind, Hash, Store};

use crate::open::OpenStore;
use crate::progress::{human, Progress};

/// How to copy.
pub struct CopyOptions {
    /// Copy directories (and their block trees) but no file contents; no
    /// archive line is written, since the snapshot is not all there.
    pub dirs_only: bool,
    /// Print only errors.
    pub quiet: bool,
}

/// A block to copy: its hash, what it holds, and its size when known.
type Wanted = (Hash, BlockClass, u64);

/// Walks snapshot trees in a store, listing blocks not yet seen.
struct Walker<'a> {
    store: &'a dyn Store,
    dirs_only: bool,
    /// Blocks listed already, or known to be at the destination.
    seen: HashSet<Hash>,
    out: Vec<Wanted>,
}

impl Walker<'_> {
    fn dirent(&mut self, d: &Dirent) -> Result<()> {
        match &d.kind {
            DirentKind::File { block } if !self.dirs_only => self.tree(block, BlockClass::Data),
            DirentKind::Dir { block, hardlinks } => {
                self.dir(block)?;
                if let Some(h) = hardlinks {
                    self.dir(h)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A directory: its encoding's blocks, then its entries.
    fn dir(&mut self, r: &BlockRef) -> Result<()> {
        if let Some(h) = top_hash(r) {
            if self.seen.contains(&h) {
                return Ok(());
            }
        }
        self.tree(r, BlockClass::Meta)?;
        let entries = read_dir(self.store, r)?;
        // Fetch what the entries will ask for next in one go (a remote
        // source answers them all in one round trip's time).
        let next: Vec<Hash> = entries
            .iter()
            .filter_map(|e| match &e.kind {
                DirentKind::Dir { block, .. } => top_hash(block),
                DirentKind::File {
                    block: b @ BlockRef::Indirect { .. },
                } if !self.dirs_only => top_hash(b),
                _ => None,
            })
            .filter(|h| !self.seen.contains(h))
            .collect();
        self.store.prefetch(&next);
        for e in &entries {
            self.dirent(e)?;
        }
        Ok(())
    }

    /// A block tree: every block of it, leaves as `leaf`, indirect blocks
    /// as metadata.
    fn tree(&mut self, r: &BlockRef, leaf: BlockClass) -> Result<()> {
        match r {
            BlockRef::Direct { hash, span } => {
                if self.seen.insert(*hash) {
                    self.out.push((*hash, leaf, *span));
                }
                Ok(())
            }
            BlockRef::Indirect { hash, .. } => {
                if !self.seen.insert(*hash) {
                    return Ok(());
                }
                self.out.push((*hash, BlockClass::Meta, 0));
                let data = self
                    .store
                    .fetch(hash)
                    .with_context(|| format!("read indirect block {hash}"))?;
                let kids = decode_indirect(&data)?;
                let ind: Vec<Hash> = kids
                    .iter()
                    .filter(|k| matches!(k, BlockRef::Indirect { .. }))
                    .filter_map(top_hash)
                    .collect();
                self.store.prefetch(&ind);
                for k in &kids {
                    self.tree(k, leaf)?;
                }
                Ok(())
            }
            BlockRef::Sub { block, .. } => self.tree(block, leaf),
            BlockRef::Literal(_) | BlockRef::Rle { .. } => Ok(()),
        }
    }
}

fn top_hash(r: &BlockRef) -> Option<Hash> {
    match r {
        BlockRef::Direct { hash, .. } | BlockRef::Indirect { hash, .. } => Some(*hash),
        BlockRef::Sub { block, .. } => top_hash(block),
        _ => None,
    }
}

/// What a copy did.
#[derive(Default)]
pub struct CopyReport {
    /// Snapshots (archive lines) copied.
    pub snapshots: usize,
    /// Blocks the destination lacked and was sent.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Blocks looked at.
    pub walked: u64,
}

/// Which of `list` the destination lacks.
fn lacking(dst: &OpenStore, list: &[Wanted]) -> Result<Vec<Wanted>> {
    let hashes: Vec<Hash> = list.iter().map(|w| w.0).collect();
    let idx: Vec<usize> = match &dst.remote {
        Some(r) => r.want(&hashes)?,
        None => {
            let has: Vec<bool> = hashes
                .par_iter()
                .map(|h| dst.store.contains(h))
                .collect::<vt_core::Result<_>>()?;
            has.iter()
                .enumerate()
                .filter_map(|(i, h)| (!h).then_some(i))
                .collect()
        }
    };
    Ok(idx.into_iter().map(|i| list[i]).collect())
}

/// Copies `blocks` from `src` to `dst`, several at a time.
fn transfer(
    src: &OpenStore,
    dst: &OpenStore,
    blocks: &[Wanted],
    progress: &Progress,
) -> Result<u64> {
    const CHUNK: usize = 256;
    let bytes = AtomicU64::new(0);
    blocks
        .par_chunks(CHUNK)
        .try_for_each(|chunk| -> Result<()> {
            let hashes: Vec<Hash> = chunk.iter().map(|w| w.0).collect();
            src.store.prefetch(&hashes);
            for &(h, class, _) in chunk {
                let data = src.store.get(&h)?.ok_or_else(|| {
                    anyhow!(
                        "block {h} is missing from {}; nothing more was copied",
                        src.name
                    )
                })?;
                match &dst.remote {
                    Some(r) => r.add_lacking(&h, &data, class)?,
                    None => dst.store.add_hashed_as(&h, &data, class)?,
                };
                bytes.fetch_add(data.len() as u64, Relaxed);
                progress.add_bytes(data.len() as u64);
            }
            Ok(())
        })?;
    Ok(bytes.load(Relaxed))
}

/// Copies the snapshots `what` (archive names, or Dirent texts; all the
/// source's archives if empty) from `src` to `dst`.
pub fn copy(
    src: &OpenStore,
    dst: &OpenStore,
    what: &[String],
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let start = Instant::now();
    if let Some(r) = &dst.remote {
        // What crosses the wire in a push is counted: compress it, even on
        // loopback.
        r.set_compress(true);
    }
    let names: Vec<String> = if what.is_empty() {
        src.store
            .archive_names()
            .with_context(|| format!("list the archives of {}", src.name))?
    } else {
        what.to_vec()
    };
    let mut report = CopyReport::default();
    let mut seen: HashSet<Hash> = HashSet::new();
    for name in &names {
        if name.starts_with(|c: char| c.is_ascii_uppercase()) && name.contains('{') {
            let d = Dirent::parse(name).context("cannot parse the Dirent text")?;
            copy_trees(
                src,
                dst,
                std::slice::from_ref(&d),
                &mut seen,
                opts,
                &mut report,
            )?;
            dst.store.sync()?;
            if !opts.quiet {
                println!("copied {}", d.to_text());
            }
            continue;
        }
        let from = Archive::in_store(src.store.clone(), name, &src.name)?;
        let entries = from.entries()?;
        if entries.is_empty() && !from.exists()? {
            bail!("{} has no archive {name:?}", src.name);
        }
        let there: Vec<ArchiveEntry> = match dst.store.archive_read(name)? {
            Some(t) => parse_text(&t, &format!("[{}]{name}", dst.name))?,
            None => Vec::new(),
        };
        let there_lines: HashSet<String> = there.iter().map(ArchiveEntry::to_line).collect();
        let missing: Vec<&ArchiveEntry> = entries
            .iter()
            .filter(|e| !there_lines.contains(&e.to_line()))
            .collect();
        if missing.is_empty() {
            if !opts.quiet {
                println!(
                    "{name}: {} snapshots, all already in {}",
                    entries.len(),
                    dst.name
                );
            }
            continue;
        }
        // The newest snapshot both sides have is whole at the destination:
        // its blocks need no asking.
        if !opts.dirs_only {
            if let Some(common) = entries
                .iter()
                .rev()
                .find(|e| there_lines.contains(&e.to_line()))
            {
                let mut w = Walker {
                    store: &*src.store,
                    dirs_only: false,
                    seen: std::mem::take(&mut seen),
                    out: Vec::new(),
                };
                w.dirent(&common.dirent)?;
                seen = w.seen;
            }
        }
        let dirents: Vec<Dirent> = missing.iter().map(|e| e.dirent.clone()).collect();
        copy_trees(src, dst, &dirents, &mut seen, opts, &mut report)?;
        dst.store
            .sync()
            .context("cannot make the copied blocks durable; no archive line was written")?;
        if opts.dirs_only {
            for d in &dirents {
                println!("{}", d.to_text());
            }
            continue;
        }
        let to = Archive::in_store(dst.store.clone(), name, &dst.name)?;
        let lines: Vec<ArchiveEntry> = missing.into_iter().cloned().collect();
        to.append_entries(&lines)?;
        report.snapshots += lines.len();
        if !opts.quiet {
            println!("{name}: {} snapshots copied to {}", lines.len(), dst.name);
        }
    }
    if !opts.quiet {
        let secs = start.elapsed().as_secs_f64();
        let wire = dst
            .remote
            .as_ref()
            .or(src.remote.as_ref())
            .map(|r| {
                let (s, rcv) = r.wire_bytes();
                format!("; on the wire {} sent, {} received", human(s), human(rcv))
            })
            .unwrap_or_default();
        println!(
            "{} blocks looked at, {} sent ({}) in {secs:.1}s{wire}",
            report.walked,
            report.blocks,
            human(report.bytes)
        );
    }
    Ok(report)
}

fn copy_trees(
    src: &OpenStore,
    dst: &OpenStore,
    tops: &[Dirent],
    seen: &mut HashSet<Hash>,
    opts: &CopyOptions,
    report: &mut CopyReport,
) -> Result<()> {
    let mut w = Walker {
        store: &*src.store,
        dirs_only: opts.dirs_only,
        seen: std::mem::take(seen),
        out: Vec::new(),
    };
    for d in tops {
        w.dirent(d)?;
    }
    *seen = w.seen;
    report.walked += w.out.len() as u64;
    let need = lacking(dst, &w.out)?;
    let progress = std::sync::Arc::new(Progress::new("copy", opts.quiet));
    if let Some(p) = dst.progress.as_ref().or(src.progress.as_ref()) {
        progress.watch_store("copy", p.clone());
    }
    progress.set_total(need.iter().map(|w| w.2).sum());
    let bytes = transfer(src, dst, &need, &progress)?;
    progress.finish();
    report.blocks += need.len() as u64;
    report.bytes += bytes;
    Ok(())
}
