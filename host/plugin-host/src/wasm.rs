//! One WebAssembly scanner plugin: its compiled component, what it
//! declares, and scans run in fresh sandboxed instances.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use wasmtime::component::{Component, ResourceAny};
use wasmtime::Store;

use crate::engine::{sha256_hex, Compiled};
pub use crate::returns::valid_name;
use crate::returns::{confidence, Offsets};
use crate::sandbox::Sandbox;
use crate::since_v1_0::exports::vt::plugin::scanner::Info;
use crate::since_v1_0::{ScannerCore as ScannerPlugin, ScannerCorePre as ScannerPluginPre};
use crate::since_v1_1::min_block;
use crate::{Error, PluginEngine, Result, WIT_VERSION};

/// What a scanner plugin declares about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PluginInfo {
    /// Unique short name.
    pub name: String,
    /// The plugin's own version.
    pub version: String,
    /// File extensions handled.
    pub extensions: Vec<String>,
    /// MIME types handled.
    pub mime_types: Vec<String>,
    /// Byte strings a handled file starts with. A scanner that declares
    /// any is asked to sniff only files that start with one of them.
    #[serde(default)]
    pub magic: Vec<Vec<u8>>,
    /// The least length of a block ended at one of its proposals (its
    /// `seams` interface, WIT 1.1); 0 for the host's default, and for
    /// plugins built against WIT 1.0.
    #[serde(default)]
    pub min_block: u32,
}

impl From<Info> for PluginInfo {
    fn from(i: Info) -> Self {
        PluginInfo {
            name: i.name,
            version: i.version,
            extensions: i.extensions,
            mime_types: i.mime_types,
            magic: i.magic,
            min_block: 0,
        }
    }
}

/// Where warnings about misbehaving plugins go.
pub type WarnFn = Arc<dyn Fn(String) + Send + Sync>;

/// A loaded scanner plugin.
pub struct WasmPlugin {
    engine: PluginEngine,
    pre: ScannerPluginPre<Sandbox>,
    info: PluginInfo,
    digest: String,
    compiled: Compiled,
    /// Idle instances kept for `sniff`, which holds no per-file state.
    sniffers: Mutex<Vec<(Store<Sandbox>, ScannerPlugin)>>,
    /// Set after a failed sniff: the plugin is not asked again this run.
    sniff_broken: AtomicBool,
    warn: WarnFn,
}

