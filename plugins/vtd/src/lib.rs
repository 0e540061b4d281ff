//! The vtd scanner: block boundaries at the record starts of vt's own
//! datafiles (`vtd.5`), so that a datafile stored in vt (a backup of a
//! store, a store inside a store) dedups record by record, however the
//! records shift between one backup and the next.
//!
//! It walks the records by their headers: magic `vtr1`, then the flags,
//! hash kind and lengths that say where the next record starts. Where a
//! header is not one (a damaged or foreign stretch) it looks for the next
//! `vtr1` whose header is, as `vt fsck` does, so a damaged stretch costs
//! only its own boundaries. The file header (`vtd\0` and a version) is
//! skipped the same way.

use vt_sdk::{Info, Scanner};

/// Length of a record header (`vtd.5`).
pub const RECORD_HEADER: usize = 52;
/// Record magic.
const RECORD_MAGIC: &[u8; 4] = b"vtr1";
/// A datafile's first bytes, before the version.
const FILE_MAGIC: &[u8; 4] = b"vtd\0";
/// Flag bits of a record header, as `vtd.5` lists them.
const FLAG_ZSTD: u8 = 1;
const FLAG_DICT: u8 = 2;
const FLAG_GROUP: u8 = 4;
const FLAG_PREFIXES: u8 = 8;
const FLAG_DELTA: u8 = 16;
/// No record payload is larger than this (`vtd.5`).
const MAX_RECORD: u32 = 16 << 20;

/// The stored length of the record whose header is `h`, if `h` is a valid
/// record header: magic, known flags in a valid combination, a known hash
/// kind (1 SHA3-256, 2 BLAKE3), lengths within the limit.
pub fn record_len(h: &[u8; RECORD_HEADER]) -> Option<u32> {
    let known = FLAG_ZSTD | FLAG_DICT | FLAG_GROUP | FLAG_PREFIXES | FLAG_DELTA;
    let flags = h[4];
    if &h[..4] != RECORD_MAGIC || flags & !known != 0 {
        return None;
    }
    if flags & FLAG_DELTA != 0 && flags != FLAG_DELTA | FLAG_ZSTD {
        return None;
    }
    if flags & FLAG_PREFIXES != 0 && flags & FLAG_GROUP == 0 {
        return None;
    }
    if !matches!(h[5], 1 | 2) {
        return None;
    }
    let u32_at = |i: usize| u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
    let (stored, raw) = (u32_at(40), u32_at(44));
    (stored <= MAX_RECORD && raw <= MAX_RECORD).then_some(stored)
}

/// Scanner state carried from one buffer to the next.
#[derive(Default)]
pub struct Vtd {
    /// Absolute offset of the next record header (or of where the search
    /// for one goes on).
    next: u64,
    /// Looking for a record magic rather than at a header.
    searching: bool,
    /// Bytes from `next` that came in earlier buffers and are still needed
    /// (a header in parts, or the last bytes a magic may start in).
    pending: Vec<u8>,
    /// Absolute offset of the next byte to come.
    end: u64,
}

/// The pending bytes followed by the new buffer.
struct View<'a> {
    pending: &'a [u8],
    /// Absolute offset of `pending[0]`.
    start: u64,
    data: &'a [u8],
}

impl View<'_> {
    fn end(&self) -> u64 {
        self.start + (self.pending.len() + self.data.len()) as u64
    }

    fn get(&self, at: u64) -> u8 {
        let i = (at - self.start) as usize;
        match self.pending.get(i) {
            Some(&b) => b,
            None => self.data[i - self.pending.len()],
        }
    }

    /// The first record magic at or after `from`.
    fn find_magic(&self, from: u64) -> Option<u64> {
        let data_at = self.start + self.pending.len() as u64;
        if from < data_at {
            // Magics starting in the pending bytes (perhaps running into
            // the buffer).
            let mut joint = self.pending[(from - self.start) as usize..].to_vec();
            joint.extend_from_slice(&self.data[..self.data.len().min(RECORD_MAGIC.len() - 1)]);
            if let Some(i) = memchr::memmem::find(&joint, RECORD_MAGIC) {
                return Some(from + i as u64);
            }
        }
        let skip = from.saturating_sub(data_at) as usize;
        memchr::memmem::find(self.data.get(skip..)?, RECORD_MAGIC)
            .map(|i| data_at + (skip + i) as u64)
    }
}

impl Scanner for Vtd {
    fn info() -> Info {
        Info::new("vtd", env!("CARGO_PKG_VERSION"))
            .extensions(&["vtd"])
            .magic(FILE_MAGIC)
    }

