//! The `Store` trait: a mapping from hashcode to block data.

use bytes::Bytes;

use crate::error::Result;
use crate::hash::{Hash, HashKind};

/// Counts a store keeps of its contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Distinct blocks held.
    pub blocks: u64,
    /// Their uncompressed size.
    pub raw_bytes: u64,
    /// Bytes they occupy on the medium (compressed, with record headers).
    pub stored_bytes: u64,
    /// Bytes of the store's index (derived data, beside `stored_bytes`);
    /// 0 for stores without one.
    pub index_bytes: u64,
    /// Bytes of hints that find similar blocks (derived data, beside
    /// `index_bytes`).
    pub hint_bytes: u64,
    /// Blocks stored as deltas against other blocks.
    pub delta_blocks: u64,
    /// Their uncompressed size.
    pub delta_raw_bytes: u64,
    /// Bytes their records occupy (part of `stored_bytes`).
    pub delta_stored_bytes: u64,
}

/// What a block holds, so a store can place blocks by how they are read.
///
/// Metadata (directory and indirect blocks) is read on its own — a walk or
/// an incremental import reads every directory block and no file data —
/// so a DataDir stores it apart from the small file blocks it packs into
/// groups, and reading a directory does not decompress its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BlockClass {
    /// File content.
    #[default]
    Data,
    /// Directory blocks, indirect blocks, hard link tables.
    Meta,
}

/// A content-addressed block store.
///
/// Stores are shared between threads: blockify adds blocks from every core
/// at once, and readers fetch ahead in parallel.
pub trait Store: Send + Sync {
    /// The hash function new blocks are named with.
    fn hash_kind(&self) -> HashKind;

    /// Stores `data` under `hash` (which the caller computed with
    /// [`Store::hash_kind`]); returns true if the block was new.
    fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool>;

    /// Like [`Store::add_hashed`], saying what the block holds; stores that
    /// place all blocks alike ignore `class`.
    fn add_hashed_as(&self, hash: &Hash, data: &[u8], class: BlockClass) -> Result<bool> {
        let _ = class;
        self.add_hashed(hash, data)
    }

    /// Hashes and stores `data`; returns its hashcode and whether it was new.
    fn add(&self, data: &[u8]) -> Result<(Hash, bool)> {
        self.add_as(data, BlockClass::Data)
    }

    /// Like [`Store::add`], saying what the block holds.
    fn add_as(&self, data: &[u8], class: BlockClass) -> Result<(Hash, bool)> {
        let h = self.hash_kind().digest(data);
        let new = self.add_hashed_as(&h, data, class)?;
        Ok((h, new))
    }

    /// The data of block `hash`, or `None` if the store does not have it.
    /// A store never returns data other than what was stored under `hash`:
    /// it detects corruption (by checksum or by hash) and fails instead.
    fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>>;

    /// The data of block `hash`, or [`crate::Error::Missing`].
    fn fetch(&self, hash: &Hash) -> Result<Vec<u8>> {
        self.get(hash)?.ok_or(crate::Error::Missing(*hash))
    }

    /// Like [`Store::get`], but the data may be shared with the store (a
    /// slice of a mapped datafile or of a cached group) instead of copied
    /// out: readers that only look at a block, like a mount serving reads,
    /// save a copy of every byte. The default copies.
    fn get_shared(&self, hash: &Hash) -> Result<Option<Bytes>> {
        Ok(self.get(hash)?.map(Bytes::from))
    }

    /// The data of block `hash` as [`Store::get_shared`] gives it, or
    /// [`crate::Error::Missing`].
    fn fetch_shared(&self, hash: &Hash) -> Result<Bytes> {
        self.get_shared(hash)?.ok_or(crate::Error::Missing(*hash))
    }

    /// Block `hash` as one zstd frame (declaring its content size, needing
    /// no dictionary) when the store keeps it that way: a server sends it
    /// on as it is and the client decompresses it, instead of the server
    /// decompressing it and the wire carrying it whole. `None` when the
    /// store does not have it in that form (the caller reads it with
    /// [`Store::get_shared`]); the default.
    fn get_packed(&self, hash: &Hash) -> Result<Option<Bytes>> {
        let _ = hash;
        Ok(None)
    }

