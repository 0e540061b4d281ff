//! The index object of a pack (`index/ID.idx`, specified in `vt-s3.5`):
//! where each block of pack `data/ID.vtd` lies, so that a store learns
//! the whole bucket's contents from the small index objects alone and
//! reads a block with one ranged GET.
//!
//! ```text
//! object := "vtsi" version:u32le(=2) frame
//! frame  := zstd(body crc:u32le)            crc: CRC-32 over magic, version, body
//! body   := pack_size:u64le flags:u32le count:u32le entry*count
//!           (version 1, still read: no flags)
//! entry  := kind:u8 digest:[32] offset:u64le len:u32le member:u32le raw_len:u32le
//! ```

use vt_core::{Hash, HashKind};

use crate::datafile::{MAX_RECORD, RECORD_HEADER};

/// Magic and version of the index objects this code writes.
pub const INDEX_HEADER: [u8; 8] = *b"vtsi\x02\0\0\0";
/// The first version, read as one without flags.
const INDEX_HEADER_V1: [u8; 8] = *b"vtsi\x01\0\0\0";
/// Flag: the pack holds metadata blocks (directories, indirect blocks),
/// which readers keep whole on local disk.
pub const FLAG_META: u32 = 1;
/// `member` of a block that has a record of its own (not in a group).
pub const ALONE: u32 = u32::MAX;
/// Bytes of one entry.
const ENTRY: usize = 1 + 32 + 8 + 4 + 4 + 4;
/// Bytes of the body's header (version 2; version 1 lacks the flags).
const BODY_HEADER: usize = 8 + 4 + 4;
/// No index body decompresses to more than this (a pack of 16 MiB of
/// the smallest blocks has far fewer entries).
const MAX_BODY: usize = 256 << 20;

/// Where a block lies in its pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The block.
    pub hash: Hash,
    /// Where its record (or its group's) starts in the pack.
    pub offset: u64,
    /// The record's length, header included: one ranged GET of
    /// `offset..offset+len` reads it.
    pub len: u32,
    /// Its place in the group record, or [`ALONE`].
    pub member: u32,
    /// The block's length.
    pub raw_len: u32,
}

/// A parsed index object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackIndex {
    /// The pack's size in bytes (what it adds to the store's stored bytes).
    pub pack_size: u64,
    /// [`FLAG_META`], or 0.
    pub flags: u32,
    /// Its blocks.
    pub entries: Vec<PackEntry>,
}

