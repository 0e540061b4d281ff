//! [`StreamStore`]: a store on a server, reached by the stream protocol
//! over a UNIX socket, TCP (optionally TLS) or a command's stdio.
//!
//! Round trips are what a remote store costs, so none is waited for that
//! need not be:
//! - adds are written behind: blocks gather into batches (up to
//!   [`BATCH_BYTES`]); for each batch the client asks which blocks the
//!   server lacks (WANT) and sends only those (ADD-BATCH, zstd-compressed
//!   unless the server is on this machine). Many batches are in flight
//!   at once, up to [`IN_FLIGHT_BYTES`]; past that, adders wait. An add
//!   therefore cannot say whether its block was new: it says yes, and
//!   [`Store::overcounted`] counts the blocks that were not. Errors come
//!   back from the next add or from [`Store::sync`], which waits for every
//!   batch before it asks the server to sync.
//! - reads the caller announces with [`Store::prefetch`] are all asked for
//!   at once; a `get` then finds its block arrived or on its way.
//! - every block read is checked against its hash.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use vt_core::store::StoreStats;
use vt_core::{BlockClass, Error, Hash, HashKind, Result, Store};

use super::link::{Completion, Link, LinkOptions};
use super::prefetch::{Got, Prefetcher};
use super::protocol::{unpack, BatchBlock, Reply, Request, Welcome, MAX_BATCH};
use super::transport::Endpoint;

/// A batch is sent once it holds this many bytes.
pub const BATCH_BYTES: usize = 4 << 20;

/// Bytes of blocks added but not yet acknowledged, at most.
pub const IN_FLIGHT_BYTES: usize = 64 << 20;

/// Hashes remembered as stored on the server, at most (then forgotten).
const KNOWN_MAX: usize = 1 << 22;

/// Options of a stream store.
#[derive(Clone, Debug, Default)]
pub struct StreamOptions {
    /// Connection options.
    pub link: LinkOptions,
    /// Compress what is sent; `None`: only when the server is not on this
    /// machine.
    pub compress: Option<bool>,
    /// Check every block read against its hash. Off, the client relies on
    /// the server's checks (a DataDir checks every record it reads) and on
    /// the connection's integrity: a UNIX socket, loopback, TLS or ssh are
    /// the only ways vt reaches a server, and each either cannot damage
    /// bytes or authenticates them. On, a server that returns wrong data
    /// (a bug, or one not to be trusted) is caught, at the cost of hashing
    /// everything read again (SHA3: 0.66 GB/s per core).
    pub verify: bool,
}

type Shared = bytes::Bytes;

#[derive(Default)]
struct Uploads {
    /// Blocks not yet sent.
    batch: Vec<(Hash, BlockClass, Shared)>,
    batch_bytes: usize,
    /// Blocks not yet sent that the server is known to lack (a push asked
    /// first): sent without asking again.
    direct: Vec<(Hash, BlockClass, Shared)>,
    direct_bytes: usize,
    /// Bytes and batches sent and not yet acknowledged.
    in_flight_bytes: usize,
    in_flight: usize,
    /// Blocks added and not yet acknowledged: what `get` must still see.
    unacked: HashMap<Hash, Shared>,
    /// Blocks the server is known to hold.
    known: HashSet<Hash>,
    /// The first failure of a batch, reported by the next add or sync.
    error: Option<String>,
    /// Blocks (and bytes) reported new that were not.
    over_blocks: u64,
    over_bytes: u64,
    /// Blocks were added since the last sync.
    dirty: bool,
    /// Blocks were acknowledged since the last sync (not yet durable).
    acked_unsynced: bool,
    /// The link's count of server restarts as last seen.
    restarts_seen: u64,
}

struct Inner {
    link: Arc<Link>,
    kind: HashKind,
    /// Compress what is sent.
    compress: std::sync::atomic::AtomicBool,
    up: Mutex<Uploads>,
    up_cv: Condvar,
    pre: Prefetcher,
    /// Check blocks read against their hashes.
    verify: bool,
    /// Requests sent (every kind).
    requests: AtomicU64,
}

