//! Fuzz target: see `checks_vtrc::vtrc` for what it checks.
#![no_main]

// The parser itself, from the `vt` binary crate's sources.
#[allow(dead_code)]
#[path = "../../../host/vt/src/vtrc.rs"]
mod vtrc;

#[path = "../checks_vtrc.rs"]
mod checks_vtrc;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks_vtrc::vtrc(data));
