//! Replays one fuzz corpus through its check, for the test suites that
//! include this file with `#[path]` (`host/*/tests/fuzz_corpus.rs`): no
//! libFuzzer, no nightly compiler.

use std::path::PathBuf;

/// Runs `check` on every file of corpus `target` (`tests/fuzz/corpus/`,
/// found from `repo`, the repository root); fails if the corpus is missing
/// or empty, and names the file a check panics on.
pub fn replay(repo: &str, target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(repo).join("tests/fuzz/corpus").join(target);
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
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{target}: check fails on corpus file {}", p.display());
        }
    }
    eprintln!("{target}: {} corpus files pass", files.len());
}
