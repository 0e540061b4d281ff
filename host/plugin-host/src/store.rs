//! Store schemes as WebAssembly components (the `store-plugin` world of
//! `wit/store.wit`, WIT 1.2): a [`StorePlugin`] is a loaded component, a
//! [`WasmStore`] one store it opened, a [`vt_core::Store`] like any other.
//!
//! The component runs in a [`Sandbox`] that grants it only what its vtrc
//! clause says: a preopened directory, seen as `/store`. Each call runs
//! under a deadline and the sandbox's memory limit; a call that traps or
//! overruns is an error naming the plugin, and the instance is not used
//! again. Every block the plugin returns is hashed and compared with the
//! hash asked for: a plugin cannot hand a reader other bytes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::component::ResourceAny;
use wasmtime::Store;

use vt_core::store::StoreStats;
use vt_core::{Error as CoreError, Hash, HashKind, Result as CoreResult, Store as _};

use crate::engine::sha256_hex;
use crate::sandbox::{NetGrant, Sandbox, BASE_TICKS};
use crate::wasm::trap_text;
use crate::{Error, PluginEngine, Result};

use crate::since_v1_2::exports::vt::plugin::store::StoreError;
use crate::since_v1_2::{StorePlugin as Bindings, StorePluginPre as BindingsPre};

/// Instances of a store plugin run at most, one a core.
pub const INSTANCES: usize = 4;

/// What a store plugin's instances may use, from its clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of linear memory, each instance.
    pub memory: usize,
    /// How long one call may run (plus a tick a 64 KiB it is given).
    pub timeout: std::time::Duration,
}

impl Default for Limits {
    /// 256 MiB (the scanners' limit) and 10 s: a store waits on disks.
    fn default() -> Self {
        Limits {
            memory: crate::sandbox::MEMORY_LIMIT,
            timeout: crate::engine::TICK * (10 * BASE_TICKS) as u32,
        }
    }
}

impl Limits {
    fn ticks(&self) -> u64 {
        (self.timeout.as_millis() / crate::engine::TICK.as_millis()).max(1) as u64
    }
}

/// What a store plugin's clause grants it beyond computing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// A directory, read-write, that the plugin sees as `/store`.
    pub preopen: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) it may send HTTP requests to.
    pub allow_hosts: Vec<String>,
}

/// What a store plugin declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// The scheme's name (vtrc's `type`).
    pub name: String,
    /// The plugin's version.
    pub version: String,
}

/// A loaded store-scheme component.
pub struct StorePlugin {
    engine: PluginEngine,
    pre: BindingsPre<Sandbox>,
    info: StoreInfo,
    label: String,
    digest: String,
}

impl StorePlugin {
    /// Loads component `bytes` (named `label` in messages): checks that it
    /// exports a `vt:plugin/store` interface of major version 1, compiles
    /// it and asks it to describe itself.
    pub fn load(engine: &PluginEngine, label: &str, bytes: &[u8]) -> Result<Self> {
        let (component, _) = engine.component(label, bytes)?;
        let ty = component.component_type();
        let found: Vec<String> = ty
            .exports(engine.engine())
            .filter_map(|(n, _)| n.strip_prefix("vt:plugin/store@").map(str::to_owned))
            .collect();
        match found.first() {
            None => {
                return Err(Error::Invalid {
                    plugin: label.into(),
                    detail: "it exports no vt:plugin/store interface (a store plugin is a component of the store-plugin world)".into(),
                })
            }
            Some(v) if !v.starts_with("1.") => {
                return Err(Error::Incompatible {
                    plugin: label.into(),
                    found: v.clone(),
                })
            }
            Some(_) => {}
        }
        let ipre = engine
            .store_linker()
            .instantiate_pre(&component)
            .map_err(|e| Error::Invalid {
                plugin: label.into(),
                detail: format!("it needs more than vt grants: {e:#}"),
            })?;
        let pre = BindingsPre::new(ipre).map_err(|e| Error::Invalid {
            plugin: label.into(),
            detail: format!("{e:#}"),
        })?;
        engine.start_ticker();
        let failed = |detail: String| Error::Failed {
            plugin: label.into(),
            detail,
        };
        let mut store = Sandbox::store(engine);
        let inst = pre
            .instantiate(&mut store)
            .map_err(|e| failed(format!("instantiate: {}", trap_text(&e))))?;
        let i = inst
            .vt_plugin_store()
            .call_describe(&mut store)
            .map_err(|e| failed(format!("describe: {}", trap_text(&e))))?;
        if !crate::wasm::valid_name(&i.name) {
            return Err(Error::Invalid {
                plugin: label.into(),
                detail: format!("its scheme name {:?} is not [a-z0-9-]+", i.name),
            });
        }
        Ok(StorePlugin {
            engine: engine.clone(),
            pre,
            info: StoreInfo {
                name: i.name,
                version: i.version,
            },
            label: label.into(),
            digest: sha256_hex(bytes),
        })
    }

