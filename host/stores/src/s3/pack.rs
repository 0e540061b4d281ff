//! The pack being filled: blocks become datafile records (`vtd.5`) —
//! large blocks one record each, small ones gathered into group records —
//! appended to a buffer that starts with the datafile header, until it is
//! big enough to be sealed and uploaded as one object.

use std::collections::HashMap;

use bytes::Bytes;

use vt_core::{Hash, HashKind};

use crate::datafile::{encode_group, encode_record, FILE_HEADER, FLAG_ZSTD};

use super::pack_index::{PackEntry, ALONE};

/// Blocks smaller than this are gathered into group records.
pub const SMALL_BLOCK: usize = 64 << 10;
/// A group record holds at most this many bytes of blocks.
pub const GROUP_RAW: usize = 256 << 10;
/// The zstd level of every record.
const LEVEL: i32 = 3;

/// A record ready to be appended, with its blocks: (hashcode, member
/// index or [`ALONE`], length).
pub struct Record {
    /// The encoded record.
    pub bytes: Vec<u8>,
    /// Its blocks.
    pub blocks: Vec<(Hash, u32, u32)>,
}

/// The record of one block: compressed if that makes it smaller.
pub fn single(hash: &Hash, data: &[u8]) -> Record {
    let raw_len = data.len() as u32;
    let bytes = match zstd::bulk::compress(data, LEVEL) {
        Ok(z) if z.len() < data.len() => encode_record(hash, FLAG_ZSTD, &z, raw_len),
        _ => encode_record(hash, 0, data, raw_len),
    };
    Record {
        bytes,
        blocks: vec![(*hash, ALONE, raw_len)],
    }
}

/// The group record of `members` (all of kind `kind`, each under
/// [`SMALL_BLOCK`], together at most [`GROUP_RAW`]).
pub fn group(kind: HashKind, members: &[(Hash, Bytes)]) -> Record {
    let mut data = Vec::with_capacity(members.iter().map(|(_, d)| d.len()).sum());
    for (_, d) in members {
        data.extend_from_slice(d);
    }
    let table: Vec<(Hash, u32)> = members.iter().map(|(h, d)| (*h, d.len() as u32)).collect();
    let raw_len = data.len() as u32;
    let bytes = match zstd::bulk::compress(&data, LEVEL) {
        Ok(z) if z.len() < data.len() => encode_group(kind, &table, FLAG_ZSTD, &z, raw_len),
        _ => encode_group(kind, &table, 0, &data, raw_len),
    };
    let blocks = table
        .iter()
        .enumerate()
        .map(|(i, (h, len))| (*h, i as u32, *len))
        .collect();
    Record { bytes, blocks }
}

/// What a pack holds: file data, or metadata (directories and indirect
/// blocks, [`FLAG_META`](super::pack_index::FLAG_META)), packed apart so
/// that readers can keep metadata on local disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// File data.
    Data = 0,
    /// Directories and indirect blocks.
    Meta = 1,
}

impl Lane {
    /// Both lanes.
    pub const ALL: [Lane; 2] = [Lane::Data, Lane::Meta];
}

/// One pack being filled.
pub struct Filling {
    /// Small blocks waiting for their group record.
    pub group: Vec<(Hash, Bytes)>,
    /// Their total length.
    pub group_raw: usize,
    /// The pack's bytes so far: the datafile header, then records.
    pub pack: Vec<u8>,
    /// Where each block in `pack` lies.
    pub entries: Vec<PackEntry>,
}

impl Default for Filling {
    fn default() -> Self {
        Filling {
            group: Vec::new(),
            group_raw: 0,
            pack: FILE_HEADER.to_vec(),
            entries: Vec::new(),
        }
    }
}

impl Filling {
    /// Queues small block `hash` for a group; returns the group to encode
    /// when the block does not fit in the open one (which then holds only
    /// this block).
    pub fn add_small(&mut self, hash: Hash, data: Bytes) -> Option<Vec<(Hash, Bytes)>> {
        let full = (self.group_raw + data.len() > GROUP_RAW).then(|| {
            self.group_raw = 0;
            std::mem::take(&mut self.group)
        });
        self.group_raw += data.len();
        self.group.push((hash, data));
        full
    }

    /// Appends `rec` to the pack.
    pub fn append(&mut self, rec: Record) {
        let offset = self.pack.len() as u64;
        let len = rec.bytes.len() as u32;
        self.pack.extend_from_slice(&rec.bytes);
        for (hash, member, raw_len) in rec.blocks {
            self.entries.push(PackEntry {
                hash,
                offset,
                len,
                member,
                raw_len,
            });
        }
    }

    /// Encodes the open group, if any, into the pack (when the pack is
    /// sealed early, by a sync).
    pub fn flush_group(&mut self, kind: HashKind) {
        if self.group.is_empty() {
            return;
        }
        self.group_raw = 0;
        let g = std::mem::take(&mut self.group);
        self.append(group(kind, &g));
    }

    /// Takes the pack's bytes and entries, leaving an empty pack (the
    /// caller removes the blocks from `pending` once the pack is readable
    /// where it goes).
    pub fn take_pack(&mut self) -> (Vec<u8>, Vec<PackEntry>) {
        let pack = std::mem::replace(&mut self.pack, FILE_HEADER.to_vec());
        (pack, std::mem::take(&mut self.entries))
    }
}

/// The packs being filled, one a lane, and the blocks added that are in
/// no sealed pack yet.
#[derive(Default)]
pub struct Writer {
    /// Every block added that no sealed pack holds yet (in an open group,
    /// in a group being compressed, or in a pack being filled): what reads
    /// and duplicate checks of those blocks look at.
    pub pending: HashMap<Hash, Bytes>,
    /// The pack being filled in each [`Lane`].
    pub lanes: [Filling; 2],
    /// Adds between putting their block in `pending` and appending its
    /// record (compressing without the lock), and sealed packs not yet
    /// handed to an upload: a sync waits until there are none, else it
    /// could return before blocks whose adds returned are durable.
    pub busy: usize,
}

impl Writer {
    /// The pack being filled in `lane`.
    pub fn lane(&mut self, lane: Lane) -> &mut Filling {
        &mut self.lanes[lane as usize]
    }
}