    fn sniff(filename: &str, head: &[u8]) -> u8 {
        let version = head
            .get(4..8)
            .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
        let is_vtd = head.starts_with(FILE_MAGIC) && matches!(version, Some(1..=255));
        match (is_vtd, filename.ends_with(".vtd")) {
            (true, _) => 100,
            (false, true) => 20,
            (false, false) => 0,
        }
    }

    fn start(&mut self, _filename: &str) {
        // The file header is not a record: search from the start.
        self.searching = true;
    }

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        debug_assert_eq!(offset, self.end);
        self.end = offset + data.len() as u64;
        let pending = std::mem::take(&mut self.pending);
        let v = View {
            start: offset - pending.len() as u64,
            pending: &pending,
            data,
        };
        let mut pos = self.next.max(v.start);
        loop {
            if pos >= v.end() {
                break;
            }
            if self.searching {
                match v.find_magic(pos) {
                    Some(at) => {
                        pos = at;
                        self.searching = false;
                    }
                    None => {
                        // A magic may start in the last 3 bytes.
                        pos = pos.max(v.end().saturating_sub(RECORD_MAGIC.len() as u64 - 1));
                        break;
                    }
                }
            }
            if pos + RECORD_HEADER as u64 > v.end() {
                break;
            }
            let mut h = [0u8; RECORD_HEADER];
            for (i, b) in h.iter_mut().enumerate() {
                *b = v.get(pos + i as u64);
            }
            match record_len(&h) {
                Some(len) => {
                    if pos > 0 {
                        out.push(pos);
                    }
                    pos += RECORD_HEADER as u64 + u64::from(len);
                }
                None => {
                    self.searching = true;
                    pos += 1;
                }
            }
        }
        self.next = pos;
        if pos < v.end() {
            self.pending = (pos..v.end()).map(|at| v.get(at)).collect();
        }
    }
}

vt_sdk::export_scanner!(Vtd);

#[cfg(test)]
mod tests {
    use super::*;
    use vt_sdk::testing::assert_consistent;

    /// A record as `vtd.5` lays it out: header (magic, flags, hash kind,
    /// two zero bytes, a digest, stored and raw lengths, CRC) and payload.
    /// The digest and CRC are made up: the scanner does not check them.
    fn record(flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut r = RECORD_MAGIC.to_vec();
        r.extend_from_slice(&[flags, 1, 0, 0]);
        r.extend_from_slice(&[payload.len() as u8; 32]);
        r.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        r.extend_from_slice(&(payload.len() as u32 * 3).to_le_bytes());
        r.extend_from_slice(&[0xcc; 4]);
        r.extend_from_slice(payload);
        r
    }

    fn datafile(n: u32) -> (Vec<u8>, Vec<u64>) {
        let mut f = b"vtd\0\x04\0\0\0".to_vec();
        let mut starts = Vec::new();
        for i in 0..n {
            starts.push(f.len() as u64);
            let flags =
                [FLAG_ZSTD, FLAG_ZSTD | FLAG_DICT, FLAG_GROUP | FLAG_PREFIXES][i as usize % 3];
            let payload = vec![i as u8; (i as usize * 37) % 500 + 1];
            f.extend(record(flags, &payload));
        }
        (f, starts)
    }

    #[test]
    fn proposes_every_record_start_in_any_buffer_size() {
        let (f, starts) = datafile(60);
        assert_eq!(assert_consistent::<Vtd>("0001.vtd", &f), starts);
    }

    #[test]
    fn finds_the_records_after_a_damaged_stretch() {
        let (mut f, starts) = datafile(30);
        // Damage record 10's header: the search resumes at the next valid
        // magic, record 11's, and only record 10's boundary is lost.
        let at = starts[10] as usize;
        f[at..at + 20].copy_from_slice(&[0x55; 20]);
        let got = assert_consistent::<Vtd>("0001.vtd", &f);
        let want: Vec<u64> = starts
            .iter()
            .copied()
            .filter(|&s| s != starts[10])
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn a_header_claiming_too_much_is_not_followed() {
        let (mut f, starts) = datafile(5);
        let at = starts[2] as usize;
        f[at + 40..at + 44].copy_from_slice(&u32::MAX.to_le_bytes());
        let got = assert_consistent::<Vtd>("x.vtd", &f);
        assert_eq!(got, vec![starts[0], starts[1], starts[3], starts[4]]);
    }

    #[test]
    fn garbage_gives_nothing() {
        let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert!(assert_consistent::<Vtd>("x.vtd", &junk).is_empty());
    }

    #[test]
    fn sniffs_a_datafile() {
        assert_eq!(Vtd::sniff("copy", b"vtd\0\x04\0\0\0vtr1"), 100);
        assert_eq!(Vtd::sniff("0001.vtd", b""), 20);
        assert_eq!(Vtd::sniff("notes.txt", b"hello"), 0);
    }
}
