//! The stream protocol's server side: `vt serve`.
//!
//! Each connection has a reader that splits frames off the byte stream and
//! a writer that sends replies in whatever order they are ready. Store
//! work runs on blocking threads (at most a few per core at once, shared
//! by all connections). A connection may have [`ServeOptions::in_flight`]
//! requests unanswered (enough to fill a long path: a thousand blocks per
//! round trip), and at most [`MAX_BACKLOG`] bytes of replies waiting to
//! be sent; past either its reader stops reading, so a client that never
//! reads its replies holds only its own connection up, and a server's
//! memory is bounded per connection.
//!
//! Bad input costs the connection at most: an unknown operation, a
//! malformed body or a version mismatch is an error reply; a frame that
//! cannot be delimited (a length past [`MAX_FRAME`]) ends the connection
//! after an error reply with tag 0.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use vt_core::{Error, HashKind, Store};

use super::frame::{Frame, FrameBuf, KNOWN_FLAGS, MAX_FRAME};
use super::protocol::{
    error_frames, packed_body, BatchBlock, DecodeError, Hello, Op, Reply, Request, Welcome, VERSION,
};
use super::transport::{ReadHalf, WriteHalf};
use super::workers::Workers;

/// One store a server exports, by name.
#[derive(Clone)]
pub struct Export {
    /// The name clients ask for.
    pub name: String,
    /// The store.
    pub store: Arc<dyn Store>,
}

/// What a server allows and how much it takes on.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Refuse every write.
    pub read_only: bool,
    /// Refuse archive rewrites (appends are allowed).
    pub append_only: bool,
    /// The token clients must present in HELLO.
    pub token: Option<String>,
    /// Requests one connection may have unanswered.
    pub in_flight: usize,
    /// Connections served at once; more are closed at once.
    pub max_connections: usize,
    /// The server's name in HELLO replies and messages.
    pub name: String,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            read_only: false,
            append_only: false,
            token: None,
            in_flight: 1024,
            max_connections: 1024,
            name: format!("vt {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// Where a server takes connections.
pub enum Listener {
    /// A bound UNIX socket.
    Unix(std::os::unix::net::UnixListener),
    /// A bound TCP socket, with TLS when a configuration is given.
    Tcp(std::net::TcpListener, Option<Arc<rustls::ServerConfig>>),
    /// Standard input and output: one connection, and the server ends
    /// when it does (`ssh host vt serve --stdio`).
    Stdio,
}

/// Counters of what a server did.
#[derive(Debug, Default)]
pub struct ServerCounters {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicUsize,
    /// Requests answered.
    pub requests: AtomicU64,
    /// Bytes read from clients.
    pub bytes_in: AtomicU64,
    /// Bytes written to clients.
    pub bytes_out: AtomicU64,
}

/// A stream protocol server over a set of exports.
pub struct Server {
    exports: Vec<Export>,
    opts: ServeOptions,
    /// The threads that run store work, for all connections.
    workers: Workers,
    /// This run's identity (see [`Welcome::instance`]).
    instance: String,
    /// What the server did.
    pub counters: ServerCounters,
}

/// Stops a running server: requests in flight finish, replies are sent,
/// exports are synced.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Shutdown {
    /// A handle not yet triggered.
    pub fn new() -> Self {
        Shutdown(Arc::new(watch::channel(false).0))
    }

    /// Asks the server to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            // The handle is gone: nobody can stop us any more.
            std::future::pending::<()>().await;
        }
    }
}

/// One frame from `rd`, buffering in `buf`: `Ok(None)` at a clean end of
/// stream, an error on a malformed or cut-off frame.
async fn read_frame(
    rd: &mut (impl AsyncRead + Unpin),
    buf: &mut FrameBuf,
    counters: &ServerCounters,
) -> vt_core::Result<Option<Frame>> {
    loop {
        if let Some(f) = buf.next_frame()? {
            return Ok(Some(f));
        }
        let got = rd
            .read_buf(buf.space(64 << 10))
            .await
            .map_err(|e| Error::io("read from client", e))?;
        if got == 0 {
            return if buf.pending() == 0 {
                Ok(None)
            } else {
                Err(Error::decode(
                    "stream frame",
                    "connection closed inside a frame",
                ))
            };
        }
        counters.bytes_in.fetch_add(got as u64, Relaxed);
    }
}

