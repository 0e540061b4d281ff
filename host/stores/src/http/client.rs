//! The HTTP store: a store on a `vt httpd`, block by block over HTTP/1.1
//! (`GET`/`HEAD /h/HASH`, `PUT /h/HASH` with the server's token).
//!
//! Many requests are in flight at once: blocks added are sent behind the
//! caller's back (at most [`IN_FLIGHT`] at a time) and [`Store::sync`]
//! waits for them all; prefetched blocks are fetched in parallel. Every
//! block read is checked against its hash, so a server (or anything on
//! the way) cannot hand out other bytes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use vt_core::store::StoreStats;
use vt_core::{Error, Hash, HashKind, Result, Store};

/// Most requests sending blocks at once.
pub const IN_FLIGHT: usize = 32;

/// Most bytes of prefetched blocks held before they are read.
const PREFETCH_BYTES: usize = 64 << 20;

/// How long one request may take before it fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Shared {
    base: String,
    token: Option<String>,
    client: HttpClient,
    /// The first failure of a request sent behind the caller's back.
    failed: Mutex<Option<String>>,
    /// Blocks the server has or was sent.
    known: Mutex<HashSet<Hash>>,
    /// Prefetched blocks not yet read, and their total size.
    prefetched: Mutex<(HashMap<Hash, Bytes>, usize)>,
    /// Blocks sent as new that the server already had, and their bytes.
    over: (AtomicU64, AtomicU64),
}

/// A store on a `vt httpd`.
pub struct HttpStore {
    shared: Arc<Shared>,
    rt: tokio::runtime::Runtime,
    kind: HashKind,
    sends: Arc<Semaphore>,
    fetches: Arc<Semaphore>,
}

fn err(base: &str, what: impl std::fmt::Display) -> Error {
    Error::Store(format!("HTTP store {base}: {what}"))
}

/// A response: status and body.
struct Reply {
    status: StatusCode,
    body: Bytes,
}

impl Shared {
    async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        json: bool,
    ) -> Result<Reply> {
        let mut b = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.base));
        if let Some(t) = &self.token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if json {
            b = b.header(header::ACCEPT, "application/json");
        }
        let req = b
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| err(&self.base, e))?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| err(&self.base, format!("{method} {path}: {e}")))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    err(
                        &self.base,
                        format!("{method} {path}: reading the reply: {e}"),
                    )
                })?
                .to_bytes();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| {
                err(
                    &self.base,
                    format!("{method} {path}: no reply in {REQUEST_TIMEOUT:?}"),
                )
            })?
    }

    /// A reply's status as an error with the server's message.
    fn refused(&self, what: &str, r: &Reply) -> Error {
        let m = String::from_utf8_lossy(&r.body);
        err(&self.base, format!("{what}: {} {}", r.status, m.trim()))
    }

    async fn get_block(&self, h: &Hash) -> Result<Option<Bytes>> {
        let r = self
            .request(Method::GET, &block_path(h), None, false)
            .await?;
        match r.status {
            StatusCode::OK => {
                if h.kind.digest(&r.body) != *h {
                    return Err(err(
                        &self.base,
                        format!("the server sent other data for block {h}"),
                    ));
                }
                self.known
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*h);
                Ok(Some(r.body))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.refused(&format!("GET block {h}"), &r)),
        }
    }

    fn fail(&self, e: Error) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            *f = Some(e.to_string());
        }
    }
}

fn block_path(h: &Hash) -> String {
    format!("/h/{}:{}", h.kind, h.hex())
}

fn archive_path(name: &str) -> String {
    format!("/a/{}", vt_core::uri::encode_segment(name.as_bytes()))
}

