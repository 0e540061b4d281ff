//! The `.vtd` datafile format (specified in `vtd.5`).
//!
//! ```text
//! file   := header record*
//! header := "vtd" 0x00  version:u32le(=1)                       (8 bytes)
//! record := "vtr1" flags:u8 hashid:u8 0:u16 digest:[32]
//!           stored_len:u32le raw_len:u32le crc:u32le payload     (52 + stored_len)
//! ```
//!
//! `flags` bit 0 set means the payload is zstd-compressed. `crc` is CRC-32
//! (IEEE) over the first 48 header bytes and the payload. A datafile is
//! only ever appended to, by one writer at a time (it holds an exclusive
//! `flock`).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use vt_core::{Error, Hash, HashKind, Result};

use crate::dict::Dictionaries;

/// The file header.
pub const FILE_HEADER: [u8; 8] = *b"vtd\0\x01\0\0\0";
/// Length of a record header.
pub const RECORD_HEADER: usize = 52;
/// Record magic.
pub const RECORD_MAGIC: [u8; 4] = *b"vtr1";
/// Flag: the payload is zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// Flag: the zstd frame was made with a dictionary (its ID is in the frame).
pub const FLAG_DICT: u8 = 2;
/// No record payload or block is larger than this.
pub const MAX_RECORD: u32 = 16 << 20;

/// A record's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Flags (`FLAG_ZSTD`).
    pub flags: u8,
    /// The block's hashcode.
    pub hash: Hash,
    /// Payload length in the file.
    pub stored_len: u32,
    /// Block length once decompressed.
    pub raw_len: u32,
    /// The stored checksum.
    pub crc: u32,
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
    if b[..4] != RECORD_MAGIC || b[4] & !(FLAG_ZSTD | FLAG_DICT) != 0 {
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

/// Reads and fully verifies the record at `offset`: checksum, length and
/// hash of the decompressed data. Returns the block data.
pub fn read_record(
    file: &File,
    path: &Path,
    offset: u64,
    expect: &Hash,
    dicts: &Dictionaries,
) -> Result<Vec<u8>> {
    let corrupt = |detail: String| Error::Corrupt {
        hash: *expect,
        file: path.to_path_buf(),
        detail,
    };
    let mut hb = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut hb, offset)
        .map_err(|e| corrupt(format!("cannot read record header at offset {offset}: {e}")))?;
    let h = parse_header(&hb)
        .ok_or_else(|| corrupt(format!("bad record header at offset {offset}")))?;
    if h.hash != *expect {
        return Err(corrupt(format!(
            "record at offset {offset} is for {}, not this block",
            h.hash
        )));
    }
    let mut payload = vec![0u8; h.stored_len as usize];
    file.read_exact_at(&mut payload, offset + RECORD_HEADER as u64)
        .map_err(|e| corrupt(format!("cannot read payload at offset {offset}: {e}")))?;
    if crc_of(&hb[..48], &payload) != h.crc {
        return Err(corrupt(format!(
            "checksum mismatch in record at offset {offset}"
        )));
    }
    let data = decode_payload(&h, payload, dicts).map_err(corrupt)?;
    if expect.kind.digest(&data) != *expect {
        return Err(corrupt(format!(
            "data at offset {offset} does not match its hash"
        )));
    }
    Ok(data)
}

/// The block data of a checksummed payload.
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
#[derive(Clone, Copy, Debug)]
pub struct Found {
    /// Where the record starts.
    pub offset: u64,
    /// Its header.
    pub header: RecordHeader,
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
/// After damage it searches forward for the next good record. With
/// `verify_data`, each payload is also decompressed and its hash checked.
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
            Ok(h) => {
                res.records.push(Found {
                    offset: off,
                    header: h,
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
) -> std::result::Result<RecordHeader, String> {
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
        return Err(format!("checksum mismatch in record for {}", h.hash));
    }
    if let Some(dicts) = verify_data {
        let d = decode_payload(&h, payload, dicts)?;
        if h.hash.kind.digest(&d) != h.hash {
            return Err(format!("data does not match its hash {}", h.hash));
        }
    }
    Ok(h)
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
