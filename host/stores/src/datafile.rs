//! The `.vtd` datafile format (specified in `vtd.5`).
//!
//! ```text
//! file   := header record*
//! header := "vtd" 0x00  version:u32le(=1 or 2)                  (8 bytes)
//! record := "vtr1" flags:u8 hashid:u8 0:u16 digest:[32]
//!           stored_len:u32le raw_len:u32le crc:u32le payload     (52 + stored_len)
//! group payload := count:u32le (hashid:u8 digest:[32] len:u32le)*count  data
//! ```
//!
//! `flags` bit 0 set means the payload (of a group: its data) is
//! zstd-compressed, bit 1 that the frame needs a dictionary, bit 2 that the
//! record is a *group*: several small blocks compressed together, which
//! compress far better than each alone. A group's member table is stored
//! uncompressed, so the file can be scanned and indexed without
//! decompressing anything. `crc` is CRC-32 (IEEE) over the first 48 header
//! bytes and the payload. Version 2 files may hold groups; version 1 files
//! never do (and old readers refuse version 2, instead of taking group
//! records for damage and cutting them off). A datafile is only ever
//! appended to, by one writer at a time (it holds an exclusive `flock`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vt_core::{Error, Hash, HashKind, Result};

use crate::dict::Dictionaries;

/// The header of the files this code writes (version 2).
pub const FILE_HEADER: [u8; 8] = *b"vtd\0\x02\0\0\0";
/// The header of version 1 files (no group records), still read.
pub const FILE_HEADER_V1: [u8; 8] = *b"vtd\0\x01\0\0\0";
/// Length of a record header.
pub const RECORD_HEADER: usize = 52;
/// Record magic.
pub const RECORD_MAGIC: [u8; 4] = *b"vtr1";
/// Flag: the payload is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// Flag: the zstd frame was made with a dictionary (its ID is in the frame).
pub const FLAG_DICT: u8 = 2;
/// Flag: the record is a group of small blocks (payload: member table,
/// then the members' data, compressed as one frame if `FLAG_ZSTD`).
pub const FLAG_GROUP: u8 = 4;
/// Length of one member table entry: hash id, digest, length.
pub const MEMBER_ENTRY: usize = 37;
/// No record payload or block is larger than this.
pub const MAX_RECORD: u32 = 16 << 20;

/// The version of a datafile with header `head` (1 or 2), if it is one.
pub fn file_version(head: &[u8]) -> Option<u32> {
    if head == FILE_HEADER {
        Some(2)
    } else if head == FILE_HEADER_V1 {
        Some(1)
    } else {
        None
    }
}

/// How much a read checks before it returns a block's data.
///
/// Every read checks the record's CRC-32 (over its header, which holds the
/// block's digest, and its payload), that the record is the one asked for,
/// and the decompressed length: together these catch any corruption of the
/// datafile. `Hash` also recomputes the block's hash from the data, which
/// costs far more than the rest of a read (SHA3-256: about 0.5 GB/s per
/// core) and additionally guards against a writer that stored data under a
/// wrong hash. `vt fsck` always checks hashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verify {
    /// Checksum, identity and length.
    #[default]
    Checksum,
    /// All of that, and the block's hash.
    Hash,
}

/// A record's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Flags (`FLAG_ZSTD`, `FLAG_DICT`, `FLAG_GROUP`).
    pub flags: u8,
    /// The block's hashcode; of a group, the hash of its member table.
    pub hash: Hash,
    /// Payload length in the file.
    pub stored_len: u32,
    /// Block length once decompressed; of a group, the total length of
    /// its members.
    pub raw_len: u32,
    /// The stored checksum.
    pub crc: u32,
}

impl RecordHeader {
    /// True for a group record.
    pub fn is_group(&self) -> bool {
        self.flags & FLAG_GROUP != 0
    }
}

/// One block of a group record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    /// The block's hashcode.
    pub hash: Hash,
    /// Where its data starts in the group's decompressed data.
    pub offset: u32,
    /// Its length.
    pub len: u32,
}

fn crc_of(head: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(head);
    h.update(payload);
    h.finalize()
}

