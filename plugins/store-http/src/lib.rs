//! `store-http`: a vt store scheme as a WebAssembly component that keeps
//! its blocks and archives on a `vt httpd` elsewhere, reached through
//! wasi:http: `GET`/`HEAD`/`PUT /h/HASH` for blocks, `GET /a/` and
//! `GET`/`POST /a/NAME` for archives, `GET /stats`, `POST /sync`.
//!
//! ```toml
//! [stores.far]
//! type = "store-http"
//! url = "http://backup.example.org:8080"
//! token = "…"                     # the server's --token-file, for writes
//! allow_hosts = ["backup.example.org:8080"]
//! ```
//!
//! The host grants it no file and only the hosts its clause's
//! `allow_hosts` lists: a `url` elsewhere is refused before a connection
//! is made. It is the example of a plugin that reaches the network;
//! vt's built-in `http` scheme does the same natively.

use std::path::Path;

use vt_sdk::store::{check_hash, BlockStore, StoreError, StoreInfo, StoreStats};

mod url;
mod wire;

pub use url::{encode_segment, BaseUrl};
use wire::{request, Method};

/// A store on a vt httpd.
pub struct HttpStore {
    base: BaseUrl,
    token: Option<String>,
}

impl HttpStore {
    /// `METHOD path` on the server, with the token when `write`.
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
        write: bool,
    ) -> Result<wire::Response, StoreError> {
        let token = if write { self.token.as_deref() } else { None };
        request(&self.base, method, path, body, token)
    }

    /// An error for an answer other than those expected.
    fn unexpected(&self, what: &str, r: &wire::Response) -> StoreError {
        let text = String::from_utf8_lossy(&r.body);
        let text = text.trim();
        match r.status {
            401 | 403 => StoreError::Config(format!(
                "{what}: {} refused ({} {text}): set token to the server's token",
                self.base, r.status
            )),
            s => StoreError::Io(format!("{what}: {} answered {s} {text}", self.base)),
        }
    }
}

impl BlockStore for HttpStore {
    fn info() -> StoreInfo {
        StoreInfo {
            name: "store-http".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn open(root: Option<&Path>, config: &[(String, String)]) -> Result<Self, StoreError> {
        if root.is_some() {
            return Err(StoreError::Config(
                "store-http keeps nothing locally: remove preopen".into(),
            ));
        }
        let mut url = None;
        let mut token = None;
        for (k, v) in config {
            match k.as_str() {
                "url" => url = Some(BaseUrl::parse(v).map_err(StoreError::Config)?),
                "token" => token = Some(v.trim().to_owned()).filter(|t| !t.is_empty()),
                // The host's grant: it decides, the plugin only sees it.
                "allow_hosts" => {}
                other => {
                    return Err(StoreError::Config(format!(
                        "unknown setting {other:?} (store-http takes url, token and allow_hosts)"
                    )))
                }
            }
        }
        let base = url.ok_or_else(|| {
            StoreError::Config("url is missing: the vt httpd, as http://host:port".into())
        })?;
        Ok(HttpStore { base, token })
    }

    fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        check_hash(hash)?;
        let r = self.call(Method::Get, &format!("h/{hash}"), None, false)?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(self.unexpected(&format!("get {hash}"), &r)),
        }
    }

    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, StoreError> {
        check_hash(hash)?;
        let r = self.call(Method::Put, &format!("h/{hash}"), Some(data), true)?;
        match r.status {
            201 => Ok(true),
            200 => Ok(false),
            _ => Err(self.unexpected(&format!("put {hash}"), &r)),
        }
    }

    fn contains(&self, hash: &str) -> Result<bool, StoreError> {
        check_hash(hash)?;
        let r = self.call(Method::Head, &format!("h/{hash}"), None, false)?;
        match r.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.unexpected(&format!("contains {hash}"), &r)),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        // A reader has nothing to make durable (and may hold no token).
        if self.token.is_none() {
            return Ok(());
        }
        let r = self.call(Method::Post, "sync", Some(b""), true)?;
        match r.status {
            200 => Ok(()),
            _ => Err(self.unexpected("sync", &r)),
        }
    }

    fn stats(&self) -> Result<StoreStats, StoreError> {
        let r = self.call(Method::Get, "stats", None, false)?;
        if r.status != 200 {
            return Err(self.unexpected("stats", &r));
        }
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .map_err(|e| StoreError::Io(format!("stats from {}: {e}", self.base)))?;
        let n = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(StoreStats {
            blocks: n("blocks"),
            raw_bytes: n("raw_bytes"),
            stored_bytes: n("stored_bytes"),
        })
    }

    fn archive_names(&self) -> Result<Vec<String>, StoreError> {
        let r = self.call(Method::Get, "a/", None, false)?;
        if r.status != 200 {
            return Err(self.unexpected("archive names", &r));
        }
        serde_json::from_slice(&r.body)
            .map_err(|e| StoreError::Io(format!("archive names from {}: {e}", self.base)))
    }

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = format!("a/{}", encode_segment(name));
        let r = self.call(Method::Get, &path, None, false)?;
        match r.status {
            200 => Ok(Some(r.body)),
            404 => Ok(None),
            _ => Err(self.unexpected(&format!("archive {name}"), &r)),
        }
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<(), StoreError> {
        let path = format!("a/{}", encode_segment(name));
        let r = self.call(Method::Post, &path, Some(lines), true)?;
        match r.status {
            200 => Ok(()),
            _ => Err(self.unexpected(&format!("append to archive {name}"), &r)),
        }
    }
}

vt_sdk::export_store!(HttpStore);
