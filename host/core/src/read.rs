//! Reading content back from block trees.

use std::io::Write;

use rayon::prelude::*;

use crate::block::{decode_indirect, BlockRef};
use crate::error::{Error, Result};
use crate::store::Store;

/// How many sibling blocks are fetched at once (read-ahead).
const READAHEAD: usize = 64;

/// Tells the store that the blocks of `kids` will be read next (a remote
/// store asks for them all at once).
fn announce(store: &dyn Store, kids: &[BlockRef]) {
    let hashes: Vec<crate::Hash> = kids
        .iter()
        .filter_map(|k| match k {
            BlockRef::Direct { hash, .. } | BlockRef::Indirect { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    if !hashes.is_empty() {
        store.prefetch(&hashes);
    }
}

/// The refs held by an indirect block, checked against the parent's span.
pub fn children(store: &dyn Store, r: &BlockRef) -> Result<Vec<BlockRef>> {
    let BlockRef::Indirect { hash, span } = r else {
        return Err(Error::decode(
            "block tree",
            "children of a non-indirect block",
        ));
    };
    let refs = decode_indirect(&store.fetch(hash)?)?;
    let sum: u64 = refs.iter().map(BlockRef::span).sum();
    if sum != *span {
        return Err(Error::decode(
            "indirect block",
            format!("{hash}: children span {sum}, parent says {span}"),
        ));
    }
    Ok(refs)
}

/// The bytes of a leaf (or of any ref, when it is small).
fn leaf_bytes(store: &dyn Store, r: &BlockRef) -> Result<Vec<u8>> {
    match r {
        BlockRef::Direct { hash, span } => {
            let d = store.fetch(hash)?;
            if d.len() as u64 != *span {
                return Err(Error::decode(
                    "block ref",
                    format!("{hash} holds {} bytes, ref says {span}", d.len()),
                ));
            }
            Ok(d)
        }
        BlockRef::Literal(d) => Ok(d.clone()),
        BlockRef::Rle { span, octet } => {
            let n = usize::try_from(*span)
                .map_err(|_| Error::decode("block ref", "RLE span too large"))?;
            Ok(vec![*octet; n])
        }
        BlockRef::Indirect { .. } | BlockRef::Sub { .. } => {
            let mut v = Vec::new();
            write_all(store, r, &mut v)?;
            Ok(v)
        }
    }
}

/// Writes all the content of `r` to `out`, fetching sibling blocks in
/// parallel.
pub fn write_all(store: &dyn Store, r: &BlockRef, out: &mut dyn Write) -> Result<()> {
    let w = |e| Error::io("writing content", e);
    match r {
        BlockRef::Indirect { .. } => {
            let kids = children(store, r)?;
            announce(store, &kids);
            for batch in kids.chunks(READAHEAD) {
                if batch
                    .iter()
                    .all(|k| !matches!(k, BlockRef::Indirect { .. }))
                {
                    let datas: Vec<Vec<u8>> = batch
                        .par_iter()
                        .map(|k| leaf_bytes(store, k))
                        .collect::<Result<_>>()?;
                    for d in datas {
                        out.write_all(&d).map_err(w)?;
                    }
                } else {
                    for k in batch {
                        write_all(store, k, out)?;
                    }
                }
            }
            Ok(())
        }
        BlockRef::Rle { span, octet } => {
            let chunk = vec![*octet; (*span).min(1 << 20) as usize];
            let mut left = *span;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                out.write_all(&chunk[..n]).map_err(w)?;
                left -= n as u64;
            }
            Ok(())
        }
        BlockRef::Sub {
            block,
            offset,
            span,
        } => {
            let d = read_range(store, block, *offset, *span)?;
            out.write_all(&d).map_err(w)
        }
        _ => out.write_all(&leaf_bytes(store, r)?).map_err(w),
    }
}

/// All the content of `r` as a vector.
pub fn read_all(store: &dyn Store, r: &BlockRef) -> Result<Vec<u8>> {
    let mut v = Vec::with_capacity(usize::try_from(r.span()).unwrap_or(0).min(1 << 30));
    write_all(store, r, &mut v)?;
    Ok(v)
}

/// `len` bytes of `r` from `offset` (fewer at the end of the content).
/// Only the blocks covering the range are fetched.
pub fn read_range(store: &dyn Store, r: &BlockRef, offset: u64, len: u64) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    range_into(
        store,
        r,
        offset,
        len.min(r.span().saturating_sub(offset)),
        &mut out,
    )?;
    Ok(out)
}

fn range_into(
    store: &dyn Store,
    r: &BlockRef,
    offset: u64,
    len: u64,
    out: &mut Vec<u8>,
) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    match r {
        BlockRef::Indirect { .. } => {
            let mut pos = 0u64;
            for k in children(store, r)? {
                let s = k.span();
                let (a, b) = (pos, pos + s);
                pos = b;
                if b <= offset {
                    continue;
                }
                if a >= offset + len {
                    break;
                }
                let from = offset.max(a) - a;
                let to = (offset + len).min(b) - a;
                range_into(store, &k, from, to - from, out)?;
            }
            Ok(())
        }
        BlockRef::Rle { octet, .. } => {
            out.resize(out.len() + len as usize, *octet);
            Ok(())
        }
        BlockRef::Sub {
            block, offset: o, ..
        } => range_into(store, block, o + offset, len, out),
        _ => {
            let d = leaf_bytes(store, r)?;
            let (a, b) = (offset as usize, (offset + len) as usize);
            let slice = d
                .get(a..b)
                .ok_or_else(|| Error::decode("block ref", "range beyond block"))?;
            out.extend_from_slice(slice);
            Ok(())
        }
    }
}

