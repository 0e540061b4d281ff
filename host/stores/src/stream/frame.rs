//! Frames of the stream protocol (`vt-stream.5`): length-prefixed, tagged,
//! flagged messages. This module only splits a byte stream into frames
//! and back; what the bodies mean is in [`super::protocol`].
//!
//! ```text
//! frame := LENGTH TAG FLAGS [CHANNEL] BODY
//! ```
//! LENGTH, TAG, FLAGS and CHANNEL are unsigned LEB128 varints; LENGTH
//! counts the bytes after itself and is at most [`MAX_FRAME`]. CHANNEL is
//! present only with [`FLAG_CHANNEL`].

use vt_core::{Error, Result};

/// Most bytes a frame may hold after its length: a block of a DataDir's
/// largest record (16 MiB) with room for the header.
pub const MAX_FRAME: usize = (16 << 20) + 4096;

/// A varint is at most this long (a u64 in 7-bit groups).
pub const MAX_VARINT: usize = 10;

/// Reply flag: the body is an error message (UTF-8).
pub const FLAG_ERROR: u64 = 0x01;
/// The body starts with a JSON object: a varint length, then the JSON.
pub const FLAG_JSON: u64 = 0x02;
/// A channel number follows the flags (else channel 0).
pub const FLAG_CHANNEL: u64 = 0x04;
/// Reply flag: more frames of this reply follow (a long reply is sent in
/// several frames, so it does not hold up the replies to other requests).
pub const FLAG_MORE: u64 = 0x08;
/// What follows the JSON part is one zstd frame.
pub const FLAG_ZSTD: u64 = 0x10;
/// Every flag this version knows.
pub const KNOWN_FLAGS: u64 = 0x1f;

/// One frame, decoded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame {
    /// The request's tag, chosen by the client and echoed in the reply.
    pub tag: u64,
    /// `FLAG_*` bits.
    pub flags: u64,
    /// The channel (sub-stream) the frame belongs to.
    pub channel: u64,
    /// The rest of the frame.
    pub body: Vec<u8>,
}

impl Frame {
    /// The frame's bytes on the wire, length first.
    pub fn encode(&self) -> Vec<u8> {
        let head = self.header();
        let mut out = Vec::with_capacity(head.len() + self.body.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.body);
        out
    }

    /// The frame's bytes before its body (length, tag, flags, channel):
    /// a writer sends these, then the body as it is, without copying it.
    pub fn header(&self) -> Vec<u8> {
        let mut head = Vec::with_capacity(3 * MAX_VARINT);
        put_varint(&mut head, self.tag);
        let flags = if self.channel != 0 {
            self.flags | FLAG_CHANNEL
        } else {
            self.flags & !FLAG_CHANNEL
        };
        put_varint(&mut head, flags);
        if self.channel != 0 {
            put_varint(&mut head, self.channel);
        }
        let mut out = Vec::with_capacity(MAX_VARINT + head.len());
        put_varint(&mut out, (head.len() + self.body.len()) as u64);
        out.extend_from_slice(&head);
        out
    }

    /// Decodes the frame content that followed a length prefix (`b` is
    /// exactly LENGTH bytes).
    pub fn decode_content(b: &[u8]) -> Result<Frame> {
        let mut r = Reader::new(b);
        let tag = r.varint()?;
        let flags = r.varint()?;
        let channel = if flags & FLAG_CHANNEL != 0 {
            r.varint()?
        } else {
            0
        };
        Ok(Frame {
            tag,
            flags,
            channel,
            body: r.rest().to_vec(),
        })
    }
}

/// Splits one frame off the front of `buf`: `Ok(None)` if `buf` holds
/// only part of one (read more), else the frame and the bytes it took.
/// A length above [`MAX_FRAME`] (or a varint past 64 bits) is an error,
/// after which the stream cannot be resynchronised.
pub fn split_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>> {
    let Some((len, n)) = peek_varint(buf)? else {
        return Ok(None);
    };
    let len = check_length(len)?;
    if buf.len() - n < len {
        return Ok(None);
    }
    let f = Frame::decode_content(&buf[n..n + len])?;
    Ok(Some((f, n + len)))
}

/// Bytes read from a stream and not yet taken as frames. Frames are taken
/// from the front without moving what follows: the bytes left are moved
/// down only when the taken ones are the larger part, so many small frames
/// in one read cost no more than one copy of it.
#[derive(Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
}

