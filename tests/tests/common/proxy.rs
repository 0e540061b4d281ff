//! A small HTTP proxy for tests: forwards every request to a server,
//! counts them by method, and answers some with an error instead (503
//! Slow Down, as S3 throttles) to test retries.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// What the proxy saw and did.
#[derive(Default)]
pub struct ProxyCounts {
    /// Requests by method (`GET`, `PUT`, ...).
    pub by_method: Mutex<BTreeMap<String, u64>>,
    /// Bytes of the bodies answering GETs of objects under a `data/`
    /// prefix (an S3 store's packs).
    pub data_bytes: AtomicU64,
    /// Requests answered with an injected error.
    pub injected: AtomicU64,
    /// Answer every Nth request with 503 (0: never).
    pub fail_every: AtomicU64,
    seen: AtomicU64,
}

impl ProxyCounts {
    /// Requests of `method` so far.
    pub fn count(&self, method: &str) -> u64 {
        self.by_method
            .lock()
            .unwrap()
            .get(method)
            .copied()
            .unwrap_or(0)
    }
}

/// A running proxy; stops with the test process.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counts (shared with the serving thread).
    pub counts: Arc<ProxyCounts>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `upstream` (`HOST:PORT`).
    pub fn start(upstream: &str) -> Proxy {
        let counts = Arc::new(ProxyCounts::default());
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let c2 = counts.clone();
        let up = upstream.to_owned();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                let client: Client<HttpConnector, Full<Bytes>> =
                    Client::builder(TokioExecutor::new()).build(HttpConnector::new());
                loop {
                    let Ok((sock, _)) = l.accept().await else {
                        continue;
                    };
                    let (client, counts, up) = (client.clone(), c2.clone(), up.clone());
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            forward(req, client.clone(), counts.clone(), up.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(sock), svc)
                            .await;
                    });
                }
            });
        });
        Proxy { addr, counts }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn forward(
    req: Request<hyper::body::Incoming>,
    client: Client<HttpConnector, Full<Bytes>>,
    counts: Arc<ProxyCounts>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    *counts
        .by_method
        .lock()
        .unwrap()
        .entry(req.method().to_string())
        .or_default() += 1;
    let n = counts.seen.fetch_add(1, Ordering::Relaxed) + 1;
    let data_get = req.method() == hyper::Method::GET && req.uri().path().contains("/data/");
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let every = counts.fail_every.load(Ordering::Relaxed);
    if every > 0 && n.is_multiple_of(every) {
        counts.injected.fetch_add(1, Ordering::Relaxed);
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>injected</Message></Error>",
        )));
        *r.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
        return Ok(r);
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut b = Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://{upstream}{pq}"));
    for (k, v) in &parts.headers {
        b = b.header(k, v);
    }
    let up = b.body(Full::new(body)).unwrap();
    match client.request(up).await {
        Ok(resp) => {
            let (p, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            if data_get {
                counts
                    .data_bytes
                    .fetch_add(body.len() as u64, Ordering::Relaxed);
            }
            Ok(Response::from_parts(p, Full::new(body)))
        }
        Err(e) => {
            let mut r = Response::new(Full::new(Bytes::from(format!("proxy: {e}"))));
            *r.status_mut() = hyper::StatusCode::BAD_GATEWAY;
            Ok(r)
        }
    }
}
