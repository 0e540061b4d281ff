//! Resemblance detection: which stored block a new block is *nearly*
//! equal to, so that the DataDir can store the new one as a delta
//! (`delta.rs`).
//!
//! A block's *features* are sampled from its content, as in the Odess
//! and Finesse papers on delta compression for backup storage: a Gear
//! rolling hash runs over the block, about one position in
//! [`SAMPLE_EVERY`] is sampled (where the hash's top bits are zero, so
//! the choice depends on content, not on offsets), and each of
//! [`FEATURES`] linear transforms of the sampled hashes keeps its
//! maximum. Two blocks that share most of their content share most of
//! those maxima. Features are grouped into [`SUPER_FEATURES`] *super
//! features* (a hash of [`PER_SUPER`] features each); two blocks sharing
//! any super feature are taken as similar. An edit changes the maxima
//! near it only, so a block with a few edits usually keeps at least one
//! super feature of the block it was edited from.
//!
//! The DataDir keeps, for each block it stored whole, its super features
//! mapped to the first four bytes of its hashcode, in a [`Hints`] table:
//! a direct-mapped table of [`SLOTS`] entries in memory (newer entries
//! replace older ones, so memory is bounded however large the store), and
//! on disk an append-only file of 8-byte entries, `DIR/similar` (beside
//! the index, not in it),
//! compacted to the table's contents when it outgrows it. The table is a
//! hint only: a stale, lost or damaged entry costs a missed or wasted
//! delta attempt, never data, because the base is looked up in the index
//! and the delta is checked when it is made.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use vt_core::{Error, Hash, Result};

/// Features per block.
pub const FEATURES: usize = 12;
/// Features per super feature.
pub const PER_SUPER: usize = 4;
/// Super features per block.
pub const SUPER_FEATURES: usize = FEATURES / PER_SUPER;
/// About one byte position in this many is sampled (a power of two).
pub const SAMPLE_EVERY: u64 = 128;
/// Entries of the in-memory table (a power of two): 16 MiB, the super
/// features of the last few hundred thousand blocks stored.
pub const SLOTS: usize = 1 << 21;
/// Bytes of one entry in the hints file: super feature u32le, hashcode
/// prefix u32le.
pub const ENTRY_LEN: usize = 8;
/// Name of the hints file in the DataDir.
pub const FILE_NAME: &str = "similar";

/// A block's super features.
pub type Supers = [u32; SUPER_FEATURES];

/// splitmix64: the constants of the Gear table and the transforms.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A Gear table of its own: samples then do not fall where the chunker
/// (with its own table) cuts.
static GEAR: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = mix(0x5eed_0000 + i as u64);
        i += 1;
    }
    t
};

/// The transforms `h * MUL[i] + ADD[i]` (odd multipliers).
static MUL: [u64; FEATURES] = {
    let mut t = [0u64; FEATURES];
    let mut i = 0;
    while i < FEATURES {
        t[i] = mix(0xfea7_0000 + i as u64) | 1;
        i += 1;
    }
    t
};
static ADD: [u64; FEATURES] = {
    let mut t = [0u64; FEATURES];
    let mut i = 0;
    while i < FEATURES {
        t[i] = mix(0xadd0_0000 + i as u64);
        i += 1;
    }
    t
};

/// Lanes hashed side by side: each Gear step depends on the one before,
/// so one lane waits on its own latency; four independent lanes, over the
/// four quarters of the block, keep the core busy.
const LANES: usize = 4;

/// Where the Gear hash samples: below this (its top bits zero).
const LIMIT: u64 = 1 << (64 - SAMPLE_EVERY.trailing_zeros());

/// Folds the samples among `hs` into the features' maxima. Out of line
/// and rare (a few percent of the loop's turns): the loop keeps its
/// registers.
#[cold]
#[inline(never)]
fn take(hs: &[u64], max: &mut [u64; FEATURES], samples: &mut usize) {
    for &h in hs.iter().filter(|&&h| h < LIMIT) {
        *samples += 1;
        for i in 0..FEATURES {
            max[i] = max[i].max(h.wrapping_mul(MUL[i]).wrapping_add(ADD[i]));
        }
    }
}

