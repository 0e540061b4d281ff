//! The DataDir's block index: sorted, immutable run files (like git's pack
//! `.idx` files, or an LSM tree without a memtable).
//!
//! Why not a B-tree (LMDB): under random keys (hashcodes) its pages split
//! and are copied on write, so on disk it took 73 to 134 bytes per block.
//! A run is the entries themselves, packed: 59 bytes each plus about a
//! kilobyte per run, so the index stays under 64 bytes per block after one
//! large import as after many small ones. Runs are never changed, only
//! written whole, merged and deleted, so several processes can share them
//! without locks for reading; and the index stays derived data: a run that
//! is lost or damaged only makes the datafile ranges it covered count as
//! unindexed again, and the caller scans them anew.
//!
//! ```text
//! DIR/index/runs/RUN-<seq>-<rand>.idx   immutable runs (format below)
//! DIR/index/datafiles                   "NUM NAME\n" per registered datafile
//! DIR/index/generation                  a byte appended per change of runs/
//! DIR/index/merge.lock                  flock'd by the process merging runs
//! ```
//!
//! # Run files
//!
//! `<seq>` is 16 lower-case hex digits, `<rand>` 8. Runs are ordered by
//! (seq, rand), oldest first: a new run takes the greatest seq listed plus
//! one, a merged run the greatest seq of its inputs. All numbers are
//! little-endian.
//!
//! ```text
//! offset  size       field
//! 0       8          magic "vtidx\0\0\x01" (the last byte is the version)
//! 8       8          entry count N
//! 16      1          key length, 33
//! 17      1          entry length, 59
//! 18      2          zero
//! 20      4          number R of covered ranges in the trailer
//! 24      8          zero
//! 32      256 x 4    fanout: entry i is the number of entries whose key's
//!                    first byte is <= i (so entry 255 is N)
//! 1056    N x 59     entries, sorted by key, no key twice
//! ...     R x 20     covered ranges: datafile number u32, start u64, end
//!                    u64; sorted, not overlapping
//! ...     4          CRC-32 (IEEE) of all the bytes before it
//! ```
//!
//! An entry is a key and a place. The key is the 32-byte digest of the
//! hashcode followed by its kind byte (the binary hashcode of `vt_core`
//! with its first byte moved last), so that keys sort by digest and the
//! fanout and interpolation search use digest bytes, which are uniform.
//! The place (26 bytes): datafile number u32, record offset u48, stored
//! length u32, raw length u32, member index u32 (`0xffffffff` for a block
//! stored as a record of its own), member offset u32 (for a record of its
//! own: 1 if it is a delta record, else 0).
//!
//! A run covers byte range [start, end) of a datafile when every record
//! starting there is in this run or an older one. The index covers a
//! datafile up to the end of the longest stretch from 0 that its runs'
//! ranges cover together ([`Index::ends`]): if a run is lost, the ranges
//! only it covered leave a gap, and the caller indexes the datafile from
//! the gap on again (keys already present are skipped).
//!
//! A run is written to `runs/.tmp-<pid>-<rand>`, synced, renamed into
//! place, and the directory synced; then a byte is appended to
//! `generation`, whose size tells other processes that `runs/` changed
//! (cheaper and surer than the directory's timestamps, which may be
//! coarse). A run's length, header and fanout are checked whenever it is
//! opened, its checksum when it is opened and smaller than
//! [`VERIFY_ON_OPEN_BELOW`] (larger ones: when merged, and by
//! [`Index::check`]). A damaged run is reported, renamed to
//! `<name>.damaged` and ignored.
//!
//! After each new run, if the newest runs together hold at least half as
//! many bytes as the run before them, they are merged into one (under an
//! exclusive flock of `merge.lock`; a process that finds it taken leaves
//! the merge to its holder): run sizes then at least double from newest to
//! oldest, so there are O(log n) runs and each entry is rewritten O(log n)
//! times. Of a key in several inputs, the oldest input's entry is kept.
//! The inputs are deleted after the merged run is in place; processes that
//! have them mapped go on reading them (a map outlives its file), and see
//! the merged run when they next refresh.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use vt_core::{Error, Hash, HashKind, Result};

use crate::mapping;

/// Where a block's record lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Number of the datafile (see [`Index::register`]).
    pub file: u32,
    /// Offset of the record in the datafile.
    pub offset: u64,
    /// Payload length of the record (of the group, for a member).
    pub stored_len: u32,
    /// Length of the block.
    pub raw_len: u32,
    /// Set when the block is a member of a group record.
    pub member: Option<InGroup>,
    /// Set when the record is a delta (`delta.rs`); never with `member`.
    pub delta: bool,
}

/// A block's place in a group record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InGroup {
    /// Its position in the member table.
    pub index: u32,
    /// Where its data starts in the group's decompressed data.
    pub offset: u32,
}

