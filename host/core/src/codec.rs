//! Primitives of vt's binary encodings: unsigned LEB128 varints and
//! length-prefixed byte strings, read through a bounds-checked cursor.

use crate::error::{Error, Result};
use crate::hash::Hash;

/// Appends `v` as an unsigned LEB128 varint.
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a varint length then the bytes.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uvarint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A cursor over encoded bytes; every read is bounds-checked and malformed
/// input yields [`Error::Decode`] naming `what`.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Starts reading `buf`, reporting errors as malformed `what`.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The current offset.
    pub fn pos(&self) -> usize {
        self.pos
    }

    fn err(&self, detail: impl Into<String>) -> Error {
        Error::decode(self.what, format!("{} at byte {}", detail.into(), self.pos))
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.err("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads an unsigned LEB128 varint.
    pub fn uvarint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.err("varint overflow"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err("varint too long"))
    }

    /// Reads `n` raw bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err(format!("truncated: wanted {n} bytes")))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Reads a varint length then that many bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        self.take(n)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err("invalid UTF-8"))
    }

    /// Reads a binary hashcode.
    pub fn hash(&mut self) -> Result<Hash> {
        Hash::from_bytes(self.take(Hash::ENCODED_LEN)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_roundtrip(v: u64) {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut r = Reader::new(&b, "test");
            prop_assert_eq!(r.uvarint().unwrap(), v);
            prop_assert!(r.is_empty());
        }

        #[test]
        fn reader_never_panics(b: Vec<u8>) {
            let mut r = Reader::new(&b, "test");
            let _ = r.uvarint();
            let _ = r.bytes();
            let _ = r.hash();
        }
    }
}