impl WasmPlugin {
    /// Loads a component: checks that it is a `vt:plugin` scanner of a
    /// compatible version, compiles it (or takes it from the cache) and asks
    /// it to describe itself. `label` names it in messages (a file name).
    pub fn load(engine: &PluginEngine, label: &str, bytes: &[u8], warn: WarnFn) -> Result<Self> {
        let (component, compiled) = engine.component(label, bytes)?;
        check_world(engine, label, &component)?;
        let ipre = engine
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| Error::Invalid {
                plugin: label.into(),
                detail: format!("it needs more than vt grants (no files, network or clock): {e:#}"),
            })?;
        let pre = ScannerPluginPre::new(ipre).map_err(|e| Error::Invalid {
            plugin: label.into(),
            detail: format!("{e:#}"),
        })?;
        engine.start_ticker();
        let mut plugin = WasmPlugin {
            engine: engine.clone(),
            pre,
            info: PluginInfo::default(),
            digest: sha256_hex(bytes),
            compiled,
            sniffers: Mutex::new(Vec::new()),
            sniff_broken: AtomicBool::new(false),
            warn,
        };
        let failed = |detail: String| Error::Failed {
            plugin: label.into(),
            detail,
        };
        let mut store = Sandbox::store(engine);
        let raw = plugin
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| failed(format!("instantiate: {}", trap_text(&e))))?;
        let inst = ScannerPlugin::new(&mut store, &raw)
            .map_err(|e| failed(format!("instantiate: {}", trap_text(&e))))?;
        let info = inst
            .vt_plugin_scanner()
            .call_describe(&mut store)
            .map_err(|e| failed(format!("describe: {}", trap_text(&e))))?;
        let min_block = min_block(&component, &raw, &mut store)
            .map_err(|e| failed(format!("min-block: {}", trap_text(&e))))?;
        let info = PluginInfo {
            min_block,
            ..PluginInfo::from(info)
        };
        if !valid_name(&info.name) {
            return Err(Error::Invalid {
                plugin: label.into(),
                detail: format!("its name {:?} is not [a-z0-9-]+", info.name),
            });
        }
        plugin.info = info;
        plugin
            .sniffers
            .lock()
            .map(|mut v| v.push((store, inst)))
            .ok();
        Ok(plugin)
    }

    /// Loads a component from a file.
    pub fn load_file(engine: &PluginEngine, path: &Path, warn: WarnFn) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        Self::load(engine, &path.display().to_string(), &bytes, warn)
    }

    /// What the plugin declares.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// SHA-256 of the component, lower-case hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether this run compiled the component or loaded it from the cache.
    pub fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    fn instance(&self) -> std::result::Result<(Store<Sandbox>, ScannerPlugin), String> {
        let mut store = Sandbox::store(&self.engine);
        let inst = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| format!("instantiate: {}", trap_text(&e)))?;
        Ok((store, inst))
    }

    /// The plugin's confidence (0..=100) that it handles this file; 0 if it
    /// fails (after one warning per run).
    pub fn sniff(&self, path: &Path, head: &[u8]) -> u8 {
        if self.sniff_broken.load(Relaxed) {
            return 0;
        }
        let idle = self.sniffers.lock().ok().and_then(|mut v| v.pop());
        let (mut store, inst) = match idle.map_or_else(|| self.instance(), Ok) {
            Ok(x) => x,
            Err(e) => return self.sniff_failed(path, &e),
        };
        let name = file_name(path);
        Sandbox::deadline(&mut store, head.len());
        match inst.vt_plugin_scanner().call_sniff(&mut store, &name, head) {
            Ok(c) => {
                if let Ok(mut v) = self.sniffers.lock() {
                    if v.len() < 8 {
                        v.push((store, inst));
                    }
                }
                confidence(c)
            }
            Err(e) => self.sniff_failed(path, &trap_text(&e)),
        }
    }

    fn sniff_failed(&self, path: &Path, detail: &str) -> u8 {
        if !self.sniff_broken.swap(true, Relaxed) {
            (self.warn)(format!(
                "plugin {} failed to sniff {}: {detail}; not asking it again",
                self.info.name,
                path.display()
            ));
        }
        0
    }

    /// Starts a scan of the file at `path` in a fresh instance.
    pub fn scan(&self, path: &Path) -> WasmScan {
        let mut scan = WasmScan {
            name: self.info.name.clone(),
            path: path.display().to_string(),
            state: None,
            offsets: Offsets::new(),
            warn: self.warn.clone(),
            min_block: self.info.min_block,
        };
        match self.instance() {
            Ok((mut store, inst)) => {
                let res = inst
                    .vt_plugin_scanner()
                    .scan()
                    .call_constructor(&mut store, &file_name(path));
                match res {
                    Ok(r) => scan.state = Some((store, inst, r)),
                    Err(e) => scan.fail(&format!("start: {}", trap_text(&e))),
                }
            }
            Err(e) => scan.fail(&e),
        }
        scan
    }
}

/// One file's scan by a WebAssembly plugin. Once the plugin fails, it is
/// dropped and the rest of the file is chunked without proposals.
pub struct WasmScan {
    name: String,
    path: String,
    state: Option<(Store<Sandbox>, ScannerPlugin, ResourceAny)>,
    offsets: Offsets,
    warn: WarnFn,
    min_block: u32,
}

impl WasmScan {
    /// Whether the plugin is still running (has not failed).
    pub fn alive(&self) -> bool {
        self.state.is_some()
    }