/// The super features of `data`; `None` if it is too short to sample
/// (fewer than a handful of samples would say little).
pub fn supers(data: &[u8]) -> Option<Supers> {
    let mut max = [0u64; FEATURES];
    let mut samples = 0usize;
    let q = data.len() / LANES;
    let (a, rest) = data.split_at(q);
    let (b, rest) = rest.split_at(q);
    let (c, d) = rest.split_at(q);
    let (mut h0, mut h1, mut h2, mut h3) = (0u64, 0u64, 0u64, 0u64);
    for (((&x0, &x1), &x2), &x3) in a.iter().zip(b).zip(c).zip(d) {
        h0 = (h0 << 1).wrapping_add(GEAR[usize::from(x0)]);
        h1 = (h1 << 1).wrapping_add(GEAR[usize::from(x1)]);
        h2 = (h2 << 1).wrapping_add(GEAR[usize::from(x2)]);
        h3 = (h3 << 1).wrapping_add(GEAR[usize::from(x3)]);
        if h0.min(h1).min(h2.min(h3)) < LIMIT {
            take(&[h0, h1, h2, h3], &mut max, &mut samples);
        }
    }
    // The bytes after the last whole quarter continue the last lane.
    for &x in &d[q..] {
        h3 = (h3 << 1).wrapping_add(GEAR[usize::from(x)]);
        if h3 < LIMIT {
            take(&[h3], &mut max, &mut samples);
        }
    }
    if samples < 4 {
        return None;
    }
    let mut out = [0u32; SUPER_FEATURES];
    for (j, o) in out.iter_mut().enumerate() {
        let mut z = j as u64;
        for &f in &max[j * PER_SUPER..(j + 1) * PER_SUPER] {
            z = mix(z ^ f);
        }
        // 0 marks an empty slot.
        *o = (z as u32).max(1);
    }
    Some(out)
}

/// The first four bytes of a hashcode's digest, as the hints keep it.
pub fn prefix_of(h: &Hash) -> u32 {
    u32::from_le_bytes([h.bytes[0], h.bytes[1], h.bytes[2], h.bytes[3]])
}

/// The similarity hints of one DataDir: super feature -> hashcode prefix.
pub struct Hints {
    path: PathBuf,
    /// `(super << 32) | prefix` per slot, 0 when empty; loaded on first
    /// use.
    slots: Option<Vec<u64>>,
    /// Prefixes of blocks this process stored since its last flush to the
    /// index, with their whole hashcodes (the index does not have them
    /// yet).
    fresh: HashMap<u32, Hash>,
    /// Entries not yet appended to the file.
    unsaved: Vec<u8>,
}

impl Hints {
    /// The hints of the DataDir at `root` (not read until needed).
    pub fn new(root: &Path) -> Self {
        Hints {
            path: root.join(FILE_NAME),
            slots: None,
            fresh: HashMap::new(),
            unsaved: Vec::new(),
        }
    }

    fn slot(sup: u32) -> usize {
        (sup as usize) & (SLOTS - 1)
    }

    /// The table, read from the file on first use (and the file
    /// compacted if it holds many more entries than the table).
    fn table(&mut self) -> &mut Vec<u64> {
        if self.slots.is_none() {
            let mut t = vec![0u64; SLOTS];
            let raw = std::fs::read(&self.path).unwrap_or_default();
            for e in raw.chunks_exact(ENTRY_LEN) {
                let sup = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
                let pre = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
                if sup != 0 {
                    t[Self::slot(sup)] = (u64::from(sup) << 32) | u64::from(pre);
                }
            }
            if raw.len() > 2 * SLOTS * ENTRY_LEN {
                if let Err(e) = compact(&self.path, &t) {
                    tracing::debug!("{}: not compacted: {e}", self.path.display());
                }
            }
            self.slots = Some(t);
        }
        self.slots.get_or_insert_with(Vec::new)
    }

    /// Prefixes of blocks that share a super feature with `s`, best
    /// guess first (distinct).
    pub fn candidates(&mut self, s: &Supers) -> Vec<u32> {
        let t = self.table();
        let mut out: Vec<u32> = Vec::new();
        for &sup in s {
            let e = t[Self::slot(sup)];
            if (e >> 32) as u32 == sup && !out.contains(&(e as u32)) {
                out.push(e as u32);
            }
        }
        out
    }

    /// This process's block with hashcode prefix `p` not yet in the
    /// index, if any.
    pub fn fresh(&self, p: u32) -> Option<Hash> {
        self.fresh.get(&p).copied()
    }

    /// Records that block `h`, with super features `s`, was stored whole.
    pub fn insert(&mut self, s: &Supers, h: &Hash) {
        let p = prefix_of(h);
        let t = self.table();
        for &sup in s {
            t[Self::slot(sup)] = (u64::from(sup) << 32) | u64::from(p);
        }
        for &sup in s {
            self.unsaved.extend_from_slice(&sup.to_le_bytes());
            self.unsaved.extend_from_slice(&p.to_le_bytes());
        }
        self.fresh.insert(p, *h);
    }

