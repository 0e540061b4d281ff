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

#[path = "../../../tests/fuzz/replay.rs"]
mod replay;

#[test]
fn plugin_returns_corpus() {
    replay::replay(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
        "plugin_returns",
        checks_plugin::plugin_returns,
    );
}
