//! Store schemes: a plugin that keeps vt's blocks and archives somewhere
//! vt does not reach itself (the `store-plugin` world of `wit/store.wit`).
//!
//! Implement [`BlockStore`] for a type and export it with
//! [`export_store!`](crate::export_store); `cargo build --target
//! wasm32-wasip2` gives a component that `vt plugin install` accepts and a
//! vtrc clause `type = "NAME"` selects. The host grants the component the
//! directory of the clause's `preopen` (as [`ROOT`]), HTTP requests
//! (wasi:http, for example through the `wasip2` crate) to the hosts of
//! its `allow_hosts`, and nothing else,
//! names blocks by their hash's text (`sha3_256:9f86…`), and checks the
//! hash of every block the store returns.
//!
//! [`testing::store_round_trip`](crate::testing::store_round_trip) runs
//! a store natively over a directory of the test's choosing.

use std::cell::RefCell;
use std::path::Path;

/// Bindings generated from `wit/` for the `store-plugin` world.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "store-plugin",
        pub_export_macro: true,
        default_bindings_module: "vt_sdk::store::bindings",
        export_macro_name: "export_store_world",
    });
}

use bindings::exports::vt::plugin::store as wit;

/// Where the clause's preopened directory appears inside the sandbox.
pub const ROOT: &str = "/store";

/// What a store scheme is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreInfo {
    /// The scheme's name (vtrc's `type`): `[a-z0-9-]+`.
    pub name: String,
    /// The plugin's version (semver).
    pub version: String,
}

/// Why a store call failed; the message is shown to the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The configuration is wrong: say what to fix.
    Config(String),
    /// Reading or writing failed.
    Io(String),
    /// The store does not do this.
    Unsupported(String),
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// A store's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Blocks held.
    pub blocks: u64,
    /// Their total length.
    pub raw_bytes: u64,
    /// Bytes used for them.
    pub stored_bytes: u64,
}

/// A store scheme. vt may open several stores of one clause at once (one
/// per core, as several vt processes may): keep state in what the store
/// is granted, not only in memory.
pub trait BlockStore: Sized + 'static {
    /// The scheme's name and version.
    fn info() -> StoreInfo;

    /// Opens the store its clause describes: `root` is the granted
    /// directory ([`ROOT`] in the sandbox; `None` if the clause grants
    /// none), `config` every setting of the clause but `type`, `hash` and
    /// `archives_from`, as text. Refuse settings you do not know.
    fn open(root: Option<&Path>, config: &[(String, String)]) -> Result<Self, StoreError>;

    /// The bytes of block `hash`, if held.
    fn get(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `data` as block `hash`; true if it was not held before.
    fn put(&self, hash: &str, data: &[u8]) -> Result<bool, StoreError>;

    /// Whether block `hash` is held.
    fn contains(&self, hash: &str) -> Result<bool, StoreError> {
        Ok(self.get(hash)?.is_some())
    }

    /// Makes what was put durable.
    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// The store's counts.
    fn stats(&self) -> Result<StoreStats, StoreError> {
        Ok(StoreStats::default())
    }

    /// The archives kept.
    fn archive_names(&self) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// Archive `name`'s text.
    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let _ = name;
        Ok(None)
    }

    /// Appends `lines` to archive `name`.
    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<(), StoreError> {
        let _ = (name, lines);
        Err(StoreError::Unsupported(
            "this store keeps no archives: name one with archives_from".into(),
        ))
    }
}

/// Checks that `hash` is a hash's text (`KIND:HEX`, lower case), which is
/// then safe as a file name.
pub fn check_hash(hash: &str) -> Result<(), StoreError> {
    let ok = hash.split_once(':').is_some_and(|(k, h)| {
        !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && h.len() >= 2
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(StoreError::Io(format!("{hash:?} is not a block hash")))
    }
}

/// The WIT resource over a [`BlockStore`]. Used by [`export_store!`](crate::export_store).
#[doc(hidden)]
pub struct BackendResource<T>(RefCell<T>);

fn to_wit(e: StoreError) -> wit::StoreError {
    match e {
        StoreError::Config(m) => wit::StoreError::Config(m),
        StoreError::Io(m) => wit::StoreError::Io(m),
        StoreError::Unsupported(m) => wit::StoreError::Unsupported(m),
    }
}

impl<T: BlockStore> wit::GuestBackend for BackendResource<T> {
    fn open(config: Vec<(String, String)>) -> Result<wit::Backend, wit::StoreError> {
        let root = Path::new(ROOT);
        let root = root.is_dir().then_some(root);
        let t = T::open(root, &config).map_err(to_wit)?;
        Ok(wit::Backend::new(BackendResource(RefCell::new(t))))
    }

    fn get(&self, hash: String) -> Result<Option<Vec<u8>>, wit::StoreError> {
        self.0.borrow().get(&hash).map_err(to_wit)
    }

    fn put(&self, hash: String, data: Vec<u8>) -> Result<bool, wit::StoreError> {
        self.0.borrow().put(&hash, &data).map_err(to_wit)
    }

    fn contains(&self, hash: String) -> Result<bool, wit::StoreError> {
        self.0.borrow().contains(&hash).map_err(to_wit)
    }

    fn contains_many(&self, hashes: Vec<String>) -> Result<Vec<bool>, wit::StoreError> {
        let s = self.0.borrow();
        hashes
            .iter()
            .map(|h| s.contains(h).map_err(to_wit))
            .collect()
    }

    fn flush(&self) -> Result<(), wit::StoreError> {
        self.0.borrow().flush().map_err(to_wit)
    }

    fn stats(&self) -> Result<wit::Stats, wit::StoreError> {
        let s = self.0.borrow().stats().map_err(to_wit)?;
        Ok(wit::Stats {
            blocks: s.blocks,
            raw_bytes: s.raw_bytes,
            stored_bytes: s.stored_bytes,
        })
    }

    fn archive_names(&self) -> Result<Vec<String>, wit::StoreError> {
        self.0.borrow().archive_names().map_err(to_wit)
    }

    fn archive_read(&self, name: String) -> Result<Option<Vec<u8>>, wit::StoreError> {
        self.0.borrow().archive_read(&name).map_err(to_wit)
    }

    fn archive_append(&self, name: String, lines: Vec<u8>) -> Result<(), wit::StoreError> {
        self.0
            .borrow()
            .archive_append(&name, &lines)
            .map_err(to_wit)
    }
}

/// Converts [`StoreInfo`] to its WIT form. Used by [`export_store!`](crate::export_store).
#[doc(hidden)]
pub fn wit_info(i: StoreInfo) -> wit::Info {
    wit::Info {
        name: i.name,
        version: i.version,
    }
}

/// Exports a [`BlockStore`] type as this component's store scheme (only
/// when building for WebAssembly, as [`export_scanner!`](crate::export_scanner)).
#[macro_export]
macro_rules! export_store {
    ($t:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        pub struct VtSdkStoreExport;

        #[cfg(target_arch = "wasm32")]
        impl $crate::store::bindings::exports::vt::plugin::store::Guest for VtSdkStoreExport {
            type Backend = $crate::store::BackendResource<$t>;

            fn describe() -> $crate::store::bindings::exports::vt::plugin::store::Info {
                $crate::store::wit_info(<$t as $crate::store::BlockStore>::info())
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::store::bindings::export_store_world!(VtSdkStoreExport with_types_in $crate::store::bindings);
    };
}
