//! Content-defined chunking, and the `Scanner` trait through which
//! format-aware plugins propose boundaries (see [`crate::scanner`]).
//!
//! The rolling hash is a Gear hash (as in FastCDC): `h = (h << 1) + GEAR[b]`,
//! so `h` depends only on the last 64 bytes. A boundary falls where the top
//! bits of `h` are zero. Normalised chunking uses a harder mask before the
//! average size and an easier one after it, which narrows the size spread.

pub use crate::scanner::Scanner;

/// Block size limits of the chunker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkParams {
    /// No block is cut shorter than this by the rolling hash (except a
    /// file's last).
    pub min: usize,
    /// A scanner's proposal is honoured once the block is this long: formats
    /// whose seams are closer than `min` (mail headers and bodies) get
    /// blocks that follow them.
    pub scan_min: usize,
    /// The rolling hash aims for this average size; a power of two.
    pub avg: usize,
    /// No block is longer than this.
    pub max: usize,
}

impl Default for ChunkParams {
    /// 16 KiB / 64 KiB / 256 KiB, and scanner proposals from 4 KiB: see
    /// `vt.5` for the measurements behind them.
    fn default() -> Self {
        ChunkParams {
            min: 16 * 1024,
            scan_min: 4096,
            avg: 64 * 1024,
            max: 256 * 1024,
        }
    }
}

impl ChunkParams {
    /// These parameters with `scan_min` set to what a scanner asks for
    /// ([`Scanner::min_block`]), kept within
    /// [`crate::scanner::MIN_BLOCK_FLOOR`] and `min`.
    pub fn for_scanner(self, scanner: Option<&dyn Scanner>) -> ChunkParams {
        match scanner.and_then(|s| s.min_block()) {
            Some(m) => ChunkParams {
                scan_min: m.clamp(crate::scanner::MIN_BLOCK_FLOOR, self.min.max(1)),
                ..self
            },
            None => self,
        }
    }
}

const fn gear_table() -> [u64; 256] {
    // splitmix64 from a fixed seed: the table is part of the format, since
    // changing it moves every boundary.
    let mut t = [0u64; 256];
    let mut x: u64 = 0x7674_2d67_6561_7231; // "vt-gear1"
    let mut i = 0;
    while i < 256 {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        t[i] = z ^ (z >> 31);
        i += 1;
    }
    t
}

static GEAR: [u64; 256] = gear_table();

fn top_mask(bits: u32) -> u64 {
    if bits == 0 {
        0
    } else {
        u64::MAX << (64 - bits.min(63))
    }
}

/// Finds content-defined cut points.
#[derive(Clone, Debug)]
pub struct Chunker {
    params: ChunkParams,
    mask_hard: u64,
    mask_easy: u64,
}

impl Chunker {
    /// A chunker with the given limits (`min <= avg <= max`, `min >= 64`).
    pub fn new(params: ChunkParams) -> Self {
        let bits = params.avg.max(2).ilog2();
        Chunker {
            params,
            mask_hard: top_mask(bits + 2),
            mask_easy: top_mask(bits.saturating_sub(2)),
        }
    }

    /// The limits in force.
    pub fn params(&self) -> ChunkParams {
        self.params
    }

    /// Where the block starting at `data[0]` should end.
    ///
    /// `proposal` is the first scanner offset, relative to `data[0]`, that
    /// is at least `scan_min` (if any); within `max` it is where the block
    /// ends. Returns `None` when `data` is too short to decide and more
    /// input follows (`eof` false).
    pub fn cut(&self, data: &[u8], proposal: Option<usize>, eof: bool) -> Option<usize> {
        let p = self.params;
        let limit = data.len().min(p.max);
        // A scanner's proposal past its minimum wins over rolling-hash
        // boundaries before it: formats cut where their seams are.
        if let Some(o) = proposal.filter(|&o| o >= p.scan_min.max(1) && o <= p.max) {
            if o <= data.len() {
                return Some(o);
            }
            if !eof {
                return None; // decide once the data up to it is here
            }
        }
        if limit <= p.min {
            return if eof || data.len() >= p.max {
                Some(limit)
            } else {
                None
            };
        }
        let end = limit;
        let mut h: u64 = 0;
        let mut i = p.min.saturating_sub(64);
        while i < p.min {
            h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
            i += 1;
        }
        let normal = p.avg.min(end);
        while i < normal {
            h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
            i += 1;
            if h & self.mask_hard == 0 {
                return Some(i);
            }
        }
        while i < end {
            h = (h << 1).wrapping_add(GEAR[data[i] as usize]);
            i += 1;
            if h & self.mask_easy == 0 {
                return Some(i);
            }
        }
        if limit == p.max || eof {
            Some(end)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testdata::pseudo_random;

    fn cuts(c: &Chunker, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = c.cut(&data[pos..], None, true).unwrap();
            assert!(n > 0);
            pos += n;
            out.push(pos);
        }
        out
    }

    #[test]
    fn sizes_within_limits_and_average_near_target() {
        let c = Chunker::new(ChunkParams::default());
        let data = pseudo_random(8 << 20, 1);
        let cs = cuts(&c, &data);
        let mut prev = 0;
        for &e in &cs[..cs.len() - 1] {
            let n = e - prev;
            assert!((16384..=262_144).contains(&n), "{n}");
            prev = e;
        }
        let avg = data.len() / cs.len();
        assert!((45_000..=100_000).contains(&avg), "average {avg}");
    }

    #[test]
    fn boundaries_resynchronise_after_an_insertion() {
        let c = Chunker::new(ChunkParams::default());
        let a = pseudo_random(4 << 20, 7);
        let mut b = a[..300_000].to_vec();
        b.extend_from_slice(b"an inserted sentence");
        b.extend_from_slice(&a[300_000..]);
        let ca: std::collections::HashSet<usize> = cuts(&c, &a).into_iter().collect();
        let cb = cuts(&c, &b);
        let shared = cb
            .iter()
            .filter(|&&e| e > 400_000 && ca.contains(&(e - 20)))
            .count();
        let after = cb.iter().filter(|&&e| e > 400_000).count();
        assert_eq!(shared, after);
    }

    #[test]
    fn proposal_is_honoured_past_min() {
        let c = Chunker::new(ChunkParams::default());
        let data = vec![0u8; 300_000];
        assert_eq!(c.cut(&data, Some(50_000), false), Some(50_000));
        // zeros never hit the mask, so without a proposal we cut at max
        assert_eq!(c.cut(&data, None, false), Some(262_144));
        assert_eq!(c.cut(&data[..1000], None, false), None);
        assert_eq!(c.cut(&data[..1000], None, true), Some(1000));
    }

    #[test]
    fn proposal_below_min_but_past_scan_min_is_honoured() {
        let p = ChunkParams {
            scan_min: 1024,
            ..ChunkParams::default()
        };
        let c = Chunker::new(p);
        let data = vec![0u8; 300_000];
        assert_eq!(c.cut(&data, Some(2000), false), Some(2000));
        // before scan_min a proposal is ignored; the blind limits apply
        assert_eq!(c.cut(&data, Some(500), false), Some(262_144));
        // a proposal beyond the data in hand waits for more data
        assert_eq!(c.cut(&data[..1500], Some(2000), false), None);
    }
}
