//! The vtrc configuration file (TOML, `vtrc.5`) and store selection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use vt_core::{HashKind, Store};
use vt_stores::{Compression, DataDir, MemoryStore, Verify};

/// The commented configuration `vt init` writes.
pub const DEFAULT_VTRC: &str = r#"# vt configuration (see vtrc(5)).
#
# Stores are [stores.NAME] tables; `vt -S NAME` picks one, and
# [default].store names the one used when -S and $VT_STORE are unset.

[default]
store = "local"

[stores.local]
# The embedded default: a DataDir of .vtd datafiles plus an index.
type = "datadir"
# Where it lives; "~" is your home directory.
# Default: $XDG_DATA_HOME/vt/store (~/.local/share/vt/store).
#path = "~/.local/share/vt/store"
# Hash for new blocks: "sha3_256" (default) or "blake3".
#hash = "sha3_256"
# What every read checks: "checksum" (default: each record's CRC-32, that it
# is the block asked for, and its length) or "hash" (also recompute the
# block's hash: several times slower). `vt fsck` always checks hashes.
#verify = "checksum"
# How hard new data is compressed (zstd): "auto" (default: level 3, and
# levels 6-9 for the new data of imports that offer mostly stored blocks),
# "fast" (always level 3) or "max" (always level 9: smallest, slowest).
#compression = "auto"

# A store in memory, discarded at exit (for experiments).
[stores.scratch]
type = "memory"

[plugins]
# Installed scanner plugins (`vt plugin install`).
#dir = "~/.local/share/vt/plugins"
# Compiled plugins, so a plugin is compiled once, not at every run.
#cache = "~/.cache/vt/plugins"

# Which scanner chunks which files, by file-name glob (a pattern with a "/"
# matches the whole path). The longest matching pattern wins; "none" means
# plain content-defined chunking. Unmapped files are matched by extension,
# then by asking each scanner to sniff the file's first KiB.
[scanners]
#"*.mbx" = "mbox"
#"*.log" = "none"
"#;

/// The parsed configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[default]` table.
    #[serde(default)]
    pub default: Defaults,
    /// The `[stores.NAME]` tables.
    #[serde(default)]
    pub stores: BTreeMap<String, StoreConfig>,
    /// The `[plugins]` table.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The `[scanners]` table: file-name glob -> scanner name (or "none").
    #[serde(default)]
    pub scanners: BTreeMap<String, String>,
}

/// The `[plugins]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Where installed plugins live [default: $XDG_DATA_HOME/vt/plugins].
    pub dir: Option<String>,
    /// Where compiled plugins are cached [default: $XDG_CACHE_HOME/vt/plugins].
    pub cache: Option<String>,
}

/// The `[default]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Name of the store used without `-S`.
    pub store: Option<String>,
}

/// One `[stores.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A DataDir.
    Datadir {
        /// Its directory.
        path: Option<String>,
        /// Hash for new blocks.
        hash: Option<String>,
        /// What reads check: "checksum" (the default) or "hash".
        verify: Option<String>,
        /// How new data is compressed: "auto" (the default), "fast", "max".
        compression: Option<String>,
    },
    /// A MemoryStore.
    Memory {
        /// Hash for new blocks.
        hash: Option<String>,
    },
}

/// An opened store with what the CLI needs to know about it.
pub struct OpenStore {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The DataDir behind it, when it is one.
    pub datadir: Option<Arc<DataDir>>,
    /// The store's name (config name or path), for messages.
    pub name: String,
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// `$XDG_CONFIG_HOME/vt/vtrc`.
pub fn default_config_path() -> PathBuf {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".config"), PathBuf::from)
        .join("vt/vtrc")
}

/// `$XDG_DATA_HOME/vt/store`.
pub fn default_store_path() -> PathBuf {
    data_home().join("vt/store")
}

fn data_home() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".local/share"), PathBuf::from)
}

fn cache_home() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".cache"), PathBuf::from)
}

pub(crate) fn expand(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if p == "~" => home(),
        None => PathBuf::from(p),
    }
}

impl Config {
    /// The directory of installed plugins.
    pub fn plugin_dir(&self) -> PathBuf {
        self.plugins
            .dir
            .as_deref()
            .map_or_else(|| data_home().join("vt/plugins"), expand)
    }

    /// The cache of compiled plugins.
    pub fn plugin_cache(&self) -> PathBuf {
        self.plugins
            .cache
            .as_deref()
            .map_or_else(|| cache_home().join("vt/plugins"), expand)
    }

    /// The `[scanners]` mapping, most specific (longest) pattern first.
    pub fn scanner_mapping(&self) -> Vec<(String, String)> {
        let mut m: Vec<(String, String)> = self
            .scanners
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        m.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        m
    }

    /// Loads `path`; a missing file gives the built-in defaults.
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("configuration {} is invalid", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Opens the store `spec` names: a configured store name (optionally in
    /// brackets), or a path to a DataDir. `None` means the default store.
    /// A DataDir that does not exist yet is created only with `create`.
    pub fn open_store(&self, spec: Option<&str>, create: bool) -> Result<OpenStore> {
        let spec = spec
            .map(str::to_owned)
            .or_else(|| self.default.store.clone())
            .unwrap_or_else(|| "local".to_owned());
        let name = spec
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(&spec)
            .to_owned();
        match self.stores.get(&name) {
            Some(StoreConfig::Datadir {
                path,
                hash,
                verify,
                compression,
            }) => {
                let path = path.as_deref().map_or_else(default_store_path, expand);
                let verify = match verify.as_deref() {
                    None | Some("checksum") => Verify::Checksum,
                    Some("hash") => Verify::Hash,
                    Some(other) => bail!(
                        "[stores.{name}] verify = {other:?}: expected \"checksum\" or \"hash\""
                    ),
                };
                let compression = match compression.as_deref() {
                    None => Compression::default(),
                    Some(c) => c.parse().map_err(|e| anyhow!("[stores.{name}] {e}"))?,
                };
                open_datadir(&path, hash.as_deref(), verify, compression, name, create)
            }
            Some(StoreConfig::Memory { hash }) => Ok(OpenStore {
                store: Arc::new(MemoryStore::new(parse_hash(hash.as_deref())?)),
                datadir: None,
                name,
            }),
            None if name == "local" => open_datadir(
                &default_store_path(),
                None,
                Verify::default(),
                Compression::default(),
                name,
                create,
            ),
            None if spec.contains('/') || spec.starts_with('.') || spec.starts_with('~') => {
                open_datadir(
                    &expand(&spec),
                    None,
                    Verify::default(),
                    Compression::default(),
                    spec.clone(),
                    create,
                )
            }
            None => bail!(
                "no store named {name:?}: define [stores.{name}] in the configuration, or give a path to a DataDir"
            ),
        }
    }
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
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vtrc_parses() {
        let c: Config = toml::from_str(DEFAULT_VTRC).unwrap();
        assert_eq!(c.default.store.as_deref(), Some("local"));
        assert!(matches!(c.stores["scratch"], StoreConfig::Memory { .. }));
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(
            toml::from_str::<Config>("[stores.x]\ntype = \"datadir\"\npth = \"/x\"\n").is_err()
        );
    }
}