/// A reply on its way to the writer, with the permit it frees once sent.
type Outgoing = (Vec<Frame>, Option<OwnedSemaphorePermit>);

/// Bytes of replies a connection may have waiting to be sent before its
/// reader stops reading requests.
pub const MAX_BACKLOG: usize = 32 << 20;

/// Replies built but not yet written, for one connection.
#[derive(Default)]
struct Backlog {
    bytes: AtomicUsize,
    drained: tokio::sync::Notify,
}

impl Backlog {
    /// Queues `frames` for the writer, counting their bytes.
    fn send(
        &self,
        tx: &mpsc::UnboundedSender<Outgoing>,
        frames: Vec<Frame>,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let n: usize = frames.iter().map(|f| f.body.len() + 16).sum();
        self.bytes.fetch_add(n, Relaxed);
        if tx.send((frames, permit)).is_err() {
            self.bytes.fetch_sub(n, Relaxed);
        }
    }
}

struct Conn {
    peer: String,
    /// The export each open channel uses (channel 0 after HELLO).
    channels: HashMap<u64, usize>,
    next_channel: u64,
    compress: bool,
    /// The client takes blocks as their store keeps them ([`Reply::Packed`]).
    packed: bool,
    /// Exports this connection added to, synced when it ends.
    wrote: Vec<bool>,
}

