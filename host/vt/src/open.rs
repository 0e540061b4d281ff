//! Opening stores: a store spec (`vt_stores::spec`) or a `[stores.NAME]`
//! clause of vtrc, resolved to a [`Store`], recursively (proxies, caches
//! and routed archives name other stores).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use vt_core::{HashKind, Store};
use vt_stores::archive_route::ArchiveRoute;
use vt_stores::spec::{parse_size, StoreSpec};
use vt_stores::stream::{Endpoint, LinkOptions, StreamOptions};
use vt_stores::{
    Compression, DataDir, MemoryStore, ProgressStore, S3Layout, S3Options, S3Store, StreamStore,
    Verify,
};

use crate::config::{cache_home, default_socket, default_store_path, expand, Config};

/// Every built-in store type a clause or a `TYPE(…)` spec can name (each
/// registered beside its implementation: [`vt_core::store::BuiltinScheme`]).
pub fn types() -> Vec<&'static str> {
    vt_core::store::builtin_schemes()
        .iter()
        .map(|s| s.name)
        .collect()
}

/// An opened store with what the CLI needs to know about it.
pub struct OpenStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The DataDir behind it, when it is one.
    pub datadir: Option<Arc<DataDir>>,
    /// The S3 store behind it, when it is one (or a cache's backend).
    pub s3: Option<Arc<S3Store>>,
    /// The server connection behind it, when it is one (or, for a cache,
    /// its backend).
    pub remote: Option<Arc<StreamStore>>,
    /// What the server was asked, counted (with `remote`).
    pub progress: Option<Arc<ProgressStore>>,
    /// The store's name (clause name or spec), for messages.
    pub name: String,
}

impl OpenStore {
    fn plain(store: Arc<dyn Store>, name: String) -> Self {
        OpenStore {
            store,
            datadir: None,
            s3: None,
            remote: None,
            progress: None,
            name,
        }
    }
}

/// The servers this process opened, with their counters.
static OPENED: std::sync::Mutex<Vec<(Arc<StreamStore>, Arc<ProgressStore>)>> =
    std::sync::Mutex::new(Vec::new());

/// A line per server this process opened, on what it was asked (`vt -v`
/// prints them at the end).
pub fn request_summaries() -> Vec<String> {
    let mut out: Vec<String> = OPENED_S3
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|s| {
            let r = s.requests();
            format!(
                "{}: {} requests ({} GET, {} ranged GET, {} PUT, {} HEAD, {} LIST, {} DELETE)",
                s.name(),
                r.get + r.get_range + r.put + r.head + r.list + r.delete,
                r.get,
                r.get_range,
                r.put,
                r.head,
                r.list,
                r.delete
            )
        })
        .collect();
    let opened = OPENED.lock().unwrap_or_else(|e| e.into_inner());
    out.extend(opened
        .iter()
        .map(|(r, p)| {
            let c = p.counts();
            let (sent, received) = r.wire_bytes();
            let [ready, waited, missed, dropped] = r.prefetch_counts();
            format!(
                "{}: {} requests ({} blocks fetched, {} offered, {} contains); {sent} bytes sent, {received} received; reads prefetched {ready} arrived, {waited} awaited, {missed} not, {dropped} hints dropped",
                r.endpoint(),
                c.requests,
                c.get_blocks,
                c.add_blocks,
                c.contains
            )
        }));
    let caches = OPENED_CACHES.lock().unwrap_or_else(|e| e.into_inner());
    out.extend(caches.iter().map(|f| {
        let c = f.counts();
        format!(
            "cache {}: {} hits, {} misses, {} corrupt, {} promoted; {} files, {} blocks, {} bytes",
            f.dir().display(),
            c.hits,
            c.misses,
            c.corrupt,
            c.promoted,
            c.files,
            c.blocks,
            c.bytes
        )
    }));
    out
}

