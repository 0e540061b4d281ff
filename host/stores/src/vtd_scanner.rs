//! The built-in `vtd` scanner: block boundaries at the record starts of vt's
//! own datafiles, so a datafile stored in vt (a backup of a store) dedups
//! record by record against the blocks it holds, however records shift.

use vt_core::scanner::BuiltinScanner;
use vt_core::Scanner;

use crate::datafile::{file_version, parse_header, FILE_HEADER, RECORD_HEADER};

/// Scan state: where the next record header starts and its bytes so far.
pub struct VtdScanner {
    next: u64,
    header: Vec<u8>,
    /// Set once the data stops looking like records: propose nothing more.
    lost: bool,
}

impl Default for VtdScanner {
    fn default() -> Self {
        VtdScanner {
            next: FILE_HEADER.len() as u64,
            header: Vec::with_capacity(RECORD_HEADER),
            lost: false,
        }
    }
}

impl Scanner for VtdScanner {
    fn name(&self) -> &str {
        "vtd"
    }

    fn scan(&mut self, offset: u64, buf: &[u8]) -> Vec<u64> {
        let mut out = Vec::new();
        let end = offset + buf.len() as u64;
        while !self.lost && self.next < end {
            let hdr_at = self.next + self.header.len() as u64;
            if hdr_at < offset {
                self.lost = true; // fed out of order
                break;
            }
            let from = (hdr_at - offset) as usize;
            let want = RECORD_HEADER - self.header.len();
            let take = want.min(buf.len() - from);
            self.header.extend_from_slice(&buf[from..from + take]);
            if self.header.len() < RECORD_HEADER {
                break;
            }
            let mut h = [0u8; RECORD_HEADER];
            h.copy_from_slice(&self.header);
            self.header.clear();
            match parse_header(&h) {
                Some(rec) => {
                    out.push(self.next);
                    self.next += (RECORD_HEADER as u64) + u64::from(rec.stored_len);
                }
                None => self.lost = true,
            }
        }
        out
    }
}

fn sniff(name: &[u8], head: &[u8]) -> u8 {
    if head
        .get(..FILE_HEADER.len())
        .and_then(file_version)
        .is_some()
    {
        100
    } else if name.ends_with(b".vtd") {
        20
    } else {
        0
    }
}

inventory::submit! {
    BuiltinScanner {
        name: "vtd",
        version: env!("CARGO_PKG_VERSION"),
        extensions: &["vtd"],
        mime_types: &[],
        sniff,
        new: || Box::new(VtdScanner::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datafile::{encode_group, encode_record};
    use vt_core::{Hash, HashKind};

    #[test]
    fn proposes_every_record_start_in_any_buffer_size() {
        let mut file = FILE_HEADER.to_vec();
        let mut starts = Vec::new();
        for i in 0..50u32 {
            starts.push(file.len() as u64);
            let payload = vec![i as u8; (i as usize * 37) % 500 + 1];
            let h: Hash = HashKind::Sha3_256.digest(&payload);
            file.extend_from_slice(&encode_record(&h, 0, &payload, payload.len() as u32));
        }
        // A group record is one record too.
        starts.push(file.len() as u64);
        let h = HashKind::Sha3_256.digest(b"member");
        file.extend(encode_group(HashKind::Sha3_256, &[(h, 6)], 0, b"member", 6));
        for size in [1usize, 5, 52, 53, 1000, file.len()] {
            let mut s = VtdScanner::default();
            let mut got = Vec::new();
            for (i, c) in file.chunks(size).enumerate() {
                got.extend(s.scan((i * size) as u64, c));
            }
            assert_eq!(got, starts, "buffer size {size}");
        }
    }

    #[test]
    fn stops_at_garbage() {
        let mut s = VtdScanner::default();
        let mut junk = FILE_HEADER.to_vec();
        junk.extend_from_slice(&[7u8; 200]);
        assert!(s.scan(0, &junk).is_empty());
        assert!(vt_core::scanner::builtins().any(|b| b.name == "vtd"));
    }
}
