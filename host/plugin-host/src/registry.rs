//! One registry of every scanner vt can use, and the choice of scanner for
//! a file: configured mapping, then file extension (also inside rsync's
//! temporary names), then the most confident `sniff`, else none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vt_core::scanner::{builtins, BuiltinScanner, ScannerSource};
use vt_core::Scanner;

use crate::wasm::{PluginInfo, WarnFn, WasmPlugin};
use crate::{PluginDir, PluginEngine};

/// Least `sniff` confidence that selects a scanner.
pub const SNIFF_THRESHOLD: u8 = 50;

/// Where a scanner comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Compiled into vt (native, registered with `inventory`).
    Builtin,
    /// A WebAssembly plugin shipped inside vt.
    Bundled,
    /// A WebAssembly plugin installed with `vt plugin install`.
    Installed(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Bundled => f.write_str("bundled"),
            Source::Installed(p) => write!(f, "installed ({})", p.display()),
        }
    }
}

enum Kind {
    Builtin(&'static BuiltinScanner),
    Wasm(Arc<WasmPlugin>),
}

/// A scanner in the registry.
pub struct ScannerEntry {
    /// What it declares.
    pub info: PluginInfo,
    /// Where it comes from.
    pub source: Source,
    /// SHA-256 of the component (WebAssembly plugins only).
    pub digest: Option<String>,
    kind: Kind,
}

impl ScannerEntry {
    /// The loaded WebAssembly plugin, if this is one.
    pub fn wasm(&self) -> Option<&WasmPlugin> {
        match &self.kind {
            Kind::Wasm(w) => Some(w),
            Kind::Builtin(_) => None,
        }
    }

    fn sniff(&self, path: &Path, head: &[u8]) -> u8 {
        match &self.kind {
            Kind::Builtin(b) => {
                let name = path
                    .file_name()
                    .map(|n| n.as_encoded_bytes())
                    .unwrap_or(b"");
                (b.sniff)(name, head).min(100)
            }
            Kind::Wasm(w) => w.sniff(path, head),
        }
    }

    /// Starts a scan of the file at `path`.
    pub fn scan(&self, path: &Path) -> Box<dyn Scanner> {
        match &self.kind {
            Kind::Builtin(b) => (b.new)(),
            Kind::Wasm(w) => Box::new(w.scan(path)),
        }
    }
}

/// Every scanner vt can use, by name; later sources override earlier ones
/// of the same name (installed over bundled over built-in).
pub struct Registry {
    entries: Vec<ScannerEntry>,
    /// `(glob, scanner name)` from the configuration, in the order given
    /// (the vt binary sorts the longest pattern first); first match wins.
    /// The name `none` means plain CDC.
    mapping: Vec<(String, String)>,
    warn: WarnFn,
}

impl Registry {
    /// A registry of the built-in scanners only.
    pub fn builtin(warn: WarnFn) -> Self {
        let entries = builtins()
            .map(|b| ScannerEntry {
                info: PluginInfo {
                    name: b.name.into(),
                    version: b.version.into(),
                    extensions: b.extensions.iter().map(|s| s.to_string()).collect(),
                    mime_types: b.mime_types.iter().map(|s| s.to_string()).collect(),
                    magic: Vec::new(),
                    min_block: 0,
                },
                source: Source::Builtin,
                digest: None,
                kind: Kind::Builtin(b),
            })
            .collect();
        Registry {
            entries,
            mapping: Vec::new(),
            warn,
        }
    }

    /// The built-in scanners, the bundled plugins (`(file name, component)`)
    /// and those installed in `dir`. A plugin that does not load is left out
    /// with a warning.
    pub fn load(
        engine: &PluginEngine,
        bundled: &[(&str, &[u8])],
        dir: Option<&PluginDir>,
        warn: WarnFn,
    ) -> Self {
        let mut reg = Registry::builtin(warn.clone());
        for (label, bytes) in bundled {
            match WasmPlugin::load(engine, label, bytes, warn.clone()) {
                Ok(p) => reg.add(p, Source::Bundled),
                Err(e) => warn(format!("bundled plugin not loaded: {e}")),
            }
        }
        if let Some(dir) = dir {
            for m in dir.list().unwrap_or_else(|e| {
                warn(format!("cannot list installed plugins: {e}"));
                Vec::new()
            }) {
                if m.kind != "scanner" {
                    continue;
                }
                match dir.load(engine, &m.name, warn.clone()) {
                    Ok(p) => reg.add(p, Source::Installed(dir.wasm_path(&m.name))),
                    Err(e) => warn(format!("installed plugin {} not loaded: {e}", m.name)),
                }
            }
        }
        reg
    }

    /// Adds a WebAssembly plugin, replacing any scanner of the same name.
    pub fn add(&mut self, p: WasmPlugin, source: Source) {
        let entry = ScannerEntry {
            info: p.info().clone(),
            source,
            digest: Some(p.digest().to_string()),
            kind: Kind::Wasm(Arc::new(p)),
        };
        match self
            .entries
            .iter_mut()
            .find(|e| e.info.name == entry.info.name)
        {
            Some(old) => *old = entry,
            None => self.entries.push(entry),
        }
    }

