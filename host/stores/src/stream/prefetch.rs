//! Blocks asked for before they are read ([`vt_core::Store::prefetch`]),
//! held until a reader takes them, within a budget.
//!
//! A block arrives on the connection's reader, which must not fall behind,
//! so it is checked against its hash later, by the reader that takes it;
//! that reader checks up to [`VERIFY_BATCH`] arrived blocks at once (SHA3
//! runs four messages at a time, twice as fast per byte as one by one).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Condvar, Mutex, MutexGuard};

use vt_core::{Error, Hash, HashKind, Result};

/// Bytes of prefetched blocks held for readers, at most.
const BUDGET_BYTES: usize = 128 << 20;
/// Prefetch requests in flight, at most.
const BUDGET_REQUESTS: usize = 2048;
/// Arrived blocks a reader checks together.
const VERIFY_BATCH: usize = 8;

/// A block as it came: its data (`None`: the server does not have it),
/// or still compressed ([`super::protocol::Reply::Packed`]), for the
/// reader that takes it to decompress.
#[derive(Clone)]
pub enum Got {
    /// The block's data, or `None`.
    Plain(Option<Vec<u8>>),
    /// A packed GET reply's body.
    Packed(Vec<u8>),
}

impl Got {
    /// Bytes held.
    fn len(&self) -> usize {
        match self {
            Got::Plain(d) => d.as_ref().map_or(0, Vec::len),
            Got::Packed(b) => b.len(),
        }
    }

    /// The block's data, decompressed if it came packed.
    fn plain(self) -> std::result::Result<Option<Vec<u8>>, String> {
        match self {
            Got::Plain(d) => Ok(d),
            Got::Packed(b) => super::protocol::unpack(&b).map_err(|e| e.to_string()),
        }
    }
}

/// What a prefetch brought: the block, or why not.
pub type Fetched = std::result::Result<Got, String>;

enum Slot {
    /// Asked for.
    Waiting,
    /// Arrived, not yet checked against its hash.
    Arrived(Got),
    /// Being checked by a reader.
    Verifying,
    /// Checked (or failed).
    Ready(Fetched),
}

#[derive(Default)]
struct State {
    slots: HashMap<Hash, Slot>,
    /// Readers announced for a slot beyond the first (the same block in
    /// several files): each takes a copy, the last takes the block.
    more_readers: HashMap<Hash, u32>,
    /// Arrived or checked blocks, oldest first, for dropping when over
    /// budget.
    order: VecDeque<Hash>,
    /// Arrived blocks not yet checked, oldest first.
    unverified: VecDeque<Hash>,
    bytes: usize,
    waiting: usize,
}

/// Prefetched blocks of one store.
#[derive(Default)]
pub struct Prefetcher {
    /// Check blocks against their hashes (else they are ready on arrival).
    verify: bool,
    state: Mutex<State>,
    cv: Condvar,
    /// Reads that found their block arrived, or on its way.
    ready: AtomicU64,
    waited: AtomicU64,
    /// Reads of blocks not prefetched.
    missed: AtomicU64,
    /// Hints dropped because the budget was spent.
    dropped: AtomicU64,
}