    /// What the plugin declares.
    pub fn info(&self) -> &StoreInfo {
        &self.info
    }

    /// SHA-256 of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Opens a store of this scheme with `config` (its clause's settings
    /// as text), granting it what `grants` says; new blocks are hashed
    /// with `kind`. The store runs [`INSTANCES`] instances of the plugin,
    /// each with a backend opened alike, so that calls from several
    /// threads run at once (as several vt processes may use one store).
    pub fn open(
        &self,
        config: &[(String, String)],
        grants: &Grants,
        kind: HashKind,
        limits: Limits,
    ) -> CoreResult<WasmStore> {
        let name = format!("{} store (plugin {})", self.info.name, self.label);
        let mut insts = Vec::new();
        let n = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, INSTANCES));
        for _ in 0..n {
            insts.push(Mutex::new(self.instance(&name, config, grants, limits)?));
        }
        Ok(WasmStore {
            name,
            kind,
            preopen: grants.preopen.clone(),
            insts,
            next: std::sync::atomic::AtomicUsize::new(0),
            ticks: limits.ticks(),
            memory: limits.memory,
        })
    }

    /// One instance with its backend open.
    fn instance(
        &self,
        name: &str,
        config: &[(String, String)],
        grants: &Grants,
        limits: Limits,
    ) -> CoreResult<Instance> {
        let err = |d: String| CoreError::Store(format!("{name}: {d}"));
        let net = NetGrant::new(&grants.allow_hosts, limits.timeout);
        let mut store =
            Sandbox::store_with_grants(&self.engine, grants.preopen.as_deref(), net, limits.memory)
                .map_err(err)?;
        store.set_epoch_deadline(limits.ticks());
        let inst = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| err(format!("instantiate: {}", trap_text(&e))))?;
        let backend = inst
            .vt_plugin_store()
            .backend()
            .call_open(&mut store, config)
            .map_err(|e| err(trap_text(&e)))?
            .map_err(|e| err(with_denied(error_text(e), store.data_mut())))?;
        Ok(Instance {
            store,
            inst,
            backend,
            broken: None,
        })
    }
}

/// `text`, and the hosts the plugin was refused since its last call,
/// which are likely why it failed.
fn with_denied(text: String, sandbox: &mut Sandbox) -> String {
    let denied = sandbox.take_denied();
    if denied.is_empty() {
        return text;
    }
    format!(
        "{text} (it asked to reach {}, which its clause's allow_hosts does not list)",
        denied.join(", ")
    )
}

fn error_text(e: StoreError) -> String {
    match e {
        StoreError::Config(m) => format!("configuration: {m}"),
        StoreError::Io(m) => m,
        StoreError::Unsupported(m) => format!("not supported: {m}"),
    }
}

/// `got`, a block store `name` (a `who`: plugin, library) returned for
/// `hash`, if its bytes hash to it: other bytes are an error, never data.
pub(crate) fn checked(
    hash: &Hash,
    name: &str,
    who: &str,
    got: Option<Vec<u8>>,
) -> CoreResult<Option<Vec<u8>>> {
    match got {
        Some(d) if hash.kind.digest(&d) != *hash => Err(CoreError::Corrupt {
            hash: *hash,
            file: PathBuf::from(name),
            detail: format!("the {who} returned bytes that do not match the block's hash"),
        }),
        other => Ok(other),
    }
}

/// What a call into the plugin gives: a trap, or the store's own answer.
type Outcome<T> = wasmtime::Result<std::result::Result<T, StoreError>>;

struct Instance {
    store: Store<Sandbox>,
    inst: Bindings,
    backend: ResourceAny,
    /// Why the instance may not be used again (a trap, an overrun).
    broken: Option<String>,
}

/// A store kept by a store plugin.
pub struct WasmStore {
    /// `SCHEME store (plugin LABEL)`: how messages name it.
    name: String,
    kind: HashKind,
    preopen: Option<PathBuf>,
    /// The plugin's instances, each with its backend.
    insts: Vec<Mutex<Instance>>,
    /// Where the next call starts looking for a free instance.
    next: std::sync::atomic::AtomicUsize,
    /// Deadline ticks of a call.
    ticks: u64,
    /// Bytes of memory each instance may have.
    memory: usize,
}

impl WasmStore {
    /// How messages name the store.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The directory it was granted.
    pub fn preopen(&self) -> Option<&Path> {
        self.preopen.as_deref()
    }

