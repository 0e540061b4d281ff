//! The vtrc configuration file (TOML, `vtrc.5`): built-in defaults plus
//! what the file says, and `vt config`, which prints the result.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use crate::vtrc::Config;
use crate::vtrc::{parse, VtrcError};

/// The commented configuration `vt init` writes.
pub const DEFAULT_VTRC: &str = r#"# vt configuration (see vtrc(5)).
#
# Stores are [stores.NAME] tables; `vt -S NAME` picks one, and
# [default].store names the one used when -S and $VT_STORE are unset.
# Wherever a store is named (-S, [STORE]NAME, read = ..., store = ...) a
# store spec works too: a DataDir path, unix:/path.sock, tcp:host:port,
# "!ssh host vt serve --stdio", type(key=value,...), or a comma list.

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
# Keep some archives in another store, by name: "GLOB:STORESPEC" or a list.
#archives_from = "laptop-*:/mnt/usb/vt"

# A store in memory, discarded at exit (for experiments).
[stores.scratch]
type = "memory"

# A vt serve on another machine, reached through ssh:
#[stores.backup]
#type = "command"
#command = "ssh backup.example.org vt serve --stdio"

# ... or on TCP (loopback or a trusted network; see vt(1) SERVE):
#[stores.nas]
#type = "tcp"
#address = "nas.lan:7520"
#token_file = "~/.config/vt/nas.token"

# A vt httpd, block by block over HTTP (token_file to write):
#[stores.web]
#type = "http"
#url = "http://files.example.org:8470/"

# A remote store with a local file cache of at most 2 GiB in front:
#[stores.cached]
#type = "cache"
#store = "backup"
#limit = "2GiB"

# What `vt serve` exports: NAME[:STORESPEC], comma-separated (default: the
# -S store, as "default"). Clients choose one with export = NAME.
[serve]
#export = "default:local, usb:/mnt/usb/vt"

# What `vt httpd` listens on (default 127.0.0.1:8470) and the token that
# writes need (without one it is read-only); url is where others reach it,
# which `vt publish` prints its links with.
[httpd]
#listen = "127.0.0.1:8470"
#token_file = "~/.config/vt/httpd.token"
#url = "http://files.example.org:8470/"

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

pub(crate) fn home() -> PathBuf {
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

/// `$XDG_CACHE_HOME`.
pub fn cache_home() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map_or_else(|| home().join(".cache"), PathBuf::from)
}

/// Where `vt serve` puts the UNIX socket of store NAME when told no other
/// place: `$XDG_RUNTIME_DIR/vt/NAME.sock`, else `/tmp/vt-UID/NAME.sock`.
pub fn default_socket(name: &str) -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(|d| PathBuf::from(d).join("vt"))
        .unwrap_or_else(|| {
            // SAFETY: getuid has no preconditions.
            let uid = unsafe { libc::getuid() };
            std::env::temp_dir().join(format!("vt-{uid}"))
        });
    dir.join(format!("{name}.sock"))
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

    /// The store used without `-S`: `[default].store`, else "local".
    pub fn default_store(&self) -> String {
        self.default
            .store
            .clone()
            .unwrap_or_else(|| "local".to_owned())
    }

    /// Loads `path`; a missing file gives the built-in defaults.
    pub fn load(path: &Path) -> Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => match parse(&text) {
                Ok(mut c) => {
                    c.source = Some(path.to_path_buf());
                    Ok(c)
                }
                Err(VtrcError::Toml(e)) => {
                    Err(e).with_context(|| format!("configuration {} is invalid", path.display()))
                }
                Err(VtrcError::NoType(name)) => bail!(
                    "configuration {}: [stores.{name}] has no type (known: {})",
                    path.display(),
                    crate::open::types().join(", ")
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The effective configuration as TOML: every clause with its
    /// settings and the defaults that apply, as `vt config` prints it.
    pub fn effective(&self, path: &Path) -> String {
        let mut out = String::new();
        out.push_str(&match &self.source {
            Some(p) => format!(
                "# configuration: {} (with built-in defaults)\n",
                p.display()
            ),
            None => format!(
                "# configuration: {} does not exist: built-in defaults\n",
                path.display()
            ),
        });
        let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
        out.push_str(&format!(
            "\n[default]\nstore = {}\n",
            q(&self.default_store())
        ));
        let mut stores = self.stores.clone();
        if !stores.contains_key("local") {
            let mut t = toml::Table::new();
            t.insert("type".into(), "datadir".into());
            stores.insert("local".into(), t);
        }
        for (name, t) in &stores {
            out.push_str(&format!("\n[stores.{}]\n", toml_key(name)));
            let mut t = t.clone();
            crate::open::fill_defaults(name, &mut t);
            let ty = t.remove("type");
            if let Some(ty) = ty {
                out.push_str(&format!("type = {ty}\n"));
            }
            for (k, v) in &t {
                out.push_str(&format!("{} = {v}\n", toml_key(k)));
            }
        }
        out.push_str("\n[serve]\n");
        let exports = match &self.serve.export {
            Some(v) => v.to_string(),
            None => q(&format!("default:{}", self.default_store())),
        };
        out.push_str(&format!("export = {exports}\n"));
        if let Some(l) = &self.serve.listen {
            let v: Vec<String> = l.iter().map(|a| q(a)).collect();
            out.push_str(&format!("listen = [{}]\n", v.join(", ")));
        }
        for (k, v) in [
            ("token_file", &self.serve.token_file),
            ("tls_cert", &self.serve.tls_cert),
            ("tls_key", &self.serve.tls_key),
        ] {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {}\n", q(v)));
            }
        }
        out.push_str(&format!(
            "\n[plugins]\ndir = {}\ncache = {}\n",
            q(&self.plugin_dir().display().to_string()),
            q(&self.plugin_cache().display().to_string())
        ));
        out.push_str("\n[scanners]\n");
        for (k, v) in &self.scanners {
            out.push_str(&format!("{} = {}\n", q(k), q(v)));
        }
        out
    }
}

fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        toml::Value::String(k.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_vtrc_parses() {
        let c: Config = toml::from_str(DEFAULT_VTRC).unwrap();
        assert_eq!(c.default.store.as_deref(), Some("local"));
        assert_eq!(c.stores["scratch"]["type"].as_str(), Some("memory"));
        let text = c.effective(Path::new("/x"));
        assert!(text.contains("[stores.local]"), "{text}");
        // What `vt config` prints is itself a valid configuration.
        toml::from_str::<Config>(&text).unwrap();
    }

    #[test]
    fn unknown_tables_are_errors() {
        assert!(toml::from_str::<Config>("[store.x]\ntype = \"datadir\"\n").is_err());
    }
}
