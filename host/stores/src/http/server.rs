//! `vt httpd`: a store's blocks, files and archives over HTTP/1.1, for
//! any HTTP client (`vt-http.5` lists the routes).
//!
//! Every path names content by hash, so responses are immutable and say
//! so; a file of a tree is served with its type, length and byte ranges,
//! reading only the blocks the ranges cover. Writes (`PUT /h/…`, archive
//! lines, `POST /sync`), which the HTTP store uses, need the server's
//! token.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use vt_core::block::{decode_indirect, hash_from_value};
use vt_core::dir::read_dir;
use vt_core::path::{lookup_path, PathError};
use vt_core::read::read_range;
use vt_core::uri::{decode, UrlRef};
use vt_core::{BlockRef, Dirent, DirentKind, Error, Hash, HashKind, Result, Store};

use super::body::{empty, full, streamed, Part, ReadAt, RespBody};
use super::listing;
use super::range::{parse_range, RangeRequest};
use crate::stream::server::{stopped, Shutdown};

/// The largest block a `PUT` may carry (the datafile format's limit).
pub const MAX_PUT: usize = 16 << 20;

/// How a `vt httpd` behaves.
#[derive(Clone, Debug, Default)]
pub struct HttpOptions {
    /// The bearer token that writes need; without one the server is
    /// read-only.
    pub token: Option<String>,
}

/// What the server did, for logs and tests.
#[derive(Debug, Default)]
pub struct HttpCounters {
    /// Requests answered.
    pub requests: AtomicU64,
    /// Blocks read from the store.
    pub blocks_read: AtomicU64,
}

/// A store served over HTTP.
pub struct HttpServer {
    store: Arc<dyn Store>,
    opts: HttpOptions,
    /// What the server did.
    pub counters: HttpCounters,
}

type Resp = Response<RespBody>;

/// What content named by hash may be cached as: it never changes.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A 200 response of `body`, of type `ctype`, cached as `cache` says.
fn typed(body: impl Into<Bytes>, ctype: &'static str, cache: Option<&'static str>) -> Resp {
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    if let Some(c) = cache {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(c));
    }
    r
}

/// A response with a short text message (errors and refusals).
fn msg(status: StatusCode, text: impl Into<String>) -> Resp {
    let mut t = text.into();
    t.push('\n');
    let mut r = typed(t, "text/plain; charset=utf-8", None);
    *r.status_mut() = status;
    r
}

fn bad_request(text: impl Into<String>) -> Resp {
    msg(StatusCode::BAD_REQUEST, text)
}

fn not_found(text: impl Into<String>) -> Resp {
    msg(StatusCode::NOT_FOUND, text)
}

/// A store failure: a block that is missing is 404, anything else 500
/// (a damaged store, not the request's fault).
fn store_error(e: &Error) -> Resp {
    match e {
        Error::Missing(h) => not_found(format!("block {h} is not in this store")),
        Error::Decode { .. } => msg(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot decode: {e}"),
        ),
        e => msg(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("store error: {e}"),
        ),
    }
}

/// Runs `f` on the blocking pool (store calls block).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, Resp> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        msg(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("request failed: {e}"),
        )
    })
}

/// Parses a hashcode as a URL gives it: `KIND:HEX` or `H{KIND:HEX}`.
pub fn parse_hash(seg: &str) -> Result<Hash> {
    let text =
        String::from_utf8(decode(seg)?).map_err(|_| Error::decode("hashcode", "not UTF-8"))?;
    if text.starts_with("H{") {
        return hash_from_value(&vt_core::transcribe::parse(&text)?);
    }
    let (kind, hex) = text
        .split_once(':')
        .ok_or_else(|| Error::decode("hashcode", format!("{text:?}: expected KIND:HEX")))?;
    Hash::from_kind_hex(kind.parse::<HashKind>()?, hex)
}

/// The ETag of content named by `h`.
fn etag(h: &Hash) -> String {
    format!("\"{}:{}\"", h.kind, h.hex())
}

fn if_none_match(headers: &HeaderMap, tag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"))
}

