//! How hard a DataDir compresses new data blocks: harder when few of the
//! blocks offered to it are new (see `vt-datadir.5`, COMPRESSION EFFORT).
//!
//! An import pays for every block it offers (read, chunked, hashed) but
//! compresses only the new ones. On a first import nearly every block is
//! new and compression is the largest cost, so it runs at [`BASE_LEVEL`].
//! On an incremental import (a mailbox with messages appended, a tree with
//! a few files changed) most blocks are already stored, and compressing the
//! few new ones harder costs little time and makes what the import adds
//! markedly smaller: on a mailbox's appended messages, in 256 KiB groups,
//! zstd level 9 with the store's dictionary stores 15% fewer bytes than
//! level 3.
//!
//! The rule is a budget: above the base level, compression may take in
//! all as long as hashing what was offered took. Every byte offered earns
//! [`EARN`] units (a unit is the time SHA3-256 takes for a sixteenth of a
//! byte); compressing a byte costs its level's units ([`BASE_COST`],
//! [`LEVELS`]). A block or group is compressed at the best level the
//! budget can still pay for, else at the base level, which is charged
//! even when the budget cannot pay (it runs into debt). A first import,
//! where a byte earns 16 units and its compression costs 26, stays in debt
//! and at the base level throughout.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The level new blocks are compressed at when the budget pays for no
/// more (zstd's default).
pub const BASE_LEVEL: i32 = 3;

/// Units earned per byte offered: hashing it.
pub const EARN: u64 = 16;

/// Units a byte costs at [`BASE_LEVEL`].
pub const BASE_COST: u64 = 26;

/// Levels above the base, best first, with what a byte costs at each, in
/// units. zstd on this machine, on mailbox text in 256 KiB pieces: level 3
/// about 380 MB/s, level 6 140 MB/s, level 9 70 MB/s; SHA3-256 600 MB/s.
pub const LEVELS: [(i32, u64); 2] = [(9, 138), (6, 69)];

/// How a DataDir chooses the level for new data (vtrc's `compression`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compression {
    /// The budget: harder when few offered blocks are new (the default).
    #[default]
    Auto,
    /// Always [`BASE_LEVEL`]: the fastest imports.
    Fast,
    /// Always the best of [`LEVELS`]: the smallest store, at about a
    /// quarter of the base level's compression speed.
    Max,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Compression::Auto),
            "fast" => Ok(Compression::Fast),
            "max" => Ok(Compression::Max),
            other => Err(format!(
                "compression = {other:?}: expected \"auto\", \"fast\" or \"max\""
            )),
        }
    }
}

/// The compression budget of one open DataDir (this process's additions).
#[derive(Debug, Default)]
pub struct Effort {
    /// How levels are chosen.
    mode: Compression,
    /// Units earned: [`EARN`] per byte offered.
    earned: AtomicU64,
    /// Units spent compressing.
    spent: AtomicU64,
}

impl Effort {
    /// A budget choosing levels by `mode`.
    pub fn new(mode: Compression) -> Self {
        Effort {
            mode,
            ..Effort::default()
        }
    }

    /// Notes that a data block of `len` bytes was offered (new or not).
    pub fn offer(&self, len: usize) {
        self.earned.fetch_add(len as u64 * EARN, Relaxed);
    }

    /// Whether `len` new bytes would now be compressed above the base
    /// level (nothing is charged): then a DataDir also gives its groups
    /// more data, hence more history to compress against.
    pub fn above_base(&self, len: usize) -> bool {
        match self.mode {
            Compression::Auto => {}
            Compression::Fast => return false,
            Compression::Max => return true,
        }
        let (earned, spent) = (self.earned.load(Relaxed), self.spent.load(Relaxed));
        let cheapest = LEVELS.iter().map(|&(_, c)| c).min().unwrap_or(BASE_COST);
        spent + len as u64 * cheapest <= earned
    }

    /// The level to compress `len` new bytes at, charged to the budget:
    /// the best the budget can pay for, else the base level. Adding
    /// threads race, so it may be overdrawn by one input per thread.
    pub fn level_for(&self, len: usize) -> i32 {
        match self.mode {
            Compression::Auto => {}
            Compression::Fast => return BASE_LEVEL,
            Compression::Max => return LEVELS[0].0,
        }
        let earned = self.earned.load(Relaxed);
        let spent = self.spent.load(Relaxed);
        let len = len as u64;
        for (level, cost) in LEVELS {
            if spent + len * cost <= earned {
                self.spent.fetch_add(len * cost, Relaxed);
                return level;
            }
        }
        self.spent.fetch_add(len * BASE_COST, Relaxed);
        BASE_LEVEL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_and_max_ignore_the_budget() {
        for (mode, want) in [(Compression::Fast, BASE_LEVEL), (Compression::Max, 9)] {
            let e = Effort::new(mode);
            e.offer(1 << 30);
            assert_eq!(e.level_for(1000), want, "{mode:?} with a budget");
            let e = Effort::new(mode);
            assert_eq!(e.level_for(1 << 20), want, "{mode:?} without");
        }
        assert_eq!("max".parse(), Ok(Compression::Max));
        let err = "best".parse::<Compression>().unwrap_err();
        assert_eq!(
            err,
            "compression = \"best\": expected \"auto\", \"fast\" or \"max\""
        );
    }

    #[test]
    fn a_first_import_stays_at_the_base_level() {
        let e = Effort::default();
        let mut levels = Vec::new();
        for _ in 0..1000 {
            e.offer(64 << 10);
            levels.push(e.level_for(64 << 10));
        }
        assert!(levels.iter().all(|&l| l == BASE_LEVEL), "{levels:?}");
    }

    #[test]
    fn few_new_bytes_among_many_offered_get_the_best_level() {
        let e = Effort::default();
        // 20 MB offered, 1.9 MB of it new, compressed in 256 KiB groups.
        e.offer(20_000_000);
        let levels: Vec<i32> = (0..7).map(|_| e.level_for(270_000)).collect();
        assert!(levels.iter().all(|&l| l == 9), "{levels:?}");
    }

    #[test]
    fn the_budget_steps_down_and_is_never_overspent_above_the_base() {
        let e = Effort::default();
        e.offer(1_000_000);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let level = e.level_for(10_000);
            if level != BASE_LEVEL {
                assert!(e.spent.load(Relaxed) <= e.earned.load(Relaxed));
            }
            seen.push(level);
        }
        // Level 9 while it lasts, then level 6 with what is left, then the
        // base level, in debt.
        let first6 = seen.iter().position(|&l| l == 6).unwrap();
        let first3 = seen.iter().position(|&l| l == BASE_LEVEL).unwrap();
        assert!(first6 > 0 && first3 > first6, "{seen:?}");
        assert!(seen[..first6].iter().all(|&l| l == 9));
        assert!(seen[first3..].iter().all(|&l| l == BASE_LEVEL));
        // Debt is paid off by later offers before any level above the base.
        e.offer(100_000);
        assert_eq!(e.level_for(10_000), BASE_LEVEL);
    }
}
