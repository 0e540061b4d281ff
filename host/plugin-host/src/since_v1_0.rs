//! What WIT 1.0 brought: the `scanner` interface. The host binds to the
//! `scanner-core` world (`scanner` alone), which every scanner of major
//! version 1 exports, so a plugin built against 1.0 loads as one built
//! against the newest 1.x does.
//!
//! One module per WIT version, as Zed's extension host keeps them: each
//! holds the bindings of what its version added, and a later version
//! never changes an earlier one's.

wasmtime::component::bindgen!({
    path: "../../wit",
    world: "scanner-core",
});