/// `30`, `30s`, `5m`, `1h` as a duration.
fn parse_duration(t: &str) -> Option<Duration> {
    let t = t.trim();
    let (n, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// The S3 stores this process opened.
static OPENED_S3: std::sync::Mutex<Vec<Arc<S3Store>>> = std::sync::Mutex::new(Vec::new());

/// The file caches this process opened, for their lines in `vt -v`.
static OPENED_CACHES: std::sync::Mutex<Vec<Arc<vt_stores::FileCache>>> =
    std::sync::Mutex::new(Vec::new());

/// The index cache of an S3 store that names none: one directory per
/// endpoint, bucket and prefix, so that two stores never share one.
fn s3_cache_dir(o: &S3Options) -> PathBuf {
    let key = format!(
        "{}|{}|{}",
        o.endpoint.as_deref().unwrap_or("aws"),
        o.bucket,
        o.prefix
    );
    let h = HashKind::Sha3_256.digest(key.as_bytes()).hex();
    let safe: String = o
        .bucket
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    cache_home()
        .join("vt/s3")
        .join(format!("{safe}-{}", &h[..16]))
}

/// A clause's or a typed spec's settings, checked as they are used.
struct Settings {
    /// Where they come from, for messages: `[stores.NAME]` or the spec.
    origin: String,
    map: BTreeMap<String, toml::Value>,
    used: Vec<&'static str>,
}

impl Settings {
    fn from_table(name: &str, t: &toml::Table) -> Self {
        Settings {
            origin: format!("[stores.{name}]"),
            map: t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            used: vec!["type"],
        }
    }

    fn from_params(spec: &str, params: &[(String, String)]) -> Self {
        Settings {
            origin: spec.to_owned(),
            map: params
                .iter()
                .map(|(k, v)| (k.clone(), toml::Value::String(v.clone())))
                .collect(),
            used: Vec::new(),
        }
    }

    fn str(&mut self, key: &'static str) -> Result<Option<String>> {
        self.used.push(key);
        match self.map.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(toml::Value::Integer(i)) => Ok(Some(i.to_string())),
            Some(v) => bail!("{} {key} = {v}: expected a string", self.origin),
        }
    }

    /// A list of strings: a TOML array, or text with commas (as a store
    /// spec's parameters give it).
    fn strings(&mut self, key: &'static str) -> Result<Vec<String>> {
        self.used.push(key);
        match self.map.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::String(s)) => Ok(s
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()),
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(t) => Ok(t.clone()),
                    v => bail!("{} {key}: {v} is not a string", self.origin),
                })
                .collect(),
            Some(v) => bail!("{} {key} = {v}: expected a list of strings", self.origin),
        }
    }

    /// `verify`, of a store in the datafile format (a DataDir, an S3
    /// bucket's packs): `checksum` (the default) or `hash`.
    fn verify(&mut self) -> Result<Verify> {
        match self.str("verify")?.as_deref() {
            None | Some("checksum") => Ok(Verify::Checksum),
            Some("hash") => Ok(Verify::Hash),
            Some(v) => bail!(
                "{} verify = {v:?}: expected \"checksum\" or \"hash\"",
                self.origin
            ),
        }
    }

    fn required(&mut self, key: &'static str, what: &str) -> Result<String> {
        self.str(key)?
            .ok_or_else(|| anyhow!("{}: {key} is required ({what})", self.origin))
    }

    fn bool(&mut self, key: &'static str) -> Result<Option<bool>> {
        self.used.push(key);
        match self.map.get(key) {
            None => Ok(None),
            Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
            Some(toml::Value::String(s)) => match s.as_str() {
                "yes" | "true" | "on" | "1" => Ok(Some(true)),
                "no" | "false" | "off" | "0" => Ok(Some(false)),
                _ => bail!("{} {key} = {s:?}: expected yes or no", self.origin),
            },
            Some(v) => bail!("{} {key} = {v}: expected yes or no", self.origin),
        }
    }

    /// A list of store specs: a TOML array of specs, or one spec whose
    /// comma list counts as several.
    fn specs(&mut self, key: &'static str) -> Result<Vec<StoreSpec>> {
        self.used.push(key);
        let texts: Vec<String> = match self.map.get(key) {
            None => return Ok(Vec::new()),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("{} {key}: expected strings", self.origin))
                })
                .collect::<Result<_>>()?,
            Some(v) => bail!("{} {key} = {v}: expected a store spec", self.origin),
        };
        let mut out = Vec::new();
        for t in texts {
            match StoreSpec::parse(&t).with_context(|| format!("{} {key}", self.origin))? {
                StoreSpec::List(items) => out.extend(items),
                s => out.push(s),
            }
        }
        Ok(out)
    }

    /// `GLOB:STORESPEC` strings (or a list of them).
    fn routes(&mut self, key: &'static str) -> Result<Vec<(String, StoreSpec)>> {
        self.used.push(key);
        let texts: Vec<String> = match self.map.get(key) {
            None => return Ok(Vec::new()),
            Some(toml::Value::String(s)) => vec![s.clone()],
            Some(toml::Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(v) => bail!("{} {key} = {v}: expected \"GLOB:STORESPEC\"", self.origin),
        };
        texts
            .iter()
            .map(|t| {
                let (g, s) = t.split_once(':').ok_or_else(|| {
                    anyhow!("{} {key} = {t:?}: expected GLOB:STORESPEC", self.origin)
                })?;
                let spec = StoreSpec::parse(s).with_context(|| format!("{} {key}", self.origin))?;
                Ok((g.to_owned(), spec))
            })
            .collect()
    }

    /// Fails on a setting type `kind` does not take, naming those it does
    /// (before anything is opened, so a misspelt key is what is reported).
    fn check_keys(&self, kind: &str) -> Result<()> {
        let Some(known) = settings_of(kind) else {
            return Ok(()); // an unknown type is reported by the caller
        };
        for k in self.map.keys() {
            if k != "type" && k != "archives_from" && !known.contains(&k.as_str()) {
                bail!(
                    "{}: unknown setting {k:?} for a {kind} store (known: {}, archives_from)",
                    self.origin,
                    known.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Fails on settings no one asked for, naming the ones the type takes.
    fn finish(&self, kind: &str) -> Result<()> {
        for k in self.map.keys() {
            if !self.used.contains(&k.as_str()) {
                let mut known: Vec<&str> =
                    self.used.iter().copied().filter(|k| *k != "type").collect();
                known.sort();
                known.dedup();
                bail!(
                    "{}: unknown setting {k:?} for a {kind} store (known: {})",
                    self.origin,
                    known.join(", ")
                );
            }
        }
        Ok(())
    }
}

/// The settings each built-in store type takes.
fn settings_of(kind: &str) -> Option<&'static [&'static str]> {
    vt_core::store::builtin_scheme(kind).map(|s| s.settings)
}

/// Fills in the defaults that apply to clause `name` (for `vt config`).
pub fn fill_defaults(name: &str, t: &mut toml::Table) {
    let ty = t
        .get("type")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_owned();
    let mut set = |k: &str, v: String| {
        t.entry(k.to_owned()).or_insert(toml::Value::String(v));
    };
    match ty.as_str() {
        "datadir" => {
            if name == "local" {
                set("path", default_store_path().display().to_string());
            }
            set("hash", "sha3_256".into());
            set("verify", "checksum".into());
            set("compression", "auto".into());
        }
        "memory" => set("hash", "sha3_256".into()),
        "unix" => set("path", default_socket(name).display().to_string()),
        "cache" => {
            set("kind", "file".into());
            set("limit", "1GiB".into());
            set("dir", default_cache_dir(name).display().to_string());
        }
        "proxy" => set("copy2", "yes".into()),
        _ => {}
    }
}

fn default_cache_dir(label: &str) -> PathBuf {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    cache_home().join("vt/cache").join(safe)
}

/// Opening, with the clauses already on the way (to catch loops).
struct Opener<'a> {
    cfg: &'a Config,
    create: bool,
    stack: Vec<String>,
}

impl Config {
    /// Opens the store `spec` names (`None`: the default store). A DataDir
    /// that does not exist yet is created only with `create`.
    pub fn open_store(&self, spec: Option<&str>, create: bool) -> Result<OpenStore> {
        let text = spec.map_or_else(|| self.default_store(), str::to_owned);
        let parsed = StoreSpec::parse(&text)?;
        let mut o = Opener {
            cfg: self,
            create,
            stack: Vec::new(),
        };
        o.open(&parsed, &text)
    }

    /// What `spec` resolves to, as indented lines (`vt config SPEC`),
    /// without opening anything.
    pub fn describe(&self, spec: &str) -> Result<String> {
        let parsed = StoreSpec::parse(spec)?;
        let mut out = String::new();
        describe(self, &parsed, 0, &mut out, &mut Vec::new())?;
        Ok(out)
    }
}

impl Opener<'_> {
    fn open(&mut self, spec: &StoreSpec, label: &str) -> Result<OpenStore> {
        if self.stack.len() > 16 {
            bail!("store specs nest too deeply at {label}");
        }
        match spec {
            StoreSpec::Clause(name) => self.clause(name),
            StoreSpec::DataDir(p) => open_datadir(
                &expand(p),
                None,
                Verify::default(),
                Compression::default(),
                label.to_owned(),
                self.create,
            ),
            StoreSpec::Unix(p) => {
                stream(Endpoint::Unix(expand(p)), StreamOptions::default(), label)
            }
            StoreSpec::Tcp(a) => stream(Endpoint::Tcp(a.clone()), StreamOptions::default(), label),
            StoreSpec::Tls(a) => bail!(
                "{label}: a TLS store needs the server's certificate: use tls(address={a}, ca=FILE)"
            ),
            StoreSpec::Command(c) => stream(
                Endpoint::Command(c.clone()),
                StreamOptions::default(),
                label,
            ),
            StoreSpec::Http(url) => http(url, None, label),
            StoreSpec::List(items) => {
                let stores = items
                    .iter()
                    .map(|i| Ok(self.open(i, &i.to_text())?.store))
                    .collect::<Result<Vec<_>>>()?;
                Ok(OpenStore::plain(
                    Arc::new(vt_stores::ProxyStore::list(stores)),
                    label.to_owned(),
                ))
            }
            StoreSpec::Typed {
                kind,
                params,
                inner,
            } => {
                let mut s = Settings::from_params(label, params);
                self.typed(kind, &mut s, inner.as_deref(), label)
            }
        }
    }

    fn clause(&mut self, name: &str) -> Result<OpenStore> {
        if self.stack.iter().any(|n| n == name) {
            bail!(
                "stores refer to each other in a loop: {} -> {name}",
                self.stack.join(" -> ")
            );
        }
        let Some(t) = self.cfg.stores.get(name) else {
            if name == "local" {
                return open_datadir(
                    &default_store_path(),
                    None,
                    Verify::default(),
                    Compression::default(),
                    name.to_owned(),
                    self.create,
                );
            }
            bail!(
                "no store named {name:?}: define [stores.{name}] in the configuration, or give a store spec (a DataDir path like ./{name}, unix:PATH, tcp:HOST:PORT, !COMMAND)"
            );
        };
        let kind = t
            .get("type")
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                anyhow!(
                    "[stores.{name}] has no type (known: {})",
                    types().join(", ")
                )
            })?
            .to_owned();
        self.stack.push(name.to_owned());
        let mut s = Settings::from_table(name, t);
        let r = self.typed(&kind, &mut s, None, name);
        self.stack.pop();
        r
    }

    fn typed(
        &mut self,
        kind: &str,
        s: &mut Settings,
        inner: Option<&StoreSpec>,
        label: &str,
    ) -> Result<OpenStore> {
        s.check_keys(kind)?;
        let routes = s.routes("archives_from")?;
        if inner.is_some() && kind != "cache" {
            bail!("{}: a {kind} store does not wrap another store", s.origin);
        }
        let mut st = match kind {
            "datadir" => {
                let path = match s.str("path")? {
                    Some(p) => expand(&p),
                    None if label == "local" => default_store_path(),
                    None => bail!("{}: path is required (the DataDir's directory)", s.origin),
                };
                let hash = s.str("hash")?;
                let verify = s.verify()?;
                let compression = match s.str("compression")? {
                    None => Compression::default(),
                    Some(c) => c.parse().map_err(|e| anyhow!("{} {e}", s.origin))?,
                };
                s.finish(kind)?;
                open_datadir(
                    &path,
                    hash.as_deref(),
                    verify,
                    compression,
                    label.to_owned(),
                    self.create,
                )?
            }
            "memory" => {
                let hash = parse_hash(s.str("hash")?.as_deref())?;
                s.finish(kind)?;
                OpenStore::plain(Arc::new(MemoryStore::new(hash)), label.to_owned())
            }
            "unix" | "tcp" | "tls" | "command" => {
                let endpoint = match kind {
                    "unix" => Endpoint::Unix(
                        s.str("path")?
                            .map_or_else(|| default_socket(label), |p| expand(&p)),
                    ),
                    "tcp" => Endpoint::Tcp(s.required("address", "HOST:PORT of a vt serve")?),
                    "tls" => Endpoint::Tls {
                        addr: s.required("address", "HOST:PORT of a vt serve")?,
                        ca: expand(&s.required(
                            "ca",
                            "a PEM file of the certificate the server presents, or of its authority",
                        )?),
                    },
                    _ => Endpoint::Command(s.required("command", "a command that runs vt serve --stdio")?),
                };
                let token = match s.str("token_file")? {
                    Some(f) => Some(crate::serve::read_token(&expand(&f))?),
                    None => None,
                };
                let opts = StreamOptions {
                    link: LinkOptions {
                        export: s.str("export")?,
                        token,
                        reconnect_for: Duration::from_secs(30),
                        ..Default::default()
                    },
                    compress: s.bool("compress")?,
                    verify: match s.str("verify")?.as_deref() {
                        None | Some("server") => false,
                        Some("hash") => true,
                        Some(v) => bail!(
                            "{} verify = {v:?}: expected \"server\" (rely on the server's checks) or \"hash\" (check every block read)",
                            s.origin
                        ),
                    },
                };
                s.finish(kind)?;
                stream(endpoint, opts, label)?
            }
            "http" => {
                let url = s.required("url", "http://HOST:PORT/ of a vt httpd")?;
                let token = match s.str("token_file")? {
                    Some(f) => Some(crate::serve::read_token(&expand(&f))?),
                    None => None,
                };
                s.finish(kind)?;
                http(&url, token, label)?
            }
            "s3" => {
                let mut o =
                    S3Options::new(s.required("bucket", "the S3 bucket, which must exist")?);
                if let Some(p) = s.str("prefix")? {
                    o.prefix = p.trim_matches('/').to_owned();
                }
                o.endpoint = s.str("endpoint")?;
                if let Some(r) = s.str("region")? {
                    o.region = r;
                }
                o.access_key_id = s.str("access_key_id")?;
                o.secret_access_key = s.str("secret_access_key")?;
                o.layout = match s.str("layout")?.as_deref() {
                    None | Some("packed") => S3Layout::Packed,
                    Some("blocks") => S3Layout::Blocks,
                    Some(l) => bail!(
                        "{} layout = {l:?}: expected \"packed\" or \"blocks\"",
                        s.origin
                    ),
                };
                if let Some(p) = s.str("pack_size")? {
                    let n = parse_size(&p).map_err(|e| anyhow!("{} pack_size: {e}", s.origin))?;
                    if !(1 << 20..=256 << 20).contains(&n) {
                        bail!("{} pack_size = {p}: expected 1MiB to 256MiB", s.origin);
                    }
                    o.pack_size = n as usize;
                }
                o.hash_kind = parse_hash(s.str("hash")?.as_deref())?;
                o.verify = s.verify()?;
                if let Some(t) = s.str("retry_timeout")? {
                    o.retry_timeout = parse_duration(&t).ok_or_else(|| {
                        anyhow!(
                            "{} retry_timeout = {t:?}: expected seconds, like 30s or 5m",
                            s.origin
                        )
                    })?;
                }
                o.cache_dir = Some(match s.str("cache_dir")? {
                    Some(d) => expand(&d),
                    None => s3_cache_dir(&o),
                });
                s.finish(kind)?;
                let st = Arc::new(
                    S3Store::open(o).with_context(|| format!("cannot open store {label}"))?,
                );
                OPENED_S3
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(st.clone());
                let mut open = OpenStore::plain(st.clone(), label.to_owned());
                open.s3 = Some(st);
                open
            }
            "proxy" => {
                let read = s.specs("read")?;
                let save = s.specs("save")?;
                let read2 = s.specs("read2")?;
                let copy2 = s.bool("copy2")?.unwrap_or(true);
                s.finish(kind)?;
                if read.is_empty() && save.is_empty() {
                    bail!("{}: a proxy needs read or save stores", s.origin);
                }
                let mut open_all = |specs: &[StoreSpec]| -> Result<Vec<Arc<dyn Store>>> {
                    specs
                        .iter()
                        .map(|sp| Ok(self.open(sp, &sp.to_text())?.store))
                        .collect()
                };
                let (read, save, read2) = (open_all(&read)?, open_all(&save)?, open_all(&read2)?);
                OpenStore::plain(
                    Arc::new(vt_stores::ProxyStore::new(read, save, read2, copy2)),
                    label.to_owned(),
                )
            }
            "cache" => {
                let backend_spec = match (inner, s.specs("store")?) {
                    (Some(i), v) if v.is_empty() => i.clone(),
                    (None, v) if v.len() == 1 => v[0].clone(),
                    (None, v) if v.len() > 1 => StoreSpec::List(v),
                    _ => bail!(
                        "{}: a cache needs one store behind it: store = SPEC, or cache(...):SPEC",
                        s.origin
                    ),
                };
                let limit = match s.str("limit")? {
                    Some(l) => parse_size(&l).map_err(|e| anyhow!("{} limit: {e}", s.origin))?,
                    None => 1 << 30,
                };
                let file = match s.str("kind")?.as_deref() {
                    None | Some("file") => true,
                    Some("memory") => false,
                    Some(k) => bail!("{} kind = {k:?}: expected \"file\" or \"memory\"", s.origin),
                };
                let dir = s.str("dir")?.map(|d| expand(&d));
                s.finish(kind)?;
                let backend = self.open(&backend_spec, &backend_spec.to_text())?;
                let store: Arc<dyn Store> = if file {
                    // Caches on one directory keep apart (each locks its
                    // own files) and adopt what exited ones left.
                    let d = dir.unwrap_or_else(|| default_cache_dir(label));
                    let c = Arc::new(
                        vt_stores::FileCache::open(&d, limit, backend.store.clone())
                            .with_context(|| format!("open the cache in {}", d.display()))?,
                    );
                    OPENED_CACHES
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(c.clone());
                    c
                } else {
                    Arc::new(vt_stores::MemCache::new(backend.store.clone(), limit))
                };
                OpenStore {
                    store,
                    datadir: None,
                    s3: backend.s3,
                    remote: backend.remote,
                    progress: backend.progress,
                    name: label.to_owned(),
                }
            }
            other if s.map.contains_key("library") => self.native_store(other, s, label)?,
            other => {
                let schemes = crate::plugins::store_schemes(self.cfg)?;
                let Some(scheme) = schemes.iter().find(|s| s.name == other) else {
                    let mut known: Vec<&str> = types();
                    known.extend(schemes.iter().map(|s| s.name.as_str()));
                    bail!(
                        "{}: unknown store type {other:?} (known: {})",
                        s.origin,
                        known.join(", ")
                    );
                };
                self.plugin_store(&scheme.plugin, s, label)?
            }
        };
        if !routes.is_empty() {
            let mut rs = Vec::new();
            for (g, spec) in routes {
                rs.push((g, self.open(&spec, &spec.to_text())?.store));
            }
            st.store = Arc::new(ArchiveRoute::new(st.store.clone(), rs));
        }
        Ok(st)
    }
}