impl PackIndex {
    /// The index object's bytes (an error only if zstd cannot allocate).
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        let mut body = Vec::with_capacity(BODY_HEADER + self.entries.len() * ENTRY + 4);
        body.extend_from_slice(&self.pack_size.to_le_bytes());
        body.extend_from_slice(&self.flags.to_le_bytes());
        body.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for e in &self.entries {
            body.push(e.hash.kind.id());
            body.extend_from_slice(&e.hash.bytes);
            body.extend_from_slice(&e.offset.to_le_bytes());
            body.extend_from_slice(&e.len.to_le_bytes());
            body.extend_from_slice(&e.member.to_le_bytes());
            body.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&INDEX_HEADER);
        crc.update(&body);
        body.extend_from_slice(&crc.finalize().to_le_bytes());
        let frame =
            zstd::bulk::compress(&body, 3).map_err(|e| format!("cannot compress an index: {e}"))?;
        let mut out = INDEX_HEADER.to_vec();
        out.extend_from_slice(&frame);
        Ok(out)
    }

    /// Parses and checks an index object.
    pub fn decode(b: &[u8]) -> Result<PackIndex, String> {
        let head = b.get(..8).ok_or("index object too short for its header")?;
        if head[..4] != INDEX_HEADER[..4] {
            return Err("not an index object (bad magic)".into());
        }
        let v1 = head == INDEX_HEADER_V1;
        if head != INDEX_HEADER && !v1 {
            let v = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            return Err(format!(
                "index object of version {v}, this vt reads versions 1 and 2: upgrade vt"
            ));
        }
        let body_header = if v1 { BODY_HEADER - 4 } else { BODY_HEADER };
        let frame = &b[8..];
        let n = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n <= MAX_BODY as u64 => n as usize,
            Ok(Some(n)) => return Err(format!("index body of {n} bytes is implausibly large")),
            _ => return Err("index body is not a zstd frame of known size".into()),
        };
        let body = zstd::bulk::decompress(frame, n)
            .map_err(|e| format!("cannot decompress the index body: {e}"))?;
        if body.len() != n || n < body_header + 4 {
            return Err("index body has the wrong length".into());
        }
        let (body, crc) = body.split_at(n - 4);
        let mut h = crc32fast::Hasher::new();
        h.update(head);
        h.update(body);
        if h.finalize().to_le_bytes() != crc {
            return Err("index body fails its checksum".into());
        }
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |b: &[u8], i: usize| {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(x)
        };
        let pack_size = u64_at(body, 0);
        let (flags, count) = if v1 {
            (0, u32_at(body, 8) as usize)
        } else {
            (u32_at(body, 8), u32_at(body, 12) as usize)
        };
        let rest = &body[body_header..];
        if rest.len() != count.saturating_mul(ENTRY) {
            return Err(format!(
                "index says {count} entries but holds {} bytes of them",
                rest.len()
            ));
        }
        let mut entries = Vec::with_capacity(count);
        for (i, e) in rest.chunks_exact(ENTRY).enumerate() {
            let kind = HashKind::from_id(e[0]).map_err(|err| format!("entry #{i}: {err}"))?;
            let mut bytes = [0u8; 32];
            bytes.copy_from_slice(&e[1..33]);
            let entry = PackEntry {
                hash: Hash { kind, bytes },
                offset: u64_at(e, 33),
                len: u32_at(e, 41),
                member: u32_at(e, 45),
                raw_len: u32_at(e, 49),
            };
            let fits = entry
                .offset
                .checked_add(u64::from(entry.len))
                .is_some_and(|end| end <= pack_size);
            let len_ok = entry.len as usize >= RECORD_HEADER
                && entry.len - RECORD_HEADER as u32 <= MAX_RECORD
                && entry.raw_len <= MAX_RECORD;
            if !fits || !len_ok || entry.offset < 8 {
                return Err(format!(
                    "entry #{i} ({}) points outside the pack or has impossible lengths",
                    entry.hash
                ));
            }
            entries.push(entry);
        }
        Ok(PackIndex {
            pack_size,
            flags,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> PackIndex {
        let k = HashKind::Sha3_256;
        PackIndex {
            pack_size: 1000,
            flags: FLAG_META,
            entries: vec![
                PackEntry {
                    hash: k.digest(b"a"),
                    offset: 8,
                    len: 100,
                    member: ALONE,
                    raw_len: 300,
                },
                PackEntry {
                    hash: k.digest(b"b"),
                    offset: 108,
                    len: 200,
                    member: 3,
                    raw_len: 20,
                },
            ],
        }
    }

    #[test]
    fn index_objects_round_trip() {
        let i = sample();
        let b = i.encode().unwrap();
        assert_eq!(&b[..8], b"vtsi\x02\0\0\0");
        assert_eq!(PackIndex::decode(&b).unwrap(), i);
        let empty = PackIndex {
            pack_size: 8,
            flags: 0,
            entries: Vec::new(),
        };
        assert_eq!(PackIndex::decode(&empty.encode().unwrap()).unwrap(), empty);
    }

    /// Indexes written before the flags (version 1) still load, as data
    /// packs.
    #[test]
    fn version_1_index_objects_load() {
        let i = sample();
        let mut body = Vec::new();
        body.extend_from_slice(&i.pack_size.to_le_bytes());
        body.extend_from_slice(&(i.entries.len() as u32).to_le_bytes());
        for e in &i.entries {
            body.push(e.hash.kind.id());
            body.extend_from_slice(&e.hash.bytes);
            body.extend_from_slice(&e.offset.to_le_bytes());
            body.extend_from_slice(&e.len.to_le_bytes());
            body.extend_from_slice(&e.member.to_le_bytes());
            body.extend_from_slice(&e.raw_len.to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&INDEX_HEADER_V1);
        crc.update(&body);
        body.extend_from_slice(&crc.finalize().to_le_bytes());
        let mut obj = INDEX_HEADER_V1.to_vec();
        obj.extend(zstd::bulk::compress(&body, 3).unwrap());
        let got = PackIndex::decode(&obj).unwrap();
        assert_eq!(got.flags, 0);
        assert_eq!(got.entries, i.entries);
        assert_eq!(got.pack_size, i.pack_size);
    }

    proptest::proptest! {
        /// Whatever a bucket holds, decoding it is an error or an index,
        /// never a panic: as it is, behind a good header, and as a good
        /// frame of garbage.
        #[test]
        fn decoding_anything_never_panics(b in proptest::collection::vec(0u8..=255, 0..400)) {
            let _ = PackIndex::decode(&b);
            let mut v = INDEX_HEADER.to_vec();
            v.extend_from_slice(&b);
            let _ = PackIndex::decode(&v);
            let mut v = INDEX_HEADER.to_vec();
            v.extend(zstd::bulk::compress(&b, 1).unwrap());
            let _ = PackIndex::decode(&v);
        }
    }

    /// vt-s3.5 gives the header and the entry's size this code uses.
    #[test]
    fn the_man_page_describes_this_format() {
        let man = include_str!("../../../../man/vt-s3.5");
        assert!(man.contains("magic \"vtsi\" (76 74 73 69)"));
        assert!(man.contains("version, u32le: 2"));
        assert!(man.contains(&format!("{ENTRY}*count")));
        assert_eq!(ALONE, 0xffff_ffff);
        assert!(man.contains("0xffffffff for a record of its own"));
    }

    #[test]
    fn damaged_index_objects_are_refused() {
        let b = sample().encode().unwrap();
        for cut in [0, 4, 8, 12, b.len() - 1] {
            assert!(PackIndex::decode(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut v3 = b.clone();
        v3[4] = 3;
        let err = PackIndex::decode(&v3).unwrap_err();
        assert!(err.contains("version 3"), "{err}");
        let mut noise = b.clone();
        let last = noise.len() - 3;
        noise[last] ^= 0x55;
        assert!(PackIndex::decode(&noise).is_err());
        // An entry past the pack's end, with a good checksum.
        let mut i = sample();
        i.entries[1].offset = 900;
        assert!(PackIndex::decode(&i.encode().unwrap()).is_err());
        let mut i = sample();
        i.entries[0].len = 10;
        assert!(PackIndex::decode(&i.encode().unwrap()).is_err());
    }
}
