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

#[path = "../../../tests/fuzz/replay.rs"]
mod replay;

#[test]
fn vtrc_corpus() {
    replay::replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "vtrc",
        checks_vtrc::vtrc,
    );
}