/// Content of `len` bytes, read with `read`, as the request asks: whole,
/// one range (206), several (206 multipart/byteranges), none satisfiable
/// (416); HEAD gets the headers alone.
fn content(req_head: &RequestHead, len: u64, ctype: &str, tag: Option<&str>, read: ReadAt) -> Resp {
    let mut r = Response::new(empty());
    let h = r.headers_mut();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    if let Some(t) = tag.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert(header::ETAG, t);
    }
    if let Some(t) = tag {
        if if_none_match(&req_head.headers, t) {
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            return r;
        }
    }
    let ct = HeaderValue::from_str(ctype)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    // If-Range with another validator: the client's copy is stale, so it
    // gets the whole content.
    let range_ok = match req_head.headers.get(header::IF_RANGE) {
        None => true,
        Some(v) => tag.is_some_and(|t| v.as_bytes() == t.as_bytes()),
    };
    let ranges = match req_head.headers.get(header::RANGE) {
        Some(v) if range_ok => match v.to_str() {
            Ok(s) => parse_range(s, len),
            Err(_) => RangeRequest::Full,
        },
        _ => RangeRequest::Full,
    };
    let (status, parts, ctype_out, extra) = match ranges {
        RangeRequest::Full => (StatusCode::OK, vec![Part::Content(0, len)], ct, None),
        RangeRequest::Unsatisfiable => {
            let mut r = msg(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the content is {len} bytes long"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
        RangeRequest::Ranges(rs) if rs.len() == 1 => {
            let (a, b) = rs[0];
            (
                StatusCode::PARTIAL_CONTENT,
                vec![Part::Content(a, b)],
                ct,
                Some(format!("bytes {a}-{}/{len}", b - 1)),
            )
        }
        RangeRequest::Ranges(rs) => {
            let boundary = format!("vt-{}", uuid::Uuid::new_v4().simple());
            let mut parts = Vec::new();
            for (a, b) in rs {
                parts.push(Part::Literal(Bytes::from(format!(
                    "\r\n--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{}/{len}\r\n\r\n",
                    b - 1
                ))));
                parts.push(Part::Content(a, b));
            }
            parts.push(Part::Literal(Bytes::from(format!(
                "\r\n--{boundary}--\r\n"
            ))));
            let ct = HeaderValue::from_str(&format!("multipart/byteranges; boundary={boundary}"))
                .unwrap_or_else(|_| HeaderValue::from_static("multipart/byteranges"));
            (StatusCode::PARTIAL_CONTENT, parts, ct, None)
        }
    };
    let body_len: u64 = parts.iter().map(Part::body_len).sum();
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, ctype_out);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    if let Some(cr) = extra.and_then(|c| HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    if req_head.method != Method::HEAD {
        *r.body_mut() = streamed(parts, read);
    }
    r
}

/// The hashcode a path segment names and its ETag; a 304 (as the error
/// side) when the client already has that content.
fn hash_and_tag(head: &RequestHead, seg: &str) -> std::result::Result<(Hash, String), Resp> {
    let h = parse_hash(seg).map_err(|e| bad_request(format!("bad hashcode {seg:?}: {e}")))?;
    let tag = etag(&h);
    if if_none_match(&head.headers, &tag) {
        return Err(content(
            head,
            0,
            "",
            Some(&tag),
            Arc::new(|_, _| Ok(Vec::new())),
        ));
    }
    Ok((h, tag))
}

/// What a handler needs of the request besides its body.
struct RequestHead {
    method: Method,
    path: String,
    headers: HeaderMap,
}

impl HttpServer {
    /// A server of `store`.
    pub fn new(store: Arc<dyn Store>, opts: HttpOptions) -> Self {
        HttpServer {
            store,
            opts,
            counters: HttpCounters::default(),
        }
    }

    /// Serves connections on `listener` until `stop` is triggered, then
    /// syncs the store.
    pub fn run(self: &Arc<Self>, listener: std::net::TcpListener, stop: Shutdown) -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .on_thread_start(crate::stream::block_sigpipe)
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::Store(format!("httpd runtime: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::Store(format!("httpd listener: {e}")))?;
        let me = self.clone();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener)
                .map_err(|e| Error::Store(format!("httpd listener: {e}")))?;
            let stop_rx = stop.subscribe();
            let done = stopped(stop_rx);
            tokio::pin!(done);
            loop {
                tokio::select! {
                    _ = &mut done => break,
                    acc = l.accept() => match acc {
                        Ok((sock, peer)) => {
                            let _ = sock.set_nodelay(true);
                            let srv = me.clone();
                            tokio::spawn(async move { srv.connection(sock, peer).await });
                        }
                        Err(e) => {
                            tracing::warn!("httpd: accept: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            Ok::<(), Error>(())
        })?;
        rt.shutdown_timeout(std::time::Duration::from_secs(5));
        self.store.sync()
    }

    async fn connection(self: Arc<Self>, sock: tokio::net::TcpStream, peer: SocketAddr) {
        let srv = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let srv = srv.clone();
            async move { Ok::<_, Infallible>(srv.handle(req).await) }
        });
        if let Err(e) = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(sock), service)
            .await
        {
            tracing::debug!("httpd: connection from {peer}: {e}");
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let (parts, body) = req.into_parts();
        let head = RequestHead {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            headers: parts.headers,
        };
        let path = head.path.clone();
        let segs: Vec<&str> = path.trim_start_matches('/').splitn(2, '/').collect();
        let (route, rest) = (segs[0], segs.get(1).copied().unwrap_or(""));
        let read = matches!(head.method, Method::GET | Method::HEAD);
        let r = match (route, &head.method) {
            ("", _) if read => Ok(self.index()),
            ("h", _) if read => self.block(&head, rest).await,
            ("h", &Method::PUT) => self.put_block(&head, rest, body).await,
            ("i", _) if read => self.indirect(&head, rest).await,
            ("d", _) if read => self.tree(&head, rest).await,
            ("a", _) if read => self.archive(&head, rest).await,
            ("a", &Method::POST | &Method::PUT) => self.archive_write(&head, rest, body).await,
            ("stats", _) if read => self.stats().await,
            ("sync", &Method::POST) => self.sync(&head).await,
            ("" | "h" | "i" | "d" | "a" | "stats" | "sync", _) => {
                let mut r = msg(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} is not allowed on {path}", head.method),
                );
                let allow = match route {
                    "h" => "GET, HEAD, PUT",
                    "a" => "GET, HEAD, POST, PUT",
                    "sync" => "POST",
                    _ => "GET, HEAD",
                };
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(allow));
                Ok(r)
            }
            _ => Err(not_found(format!(
                "no such path {path}: try /h/HASH, /i/HASH, /d/BLOCKREF/PATH or /a/NAME"
            ))),
        };
        let mut r = r.unwrap_or_else(|e| e);
        if head.method == Method::HEAD {
            *r.body_mut() = empty();
        }
        r
    }

    fn index(&self) -> Resp {
        typed(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>vt httpd</title></head><body>\n\
             <h1>vt httpd</h1>\n<ul>\n<li><a href=\"/a/\">/a/</a>: the archives and their snapshots</li>\n\
             <li>/h/KIND:HEX: a block</li>\n<li>/i/KIND:HEX: the content under an indirect block</li>\n\
             <li>/d/BLOCKREF/PATH: a file or directory of a tree</li>\n</ul>\n</body></html>\n",
            "text/html; charset=utf-8",
            None,
        )
    }

    fn authorized(&self, head: &RequestHead) -> std::result::Result<(), Resp> {
        let Some(token) = &self.opts.token else {
            return Err(msg(
                StatusCode::FORBIDDEN,
                "this server is read-only (start vt httpd with --token-file to accept writes)",
            ));
        };
        let given = head
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        // Compare in time independent of where they differ.
        let same = given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            Ok(())
        } else {
            let mut r = msg(StatusCode::UNAUTHORIZED, "a valid bearer token is needed");
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"vt\""),
            );
            Err(r)
        }
    }

    async fn block(&self, head: &RequestHead, seg: &str) -> std::result::Result<Resp, Resp> {
        let (h, tag) = hash_and_tag(head, seg)?;
        let store = self.store.clone();
        let data = blocking(move || store.get_shared(&h))
            .await?
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| not_found(format!("block {h} is not in this store")))?;
        self.counters.blocks_read.fetch_add(1, Ordering::Relaxed);
        let len = data.len() as u64;
        let read: ReadAt = Arc::new(move |a, n| Ok(data[a as usize..(a + n) as usize].to_vec()));
        Ok(content(
            head,
            len,
            "application/octet-stream",
            Some(&tag),
            read,
        ))
    }

    async fn indirect(&self, head: &RequestHead, seg: &str) -> std::result::Result<Resp, Resp> {
        let (h, tag) = hash_and_tag(head, seg)?;
        let store = self.store.clone();
        let r = blocking(move || -> Result<BlockRef> {
            let refs = decode_indirect(&store.fetch(&h)?)?;
            Ok(BlockRef::Indirect {
                hash: h,
                span: refs.iter().map(BlockRef::span).sum(),
            })
        })
        .await?
        .map_err(|e| match e {
            Error::Decode { .. } => bad_request(format!("{h} is not an indirect block: {e}")),
            e => store_error(&e),
        })?;
        let len = r.span();
        let store = self.store.clone();
        let read: ReadAt = Arc::new(move |a, n| read_range(store.as_ref(), &r, a, n));
        Ok(content(
            head,
            len,
            "application/octet-stream",
            Some(&tag),
            read,
        ))
    }

    async fn tree(&self, head: &RequestHead, rest: &str) -> std::result::Result<Resp, Resp> {
        let (seg, path) = rest.split_once('/').unwrap_or((rest, ""));
        let dir_url = String::from_utf8(decode(seg).map_err(|e| bad_request(e.to_string()))?)
            .map_err(|_| bad_request("block ref is not UTF-8"))
            .and_then(|s| {
                UrlRef::parse(&s).map_err(|e| bad_request(format!("bad block ref {seg:?}: {e}")))
            })?;
        let mut names = Vec::new();
        for p in path.split('/') {
            let n = decode(p).map_err(|e| bad_request(e.to_string()))?;
            if n.contains(&0) {
                return Err(bad_request("a name with a NUL byte"));
            }
            names.push(n);
        }
        let store = self.store.clone();
        let found = blocking(move || -> std::result::Result<Dirent, PathError> {
            let block = dir_url.resolve(store.as_ref())?;
            let top = Dirent::new(
                Vec::new(),
                DirentKind::Dir {
                    block,
                    hardlinks: None,
                },
            );
            lookup_path(store.as_ref(), &top, &names, true)
        })
        .await?
        .map_err(|e| match e {
            PathError::NotFound(m) => not_found(m),
            PathError::Store(e) => store_error(&e),
        })?;
        match &found.kind {
            DirentKind::Dir { block, .. } => {
                let json = wants_json(&head.headers);
                if !json && !head.path.ends_with('/') {
                    let mut r = msg(StatusCode::MOVED_PERMANENTLY, "a directory");
                    if let Ok(v) = HeaderValue::from_str(&format!("{}/", head.path)) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    return Ok(r);
                }
                let store = self.store.clone();
                let b = block.clone();
                let mut entries = blocking(move || read_dir(store.as_ref(), &b))
                    .await?
                    .map_err(|e| store_error(&e))?;
                entries.sort_by(|a, b| a.name.cmp(&b.name));
                let (body, ctype) = if json {
                    (listing::json(&entries), "application/json")
                } else {
                    (
                        listing::html(&head.path, &entries),
                        "text/html; charset=utf-8",
                    )
                };
                let mut r = typed(body, ctype, Some(IMMUTABLE));
                r.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Accept"));
                Ok(r)
            }
            DirentKind::File { block } => {
                let block = block.clone();
                let len = block.span();
                let store = self.store.clone();
                let b = block.clone();
                let d = found.clone();
                let ctype = blocking(move || -> Result<String> {
                    let head = if d.meta.mime.is_none() {
                        read_range(store.as_ref(), &b, 0, 512)?
                    } else {
                        Vec::new()
                    };
                    Ok(listing::content_type(&d, &head))
                })
                .await?
                .map_err(|e| store_error(&e))?;
                let tag = block.hash().map(etag);
                let store = self.store.clone();
                let read: ReadAt = Arc::new(move |a, n| read_range(store.as_ref(), &block, a, n));
                Ok(content(head, len, &ctype, tag.as_deref(), read))
            }
            _ => Err(not_found(format!(
                "{}: not a file or directory",
                found.name_lossy()
            ))),
        }
    }

    async fn archive(&self, head: &RequestHead, name: &str) -> std::result::Result<Resp, Resp> {
        let name = String::from_utf8(decode(name).map_err(|e| bad_request(e.to_string()))?)
            .map_err(|_| bad_request("archive name is not UTF-8"))?;
        let store = self.store.clone();
        if name.is_empty() {
            let names = blocking(move || store.archive_names())
                .await?
                .map_err(|e| store_error(&e))?;
            let (body, ctype) = if wants_json(&head.headers) {
                (serde_json::json!(names).to_string(), "application/json")
            } else {
                let mut s = String::from(
                    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>archives</title></head><body><h1>archives</h1><ul>\n",
                );
                for n in &names {
                    let e = vt_core::uri::encode_segment(n.as_bytes());
                    s.push_str(&format!("<li><a href=\"{e}\">{e}</a></li>\n"));
                }
                s.push_str("</ul></body></html>\n");
                (s, "text/html; charset=utf-8")
            };
            return Ok(typed(body, ctype, None));
        }
        let n = name.clone();
        let text = blocking(move || store.archive_read(&n))
            .await?
            .map_err(|e| store_error(&e))?
            .ok_or_else(|| not_found(format!("no archive named {name:?}")))?;
        Ok(typed(text, "text/plain; charset=utf-8", Some("no-cache")))
    }

    async fn read_body(body: Incoming, limit: usize) -> std::result::Result<Bytes, Resp> {
        let limited = http_body_util::Limited::new(body, limit);
        limited.collect().await.map(|c| c.to_bytes()).map_err(|e| {
            msg(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body not read (at most {limit} bytes): {e}"),
            )
        })
    }

    /// Answers `r` to a request refused before its body was read, after
    /// reading the body (up to `limit` bytes, dropped): a client still
    /// sending it would otherwise find the connection closed instead of
    /// the answer (a wrong token seen as an HTTP protocol error).
    async fn refuse(body: Incoming, limit: usize, r: Resp) -> Resp {
        let _ = Self::read_body(body, limit).await;
        r
    }

    async fn put_block(
        &self,
        head: &RequestHead,
        seg: &str,
        body: Incoming,
    ) -> std::result::Result<Resp, Resp> {
        let checked = self.authorized(head).and_then(|()| {
            parse_hash(seg).map_err(|e| bad_request(format!("bad hashcode {seg:?}: {e}")))
        });
        let h = match checked {
            Ok(h) => h,
            Err(r) => return Err(Self::refuse(body, MAX_PUT, r).await),
        };
        let data = Self::read_body(body, MAX_PUT).await?;
        let store = self.store.clone();
        let new = blocking(move || -> Result<bool> {
            if h.kind.digest(&data) != h {
                return Err(Error::decode("block", "the data does not hash to the name"));
            }
            store.add_hashed(&h, &data)
        })
        .await?
        .map_err(|e| match e {
            Error::Decode { .. } => bad_request(format!("{h}: {e}")),
            e => store_error(&e),
        })?;
        Ok(msg(
            if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            if new { "stored" } else { "already stored" },
        ))
    }

    async fn archive_write(
        &self,
        head: &RequestHead,
        name: &str,
        body: Incoming,
    ) -> std::result::Result<Resp, Resp> {
        const MAX_ARCHIVE: usize = 256 << 20;
        let checked = self.authorized(head).and_then(|()| {
            let name = String::from_utf8(decode(name).map_err(|e| bad_request(e.to_string()))?)
                .map_err(|_| bad_request("archive name is not UTF-8"))?;
            if name.is_empty() {
                return Err(bad_request("no archive name"));
            }
            Ok(name)
        });
        let name = match checked {
            Ok(n) => n,
            Err(r) => return Err(Self::refuse(body, MAX_ARCHIVE, r).await),
        };
        let text = Self::read_body(body, MAX_ARCHIVE).await?;
        let store = self.store.clone();
        let replace = head.method == Method::PUT;
        blocking(move || {
            if replace {
                store.archive_replace(&name, &text)
            } else {
                store.archive_append(&name, &text)
            }
        })
        .await?
        .map_err(|e| match e {
            Error::Decode { .. } => bad_request(e.to_string()),
            e => store_error(&e),
        })?;
        Ok(msg(StatusCode::OK, "recorded"))
    }

    async fn sync(&self, head: &RequestHead) -> std::result::Result<Resp, Resp> {
        self.authorized(head)?;
        let store = self.store.clone();
        blocking(move || store.sync())
            .await?
            .map_err(|e| store_error(&e))?;
        Ok(msg(StatusCode::OK, "synced"))
    }

    async fn stats(&self) -> std::result::Result<Resp, Resp> {
        let store = self.store.clone();
        let (kind, s) = blocking(move || (store.hash_kind(), store.stats())).await?;
        let s = s.map_err(|e| store_error(&e))?;
        let body = serde_json::json!({
            "hash": kind.to_string(),
            "blocks": s.blocks,
            "raw_bytes": s.raw_bytes,
            "stored_bytes": s.stored_bytes,
            "index_bytes": s.index_bytes,
            "hint_bytes": s.hint_bytes,
            "delta_blocks": s.delta_blocks,
            "delta_raw_bytes": s.delta_raw_bytes,
            "delta_stored_bytes": s.delta_stored_bytes,
        });
        Ok(typed(
            body.to_string(),
            "application/json",
            Some("no-cache"),
        ))
    }
}
