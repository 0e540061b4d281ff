//! The crate vt plugin authors depend on.
//!
//! A scanner plugin is an ordinary library crate (`crate-type = ["cdylib",
//! "rlib"]`) that implements [`Scanner`] for a type and exports it with
//! [`export_scanner!`]. `cargo build --target wasm32-wasip2` then gives a
//! WebAssembly component that `vt plugin install` accepts. The same type can
//! be run natively, without wasm, by [`testing`] to unit-test it.
//!
//! ```ignore
//! use vt_sdk::{Info, Scanner};
//!
//! #[derive(Default)]
//! struct Lines;
//!
//! impl Scanner for Lines {
//!     fn info() -> Info {
//!         Info::new("lines", env!("CARGO_PKG_VERSION")).extensions(&["txt"])
//!     }
//!     fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
//!         for (i, b) in data.iter().enumerate() {
//!             if *b == b'\n' {
//!                 out.push(offset + i as u64 + 1);
//!             }
//!         }
//!     }
//! }
//!
//! vt_sdk::export_scanner!(Lines);
//! ```

pub mod store;
pub mod testing;

/// Bindings generated from `wit/` (the `vt:plugin` package).
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "scanner-plugin",
        pub_export_macro: true,
        default_bindings_module: "vt_sdk::bindings",
        export_macro_name: "export_world",
    });
}

use std::cell::RefCell;

use bindings::exports::vt::plugin::scanner as wit;

/// The `vt:plugin` WIT package version this SDK builds plugins against.
pub const WIT_VERSION: &str = "1.2.0";

/// What a scanner is and which files it handles.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// Short unique name: `[a-z0-9-]+`.
    pub name: String,
    /// The scanner's version (semver).
    pub version: String,
    /// File extensions handled, without the dot.
    pub extensions: Vec<String>,
    /// MIME types handled.
    pub mime_types: Vec<String>,
    /// Byte strings a handled file starts with.
    pub magic: Vec<Vec<u8>>,
}

impl Info {
    /// An `Info` with a name and version and nothing handled yet.
    pub fn new(name: &str, version: &str) -> Self {
        Info {
            name: name.into(),
            version: version.into(),
            ..Info::default()
        }
    }

    /// Adds handled file extensions.
    pub fn extensions(mut self, exts: &[&str]) -> Self {
        self.extensions.extend(exts.iter().map(|s| s.to_string()));
        self
    }

    /// Adds handled MIME types.
    pub fn mime_types(mut self, types: &[&str]) -> Self {
        self.mime_types.extend(types.iter().map(|s| s.to_string()));
        self
    }

    /// Adds a magic byte string a handled file starts with.
    pub fn magic(mut self, magic: &[u8]) -> Self {
        self.magic.push(magic.to_vec());
        self
    }
}

/// A format-aware boundary proposer, in plain Rust.
///
/// One value is made (with `Default`) per file scanned; the host feeds it the
/// file in consecutive buffers through [`Scanner::scan`].
pub trait Scanner: Default + 'static {
    /// Describes the scanner.
    fn info() -> Info;

    /// Confidence 0..=100 that a file of this name starting with `head` (at
    /// most 1 KiB) is one this scanner handles. The default trusts the
    /// declared magic, then the extension.
    fn sniff(filename: &str, head: &[u8]) -> u8 {
        let info = Self::info();
        if info
            .magic
            .iter()
            .any(|m| !m.is_empty() && head.starts_with(m))
        {
            return 80;
        }
        let ext = filename.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        if info.extensions.iter().any(|e| e.eq_ignore_ascii_case(ext)) {
            return 50;
        }
        0
    }

    /// Called once per scan before the first buffer, with the file's name.
    fn start(&mut self, _filename: &str) {}

    /// Scans `data`, which starts at absolute offset `offset`; pushes
    /// absolute offsets (ascending, after anything pushed before) at which
    /// a new block should start.
    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>);

    /// The file has ended; push any last proposals.
    fn finish(&mut self, _out: &mut Vec<u64>) {}

    /// The least length of a block ended at one of this scanner's
    /// proposals; 0 (the default) leaves it to the host (4 KiB). Worth
    /// setting only for formats whose seams are closer than that and whose
    /// bytes do not compress (the host keeps it within 1 KiB to 16 KiB).
    fn min_block() -> u32 {
        0
    }
}

/// Adapts a [`Scanner`] to the generated WIT resource. Used by
/// [`export_scanner!`]; not called directly.
#[doc(hidden)]
pub struct ScanResource<S: Scanner>(RefCell<S>);

impl<S: Scanner> wit::GuestScan for ScanResource<S> {
    fn new(filename: String) -> Self {
        let mut s = S::default();
        s.start(&filename);
        ScanResource(RefCell::new(s))
    }

    fn feed(&self, offset: u64, data: Vec<u8>) -> Vec<u64> {
        let mut out = Vec::new();
        self.0.borrow_mut().scan(offset, &data, &mut out);
        out
    }

    fn finish(&self) -> Vec<u64> {
        let mut out = Vec::new();
        self.0.borrow_mut().finish(&mut out);
        out
    }
}

/// Converts [`Info`] to its WIT form. Used by [`export_scanner!`].
#[doc(hidden)]
pub fn wit_info(i: Info) -> wit::Info {
    wit::Info {
        name: i.name,
        version: i.version,
        extensions: i.extensions,
        mime_types: i.mime_types,
        magic: i.magic,
    }
}

/// Exports a [`Scanner`] type as this component's scanner.
///
/// The export exists only when building for WebAssembly: a native build of
/// the same crate (for its unit tests) exports nothing, since component
/// export names are not valid native symbol names.
#[macro_export]
macro_rules! export_scanner {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct VtSdkExport;

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::vt::plugin::scanner::Guest for VtSdkExport {
            type Scan = $crate::ScanResource<$t>;

            fn describe() -> $crate::bindings::exports::vt::plugin::scanner::Info {
                $crate::wit_info(<$t as $crate::Scanner>::info())
            }

            fn sniff(filename: String, head: Vec<u8>) -> u8 {
                <$t as $crate::Scanner>::sniff(&filename, &head).min(100)
            }
        }

        #[cfg(target_arch = "wasm32")]
        impl $crate::bindings::exports::vt::plugin::seams::Guest for VtSdkExport {
            fn min_block() -> u32 {
                <$t as $crate::Scanner>::min_block()
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::bindings::export_world!(VtSdkExport with_types_in $crate::bindings);
    };
}