impl Opener<'_> {
    /// Opens a store of a native library's scheme (`library = PATH`),
    /// which must be trusted in so many words (`trust = "native"`): it runs
    /// with all of vt's rights.
    fn native_store(&mut self, kind: &str, s: &mut Settings, label: &str) -> Result<OpenStore> {
        let lib = expand(&s.required("library", "the path of the native library")?);
        match s.str("trust")?.as_deref() {
            Some("native") => {}
            _ => bail!(
                "{}: {} is a native library, which runs with all of vt's rights: load it only if you trust it, by adding trust = \"native\"",
                s.origin,
                lib.display()
            ),
        }
        let l = Arc::new(
            vt_plugin_host::NativeLibrary::load(&lib).map_err(|e| anyhow!("{}: {e}", s.origin))?,
        );
        if l.name() != kind {
            bail!(
                "{}: {} provides the store scheme {:?}, not {kind:?}",
                s.origin,
                lib.display(),
                l.name()
            );
        }
        let preopen = preopen(s)?;
        let hash = parse_hash(s.str("hash")?.as_deref())?;
        let config = plugin_config(s, &["library", "trust"]);
        let store = l.open(&config, preopen.as_deref(), hash)?;
        Ok(OpenStore::plain(Arc::new(store), label.to_owned()))
    }

    /// Opens a store of a plugin's scheme: the clause's settings go to the
    /// plugin as text, but for those the host reads itself: `preopen` (a
    /// directory it may use, made if missing), `hash`, and its limits,
    /// `memory` (each instance's) and `timeout` (each call's).
    fn plugin_store(
        &mut self,
        plugin: &vt_plugin_host::StorePlugin,
        s: &mut Settings,
        label: &str,
    ) -> Result<OpenStore> {
        let preopen = preopen(s)?;
        let kind = parse_hash(s.str("hash")?.as_deref())?;
        let mut limits = vt_plugin_host::Limits::default();
        if let Some(m) = s.str("memory")? {
            let n = parse_size(&m).map_err(|e| anyhow!("{} memory: {e}", s.origin))?;
            if !(1 << 20..=4 << 30).contains(&n) {
                bail!("{} memory = {m}: expected 1MiB to 4GiB", s.origin);
            }
            limits.memory = n as usize;
        }
        if let Some(t) = s.str("timeout")? {
            limits.timeout = parse_duration(&t).ok_or_else(|| {
                anyhow!(
                    "{} timeout = {t:?}: expected seconds, like 30s or 5m",
                    s.origin
                )
            })?;
        }
        let allow_hosts = s.strings("allow_hosts")?;
        if let Some(h) = allow_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', '@', ' ']))
        {
            bail!(
                "{} allow_hosts: {h:?} is not a host: give host names or host:port, such as \"store.example.org\" or \"127.0.0.1:8080\"",
                s.origin
            );
        }
        let config = plugin_config(s, &["memory", "timeout"]);
        let grants = vt_plugin_host::Grants {
            preopen,
            allow_hosts,
        };
        let store = plugin.open(&config, &grants, kind, limits)?;
        Ok(OpenStore::plain(Arc::new(store), label.to_owned()))
    }
}