/// Encodes a record for `hash` with the given (possibly compressed) payload.
pub fn encode_record(hash: &Hash, flags: u8, payload: &[u8], raw_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER + payload.len());
    out.extend_from_slice(&RECORD_MAGIC);
    out.push(flags);
    out.push(hash.kind.id());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&hash.bytes);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&raw_len.to_le_bytes());
    let crc = crc_of(&out[..48], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Parses a record header; `None` if it is not a plausible header.
pub fn parse_header(b: &[u8; RECORD_HEADER]) -> Option<RecordHeader> {
    if b[..4] != RECORD_MAGIC || b[4] & !(FLAG_ZSTD | FLAG_DICT | FLAG_GROUP) != 0 {
        return None;
    }
    let kind = HashKind::from_id(b[5]).ok()?;
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&b[8..40]);
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let (stored_len, raw_len) = (u32_at(40), u32_at(44));
    if stored_len > MAX_RECORD || raw_len > MAX_RECORD {
        return None;
    }
    Some(RecordHeader {
        flags: b[4],
        hash: Hash { kind, bytes },
        stored_len,
        raw_len,
        crc: u32_at(48),
    })
}

/// Encodes a group record: `members` (hashcode, length) in order, and
/// `data`, their concatenated bytes (`raw_len` in all) compressed as one
/// frame if `flags` has `FLAG_ZSTD`. The header digest, of kind `kind`, is
/// the hash of the member table.
pub fn encode_group(
    kind: HashKind,
    members: &[(Hash, u32)],
    flags: u8,
    data: &[u8],
    raw_len: u32,
) -> Vec<u8> {
    let mut payload = Vec::with_capacity(4 + members.len() * MEMBER_ENTRY + data.len());
    payload.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for (h, len) in members {
        payload.push(h.kind.id());
        payload.extend_from_slice(&h.bytes);
        payload.extend_from_slice(&len.to_le_bytes());
    }
    let name = kind.digest(&payload);
    payload.extend_from_slice(data);
    encode_record(&name, flags | FLAG_GROUP, &payload, raw_len)
}

/// Parses and checks the member table at the start of a group's payload:
/// returns the members and the table's length.
pub fn parse_members(
    h: &RecordHeader,
    payload: &[u8],
) -> std::result::Result<(Vec<Member>, usize), String> {
    let count = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("group record too short for its member count")?;
    let table_len = 4 + u64::from(count) * MEMBER_ENTRY as u64;
    if count == 0 || table_len > payload.len() as u64 {
        return Err(format!("group record with a bad member count ({count})"));
    }
    let table_len = table_len as usize;
    let mut members = Vec::with_capacity(count as usize);
    let mut off = 0u64;
    for e in payload[4..table_len].chunks_exact(MEMBER_ENTRY) {
        let kind = HashKind::from_id(e[0]).map_err(|e| format!("group member table: {e}"))?;
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&e[1..33]);
        let len = u32::from_le_bytes([e[33], e[34], e[35], e[36]]);
        members.push(Member {
            hash: Hash { kind, bytes },
            offset: off as u32,
            len,
        });
        off += u64::from(len);
        if off > u64::from(h.raw_len) {
            break;
        }
    }
    if off != u64::from(h.raw_len) {
        return Err(format!(
            "group members add up to {off} bytes or more, header says {}",
            h.raw_len
        ));
    }
    if h.hash.kind.digest(&payload[..table_len]) != h.hash {
        return Err("group member table does not match the record's digest".into());
    }
    Ok((members, table_len))
}

/// A group record's members and their decompressed data.
#[derive(Debug)]
pub struct Group {
    /// The members, in table order.
    pub members: Vec<Member>,
    /// Their data, concatenated.
    pub data: Vec<u8>,
}

impl Group {
    /// Member `index`'s data, if it is `expect`; else why not.
    pub fn member(
        &self,
        index: u32,
        expect: &Hash,
        verify: Verify,
    ) -> std::result::Result<&[u8], String> {
        let m = self
            .members
            .get(index as usize)
            .ok_or_else(|| format!("group has no member #{index}"))?;
        if m.hash != *expect {
            return Err(format!(
                "group member #{index} is {}, not this block",
                m.hash
            ));
        }
        let data = self
            .data
            .get(m.offset as usize..m.offset as usize + m.len as usize)
            .ok_or_else(|| format!("group member #{index} lies outside the group's data"))?;
        if verify == Verify::Hash && expect.kind.digest(data) != *expect {
            return Err(format!("group member #{index} does not match its hash"));
        }
        Ok(data)
    }
}

/// Reads the record at `offset` and checks its header and checksum.
fn read_checked(file: &File, offset: u64) -> std::result::Result<(RecordHeader, Vec<u8>), String> {
    let mut hb = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut hb, offset)
        .map_err(|e| format!("cannot read record header at offset {offset}: {e}"))?;
    let h = parse_header(&hb).ok_or_else(|| format!("bad record header at offset {offset}"))?;
    let mut payload = vec![0u8; h.stored_len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER as u64)
        .map_err(|e| format!("cannot read payload at offset {offset}: {e}"))?;
    if crc_of(&hb[..48], &payload) != h.crc {
        return Err(format!("checksum mismatch in record at offset {offset}"));
    }
    Ok((h, payload))
}

