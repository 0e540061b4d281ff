//! The formats' parsers: one step at a time, as [`crate::walker`] drives
//! them.

use crate::walker::{Format, Props, Step};

/// Containers (ISO-BMFF boxes, Matroska elements) nest at most this deep;
/// deeper ones are skipped whole.
pub const MAX_DEPTH: usize = 12;

/// The most bytes of a `stco`/`co64` table read for chunk offsets.
const MAX_TABLE: u64 = 8 << 20;

/// A format, told from a file's first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// ISO-BMFF: MP4, MOV, M4A, 3GP.
    Mp4,
    /// MP3 starting with an ID3v2 tag.
    Mp3Id3,
    /// MP3 starting with a frame.
    Mp3Frames,
    /// Matroska or WebM.
    Matroska,
    /// FLAC.
    Flac,
    /// Ogg.
    Ogg,
}

/// The format of a file that starts with `head` (at least 12 bytes for a
/// sure answer), if this scanner knows it.
pub fn detect(head: &[u8]) -> Option<Kind> {
    if head.starts_with(b"ID3") {
        Some(Kind::Mp3Id3)
    } else if head.starts_with(b"fLaC") {
        Some(Kind::Flac)
    } else if head.starts_with(b"OggS") {
        Some(Kind::Ogg)
    } else if head.starts_with(&[0x1a, 0x45, 0xdf, 0xa3]) {
        Some(Kind::Matroska)
    } else if head.get(4..8) == Some(b"ftyp") {
        Some(Kind::Mp4)
    } else if head.len() >= 4 && mp3_frame_len(head).is_some() {
        Some(Kind::Mp3Frames)
    } else {
        None
    }
}

/// One file's parser.
pub enum Parser {
    Mp4(Mp4),
    Mp3(Mp3),
    Matroska(Matroska),
    Flac(Flac),
    Ogg(Ogg),
}

