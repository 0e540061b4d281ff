//! The plugin directory: installed plugins, each a component `NAME.wasm`
//! beside a manifest `NAME.toml` recording where it came from and its
//! SHA-256 digest, which is checked on every load.

use std::path::{Path, PathBuf};

use crate::engine::{sha256_hex, write_atomic};
use crate::wasm::{PluginInfo, WarnFn, WasmPlugin};
use crate::{Error, PluginEngine, Result};

/// What `vt plugin install` records about a plugin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// The plugin's name (also the file names').
    pub name: String,
    /// Its version.
    pub version: String,
    /// The file it was installed from.
    pub source: String,
    /// SHA-256 of the component, lower-case hex.
    pub sha256: String,
    /// The `vt:plugin` version it was checked against.
    pub wit: String,
    /// File extensions it handles.
    pub extensions: Vec<String>,
    /// MIME types it handles.
    pub mime_types: Vec<String>,
    /// What it provides: `scanner` (the default, and what manifests
    /// written before store plugins mean) or `store` (a store scheme
    /// named `name`).
    #[serde(default = "scanner_kind")]
    pub kind: String,
}

fn scanner_kind() -> String {
    "scanner".into()
}

/// Whether component `bytes` exports a store scheme (rather than a
/// scanner).
fn is_store(engine: &PluginEngine, label: &str, bytes: &[u8]) -> Result<bool> {
    let (c, _) = engine.component(label, bytes)?;
    let ty = c.component_type();
    let store = ty
        .exports(engine.engine())
        .any(|(n, _)| n.starts_with("vt:plugin/store@"));
    Ok(store)
}

/// A directory of installed plugins.
pub struct PluginDir {
    root: PathBuf,
}

impl PluginDir {
    /// The plugin directory at `root` (created on first install).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PluginDir { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the component of plugin `name` lives.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.wasm"))
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.root.join(format!("{name}.toml"))
    }

    /// Validates, precompiles and installs the component at `path`,
    /// replacing an installed plugin of the same name.
    pub fn install(&self, engine: &PluginEngine, path: &Path, warn: WarnFn) -> Result<Manifest> {
        let bytes = std::fs::read(path).map_err(|e| Error::io("read", path, e))?;
        let label = path.display().to_string();
        let source = std::fs::canonicalize(path)
            .unwrap_or_else(|_| path.to_path_buf())
            .display()
            .to_string();
        let m = if is_store(engine, &label, &bytes)? {
            let plugin = crate::StorePlugin::load(engine, &label, &bytes)?;
            Manifest {
                name: plugin.info().name.clone(),
                version: plugin.info().version.clone(),
                source,
                sha256: plugin.digest().to_string(),
                wit: crate::WIT_VERSION.into(),
                extensions: Vec::new(),
                mime_types: Vec::new(),
                kind: "store".into(),
            }
        } else {
            let plugin = WasmPlugin::load(engine, &label, &bytes, warn)?;
            let info: &PluginInfo = plugin.info();
            Manifest {
                name: info.name.clone(),
                version: info.version.clone(),
                source,
                sha256: plugin.digest().to_string(),
                wit: crate::WIT_VERSION.into(),
                extensions: info.extensions.clone(),
                mime_types: info.mime_types.clone(),
                kind: scanner_kind(),
            }
        };
        self.write(&m, &bytes)
    }

    /// Writes component `bytes` and manifest `m`.
    fn write(&self, m: &Manifest, bytes: &[u8]) -> Result<Manifest> {
        write_atomic(&self.wasm_path(&m.name), bytes)?;
        let text = toml::to_string(&m).map_err(|e| Error::Invalid {
            plugin: m.name.clone(),
            detail: format!("cannot write its manifest: {e}"),
        })?;
        write_atomic(&self.manifest_path(&m.name), text.as_bytes())?;
        Ok(m.clone())
    }

    /// The manifests of every installed plugin, by name.
    pub fn list(&self) -> Result<Vec<Manifest>> {
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("list", &self.root, e)),
        };
        let mut out = Vec::new();
        for ent in rd {
            let ent = ent.map_err(|e| Error::io("list", &self.root, e))?;
            let name = ent.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".toml") {
                out.push(self.manifest(stem)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The manifest of plugin `name`.
    pub fn manifest(&self, name: &str) -> Result<Manifest> {
        let p = self.manifest_path(name);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(name.into()))
            }
            Err(e) => return Err(Error::io("read", &p, e)),
        };
        toml::from_str(&text).map_err(|e| Error::Invalid {
            plugin: p.display().to_string(),
            detail: format!("bad manifest: {e}"),
        })
    }

    /// Loads installed scanner `name`, refusing it if its component no
    /// longer matches the digest recorded at install time.
    pub fn load(&self, engine: &PluginEngine, name: &str, warn: WarnFn) -> Result<WasmPlugin> {
        let (path, bytes) = self.checked(name)?;
        WasmPlugin::load(engine, &path.display().to_string(), &bytes, warn)
    }

    /// Loads installed store plugin `name`, checked as [`PluginDir::load`]
    /// checks a scanner.
    pub fn load_store(&self, engine: &PluginEngine, name: &str) -> Result<crate::StorePlugin> {
        let (path, bytes) = self.checked(name)?;
        crate::StorePlugin::load(engine, &path.display().to_string(), &bytes)
    }

    /// Plugin `name`'s component, if it matches its manifest's digest.
    fn checked(&self, name: &str) -> Result<(PathBuf, Vec<u8>)> {
        let m = self.manifest(name)?;
        let path = self.wasm_path(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
        let digest = sha256_hex(&bytes);
        if digest != m.sha256 {
            return Err(Error::Invalid {
                plugin: path.display().to_string(),
                detail: format!(
                    "its SHA-256 is {digest}, not the {} recorded at install; reinstall it",
                    m.sha256
                ),
            });
        }
        Ok((path, bytes))
    }

    /// Removes installed plugin `name`.
    pub fn remove(&self, name: &str) -> Result<Manifest> {
        let m = self.manifest(name)?;
        for p in [self.manifest_path(name), self.wasm_path(name)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", &p, e)),
            }
        }
        Ok(m)
    }
}
