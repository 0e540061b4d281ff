//! Builds the test suite's own plugins with cargo, into target directories
//! shared so that nothing is compiled twice in one run.
//!
//! A clean CI run compiles every nested build from nothing: the hostile
//! components of `tests/plugins` share `target/bundled-plugins` with the
//! bundled plugins that `host/vt/build.rs` builds (same release settings,
//! same flags, so the wit-bindgen macro and its parsers compiled there are
//! reused), and the two crates made by `vt plugin new` share one target
//! directory (their dependencies are the same).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Cargo, for a build nested in a test: without the settings of the
/// build that runs the tests (`tests/run.sh` lints through clippy-driver
/// as the workspace wrapper; a nested build is of other crates).
pub fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    for var in ["RUSTC_WORKSPACE_WRAPPER", "CLIPPY_ARGS", "CARGO_TARGET_DIR"] {
        c.env_remove(var);
    }
    c
}

/// Where `host/vt/build.rs` builds the bundled plugins (it honours
/// `CARGO_TARGET_DIR`; the tests run from the repository's `target`).
fn bundled_target() -> PathBuf {
    repo().join("target/bundled-plugins")
}

/// Builds `packages` of the `tests/plugins` workspace for wasm32-wasip2
/// with the settings of the bundled build (must match `host/vt/build.rs`)
/// and returns the directory the components land in.
pub fn build_test_plugins(packages: &[&str]) -> PathBuf {
    let mut c = cargo();
    c.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(repo().join("tests/plugins/Cargo.toml"))
        .arg("--target-dir")
        .arg(bundled_target());
    for p in packages {
        c.args(["-p", p]);
    }
    for var in ["RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        c.env_remove(var);
    }
    c.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "true")
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128");
    let st = c.status().expect("run cargo");
    assert!(
        st.success(),
        "building tests/plugins {packages:?} for wasm32-wasip2 failed"
    );
    bundled_target().join("wasm32-wasip2/release")
}

/// The target directory for crates made by `vt plugin new` (scanner and
/// store scheme alike: the same dependencies, compiled once).
fn scaffold_target() -> PathBuf {
    repo().join("target/test-plugins/scaffold")
}

/// Runs the tests of the crate `vt plugin new` made in `krate`, builds it
/// for wasm32-wasip2 as its README says, and returns the component,
/// `name`.wasm.
pub fn test_and_build_scaffold(krate: &Path, name: &str) -> PathBuf {
    for args in [
        &["test", "--quiet"][..],
        &["build", "--target", "wasm32-wasip2"],
    ] {
        let st = cargo()
            .args(args)
            .current_dir(krate)
            .env("CARGO_TARGET_DIR", scaffold_target())
            .status()
            .expect("run cargo");
        assert!(st.success(), "cargo {args:?} failed in the new plugin");
    }
    scaffold_target().join(format!("wasm32-wasip2/debug/{name}.wasm"))
}
