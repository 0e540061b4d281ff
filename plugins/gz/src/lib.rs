//! The gz scanner: block boundaries where a gzip file's compressed bytes
//! start over, so that a new version of a file compressed with
//! `gzip --rsyncable` or `pigz --rsyncable` shares the blocks of its
//! unchanged stretches.
//!
//! Two seams are proposed:
//!
//! - **member starts**: a gzip header (`1f 8b 08`, then flags, time,
//!   extra flags and OS byte that a real header has) after offset 0. A file
//!   of concatenated members (`cat a.gz b.gz`, bgzip, `pigz --independent`)
//!   is cut between them.
//! - **sync-flush points**: an rsyncable compressor ends a deflate block
//!   wherever the rolling sum of its *input* hits a fixed value, and pads
//!   to a byte with an empty stored block, the four bytes `00 00 ff ff`.
//!   What follows such a point depends only on the input after it (and
//!   the 32 KiB window before it), so once past an edit the compressed
//!   bytes are the same as in the old version. Every flush point is
//!   proposed (they come about every 1 KiB of output); the host's
//!   minimum block length decides which ones end a block. The scanner asks
//!   for [`MIN_BLOCK`] rather than the default 4 KiB (see there).
//!
//! Nothing is decompressed: the scanner only looks for these byte
//! patterns, at memchr speed. A false match (four such bytes inside
//! compressed data, about once in 4 GiB) only adds one block boundary.

use vt_sdk::{Info, Scanner};

/// The empty stored block a sync flush ends with (LEN 0, NLEN 0xffff).
const SYNC: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// A gzip member's first bytes: magic and the deflate method.
const MEMBER: [u8; 3] = [0x1f, 0x8b, 0x08];
/// The least block length the scanner asks the host for (`seams`).
///
/// An edit inside an rsyncable gzip file changes the compressed bytes from
/// the flush point before it to a few flush points after (LZ77 matches
/// reach 32 KiB back), a run of 5 to 15 KiB. A block ended at a flush
/// point 4 KiB or more past its start (the host's default) adds on
/// average 4 KiB of unchanged bytes to each run; 2 KiB adds half that.
/// The blocks hold deflate output, which does not compress, so each costs
/// its reference and index entry (about 100 bytes): at 2 KiB the first
/// import of a file grows by about 3% over plain CDC, at 1 KiB by 6%
/// (bench/gz.sh on two kernel subtrees, README "The gz scanner").
pub const MIN_BLOCK: u32 = 2048;

/// Bytes from a candidate's start it is judged on: a gzip header's 10.
const AFTER: u64 = 10;

/// Scanner state carried from one buffer to the next.
#[derive(Default)]
pub struct Gz {
    /// Absolute offset of the next byte to come.
    end: u64,
    /// The last bytes seen (up to `AFTER`), ending at `end`.
    tail: Vec<u8>,
    /// The last offset proposed.
    last: u64,
}

/// The bytes at hand: the previous tail, then the new buffer.
struct View<'a> {
    tail: &'a [u8],
    data: &'a [u8],
    /// Absolute offset of `data[0]`.
    offset: u64,
}

impl View<'_> {
    fn get(&self, at: u64) -> Option<u8> {
        if at >= self.offset {
            self.data.get((at - self.offset) as usize).copied()
        } else {
            let back = (self.offset - at) as usize;
            (back <= self.tail.len()).then(|| self.tail[self.tail.len() - back])
        }
    }

    fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }

    /// Candidates whose pattern starts in `[from, to)`, found in the tail
    /// joined to the first bytes of the buffer and then in the buffer.
    fn find(&self, pat: &[u8], from: u64, to: u64, out: &mut Vec<u64>) {
        let joint_start = self.offset - self.tail.len() as u64;
        let mut joint = self.tail.to_vec();
        joint.extend_from_slice(&self.data[..self.data.len().min(pat.len())]);
        for i in memchr::memmem::find_iter(&joint, pat) {
            let at = joint_start + i as u64;
            if at >= from && at < to && at < self.offset {
                out.push(at);
            }
        }
        let skip = from.saturating_sub(self.offset) as usize;
        if skip < self.data.len() {
            for i in memchr::memmem::find_iter(&self.data[skip..], pat) {
                let at = self.offset + (skip + i) as u64;
                if at >= to {
                    break;
                }
                out.push(at);
            }
        }
    }
}

/// Whether the 10 bytes at `at` are a plausible gzip member header: no
/// reserved flag bits, extra flags 0, 2 or 4, a known OS code.
fn is_member(v: &View, at: u64) -> bool {
    let b = |i: u64| v.get(at + i);
    matches!(b(3), Some(f) if f & 0xe0 == 0)
        && matches!(b(8), Some(0 | 2 | 4))
        && matches!(b(9), Some(0..=13 | 255))
}