    /// Whether the store holds block `hash`.
    fn contains(&self, hash: &Hash) -> Result<bool>;

    /// Makes every block added so far durable. Nothing may refer to a block
    /// (a Dirent on disk, an archive line) until this has returned.
    fn sync(&self) -> Result<()>;

    /// Counts of the store's contents.
    fn stats(&self) -> Result<StoreStats>;

    /// A hint that blocks `hashes` will be read soon: a remote store asks
    /// for them all at once, so the reads that follow wait for no round
    /// trip. Stores that read quickly ignore it (the default).
    fn prefetch(&self, hashes: &[Hash]) {
        let _ = hashes;
    }

    /// Where block `hash` lies in the store, as a number that puts blocks
    /// stored near each other next to each other, if the store can say
    /// without a request: a reader of many blocks (a restore) that takes
    /// them in this order reads each part of the store once, while it is
    /// at hand. Stores where order does not matter say `None` (the
    /// default).
    fn locality(&self, hash: &Hash) -> Option<u64> {
        let _ = hash;
        None
    }

    /// Of the blocks that [`Store::add_hashed`] called new before it could
    /// know, how many turned out to be stored already, and their bytes. A
    /// store that writes behind (a remote client: the server answers later)
    /// calls every block new and counts its mistakes here; they are all
    /// settled when [`Store::sync`] returns. Stores that answer at once
    /// have none (the default).
    fn overcounted(&self) -> (u64, u64) {
        (0, 0)
    }

    /// The names of the archives the store keeps, sorted.
    fn archive_names(&self) -> Result<Vec<String>> {
        Err(no_archives())
    }

    /// The text of archive `name` (see [`crate::archive`]), `None` if the
    /// store has no archive of that name.
    fn archive_read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let _ = name;
        Err(no_archives())
    }

    /// Appends `lines`, whole archive lines each ending in a newline, to
    /// archive `name` (creating it), durably. Stores check the lines
    /// ([`crate::archive::check_lines`]) and refuse malformed ones.
    fn archive_append(&self, name: &str, lines: &[u8]) -> Result<()> {
        let _ = (name, lines);
        Err(no_archives())
    }

    /// Replaces archive `name` with `text` atomically (`vt forget`).
    fn archive_replace(&self, name: &str, text: &[u8]) -> Result<()> {
        let _ = (name, text);
        Err(no_archives())
    }
}

fn no_archives() -> crate::Error {
    crate::Error::Unsupported("this store keeps no archives".into())
}

/// A store scheme compiled into vt, registered with `inventory::submit!`
/// beside its implementation: the name a vtrc clause's `type` (or a
/// `TYPE(...)` spec) gives, and the settings such a clause takes. With
/// the schemes of plugins, these are every scheme `vt plugin list` shows.
pub struct BuiltinScheme {
    /// The scheme's name.
    pub name: &'static str,
    /// What it is, in a few words.
    pub summary: &'static str,
    /// The settings a clause of it takes (besides `type` and
    /// `archives_from`).
    pub settings: &'static [&'static str],
    /// Where it sorts in lists: the order of vtrc(5).
    pub order: u32,
}

inventory::collect!(BuiltinScheme);

/// Every built-in scheme linked into this program, in vtrc(5)'s order.
pub fn builtin_schemes() -> Vec<&'static BuiltinScheme> {
    let mut v: Vec<&'static BuiltinScheme> = inventory::iter::<BuiltinScheme>.into_iter().collect();
    v.sort_by_key(|s| (s.order, s.name));
    v
}

/// The built-in scheme `name`, if there is one.
pub fn builtin_scheme(name: &str) -> Option<&'static BuiltinScheme> {
    inventory::iter::<BuiltinScheme>
        .into_iter()
        .find(|s| s.name == name)
}
