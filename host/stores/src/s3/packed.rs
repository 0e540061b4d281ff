//! The packed layout (`vt-s3.5`): blocks packed into datafile objects
//! `data/ID.vtd`, each with an index object `index/ID.idx`; every index
//! is kept in a local cache directory and in memory, so that `contains`
//! makes no request and `get` makes one ranged GET.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use futures::StreamExt;
use tokio::runtime::Handle;

use vt_core::store::StoreStats;
use vt_core::{Error, Hash, HashKind, Result};

use crate::datafile::{decode_group, decode_payload, mapped_checked, Verify, MAX_RECORD};
use crate::dict::Dictionaries;

use super::bucket::Bucket;
use super::pack::{self, Writer, SMALL_BLOCK};
use super::pack_index::{PackIndex, ALONE};
use super::record_cache::{Cached, RecordCache, RecordKey};
use super::uploads::Uploads;

/// Bytes of decompressed records kept for reads that follow.
const CACHE_BYTES: usize = 32 << 20;
/// A prefetch fetches at most this many bytes of records.
const PREFETCH_BYTES: u64 = 8 << 20;
/// Concurrent requests of a prefetch, and of index fetches at open.
const FETCHES: usize = 8;
/// A prefetch reads records of one pack with one GET when the gaps
/// between them are at most this ...
const SPAN_GAP: u64 = 256 << 10;
/// ... and the GET is at most this long.
const SPAN_MAX: u64 = 4 << 20;
/// How much of a pack one GET reads once reads go through it in order
/// (an export, a restore, a mount read whole): the records that follow
/// come with the one asked for, so a pack costs a few requests, not one
/// per record.
const WINDOW: u64 = 2 << 20;
/// Raw pack bytes kept from such reads.
const WINDOW_CACHE: usize = 4;
/// A miss this close after the end of the pack's last fetched record
/// counts as reading in order.
const SEQUENTIAL_GAP: u64 = 512 << 10;

/// Where a block lies: pack number (into `Known::packs`), and its
/// record.
#[derive(Clone, Copy, Debug)]
pub struct Location {
    pack: u32,
    offset: u64,
    len: u32,
    member: u32,
}

/// What the store knows is in sealed packs (uploaded or uploading).
#[derive(Default)]
struct Known {
    blocks: HashMap<Hash, Location>,
    /// The IDs of the packs, by number.
    packs: Vec<String>,
    /// Their sizes in bytes, by number.
    sizes: Vec<u64>,
    raw_bytes: u64,
    stored_bytes: u64,
    index_bytes: u64,
}

impl Known {
    /// Adds pack `id` with index `idx` (an object of `index_size` bytes);
    /// returns its number.
    fn add_pack(&mut self, id: String, idx: &PackIndex, index_size: u64) -> u32 {
        let no = self.packs.len() as u32;
        self.packs.push(id);
        self.sizes.push(idx.pack_size);
        for e in &idx.entries {
            if let std::collections::hash_map::Entry::Vacant(v) = self.blocks.entry(e.hash) {
                v.insert(Location {
                    pack: no,
                    offset: e.offset,
                    len: e.len,
                    member: e.member,
                });
                self.raw_bytes += u64::from(e.raw_len);
            }
        }
        self.stored_bytes += idx.pack_size;
        self.index_bytes += index_size;
        no
    }
}

/// A pack sealed for upload.
pub struct Sealed {
    pack: u32,
    id: String,
    data: Bytes,
    index: Bytes,
}

/// The key of pack `id`, relative to the prefix.
pub fn pack_key(id: &str) -> String {
    format!("data/{id}.vtd")
}

/// The key of pack `id`'s index, relative to the prefix.
pub fn index_key(id: &str) -> String {
    format!("index/{id}.idx")
}

