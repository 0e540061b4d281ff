//! The packed layout (`vt-s3.5`): blocks packed into datafile objects
//! `data/ID.vtd`, each with an index object `index/ID.idx`; every index
//! is kept in a local cache directory and in memory, so that `contains`
//! makes no request and `get` makes at most one GET. File data and
//! metadata (directories, indirect blocks) go to packs of their own;
//! metadata packs are kept whole on local disk, and data packs that a
//! bulk read wants much of are fetched whole ([`LocalPacks`]).

use std::collections::{HashMap, HashSet};
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
use super::local_packs::{read_range, LocalPacks};
use super::pack::{self, Lane, Writer, SMALL_BLOCK};
use super::pack_index::{PackIndex, ALONE, FLAG_META};
use super::record_cache::{Cached, RecordCache, RecordKey};
use super::single_flight::SingleFlight;
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
/// A data pack is fetched whole once the records asked of it (read or
/// prefetched) add up to this fraction of it: a restore or a mount read
/// through then costs a GET a pack, not one a record, while a read of a
/// few files costs no more than their records.
const HOT_FRACTION: u64 = 16;
/// Data packs fetched whole in the background at most at once (see
/// [`Packed::read_ahead`]).
const BACKGROUND: usize = 6;
/// How many packs past one being read in pack order are fetched ahead.
const PACKS_AHEAD: usize = 4;
/// A miss this close after the end of the pack's last fetched record
/// counts as reading in order, which fetches the pack whole too.
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
    /// Whether each is a metadata pack, by number.
    meta: Vec<bool>,
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
        self.meta.push(idx.flags & FLAG_META != 0);
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
    meta: bool,
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
    /// Records being fetched: readers of one record (threads reading the
    /// members of one group) wait for one GET.
    fetching: SingleFlight<RecordKey>,
    /// By pack, where the last record fetched from the bucket ended.
    last_end: Mutex<HashMap<u32, u64>>,
    /// By data pack, the bytes of records asked of it (see
    /// [`HOT_FRACTION`]).
    heat: Mutex<HashMap<u32, u64>>,
    /// Packs kept whole on local disk.
    local: Arc<LocalPacks>,
    /// Whole-pack fetches running in the background.
    background: Arc<std::sync::atomic::AtomicUsize>,
    /// Packs whose successors have been fetched ahead.
    ahead: Mutex<HashSet<u32>>,
    dicts: Dictionaries,
    verify: Verify,
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
        verify: Verify,
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
        // The layout is not recorded in the bucket: a store of the other
        // layout would look empty, and grow packs beside its blocks.
        if known.packs.is_empty() && rt.block_on(bucket.any("h"))? {
            return Err(Error::Store(format!(
                "{}: the bucket holds a store of the blocks layout (objects under h/), not packs: open it with layout=blocks",
                bucket.name()
            )));
        }
        let local = LocalPacks::new(cache_dir);
        local.prune(&known.packs.iter().map(String::as_str).collect());
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
            fetching: SingleFlight::default(),
            last_end: Mutex::default(),
            heat: Mutex::default(),
            local: Arc::new(local),
            background: Arc::default(),
            ahead: Mutex::default(),
            dicts: Dictionaries::none(),
            verify,
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

    /// Stores block `hash` in a pack of `lane`; true if it was new.
    pub fn add(&self, hash: &Hash, data: &[u8], lane: Lane) -> Result<bool> {
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
                match w.lane(lane).add_small(*hash, bytes) {
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
            w.lane(lane).append(rec);
            if w.lane(lane).pack.len() >= self.pack_size {
                // Still busy until the pack's upload has started.
                Some(self.seal(&mut w, lane))
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

    /// Seals the pack of `lane` in `w`: its blocks become known (read from
    /// memory until the upload is done) and leave `pending`.
    fn seal(&self, w: &mut Writer, lane: Lane) -> Result<Arc<Sealed>> {
        let meta = lane == Lane::Meta;
        let filling = w.lane(lane);
        let idx = PackIndex {
            pack_size: filling.pack.len() as u64,
            flags: if meta { FLAG_META } else { 0 },
            entries: filling.entries.clone(),
        };
        // Encoded before the pack is taken: on failure it stays.
        let index = idx
            .encode()
            .map_err(|e| Error::Store(format!("{}: {e}", self.bucket.name())))?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let data = Bytes::from(w.lane(lane).take_pack().0);
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
            meta,
            data,
            index: Bytes::from(index),
        }))
    }

    /// Uploads `s` in the background.
    fn upload(&self, s: Arc<Sealed>) -> Result<()> {
        let to = self.upload_to();
        // The gap between a seal and here is covered by `Writer::busy`.
        let ticket = self.uploads.begin()?;
        self.uploads.spawn(ticket, s, move |s| upload_pack(to, s))
    }

    /// Where an upload puts what it uploads.
    fn upload_to(&self) -> UploadTo {
        UploadTo {
            bucket: self.bucket.clone(),
            cache_dir: self.cache_dir.clone(),
            in_flight: self.in_flight.clone(),
            local: self.local.clone(),
        }
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
            let mut sealed = Vec::new();
            for lane in Lane::ALL {
                w.lane(lane).flush_group(self.kind);
                if !w.lane(lane).entries.is_empty() {
                    w.busy += 1;
                    sealed.push(self.seal(&mut w, lane));
                }
            }
            sealed
        };
        let mut first_err = None;
        for s in sealed {
            let started = s.and_then(|s| self.upload(s));
            self.done();
            if let Err(e) = started {
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        self.uploads.wait()?;
        let mut failed = self.uploads.take_failed()?.into_iter();
        while let Some((s, _)) = failed.next() {
            let job = upload_pack(self.upload_to(), s.clone());
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

    /// Where block `hash` lies: its pack's number, then its record's
    /// offset (see [`vt_core::Store::locality`]).
    pub fn locality(&self, hash: &Hash) -> Option<u64> {
        let loc = self.known().ok()?.blocks.get(hash).copied()?;
        Some(u64::from(loc.pack) << 40 | loc.offset.min((1 << 40) - 1))
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
        let cached = {
            let mut cache = self.cache.lock().map_err(|_| poisoned())?;
            let c = cache.get(key);
            if let Some(Cached::Block(_)) = c {
                // A block's own record is read once: a prefetch put it
                // there for this read.
                cache.remove(key);
            }
            c
        };
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
        self.fetching.run(key, || {
            // Whoever went before may have fetched it.
            let cached = self.cache.lock().map_err(|_| poisoned())?.get(key);
            match cached {
                Some(c) => Ok(c),
                None => self.fetch_decoded(hash, loc),
            }
        })
    }

    /// The record at `loc`, fetched, decoded and cached. A damaged local
    /// copy of its pack is discarded and the record read from the bucket.
    fn fetch_decoded(&self, hash: &Hash, loc: Location) -> Result<Cached> {
        let (raw, local) = self.fetch_record(loc)?;
        let c = match self.decode(hash, loc, raw) {
            Ok(c) => c,
            Err(e) if local => {
                let id = self.pack_id(loc.pack)?;
                tracing::warn!(
                    "{}: the local copy of {} is damaged ({e}); reading the bucket's",
                    self.bucket.name(),
                    pack_key(&id)
                );
                self.local.discard(loc.pack, &id);
                let raw = self.fetch_range(loc)?;
                self.decode(hash, loc, raw)
                    .map_err(|e| self.corrupt(hash, loc, e))?
            }
            Err(e) => return Err(self.corrupt(hash, loc, e)),
        };
        // Kept for the group's other members; a block's own record is not
        // (it is read once, and would push groups out).
        if let Cached::Group(..) = c {
            if let Ok(mut cache) = self.cache.lock() {
                cache.insert((loc.pack, loc.offset), c.clone());
            }
        }
        Ok(c)
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

    /// Pack `no`'s ID, size and whether it is a metadata pack.
    fn pack_info(&self, no: u32) -> Result<(String, u64, bool)> {
        let k = self.known()?;
        let i = no as usize;
        match (k.packs.get(i), k.sizes.get(i), k.meta.get(i)) {
            (Some(id), Some(size), Some(meta)) => Ok((id.clone(), *size, *meta)),
            _ => Err(Error::Store(format!(
                "{}: no pack #{no}",
                self.bucket.name()
            ))),
        }
    }

    /// The bytes of the record at `loc`, and whether they came from a
    /// local copy of its pack: from memory if its pack is still uploading;
    /// else from the pack's local copy, which a metadata pack, a data pack
    /// read in order or one asked for much of is fetched whole into; else
    /// one ranged GET.
    fn fetch_record(&self, loc: Location) -> Result<(Bytes, bool)> {
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
            return Ok((p.slice(r), false));
        }
        let (id, size, meta) = self.pack_info(loc.pack)?;
        let whole = meta || {
            let last = self
                .last_end
                .lock()
                .map_err(|_| poisoned())?
                .insert(loc.pack, range.end);
            let sequential =
                last.is_some_and(|end| range.start >= end && range.start - end <= SEQUENTIAL_GAP);
            sequential || self.warm(loc.pack, u64::from(loc.len), size)
        };
        let file = if whole {
            match self.whole(loc.pack, &id, meta, size) {
                Ok(f) => {
                    if !meta {
                        self.read_ahead(loc.pack);
                    }
                    Some(f)
                }
                // No local copy (a full disk, a pack that would not come
                // whole): the record alone, as if the pack were cold.
                Err(e) => {
                    tracing::debug!("{}: {e}; reading the record alone", self.bucket.name());
                    None
                }
            }
        } else {
            self.local.get(loc.pack, &id, meta, size)
        };
        match file {
            Some(f) => match read_range(&f, range.clone()) {
                Ok(b) => Ok((b, true)),
                Err(e) => {
                    tracing::warn!(
                        "{}: cannot read the local copy of {}: {e}",
                        self.bucket.name(),
                        pack_key(&id)
                    );
                    self.local.discard(loc.pack, &id);
                    Ok((self.fetch_range(loc)?, false))
                }
            },
            None => Ok((self.fetch_range(loc)?, false)),
        }
    }

    /// Adds `bytes` asked of data pack `no` (of `size` bytes) to its heat;
    /// whether it is now hot enough to be fetched whole.
    fn warm(&self, no: u32, bytes: u64, size: u64) -> bool {
        let Ok(mut heat) = self.heat.lock() else {
            return false;
        };
        let h = heat.entry(no).or_default();
        *h += bytes;
        *h >= size / HOT_FRACTION
    }

    /// Pack `no`'s local copy, fetched whole if it has none.
    fn whole(&self, no: u32, id: &str, meta: bool, size: u64) -> Result<Arc<std::fs::File>> {
        fetch_whole(&self.local, &self.bucket, &self.rt, no, id, meta, size)
    }

    /// Fetches pack `no` whole in the background, unless it has a local
    /// copy or [`BACKGROUND`] fetches are running; a reader of the pack
    /// meanwhile waits for it.
    fn background(&self, no: u32) {
        use std::sync::atomic::Ordering::SeqCst;
        let Ok((id, size, meta)) = self.pack_info(no) else {
            return;
        };
        if self.local.is_open(no) {
            return;
        }
        if self.background.fetch_add(1, SeqCst) >= BACKGROUND {
            self.background.fetch_sub(1, SeqCst);
            return;
        }
        let (local, bucket, rt) = (self.local.clone(), self.bucket.clone(), self.rt.clone());
        let running = self.background.clone();
        let spawned = std::thread::Builder::new()
            .name("vt-s3-pack".into())
            .spawn(move || {
                if let Err(e) = fetch_whole(&local, &bucket, &rt, no, &id, meta, size) {
                    tracing::debug!("{}: fetching ahead: {e}", bucket.name());
                }
                running.fetch_sub(1, SeqCst);
            });
        if spawned.is_err() {
            self.background.fetch_sub(1, SeqCst);
        }
    }

    /// Data pack `no` is being read whole: if the pack before it was too
    /// (a reader going through the store in [`Packed::locality`] order,
    /// as a restore does), the [`PACKS_AHEAD`] data packs after it are
    /// fetched in the background, so that the reader does not wait for
    /// them.
    fn read_ahead(&self, no: u32) {
        let first = self.ahead.lock().is_ok_and(|mut a| a.insert(no));
        if !first || no == 0 || !self.local.is_open(no - 1) {
            return;
        }
        let Ok(known) = self.known() else { return };
        let next: Vec<u32> = (no + 1..known.packs.len() as u32)
            .filter(|q| !known.meta[*q as usize])
            .take(PACKS_AHEAD)
            .collect();
        drop(known);
        for q in next {
            self.background(q);
        }
    }

    /// The record at `loc`, with one ranged GET.
    fn fetch_range(&self, loc: Location) -> Result<Bytes> {
        let key = self.bucket.key(&pack_key(&self.pack_id(loc.pack)?));
        let range = loc.offset..loc.offset + u64::from(loc.len);
        self.rt.block_on(self.bucket.get_range(&key, range))
    }

    /// Checks and decompresses the record `raw` that should hold block
    /// `hash` at `loc`.
    fn decode(
        &self,
        hash: &Hash,
        loc: Location,
        raw: Bytes,
    ) -> std::result::Result<Cached, String> {
        decode_record(&self.dicts, hash, loc.member, raw, self.verify)
    }

    /// Readies the blocks `hashes` for the reads that follow: packs to be
    /// read whole (metadata packs, data packs now asked for much of) are
    /// fetched whole, [`FETCHES`] at a time; the records of other packs
    /// (at most [`PREFETCH_BYTES`] of them) are fetched concurrently into
    /// the record cache. Failures are left for the reads that follow to
    /// report.
    pub fn prefetch(&self, hashes: &[Hash]) {
        let mut want: Vec<(Hash, Location, String)> = Vec::new();
        let mut whole: Vec<(u32, String, bool, u64)> = Vec::new();
        let mut seen: HashSet<RecordKey> = HashSet::new();
        let mut total = 0u64;
        // Packs at hand locally: read from there, nothing to fetch.
        let local = self.local.open_packs();
        {
            let (Ok(known), Ok(cache), Ok(in_flight)) =
                (self.known(), self.cache.lock(), self.in_flight.lock())
            else {
                return;
            };
            let mut asked: HashMap<u32, u64> = HashMap::new();
            for h in hashes {
                let Some(loc) = known.blocks.get(h).copied() else {
                    continue;
                };
                let key = (loc.pack, loc.offset);
                if in_flight.contains_key(&loc.pack)
                    || cache.has(key)
                    || !seen.insert(key)
                    || local.contains(&loc.pack)
                {
                    continue;
                }
                let i = loc.pack as usize;
                let (Some(id), Some(&size), Some(&meta)) =
                    (known.packs.get(i), known.sizes.get(i), known.meta.get(i))
                else {
                    continue;
                };
                if meta {
                    if !whole.iter().any(|w| w.0 == loc.pack) {
                        whole.push((loc.pack, id.clone(), true, size));
                    }
                    continue;
                }
                *asked.entry(loc.pack).or_default() += u64::from(loc.len);
                total += u64::from(loc.len);
                if total <= PREFETCH_BYTES || want.is_empty() {
                    want.push((*h, loc, id.clone()));
                }
            }
            for (no, bytes) in asked {
                let i = no as usize;
                if self.warm(no, bytes, known.sizes[i]) {
                    whole.push((no, known.packs[i].clone(), false, known.sizes[i]));
                }
            }
        }
        want.retain(|(_, loc, _)| !whole.iter().any(|w| w.0 == loc.pack));
        for (no, _, meta, _) in &whole {
            self.background(*no);
            if !meta {
                self.read_ahead(*no);
            }
        }
        self.prefetch_records(want);
    }

    /// Fetches the records `want` concurrently into the record cache; the
    /// records of one pack that lie close together come in one GET (a
    /// directory's files were stored side by side).
    fn prefetch_records(&self, mut want: Vec<(Hash, Location, String)>) {
        if want.len() < 2 {
            // One record: the read that follows fetches it just as fast.
            return;
        }
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

impl Drop for Packed {
    /// Waits for the fetches running in the background: they use the
    /// store's runtime, which goes next.
    fn drop(&mut self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.background.load(std::sync::atomic::Ordering::SeqCst) > 0
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// Checks and decompresses record `raw`, which should hold block `hash`
/// (as group member `member`, or alone if that is [`ALONE`]), as `verify`
/// says. A block's own record is checked here; a group's members as they
/// are taken out ([`take_block`]).
pub fn decode_record(
    dicts: &Dictionaries,
    hash: &Hash,
    member: u32,
    raw: Bytes,
    verify: Verify,
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
        if verify == Verify::Hash && hash.kind.digest(&data) != *hash {
            return Err("the data does not match its hash".into());
        }
        Ok(Cached::Block(data))
    } else {
        if !h.is_group() {
            return Err(format!("the record is for {}, not a group", h.hash));
        }
        let g = decode_group(&h, payload, dicts)?;
        let mut members = Vec::with_capacity(g.spans.len());
        for s in &g.spans {
            let m = g
                .data
                .get(s.offset as usize..s.offset as usize + s.len as usize)
                .ok_or("a group member lies outside the group's data")?;
            members.push(m);
        }
        let digests = (verify == Verify::Hash).then(|| h.hash.kind.digest_many(&members).into());
        Ok(Cached::Group(Arc::new(g), digests))
    }
}

/// Block `hash` out of the decoded record `rec` (as group member
/// `member`, or alone), checked as the record was decoded to check it.
pub fn take_block(rec: &Cached, hash: &Hash, member: u32) -> std::result::Result<Bytes, String> {
    match rec {
        Cached::Block(b) if member == ALONE => Ok(b.clone()),
        Cached::Block(_) => Err("the index says group member, the record is a block".into()),
        Cached::Group(g, digests) => {
            let i = member as usize;
            match digests {
                Some(d) if d.get(i) != Some(hash) => {
                    return Err(format!("group member #{member} does not match its hash"))
                }
                Some(_) => {}
                None => {
                    g.member(member, hash, Verify::Checksum)?;
                }
            }
            let s = g.spans.get(i).ok_or("no such group member")?;
            // Decoding checked that every span lies within the data.
            Ok(g.data
                .slice(s.offset as usize..s.offset as usize + s.len as usize))
        }
    }
}

/// Pack `no`'s local copy from `local`, fetched whole from `bucket` if it
/// has none.
fn fetch_whole(
    local: &LocalPacks,
    bucket: &Bucket,
    rt: &Handle,
    no: u32,
    id: &str,
    meta: bool,
    size: u64,
) -> Result<Arc<std::fs::File>> {
    local.fetch(no, id, meta, size, || {
        let key = bucket.key(&pack_key(id));
        rt.block_on(bucket.get(&key))?.ok_or_else(|| {
            Error::Store(format!(
                "{}: {} is missing (its index names it; run fsck)",
                bucket.name(),
                pack_key(id)
            ))
        })
    })
}

/// Where an upload puts what it uploads: the bucket, the index cache,
/// the packs being uploaded (read from memory until they are stored), and
/// the local copies of metadata packs.
struct UploadTo {
    bucket: Arc<Bucket>,
    cache_dir: PathBuf,
    in_flight: Arc<Mutex<HashMap<u32, Bytes>>>,
    local: Arc<LocalPacks>,
}

/// Uploads pack `s`, then its index (never an index without its pack),
/// then copies the index into the cache, and a metadata pack into the
/// local copies; the pack is then read from there or the bucket.
async fn upload_pack(to: UploadTo, s: Arc<Sealed>) -> Result<()> {
    let bucket = &to.bucket;
    bucket
        .put(&bucket.key(&pack_key(&s.id)), s.data.clone())
        .await?;
    bucket
        .put(&bucket.key(&index_key(&s.id)), s.index.clone())
        .await?;
    if let Err(e) = write_cached(&to.cache_dir, &s.id, &s.index) {
        tracing::warn!("{}: {e}", bucket.name());
    }
    if s.meta {
        if let Err(e) = to.local.keep_meta(&s.id, &s.data) {
            tracing::warn!("{}: {e}", bucket.name());
        }
    }
    if let Ok(mut f) = to.in_flight.lock() {
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
