//! The `.vtd` datafile format (specified in `vtd.5`).
//!
//! ```text
//! file   := header record*
//! header := "vtd" 0x00  version:u32le(=1, 2, 3 or 4)            (8 bytes)
//! record := "vtr1" flags:u8 hashid:u8 0:u16 digest:[32]
//!           stored_len:u32le raw_len:u32le crc:u32le payload     (52 + stored_len)
//! group payload := count:u32le len:uvarint*count [prefix:[4]*count] data
//! delta payload := base:[33] frame
//! ```
//!
//! `flags` bit 0 set means the payload (of a group: its data) is
//! zstd-compressed, bit 1 that the frame needs a dictionary, bit 2 that the
//! record is a *group*: several small blocks compressed together, which
//! compress far better than each alone. A group's member table holds the
//! members' lengths and, with bit 3, the first 4 bytes of each member's
//! hashcode (a whole hashcode per member took 7% of what a mail archive of
//! 1-2 KiB blocks stored): enough for a read to check that the member at
//! the indexed place is the block asked for without hashing it, which was
//! a tenth of the time of reading a tree of small files through a mount.
//! Whoever needs to know which blocks a group holds (recovery, reindex,
//! fsck) decompresses it and hashes each member, as git does for packs.
//! All members are hashed with the header's hash function, and the
//! header's digest is the hash of their digests concatenated, so that
//! check catches data that is not what its writer hashed. Bit 4 (with bit
//! 0) makes the record a *delta*: its payload is the hashcode of another
//! block (its base: kind id, then digest) and a zstd frame compressed with
//! the base's data as reference prefix (`delta.rs`); a base is never a
//! delta. `crc` is CRC-32
//! (IEEE) over the first 48 header bytes and the payload. Version 4 files
//! may hold deltas, version 3 files groups with hash prefixes, version 2
//! files groups without,
//! version 1 files no groups; readers that know only older versions refuse
//! a newer file, instead of taking its records for damage and cutting them
//! off. A datafile is only ever appended to, by one writer at a time (it
//! holds an exclusive `flock`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use bytes::Bytes;

use vt_core::{Error, Hash, HashKind, Result};

use crate::delta;
use crate::dict::Dictionaries;

/// The header of the files this code writes (version 4).
pub const FILE_HEADER: [u8; 8] = *b"vtd\0\x04\0\0\0";
/// The header of version 3 files (no delta records), still read.
pub const FILE_HEADER_V3: [u8; 8] = *b"vtd\0\x03\0\0\0";
/// The header of version 2 files (groups without hash prefixes), still
/// read.
pub const FILE_HEADER_V2: [u8; 8] = *b"vtd\0\x02\0\0\0";
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
/// Flag (with `FLAG_GROUP` only): the member table holds a hash prefix
/// of each member after the lengths.
pub const FLAG_PREFIXES: u8 = 8;
/// Flag (with `FLAG_ZSTD` only): the record is a delta against another
/// block (payload: the base's hashcode, then the frame).
pub const FLAG_DELTA: u8 = 16;
/// Bytes of a member's hashcode kept in a prefixed member table.
pub const PREFIX_LEN: usize = 4;
/// No record payload or block is larger than this.
pub const MAX_RECORD: u32 = 16 << 20;

/// The version of a datafile with header `head` (1 to 4), if it is one.
pub fn file_version(head: &[u8]) -> Option<u32> {
    if head == FILE_HEADER {
        Some(4)
    } else if head == FILE_HEADER_V3 {
        Some(3)
    } else if head == FILE_HEADER_V2 {
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
    /// Flags (`FLAG_ZSTD`, `FLAG_DICT`, `FLAG_GROUP`, `FLAG_PREFIXES`).
    pub flags: u8,
    /// The block's hashcode; of a group, the hash of its members' digests
    /// (see [`group_digest`]).
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

    /// True for a delta record.
    pub fn is_delta(&self) -> bool {
        self.flags & FLAG_DELTA != 0
    }

    /// Length of the whole record (header and payload).
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER as u64 + u64::from(self.stored_len)
    }
}

/// Where one member of a group lies in the group's decompressed data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Where its data starts.
    pub offset: u32,
    /// Its length.
    pub len: u32,
    /// The first bytes of its hashcode, if the table holds them.
    pub prefix: Option<[u8; PREFIX_LEN]>,
}

/// One block of a group record, as a scan found it (hashed from its data).
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
    let known = FLAG_ZSTD | FLAG_DICT | FLAG_GROUP | FLAG_PREFIXES | FLAG_DELTA;
    if b[..4] != RECORD_MAGIC || b[4] & !known != 0 {
        return None;
    }
    if b[4] & FLAG_DELTA != 0 && b[4] != FLAG_DELTA | FLAG_ZSTD {
        return None;
    }
    if b[4] & FLAG_PREFIXES != 0 && b[4] & FLAG_GROUP == 0 {
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

/// The digest of a group whose members have hashcodes `members` (all of
/// kind `kind`): the hash of their digests concatenated in table order.
pub fn group_digest<'h>(kind: HashKind, members: impl IntoIterator<Item = &'h Hash>) -> Hash {
    let mut all = Vec::new();
    for h in members {
        all.extend_from_slice(&h.bytes);
    }
    kind.digest(&all)
}