impl Server {
    /// A server of `exports` (the first is the default).
    pub fn new(exports: Vec<Export>, opts: ServeOptions) -> vt_core::Result<Self> {
        if exports.is_empty() {
            return Err(Error::Store("a server needs at least one export".into()));
        }
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Server {
            exports,
            opts,
            workers: Workers::new((2 * cores).clamp(4, 16), "vt-store")
                .map_err(|e| Error::io("start the server's store threads", e))?,
            instance: uuid::Uuid::new_v4().to_string(),
            counters: ServerCounters::default(),
        })
    }

    /// The exports' names.
    pub fn export_names(&self) -> Vec<String> {
        self.exports.iter().map(|e| e.name.clone()).collect()
    }

    /// Serves `listeners` until `shutdown` is triggered (or, for
    /// [`Listener::Stdio`], the one connection ends); then lets requests
    /// in flight finish and syncs every export.
    pub fn run(
        self: &Arc<Self>,
        listeners: Vec<Listener>,
        shutdown: Shutdown,
    ) -> vt_core::Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("vt-serve")
            .on_thread_start(super::block_sigpipe)
            .enable_all()
            .build()
            .map_err(|e| Error::io("start the server runtime", e))?;
        let srv = self.clone();
        rt.block_on(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for l in listeners {
                let srv = srv.clone();
                let sd = shutdown.clone();
                match l {
                    Listener::Unix(l) => {
                        l.set_nonblocking(true)
                            .map_err(|e| Error::io("listen on the UNIX socket", e))?;
                        let l = tokio::net::UnixListener::from_std(l)
                            .map_err(|e| Error::io("listen on the UNIX socket", e))?;
                        tasks.spawn(async move { srv.accept_unix(l, sd).await });
                    }
                    Listener::Tcp(l, tls) => {
                        l.set_nonblocking(true)
                            .map_err(|e| Error::io("listen on TCP", e))?;
                        let l = tokio::net::TcpListener::from_std(l)
                            .map_err(|e| Error::io("listen on TCP", e))?;
                        tasks.spawn(async move { srv.accept_tcp(l, tls, sd).await });
                    }
                    Listener::Stdio => {
                        tasks.spawn(async move {
                            let rd: ReadHalf = Box::new(tokio::io::stdin());
                            let wr: WriteHalf = Box::new(tokio::io::stdout());
                            srv.clone()
                                .connection(rd, wr, "stdio".into(), sd.subscribe())
                                .await;
                            sd.trigger();
                        });
                    }
                }
            }
            stopped(shutdown.subscribe()).await;
            // Connections see the shutdown too; wait for them to finish.
            while tasks.join_next().await.is_some() {}
            while srv.counters.open.load(Relaxed) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            let exports = srv.exports.clone();
            tokio::task::spawn_blocking(move || {
                for e in &exports {
                    e.store.sync()?;
                }
                Ok::<(), Error>(())
            })
            .await
            .map_err(|e| Error::Store(format!("sync at shutdown: {e}")))??;
            Ok(())
        })
    }

    async fn accept_unix(self: Arc<Self>, l: tokio::net::UnixListener, sd: Shutdown) {
        let stop = sd.subscribe();
        loop {
            let accepted = tokio::select! {
                _ = stopped(stop.clone()) => return,
                a = l.accept() => a,
            };
            match accepted {
                Ok((s, _)) => {
                    let (rd, wr) = s.into_split();
                    self.spawn_connection(Box::new(rd), Box::new(wr), "unix".into(), &sd);
                }
                Err(e) => {
                    tracing::warn!("accept on the UNIX socket: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn accept_tcp(
        self: Arc<Self>,
        l: tokio::net::TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        sd: Shutdown,
    ) {
        let stop = sd.subscribe();
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        loop {
            let accepted = tokio::select! {
                _ = stopped(stop.clone()) => return,
                a = l.accept() => a,
            };
            let (s, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept on TCP: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
            let peer = addr.to_string();
            match &acceptor {
                None => {
                    let (rd, wr) = s.into_split();
                    self.spawn_connection(Box::new(rd), Box::new(wr), peer, &sd);
                }
                Some(acc) => {
                    let acc = acc.clone();
                    let srv = self.clone();
                    let sd = sd.clone();
                    tokio::spawn(async move {
                        let hs =
                            tokio::time::timeout(std::time::Duration::from_secs(10), acc.accept(s))
                                .await;
                        match hs {
                            Ok(Ok(t)) => {
                                let (rd, wr) = tokio::io::split(t);
                                srv.spawn_connection(Box::new(rd), Box::new(wr), peer, &sd);
                            }
                            Ok(Err(e)) => tracing::warn!("{peer}: TLS handshake failed: {e}"),
                            Err(_) => tracing::warn!("{peer}: TLS handshake timed out"),
                        }
                    });
                }
            }
        }
    }

    fn spawn_connection(
        self: &Arc<Self>,
        rd: ReadHalf,
        wr: WriteHalf,
        peer: String,
        sd: &Shutdown,
    ) {
        if self.counters.open.load(Relaxed) >= self.opts.max_connections {
            tracing::warn!(
                "{peer}: refused: {} connections open",
                self.opts.max_connections
            );
            return;
        }
        let srv = self.clone();
        let stop = sd.subscribe();
        tokio::spawn(async move { srv.connection(rd, wr, peer, stop).await });
    }

    /// Serves one connection until it ends or the server stops.
    pub async fn connection(
        self: Arc<Self>,
        mut rd: ReadHalf,
        wr: WriteHalf,
        peer: String,
        stop: watch::Receiver<bool>,
    ) {
        self.counters.connections.fetch_add(1, Relaxed);
        self.counters.open.fetch_add(1, Relaxed);
        tracing::info!("{peer}: connected");
        let (tx, rx) = mpsc::unbounded_channel::<Outgoing>();
        let backlog = Arc::new(Backlog::default());
        let writer = tokio::spawn(write_replies(wr, rx, self.clone(), backlog.clone()));
        let slots = Arc::new(Semaphore::new(self.opts.in_flight));
        let mut conn = Conn {
            peer,
            channels: HashMap::new(),
            next_channel: 1,
            compress: false,
            packed: false,
            wrote: vec![false; self.exports.len()],
        };
        let mut buf = FrameBuf::new();
        'serve: loop {
            // Too many replies waiting for a client that does not read:
            // read no more requests until they are sent.
            loop {
                let drained = backlog.drained.notified();
                if backlog.bytes.load(Relaxed) <= MAX_BACKLOG {
                    break;
                }
                tokio::select! {
                    _ = stopped(stop.clone()) => break 'serve,
                    _ = drained => {}
                }
            }
            let permit = tokio::select! {
                _ = stopped(stop.clone()) => break,
                p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let frame = tokio::select! {
                _ = stopped(stop.clone()) => break,
                f = read_frame(&mut rd, &mut buf, &self.counters) => f,
            };
            let frame = match frame {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("{}: {e}; closing the connection", conn.peer);
                    backlog.send(
                        &tx,
                        error_frames(0, 0, "malformed", &format!("{e}; closing the connection")),
                        Some(permit),
                    );
                    break;
                }
            };
            if !self.dispatch(&mut conn, frame, permit, &tx, &backlog) {
                break;
            }
        }
        // Let the requests in flight finish and their replies go out.
        let _ = slots.acquire_many(self.opts.in_flight as u32).await;
        drop(tx);
        let _ = writer.await;
        let written: Vec<Arc<dyn Store>> = conn
            .wrote
            .iter()
            .zip(&self.exports)
            .filter(|(w, _)| **w)
            .map(|(_, e)| e.store.clone())
            .collect();
        if !written.is_empty() {
            let peer = conn.peer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for s in written {
                    if let Err(e) = s.sync() {
                        tracing::warn!("{peer}: sync after the connection ended: {e}");
                    }
                }
            })
            .await;
        }
        tracing::info!("{}: disconnected", conn.peer);
        self.counters.open.fetch_sub(1, Relaxed);
    }

    /// Handles one request frame; false ends the connection.
    fn dispatch(
        self: &Arc<Self>,
        conn: &mut Conn,
        f: Frame,
        permit: OwnedSemaphorePermit,
        tx: &mpsc::UnboundedSender<Outgoing>,
        backlog: &Arc<Backlog>,
    ) -> bool {
        let (tag, channel) = (f.tag, f.channel);
        let fail = |kind: &str, msg: &str| {
            backlog.send(tx, error_frames(tag, channel, kind, msg), None);
        };
        let reply = |r: Reply, compress: bool| match r.to_frames(tag, channel, compress) {
            Ok(fr) => backlog.send(tx, fr, None),
            Err(e) => fail("store", &e.to_string()),
        };
        self.counters.requests.fetch_add(1, Relaxed);
        if f.flags & !KNOWN_FLAGS != 0 {
            fail(
                "malformed",
                &format!("unknown flags {:#x}", f.flags & !KNOWN_FLAGS),
            );
            return true;
        }
        let req = match Request::from_frame(&f) {
            Ok(r) => r,
            Err(DecodeError::UnknownOp(n)) => {
                fail(
                    "unknown-op",
                    &format!(
                        "unknown operation {n} (this server speaks protocol version {VERSION})"
                    ),
                );
                return true;
            }
            Err(DecodeError::Malformed(e)) => {
                fail("malformed", &e.to_string());
                return true;
            }
        };
        drop(f);
        match req {
            Request::Hello(h) => return self.hello(conn, h, channel, &fail, &reply),
            Request::ChannelOpen(c) => {
                if !conn.channels.contains_key(&0) {
                    fail("hello", "say HELLO first");
                    return true;
                }
                match self.export_index(c.export.as_deref()) {
                    Ok(i) => {
                        let id = conn.next_channel;
                        conn.next_channel += 1;
                        conn.channels.insert(id, i);
                        reply(Reply::Channel(id), false);
                    }
                    Err(m) => fail("export", &m),
                }
                return true;
            }
            Request::ChannelClose => {
                if channel == 0 || conn.channels.remove(&channel).is_none() {
                    fail("channel", &format!("channel {channel} cannot be closed"));
                } else {
                    reply(Reply::Done, false);
                }
                return true;
            }
            _ => {}
        }
        let Some(&ex) = conn.channels.get(&channel) else {
            if conn.channels.is_empty() {
                fail("hello", "say HELLO first");
            } else {
                fail("channel", &format!("no channel {channel} is open"));
            }
            return true;
        };
        let op = req.op();
        if op.writes() && self.opts.read_only {
            fail("read-only", &format!("{} is read-only", self.opts.name));
            return true;
        }
        if op == Op::ArchiveReplace && self.opts.append_only {
            fail(
                "append-only",
                &format!(
                    "{} is append-only: archive lines cannot be removed or rewritten",
                    self.opts.name
                ),
            );
            return true;
        }
        if op.writes() {
            conn.wrote[ex] = true;
        }
        let store = self.exports[ex].store.clone();
        let tx = tx.clone();
        let backlog = backlog.clone();
        let (compress, packed) = (conn.compress, conn.packed);
        self.workers.run(Box::new(move || {
            // A store that panics costs this request, not the server.
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                execute(&*store, req, packed)
            }));
            let frames = match done {
                Ok(Ok(r)) => r
                    .into_frames(tag, channel, compress)
                    .unwrap_or_else(|e| error_frames(tag, channel, "store", &e.to_string())),
                Ok(Err((kind, msg))) => error_frames(tag, channel, kind, &msg),
                Err(_) => error_frames(
                    tag,
                    channel,
                    "store",
                    "the request failed inside the server",
                ),
            };
            backlog.send(&tx, frames, Some(permit));
        }));
        true
    }

    fn hello(
        &self,
        conn: &mut Conn,
        h: Hello,
        channel: u64,
        fail: &dyn Fn(&str, &str),
        reply: &dyn Fn(Reply, bool),
    ) -> bool {
        if channel != 0 {
            fail("channel", "HELLO goes on channel 0");
            return true;
        }
        if h.version != VERSION {
            fail(
                "version",
                &format!(
                    "protocol version {} is not spoken here; {} speaks version {VERSION}",
                    h.version, self.opts.name
                ),
            );
            return true;
        }
        if let Some(t) = &self.opts.token {
            let given = h.token.as_deref().unwrap_or("");
            if !constant_time_eq(given.as_bytes(), t.as_bytes()) {
                tracing::warn!("{}: refused: wrong or missing token", conn.peer);
                fail("auth", "wrong or missing token");
                return false;
            }
        }
        let ex = match self.export_index(h.export.as_deref()) {
            Ok(i) => i,
            Err(m) => {
                fail("export", &m);
                return true;
            }
        };
        conn.channels.insert(0, ex);
        conn.compress = h.compress;
        conn.packed = h.packed;
        tracing::info!(
            "{}: hello from {:?}, export {}",
            conn.peer,
            h.client,
            self.exports[ex].name
        );
        reply(
            Reply::Welcome(Welcome {
                version: VERSION,
                server: self.opts.name.clone(),
                export: self.exports[ex].name.clone(),
                exports: self.export_names(),
                hash: self.exports[ex].store.hash_kind().name().into(),
                hashes: HashKind::ALL.iter().map(|k| k.name().to_owned()).collect(),
                read_only: self.opts.read_only,
                append_only: self.opts.append_only,
                max_frame: MAX_FRAME as u64,
                instance: self.instance.clone(),
            }),
            false,
        );
        true
    }

    fn export_index(&self, name: Option<&str>) -> Result<usize, String> {
        match name {
            None => Ok(0),
            Some(n) => self
                .exports
                .iter()
                .position(|e| e.name == n)
                .ok_or_else(|| {
                    format!(
                        "no export {n:?} (exports: {})",
                        self.export_names().join(", ")
                    )
                }),
        }
    }
}