/// The ID in an object name `ID.EXT` under `data/` or `index/`, if it is
/// one (32 lower-case hex digits).
pub fn id_of<'a>(file: &'a str, ext: &str) -> Option<&'a str> {
    let id = file.strip_suffix(ext)?.strip_suffix('.')?;
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    (id.len() == 32 && id.chars().all(hex)).then_some(id)
}

fn poisoned() -> Error {
    Error::Store("s3 store: lock poisoned".into())
}

/// Windows of packs read in order, (pack, start, bytes), newest last; and
/// by pack, where the last record read ended.
type Windows = (VecDeque<(u32, u64, Bytes)>, HashMap<u32, u64>);

/// Records of one pack fetched with one GET: pack ID, start, end, and
/// the records.
type Span = (String, u64, u64, Vec<(Hash, Location)>);

/// The packed layout's state.
pub struct Packed {
    bucket: Arc<Bucket>,
    rt: Handle,
    kind: HashKind,
    pack_size: usize,
    cache_dir: PathBuf,
    known: RwLock<Known>,
    writer: Mutex<Writer>,
    /// Signalled when [`Writer::busy`] goes down.
    settled: Condvar,
    /// Sealed packs not yet uploaded, by number: their blocks are read
    /// from here.
    in_flight: Arc<Mutex<HashMap<u32, Bytes>>>,
    uploads: Uploads<Arc<Sealed>>,
    cache: Mutex<RecordCache>,
    /// Records being fetched, each with a gate: readers of one record
    /// (threads reading the members of one group) wait for one GET
    /// instead of each making their own.
    fetching: Mutex<HashMap<RecordKey, Arc<Mutex<()>>>>,
    /// Recent windows of packs read in order: (pack, start, bytes), the
    /// newest last; and, by pack, where the last record fetched ended.
    windows: Mutex<Windows>,
    dicts: Dictionaries,
}

impl Packed {
    /// Opens the packed layout in `bucket`: lists the index objects,
    /// fetches those the cache in `cache_dir` lacks, and loads them all.
    pub fn open(
        bucket: Arc<Bucket>,
        rt: Handle,
        kind: HashKind,
        pack_size: usize,
        cache_dir: &Path,
    ) -> Result<Self> {
        std::fs::create_dir_all(cache_dir).map_err(|e| {
            Error::io(
                format!(
                    "{}: create index cache {}",
                    bucket.name(),
                    cache_dir.display()
                ),
                e,
            )
        })?;
        let known = rt.block_on(load_indexes(&bucket, cache_dir))?;
        Ok(Packed {
            rt: rt.clone(),
            kind,
            pack_size: pack_size.max(1),
            cache_dir: cache_dir.to_path_buf(),
            known: RwLock::new(known),
            writer: Mutex::new(Writer::default()),
            settled: Condvar::new(),
            in_flight: Arc::default(),
            uploads: Uploads::new(rt),
            cache: Mutex::new(RecordCache::new(CACHE_BYTES)),
            fetching: Mutex::default(),
            windows: Mutex::default(),
            dicts: Dictionaries::none(),
            bucket,
        })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        self.writer.lock().map_err(|_| poisoned())
    }