/// First bytes of every run file; the last is the format version.
const MAGIC: [u8; 8] = *b"vtidx\0\0\x01";
/// Bytes of the fixed header before the fanout table.
const HEADER_LEN: usize = 32;
/// Where the entries start: after the header and 256 fanout counts.
const ENTRIES_AT: usize = HEADER_LEN + 256 * 4;
/// Bytes of a key: digest then kind byte.
const KEY_LEN: usize = Hash::ENCODED_LEN;
/// Bytes of an encoded [`Loc`].
const LOC_LEN: usize = 26;
/// Bytes of an entry (at most 60, so that the index stays under 64 bytes
/// per block with the runs' own overhead).
const ENTRY_LEN: usize = KEY_LEN + LOC_LEN;
/// Bytes of a covered range in the trailer.
const SPAN_LEN: usize = 20;
/// Bytes of the checksum at the end.
const CRC_LEN: usize = 4;
/// Member index that marks a block stored as a record of its own.
const NO_MEMBER: u32 = u32::MAX;
/// The greatest record offset an entry holds (48 bits; datafiles stop
/// growing at 1 GiB).
const MAX_OFFSET: u64 = (1 << 48) - 1;
/// Look-ups between releases of the maps' pages: a look-up touches a few
/// pages of every run, so this bounds what a process holds mapped at a few
/// MB a run (a release costs one madvise per run).
const RELEASE_EVERY: u64 = 256;
/// Runs up to this size are read ahead whole when look-ups come in bulk
/// and find them out of the page cache ([`Index::read_ahead`]).
const READ_AHEAD_BELOW: usize = 64 << 20;
/// Look-ups between probes of the runs for being cached: until a probe
/// finds a run cold and reads it ahead, each look-up on it faults in a
/// page or two, one read each (a mount's first 128 KiB of a large file
/// after the page cache was dropped: 85 major faults with a probe every
/// 256 look-ups, 14 with one every 16; as fast on a virtio disk, where a
/// seek costs little). A probe is one `mincore` per run.
const PROBE_EVERY: u64 = 16;
/// Pages of a run probed for being cached, every [`PROBE_EVERY`]
/// look-ups.
const READ_AHEAD_PROBE: usize = 16;
/// Entries read in a row (merging, listing) between releases of pages.
const RELEASE_SEQUENTIAL: usize = 1 << 16;
/// Runs up to this size have their checksum checked when a process opens
/// them: that reads them whole, which for the few small runs costs little
/// and catches damage early. Larger ones are checked when merged and by
/// [`Index::check`] (`vt fsck`): reading hundreds of megabytes on every
/// open would cost more than LMDB's open did. Run sizes at least double
/// from newest to oldest, so an open reads at most about twice this.
pub(crate) const VERIFY_ON_OPEN_BELOW: u64 = 8 << 20;
/// Bytes hashed at a time when checking a checksum through a map; each
/// chunk's pages are released after.
const CHUNK: usize = 1 << 20;
/// The newest runs are merged while they hold at least 1/MERGE_RATIO of
/// the bytes of the run before them.
const MERGE_RATIO: u64 = 2;
/// Temporary files older than this are left by crashed writers: the next
/// merge deletes them.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Times a listing of `runs/` is retried when runs vanish while opened.
const RELIST_TRIES: usize = 16;
/// Interpolation steps before a look-up falls back to binary search.
const INTERPOLATION_STEPS: usize = 4;

const RUNS: &str = "runs";
const DATAFILES: &str = "datafiles";
const GENERATION: &str = "generation";
const MERGE_LOCK: &str = "merge.lock";
const TMP_PREFIX: &str = ".tmp-";

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The key of `hash`: digest, then kind byte (so keys sort by digest).
fn key_of(hash: &Hash) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..32].copy_from_slice(&hash.bytes);
    k[32] = hash.kind.id();
    k
}

/// The hashcode of key `k`.
fn hash_of(k: &[u8]) -> Result<Hash> {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&k[..32]);
    Ok(Hash {
        kind: HashKind::from_id(k[32])?,
        bytes,
    })
}

impl Loc {
    /// Bytes of the whole record (header and payload) in its datafile.
    pub fn record_len(&self) -> u64 {
        crate::datafile::RECORD_HEADER as u64 + u64::from(self.stored_len)
    }

    /// The 26-byte form kept in run entries.
    fn encode(&self) -> Result<[u8; LOC_LEN]> {
        if self.offset > MAX_OFFSET {
            return Err(Error::Store(format!(
                "record offset {} of datafile #{} does not fit in an index entry (48 bits)",
                self.offset, self.file
            )));
        }
        let (index, offset) = match self.member {
            Some(m) if m.index == NO_MEMBER => {
                return Err(Error::Store(format!(
                    "group member index {NO_MEMBER} does not fit in an index entry"
                )))
            }
            Some(_) if self.delta => {
                return Err(Error::Store("a group member cannot be a delta".into()))
            }
            Some(m) => (m.index, m.offset),
            None => (NO_MEMBER, u32::from(self.delta)),
        };
        let mut b = [0u8; LOC_LEN];
        b[0..4].copy_from_slice(&self.file.to_le_bytes());
        b[4..10].copy_from_slice(&self.offset.to_le_bytes()[..6]);
        b[10..14].copy_from_slice(&self.stored_len.to_le_bytes());
        b[14..18].copy_from_slice(&self.raw_len.to_le_bytes());
        b[18..22].copy_from_slice(&index.to_le_bytes());
        b[22..26].copy_from_slice(&offset.to_le_bytes());
        Ok(b)
    }

    /// Reads the form [`Loc::encode`] writes (`b` is 26 bytes).
    fn decode(b: &[u8]) -> Loc {
        let mut o = [0u8; 8];
        o[..6].copy_from_slice(&b[4..10]);
        let index = u32_at(b, 18);
        Loc {
            file: u32_at(b, 0),
            offset: u64::from_le_bytes(o),
            stored_len: u32_at(b, 10),
            raw_len: u32_at(b, 14),
            member: (index != NO_MEMBER).then(|| InGroup {
                index,
                offset: u32_at(b, 22),
            }),
            delta: index == NO_MEMBER && u32_at(b, 22) == 1,
        }
    }
}

/// The entry of `key` at `loc`.
fn encode_entry(key: &[u8; KEY_LEN], loc: &Loc) -> Result<[u8; ENTRY_LEN]> {
    let mut e = [0u8; ENTRY_LEN];
    e[..KEY_LEN].copy_from_slice(key);
    e[KEY_LEN..].copy_from_slice(&loc.encode()?);
    Ok(e)
}

/// Bytes `[start, end)` of datafile `file` are covered (see the module
/// documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    file: u32,
    start: u64,
    end: u64,
}

/// `spans` sorted, with overlapping and touching ranges of a file joined.
fn coalesce(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort_unstable();
    let mut out: Vec<Span> = Vec::with_capacity(spans.len());
    for s in spans {
        match out.last_mut() {
            Some(l) if l.file == s.file && s.start <= l.end => l.end = l.end.max(s.end),
            _ => out.push(s),
        }
    }
    out
}

/// Per datafile, the end of the stretch from 0 that `runs` cover.
fn coverage(runs: &[Arc<Run>]) -> HashMap<u32, u64> {
    let all = runs.iter().flat_map(|r| r.spans.iter().copied()).collect();
    coalesce(all)
        .into_iter()
        .filter(|s| s.start == 0 && s.end > 0)
        .map(|s| (s.file, s.end))
        .collect()
}

/// (seq, rand) of a run file's name; `None` for other names.
fn parse_run_name(name: &str) -> Option<(u64, u32)> {
    let rest = name.strip_prefix("RUN-")?.strip_suffix(".idx")?;
    let (seq, rand) = rest.split_once('-')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|c| c.is_ascii_hexdigit());
    if !hex(seq, 16) || !hex(rand, 8) {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u32::from_str_radix(rand, 16).ok()?,
    ))
}

