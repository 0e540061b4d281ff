//! The unit tests of the vendored fuser's `Relay` (which request thread
//! reads the FUSE device), compiled and run here: the vendored crate sits
//! outside the workspace, so `cargo test` would not run them there.

#[allow(dead_code)]
#[path = "../../vendor/fuser/src/relay.rs"]
mod relay;
