//! The media scanner: block boundaries at the structure of audio and video
//! container files, so that re-tagging a file (title, artist, cover art)
//! stores only the changed tag and not the whole file again.
//!
//! - **ISO-BMFF** (MP4, MOV, M4A, 3GP): every box, and the boxes inside
//!   the containers (`moov`, `trak`, `udta`, `meta`, `ilst`, …); inside
//!   `mdat`, the chunk offsets listed by `stco`/`co64` when `moov` comes
//!   first (a "faststart" file).
//! - **MP3**: the end of the ID3v2 tag, every MPEG audio frame, the ID3v1
//!   tag at the end.
//! - **Matroska / WebM**: every top-level element of the Segment (SeekHead,
//!   Info, Tracks, Tags, Attachments, Cues, …), every Cluster and the
//!   blocks inside it.
//! - **FLAC**: every metadata block (STREAMINFO, VORBIS_COMMENT, PICTURE,
//!   PADDING, …) and every frame (a sync code whose header's CRC-8 holds).
//! - **Ogg** (Vorbis, Opus, FLAC, Theora): the stream header pages, the
//!   first audio page, then one page in 16 (chosen by content).
//!
//! The format is told by the first bytes, whatever the file's name. Every
//! length read from the file is checked against the data's end and against
//! overflow; containers nest at most [`MAX_DEPTH`] deep; where the
//! structure stops making sense the scanner looks for the next sync
//! pattern (a frame, a page, a Cluster) or stops proposing. Proposals are
//! only hints: a wrong one costs a block boundary, never data.

mod formats;
mod walker;

use vt_sdk::{Info, Scanner};

pub use formats::{detect, Kind, FRAME_SELECT, MAX_DEPTH, PAGE_SELECT};
use walker::Walker;

/// Bytes the format is told from.
const DETECT_LEN: usize = 12;

/// Scanner state carried from one buffer to the next.
#[derive(Default)]
pub struct Media {
    /// The first bytes, until there are enough to tell the format.
    head: Vec<u8>,
    /// The format's parser, once known.
    format: Option<formats::Parser>,
    walker: Walker,
    /// Absolute offset of the next byte to come.
    end: u64,
    /// The file's last 128 bytes (an ID3v1 tag at the end of an MP3).
    tail: Vec<u8>,
    /// Not a format this scanner knows: propose nothing.
    unknown: bool,
}

impl Media {
    fn feed_format(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        if let Some(p) = self.format.as_mut() {
            self.walker.feed(p, offset, data, out);
        }
    }
}

impl Scanner for Media {
    fn info() -> Info {
        let mut info = Info::new("media", env!("CARGO_PKG_VERSION"))
            .extensions(&[
                "mp4", "m4a", "m4v", "m4b", "mov", "3gp", "mp3", "mkv", "mka", "webm", "flac",
                "ogg", "oga", "ogv", "opus", "spx",
            ])
            .mime_types(&[
                "video/mp4",
                "audio/mp4",
                "video/quicktime",
                "audio/mpeg",
                "video/x-matroska",
                "audio/x-matroska",
                "video/webm",
                "audio/flac",
                "audio/ogg",
                "video/ogg",
            ])
            .magic(b"ID3")
            .magic(b"fLaC")
            .magic(b"OggS")
            .magic(&[0x1a, 0x45, 0xdf, 0xa3]);
        for sync in [[0xff, 0xfb], [0xff, 0xfa], [0xff, 0xf3], [0xff, 0xf2]] {
            info = info.magic(&sync);
        }
        // An ISO-BMFF file starts with its `ftyp` box: size (16 bytes and
        // 4 for each compatible brand), then "ftyp".
        for size in (16u32..=64).step_by(4) {
            let mut m = size.to_be_bytes().to_vec();
            m.extend_from_slice(b"ftyp");
            info = info.magic(&m);
        }
        info
    }

    fn sniff(filename: &str, head: &[u8]) -> u8 {
        let ext = filename
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        let named = Self::info().extensions.contains(&ext);
        match (detect(head), named) {
            (Some(Kind::Mp3Frames), false) => 50, // two bytes of sync only
            (Some(_), _) => 95,
            (None, true) => 30,
            (None, false) => 0,
        }
    }

    fn scan(&mut self, offset: u64, data: &[u8], out: &mut Vec<u64>) {
        debug_assert_eq!(offset, self.end);
        self.end = offset + data.len() as u64;
        keep_tail(&mut self.tail, data);
        if self.unknown {
            return;
        }
        if self.format.is_none() {
            // Gather the first bytes, then replay them to the parser.
            let want = DETECT_LEN.saturating_sub(self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..want]);
            if self.head.len() < DETECT_LEN {
                return;
            }
            match detect(&self.head) {
                Some(kind) => self.format = Some(formats::Parser::new(kind)),
                None => {
                    self.unknown = true;
                    return;
                }
            }
            let head = std::mem::take(&mut self.head);
            let rest = &data[want..];
            self.feed_format(0, &head, out);
            self.feed_format(head.len() as u64, rest, out);
            return;
        }
        self.feed_format(offset, data, out);
    }

    fn finish(&mut self, out: &mut Vec<u64>) {
        if self.format.is_none() && !self.unknown && !self.head.is_empty() {
            // A file shorter than DETECT_LEN: nothing worth proposing.
            return;
        }
        let Some(p) = self.format.as_mut() else {
            return;
        };
        if matches!(p.kind(), Kind::Mp3Id3 | Kind::Mp3Frames)
            && self.tail.len() == 128
            && self.tail.starts_with(b"TAG")
            && self.end > 128
        {
            self.walker.propose(self.end - 128);
        }
        self.walker.finish(p, out);
    }
}

/// Keeps the last 128 bytes seen.
fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    if data.len() >= 128 {
        tail.clear();
        tail.extend_from_slice(&data[data.len() - 128..]);
    } else {
        tail.extend_from_slice(data);
        let cut = tail.len().saturating_sub(128);
        tail.drain(..cut);
    }
}

vt_sdk::export_scanner!(Media);

#[cfg(test)]
mod tests;