/// A random 32-bit number (for file names).
fn random_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a valid, owned descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Makes the entries of directory `dir` (renames, deletions) durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("sync directory {}", dir.display()), e))
}

/// Whether the checksum at the end of run `map` matches its bytes. Reads
/// it a chunk at a time and releases each chunk's pages, so checking a
/// large run does not leave it resident.
fn checksum_ok(map: &Bytes) -> bool {
    mapping::will_need(map);
    let body = map.len() - CRC_LEN;
    let mut h = crc32fast::Hasher::new();
    let mut at = 0;
    while at < body {
        let end = (at + CHUNK).min(body);
        h.update(&map[at..end]);
        // `at` is a multiple of CHUNK from the map's start: page-aligned.
        mapping::release(&map.slice(at..end));
        at = end;
    }
    h.finalize() == u32_at(map, body)
}

/// Why a run could not be opened.
enum OpenError {
    /// It was deleted (merged by another process) after being listed.
    Gone,
    /// It is damaged: why.
    Damaged(String),
    /// Anything else (permissions, memory, a newer format).
    Failed(Error),
}

/// One run file, mapped.
struct Run {
    /// File name in `runs/`.
    name: String,
    /// (seq, rand): the order of runs, oldest first.
    order: (u64, u32),
    /// The whole file, mapped read-only.
    map: Bytes,
    /// Entries.
    count: usize,
    /// Datafile ranges it covers.
    spans: Vec<Span>,
    /// Set once its checksum was found good.
    verified: AtomicBool,
}

impl Run {
    /// Opens and checks run `name` in `dir`. `trusted`: this process just
    /// wrote it, its checksum is not checked.
    fn open(
        dir: &Path,
        name: &str,
        order: (u64, u32),
        trusted: bool,
    ) -> std::result::Result<Run, OpenError> {
        let path = dir.join(name);
        let failed =
            |what: &str, e| OpenError::Failed(Error::io(format!("{what} {}", path.display()), e));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenError::Gone),
            Err(e) => return Err(failed("open index run", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| failed("stat index run", e))?
            .len();
        if len < (ENTRIES_AT + CRC_LEN) as u64 {
            return Err(OpenError::Damaged(format!(
                "{len} bytes, too short for a run"
            )));
        }
        let map = match mapping::map(&file, len) {
            Ok(Some(m)) => m,
            Ok(None) => return Err(OpenError::Damaged("empty".into())),
            Err(e) => return Err(failed("map index run", e)),
        };
        // Looked up at random: without this, each page a look-up touches
        // maps its neighbours too, and a process doing many look-ups in a
        // large index holds hundreds of MB of it between releases.
        mapping::advise_random(&map);
        if map[..7] != MAGIC[..7] {
            return Err(OpenError::Damaged("not an index run (bad magic)".into()));
        }
        if map[7] != MAGIC[7] {
            return Err(OpenError::Failed(Error::Store(format!(
                "{}: index run of format version {}; this vt reads version {}",
                path.display(),
                map[7],
                MAGIC[7]
            ))));
        }
        let (count, nspans) = (u64_at(&map, 8), u64::from(u32_at(&map, 20)));
        if usize::from(map[16]) != KEY_LEN || usize::from(map[17]) != ENTRY_LEN {
            return Err(OpenError::Damaged(format!(
                "keys of {} and entries of {} bytes, expected {KEY_LEN} and {ENTRY_LEN}",
                map[16], map[17]
            )));
        }
        let expected = (ENTRIES_AT + CRC_LEN) as u128
            + u128::from(count) * ENTRY_LEN as u128
            + u128::from(nspans) * SPAN_LEN as u128;
        if expected != u128::from(len) {
            return Err(OpenError::Damaged(format!(
                "{len} bytes where its header says {expected}: torn or truncated"
            )));
        }
        let mut prev = 0u32;
        for b in 0..256 {
            let f = u32_at(&map, HEADER_LEN + 4 * b);
            if f < prev || u64::from(f) > count {
                return Err(OpenError::Damaged("inconsistent fanout table".into()));
            }
            prev = f;
        }
        if u64::from(prev) != count {
            return Err(OpenError::Damaged("inconsistent fanout table".into()));
        }
        // `count` <= `len`, so it fits.
        let count = count as usize;
        let spans_at = ENTRIES_AT + count * ENTRY_LEN;
        let mut spans = Vec::with_capacity(nspans as usize);
        for i in 0..nspans as usize {
            let at = spans_at + i * SPAN_LEN;
            let s = Span {
                file: u32_at(&map, at),
                start: u64_at(&map, at + 4),
                end: u64_at(&map, at + 12),
            };
            if s.start > s.end {
                return Err(OpenError::Damaged(
                    "a covered range ends before it starts".into(),
                ));
            }
            spans.push(s);
        }
        let verified = trusted || (len <= VERIFY_ON_OPEN_BELOW && checksum_ok(&map));
        if !verified && len <= VERIFY_ON_OPEN_BELOW {
            return Err(OpenError::Damaged("checksum mismatch".into()));
        }
        Ok(Run {
            name: name.to_string(),
            order,
            map,
            count,
            spans,
            verified: AtomicBool::new(verified),
        })
    }

    /// Entry count with the first key byte at most `b`.
    fn fanout(&self, b: usize) -> usize {
        u32_at(&self.map, HEADER_LEN + 4 * b) as usize
    }

    /// Entry `i`.
    fn entry(&self, i: usize) -> &[u8] {
        let at = ENTRIES_AT + i * ENTRY_LEN;
        &self.map[at..at + ENTRY_LEN]
    }

    /// The key of entry `i`.
    fn key(&self, i: usize) -> &[u8] {
        &self.entry(i)[..KEY_LEN]
    }

    /// The place of entry `i`.
    fn loc(&self, i: usize) -> Loc {
        Loc::decode(&self.entry(i)[KEY_LEN..])
    }

