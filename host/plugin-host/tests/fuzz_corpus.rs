//! Replays the corpus of the fuzz target `plugin_returns` (`tests/fuzz/corpus/plugin_returns`)
//! through the check the target runs (`tests/fuzz/checks_plugin.rs`), as
//! `host/stores/tests/fuzz_corpus.rs` does for the other targets. The
//! check's `crate::returns` is this crate's (the fuzz target includes the
//! same file). See `tests/fuzz/README.md`.

mod returns {
    pub use vt_plugin_host::returns::*;
}

#[path = "../../../tests/fuzz/checks_plugin.rs"]
mod checks_plugin;

use std::path::PathBuf;

#[test]
fn plugin_returns_corpus() {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/plugin_returns");
    let rd =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read corpus {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = rd
        .map(|e| e.expect("list corpus").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    for p in &files {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
        if std::panic::catch_unwind(|| checks_plugin::plugin_returns(&data)).is_err() {
            panic!("plugin_returns: check fails on corpus file {}", p.display());
        }
    }
    eprintln!("plugin_returns: {} corpus files pass", files.len());
}