/// A store on a server.
pub struct StreamStore {
    inner: Arc<Inner>,
    rt: Option<tokio::runtime::Runtime>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl StreamStore {
    /// Connects to the server at `endpoint`.
    pub fn connect(endpoint: Endpoint, opts: StreamOptions) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("vt-client")
            .on_thread_start(super::block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the client runtime", e))?;
        let compress = opts.compress.unwrap_or(!endpoint.is_local());
        let mut lopts = opts.link;
        lopts.compress_replies = compress;
        let link = Link::connect(endpoint, lopts, rt.handle().clone())?;
        let w = link.welcome();
        let kind: HashKind = w.hash.parse().map_err(|_| {
            Error::Store(format!(
                "{}: the server hashes with {:?}, which this vt does not know",
                link.endpoint(),
                w.hash
            ))
        })?;
        Ok(StreamStore {
            inner: Arc::new(Inner {
                link,
                kind,
                compress: compress.into(),
                up: Mutex::default(),
                up_cv: Condvar::new(),
                pre: Prefetcher::new(opts.verify),
                verify: opts.verify,
                requests: AtomicU64::new(0),
            }),
            rt: Some(rt),
        })
    }

    /// The server's HELLO reply.
    pub fn welcome(&self) -> Welcome {
        self.inner.link.welcome()
    }

    /// Where the store is.
    pub fn endpoint(&self) -> &Endpoint {
        self.inner.link.endpoint()
    }

    /// Bytes sent to and received from the server so far.
    pub fn wire_bytes(&self) -> (u64, u64) {
        (
            self.inner.link.sent.load(Relaxed),
            self.inner.link.received.load(Relaxed),
        )
    }

    /// Compresses what is sent from now on (or not): a push always
    /// compresses, whatever the store's setting.
    pub fn set_compress(&self, on: bool) {
        self.inner.compress.store(on, Relaxed);
    }

    /// Of the reads so far: found prefetched and arrived, found on their
    /// way, not prefetched; and prefetch hints dropped over budget.
    pub fn prefetch_counts(&self) -> [u64; 4] {
        self.inner.pre.counts()
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Relaxed)
    }

    /// Connections made so far (more than one after reconnections).
    pub fn connections(&self) -> u64 {
        self.inner.link.connects.load(Relaxed)
    }

    /// Adds a block that [`StreamStore::want`] said the server lacks: it
    /// is sent without asking again (what a push does).
    pub fn add_lacking(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        self.add_queued(hash, data, class, true)
    }

    fn add_queued(
        &self,
        hash: &Hash,
        data: &[u8],
        class: BlockClass,
        lacking: bool,
    ) -> Result<bool> {
        let inner = &self.inner;
        let mut up = lock(&inner.up);
        inner.check_restart(&mut up);
        if let Some(e) = &up.error {
            return Err(Error::Store(e.clone()));
        }
        if up.known.contains(hash) || up.unacked.contains_key(hash) {
            return Ok(false);
        }
        while up.in_flight_bytes + up.batch_bytes + up.direct_bytes > IN_FLIGHT_BYTES
            && up.error.is_none()
        {
            up = inner.up_cv.wait(up).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(e) = &up.error {
            return Err(Error::Store(e.clone()));
        }
        let d: Shared = bytes::Bytes::copy_from_slice(data);
        up.dirty = true;
        up.unacked.insert(*hash, d.clone());
        if lacking {
            up.direct.push((*hash, class, d));
            up.direct_bytes += data.len();
            if up.direct_bytes >= BATCH_BYTES || up.direct.len() >= MAX_BATCH {
                inner.dispatch_direct_locked(&mut up);
            }
        } else {
            up.batch.push((*hash, class, d));
            up.batch_bytes += data.len();
            if up.batch_bytes >= BATCH_BYTES || up.batch.len() >= MAX_BATCH {
                inner.dispatch_locked(&mut up);
            }
        }
        Ok(true)
    }

    /// Which of `hashes` the server lacks (indices), asking in batches of
    /// [`MAX_BATCH`], all in flight at once.
    pub fn want(&self, hashes: &[Hash]) -> Result<Vec<usize>> {
        let rxs: Vec<_> = hashes
            .chunks(MAX_BATCH)
            .map(|c| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.inner
                    .send(&Request::Want(c.to_vec()), Completion::Wait(tx));
                rx
            })
            .collect();
        let mut out = Vec::new();
        for (k, rx) in rxs.into_iter().enumerate() {
            let r = rx
                .blocking_recv()
                .map_err(|_| Error::Store("the client stopped".into()))??;
            let Reply::Wanted(idx) = r else {
                return Err(self.inner.odd("WANT"));
            };
            let base = k * MAX_BATCH;
            let n = hashes.len().min(base + MAX_BATCH) - base;
            for i in idx {
                let i = i as usize;
                if i >= n {
                    return Err(self.inner.odd("WANT"));
                }
                out.push(base + i);
            }
        }
        Ok(out)
    }
}