impl FrameBuf {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next whole frame, if the buffer holds one (see [`split_frame`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        match split_frame(&self.buf[self.start..])? {
            Some((f, n)) => {
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                Ok(Some(f))
            }
            None => Ok(None),
        }
    }

    /// Bytes held that are not yet a whole frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The vector to read more into (with room for at least `room` bytes
    /// more), after moving down what is left if that is worth it.
    pub fn space(&mut self, room: usize) -> &mut Vec<u8> {
        if self.start > 0 && self.start >= self.pending() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(room);
        &mut self.buf
    }
}

/// Checks a frame length read from the wire.
pub fn check_length(len: u64) -> Result<usize> {
    usize::try_from(len)
        .ok()
        .filter(|&l| l <= MAX_FRAME)
        .ok_or_else(|| {
            Error::decode(
                "stream frame",
                format!("length {len} is above the limit of {MAX_FRAME} bytes"),
            )
        })
}

/// Decodes a varint at the start of `buf`: `Ok(None)` if it is cut short.
pub fn peek_varint(buf: &[u8]) -> Result<Option<(u64, usize)>> {
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate() {
        if i == MAX_VARINT - 1 && b > 1 {
            return Err(Error::decode("varint", "more than 64 bits"));
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    Ok(None)
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads the fields of a body in order; every read is checked against
/// the bytes left, so a short body is an error, never a panic.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// The next varint.
    pub fn varint(&mut self) -> Result<u64> {
        match peek_varint(&self.buf[self.pos..])? {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(Error::decode("stream message", "cut short in a varint")),
        }
    }

    /// The next varint, as a count or length of at most `max`.
    pub fn len(&mut self, max: usize) -> Result<usize> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| Error::decode("stream message", format!("length {v} above {max}")))
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::decode("stream message", "cut short"))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    /// The next byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes(1)?[0])
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        let b = &self.buf[self.pos..];
        self.pos = self.buf.len();
        b
    }

    /// Whether everything has been read.
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_limits() {
        let mut b = Vec::new();
        put_varint(&mut b, u64::MAX);
        assert_eq!(b.len(), MAX_VARINT);
        assert_eq!(peek_varint(&b).unwrap(), Some((u64::MAX, MAX_VARINT)));
        // An 11th byte, or a 10th above 1, is past 64 bits.
        assert!(peek_varint(&[0xff; 11]).is_err());
        assert!(
            peek_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02]).is_err()
        );
        assert_eq!(peek_varint(&[0x80]).unwrap(), None);
    }

    #[test]
    fn huge_lengths_are_refused() {
        let mut b = Vec::new();
        put_varint(&mut b, u64::MAX - 3);
        assert!(split_frame(&b).is_err());
        let mut b = Vec::new();
        put_varint(&mut b, MAX_FRAME as u64 + 1);
        assert!(split_frame(&b).is_err());
    }

    proptest! {
        #[test]
        fn frames_round_trip(tag: u64, flags in 0u64..32, channel: u64, body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let f = Frame { tag, flags: flags & !FLAG_CHANNEL, channel, body };
            let mut wire = f.encode();
            wire.extend_from_slice(b"next");
            let (g, n) = split_frame(&wire).unwrap().unwrap();
            let mut want = f.clone();
            if channel != 0 { want.flags |= FLAG_CHANNEL; }
            prop_assert_eq!(g, want);
            prop_assert_eq!(&wire[n..], b"next");
            // Every proper prefix is "read more", never an error or a frame.
            for cut in 0..n {
                prop_assert!(split_frame(&wire[..cut]).unwrap().is_none());
            }
        }

        #[test]
        fn a_frame_buffer_splits_what_arrives_in_any_pieces(cuts in proptest::collection::vec(1usize..50, 1..20)) {
            let frames: Vec<Frame> = (0..20u64)
                .map(|i| Frame { tag: i, flags: 0, channel: i % 3, body: vec![i as u8; (i * 7) as usize] })
                .collect();
            let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
            let mut fb = FrameBuf::new();
            let mut got = Vec::new();
            let (mut pos, mut k) = (0, 0);
            while pos < wire.len() {
                let n = cuts[k % cuts.len()].min(wire.len() - pos);
                k += 1;
                fb.space(n).extend_from_slice(&wire[pos..pos + n]);
                pos += n;
                while let Some(f) = fb.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(fb.pending(), 0);
            let want: Vec<Frame> = frames.into_iter().map(|f| { let c = f.channel; Frame { flags: if c != 0 { FLAG_CHANNEL } else { 0 }, ..f } }).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = split_frame(&b);
        }
    }
}