impl Prefetcher {
    /// A prefetcher whose blocks are checked against their hashes, or not.
    pub fn new(verify: bool) -> Self {
        Prefetcher {
            verify,
            ..Default::default()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Of `hashes`, those to ask the server for: not asked already (a
    /// second reader of one is counted instead) and within the budget.
    pub fn to_ask(&self, hashes: &[Hash], skip: impl Fn(&Hash) -> bool) -> Vec<Hash> {
        let mut st = self.lock();
        let mut asks = Vec::new();
        for (i, h) in hashes.iter().enumerate() {
            if st.waiting >= BUDGET_REQUESTS || st.bytes >= BUDGET_BYTES {
                self.dropped.fetch_add((hashes.len() - i) as u64, Relaxed);
                break;
            }
            if skip(h) {
                continue;
            }
            if st.slots.contains_key(h) {
                *st.more_readers.entry(*h).or_insert(0) += 1;
                continue;
            }
            st.slots.insert(*h, Slot::Waiting);
            st.waiting += 1;
            asks.push(*h);
        }
        asks
    }

    /// Block `h` arrived (or its request failed).
    pub fn arrived(&self, h: Hash, r: Fetched) {
        let mut st = self.lock();
        st.waiting -= 1;
        match r {
            Ok(d) if self.verify => {
                st.bytes += d.len();
                st.slots.insert(h, Slot::Arrived(d));
                st.unverified.push_back(h);
            }
            Ok(d) => {
                st.bytes += d.len();
                st.slots.insert(h, Slot::Ready(Ok(d)));
            }
            Err(e) => {
                st.slots.insert(h, Slot::Ready(Err(e)));
            }
        }
        st.order.push_back(h);
        while st.bytes > BUDGET_BYTES {
            let Some(old) = st.order.pop_front() else {
                break;
            };
            let n = match st.slots.get(&old) {
                Some(Slot::Arrived(d)) | Some(Slot::Ready(Ok(d))) => d.len(),
                Some(Slot::Ready(Err(_))) => 0,
                // Asked again since, or being checked: not ours to drop.
                _ => continue,
            };
            st.slots.remove(&old);
            st.more_readers.remove(&old);
            st.bytes -= n;
        }
        self.cv.notify_all();
    }

    /// Takes block `h` if it was prefetched (waiting for it if it is on
    /// its way): `None` if it was not. With `verify`, the data returned has
    /// been checked against `h`.
    pub fn take(
        &self,
        h: &Hash,
        endpoint: &dyn std::fmt::Display,
    ) -> Option<Result<Option<Vec<u8>>>> {
        let mut st = self.lock();
        let mut waited = false;
        loop {
            match st.slots.get(h) {
                None => {
                    self.missed.fetch_add(1, Relaxed);
                    return None;
                }
                Some(Slot::Waiting) | Some(Slot::Verifying) => {
                    waited = true;
                    st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                Some(Slot::Arrived(_)) => {
                    st = self.verify(st, h, endpoint);
                }
                Some(Slot::Ready(r)) => {
                    let c = if waited { &self.waited } else { &self.ready };
                    c.fetch_add(1, Relaxed);
                    let copy = st.more_readers.contains_key(h).then(|| r.clone());
                    if let (Some(copy), Some(n)) = (copy, st.more_readers.get_mut(h)) {
                        // Others will read this block too: a copy.
                        *n -= 1;
                        if *n == 0 {
                            st.more_readers.remove(h);
                        }
                        drop(st);
                        return Some(copy.and_then(Got::plain).map_err(Error::Store));
                    }
                    let Some(Slot::Ready(r)) = st.slots.remove(h) else {
                        return None;
                    };
                    if let Ok(d) = &r {
                        st.bytes -= d.len();
                    }
                    drop(st);
                    return Some(r.and_then(Got::plain).map_err(Error::Store));
                }
            }
        }
    }

    /// Checks arrived block `h` and up to [`VERIFY_BATCH`] - 1 others
    /// against their hashes, outside the lock; returns the lock again.
    fn verify<'a>(
        &'a self,
        mut st: MutexGuard<'a, State>,
        h: &Hash,
        endpoint: &dyn std::fmt::Display,
    ) -> MutexGuard<'a, State> {
        let mut batch: Vec<(Hash, Got)> = Vec::with_capacity(VERIFY_BATCH);
        let claim = |st: &mut State, k: Hash, batch: &mut Vec<(Hash, Got)>| {
            if let Some(Slot::Arrived(d)) = st.slots.insert(k, Slot::Verifying) {
                batch.push((k, d));
            }
        };
        claim(&mut st, *h, &mut batch);
        while batch.len() < VERIFY_BATCH {
            let Some(k) = st.unverified.pop_front() else {
                break;
            };
            if matches!(st.slots.get(&k), Some(Slot::Arrived(_))) {
                claim(&mut st, k, &mut batch);
            }
        }
        drop(st);
        // Decompressed first (those that came packed), then hashed.
        let held: Vec<usize> = batch.iter().map(|(_, g)| g.len()).collect();
        let batch: Vec<(Hash, Fetched)> = batch
            .into_iter()
            .map(|(k, g)| (k, g.plain().map(Got::Plain)))
            .collect();
        fn data_of(r: &Fetched) -> Option<&[u8]> {
            match r {
                Ok(Got::Plain(Some(d))) => Some(d.as_slice()),
                _ => None,
            }
        }
        let mut good = vec![true; batch.len()];
        for kind in HashKind::ALL {
            let idx: Vec<usize> = (0..batch.len())
                .filter(|&i| batch[i].0.kind == kind && data_of(&batch[i].1).is_some())
                .collect();
            let data: Vec<&[u8]> = idx.iter().filter_map(|&i| data_of(&batch[i].1)).collect();
            for (&i, d) in idx.iter().zip(kind.digest_many(&data)) {
                good[i] = d == batch[i].0;
            }
        }
        let mut st = self.lock();
        for (((k, r), ok), was) in batch.into_iter().zip(good).zip(held) {
            st.bytes -= was;
            let r = match r {
                Ok(d) if ok => {
                    st.bytes += d.len();
                    Ok(d)
                }
                Ok(_) => Err(format!("{endpoint}: block {k} came back with other data")),
                Err(e) => Err(format!("{endpoint}: block {k}: {e}")),
            };
            st.slots.insert(k, Slot::Ready(r));
        }
        self.cv.notify_all();
        st
    }

    /// Of the reads so far: found prefetched and arrived, found on their
    /// way, not prefetched; and prefetch hints dropped over budget.
    pub fn counts(&self) -> [u64; 4] {
        [
            self.ready.load(Relaxed),
            self.waited.load(Relaxed),
            self.missed.load(Relaxed),
            self.dropped.load(Relaxed),
        ]
    }
}
