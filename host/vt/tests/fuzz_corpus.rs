//! Replays the corpus of the fuzz target `vtrc` (`tests/fuzz/corpus/vtrc`)
//! through the check the target runs (`tests/fuzz/checks_vtrc.rs`), as
//! `host/stores/tests/fuzz_corpus.rs` does for the other targets. `vt` is
//! a binary crate: the parser comes in as the target has it, by including
//! `src/vtrc.rs`. See `tests/fuzz/README.md`.

#[allow(dead_code)]
#[path = "../src/vtrc.rs"]
mod vtrc;

#[path = "../../../tests/fuzz/checks_vtrc.rs"]
mod checks_vtrc;

use std::path::PathBuf;

#[test]
fn vtrc_corpus() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/corpus/vtrc");
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
        if std::panic::catch_unwind(|| checks_vtrc::vtrc(&data)).is_err() {
            panic!("vtrc: check fails on corpus file {}", p.display());
        }
    }
    eprintln!("vtrc: {} corpus files pass", files.len());
}
