//! Recently read records of a packed S3 store, decompressed: reading the
//! members of one group in turn costs one GET, not one per member, and
//! [`Store::prefetch`](vt_core::Store::prefetch) has somewhere to put
//! what it fetched.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use vt_core::Hash;

use crate::datafile::Group;

/// A record's place: pack number and offset.
pub type RecordKey = (u32, u64);

/// A decompressed, checked record.
#[derive(Clone)]
pub enum Cached {
    /// A group record; with [`Verify::Hash`](crate::datafile::Verify), the hash
    /// of each member, computed together when it was decoded (several at a
    /// time where the CPU allows). A member is checked against the hash
    /// asked for when it is taken out.
    Group(Arc<Group>, Option<Arc<[Hash]>>),
    /// A block's own record, its hash already checked.
    Block(Bytes),
}

impl Cached {
    fn size(&self) -> usize {
        match self {
            Cached::Group(g, _) => g.data.len(),
            Cached::Block(b) => b.len(),
        }
    }
}

/// At most `cap` bytes of records, least recently used dropped first.
pub struct RecordCache {
    cap: usize,
    used: usize,
    /// Oldest first. A few dozen entries: a linear search costs nothing
    /// beside a decompression.
    items: VecDeque<(RecordKey, Cached)>,
}

impl RecordCache {
    /// An empty cache of `cap` bytes.
    pub fn new(cap: usize) -> Self {
        RecordCache {
            cap,
            used: 0,
            items: VecDeque::new(),
        }
    }

    /// The record at `key`, now the most recently used.
    pub fn get(&mut self, key: RecordKey) -> Option<Cached> {
        let i = self.items.iter().position(|(k, _)| *k == key)?;
        let item = self.items.remove(i)?;
        let c = item.1.clone();
        self.items.push_back(item);
        Some(c)
    }

    /// Drops the record at `key`, if cached.
    pub fn remove(&mut self, key: RecordKey) {
        if let Some(i) = self.items.iter().position(|(k, _)| *k == key) {
            if let Some((_, c)) = self.items.remove(i) {
                self.used -= c.size();
            }
        }
    }

    /// Whether the record at `key` is cached (without touching its age).
    pub fn has(&self, key: RecordKey) -> bool {
        self.items.iter().any(|(k, _)| *k == key)
    }

    /// Caches `c` as the record at `key`.
    pub fn insert(&mut self, key: RecordKey, c: Cached) {
        if self.has(key) || c.size() > self.cap {
            return;
        }
        self.used += c.size();
        self.items.push_back((key, c));
        while self.used > self.cap {
            let Some((_, old)) = self.items.pop_front() else {
                break;
            };
            self.used -= old.size();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first() {
        let mut c = RecordCache::new(10);
        c.insert((0, 1), Cached::Block(Bytes::from_static(b"aaaa")));
        c.insert((0, 2), Cached::Block(Bytes::from_static(b"bbbb")));
        assert!(c.get((0, 1)).is_some());
        c.insert((0, 3), Cached::Block(Bytes::from_static(b"cccc")));
        assert!(c.has((0, 1)) && c.has((0, 3)));
        assert!(!c.has((0, 2)), "oldest use dropped");
        c.insert((0, 4), Cached::Block(Bytes::from(vec![0; 11])));
        assert!(!c.has((0, 4)), "larger than the whole cache");
    }
}