/// Reads and verifies the record at `offset` (checksum, identity, length,
/// and with [`Verify::Hash`] the hash of the decompressed data). Returns the
/// block data.
pub fn read_record(
    file: &File,
    path: &Path,
    offset: u64,
    expect: &Hash,
    dicts: &Dictionaries,
    verify: Verify,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt {
        hash: *expect,
        file: path.to_path_buf(),
        detail,
    };
    let (h, payload) = read_checked(file, offset).map_err(corrupt)?;
    if h.hash != *expect || h.is_group() {
        return Err(corrupt(format!(
            "record at offset {offset} is for {}{}, not this block",
            if h.is_group() { "the group " } else { "" },
            h.hash
        )));
    }
    let data = decode_payload(&h, payload, dicts).map_err(corrupt)?;
    if verify == Verify::Hash && expect.kind.digest(&data) != *expect {
        return Err(corrupt(format!(
            "data at offset {offset} does not match its hash"
        )));
    }
    Ok(data)
}

/// Reads the group record at `offset`: checks its header, checksum and
/// member table, and decompresses its data. Members' hashes are checked
/// by [`Group::member`].
pub fn read_group(
    file: &File,
    offset: u64,
    dicts: &Dictionaries,
) -> std::result::Result<Group, String> {
    let (h, mut payload) = read_checked(file, offset)?;
    if !h.is_group() {
        return Err(format!(
            "record at offset {offset} is for {}, not a group",
            h.hash
        ));
    }
    let (members, table_len) =
        parse_members(&h, &payload).map_err(|e| format!("record at offset {offset}: {e}"))?;
    let data = decode_payload(&h, payload.split_off(table_len), dicts)
        .map_err(|e| format!("group record at offset {offset}: {e}"))?;
    Ok(Group { members, data })
}

/// The block data of a checksummed payload (of a group: its data part).
pub fn decode_payload(
    h: &RecordHeader,
    payload: Vec<u8>,
    dicts: &Dictionaries,
) -> std::result::Result<Vec<u8>, String> {
    let data = if h.flags & FLAG_ZSTD != 0 {
        dicts.decompress(&payload, h.raw_len as usize)?
    } else {
        payload
    };
    if data.len() != h.raw_len as usize {
        return Err(format!(
            "decompressed to {} bytes, header says {}",
            data.len(),
            h.raw_len
        ));
    }
    Ok(data)
}

/// One record found by [`scan`].
#[derive(Clone, Debug)]
pub struct Found {
    /// Where the record starts.
    pub offset: u64,
    /// Its header.
    pub header: RecordHeader,
    /// Of a group record, its members (from the checked member table);
    /// else empty.
    pub members: Vec<Member>,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Records whose checksum is good, in file order.
    pub records: Vec<Found>,
    /// Offsets of damaged spans (bad header or checksum), with a reason.
    pub damaged: Vec<(u64, String)>,
    /// End of the last good record.
    pub good_end: u64,
}

/// Reads records from `from` to the end of the file, checking checksums.
/// After damage it searches forward for the next good record. A group's
/// member table is always checked (it is not compressed). With
/// `verify_data`, each payload is also decompressed and every block's hash
/// checked.
pub fn scan(file: &File, from: u64, verify_data: Option<&Dictionaries>) -> Result<ScanResult> {
    let len = file
        .metadata()
        .map_err(|e| Error::io("stat datafile", e))?
        .len();
    let mut res = ScanResult {
        good_end: from,
        ..Default::default()
    };
    let mut off = from;
    while off < len {
        match check_record(file, off, len, verify_data) {
            Ok((h, members)) => {
                res.records.push(Found {
                    offset: off,
                    header: h,
                    members,
                });
                off += RECORD_HEADER as u64 + u64::from(h.stored_len);
                res.good_end = off;
            }
            Err(why) => {
                res.damaged.push((off, why));
                off = next_magic(file, off + 1, len);
            }
        }
    }
    Ok(res)
}

