//! Turning byte streams into block trees.
//!
//! Input is read in large buffers; the [`Chunker`] (steered by an optional
//! [`Scanner`]) cuts each buffer into blocks; the blocks of a buffer are
//! hashed, compressed and stored on all cores at once; the leaf references
//! are then gathered into a tree of indirect blocks whose fan-out is itself
//! content-defined, so an edit rewrites only the indirect blocks on its path.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rayon::prelude::*;

use crate::block::{encode_indirect, BlockRef};
use crate::chunker::{ChunkParams, Chunker, Scanner};
use crate::error::{Error, Result};
use crate::hash::Hash;
use crate::store::{BlockClass, Store};

/// Content up to this many bytes is inlined as a literal block.
pub const LITERAL_MAX: usize = 32;

/// Bytes read from input per buffer. An import blockifies several files at
/// once, each holding two buffers: 2 MiB keeps a kernel-tree import at 91 MB
/// peak RSS (8 MiB: 141 MB) and imports a 512 MiB file as fast.
const BUFFER: usize = 2 << 20;

/// Blocks are stored by several threads at once, each taking a run of
/// neighbouring blocks of about this many bytes and storing them in order:
/// a store that compresses small blocks together (DataDir groups) then
/// gets neighbours together, which compress better (bench/mbox.sh: 1% to
/// 3% less than blocks handed out one by one to 8 threads).
const RUN: usize = 256 << 10;

/// Fewest blocks hashed together by one thread: SHA3-256 runs four
/// messages at a time (see [`crate::sha3x4`]) and a message that ends
/// frees its slot for the next, so larger batches keep the slots busy
/// longer. A buffer's blocks are split among the threads in batches of at
/// least this many.
const HASH_BATCH: usize = 16;

/// Average number of refs per indirect block (a power of two).
const FANOUT_AVG: u64 = 64;
/// Most refs in one indirect block.
const FANOUT_MAX: usize = 512;

/// Counters of what blockify saw and what was new to the store.
#[derive(Debug, Default)]
pub struct AddStats {
    /// Content bytes processed.
    pub bytes: AtomicU64,
    /// Blocks offered to the store (leaves, indirect and Dir blocks).
    pub blocks: AtomicU64,
    /// Bytes of blocks the store did not already have.
    pub new_bytes: AtomicU64,
    /// Blocks the store did not already have.
    pub new_blocks: AtomicU64,
}

impl AddStats {
    fn count(&self, len: usize, new: bool) {
        self.blocks.fetch_add(1, Relaxed);
        if new {
            self.new_blocks.fetch_add(1, Relaxed);
            self.new_bytes.fetch_add(len as u64, Relaxed);
        }
    }
}

/// Adds blocks to a store and builds block trees.
pub struct Blockifier<'a> {
    store: &'a dyn Store,
    chunker: Chunker,
    stats: &'a AddStats,
}

fn single_octet(d: &[u8]) -> Option<u8> {
    let (&first, rest) = d.split_first()?;
    rest.iter().all(|&b| b == first).then_some(first)
}

/// The RLE leaf for `data` if it is 64 bytes or more of one byte value.
fn rle(data: &[u8]) -> Option<BlockRef> {
    if data.len() < 64 {
        return None;
    }
    single_octet(data).map(|octet| BlockRef::Rle {
        span: data.len() as u64,
        octet,
    })
}

impl<'a> Blockifier<'a> {
    /// A blockifier adding to `store`, counting into `stats`.
    pub fn new(store: &'a dyn Store, params: ChunkParams, stats: &'a AddStats) -> Self {
        Blockifier {
            store,
            chunker: Chunker::new(params),
            stats,
        }
    }

    /// The chunker's block size limits.
    pub fn params(&self) -> ChunkParams {
        self.chunker.params()
    }