    /// Runs `f` on the instance with a deadline for `bytes` of data; a
    /// trap marks the instance broken.
    fn call<T>(
        &self,
        what: &str,
        bytes: usize,
        f: impl FnOnce(&Bindings, &mut Store<Sandbox>, ResourceAny) -> Outcome<T>,
    ) -> CoreResult<T> {
        // A free instance, else the next in turn.
        let n = self.insts.len();
        let start = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let free = (0..n).find_map(|k| self.insts[(start + k) % n].try_lock().ok());
        let g = match free {
            Some(g) => g,
            None => self.insts[start % n]
                .lock()
                .map_err(|_| CoreError::Store(format!("{}: lock poisoned", self.name)))?,
        };
        self.run(g, what, bytes, f)
    }

    /// Runs `f` on the instance held by `g` (see [`WasmStore::call`]).
    fn run<T>(
        &self,
        mut g: std::sync::MutexGuard<'_, Instance>,
        what: &str,
        bytes: usize,
        f: impl FnOnce(&Bindings, &mut Store<Sandbox>, ResourceAny) -> Outcome<T>,
    ) -> CoreResult<T> {
        if let Some(why) = &g.broken {
            return Err(CoreError::Store(format!(
                "{}: not used since it failed: {why}",
                self.name
            )));
        }
        let i = &mut *g;
        i.store
            .set_epoch_deadline(self.ticks + (bytes as u64 >> 16));
        i.store.data_mut().take_denied();
        match f(&i.inst, &mut i.store, i.backend) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CoreError::Store(format!(
                "{}: {what}: {}",
                self.name,
                with_denied(error_text(e), i.store.data_mut())
            ))),
            Err(e) => {
                // trap_text names the scanners' limit; this store's may differ.
                let why = trap_text(&e).replace(
                    &format!("({} MiB)", crate::sandbox::MEMORY_LIMIT >> 20),
                    &format!("({} MiB)", self.memory >> 20),
                );
                i.broken = Some(why.clone());
                Err(CoreError::Store(format!("{}: {what}: {why}", self.name)))
            }
        }
    }
}

impl vt_core::Store for WasmStore {
    fn hash_kind(&self) -> HashKind {
        self.kind
    }

    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> CoreResult<bool> {
        let h = hash.to_string();
        self.call("put", data.len(), |b, s, r| {
            b.vt_plugin_store().backend().call_put(s, r, &h, data)
        })
    }

    fn get(&self, hash: &Hash) -> CoreResult<Option<Vec<u8>>> {
        let h = hash.to_string();
        let got = self.call("get", 0, |b, s, r| {
            b.vt_plugin_store().backend().call_get(s, r, &h)
        })?;
        checked(hash, &self.name, "plugin", got)
    }

    fn contains(&self, hash: &Hash) -> CoreResult<bool> {
        let h = hash.to_string();
        self.call("contains", 0, |b, s, r| {
            b.vt_plugin_store().backend().call_contains(s, r, &h)
        })
    }

    fn sync(&self) -> CoreResult<()> {
        // Every instance: each backend may hold what it was given.
        for i in &self.insts {
            let g = i
                .lock()
                .map_err(|_| CoreError::Store(format!("{}: lock poisoned", self.name)))?;
            self.run(g, "flush", 0, |b, s, r| {
                b.vt_plugin_store().backend().call_flush(s, r)
            })?;
        }
        Ok(())
    }

    fn stats(&self) -> CoreResult<StoreStats> {
        let st = self.call("stats", 0, |b, s, r| {
            b.vt_plugin_store().backend().call_stats(s, r)
        })?;
        Ok(StoreStats {
            blocks: st.blocks,
            raw_bytes: st.raw_bytes,
            stored_bytes: st.stored_bytes,
            ..StoreStats::default()
        })
    }

    fn archive_names(&self) -> CoreResult<Vec<String>> {
        self.call("archive-names", 0, |b, s, r| {
            b.vt_plugin_store().backend().call_archive_names(s, r)
        })
    }

    fn archive_read(&self, name: &str) -> CoreResult<Option<Vec<u8>>> {
        self.call("archive-read", 0, |b, s, r| {
            b.vt_plugin_store().backend().call_archive_read(s, r, name)
        })
    }

    fn archive_append(&self, name: &str, lines: &[u8]) -> CoreResult<()> {
        self.call("archive-append", lines.len(), |b, s, r| {
            b.vt_plugin_store()
                .backend()
                .call_archive_append(s, r, name, lines)
        })
    }
}

impl Drop for WasmStore {
    fn drop(&mut self) {
        let _ = self.sync();
    }
}