    /// The offsets of one call if the call succeeded and they pass the
    /// checks (rising, after earlier ones, at most `end`); else none, and
    /// the plugin is dropped for the rest of the file.
    fn accept(&mut self, got: wasmtime::Result<Vec<u64>>, end: u64) -> Vec<u64> {
        let checked = got
            .map_err(|e| trap_text(&e))
            .and_then(|offs| self.offsets.accept(&offs, end).map(|()| offs));
        match checked {
            Ok(offs) => offs,
            Err(e) => {
                self.fail(&e);
                Vec::new()
            }
        }
    }

    fn fail(&mut self, detail: &str) {
        self.state = None;
        (self.warn)(format!(
            "plugin {} failed on {}: {detail}; chunking the rest of the file without it",
            self.name, self.path
        ));
    }
}

impl vt_core::Scanner for WasmScan {
    fn name(&self) -> &str {
        &self.name
    }

    fn min_block(&self) -> Option<usize> {
        (self.min_block > 0).then_some(self.min_block as usize)
    }

    fn scan(&mut self, offset: u64, buf: &[u8]) -> Vec<u64> {
        let Some((store, inst, res)) = self.state.as_mut() else {
            return Vec::new();
        };
        Sandbox::deadline(store, buf.len());
        let got = inst
            .vt_plugin_scanner()
            .scan()
            .call_feed(&mut *store, *res, offset, buf);
        self.accept(got, offset + buf.len() as u64)
    }

    fn finish(&mut self) -> Vec<u64> {
        let Some((store, inst, res)) = self.state.as_mut() else {
            return Vec::new();
        };
        Sandbox::deadline(store, 0);
        let got = inst
            .vt_plugin_scanner()
            .scan()
            .call_finish(&mut *store, *res);
        // The end of the data is not known here; the chunker drops offsets
        // beyond it.
        self.accept(got, u64::MAX)
    }
}

/// Refuses components that are not a `vt:plugin` scanner of this major
/// version, with a message that says which version they were built for.
fn check_world(engine: &PluginEngine, label: &str, c: &Component) -> Result<()> {
    let ty = c.component_type();
    let mut found = Vec::new();
    for (name, _) in ty.exports(engine.engine()) {
        if let Some(v) = name.strip_prefix("vt:plugin/scanner@") {
            found.push(v.to_string());
        }
    }
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    match found.first() {
        None => Err(Error::Invalid {
            plugin: label.into(),
            detail: format!(
                "it exports no vt:plugin/scanner interface (build it with vt-sdk, world scanner-plugin@{WIT_VERSION})"
            ),
        }),
        Some(v) if major(v) != major(WIT_VERSION) => Err(Error::Incompatible {
            plugin: label.into(),
            found: v.clone(),
        }),
        Some(_) => Ok(()),
    }
}

/// A trap or error as one line: the trap code or the innermost message.
pub(crate) fn trap_text(e: &wasmtime::Error) -> String {
    if let Some(t) = e.downcast_ref::<wasmtime::Trap>() {
        return match t {
            wasmtime::Trap::Interrupt => "ran past its time limit (interrupted)".into(),
            wasmtime::Trap::OutOfFuel => "ran out of fuel".into(),
            wasmtime::Trap::UnreachableCodeReached => {
                "trapped (unreachable: a panic or abort in the plugin)".into()
            }
            wasmtime::Trap::AllocationTooLarge => format!(
                "exceeded its memory limit ({} MiB)",
                crate::sandbox::MEMORY_LIMIT >> 20
            ),
            other => format!("trapped ({other})"),
        };
    }
    let first_line = |s: String| s.lines().next().unwrap_or("").trim().to_string();
    let all: Vec<String> = e.chain().map(|c| first_line(c.to_string())).collect();
    let text = all.join(": ");
    if text.contains("memory") && (text.contains("limit") || text.contains("grow")) {
        format!(
            "exceeded its memory limit ({} MiB): {}",
            crate::sandbox::MEMORY_LIMIT >> 20,
            all.last().cloned().unwrap_or_default()
        )
    } else {
        all.last().cloned().unwrap_or_default()
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