    /// The position of `key`, if present: the fanout narrows the search
    /// to keys with its first byte, then interpolation on the next eight
    /// (digests are uniform: a probe or two, a page or two of a cold
    /// run), then binary search (in case they are not).
    fn find(&self, key: &[u8; KEY_LEN]) -> Option<usize> {
        let b = usize::from(key[0]);
        let mut lo = if b == 0 { 0 } else { self.fanout(b - 1) };
        let mut hi = self.fanout(b);
        let prefix = |k: &[u8]| u64::from_be_bytes(k[1..9].try_into().unwrap_or([0; 8]));
        let v = prefix(&key[..]);
        // Every key in [lo, hi) has its prefix in [lo_v, hi_v] (in a sound
        // run; in a damaged one the search just misses).
        let (mut lo_v, mut hi_v) = (0u64, u64::MAX);
        for _ in 0..INTERPOLATION_STEPS {
            if hi - lo <= 16 {
                break;
            }
            let span = u128::from(hi_v.saturating_sub(lo_v)) + 1;
            let step = u128::from(v.saturating_sub(lo_v)) * (hi - lo) as u128 / span;
            let mid = lo + step.min((hi - lo - 1) as u128) as usize;
            let k = self.key(mid);
            match k.cmp(&key[..]) {
                Ordering::Equal => return Some(mid),
                Ordering::Less => {
                    lo = mid + 1;
                    lo_v = prefix(k);
                }
                Ordering::Greater => {
                    hi = mid;
                    hi_v = prefix(k);
                }
            }
        }
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(&key[..]) {
                Ordering::Equal => return Some(mid),
                Ordering::Less => lo = mid + 1,
                Ordering::Greater => hi = mid,
            }
        }
        None
    }
}

impl Run {
    /// The first entry whose key starts with `p`, if any (binary search
    /// within the fanout's range).
    fn first_with(&self, p: &[u8; 4]) -> Option<usize> {
        let b = usize::from(p[0]);
        let mut lo = if b == 0 { 0 } else { self.fanout(b - 1) };
        let mut hi = self.fanout(b);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.key(mid)[..4] < p[..] {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo < self.count && self.key(lo)[..4] == p[..]).then_some(lo)
    }
}

/// Writes a run: entries in key order, then [`RunWriter::finish`]. The
/// temporary file is deleted unless finished.
struct RunWriter {
    tmp: PathBuf,
    file: File,
    /// Bytes not yet written.
    buf: Vec<u8>,
    /// Checksum of the bytes after the header and fanout, so far.
    crc: crc32fast::Hasher,
    /// Entries per first key byte.
    counts: [u64; 256],
    count: u64,
    done: bool,
}

