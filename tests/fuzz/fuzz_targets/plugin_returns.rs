//! Fuzz target: see `checks_plugin::plugin_returns` for what it checks.
#![no_main]

// The checks of returned values themselves, from vt-plugin-host's sources
// (the file uses no wasmtime, which the fuzz crate does not build).
#[path = "../../../host/plugin-host/src/returns.rs"]
mod returns;

#[path = "../checks_plugin.rs"]
mod checks_plugin;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks_plugin::plugin_returns(data));