    /// The store blocks go to.
    pub fn store(&self) -> &'a dyn Store {
        self.store
    }

    /// The counters.
    pub fn stats(&self) -> &'a AddStats {
        self.stats
    }

    /// Stores one block of data and returns its reference.
    pub fn add_block(&self, data: &[u8]) -> Result<BlockRef> {
        self.add_block_as(data, BlockClass::Data)
    }

    /// Stores one block that holds `class` and returns its reference.
    pub fn add_block_as(&self, data: &[u8], class: BlockClass) -> Result<BlockRef> {
        let (hash, new) = self.store.add_as(data, class)?;
        self.stats.count(data.len(), new);
        Ok(BlockRef::Direct {
            hash,
            span: data.len() as u64,
        })
    }

    fn leaf(&self, data: &[u8]) -> Result<BlockRef> {
        match rle(data) {
            Some(r) => Ok(r),
            None => self.add_block(data),
        }
    }

    /// Stores a leaf whose hash was computed with the others of its batch
    /// (`None`: it is a run of one byte).
    fn leaf_hashed(&self, data: &[u8], hash: Option<Hash>) -> Result<BlockRef> {
        let Some(hash) = hash else {
            return self.leaf(data);
        };
        let new = self.store.add_hashed_as(&hash, data, BlockClass::Data)?;
        self.stats.count(data.len(), new);
        Ok(BlockRef::Direct {
            hash,
            span: data.len() as u64,
        })
    }

    /// The hashes of the blocks `cuts` of `buf`, several at a time; `None`
    /// for blocks that become RLE leaves.
    fn hash_leaves(&self, buf: &[u8], cuts: &[(usize, usize)]) -> Vec<Option<Hash>> {
        let blocks: Vec<&[u8]> = cuts.iter().map(|&(a, b)| &buf[a..b]).collect();
        self.hash_blocks(&blocks)
    }

    /// The hashes of `blocks`, several at a time; `None` for blocks that
    /// become RLE leaves.
    fn hash_blocks(&self, blocks: &[&[u8]]) -> Vec<Option<Hash>> {
        let hashed: Vec<bool> = blocks.iter().map(|d| rle(d).is_none()).collect();
        let data: Vec<&[u8]> = blocks
            .iter()
            .zip(&hashed)
            .filter_map(|(d, &h)| h.then_some(*d))
            .collect();
        let mut hashes = self.store.hash_kind().digest_many(&data).into_iter();
        hashed
            .into_iter()
            .map(|h| if h { hashes.next() } else { None })
            .collect()
    }

    /// Blockifies each of `inputs` (whole contents held in memory) as
    /// [`Blockifier::blockify_read`] would without a scanner, giving the
    /// same trees, but hashes the blocks of all of them together: small
    /// files are one block each, and SHA3 runs four blocks at a time.
    pub fn blockify_many(&self, inputs: &[&[u8]]) -> Result<Vec<BlockRef>> {
        // (input, start, end) of every block, as one buffer holding the
        // whole input at its end would be cut.
        let mut cuts: Vec<(usize, usize, usize)> = Vec::new();
        for (k, d) in inputs.iter().enumerate() {
            self.stats.bytes.fetch_add(d.len() as u64, Relaxed);
            if d.len() <= LITERAL_MAX {
                continue;
            }
            let mut pos = 0;
            while pos < d.len() {
                let n = self
                    .chunker
                    .cut(&d[pos..], None, true)
                    .ok_or_else(|| Error::Store("the chunker left the end of an input".into()))?;
                cuts.push((k, pos, pos + n));
                pos += n;
            }
        }
        let blocks: Vec<&[u8]> = cuts.iter().map(|&(k, a, b)| &inputs[k][a..b]).collect();
        let hashes = self.hash_blocks(&blocks);
        let mut leaves: Vec<Vec<BlockRef>> = vec![Vec::new(); inputs.len()];
        for ((&(k, _, _), data), hash) in cuts.iter().zip(&blocks).zip(hashes) {
            push_leaf(&mut leaves[k], self.leaf_hashed(data, hash)?);
        }
        inputs
            .iter()
            .zip(leaves)
            .map(|(d, l)| {
                if d.len() <= LITERAL_MAX {
                    Ok(BlockRef::Literal(d.to_vec()))
                } else {
                    self.build_tree(l)
                }
            })
            .collect()
    }

    /// Blockifies all of `input`, proposing boundaries through `scanner`.
    pub fn blockify_read(
        &self,
        input: impl Read + Send,
        scanner: Option<&mut dyn Scanner>,
    ) -> Result<BlockRef> {
        self.blockify_sized(input, None, scanner)
    }

    /// Like [`Blockifier::blockify_read`], with the expected input length
    /// (a file's size) so small inputs get small buffers.
    ///
    /// Reading (and scanning) the next buffer overlaps hashing and storing
    /// the blocks of the current one.
    pub fn blockify_sized(
        &self,
        mut input: impl Read + Send,
        size_hint: Option<u64>,
        mut scanner: Option<&mut dyn Scanner>,
    ) -> Result<BlockRef> {
        let bufsize = match size_hint {
            Some(n) => usize::try_from(n.saturating_add(1))
                .unwrap_or(BUFFER)
                .min(BUFFER),
            None => BUFFER,
        };
        let max = self.chunker.params().max;
        // A scanner may ask for shorter blocks at its seams.
        let params = self.chunker.params().for_scanner(scanner.as_deref());
        let chunker = if params == self.chunker.params() {
            self.chunker.clone()
        } else {
            Chunker::new(params)
        };
        let scan_min = params.scan_min.max(1) as u64;
        let mut buf: Vec<u8> = Vec::with_capacity(bufsize);
        let mut spare: Vec<u8> = Vec::new();
        let mut buf_offset: u64 = 0; // absolute offset of buf[0]
        let mut proposals: VecDeque<u64> = VecDeque::new();
        let mut leaves: Vec<BlockRef> = Vec::new();
        let mut total: u64 = 0;
        let mut eof = fill_and_scan(
            &mut input,
            &mut buf,
            buf_offset,
            bufsize,
            max,
            &mut total,
            scanner.as_deref_mut(),
            &mut proposals,
        )?;
        if eof && buf.len() <= LITERAL_MAX {
            self.stats.bytes.fetch_add(total, Relaxed);
            return Ok(BlockRef::Literal(buf));
        }
        loop {
            // Cut what is in hand.
            let mut cuts: Vec<(usize, usize)> = Vec::new();
            let mut pos = 0usize;
            while pos < buf.len() {
                let start_abs = buf_offset + pos as u64;
                while proposals.front().is_some_and(|&p| p < start_abs + scan_min) {
                    proposals.pop_front();
                }
                let prop = proposals.front().map(|&p| (p - start_abs) as usize);
                match chunker.cut(&buf[pos..], prop, eof) {
                    Some(n) => {
                        cuts.push((pos, pos + n));
                        pos += n;
                    }
                    None => break,
                }
            }
            // The cut part is stored while the rest is topped up in the
            // spare buffer (two buffers in turn, so no reallocation).
            spare.clear();
            spare.extend_from_slice(&buf[pos..]);
            buf.truncate(pos);
            let head = std::mem::replace(&mut buf, std::mem::take(&mut spare));
            buf_offset += pos as u64;
            let store_head = || -> Result<Vec<BlockRef>> {
                let batch = cuts
                    .len()
                    .div_ceil(rayon::current_num_threads())
                    .max(HASH_BATCH);
                let hashes: Vec<Option<Hash>> = cuts
                    .par_chunks(batch)
                    .flat_map_iter(|c| self.hash_leaves(&head, c))
                    .collect();
                let mut first = 0;
                let runs: Vec<(usize, &[(usize, usize)])> = runs(&cuts)
                    .into_iter()
                    .map(|r| {
                        first += r.len();
                        (first - r.len(), r)
                    })
                    .collect();
                let refs: Vec<Vec<BlockRef>> = runs
                    .par_iter()
                    .map(|&(first, run)| {
                        run.iter()
                            .enumerate()
                            .map(|(i, &(a, b))| self.leaf_hashed(&head[a..b], hashes[first + i]))
                            .collect()
                    })
                    .collect::<Result<_>>()?;
                Ok(refs.into_iter().flatten().collect())
            };
            let refs = if eof {
                store_head()?
            } else {
                let (refs, more) = rayon::join(store_head, || {
                    fill_and_scan(
                        &mut input,
                        &mut buf,
                        buf_offset,
                        bufsize,
                        max,
                        &mut total,
                        scanner.as_deref_mut(),
                        &mut proposals,
                    )
                });
                eof = more?;
                refs?
            };
            for r in refs {
                push_leaf(&mut leaves, r);
            }
            spare = head;
            if buf.is_empty() && eof {
                break;
            }
        }
        self.stats.bytes.fetch_add(total, Relaxed);
        self.build_tree(leaves)
    }

    /// Blockifies a byte slice.
    pub fn blockify_bytes(&self, data: &[u8]) -> Result<BlockRef> {
        if data.len() <= LITERAL_MAX {
            self.stats.bytes.fetch_add(data.len() as u64, Relaxed);
            return Ok(BlockRef::Literal(data.to_vec()));
        }
        self.blockify_read(data, None)
    }

    /// Builds a tree of indirect blocks over `leaves`, in order.
    ///
    /// The fan-out is content-defined: a group ends after a ref whose
    /// level-salted hash has its low bits zero (on average 64 refs),
    /// or at 512 refs.
    pub fn build_tree(&self, mut level: Vec<BlockRef>) -> Result<BlockRef> {
        let mut depth: u64 = 0;
        loop {
            match level.len() {
                0 => return Ok(BlockRef::empty()),
                1 => return level.pop().ok_or_else(|| Error::Store("empty tree".into())),
                _ => {}
            }
            let mut groups: Vec<Vec<BlockRef>> = vec![Vec::new()];
            let n = level.len();
            for (i, r) in level.into_iter().enumerate() {
                let cut = boundary_hash(&r, depth).is_multiple_of(FANOUT_AVG);
                let g = groups.last_mut().expect("groups is never empty");
                g.push(r);
                if (cut || g.len() >= FANOUT_MAX) && i + 1 < n {
                    groups.push(Vec::new());
                }
            }
            if groups.len() == n {
                // Every ref was a boundary: regroup by count so we progress.
                let flat: Vec<BlockRef> = groups.into_iter().flatten().collect();
                groups = flat
                    .chunks(FANOUT_AVG as usize)
                    .map(|c| c.to_vec())
                    .collect();
            }
            level = groups
                .par_iter()
                .map(|g| {
                    if g.len() == 1 {
                        return Ok(g[0].clone());
                    }
                    let data = encode_indirect(g);
                    let (hash, new) = self.store.add_as(&data, BlockClass::Meta)?;
                    self.stats.count(data.len(), new);
                    Ok(BlockRef::Indirect {
                        hash,
                        span: g.iter().map(BlockRef::span).sum(),
                    })
                })
                .collect::<Result<_>>()?;
            depth += 1;
        }
    }
}

