//! Checking an S3 store against what its bucket holds: every object is
//! read back and every block's hash checked.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use futures::StreamExt;

use vt_core::{Hash, Result};

use crate::datafile::{Verify, FILE_HEADER};
use crate::dict::Dictionaries;

use super::blocks::block_key;
use super::bucket::Bucket;
use super::pack_index::{PackIndex, ALONE};
use super::packed::{decode_record, id_of, index_key, pack_key, take_block};
use super::record_cache::Cached;

/// Concurrent GETs of the blocks layout's check.
const FETCHES: usize = 8;

/// What [`S3Store::fsck`](super::S3Store::fsck) found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct S3FsckReport {
    /// Objects read (packs, index objects, block objects).
    pub objects_checked: u64,
    /// Blocks read back and hashed.
    pub blocks_checked: u64,
    /// What is wrong: damaged or missing objects, blocks that cannot be
    /// read. Any makes the store unclean.
    pub problems: Vec<String>,
    /// What is odd but harmless: packs without an index (an upload
    /// interrupted between the pack and its index: no sync returned for
    /// their blocks, so nothing refers to them), objects vt did not write.
    pub notes: Vec<String>,
    /// Blocks that are listed but cannot be read back as their hash says.
    pub bad_blocks: Vec<Hash>,
}

impl S3FsckReport {
    /// True if there are no problems (notes do not count).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.bad_blocks.is_empty()
    }
}

/// Checks the packed layout: every index parses and has its pack, every
/// pack has its index, and every block in every index reads back (one GET
/// per pack, of the whole object).
pub async fn packed(bucket: &Bucket) -> Result<S3FsckReport> {
    let mut r = S3FsckReport::default();
    let name = bucket.name();
    let mut packs: BTreeMap<String, u64> = BTreeMap::new();
    for m in bucket.list("data").await? {
        let file = m.location.filename().unwrap_or_default();
        match id_of(file, "vtd") {
            Some(id) => {
                packs.insert(id.to_owned(), m.size);
            }
            None => r.notes.push(format!(
                "{name}: {}: not a pack vt wrote; ignored",
                bucket.rel(&m.location)
            )),
        }
    }
    let mut indexes: Vec<String> = Vec::new();
    for m in bucket.list("index").await? {
        let file = m.location.filename().unwrap_or_default();
        match id_of(file, "idx") {
            Some(id) => indexes.push(id.to_owned()),
            None => r.notes.push(format!(
                "{name}: {}: not an index vt wrote; ignored",
                bucket.rel(&m.location)
            )),
        }
    }
    indexes.sort();
    for id in &packs {
        if indexes.binary_search(id.0).is_err() {
            r.notes.push(format!(
                "{name}: {}: unindexed pack (interrupted upload?): its blocks are not part of the store",
                pack_key(id.0)
            ));
        }
    }
    let dicts = Dictionaries::none();
    for id in &indexes {
        let Some(b) = bucket.get(&bucket.key(&index_key(id))).await? else {
            r.problems
                .push(format!("{name}: {}: vanished while checked", index_key(id)));
            continue;
        };
        r.objects_checked += 1;
        let idx = match PackIndex::decode(&b) {
            Ok(idx) => idx,
            Err(e) => {
                r.problems
                    .push(format!("{name}: {}: damaged: {e}", index_key(id)));
                continue;
            }
        };
        let Some(&size) = packs.get(id) else {
            r.problems.push(format!(
                "{name}: {} lists {} blocks of {}, which is missing",
                index_key(id),
                idx.entries.len(),
                pack_key(id)
            ));
            r.bad_blocks.extend(idx.entries.iter().map(|e| e.hash));
            continue;
        };
        if size != idx.pack_size {
            r.problems.push(format!(
                "{name}: {} is {size} bytes, its index says {}",
                pack_key(id),
                idx.pack_size
            ));
        }
        let Some(pack) = bucket.get(&bucket.key(&pack_key(id))).await? else {
            r.problems
                .push(format!("{name}: {}: vanished while checked", pack_key(id)));
            continue;
        };
        r.objects_checked += 1;
        check_pack(&mut r, name, id, &pack, &idx, &dicts);
    }
    Ok(r)
}

/// Checks every block `idx` lists in `pack`.
fn check_pack(
    r: &mut S3FsckReport,
    name: &str,
    id: &str,
    pack: &Bytes,
    idx: &PackIndex,
    dicts: &Dictionaries,
) {
    if pack.get(..8) != Some(&FILE_HEADER[..]) {
        r.problems.push(format!(
            "{name}: {}: does not start with a datafile header",
            pack_key(id)
        ));
    }
    // Each group decoded once, for all its members.
    let mut groups: HashMap<u64, std::result::Result<Cached, String>> = HashMap::new();
    for e in &idx.entries {
        r.blocks_checked += 1;
        let range = e.offset as usize..e.offset as usize + e.len as usize;
        let rec = match pack.get(range.clone()) {
            Some(_) => pack.slice(range),
            None => {
                r.problems.push(format!(
                    "{name}: {}: block {} lies past the pack's end",
                    pack_key(id),
                    e.hash
                ));
                r.bad_blocks.push(e.hash);
                continue;
            }
        };
        let decoded = if e.member == ALONE {
            decode_record(dicts, &e.hash, ALONE, rec, Verify::Hash)
        } else {
            groups
                .entry(e.offset)
                .or_insert_with(|| decode_record(dicts, &e.hash, e.member, rec, Verify::Hash))
                .clone()
        };
        let got = decoded.and_then(|c| take_block(&c, &e.hash, e.member));
        match got {
            Ok(d) if d.len() as u64 == u64::from(e.raw_len) => {}
            Ok(d) => {
                r.problems.push(format!(
                    "{name}: {}: block {} is {} bytes, its index says {}",
                    pack_key(id),
                    e.hash,
                    d.len(),
                    e.raw_len
                ));
                r.bad_blocks.push(e.hash);
            }
            Err(why) => {
                r.problems.push(format!(
                    "{name}: {}: block {} (record at offset {}): {why}",
                    pack_key(id),
                    e.hash,
                    e.offset
                ));
                r.bad_blocks.push(e.hash);
            }
        }
    }
}

/// Checks the blocks layout: every `h/` object is read and its hash
/// compared with its name.
pub async fn blocks(bucket: &Bucket) -> Result<S3FsckReport> {
    let mut r = S3FsckReport::default();
    let name = bucket.name();
    let mut hashes = Vec::new();
    for m in bucket.list("h").await? {
        let file = m.location.filename().unwrap_or_default();
        match Hash::parse(file) {
            Ok(h) if bucket.key(&block_key(&h)) == m.location => hashes.push(h),
            _ => r.notes.push(format!(
                "{name}: {}: not a block object vt wrote; ignored",
                bucket.rel(&m.location)
            )),
        }
    }
    let got: Vec<(Hash, Result<Option<Bytes>>)> = futures::stream::iter(hashes)
        .map(|h| async move { (h, bucket.get(&bucket.key(&block_key(&h))).await) })
        .buffer_unordered(FETCHES)
        .collect()
        .await;
    for (h, res) in got {
        match res? {
            None => r
                .problems
                .push(format!("{name}: {}: vanished while checked", block_key(&h))),
            Some(d) => {
                r.objects_checked += 1;
                r.blocks_checked += 1;
                if h.kind.digest(&d) != h {
                    r.problems.push(format!(
                        "{name}: {}: data does not match its hash",
                        block_key(&h)
                    ));
                    r.bad_blocks.push(h);
                }
            }
        }
    }
    r.bad_blocks.sort();
    Ok(r)
}