    /// Sets the configured `(glob, scanner)` mapping. Unknown scanner names
    /// are reported once here and the line is ignored.
    pub fn set_mapping(&mut self, mapping: Vec<(String, String)>) {
        self.mapping = mapping
            .into_iter()
            .filter(|(pat, name)| {
                let ok = name == "none" || self.get(name).is_some();
                if !ok {
                    (self.warn)(format!(
                        "configuration maps {pat:?} to scanner {name:?}, which is not installed; ignored"
                    ));
                }
                ok
            })
            .collect();
    }

    /// Every scanner, built-ins first.
    pub fn entries(&self) -> &[ScannerEntry] {
        &self.entries
    }

    /// The scanner called `name`.
    pub fn get(&self, name: &str) -> Option<&ScannerEntry> {
        self.entries.iter().find(|e| e.info.name == name)
    }

    /// Picks the scanner for a file and says why; `None` means plain CDC.
    pub fn choose(&self, path: &Path, head: &[u8]) -> Option<(&ScannerEntry, String)> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let full = path.to_string_lossy();
        for (pat, scanner) in &self.mapping {
            let subject = if pat.contains('/') { &*full } else { &*name };
            if glob_match(pat.as_bytes(), subject.as_bytes()) {
                if scanner == "none" {
                    return None;
                }
                return self
                    .get(scanner)
                    .map(|e| (e, format!("configured for {pat:?}")));
            }
        }
        if let Some(ext) = extension(&name) {
            if let Some(e) = self.entries.iter().rev().find(|e| {
                e.info
                    .extensions
                    .iter()
                    .any(|x| x.eq_ignore_ascii_case(ext))
            }) {
                return Some((e, format!("extension .{ext}")));
            }
        }
        let mut best: Option<(&ScannerEntry, u8)> = None;
        for e in self.entries.iter().rev() {
            if !e.info.magic.is_empty() && !e.info.magic.iter().any(|m| head.starts_with(m)) {
                continue; // cheap: most files are not asked at all
            }
            let c = e.sniff(path, head);
            if c >= SNIFF_THRESHOLD && best.is_none_or(|(_, b)| c > b) {
                best = Some((e, c));
            }
        }
        best.map(|(e, c)| (e, format!("sniffed with confidence {c}")))
    }
}

impl ScannerSource for Registry {
    fn scanner_for(&self, path: &Path, head: &[u8]) -> Option<Box<dyn Scanner>> {
        self.choose(path, head).map(|(e, _)| e.scan(path))
    }
}

/// A file name's extension, seeing through rsync's temporary names
/// (`.inbox.mbox.Xa81Qz` is an `mbox` being received).
pub fn extension(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.split('.').collect();
    if name.starts_with('.') && parts.len() >= 4 {
        let tail = parts[parts.len() - 1];
        if tail.len() == 6 && tail.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Some(parts[parts.len() - 2]).filter(|e| !e.is_empty());
        }
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && !ext.is_empty() => Some(ext),
        _ => None,
    }
}

pub use vt_core::glob::glob_match;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_and_rsync_temp_names() {
        assert_eq!(extension("inbox.mbox"), Some("mbox"));
        assert_eq!(extension(".inbox.mbox.Xa81Qz"), Some("mbox"));
        assert_eq!(extension(".bashrc"), None);
        assert_eq!(extension("README"), None);
        assert_eq!(extension("a.tar.gz"), Some("gz"));
    }

    #[test]
    fn globs() {
        assert!(glob_match(b"*.mbx", b"sent.mbx"));
        assert!(glob_match(b"Mail/*", b"Mail/inbox"));
        assert!(glob_match(b"a?c*", b"abcdef"));
        assert!(!glob_match(b"*.mbx", b"sent.mbox"));
        assert!(glob_match(b"*", b""));
    }

    /// A built-in scanner for the tests: vt itself links none (its
    /// scanners are bundled WebAssembly plugins), but a native one
    /// registered with `inventory` is chosen like any other.
    struct Lines;

    impl Scanner for Lines {
        fn name(&self) -> &str {
            "test-lines"
        }
        fn scan(&mut self, offset: u64, buf: &[u8]) -> Vec<u64> {
            let nl = buf.iter().enumerate().filter(|(_, b)| **b == b'\n');
            nl.map(|(i, _)| offset + i as u64 + 1).collect()
        }
    }

    inventory::submit! {
        BuiltinScanner {
            name: "test-lines",
            version: "0.0.1",
            extensions: &["lines"],
            mime_types: &[],
            sniff: |_, head| if head.starts_with(b"LINES\n") { 90 } else { 0 },
            new: || Box::new(Lines),
        }
    }

    #[test]
    fn a_builtin_is_chosen_by_extension_and_by_sniff() {
        let reg = Registry::builtin(Arc::new(|_| {}));
        let (e, why) = reg
            .choose(Path::new("x/notes.lines"), b"")
            .expect("by extension");
        assert_eq!(
            (e.info.name.as_str(), why.as_str(), &e.source),
            ("test-lines", "extension .lines", &Source::Builtin)
        );
        let (e, why) = reg
            .choose(Path::new("untitled"), b"LINES\nrest")
            .expect("by sniff");
        assert_eq!(e.info.name, "test-lines");
        assert_eq!(why, "sniffed with confidence 90");
        assert_eq!(
            e.scan(Path::new("untitled")).scan(10, b"a\nb\n"),
            vec![12, 14]
        );
        assert!(reg.choose(Path::new("notes.txt"), b"hello").is_none());
    }
}
