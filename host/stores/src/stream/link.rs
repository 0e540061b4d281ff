//! A client's connection to a server, kept up: requests are tagged and
//! pipelined (any number in flight, from any thread), replies are matched
//! to them by tag in whatever order they come, and a lost connection is
//! made again (with growing pauses, so a flapping server is not hammered)
//! and the requests still unanswered are sent again when that is safe.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Notify};
use vt_core::{Error, Result};

use super::frame::{split_frame, Frame, FrameBuf, FLAG_MORE};
use super::protocol::{Hello, Op, RemoteError, Reply, Request, Welcome, MAX_REPLY, VERSION};
use super::transport::{Endpoint, Transport};

/// What a reply does when it comes.
pub enum Completion {
    /// Wakes a waiting caller.
    Wait(oneshot::Sender<Result<Reply>>),
    /// Runs on the connection's reader: must be quick.
    Then(Box<dyn FnOnce(Result<Reply>) + Send>),
}

impl Completion {
    fn complete(self, r: Result<Reply>) {
        match self {
            Completion::Wait(tx) => {
                let _ = tx.send(r);
            }
            Completion::Then(f) => f(r),
        }
    }
}

struct Pending {
    op: Op,
    /// The frame, to send again after a reconnection.
    wire: Arc<Frame>,
    /// Parts of a reply sent in several frames.
    parts: Vec<u8>,
    first_flags: Option<u64>,
    done: Completion,
}

/// Options of a client connection.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// The export to use (default: the server's default).
    pub export: Option<String>,
    /// The token to present.
    pub token: Option<String>,
    /// Ask the server to compress what it sends.
    pub compress_replies: bool,
    /// How long to keep trying to reconnect before failing the requests.
    pub reconnect_for: Duration,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            export: None,
            token: None,
            compress_replies: false,
            reconnect_for: Duration::from_secs(30),
        }
    }
}

struct State {
    /// Sends frame bytes to the current connection's writer.
    tx: Option<mpsc::UnboundedSender<Arc<Frame>>>,
    pending: BTreeMap<u64, Pending>,
    /// Why the link gave up, until a request asks it to try again.
    broken: Option<String>,
}

/// A kept-up connection to one server.
pub struct Link {
    endpoint: Endpoint,
    opts: LinkOptions,
    rt: tokio::runtime::Handle,
    state: Mutex<State>,
    next_tag: AtomicU64,
    /// Wakes the supervisor to reconnect after it gave up.
    kick: Notify,
    welcome: Mutex<Welcome>,
    closing: AtomicBool,
    /// Set when the link is closed, so its reader stops.
    stop: tokio::sync::watch::Sender<bool>,
    /// Bytes written to and read from the server, over all connections.
    pub sent: AtomicU64,
    /// See [`Link::sent`].
    pub received: AtomicU64,
    /// Connections made (1 + reconnections).
    pub connects: AtomicU64,
    /// Reconnections that found a new run of the server.
    pub restarts: AtomicU64,
}

fn lost(endpoint: &Endpoint, why: &str) -> Error {
    Error::Store(format!("{endpoint}: connection lost: {why}"))
}

fn remote(endpoint: &Endpoint, e: RemoteError) -> Error {
    match e.kind.as_str() {
        "unsupported" => Error::Unsupported(e.message),
        _ => Error::Store(format!("{endpoint}: {}", e.message)),
    }
}

impl Link {
    /// Connects to `endpoint` and says HELLO, running on `rt` (which the
    /// caller keeps, and shuts down after [`Link::close`]); fails at once
    /// if the first connection fails (a wrong address should not look
    /// like a hang).
    pub fn connect(
        endpoint: Endpoint,
        opts: LinkOptions,
        rt: tokio::runtime::Handle,
    ) -> Result<Arc<Link>> {
        let link = Arc::new(Link {
            endpoint,
            opts,
            rt,
            state: Mutex::new(State {
                tx: None,
                pending: BTreeMap::new(),
                broken: None,
            }),
            next_tag: AtomicU64::new(1),
            kick: Notify::new(),
            welcome: Mutex::new(Welcome::default()),
            closing: AtomicBool::new(false),
            stop: tokio::sync::watch::channel(false).0,
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        });
        // Connect on a runtime thread (they block SIGPIPE), not this one.
        let l = link.clone();
        let first = link
            .rt
            .block_on(link.rt.spawn(async move { l.open().await }))
            .map_err(|e| Error::Store(format!("connect: {e}")))??;
        let l = link.clone();
        link.rt.spawn(async move { l.supervise(first).await });
        Ok(link)
    }

