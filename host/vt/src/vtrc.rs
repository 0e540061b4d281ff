//! The vtrc file's tables (`vtrc.5`) and the parsing of its text: TOML,
//! with no unknown tables or keys, and a type for every store. Only std,
//! serde and toml here, so that the fuzz target `vtrc` (`tests/fuzz/`)
//! and this crate's replay test can include this file by itself (`vt` is a
//! binary crate); `config.rs` adds the defaults, loading and printing.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The parsed configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `[default]` table.
    #[serde(default)]
    pub default: Defaults,
    /// The `[stores.NAME]` tables, checked when opened (each type takes
    /// its own settings).
    #[serde(default)]
    pub stores: BTreeMap<String, toml::Table>,
    /// The `[serve]` table.
    #[serde(default)]
    pub serve: ServeConfig,
    /// The `[httpd]` table.
    #[serde(default)]
    pub httpd: HttpdConfig,
    /// The `[plugins]` table.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// The `[scanners]` table: file-name glob -> scanner name (or "none").
    #[serde(default)]
    pub scanners: BTreeMap<String, String>,
    /// The file it came from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
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
    /// Name (or spec) of the store used without `-S`.
    pub store: Option<String>,
}

/// The `[serve]` table: defaults for `vt serve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// `NAME[:STORESPEC]`, comma-separated, or a list of them.
    pub export: Option<toml::Value>,
    /// Addresses to listen on (`--listen`).
    pub listen: Option<Vec<String>>,
    /// The file holding the token clients must present.
    pub token_file: Option<String>,
    /// TLS certificate chain (PEM).
    pub tls_cert: Option<String>,
    /// TLS private key (PEM).
    pub tls_key: Option<String>,
}

/// The `[httpd]` table: defaults for `vt httpd` and `vt publish`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpdConfig {
    /// Address to listen on (`--listen`).
    pub listen: Option<String>,
    /// The file holding the token that writes need.
    pub token_file: Option<String>,
    /// The URL others reach the server at (`http://HOST:PORT/`), which
    /// `vt publish` prints its URLs with.
    pub url: Option<String>,
}

/// Why vtrc text is refused.
#[derive(Debug)]
pub enum VtrcError {
    /// Not TOML, or not the tables and keys vtrc has.
    Toml(toml::de::Error),
    /// `[stores.NAME]` has no `type`.
    NoType(String),
}

impl std::fmt::Display for VtrcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VtrcError::Toml(e) => write!(f, "{e}"),
            VtrcError::NoType(name) => write!(f, "[stores.{name}] has no type"),
        }
    }
}

/// Parses the text of a vtrc file (its `source` left unset).
pub fn parse(text: &str) -> Result<Config, VtrcError> {
    let c: Config = toml::from_str(text).map_err(VtrcError::Toml)?;
    if let Some(name) = c.stores.iter().find(|(_, t)| !t.contains_key("type")) {
        return Err(VtrcError::NoType(name.0.clone()));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_needs_a_type() {
        assert!(parse("[stores.a]\ntype = \"memory\"\n").is_ok());
        match parse("[stores.a]\npath = \"/x\"\n") {
            Err(VtrcError::NoType(n)) => assert_eq!(n, "a"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse("[x]\n"), Err(VtrcError::Toml(_))));
        assert!(matches!(
            parse("[default]\nstore = 1\n"),
            Err(VtrcError::Toml(_))
        ));
    }
}
