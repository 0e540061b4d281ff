//! `vt plugin …` and `vt scan`, and the scanner registry the import uses.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};
use vt_core::chunker::Chunker;
use vt_core::scanner::{ScannerSource, SNIFF_LEN};
use vt_core::{ChunkParams, Scanner};
use vt_plugin_host::wasm::WarnFn;
use vt_plugin_host::{PluginDir, PluginEngine, Registry, Source, StorePlugin};

use crate::config::Config;
use crate::progress::human;

mod bundled {
    include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
}

/// Warnings about plugins go to standard error, as `vt: warning: …`.
pub fn stderr_warn() -> WarnFn {
    Arc::new(|m: String| eprintln!("vt: warning: {m}"))
}

/// The plugin engine, with the configured cache.
pub fn engine(cfg: &Config) -> Result<PluginEngine> {
    Ok(PluginEngine::new(Some(cfg.plugin_cache()))?)
}

/// Every scanner: built in, bundled and installed, with the configured
/// mapping.
pub fn registry(cfg: &Config, warn: WarnFn) -> Result<Registry> {
    let engine = engine(cfg)?;
    let dir = PluginDir::new(cfg.plugin_dir());
    let mut reg = Registry::load(&engine, bundled::BUNDLED, Some(&dir), warn);
    reg.set_mapping(cfg.scanner_mapping());
    Ok(reg)
}

/// A store scheme a plugin provides.
pub struct Scheme {
    /// Its name (vtrc's `type`).
    pub name: String,
    /// The plugin.
    pub plugin: Arc<StorePlugin>,
    /// `bundled`, or `installed`.
    pub source: &'static str,
}

/// The store schemes of the bundled and the installed store plugins (an
/// installed one replaces a bundled one of its name), loaded (compiled,
/// or taken from the plugin cache) on first use.
pub fn store_schemes(cfg: &Config) -> Result<&'static [Scheme]> {
    static SCHEMES: OnceLock<Vec<Scheme>> = OnceLock::new();
    if let Some(s) = SCHEMES.get() {
        return Ok(s);
    }
    let engine = engine(cfg)?;
    let mut v: Vec<Scheme> = Vec::new();
    for (file, bytes) in bundled::BUNDLED_STORES {
        let p = StorePlugin::load(&engine, file, bytes)
            .with_context(|| format!("load the bundled store plugin {file}"))?;
        v.push(Scheme {
            name: p.info().name.clone(),
            plugin: Arc::new(p),
            source: "bundled",
        });
    }
    let dir = PluginDir::new(cfg.plugin_dir());
    for m in dir.list()? {
        if m.kind != "store" {
            continue;
        }
        let p = dir
            .load_store(&engine, &m.name)
            .with_context(|| format!("load the installed store plugin {}", m.name))?;
        v.retain(|s| s.name != m.name);
        v.push(Scheme {
            name: m.name.clone(),
            plugin: Arc::new(p),
            source: "installed",
        });
    }
    Ok(SCHEMES.get_or_init(|| v))
}

/// A registry loaded on first use: most imports never need one (files
/// no larger than a block cannot be cut by a scanner).
pub struct LazyRegistry {
    load: Box<dyn Fn() -> Option<Registry> + Send + Sync>,
    cell: OnceLock<Option<Registry>>,
}

impl LazyRegistry {
    /// A registry built from `cfg` when first needed.
    pub fn new(cfg: &Config, warn: WarnFn) -> Self {
        let mapping = cfg.scanner_mapping();
        let dir = cfg.plugin_dir();
        let cache = cfg.plugin_cache();
        LazyRegistry {
            load: Box::new(move || {
                let engine = match PluginEngine::new(Some(cache.clone())) {
                    Ok(e) => e,
                    Err(e) => {
                        warn(format!("scanner plugins unavailable: {e}"));
                        return Some(Registry::builtin(warn.clone()));
                    }
                };
                let d = PluginDir::new(dir.clone());
                let mut reg = Registry::load(&engine, bundled::BUNDLED, Some(&d), warn.clone());
                reg.set_mapping(mapping.clone());
                Some(reg)
            }),
            cell: OnceLock::new(),
        }
    }
}

impl ScannerSource for LazyRegistry {
    fn scanner_for(&self, path: &Path, head: &[u8]) -> Option<Box<dyn Scanner>> {
        // Loading compiles components, which wasmtime does in parallel
        // with rayon. Called from a rayon worker (the import walk), the
        // worker would steal other work while it waits, reach this
        // `get_or_init` again on the same thread and deadlock; a thread of
        // its own waits without stealing (its rayon jobs go to the global
        // pool).
        self.cell
            .get_or_init(|| {
                std::thread::scope(|s| s.spawn(|| (self.load)()).join()).unwrap_or_else(|_| {
                    tracing::warn!("loading scanner plugins panicked; using none");
                    None
                })
            })
            .as_ref()?
            .scanner_for(path, head)
    }
}