fn check_record(
    file: &File,
    off: u64,
    len: u64,
    verify_data: Option<&Dictionaries>,
) -> std::result::Result<(RecordHeader, Vec<Member>), String> {
    let mut hb = [0u8; RECORD_HEADER];
    if off + RECORD_HEADER as u64 > len {
        return Err("truncated record header".into());
    }
    file.read_exact_at(&mut hb, off)
        .map_err(|e| format!("read error: {e}"))?;
    let h = parse_header(&hb).ok_or("bad record header")?;
    if off + RECORD_HEADER as u64 + u64::from(h.stored_len) > len {
        return Err("truncated record".into());
    }
    let mut payload = vec![0u8; h.stored_len as usize];
    file.read_exact_at(&mut payload, off + RECORD_HEADER as u64)
        .map_err(|e| format!("read error: {e}"))?;
    if crc_of(&hb[..48], &payload) != h.crc {
        return Err(if h.is_group() {
            "checksum mismatch in group record".into()
        } else {
            format!("checksum mismatch in record for {}", h.hash)
        });
    }
    if h.is_group() {
        let (members, table_len) = parse_members(&h, &payload)?;
        if let Some(dicts) = verify_data {
            let d = decode_payload(&h, payload[table_len..].to_vec(), dicts)?;
            for (i, m) in members.iter().enumerate() {
                let data = &d[m.offset as usize..(m.offset + m.len) as usize];
                if m.hash.kind.digest(data) != m.hash {
                    return Err(format!(
                        "block {} (group member #{i}) does not match its hash",
                        m.hash
                    ));
                }
            }
        }
        return Ok((h, members));
    }
    if let Some(dicts) = verify_data {
        let d = decode_payload(&h, payload, dicts)?;
        if h.hash.kind.digest(&d) != h.hash {
            return Err(format!("data does not match its hash {}", h.hash));
        }
    }
    Ok((h, Vec::new()))
}

/// The offset of the next record magic at or after `from`, else `len`.
fn next_magic(file: &File, mut from: u64, len: u64) -> u64 {
    let mut buf = vec![0u8; 1 << 20];
    while from < len {
        let n = ((len - from) as usize).min(buf.len());
        if file.read_exact_at(&mut buf[..n], from).is_err() {
            return len;
        }
        if let Some(i) = buf[..n].windows(4).position(|w| w == RECORD_MAGIC) {
            return from + i as u64;
        }
        if n < 4 {
            return len;
        }
        from += (n - 3) as u64;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The group record of the second example in vtd.5, byte for byte.
    #[test]
    fn the_man_page_group_example() {
        let a = HashKind::Sha3_256.digest(b"hello\n");
        let b = HashKind::Sha3_256.digest(b"world\n");
        let mut file = FILE_HEADER.to_vec();
        file.extend(encode_group(
            HashKind::Sha3_256,
            &[(a, 6), (b, 6)],
            0,
            b"hello\nworld\n",
            12,
        ));
        assert_eq!(file.len(), 0x96);
        assert_eq!(&file[0x30..0x38], b"\x5a\0\0\0\x0c\0\0\0");
        assert_eq!(&file[0x38..0x3c], &0x20e5_7509u32.to_le_bytes());
        assert_eq!(&file[0x10..0x14], b"\xfc\x94\x2d\x6e");
        let mut hb = [0u8; RECORD_HEADER];
        hb.copy_from_slice(&file[8..8 + RECORD_HEADER]);
        let h = parse_header(&hb).unwrap();
        let (members, table_len) = parse_members(&h, &file[8 + RECORD_HEADER..]).unwrap();
        assert_eq!(table_len, 78);
        assert_eq!(
            members,
            vec![
                Member {
                    hash: a,
                    offset: 0,
                    len: 6
                },
                Member {
                    hash: b,
                    offset: 6,
                    len: 6
                }
            ]
        );
    }

    #[test]
    fn bad_member_tables_are_rejected() {
        let a = HashKind::Blake3.digest(b"abc");
        let rec = encode_group(HashKind::Blake3, &[(a, 3)], 0, b"abc", 3);
        let mut hb = [0u8; RECORD_HEADER];
        hb.copy_from_slice(&rec[..RECORD_HEADER]);
        let h = parse_header(&hb).unwrap();
        let payload = &rec[RECORD_HEADER..];
        assert!(parse_members(&h, payload).is_ok());
        // Lengths that do not add up to raw_len.
        let short = RecordHeader { raw_len: 2, ..h };
        assert!(parse_members(&short, payload).is_err());
        // A count the payload cannot hold, and zero members.
        let mut p = payload.to_vec();
        p[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse_members(&h, &p).is_err());
        p[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(parse_members(&h, &p).is_err());
        // A table that does not hash to the header's digest.
        let mut p = payload.to_vec();
        p[10] ^= 1;
        assert!(parse_members(&h, &p).unwrap_err().contains("digest"));
        assert!(parse_members(&h, &[1, 0]).is_err());
    }
}
