//! Builds the bundled plugins in `plugins/` (scanners and store schemes) as WebAssembly
//! components (target `wasm32-wasip2`) and embeds them in the `vt` binary,
//! so they are available with no installation step.
//!
//! The plugins are built by a nested `cargo build --release` into their own
//! target directory (`target/bundled-plugins`), which is also what keeps it
//! from waiting on the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bundled scanner plugins: (crate, file it is built to).
const PLUGINS: &[(&str, &str)] = &[
    ("vt-plugin-mbox", "vt_plugin_mbox.wasm"),
    ("vt-plugin-gz", "vt_plugin_gz.wasm"),
    ("vt-plugin-vtd", "vt_plugin_vtd.wasm"),
    ("vt-plugin-media", "vt_plugin_media.wasm"),
];

/// The bundled store-scheme plugins: (crate, file it is built to).
const STORE_PLUGINS: &[(&str, &str)] = &[
    ("vt-plugin-store-dir", "vt_plugin_store_dir.wasm"),
    ("vt-plugin-store-http", "vt_plugin_store_http.wasm"),
];

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest.join("../..");
    for d in ["plugins", "sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(d).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => PathBuf::from(t),
        None => root.join("target"),
    }
    .join("bundled-plugins");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (krate, _) in PLUGINS.iter().chain(STORE_PLUGINS) {
        cmd.arg("-p").arg(krate);
    }
    // The outer build's settings are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    // tests/tests/common/plugin_build.rs builds the test suite's plugins
    // into this target directory with these same settings, so that what is
    // compiled here is not compiled again.
    // WebAssembly SIMD (wasmtime runs it natively): memchr and memmem, with
    // which the scanners look for their patterns, use it.
    cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128");
    let out = cmd
        .output()
        .expect("cannot run cargo to build the bundled plugins");
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("may not be installed") || err.contains("can't find crate for `core`") {
            panic!(
                "the bundled plugins need the {TARGET} target: run `rustup target add {TARGET}`\n{err}"
            );
        }
        panic!("building the bundled plugins failed:\n{err}");
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let mut code = String::new();
    let dir = target_dir.join(TARGET).join("release");
    list(&mut code, "BUNDLED", "scanner plugins", PLUGINS, &dir);
    list(
        &mut code,
        "BUNDLED_STORES",
        "store-scheme plugins",
        STORE_PLUGINS,
        &dir,
    );
    std::fs::write(out_dir.join("bundled.rs"), code).expect("write bundled.rs");
}

/// Appends to `code` the constant `name`: the `what` built into vt,
/// (file name, component), each of `plugins` included from `dir`.
fn list(code: &mut String, name: &str, what: &str, plugins: &[(&str, &str)], dir: &Path) {
    code.push_str(&format!(
        "/// The {what} built into vt: (file name, component).\npub const {name}: &[(&str, &[u8])] = &[\n"
    ));
    for (_, file) in plugins {
        let wasm = dir.join(file);
        check_exists(&wasm);
        code.push_str(&format!(
            "    ({file:?}, include_bytes!({:?})),\n",
            wasm.display().to_string()
        ));
    }
    code.push_str("];\n");
}

fn check_exists(p: &Path) {
    if !p.exists() {
        panic!("cargo built the plugins but {} is missing", p.display());
    }
}