/// Tops `buf` up from `input` (to `bufsize`, and at least by `max` bytes)
/// and passes the fresh bytes to the scanner, keeping its proposals that
/// are sorted and within the data. Returns whether input has ended.
#[allow(clippy::too_many_arguments)]
fn fill_and_scan<'s>(
    input: &mut impl Read,
    buf: &mut Vec<u8>,
    buf_offset: u64,
    bufsize: usize,
    max: usize,
    total: &mut u64,
    scanner: Option<&mut (dyn Scanner + 's)>,
    proposals: &mut VecDeque<u64>,
) -> Result<bool> {
    let old = buf.len();
    let want = bufsize.saturating_sub(old).max(max);
    // read_to_end grows the buffer without zeroing it.
    let got = input
        .take(want as u64)
        .read_to_end(buf)
        .map_err(|e| Error::io("reading input", e))?;
    let filled = buf.len();
    *total += (filled - old) as u64;
    let eof = got < want;
    if let Some(s) = scanner {
        let fresh_at = buf_offset + old as u64;
        let end = buf_offset + filled as u64;
        let mut last = proposals.back().copied().unwrap_or(0).max(fresh_at.min(1));
        let mut offs = s.scan(fresh_at, &buf[old..filled]);
        if eof {
            offs.extend(s.finish());
        }
        for o in offs {
            // Scanners only propose: keep what is sorted and in range.
            if o > last && o <= end {
                proposals.push_back(o);
                last = o;
            }
        }
    }
    Ok(eof)
}