/// `vt plugin install PATH.wasm`.
pub fn install(cfg: &Config, path: &Path) -> Result<()> {
    let engine = engine(cfg)?;
    let dir = PluginDir::new(cfg.plugin_dir());
    let m = dir
        .install(&engine, path, stderr_warn())
        .with_context(|| format!("cannot install {}", path.display()))?;
    println!(
        "installed {} {} {} (sha256 {}) in {}",
        if m.kind == "store" {
            "store scheme"
        } else {
            "scanner"
        },
        m.name,
        m.version,
        m.sha256,
        dir.root().display()
    );
    Ok(())
}

/// `vt plugin list`.
pub fn list(cfg: &Config) -> Result<()> {
    let reg = registry(cfg, stderr_warn())?;
    println!(
        "{:<12} {:<8} {:<10} {:<16} handles",
        "name", "version", "source", "sha256"
    );
    for e in reg.entries() {
        let src = match &e.source {
            Source::Installed(_) => "installed",
            Source::Bundled => "bundled",
            Source::Builtin => "builtin",
        };
        let digest = e.digest.as_deref().map_or("-", |d| &d[..16.min(d.len())]);
        println!(
            "{:<12} {:<8} {:<10} {:<16} {}",
            e.info.name,
            e.info.version,
            src,
            digest,
            handles(&e.info.extensions, &e.info.mime_types)
        );
    }
    println!();
    println!(
        "{:<12} {:<8} {:<10} {:<16} kind",
        "store scheme", "version", "source", "sha256"
    );
    for t in vt_core::store::builtin_schemes() {
        println!(
            "{:<12} {:<8} {:<10} {:<16} native: {}",
            t.name, "-", "builtin", "-", t.summary
        );
    }
    for s in store_schemes(cfg)? {
        let d = s.plugin.digest();
        println!(
            "{:<12} {:<8} {:<10} {:<16} wasm: {}",
            s.name,
            s.plugin.info().version,
            s.source,
            &d[..16.min(d.len())],
            if s.source == "bundled" {
                "a bundled store plugin"
            } else {
                "an installed store plugin"
            }
        );
    }
    Ok(())
}

fn handles(exts: &[String], mimes: &[String]) -> String {
    let mut v: Vec<String> = exts.iter().map(|e| format!(".{e}")).collect();
    v.extend(mimes.iter().cloned());
    v.join(" ")
}

/// `vt plugin info NAME` of a store scheme (no scanner has the name).
fn scheme_info(cfg: &Config, name: &str) -> Result<()> {
    if let Some(b) = vt_core::store::builtin_scheme(name) {
        println!("name:        {}", b.name);
        println!("kind:        store scheme, native");
        println!("source:      builtin");
        println!("what:        {}", b.summary);
        println!("settings:    {}", b.settings.join(" "));
        return Ok(());
    }
    let Some(s) = store_schemes(cfg)?.iter().find(|s| s.name == name) else {
        bail!("no scanner or store scheme named {name:?} (see `vt plugin list`)");
    };
    println!("name:        {}", s.name);
    println!("version:     {}", s.plugin.info().version);
    println!("kind:        store scheme, wasm");
    println!("source:      {}", s.source);
    println!("sha256:      {}", s.plugin.digest());
    println!("wit:         vt:plugin@{}", vt_plugin_host::WIT_VERSION);
    println!("settings:    preopen hash memory timeout (host); the rest its own");
    Ok(())
}

/// `vt plugin info NAME`.
pub fn info(cfg: &Config, name: &str) -> Result<()> {
    let reg = registry(cfg, stderr_warn())?;
    let Some(e) = reg.get(name) else {
        return scheme_info(cfg, name);
    };
    println!("name:        {}", e.info.name);
    println!("version:     {}", e.info.version);
    println!("source:      {}", e.source);
    if let Some(d) = &e.digest {
        println!("sha256:      {d}");
    }
    println!("extensions:  {}", e.info.extensions.join(" "));
    println!("mime types:  {}", e.info.mime_types.join(" "));
    if !e.info.magic.is_empty() {
        let magic: Vec<String> = e
            .info
            .magic
            .iter()
            .map(|m| {
                // Printable ASCII as text ("From "), else hex (1f8b08).
                if m.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                    format!("{:?}", String::from_utf8_lossy(m))
                } else {
                    m.iter().map(|b| format!("{b:02x}")).collect()
                }
            })
            .collect();
        println!("magic:       {}", magic.join(" "));
    }
    if e.info.min_block > 0 {
        println!("min block:   {} bytes (at its proposals)", e.info.min_block);
    }
    if let Some(w) = e.wasm() {
        println!("wit:         vt:plugin@{}", vt_plugin_host::WIT_VERSION);
        match w.compiled() {
            vt_plugin_host::engine::Compiled::Cached(p) => {
                println!("compiled:    cached at {}", p.display())
            }
            vt_plugin_host::engine::Compiled::Compiled(t) => {
                println!("compiled:    just now, in {} ms", t.as_millis())
            }
        }
    }
    if let Source::Installed(_) = e.source {
        let m = PluginDir::new(cfg.plugin_dir()).manifest(name)?;
        println!("installed from: {}", m.source);
    }
    Ok(())
}