/// Appends `v` as an unsigned LEB128 varint (as `vt.5`'s codec does).
fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads an unsigned LEB128 varint of at most 32 bits from the start of
/// `b`: the value and the bytes it took.
fn get_varint(b: &[u8]) -> Option<(u32, usize)> {
    let mut v: u64 = 0;
    for (i, &x) in b.iter().take(5).enumerate() {
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            return u32::try_from(v).ok().map(|v| (v, i + 1));
        }
    }
    None
}

/// Encodes a group record: `members` (hashcode, length) in order, all of
/// hash kind `kind`, and `data`, their concatenated bytes (`raw_len` in
/// all) compressed as one frame if `flags` has `FLAG_ZSTD`. The member
/// table holds the lengths, then each member's hash prefix; the header
/// digest is [`group_digest`] of the members.
pub fn encode_group(
    kind: HashKind,
    members: &[(Hash, u32)],
    flags: u8,
    data: &[u8],
    raw_len: u32,
) -> Vec<u8> {
    debug_assert!(members.iter().all(|(h, _)| h.kind == kind));
    let mut payload = Vec::with_capacity(4 + members.len() * (2 + PREFIX_LEN) + data.len());
    payload.extend_from_slice(&(members.len() as u32).to_le_bytes());
    for &(_, len) in members {
        put_varint(&mut payload, len);
    }
    for (h, _) in members {
        payload.extend_from_slice(&h.bytes[..PREFIX_LEN]);
    }
    payload.extend_from_slice(data);
    let name = group_digest(kind, members.iter().map(|(h, _)| h));
    encode_record(&name, flags | FLAG_GROUP | FLAG_PREFIXES, &payload, raw_len)
}

