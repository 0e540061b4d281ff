//! Runs vt's scanner plugins.
//!
//! Scanners come from three places and meet in one [`Registry`]: built-in
//! native scanners (registered with `inventory`, see
//! [`vt_core::scanner::BuiltinScanner`]), the WebAssembly plugins bundled
//! with vt, and plugins the user installed ([`PluginDir`]). A WebAssembly
//! plugin is a component of the `scanner-plugin` world in `wit/`, run by
//! wasmtime in a [`sandbox`] with no capabilities, a CPU deadline and a
//! memory limit; whatever it does wrong costs at most a warning and plain
//! content-defined chunking for the file it was scanning.

pub mod engine;
pub mod error;
pub mod install;
pub mod native;
pub mod registry;
pub mod returns;
pub mod sandbox;
mod since_v1_0;
mod since_v1_1;
mod since_v1_2;
pub mod store;
pub mod wasm;

pub use engine::PluginEngine;
pub use error::{Error, Result};
pub use install::{Manifest, PluginDir};
pub use native::{NativeLibrary, NativeStore};
pub use registry::{Registry, ScannerEntry, Source};
pub use store::{Grants, Limits, StoreInfo, StorePlugin, WasmStore};
pub use wasm::WasmPlugin;

/// The `vt:plugin` WIT package version this host speaks.
pub const WIT_VERSION: &str = "1.2.0";