impl RunWriter {
    /// Starts a run in `runs/` (a directory).
    fn create(runs: &Path) -> Result<Self> {
        let tmp = runs.join(format!(
            "{TMP_PREFIX}{}-{:08x}",
            std::process::id(),
            random_u32()
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(format!("create {}", tmp.display()), e))?;
        let mut w = RunWriter {
            tmp,
            file,
            buf: Vec::with_capacity(CHUNK),
            crc: crc32fast::Hasher::new(),
            counts: [0; 256],
            count: 0,
            done: false,
        };
        // Header and fanout are written last, in place of these.
        w.write_out(&[0u8; ENTRIES_AT])?;
        Ok(w)
    }

    /// Appends entry `e` (after every smaller key).
    fn push(&mut self, e: &[u8]) -> Result<()> {
        self.counts[usize::from(e[0])] += 1;
        self.count += 1;
        self.buf.extend_from_slice(e);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out the buffer (part of the checksum).
    fn flush(&mut self) -> Result<()> {
        self.crc.update(&self.buf);
        let buf = std::mem::take(&mut self.buf);
        self.write_out(&buf)?;
        self.buf = buf;
        self.buf.clear();
        Ok(())
    }

    fn write_out(&mut self, b: &[u8]) -> Result<()> {
        (&self.file)
            .write_all(b)
            .map_err(|e| Error::io(format!("write {}", self.tmp.display()), e))
    }

    /// Writes the trailer and header, syncs, and renames the run into
    /// `runs` as the run of sequence number `seq`; returns its name and
    /// order.
    fn finish(mut self, runs: &Path, seq: u64, spans: &[Span]) -> Result<(String, (u64, u32))> {
        let count = u32::try_from(self.count)
            .map_err(|_| Error::Store(format!("index run of {} entries: too many", self.count)))?;
        for s in spans {
            self.buf.extend_from_slice(&s.file.to_le_bytes());
            self.buf.extend_from_slice(&s.start.to_le_bytes());
            self.buf.extend_from_slice(&s.end.to_le_bytes());
        }
        self.flush()?;
        let mut head = Vec::with_capacity(ENTRIES_AT);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&u64::from(count).to_le_bytes());
        head.extend_from_slice(&[KEY_LEN as u8, ENTRY_LEN as u8, 0, 0]);
        head.extend_from_slice(&(spans.len() as u32).to_le_bytes());
        head.extend_from_slice(&[0u8; 8]);
        let mut sum = 0u64;
        for c in self.counts {
            sum += c;
            head.extend_from_slice(&(sum as u32).to_le_bytes());
        }
        let mut crc = crc32fast::Hasher::new();
        crc.update(&head);
        crc.combine(&self.crc);
        let crc = crc.finalize();
        let tmp = self.tmp.clone();
        let io = |e| Error::io(format!("write {}", tmp.display()), e);
        self.file.write_all_at(&head, 0).map_err(io)?;
        (&self.file).write_all(&crc.to_le_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        let order = (seq, random_u32());
        let name = format!("RUN-{:016x}-{:08x}.idx", order.0, order.1);
        let path = runs.join(&name);
        std::fs::rename(&self.tmp, &path)
            .map_err(|e| Error::io(format!("rename {} to {}", tmp.display(), path.display()), e))?;
        self.done = true;
        sync_dir(runs)?;
        Ok((name, order))
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A run being read by a merge, checking its checksum on the way if it
/// was not checked yet.
struct Cursor<'a> {
    run: &'a Run,
    next: usize,
    /// Checksum so far and how many bytes it covers.
    crc: Option<(crc32fast::Hasher, usize)>,
}

impl<'a> Cursor<'a> {
    fn new(run: &'a Run) -> Self {
        // Read in order: ahead of the merge (the map is advised random).
        mapping::will_need(&run.map);
        let crc = (!run.verified.load(Relaxed)).then(|| (crc32fast::Hasher::new(), 0));
        Cursor { run, next: 0, crc }
    }

    /// Takes the next entry.
    fn advance(&mut self) {
        self.next += 1;
        if let Some((h, at)) = &mut self.crc {
            let end = ENTRIES_AT + self.next * ENTRY_LEN;
            if end >= *at + CHUNK {
                h.update(&self.run.map[*at..end]);
                *at = end;
            }
        }
    }

    /// After every entry was taken: whether the run's checksum matches.
    fn intact(&mut self) -> bool {
        let Some((mut h, at)) = self.crc.take() else {
            return true;
        };
        let body = self.run.map.len() - CRC_LEN;
        h.update(&self.run.map[at..body]);
        let ok = h.finalize() == u32_at(&self.run.map, body);
        self.run.verified.store(ok, Relaxed);
        ok
    }
}

/// The runs a process sees.
#[derive(Default)]
struct View {
    /// Oldest first.
    runs: Vec<Arc<Run>>,
}

/// The block index of a DataDir (see the module documentation).
pub(crate) struct Index {
    /// The index directory.
    dir: PathBuf,
    /// Its `runs/`.
    runs_dir: PathBuf,
    /// `generation`, open for appending (or only for reading, in a
    /// read-only DataDir; `None` if it cannot be opened: then every
    /// refresh lists `runs/`).
    generation: Option<File>,
    /// The size of `generation` when `runs/` was last listed (`u64::MAX`:
    /// never).
    seen: AtomicU64,
    /// The runs in use.
    view: RwLock<View>,
    /// Held while this process writes, merges or clears runs.
    writing: Mutex<()>,
    /// Look-ups so far (every [`RELEASE_EVERY`] releases the maps' pages).
    lookups: AtomicU64,
    /// Runs found damaged that could not be moved aside: not opened again.
    damaged: Mutex<HashSet<String>>,
}

/// Every entry of the runs an [`Index`] saw when asked: each run's in key
/// order, oldest run first. A key in several runs (written by processes
/// at once, not merged yet) comes once per run.
pub(crate) struct Entries {
    runs: Vec<Arc<Run>>,
    run: usize,
    next: usize,
    /// Entries since the current run's pages were last released.
    since_release: usize,
}

impl Iterator for Entries {
    type Item = Result<(Hash, Loc)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let r = self.runs.get(self.run)?;
            if self.next < r.count {
                if self.next == 0 {
                    // Read in order (the map is advised random).
                    mapping::will_need(&r.map);
                }
                let i = self.next;
                self.next += 1;
                self.since_release += 1;
                if self.since_release >= RELEASE_SEQUENTIAL {
                    mapping::release(&r.map);
                    self.since_release = 0;
                }
                let item = hash_of(r.key(i))
                    .map(|h| (h, r.loc(i)))
                    .map_err(|e| Error::Store(format!("index run {}: entry {i}: {e}", r.name)));
                return Some(item);
            }
            mapping::release(&r.map);
            self.run += 1;
            self.next = 0;
            self.since_release = 0;
        }
    }
}

impl Index {
    /// Opens the index in directory `dir`, creating what is missing.
    pub(crate) fn open(dir: &Path) -> Result<Index> {
        let runs_dir = dir.join(RUNS);
        std::fs::create_dir_all(&runs_dir)
            .map_err(|e| Error::io(format!("create {}", runs_dir.display()), e))?;
        let datafiles = dir.join(DATAFILES);
        if let Err(e) = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&datafiles)
        {
            // A read-only DataDir can still be read if the file is there.
            if !datafiles.exists() {
                return Err(Error::io(format!("create {}", datafiles.display()), e));
            }
        }
        let gen = dir.join(GENERATION);
        let generation = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&gen)
            .or_else(|_| File::open(&gen))
            .ok();
        let index = Index {
            dir: dir.to_path_buf(),
            runs_dir,
            generation,
            seen: AtomicU64::new(u64::MAX),
            view: RwLock::default(),
            writing: Mutex::default(),
            lookups: AtomicU64::new(0),
            damaged: Mutex::default(),
        };
        index.relist(Vec::new())?;
        Ok(index)
    }

    fn view(&self) -> RwLockReadGuard<'_, View> {
        // A view is replaced whole, never left half changed: a panic
        // elsewhere leaves it usable.
        self.view.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The runs in use now.
    fn snapshot(&self) -> Vec<Arc<Run>> {
        self.view().runs.clone()
    }

    fn writing(&self) -> MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a look-up; every [`PROBE_EVERY`] reads the small runs ahead
    /// if they are not cached, every [`RELEASE_EVERY`] releases the maps'
    /// pages.
    fn note_lookup(&self) {
        let n = self.lookups.fetch_add(1, Relaxed);
        if n % PROBE_EVERY == PROBE_EVERY - 1 {
            self.read_ahead(n / PROBE_EVERY);
        }
        if n % RELEASE_EVERY == RELEASE_EVERY - 1 {
            self.release_pages();
        }
    }

    /// Asks the kernel to read each run under [`READ_AHEAD_BELOW`] into
    /// the page cache (without waiting, and without mapping it) when a
    /// probe of [`READ_AHEAD_PROBE`] of its pages, at a place that moves
    /// with `turn`, finds one missing. Look-ups in bulk on a cold cache (a
    /// large file read through `vt mount`, an import) otherwise fault in
    /// one page per look-up at random: 1,500 reads of 4 KiB for a 6 MB
    /// run, where one sequential read costs a few milliseconds (a cold
    /// `cat` of a 1 GiB file stored beside a kernel tree took 0.97-1.19 s
    /// with the run cold, 0.83 s with it cached).
    fn read_ahead(&self, turn: u64) {
        for r in &self.view().runs {
            if r.map.len() > READ_AHEAD_BELOW {
                continue;
            }
            let pages = r.map.len().div_ceil(mapping::PAGE);
            let at = ((turn + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize % pages;
            if !mapping::cached(&r.map, at, READ_AHEAD_PROBE) {
                mapping::will_need(&r.map);
            }
        }
    }

    /// Where block `hash` is, according to any run (the oldest that has
    /// it). Runs written by other processes since the last
    /// [`Index::refresh`] are not looked at: callers refresh on a miss.
    pub(crate) fn get(&self, hash: &Hash) -> Result<Option<Loc>> {
        self.note_lookup();
        let key = key_of(hash);
        let view = self.view();
        Ok(view
            .runs
            .iter()
            .find_map(|r| r.find(&key).map(|i| r.loc(i))))
    }

    /// A block whose digest starts with `prefix` (little-endian, as
    /// [`crate::similar::prefix_of`] makes it), and where it is, if any
    /// run has one (as [`Index::get`]; of several, any).
    pub(crate) fn find_prefix(&self, prefix: u32) -> Result<Option<(Hash, Loc)>> {
        self.note_lookup();
        let p = prefix.to_le_bytes();
        for r in self.view().runs.iter() {
            if let Some(i) = r.first_with(&p) {
                return Ok(Some((hash_of(r.key(i))?, r.loc(i))));
            }
        }
        Ok(None)
    }

    /// Whether block `hash` is in a run (as [`Index::get`]).
    pub(crate) fn contains(&self, hash: &Hash) -> Result<bool> {
        self.note_lookup();
        let key = key_of(hash);
        Ok(self.view().runs.iter().any(|r| r.find(&key).is_some()))
    }

    /// Enters `entries` in the index as one new run covering, for each
    /// `(file, end)` of `ends`, datafile `file` up to `end`. Keys already
    /// in the index, and repeats in `entries` after the first, are left
    /// out. A run is written even without entries when `ends` advance
    /// what the index covers (so that the ends are durable), and nothing
    /// when neither. Then the newest runs are merged if due.
    ///
    /// The run is durable when this returns. The range it covers of a
    /// datafile starts where the index's coverage of it ended (see
    /// [`Index::ends`], looked at afresh here), so each datafile's ends
    /// should come from one process at a time (the one holding the
    /// datafile's lock), and its entries should be those of every record
    /// from [`Index::ends`] on: a caller whose records start later (say,
    /// because a damaged run was set aside since it last looked) should
    /// index from `ends()` again first.
    pub(crate) fn add_run(&self, entries: Vec<(Hash, Loc)>, ends: &[(u32, u64)]) -> Result<()> {
        let _w = self.writing();
        // Fresh: to skip what others entered, and to number the run.
        self.relist(Vec::new())?;
        let runs = self.snapshot();
        let mut keyed: Vec<([u8; KEY_LEN], Loc)> =
            entries.into_iter().map(|(h, l)| (key_of(&h), l)).collect();
        // Stable: of repeated keys the first stays first, and is kept.
        keyed.sort_by_key(|e| e.0);
        keyed.dedup_by(|later, earlier| later.0 == earlier.0);
        let mut looked = 0u64;
        keyed.retain(|(k, _)| {
            looked += 1;
            if looked.is_multiple_of(RELEASE_EVERY) {
                runs.iter().for_each(|r| mapping::release(&r.map));
            }
            !runs.iter().any(|r| r.find(k).is_some())
        });
        runs.iter().for_each(|r| mapping::release(&r.map));
        let covered = coverage(&runs);
        let mut want: HashMap<u32, u64> = HashMap::new();
        for &(file, end) in ends {
            let e = want.entry(file).or_insert(0);
            *e = (*e).max(end);
        }
        let mut spans: Vec<Span> = want
            .into_iter()
            .filter_map(|(file, end)| {
                let start = covered.get(&file).copied().unwrap_or(0);
                (end > start).then_some(Span { file, start, end })
            })
            .collect();
        spans.sort_unstable();
        if keyed.is_empty() && spans.is_empty() {
            return Ok(());
        }
        let seq = runs.iter().map(|r| r.order.0 + 1).max().unwrap_or(0);
        drop(runs);
        let mut w = RunWriter::create(&self.runs_dir)?;
        for (k, loc) in &keyed {
            w.push(&encode_entry(k, loc)?)?;
        }
        drop(keyed);
        let (name, order) = w.finish(&self.runs_dir, seq, &spans)?;
        self.bump(b'a')?;
        self.adopt(&name, order)?;
        if let Err(e) = self.merge_if_due() {
            // The run is in place; merging is tried again after the next.
            tracing::warn!("{}: merging index runs: {e}", self.runs_dir.display());
        }
        Ok(())
    }

    /// Adds run `name`, just written by this process, to the view.
    fn adopt(&self, name: &str, order: (u64, u32)) -> Result<()> {
        match Run::open(&self.runs_dir, name, order, true) {
            Ok(r) => self.relist(vec![Arc::new(r)]),
            // Merged away by another process already: list anew.
            Err(_) => self.relist(Vec::new()),
        }
    }

    /// Per datafile number, how far the index covers it: the end of the
    /// stretch from offset 0 that its runs' ranges cover together. That is
    /// the greatest end of any run, unless a run was lost (then the end of
    /// the gap it left). Datafiles not covered at all are left out.
    pub(crate) fn ends(&self) -> HashMap<u32, u64> {
        coverage(&self.view().runs)
    }

    /// The number of datafile `name`, registering it if new: one more
    /// than the greatest number registered (0 for the first). Registering
    /// takes an exclusive lock of the registry, so processes registering
    /// at once get distinct numbers, and a name registered by any process
    /// gets the number it already has.
    pub(crate) fn register(&self, name: &str) -> Result<u32> {
        if name.is_empty() || name.contains(['\n', '\0']) {
            return Err(Error::Store(format!(
                "cannot register datafile name {name:?}"
            )));
        }
        let path = self.dir.join(DATAFILES);
        let io = |what: &str, e| Error::io(format!("{what} {}", path.display()), e);
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| io("open", e))?;
        flock(&f, libc::LOCK_EX).map_err(|e| io("lock", e))?;
        let mut raw = Vec::new();
        (&f).read_to_end(&mut raw).map_err(|e| io("read", e))?;
        let (list, complete) = parse_registry(&raw, &path)?;
        if let Some(&(num, _)) = list.iter().find(|(_, n)| n == name) {
            return Ok(num);
        }
        if complete < raw.len() {
            // A line cut short by a crash: it never counted.
            f.set_len(complete as u64).map_err(|e| io("truncate", e))?;
        }
        let next = match list.iter().map(|&(n, _)| n).max() {
            None => 0,
            Some(n) => n.checked_add(1).ok_or_else(|| {
                Error::Store(format!("{}: datafile numbers exhausted", path.display()))
            })?,
        };
        (&f).write_all(format!("{next} {name}\n").as_bytes())
            .and_then(|_| f.sync_data())
            .map_err(|e| io("append to", e))?;
        Ok(next)
    }

    /// The registered datafiles, (number, name), by number.
    pub(crate) fn datafiles(&self) -> Result<Vec<(u32, String)>> {
        let path = self.dir.join(DATAFILES);
        let raw = match std::fs::read(&path) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(format!("read {}", path.display()), e)),
        };
        let mut list = parse_registry(&raw, &path)?.0;
        list.sort_unstable();
        Ok(list)
    }

    /// Entries in all runs seen. Runs do not overlap unless processes
    /// entered the same block at once (and the runs were not merged yet),
    /// so this is exact but for those: an upper bound.
    #[cfg(test)]
    pub(crate) fn len(&self) -> u64 {
        self.view().runs.iter().map(|r| r.count as u64).sum()
    }

    /// True when no run has an entry.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs in use (for tests and statistics).
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.view().runs.len()
    }

    /// Bytes of every file under the index directory (their lengths), what
    /// the index costs on disk.
    pub(crate) fn disk_bytes(&self) -> u64 {
        fn walk(dir: &Path) -> u64 {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return 0;
            };
            rd.flatten()
                .map(|e| match e.file_type() {
                    Ok(t) if t.is_dir() => walk(&e.path()),
                    _ => e.metadata().map_or(0, |m| m.len()),
                })
                .sum()
        }
        walk(&self.dir)
    }

    /// Every entry, for fsck and statistics: see [`Entries`]. Reading them
    /// does not leave the runs resident.
    pub(crate) fn entries(&self) -> Entries {
        Entries {
            runs: self.snapshot(),
            run: 0,
            next: 0,
            since_release: 0,
        }
    }

    /// Checks every run's checksum (large runs are not checked when
    /// opened); returns a line per damaged run (for `vt fsck`).
    pub(crate) fn check(&self) -> Vec<String> {
        self.snapshot()
            .iter()
            .filter_map(|r| {
                if r.verified.load(Relaxed) {
                    return None;
                }
                let ok = checksum_ok(&r.map);
                r.verified.store(ok, Relaxed);
                (!ok).then(|| {
                    format!(
                        "index run {}: checksum mismatch (damaged): run `vt fsck --reindex`",
                        self.runs_dir.join(&r.name).display()
                    )
                })
            })
            .collect()
    }

    /// Removes every run and the datafile registry (to rebuild the index).
    /// Other processes must not be using the index.
    pub(crate) fn clear(&self) -> Result<()> {
        let _w = self.writing();
        let _lock = self.merge_lock(true)?;
        let list = |e| Error::io(format!("list {}", self.runs_dir.display()), e);
        for ent in std::fs::read_dir(&self.runs_dir).map_err(list)? {
            let path = ent.map_err(list)?.path();
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(format!("delete {}", path.display()), e)),
            }
        }
        sync_dir(&self.runs_dir)?;
        let path = self.dir.join(DATAFILES);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        flock(&f, libc::LOCK_EX)
            .and_then(|_| f.set_len(0))
            .and_then(|_| f.sync_data())
            .map_err(|e| Error::io(format!("truncate {}", path.display()), e))?;
        self.damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.bump(b'c')?;
        self.relist(Vec::new())
    }

    /// Sees runs other processes wrote or merged since: cheap when there
    /// are none (one `fstat` of `generation`), so callers may call it on
    /// every miss.
    pub(crate) fn refresh(&self) -> Result<()> {
        match self.generation_now() {
            Some(g) if g == self.seen.load(Relaxed) => Ok(()),
            _ => self.relist(Vec::new()),
        }
    }

    /// Drops this process's page table entries for every run map, so that
    /// resident memory does not grow with the index: the pages stay in
    /// the page cache, a later look-up maps them again (a minor fault).
    /// The maps are read-only and shared, so nothing is lost.
    pub(crate) fn release_pages(&self) {
        for r in &self.view().runs {
            mapping::release(&r.map);
        }
    }

    /// Merges every run into one (for `vt fsck --reindex` and tests).
    pub(crate) fn compact(&self) -> Result<()> {
        let _w = self.writing();
        let _lock = self.merge_lock(true)?;
        for _ in 0..RELIST_TRIES {
            self.relist(Vec::new())?;
            let runs = self.snapshot();
            if runs.len() <= 1 || self.merge(&runs)? {
                return Ok(());
            }
            // A damaged input was set aside: merge the rest.
        }
        Err(Error::Store(format!(
            "{}: cannot merge the index runs",
            self.runs_dir.display()
        )))
    }

    /// The size of `generation` now (`None` if it cannot be read).
    fn generation_now(&self) -> Option<u64> {
        self.generation
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len())
    }

    /// Tells every process that `runs/` changed (`what` says how, for
    /// whoever reads the file: a, m, x, c for added, merged, set aside,
    /// cleared).
    fn bump(&self, what: u8) -> Result<()> {
        let res = match &self.generation {
            Some(f) => (&*f).write_all(&[what]),
            None => Err(std::io::Error::other("cannot open it")),
        };
        res.map_err(|e| {
            let path = self.dir.join(GENERATION);
            Error::io(format!("append to {}", path.display()), e)
        })
    }

    /// Lists `runs/` and opens the runs not open yet; `fresh` are runs
    /// this process opened already. A run that vanishes between listing
    /// and opening was merged by another process: list again.
    fn relist(&self, mut fresh: Vec<Arc<Run>>) -> Result<()> {
        let mut view = self.view.write().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..RELIST_TRIES {
            // Read before listing: a change after it is seen next time.
            let gen = self.generation_now().unwrap_or(u64::MAX);
            let mut runs = Vec::new();
            let mut gone = false;
            for (order, name) in self.list_runs()? {
                if let Some(r) = view.runs.iter().chain(&fresh).find(|r| r.name == name) {
                    runs.push(r.clone());
                    continue;
                }
                match Run::open(&self.runs_dir, &name, order, false) {
                    Ok(r) => {
                        let r = Arc::new(r);
                        fresh.push(r.clone());
                        runs.push(r);
                    }
                    Err(OpenError::Gone) => {
                        gone = true;
                        break;
                    }
                    Err(OpenError::Damaged(why)) => self.set_aside(&name, &why),
                    Err(OpenError::Failed(e)) => return Err(e),
                }
            }
            if !gone {
                view.runs = runs;
                self.seen.store(gen, Relaxed);
                return Ok(());
            }
        }
        Err(Error::Store(format!(
            "{}: index runs keep vanishing while being listed",
            self.runs_dir.display()
        )))
    }

    /// The runs in `runs/`, (order, name), oldest first, but for those
    /// known to be damaged.
    fn list_runs(&self) -> Result<Vec<((u64, u32), String)>> {
        let list = |e| Error::io(format!("list {}", self.runs_dir.display()), e);
        let damaged = self.damaged.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for ent in std::fs::read_dir(&self.runs_dir).map_err(list)? {
            let name = ent
                .map_err(list)?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if let Some(order) = parse_run_name(&name) {
                if !damaged.contains(&name) {
                    out.push((order, name));
                }
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Reports damaged run `name` and moves it aside, out of every
    /// process's way (the datafile ranges it covered count as unindexed
    /// again, so they are indexed anew).
    fn set_aside(&self, name: &str, why: &str) {
        let path = self.runs_dir.join(name);
        tracing::warn!(
            "{}: damaged index run ignored ({why}); renamed to {name}.damaged",
            path.display()
        );
        let aside = self.runs_dir.join(format!("{name}.damaged"));
        if let Err(e) = std::fs::rename(&path, &aside) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("{}: cannot rename: {e}", path.display());
            }
        }
        self.damaged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_string());
        let _ = self.bump(b'x');
    }

    /// Takes `merge.lock`, waiting for it with `wait`; `None` if another
    /// process holds it and not `wait`. Held until the file is dropped.
    fn merge_lock(&self, wait: bool) -> Result<Option<File>> {
        let path = self.dir.join(MERGE_LOCK);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let op = if wait {
            libc::LOCK_EX
        } else {
            libc::LOCK_EX | libc::LOCK_NB
        };
        match flock(&f, op) {
            Ok(()) => {
                self.sweep_temporaries();
                Ok(Some(f))
            }
            Err(e) if !wait && e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Error::io(format!("lock {}", path.display()), e)),
        }
    }

    /// Deletes temporary files crashed writers left in `runs/`.
    fn sweep_temporaries(&self) {
        let Ok(rd) = std::fs::read_dir(&self.runs_dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in rd.flatten() {
            let stale = e.file_name().to_string_lossy().starts_with(TMP_PREFIX)
                && e.metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| now.duration_since(t).is_ok_and(|age| age > STALE_TMP));
            if stale {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Merges the newest runs if they hold at least half as many bytes as
    /// the run before them (unless another process is merging).
    fn merge_if_due(&self) -> Result<()> {
        let Some(_lock) = self.merge_lock(false)? else {
            return Ok(());
        };
        for _ in 0..RELIST_TRIES {
            // Under the lock no run is merged away meanwhile.
            self.relist(Vec::new())?;
            let runs = self.snapshot();
            let from = merge_from(&runs);
            if from + 1 >= runs.len() || self.merge(&runs[from..])? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Merges `inputs` (consecutive runs, oldest first) into one run, then
    /// deletes them. The caller holds `merge.lock`. Returns false (merging
    /// nothing) if an input turned out damaged; it is set aside.
    fn merge(&self, inputs: &[Arc<Run>]) -> Result<bool> {
        let seq = inputs.iter().map(|r| r.order.0).max().unwrap_or(0);
        let spans = coalesce(
            inputs
                .iter()
                .flat_map(|r| r.spans.iter().copied())
                .collect(),
        );
        let mut w = RunWriter::create(&self.runs_dir)?;
        let mut cursors: Vec<Cursor> = inputs.iter().map(|r| Cursor::new(r)).collect();
        let mut heap = BinaryHeap::new();
        let head = |c: &Cursor, i: usize| {
            let mut k = [0u8; KEY_LEN];
            k.copy_from_slice(c.run.key(c.next));
            Reverse((k, i))
        };
        for (i, c) in cursors.iter().enumerate() {
            if c.run.count > 0 {
                heap.push(head(c, i));
            }
        }
        let mut last: Option<[u8; KEY_LEN]> = None;
        let mut taken = 0usize;
        // Of equal keys the oldest run's (lowest index) comes out first
        // and is kept.
        while let Some(Reverse((key, i))) = heap.pop() {
            let c = &mut cursors[i];
            if last != Some(key) {
                w.push(c.run.entry(c.next))?;
                last = Some(key);
            }
            c.advance();
            if c.next < c.run.count {
                heap.push(head(c, i));
            }
            taken += 1;
            if taken.is_multiple_of(RELEASE_SEQUENTIAL) {
                inputs.iter().for_each(|r| mapping::release(&r.map));
            }
        }
        inputs.iter().for_each(|r| mapping::release(&r.map));
        let bad: Vec<String> = cursors
            .iter_mut()
            .filter_map(|c| (!c.intact()).then(|| c.run.name.clone()))
            .collect();
        if !bad.is_empty() {
            drop(w);
            for name in bad {
                self.set_aside(&name, "checksum mismatch, found while merging");
            }
            self.relist(Vec::new())?;
            return Ok(false);
        }
        let (name, order) = w.finish(&self.runs_dir, seq, &spans)?;
        for r in inputs {
            let path = self.runs_dir.join(&r.name);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    // Harmless: its entries are in the merged run too.
                    tracing::warn!("{}: cannot delete merged index run: {e}", path.display());
                }
            }
        }
        sync_dir(&self.runs_dir)?;
        self.bump(b'm')?;
        self.adopt(&name, order)?;
        Ok(true)
    }
}

/// Where the newest runs that are due for merging start: while the runs
/// from `i` on hold at least 1/[`MERGE_RATIO`] of the bytes of run `i - 1`,
/// it joins them. `runs.len() - 1` (or 0) when no merge is due.
fn merge_from(runs: &[Arc<Run>]) -> usize {
    let Some(last) = runs.len().checked_sub(1) else {
        return 0;
    };
    let mut i = last;
    let mut acc = runs[last].map.len() as u64;
    while i > 0 && acc * MERGE_RATIO >= runs[i - 1].map.len() as u64 {
        i -= 1;
        acc += runs[i].map.len() as u64;
    }
    i
}

/// The lines of a datafile registry (`raw`, read from `path`): (number,
/// name) each, and how many bytes the complete lines take (a last line
/// without its newline was cut short by a crash and does not count).
fn parse_registry(raw: &[u8], path: &Path) -> Result<(Vec<(u32, String)>, usize)> {
    let complete = raw.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let text = String::from_utf8_lossy(&raw[..complete]);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let parsed = line
            .split_once(' ')
            .and_then(|(num, name)| Some((num.parse::<u32>().ok()?, name.to_string())))
            .filter(|(_, name)| !name.is_empty());
        match parsed {
            Some(x) => out.push(x),
            None => {
                return Err(Error::Store(format!(
                    "{}: line {} is not \"NUMBER NAME\": {line:?} (run `vt fsck --reindex`)",
                    path.display(),
                    n + 1
                )))
            }
        }
    }
    Ok((out, complete))
}

#[cfg(test)]
mod tests;