/// `vt plugin remove NAME`.
pub fn remove(cfg: &Config, name: &str) -> Result<()> {
    let dir = PluginDir::new(cfg.plugin_dir());
    let m = dir.remove(name)?;
    println!("removed scanner {} {}", m.name, m.version);
    Ok(())
}

/// `vt scan FILE [--scanner NAME]`: the scanner's proposals, the blocks
/// the chunker cuts, and a histogram of their sizes.
pub fn scan(cfg: &Config, file: &Path, scanner: Option<&str>, list_offsets: bool) -> Result<()> {
    let reg = registry(cfg, stderr_warn())?;
    let mut f =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut head = vec![0u8; SNIFF_LEN];
    let n = read_full(&mut f, &mut head)?;
    head.truncate(n);
    let (entry, why) = match scanner {
        Some("none") => (None, "plain CDC (--scanner none)".to_string()),
        Some(name) => match reg.get(name) {
            Some(e) => (Some(e), "chosen with --scanner".to_string()),
            None => bail!("no scanner named {name:?} (see `vt plugin list`)"),
        },
        None => match reg.choose(file, &head) {
            Some((e, why)) => (Some(e), why),
            None => (None, "no scanner applies: plain CDC".to_string()),
        },
    };
    let mut sc: Option<Box<dyn Scanner>> = entry.map(|e| e.scan(file));
    match entry {
        Some(e) => println!("scanner: {} {} ({why})", e.info.name, e.info.version),
        None => println!("scanner: none ({why})"),
    }
    let data = {
        let mut d = head;
        f.read_to_end(&mut d)
            .with_context(|| format!("cannot read {}", file.display()))?;
        d
    };
    // Feed the scanner as the import does, in 8 MiB buffers.
    let mut proposals = Vec::new();
    if let Some(s) = sc.as_deref_mut() {
        let mut offs = Vec::new();
        for (i, chunk) in data.chunks(8 << 20).enumerate() {
            offs.extend(s.scan((i * (8 << 20)) as u64, chunk));
        }
        offs.extend(s.finish());
        let mut last = 0u64;
        for o in offs {
            if o > last && o <= data.len() as u64 {
                proposals.push(o);
                last = o;
            }
        }
    }
    let params = ChunkParams::default().for_scanner(sc.as_deref());
    if sc.is_some() {
        let whose = if sc.as_deref().and_then(|s| s.min_block()).is_some() {
            "the scanner's"
        } else {
            "the default"
        };
        println!(
            "seams:   honoured from {} bytes into a block ({whose})",
            params.scan_min
        );
    }
    let chunker = Chunker::new(params);
    let blocks = cut_all(&chunker, &data, &proposals);
    let honoured = blocks
        .iter()
        .filter(|&&(_, end)| proposals.binary_search(&(end as u64)).is_ok())
        .count();
    println!("file:    {} ({} bytes)", file.display(), data.len());
    println!(
        "offsets: {} proposed, {honoured} used as block ends",
        proposals.len()
    );
    if list_offsets {
        for o in &proposals {
            println!("  {o}");
        }
    }
    println!("blocks:  {}", blocks.len());
    if list_offsets {
        for (a, b) in &blocks {
            println!("  {a}..{b} ({} bytes)", b - a);
        }
    }
    let mut hist: BTreeMap<u32, usize> = BTreeMap::new();
    for (a, b) in &blocks {
        let size = (b - a).max(1) as u64;
        *hist.entry(63 - size.leading_zeros()).or_default() += 1;
    }
    println!("block sizes:");
    let most = hist.values().copied().max().unwrap_or(1);
    for (bits, count) in hist {
        let lo = 1u64 << bits;
        let bar = "#".repeat((count * 40).div_ceil(most));
        println!(
            "  {:>9} .. {:>9} {count:>7} {bar}",
            human(lo),
            human((lo << 1) - 1)
        );
    }
    Ok(())
}

/// The blocks (start, end) the chunker cuts `data` into, honouring
/// `proposals` as the import does.
fn cut_all(chunker: &Chunker, data: &[u8], proposals: &[u64]) -> Vec<(usize, usize)> {
    let min = chunker.params().scan_min.max(1) as u64;
    let mut out = Vec::new();
    let mut pos = 0usize;
    let mut pi = 0usize;
    while pos < data.len() {
        while pi < proposals.len() && proposals[pi] < pos as u64 + min {
            pi += 1;
        }
        let prop = proposals.get(pi).map(|&p| (p - pos as u64) as usize);
        match chunker.cut(&data[pos..], prop, true) {
            Some(n) => {
                out.push((pos, pos + n));
                pos += n;
            }
            None => break,
        }
    }
    out
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