impl Parser {
    pub fn new(kind: Kind) -> Self {
        match kind {
            Kind::Mp4 => Parser::Mp4(Mp4::default()),
            Kind::Mp3Id3 => Parser::Mp3(Mp3 { id3: true }),
            Kind::Mp3Frames => Parser::Mp3(Mp3 { id3: false }),
            Kind::Matroska => Parser::Matroska(Matroska::default()),
            Kind::Flac => Parser::Flac(Flac::default()),
            Kind::Ogg => Parser::Ogg(Ogg::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        match self {
            Parser::Mp4(_) => Kind::Mp4,
            Parser::Mp3(m) if m.id3 => Kind::Mp3Id3,
            Parser::Mp3(_) => Kind::Mp3Frames,
            Parser::Matroska(_) => Kind::Matroska,
            Parser::Flac(_) => Kind::Flac,
            Parser::Ogg(_) => Kind::Ogg,
        }
    }
}

impl Format for Parser {
    fn step(&mut self, at: u64, b: &[u8], eof: bool, props: &mut Props) -> Step {
        match self {
            Parser::Mp4(p) => p.step(at, b, props),
            Parser::Mp3(p) => p.step(at, b, eof, props),
            Parser::Matroska(p) => p.step(at, b, props),
            Parser::Flac(p) => p.step(at, b, eof, props),
            Parser::Ogg(p) => p.step(at, b, eof, props),
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Where to go on from when looking for `pat` in `b` from index 1 (index
/// 0 is where the structure was lost): at the next match, or else at the
/// last `pat.len()` bytes, whose first was searched and whose others were
/// not (a match may straddle into the next bytes).
fn resync(b: &[u8], pat: &[u8]) -> Step {
    match memchr::memmem::find(b.get(1..).unwrap_or(&[]), pat) {
        Some(i) => Step::Advance(i as u64 + 1),
        None => Step::Advance((b.len().saturating_sub(pat.len())).max(1) as u64),
    }
}

// ---------------------------------------------------------------- ISO-BMFF

/// ISO-BMFF: boxes, containers entered, chunk offsets collected.
#[derive(Default)]
pub struct Mp4 {
    /// Ends of the containers the walk is inside, innermost last.
    open: Vec<u64>,
}

/// Boxes whose content is boxes.
const MP4_CONTAINERS: &[&[u8; 4]] = &[
    b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"moof", b"traf",
    b"mvex", b"ilst", b"mfra", b"tref", b"sinf", b"schi",
];

impl Mp4 {
    fn step(&mut self, at: u64, b: &[u8], props: &mut Props) -> Step {
        while self.open.last().is_some_and(|&e| e <= at) {
            self.open.pop();
        }
        if b.len() < 8 {
            return Step::Need(8);
        }
        let (size32, typ) = (be32(b), &b[4..8]);
        let (size, hdr) = match size32 {
            1 => {
                if b.len() < 16 {
                    return Step::Need(16);
                }
                (be64(&b[8..16]), 16u64)
            }
            0 => (u64::MAX - at, 8), // to the end of the file
            n => (u64::from(n), 8),
        };
        if size < hdr {
            return Step::Stop; // not a box: the structure is lost
        }
        props.add(at);
        let end = at.saturating_add(size);
        let parent = self.open.last().copied().unwrap_or(u64::MAX);
        let end = end.min(parent);
        let deep_enough = self.open.len() >= MAX_DEPTH;
        if MP4_CONTAINERS.iter().any(|c| &c[..] == typ) && !deep_enough {
            self.open.push(end);
            return Step::Advance(hdr);
        }
        if typ == b"meta" && !deep_enough {
            // A full box: version and flags, then boxes.
            self.open.push(end);
            return Step::Advance(hdr + 4);
        }
        if (typ == b"stco" || typ == b"co64") && size - hdr <= MAX_TABLE {
            let size = size as usize;
            if b.len() < size {
                return Step::Need(size);
            }
            chunk_offsets(&b[hdr as usize..size], typ == b"co64", props);
        }
        Step::Advance(end - at)
    }
}

/// The chunk offsets of a `stco` (u32) or `co64` (u64) table's content
/// (version and flags, count, entries).
fn chunk_offsets(c: &[u8], wide: bool, props: &mut Props) {
    if c.len() < 8 {
        return;
    }
    let count = be32(&c[4..8]) as usize;
    let width = if wide { 8 } else { 4 };
    for e in c[8..].chunks_exact(width).take(count) {
        props.add(if wide { be64(e) } else { u64::from(be32(e)) });
    }
}

// ---------------------------------------------------------------- MP3

/// MP3: the ID3v2 tag, frames, an ID3v1 or APE tag met on the way.
pub struct Mp3 {
    /// The file starts with an ID3v2 tag (not yet passed).
    id3: bool,
}

/// The length of the MPEG audio frame whose header starts `b`, if it is
/// one.
fn mp3_frame_len(b: &[u8]) -> Option<u64> {
    if b.len() < 4 || b[0] != 0xff || b[1] & 0xe0 != 0xe0 {
        return None;
    }
    let version = (b[1] >> 3) & 3; // 0: 2.5, 2: 2, 3: 1
    let layer = (b[1] >> 1) & 3; // 1: III, 2: II, 3: I
    let br_idx = usize::from(b[2] >> 4);
    let sr_idx = usize::from((b[2] >> 2) & 3);
    let pad = u64::from((b[2] >> 1) & 1);
    if version == 1 || layer == 0 || br_idx == 0 || br_idx == 15 || sr_idx == 3 {
        return None;
    }
    const BR_V1: [[u64; 15]; 3] = [
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const BR_V2: [[u64; 15]; 2] = [
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    const SR: [u64; 3] = [44100, 48000, 32000];
    let sr = match version {
        3 => SR[sr_idx],
        2 => SR[sr_idx] / 2,
        _ => SR[sr_idx] / 4,
    };
    let l = usize::from(3 - layer); // 0: I, 1: II, 2: III
    let br = if version == 3 {
        BR_V1[l][br_idx]
    } else {
        BR_V2[usize::from(l != 0)][br_idx]
    } * 1000;
    let len = match (l, version) {
        (0, _) => (12 * br / sr + pad) * 4,
        (2, v) if v != 3 => 72 * br / sr + pad,
        _ => 144 * br / sr + pad,
    };
    (len >= 4).then_some(len)
}

/// The most bytes of an ID3v2 tag read for its frames (a tag with a large
/// cover image is larger: its frames past this are not proposed).
const MAX_TAG: u64 = 1 << 20;

/// One MP3 audio frame in [`FRAME_SELECT`] starts a seam, chosen by a hash
/// of its first 36 bytes (header, side information, the start of its
/// data): frames are 400 to 1,100 bytes, and a seam at each would make
/// blocks of the host's minimum (4 KiB) throughout, each costing its
/// reference and index entry, where content-defined chunking already keeps
/// the audio's blocks when only the tags change.
pub const FRAME_SELECT: u64 = 16;

fn chosen_frame(b: &[u8]) -> bool {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &x in b {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 32).is_multiple_of(FRAME_SELECT)
}

/// Proposes the start of every frame of an ID3v2 tag whose frames (after
/// the 10-byte tag header) are `frames`; `version` 3 or 4.
fn id3_frames(at: u64, frames: &[u8], version: u8, props: &mut Props) {
    let mut i = 0usize;
    while i + 10 <= frames.len() && frames[i] != 0 {
        props.add(at + 10 + i as u64);
        let size = if version >= 4 {
            frames[i + 4..i + 8]
                .iter()
                .fold(0usize, |s, &x| (s << 7) | usize::from(x & 0x7f))
        } else {
            be32(&frames[i + 4..i + 8]) as usize
        };
        i = i.saturating_add(10).saturating_add(size);
    }
}

impl Mp3 {
    fn step(&mut self, at: u64, b: &[u8], eof: bool, props: &mut Props) -> Step {
        if self.id3 {
            if b.len() < 10 && !eof {
                return Step::Need(10);
            }
            if b.len() >= 10 && b.starts_with(b"ID3") {
                // A syncsafe size (7 bits a byte) after the header, and a
                // footer of 10 more if flagged.
                let size = b[6..10]
                    .iter()
                    .fold(0u64, |s, &x| (s << 7) | u64::from(x & 0x7f));
                let end = 10 + size + if b[5] & 0x10 != 0 { 10 } else { 0 };
                // Within the tag, every frame (TIT2, APIC, …) starts a
                // seam, so a new title leaves the cover art's blocks be
                // (unless the tag is unsynchronised: flag 0x80).
                let read = end.min(MAX_TAG) as usize;
                if b.len() < read && !eof {
                    return Step::Need(read);
                }
                if b[5] & 0x80 == 0 {
                    id3_frames(at, &b[10..read.min(b.len())], b[3], props);
                }
                props.add(at + end);
                self.id3 = false;
                return Step::Advance(end);
            }
            self.id3 = false;
        }
        if b.len() < 4 {
            return if eof { Step::Stop } else { Step::Need(4) };
        }
        if let Some(len) = mp3_frame_len(b) {
            if b.len() < 36 && !eof {
                return Step::Need(36);
            }
            if chosen_frame(&b[..b.len().min(36)]) {
                props.add(at);
            }
            return Step::Advance(len);
        }
        if b.starts_with(b"TAG") {
            props.add(at);
            return Step::Advance(128);
        }
        if b.starts_with(b"APETAGEX") || b.starts_with(b"ID3") {
            props.add(at);
        }
        resync(b, &[0xff])
    }
}

// ---------------------------------------------------------------- Matroska

/// Matroska / WebM: EBML elements.
#[derive(Default)]
pub struct Matroska {
    /// (end, is a Cluster) of the elements the walk is inside.
    open: Vec<(u64, bool)>,
    /// Lost: looking for the next Cluster's ID rather than parsing.
    searching: bool,
}

const EBML_SEGMENT: u32 = 0x1853_8067;
const EBML_CLUSTER: u32 = 0x1F43_B675;
/// The Segment's children: where a Cluster of unknown size ends.
const EBML_LEVEL1: &[u32] = &[
    0x114D_9B74, // SeekHead
    0x1549_A966, // Info
    0x1654_AE6B, // Tracks
    0x1254_C367, // Tags
    0x1C53_BB6B, // Cues
    0x1941_A469, // Attachments
    0x1043_A770, // Chapters
    EBML_CLUSTER,
];

/// An EBML variable-length integer: (length, value with the marker bit
/// cleared, all value bits set).
fn vint(b: &[u8]) -> Option<(usize, u64, bool)> {
    let first = *b.first()?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let bytes = b.get(..len)?;
    let mut v = u64::from(first) & ((1u64 << (8 - len)) - 1);
    for &x in &bytes[1..] {
        v = (v << 8) | u64::from(x);
    }
    let all = v == (1u64 << (7 * len)) - 1;
    Some((len, v, all))
}

impl Matroska {
    fn step(&mut self, at: u64, b: &[u8], props: &mut Props) -> Step {
        while self.open.last().is_some_and(|&(e, _)| e <= at) {
            self.open.pop();
        }
        if self.searching {
            let id = EBML_CLUSTER.to_be_bytes();
            if b.len() < id.len() {
                return Step::Need(id.len());
            }
            match memchr::memmem::find(b, &id) {
                Some(0) => self.searching = false,
                Some(i) => return Step::Advance(i as u64),
                None => return Step::Advance((b.len() + 1 - id.len()) as u64),
            }
        }
        if b.len() < 12 {
            return Step::Need(12);
        }
        let Some((id_len, _, _)) = vint(b).filter(|&(l, _, _)| l <= 4) else {
            return self.lost(b);
        };
        let id = b[..id_len]
            .iter()
            .fold(0u32, |s, &x| (s << 8) | u32::from(x));
        let Some((size_len, size, unknown)) = vint(&b[id_len..]) else {
            return self.lost(b);
        };
        let hdr = (id_len + size_len) as u64;
        let level1 = EBML_LEVEL1.contains(&id);
        if level1 {
            // A level-1 element closes a Cluster of unknown size.
            while self.open.last().is_some_and(|&(_, cluster)| cluster) {
                self.open.pop();
            }
        }
        if level1 {
            props.add(at);
        }
        let parent = self.open.last().map_or(u64::MAX, |&(e, _)| e);
        let end = if unknown {
            parent
        } else {
            at.saturating_add(hdr).saturating_add(size).min(parent)
        };
        if (id == EBML_SEGMENT || id == EBML_CLUSTER) && self.open.len() < MAX_DEPTH {
            self.open.push((end, id == EBML_CLUSTER));
            return Step::Advance(hdr);
        }
        if unknown {
            return self.lost(b); // only Segments and Clusters may be
        }
        Step::Advance(end - at)
    }

    /// The structure makes no sense here: look for the next Cluster.
    fn lost(&mut self, _b: &[u8]) -> Step {
        self.open.retain(|&(_, cluster)| !cluster);
        self.searching = true;
        Step::Advance(1)
    }
}

// ---------------------------------------------------------------- FLAC

/// FLAC: the marker, metadata blocks, frames.
#[derive(Default)]
pub struct Flac {
    state: FlacState,
    /// The least frame length STREAMINFO gives (0: unknown): after a
    /// frame's header, the search for the next one skips that far.
    min_frame: u64,
}

#[derive(Default, PartialEq, Eq)]
enum FlacState {
    #[default]
    Marker,
    Metadata,
    Frames,
}

/// CRC-8 (polynomial x^8 + x^2 + x + 1) of a FLAC frame header.
fn crc8(b: &[u8]) -> u8 {
    let mut c = 0u8;
    for &x in b {
        c ^= x;
        for _ in 0..8 {
            c = if c & 0x80 != 0 {
                (c << 1) ^ 0x07
            } else {
                c << 1
            };
        }
    }
    c
}

/// The length of the FLAC frame header that starts `b`, if it is one (its
/// fields valid and its CRC-8 right); `None` also if `b` is too short.
fn flac_frame_header(b: &[u8]) -> Option<usize> {
    if b.len() < 16 || b[0] != 0xff || b[1] & 0xfe != 0xf8 {
        return None;
    }
    let bs = b[2] >> 4;
    let sr = b[2] & 0x0f;
    let ch = b[3] >> 4;
    let bits = (b[3] >> 1) & 7;
    if bs == 0 || sr == 15 || ch > 10 || bits == 3 || b[3] & 1 != 0 {
        return None;
    }
    // The frame or sample number, UTF-8 coded (1 to 7 bytes).
    let lead = b[4].leading_ones() as usize;
    let n = match lead {
        0 => 1,
        2..=7 => lead,
        _ => return None,
    };
    let mut i = 4 + n;
    if b[5..4 + n].iter().any(|&x| x & 0xc0 != 0x80) {
        return None;
    }
    i += match bs {
        6 => 1,
        7 => 2,
        _ => 0,
    };
    i += match sr {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    (crc8(&b[..i]) == b[i]).then_some(i + 1)
}

impl Flac {
    fn step(&mut self, at: u64, b: &[u8], eof: bool, props: &mut Props) -> Step {
        match self.state {
            FlacState::Marker => {
                self.state = FlacState::Metadata;
                Step::Advance(4)
            }
            FlacState::Metadata => {
                if b.len() < 4 {
                    return if eof { Step::Stop } else { Step::Need(4) };
                }
                let len = 4 + (u64::from(be32(b)) & 0x00ff_ffff);
                if b[0] & 0x7f == 0 && len >= 4 + 10 {
                    // STREAMINFO: min and max block size (16 bits each),
                    // then the min frame size (24 bits).
                    if b.len() < 12 && !eof {
                        return Step::Need(12);
                    }
                    if let Some(m) = b.get(8..12) {
                        self.min_frame = u64::from(be32(m) >> 8);
                    }
                }
                props.add(at);
                if b[0] & 0x80 != 0 {
                    self.state = FlacState::Frames; // the last block
                }
                Step::Advance(len)
            }
            FlacState::Frames => {
                if b.len() < 16 {
                    return if eof { Step::Stop } else { Step::Need(16) };
                }
                if let Some(h) = flac_frame_header(b) {
                    props.add(at);
                    // The frame's length is known only by decoding it:
                    // skip what no frame is shorter than, then look for
                    // the next sync code.
                    let skip = self.min_frame.max(h as u64);
                    return Step::Advance(skip);
                }
                resync(b, &[0xff])
            }
        }
    }
}

// ---------------------------------------------------------------- Ogg

/// Ogg: pages. The pages of the stream headers (granule position 0: the
/// codec's identification and comment headers) each start a seam, and so
/// does the first page after them; then one page in [`PAGE_SELECT`],
/// chosen by a hash of its first body bytes. Not every page: a muxer that
/// writes the same packets anew (ffmpeg -c copy) draws a new stream serial
/// number, which is in every page header, so every page changes; blocks
/// of many pages then cost fewer references and index entries than blocks
/// of one.
#[derive(Default)]
pub struct Ogg {
    /// A page with a granule position other than 0 has been met.
    past_headers: bool,
}

/// One audio page in this many starts a seam (see [`Ogg`]).
pub const PAGE_SELECT: u64 = 16;

impl Ogg {
    fn step(&mut self, at: u64, b: &[u8], eof: bool, props: &mut Props) -> Step {
        if b.len() < 27 {
            return if eof { Step::Stop } else { Step::Need(27) };
        }
        if !b.starts_with(b"OggS") || b[4] != 0 {
            return resync(b, b"OggS");
        }
        let segs = usize::from(b[26]);
        let head = 27 + segs;
        if b.len() < head + 32 && !eof {
            return Step::Need(head + 32);
        }
        if b.len() < head {
            return Step::Stop;
        }
        let body: u64 = b[27..head].iter().map(|&x| u64::from(x)).sum();
        let header_page = b[6..14].iter().all(|&x| x == 0); // granule 0
        if !self.past_headers || chosen_page(&b[head..b.len().min(head + 32)]) {
            props.add(at);
        }
        self.past_headers |= !header_page;
        Step::Advance(head as u64 + body)
    }
}

fn chosen_page(body: &[u8]) -> bool {
    let mut h = 0x9e37_79b9_7f4a_7c15u64;
    for &x in body {
        h = (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3);
    }
    (h >> 32).is_multiple_of(PAGE_SELECT)
}

/// [`crc8`] for the tests' FLAC frames.
#[cfg(test)]
pub fn tests_crc8(b: &[u8]) -> u8 {
    crc8(b)
}