impl Gz {
    /// Judges the candidates starting in `[from, to)` of the view.
    fn judge(&mut self, v: &View, from: u64, to: u64, out: &mut Vec<u64>) {
        let mut found = Vec::new();
        let mut members = Vec::new();
        v.find(&SYNC, from, to, &mut found);
        v.find(&MEMBER, from, to, &mut members);
        for at in found.iter_mut() {
            *at += SYNC.len() as u64;
        }
        found.extend(members.into_iter().filter(|&at| is_member(v, at)));
        found.sort_unstable();
        for o in found {
            // The end of the file is no seam.
            if o > self.last && o < v.end() {
                out.push(o);
                self.last = o;
            }
        }
    }
}

impl Scanner for Gz {
    fn info() -> Info {
        Info::new("gz", env!("CARGO_PKG_VERSION"))
            .extensions(&["gz", "tgz"])
            .mime_types(&["application/gzip"])
            .magic(&MEMBER)
    }

    fn sniff(filename: &str, head: &[u8]) -> u8 {
        let ext = filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        let named = ext.eq_ignore_ascii_case("gz") || ext.eq_ignore_ascii_case("tgz");
        let v = View {
            tail: &[],
            data: head,
            offset: 0,
        };
        match (head.starts_with(&MEMBER) && is_member(&v, 0), named) {
            (true, true) => 95,
            (true, false) => 90,
            (false, true) => 30,
            (false, false) => 0,
        }
    }

    fn min_block() -> u32 {
        MIN_BLOCK
    }

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        debug_assert_eq!(offset, self.end);
        let end = offset + data.len() as u64;
        // Candidates are judged once the AFTER bytes from their start are
        // here: those starting in the last AFTER - 1 bytes wait for the
        // next buffer (or `finish`).
        let from = offset.saturating_sub(AFTER - 1);
        let to = (end + 1).saturating_sub(AFTER);
        let mut props = Vec::new();
        if to > from {
            let tail = std::mem::take(&mut self.tail);
            let v = View {
                tail: &tail,
                data,
                offset,
            };
            self.judge(&v, from, to, &mut props);
            self.tail = tail;
        }
        out.extend(props);
        let keep = AFTER as usize;
        if data.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - keep..]);
        } else {
            self.tail.extend_from_slice(data);
            let cut = self.tail.len().saturating_sub(keep);
            self.tail.drain(..cut);
        }
        self.end = offset + data.len() as u64;
    }

    fn finish(&mut self, out: &mut Vec<u64>) {
        // The candidates in the last AFTER - 1 bytes: a sync point there
        // is one; a member header that short is none.
        let tail = std::mem::take(&mut self.tail);
        let v = View {
            tail: &tail,
            data: &[],
            offset: self.end,
        };
        let from = self.end.saturating_sub(AFTER - 1);
        let mut found = Vec::new();
        v.find(&SYNC, from, self.end, &mut found);
        for at in found {
            let o = at + SYNC.len() as u64;
            if o > self.last && o < self.end {
                out.push(o);
                self.last = o;
            }
        }
    }
}

vt_sdk::export_scanner!(Gz);

#[cfg(test)]
mod tests {
    use super::*;
    use vt_sdk::testing::{assert_consistent, scan};

    /// Bytes from a small xorshift generator, without the two patterns.
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v: Vec<u8> = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect();
        for b in v.iter_mut() {
            if *b == 0x00 || *b == 0x1f {
                *b = 0x42;
            }
        }
        v
    }

    fn header() -> Vec<u8> {
        vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]
    }

    #[test]
    fn proposes_sync_points_and_member_starts() {
        let mut f = header();
        let mut syncs = Vec::new();
        for i in 0..400u64 {
            f.extend(noise(700 + (i as usize * 13) % 900, i + 7));
            f.extend_from_slice(&SYNC);
            syncs.push(f.len() as u64);
        }
        // The last sync point is where the second member starts.
        let second = syncs.pop().expect("sync points");
        f.extend(header());
        f.extend(noise(5000, 99));
        let offs = assert_consistent::<Gz>("a.tar.gz", &f);
        assert!(offs.contains(&second), "member start {second} not proposed");
        syncs.push(second);
        assert_eq!(offs, syncs);
    }

    #[test]
    fn no_proposals_in_plain_noise_and_none_at_the_end() {
        let mut f = header();
        f.extend(noise(100_000, 3));
        assert!(scan::<Gz>("x.gz", &f).is_empty());
        // A marker ending the file is no seam; a header cut short is none.
        let mut g = header();
        g.extend(noise(5000, 4));
        g.extend_from_slice(&[0x1f, 0x8b, 0x08, 0]);
        assert!(assert_consistent::<Gz>("y.gz", &g).is_empty());
    }

    #[test]
    fn sniffs_gzip() {
        assert_eq!(Gz::sniff("a.tar.gz", &header()), 95);
        assert_eq!(Gz::sniff("blob", &header()), 90);
        assert_eq!(Gz::sniff("notes.txt", b"hello"), 0);
        assert_eq!(Gz::sniff("x.gz", b"\x1f\x8b\x08\xff"), 30);
    }
}