/// Parses and checks the member table at the start of a group's payload:
/// returns where each member's data lies and the table's length.
pub fn parse_table(
    h: &RecordHeader,
    payload: &[u8],
) -> std::result::Result<(Vec<Span>, usize), String> {
    let count = payload
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or("group record too short for its member count")?;
    // Every length takes at least a byte.
    if count == 0 || u64::from(count) > (payload.len() - 4) as u64 {
        return Err(format!("group record with a bad member count ({count})"));
    }
    let mut spans = Vec::with_capacity(count as usize);
    let mut pos = 4;
    let mut off = 0u64;
    for i in 0..count {
        let (len, n) = get_varint(&payload[pos..])
            .ok_or_else(|| format!("group member table: bad length of member #{i}"))?;
        pos += n;
        spans.push(Span {
            offset: off as u32,
            len,
            prefix: None,
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
    if h.flags & FLAG_PREFIXES != 0 {
        let all = payload
            .get(pos..pos + spans.len() * PREFIX_LEN)
            .ok_or("group member table: hash prefixes run past the payload")?;
        for (s, p) in spans.iter_mut().zip(all.chunks_exact(PREFIX_LEN)) {
            let mut b = [0u8; PREFIX_LEN];
            b.copy_from_slice(p);
            s.prefix = Some(b);
        }
        pos += all.len();
    }
    Ok((spans, pos))
}

/// A group record's member table and decompressed data.
#[derive(Debug)]
pub struct Group {
    /// The header's digest (its kind is every member's).
    pub digest: Hash,
    /// Where each member lies in `data`, in table order.
    pub spans: Vec<Span>,
    /// The members' data, concatenated (shared: a member is a slice).
    pub data: Bytes,
}

impl Group {
    /// Member `index`'s data, checked to be block `expect`'s: by the hash
    /// prefix in the member table, or, with [`Verify::Hash`] or in a table
    /// without prefixes (version 2 files), by hashing the data (else only
    /// the index entry would say which block this is).
    pub fn member(
        &self,
        index: u32,
        expect: &Hash,
        verify: Verify,
    ) -> std::result::Result<&[u8], String> {
        if expect.kind != self.digest.kind {
            return Err(format!(
                "group holds {} blocks, not {}",
                self.digest.kind, expect.kind
            ));
        }
        let m = self
            .spans
            .get(index as usize)
            .ok_or_else(|| format!("group has no member #{index}"))?;
        let data = self
            .data
            .get(m.offset as usize..m.offset as usize + m.len as usize)
            .ok_or_else(|| format!("group member #{index} lies outside the group's data"))?;
        match (verify, m.prefix) {
            (Verify::Checksum, Some(p)) if p[..] != expect.bytes[..PREFIX_LEN] => Err(format!(
                "group member #{index} is not {expect} (its hash prefix differs)"
            )),
            (Verify::Checksum, Some(_)) => Ok(data),
            _ if expect.kind.digest(data) != *expect => {
                Err(format!("group member #{index} does not match its hash"))
            }
            _ => Ok(data),
        }
    }

    /// Hashes every member and checks that together they make the
    /// header's digest, and that each matches its prefix in the table.
    pub fn members(&self) -> std::result::Result<Vec<Member>, String> {
        let kind = self.digest.kind;
        let mut out = Vec::with_capacity(self.spans.len());
        for s in &self.spans {
            let data = self
                .data
                .get(s.offset as usize..s.offset as usize + s.len as usize)
                .ok_or("group member lies outside the group's data")?;
            out.push(Member {
                hash: kind.digest(data),
                offset: s.offset,
                len: s.len,
            });
        }
        if group_digest(kind, out.iter().map(|m| &m.hash)) != self.digest {
            return Err("group members do not hash to the record's digest".into());
        }
        for (i, (m, s)) in out.iter().zip(&self.spans).enumerate() {
            if s.prefix
                .is_some_and(|p| p[..] != m.hash.bytes[..PREFIX_LEN])
            {
                return Err(format!(
                    "group member #{i} does not match its hash prefix in the member table"
                ));
            }
        }
        Ok(out)
    }
}

/// Where records are read from.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The open datafile, read with `pread` into buffers of their own.
    File(&'a File),
    /// The datafile mapped (see [`crate::mapping`]): payloads are slices of
    /// the map, stored blocks are not copied at all.
    Map(&'a Bytes),
}

impl<'a> Source<'a> {
    /// The map if there is one, else the file.
    pub fn of(map: Option<&'a Bytes>, file: &'a File) -> Self {
        map.map_or(Source::File(file), Source::Map)
    }
}

impl<'a> From<&'a File> for Source<'a> {
    fn from(f: &'a File) -> Self {
        Source::File(f)
    }
}

/// Reads the record at `offset` and checks its header and checksum. With
/// `stored_len` (what the index says the payload holds) header and payload
/// come in one `preadv`; without it, or if the header disagrees, in two
/// reads.
fn read_checked(
    src: Source<'_>,
    offset: u64,
    stored_len: Option<u32>,
) -> std::result::Result<(RecordHeader, Bytes), String> {
    let file = match src {
        Source::File(f) => f,
        Source::Map(m) => return mapped_checked(m, offset),
    };
    let mut hb = [0u8; RECORD_HEADER];
    let read = stored_len
        .filter(|&n| n <= MAX_RECORD)
        .and_then(|n| read_whole(file, offset, n, &mut hb));
    let (h, payload) = match read {
        Some(r) => r,
        None => {
            file.read_exact_at(&mut hb, offset)
                .map_err(|e| format!("cannot read record header at offset {offset}: {e}"))?;
            let h =
                parse_header(&hb).ok_or_else(|| format!("bad record header at offset {offset}"))?;
            let mut payload = vec![0u8; h.stored_len as usize];
            file.read_exact_at(&mut payload, offset + RECORD_HEADER as u64)
                .map_err(|e| format!("cannot read payload at offset {offset}: {e}"))?;
            (h, payload)
        }
    };
    if crc_of(&hb[..48], &payload) != h.crc {
        return Err(format!("checksum mismatch in record at offset {offset}"));
    }
    Ok((h, Bytes::from(payload)))
}

/// [`read_checked`] from a map: the payload is a slice of it. Also how
/// an S3 store checks a record it fetched by a ranged GET (at offset 0).
pub(crate) fn mapped_checked(
    map: &Bytes,
    offset: u64,
) -> std::result::Result<(RecordHeader, Bytes), String> {
    let past = || format!("record at offset {offset} runs past the datafile's end");
    let at = usize::try_from(offset).map_err(|_| past())?;
    let hb: &[u8; RECORD_HEADER] = map
        .get(at..at.saturating_add(RECORD_HEADER))
        .and_then(|b| b.try_into().ok())
        .ok_or_else(past)?;
    let h = parse_header(hb).ok_or_else(|| format!("bad record header at offset {offset}"))?;
    let start = at + RECORD_HEADER;
    let end = start.saturating_add(h.stored_len as usize);
    if end > map.len() {
        return Err(past());
    }
    let payload = map.slice(start..end);
    if crc_of(&hb[..48], &payload) != h.crc {
        return Err(format!("checksum mismatch in record at offset {offset}"));
    }
    Ok((h, payload))
}

/// Header (into `hb`) and payload of the record at `offset` in one
/// `preadv`, if it has `n` bytes of payload as its header says.
fn read_whole(
    file: &File,
    offset: u64,
    n: u32,
    hb: &mut [u8; RECORD_HEADER],
) -> Option<(RecordHeader, Vec<u8>)> {
    // Not zeroed first: the read fills it (a record is usually tens of
    // kilobytes, and zeroing it cost as much as the CRC).
    let n = n as usize;
    let mut payload: Vec<u8> = Vec::with_capacity(n);
    let iov = [
        libc::iovec {
            iov_base: hb.as_mut_ptr().cast(),
            iov_len: RECORD_HEADER,
        },
        libc::iovec {
            iov_base: payload.as_mut_ptr().cast(),
            iov_len: n,
        },
    ];
    // SAFETY: both buffers are valid for writes of the lengths given (the
    // payload's capacity is n) and outlive the call.
    let got = unsafe {
        libc::preadv(
            std::os::fd::AsRawFd::as_raw_fd(file),
            iov.as_ptr(),
            2,
            offset as libc::off_t,
        )
    };
    if got != (RECORD_HEADER + n) as isize {
        return None;
    }
    // SAFETY: the read filled all n bytes of the payload.
    unsafe { payload.set_len(n) };
    let h = parse_header(hb).filter(|h| h.stored_len as usize == n)?;
    Some((h, payload))
}

/// The checked header and payload of the record at `offset`, which must
/// be block `expect`'s own record (not another block's, not a group).
fn read_own_record(
    src: Source<'_>,
    offset: u64,
    stored_len: Option<u32>,
    expect: &Hash,
) -> std::result::Result<(RecordHeader, Bytes), String> {
    let (h, payload) = read_checked(src, offset, stored_len)?;
    if h.hash != *expect || h.is_group() {
        return Err(format!(
            "record at offset {offset} is for {}{}, not this block",
            if h.is_group() { "the group " } else { "" },
            h.hash
        ));
    }
    Ok((h, payload))
}

/// Makes the error for damage to block `expect` in datafile `path`.
fn corrupt_in<'a>(path: &'a Path, expect: &'a Hash) -> impl Fn(String) -> Error + Copy + 'a {
    move |detail| Error::Corrupt {
        hash: *expect,
        file: path.to_path_buf(),
        detail,
    }
}

/// A block's own record as read.
#[derive(Debug)]
pub enum Stored {
    /// The block's data.
    Block(Bytes),
    /// A delta: [`resolve_delta`] with the base's data gives the block.
    Delta {
        /// The base's hashcode.
        base: Hash,
        /// The record's payload (checksummed).
        payload: Bytes,
        /// The block's length.
        raw_len: u32,
    },
}

/// Reads and verifies the record at `offset` (checksum, identity, length,
/// and with [`Verify::Hash`] the hash of the decompressed data). Returns the
/// block data (from a map, a slice of it unless it was compressed), or of
/// a delta record what it needs to be resolved.
pub fn read_record<'a>(
    src: impl Into<Source<'a>>,
    path: &Path,
    offset: u64,
    stored_len: Option<u32>,
    expect: &Hash,
    dicts: &Dictionaries,
    verify: Verify,
) -> Result<Stored> {
    let corrupt = corrupt_in(path, expect);
    let (h, payload) = read_own_record(src.into(), offset, stored_len, expect).map_err(corrupt)?;
    if h.is_delta() {
        let (base, _) = delta::parse_payload(&payload).map_err(corrupt)?;
        return Ok(Stored::Delta {
            base,
            payload,
            raw_len: h.raw_len,
        });
    }
    let data = decode_payload(&h, payload, dicts).map_err(corrupt)?;
    if verify == Verify::Hash && expect.kind.digest(&data) != *expect {
        return Err(corrupt(format!(
            "data at offset {offset} does not match its hash"
        )));
    }
    Ok(Stored::Block(data))
}

/// Block `expect`'s data from its delta record's `payload` and its base's
/// data: the frame's checksum and length are always checked (they catch a
/// wrong or damaged base), the block's hash with [`Verify::Hash`].
pub fn resolve_delta(
    path: &Path,
    expect: &Hash,
    base: &[u8],
    payload: &[u8],
    raw_len: u32,
    verify: Verify,
) -> Result<Bytes> {
    let corrupt = corrupt_in(path, expect);
    let (_, frame) = delta::parse_payload(payload).map_err(corrupt)?;
    let data = delta::decompress(base, frame, raw_len as usize).map_err(corrupt)?;
    if verify == Verify::Hash && expect.kind.digest(&data) != *expect {
        return Err(corrupt(
            "delta does not resolve to data matching its hash".into(),
        ));
    }
    Ok(Bytes::from(data))
}

/// Reads the group record at `offset`: checks its header, checksum and
/// member table, and decompresses its data. Members' hashes are checked
/// by [`Group::member`] or [`Group::members`].
pub fn read_group<'a>(
    src: impl Into<Source<'a>>,
    offset: u64,
    stored_len: Option<u32>,
    dicts: &Dictionaries,
) -> std::result::Result<Group, String> {
    let (h, payload) = read_checked(src.into(), offset, stored_len)?;
    if !h.is_group() {
        return Err(format!(
            "record at offset {offset} is for {}, not a group",
            h.hash
        ));
    }
    decode_group(&h, payload, dicts).map_err(|e| format!("group record at offset {offset}: {e}"))
}

/// The member table and data of a checksummed group payload.
pub(crate) fn decode_group(
    h: &RecordHeader,
    payload: Bytes,
    dicts: &Dictionaries,
) -> std::result::Result<Group, String> {
    let (spans, table_len) = parse_table(h, &payload)?;
    let data = decode_payload(h, payload.slice(table_len..), dicts)?;
    Ok(Group {
        digest: h.hash,
        spans,
        data,
    })
}

/// The block data of a checksummed payload (of a group: its data part).
pub fn decode_payload(
    h: &RecordHeader,
    payload: Bytes,
    dicts: &Dictionaries,
) -> std::result::Result<Bytes, String> {
    let data = if h.flags & FLAG_ZSTD != 0 {
        Bytes::from(dicts.decompress(&payload, h.raw_len as usize)?)
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

/// The payload of the record of block `expect` at `offset` as it is
/// stored, when it is one zstd frame that needs no dictionary (see
/// [`vt_core::Store::get_packed`]), checked like [`read_record`]'s
/// (checksum, identity) but not decompressed; `None` when the record is
/// stored plain or needs a dictionary.
pub fn read_record_packed<'a>(
    src: impl Into<Source<'a>>,
    path: &Path,
    offset: u64,
    stored_len: Option<u32>,
    expect: &Hash,
) -> Result<Option<Bytes>> {
    let corrupt = corrupt_in(path, expect);
    let (h, payload) = read_own_record(src.into(), offset, stored_len, expect).map_err(corrupt)?;
    let plain_frame = h.flags & FLAG_ZSTD != 0
        && !h.is_delta()
        && zstd::zstd_safe::get_dict_id_from_frame(&payload).is_none()
        && matches!(zstd::zstd_safe::get_frame_content_size(&payload),
            Ok(Some(n)) if n == u64::from(h.raw_len));
    Ok(plain_frame.then_some(payload))
}

/// One record found by [`scan`].
#[derive(Clone, Debug)]
pub struct Found {
    /// Where the record starts.
    pub offset: u64,
    /// Its header.
    pub header: RecordHeader,
    /// Of a group record, its members, hashed from the data; else empty.
    pub members: Vec<Member>,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Good records, in file order.
    pub records: Vec<Found>,
    /// Offsets of damaged spans, with a reason: a bad header or checksum
    /// (after which the scan searched for the next record), or a record
    /// whose checksum is good but whose contents fail a check (skipped
    /// whole).
    pub damaged: Vec<(u64, String)>,
    /// Records with a good checksum whose data cannot be decompressed
    /// because its dictionary is missing, with the reason: not damage
    /// (the data may be fine), but their blocks are unknown.
    pub unreadable: Vec<(u64, String)>,
    /// End of the last record with a good checksum.
    pub good_end: u64,
}

/// What [`check_record`] made of one record.
enum Checked {
    Good(RecordHeader, Vec<Member>),
    /// Torn or invalid: the scan searches for the next record.
    Damaged(String),
    /// Complete (good checksum) but its contents fail a check.
    Bad(RecordHeader, String),
    /// Complete, but its data needs a dictionary that is missing.
    Unreadable(RecordHeader, String),
}

/// Reads records from `from` to the end of the file, checking checksums.
/// After damage it searches forward for the next good record. A group is
/// always decompressed and each member hashed (that is how its blocks are
/// known); with `full`, every other record's data is also decompressed and
/// its hash checked.
pub fn scan(file: &File, from: u64, dicts: &Dictionaries, full: bool) -> Result<ScanResult> {
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
        match check_record(file, off, len, dicts, full) {
            Checked::Good(h, members) => {
                res.records.push(Found {
                    offset: off,
                    header: h,
                    members,
                });
                off += h.record_len();
                res.good_end = off;
            }
            Checked::Damaged(why) => {
                res.damaged.push((off, why));
                off = next_magic(file, off + 1, len);
            }
            // A good checksum: the record is complete and its length
            // right, never the torn tail of an interrupted append.
            Checked::Bad(h, why) => {
                res.damaged.push((off, why));
                off += h.record_len();
                res.good_end = off;
            }
            Checked::Unreadable(h, why) => {
                res.unreadable.push((off, why));
                off += h.record_len();
                res.good_end = off;
            }
        }
    }
    Ok(res)
}

fn check_record(file: &File, off: u64, len: u64, dicts: &Dictionaries, full: bool) -> Checked {
    let mut hb = [0u8; RECORD_HEADER];
    if off + RECORD_HEADER as u64 > len {
        return Checked::Damaged("truncated record header".into());
    }
    if let Err(e) = file.read_exact_at(&mut hb, off) {
        return Checked::Damaged(format!("read error: {e}"));
    }
    let Some(h) = parse_header(&hb) else {
        return Checked::Damaged("bad record header".into());
    };
    if off + h.record_len() > len {
        return Checked::Damaged("truncated record".into());
    }
    let mut payload = vec![0u8; h.stored_len as usize];
    if let Err(e) = file.read_exact_at(&mut payload, off + RECORD_HEADER as u64) {
        return Checked::Damaged(format!("read error: {e}"));
    }
    if crc_of(&hb[..48], &payload) != h.crc {
        return Checked::Damaged(if h.is_group() {
            "checksum mismatch in group record".into()
        } else {
            format!("checksum mismatch in record for {}", h.hash)
        });
    }
    if !h.is_group() && !full {
        return Checked::Good(h, Vec::new());
    }
    if h.is_delta() {
        // Its data needs its base, which may be in another datafile: the
        // DataDir's fsck resolves every delta through the index.
        return match delta::parse_payload(&payload) {
            Ok(_) => Checked::Good(h, Vec::new()),
            Err(why) => Checked::Bad(h, why),
        };
    }
    if h.is_group() {
        let table_len = match parse_table(&h, &payload) {
            Ok((_, n)) => n,
            Err(why) => return Checked::Bad(h, why),
        };
        if let Err(why) = needs(&h, &payload[table_len..], dicts) {
            return Checked::Unreadable(h, why);
        }
        return match decode_group(&h, Bytes::from(payload), dicts).and_then(|g| g.members()) {
            Ok(members) => Checked::Good(h, members),
            Err(why) => Checked::Bad(h, why),
        };
    }
    if let Err(why) = needs(&h, &payload, dicts) {
        return Checked::Unreadable(h, why);
    }
    match decode_payload(&h, Bytes::from(payload), dicts) {
        Ok(d) if h.hash.kind.digest(&d) == h.hash => Checked::Good(h, Vec::new()),
        Ok(_) => Checked::Bad(h, format!("data does not match its hash {}", h.hash)),
        Err(why) => Checked::Bad(h, why),
    }
}

/// Fails if the (checksummed) frame `data` of a record with header `h`
/// needs a dictionary that cannot be loaded.
fn needs(h: &RecordHeader, data: &[u8], dicts: &Dictionaries) -> std::result::Result<(), String> {
    if h.flags & FLAG_ZSTD == 0 {
        return Ok(());
    }
    dicts.available_for(data)
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
pub(crate) mod tests {
    use super::*;

    fn no_dicts() -> (tempfile::TempDir, Dictionaries) {
        let t = tempfile::tempdir().unwrap();
        let d = Dictionaries::open(t.path()).unwrap();
        (t, d)
    }

    /// The bytes of the hex dump that follows "one group record" in vtd.5.
    fn man_page_example() -> Vec<u8> {
        let man = include_str!("../../../man/vtd.5");
        let at = man.find("one group record").unwrap();
        let mut out = Vec::new();
        for line in man[at..]
            .lines()
            .skip_while(|l| !l.starts_with("00000000:"))
        {
            let Some(rest) = line.strip_prefix(|c: char| c.is_ascii_hexdigit()) else {
                break;
            };
            // "xxxxxxx: " then 8 groups of 4 hex digits, then the text.
            let hex: String = rest[8..]
                .chars()
                .take(40)
                .filter(|c| !c.is_whitespace())
                .collect();
            for i in (0..hex.len()).step_by(2) {
                out.push(u8::from_str_radix(&hex[i..i + 2], 16).unwrap());
            }
        }
        out
    }

    /// The group record of the second example in vtd.5, byte for byte.
    #[test]
    fn the_man_page_group_example() {
        let a = HashKind::Sha3_256.digest(b"hello\n");
        let b = HashKind::Sha3_256.digest(b"world\n");
        let mut file = FILE_HEADER_V3.to_vec();
        file.extend(encode_group(
            HashKind::Sha3_256,
            &[(a, 6), (b, 6)],
            0,
            b"hello\nworld\n",
            12,
        ));
        assert_eq!(file.len(), 0x56);
        assert_eq!(file, man_page_example(), "the hex dump in vtd.5");
        assert_eq!(&file[0x08..0x10], b"vtr1\x0c\x01\0\0");
        assert_eq!(&file[0x10..0x14], b"\x43\x6f\xa8\x1e");
        assert_eq!(&file[0x30..0x38], b"\x1a\0\0\0\x0c\0\0\0");
        assert_eq!(&file[0x38..0x3c], &0x0c7c_5339u32.to_le_bytes());
        assert_eq!(&file[0x3c..0x42], b"\x02\0\0\0\x06\x06");
        assert_eq!(&file[0x42..0x4a], b"\xb3\x14\xe2\x84\x67\xc0\x30\x6a");
        assert_eq!(&file[0x4a..], b"hello\nworld\n");
        let mut hb = [0u8; RECORD_HEADER];
        hb.copy_from_slice(&file[8..8 + RECORD_HEADER]);
        let h = parse_header(&hb).unwrap();
        let mut both = a.bytes.to_vec();
        both.extend_from_slice(&b.bytes);
        assert_eq!(h.hash, HashKind::Sha3_256.digest(&both));
        let (spans, table_len) = parse_table(&h, &file[8 + RECORD_HEADER..]).unwrap();
        assert_eq!(table_len, 14);
        assert_eq!(
            spans,
            vec![
                Span {
                    offset: 0,
                    len: 6,
                    prefix: Some([0xb3, 0x14, 0xe2, 0x84])
                },
                Span {
                    offset: 6,
                    len: 6,
                    prefix: Some([0x67, 0xc0, 0x30, 0x6a])
                }
            ]
        );
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), &file).unwrap();
        let (_d, dicts) = no_dicts();
        let res = scan(t.as_file(), 8, &dicts, true).unwrap();
        assert!(res.damaged.is_empty(), "{:?}", res.damaged);
        assert_eq!(
            res.records[0].members,
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

    /// A group record as version 2 files hold them: no hash prefixes.
    pub(crate) fn encode_group_v2(kind: HashKind, members: &[(Hash, &[u8])]) -> Vec<u8> {
        let mut payload = (members.len() as u32).to_le_bytes().to_vec();
        let mut data = Vec::new();
        for (_, d) in members {
            put_varint(&mut payload, d.len() as u32);
            data.extend_from_slice(d);
        }
        payload.extend_from_slice(&data);
        let name = group_digest(kind, members.iter().map(|(h, _)| h));
        encode_record(&name, FLAG_GROUP, &payload, data.len() as u32)
    }

    #[test]
    fn version_2_groups_without_prefixes_are_read_by_hashing() {
        let (_d, dicts) = no_dicts();
        let a = HashKind::Sha3_256.digest(b"one");
        let b = HashKind::Sha3_256.digest(b"two");
        // b's data is not what was hashed: only hashing can tell.
        let rec = encode_group_v2(HashKind::Sha3_256, &[(a, b"one"), (b, b"TWO")]);
        assert_eq!(rec[4], FLAG_GROUP);
        let mut file = FILE_HEADER_V2.to_vec();
        file.extend_from_slice(&rec);
        assert_eq!(file_version(&file[..8]), Some(2));
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), &file).unwrap();
        let g = read_group(t.as_file(), 8, None, &dicts).unwrap();
        assert!(g.spans.iter().all(|s| s.prefix.is_none()));
        for v in [Verify::Checksum, Verify::Hash] {
            assert_eq!(g.member(0, &a, v).unwrap(), b"one");
            let err = g.member(1, &b, v).unwrap_err();
            assert!(err.contains("does not match its hash"), "{err}");
        }
        // A scan finds the members by hashing them (the digest fails here).
        let res = scan(t.as_file(), 8, &dicts, false).unwrap();
        assert_eq!(res.damaged.len(), 1, "{:?}", res.damaged);
        let good = encode_group_v2(HashKind::Sha3_256, &[(a, b"one"), (b, b"two")]);
        std::fs::write(t.path(), [&FILE_HEADER_V2[..], &good].concat()).unwrap();
        let res = scan(t.as_file(), 8, &dicts, false).unwrap();
        assert!(res.damaged.is_empty(), "{:?}", res.damaged);
        let found: Vec<Hash> = res.records[0].members.iter().map(|m| m.hash).collect();
        assert_eq!(found, vec![a, b]);
    }

    #[test]
    fn a_hash_prefix_that_does_not_match_its_member_is_reported() {
        let (_d, dicts) = no_dicts();
        let a = HashKind::Blake3.digest(b"alpha");
        let b = HashKind::Blake3.digest(b"beta");
        let mut rec = encode_group(HashKind::Blake3, &[(a, 5), (b, 4)], 0, b"alphabeta", 9);
        // Member #1's prefix changed, the CRC made right: a writer's bug.
        let at = RECORD_HEADER + 4 + 2 + PREFIX_LEN;
        rec[at] ^= 0xff;
        let crc = crc_of(&rec[..48], &rec[RECORD_HEADER..]);
        rec[48..52].copy_from_slice(&crc.to_le_bytes());
        let t = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(t.path(), [&FILE_HEADER[..], &rec].concat()).unwrap();
        let res = scan(t.as_file(), 8, &dicts, false).unwrap();
        assert_eq!(res.damaged.len(), 1);
        assert!(
            res.damaged[0]
                .1
                .contains("#1 does not match its hash prefix"),
            "{:?}",
            res.damaged
        );
        let g = read_group(t.as_file(), 8, None, &dicts).unwrap();
        assert!(g.member(1, &b, Verify::Checksum).is_err());
        assert_eq!(g.member(1, &b, Verify::Hash).unwrap(), b"beta");
        assert_eq!(g.member(0, &a, Verify::Checksum).unwrap(), b"alpha");
        // The prefix flag is a group's only.
        let mut single = encode_record(&a, FLAG_PREFIXES, b"alpha", 5);
        let mut hb = [0u8; RECORD_HEADER];
        hb.copy_from_slice(&single[..RECORD_HEADER]);
        assert!(parse_header(&hb).is_none());
        single[4] = 0;
        hb.copy_from_slice(&single[..RECORD_HEADER]);
        assert!(parse_header(&hb).is_some());
    }

    #[test]
    fn varints_round_trip_and_bad_ones_are_refused() {
        for v in [0, 1, 127, 128, 16383, 16384, u32::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(get_varint(&b), Some((v, b.len())));
            b.push(0x55);
            assert_eq!(get_varint(&b), Some((v, b.len() - 1)), "trailing bytes");
        }
        assert_eq!(get_varint(&[]), None);
        assert_eq!(get_varint(&[0x80]), None, "truncated");
        assert_eq!(
            get_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]),
            None,
            "above u32"
        );
        assert_eq!(get_varint(&[0x80; 6]), None, "too long");
    }

    #[test]
    fn bad_member_tables_are_rejected() {
        let a = HashKind::Blake3.digest(b"abc");
        let b = HashKind::Blake3.digest(&[b'x'; 200]);
        let mut data = b"abc".to_vec();
        data.extend_from_slice(&[b'x'; 200]);
        let rec = encode_group(HashKind::Blake3, &[(a, 3), (b, 200)], 0, &data, 203);
        let mut hb = [0u8; RECORD_HEADER];
        hb.copy_from_slice(&rec[..RECORD_HEADER]);
        let h = parse_header(&hb).unwrap();
        let payload = &rec[RECORD_HEADER..];
        assert_eq!(parse_table(&h, payload).unwrap().1, 4 + 1 + 2 + 8);
        // Lengths that do not add up to raw_len.
        let short = RecordHeader { raw_len: 202, ..h };
        assert!(parse_table(&short, payload).is_err());
        let long = RecordHeader { raw_len: 204, ..h };
        assert!(parse_table(&long, payload).is_err());
        // A count the payload cannot hold, and zero members.
        let mut p = payload.to_vec();
        p[..4].copy_from_slice(&1000u32.to_le_bytes());
        assert!(parse_table(&h, &p).is_err());
        p[..4].copy_from_slice(&0u32.to_le_bytes());
        assert!(parse_table(&h, &p).is_err());
        // A length that runs off the end, prefixes that do, and too short
        // a payload.
        assert!(parse_table(&h, &payload[..6]).is_err());
        assert!(parse_table(&h, &payload[..14]).is_err());
        assert!(parse_table(&h, &[1, 0]).is_err());
    }

    #[test]
    fn a_group_whose_data_is_not_what_was_hashed_fails_its_digest() {
        let (_d, dicts) = no_dicts();
        let a = HashKind::Sha3_256.digest(b"first");
        let b = HashKind::Sha3_256.digest(b"second");
        let good = encode_group(HashKind::Sha3_256, &[(a, 5), (b, 6)], 0, b"firstsecond", 11);
        let bad = encode_group(HashKind::Sha3_256, &[(a, 5), (b, 6)], 0, b"firstSECOND", 11);
        let t = tempfile::NamedTempFile::new().unwrap();
        let mut file = FILE_HEADER.to_vec();
        file.extend_from_slice(&bad);
        file.extend_from_slice(&good);
        std::fs::write(t.path(), &file).unwrap();
        let res = scan(t.as_file(), 8, &dicts, false).unwrap();
        // The bad one is reported and skipped whole; the good one is found.
        assert_eq!(res.damaged.len(), 1);
        assert_eq!(res.damaged[0].0, 8);
        assert!(res.damaged[0].1.contains("digest"), "{:?}", res.damaged);
        assert_eq!(res.records.len(), 1);
        assert_eq!(res.records[0].offset, 8 + bad.len() as u64);
        assert_eq!(res.good_end, file.len() as u64);
        // A read checks a member by its hash prefix, or with
        // `Verify::Hash` by its hash.
        let g = read_group(t.as_file(), 8, None, &dicts).unwrap();
        let err = g.member(1, &b, Verify::Hash).unwrap_err();
        assert!(err.contains("does not match its hash"), "{err}");
        assert_eq!(g.member(1, &b, Verify::Checksum).unwrap(), b"SECOND");
        let err = g.member(1, &a, Verify::Checksum).unwrap_err();
        assert!(err.contains("hash prefix differs"), "{err}");
        for v in [Verify::Checksum, Verify::Hash] {
            assert_eq!(g.member(0, &a, v).unwrap(), b"first");
            let other = HashKind::Blake3.digest(b"first");
            assert!(g.member(0, &other, v).is_err(), "kind");
            assert!(g.member(2, &a, v).is_err());
        }
    }
}
