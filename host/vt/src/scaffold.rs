//! `vt plugin new NAME`: a scanner crate against `sdk/` that builds to a
//! component and passes its own test as generated.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// Where the SDK was when this vt was built (a checkout's `sdk/`).
const BUILT_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// Writes the crate `NAME/` under `parent`, depending on the SDK at `sdk`
/// (default: `$VT_SDK`, else the checkout vt was built from).
pub fn new_plugin(parent: &Path, name: &str, sdk: Option<&Path>) -> Result<PathBuf> {
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
    let write = |rel: &str, text: String| -> Result<()> {
        let p = dir.join(rel);
        std::fs::write(&p, text).with_context(|| format!("write {}", p.display()))
    };
    write(
        "Cargo.toml",
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
description = "A vt scanner plugin"

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
        ),
    )?;
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
    write(".gitignore", "target/\n".into())?;
    Ok(dir)
}
