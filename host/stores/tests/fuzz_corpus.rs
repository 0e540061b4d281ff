//! Replays the fuzz corpora kept in `tests/fuzz/corpus/` through the same
//! checks the fuzz targets run (`tests/fuzz/checks.rs`), so what fuzzing
//! found keeps being tested without libFuzzer or a nightly compiler. See
//! `tests/fuzz/README.md`.

#[path = "../../../tests/fuzz/checks.rs"]
mod checks;

use std::path::PathBuf;

/// Runs `check` on every file of corpus `target`; fails if the corpus is
/// missing or empty, and names the file a check panics on.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fuzz/corpus")
        .join(target);
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

#[test]
fn stream_frame_corpus() {
    replay("stream_frame", checks::stream_frame);
}

#[test]
fn store_spec_corpus() {
    replay("store_spec", checks::store_spec);
}

#[test]
fn archive_text_corpus() {
    replay("archive_text", checks::archive_text);
}