impl Inner {
    fn send(&self, req: &Request, done: Completion) {
        self.requests.fetch_add(1, Relaxed);
        self.link.send(req, self.compress.load(Relaxed), done);
    }

    fn call(&self, req: &Request) -> Result<Reply> {
        self.requests.fetch_add(1, Relaxed);
        self.link.call(req, self.compress.load(Relaxed))
    }

    fn odd(&self, what: &str) -> Error {
        Error::Store(format!(
            "{}: unexpected reply to {what}",
            self.link.endpoint()
        ))
    }

    /// Sends the current batches, if any (the caller holds `up`).
    fn dispatch_locked(self: &Arc<Self>, up: &mut Uploads) {
        self.dispatch_direct_locked(up);
        if up.batch.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut up.batch);
        let bytes = std::mem::take(&mut up.batch_bytes);
        up.in_flight += 1;
        up.in_flight_bytes += bytes;
        let hashes: Vec<Hash> = batch.iter().map(|b| b.0).collect();
        let me = self.clone();
        self.send(
            &Request::Want(hashes),
            Completion::Then(Box::new(move |r| me.wanted(batch, bytes, r))),
        );
    }

    /// Sends the batch of blocks known to be lacking, if any.
    fn dispatch_direct_locked(self: &Arc<Self>, up: &mut Uploads) {
        if up.direct.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut up.direct);
        let bytes = std::mem::take(&mut up.direct_bytes);
        up.in_flight += 1;
        up.in_flight_bytes += bytes;
        self.clone().send_batch(batch, bytes);
    }

    /// The server said which blocks of a batch it lacks: send those.
    fn wanted(
        self: Arc<Self>,
        batch: Vec<(Hash, BlockClass, Shared)>,
        bytes: usize,
        r: Result<Reply>,
    ) {
        let idx = match r {
            Ok(Reply::Wanted(idx)) => idx,
            Ok(_) => return self.batch_done(&batch, bytes, Err(self.odd("WANT").to_string())),
            Err(e) => return self.batch_done(&batch, bytes, Err(e.to_string())),
        };
        let mut want = vec![false; batch.len()];
        for i in idx {
            if let Some(w) = want.get_mut(i as usize) {
                *w = true;
            }
        }
        {
            let mut up = lock(&self.up);
            for ((h, _, d), w) in batch.iter().zip(&want) {
                if !*w {
                    up.over_blocks += 1;
                    up.over_bytes += d.len() as u64;
                    up.unacked.remove(h);
                    remember(&mut up.known, *h);
                }
            }
        }
        if !want.iter().any(|&w| w) {
            return self.batch_done(&[], bytes, Ok(Vec::new()));
        }
        let sent: Vec<(Hash, BlockClass, Shared)> = batch
            .into_iter()
            .zip(want)
            .filter_map(|(b, w)| w.then_some(b))
            .collect();
        self.send_batch(sent, bytes);
    }

    /// Sends blocks with ADD-BATCH; `bytes` is what they hold against
    /// [`IN_FLIGHT_BYTES`] until acknowledged.
    fn send_batch(self: Arc<Self>, sent: Vec<(Hash, BlockClass, Shared)>, bytes: usize) {
        // Encoding (and compressing) a batch is work: not on the reader.
        let me = self.clone();
        self.link.runtime().spawn_blocking(move || {
            let req = Request::AddBatch(
                sent.iter()
                    .map(|(h, c, d)| BatchBlock {
                        class: *c,
                        hash: *h,
                        data: d.clone(),
                    })
                    .collect(),
            );
            let me2 = me.clone();
            me.send(
                &req,
                Completion::Then(Box::new(move |r| {
                    let r = match r {
                        Ok(Reply::NewFlags(f)) if f.len() == sent.len() => Ok(f),
                        Ok(_) => Err(me2.odd("ADD-BATCH").to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    me2.batch_done(&sent, bytes, r)
                })),
            );
        });
    }

    /// A batch is acknowledged (with the new-flags of the blocks sent) or
    /// failed.
    fn batch_done(
        &self,
        sent: &[(Hash, BlockClass, Shared)],
        bytes: usize,
        r: std::result::Result<Vec<bool>, String>,
    ) {
        let mut up = lock(&self.up);
        match r {
            Ok(flags) => {
                up.acked_unsynced = true;
                for ((h, _, d), new) in sent.iter().zip(flags) {
                    if !new {
                        up.over_blocks += 1;
                        up.over_bytes += d.len() as u64;
                    }
                    up.unacked.remove(h);
                    remember(&mut up.known, *h);
                }
            }
            Err(e) => {
                for (h, _, _) in sent {
                    up.unacked.remove(h);
                }
                if up.error.is_none() {
                    up.error = Some(e);
                }
            }
        }
        up.in_flight -= 1;
        up.in_flight_bytes -= bytes;
        self.up_cv.notify_all();
    }

    /// A prefetched block arrived.
    fn prefetched(&self, h: Hash, r: Result<Reply>) {
        let r = match r {
            Ok(Reply::Data(d)) => Ok(Got::Plain(d)),
            Ok(Reply::Packed(b)) => Ok(Got::Packed(b)),
            Ok(_) => Err(self.odd("GET").to_string()),
            Err(e) => Err(e.to_string()),
        };
        self.pre.arrived(h, r);
    }
}

impl Inner {
    /// Notices a server that restarted (a new instance behind a
    /// reconnection): blocks it acknowledged since the last sync may be
    /// gone, so the writes since then fail rather than record a snapshot
    /// that refers to them.
    fn check_restart(&self, up: &mut Uploads) {
        let r = self.link.restarts.load(Relaxed);
        if r == up.restarts_seen {
            return;
        }
        up.restarts_seen = r;
        if up.acked_unsynced {
            up.known.clear();
            up.error.get_or_insert_with(|| {
                format!(
                    "{} restarted: blocks it acknowledged since the last sync may be lost; nothing was recorded, run the command again",
                    self.link.endpoint()
                )
            });
        }
    }
}

fn remember(known: &mut HashSet<Hash>, h: Hash) {
    if known.len() >= KNOWN_MAX {
        known.clear();
    }
    known.insert(h);
}

impl Store for StreamStore {
    fn hash_kind(&self) -> HashKind {
        self.inner.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.add_hashed_as(hash, data, BlockClass::Data)
    }

    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        self.add_queued(hash, data, class, false)
    }

    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        let h = self.inner.kind.digest(data);
        let new = self.add_hashed_as(&h, data, class)?;
        Ok((h, new))
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        if let Some(d) = lock(&self.inner.up).unacked.get(hash) {
            return Ok(Some(d.to_vec()));
        }
        if let Some(r) = self.inner.pre.take(hash, self.endpoint()) {
            return r;
        }
        let reply = match self.inner.call(&Request::Get(*hash))? {
            Reply::Packed(b) => Reply::Data(
                unpack(&b).map_err(|e| Error::Store(format!("{}: {e}", self.endpoint())))?,
            ),
            r => r,
        };
        match reply {
            Reply::Data(Some(d)) => {
                if self.inner.verify && hash.kind.digest(&d) != *hash {
                    return Err(Error::Store(format!(
                        "{}: block {hash} came back with other data",
                        self.endpoint()
                    )));
                }
                Ok(Some(d))
            }
            Reply::Data(None) => Ok(None),
            _ => Err(self.inner.odd("GET")),
        }
    }

    fn prefetch(&self, hashes: &[Hash]) {
        let inner = &self.inner;
        let asks = {
            let up = lock(&inner.up);
            inner.pre.to_ask(hashes, |h| up.unacked.contains_key(h))
        };
        for h in asks {
            let me = self.inner.clone();
            inner.send(
                &Request::Get(h),
                Completion::Then(Box::new(move |r| me.prefetched(h, r))),
            );
        }
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        {
            let up = lock(&self.inner.up);
            if up.known.contains(hash) || up.unacked.contains_key(hash) {
                return Ok(true);
            }
        }
        match self.inner.call(&Request::Contains(*hash))? {
            Reply::Flag(b) => Ok(b),
            _ => Err(self.inner.odd("CONTAINS")),
        }
    }

    fn sync(&self) -> Result<()> {
        let inner = &self.inner;
        {
            let mut up = lock(&inner.up);
            inner.dispatch_locked(&mut up);
            while up.in_flight > 0 {
                up = inner.up_cv.wait(up).unwrap_or_else(|e| e.into_inner());
            }
            inner.check_restart(&mut up);
            if let Some(e) = up.error.take() {
                up.acked_unsynced = false;
                return Err(Error::Store(format!("blocks were not stored: {e}")));
            }
            up.dirty = false;
        }
        match inner.call(&Request::Sync)? {
            Reply::Done => {}
            _ => return Err(inner.odd("SYNC")),
        }
        // The SYNC must have reached the run of the server that took the
        // blocks.
        let mut up = lock(&inner.up);
        inner.check_restart(&mut up);
        if let Some(e) = up.error.take() {
            up.acked_unsynced = false;
            return Err(Error::Store(format!("blocks were not stored: {e}")));
        }
        up.acked_unsynced = false;
        Ok(())
    }

    fn stats(&self) -> Result<StoreStats> {
        match self.inner.call(&Request::Stats)? {
            Reply::Stats(s) => Ok(s.into()),
            _ => Err(self.inner.odd("STATS")),
        }
    }

    fn overcounted(&self) -> (u64, u64) {
        let up = lock(&self.inner.up);
        (up.over_blocks, up.over_bytes)
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        match self.inner.call(&Request::Archives)? {
            Reply::Names(n) => Ok(n),
            _ => Err(self.inner.odd("ARCHIVES")),
        }
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.call(&Request::ArchiveRead(name.to_owned()))? {
            Reply::Text(t) => Ok(t),
            _ => Err(self.inner.odd("ARCHIVE-READ")),
        }
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        vt_core::archive::check_lines(lines)?;
        let req = Request::ArchiveAppend {
            name: name.to_owned(),
            lines: lines.to_vec(),
        };
        for _ in 0..3 {
            match self.inner.call(&req) {
                Ok(Reply::Done) => return Ok(()),
                Ok(_) => return Err(self.inner.odd("ARCHIVE-APPEND")),
                // The connection was lost with the append in flight: it may
                // or may not have been done. Look before doing it again.
                Err(e) if e.to_string().contains("connection lost") => {
                    let text = self.archive_read(name)?.unwrap_or_default();
                    if text.ends_with(lines) {
                        return Ok(());
                    }
                    tracing::warn!("{e}; appending again");
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Store(format!(
            "{}: cannot append to archive {name}: the connection keeps failing",
            self.endpoint()
        )))
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        vt_core::archive::check_lines(text)?;
        match self.inner.call(&Request::ArchiveReplace {
            name: name.to_owned(),
            text: text.to_vec(),
        })? {
            Reply::Done => Ok(()),
            _ => Err(self.inner.odd("ARCHIVE-REPLACE")),
        }
    }
}

impl Drop for StreamStore {
    fn drop(&mut self) {
        let dirty = lock(&self.inner.up).dirty;
        if let Err(e) = if dirty { self.sync() } else { Ok(()) } {
            tracing::warn!("{}: final sync failed: {e}", self.endpoint());
        }
        self.inner.link.close();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "unix",
        summary: "a vt serve over a UNIX socket",
        settings: &["path", "export", "token_file", "compress", "verify"],
        order: 2,
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "tcp",
        summary: "a vt serve over TCP",
        settings: &["address", "export", "token_file", "compress", "verify"],
        order: 3,
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "tls",
        summary: "a vt serve over TLS",
        settings: &["address", "ca", "export", "token_file", "compress", "verify"],
        order: 4,
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "command",
        summary: "a vt serve --stdio run as a command (ssh host vt serve --stdio)",
        settings: &["command", "export", "token_file", "compress", "verify"],
        order: 5,
    }
}