    /// The index now has every block stored so far: forgets the fresh
    /// ones and appends the new entries to the file (not synced: hints
    /// lost in a crash cost only missed deltas).
    pub fn flushed(&mut self) -> Result<()> {
        self.fresh.clear();
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let io = |e| Error::io(format!("append to {}", self.path.display()), e);
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        let _lock = Flock::exclusive(&f);
        // A torn entry at the end (a crash mid-append) would shift every
        // entry after it.
        let len = f.metadata().map_err(io)?.len();
        if len % ENTRY_LEN as u64 != 0 {
            f.set_len(len - len % ENTRY_LEN as u64).map_err(io)?;
        }
        (&f).write_all(&self.unsaved).map_err(io)?;
        self.unsaved.clear();
        Ok(())
    }

    /// Bytes of the hints file.
    pub fn disk_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// Rewrites the hints file at `path` to hold `table`'s entries only.
fn compact(path: &Path, table: &[u64]) -> std::io::Result<()> {
    let f = OpenOptions::new().read(true).write(true).open(path)?;
    let _lock = Flock::exclusive(&f);
    let mut out = Vec::new();
    for &e in table.iter().filter(|&&e| e != 0) {
        out.extend_from_slice(&((e >> 32) as u32).to_le_bytes());
        out.extend_from_slice(&(e as u32).to_le_bytes());
    }
    // In place, under the lock that appenders take: no entry appended
    // meanwhile is lost.
    f.write_all_at(&out, 0)?;
    f.set_len(out.len() as u64)
}

/// An exclusive `flock`, released when dropped.
struct Flock<'a>(&'a File);

impl<'a> Flock<'a> {
    fn exclusive(f: &'a File) -> Self {
        // SAFETY: flock on a valid, owned descriptor.
        unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        Flock(f)
    }
}

impl Drop for Flock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_core::HashKind;

    fn text(seed: u64, n: usize) -> Vec<u8> {
        let words: [&[u8]; 8] = [
            b"the ", b"block ", b"store ", b"delta ", b"of ", b"a\n", b"vt ", b"x ",
        ];
        let mut x = seed;
        let mut out = Vec::new();
        while out.len() < n {
            x = mix(x);
            out.extend_from_slice(words[(x & 7) as usize]);
        }
        out.truncate(n);
        out
    }

    #[test]
    fn an_edited_block_shares_a_super_feature_and_another_does_not() {
        let a = text(1, 32 << 10);
        let mut b = a.clone();
        b[5000..5040].copy_from_slice(&[b'z'; 40]);
        b.splice(20000..20000, b"inserted text".iter().copied());
        let c = text(2, 32 << 10);
        let (sa, sb, sc) = (
            supers(&a).unwrap(),
            supers(&b).unwrap(),
            supers(&c).unwrap(),
        );
        assert!(sa.iter().any(|s| sb.contains(s)), "{sa:?} {sb:?}");
        assert!(!sa.iter().any(|s| sc.contains(s)), "{sa:?} {sc:?}");
        assert!(supers(b"short").is_none());
    }

    #[test]
    fn hints_survive_a_reopen_and_point_at_the_block() {
        let dir = tempfile::tempdir().unwrap();
        let a = text(3, 8 << 10);
        let h = HashKind::Sha3_256.digest(&a);
        let s = supers(&a).unwrap();
        let mut hints = Hints::new(dir.path());
        hints.insert(&s, &h);
        assert_eq!(hints.fresh(prefix_of(&h)), Some(h));
        assert_eq!(hints.candidates(&s), vec![prefix_of(&h)]);
        hints.flushed().unwrap();
        assert_eq!(hints.fresh(prefix_of(&h)), None);
        assert_eq!(hints.disk_bytes(), (SUPER_FEATURES * ENTRY_LEN) as u64);
        let mut again = Hints::new(dir.path());
        assert_eq!(again.candidates(&s), vec![prefix_of(&h)]);
    }

    #[test]
    fn a_torn_entry_is_cut_before_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), [1, 2, 3]).unwrap();
        let a = text(4, 8 << 10);
        let h = HashKind::Sha3_256.digest(&a);
        let s = supers(&a).unwrap();
        let mut hints = Hints::new(dir.path());
        hints.insert(&s, &h);
        hints.flushed().unwrap();
        let mut again = Hints::new(dir.path());
        assert_eq!(again.candidates(&s), vec![prefix_of(&h)]);
    }
}
