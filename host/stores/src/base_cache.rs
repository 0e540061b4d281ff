//! Decoded delta bases, kept for the next delta that needs them.
//!
//! A delta record is resolved against its base, which is decoded first
//! (see vt-datadir(5), DELTAS). Deltas of one file's blocks often share
//! a base, and a base decodes about as slowly as the block itself: a cold
//! read of the mount benchmark's 1 GiB file resolved 654 deltas against
//! 273 distinct bases. Git keeps a delta base cache for the same reason.
//! Blocks are named by their hashcodes, so a kept base never goes stale.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use vt_core::Hash;

/// Recently decoded bases, oldest dropped first, up to a byte budget.
pub(crate) struct BaseCache {
    inner: Mutex<Inner>,
    cap: usize,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Hash, Bytes>,
    /// Oldest first.
    order: VecDeque<Hash>,
    bytes: usize,
    /// Look-ups answered.
    hits: u64,
}

impl BaseCache {
    /// A cache holding up to `cap` bytes of bases (and always the newest).
    pub(crate) fn new(cap: usize) -> Self {
        BaseCache {
            inner: Mutex::default(),
            cap,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The decoded base `hash`, if kept.
    pub(crate) fn get(&self, hash: &Hash) -> Option<Bytes> {
        let mut g = self.lock();
        let d = g.map.get(hash).cloned();
        if d.is_some() {
            g.hits += 1;
        }
        d
    }

    /// Keeps `data`, the decoded base `hash`, dropping the oldest bases
    /// while the cache holds more than its budget.
    pub(crate) fn keep(&self, hash: &Hash, data: &Bytes) {
        let mut g = self.lock();
        if g.map.contains_key(hash) {
            return;
        }
        g.map.insert(*hash, data.clone());
        g.order.push_back(*hash);
        g.bytes += data.len();
        while g.bytes > self.cap && g.order.len() > 1 {
            let Some(old) = g.order.pop_front() else {
                break;
            };
            if let Some(d) = g.map.remove(&old) {
                g.bytes -= d.len();
            }
        }
    }

    /// Look-ups answered from the cache so far.
    #[cfg(test)]
    pub(crate) fn hits(&self) -> u64 {
        self.lock().hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vt_core::HashKind;

    fn h(i: u8) -> Hash {
        HashKind::Sha3_256.digest(&[i])
    }

    #[test]
    fn the_oldest_bases_go_first_once_over_budget() {
        let c = BaseCache::new(250);
        for i in 0..3 {
            c.keep(&h(i), &Bytes::from(vec![i; 100]));
        }
        assert_eq!(c.get(&h(0)), None);
        assert_eq!(c.get(&h(1)).unwrap(), vec![1u8; 100]);
        assert_eq!(c.get(&h(2)).unwrap(), vec![2u8; 100]);
        assert_eq!(c.hits(), 2);
        // Kept again: no double count.
        c.keep(&h(2), &Bytes::from(vec![2u8; 100]));
        c.keep(&h(3), &Bytes::from(vec![3u8; 100]));
        assert_eq!(c.get(&h(1)), None);
        assert!(c.get(&h(2)).is_some() && c.get(&h(3)).is_some());
    }

    #[test]
    fn a_base_larger_than_the_budget_is_kept_alone() {
        let c = BaseCache::new(10);
        c.keep(&h(1), &Bytes::from(vec![1u8; 5]));
        c.keep(&h(2), &Bytes::from(vec![2u8; 50]));
        assert_eq!(c.get(&h(1)), None);
        assert_eq!(c.get(&h(2)).unwrap().len(), 50);
    }
}