/// Writes replies as they come, flushing whenever none is waiting.
async fn write_replies(
    mut wr: WriteHalf,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    srv: Arc<Server>,
    backlog: Arc<Backlog>,
) {
    let mut out = tokio::io::BufWriter::with_capacity(256 << 10, &mut wr);
    let mut failed = false;
    while let Some((frames, permit)) = rx.recv().await {
        let n: usize = frames.iter().map(|f| f.body.len() + 16).sum();
        if !failed {
            for f in frames {
                let head = f.header();
                srv.counters
                    .bytes_out
                    .fetch_add((head.len() + f.body.len()) as u64, Relaxed);
                if out.write_all(&head).await.is_err() || out.write_all(&f.body).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed && rx.is_empty() && out.flush().await.is_err() {
                failed = true;
            }
        }
        backlog.bytes.fetch_sub(n, Relaxed);
        backlog.drained.notify_one();
        drop(permit);
    }
    let _ = out.flush().await;
    let _ = wr.shutdown().await;
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

type Failure = (&'static str, String);

fn store_err(e: Error) -> Failure {
    match e {
        Error::Unsupported(m) => ("unsupported", m),
        Error::Decode { .. } => ("malformed", e.to_string()),
        e => ("store", e.to_string()),
    }
}

/// Checks that each block's data hashes to its hash: a client cannot
/// store anything under a wrong name.
fn check_hashes(blocks: &[BatchBlock]) -> Result<(), Failure> {
    for kind in HashKind::ALL {
        let of_kind: Vec<&BatchBlock> = blocks.iter().filter(|b| b.hash.kind == kind).collect();
        if of_kind.is_empty() {
            continue;
        }
        let data: Vec<&[u8]> = of_kind.iter().map(|b| &b.data[..]).collect();
        for (b, h) in of_kind.iter().zip(kind.digest_many(&data)) {
            if b.hash != h {
                return Err((
                    "malformed",
                    format!(
                        "block {} does not hash to its name (it hashes to {h})",
                        b.hash
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Runs one store request.
fn execute(store: &dyn Store, req: Request, packed: bool) -> Result<Reply, Failure> {
    Ok(match req {
        Request::Add { class, data } => {
            let (h, new) = store.add_as(&data, class).map_err(store_err)?;
            Reply::Added(h, new)
        }
        Request::AddHashed(b) => {
            check_hashes(std::slice::from_ref(&b))?;
            Reply::Flag(
                store
                    .add_hashed_as(&b.hash, &b.data, b.class)
                    .map_err(store_err)?,
            )
        }
        Request::AddBatch(blocks) => {
            check_hashes(&blocks)?;
            let mut flags = Vec::with_capacity(blocks.len());
            for b in &blocks {
                flags.push(
                    store
                        .add_hashed_as(&b.hash, &b.data, b.class)
                        .map_err(store_err)?,
                );
            }
            Reply::NewFlags(flags)
        }
        Request::Get(h) => {
            if packed {
                if let Some(frame) = store.get_packed(&h).map_err(store_err)? {
                    return Ok(Reply::Packed(packed_body(&frame)));
                }
            }
            Reply::Data(store.get_shared(&h).map_err(store_err)?.map(|b| b.to_vec()))
        }
        Request::Contains(h) => Reply::Flag(store.contains(&h).map_err(store_err)?),
        Request::Want(hs) => {
            let mut idx = Vec::new();
            for (i, h) in hs.iter().enumerate() {
                if !store.contains(h).map_err(store_err)? {
                    idx.push(i as u32);
                }
            }
            Reply::Wanted(idx)
        }
        Request::Sync => {
            store.sync().map_err(store_err)?;
            Reply::Done
        }
        Request::Stats => Reply::Stats(store.stats().map_err(store_err)?.into()),
        Request::Archives => Reply::Names(store.archive_names().map_err(store_err)?),
        Request::ArchiveRead(n) => Reply::Text(store.archive_read(&n).map_err(store_err)?),
        Request::ArchiveAppend { name, lines } => {
            store.archive_append(&name, &lines).map_err(store_err)?;
            Reply::Done
        }
        Request::ArchiveReplace { name, text } => {
            store.archive_replace(&name, &text).map_err(store_err)?;
            Reply::Done
        }
        Request::Hello(_) | Request::ChannelOpen(_) | Request::ChannelClose => {
            return Err(("malformed", "not a store request".into()))
        }
    })
}
