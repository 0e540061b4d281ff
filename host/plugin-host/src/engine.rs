//! The one wasmtime engine of a vt process, and the on-disk cache of
//! precompiled components.

use std::hash::{Hash as _, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel};

use crate::sandbox::Sandbox;
use crate::{Error, Result};

/// How often the engine's epoch advances; the unit of plugin deadlines.
pub const TICK: Duration = Duration::from_millis(10);

/// The wasmtime engine, a WASI linker, and where compiled components are
/// cached. Cheap to clone.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<Sandbox>,
    store_linker: Linker<Sandbox>,
    cache_dir: Option<PathBuf>,
    ticker: Once,
}

/// How a component was obtained, for `vt plugin info` and benchmarks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compiled {
    /// Loaded from the cache without compiling.
    Cached(PathBuf),
    /// Compiled now (and cached, if there is a cache directory).
    Compiled(Duration),
}

impl PluginEngine {
    /// An engine caching compiled components in `cache_dir` (if given).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        let mut cfg = Config::new();
        cfg.wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed);
        let engine = Engine::new(&cfg).map_err(|e| Error::Invalid {
            plugin: "(engine)".into(),
            detail: format!("cannot configure wasmtime: {e}"),
        })?;
        let link_err = |e: wasmtime::Error| Error::Invalid {
            plugin: "(engine)".into(),
            detail: format!("cannot link WASI: {e}"),
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link_err)?;
        let mut store_linker = linker.clone();
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut store_linker)
            .map_err(link_err)?;
        Ok(PluginEngine {
            inner: Arc::new(Inner {
                engine,
                linker,
                store_linker,
                cache_dir,
                ticker: Once::new(),
            }),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker providing the (empty) WASI world.
    pub fn linker(&self) -> &Linker<Sandbox> {
        &self.inner.linker
    }

    /// The linker for store plugins: WASI and outgoing HTTP (wasi:http),
    /// which each instance's [`crate::sandbox::NetGrant`] restricts to
    /// the hosts its clause allows.
    pub fn store_linker(&self) -> &Linker<Sandbox> {
        &self.inner.store_linker
    }

    /// Starts the thread that advances the epoch (once per process), which
    /// is what makes deadlines fire.
    pub fn start_ticker(&self) {
        let engine = self.inner.engine.clone();
        self.inner.ticker.call_once(|| {
            std::thread::Builder::new()
                .name("vt-plugin-epoch".into())
                .spawn(move || loop {
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                })
                .map(drop)
                .unwrap_or_else(|e| tracing::warn!("cannot start plugin deadline thread: {e}"));
        });
    }

    /// The cache file for a component with this SHA-256 digest: the key
    /// also covers the wasmtime version and the engine's settings.
    pub fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut h);
        let dir = self.inner.cache_dir.as_ref()?;
        Some(dir.join(format!("{digest}-wasmtime48-{:016x}.cwasm", h.finish())))
    }

    /// Compiles `bytes` (a component), or loads it from the cache.
    pub fn component(&self, label: &str, bytes: &[u8]) -> Result<(Component, Compiled)> {
        let digest = sha256_hex(bytes);
        if let Some(path) = self.cache_path(&digest) {
            if path.exists() {
                // SAFETY: the file was written by `precompile_component` of an
                // engine with the same compatibility hash, into vt's own cache
                // directory; wasmtime re-checks its header and version.
                match unsafe { Component::deserialize_file(&self.inner.engine, &path) } {
                    Ok(c) => return Ok((c, Compiled::Cached(path))),
                    Err(e) => {
                        tracing::debug!("recompiling {label}: cached {}: {e}", path.display())
                    }
                }
            }
        }
        let t = Instant::now();
        let compiled =
            self.inner
                .engine
                .precompile_component(bytes)
                .map_err(|e| Error::Invalid {
                    plugin: label.into(),
                    detail: format!("{e:#}"),
                })?;
        let took = t.elapsed();
        if let Some(path) = self.cache_path(&digest) {
            if let Err(e) = write_atomic(&path, &compiled) {
                tracing::warn!("cannot cache compiled plugin {label}: {e}");
            }
        }
        // SAFETY: `compiled` was produced just now by this engine.
        let c = unsafe { Component::deserialize(&self.inner.engine, &compiled) }.map_err(|e| {
            Error::Invalid {
                plugin: label.into(),
                detail: format!("{e:#}"),
            }
        })?;
        Ok((c, Compiled::Compiled(took)))
    }
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes a file whole or not at all.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", path, e))
}
