//! Directory contents: a sequence of length-prefixed binary Dirents, sorted
//! by name, stored as blocks cut only at Dirent boundaries.
//!
//! Where a block ends is content-defined (a hash of the entry just added),
//! so a changed entry rewrites only its own block, not a whole large
//! directory.

use crate::block::BlockRef;
use crate::blockify::Blockifier;
use crate::codec::{put_bytes, Reader};
use crate::dirent::Dirent;
use crate::error::Result;
use crate::read::read_all;
use crate::store::{BlockClass, Store};

/// A block is not cut before it holds this many bytes.
const DIR_BLOCK_MIN: usize = 1024;
/// A block is cut before it would exceed this many bytes.
const DIR_BLOCK_MAX: usize = 64 * 1024;
/// After the minimum, cut after about one entry in this many.
const DIR_CUT_ODDS: u64 = 32;

fn fnv(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &x in b {
        h ^= u64::from(x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 31)
}

/// Stores `entries` (sorted here by name) and returns the content ref.
pub fn encode_dir(bf: &Blockifier<'_>, mut entries: Vec<Dirent>) -> Result<BlockRef> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    for e in &entries {
        let mut enc = Vec::new();
        put_bytes(&mut enc, &e.to_bytes());
        if !cur.is_empty() && cur.len() + enc.len() > DIR_BLOCK_MAX {
            blocks.push(std::mem::take(&mut cur));
        }
        cur.extend_from_slice(&enc);
        if cur.len() >= DIR_BLOCK_MIN && fnv(&enc).is_multiple_of(DIR_CUT_ODDS) {
            blocks.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        blocks.push(cur);
    }
    let leaves = blocks
        .iter()
        .map(|b| bf.add_block_as(b, BlockClass::Meta))
        .collect::<Result<Vec<_>>>()?;
    bf.build_tree(leaves)
}

/// Decodes directory content.
pub fn decode_dir_bytes(data: &[u8]) -> Result<Vec<Dirent>> {
    let mut r = Reader::new(data, "directory");
    let mut out = Vec::new();
    while !r.is_empty() {
        out.push(Dirent::from_bytes(r.bytes()?)?);
    }
    Ok(out)
}

/// Reads and decodes the entries of directory content `block`.
pub fn read_dir(store: &dyn Store, block: &BlockRef) -> Result<Vec<Dirent>> {
    decode_dir_bytes(&read_all(store, block)?)
}