/// A plugin clause's `preopen`, the directory it grants, made if missing.
fn preopen(s: &mut Settings) -> Result<Option<PathBuf>> {
    let Some(d) = s.str("preopen")?.map(|p| expand(&p)) else {
        return Ok(None);
    };
    std::fs::create_dir_all(&d)
        .with_context(|| format!("{}: create preopen {}", s.origin, d.display()))?;
    Ok(Some(d))
}

/// A clause's settings as a plugin gets them: each as text (a list as its
/// TOML text), but for those the host keeps (`type`, `hash`,
/// `archives_from`, and `also`).
fn plugin_config(s: &Settings, also: &[&str]) -> Vec<(String, String)> {
    s.map
        .iter()
        .filter(|(k, _)| {
            !matches!(k.as_str(), "type" | "hash" | "archives_from") && !also.contains(&k.as_str())
        })
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

fn stream(endpoint: Endpoint, opts: StreamOptions, label: &str) -> Result<OpenStore> {
    let s = Arc::new(
        StreamStore::connect(endpoint, opts)
            .with_context(|| format!("cannot open store {label}"))?,
    );
    let p = Arc::new(ProgressStore::new(s.clone()));
    OPENED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((s.clone(), p.clone()));
    Ok(OpenStore {
        store: p.clone(),
        datadir: None,
        s3: None,
        remote: Some(s),
        progress: Some(p),
        name: label.to_owned(),
    })
}

/// A store on the `vt httpd` at `url`.
pub fn http(url: &str, token: Option<String>, label: &str) -> Result<OpenStore> {
    let s = vt_stores::HttpStore::connect(url, token)
        .with_context(|| format!("cannot open store {label}"))?;
    Ok(OpenStore::plain(Arc::new(s), label.to_owned()))
}

fn parse_hash(h: Option<&str>) -> Result<HashKind> {
    Ok(h.map(str::parse).transpose()?.unwrap_or(HashKind::Sha3_256))
}

fn open_datadir(
    path: &Path,
    hash: Option<&str>,
    verify: Verify,
    compression: Compression,
    name: String,
    create: bool,
) -> Result<OpenStore> {
    let kind = parse_hash(hash)?;
    if !create && !path.join("vt-datadir").exists() {
        bail!(
            "store {name} does not exist yet at {}: import something into it or run `vt init`",
            path.display()
        );
    }
    let mut dd = DataDir::open(path, Some(kind))
        .with_context(|| format!("cannot open store {name} at {}", path.display()))?;
    dd.set_verify(verify);
    dd.set_compression(compression);
    let dd = Arc::new(dd);
    if hash.is_some() && dd.hash_kind() != kind {
        tracing::warn!(
            "store {name} hashes with {} (set when it was created); the configured hash {kind} applies only to new stores",
            dd.hash_kind()
        );
    }
    Ok(OpenStore {
        store: dd.clone(),
        datadir: Some(dd),
        s3: None,
        remote: None,
        progress: None,
        name,
    })
}

/// Appends what `spec` resolves to, indented by `depth`.
fn describe(
    cfg: &Config,
    spec: &StoreSpec,
    depth: usize,
    out: &mut String,
    stack: &mut Vec<String>,
) -> Result<()> {
    let pad = "  ".repeat(depth);
    let mut line = |s: String| {
        out.push_str(&pad);
        out.push_str(&s);
        out.push('\n');
    };
    match spec {
        StoreSpec::Clause(name) => {
            if stack.contains(name) {
                bail!("stores refer to each other in a loop at {name}");
            }
            match cfg.stores.get(name) {
                None if name == "local" => line(format!(
                    "[stores.local]: datadir {} (built in)",
                    default_store_path().display()
                )),
                None => bail!("no store named {name:?}"),
                Some(t) => {
                    let mut t = t.clone();
                    fill_defaults(name, &mut t);
                    let ty = t
                        .get("type")
                        .and_then(|v| v.as_str())
                        .unwrap_or("?")
                        .to_owned();
                    let settings: Vec<String> = t
                        .iter()
                        .filter(|(k, _)| *k != "type")
                        .map(|(k, v)| {
                            format!(
                                "{k}={}",
                                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                            )
                        })
                        .collect();
                    line(format!("[stores.{name}]: {ty} {}", settings.join(" ")));
                    stack.push(name.clone());
                    for key in ["read", "save", "read2", "store"] {
                        if let Some(v) = t.get(key) {
                            let texts: Vec<String> = match v {
                                toml::Value::Array(a) => a
                                    .iter()
                                    .filter_map(|x| x.as_str().map(str::to_owned))
                                    .collect(),
                                v => vec![v.as_str().unwrap_or_default().to_owned()],
                            };
                            for tx in texts {
                                out.push_str(&format!("{pad}  {key}:\n"));
                                describe(cfg, &StoreSpec::parse(&tx)?, depth + 2, out, stack)?;
                            }
                        }
                    }
                    stack.pop();
                }
            }
        }
        StoreSpec::DataDir(p) => line(format!("datadir {}", expand(p).display())),
        StoreSpec::Unix(p) => line(format!("vt serve on UNIX socket {}", expand(p).display())),
        StoreSpec::Tcp(a) => line(format!("vt serve on TCP {a}")),
        StoreSpec::Tls(a) => line(format!("vt serve on TCP {a} with TLS (needs ca=)")),
        StoreSpec::Command(c) => line(format!("vt serve --stdio run as: {c}")),
        StoreSpec::Http(u) => line(format!("vt httpd at {u}")),
        StoreSpec::List(items) => {
            line("proxy: reads in order, saves to the first".to_owned());
            for i in items {
                describe(cfg, i, depth + 1, out, stack)?;
            }
        }
        StoreSpec::Typed {
            kind,
            params,
            inner,
        } => {
            let ps: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            line(format!("{kind} {}", ps.join(" ")));
            if let Some(i) = inner {
                describe(cfg, i, depth + 1, out, stack)?;
            }
            for (k, v) in params {
                if matches!(k.as_str(), "read" | "save" | "read2" | "store") {
                    out.push_str(&format!("{pad}  {k}:\n"));
                    describe(cfg, &StoreSpec::parse(v)?, depth + 2, out, stack)?;
                }
            }
        }
    }
    Ok(())
}