/// Writes the content of `r` into `file` at offset 0, leaving runs of zero
/// bytes as holes (the file is sized with `set_len` at the end), fetching
/// sibling blocks in parallel.
pub fn write_sparse(store: &dyn Store, r: &BlockRef, file: &std::fs::File) -> Result<()> {
    let span = r.span();
    sparse_into(store, r, 0, file)?;
    // Only a trailing hole leaves the file short.
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat written file", e))?
        .len();
    if len != span {
        file.set_len(span)
            .map_err(|e| Error::io("set file length", e))?;
    }
    Ok(())
}

fn sparse_into(store: &dyn Store, r: &BlockRef, at: u64, file: &std::fs::File) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let w = |e| Error::io("writing file", e);
    match r {
        BlockRef::Rle { octet: 0, .. } => Ok(()),
        BlockRef::Indirect { .. } => {
            let kids = children(store, r)?;
            announce(store, &kids);
            let mut pos = at;
            for batch in kids.chunks(READAHEAD) {
                let starts: Vec<u64> = batch
                    .iter()
                    .scan(pos, |p, k| {
                        let s = *p;
                        *p += k.span();
                        Some(s)
                    })
                    .collect();
                pos += batch.iter().map(BlockRef::span).sum::<u64>();
                batch
                    .par_iter()
                    .zip(starts.par_iter())
                    .try_for_each(|(k, &s)| sparse_into(store, k, s, file))?;
            }
            Ok(())
        }
        BlockRef::Rle { span, octet } => {
            let chunk = vec![*octet; (*span).min(1 << 20) as usize];
            let mut done = 0u64;
            while done < *span {
                let n = (*span - done).min(chunk.len() as u64) as usize;
                file.write_all_at(&chunk[..n], at + done).map_err(w)?;
                done += n as u64;
            }
            Ok(())
        }
        BlockRef::Sub { .. } => {
            let mut v = Vec::new();
            write_all(store, r, &mut v)?;
            file.write_all_at(&v, at).map_err(w)
        }
        _ => file.write_all_at(&leaf_bytes(store, r)?, at).map_err(w),
    }
}