/// Splits `cuts` into runs of neighbouring blocks of about [`RUN`] bytes.
fn runs(cuts: &[(usize, usize)]) -> Vec<&[(usize, usize)]> {
    let mut out = Vec::new();
    let (mut from, mut bytes) = (0, 0);
    for (i, &(a, b)) in cuts.iter().enumerate() {
        bytes += b - a;
        if bytes >= RUN {
            out.push(&cuts[from..=i]);
            (from, bytes) = (i + 1, 0);
        }
    }
    if from < cuts.len() {
        out.push(&cuts[from..]);
    }
    out
}

/// Appends a leaf, merging adjacent runs of the same byte.
fn push_leaf(leaves: &mut Vec<BlockRef>, r: BlockRef) {
    if let (
        Some(BlockRef::Rle { span, octet }),
        BlockRef::Rle {
            span: s2,
            octet: o2,
        },
    ) = (leaves.last_mut(), &r)
    {
        if octet == o2 {
            *span += s2;
            return;
        }
    }
    leaves.push(r);
}

/// A hash of a ref for fan-out decisions, salted by tree level.
fn boundary_hash(r: &BlockRef, depth: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ depth.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let bytes = match r.hash() {
        Some(hash) => hash.bytes[..16].to_vec(),
        None => r.to_bytes(),
    };
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::block::decode_indirect;
    use crate::hash::{Hash, HashKind};
    use crate::read::{read_all, read_range};
    use crate::store::StoreStats;

    /// A store in memory; BLAKE3 unless made with [`TestStore::sha3`].
    #[derive(Default)]
    struct TestStore(Mutex<HashMap<Hash, Vec<u8>>>, bool);

    impl TestStore {
        fn sha3() -> Self {
            TestStore(Mutex::default(), true)
        }
    }

    impl Store for TestStore {
        fn hash_kind(&self) -> HashKind {
            if self.1 {
                HashKind::Sha3_256
            } else {
                HashKind::Blake3
            }
        }
        fn add_hashed(&self, hash: &Hash, data: &[u8]) -> Result<bool> {
            // Hashes computed in batches must be the block's own.
            assert_eq!(*hash, self.hash_kind().digest(data));
            Ok(self
                .0
                .lock()
                .unwrap()
                .insert(*hash, data.to_vec())
                .is_none())
        }
        fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>> {
            Ok(self.0.lock().unwrap().get(hash).cloned())
        }
        fn contains(&self, hash: &Hash) -> Result<bool> {
            Ok(self.0.lock().unwrap().contains_key(hash))
        }
        fn sync(&self) -> Result<()> {
            Ok(())
        }
        fn stats(&self) -> Result<StoreStats> {
            Ok(StoreStats::default())
        }
    }

    fn data(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % 7) as u8 // low entropy: compressible, still chunkable
            })
            .collect()
    }

    /// Offsets at which leaves start.
    fn leaf_starts(store: &dyn Store, r: &BlockRef, at: u64, out: &mut Vec<u64>) {
        if let BlockRef::Indirect { hash, .. } = r {
            let mut pos = at;
            for k in decode_indirect(&store.fetch(hash).unwrap()).unwrap() {
                leaf_starts(store, &k, pos, out);
                pos += k.span();
            }
        } else {
            out.push(at);
        }
    }

    struct Proposer(Vec<u64>);
    impl Scanner for Proposer {
        fn name(&self) -> &str {
            "test"
        }
        fn scan(&mut self, _offset: u64, _buf: &[u8]) -> Vec<u64> {
            std::mem::take(&mut self.0)
        }
    }

    #[test]
    fn scanner_offsets_become_block_starts() {
        let store = TestStore::default();
        let stats = AddStats::default();
        let bf = Blockifier::new(&store, ChunkParams::default(), &stats);
        let d = data(1 << 20, 3);
        let wanted = vec![20_000, 60_000, 500_000, 500_100, 900_001];
        let mut sc = Proposer(wanted.clone());
        let r = bf.blockify_read(&d[..], Some(&mut sc)).unwrap();
        assert_eq!(read_all(&store, &r).unwrap(), d);
        let mut starts = Vec::new();
        leaf_starts(&store, &r, 0, &mut starts);
        for w in [20_000, 60_000, 500_000, 900_001] {
            assert!(starts.contains(&w), "{w} not a block start");
        }
        // 500_100 is closer than the minimum block size to 500_000.
        assert!(!starts.contains(&500_100));
    }

    #[test]
    fn garbage_from_a_scanner_changes_nothing_but_cuts() {
        let store = TestStore::default();
        let stats = AddStats::default();
        let bf = Blockifier::new(&store, ChunkParams::default(), &stats);
        let d = data(300_000, 9);
        let mut sc = Proposer(vec![u64::MAX, 5, 3, 0, 299_999, 10, 400_000]);
        let r = bf.blockify_read(&d[..], Some(&mut sc)).unwrap();
        assert_eq!(read_all(&store, &r).unwrap(), d);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn roundtrip_and_ranges(n in 0usize..400_000, seed: u64, off in 0u64..500_000, len in 0u64..100_000) {
            let store = TestStore::default();
            let stats = AddStats::default();
            let bf = Blockifier::new(&store, ChunkParams::default(), &stats);
            let d = data(n, seed);
            let r = bf.blockify_bytes(&d).unwrap();
            prop_assert_eq!(r.span(), n as u64);
            prop_assert_eq!(&read_all(&store, &r).unwrap(), &d);
            let a = (off as usize).min(n);
            let b = (a + len as usize).min(n);
            prop_assert_eq!(read_range(&store, &r, off, len).unwrap(), d[a..b].to_vec());
        }
    }

    #[test]
    fn runs_are_neighbours_of_about_run_bytes_in_order() {
        let mut cuts = Vec::new();
        let mut pos = 0;
        for i in 0..1000usize {
            let n = 1000 + i * 37 % 20_000;
            cuts.push((pos, pos + n));
            pos += n;
        }
        let rs = runs(&cuts);
        assert_eq!(rs.concat(), cuts);
        for r in &rs[..rs.len() - 1] {
            let bytes = r.last().unwrap().1 - r[0].0;
            assert!((RUN..RUN + 20_000).contains(&bytes), "{bytes}");
        }
        assert!(runs(&[]).is_empty());
        assert_eq!(runs(&cuts[..3]), vec![&cuts[..3]]);
    }

    #[test]
    fn many_at_once_gives_the_trees_of_one_at_a_time() {
        let store = TestStore::sha3();
        let stats = AddStats::default();
        let bf = Blockifier::new(&store, ChunkParams::default(), &stats);
        let mut inputs: Vec<Vec<u8>> = [0usize, 1, 32, 33, 100, 4096, 16_384, 70_000, 300_000]
            .iter()
            .enumerate()
            .map(|(i, &n)| data(n, i as u64 + 3))
            .collect();
        inputs.push(vec![0u8; 200_000]);
        inputs.push([data(20_000, 9), vec![7u8; 100_000]].concat());
        let refs: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let many = bf.blockify_many(&refs).unwrap();
        for (d, r) in inputs.iter().zip(&many) {
            assert_eq!(
                *r,
                bf.blockify_read(&d[..], None).unwrap(),
                "length {}",
                d.len()
            );
            assert_eq!(read_all(&store, r).unwrap(), *d);
        }
    }

    #[test]
    fn runs_of_zeros_become_one_rle_leaf() {
        let store = TestStore::default();
        let stats = AddStats::default();
        let bf = Blockifier::new(&store, ChunkParams::default(), &stats);
        let mut d = vec![0u8; 5 << 20];
        d[..100].copy_from_slice(&data(100, 1));
        let r = bf.blockify_bytes(&d).unwrap();
        let mut starts = Vec::new();
        leaf_starts(&store, &r, 0, &mut starts);
        assert!(starts.len() <= 3, "{} leaves", starts.len());
        assert_eq!(read_all(&store, &r).unwrap(), d);
    }
}
