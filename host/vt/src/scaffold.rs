//! `vt plugin new [--store] NAME`: a scanner (or store scheme) crate
//! against `sdk/` that builds to a component and passes its own test as
//! generated.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the SDK was when this vt was built (a checkout's `sdk/`).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Writes the crate `NAME/` under `parent`, depending on the SDK at `sdk`
/// (default: `$VT_SDK`, else the checkout vt was built from).
pub fn new_plugin(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<PathBuf> {
    let (dir, sdk, ty) = prepare(parent, name, sdk)?;
    write_scanner(&dir, name, &sdk, &ty)?;
    Ok(dir)
}

/// Writes the crate `NAME/` of a store scheme under `parent` (see
/// [`new_plugin`]).
pub fn new_store_plugin(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<PathBuf> {
    let (dir, sdk, ty) = prepare(parent, name, sdk)?;
    write_store(&dir, name, &sdk, &ty)?;
    Ok(dir)
}

/// Checks the name, finds the SDK, makes `parent/NAME/src`; returns the
/// crate's directory, the SDK's and the type name the crate defines.
fn prepare(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<(PathBuf, PathBuf, String)> {
    if !vt_plugin_host::wasm::valid_name(name) {
        bail!("plugin name {name:?} must be lower-case letters, digits and dashes");
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("VT_SDK").map_or_else(|| PathBuf::from(BUILT_SDK), PathBuf::from),
    };
    let sdk = std::fs::canonicalize(&sdk).with_context(|| {
        format!(
            "cannot find the vt SDK at {}: pass --sdk PATH (a vt checkout's sdk/ directory) or set $VT_SDK",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").exists() {
        bail!("{} is not the vt SDK (no Cargo.toml)", sdk.display());
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    let ty = if ty.starts_with(|c: char| c.is_ascii_digit()) {
        format!("S{ty}")
    } else {
        ty
    };
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("create {}", dir.display()))?;
    Ok((dir, sdk, ty))
}

/// Writes `text` to `dir/rel`.
fn write(dir: &Path, rel: &str, text: String) -> Result<()> {
    let p = dir.join(rel);
    std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
}

/// The crate's Cargo.toml.
fn cargo_toml(name: &str, what: &str, sdk: &Path) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A vt {what} plugin"

# A plugin is its own workspace.
[workspace]

[lib]
# cdylib: the WebAssembly component; rlib: native unit tests.
crate-type = ["cdylib", "rlib"]

[dependencies]
vt-sdk = {{ path = "{sdk}" }}

[profile.release]
strip = true
"#,
        sdk = sdk.display()
    )
}

fn write_scanner(dir: &Path, name: &str, sdk: &Path, ty: &str) -> Result<()> {
    let write = |rel: &str, text: String| -> Result<()> {
        let p = dir.join(rel);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
    };
    write("Cargo.toml", cargo_toml(name, "scanner", sdk))?;
    write(
        "src/lib.rs",
        format!(
            r#"//! The `{name}` scanner for vt.
//!
//! Build:   cargo build --release --target wasm32-wasip2
//! Install: vt plugin install target/wasm32-wasip2/release/{lib}.wasm
//! Try it:  vt scan SOMEFILE --scanner {name}

use vt_sdk::{{Info, Scanner}};

/// Proposes a block boundary after every blank line (a paragraph break):
/// replace with your format's natural seams.
#[derive(Default)]
pub struct {ty} {{
    /// The previous byte fed was a newline (state kept between buffers).
    after_newline: bool,
}}

impl Scanner for {ty} {{
    fn info() -> Info {{
        Info::new("{name}", env!("CARGO_PKG_VERSION")).extensions(&["{name}"])
    }}

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {{
        for (i, &b) in data.iter().enumerate() {{
            if b == b'\n' {{
                if self.after_newline {{
                    out.push(offset + i as u64 + 1);
                }}
                self.after_newline = true;
            }} else {{
                self.after_newline = false;
            }}
        }}
    }}
}}

vt_sdk::export_scanner!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn proposes_after_blank_lines_whatever_the_buffer_size() {{
        let text = b"one\n\ntwo\nthree\n\n\nfour";
        let offsets = vt_sdk::testing::assert_consistent::<{ty}>("x.{name}", text);
        assert_eq!(offsets, vec![5, 16, 17]);
    }}
}}
"#,
            lib = name.replace('-', "_")
        ),
    )?;
    write(".gitignore", "target/\n".into())
}

fn write_store(dir: &Path, name: &str, sdk: &Path, ty: &str) -> Result<()> {
    write(dir, "Cargo.toml", cargo_toml(name, "store scheme", sdk))?;
    write(
        dir,
        "src/lib.rs",
        format!(
            r#"//! The `{name}` store scheme for vt.
//!
//! Build:   cargo build --release --target wasm32-wasip2
//! Install: vt plugin install target/wasm32-wasip2/release/{lib}.wasm
//! Use it:  in vtrc,
//!              [stores.mine]
//!              type = "{name}"
//!              preopen = "/some/directory"
//!          then vt -S mine import DIR SNAPSHOT

use std::fs;
use std::io::{{ErrorKind, Write}};
use std::path::{{Path, PathBuf}};

use vt_sdk::store::{{check_hash, BlockStore, StoreError, StoreInfo, StoreStats}};

/// One file per block, named by its hash, under the granted directory;
/// archives under `archives/`: replace with your backend.
pub struct {ty} {{
    blocks: PathBuf,
    archives: PathBuf,
}}

impl BlockStore for {ty} {{
    fn info() -> StoreInfo {{
        StoreInfo {{
            name: "{name}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }}
    }}

    fn open(root: Option<&Path>, config: &[(String, String)]) -> Result<Self, StoreError> {{
        if let Some((k, _)) = config.iter().find(|(k, _)| k != "preopen") {{
            return Err(StoreError::Config(format!("{name} takes no setting {{k:?}}")));
        }}
        let root = root.ok_or_else(|| {{
            StoreError::Config("{name} needs a directory: set preopen = \"DIR\" in its clause".into())
        }})?;
        let (blocks, archives) = (root.join("blocks"), root.join("archives"));
        fs::create_dir_all(&blocks)?;
        fs::create_dir_all(&archives)?;
        Ok({ty} {{ blocks, archives }})
    }}

    fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {{
        check_hash(hash)?;
        match fs::read(self.blocks.join(hash)) {{
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }}
    }}

    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, StoreError> {{
        check_hash(hash)?;
        let p = self.blocks.join(hash);
        if p.exists() {{
            return Ok(false);
        }}
        // Written aside and renamed: a block is whole or absent.
        let tmp = self.blocks.join(format!(".{{hash}}.tmp"));
        fs::write(&tmp, data)?;
        fs::rename(&tmp, &p)?;
        Ok(true)
    }}

    fn contains(&self, hash: &str) -> Result<bool, StoreError> {{
        check_hash(hash)?;
        Ok(self.blocks.join(hash).exists())
    }}

    fn stats(&self) -> Result<StoreStats, StoreError> {{
        let mut st = StoreStats::default();
        for f in fs::read_dir(&self.blocks)?.flatten() {{
            if !f.file_name().to_string_lossy().starts_with('.') {{
                let len = f.metadata()?.len();
                st.blocks += 1;
                st.raw_bytes += len;
                st.stored_bytes += len;
            }}
        }}
        Ok(st)
    }}

    fn archive_names(&self) -> Result<Vec<String>, StoreError> {{
        let mut v: Vec<String> = fs::read_dir(&self.archives)?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        v.sort();
        Ok(v)
    }}

    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {{
        match fs::read(self.archive(name)?) {{
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }}
    }}

    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<(), StoreError> {{
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.archive(name)?)?;
        f.write_all(lines)?;
        Ok(())
    }}
}}

impl {ty} {{
    /// Archive `name`'s file, if `name` is a plain file name.
    fn archive(&self, name: &str) -> Result<PathBuf, StoreError> {{
        if name.is_empty() || name.starts_with('.') || name.contains('/') {{
            return Err(StoreError::Unsupported(format!("archive name {{name:?}}")));
        }}
        Ok(self.archives.join(name))
    }}
}}

vt_sdk::export_store!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn blocks_and_archives_round_trip() {{
        let root = std::env::temp_dir().join(format!("{name}-test-{{}}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        vt_sdk::testing::store_round_trip::<{ty}>(&root, &[]);
        fs::remove_dir_all(&root).unwrap();
    }}
}}
"#,
            lib = name.replace('-', "_")
        ),
    )?;
    write(dir, ".gitignore", "target/\n".into())
}
