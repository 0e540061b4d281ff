//! Scanners: format-aware proposers of block boundaries.
//!
//! A [`Scanner`] is fed one file in consecutive buffers and proposes offsets
//! where a block should start; the chunker honours a proposal once the block
//! has reached the minimum size. Scanners come from three places that end up
//! in one registry (in the plugin-host crate): built-in native scanners
//! registered here with `inventory` ([`BuiltinScanner`]), and sandboxed
//! WebAssembly plugins. Whoever picks a scanner for a file implements
//! [`ScannerSource`].

use std::path::Path;

/// Proposes block boundaries at a file format's natural seams.
///
/// The host streams a file through `scan` in consecutive buffers; a scanner
/// keeps whatever state it needs between calls and returns absolute offsets
/// (ascending) at which a new block should start. Scanners only propose: the
/// chunker still enforces the minimum and maximum block sizes.
pub trait Scanner: Send {
    /// The scanner's name, for messages.
    fn name(&self) -> &str;

    /// Scans `buf`, which starts at absolute `offset` in the file.
    fn scan(&mut self, offset: u64, buf: &[u8]) -> Vec<u64>;

    /// The input has ended: any last proposals.
    fn finish(&mut self) -> Vec<u64> {
        Vec::new()
    }

    /// The least length of a block ended at one of this scanner's
    /// proposals, if not the chunker's `scan_min`; the chunker keeps it
    /// within [`MIN_BLOCK_FLOOR`] and its `min` (see
    /// [`crate::chunker::ChunkParams::for_scanner`]).
    fn min_block(&self) -> Option<usize> {
        None
    }
}

/// No scanner gets blocks shorter than this ended at its proposals: below
/// it, a block's reference and index entry cost more than it can save.
pub const MIN_BLOCK_FLOOR: usize = 1024;

/// Picks the scanner for a file, if any.
pub trait ScannerSource: Send + Sync {
    /// A scanner for the file at `path` whose first bytes (at most
    /// [`SNIFF_LEN`]) are `head`; `None` for plain CDC.
    fn scanner_for(&self, path: &Path, head: &[u8]) -> Option<Box<dyn Scanner>>;
}

/// How many leading bytes of a file scanner choice looks at.
pub const SNIFF_LEN: usize = 1024;

/// A scanner compiled into vt, registered with `inventory::submit!`.
pub struct BuiltinScanner {
    /// Unique short name.
    pub name: &'static str,
    /// Its version.
    pub version: &'static str,
    /// File extensions handled, without the dot.
    pub extensions: &'static [&'static str],
    /// MIME types handled.
    pub mime_types: &'static [&'static str],
    /// Confidence 0..=100 that a file with this name and head is handled.
    pub sniff: fn(name: &[u8], head: &[u8]) -> u8,
    /// Starts a scan of one file.
    pub new: fn() -> Box<dyn Scanner>,
}

inventory::collect!(BuiltinScanner);

/// Every built-in scanner linked into this program.
pub fn builtins() -> impl Iterator<Item = &'static BuiltinScanner> {
    inventory::iter::<BuiltinScanner>.into_iter()
}