    fn known(&self) -> Result<RwLockReadGuard<'_, Known>> {
        self.known.read().map_err(|_| poisoned())
    }

    fn known_mut(&self) -> Result<RwLockWriteGuard<'_, Known>> {
        self.known.write().map_err(|_| poisoned())
    }

    /// Stores block `hash`; true if it was new.
    pub fn add(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        if data.len() > MAX_RECORD as usize {
            return Err(Error::Store(format!(
                "{}: block {hash} is {} bytes, more than a pack record holds ({MAX_RECORD})",
                self.bucket.name(),
                data.len()
            )));
        }
        self.uploads.check()?;
        if self.known()?.blocks.contains_key(hash) {
            return Ok(false);
        }
        let bytes = Bytes::copy_from_slice(data);
        let full_group = {
            let mut w = self.writer()?;
            // Under the writer's lock a block is either pending or known
            // (a seal moves it from one to the other holding this lock).
            if w.pending.contains_key(hash) || self.known()?.blocks.contains_key(hash) {
                return Ok(false);
            }
            w.pending.insert(*hash, bytes.clone());
            // A group's members all have its hash function.
            let group = if data.len() < SMALL_BLOCK && hash.kind == self.kind {
                match w.add_small(*hash, bytes) {
                    Some(g) => g,
                    None => return Ok(true),
                }
            } else {
                Vec::new()
            };
            // Blocks in no record yet, and out of the writer's sight:
            // a sync waits for them.
            w.busy += 1;
            group
        };
        // Compressed without holding the lock: adders on every core
        // compress at once.
        let rec = if full_group.is_empty() {
            pack::single(hash, data)
        } else {
            pack::group(self.kind, &full_group)
        };
        let sealed = {
            let mut w = self.writer()?;
            w.append(rec);
            if w.pack.len() >= self.pack_size {
                // Still busy until the pack's upload has started.
                Some(self.seal(&mut w))
            } else {
                w.busy -= 1;
                None
            }
        };
        match sealed {
            None => self.settled.notify_all(),
            Some(s) => {
                let started = s.and_then(|s| self.upload(s));
                self.done();
                started?;
            }
        }
        Ok(true)
    }

    /// Ends one piece of work a sync waits for (see [`Writer::busy`]).
    fn done(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.busy = w.busy.saturating_sub(1);
        }
        self.settled.notify_all();
    }

    /// Seals the pack in `w`: its blocks become known (read from memory
    /// until the upload is done) and leave `pending`.
    fn seal(&self, w: &mut Writer) -> Result<Arc<Sealed>> {
        let idx = PackIndex {
            pack_size: w.pack.len() as u64,
            entries: w.entries.clone(),
        };
        // Encoded before the pack is taken: on failure it stays.
        let index = idx
            .encode()
            .map_err(|e| Error::Store(format!("{}: {e}", self.bucket.name())))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let data = Bytes::from(w.take_pack().0);
        let mut known = self.known_mut()?;
        let no = known.packs.len() as u32;
        // Readable from memory before the blocks are known to be in it.
        self.in_flight
            .lock()
            .map_err(|_| poisoned())?
            .insert(no, data.clone());
        known.add_pack(id.clone(), &idx, index.len() as u64);
        drop(known);
        for e in &idx.entries {
            w.pending.remove(&e.hash);
        }
        Ok(Arc::new(Sealed {
            pack: no,
            id,
            data,
            index: Bytes::from(index),
        }))
    }

    /// Uploads `s` in the background.
    fn upload(&self, s: Arc<Sealed>) -> Result<()> {
        let bucket = self.bucket.clone();
        let cache_dir = self.cache_dir.clone();
        let in_flight = self.in_flight.clone();
        // The gap between a seal and here is covered by `Writer::busy`.
        let ticket = self.uploads.begin()?;
        self.uploads.spawn(ticket, s, move |s| {
            upload_pack(bucket, cache_dir, in_flight, s)
        })
    }

    /// Uploads the pending pack, however small, and waits for every
    /// upload; uploads that failed are tried once more.
    pub fn sync(&self) -> Result<()> {
        let sealed = {
            let mut w = self.writer()?;
            // Blocks being compressed, packs sealed but not yet handed to
            // an upload: added (their adds may have returned), and not in
            // what this sync would see.
            while w.busy > 0 {
                w = self.settled.wait(w).map_err(|_| poisoned())?;
            }
            w.flush_group(self.kind);
            if w.entries.is_empty() {
                None
            } else {
                w.busy += 1;
                Some(self.seal(&mut w))
            }
        };
        if let Some(s) = sealed {
            let started = s.and_then(|s| self.upload(s));
            self.done();
            started?;
        }
        self.uploads.wait()?;
        let mut failed = self.uploads.take_failed()?.into_iter();
        while let Some((s, _)) = failed.next() {
            let job = upload_pack(
                self.bucket.clone(),
                self.cache_dir.clone(),
                self.in_flight.clone(),
                s.clone(),
            );
            if let Err(e) = self.rt.block_on(job) {
                let mut back = vec![(s, e.to_string())];
                back.extend(failed);
                self.uploads.put_back(back)?;
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether a final sync is due: something added is not yet durable,
    /// and no upload has failed (a failure was reported to whoever added
    /// the blocks, and retrying it on drop could take minutes).
    pub fn dirty(&self) -> bool {
        let pending = self.writer.lock().map(|w| !w.pending.is_empty());
        !self.uploads.failed() && (pending.unwrap_or(false) || self.uploads.running())
    }

    /// Whether the store holds block `hash` (no request).
    pub fn contains(&self, hash: &Hash) -> Result<bool> {
        if self.writer()?.pending.contains_key(hash) {
            return Ok(true);
        }
        Ok(self.known()?.blocks.contains_key(hash))
    }

    /// Block `hash`'s data, checked against its hash.
    pub fn get(&self, hash: &Hash) -> Result<Option<Bytes>> {
        if let Some(d) = self.writer()?.pending.get(hash) {
            return Ok(Some(d.clone()));
        }
        let Some(loc) = self.known()?.blocks.get(hash).copied() else {
            return Ok(None);
        };
        let key = (loc.pack, loc.offset);
        let cached = self.cache.lock().map_err(|_| poisoned())?.get(key);
        let rec = match cached {
            Some(c) => c,
            None => self.fetch_once(hash, loc)?,
        };
        take_block(&rec, hash, loc.member)
            .map(Some)
            .map_err(|e| self.corrupt(hash, loc, e))
    }

    /// The record at `loc` (holding block `hash`), fetched and decoded by
    /// one of the threads that want it at the same time, then cached.
    fn fetch_once(&self, hash: &Hash, loc: Location) -> Result<Cached> {
        let key = (loc.pack, loc.offset);
        let gate = self
            .fetching
            .lock()
            .map_err(|_| poisoned())?
            .entry(key)
            .or_default()
            .clone();
        let r = {
            let _turn = gate.lock().map_err(|_| poisoned())?;
            // Whoever held the gate before may have fetched it.
            let cached = self.cache.lock().map_err(|_| poisoned())?.get(key);
            match cached {
                Some(c) => Ok(c),
                None => self.fetch_record(loc).and_then(|raw| {
                    let c = self
                        .decode(hash, loc, raw)
                        .map_err(|e| self.corrupt(hash, loc, e))?;
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.insert(key, c.clone());
                    }
                    Ok(c)
                }),
            }
        };
        if let Ok(mut f) = self.fetching.lock() {
            // The map's reference and ours: nobody else is waiting.
            if Arc::strong_count(&gate) <= 2 {
                f.remove(&key);
            }
        }
        r
    }

    /// The error for damage to block `hash` at `loc`.
    fn corrupt(&self, hash: &Hash, loc: Location, detail: String) -> Error {
        let id = self
            .known()
            .ok()
            .and_then(|k| k.packs.get(loc.pack as usize).cloned())
            .unwrap_or_default();
        Error::Corrupt {
            hash: *hash,
            file: PathBuf::from(format!(
                "{}, object {} (record at offset {})",
                self.bucket.name(),
                pack_key(&id),
                loc.offset
            )),
            detail,
        }
    }

    /// The id of pack number `no`.
    fn pack_id(&self, no: u32) -> Result<String> {
        self.known()?
            .packs
            .get(no as usize)
            .cloned()
            .ok_or_else(|| Error::Store(format!("{}: no pack #{no}", self.bucket.name())))
    }

    /// The bytes of the record at `loc`: from memory if its pack is still
    /// uploading, else one ranged GET.
    fn fetch_record(&self, loc: Location) -> Result<Bytes> {
        let range = loc.offset..loc.offset + u64::from(loc.len);
        if let Some(p) = self
            .in_flight
            .lock()
            .map_err(|_| poisoned())?
            .get(&loc.pack)
        {
            let r = range.start as usize..range.end as usize;
            if r.end > p.len() {
                return Err(Error::Store(format!(
                    "{}: record past the end of a pack being uploaded",
                    self.bucket.name()
                )));
            }
            return Ok(p.slice(r));
        }
        let r = range.clone();
        let sequential = {
            let mut w = self.windows.lock().map_err(|_| poisoned())?;
            let last = w.1.insert(loc.pack, r.end);
            if let Some((_, start, b)) = w.0.iter().rev().find(|(p, start, b)| {
                *p == loc.pack && *start <= r.start && r.end <= start + b.len() as u64
            }) {
                return Ok(b.slice((r.start - start) as usize..(r.end - start) as usize));
            }
            last.is_some_and(|end| r.start >= end && r.start - end <= SEQUENTIAL_GAP)
        };
        let key = self.bucket.key(&pack_key(&self.pack_id(loc.pack)?));
        let size = self
            .known()?
            .sizes
            .get(loc.pack as usize)
            .copied()
            .unwrap_or(0);
        if !sequential {
            return self.rt.block_on(self.bucket.get_range(&key, range));
        }
        // Reading in order: take the window from here.
        let end = (r.start + WINDOW).min(size).max(r.end);
        let bytes = self
            .rt
            .block_on(self.bucket.get_range(&key, r.start..end))?;
        let rec = bytes.slice(0..(r.end - r.start) as usize);
        if let Ok(mut w) = self.windows.lock() {
            w.0.push_back((loc.pack, r.start, bytes));
            while w.0.len() > WINDOW_CACHE {
                w.0.pop_front();
            }
        }
        Ok(rec)
    }

    /// Checks and decompresses the record `raw` that should hold block
    /// `hash` at `loc`.
    fn decode(
        &self,
        hash: &Hash,
        loc: Location,
        raw: Bytes,
    ) -> std::result::Result<Cached, String> {
        decode_record(&self.dicts, hash, loc.member, raw)
    }

    /// Fetches the records of `hashes` concurrently into the record cache
    /// (at most [`PREFETCH_BYTES`] of them); failures are left for the
    /// reads that follow to report.
    pub fn prefetch(&self, hashes: &[Hash]) {
        let mut want: Vec<(Hash, Location, String)> = Vec::new();
        let mut seen: HashSet<RecordKey> = HashSet::new();
        let mut total = 0u64;
        {
            let (Ok(known), Ok(cache), Ok(in_flight)) =
                (self.known(), self.cache.lock(), self.in_flight.lock())
            else {
                return;
            };
            for h in hashes {
                let Some(loc) = known.blocks.get(h).copied() else {
                    continue;
                };
                let key = (loc.pack, loc.offset);
                if in_flight.contains_key(&loc.pack) || cache.has(key) || !seen.insert(key) {
                    continue;
                }
                total += u64::from(loc.len);
                if total > PREFETCH_BYTES && !want.is_empty() {
                    break;
                }
                let Some(p) = known.packs.get(loc.pack as usize) else {
                    continue;
                };
                want.push((*h, loc, p.clone()));
            }
        }
        if want.len() < 2 {
            // One record: the read that follows fetches it just as fast.
            return;
        }
        // Records of one pack that lie close together come in one GET:
        // a directory's files were stored side by side.
        want.sort_by(|a, b| (&a.2, a.1.offset).cmp(&(&b.2, b.1.offset)));
        let mut spans: Vec<Span> = Vec::new();
        for (h, loc, id) in want {
            let end = loc.offset + u64::from(loc.len);
            match spans.last_mut() {
                Some((sid, start, send, recs))
                    if *sid == id
                        && loc.offset >= *send
                        && loc.offset - *send <= SPAN_GAP
                        && end - *start <= SPAN_MAX =>
                {
                    *send = end;
                    recs.push((h, loc));
                }
                _ => spans.push((id, loc.offset, end, vec![(h, loc)])),
            }
        }
        let bucket = &self.bucket;
        let fetched: Vec<_> = self.rt.block_on(
            futures::stream::iter(spans)
                .map(|(id, start, end, recs)| async move {
                    let r = bucket
                        .get_range(&bucket.key(&pack_key(&id)), start..end)
                        .await;
                    (start, recs, r)
                })
                .buffer_unordered(FETCHES)
                .collect(),
        );
        for (start, recs, r) in fetched {
            let Ok(raw) = r else { continue };
            for (h, loc) in recs {
                let a = (loc.offset - start) as usize;
                let Some(rec) = raw.get(a..a + loc.len as usize) else {
                    continue;
                };
                if let Ok(c) = self.decode(&h, loc, raw.slice_ref(rec)) {
                    if let Ok(mut cache) = self.cache.lock() {
                        cache.insert((loc.pack, loc.offset), c);
                    }
                }
            }
        }
    }

    /// The store's counts (pending blocks included).
    pub fn stats(&self) -> Result<StoreStats> {
        let (pending, pending_raw) = {
            let w = self.writer()?;
            let raw: usize = w.pending.values().map(Bytes::len).sum();
            (w.pending.len() as u64, raw as u64)
        };
        let k = self.known()?;
        Ok(StoreStats {
            blocks: k.blocks.len() as u64 + pending,
            raw_bytes: k.raw_bytes + pending_raw,
            stored_bytes: k.stored_bytes,
            index_bytes: k.index_bytes,
            ..StoreStats::default()
        })
    }
}

/// Checks and decompresses record `raw`, which should hold block `hash`
/// (as group member `member`, or alone if that is [`ALONE`]). A block's
/// own record has its hash checked here; a group's members are checked as
/// they are taken out ([`take_block`]).
pub fn decode_record(
    dicts: &Dictionaries,
    hash: &Hash,
    member: u32,
    raw: Bytes,
) -> std::result::Result<Cached, String> {
    let (h, payload) = mapped_checked(&raw, 0)?;
    if h.record_len() != raw.len() as u64 {
        return Err(format!(
            "the record's header says {} bytes, the index {}",
            h.record_len(),
            raw.len()
        ));
    }
    if member == ALONE {
        if h.is_group() || h.is_delta() || h.hash != *hash {
            return Err(format!("the record is for {}, not this block", h.hash));
        }
        let data = decode_payload(&h, payload, dicts)?;
        if hash.kind.digest(&data) != *hash {
            return Err("the data does not match its hash".into());
        }
        Ok(Cached::Block(data))
    } else {
        if !h.is_group() {
            return Err(format!("the record is for {}, not a group", h.hash));
        }
        Ok(Cached::Group(Arc::new(decode_group(&h, payload, dicts)?)))
    }
}

/// Block `hash` out of the decoded record `rec` (as group member
/// `member`, or alone), its hash checked.
pub fn take_block(rec: &Cached, hash: &Hash, member: u32) -> std::result::Result<Bytes, String> {
    match rec {
        Cached::Block(b) if member == ALONE => Ok(b.clone()),
        Cached::Block(_) => Err("the index says group member, the record is a block".into()),
        Cached::Group(g) => {
            g.member(member, hash, Verify::Hash)?;
            // `member` checked that the span lies within the data.
            let s = g.spans.get(member as usize).ok_or("no such group member")?;
            Ok(g.data
                .slice(s.offset as usize..s.offset as usize + s.len as usize))
        }
    }
}

/// Uploads pack `s`, then its index (never an index without its pack),
/// then copies the index into the cache; the pack is then read from the
/// bucket.
async fn upload_pack(
    bucket: Arc<Bucket>,
    cache_dir: PathBuf,
    in_flight: Arc<Mutex<HashMap<u32, Bytes>>>,
    s: Arc<Sealed>,
) -> Result<()> {
    bucket
        .put(&bucket.key(&pack_key(&s.id)), s.data.clone())
        .await?;
    bucket
        .put(&bucket.key(&index_key(&s.id)), s.index.clone())
        .await?;
    if let Err(e) = write_cached(&cache_dir, &s.id, &s.index) {
        tracing::warn!("{}: {e}", bucket.name());
    }
    if let Ok(mut f) = in_flight.lock() {
        f.remove(&s.pack);
    }
    Ok(())
}

/// The cache file of index `id`.
fn cache_file(cache_dir: &Path, id: &str) -> PathBuf {
    cache_dir.join(format!("{id}.idx"))
}

/// Writes index `id` into the cache (through a temporary file renamed into
/// place: a torn copy would be fetched again, but need not be).
fn write_cached(cache_dir: &Path, id: &str, data: &[u8]) -> Result<()> {
    let path = cache_file(cache_dir, id);
    let tmp = cache_dir.join(format!(".{id}.idx.tmp"));
    std::fs::write(&tmp, data)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Error::io(format!("write index cache {}", path.display()), e))
}