    /// The server's HELLO reply.
    pub fn welcome(&self) -> Welcome {
        self.welcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Where the link goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The runtime the link runs on, for work that must not hold up its
    /// reader.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.rt
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request; `done` runs when its reply comes (or the link
    /// fails it).
    pub fn send(&self, req: &Request, compress: bool, done: Completion) {
        let tag = self.next_tag.fetch_add(1, Relaxed);
        let wire = match req.to_frame(tag, 0, compress) {
            Ok(f) => Arc::new(f),
            Err(e) => return done.complete(Err(e)),
        };
        let mut st = self.lock();
        if let Some(why) = st.broken.take() {
            // Fail this one, but let the next request try again.
            drop(st);
            self.kick.notify_one();
            return done.complete(Err(lost(&self.endpoint, &why)));
        }
        if let Some(tx) = &st.tx {
            let _ = tx.send(wire.clone());
        }
        st.pending.insert(
            tag,
            Pending {
                op: req.op(),
                wire,
                parts: Vec::new(),
                first_flags: None,
                done,
            },
        );
    }

    /// Sends a request and waits for its reply.
    pub fn call(&self, req: &Request, compress: bool) -> Result<Reply> {
        let (tx, rx) = oneshot::channel();
        self.send(req, compress, Completion::Wait(tx));
        rx.blocking_recv()
            .map_err(|_| lost(&self.endpoint, "the client stopped"))?
    }

    /// Connects and says HELLO.
    async fn open(&self) -> Result<Transport> {
        let mut t = self.endpoint.connect().await?;
        let hello = Request::Hello(Hello {
            version: VERSION,
            client: format!("vt {}", env!("CARGO_PKG_VERSION")),
            export: self.opts.export.clone(),
            token: self.opts.token.clone(),
            compress: self.opts.compress_replies,
            packed: true,
        });
        let wire = hello.to_frame(0, 0, false)?.encode();
        let io = |e| Error::io(format!("say hello to {}", self.endpoint), e);
        t.wr.write_all(&wire).await.map_err(io)?;
        t.wr.flush().await.map_err(io)?;
        let mut buf = Vec::new();
        let f = loop {
            if let Some((f, n)) = split_frame(&buf)? {
                buf.drain(..n);
                break f;
            }
            let mut chunk = [0u8; 4096];
            let got = tokio::time::timeout(Duration::from_secs(60), t.rd.read(&mut chunk))
                .await
                .map_err(|_| lost(&self.endpoint, "no reply to HELLO in 60 s"))?
                .map_err(io)?;
            if got == 0 {
                return Err(lost(
                    &self.endpoint,
                    "closed before replying to HELLO (is it a vt server?)",
                ));
            }
            buf.extend_from_slice(&chunk[..got]);
        };
        if !buf.is_empty() || f.tag != 0 {
            return Err(lost(&self.endpoint, "unexpected frames after HELLO"));
        }
        match Reply::decode(Op::Hello, f.flags, &f.body) {
            Ok(Reply::Welcome(w)) => {
                let mut old = self.welcome.lock().unwrap_or_else(|e| e.into_inner());
                if self.connects.load(Relaxed) > 0 && old.instance != w.instance {
                    tracing::warn!(
                        "{}: the server restarted; what was added since the last sync may be lost",
                        self.endpoint
                    );
                    self.restarts.fetch_add(1, Relaxed);
                }
                *old = w;
            }
            Ok(_) => return Err(lost(&self.endpoint, "odd reply to HELLO")),
            Err(e) => {
                return Err(Error::Store(format!(
                    "{} refused the connection: {}",
                    self.endpoint, e.message
                )))
            }
        }
        self.connects.fetch_add(1, Relaxed);
        Ok(t)
    }

    /// Runs connections one after another for as long as the link lives.
    async fn supervise(self: Arc<Self>, first: Transport) {
        let mut t = Some(first);
        let mut pause = Duration::from_millis(100);
        loop {
            let conn = match t.take() {
                Some(c) => c,
                None => match self.reconnect(&mut pause).await {
                    Some(c) => c,
                    None => {
                        self.kick.notified().await;
                        if self.closing.load(Relaxed) {
                            return;
                        }
                        continue;
                    }
                },
            };
            let started = Instant::now();
            let why = self.run(conn).await;
            if self.closing.load(Relaxed) {
                return;
            }
            tracing::warn!("{}: connection lost ({why}); reconnecting", self.endpoint);
            // Requests that must not be sent twice fail now.
            let mut st = self.lock();
            st.tx = None;
            let unsafe_tags: Vec<u64> = st
                .pending
                .iter()
                .filter(|(_, p)| !p.op.idempotent())
                .map(|(t, _)| *t)
                .collect();
            let failed: Vec<Pending> = unsafe_tags
                .iter()
                .filter_map(|t| st.pending.remove(t))
                .collect();
            for p in st.pending.values_mut() {
                p.parts.clear();
                p.first_flags = None;
            }
            drop(st);
            for p in failed {
                p.done.complete(Err(lost(&self.endpoint, &why)));
            }
            // A connection that lived long resets the pause; one that died
            // at once makes the next pause longer.
            if started.elapsed() > Duration::from_secs(10) {
                pause = Duration::from_millis(100);
            }
        }
    }

    /// Tries to connect again until `reconnect_for` has passed; on giving
    /// up fails every pending request.
    async fn reconnect(&self, pause: &mut Duration) -> Option<Transport> {
        let start = Instant::now();
        loop {
            tokio::time::sleep(*pause).await;
            *pause = (*pause * 2).min(Duration::from_secs(5));
            match self.open().await {
                Ok(t) => {
                    tracing::info!("{}: reconnected", self.endpoint);
                    return Some(t);
                }
                Err(e) => {
                    let fatal = e.to_string().contains("refused the connection");
                    if fatal || start.elapsed() >= self.opts.reconnect_for {
                        let why = e.to_string();
                        let mut st = self.lock();
                        let failed = std::mem::take(&mut st.pending);
                        st.broken = Some(why.clone());
                        drop(st);
                        for p in failed.into_values() {
                            p.done.complete(Err(lost(&self.endpoint, &why)));
                        }
                        return None;
                    }
                    tracing::warn!("{}: reconnecting: {e}", self.endpoint);
                }
            }
        }
    }

    /// Serves one connection: (re)sends what is pending, then reads
    /// replies until the connection fails; returns why.
    async fn run(self: &Arc<Self>, t: Transport) -> String {
        let Transport { mut rd, wr, child } = t;
        let (tx, rx) = mpsc::unbounded_channel::<Arc<Frame>>();
        {
            let mut st = self.lock();
            st.broken = None;
            for p in st.pending.values() {
                let _ = tx.send(p.wire.clone());
            }
            st.tx = Some(tx);
        }
        let writer = tokio::spawn(write_frames(wr, rx, self.clone()));
        let mut stop = self.stop.subscribe();
        let mut buf = FrameBuf::new();
        let why = loop {
            match buf.next_frame() {
                Ok(Some(f)) => {
                    self.deliver(f.tag, f.flags, f.body);
                    continue;
                }
                Ok(None) => {}
                Err(e) => break format!("malformed frame from the server: {e}"),
            }
            let got = tokio::select! {
                _ = stop.wait_for(|s| *s) => break "the client closed it".to_owned(),
                r = rd.read_buf(buf.space(256 << 10)) => r,
            };
            match got {
                Ok(0) => break "closed by the server".to_owned(),
                Ok(n) => {
                    self.received.fetch_add(n as u64, Relaxed);
                }
                Err(e) => break e.to_string(),
            }
        };
        self.lock().tx = None;
        writer.abort();
        drop(child);
        why
    }

    /// Hands a reply frame to its request.
    fn deliver(&self, tag: u64, flags: u64, body: Vec<u8>) {
        let mut st = self.lock();
        let Some(p) = st.pending.get_mut(&tag) else {
            if tag == 0 {
                tracing::warn!(
                    "{}: {}",
                    self.endpoint,
                    String::from_utf8_lossy(&body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                );
            }
            return;
        };
        if p.first_flags.is_none() {
            p.first_flags = Some(flags & !FLAG_MORE);
        }
        if flags & FLAG_MORE != 0 {
            if p.parts.len() + body.len() > MAX_REPLY {
                let p = st.pending.remove(&tag);
                drop(st);
                if let Some(p) = p {
                    p.done.complete(Err(Error::Store(format!(
                        "{}: a reply longer than {MAX_REPLY} bytes",
                        self.endpoint
                    ))));
                }
                return;
            }
            p.parts.extend_from_slice(&body);
            return;
        }
        let Some(p) = st.pending.remove(&tag) else {
            return;
        };
        drop(st);
        let whole = if p.parts.is_empty() {
            body
        } else {
            let mut w = p.parts;
            w.extend_from_slice(&body);
            w
        };
        let r = Reply::decode_owned(p.op, p.first_flags.unwrap_or(flags), whole)
            .map_err(|e| remote(&self.endpoint, e));
        p.done.complete(r);
    }

    /// Fails everything pending and stops reconnecting.
    pub fn close(&self) {
        self.closing.store(true, Relaxed);
        let _ = self.stop.send(true);
        self.kick.notify_one();
        let mut st = self.lock();
        st.tx = None;
        let failed = std::mem::take(&mut st.pending);
        drop(st);
        for p in failed.into_values() {
            p.done
                .complete(Err(lost(&self.endpoint, "the client closed it")));
        }
    }
}

/// Writes frames as they are queued, flushing whenever none is waiting.
async fn write_frames(
    mut wr: super::transport::WriteHalf,
    mut rx: mpsc::UnboundedReceiver<Arc<Frame>>,
    link: Arc<Link>,
) {
    let mut out = tokio::io::BufWriter::with_capacity(256 << 10, &mut wr);
    while let Some(f) = rx.recv().await {
        let head = f.header();
        link.sent
            .fetch_add((head.len() + f.body.len()) as u64, Relaxed);
        if out.write_all(&head).await.is_err() || out.write_all(&f.body).await.is_err() {
            return;
        }
        if rx.is_empty() && out.flush().await.is_err() {
            return;
        }
    }
    let _ = out.flush().await;
}