impl HttpStore {
    /// Connects to the `vt httpd` at `url` (`http://HOST:PORT/`), sending
    /// `token` with writes; asks it which hash it uses.
    pub fn connect(url: &str, token: Option<String>) -> Result<Self> {
        let base = url.trim_end_matches('/').to_owned();
        let rest = base
            .strip_prefix("http://")
            .ok_or_else(|| err(&base, "expected http://HOST:PORT/ (https is not supported: put the server behind a TLS proxy on its host and use ssh or tls: stores across networks)"))?;
        if rest.is_empty() || rest.contains('/') {
            return Err(err(&base, "expected http://HOST:PORT/ with no path"));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .on_thread_start(crate::stream::block_sigpipe)
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| err(&base, e))?;
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(Duration::from_secs(10)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(IN_FLIGHT * 2)
            .build(conn);
        let shared = Arc::new(Shared {
            base,
            token,
            client,
            failed: Mutex::new(None),
            known: Mutex::new(HashSet::new()),
            prefetched: Mutex::new((HashMap::new(), 0)),
            over: (AtomicU64::new(0), AtomicU64::new(0)),
        });
        let s2 = shared.clone();
        let stats =
            rt.block_on(async move { s2.request(Method::GET, "/stats", None, true).await })?;
        if stats.status != StatusCode::OK {
            return Err(shared.refused("GET /stats", &stats));
        }
        let v: serde_json::Value = serde_json::from_slice(&stats.body)
            .map_err(|e| err(&shared.base, format!("not a vt httpd (/stats: {e})")))?;
        let kind = v["hash"]
            .as_str()
            .ok_or_else(|| err(&shared.base, "not a vt httpd (/stats names no hash)"))?
            .parse()?;
        Ok(HttpStore {
            shared,
            rt,
            kind,
            sends: Arc::new(Semaphore::new(IN_FLIGHT)),
            fetches: Arc::new(Semaphore::new(IN_FLIGHT)),
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.shared.base
    }

    fn check_failed(&self) -> Result<()> {
        match self
            .shared
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            Some(m) => Err(Error::Store(m)),
            None => Ok(()),
        }
    }

    fn call(&self, method: Method, path: &str, body: Option<Bytes>, json: bool) -> Result<Reply> {
        let s = self.shared.clone();
        let path = path.to_owned();
        self.rt
            .block_on(async move { s.request(method, &path, body, json).await })
    }

    /// Waits until every block sent has its answer.
    fn drain(&self) -> Result<()> {
        let sends = self.sends.clone();
        self.rt.block_on(async move {
            let all = sends
                .acquire_many(IN_FLIGHT as u32)
                .await
                .map_err(|e| Error::Store(e.to_string()))?;
            drop(all);
            Ok::<(), Error>(())
        })?;
        self.check_failed()
    }
}

impl Store for HttpStore {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
        self.check_failed()?;
        if self.shared.token.is_none() {
            return Err(err(
                &self.shared.base,
                "cannot add blocks without the server's token (token_file = FILE)",
            ));
        }
        {
            let mut k = self.shared.known.lock().unwrap_or_else(|e| e.into_inner());
            if !k.insert(*hash) {
                return Ok(false);
            }
        }
        let permit = self
            .rt
            .block_on(self.sends.clone().acquire_owned())
            .map_err(|e| Error::Store(e.to_string()))?;
        let s = self.shared.clone();
        let h = *hash;
        let body = Bytes::copy_from_slice(data);
        let len = data.len() as u64;
        self.rt.spawn(async move {
            let r = s
                .request(Method::PUT, &block_path(&h), Some(body), false)
                .await;
            match r {
                Ok(r) if r.status == StatusCode::CREATED => {}
                Ok(r) if r.status == StatusCode::OK => {
                    s.over.0.fetch_add(1, Ordering::Relaxed);
                    s.over.1.fetch_add(len, Ordering::Relaxed);
                }
                Ok(r) => {
                    let e = s.refused(&format!("PUT block {h}"), &r);
                    s.known.lock().unwrap_or_else(|e| e.into_inner()).remove(&h);
                    s.fail(e);
                }
                Err(e) => {
                    s.known.lock().unwrap_or_else(|e| e.into_inner()).remove(&h);
                    s.fail(e);
                }
            }
            drop(permit);
        });
        Ok(true)
    }

    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
        Ok(self.get_shared(hash)?.map(|b| b.to_vec()))
    }

    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        {
            let mut p = self
                .shared
                .prefetched
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if let Some(b) = p.0.remove(hash) {
                p.1 -= b.len();
                return Ok(Some(b));
            }
        }
        let s = self.shared.clone();
        let h = *hash;
        self.rt.block_on(async move { s.get_block(&h).await })
    }

    fn contains(&self, hash: &Hash) -> Result<bool> {
        if self
            .shared
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(hash)
        {
            return Ok(true);
        }
        let r = self.call(Method::HEAD, &block_path(hash), None, false)?;
        match r.status {
            StatusCode::OK => {
                self.shared
                    .known
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(*hash);
                Ok(true)
            }
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.shared.refused(&format!("HEAD block {hash}"), &r)),
        }
    }

    fn prefetch(&self, hashes: &[Hash]) {
        for h in hashes {
            if self
                .shared
                .prefetched
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .contains_key(h)
            {
                continue;
            }
            let Ok(permit) = self.fetches.clone().try_acquire_owned() else {
                return; // enough in flight: the rest are read when asked
            };
            let s = self.shared.clone();
            let h = *h;
            self.rt.spawn(async move {
                if let Ok(Some(b)) = s.get_block(&h).await {
                    let mut p = s.prefetched.lock().unwrap_or_else(|e| e.into_inner());
                    if p.1 + b.len() <= PREFETCH_BYTES {
                        p.1 += b.len();
                        p.0.insert(h, b);
                    }
                }
                drop(permit);
            });
        }
    }

    fn sync(&self) -> Result<()> {
        self.drain()?;
        if self.shared.token.is_none() {
            return Ok(()); // nothing can have been written
        }
        let r = self.call(Method::POST, "/sync", None, false)?;
        if r.status != StatusCode::OK {
            return Err(self.shared.refused("POST /sync", &r));
        }
        Ok(())
    }

    fn overcounted(&self) -> (u64, u64) {
        (
            self.shared.over.0.load(Ordering::Relaxed),
            self.shared.over.1.load(Ordering::Relaxed),
        )
    }

    fn stats(&self) -> Result<StoreStats> {
        let r = self.call(Method::GET, "/stats", None, true)?;
        if r.status != StatusCode::OK {
            return Err(self.shared.refused("GET /stats", &r));
        }
        let v: serde_json::Value =
            serde_json::from_slice(&r.body).map_err(|e| err(&self.shared.base, e))?;
        let n = |k: &str| v[k].as_u64().unwrap_or(0);
        Ok(StoreStats {
            blocks: n("blocks"),
            raw_bytes: n("raw_bytes"),
            stored_bytes: n("stored_bytes"),
            index_bytes: n("index_bytes"),
            hint_bytes: n("hint_bytes"),
            delta_blocks: n("delta_blocks"),
            delta_raw_bytes: n("delta_raw_bytes"),
            delta_stored_bytes: n("delta_stored_bytes"),
        })
    }

    fn archive_names(&self) -> Result<Vec<String>> {
        let r = self.call(Method::GET, "/a/", None, true)?;
        if r.status != StatusCode::OK {
            return Err(self.shared.refused("GET /a/", &r));
        }
        serde_json::from_slice(&r.body).map_err(|e| err(&self.shared.base, e))
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let r = self.call(Method::GET, &archive_path(name), None, false)?;
        match r.status {
            StatusCode::OK => Ok(Some(r.body.to_vec())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self.shared.refused(&format!("GET archive {name}"), &r)),
        }
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        vt_core::archive::check_lines(lines)?;
        // The lines may refer only to blocks the server has made durable.
        self.sync()?;
        let r = self.call(
            Method::POST,
            &archive_path(name),
            Some(Bytes::copy_from_slice(lines)),
            false,
        )?;
        if r.status != StatusCode::OK {
            return Err(self
                .shared
                .refused(&format!("append to archive {name}"), &r));
        }
        Ok(())
    }

    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        self.sync()?;
        let r = self.call(
            Method::PUT,
            &archive_path(name),
            Some(Bytes::copy_from_slice(text)),
            false,
        )?;
        if r.status != StatusCode::OK {
            return Err(self.shared.refused(&format!("replace archive {name}"), &r));
        }
        Ok(())
    }
}

impl Drop for HttpStore {
    fn drop(&mut self) {
        // Let requests in flight finish (their errors are lost: callers
        // that care call sync first).
        let _ = self.drain();
    }
}

inventory::submit! {
    vt_core::store::BuiltinScheme {
        name: "http",
        summary: "a vt httpd over HTTP",
        settings: &["url", "token_file"],
        order: 6,
    }
}