/// Lists the index objects, reads those in the cache, fetches the others
/// (into the cache), and drops cache files of indexes no longer listed.
async fn load_indexes(bucket: &Bucket, cache_dir: &Path) -> Result<Known> {
    let mut objects: Vec<(String, u64)> = bucket
        .list("index")
        .await?
        .into_iter()
        .filter_map(|m| {
            let id = id_of(m.location.filename()?, "idx")?.to_owned();
            Some((id, m.size))
        })
        .collect();
    objects.sort();
    let listed: HashSet<&str> = objects.iter().map(|(id, _)| id.as_str()).collect();
    if let Ok(rd) = std::fs::read_dir(cache_dir) {
        for ent in rd.flatten() {
            let name = ent.file_name();
            let stale = name
                .to_str()
                .and_then(|n| id_of(n, "idx"))
                .is_some_and(|id| !listed.contains(id));
            if stale {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
    // From the cache when its copy has the listed size and parses.
    let mut parsed: HashMap<String, (PackIndex, u64)> = HashMap::new();
    let mut fetch = Vec::new();
    for (id, size) in &objects {
        let cached = std::fs::read(cache_file(cache_dir, id))
            .ok()
            .filter(|b| b.len() as u64 == *size)
            .and_then(|b| PackIndex::decode(&b).ok());
        match cached {
            Some(idx) => {
                parsed.insert(id.clone(), (idx, *size));
            }
            None => fetch.push(id.clone()),
        }
    }
    let got: Vec<(String, Result<Option<Bytes>>)> = futures::stream::iter(fetch)
        .map(|id| async move {
            let r = bucket.get(&bucket.key(&index_key(&id))).await;
            (id, r)
        })
        .buffer_unordered(FETCHES)
        .collect()
        .await;
    for (id, r) in got {
        // Deleted since the listing (a prune): nothing to load.
        let Some(b) = r? else { continue };
        match PackIndex::decode(&b) {
            Ok(idx) => {
                if let Err(e) = write_cached(cache_dir, &id, &b) {
                    tracing::warn!("{}: {e}", bucket.name());
                }
                parsed.insert(id, (idx, b.len() as u64));
            }
            Err(e) => tracing::warn!(
                "{}: {} is damaged and ignored (its blocks cannot be read; run fsck): {e}",
                bucket.name(),
                index_key(&id)
            ),
        }
    }
    let mut known = Known::default();
    for (id, _) in objects {
        if let Some((idx, size)) = parsed.remove(&id) {
            known.add_pack(id, &idx, size);
        }
    }
    Ok(known)
}
